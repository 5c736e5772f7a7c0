//! Short control-plane restarts, again and again: after each one the edge
//! streams again within [`ENFORCED_WITHIN`] of the control plane's return,
//! and not slower the tenth time than the first (the reconnect delay
//! starts over after every stream that worked).

use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

use crate::cluster::{percentiles, policy, refused_everywhere, Edge, Replica};
use crate::harness::TempDir;
use crate::upstream::Upstream;
use crate::{figures, ENFORCED_WITHIN, LOOK_FOR};

const RESTARTS: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_short_restarts_reconnect_within_two_seconds_every_time() {
    let dir = TempDir::new("restarts");
    let upstream = Upstream::start().await;
    let mut replica = Replica::start(&format!("sqlite://{}", dir.path().join("cp.db").display()), dir.path()).await;
    replica.plane().apply_policy(&policy(upstream.port)).await;
    let edge = Edge::start("edge-1", &[replica.edge_url()], dir.path()).await;
    let mut random = rand::rngs::StdRng::seed_from_u64(7);
    let (mut streaming, mut enforced) = (Vec::new(), Vec::new());
    for round in 0..RESTARTS {
        let (id, token) = replica.mint(&format!("user{round}@corp.example"), "app").await;
        assert!(edge.admits(&token).await);
        let lost_before = edge.metric("portcullis_edge_stream_reconnects_total").await.unwrap_or(0.0);
        replica.kill();
        tokio::time::sleep(Duration::from_millis(random.gen_range(50..800))).await;
        let back = replica.restart().await;
        // Streaming again: connected, and the loss was seen (not a stale gauge).
        let mut again = None;
        while back.elapsed() < LOOK_FOR {
            let lost = edge.metric("portcullis_edge_stream_reconnects_total").await.unwrap_or(0.0);
            if lost > lost_before && edge.metric("portcullis_edge_control_plane_connected").await == Some(1.0) {
                again = Some(back.elapsed());
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let again = again.unwrap_or_else(|| panic!("round {round}: not streaming again:\n{}", edge.log_text()));
        streaming.push(again);
        let answered = Instant::now();
        replica.terminate(&id).await.expect("terminate after the restart");
        let gap = refused_everywhere(&[&edge], &token, answered, LOOK_FOR).await;
        enforced.push(gap.unwrap_or_else(|| panic!("round {round}: termination not in force")));
    }
    let rounds = streaming.iter().map(|d| format!("{}", d.as_millis())).collect::<Vec<_>>().join(", ");
    figures(
        "10 short restarts",
        &format!(
            "restart-to-streaming per round (ms): [{rounds}]; {}; termination after each restart: {}",
            percentiles(&mut streaming.clone()),
            percentiles(&mut enforced)
        ),
    );
    let slowest = streaming.iter().max().copied().unwrap_or_default();
    assert!(slowest <= ENFORCED_WITHIN, "streaming again took {slowest:?}: [{rounds}]");
    assert!(enforced.iter().all(|gap| *gap <= ENFORCED_WITHIN), "terminations after restarts: {enforced:?}");
}
