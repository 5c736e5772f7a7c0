//! Assembling the edge on pingora: the killable HTTP proxy service on the
//! HTTP (and HTTPS) listeners (which also serves `CONNECT` tunnels), the snapshot subscriber as a background
//! service, and a small status service for `/healthz`, `/readyz` and
//! `/metrics`. [`EdgeServices::assemble`] builds them; `run` does not
//! return: pingora owns the process and handles SIGTERM/SIGINT with a
//! graceful shutdown. [`crate::in_process`] runs the same services inside a
//! test instead.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use async_trait::async_trait;
use http::Response;
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::listeners::tls::TlsSettings;
use pingora_core::protocols::http::ServerSession;
use pingora_core::server::configuration::{Opt, ServerConf};
use pingora_core::server::{Server, ShutdownWatch};
use pingora_core::services::background::{background_service, BackgroundService};
use pingora_core::services::listening::Service;
use pingora_core::services::ServiceWithDependents;

use crate::assertion::AssertionSigner;
use crate::authority_client::AuthorityClient;
use crate::config::EdgeConfig;
use crate::control_planes::{ChannelConfig, ControlPlanes};
use crate::credentials::{Credentials, ServiceTokens, SessionCookies, SessionVerifier};
use crate::gate::Gate;
use crate::killable::Killable;
use crate::login::cli::CliCodes;
use crate::login::state::StateSealer;
use crate::login::{CookieSettings, LoginService};
use crate::metrics::EdgeMetrics;
use crate::oidc::access_token::AccessTokenVerifier;
use crate::oidc::IdentityProvider;
use crate::proxy::EdgeHttp;
use crate::registry::{ConnRegistry, KillReason};
use crate::subscriber::{Subscriber, SubscriberParts, SyncStatus};
use crate::tunnel::TunnelService;
use crate::SnapshotStore;

/// Why the edge could not start.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    /// Pingora refused the setup (e.g. TLS files).
    #[error("cannot start the edge: {0}")]
    Pingora(String),
    /// The identity-assertion key is unusable.
    #[error("cannot start the edge: assertion_key_file: {0}")]
    AssertionKey(String),
    /// A listener could not be bound (in-process edges bind their own).
    #[error("cannot start the edge: cannot listen on {0}: {1}")]
    Listen(std::net::SocketAddr, String),
}

struct SubscriberService(Arc<Subscriber>);

#[async_trait]
impl BackgroundService for SubscriberService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        tokio::select! {
            () = Arc::clone(&self.0).run() => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// Once a second: closes live connections whose admission lapsed with time
/// (token expiry, the end of a `time:` window, a `logged_in_within`
/// limit), and, while the snapshot is stale, those on routes whose
/// `stale_mode` is `deny`.
struct ExpiryService {
    gate: Arc<Gate>,
}

#[async_trait]
impl BackgroundService for ExpiryService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let gate = &self.gate;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            let Some(snapshot) = gate.snapshots.load_full() else { continue };
            let now =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
            let closed = gate.registry.expire(&snapshot, now);
            if closed > 0 {
                gate.metrics.kills.with_label_values(&[KillReason::Expired.as_str()]).inc_by(closed as u64);
                tracing::info!(closed, "closed connections whose admission lapsed");
            }
            if gate.is_stale() {
                let strict = |route: &_| gate.fails_closed_when_stale(route);
                let closed = gate.registry.close_where(|b| b.route(&snapshot).is_some_and(strict), KillReason::Stale);
                if closed > 0 {
                    gate.metrics.kills.with_label_values(&[KillReason::Stale.as_str()]).inc_by(closed as u64);
                    tracing::warn!(closed, "the snapshot is stale: closed connections on routes with stale_mode deny");
                }
            }
        }
    }
}

/// `/healthz`, `/readyz` (a snapshot is present and fresh) and `/metrics`.
struct StatusApp {
    snapshots: Arc<SnapshotStore>,
    registry: Arc<ConnRegistry>,
    status: Arc<SyncStatus>,
    metrics: Arc<EdgeMetrics>,
    max_staleness_ms: i64,
    /// `/metrics` requires `Authorization: Bearer <token>` when set.
    metrics_token: Option<String>,
}

