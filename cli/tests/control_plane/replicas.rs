//! Two control-plane replicas on one PostgreSQL database: an edge streaming
//! from one replica learns, within seconds, of a termination made through
//! the other replica's API (LISTEN/NOTIFY, with a one-second poll behind it).

use std::time::{Duration, Instant};

use serde_json::json;

use crate::edge::terminated_in;
use crate::harness::{ControlPlane, TempDir, POLICY};
use crate::postgres;

/// How soon the other replica's edges must hear of a termination.
const WITHIN: Duration = Duration::from_secs(5);

async fn terminate_via(plane: &ControlPlane, session: &str) {
    let (status, body) = plane
        .api_post(&format!("/sessions/{session}/terminate"), &json!({ "reason": "cross-replica" }))
        .await
        .expect("terminate");
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_terminations_on_postgres() {
    let Some(database) = postgres::fresh("replicas_share_terminations_on_postgres").await else { return };
    let dir = TempDir::new("replicas");
    let a = ControlPlane::start(&database.url, dir.path()).await;
    let b = ControlPlane::start(&database.url, dir.path()).await;
    a.apply_policy(POLICY).await;
    // A login on either replica needs the policy A applied: B reads it from the shared database.
    let on_a = a.create_session("ada@corp.example", "wiki").await;
    let on_b = b.create_session("bob@corp.example", "wiki").await;

    // A termination through A reaches an edge streaming from B …
    let mut from_b = b.open_stream("edge-b", None).await;
    let snapshot = from_b.snapshot().await;
    assert!(!terminated_in(&snapshot, &on_a));
    let started = Instant::now();
    terminate_via(&a, &on_a).await;
    let a_to_b = from_b.expect_termination(&on_a, started, WITHIN).await;

    // … and one through B reaches an edge streaming from A.
    let mut from_a = a.open_stream("edge-a", None).await;
    let snapshot = from_a.snapshot().await;
    assert!(terminated_in(&snapshot, &on_a), "A's snapshot lacks the termination made through A");
    let started = Instant::now();
    terminate_via(&b, &on_b).await;
    let b_to_a = from_a.expect_termination(&on_b, started, WITHIN).await;
    eprintln!("cross-replica delivery, API request to delta on the other replica: A→B {a_to_b:?}, B→A {b_to_a:?}");

    // Both replicas answer the same for both sessions.
    for plane in [&a, &b] {
        for session in [&on_a, &on_b] {
            assert_eq!(plane.api_get(&format!("/sessions/{session}")).await["state"], "ended");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resuming_edge_gets_the_other_replicas_deltas_on_postgres() {
    let Some(database) = postgres::fresh("a_resuming_edge_gets_the_other_replicas_deltas_on_postgres").await else {
        return;
    };
    let dir = TempDir::new("replicas-resume");
    let a = ControlPlane::start(&database.url, dir.path()).await;
    let b = ControlPlane::start(&database.url, dir.path()).await;
    a.apply_policy(POLICY).await;
    let session = a.create_session("ada@corp.example", "wiki").await;
    let head = a.open_stream("edge-1", None).await.snapshot().await.seq;
    // The edge was connected to A, which then dies; it resumes on B from where it was.
    a.kill();
    let out = b.cli(&["users", "terminate", "ada@corp.example", "--reason", "replica failover"]).await;
    assert!(out.ok().contains("ended 1 session of ada@corp.example"), "{out:?}");
    let mut resumed = b.open_stream("edge-1", Some(head)).await;
    match resumed.next(WITHIN).await {
        Some(portcullis_policy::wire::Message::Delta(delta)) => {
            assert_eq!(delta.seq, head + 1, "the first delta after resuming follows the edge's sequence");
            assert!(
                matches!(delta.change, portcullis_policy::Change::TerminateUser { .. }),
                "expected the user termination, got {:?}",
                delta.change
            );
        }
        other => panic!("expected the delta after {head}, got {other:?}"),
    }
    let view = b.api_get(&format!("/sessions/{session}")).await;
    assert_eq!(view["end_reason"], "replica failover");
}
