//! Two control-plane replicas on one PostgreSQL database and an edge that
//! lists both: when the replica it streams from is SIGKILLed, the edge
//! moves to the other, resumes by sequence, stays ready, and enforces a
//! termination made through the survivor within [`ENFORCED_WITHIN`]; then
//! the same the other way round.

use std::time::{Duration, Instant};

use crate::cluster::{percentiles, policy, refused_everywhere, Edge, Replica};
use crate::harness::TempDir;
use crate::upstream::Upstream;
use crate::{figures, postgres, ENFORCED_WITHIN, LOOK_FOR};

/// Polls `/readyz` every 20 ms while `work` runs; true if it ever failed.
async fn unready_during<T>(edge: &Edge, work: impl std::future::Future<Output = T>) -> (T, bool) {
    let watch = async {
        loop {
            if !edge.ready().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::pin!(work);
    tokio::select! {
        value = &mut work => (value, false),
        () = watch => (work.await, true),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_listing_two_postgres_replicas_moves_on_when_one_is_killed() {
    let Some(database) = postgres::fresh("an_edge_listing_two_postgres_replicas_moves_on_when_one_is_killed").await
    else {
        return;
    };
    let dir = TempDir::new("failover");
    let upstream = Upstream::start().await;
    let mut replicas =
        [Replica::start(&database.url, dir.path()).await, Replica::start(&database.url, dir.path()).await];
    replicas[0].plane().apply_policy(&policy(upstream.port)).await;
    let urls = [replicas[0].edge_url(), replicas[1].edge_url()];
    let edge = Edge::start("edge-1", &urls, dir.path()).await;
    let mut gaps = Vec::new();
    let mut unready = false;
    for (dies, survives) in [(0, 1), (1, 0)] {
        let mut sessions = Vec::new();
        for n in 0..5 {
            sessions.push(replicas[survives].mint(&format!("u{dies}{n}@corp.example"), "app").await);
        }
        for (_, token) in &sessions {
            assert!(edge.admits(token).await, "minted on one replica, admitted by the edge");
        }
        replicas[dies].kill();
        let survivor = &replicas[survives];
        let (round, was_unready) = unready_during(&edge, async {
            let mut round = Vec::new();
            for (id, token) in &sessions {
                survivor.terminate(id).await.expect("the survivor answers");
                let answered = Instant::now();
                round.push(refused_everywhere(&[&edge], token, answered, LOOK_FOR).await);
            }
            round
        })
        .await;
        unready |= was_unready;
        for (gap, (id, _)) in round.into_iter().zip(&sessions) {
            gaps.push(gap.unwrap_or_else(|| panic!("{id}, terminated through the survivor, is still admitted")));
        }
        replicas[dies].restart().await;
    }
    figures(
        "two PostgreSQL replicas, the edge's replica SIGKILLed",
        &format!(
            "termination through the survivor in force after {}; /readyz ever failed: {unready}",
            percentiles(&mut gaps)
        ),
    );
    assert!(gaps.iter().all(|gap| *gap <= ENFORCED_WITHIN), "{gaps:?}");
    assert!(!unready, "the edge had another replica: it stays ready");
}