/// Whether `header` (an `Authorization` value) carries `token` as a bearer
/// token; compared in constant time through digests.
fn bearer_matches(header: Option<&[u8]>, token: &str) -> bool {
    use sha2::{Digest, Sha256};
    let presented = header
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map_or("", |(_, t)| t.trim());
    let (a, b) = (Sha256::digest(presented.as_bytes()), Sha256::digest(token.as_bytes()));
    !presented.is_empty() && a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[async_trait]
impl ServeHttp for StatusApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let path = session.req_header().uri.path().to_owned();
        let seq = self.snapshots.seq();
        let staleness = self.status.staleness_ms();
        let (status, body) = match path.as_str() {
            "/healthz" => (200, "ok\n".to_owned()),
            "/readyz" => {
                // Why no verified frame arrived lately, when one was refused.
                let refused =
                    self.status.refusal().map(|why| format!("; last frame refused: {why}")).unwrap_or_default();
                match seq {
                    None => (503, format!("not ready: no snapshot from the control plane yet{refused}\n")),
                    Some(seq) if staleness > self.max_staleness_ms => {
                        let silent = format!("no verified frame from the control plane for {staleness} ms");
                        (503, format!("stale: snapshot {seq}, {silent}{refused}\n"))
                    }
                    Some(seq) => (200, format!("ready: snapshot {seq}\n")),
                }
            }
            "/metrics"
                if self.metrics_token.as_deref().is_some_and(|token| {
                    !bearer_matches(session.req_header().headers.get("authorization").map(|v| v.as_bytes()), token)
                }) =>
            {
                (401, "send `Authorization: Bearer <metrics_token>`\n".to_owned())
            }
            "/metrics" => (200, self.metrics(seq, staleness)),
            _ => (404, "not found\n".to_owned()),
        };
        Response::builder()
            .status(status)
            .header("content-type", "text/plain; charset=utf-8")
            .header("content-length", body.len())
            .body(body.into_bytes())
            .unwrap_or_default()
    }
}

impl StatusApp {
    fn metrics(&self, seq: Option<u64>, staleness_ms: i64) -> String {
        let applied = seq.map_or(-1, |s| s as i64);
        let metrics = &self.metrics;
        metrics.snapshot_seq.set(applied);
        metrics.snapshot_lag.set((self.status.head_seq.load(Ordering::Relaxed) - applied).max(0));
        metrics.staleness_ms.set(if staleness_ms == i64::MAX { -1 } else { staleness_ms });
        metrics.control_plane_connected.set(i64::from(self.status.connected.load(Ordering::Relaxed)));
        metrics.live_connections.set(self.registry.len() as i64);
        metrics.render()
    }
}

/// What the edge's services share: the snapshot, the live connections,
/// the stream's freshness and the metrics. Cheap to clone.
#[derive(Clone)]
pub struct EdgeState {
    /// The snapshot in force.
    pub snapshots: Arc<SnapshotStore>,
    /// Live downstream connections.
    pub registry: Arc<ConnRegistry>,
    /// Freshness of the control-plane stream.
    pub status: Arc<SyncStatus>,
    /// The edge's metrics.
    pub metrics: Arc<EdgeMetrics>,
}

/// The edge assembled from its configuration but not started: the killable
/// proxy on `listen` (and `https_listen`), the status service on
/// `metrics_listen`, the snapshot subscriber and the admission expiry.
/// [`run`] hands them to a pingora server; [`crate::in_process`] runs them
/// on the caller's tokio runtime.
pub struct EdgeServices {
    /// The services, in the order they are added.
    pub services: Vec<Box<dyn ServiceWithDependents>>,
    /// What they share.
    pub state: EdgeState,
}

