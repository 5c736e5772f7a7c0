//! What an admin ended, for whom: the event the outbox carries to relying
//! parties (and later to the SIEM sinks). Below the store and the
//! connectors, so both speak of the same thing.

use serde::{Deserialize, Serialize};

/// The admin actions other systems can follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// One session ended by an admin.
    TerminateSession,
    /// Every session of a user ended ("terminate bob@…").
    TerminateUser,
    /// A user locked.
    Lock,
}

/// CAEP (OpenID Continuous Access Evaluation Profile 1.0): a session ended.
pub const CAEP_SESSION_REVOKED: &str = "https://schemas.openid.net/secevent/caep/event-type/session-revoked";
/// RISC (OpenID RISC Profile 1.0): every session of the account ended.
pub const RISC_SESSIONS_REVOKED: &str = "https://schemas.openid.net/secevent/risc/event-type/sessions-revoked";
/// RISC: the account was disabled (a lock).
pub const RISC_ACCOUNT_DISABLED: &str = "https://schemas.openid.net/secevent/risc/event-type/account-disabled";
/// SSF 1.0: a verification event, on a receiver's request.
pub const SSF_VERIFICATION: &str = "https://schemas.openid.net/secevent/ssf/event-type/verification";

impl Action {
    /// The Shared Signals event types this action is told as, in order of
    /// preference (a stream gets each it asked for).
    pub fn ssf_event_types(self) -> &'static [&'static str] {
        match self {
            Self::TerminateSession => &[CAEP_SESSION_REVOKED],
            Self::TerminateUser => &[RISC_SESSIONS_REVOKED, CAEP_SESSION_REVOKED],
            Self::Lock => &[RISC_ACCOUNT_DISABLED],
        }
    }

    /// The name used in configuration, events and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TerminateSession => "terminate_session",
            Self::TerminateUser => "terminate_user",
            Self::Lock => "lock",
        }
    }
}

/// One committed action on a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Termination {
    /// What the admin did.
    pub action: Action,
    /// The user, as `email:…` or `sub:…`.
    pub user: String,
    /// The email, when the control plane knows it (a subject-only action
    /// on a user who never logged in has none).
    pub email: Option<String>,
    /// The Portcullis session ended, for `terminate_session`.
    pub session_id: Option<String>,
    /// The admin's reason.
    pub reason: String,
    /// When the action committed, milliseconds since the epoch.
    pub at_ms: i64,
}

impl Termination {
    /// The email a relying party is asked about, if any.
    pub fn email(&self) -> Option<&str> {
        self.email.as_deref().or_else(|| self.user.strip_prefix("email:"))
    }

    /// The IdP subject, when the action named one.
    pub fn subject(&self) -> Option<&str> {
        self.user.strip_prefix("sub:")
    }
}
