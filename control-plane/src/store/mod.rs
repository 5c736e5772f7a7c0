//! The store: every durable fact of the control plane, behind one `Store`
//! trait with one SQL implementation for both backends (SQLite by default,
//! PostgreSQL for several replicas), through sqlx's `Any` driver.
//!
//! Every action that edges must learn about commits, in one transaction, its
//! domain rows, one change-log row (the next sequence number) and its audit
//! row, so that a change is durable before it is acknowledged and the stream
//! edges resume from can never disagree with the tables.

mod activity;
mod audit;
mod changes;
mod claims;
mod connect;
mod edge_identity;
mod edges;
mod group_commit;
mod outbox;
mod policy;
mod portal;
mod report_batch;
mod rows;
mod sessions;
mod siem;
mod signals;
mod ssf;
mod stream_keys;
mod termination_batch;
mod tokens;
mod users;

use async_trait::async_trait;
use portcullis_policy::policy::SessionLimitAction;
use portcullis_policy::snapshot::Lock;
use portcullis_policy::wire::SnapshotBody;
use portcullis_policy::UserRef;

pub use audit::EdgeAuditRow;
pub use changes::CHANGES_CHANNEL;
pub use connect::{Backend, SqlStore};
pub use edge_identity::{
    EdgeCredential, EdgeIdentityStore, EnrollRefusal, EnrolledVia, JoinTokenRecord, NewEnrollment, EDGES_CHANNEL,
};
pub use outbox::{Backlog, Finish, JobState, NewJob, OutboxJob, OutboxStore, Subscription};
pub use portal::{PortalSessionRecord, PortalSessionView, PortalStore};
pub use siem::{SinkBacklog, SinkStart};
pub use signals::{signal_target, AppliedSignal, GroupsChange, SignalRecord, SignalStep};
pub use ssf::{SsfStore, SsfStream, SSF_DEADLINE_MS, SSF_POLL, SSF_PUSH};

use crate::model::{
    Actor, ApiTokenRecord, AuditEntry, Millis, PolicyVersion, SessionRecord, SigningKeyRecord, StreamKeyRecord,
};

/// Store failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The record does not exist.
    #[error("not found")]
    NotFound,
    /// A login would exceed the route's session limit and the route refuses.
    #[error("the user already has {0} active sessions on this route")]
    SessionLimit(u32),
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Migrations could not be applied.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Stored data does not decode.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The login's IdP authentication (`auth_time`) is not after the user's
    /// last termination, unlock or lock expiry: the user must sign in again
    /// at the identity provider.
    #[error("a new sign-in at the identity provider is required")]
    ReauthenticationRequired,
    /// A queued write (a group-committed termination) was not committed:
    /// its batch failed or the queue stopped. Nothing of it is stored; the
    /// caller may retry.
    #[error("not committed: {0}")]
    NotCommitted(String),
}

/// Store results.
pub type StoreResult<T> = Result<T, StoreError>;

/// Session list filters; all optional, combined with AND.
#[derive(Debug, Clone, Default)]
pub struct SessionFilter {
    /// Sessions of this email (case-insensitive).
    pub email: Option<String>,
    /// Sessions of this route.
    pub route: Option<String>,
    /// `Some(true)` active only, `Some(false)` ended only.
    pub active: Option<bool>,
    /// Sessions served by this edge.
    pub edge: Option<String>,
    /// Created at or after.
    pub since_ms: Option<Millis>,
    /// Cursor: sessions strictly older than this (created, id).
    pub before: Option<(Millis, String)>,
    /// Page size.
    pub limit: u32,
}

/// Audit list filters.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Entries by this actor.
    pub actor: Option<String>,
    /// Entries with this action.
    pub action: Option<String>,
    /// Entries whose target contains this text.
    pub target: Option<String>,
    /// Entries about this user: an email (any case) or an IdP subject.
    pub user: Option<String>,
    /// Entries about this session.
    pub session: Option<String>,
    /// Entries on this route.
    pub route: Option<String>,
    /// The denial an end user was shown this reference for (its row's
    /// reason ends with
    /// [`portcullis_policy::edge_channel::DenialReference::audit_text`]).
    pub reference: Option<portcullis_policy::edge_channel::DenialReference>,
    /// Entries from this edge (its id).
    pub edge: Option<String>,
    /// At or after.
    pub since_ms: Option<Millis>,
    /// Cursor: entries with a smaller id.
    pub before_id: Option<i64>,
    /// Entries with a larger id, oldest first (for following the log).
    pub after_id: Option<i64>,
    /// Page size.
    pub limit: u32,
}

