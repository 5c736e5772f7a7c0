//! Edge reports and receipts: the test plays an edge (it reads the stream
//! and POSTs `/edge/v1/report`), which unit-tests the control plane's own
//! bookkeeping — `?wait=true` waits for connected edges, counts the edges
//! that applied the change and the connections they closed for it.

use std::time::Duration;

use axum::http::Method;
use portcullis_policy::wire::Message;
use portcullis_policy::Change;
use serde_json::{json, Value};

use crate::client::Answer;
use crate::fixtures::{apply_policy, login, reason};
use crate::harness::{TestApp, RECEIPT_WAIT_MS};

api_tests!(
    wait_receipts_count_edges_and_closed_connections,
    wait_is_bounded_and_stale_edges_do_not_count,
    reports_update_edges_and_sessions
);

async fn report(t: &TestApp, edge: &str, body: Value) {
    let answer = t.edge(Method::POST, "/edge/v1/report").header("x-portcullis-edge-id", edge).json(body).send().await;
    assert_eq!(answer.status.as_u16(), 204, "report from {edge}: {}", answer.text());
}

async fn wait_receipts_count_edges_and_closed_connections(t: TestApp) {
    apply_policy(&t).await;
    let session = login(&t, "ada@test.example").await;
    let head = t.head().await;
    report(&t, "edge-a", json!({ "applied_seq": head, "live_connections": 3 })).await;
    report(&t, "edge-b", json!({ "applied_seq": head, "live_connections": 0 })).await;
    let mut stream = t.edge(Method::GET, &format!("/edge/v1/stream?since={head}")).open().await;

    // The terminate call waits while the two "edges" apply the change.
    let call = t.post(&format!("/api/v1/sessions/{session}/terminate?wait=true")).json(reason("incident"));
    let pending = tokio::spawn(call.send());
    let seq = match stream.expect_change().await {
        Message::Delta(delta) if matches!(delta.change, Change::TerminateSession { .. }) => delta.seq,
        other => panic!("expected the termination, got {other:?}"),
    };
    assert_eq!(seq, head + 1);
    report(
        &t,
        "edge-a",
        json!({ "applied_seq": seq, "live_connections": 1, "closed": [{ "seq": seq, "connections": 2 }] }),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!pending.is_finished(), "the receipt waits for edge-b too");
    report(&t, "edge-b", json!({ "applied_seq": seq, "closed": [{ "seq": seq, "connections": 1 }] })).await;
    let answer: Answer = tokio::time::timeout(Duration::from_secs(5), pending).await.expect("answered").unwrap();
    let receipt = answer.ok()["receipt"].clone();
    assert_eq!(receipt["seq"].as_u64(), Some(seq));
    assert_eq!(receipt["waited"], true);
    assert_eq!(receipt["complete"], true, "{receipt}");
    assert_eq!((receipt["edges_applied"].as_u64(), receipt["edges_total"].as_u64()), (Some(2), Some(2)));
    assert_eq!(receipt["connections_closed"], 3);
    assert!(receipt["elapsed_ms"].as_u64().unwrap() < RECEIPT_WAIT_MS, "{receipt}");

    // A user termination waits the same way.
    login(&t, "bob@test.example").await;
    let user = json!({ "email": "bob@test.example", "reason": "offboarded" });
    let pending = tokio::spawn(t.post("/api/v1/users/terminate?wait=true").json(user).send());
    let next = match stream.expect_change().await {
        Message::Delta(delta) if matches!(delta.change, Change::TerminateUser { .. }) => delta.seq,
        other => panic!("expected the user termination, got {other:?}"),
    };
    report(&t, "edge-a", json!({ "applied_seq": next, "closed": [{ "seq": next, "connections": 4 }] })).await;
    report(&t, "edge-b", json!({ "applied_seq": next })).await;
    let answer = tokio::time::timeout(Duration::from_secs(5), pending).await.expect("answered").unwrap().ok();
    assert_eq!(answer["sessions_ended"], 1);
    let receipt = &answer["receipt"];
    assert_eq!((receipt["seq"].as_u64(), receipt["complete"].as_bool()), (Some(next), Some(true)), "{receipt}");
    assert_eq!((receipt["edges_applied"].as_u64(), receipt["connections_closed"].as_i64()), (Some(2), Some(4)));

    // Without `wait`, the receipt says how far the change got, without waiting.
    let carol = login(&t, "carol@test.example").await;
    let quick = t.post(&format!("/api/v1/sessions/{carol}/terminate")).json(reason("r")).send().await.ok();
    let receipt = &quick["receipt"];
    assert_eq!((receipt["waited"].as_bool(), receipt["complete"].as_bool()), (Some(false), Some(false)), "{receipt}");
    assert_eq!((receipt["edges_applied"].as_u64(), receipt["edges_total"].as_u64()), (Some(0), Some(2)));
}

