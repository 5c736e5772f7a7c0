//! Paused processes (SIGSTOP/SIGCONT): an edge that sleeps through a
//! termination acts on it as soon as it wakes, and an edge whose control
//! plane goes silent says so on `/readyz` and closes its strict routes.

use std::time::{Duration, Instant};

use crate::cluster::{closed_within, policy, signal, Edge, Replica};
use crate::harness::TempDir;
use crate::upstream::Upstream;
use crate::{figures, ENFORCED_WITHIN};

/// A control plane on SQLite with the fault policy, and one edge.
async fn cluster(dir: &TempDir, upstream: &Upstream) -> (Replica, Edge) {
    let replica = Replica::start(&format!("sqlite://{}", dir.path().join("cp.db").display()), dir.path()).await;
    replica.plane().apply_policy(&policy(upstream.port)).await;
    let edge = Edge::start("edge-1", &[replica.edge_url()], dir.path()).await;
    (replica, edge)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_edge_closes_a_terminated_websocket_as_soon_as_it_resumes() {
    let dir = TempDir::new("pause-edge");
    let upstream = Upstream::start().await;
    let (replica, edge) = cluster(&dir, &upstream).await;
    let (id, token) = replica.mint("ada@corp.example", "app").await;
    let mut socket = edge.websocket("app.corp.example", "app", &token).await;

    edge.signal("STOP");
    replica.terminate(&id).await.expect("answered while the edge sleeps");
    // Longer than the stream's silence limit (3 s): the timer is due the moment the edge wakes.
    tokio::time::sleep(Duration::from_secs(6)).await;
    edge.signal("CONT");
    let closed = closed_within(&mut socket, Duration::from_secs(10)).await;
    let closed =
        closed.unwrap_or_else(|| panic!("the websocket is still open 10 s after SIGCONT:\n{}", edge.log_text()));
    assert!(!edge.admits(&token).await, "the session is refused after the pause");
    figures("edge SIGSTOP 6 s", &format!("terminated websocket closed {closed:?} after SIGCONT"));
    assert!(closed <= ENFORCED_WITHIN, "closed only {closed:?} after SIGCONT; it was terminated before");
    let reconnects = edge.metric("portcullis_edge_stream_reconnects_total").await.unwrap_or(0.0);
    assert_eq!(reconnects, 0.0, "the frames waiting on the socket were read: no reconnect was needed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_control_plane_makes_the_edge_unready_and_strict_routes_fail_closed() {
    let dir = TempDir::new("pause-plane");
    let upstream = Upstream::start().await;
    let (replica, edge) = cluster(&dir, &upstream).await;
    let (_, app) = replica.mint("ada@corp.example", "app").await;
    let (_, strict) = replica.mint("ada@corp.example", "strict").await;
    let mut strict_socket = edge.websocket("strict.corp.example", "strict", &strict).await;
    let mut app_socket = edge.websocket("app.corp.example", "app", &app).await;
    assert_eq!(edge.status_on("strict.corp.example", "strict", &strict).await, 200);

    // The control plane stops answering without closing anything.
    let pid = replica.plane().pid();
    signal(pid, "STOP");
    let silent = Instant::now();
    let mut unready = None;
    while silent.elapsed() < Duration::from_secs(20) {
        if !edge.ready().await {
            unready = Some(silent.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let unready = unready.unwrap_or_else(|| {
        signal(pid, "CONT");
        panic!("/readyz stayed 200 for 20 s without the control plane:\n{}", edge.log_text())
    });
    let staleness = edge.metric("portcullis_edge_snapshot_staleness_ms").await.unwrap_or(-1.0);
    let strict_closed = closed_within(&mut strict_socket, Duration::from_secs(3)).await;
    let strict_status = edge.status_on("strict.corp.example", "strict", &strict).await;
    let app_status = edge.status_on("app.corp.example", "app", &app).await;
    let app_open = closed_within(&mut app_socket, Duration::from_millis(200)).await.is_none();
    signal(pid, "CONT");
    let resumed = Instant::now();
    let mut ready_again = None;
    while resumed.elapsed() < Duration::from_secs(20) {
        if edge.ready().await {
            ready_again = Some(resumed.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    figures(
        "control plane SIGSTOP",
        &format!(
            "/readyz failed after {unready:?} (staleness metric then {staleness} ms); strict websocket closed: \
             {strict_closed:?} later; ready again {ready_again:?} after SIGCONT"
        ),
    );
    assert!(unready <= Duration::from_secs(7), "max_staleness is 5 s: /readyz failed only after {unready:?}");
    assert!(staleness >= 5000.0, "the staleness metric shows the silence: {staleness}");
    assert!(strict_closed.is_some(), "the stale_mode: deny route's websocket is closed");
    assert_eq!(strict_status, 503, "the stale_mode: deny route refuses while stale");
    assert_eq!(app_status, 200, "the keep route serves on from the last snapshot");
    assert!(app_open, "the keep route's websocket stays open");
    let ready_again = ready_again.expect("ready again after SIGCONT");
    assert!(ready_again <= ENFORCED_WITHIN, "streaming again {ready_again:?} after SIGCONT");
    assert_eq!(edge.status_on("strict.corp.example", "strict", &strict).await, 200, "the strict route reopens");
}
