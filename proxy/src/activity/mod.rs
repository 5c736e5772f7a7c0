//! Session activity this edge reports to the control plane, batched with
//! every report: a session seen (at once the first time, then at most every
//! few seconds, with the client address), and the change in each session's
//! live connections since the last successful report. The control plane's
//! session list shows them live (last seen, addresses, edges, connections).
//! Denials and changes of a session's source address are reported too (once
//! per session and address; denials as in [`denials`]: the first ones one by
//! one, the rest of a burst summed with a count), and land in the audit log.
//! So do the live connections the edge closed because access ended
//! ([`closed`]). TCP flows are reported when they
//! open and when they close (identity, route, source, bytes each way,
//! duration), tallied per session, route and source between two reports
//! (`tunnel::tally`); the control plane writes them to the audit log.
//!
//! Events wait for a report in a bounded queue ([`pending`]); what it drops
//! is counted in `portcullis_edge_activity_events_dropped_total{kind}`.

mod closed;
mod denials;
mod pending;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;

use dashmap::DashMap;
use pending::PendingEvents;
use portcullis_policy::edge_channel::{ActivityEvent, DenialReference};
use portcullis_policy::SessionId;
use prometheus::IntCounterVec;

use crate::registry::ConnRegistry;

/// A session seen again within this many milliseconds is not reported again.
const SEEN_EVERY_MS: i64 = 5_000;
/// A session with live connections (a websocket, a download, a tunnel)
/// counts as seen this often, though it sends no new request.
const LIVE_SEEN_EVERY_MS: i64 = 30_000;
/// Every session's live connections are reported this often (and by a
/// new edge at once), so the control plane's counts cannot drift.
const ALL_CONNECTIONS_EVERY_MS: i64 = 60_000;
/// Sessions not seen for this long are forgotten by the throttle.
const FORGET_AFTER_MS: i64 = 3_600_000;

/// Most remembered (session, address) pairs.
const MAX_REMEMBERED: usize = 100_000;
/// Most events in one report, which keeps a report (a few hundred bytes per
/// event) well under the control plane's default 1 MiB body limit; more are
/// sent in the reports that follow at once.
const MAX_EVENTS_PER_REPORT: usize = 2_000;

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
pub struct ActivityLog {
    /// On the request path (every request looks its session up): a seeded
    /// fast hash rather than SipHash.
    last_seen: DashMap<SessionId, i64, foldhash::fast::RandomState>,
    address_changes: DashMap<(SessionId, IpAddr), ()>,
    denials: denials::DenialThrottle,
    pending: Mutex<PendingEvents>,
    reported_connections: Mutex<HashMap<SessionId, i64>>,
    /// When a report last named every session's live connections (Unix ms; 0: never).
    all_connections_at: AtomicI64,
    flows: crate::tunnel::tally::FlowTallies,
    /// Events dropped by kind (the queue's, and flows the tally had no room for).
    dropped: IntCounterVec,
}

/// What one report carries, committed only once the report is accepted.
pub struct ActivityBatch {
    /// Events to send.
    pub events: Vec<ActivityEvent>,
    /// More events wait for the next report.
    pub more: bool,
    counts: HashMap<SessionId, i64>,
    /// The events name every session with live connections (when, Unix ms).
    complete: Option<i64>,
}

impl ActivityBatch {
    /// The events name every session with live connections on this edge
    /// (`ReportBody::connections_complete`).
    pub fn connections_complete(&self) -> bool {
        self.complete.is_some()
    }
}

impl Default for ActivityLog {
    /// A log counting its drops in a counter of its own (not exported).
    fn default() -> Self {
        Self::new(crate::metrics::activity_events_dropped())
    }
}

