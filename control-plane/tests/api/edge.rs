//! The edge channel: authentication (forged, expired, misdirected and
//! foreign assertions are refused), and the stream — a snapshot first
//! without `since`, only later deltas with `since=head`, terminations while
//! open, heartbeats when idle.

use std::time::{Duration, Instant};

use axum::http::Method;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use portcullis_policy::wire::Message;
use portcullis_policy::{Change, SessionId, UserRef};
use serde_json::{json, Value};

use crate::edge_auth::{claims, new_key, now_s, sign};
use crate::fixtures::{apply_policy, login, reason, Login, POLICY};
use crate::harness::{TestApp, BOOTSTRAP_TOKEN, EDGE_ID, EDGE_SECRET};

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
        (Method::GET, "/edge/v1/fleet-key", json!(null)),
    ];
    let key = t.edges.key(EDGE_ID).await;
    let public = {
        use p256::pkcs8::{DecodePrivateKey, EncodePublicKey, LineEnding};
        let secret = p256::SecretKey::from_pkcs8_pem(&key).unwrap();
        secret.public_key().to_public_key_pem(LineEnding::LF).unwrap()
    };
    t.edges.key("edge-b").await;
    let (other_key, _) = new_key();
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = claims(EDGE_ID);
        f(&mut c);
        c
    };
    let now = now_s();
    let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let hs256 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims(EDGE_ID),
        &jsonwebtoken::EncodingKey::from_secret(public.as_bytes()),
    )
    .unwrap();
    let forged: Vec<(&str, Option<String>, &str)> = vec![
        ("nothing", None, "edge assertion"),
        ("the bootstrap secret", Some(EDGE_SECRET.to_owned()), "edge assertion"),
        ("an admin token", Some(BOOTSTRAP_TOKEN.to_owned()), "edge assertion"),
        ("another key", Some(sign(&other_key, &claims(EDGE_ID))), "not signed with this edge's enrolled key"),
        (
            "alg none",
            Some(format!("{}.{}.", b64(&json!({"alg": "none", "typ": "JWT"})), b64(&claims(EDGE_ID)))),
            "edge assertion",
        ),
        ("HS256 keyed with the public key", Some(hs256), "ES256 only"),
        (
            "expired",
            Some(sign(
                &key,
                &with(&|c| {
                    c["iat"] = json!(now - 200);
                    c["exp"] = json!(now - 100)
                }),
            )),
            "expired",
        ),
        (
            "issued in the future",
            Some(sign(
                &key,
                &with(&|c| {
                    c["iat"] = json!(now + 600);
                    c["exp"] = json!(now + 630)
                }),
            )),
            "future",
        ),
        ("for another audience", Some(sign(&key, &with(&|c| c["aud"] = json!("portcullis-portal")))), "audience"),
        ("an hour long", Some(sign(&key, &with(&|c| c["exp"] = json!(now + 3600)))), "at most 60 s"),
        (
            "without jti",
            Some(sign(
                &key,
                &with(&|c| {
                    c.as_object_mut().unwrap().remove("jti");
                }),
            )),
            "jti",
        ),
        ("iss other than sub", Some(sign(&key, &with(&|c| c["iss"] = json!("edge-b")))), "name the edge"),
        ("edge-b by edge-a's key", Some(sign(&key, &claims("edge-b"))), "not signed with this edge's enrolled key"),
        ("an edge never enrolled", Some(sign(&other_key, &claims("edge-z"))), "not enrolled"),
    ];
    for (method, path, body) in calls {
        let call = |c: crate::client::Call| if body.is_null() { c } else { c.json(body.clone()) };
        for (name, token, says) in &forged {
            let request = match token {
                Some(token) => t.edge(method.clone(), path).bearer(token),
                None => t.edge(method.clone(), path).no_auth(),
            };
            let message = call(request).send().await.error(401, "unauthorized");
            assert!(message.contains(says), "{path} with {name}: {message}");
        }
    }
    // Nothing was recorded for any refused call: the two edges are only enrolled.
    let edges = t.get("/api/v1/edges").send().await.ok();
    let states: Vec<_> = edges.as_array().unwrap().iter().map(|e| e["state"].as_str().unwrap().to_owned()).collect();
    assert_eq!(states, ["enrolled", "enrolled"], "{edges}");
    assert_eq!(t.get("/api/v1/sessions").send().await.ok()["sessions"], json!([]));
    // The id comes from the assertion: the header names nothing.
    let id = "E".repeat(64);
    let report =
        t.edge(Method::POST, "/edge/v1/report").header("x-portcullis-edge-id", &id).json(json!({ "applied_seq": 1 }));
    assert_eq!(report.send().await.status.as_u16(), 204);
    let spoof = t.edge(Method::POST, "/edge/v1/report").json(json!({ "applied_seq": 1 }));
    let spoof = spoof.bearer(&sign(&key, &claims(EDGE_ID))).header("x-portcullis-edge-id", "edge-b").send().await;
    assert_eq!(spoof.status.as_u16(), 204);
    let edges = t.get("/api/v1/edges").send().await.ok();
    let reported: Vec<_> =
        edges.as_array().unwrap().iter().filter(|e| e["state"] == "connected").map(|e| e["id"].clone()).collect();
    assert_eq!(reported, [json!(id), json!(EDGE_ID)], "{edges}");
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
    for _ in 0..3 {
        match stream.expect_change().await {
            Message::Delta(delta) => {
                seqs.push(delta.seq);
                let user = UserRef::email("eve@test.example");
                match (seqs.len(), delta.change) {
                    (1, Change::LockUser { user: u, lock }) => assert!(u == user && lock.reason == "r"),
                    // The unlock ends the user's sessions first.
                    (2, Change::TerminateUser { user: u, .. }) => assert_eq!(u, user),
                    (3, Change::UnlockUser { user: u }) => assert_eq!(u, user),
                    (n, change) => panic!("delta {n}: unexpected {change:?}"),
                }
            }
            other => panic!("since=head never sends a snapshot; got {other:?}"),
        }
    }
    assert_eq!(seqs, [head + 1, head + 2, head + 3]);

    // Resuming from an earlier sequence replays exactly the missed deltas.
    let mut resumed = t.edge(Method::GET, &format!("/edge/v1/stream?since={}", head + 1)).open().await;
    for missed in [head + 2, head + 3] {
        match resumed.expect_change().await {
            Message::Delta(delta) => assert_eq!(delta.seq, missed),
            other => panic!("expected the missed deltas, got {other:?}"),
        }
    }
    match resumed.next(Duration::from_secs(3)).await {
        Some(Message::Heartbeat { head_seq, .. }) => assert_eq!(head_seq, head + 3),
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