/// A login an edge completed.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// Fresh random id (32 hex digits).
    pub id: String,
    /// IdP subject.
    pub subject: String,
    /// Email (lowercased by the store).
    pub email: String,
    /// Groups.
    pub groups: Vec<String>,
    /// IdP issuer.
    pub idp_issuer: String,
    /// IdP session id.
    pub idp_session_id: Option<String>,
    /// Route name.
    pub route: String,
    /// Lifetime from the route's options.
    pub lifetime_ms: Millis,
    /// IdP authentication time, seconds.
    pub auth_time_s: i64,
    /// Client address.
    pub source_address: String,
    /// Client user agent.
    pub user_agent: String,
    /// Edge that completed the login.
    pub edge_id: String,
}

/// The route's concurrent-session limit.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimit {
    /// Most active sessions per user on the route.
    pub max: u32,
    /// Refuse the new one or end the oldest.
    pub action: SessionLimitAction,
}

/// A created session and the sessions it replaced (with their change seqs).
#[derive(Debug, Clone)]
pub struct CreatedSession {
    /// The new session.
    pub record: SessionRecord,
    /// Sessions ended to stay within the limit, with the change each made.
    pub replaced: Vec<(String, u64)>,
}

/// What one edge says in a report.
#[derive(Debug, Clone, Default)]
pub struct EdgeReport {
    /// Edge id.
    pub edge_id: String,
    /// Display name.
    pub name: String,
    /// Sequence applied.
    pub applied_seq: u64,
    /// Live connections now.
    pub live_connections: i64,
    /// Connections closed per change: (seq, closed).
    pub closed: Vec<(u64, i64)>,
}

/// How far a change has reached the edges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Propagation {
    /// Edges that reported recently.
    pub edges_total: u32,
    /// Of those, edges that applied the change.
    pub edges_applied: u32,
    /// Connections the edges closed for the change.
    pub connections_closed: i64,
}

/// Edge-reported session activity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Activity {
    /// A request of the session was served; records address and edge.
    Seen {
        /// Session id.
        session_id: String,
        /// Client address.
        source_address: String,
        /// When.
        at_ms: Millis,
    },
    /// The session's live connections on the reporting edge changed by
    /// `delta` (edges before absolute counts).
    Connections {
        /// Session id.
        session_id: String,
        /// Opened minus closed.
        delta: i64,
    },
    /// The session has `connections` live connections on the reporting edge now.
    LiveConnections {
        /// Session id.
        session_id: String,
        /// How many.
        connections: i64,
    },
}

/// Change log, snapshots and the edges' view of them.
#[async_trait]
pub trait ChangeStore: Send + Sync {
    /// The latest committed sequence (0 when empty).
    async fn head_seq(&self) -> StoreResult<u64>;
    /// The smallest sequence still in the log, if any.
    async fn oldest_retained_seq(&self) -> StoreResult<Option<u64>>;
    /// Wire-encoded deltas with `seq > after`, in order, at most `limit`.
    async fn changes_after(&self, after: u64, limit: u32) -> StoreResult<Vec<(u64, Vec<u8>)>>;
    /// Deletes log rows with `seq < before`, keeping the newest row; returns how many.
    async fn prune_changes_before(&self, before: u64) -> StoreResult<u64>;
    /// A consistent full snapshot at the head sequence, rebuilt from the tables.
    async fn snapshot_body(&self, now: Millis) -> StoreResult<SnapshotBody>;
    /// Tells edges to forget terminations, revocations and locks that ended
    /// at or before `cutoff_s` (seconds); returns the change's sequence.
    async fn expire_before(&self, cutoff_s: i64, now: Millis) -> StoreResult<u64>;
}

