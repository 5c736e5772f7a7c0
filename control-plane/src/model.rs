//! Records the control plane keeps, as the API shows them. Times are Unix
//! milliseconds inside the store and RFC 3339 strings in JSON.

use std::collections::HashMap;

use portcullis_policy::snapshot::Lock;
use portcullis_policy::UserRef;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

/// Formats Unix milliseconds as RFC 3339 (UTC, millisecond precision).
pub fn rfc3339(ms: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// The current time in Unix milliseconds.
pub fn now_ms() -> Millis {
    chrono::Utc::now().timestamp_millis()
}

/// A session as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// 32 hex digits.
    pub id: String,
    /// IdP subject.
    pub subject: String,
    /// Lowercased email.
    pub email: String,
    /// Groups at login.
    pub groups: Vec<String>,
    /// IdP issuer.
    pub idp_issuer: String,
    /// IdP session id (`sid`), for back-channel logout.
    pub idp_session_id: Option<String>,
    /// Route the login was for.
    pub route: String,
    /// Created.
    pub created_ms: Millis,
    /// Last request seen by an edge.
    pub last_seen_ms: Millis,
    /// Expires.
    pub expires_ms: Millis,
    /// IdP authentication time, seconds.
    pub auth_time_s: i64,
    /// Ended (terminated, logged out, replaced), if it has.
    pub ended_ms: Option<Millis>,
    /// Why it ended.
    pub end_reason: Option<String>,
    /// Source addresses seen, first first.
    pub source_addresses: Vec<String>,
    /// User agent at login.
    pub user_agent: String,
    /// Edges that have served it.
    pub edges: Vec<String>,
    /// Live connections the edges report.
    pub live_connections: i64,
}

/// A session in API responses.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SessionView {
    /// Session id.
    pub id: String,
    /// IdP subject.
    pub subject: String,
    /// Email.
    pub email: String,
    /// Groups at login.
    pub groups: Vec<String>,
    /// Route.
    pub route: String,
    /// `active` or `ended`; an active session of a locked user also has `locked`.
    pub state: String,
    /// Created (RFC 3339).
    pub created_at: String,
    /// Last seen (RFC 3339).
    pub last_seen_at: String,
    /// Expires (RFC 3339).
    pub expires_at: String,
    /// Ended (RFC 3339), if it has.
    pub ended_at: Option<String>,
    /// Why it ended.
    pub end_reason: Option<String>,
    /// Source addresses seen.
    pub source_addresses: Vec<String>,
    /// User agent (attacker-controlled: escape before display).
    pub user_agent: String,
    /// Edges that served it.
    pub edges: Vec<String>,
    /// Live connections.
    pub live_connections: i64,
    /// IdP issuer.
    pub idp_issuer: String,
    /// IdP session id.
    pub idp_session_id: Option<String>,
    /// The user is locked: the session is `active` (it comes back if the
    /// lock is lifted with `keep_sessions`) but every edge denies it. Only
    /// ever true for an `active` session.
    #[serde(default)]
    pub locked: bool,
    /// When that lock lifts by itself (RFC 3339); absent while unlocked or
    /// locked until someone unlocks.
    #[serde(default)]
    pub locked_until: Option<String>,
}

impl SessionView {
    /// Marks an active session whose user (by subject or email) has a lock
    /// in `locks`, the locks in force now.
    pub fn mark_locked(&mut self, locks: &HashMap<UserRef, Lock>) {
        if self.state != "active" || locks.is_empty() {
            return;
        }
        let lock = locks.get(&UserRef::subject(&self.subject)).or_else(|| locks.get(&UserRef::email(&self.email)));
        if let Some(lock) = lock {
            self.locked = true;
            self.locked_until = lock.until.map(|s| rfc3339(s.saturating_mul(1000)));
        }
    }
}

impl SessionRecord {
    /// True until the session ends or expires.
    pub fn is_active(&self, now: Millis) -> bool {
        self.ended_ms.is_none() && self.expires_ms > now
    }

    /// The API view at time `now`.
    pub fn view(&self, now: Millis) -> SessionView {
        SessionView {
            id: self.id.clone(),
            subject: self.subject.clone(),
            email: self.email.clone(),
            groups: self.groups.clone(),
            route: self.route.clone(),
            state: if self.is_active(now) { "active" } else { "ended" }.into(),
            created_at: rfc3339(self.created_ms),
            last_seen_at: rfc3339(self.last_seen_ms),
            expires_at: rfc3339(self.expires_ms),
            ended_at: self.ended_ms.map(rfc3339),
            end_reason: self
                .end_reason
                .clone()
                .or_else(|| (self.ended_ms.is_none() && !self.is_active(now)).then(|| "expired".into())),
            source_addresses: self.source_addresses.clone(),
            user_agent: self.user_agent.clone(),
            edges: self.edges.clone(),
            live_connections: self.live_connections,
            idp_issuer: self.idp_issuer.clone(),
            idp_session_id: self.idp_session_id.clone(),
            locked: false,
            locked_until: None,
        }
    }
}

/// Who did something, for the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// `token:<name>`, `edge:<id>`, `user:<email>` or `system`.
    pub name: String,
    /// The client address the request came from.
    pub source_address: String,
}

