//! Issue 13, "dead on arrival": a user terminated and logging in again
//! within the same second. The termination revokes every token issued at
//! or before its instant; a session created after it, even in the same
//! second, is alive: the edge admits it (the upstream receives the request
//! as that session), the control plane lists it as active, and the tokens
//! of before the termination stay refused. On SQLite and on PostgreSQL.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;

use crate::edge_node::{login, policy, EdgeNode};
use crate::harness::{ControlPlane, TempDir};
use crate::postgres;
use crate::upstream::Upstream;

/// Unix milliseconds on the test's clock (the control plane's, on this host).
fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Sleeps until the next second has just begun, so that a termination and
/// the login after it fit in one second.
async fn start_of_next_second() {
    let into = now_ms().rem_euclid(1000);
    tokio::time::sleep(Duration::from_millis((1000 - into) as u64 + 5)).await;
}

async fn terminate_then_log_in_within_one_second(database_url: &str, dir: &TempDir) {
    let plane = ControlPlane::start(database_url, dir.path()).await;
    let upstream = Upstream::start().await;
    plane.apply_policy(&policy(upstream.port)).await;
    let edge = EdgeNode::start(&plane, "edge-a", dir.path()).await;
    let (_, before) = login(&plane, "ada@corp.example").await;
    assert_eq!(edge.get("/hello", Some(&before), &[]).await.0, 200, "the first session works");

    // A few tries: the case only counts when both happened in one second.
    for attempt in 0..5 {
        start_of_next_second().await;
        let terminated_at = now_ms();
        let (status, answer) = plane
            .api_post("/users/terminate?wait=true", &json!({ "email": "ada@corp.example", "reason": "issue 13" }))
            .await
            .expect("POST /users/terminate");
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["receipt"]["edges_applied"], 1, "the edge applied the termination: {answer}");
        let (session, after) = login(&plane, "ada@corp.example").await;
        let logged_in_at = now_ms();
        if terminated_at.div_euclid(1000) != logged_in_at.div_euclid(1000) {
            assert!(attempt < 4, "could not fit a termination and a login in one second");
            continue;
        }

        let (status, seen) = edge.get("/hello", Some(&after), &[]).await;
        assert_eq!(status, 200, "the login after the termination is admitted: {seen}\n{}", edge.log_text());
        assert_eq!(seen["x-portcullis-session"], session.as_str(), "the upstream got the new session: {seen}");
        assert_eq!(seen["x-portcullis-email"], "ada@corp.example", "{seen}");
        assert_eq!(edge.get("/hello", Some(&before), &[]).await.0, 401, "the token of before stays dead");
        let listed = plane.api_get(&format!("/sessions/{session}")).await;
        assert_eq!(listed["state"], "active", "the control plane agrees: {listed}");
        return;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_in_the_second_of_a_termination_is_admitted_on_sqlite() {
    let dir = TempDir::new("relogin-sqlite");
    let url = format!("sqlite://{}", dir.path().join("cp.db").display());
    terminate_then_log_in_within_one_second(&url, &dir).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_in_the_second_of_a_termination_is_admitted_on_postgres() {
    let Some(database) = postgres::fresh("a_login_in_the_second_of_a_termination_is_admitted_on_postgres").await else {
        return;
    };
    let dir = TempDir::new("relogin-postgres");
    terminate_then_log_in_within_one_second(&database.url, &dir).await;
}
