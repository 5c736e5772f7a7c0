//! Session activity this edge reports to the control plane, batched with
//! every report: a session seen (at once the first time, then at most every
//! few seconds, with the client address), and the change in each session's
//! live connections since the last successful report. The control plane's
//! session list shows them live (last seen, addresses, edges, connections).
//! Denials and changes of a session's source address are reported too (once
//! per session and address, and at most every few seconds per user, route
//! and reason), and land in the audit log. TCP flows are reported when they
//! open and when they close (identity, route, source, bytes each way,
//! duration); the control plane writes both to the audit log.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use dashmap::DashMap;
use portcullis_policy::SessionId;
use serde_json::{json, Value};

use crate::registry::ConnRegistry;

/// A session seen again within this many milliseconds is not reported again.
const SEEN_EVERY_MS: i64 = 5_000;
/// Sessions not seen for this long are forgotten by the throttle.
const FORGET_AFTER_MS: i64 = 3_600_000;

/// The same denial is reported at most this often.
const DENIAL_EVERY_MS: i64 = 10_000;
/// Most remembered (session, address) pairs and denial keys.
const MAX_REMEMBERED: usize = 100_000;
/// Flow events kept while the control plane cannot be reached; beyond this
/// they are dropped (and counted) rather than grow without bound.
const MAX_PENDING_FLOW_EVENTS: usize = 200_000;

/// A TCP flow, as reported.
#[derive(Debug, Clone)]
pub struct FlowFacts {
    /// The session, for session tokens.
    pub session: Option<SessionId>,
    /// Email, or subject for identities without one (empty when anonymous).
    pub user: String,
    /// Route name.
    pub route: String,
    /// The CONNECT target.
    pub target: String,
    /// The client's address.
    pub source: IpAddr,
}

/// Pending activity.
#[derive(Default)]
pub struct ActivityLog {
    last_seen: DashMap<SessionId, i64>,
    address_changes: DashMap<(SessionId, IpAddr), ()>,
    last_denial: DashMap<u64, i64>,
    hasher: foldhash::fast::RandomState,
    pending: Mutex<Vec<Value>>,
    reported_connections: Mutex<HashMap<SessionId, i64>>,
    dropped_flow_events: std::sync::atomic::AtomicU64,
}

/// What one report carries, committed only once the report is accepted.
pub struct ActivityBatch {
    /// Events to send.
    pub events: Vec<Value>,
    counts: HashMap<SessionId, i64>,
}

impl ActivityLog {
    /// Records that a request of `session` from `source` was served at
    /// `now_ms`. On the request path: nothing is allocated unless a sighting
    /// is due.
    pub fn seen(&self, session: SessionId, source: IpAddr, now_ms: i64) {
        let due = self.last_seen.get(&session).is_none_or(|at| now_ms - *at >= SEEN_EVERY_MS);
        if due {
            self.last_seen.insert(session, now_ms);
            let event = json!({"kind": "seen", "session_id": session.to_string(), "source_address": source.to_string(), "at_ms": now_ms});
            self.pending.lock().unwrap_or_else(|e| e.into_inner()).push(event);
        }
    }

    /// Records that `session`, logged in from `from`, was used from `to`;
    /// `denied` when the route refused it for that. Reported once per
    /// session and address.
    pub fn address_changed(&self, session: SessionId, from: &str, to: IpAddr, denied: bool, now_ms: i64) {
        if self.address_changes.len() >= MAX_REMEMBERED {
            self.address_changes.clear();
        }
        if self.address_changes.insert((session, to), ()).is_none() {
            let event = json!({"kind": "address_changed", "session_id": session.to_string(), "from": from,
                "to": to.to_string(), "denied": denied, "at_ms": now_ms});
            self.pending.lock().unwrap_or_else(|e| e.into_inner()).push(event);
        }
    }

