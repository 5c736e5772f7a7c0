//! The control-plane replicas an edge talks to, and which one it uses now.
//!
//! Every replica serves the same edge channel from the same database, so
//! the edge streams from one at a time and moves to the next when that one
//! fails: the stream resumes by sequence wherever it lands, reports and
//! session-authority calls follow the replica in use, and a call that
//! cannot even connect is tried on the others before it counts as
//! unavailable. Every call carries this edge's assertion
//! ([`EdgeIdentity`]); the id is in it, not in a header. Every HTTP client
//! that talks to them comes from [`ControlPlanes::client`], so each trusts
//! the same certificates ([`crate::channel_tls`]).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::channel_tls::ChannelTrust;
use crate::identity::{EdgeIdentity, Enrollment, IdentityError};

/// Where and how to reach the control plane.
#[derive(Debug, Clone)]
pub struct ChannelConfig {
    /// Base URLs of the edge channel, one per replica, in order of
    /// preference, e.g. `http://127.0.0.1:7401`. Never empty.
    pub urls: Vec<String>,
    /// How this edge enrolls (or enrolled).
    pub enrollment: Enrollment,
    /// This edge's id.
    pub edge_id: String,
    /// This edge's display name.
    pub edge_name: String,
    /// What `https://` replicas must present.
    pub trust: ChannelTrust,
}

impl ChannelConfig {
    /// One replica at `url`, enrolling with the bootstrap `secret`.
    pub fn single(url: impl Into<String>, secret: impl Into<String>, edge_id: impl Into<String>) -> Self {
        let edge_id = edge_id.into();
        Self {
            urls: vec![url.into()],
            enrollment: Enrollment::bootstrap(secret),
            edge_name: edge_id.clone(),
            edge_id,
            trust: ChannelTrust::default(),
        }
    }
}

/// The replicas and the one in use.
#[derive(Debug)]
pub struct ControlPlanes {
    identity: Arc<EdgeIdentity>,
    trust: ChannelTrust,
    bases: Box<[String]>,
    current: AtomicUsize,
}

impl ControlPlanes {
    /// The replicas of `config` (at least one URL is required).
    ///
    /// # Panics
    /// When `config.urls` is empty; the edge's configuration never is.
    pub fn new(config: ChannelConfig) -> Self {
        assert!(!config.urls.is_empty(), "at least one control-plane URL");
        let bases = config.urls.iter().map(|u| u.trim_end_matches('/').to_owned()).collect();
        let identity = Arc::new(EdgeIdentity::new(&config.edge_id, &config.edge_name, config.enrollment));
        Self { identity, trust: config.trust, bases, current: AtomicUsize::new(0) }
    }

    /// This edge's identity (its key, assertions and the fleet key).
    pub fn identity(&self) -> &Arc<EdgeIdentity> {
        &self.identity
    }

    /// Enrolls, or fetches the fleet key, at replica `index` unless done.
    pub async fn establish(&self, index: usize, client: &reqwest::Client) -> Result<(), IdentityError> {
        self.identity.establish(client, &self.url_at(index, "")).await
    }

    /// A call was refused with `status` and error `code` (`None`: no body
    /// read): on 401 for this edge's own credential (`unauthorized`), establish
    /// again first. A refused ID token or service token, also 401, carries its
    /// own code and says nothing about the edge: a client could otherwise make
    /// the edge re-establish at will.
    pub fn check_refusal(&self, status: reqwest::StatusCode, code: Option<&str>) {
        if status == reqwest::StatusCode::UNAUTHORIZED && code.is_none_or(|code| code == "unauthorized") {
            self.identity.refused();
        }
    }

    /// How many replicas there are.
    pub fn len(&self) -> usize {
        self.bases.len()
    }

    /// Always false: there is at least one replica.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The replica in use: its index and base URL.
    pub fn current(&self) -> (usize, &str) {
        let index = self.current.load(Ordering::Relaxed) % self.bases.len();
        (index, &self.bases[index])
    }

    /// `path` on replica `index`.
    pub fn url_at(&self, index: usize, path: &str) -> String {
        format!("{}{path}", self.bases[index % self.bases.len()])
    }

    /// `path` on the replica in use.
    pub fn url(&self, path: &str) -> String {
        self.url_at(self.current().0, path)
    }

