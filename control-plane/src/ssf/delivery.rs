//! Getting SETs to receivers: push (RFC 8935), as an outbox sink that
//! POSTs each SET to the stream's endpoint; and poll (RFC 8936), the
//! endpoint a receiver fetches and acknowledges its SETs at.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::{SsfState, POLL_METHOD};
use crate::app::App;
use crate::error::ApiError;
use crate::http::ApiJson;
use crate::model::now_ms;
use crate::outbox::Sink;
use crate::relying_parties::{classify, Delivery, HttpCall};
use crate::store::{OutboxJob, SqlStore, SsfStore};

/// One push request's timeout.
pub const PUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// Pushes SETs (outbox sink `ssf-push`).
pub struct PushSink {
    store: Arc<SqlStore>,
    state: Arc<SsfState>,
    client: reqwest::Client,
}

impl PushSink {
    /// The sink.
    pub fn new(store: Arc<SqlStore>, state: Arc<SsfState>) -> Self {
        let client = state.push_client();
        Self { store, state, client }
    }
}

/// RFC 8935 §2.3: a refusal's body.
#[derive(Deserialize)]
struct PushError {
    err: String,
    description: Option<String>,
}

#[async_trait]
impl Sink for PushSink {
    async fn deliver(&self, job: &OutboxJob) -> Delivery {
        let Some(stream_id) = job.target.as_deref() else {
            return Delivery::Failed { error: "an SSF job without its stream".into() };
        };
        let stream = match self.store.ssf_stream(stream_id).await {
            Ok(Some(stream)) => stream,
            Ok(None) => return Delivery::Failed { error: format!("stream {stream_id} was deleted") },
            Err(error) => {
                return Delivery::Retry { error: format!("the stream could not be read: {error}"), after: None }
            }
        };
        match stream.status.as_str() {
            "enabled" => {}
            // Paused streams' jobs are not claimed (see `claim_jobs`); one
            // paused mid-claim waits its backoff.
            "paused" => return Delivery::Retry { error: "the stream is paused".into(), after: None },
            _ => return Delivery::Failed { error: "the stream is disabled".into() },
        }
        let (Some(endpoint), "push") = (stream.endpoint_url.as_deref(), stream.method.as_str()) else {
            return Delivery::Failed { error: "the stream has no push endpoint".into() };
        };
        if let Err(error) = self.state.check_endpoint(endpoint) {
            return Delivery::Failed { error };
        }
        let set = match self.state.set_for(job, &stream) {
            Ok(set) => set,
            Err(error) => return Delivery::Failed { error },
        };
        let mut request = self
            .client
            .post(endpoint)
            .header("content-type", "application/secevent+jwt")
            .header("accept", "application/json")
            .body(set);
        if let Some(sealed) = &stream.authorization_sealed {
            match self.state.open_authorization(&stream.id, sealed) {
                Ok(header) => request = request.header("authorization", header),
                Err(error) => return Delivery::Failed { error },
            }
        }
        let call = match HttpCall::send(request, PUSH_TIMEOUT).await {
            Ok(call) => call,
            // The name resolves only to addresses pushes may not go to: a
            // refusal until an admin changes the setting and retries.
            Err(Delivery::Retry { error, .. }) if error.contains(super::endpoint::REFUSED_NAME) => {
                return Delivery::Failed { error }
            }
            Err(delivery) => return delivery,
        };
        if call.status.as_u16() == 400 {
            if let Ok(refusal) = serde_json::from_slice::<PushError>(&call.body) {
                let description = refusal.description.map(|d| format!(": {d}")).unwrap_or_default();
                return Delivery::Failed { error: format!("400 {}{description}", refusal.err) };
            }
        }
        classify(&call)
    }
}

/// RFC 8936 §2.4: a poll request.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PollRequest {
    /// Most SETs to return (default 100, at most 1000; 0: acknowledge only).
    #[serde(rename = "maxEvents")]
    pub max_events: Option<u32>,
    /// Answer at once even with nothing to return (default: wait up to 20 s).
    #[serde(rename = "returnImmediately")]
    pub return_immediately: Option<bool>,
    /// `jti`s received and processed.
    #[serde(default)]
    pub ack: Vec<String>,
    /// `jti`s the receiver refused, with why.
    #[serde(rename = "setErrs", default)]
    pub set_errs: std::collections::BTreeMap<String, SetError>,
}

