use serde_json::Value;

use super::*;

/// The events as the report carries them.
fn wire(events: &[ActivityEvent]) -> Vec<Value> {
    events.iter().map(|e| serde_json::to_value(e).expect("JSON")).collect()
}

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
    let events = wire(&log.batch(&ConnRegistry::new(), 11_000).events);
    let kinds: Vec<(&str, u64)> =
        events.iter().map(|e| (e["kind"].as_str().unwrap(), e["count"].as_u64().unwrap_or(1))).collect();
    assert_eq!(kinds, [("address_changed", 1), ("denied", 1), ("denied", 1), ("denied", 1)]);
    assert_eq!(events[3]["at_ms"], 5_000, "the one held back in the first window, summed once it ended");
}

#[test]
fn a_sessions_denials_are_each_reported_up_to_a_bound() {
    let log = ActivityLog::default();
    let session = Some(SessionId::from_bytes([5; 16]));
    let from = IpAddr::from([198, 51, 100, 4]);
    for i in 0..30 {
        log.denied("eve@corp.example", session, "admin", "no rule allows", from, 1_000 + i);
    }
    log.denied("eve@corp.example", session, "admin", "no rule allows", from, 12_000);
    let events = wire(&log.batch(&ConnRegistry::new(), 12_000).events);
    let per = denials::SESSION_DENIALS_PER_WINDOW as usize;
    assert_eq!(events.len(), per + 2, "20 in the first window, a new one, and the sum of the rest");
    let sum = &events[per + 1];
    assert_eq!(
        (sum["count"].as_u64(), sum["first_at_ms"].as_i64(), sum["at_ms"].as_i64()),
        (Some(10), Some(1_020), Some(1_029))
    );
    let total: u64 = events.iter().map(|e| e["count"].as_u64().unwrap()).sum();
    assert_eq!(total, 31, "every denial is counted");
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
    let events = wire(&log.batch(&ConnRegistry::new(), 5_000).events);
    assert_eq!((events[0]["kind"].as_str(), events[0]["flows"].as_u64()), (Some("flow_opened"), Some(1)));
    assert_eq!((events[1]["bytes_up"].as_u64(), events[1]["duration_ms"].as_i64()), (Some(10), Some(3_500)));
}

/// Drains every pending event as reports the control plane accepts.
fn drain(log: &ActivityLog) -> Vec<Value> {
    let registry = ConnRegistry::new();
    let mut all = Vec::new();
    loop {
        let batch = log.batch(&registry, 0);
        let more = batch.more;
        all.extend(wire(&batch.events));
        log.commit(batch);
        if !more {
            return all;
        }
    }
}

fn session(n: usize) -> SessionId {
    SessionId::from_bytes((n as u128).to_be_bytes())
}

#[test]
fn while_the_control_plane_is_away_the_queue_stays_bounded() {
    let metrics = crate::metrics::EdgeMetrics::new();
    let log = ActivityLog::new(metrics.activity_events_dropped.clone());
    let (local, registry) = (IpAddr::from([127, 0, 0, 1]), ConnRegistry::new());
    for n in 0..pending::MAX_PENDING_EVENTS + 500 {
        log.seen(session(n), local, 1_000);
        if n % 10_000 == 0 {
            // Every report fails and puts its events back.
            log.restore(log.batch(&registry, 1_000));
        }
    }
    log.denied("eve@corp.example", None, "admin", "no rule allows", local, 1_000);
    let exported = metrics.render();
    for line in [
        "portcullis_edge_activity_events_dropped_total{kind=\"seen\"} 501",
        "portcullis_edge_activity_events_dropped_total{kind=\"denied\"} 0",
    ] {
        assert!(exported.contains(line), "{line} in:\n{exported}");
    }
    let reported = drain(&log);
    assert_eq!(reported.len(), pending::MAX_PENDING_EVENTS);
    assert_eq!(reported[0]["kind"], "denied", "the denial was kept");
    assert_eq!(reported[1]["session_id"], session(1).to_string(), "the oldest sighting gave way");
}

/// A CI job's flow to the database, anonymous.
fn database_flow() -> FlowFacts {
    FlowFacts {
        session: None,
        user: "ci@corp.example".into(),
        route: "db".into(),
        target: "db.internal:5432".into(),
        source: IpAddr::from([127, 0, 0, 1]),
    }
}

