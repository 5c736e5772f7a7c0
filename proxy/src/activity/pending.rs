//! The activity events waiting for the next report, bounded: while the
//! control plane is away every report fails and puts its events back, so
//! without a bound the queue grew for as long as the outage lasted.
//!
//! Two kinds of event wait here. Sightings (`seen`) only move a session's
//! "last seen" forward, and the session's next request after the outage
//! reports it again, so losing one is harmless. Audit events (`denied`,
//! `address_changed`, `flow_opened`, `flow_closed`) land in the audit log and
//! are evidence. So when the queue is full:
//!
//! - a new sighting is dropped;
//! - a new audit event takes the place of the oldest waiting sighting;
//! - with no sighting left to give way, the new audit event is dropped and
//!   the older ones are kept: a flood (many users denied, many flows) cannot
//!   push out the evidence of how an incident began.
//!
//! Every drop is counted by kind in `portcullis_edge_activity_events_dropped_total`.

use std::collections::VecDeque;

use portcullis_policy::edge_channel::ActivityEvent;
use prometheus::IntCounterVec;

/// Most events waiting for a report: 100,000 of a few hundred bytes each is
/// some tens of MB, about a minute of a busy edge's denials and flows at
/// their throttled rates, and fifty reports of `MAX_EVENTS_PER_REPORT` once
/// the control plane is back.
pub(super) const MAX_PENDING_EVENTS: usize = 100_000;

/// Pending events: audit events and sightings, each oldest first.
pub(super) struct PendingEvents {
    audit: VecDeque<ActivityEvent>,
    sightings: VecDeque<ActivityEvent>,
    dropped: IntCounterVec,
}

impl PendingEvents {
    /// An empty queue counting its drops in `dropped` (label `kind`).
    pub(super) fn new(dropped: IntCounterVec) -> Self {
        Self { audit: VecDeque::new(), sightings: VecDeque::new(), dropped }
    }

    fn len(&self) -> usize {
        self.audit.len() + self.sightings.len()
    }

    fn count_drop(&self, event: &ActivityEvent) {
        self.dropped.with_label_values(&[event.kind()]).inc();
    }

    /// Queues a sighting, unless the queue is full.
    pub(super) fn push_sighting(&mut self, event: ActivityEvent) {
        if self.len() >= MAX_PENDING_EVENTS {
            self.count_drop(&event);
        } else {
            self.sightings.push_back(event);
        }
    }

    /// Queues an audit event; when full, in place of the oldest sighting,
    /// or (with none) not at all.
    pub(super) fn push_audit(&mut self, event: ActivityEvent) {
        if self.len() >= MAX_PENDING_EVENTS {
            match self.sightings.pop_front() {
                Some(sighting) => self.count_drop(&sighting),
                None => return self.count_drop(&event),
            }
        }
        self.audit.push_back(event);
    }

    /// Up to `max` events for a report, audit events first; true when more wait.
    pub(super) fn take(&mut self, max: usize) -> (Vec<ActivityEvent>, bool) {
        let from_audit = self.audit.len().min(max);
        let from_sightings = self.sightings.len().min(max - from_audit);
        let mut events: Vec<ActivityEvent> = self.audit.drain(..from_audit).collect();
        events.extend(self.sightings.drain(..from_sightings));
        (events, self.len() > 0)
    }

