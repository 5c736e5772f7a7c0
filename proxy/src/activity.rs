//! Session activity this edge reports to the control plane, batched with
//! every report: a session seen (at once the first time, then at most every
//! few seconds, with the client address), and the change in each session's
//! live connections since the last successful report. The control plane's
//! session list shows them live (last seen, addresses, edges, connections).

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

/// Pending activity.
#[derive(Default)]
pub struct ActivityLog {
    last_seen: DashMap<SessionId, i64>,
    pending: Mutex<Vec<Value>>,
    reported_connections: Mutex<HashMap<SessionId, i64>>,
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

    /// The report failed: keep its sightings for the next one.
    pub fn restore(&self, batch: ActivityBatch) {
        let sightings = batch.events.into_iter().filter(|e| e["kind"] == "seen");
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
}