async fn wait_is_bounded_and_stale_edges_do_not_count(t: TestApp) {
    apply_policy(&t).await;
    let session = login(&t, "ada@test.example").await;

    // No edge has reported: nothing to wait for.
    let lonely = login(&t, "lonely@test.example").await;
    let call = t.post(&format!("/api/v1/sessions/{lonely}/terminate?wait=true")).json(reason("r"));
    let receipt = call.send().await.ok()["receipt"].clone();
    assert_eq!((receipt["complete"].as_bool(), receipt["edges_total"].as_u64()), (Some(true), Some(0)), "{receipt}");
    assert!(receipt["elapsed_ms"].as_u64().unwrap() < 1_000, "{receipt}");

    report(&t, "edge-a", json!({ "applied_seq": t.head().await })).await;

    // edge-a never applies it: the answer comes after `timeout_ms`, incomplete.
    let answer = t
        .post(&format!("/api/v1/sessions/{session}/terminate?wait=true&timeout_ms=300"))
        .json(reason("r"))
        .send()
        .await
        .ok();
    let receipt = &answer["receipt"];
    assert_eq!((receipt["waited"].as_bool(), receipt["complete"].as_bool()), (Some(true), Some(false)), "{receipt}");
    assert_eq!((receipt["edges_applied"].as_u64(), receipt["edges_total"].as_u64()), (Some(0), Some(1)));
    let elapsed = receipt["elapsed_ms"].as_u64().unwrap();
    assert!((300..RECEIPT_WAIT_MS).contains(&elapsed), "bounded by timeout_ms: {elapsed}");
    assert_eq!(answer["session"]["state"], "ended", "durable whatever the edges do");

    // A timeout above the configured bound is clamped to it.
    let other = login(&t, "bob@test.example").await;
    let started = std::time::Instant::now();
    let answer = t
        .post(&format!("/api/v1/sessions/{other}/terminate?wait=true&timeout_ms=600000"))
        .json(reason("r"))
        .send()
        .await
        .ok();
    assert_eq!(answer["receipt"]["complete"], false);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(RECEIPT_WAIT_MS) && took < Duration::from_millis(RECEIPT_WAIT_MS + 2_000),
        "clamped to receipt_wait_ms: {took:?}"
    );

    // The edge that never applied them lags by two changes.
    let edges = t.get("/api/v1/edges").send().await.ok();
    assert_eq!(edges[0]["state"], "connected");
    assert_eq!(edges[0]["lag"], 2, "{edges}");
}

async fn reports_update_edges_and_sessions(t: TestApp) {
    apply_policy(&t).await;
    let session = login(&t, "ada@test.example").await;
    let head = t.head().await;
    let activity = json!([
        { "kind": "seen", "session_id": session, "source_address": "198.51.100.77", "at_ms": chrono::Utc::now().timestamp_millis() + 5_000 },
        { "kind": "connections", "session_id": session, "delta": 3 },
        { "kind": "connections", "session_id": session, "delta": -1 },
        { "kind": "seen", "session_id": "0123456789abcdef0123456789abcdef", "source_address": "x", "at_ms": 1 },
    ]);
    let body = json!({ "applied_seq": head, "live_connections": 2, "activity": activity });
    let answer = t.edge(Method::POST, "/edge/v1/report").header("x-portcullis-edge-id", "edge-b");
    let answer = answer.header("x-portcullis-edge-name", "Frankfurt 2").json(body).send().await;
    assert_eq!(answer.status.as_u16(), 204, "{}", answer.text());

    let view = t.get(&format!("/api/v1/sessions/{session}")).send().await.ok();
    assert_eq!(view["edges"], json!(["edge-a", "edge-b"]));
    assert_eq!(view["source_addresses"], json!(["198.51.100.20", "198.51.100.77"]));
    assert_eq!(view["live_connections"], 2);
    assert!(view["last_seen_at"].as_str().unwrap() > view["created_at"].as_str().unwrap(), "{view}");
    let by_edge = t.get("/api/v1/sessions?edge=edge-b").send().await.ok();
    assert_eq!(by_edge["sessions"][0]["id"], session.as_str(), "the edge filter sees edges that served the session");

    let edges = t.get("/api/v1/edges").send().await.ok();
    let reporting: Vec<&Value> =
        edges.as_array().unwrap().iter().filter(|e| e["last_heartbeat_at"].is_string()).collect();
    assert_eq!(reporting.len(), 1, "edge-a enrolled (it created the session) but never reported: {edges}");
    let edge = reporting[0];
    // The name is the one enrolled, not what a header says.
    assert_eq!((edge["id"].as_str(), edge["name"].as_str()), (Some("edge-b"), Some("edge-b")));
    assert_eq!((edge["applied_seq"].as_u64(), edge["lag"].as_u64()), (Some(head), Some(0)));
    assert_eq!((edge["live_connections"].as_u64(), edge["state"].as_str()), (Some(2), Some("connected")));

    // A new change shows as lag until the edge reports it.
    let lag_of_b =
        |edges: Value| edges.as_array().unwrap().iter().find(|e| e["id"] == "edge-b").unwrap()["lag"].clone();
    t.post("/api/v1/users/lock").json(json!({ "email": "eve@test.example", "reason": "r" })).send().await.ok();
    assert_eq!(lag_of_b(t.get("/api/v1/edges").send().await.ok()), 1);
    report(&t, "edge-b", json!({ "applied_seq": head + 1 })).await;
    assert_eq!(lag_of_b(t.get("/api/v1/edges").send().await.ok()), 0);
}