impl EdgeServices {
    /// Assembles the edge of `config`; `server_conf` is the pingora
    /// configuration the proxy is built with.
    pub fn assemble(config: &EdgeConfig, server_conf: &Arc<ServerConf>) -> Result<Self, EdgeError> {
        let snapshots = Arc::new(SnapshotStore::new());
        let registry = ConnRegistry::new();
        let status = Arc::new(SyncStatus::default());
        let sessions = Arc::new(SessionVerifier::new(&config.session_issuer, config.token_cache_size));
        let metrics = Arc::new(EdgeMetrics::new());
        let activity = Arc::new(crate::activity::ActivityLog::new(metrics.activity_events_dropped.clone()));
        let planes = Arc::new(ControlPlanes::new(ChannelConfig {
            urls: config.control_plane_urls.clone(),
            enrollment: config.enrollment.clone(),
            edge_id: config.edge_id.clone(),
            edge_name: config.edge_name.clone(),
            trust: config.control_plane_trust.clone(),
        }));
        let authority = Arc::new(AuthorityClient::new(Arc::clone(&planes)));
        let provider = config.oidc.clone().map(|settings| Arc::new(IdentityProvider::new(settings)));
        let credentials = Arc::new(Credentials {
            sessions: Arc::clone(&sessions),
            access_tokens: provider.as_ref().map(|p| AccessTokenVerifier::new(Arc::clone(p), config.token_cache_size)),
            service_tokens: ServiceTokens::new(Arc::clone(&authority), config.token_cache_size),
        });
        let assertions = Arc::new(
            AssertionSigner::new(config.assertion_key_pem.as_deref(), &config.assertion_issuer)
                .map_err(|e| EdgeError::AssertionKey(e.to_string()))?,
        );
        if config.assertion_key_pem.is_none() {
            tracing::warn!("no assertion_key_file: this edge signs identity assertions with a key made at start");
        }
        if !config.cookie_secure {
            tracing::warn!("cookie_secure = false: cookies travel over plain HTTP; for development only");
        }
        let login = Arc::new(LoginService {
            provider,
            authority,
            sessions,
            cookies: CookieSettings { name: config.cookie_name.clone(), secure: config.cookie_secure },
            sealer: StateSealer::from_fleet(planes.identity().fleet()),
            cli_codes: CliCodes::from_fleet(planes.identity().fleet()),
            device_starts: crate::login::device_start_budget(config.device_logins_per_hour),
            replays: Default::default(),
            assertions: Arc::clone(&assertions),
            status: Arc::clone(&status),
        });
        let gate = Arc::new(Gate {
            snapshots: Arc::clone(&snapshots),
            registry: Arc::clone(&registry),
            credentials,
            cookies: SessionCookies::new(&config.cookie_name, config.cookie_secure),
            trusted_proxies: config.trusted_proxies.clone(),
            status: Arc::clone(&status),
            max_staleness: config.max_staleness,
            stale_mode: config.stale_mode,
            activity: Arc::clone(&activity),
            metrics: Arc::clone(&metrics),
        });
        let tunnels = Arc::new(TunnelService { gate: Arc::clone(&gate) });
        let expiry = ExpiryService { gate: Arc::clone(&gate) };
        let edge = EdgeHttp { gate, login, assertions };
        let proxy = pingora_proxy::http_proxy(server_conf, edge);
        let killable = Killable::new(proxy, Arc::clone(&registry)).with_tunnels(tunnels);
        let mut service = Service::new("portcullis edge".into(), killable);
        service.add_tcp(&config.listen.to_string());
        if let Some((address, cert, key)) = &config.https {
            let mut tls = TlsSettings::intermediate(cert, key)
                .map_err(|e| EdgeError::Pingora(format!("tls_cert/tls_key ({cert}, {key}): {e}")))?;
            tls.enable_h2(); // ALPN offers h2, then http/1.1
            service.add_tls_with_settings(&address.to_string(), None, tls);
        }
        let parts = SubscriberParts {
            snapshots: Arc::clone(&snapshots),
            registry: Arc::clone(&registry),
            status: Arc::clone(&status),
            activity,
            metrics: Arc::clone(&metrics),
            trust: crate::stream_trust::StreamTrust::new(config.stream_public_key),
        };
        let subscriber = Subscriber::new(planes, parts);
        let state = EdgeState { snapshots, registry, status, metrics };
        let status_app = StatusApp {
            snapshots: Arc::clone(&state.snapshots),
            registry: Arc::clone(&state.registry),
            status: Arc::clone(&state.status),
            metrics: Arc::clone(&state.metrics),
            max_staleness_ms: config.max_staleness.as_millis() as i64,
            metrics_token: config.metrics_token.clone(),
        };
        let mut status_service = Service::new("portcullis edge status".into(), status_app);
        status_service.add_tcp(&config.metrics_listen.to_string());
        let services: Vec<Box<dyn ServiceWithDependents>> = vec![
            Box::new(service),
            Box::new(background_service("snapshot subscriber", SubscriberService(subscriber))),
            Box::new(background_service("admission expiry", expiry)),
            Box::new(status_service),
        ];
        Ok(Self { services, state })
    }
}

/// Builds and runs the edge; never returns on success.
pub fn run(config: EdgeConfig) -> Result<(), EdgeError> {
    let conf = ServerConf {
        threads: config.threads,
        grace_period_seconds: Some(1),
        graceful_shutdown_timeout_seconds: Some(2),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(Opt::default(), conf);
    server.bootstrap();
    let edge = EdgeServices::assemble(&config, &server.configuration)?;
    server.add_services(edge.services);
    tracing::info!(listen = %config.listen, metrics = %config.metrics_listen, edge = %config.edge_id, "edge starting");
    server.run_forever();
}

#[cfg(test)]
mod tests {
    use super::bearer_matches;

    #[test]
    fn metrics_token_needs_the_exact_bearer_token() {
        let token = "metrics-token-0123456789abcdef0123456789";
        assert!(bearer_matches(Some(format!("Bearer {token}").as_bytes()), token));
        assert!(bearer_matches(Some(format!("bearer  {token} ").as_bytes()), token));
        assert!(!bearer_matches(None, token));
        assert!(!bearer_matches(Some(b"Bearer "), token));
        assert!(!bearer_matches(Some(format!("Basic {token}").as_bytes()), token));
        assert!(!bearer_matches(Some(format!("Bearer {token}x").as_bytes()), token));
    }
}