#[test]
fn flows_the_tally_has_no_room_for_are_counted_as_dropped() {
    let dropped = crate::metrics::activity_events_dropped();
    let log = ActivityLog::new(dropped.clone());
    let flow = database_flow();
    for n in 0..crate::tunnel::tally::MAX_KEYS as u32 + 3 {
        let flow = FlowFacts { source: IpAddr::from(n.to_be_bytes()), ..flow.clone() };
        log.flow_opened(&flow, 0);
    }
    log.flow_closed(&flow, 1, 1, 0, 1, "closed");
    let count = |kind: &str| dropped.with_label_values(&[kind]).get();
    assert_eq!((count("flow_opened"), count("flow_closed")), (3, 1));
}

/// A registry with one websocket of `session` open from 10.0.0.9.
fn one_live_connection(session: SessionId) -> std::sync::Arc<ConnRegistry> {
    use crate::registry::{Binding, BoundTarget, ConnKey};
    let registry = ConnRegistry::new();
    let key = ConnKey { peer: "10.0.0.9:5000".parse().unwrap(), local: "127.0.0.1:8080".parse().unwrap() };
    registry.register(key).keep();
    let identity = portcullis_policy::Identity::new(portcullis_policy::IdentityParts {
        subject: "sub-bob".into(),
        email: "bob@corp.example".into(),
        session_id: Some(session),
        ..portcullis_policy::IdentityParts::default()
    });
    let binding = Binding {
        identity: Some(std::sync::Arc::new(identity)),
        target: BoundTarget::Http { host: "chat.example".into(), path: "/ws".into(), method: "GET".into() },
        client_ip: IpAddr::from([10, 0, 0, 9]),
        until: None,
    };
    registry.bind(key, binding, false);
    registry
}

#[test]
fn live_connections_go_out_as_counts_all_of_them_now_and_then() {
    let log = ActivityLog::default();
    let bob = session(7);
    let registry = one_live_connection(bob);
    let first = log.batch(&registry, 100_000);
    assert!(first.connections_complete(), "a new edge names every session at once");
    let kinds: Vec<Value> = wire(&first.events);
    assert!(kinds.iter().any(|e| e["kind"] == "live_connections" && e["connections"] == 1), "{kinds:?}");
    log.commit(first);
    let quiet = log.batch(&registry, 101_000);
    assert!(!quiet.connections_complete() && quiet.events.is_empty(), "nothing changed: {:?}", quiet.events);
    log.commit(quiet);
    let later = log.batch(&registry, 131_000);
    let seen: Vec<Value> = wire(&later.events);
    assert!(
        seen.iter().any(|e| e["kind"] == "seen" && e["source_address"] == "10.0.0.9"),
        "an open websocket keeps the session seen: {seen:?}"
    );
    log.commit(later);
    let again = log.batch(&registry, 160_000);
    assert!(again.connections_complete(), "every minute, all of them again");
    assert_eq!(wire(&again.events).iter().filter(|e| e["kind"] == "live_connections").count(), 1);
}

#[test]
fn a_burst_of_events_goes_out_in_reports_of_bounded_size() {
    let log = ActivityLog::default();
    let flow = database_flow();
    for at in 0..(MAX_EVENTS_PER_REPORT as i64 + 10) {
        // Distinct sources: distinct events.
        let flow = FlowFacts { source: IpAddr::from((at as u32).to_be_bytes()), ..flow.clone() };
        log.flow_opened(&flow, at);
    }
    let registry = ConnRegistry::new();
    let first = log.batch(&registry, 0);
    assert_eq!((first.events.len(), first.more), (MAX_EVENTS_PER_REPORT, true));
    assert!(serde_json::to_vec(&first.events).unwrap().len() < 1024 * 1024, "under the body limit");
    log.restore(first);
    let again = log.batch(&registry, 0);
    assert_eq!(wire(&again.events)[0]["at_ms"], 0, "a failed report's events go first again");
    log.commit(again);
    let rest = log.batch(&registry, 0);
    assert_eq!((rest.events.len(), rest.more), (10, false));
}
