//! SIGKILL of the control plane: right after terminations it answered, and
//! with 40 terminations in flight. Whatever it answered 200 for is in force
//! on the edge once it is back (within [`ENFORCED_WITHIN`] of its return),
//! and what it lists as ended after the crash is exactly what the edge
//! refuses.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::cluster::{percentiles, policy, refused_everywhere, Edge, Replica};
use crate::harness::TempDir;
use crate::upstream::Upstream;
use crate::{figures, postgres, ENFORCED_WITHIN, LOOK_FOR};

async fn answered_terminations_survive_sigkill(database: &str, label: &str) {
    let dir = TempDir::new(label);
    let upstream = Upstream::start().await;
    let mut replica = Replica::start(database, dir.path()).await;
    replica.plane().apply_policy(&policy(upstream.port)).await;
    let edge = Edge::start("edge-1", &[replica.edge_url()], dir.path()).await;
    let mut sessions = Vec::new();
    for n in 0..80 {
        sessions.push(replica.mint(&format!("user{n}@corp.example"), "app").await);
    }
    for (_, token) in &sessions {
        assert!(edge.admits(token).await, "a fresh session is admitted");
    }

    // Twenty terminations answered one after the other, then SIGKILL at once.
    let answered: Vec<_> = sessions[..20].to_vec();
    for (id, _) in &answered {
        replica.terminate(id).await.expect("answered");
    }
    replica.kill();
    let back = replica.restart().await;
    let mut gaps = Vec::new();
    for (id, token) in &answered {
        let gap = refused_everywhere(&[&edge], token, back, LOOK_FOR).await;
        let gap = gap.unwrap_or_else(|| panic!("{label}: answered termination of {id} not in force"));
        gaps.push(gap);
    }

    // Forty in flight: SIGKILL once a few were answered and the rest are on their way.
    let in_flight = sessions[20..60].to_vec();
    let replica = Arc::new(tokio::sync::RwLock::new(replica));
    let answered_so_far = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for (id, _) in in_flight.iter().cloned() {
        let (replica, answered_so_far) = (Arc::clone(&replica), Arc::clone(&answered_so_far));
        tasks.push(tokio::spawn(async move {
            let outcome = replica.read().await.terminate(&id).await;
            answered_so_far.fetch_add(usize::from(outcome.is_ok()), Ordering::SeqCst);
            (id, outcome.is_ok())
        }));
    }
    while answered_so_far.load(Ordering::SeqCst) < 5 && !tasks.iter().all(|t| t.is_finished()) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let pid = replica.read().await.plane().pid();
    crate::cluster::signal(pid, "KILL");
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.expect("task"));
    }
    let mut replica = Arc::try_unwrap(replica).ok().expect("tasks done").into_inner();
    let back = replica.restart().await;
    let answered_in_flight = outcomes.iter().filter(|(_, ok)| *ok).count();
    assert!((5..40).contains(&answered_in_flight), "{label}: the kill came mid-flight: {answered_in_flight} answered");

    // After the crash: what the control plane lists and what the edge does agree.
    let mut revivals = 0;
    let mut in_flight_gaps = Vec::new();
    for (id, token) in &in_flight {
        let answered = outcomes.iter().any(|(o, ok)| o == id && *ok);
        let state = replica.plane().api_get(&format!("/sessions/{id}")).await["state"].clone();
        assert!(!answered || state == "ended", "{label}: {id} was answered 200 but is listed {state}");
        if state == "ended" {
            match refused_everywhere(&[&edge], token, back, LOOK_FOR).await {
                Some(gap) => in_flight_gaps.push(gap),
                None => panic!("{label}: {id} is listed ended but the edge admits it"),
            }
        } else {
            assert!(edge.admits(token).await, "{label}: {id} is listed {state} but the edge refuses it");
        }
    }
    for (_, token) in answered.iter() {
        revivals += usize::from(edge.admits(token).await);
    }
    for (_, token) in &sessions[60..] {
        assert!(edge.admits(token).await, "{label}: an untouched session still works");
    }
    figures(
        label,
        &format!(
            "20 answered then SIGKILL: gap after restart {}; 40 in flight: {answered_in_flight} answered, gap after \
             restart {}; revivals {revivals}",
            percentiles(&mut gaps),
            percentiles(&mut in_flight_gaps)
        ),
    );
    assert_eq!(revivals, 0, "{label}: terminated sessions came back");
    let slowest = gaps.iter().chain(&in_flight_gaps).max().copied().unwrap_or_default();
    assert!(slowest <= ENFORCED_WITHIN, "{label}: a termination took {slowest:?} after the restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answered_terminations_survive_a_sigkill_on_sqlite() {
    let dir = TempDir::new("crash-sqlite-db");
    let database = format!("sqlite://{}", dir.path().join("cp.db").display());
    answered_terminations_survive_sigkill(&database, "sigkill on SQLite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answered_terminations_survive_a_sigkill_on_postgres() {
    let Some(database) = postgres::fresh("answered_terminations_survive_a_sigkill_on_postgres").await else { return };
    answered_terminations_survive_sigkill(&database.url, "sigkill on PostgreSQL").await;
}