    /// Replica `index` failed: the next one is used from now on, unless
    /// another caller already moved on. Returns the replica now in use.
    pub fn failed(&self, index: usize) -> usize {
        let next = (index + 1) % self.bases.len();
        match self.current.compare_exchange(index, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => next,
            Err(now) => now % self.bases.len(),
        }
    }

    /// Replica `index` answered: use it from now on.
    pub fn answered(&self, index: usize) {
        self.current.store(index % self.bases.len(), Ordering::Relaxed);
    }

    /// An HTTP client for the replicas: it trusts only what the channel's
    /// [`ChannelTrust`] says, follows no redirect (the credentials go to the
    /// configured URLs and nowhere else), gives up connecting after
    /// `connect_timeout`, and on a whole call after `timeout` (none: a
    /// stream that lasts).
    ///
    /// # Panics
    /// When the TLS backend cannot start, as [`reqwest::Client::new`] does;
    /// never with a weaker trust than configured.
    pub fn client(&self, connect_timeout: Duration, timeout: Option<Duration>) -> reqwest::Client {
        let mut builder =
            self.trust.client_builder().connect_timeout(connect_timeout).redirect(reqwest::redirect::Policy::none());
        if let Some(timeout) = timeout {
            builder = builder.timeout(timeout);
        }
        builder.build().unwrap_or_else(|error| panic!("cannot build the control-plane HTTP client: {error}"))
    }

    /// `builder` with this edge's assertion.
    pub fn authorize(&self, builder: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        builder.bearer_auth(self.identity.assertion())
    }
}

#[cfg(test)]
mod tests {
    use super::{ChannelConfig, ControlPlanes};

    fn planes(urls: &[&str]) -> ControlPlanes {
        let mut config = ChannelConfig::single("x", "secret", "edge-1");
        config.urls = urls.iter().map(|u| (*u).to_owned()).collect();
        ControlPlanes::new(config)
    }

    #[test]
    fn only_a_refused_edge_credential_makes_the_edge_establish_again() {
        let planes = planes(&["http://a"]);
        planes.identity().established_with(&"A".repeat(43)).expect("a well-formed fleet key");
        let unauthorized = reqwest::StatusCode::UNAUTHORIZED;
        for code in ["id_token_invalid", "id_token_replayed", "service_token_invalid"] {
            planes.check_refusal(unauthorized, Some(code));
            assert!(planes.identity().is_established(), "{code} is about the client's token, not the edge");
        }
        planes.check_refusal(reqwest::StatusCode::FORBIDDEN, None);
        assert!(planes.identity().is_established());
        planes.check_refusal(unauthorized, Some("unauthorized"));
        assert!(!planes.identity().is_established(), "the edge's assertion was refused");
        planes.identity().established_with(&"A".repeat(43)).expect("again");
        planes.check_refusal(unauthorized, None);
        assert!(!planes.identity().is_established(), "a bare 401 (the stream) counts as the edge's");
    }

    #[test]
    fn a_failure_moves_to_the_next_replica_and_wraps() {
        let planes = planes(&["http://a:1/", "http://b:2"]);
        assert_eq!(planes.current(), (0, "http://a:1"));
        assert_eq!(planes.url("/edge/v1/stream"), "http://a:1/edge/v1/stream");
        assert_eq!(planes.failed(0), 1);
        assert_eq!(planes.current(), (1, "http://b:2"));
        assert_eq!(planes.failed(1), 0);
        assert_eq!(planes.current().0, 0);
    }

    #[test]
    fn a_stale_failure_report_does_not_skip_a_replica() {
        let planes = planes(&["http://a", "http://b", "http://c"]);
        assert_eq!(planes.failed(0), 1);
        // A second caller saw replica 0 fail too: it must not move past b.
        assert_eq!(planes.failed(0), 1);
        assert_eq!(planes.current().1, "http://b");
        planes.answered(2);
        assert_eq!(planes.current().1, "http://c");
    }

    #[test]
    fn one_replica_stays_put() {
        let planes = planes(&["http://only"]);
        assert_eq!(planes.failed(0), 0);
        assert_eq!(planes.current(), (0, "http://only"));
    }
}
