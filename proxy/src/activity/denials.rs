//! Denials an edge reports: the first ones as they happen, and the rest of
//! a burst summed, so the audit log shows how many requests were refused
//! without one row per request.
//!
//! Per user, route and reason (identities without a session), one denial
//! is reported per [`DENIAL_EVERY_MS`] window; per session, up to
//! [`SESSION_DENIALS_PER_WINDOW`] (response rules count a session's
//! denials). Denials past that are counted per (user, session, route,
//! reason) and reported once their window ends, as one `denied` event with
//! `count` and the time of the first and the last. Nothing here allocates
//! unless an event is due or a new kind of denial starts being summed.
//!
//! Every denial shows its client a [`DenialReference`] instead of the
//! policy's reason, and the reference must find the audit row that stands
//! for it. A denial reported one by one gets a fresh one, carried by its
//! event. A burst being summed draws one when its sum starts, and every
//! denial summed into it shows that same reference, which the summed event
//! carries: one row, one reference, and each client of the burst was shown
//! it. (A denial the full summing table drops gets a reference no row
//! carries; the edge logs it with the details, and the drop is counted.)

use std::hash::BuildHasher;
use std::net::IpAddr;

use dashmap::DashMap;
use portcullis_policy::edge_channel::{ActivityEvent, DenialReference};
use portcullis_policy::SessionId;

/// The same denial is reported at most this often, or, for a session's
/// denials (which response rules count), at most
/// [`SESSION_DENIALS_PER_WINDOW`] times in this long.
pub(super) const DENIAL_EVERY_MS: i64 = 10_000;
/// A session's denials reported one by one per [`DENIAL_EVERY_MS`] window:
/// enough for a response rule such as "5 denials within a minute" to see
/// each one, few enough that a client hammering a denied path cannot flood
/// the audit log.
pub(super) const SESSION_DENIALS_PER_WINDOW: u32 = 20;
/// Most remembered denial windows, and most denial kinds being summed.
const MAX_REMEMBERED: usize = 100_000;

/// Denials held back, summed until their window ends.
struct Summed {
    event: ActivityEvent,
    window_start: i64,
}

/// What a denial comes to.
pub(super) enum Verdict {
    /// Report it now ([`Denial::event`], with a fresh reference).
    Report,
    /// Summed; reported when its window ends, with this reference.
    Summed(DenialReference),
    /// Neither: the summing table is full (counted as dropped).
    Dropped,
}

/// A fresh reference (60 random bits from the thread's CSPRNG), drawn only
/// for a denial.
pub(super) fn new_reference() -> DenialReference {
    DenialReference::from_random(rand::random())
}

/// The denial throttle and the sums of what it held back.
#[derive(Default)]
pub(super) struct DenialThrottle {
    windows: DashMap<u64, (i64, u32)>,
    summed: DashMap<u64, Summed>,
    hasher: foldhash::fast::RandomState,
}

/// One denial, as the request path describes it.
pub(super) struct Denial<'a> {
    pub user: &'a str,
    pub session: Option<SessionId>,
    pub route: &'a str,
    pub reason: &'a str,
    pub source: IpAddr,
}

impl Denial<'_> {
    /// The denial as reported one by one, with the reference its client was shown.
    pub(super) fn event(&self, at_ms: i64, reference: DenialReference) -> ActivityEvent {
        ActivityEvent::Denied {
            user: self.user.to_owned(),
            session_id: self.session.map(|s| s.to_string()),
            route: self.route.to_owned(),
            reason: self.reason.to_owned(),
            source_address: self.source.to_string(),
            at_ms,
            count: 1,
            first_at_ms: None,
            reference: Some(reference),
        }
    }
}

