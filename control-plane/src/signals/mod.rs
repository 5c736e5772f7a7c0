//! Signals in: what identity providers and security tools know about an
//! account in trouble ends its sessions here, with no admin in the loop.
//!
//! ```text
//! POST /ssf/receiver/{transmitter}          RFC 8935 push of one SET (bearer token)
//! (poller per `delivery = "poll"` transmitter: RFC 8936, acks resumed from the store)
//! POST /signals/global-token-revocation     Okta Universal Logout (signed JWT)
//! ```
//!
//! Every SET is verified (`set`), turned into steps (`plan`: the event's
//! kind, its `sub_id`, the transmitter's response), and applied by the
//! store in one transaction with the record of its `jti`
//! (`SqlStore::apply_signal`), so nothing is applied twice. The change
//! reaches edges like an admin's termination; metrics time it.

pub mod actions;
mod logout;
pub mod plan;
mod poll;
mod push;
pub mod set;
pub mod settings;
mod stream;
pub mod subject;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::post;
use axum::Router;

use crate::app::App;
use crate::model::{now_ms, Actor};
use crate::relying_parties::settings::SecretError;
use crate::store::{AppliedSignal, SignalRecord};
use set::{SetError, TransmitterKeys, VerifiedSet};
use settings::{Delivery, TransmitterSettings};

/// One configured transmitter with its keys and credentials.
pub struct Transmitter {
    /// Its settings.
    pub settings: TransmitterSettings,
    /// Its JWKS.
    pub keys: TransmitterKeys,
    push_token: Option<String>,
    client_token: Option<String>,
    /// Our stream at the transmitter (its configuration document and the
    /// stream), once read or created; the lock makes the stream manager and
    /// the poller, which both need it at start, create it once.
    stream: tokio::sync::Mutex<Option<(serde_json::Value, serde_json::Value)>>,
}

impl Transmitter {
    /// The `received_signals.source` of its SETs.
    pub fn source(&self) -> String {
        format!("ssf:{}", self.settings.name)
    }
}

/// Every configured transmitter.
#[derive(Default)]
pub struct Signals {
    transmitters: Vec<Arc<Transmitter>>,
}

impl Signals {
    /// Reads the transmitters' credentials.
    pub fn new(settings: &[TransmitterSettings]) -> Result<Self, SecretError> {
        let mut transmitters = Vec::with_capacity(settings.len());
        for t in settings {
            let push_token = match &t.delivery {
                Delivery::Push { token } => Some(token.read_for(&t.name)?),
                Delivery::Poll { .. } => None,
            };
            let client_token = t.client_token.as_ref().map(|s| s.read_for(&t.name)).transpose()?;
            transmitters.push(Arc::new(Transmitter {
                settings: t.clone(),
                keys: TransmitterKeys::default(),
                push_token,
                client_token,
                stream: tokio::sync::Mutex::new(None),
            }));
        }
        Ok(Self { transmitters })
    }

    /// The transmitter called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Transmitter>> {
        self.transmitters.iter().find(|t| t.settings.name == name)
    }

    /// Every transmitter.
    pub fn all(&self) -> &[Arc<Transmitter>] {
        &self.transmitters
    }
}

/// The routes transmitters call (outside `/api/v1`: they authenticate with
/// their own credentials, not admin tokens).
pub fn router() -> Router<Arc<App>> {
    Router::new()
        .route("/ssf/receiver/{transmitter}", post(push::receive))
        .route("/signals/global-token-revocation", post(logout::global_token_revocation))
}

