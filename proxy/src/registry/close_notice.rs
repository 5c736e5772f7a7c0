//! What the task serving a connection learns about its close: why the
//! registry cancelled it (a [`KillReason`], recorded before the token is
//! cancelled; the first reason wins), and whether that task says goodbye
//! to the client itself, as the websocket relay does with a close frame
//! (`crate::upgrade`), and so gets a moment to do it before the accept
//! wrapper (`crate::killable`) drops the connection.
//!
//! Two atomics in each registry entry: the kill path allocates nothing
//! more, and a reader takes no lock beyond the map's shard read.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use tokio_util::sync::CancellationToken;

use super::{ConnKey, ConnRegistry, KillReason};

/// Every reason, in the order of their codes (code = index + 1; 0 = none).
const REASONS: [KillReason; 8] = [
    KillReason::SessionTerminated,
    KillReason::User,
    KillReason::TokenRevoked,
    KillReason::PolicyChanged,
    KillReason::Expired,
    KillReason::Stale,
    KillReason::KeyRevoked,
    KillReason::ClaimsChanged,
];

/// A reason's code (a new reason does not compile until it has one).
fn code(reason: KillReason) -> u8 {
    match reason {
        KillReason::SessionTerminated => 1,
        KillReason::User => 2,
        KillReason::TokenRevoked => 3,
        KillReason::PolicyChanged => 4,
        KillReason::Expired => 5,
        KillReason::Stale => 6,
        KillReason::KeyRevoked => 7,
        KillReason::ClaimsChanged => 8,
    }
}

/// Why an entry was cancelled, and whether its task says goodbye.
#[derive(Default)]
pub(super) struct CloseNotice {
    reason: AtomicU8,
    goodbye: AtomicBool,
}

impl CloseNotice {
    /// Records why the connection is about to be cancelled (first reason wins).
    pub(super) fn record(&self, reason: KillReason) {
        let _ = self.reason.compare_exchange(0, code(reason), Ordering::AcqRel, Ordering::Acquire);
    }

    fn reason(&self) -> Option<KillReason> {
        REASONS.get(usize::from(self.reason.load(Ordering::Acquire)).checked_sub(1)?).copied()
    }
}

impl ConnRegistry {
    /// The task serving `key` will tell the client why when the connection
    /// is cancelled (a websocket relay, once the upgrade is done): the
    /// accept wrapper then lets it finish for a moment instead of dropping
    /// it at once. Returns the token to watch; `None` when `key` is not
    /// registered.
    pub fn says_goodbye(&self, key: ConnKey) -> Option<CancellationToken> {
        let entry = self.conns.get(&key)?;
        entry.notice.goodbye.store(true, Ordering::Release);
        Some(entry.cancel.clone())
    }

    /// Whether the task serving `key` said it tells the client why.
    pub fn will_say_goodbye(&self, key: ConnKey) -> bool {
        self.conns.get(&key).is_some_and(|entry| entry.notice.goodbye.load(Ordering::Acquire))
    }

    /// Why `key` was cancelled; `None` while it is not (or not registered).
    pub fn kill_reason(&self, key: ConnKey) -> Option<KillReason> {
        self.conns.get(&key)?.notice.reason()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_its_own_code_and_the_first_one_recorded_wins() {
        for (at, reason) in REASONS.into_iter().enumerate() {
            assert_eq!(usize::from(code(reason)), at + 1, "{reason:?}");
            let notice = CloseNotice::default();
            assert_eq!(notice.reason(), None);
            notice.record(reason);
            notice.record(KillReason::Stale);
            assert_eq!(notice.reason(), Some(reason));
        }
    }

    #[test]
    fn the_registry_tells_the_serving_task_why_and_keeps_the_first_reason() {
        use super::super::{Binding, BoundTarget};
        let registry = ConnRegistry::new();
        let key = ConnKey { peer: ([127, 0, 0, 1], 50_000).into(), local: ([127, 0, 0, 1], 8080).into() };
        let registration = registry.register(key);
        let target = BoundTarget::Http { host: "app".into(), path: "/ws".into(), method: "GET".into() };
        let binding = Binding { identity: None, target, client_ip: [127, 0, 0, 1].into(), until: None };
        registry.bind(key, binding, false);
        assert!(!registry.will_say_goodbye(key));
        let token = registry.says_goodbye(key).expect("registered");
        assert!(registry.will_say_goodbye(key) && registry.kill_reason(key).is_none());
        assert_eq!(registry.close_where(|_| true, KillReason::Stale), 1);
        assert!(token.is_cancelled() && registration.cancelled.is_cancelled());
        assert_eq!(registry.close_where(|_| true, KillReason::Expired), 0, "already closed");
        assert_eq!(registry.kill_reason(key), Some(KillReason::Stale));
        drop(registration);
        assert_eq!(registry.kill_reason(key), None, "forgotten with the connection");
    }
}
