//! Why connections were closed ([`KillReason`]), and the record of each
//! connection the registry closed, kept until the next report names them
//! to the control plane (which files them in the audit log as
//! `connection.closed`: user, session, route, source, reason).
//!
//! The kill path cancels first and records after, one lock per kill (not
//! per connection); the record is bounded, and what does not fit is
//! counted, never blocks a kill.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::Binding;

/// Most closed connections remembered between two reports (about 150 bytes
/// each); past that, closes are only counted.
pub const MAX_CLOSED_REMEMBERED: usize = 50_000;

/// A binding of a connection the registry closed.
#[derive(Debug, Clone)]
pub struct ClosedConnection {
    /// What the connection was admitted as.
    pub binding: Binding,
    /// Why it was closed.
    pub reason: KillReason,
    /// When (Unix ms).
    pub at_ms: i64,
}

/// Closed connections not yet reported.
#[derive(Default)]
pub(super) struct ClosedLog {
    entries: Mutex<Vec<ClosedConnection>>,
    overflow: AtomicU64,
}

impl ClosedLog {
    /// Remembers `closed`, up to the bound.
    pub(super) fn record(&self, closed: Vec<ClosedConnection>) {
        if closed.is_empty() {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let room = MAX_CLOSED_REMEMBERED.saturating_sub(entries.len());
        let lost = closed.len().saturating_sub(room);
        entries.extend(closed.into_iter().take(room));
        drop(entries);
        if lost > 0 {
            self.overflow.fetch_add(lost as u64, Ordering::Relaxed);
        }
    }

    /// Everything remembered, and how many closes did not fit since the last call.
    pub(super) fn take(&self) -> (Vec<ClosedConnection>, u64) {
        let entries = std::mem::take(&mut *self.entries.lock().unwrap_or_else(|e| e.into_inner()));
        (entries, self.overflow.swap(0, Ordering::Relaxed))
    }
}

/// Why connections were closed (a metrics label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KillReason {
    /// The session was terminated.
    SessionTerminated,
    /// The user was terminated or locked.
    User,
    /// The token was revoked.
    TokenRevoked,
    /// The policy no longer allows it.
    PolicyChanged,
    /// The token expired or a time limit of the policy lapsed.
    Expired,
    /// The snapshot went stale on a route whose `stale_mode` is `deny`.
    Stale,
    /// The control-plane key that signed the session was revoked.
    KeyRevoked,
    /// The user's groups changed and no longer allow it.
    ClaimsChanged,
}

impl KillReason {
    /// The metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SessionTerminated => "session_terminated",
            Self::User => "user",
            Self::TokenRevoked => "token_revoked",
            Self::PolicyChanged => "policy_changed",
            Self::Expired => "expired",
            Self::Stale => "stale_snapshot",
            Self::KeyRevoked => "key_revoked",
            Self::ClaimsChanged => "claims_changed",
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use crate::registry::BoundTarget;

    fn closed(n: usize) -> Vec<ClosedConnection> {
        let binding = Binding {
            identity: None,
            target: BoundTarget::Tcp { name: "db".into() },
            client_ip: IpAddr::from([127, 0, 0, 1]),
            until: None,
        };
        vec![ClosedConnection { binding, reason: KillReason::PolicyChanged, at_ms: 1 }; n]
    }

    #[test]
    fn the_record_is_bounded_and_counts_what_did_not_fit() {
        let log = ClosedLog::default();
        log.record(closed(MAX_CLOSED_REMEMBERED - 1));
        log.record(closed(3));
        let (entries, overflow) = log.take();
        assert_eq!((entries.len(), overflow), (MAX_CLOSED_REMEMBERED, 2));
        assert_eq!(log.take().0.len(), 0, "taken once");
    }
}