    /// Records a denial of `user` (email, or subject) on `route`.
    pub fn denied(
        &self,
        user: &str,
        session: Option<SessionId>,
        route: &str,
        reason: &str,
        source: IpAddr,
        now_ms: i64,
    ) {
        let key = std::hash::BuildHasher::hash_one(&self.hasher, (user, route, reason));
        if self.last_denial.get(&key).is_some_and(|at| now_ms - *at < DENIAL_EVERY_MS) {
            return;
        }
        if self.last_denial.len() >= MAX_REMEMBERED {
            self.last_denial.clear();
        }
        self.last_denial.insert(key, now_ms);
        let event = json!({"kind": "denied", "user": user, "session_id": session.map(|s| s.to_string()),
            "route": route, "reason": reason, "source_address": source.to_string(), "at_ms": now_ms});
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).push(event);
    }

    /// Records that a flow opened at `now_ms`.
    pub fn flow_opened(&self, flow: &FlowFacts, now_ms: i64) {
        let event = json!({"kind": "flow_opened", "session_id": flow.session.map(|s| s.to_string()),
            "user": flow.user, "route": flow.route, "target": flow.target,
            "source_address": flow.source.to_string(), "at_ms": now_ms});
        self.push_flow_event(event);
    }

    /// Records that a flow opened at `opened_ms` closed at `now_ms` after
    /// `up` bytes from the client and `down` bytes to it; `ended_by` says how.
    pub fn flow_closed(&self, flow: &FlowFacts, up: u64, down: u64, opened_ms: i64, now_ms: i64, ended_by: &str) {
        let event = json!({"kind": "flow_closed", "session_id": flow.session.map(|s| s.to_string()),
            "user": flow.user, "route": flow.route, "target": flow.target,
            "source_address": flow.source.to_string(), "bytes_up": up, "bytes_down": down,
            "opened_at_ms": opened_ms, "duration_ms": (now_ms - opened_ms).max(0), "ended_by": ended_by,
            "at_ms": now_ms});
        self.push_flow_event(event);
    }

    fn push_flow_event(&self, event: Value) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if pending.len() >= MAX_PENDING_FLOW_EVENTS {
            self.dropped_flow_events.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        } else {
            pending.push(event);
        }
    }

    /// Flow events dropped because too many were waiting for the control plane.
    pub fn dropped_flow_events(&self) -> u64 {
        self.dropped_flow_events.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The events for the next report: sightings, and connection-count
    /// changes since the last committed report.
    pub fn batch(&self, registry: &ConnRegistry, now_ms: i64) -> ActivityBatch {
        self.last_seen.retain(|_, at| now_ms - *at < FORGET_AFTER_MS);
        let mut events = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        let counts = registry.connections_per_session();
        let reported = self.reported_connections.lock().unwrap_or_else(|e| e.into_inner());
        for session in counts.keys().chain(reported.keys().filter(|s| !counts.contains_key(s))) {
            let delta = counts.get(session).copied().unwrap_or(0) - reported.get(session).copied().unwrap_or(0);
            if delta != 0 {
                events.push(json!({"kind": "connections", "session_id": session.to_string(), "delta": delta}));
            }
        }
        ActivityBatch { events, counts }
    }

    /// The report was accepted: its counts are now the baseline.
    pub fn commit(&self, batch: ActivityBatch) {
        *self.reported_connections.lock().unwrap_or_else(|e| e.into_inner()) = batch.counts;
    }

    /// The report failed: keep its events (not the counts, which are
    /// recomputed) for the next one.
    pub fn restore(&self, batch: ActivityBatch) {
        let sightings = batch.events.into_iter().filter(|e| e["kind"] != "connections");
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).extend(sightings);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sightings_are_throttled_per_session() {
        let log = ActivityLog::default();
        let (a, b) = (SessionId::from_bytes([1; 16]), SessionId::from_bytes([2; 16]));
        let (local, other) = (IpAddr::from([127, 0, 0, 1]), IpAddr::from([10, 0, 0, 1]));
        log.seen(a, local, 1_000);
        log.seen(a, local, 2_000);
        log.seen(b, other, 2_000);
        log.seen(a, local, 7_000);
        let registry = ConnRegistry::new();
        let batch = log.batch(&registry, 7_000);
        assert_eq!(batch.events.len(), 3, "{:?}", batch.events);
        log.restore(batch);
        assert_eq!(log.batch(&registry, 7_000).events.len(), 3, "a failed report loses no sighting");
    }

    #[test]
    fn address_changes_and_denials_are_reported_once_not_per_request() {
        let log = ActivityLog::default();
        let session = SessionId::from_bytes([3; 16]);
        let elsewhere = IpAddr::from([198, 51, 100, 4]);
        log.address_changed(session, "127.0.0.1", elsewhere, false, 1_000);
        log.address_changed(session, "127.0.0.1", elsewhere, false, 2_000);
        log.denied("eve@corp.example", None, "admin", "no rule allows", elsewhere, 1_000);
        log.denied("eve@corp.example", None, "admin", "no rule allows", elsewhere, 5_000);
        log.denied("eve@corp.example", None, "admin", "no rule allows", elsewhere, 11_000);
        let kinds: Vec<String> =
            log.batch(&ConnRegistry::new(), 11_000).events.iter().map(|e| e["kind"].as_str().unwrap().into()).collect();
        assert_eq!(kinds, ["address_changed", "denied", "denied"]);
    }

    #[test]
    fn flows_are_reported_when_they_open_and_close() {
        let log = ActivityLog::default();
        let flow = FlowFacts {
            session: Some(SessionId::from_bytes([4; 16])),
            user: "ada@corp.example".into(),
            route: "ssh".into(),
            target: "ssh.internal:22".into(),
            source: IpAddr::from([127, 0, 0, 1]),
        };
        log.flow_opened(&flow, 1_000);
        log.flow_closed(&flow, 10, 20, 1_000, 4_500, "closed");
        let events = log.batch(&ConnRegistry::new(), 5_000).events;
        assert_eq!(events[0]["kind"], "flow_opened");
        assert_eq!((events[1]["bytes_up"].as_u64(), events[1]["duration_ms"].as_i64()), (Some(10), Some(3_500)));
    }
}
