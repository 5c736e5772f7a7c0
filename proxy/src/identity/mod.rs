//! The edge's identity on the edge channel.
//!
//! ```text
//! start: credential_file exists? ─yes─▶ its key ──GET /edge/v1/fleet-key (assertion)──▶ fleet key
//!                                 └no──▶ new key ─(written 0600 first, if configured)─▶
//!                                        POST /edge/v1/enroll (Bearer join token | bootstrap secret)
//!                                        ──▶ fleet key
//! every call: Authorization: Bearer <assertion>  (ES256, 60 s, cached until 20 s are left)
//! a 401: establish again (enrolls again only with a credential left to enroll with)
//! ```
//!
//! The join token works once; the bootstrap secret (quickstart and tests)
//! may enroll again at every start, with a key kept only in memory.

mod fleet;
mod key;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::clock::unix_now_s;
use portcullis_policy::edge_channel::{
    EnrollAnswer, EnrollBody, ErrorAnswer, FleetKeyAnswer, ENROLL_PATH, FLEET_KEY_PATH, MAX_ASSERTION_LIFETIME_S,
};

pub use fleet::{DerivedKey, FleetKey};
pub use key::{EdgeKey, KeyFileError};

pub use portcullis_policy::edge_channel::EDGE_CHANNEL_AUDIENCE;
/// Lifetime of an assertion, seconds: the longest the control plane accepts.
pub const ASSERTION_LIFETIME_S: i64 = MAX_ASSERTION_LIFETIME_S;
/// An assertion with less than this left is replaced, seconds.
const REFRESH_BEFORE_S: i64 = 20;
/// How long enrollment may wait for the control plane (a paused replica
/// is given up as fast as a silent stream).
const CALL_TIMEOUT: std::time::Duration = crate::subscriber::SILENCE_LIMIT;

/// How the edge gets (or got) its credential.
#[derive(Clone, Default)]
pub struct Enrollment {
    /// One-time join token (`pcjt_…`).
    pub join_token: Option<String>,
    /// Bootstrap secret shared with the control plane (quickstart only).
    pub bootstrap_secret: Option<String>,
    /// Where the private key is kept.
    pub credential_file: Option<PathBuf>,
    /// The key read from `credential_file` at start, if the file existed.
    pub key: Option<EdgeKey>,
}

/// Never prints the join token or the secret.
impl std::fmt::Debug for Enrollment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enrollment")
            .field("join_token", &self.join_token.as_ref().map(|_| "<redacted>"))
            .field("bootstrap_secret", &self.bootstrap_secret.as_ref().map(|_| "<redacted>"))
            .field("credential_file", &self.credential_file)
            .field("key", &self.key)
            .finish()
    }
}

impl Enrollment {
    /// Enrollment with the bootstrap secret, the key kept in memory.
    pub fn bootstrap(secret: impl Into<String>) -> Self {
        Self { bootstrap_secret: Some(secret.into()), ..Self::default() }
    }
}

/// Why the edge could not establish its identity.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The control plane refused (401/4xx) with this explanation.
    #[error("the control plane refused this edge's credential: {0}")]
    Refused(String),
    /// The control plane could not be reached or answered 5xx.
    #[error("the control plane is unavailable: {0}")]
    Unavailable(String),
    /// The key could not be written.
    #[error("cannot keep the edge's key: {0}")]
    KeyFile(#[from] KeyFileError),
}

