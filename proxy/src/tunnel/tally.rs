//! Flow activity, tallied between two reports: flows that opened (or
//! closed the same way) for the same session, route, target and source are
//! reported as one event with a count, bytes summed and the shortest and
//! longest duration. The control plane writes one audit entry per event, so
//! its load follows sessions rather than flows: a database pool opening a
//! hundred connections, or a termination that closes a hundred flows of a
//! user at once, is one entry, not a hundred.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use portcullis_policy::edge_channel::ActivityEvent;
use portcullis_policy::SessionId;

use crate::activity::FlowFacts;

/// Most distinct (session, route, target, source, …) keys kept between two
/// reports; flows beyond are dropped (and counted by the caller).
pub(crate) const MAX_KEYS: usize = 100_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    closed: Option<&'static str>,
    session: Option<SessionId>,
    user: String,
    route: String,
    target: String,
    source: IpAddr,
}

#[derive(Debug, Clone, Copy)]
struct Tally {
    flows: u64,
    bytes_up: u64,
    bytes_down: u64,
    first_ms: i64,
    last_ms: i64,
    opened_ms: i64,
    shortest_ms: i64,
    longest_ms: i64,
}

/// Flow events since the last report.
#[derive(Default)]
pub struct FlowTallies {
    tallies: Mutex<HashMap<Key, Tally>>,
}

fn key(flow: &FlowFacts, closed: Option<&'static str>) -> Key {
    Key {
        closed,
        session: flow.session,
        user: flow.user.clone(),
        route: flow.route.clone(),
        target: flow.target.clone(),
        source: flow.source,
    }
}

impl FlowTallies {
    /// False when the flow was dropped: a new key with no room left.
    fn add(&self, key: Key, update: impl FnOnce(&mut Tally), fresh: Tally) -> bool {
        let mut tallies = self.tallies.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tally) = tallies.get_mut(&key) {
            update(tally);
        } else if tallies.len() < MAX_KEYS {
            tallies.insert(key, fresh);
        } else {
            return false;
        }
        true
    }

    /// A flow opened at `now_ms`; false when it was dropped.
    pub fn opened(&self, flow: &FlowFacts, now_ms: i64) -> bool {
        let fresh = Tally {
            flows: 1,
            bytes_up: 0,
            bytes_down: 0,
            first_ms: now_ms,
            last_ms: now_ms,
            opened_ms: now_ms,
            shortest_ms: 0,
            longest_ms: 0,
        };
        self.add(
            key(flow, None),
            |t| {
                t.flows += 1;
                t.first_ms = t.first_ms.min(now_ms);
                t.last_ms = t.last_ms.max(now_ms);
            },
            fresh,
        )
    }

    /// A flow opened at `opened_ms` closed at `now_ms` (`ended_by` says
    /// how); false when it was dropped.
    pub fn closed(
        &self,
        flow: &FlowFacts,
        up: u64,
        down: u64,
        opened_ms: i64,
        now_ms: i64,
        ended_by: &'static str,
    ) -> bool {
        let duration = (now_ms - opened_ms).max(0);
        let fresh = Tally {
            flows: 1,
            bytes_up: up,
            bytes_down: down,
            first_ms: now_ms,
            last_ms: now_ms,
            opened_ms,
            shortest_ms: duration,
            longest_ms: duration,
        };
        self.add(
            key(flow, Some(ended_by)),
            |t| {
                t.flows += 1;
                t.bytes_up += up;
                t.bytes_down += down;
                t.first_ms = t.first_ms.min(now_ms);
                t.last_ms = t.last_ms.max(now_ms);
                t.opened_ms = t.opened_ms.min(opened_ms);
                t.shortest_ms = t.shortest_ms.min(duration);
                t.longest_ms = t.longest_ms.max(duration);
            },
            fresh,
        )
    }

    /// The tallies as report events, emptied.
    pub fn take_events(&self) -> Vec<ActivityEvent> {
        let tallies = std::mem::take(&mut *self.tallies.lock().unwrap_or_else(|e| e.into_inner()));
        let mut events: Vec<(i64, ActivityEvent)> = tallies
            .into_iter()
            .map(|(key, t)| {
                let Key { closed, session, user, route, target, source } = key;
                let (session_id, source_address) = (session.map(|s| s.to_string()), source.to_string());
                let event = match closed {
                    None => ActivityEvent::FlowOpened {
                        session_id,
                        user,
                        route,
                        target,
                        source_address,
                        flows: t.flows,
                        first_at_ms: Some(t.first_ms),
                        at_ms: t.last_ms,
                    },
                    Some(ended_by) => ActivityEvent::FlowClosed {
                        session_id,
                        user,
                        route,
                        target,
                        source_address,
                        bytes_up: t.bytes_up,
                        bytes_down: t.bytes_down,
                        opened_at_ms: t.opened_ms,
                        flows: t.flows,
                        first_at_ms: Some(t.first_ms),
                        duration_ms: t.longest_ms,
                        shortest_ms: Some(t.shortest_ms),
                        ended_by: ended_by.to_owned(),
                        at_ms: t.last_ms,
                    },
                };
                (t.first_ms, event)
            })
            .collect();
        events.sort_by_key(|(first, _)| *first);
        events.into_iter().map(|(_, event)| event).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(user: &str) -> FlowFacts {
        FlowFacts {
            session: Some(SessionId::from_bytes([9; 16])),
            user: user.into(),
            route: "db".into(),
            target: "db.internal:5432".into(),
            source: IpAddr::from([127, 0, 0, 1]),
        }
    }

    #[test]
    fn flows_of_the_same_session_route_and_end_are_one_event() {
        let tallies = FlowTallies::default();
        for i in 0..100 {
            tallies.opened(&flow("ann@corp.example"), 1_000 + i);
            tallies.closed(&flow("ann@corp.example"), 10, 20, 1_000 + i, 5_000, "access_ended");
        }
        tallies.closed(&flow("ann@corp.example"), 1, 2, 1_000, 2_000, "closed");
        tallies.opened(&flow("bob@corp.example"), 3_000);
        // As the report carries them.
        let events: Vec<serde_json::Value> =
            tallies.take_events().iter().map(|e| serde_json::to_value(e).expect("JSON")).collect();
        assert_eq!(events.len(), 4, "{events:?}");
        let killed = events.iter().find(|e| e["ended_by"] == "access_ended").unwrap();
        assert_eq!((killed["flows"].as_u64(), killed["bytes_up"].as_u64()), (Some(100), Some(1_000)));
        assert_eq!((killed["shortest_ms"].as_i64(), killed["duration_ms"].as_i64()), (Some(3_901), Some(4_000)));
        let opened = events.iter().find(|e| e["kind"] == "flow_opened" && e["user"] == "ann@corp.example").unwrap();
        assert_eq!((opened["flows"].as_u64(), opened["first_at_ms"].as_i64()), (Some(100), Some(1_000)));
        assert!(tallies.take_events().is_empty(), "taken once");
    }
}
