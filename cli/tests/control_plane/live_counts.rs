//! A session's live connections are the edges' current counts (issue 18):
//! after an edge restarts, the session shows the connections that are open
//! now, not the old ones added to the new ones (6 shown, 3 real).

use std::time::Duration;

use crate::edge_node::{login, policy, EdgeNode};
use crate::edge_proxy::open_live_connections;
use crate::harness::{ControlPlane, TempDir};
use crate::signals::wait_until;
use crate::upstream::Upstream;

async fn live(plane: &ControlPlane, session: &str) -> i64 {
    plane.api_get(&format!("/sessions/{session}")).await["live_connections"].as_i64().unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_edge_restarts_a_session_shows_the_connections_open_now() {
    let dir = TempDir::new("live-counts");
    let plane = ControlPlane::start(&format!("sqlite://{}", dir.path().join("cp.db").display()), dir.path()).await;
    let upstream = Upstream::start().await;
    plane.apply_policy(&policy(upstream.port)).await;
    let (session, token) = login(&plane, "ada@corp.example").await;

    let edge = EdgeNode::start(&plane, "edge-a", dir.path()).await;
    let before = open_live_connections(&edge, &token).await;
    wait_until("the edge reports 3 live connections", || async { live(&plane, &session).await == 3 }).await;
    drop(edge); // SIGKILL: no goodbye, no last report.
    drop(before);

    let edge = EdgeNode::start(&plane, "edge-a", dir.path()).await;
    let _now = open_live_connections(&edge, &token).await;
    wait_until("the restarted edge's first report replaces the old counts", || async {
        live(&plane, &session).await == 3
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(live(&plane, &session).await, 3, "three open now, not six");
}
