//! Which event types we understand and what each does by default: the
//! mapping from a Shared Signals event to a response (terminate a session,
//! terminate the user, lock, re-evaluate with new claims, or only audit).
//! Pure: no IO, so the table is tested as a table.

use serde_json::Value;

const CAEP: &str = "https://schemas.openid.net/secevent/caep/event-type/";
const RISC: &str = "https://schemas.openid.net/secevent/risc/event-type/";
const SSF: &str = "https://schemas.openid.net/secevent/ssf/event-type/";

/// The event types we act on (CAEP 1.0, RISC 1.0, SSF 1.0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventKind {
    /// CAEP: one session ended at the transmitter.
    SessionRevoked,
    /// CAEP: the user's claims (groups) changed.
    TokenClaimsChange,
    /// CAEP: a credential was created, changed, revoked or deleted.
    CredentialChange,
    /// CAEP: the authentication assurance level changed.
    AssuranceLevelChange,
    /// CAEP: the device's compliance changed.
    DeviceComplianceChange,
    /// CAEP: the user's or device's risk level changed.
    RiskLevelChange,
    /// RISC: every session of the account ended.
    SessionsRevoked,
    /// RISC: the account was disabled.
    AccountDisabled,
    /// RISC: the account was deleted.
    AccountPurged,
    /// RISC: the account was enabled again.
    AccountEnabled,
    /// RISC: a credential is known to be compromised.
    CredentialCompromise,
    /// RISC: the user must change a credential.
    AccountCredentialChangeRequired,
    /// SSF: the answer to a verification request.
    Verification,
    /// SSF: the transmitter changed our stream's status.
    StreamUpdated,
}

const KINDS: &[(EventKind, &str, &str)] = &[
    (EventKind::SessionRevoked, CAEP, "session-revoked"),
    (EventKind::TokenClaimsChange, CAEP, "token-claims-change"),
    (EventKind::CredentialChange, CAEP, "credential-change"),
    (EventKind::AssuranceLevelChange, CAEP, "assurance-level-change"),
    (EventKind::DeviceComplianceChange, CAEP, "device-compliance-change"),
    (EventKind::RiskLevelChange, CAEP, "risk-level-change"),
    (EventKind::SessionsRevoked, RISC, "sessions-revoked"),
    (EventKind::AccountDisabled, RISC, "account-disabled"),
    (EventKind::AccountPurged, RISC, "account-purged"),
    (EventKind::AccountEnabled, RISC, "account-enabled"),
    (EventKind::CredentialCompromise, RISC, "credential-compromise"),
    (EventKind::AccountCredentialChangeRequired, RISC, "account-credential-change-required"),
    (EventKind::Verification, SSF, "verification"),
    (EventKind::StreamUpdated, SSF, "stream-updated"),
];

impl EventKind {
    /// The kind of an event type URI; `None`: not one we know (ignored, audited).
    pub fn from_uri(uri: &str) -> Option<Self> {
        KINDS.iter().find(|(_, base, short)| uri.strip_prefix(base) == Some(short)).map(|(kind, ..)| *kind)
    }

    /// The kind of a short name (`session-revoked`), as written in configuration.
    pub fn from_short_name(name: &str) -> Option<Self> {
        KINDS.iter().find(|(_, _, short)| *short == name).map(|(kind, ..)| *kind)
    }

    /// The short name.
    pub fn short_name(self) -> &'static str {
        KINDS.iter().find(|(kind, ..)| *kind == self).map_or("", |(_, _, short)| short)
    }

    /// Every short name, for error messages.
    pub fn short_names() -> String {
        KINDS.iter().map(|(_, _, short)| *short).collect::<Vec<_>>().join(", ")
    }

    /// The event type URI.
    pub fn uri(self) -> String {
        KINDS
            .iter()
            .find(|(kind, ..)| *kind == self)
            .map_or_else(String::new, |(_, base, short)| format!("{base}{short}"))
    }

    /// What the event does unless configured otherwise.
    pub fn default_response(self) -> Response {
        match self {
            Self::SessionRevoked => Response::TerminateSession,
            Self::TokenClaimsChange => Response::Reevaluate,
            Self::CredentialChange | Self::SessionsRevoked | Self::AccountCredentialChangeRequired => {
                Response::TerminateUser
            }
            Self::AssuranceLevelChange | Self::DeviceComplianceChange => Response::TerminateSession,
            Self::RiskLevelChange => Response::TerminateUser,
            Self::AccountDisabled | Self::AccountPurged => Response::Lock,
            Self::CredentialCompromise => Response::TerminateAndLock,
            Self::AccountEnabled | Self::Verification | Self::StreamUpdated => Response::Ignore,
        }
    }

    /// Whether this occurrence warrants the response: changes that can go
    /// either way act only when they go the wrong way (assurance decreased,
    /// device no longer compliant, risk now high).
    pub fn is_degradation(self, event: &Value) -> bool {
        let field = |name: &str| event.get(name).and_then(Value::as_str).map(str::to_ascii_lowercase);
        match self {
            Self::AssuranceLevelChange => field("change_direction").as_deref() != Some("increase"),
            Self::DeviceComplianceChange => field("current_status").as_deref() == Some("not-compliant"),
            Self::RiskLevelChange => field("current_level").as_deref() == Some("high"),
            _ => true,
        }
    }
}