impl DenialThrottle {
    /// Decides what `denial` at `now_ms` comes to.
    pub(super) fn judge(&self, denial: &Denial<'_>, now_ms: i64) -> Verdict {
        let (key, allowed) = match denial.session {
            Some(session) => (self.hasher.hash_one(session), SESSION_DENIALS_PER_WINDOW),
            None => (self.hasher.hash_one((denial.user, denial.route, denial.reason)), 1),
        };
        let window = match self.windows.get(&key).map(|w| *w) {
            Some((start, count)) if now_ms - start < DENIAL_EVERY_MS => {
                if count >= allowed {
                    return self.sum(denial, start, now_ms);
                }
                (start, count + 1)
            }
            _ => (now_ms, 1),
        };
        if self.windows.len() >= MAX_REMEMBERED {
            self.windows.clear();
        }
        self.windows.insert(key, window);
        Verdict::Report
    }

    /// Adds `denial` to the sum of its kind in the window that began at `window_start`.
    fn sum(&self, denial: &Denial<'_>, window_start: i64, now_ms: i64) -> Verdict {
        let key = self.hasher.hash_one((denial.user, denial.session, denial.route, denial.reason));
        if let Some(mut summed) = self.summed.get_mut(&key) {
            if let ActivityEvent::Denied { count, at_ms, reference: Some(reference), .. } = &mut summed.event {
                *count += 1;
                *at_ms = now_ms;
                return Verdict::Summed(*reference);
            }
        }
        if self.summed.len() >= MAX_REMEMBERED {
            return Verdict::Dropped;
        }
        let reference = new_reference();
        let mut event = denial.event(now_ms, reference);
        if let ActivityEvent::Denied { first_at_ms, .. } = &mut event {
            *first_at_ms = Some(now_ms);
        }
        self.summed.insert(key, Summed { event, window_start });
        Verdict::Summed(reference)
    }

    /// The sums whose window has ended by `now_ms`, as events: `count`
    /// denials from `first_at_ms` to `at_ms`.
    pub(super) fn take_ended(&self, now_ms: i64) -> Vec<ActivityEvent> {
        let ended: Vec<u64> =
            self.summed.iter().filter(|s| now_ms - s.window_start >= DENIAL_EVERY_MS).map(|s| *s.key()).collect();
        ended.iter().filter_map(|key| self.summed.remove(key)).map(|(_, summed)| summed.event).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::super::ActivityLog;
    use super::*;
    use crate::registry::ConnRegistry;

    /// Every reference a client was shown is carried by exactly one
    /// reported event, and those events count every denial: one by one,
    /// summed per session, and summed for identities without a session.
    #[test]
    fn every_reference_shown_is_carried_by_the_one_event_that_counts_it() {
        let log = ActivityLog::default();
        let session = Some(SessionId::from_bytes([7; 16]));
        let from = IpAddr::from([198, 51, 100, 4]);
        let mut shown = Vec::new();
        for i in 0..45 {
            shown.push(log.denied("eve@corp.example", session, "admin", "locked", from, 1_000 + i));
            shown.push(log.denied("ci-bot", None, "admin", "no rule allows", from, 1_000 + i));
        }
        let mut carried: HashMap<DenialReference, u64> = HashMap::new();
        let registry = ConnRegistry::new();
        let events = [log.batch(&registry, 1_100).events, log.batch(&registry, 20_000).events].concat();
        for event in events {
            if let ActivityEvent::Denied { reference: Some(reference), count, .. } = event {
                assert!(carried.insert(reference, count).is_none(), "{reference} carried twice");
            }
        }
        let distinct: std::collections::HashSet<_> = shown.iter().collect();
        assert_eq!(distinct.len(), carried.len(), "each reference shown, and only those, is reported");
        for reference in &shown {
            assert!(carried.contains_key(reference), "{reference} was shown but no event carries it");
        }
        assert_eq!(carried.values().sum::<u64>(), 90, "and the events count every denial");
        assert_eq!(carried.len(), SESSION_DENIALS_PER_WINDOW as usize + 1 + 2, "20 + 1 sum, 1 + 1 sum");
    }
}