impl Actor {
    /// The control plane itself (expiry, key rotation at start).
    pub fn system() -> Self {
        Self { name: "system".into(), source_address: String::new() }
    }
}

/// One audit-log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    /// Entry id (increasing).
    pub id: i64,
    /// When (RFC 3339).
    pub at: String,
    /// Who.
    pub actor: String,
    /// What, e.g. `session.terminate`.
    pub action: String,
    /// On what, e.g. `session:ab12…` or `email:ada@corp.example`.
    pub target: String,
    /// Why, as the actor said.
    pub reason: String,
    /// From which address.
    pub source_address: String,
    /// Change-log sequence, when the action made one.
    pub seq: Option<i64>,
    /// The email of the user it is about, if any (lower case).
    #[serde(default)]
    pub user_email: Option<String>,
    /// The IdP subject of the user it is about, if known.
    #[serde(default)]
    pub user_subject: Option<String>,
    /// The session it is about, if any.
    #[serde(default)]
    pub session_id: Option<String>,
    /// The policy route it happened on, if any.
    #[serde(default)]
    pub route: Option<String>,
    /// The edge it happened on (its id), if any.
    #[serde(default)]
    pub edge: Option<String>,
    /// How many occurrences the entry stands for: an edge sums a burst of
    /// identical denials or closed connections into one entry.
    #[serde(default = "one")]
    pub count: i64,
}

fn one() -> i64 {
    1
}

/// A stored policy version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PolicyVersion {
    /// Version number, from 1.
    pub version: i64,
    /// The YAML document.
    pub document: String,
    /// Who applied it.
    pub author: String,
    /// Why.
    pub message: String,
    /// When (RFC 3339).
    pub created_at: String,
}

/// An API token (admin or service) as stored: never the token itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiTokenRecord {
    /// Public id.
    pub id: String,
    /// `admin` or `service`.
    pub kind: String,
    /// Human name.
    pub name: String,
    /// SHA-256 of the token, hex.
    pub token_hash: String,
    /// Scopes (admin tokens).
    pub scopes: Vec<String>,
    /// Identity a service token carries.
    pub subject: String,
    /// Groups a service token carries.
    pub groups: Vec<String>,
    /// Created.
    pub created_ms: Millis,
    /// Expires, if ever.
    pub expires_ms: Option<Millis>,
    /// Revoked, if it was.
    pub revoked_ms: Option<Millis>,
    /// Last used (written at most once a minute), if ever.
    pub last_used_ms: Option<Millis>,
    /// Who created it.
    pub created_by: String,
}

/// An edge as the control plane knows it: its enrollment, and its health
/// from its reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EdgeView {
    /// Edge id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Change-log sequence it has applied (0 before its first report).
    pub applied_seq: i64,
    /// Last report (RFC 3339), if it has reported.
    pub last_heartbeat_at: Option<String>,
    /// Live connections it reports.
    pub live_connections: i64,
    /// Changes it has not applied yet.
    pub lag: i64,
    /// `connected` when it reported in the last 10 s, `stale` when it did
    /// earlier, `enrolled` before its first report, `revoked` once revoked.
    pub state: String,
    /// When it enrolled (RFC 3339).
    pub enrolled_at: Option<String>,
    /// Who let it in: a join token and its maker, or the bootstrap secret.
    pub enrolled_by: Option<String>,
    /// `join_token` or `bootstrap`.
    pub enrolled_via: Option<String>,
    /// SHA-256 of its public key (SPKI DER), hex.
    pub key_fingerprint: Option<String>,
    /// When it was revoked (RFC 3339).
    pub revoked_at: Option<String>,
    /// Who revoked it.
    pub revoked_by: Option<String>,
    /// Why.
    pub revoke_reason: Option<String>,
}

/// A stored session-signing key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKeyRecord {
    /// Key id.
    pub kid: String,
    /// `ES256`.
    pub alg: String,
    /// PKCS#8 PEM of the private key, sealed with the key-encryption key
    /// ([`crate::key_vault`]) as stored; plain only in rows written before
    /// sealing existed, which are sealed at start.
    pub private_pem: String,
    /// Base64url x coordinate.
    pub x: String,
    /// Base64url y coordinate.
    pub y: Option<String>,
    /// Created.
    pub created_ms: Millis,
    /// Retired (no longer signs; still verifies until tokens expire).
    pub retired_ms: Option<Millis>,
    /// Revoked in an emergency: no longer published, its tokens are dead.
    pub revoked_ms: Option<Millis>,
}

/// The stream-signing key as stored (the private PEM never leaves the
/// database and this process; it is never logged).
#[derive(Clone)]
pub struct StreamKeyRecord {
    /// Key id: 16 hex digits, the id frames carry.
    pub kid: String,
    /// `Ed25519`.
    pub algorithm: String,
    /// PKCS#8 PEM of the private key.
    pub private_pem: String,
    /// The public key, `ed25519:<base64url>`.
    pub public_key: String,
    /// Created.
    pub created_ms: Millis,
}

impl std::fmt::Debug for StreamKeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamKeyRecord")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .field("public_key", &self.public_key)
            .field("created_ms", &self.created_ms)
            .finish_non_exhaustive()
    }
}