/// Every event type URI we act on (what a stream asks for).
pub fn all_uris() -> Vec<String> {
    KINDS.iter().map(|(_, base, short)| format!("{base}{short}")).collect()
}

/// What an event does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Response {
    /// Only audited.
    Ignore,
    /// The session the subject names (by the IdP's session id); the user's
    /// sessions if it names none.
    TerminateSession,
    /// Every session of the user, and a new sign-in at the IdP required.
    TerminateUser,
    /// The user is locked (which closes every connection).
    Lock,
    /// Terminate the user, then lock.
    TerminateAndLock,
    /// Re-evaluate the user's live connections with the event's claims.
    Reevaluate,
}

impl Response {
    /// Every name, for error messages.
    pub const NAMES: &'static str = "ignore, terminate_session, terminate_user, lock, terminate_and_lock, reevaluate";

    /// Parses a configured name.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "ignore" => Self::Ignore,
            "terminate_session" => Self::TerminateSession,
            "terminate_user" => Self::TerminateUser,
            "lock" => Self::Lock,
            "terminate_and_lock" => Self::TerminateAndLock,
            "reevaluate" => Self::Reevaluate,
            _ => return None,
        })
    }

    /// The name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ignore => "ignore",
            Self::TerminateSession => "terminate_session",
            Self::TerminateUser => "terminate_user",
            Self::Lock => "lock",
            Self::TerminateAndLock => "terminate_and_lock",
            Self::Reevaluate => "reevaluate",
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::termination::{CAEP_SESSION_REVOKED, RISC_ACCOUNT_DISABLED, RISC_SESSIONS_REVOKED};

    #[test]
    fn every_kind_round_trips_its_uri_and_name() {
        for (kind, base, short) in KINDS {
            assert_eq!(EventKind::from_uri(&format!("{base}{short}")), Some(*kind));
            assert_eq!(EventKind::from_short_name(short), Some(*kind));
            assert_eq!(kind.short_name(), *short);
        }
        assert_eq!(EventKind::from_uri(CAEP_SESSION_REVOKED), Some(EventKind::SessionRevoked));
        assert_eq!(EventKind::from_uri(RISC_SESSIONS_REVOKED), Some(EventKind::SessionsRevoked));
        assert_eq!(EventKind::from_uri(RISC_ACCOUNT_DISABLED), Some(EventKind::AccountDisabled));
        assert_eq!(EventKind::from_uri("https://schemas.openid.net/secevent/caep/event-type/session-revokedX"), None);
        assert_eq!(EventKind::from_uri("https://evil.example/caep/event-type/session-revoked"), None);
    }

    #[test]
    fn two_way_changes_act_only_when_they_degrade() {
        let kind = EventKind::AssuranceLevelChange;
        assert!(kind.is_degradation(&json!({"change_direction": "decrease"})));
        assert!(!kind.is_degradation(&json!({"change_direction": "increase"})));
        let kind = EventKind::DeviceComplianceChange;
        assert!(kind.is_degradation(&json!({"current_status": "not-compliant"})));
        assert!(!kind.is_degradation(&json!({"current_status": "compliant"})));
        assert!(EventKind::RiskLevelChange.is_degradation(&json!({"current_level": "HIGH"})));
        assert!(!EventKind::RiskLevelChange.is_degradation(&json!({"current_level": "LOW"})));
    }
}
