//! A timer wheel of whole seconds: connections filed under the Unix second
//! at which their admission stops holding, taken out second by second as
//! the clock passes. Filing is a sharded-map push; finding what is due
//! looks only at the seconds that passed, never at every connection.
//!
//! A connection may be filed more than once (its deadline moved); taking
//! a stale filing only costs a re-check that finds it still allowed.

use std::sync::atomic::{AtomicI64, Ordering};

use dashmap::DashMap;

use super::ConnKey;

/// Connections by the second they are due.
#[derive(Default)]
pub struct DeadlineWheel {
    slots: DashMap<i64, Vec<ConnKey>, foldhash::fast::RandomState>,
    /// Every second up to this one has been taken.
    swept: AtomicI64,
}

impl DeadlineWheel {
    /// Files `key` as due at Unix second `at`.
    pub fn file(&self, at: i64, key: ConnKey) {
        // A deadline already swept past goes into the next sweep.
        let at = at.max(self.swept.load(Ordering::Relaxed) + 1);
        let mut slot = self.slots.entry(at).or_default();
        if !slot.contains(&key) {
            slot.push(key);
        }
    }

    /// Takes every connection due at or before `now`.
    pub fn take_due(&self, now: i64) -> Vec<ConnKey> {
        let from = self.swept.swap(now, Ordering::AcqRel);
        let mut due = Vec::new();
        if from == 0 || now - from > 3600 {
            // First sweep, or a long pause: look at the filed seconds instead of counting through them.
            let seconds: Vec<i64> = self.slots.iter().map(|e| *e.key()).filter(|s| *s <= now).collect();
            for second in seconds {
                due.extend(self.slots.remove(&second).map(|(_, keys)| keys).unwrap_or_default());
            }
        } else {
            for second in from + 1..=now {
                due.extend(self.slots.remove(&second).map(|(_, keys)| keys).unwrap_or_default());
            }
        }
        due.sort_unstable_by_key(|k| (k.peer, k.local));
        due.dedup();
        due
    }

    /// Filings waiting.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.slots.iter().map(|e| e.value().len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    fn key(port: u16) -> ConnKey {
        ConnKey { peer: SocketAddr::from(([127, 0, 0, 1], port)), local: SocketAddr::from(([127, 0, 0, 1], 80)) }
    }

    #[test]
    fn connections_come_due_at_their_second_and_only_once() {
        let wheel = DeadlineWheel::default();
        assert!(wheel.take_due(1_000).is_empty());
        wheel.file(1_005, key(1));
        wheel.file(1_010, key(2));
        wheel.file(1_005, key(1));
        assert!(wheel.take_due(1_004).is_empty());
        assert_eq!(wheel.take_due(1_007), vec![key(1)]);
        assert!(wheel.take_due(1_007).is_empty());
        wheel.file(1_003, key(3)); // already past: due at the next sweep
        assert_eq!(wheel.take_due(1_008), vec![key(3)]);
        assert_eq!(wheel.take_due(1_010), vec![key(2)]);
        assert_eq!(wheel.len(), 0);
    }

    #[test]
    fn a_long_pause_does_not_count_through_every_second() {
        let wheel = DeadlineWheel::default();
        wheel.take_due(10);
        wheel.file(20, key(1));
        wheel.file(i64::MAX / 2, key(2));
        assert_eq!(wheel.take_due(1_000_000_000), vec![key(1)]);
        assert_eq!(wheel.len(), 1);
    }
}
