//! "Nothing lost": a termination the control plane answered survives a
//! SIGKILL right after the answer. After a restart on the same database the
//! session is still ended, and a fresh edge stream's snapshot lists it as
//! terminated — on SQLite and on PostgreSQL.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use crate::edge::terminated_in;
use crate::harness::{ControlPlane, TempDir, POLICY};
use crate::postgres;

/// Terminates one session with `portcullis sessions terminate`, SIGKILLs the
/// control plane as soon as the CLI returns, restarts it and checks.
async fn terminate_then_kill(database_url: &str, dir: &TempDir) {
    let plane = ControlPlane::start(database_url, dir.path()).await;
    plane.apply_policy(POLICY).await;
    let session = plane.create_session("ada@corp.example", "wiki").await;
    let out = plane.cli(&["sessions", "terminate", &session, "--reason", "stolen laptop"]).await;
    plane.kill();
    assert!(out.ok().contains(&format!("terminated session {session}")), "{out:?}");

    let plane = ControlPlane::start(database_url, dir.path()).await;
    let view = plane.api_get(&format!("/sessions/{session}")).await;
    assert_eq!(view["state"], "ended", "{view}");
    assert_eq!(view["end_reason"], "stolen laptop", "{view}");
    let snapshot = plane.open_stream("edge-restarted", None).await.snapshot().await;
    assert!(terminated_in(&snapshot, &session), "the snapshot after restart lacks {session}");
}

/// Many terminations in flight; SIGKILL once some have been answered. Every
/// answered one must be ended after the restart (unanswered ones may or may
/// not be: their commit raced the kill).
async fn kill_during_terminations(database_url: &str, dir: &TempDir) {
    const SESSIONS: usize = 40;
    const KILL_AFTER: usize = 12;
    let plane = ControlPlane::start(database_url, dir.path()).await;
    plane.apply_policy(POLICY).await;
    let mut sessions = Vec::new();
    for i in 0..SESSIONS {
        sessions.push(plane.create_session(&format!("user{i}@corp.example"), "wiki").await);
    }
    let plane = Arc::new(plane);
    let answered = Arc::new(Mutex::new(Vec::new()));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for session in &sessions {
        let (plane, answered, tx, session) = (Arc::clone(&plane), Arc::clone(&answered), tx.clone(), session.clone());
        tokio::spawn(async move {
            let body = json!({ "reason": "incident 42" });
            if let Ok((200, _)) = plane.api_post(&format!("/sessions/{session}/terminate"), &body).await {
                answered.lock().unwrap().push(session);
                let _ = tx.send(());
            }
        });
    }
    for _ in 0..KILL_AFTER {
        tokio::time::timeout(Duration::from_secs(30), rx.recv()).await.expect("terminations are answered");
    }
    // Everything recorded so far was answered with 200 before this kill.
    let acknowledged: Vec<String> = answered.lock().unwrap().clone();
    plane.kill();
    assert!(acknowledged.len() >= KILL_AFTER);

    let plane = ControlPlane::start(database_url, dir.path()).await;
    let snapshot = plane.open_stream("edge-restarted", None).await.snapshot().await;
    for session in &acknowledged {
        let view = plane.api_get(&format!("/sessions/{session}")).await;
        assert_eq!(view["state"], "ended", "acknowledged termination lost: {view}");
        assert!(terminated_in(&snapshot, session), "acknowledged termination of {session} not in the snapshot");
    }
    eprintln!("{} of {SESSIONS} terminations acknowledged before SIGKILL; all survived", acknowledged.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_lost_on_sqlite() {
    let dir = TempDir::new("lost-sqlite");
    let url = format!("sqlite://{}", dir.path().join("control-plane.db").display());
    terminate_then_kill(&url, &dir).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_lost_on_sqlite_with_terminations_in_flight() {
    let dir = TempDir::new("inflight-sqlite");
    let url = format!("sqlite://{}", dir.path().join("control-plane.db").display());
    kill_during_terminations(&url, &dir).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_lost_on_postgres() {
    let Some(database) = postgres::fresh("nothing_lost_on_postgres").await else { return };
    let dir = TempDir::new("lost-postgres");
    terminate_then_kill(&database.url, &dir).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_lost_on_postgres_with_terminations_in_flight() {
    let Some(database) = postgres::fresh("nothing_lost_on_postgres_with_terminations_in_flight").await else {
        return;
    };
    let dir = TempDir::new("inflight-postgres");
    kill_during_terminations(&database.url, &dir).await;
}