/// Sessions and the actions that end them.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Records a login, enforcing the route's concurrent-session limit.
    async fn create_session(
        &self,
        new: NewSession,
        limit: Option<SessionLimit>,
        actor: &Actor,
        now: Millis,
    ) -> StoreResult<CreatedSession>;
    /// One session.
    async fn get_session(&self, id: &str) -> StoreResult<Option<SessionRecord>>;
    /// A page of sessions, newest first.
    async fn list_sessions(&self, filter: &SessionFilter, now: Millis) -> StoreResult<Vec<SessionRecord>>;
    /// Terminates one session (an admin's action: the user's next login
    /// must be a new sign-in at the IdP); `Ok(None)` when it had already ended.
    async fn terminate_session(&self, id: &str, reason: &str, actor: &Actor, now: Millis) -> StoreResult<Option<u64>> {
        Ok(self.terminate_session_returning(id, reason, actor, now).await?.0)
    }
    /// [`Self::terminate_session`], also answering the session as the
    /// termination's transaction left it (so the API need not read it again).
    async fn terminate_session_returning(
        &self,
        id: &str,
        reason: &str,
        actor: &Actor,
        now: Millis,
    ) -> StoreResult<(Option<u64>, SessionRecord)>;
    /// Ends one session because its user logged out (no new sign-in is
    /// demanded); `Ok(None)` when it had already ended.
    async fn end_session_at_logout(
        &self,
        id: &str,
        reason: &str,
        actor: &Actor,
        now: Millis,
    ) -> StoreResult<Option<u64>>;
    /// Ends every session of the user and revokes every token issued up to now.
    async fn terminate_user(
        &self,
        user: &UserRef,
        reason: &str,
        actor: &Actor,
        now: Millis,
    ) -> StoreResult<(u64, Vec<String>)>;
    /// Live sessions created from logins at `idp_issuer` with the IdP
    /// session `idp_session_id`, or (when it is `None`) of `subject`; for
    /// OIDC back-channel logout.
    async fn live_sessions_of_idp_login(
        &self,
        idp_issuer: &str,
        idp_session_id: Option<&str>,
        subject: Option<&str>,
        now: Millis,
    ) -> StoreResult<Vec<String>>;
    /// Applies batched edge activity.
    async fn apply_activity(&self, edge_id: &str, events: &[Activity], complete: bool) -> StoreResult<()>;
    /// Records that the ID token whose signed part hashes to `token_hash`
    /// (from `issuer`, accepted until `expires_ms`) is creating a session;
    /// `false` when it already did (a replay). Uses of tokens that can no
    /// longer be accepted are forgotten.
    async fn use_id_token(&self, token_hash: &str, issuer: &str, expires_ms: Millis, now: Millis) -> StoreResult<bool>;
}

/// User locks.
#[async_trait]
pub trait UserStore: Send + Sync {
    /// Locks the user (optionally until a time, seconds).
    async fn lock_user(
        &self,
        user: &UserRef,
        reason: &str,
        until_s: Option<i64>,
        actor: &Actor,
        now: Millis,
    ) -> StoreResult<u64>;
    /// Unlocks the user; with `end_sessions`, in the same transaction ends
    /// every session of theirs and revokes their tokens (a terminate-all,
    /// ordered before the unlock). The unlock's sequence and the sessions ended.
    async fn unlock_user(
        &self,
        user: &UserRef,
        reason: &str,
        end_sessions: bool,
        actor: &Actor,
        now: Millis,
    ) -> StoreResult<(u64, Vec<String>)>;
    /// The reason of a lock in force at `now_s` (seconds) on any of `users`.
    async fn active_lock(&self, users: &[UserRef], now_s: i64) -> StoreResult<Option<String>>;
    /// The lock in force at `now_s` (seconds) on the first of `users` that has one.
    async fn lock_in_force(&self, users: &[UserRef], now_s: i64) -> StoreResult<Option<Lock>>;
    /// Every lock in force at `now_s` (seconds), by user.
    async fn locks_in_force(&self, now_s: i64) -> StoreResult<std::collections::HashMap<UserRef, Lock>>;
}

/// Policy versions.
#[async_trait]
pub trait PolicyStore: Send + Sync {
    /// The version in force.
    async fn current_policy(&self) -> StoreResult<Option<PolicyVersion>>;
    /// One version.
    async fn policy_version(&self, version: i64) -> StoreResult<Option<PolicyVersion>>;
    /// Versions, newest first.
    async fn policy_history(&self, limit: u32) -> StoreResult<Vec<PolicyVersion>>;
    /// Stores a new version (already validated) and makes it current.
    async fn put_policy(&self, document: &str, message: &str, actor: &Actor, now: Millis) -> StoreResult<(i64, u64)>;
}