impl ActivityLog {
    /// A log counting the events its bounded queue drops in `dropped`
    /// ([`crate::metrics::EdgeMetrics::activity_events_dropped`]).
    pub fn new(dropped: IntCounterVec) -> Self {
        Self {
            last_seen: DashMap::default(),
            address_changes: DashMap::new(),
            denials: denials::DenialThrottle::default(),
            pending: Mutex::new(PendingEvents::new(dropped.clone())),
            reported_connections: Mutex::default(),
            all_connections_at: AtomicI64::new(0),
            flows: crate::tunnel::tally::FlowTallies::default(),
            dropped,
        }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, PendingEvents> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records that a request of `session` from `source` was served at
    /// `now_ms`. On the request path: nothing is allocated unless a sighting
    /// is due.
    pub fn seen(&self, session: SessionId, source: IpAddr, now_ms: i64) {
        let due = self.last_seen.get(&session).is_none_or(|at| now_ms - *at >= SEEN_EVERY_MS);
        if due {
            self.last_seen.insert(session, now_ms);
            let event = ActivityEvent::Seen {
                session_id: session.to_string(),
                source_address: source.to_string(),
                at_ms: now_ms,
            };
            self.pending().push_sighting(event);
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
            let event = ActivityEvent::AddressChanged {
                session_id: session.to_string(),
                from: from.to_owned(),
                to: to.to_string(),
                denied,
                at_ms: now_ms,
            };
            self.pending().push_audit(event);
        }
    }

    /// Records a denial of `user` (email, or subject; empty when
    /// anonymous) on `route`: reported at once, or summed with the rest of
    /// its burst ([`denials`]). Returns the reference to show the client,
    /// which the audit row of this denial carries.
    pub fn denied(
        &self,
        user: &str,
        session: Option<SessionId>,
        route: &str,
        reason: &str,
        source: IpAddr,
        now_ms: i64,
    ) -> DenialReference {
        let denial = denials::Denial { user, session, route, reason, source };
        match self.denials.judge(&denial, now_ms) {
            denials::Verdict::Report => {
                let reference = denials::new_reference();
                self.pending().push_audit(denial.event(now_ms, reference));
                reference
            }
            denials::Verdict::Summed(reference) => reference,
            denials::Verdict::Dropped => {
                self.dropped.with_label_values(&["denied"]).inc();
                let reference = denials::new_reference();
                tracing::warn!(%reference, user, route, reason, %source, "denial not reported: too many being summed");
                reference
            }
        }
    }

    /// Queues the live connections `registry` closed since the last call,
    /// summed per session or user, route, source and reason; routes are
    /// named from `snapshot`. Closes the registry had no room to remember
    /// are counted as dropped.
    pub fn closed_connections(&self, registry: &ConnRegistry, snapshot: Option<&portcullis_policy::Snapshot>) {
        let (closed, lost) = registry.take_closed();
        if lost > 0 {
            self.dropped.with_label_values(&["connections_closed"]).inc_by(lost);
        }
        if closed.is_empty() {
            return;
        }
        let events = closed::summarise(closed, snapshot);
        let mut pending = self.pending();
        for event in events {
            pending.push_audit(event);
        }
    }

    /// Records that a flow opened at `now_ms` (tallied until the next report).
    pub fn flow_opened(&self, flow: &FlowFacts, now_ms: i64) {
        if !self.flows.opened(flow, now_ms) {
            self.dropped.with_label_values(&["flow_opened"]).inc();
        }
    }

    /// Records that a flow opened at `opened_ms` closed at `now_ms` after
    /// `up` bytes from the client and `down` bytes to it; `ended_by` says how.
    pub fn flow_closed(
        &self,
        flow: &FlowFacts,
        up: u64,
        down: u64,
        opened_ms: i64,
        now_ms: i64,
        ended_by: &'static str,
    ) {
        if !self.flows.closed(flow, up, down, opened_ms, now_ms, ended_by) {
            self.dropped.with_label_values(&["flow_closed"]).inc();
        }
    }

    /// The events for the next report: sightings (a session with live
    /// connections counts as seen every [`LIVE_SEEN_EVERY_MS`]), audit
    /// events, and each session's live connections where they changed
    /// since the last committed report, or all of them every
    /// [`ALL_CONNECTIONS_EVERY_MS`] (and in a new edge's first report).
    pub fn batch(&self, registry: &ConnRegistry, now_ms: i64) -> ActivityBatch {
        self.last_seen.retain(|_, at| now_ms - *at < FORGET_AFTER_MS);
        let counts = registry.connections_per_session();
        for (session, (_, address)) in &counts {
            let due = self.last_seen.get(session).is_none_or(|at| now_ms - *at >= LIVE_SEEN_EVERY_MS);
            if let (true, Some(address)) = (due, address) {
                self.seen(*session, *address, now_ms);
            }
        }
        let flows = self.flows.take_events();
        let denials = self.denials.take_ended(now_ms);
        let mut pending = self.pending();
        for event in flows.into_iter().chain(denials) {
            pending.push_audit(event);
        }
        let (mut events, more) = pending.take(MAX_EVENTS_PER_REPORT);
        drop(pending);
        let counts: HashMap<SessionId, i64> = counts.into_iter().map(|(s, (n, _))| (s, n)).collect();
        let reported = self.reported_connections.lock().unwrap_or_else(|e| e.into_inner());
        let complete = now_ms - self.all_connections_at.load(Ordering::Relaxed) >= ALL_CONNECTIONS_EVERY_MS;
        for session in counts.keys().chain(reported.keys().filter(|s| !counts.contains_key(s))) {
            let now = counts.get(session).copied().unwrap_or(0);
            let changed = now != reported.get(session).copied().unwrap_or(0);
            if changed || (complete && now > 0) {
                events.push(ActivityEvent::LiveConnections { session_id: session.to_string(), connections: now });
            }
        }
        ActivityBatch { events, more, counts, complete: complete.then_some(now_ms) }
    }

    /// The report was accepted: its counts are now the baseline.
    pub fn commit(&self, batch: ActivityBatch) {
        *self.reported_connections.lock().unwrap_or_else(|e| e.into_inner()) = batch.counts;
        if let Some(at) = batch.complete {
            self.all_connections_at.store(at, Ordering::Relaxed);
        }
    }

    /// The report failed: keep its events (not the counts, which are
    /// recomputed) for the next one.
    pub fn restore(&self, batch: ActivityBatch) {
        let events = batch.events.into_iter().filter(|e| !matches!(e, ActivityEvent::LiveConnections { .. })).collect();
        self.pending().restore(events);
    }
}

#[cfg(test)]
mod tests;
