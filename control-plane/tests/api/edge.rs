//! The edge channel: authentication, and the stream — a snapshot first
//! without `since`, only later deltas with `since=head`, terminations while
//! open, heartbeats when idle.

use std::time::{Duration, Instant};

use axum::http::Method;
use portcullis_policy::wire::Message;
use portcullis_policy::{Change, SessionId, UserRef};
use serde_json::json;

use crate::fixtures::{apply_policy, login, reason, Login, POLICY};
use crate::harness::{TestApp, BOOTSTRAP_TOKEN, EDGE_SECRET};

api_tests!(
    edge_channel_authentication,
    stream_without_since_starts_with_a_snapshot,
    stream_since_head_sends_only_later_deltas,
    termination_reaches_an_open_stream,
    heartbeats_arrive_when_idle
);

async fn edge_channel_authentication(t: TestApp) {
    apply_policy(&t).await;
    let calls = [
        (Method::GET, "/edge/v1/stream", json!(null)),
        (Method::POST, "/edge/v1/report", json!({ "applied_seq": 1 })),
        (Method::POST, "/edge/v1/sessions", Login::new("ada@test.example").body()),
        (Method::POST, "/edge/v1/sessions/0123456789abcdef0123456789abcdef/logout", json!(null)),
    ];
    for (method, path, body) in calls {
        let call = |c: crate::client::Call| if body.is_null() { c } else { c.json(body.clone()) };
        let missing = call(t.edge(method.clone(), path).no_auth()).send().await;
        assert!(missing.error(401, "unauthorized").contains("enrollment secret"), "{path}");
        let wrong = call(t.edge(method.clone(), path).bearer("not-the-enrollment-secret-at-all-0000000")).send().await;
        assert!(wrong.error(401, "unauthorized").contains("wrong"), "{path}");
        // An admin token is not the enrollment secret.
        call(t.edge(method.clone(), path).bearer(BOOTSTRAP_TOKEN)).send().await.error(401, "unauthorized");
        let prefix = &EDGE_SECRET[..EDGE_SECRET.len() - 1];
        call(t.edge(method.clone(), path).bearer(prefix)).send().await.error(401, "unauthorized");
        let long = "e".repeat(65);
        for bad_id in ["", "has space", "semi;colon", "slash/edge", "ünïcode", long.as_str()] {
            let answer = call(t.edge(method.clone(), path).header("x-portcullis-edge-id", bad_id)).send().await;
            assert!(answer.error(400, "bad_request").contains("X-Portcullis-Edge-Id"), "{path} {bad_id:?}");
        }
        let without = call(t.edge(method.clone(), path).without("x-portcullis-edge-id")).send().await;
        assert!(without.error(400, "bad_request").contains("X-Portcullis-Edge-Id"), "{path}");
    }
    // Nothing was recorded for any refused call.
    let edges = t.get("/api/v1/edges").send().await.ok();
    assert_eq!(edges, json!([]));
    assert_eq!(t.get("/api/v1/sessions").send().await.ok()["sessions"], json!([]));
    // With the secret and a valid id (64 characters is the maximum), it works.
    let id = "E".repeat(64);
    let report =
        t.edge(Method::POST, "/edge/v1/report").header("x-portcullis-edge-id", &id).json(json!({ "applied_seq": 1 }));
    assert_eq!(report.send().await.status.as_u16(), 204);
    assert_eq!(t.get("/api/v1/edges").send().await.ok()[0]["id"], id.as_str());
}

async fn stream_without_since_starts_with_a_snapshot(t: TestApp) {
    apply_policy(&t).await;
    let ended = login(&t, "ada@test.example").await;
    t.post(&format!("/api/v1/sessions/{ended}/terminate")).json(reason("r")).send().await.ok();
    t.post("/api/v1/users/lock").json(json!({ "email": "eve@test.example", "reason": "suspicious" })).send().await.ok();
    let head = t.head().await;

    for uri in ["/edge/v1/stream".to_owned(), format!("/edge/v1/stream?since={}", head + 100)] {
        let mut stream = t.edge(Method::GET, &uri).open().await;
        let body = match stream.expect_next().await {
            Message::Snapshot(body) => body,
            other => panic!("{uri}: the first frame is a snapshot, not {other:?}"),
        };
        assert_eq!(body.seq, head, "{uri}");
        assert_eq!(body.policy.text, POLICY);
        let ended_id: SessionId = ended.parse().unwrap();
        assert_eq!(body.terminated_sessions.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [ended_id]);
        assert!(body.users.iter().any(|(u, s)| *u == UserRef::email("eve@test.example") && s.lock.is_some()));
        assert_eq!(body.signing_keys.len(), 1);
        // Then nothing but what happens next.
        match stream.next(Duration::from_secs(3)).await {
            Some(Message::Heartbeat { head_seq, .. }) => assert_eq!(head_seq, head),
            other => panic!("{uri}: after the snapshot, only heartbeats while idle; got {other:?}"),
        }
    }
    let metrics = t.get("/metrics").no_auth().send().await.text();
    assert!(metrics.contains("portcullis_control_plane_edge_streams 0"), "streams are counted down when dropped");
}