/// Admin and service tokens (hashes only) and signing keys.
#[async_trait]
pub trait TokenStore: Send + Sync {
    /// Stores a new token record.
    async fn insert_api_token(&self, record: &ApiTokenRecord, actor: &Actor, now: Millis) -> StoreResult<()>;
    /// Finds a token by the hash of its secret.
    async fn api_token_by_hash(&self, hash: &str) -> StoreResult<Option<ApiTokenRecord>>;
    /// Tokens of a kind, newest first.
    async fn list_api_tokens(&self, kind: &str) -> StoreResult<Vec<ApiTokenRecord>>;
    /// Records that a token was used at `now`, unless it was recorded in
    /// the minute before (so a busy token costs one write a minute).
    async fn record_token_use(&self, id: &str, now: Millis) -> StoreResult<()>;
    /// Revokes a token; service tokens make a change edges apply.
    async fn revoke_api_token(&self, id: &str, actor: &Actor, now: Millis) -> StoreResult<Option<u64>>;
    /// Session-signing keys, oldest first.
    async fn signing_keys(&self) -> StoreResult<Vec<SigningKeyRecord>>;
    /// Adds a signing key, retires the others, and publishes the public keys.
    async fn add_signing_key(&self, key: &SigningKeyRecord, actor: &Actor, now: Millis) -> StoreResult<u64>;
    /// Replaces a key's stored private key (sealing a legacy plain row).
    async fn reseal_signing_key(&self, kid: &str, private_pem: &str) -> StoreResult<()>;
    /// Revokes a signing key at once: it is no longer published, so every
    /// token it signed dies on every edge. `replacement` (required when the
    /// key is the current one) becomes the current key in the same change.
    /// `None` when there is no such key or it was already revoked.
    async fn revoke_signing_key(
        &self,
        kid: &str,
        replacement: Option<&SigningKeyRecord>,
        reason: &str,
        actor: &Actor,
        now: Millis,
    ) -> StoreResult<Option<u64>>;
}

/// The key that signs the edge stream (made and loaded by the `stream_key` module).
#[async_trait]
pub trait StreamKeyStore: Send + Sync {
    /// The current stream-signing key, if one was made.
    async fn current_stream_key(&self) -> StoreResult<Option<StreamKeyRecord>>;
    /// Stores `key` as the current stream-signing key (audited), unless
    /// another replica stored one first; true when this one was stored.
    async fn create_stream_key(&self, key: &StreamKeyRecord, actor: &Actor, now: Millis) -> StoreResult<bool>;
    /// The current key of another `purpose` kept the same way (`ssf`: the
    /// key Security Event Tokens are signed with).
    async fn current_key_for(&self, purpose: &str) -> StoreResult<Option<StreamKeyRecord>>;
    /// Stores the current key of `purpose`, unless another replica stored one first.
    async fn create_key_for(
        &self,
        purpose: &str,
        key: &StreamKeyRecord,
        actor: &Actor,
        now: Millis,
    ) -> StoreResult<bool>;
}

/// Edges and the audit log.
#[async_trait]
pub trait EdgeStore: Send + Sync {
    /// Records an edge's report (applied seq, closes per change).
    async fn record_edge_report(&self, report: &EdgeReport, now: Millis) -> StoreResult<()>;
    /// Known edges: (id, name, applied seq, last heartbeat, live connections).
    async fn list_edges(&self) -> StoreResult<Vec<(String, String, i64, Millis, i64)>>;
    /// How far change `seq` has reached edges that reported since `alive_since`.
    async fn propagation(&self, seq: u64, alive_since: Millis) -> StoreResult<Propagation>;
    /// Audit entries, newest first.
    async fn audit(&self, filter: &AuditFilter) -> StoreResult<Vec<AuditEntry>>;
    /// Records an action that makes no change for edges.
    async fn record_audit(
        &self,
        action: &str,
        target: &str,
        reason: &str,
        actor: &Actor,
        now: Millis,
    ) -> StoreResult<()>;
}

/// Everything the control plane stores.
pub trait Store:
    ChangeStore
    + SessionStore
    + UserStore
    + PolicyStore
    + TokenStore
    + StreamKeyStore
    + EdgeStore
    + EdgeIdentityStore
    + PortalStore
    + OutboxStore
    + SsfStore
{
}

impl<T> Store for T where
    T: ChangeStore
        + SessionStore
        + UserStore
        + PolicyStore
        + TokenStore
        + StreamKeyStore
        + EdgeStore
        + EdgeIdentityStore
        + PortalStore
        + OutboxStore
        + SsfStore
{
}