/// This edge's key, enrollment state, assertions and fleet key.
pub struct EdgeIdentity {
    edge_id: String,
    edge_name: String,
    enrollment: Enrollment,
    key: EdgeKey,
    /// The key is known to the control plane (read from a file, or enrolled).
    maybe_enrolled: AtomicBool,
    /// Established and not refused since.
    established: AtomicBool,
    key_written: AtomicBool,
    cached: Mutex<Option<(String, i64)>>,
    fleet: FleetKey,
    establishing: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for EdgeIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeIdentity")
            .field("edge_id", &self.edge_id)
            .field("established", &self.established.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl EdgeIdentity {
    /// The identity of edge `edge_id`: the key of `enrollment`, or a new one.
    pub fn new(edge_id: &str, edge_name: &str, enrollment: Enrollment) -> Self {
        let from_file = enrollment.key.clone();
        Self {
            edge_id: edge_id.to_owned(),
            edge_name: edge_name.to_owned(),
            maybe_enrolled: AtomicBool::new(from_file.is_some()),
            key_written: AtomicBool::new(from_file.is_some()),
            key: from_file.unwrap_or_else(EdgeKey::generate),
            enrollment,
            established: AtomicBool::new(false),
            cached: Mutex::new(None),
            fleet: FleetKey::default(),
            establishing: tokio::sync::Mutex::new(()),
        }
    }

    /// This edge's id.
    pub fn edge_id(&self) -> &str {
        &self.edge_id
    }

    /// The fleet key (known once established).
    pub fn fleet(&self) -> &FleetKey {
        &self.fleet
    }

    /// The current assertion (cached; a new one when less than 20 s are left).
    pub fn assertion(&self) -> String {
        let now = unix_now_s();
        let mut cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((token, _)) = cached.as_ref().filter(|(_, exp)| exp - now > REFRESH_BEFORE_S) {
            return token.clone();
        }
        let token = self.key.assertion(&self.edge_id, EDGE_CHANNEL_AUDIENCE, now, ASSERTION_LIFETIME_S);
        *cached = Some((token.clone(), now + ASSERTION_LIFETIME_S));
        token
    }

    /// The control plane refused a call with 401: establish again before the next one.
    pub fn refused(&self) {
        if self.established.swap(false, Ordering::Relaxed) {
            tracing::warn!(edge = %self.edge_id, "the control plane refused this edge's assertion");
        }
    }

    /// Makes sure the control plane knows this edge's key and the fleet key
    /// is here, asking the control plane at `base` (an edge-channel URL).
    pub async fn establish(&self, client: &reqwest::Client, base: &str) -> Result<(), IdentityError> {
        if self.established.load(Ordering::Relaxed) {
            return Ok(());
        }
        let _one_at_a_time = self.establishing.lock().await;
        if self.established.load(Ordering::Relaxed) {
            return Ok(());
        }
        let base = base.trim_end_matches('/');
        if !self.maybe_enrolled.load(Ordering::Relaxed) {
            return self.enroll(client, base).await;
        }
        let asked = client
            .get(format!("{base}{FLEET_KEY_PATH}"))
            .bearer_auth(self.assertion())
            .timeout(CALL_TIMEOUT)
            .send()
            .await;
        match answer::<FleetKeyAnswer>(asked).await {
            Ok(answer) => self.established_with(&answer.fleet_key),
            Err(IdentityError::Refused(reason)) if self.can_enroll() => {
                tracing::warn!(edge = %self.edge_id, %reason, "the control plane refused this edge's key; enrolling");
                match self.enroll(client, base).await {
                    Err(IdentityError::Refused(again)) => {
                        Err(IdentityError::Refused(format!("{reason}; enrolling again: {again}")))
                    }
                    other => other,
                }
            }
            Err(error) => Err(error),
        }
    }

    fn can_enroll(&self) -> bool {
        self.enrollment.join_token.is_some() || self.enrollment.bootstrap_secret.is_some()
    }

    async fn enroll(&self, client: &reqwest::Client, base: &str) -> Result<(), IdentityError> {
        let (credential, how) = match (&self.enrollment.join_token, &self.enrollment.bootstrap_secret) {
            (Some(token), _) => (token, "join token"),
            (None, Some(secret)) => (secret, "bootstrap secret"),
            (None, None) => {
                return Err(IdentityError::Refused(
                    "this edge's key is not enrolled and it has no join_token to enroll with".into(),
                ))
            }
        };
        // Kept before it is registered: a key the control plane knows is never lost.
        if let Some(path) = &self.enrollment.credential_file {
            if !self.key_written.load(Ordering::Relaxed) {
                self.key.write(path)?;
                self.key_written.store(true, Ordering::Relaxed);
                tracing::info!(path = %path.display(), "wrote this edge's private key");
            }
        }
        let body = EnrollBody {
            edge_id: self.edge_id.clone(),
            name: Some(self.edge_name.clone()),
            public_key: self.key.public_pem().to_owned(),
        };
        let sent = client
            .post(format!("{base}{ENROLL_PATH}"))
            .bearer_auth(credential)
            .json(&body)
            .timeout(CALL_TIMEOUT)
            .send()
            .await;
        let answer = answer::<EnrollAnswer>(sent).await?;
        self.maybe_enrolled.store(true, Ordering::Relaxed);
        tracing::info!(edge = %self.edge_id, with = how, "enrolled with the control plane");
        self.established_with(&answer.fleet_key)
    }

    /// True once enrolled (or re-checked) and holding the fleet key, until a
    /// call is refused for this edge's credential.
    pub fn is_established(&self) -> bool {
        self.established.load(Ordering::Relaxed)
    }

    pub(crate) fn established_with(&self, fleet_key: &str) -> Result<(), IdentityError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(fleet_key)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| IdentityError::Unavailable("the control plane sent a malformed fleet key".into()))?;
        if self.fleet.set(bytes) {
            tracing::info!("received the fleet key");
        }
        self.established.store(true, Ordering::Relaxed);
        Ok(())
    }
}

/// The JSON of a successful answer; the control plane's message on a 4xx.
async fn answer<T: serde::de::DeserializeOwned>(
    sent: Result<reqwest::Response, reqwest::Error>,
) -> Result<T, IdentityError> {
    let response = sent.map_err(|e| IdentityError::Unavailable(e.without_url().to_string()))?;
    let status = response.status();
    if status.is_success() {
        return response.json().await.map_err(|e| IdentityError::Unavailable(e.without_url().to_string()));
    }
    if status.is_client_error() {
        let message = response.json::<ErrorAnswer>().await.map(|b| b.error.message);
        return Err(IdentityError::Refused(message.unwrap_or_else(|_| format!("HTTP {status}"))));
    }
    Err(IdentityError::Unavailable(format!("the control plane answered {status}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assertions_are_cached_not_signed_per_call() {
        let identity = EdgeIdentity::new("edge-1", "Edge 1", Enrollment::bootstrap("s".repeat(32)));
        let first = identity.assertion();
        assert_eq!(identity.assertion(), first, "the same assertion until 20 s are left");
        *identity.cached.lock().unwrap() = Some((first.clone(), unix_now_s() + REFRESH_BEFORE_S));
        assert_ne!(identity.assertion(), first, "a new one when it is about to expire");
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let enrollment = Enrollment {
            join_token: Some("pcjt_secret-token".into()),
            bootstrap_secret: Some("bootstrap-secret-0123456789abcdef".into()),
            ..Enrollment::default()
        };
        let shown = format!("{enrollment:?} {:?}", EdgeIdentity::new("e", "e", enrollment.clone()));
        assert!(!shown.contains("pcjt_secret") && !shown.contains("bootstrap-secret"), "{shown}");
    }
}