async fn stream_since_head_sends_only_later_deltas(t: TestApp) {
    apply_policy(&t).await;
    let head = t.head().await;
    let mut stream = t.edge(Method::GET, &format!("/edge/v1/stream?since={head}")).open().await;
    let metrics = t.get("/metrics").no_auth().send().await.text();
    assert!(metrics.contains("portcullis_control_plane_edge_streams 1"), "{metrics}");
    assert!(stream.next_change(Duration::from_millis(1200)).await.is_none(), "nothing before the next change");

    t.post("/api/v1/users/lock").json(json!({ "email": "eve@test.example", "reason": "r" })).send().await.ok();
    t.post("/api/v1/users/unlock").json(json!({ "email": "eve@test.example" })).send().await.ok();
    let mut seqs = Vec::new();
    for _ in 0..2 {
        match stream.expect_change().await {
            Message::Delta(delta) => {
                seqs.push(delta.seq);
                let user = UserRef::email("eve@test.example");
                match (seqs.len(), delta.change) {
                    (1, Change::LockUser { user: u, lock }) => assert!(u == user && lock.reason == "r"),
                    (2, Change::UnlockUser { user: u }) => assert_eq!(u, user),
                    (n, change) => panic!("delta {n}: unexpected {change:?}"),
                }
            }
            other => panic!("since=head never sends a snapshot; got {other:?}"),
        }
    }
    assert_eq!(seqs, [head + 1, head + 2]);

    // Resuming from an earlier sequence replays exactly the missed deltas.
    let mut resumed = t.edge(Method::GET, &format!("/edge/v1/stream?since={}", head + 1)).open().await;
    match resumed.expect_change().await {
        Message::Delta(delta) => assert_eq!(delta.seq, head + 2),
        other => panic!("expected the one missed delta, got {other:?}"),
    }
    match resumed.next(Duration::from_secs(3)).await {
        Some(Message::Heartbeat { head_seq, .. }) => assert_eq!(head_seq, head + 2),
        other => panic!("then a heartbeat, got {other:?}"),
    }
}

async fn termination_reaches_an_open_stream(t: TestApp) {
    apply_policy(&t).await;
    let session = login(&t, "ada@test.example").await;
    let mut stream = t.edge(Method::GET, "/edge/v1/stream").open().await;
    assert!(matches!(stream.expect_next().await, Message::Snapshot(_)));

    // An edge reads continuously: the reader is parked waiting when the change commits.
    let reader = tokio::spawn(async move {
        let message = stream.next_change(Duration::from_secs(5)).await;
        (message, Instant::now())
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let done = t.post(&format!("/api/v1/sessions/{session}/terminate")).json(reason("r")).send().await.ok();
    let seq = done["receipt"]["seq"].as_u64().unwrap();
    let (message, arrived_at) = reader.await.unwrap();
    let delta = match message {
        Some(Message::Delta(delta)) => delta,
        other => panic!("expected the termination within 5 s, got {other:?}"),
    };
    let arrived = arrived_at.saturating_duration_since(started);
    assert!(arrived < Duration::from_secs(3), "the delta took {arrived:?}");
    assert_eq!(delta.seq, seq);
    let view = t.get(&format!("/api/v1/sessions/{session}")).send().await.ok();
    let expires = chrono::DateTime::parse_from_rfc3339(view["expires_at"].as_str().unwrap()).unwrap();
    match delta.change {
        Change::TerminateSession { session: s, expires_at } => {
            assert_eq!(s, session.parse::<SessionId>().unwrap());
            assert!(expires_at >= expires.timestamp() && expires_at <= expires.timestamp() + 1, "{expires_at}");
        }
        other => panic!("expected TerminateSession, got {other:?}"),
    }
}

async fn heartbeats_arrive_when_idle(t: TestApp) {
    let head = t.head().await;
    let mut stream = t.edge(Method::GET, &format!("/edge/v1/stream?since={head}")).open().await;
    let started = Instant::now();
    let mut beats = Vec::new();
    while beats.len() < 3 {
        match stream.next(Duration::from_secs(3)).await {
            Some(Message::Heartbeat { head_seq, sent_at_ms }) => {
                assert_eq!(head_seq, head);
                beats.push(sent_at_ms);
            }
            other => panic!("an idle stream sends heartbeats every second; got {other:?}"),
        }
    }
    assert!(started.elapsed() >= Duration::from_millis(2500), "about one a second: {:?}", started.elapsed());
    assert!(beats.windows(2).all(|w| w[1] >= w[0] + 900), "{beats:?}");
    let now = chrono::Utc::now().timestamp_millis();
    assert!((now - beats[2]).abs() < 2_000, "heartbeats carry the control plane's clock");
}