/// The body of a transmitter's answer, refused past `max` bytes without
/// reading more (a hostile or broken transmitter cannot fill our memory).
pub(crate) async fn bounded_body(mut response: reqwest::Response, max: usize) -> Result<Vec<u8>, String> {
    let too_large = || format!("the answer is larger than {max} bytes");
    if response.content_length().is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.without_url().to_string())? {
        if body.len() + chunk.len() > max {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Starts the pollers of polled transmitters.
pub fn spawn(app: &Arc<App>) {
    for transmitter in app.signals.all() {
        if transmitter.settings.manage_stream {
            tokio::spawn(stream::manage(Arc::clone(app), Arc::clone(transmitter)));
        }
        if matches!(transmitter.settings.delivery, Delivery::Poll { .. }) {
            tokio::spawn(poll::run(Arc::clone(app), Arc::clone(transmitter)));
        }
    }
}

/// Verifies, plans and applies one SET; `acked`: whether the transmitter
/// needs no acknowledgement (push) — a polled SET is acknowledged later.
pub async fn receive_set(
    app: &Arc<App>,
    transmitter: &Transmitter,
    token: &str,
    acked: bool,
) -> Result<AppliedSignal, ReceiveError> {
    let received = Instant::now();
    let set = verify_set(app, transmitter, token).await?;
    apply_set(app, transmitter, &set, acked, received).await
}

/// Verifies `token` from `transmitter`; a refusal is counted.
pub async fn verify_set(app: &App, transmitter: &Transmitter, token: &str) -> Result<VerifiedSet, ReceiveError> {
    let verified = transmitter.keys.verify(&transmitter.settings, token, now_ms() / 1000).await;
    verified.map_err(|error| rejected(app, transmitter, error))
}

/// Counts a refused SET (`rejected:<code>`) and wraps its error.
fn rejected(app: &App, transmitter: &Transmitter, error: SetError) -> ReceiveError {
    let outcome = format!("rejected:{}", error.code());
    app.metrics.signals.events.with_label_values(&[&transmitter.source(), "-", &outcome]).inc();
    ReceiveError::Invalid(error)
}

/// Why a SET was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    /// The SET is invalid (the transmitter is told why).
    #[error("{0}")]
    Invalid(#[from] SetError),
    /// The store failed; the transmitter should retry.
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
}

/// Plans and applies a verified SET.
pub async fn apply_set(
    app: &Arc<App>,
    transmitter: &Transmitter,
    set: &VerifiedSet,
    acked: bool,
    received: Instant,
) -> Result<AppliedSignal, ReceiveError> {
    let source = transmitter.source();
    let groups_claim = app
        .config
        .login
        .idps
        .iter()
        .find(|idp| idp.issuer.trim_end_matches('/') == transmitter.settings.login_issuer)
        .map(|idp| idp.groups_claim.as_str());
    let planned =
        plan::plan(&transmitter.settings, set, groups_claim).map_err(|error| rejected(app, transmitter, error))?;
    let summary = format!("{} via {source} (jti {})", planned.summary, set.jti);
    let record = SignalRecord {
        source: &source,
        jti: &set.jti,
        event_types: &planned.event_types,
        iat_ms: set.iat.saturating_mul(1000),
        target: &planned.target,
        summary: &summary,
        audit_action: "signal.applied",
        acked,
    };
    let actor = Actor { name: source.clone(), source_address: String::new() };
    let groups = match &planned.groups {
        Some((user, groups)) => Some((user, groups.as_slice(), longest_token_life(app).await)),
        None => None,
    };
    let applied = app.store.apply_signal(&record, &planned.steps, groups, &actor, now_ms()).await?;
    for (event, acted) in &planned.events {
        let outcome = match (applied.duplicate, acted) {
            (true, _) => "duplicate",
            (false, true) => "applied",
            (false, false) => "ignored",
        };
        app.metrics.signals.events.with_label_values(&[&source, event, outcome]).inc();
    }
    if !applied.duplicate {
        tracing::info!(transmitter = %transmitter.settings.name, jti = %set.jti, "{}", planned.summary);
        // The policy's response rules hear every event too (by short name and risk level).
        let subject = crate::responses::Subject { session: None, user: planned.user.clone() };
        for (uri, payload) in &set.events {
            let kind = actions::EventKind::from_uri(uri).map_or("unknown", actions::EventKind::short_name);
            let risk = payload.get("current_level").and_then(serde_json::Value::as_str).map(str::to_ascii_lowercase);
            let occurrence = format!("{source}:{}:{kind}", set.jti);
            crate::responses::after_signal(app, &subject, (kind, risk.as_deref()), &occurrence).await?;
        }
        if let Some(seq) = applied.seq {
            time_to_edges(app, source, seq, set.iat, received);
        }
    }
    Ok(applied)
}

/// Until when (Unix seconds) a token issued now could be alive: the longest
/// session lifetime of the policy in force, and at least a day (IdP access
/// tokens carry their own expiry).
async fn longest_token_life(app: &App) -> i64 {
    let longest = match app.current_policy().await {
        Ok(policy) => policy.routes().iter().map(|r| r.options().session_lifetime).max().unwrap_or(0),
        Err(_) => 0,
    };
    now_ms() / 1000 + i64::from(longest.max(86_400))
}

/// Observes, in the background, how long the signal took to reach every
/// connected edge (from its `iat` and from its arrival).
fn time_to_edges(app: &Arc<App>, source: String, seq: u64, iat: i64, received: Instant) {
    let app = Arc::clone(app);
    tokio::spawn(async move {
        let deadline = received + Duration::from_secs(30);
        loop {
            let alive_since = now_ms() - crate::receipt::EDGE_ALIVE_MS;
            let Ok(progress) = app.store().propagation(seq, alive_since).await else { return };
            if progress.edges_applied >= progress.edges_total {
                let metrics = &app.metrics.signals;
                metrics.received_to_edges.with_label_values(&[&source]).observe(received.elapsed().as_secs_f64());
                let since_iat = (now_ms() - iat.saturating_mul(1000)).max(0) as f64 / 1000.0;
                metrics.iat_to_edges.with_label_values(&[&source]).observe(since_iat);
                return;
            }
            if Instant::now() >= deadline {
                return;
            }
            app.feed.next_report(Duration::from_millis(20)).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::bounded_body;

    /// A local server answering `size` bytes, chunked (no Content-Length) or not.
    async fn server(size: usize, chunked: bool) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let app = axum::Router::new().route(
            "/",
            axum::routing::get(move || async move {
                let body = vec![b'x'; size];
                if chunked {
                    let stream = futures_util::stream::iter(
                        body.chunks(4096).map(|c| Ok::<_, std::io::Error>(c.to_vec())).collect::<Vec<_>>(),
                    );
                    axum::body::Body::from_stream(stream)
                } else {
                    axum::body::Body::from(body)
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        url
    }

    #[tokio::test]
    async fn an_answer_past_the_bound_is_refused_unread() {
        let http = reqwest::Client::new();
        for chunked in [false, true] {
            let small = http.get(server(1000, chunked).await).send().await.unwrap();
            assert_eq!(bounded_body(small, 1024).await.unwrap().len(), 1000);
            let large = http.get(server(100_000, chunked).await).send().await.unwrap();
            assert!(bounded_body(large, 1024).await.is_err(), "chunked: {chunked}");
        }
    }
}