    /// Puts the events of a failed report back in front, in their order.
    /// Events queued meanwhile may have filled the queue: then it is cut
    /// back to the bound as if each had arrived in order (sightings give way
    /// first, newest audit events last).
    pub(super) fn restore(&mut self, events: Vec<ActivityEvent>) {
        let (sightings, audit): (Vec<_>, Vec<_>) =
            events.into_iter().partition(|e| matches!(e, ActivityEvent::Seen { .. }));
        for event in audit.into_iter().rev() {
            self.audit.push_front(event);
        }
        for event in sightings.into_iter().rev() {
            self.sightings.push_front(event);
        }
        while self.len() > MAX_PENDING_EVENTS {
            if let Some(dropped) = self.sightings.pop_back().or_else(|| self.audit.pop_back()) {
                self.count_drop(&dropped);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An event of `kind`, numbered `n` (its `at_ms`).
    fn event(kind: &str, n: usize) -> ActivityEvent {
        let (at_ms, address) = (n as i64, "10.0.0.1".to_owned());
        match kind {
            "seen" => ActivityEvent::Seen { session_id: "s".into(), source_address: address, at_ms },
            "address_changed" => ActivityEvent::AddressChanged {
                session_id: "s".into(),
                from: address,
                to: "10.0.0.2".into(),
                denied: false,
                at_ms,
            },
            "denied" => ActivityEvent::Denied {
                user: "eve@corp.example".into(),
                session_id: None,
                route: "admin".into(),
                reason: "no rule allows".into(),
                source_address: address,
                at_ms,
                count: 1,
                first_at_ms: None,
                reference: None,
            },
            "flow_opened" => ActivityEvent::FlowOpened {
                session_id: None,
                user: "ci@corp.example".into(),
                route: "db".into(),
                target: "db.internal:5432".into(),
                source_address: address,
                flows: 1,
                first_at_ms: Some(at_ms),
                at_ms,
            },
            other => panic!("no test event of kind {other}"),
        }
    }

    /// A queue and its drop counter.
    fn queue() -> (PendingEvents, IntCounterVec) {
        let dropped = crate::metrics::activity_events_dropped();
        (PendingEvents::new(dropped.clone()), dropped)
    }

    fn dropped(counter: &IntCounterVec, kind: &str) -> u64 {
        counter.with_label_values(&[kind]).get()
    }

    /// Everything queued, in report order, as `kind n`.
    fn everything(queue: &mut PendingEvents) -> Vec<String> {
        let (events, more) = queue.take(usize::MAX);
        assert!(!more);
        events.iter().map(|e| format!("{} {}", e.kind(), serde_json::to_value(e).expect("JSON")["at_ms"])).collect()
    }

    #[test]
    fn a_full_queue_drops_new_sightings() {
        let (mut queue, counter) = queue();
        for n in 0..MAX_PENDING_EVENTS + 10 {
            queue.push_sighting(event("seen", n));
        }
        assert_eq!(dropped(&counter, "seen"), 10);
        let kept = everything(&mut queue);
        assert_eq!(kept.len(), MAX_PENDING_EVENTS);
        assert_eq!((kept[0].as_str(), kept[MAX_PENDING_EVENTS - 1].as_str()), ("seen 0", "seen 99999"));
    }

    #[test]
    fn audit_events_take_the_place_of_the_oldest_sightings() {
        let (mut queue, counter) = queue();
        for n in 0..MAX_PENDING_EVENTS {
            queue.push_sighting(event("seen", n));
        }
        queue.push_audit(event("denied", 0));
        queue.push_audit(event("address_changed", 1));
        queue.push_audit(event("flow_opened", 2));
        assert_eq!(dropped(&counter, "seen"), 3);
        assert_eq!(dropped(&counter, "denied") + dropped(&counter, "address_changed"), 0);
        let kept = everything(&mut queue);
        assert_eq!(kept.len(), MAX_PENDING_EVENTS);
        assert_eq!(kept[..4], ["denied 0", "address_changed 1", "flow_opened 2", "seen 3"]);
    }

    #[test]
    fn with_no_sighting_left_the_earliest_audit_events_are_kept() {
        let (mut queue, counter) = queue();
        for n in 0..MAX_PENDING_EVENTS {
            queue.push_audit(event("denied", n));
        }
        for n in 0..5 {
            queue.push_audit(event("address_changed", n));
            queue.push_sighting(event("seen", n));
        }
        assert_eq!((dropped(&counter, "address_changed"), dropped(&counter, "seen")), (5, 5));
        assert_eq!(dropped(&counter, "denied"), 0);
        let kept = everything(&mut queue);
        assert_eq!(kept.len(), MAX_PENDING_EVENTS);
        assert_eq!((kept[0].as_str(), kept[MAX_PENDING_EVENTS - 1].as_str()), ("denied 0", "denied 99999"));
    }

    #[test]
    fn a_failed_report_put_back_keeps_the_order_and_the_bound() {
        let (mut queue, counter) = queue();
        for n in 0..MAX_PENDING_EVENTS {
            queue.push_sighting(event("seen", n));
        }
        // A report takes 2,000 sightings; 2,000 denials arrive while it is
        // out; it fails and puts its sightings back.
        let (report, more) = queue.take(2_000);
        assert!(more);
        for n in 0..2_000 {
            queue.push_audit(event("denied", n));
        }
        assert_eq!(dropped(&counter, "seen"), 0, "there was room");
        queue.restore(report);
        // Over the bound by 2,000: the newest sightings give way.
        assert_eq!(dropped(&counter, "seen"), 2_000);
        let kept = everything(&mut queue);
        assert_eq!(kept.len(), MAX_PENDING_EVENTS);
        assert_eq!((kept[0].as_str(), kept[1_999].as_str()), ("denied 0", "denied 1999"));
        assert_eq!((kept[2_000].as_str(), kept[MAX_PENDING_EVENTS - 1].as_str()), ("seen 0", "seen 97999"));
    }
}
