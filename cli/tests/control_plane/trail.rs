//! The per-user trail of what edges saw (issue 17), with a real edge and
//! live connections: a termination files the live connections it cut under
//! the user, session, route and edge; a burst of denied requests is counted
//! to the last request though the edge reports only the first ones one by
//! one; `portcullis audit --route --edge` finds both.

use std::time::Duration;

use serde_json::Value;

use crate::edge_node::{login, policy, EdgeNode};
use crate::edge_proxy::{assert_all_closed, open_live_connections};
use crate::harness::{ControlPlane, TempDir};
use crate::signals::wait_until;
use crate::upstream::Upstream;

/// The audit entries `query` selects (newest first).
async fn entries(plane: &ControlPlane, query: &str) -> Vec<Value> {
    plane.api_get(&format!("/audit?limit=1000&{query}")).await["entries"].as_array().cloned().unwrap_or_default()
}

/// The sum of the entries' `count`s.
fn occurrences(entries: &[Value]) -> i64 {
    entries.iter().map(|e| e["count"].as_i64().unwrap_or(0)).sum()
}

/// The id of the only edge.
async fn edge_id(plane: &ControlPlane) -> String {
    let edges = plane.api_get("/edges").await;
    let list = edges["edges"].as_array().or_else(|| edges.as_array()).cloned().unwrap_or_default();
    list.first().and_then(|e| e["id"].as_str()).unwrap_or_else(|| panic!("one edge: {edges}")).to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connections_a_termination_cut_are_in_the_users_trail_with_route_and_edge() {
    let dir = TempDir::new("trail-closed");
    let plane = ControlPlane::start(&format!("sqlite://{}", dir.path().join("cp.db").display()), dir.path()).await;
    let upstream = Upstream::start().await;
    plane.apply_policy(&policy(upstream.port)).await;
    let edge = EdgeNode::start(&plane, "edge-a", dir.path()).await;
    let (session, token) = login(&plane, "ada@corp.example").await;
    let live = open_live_connections(&edge, &token).await;
    plane.cli(&["sessions", "terminate", &session, "--reason", "stolen laptop", "--wait", "--json"]).await.ok();
    assert_all_closed(live).await;
    let edge = edge_id(&plane).await;

    let query = "user=ADA@corp.example&action=connection.closed";
    wait_until("the edge reports the closed connections", || async { occurrences(&entries(&plane, query).await) >= 3 })
        .await;
    let closed = entries(&plane, query).await;
    assert_eq!(occurrences(&closed), 3, "download, keep-alive and websocket, each once: {closed:#?}");
    for entry in &closed {
        assert_eq!(entry["session_id"], session.as_str(), "{entry}");
        assert_eq!(
            (entry["user_email"].as_str(), entry["user_subject"].as_str()),
            (Some("ada@corp.example"), Some("sub-ada@corp.example"))
        );
        assert_eq!((entry["route"].as_str(), entry["edge"].as_str()), (Some("app"), Some(edge.as_str())), "{entry}");
        assert_eq!(entry["source_address"], "127.0.0.1");
        assert!(entry["reason"].as_str().unwrap().contains("the session was terminated"), "{entry}");
    }
    let trail: Vec<String> = entries(&plane, "user=ada@corp.example")
        .await
        .iter()
        .rev()
        .map(|e| e["action"].as_str().unwrap_or_default().to_owned())
        .collect();
    let (created, ended, cut) = (
        trail.iter().position(|a| a == "session.create"),
        trail.iter().position(|a| a == "session.terminate"),
        trail.iter().position(|a| a == "connection.closed"),
    );
    assert!(created < ended && ended < cut && created.is_some(), "login, termination, then the cut: {trail:?}");

    let out = plane.cli(&["audit", "--route", "app", "--edge", &edge, "--action", "connection.closed"]).await;
    assert!(out.ok().contains("connection.closed ×3"), "{}", out.ok());
    let elsewhere = plane.cli(&["audit", "--route", "app", "--edge", "no-such-edge"]).await;
    assert!(elsewhere.ok().contains("no audit entries match"), "{}", elsewhere.ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_denials_is_counted_to_the_last_request() {
    const REQUESTS: usize = 300;
    let dir = TempDir::new("trail-denials");
    let plane = ControlPlane::start(&format!("sqlite://{}", dir.path().join("cp.db").display()), dir.path()).await;
    let upstream = Upstream::start().await;
    plane.apply_policy(&policy(upstream.port)).await;
    let edge = EdgeNode::start(&plane, "edge-a", dir.path()).await;
    // Not at corp.example: every request of eve's session is denied.
    let (session, token) = login(&plane, "eve@elsewhere.example").await;
    let started = std::time::Instant::now();
    for _ in 0..REQUESTS {
        assert_eq!(edge.get("/hello", Some(&token), &[]).await.0, 403);
    }
    let windows = started.elapsed().as_secs() as usize / 10 + 2;
    let query = format!("session={session}&action=access.denied&route=app");
    // The edge sums what it held back once the 10 s window ends.
    tokio::time::sleep(Duration::from_secs(10)).await;
    wait_until("every denial is counted", || async { occurrences(&entries(&plane, &query).await) >= REQUESTS as i64 })
        .await;
    let denied = entries(&plane, &query).await;
    assert_eq!(occurrences(&denied), REQUESTS as i64, "each request once: {denied:#?}");
    // Per 10 s window: the first 20 one by one, the rest summed in one row.
    assert!(denied.len() <= windows * 21, "{} rows for {REQUESTS} requests in {windows} windows", denied.len());
    let summed = denied.iter().find(|e| e["count"].as_i64() > Some(1)).expect("a summed row");
    assert!(summed["reason"].as_str().unwrap().contains(" requests over "), "{summed}");
    assert_eq!(summed["user_email"], "eve@elsewhere.example");
}