/// A receiver's refusal of one SET.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetError {
    /// Error code (RFC 8935 §2.4).
    pub err: String,
    /// Explanation.
    pub description: Option<String>,
}

/// RFC 8936 §2.5: the answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PollAnswer {
    /// `jti` → SET.
    pub sets: std::collections::BTreeMap<String, String>,
    /// More are waiting.
    #[serde(rename = "moreAvailable")]
    pub more_available: bool,
}

/// Longest a poll waits for a first SET.
const LONG_POLL: Duration = Duration::from_secs(20);
/// Most `ack` and `setErrs` entries in one poll (each is a write).
pub const MAX_ACKS: usize = 1000;
/// Longest `jti`, `err` and `description` a receiver may send back.
const MAX_JTI: usize = 64;
const MAX_ERR: usize = 64;
const MAX_DESCRIPTION: usize = 500;

/// Refuses what a poll may not carry: too many entries, or ones too long.
fn check_poll(request: &PollRequest) -> Result<(), ApiError> {
    if request.ack.len() + request.set_errs.len() > MAX_ACKS {
        return Err(ApiError::invalid(format!("at most {MAX_ACKS} `ack` and `setErrs` entries in one poll")));
    }
    if request.ack.iter().chain(request.set_errs.keys()).any(|jti| jti.len() > MAX_JTI) {
        return Err(ApiError::invalid(format!("a `jti` is at most {MAX_JTI} characters")));
    }
    if request.set_errs.values().any(|e| {
        e.err.chars().count() > MAX_ERR || e.description.as_ref().is_some_and(|d| d.chars().count() > MAX_DESCRIPTION)
    }) {
        return Err(ApiError::invalid(format!(
            "`setErrs`: `err` is at most {MAX_ERR} characters, `description` at most {MAX_DESCRIPTION}"
        )));
    }
    Ok(())
}

/// `POST /ssf/poll/{stream_id}`: acknowledges, then returns the stream's
/// unacknowledged SETs (waiting for one unless `returnImmediately`).
pub async fn poll(
    State(app): State<Arc<App>>,
    caller: crate::api::auth::Caller,
    Path(stream_id): Path<String>,
    ApiJson(request): ApiJson<PollRequest>,
) -> Result<Json<PollAnswer>, ApiError> {
    let stream = super::streams::owned(&app, &caller, &stream_id).await?;
    check_poll(&request)?;
    if stream.method != POLL_METHOD_SHORT {
        return Err(ApiError::bad_request(format!(
            "stream {stream_id} is delivered by push ({POLL_METHOD} is not its method)"
        )));
    }
    let errors: Vec<(String, String)> = request
        .set_errs
        .iter()
        .map(|(jti, e)| {
            (
                jti.clone(),
                format!("{}{}", e.err, e.description.as_deref().map(|d| format!(": {d}")).unwrap_or_default()),
            )
        })
        .collect();
    app.store().ssf_acknowledge(&stream.id, &request.ack, &errors, now_ms()).await?;
    if stream.status != "enabled" {
        // Paused: its events are held; disabled: none are sent.
        return Ok(Json(PollAnswer { sets: std::collections::BTreeMap::new(), more_available: false }));
    }
    let max = request.max_events.unwrap_or(100).min(1000);
    let deadline = tokio::time::Instant::now() + LONG_POLL;
    let mut signal = app.store.outbox_signal();
    let mut waiting_permit = None;
    loop {
        let (jobs, more_available) =
            if max == 0 { (Vec::new(), false) } else { app.store().ssf_poll(&stream.id, max).await? };
        let mut waiting = jobs.is_empty() && max > 0 && !request.return_immediately.unwrap_or(false);
        if waiting && waiting_permit.is_none() {
            waiting_permit = app.ssf.wait_slot();
            waiting = waiting_permit.is_some();
        }
        if !waiting || tokio::time::Instant::now() >= deadline {
            let mut sets = std::collections::BTreeMap::new();
            for job in &jobs {
                sets.insert(job.id.clone(), app.ssf.set_for(job, &stream).map_err(ApiError::internal)?);
            }
            return Ok(Json(PollAnswer { sets, more_available }));
        }
        // Woken by jobs committed on this replica; polls for other replicas'.
        let _ = tokio::time::timeout_at(
            deadline.min(tokio::time::Instant::now() + Duration::from_secs(1)),
            signal.changed(),
        )
        .await;
    }
}

/// The stored `method` of poll streams.
pub const POLL_METHOD_SHORT: &str = "poll";
