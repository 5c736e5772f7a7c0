//! What a hostile Shared Signals receiver (an admin token with only the
//! `ssf` scope) cannot make the transmitter do: push into the control
//! plane's own network, or flood the store and the replica through polls.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::Method;
use portcullis_control_plane::store::{JobState, OutboxStore, SsfStore};
use serde_json::{json, Value};

use crate::fixtures::text;
use crate::harness::TestApp;

api_tests!(
    push_endpoints_stay_out_of_the_control_planes_network,
    polls_are_bounded,
    verification_and_status_are_honoured,
    a_receiver_has_few_streams,
    a_token_with_the_same_name_does_not_inherit_the_streams
);

const PUSH: &str = "urn:ietf:rfc:8935";
const POLL: &str = "urn:ietf:rfc:8936";

async fn receiver(t: &TestApp, name: &str) -> String {
    let created =
        t.post("/api/v1/admin-tokens").json(json!({ "name": name, "scopes": ["ssf"] })).send().await.expect(201);
    text(&created["token"])
}

async fn new_stream(t: &TestApp, token: &str, delivery: Value) -> crate::client::Answer {
    t.api(Method::POST, "/ssf/streams")
        .bearer(token)
        .json(json!({ "delivery": delivery, "events_requested": [] }))
        .send()
        .await
}

async fn push_endpoints_stay_out_of_the_control_planes_network(t: TestApp) {
    let rx = receiver(&t, "rx").await;
    // A loopback service the receiver would like the control plane to POST to.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&connections);
    tokio::spawn(async move {
        while listener.accept().await.is_ok() {
            counted.fetch_add(1, Ordering::SeqCst);
        }
    });

    for (url, why) in [
        (format!("http://127.0.0.1:{port}/"), "ssf_push_private_networks"),
        (format!("https://[::ffff:127.0.0.1]:{port}/"), "ssf_push_private_networks"),
        ("https://10.0.0.7/events".to_owned(), "ssf_push_private_networks"),
        ("http://169.254.169.254/latest/meta-data/".to_owned(), "link-local"),
        ("https://[fe80::1]/".to_owned(), "link-local"),
        ("https://0.0.0.0/".to_owned(), "unspecified"),
    ] {
        let refused = new_stream(&t, &rx, json!({ "method": PUSH, "endpoint_url": url })).await;
        assert!(refused.error(422, "invalid_body").contains(why), "{url}: {}", refused.text());
    }
    assert_eq!(t.get("/ssf/streams").send().await.ok(), json!([]), "nothing was stored");

    // A name is judged by what it resolves to, at each connection.
    let created =
        new_stream(&t, &rx, json!({ "method": PUSH, "endpoint_url": format!("http://localhost:{port}/events") }))
            .await
            .expect(201);
    let stream_id = text(&created["stream_id"]);
    let patched = t
        .api(Method::PATCH, "/ssf/streams")
        .bearer(&rx)
        .json(json!({ "stream_id": stream_id, "delivery": { "method": PUSH, "endpoint_url": "http://169.254.169.254/" } }))
        .send()
        .await;
    assert!(patched.error(422, "invalid_body").contains("link-local"));
    let verify = t.api(Method::POST, "/ssf/verify").bearer(&rx).json(json!({ "stream_id": stream_id })).send().await;
    verify.expect(204);
    let started = Instant::now();
    let job = loop {
        let jobs = t.app.store.list_jobs(None, None, 10).await.unwrap();
        let job = jobs.into_iter().find(|j| j.target.as_deref() == Some(stream_id.as_str())).unwrap();
        if job.state != JobState::Pending || started.elapsed() > Duration::from_secs(15) {
            break job;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(job.state, JobState::Failed, "{job:?}");
    let error = job.last_error.unwrap_or_default();
    assert!(error.contains("ssf_push_private_networks"), "{error}");
    assert_eq!(connections.load(Ordering::SeqCst), 0, "the loopback service was never connected to");
}

async fn polls_are_bounded(t: TestApp) {
    let rx = receiver(&t, "rx").await;
    let created = new_stream(&t, &rx, json!({ "method": POLL })).await.expect(201);
    let stream_id = text(&created["stream_id"]);
    let poll_path = format!("/ssf/poll/{stream_id}");
    let poll = |body: Value| t.api(Method::POST, &poll_path).bearer(&rx).json(body).send();
    t.api(Method::POST, "/ssf/verify").bearer(&rx).json(json!({ "stream_id": stream_id })).send().await.expect(204);
    let answer = poll(json!({ "returnImmediately": true })).await.ok();
    let jti = answer["sets"].as_object().unwrap().keys().next().unwrap().clone();

    // Each acknowledgement is a write: a poll carries a bounded number.
    let mut acks = vec!["a".to_owned(); 1000];
    acks.push(jti.clone());
    let refused = poll(json!({ "ack": acks, "returnImmediately": true })).await;
    assert!(refused.error(422, "invalid_body").contains("1000"));
    let refused = poll(json!({ "ack": ["x".repeat(65)], "returnImmediately": true })).await;
    assert!(refused.error(422, "invalid_body").contains("jti"));
    let long_err = json!({ "setErrs": { jti.clone(): { "err": "e".repeat(65), "description": "d" } } });
    assert!(poll(long_err).await.error(422, "invalid_body").contains("err"));
    let long_description =
        json!({ "setErrs": { jti.clone(): { "err": "invalid_key", "description": "d".repeat(501) } } });
    assert!(poll(long_description).await.error(422, "invalid_body").contains("description"));
    let job = t.app.store.get_job(&jti).await.unwrap().unwrap();
    assert_eq!((job.state, job.last_error), (JobState::Pending, None), "refused polls changed nothing");

    let acked = poll(json!({ "ack": [jti.clone()], "returnImmediately": true })).await.ok();
    assert_eq!(acked["sets"], json!({}));
    assert_eq!(t.app.store.get_job(&jti).await.unwrap().unwrap().state, JobState::Applied);

    // Waiting polls hold a slot each; beyond the replica's slots a poll
    // answers at once instead of waiting.
    let max = portcullis_control_plane::ssf::MAX_WAITING_POLLS;
    let mut waiting = Vec::new();
    for _ in 0..max {
        let call = t.api(Method::POST, &poll_path).bearer(&rx).json(json!({}));
        waiting.push(tokio::spawn(call.send()));
    }
    let started = Instant::now();
    while t.app.ssf.waiting_polls() < max {
        assert!(started.elapsed() < Duration::from_secs(10), "{} polls waiting", t.app.ssf.waiting_polls());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = Instant::now();
    let extra = poll(json!({})).await.ok();
    assert_eq!(extra, json!({ "sets": {}, "moreAvailable": false }));
    assert!(started.elapsed() < Duration::from_secs(3), "answered at once: {:?}", started.elapsed());
    // An event wakes the waiting ones, which all get it.
    t.api(Method::POST, "/ssf/verify").bearer(&rx).json(json!({ "stream_id": stream_id })).send().await.expect(204);
    for call in waiting {
        let answer = call.await.unwrap().ok();
        assert_eq!(answer["sets"].as_object().unwrap().len(), 1, "{answer}");
    }
    assert_eq!(t.app.ssf.waiting_polls(), 0);
}

async fn verification_and_status_are_honoured(t: TestApp) {
    let rx = receiver(&t, "rx").await;
    let header = json!({ "method": PUSH, "endpoint_url": "https://rx.example/events",
        "authorization_header": "Bearer a\u{0}b" });
    assert!(new_stream(&t, &rx, header).await.error(422, "invalid_body").contains("control characters"));

    let created = new_stream(&t, &rx, json!({ "method": POLL })).await.expect(201);
    let stream_id = text(&created["stream_id"]);
    let poll_path = format!("/ssf/poll/{stream_id}");
    let poll = || t.api(Method::POST, &poll_path).bearer(&rx).json(json!({ "returnImmediately": true })).send();
    let verify = || t.api(Method::POST, "/ssf/verify").bearer(&rx).json(json!({ "stream_id": stream_id })).send();
    let stored = || async {
        let jobs = t.app.store.list_jobs(None, Some(JobState::Pending), 100).await.unwrap();
        jobs.into_iter().filter(|j| j.target.as_deref() == Some(stream_id.as_str())).count()
    };

    // One verification in flight per stream: a loop of requests stores one.
    verify().await.expect(204);
    for _ in 0..5 {
        verify().await.error(429, "verification_pending");
    }
    assert_eq!(stored().await, 1);
    let polled = poll().await.ok();
    let jti = polled["sets"].as_object().unwrap().keys().next().unwrap().clone();
    let acked = t.api(Method::POST, &poll_path).bearer(&rx).json(json!({ "ack": [jti], "returnImmediately": true }));
    acked.send().await.ok();
    verify().await.expect(204);

    // A paused stream's events are held: a poll gets none until it is enabled.
    let status = |status: &str| {
        t.api(Method::POST, "/ssf/streams/status").bearer(&rx).json(json!({ "stream_id": stream_id, "status": status }))
    };
    status("paused").send().await.ok();
    assert_eq!(poll().await.ok(), json!({ "sets": {}, "moreAvailable": false }));
    assert_eq!(stored().await, 1, "held, not dropped");
    status("enabled").send().await.ok();
    assert_eq!(poll().await.ok()["sets"].as_object().unwrap().len(), 1);
}

/// Every termination writes one event per stream in its own transaction: a
/// receiver making streams by the thousand would slow every termination.
async fn a_receiver_has_few_streams(t: TestApp) {
    let rx = receiver(&t, "rx").await;
    let max = portcullis_control_plane::ssf::streams::MAX_STREAMS_PER_RECEIVER;
    for _ in 0..max {
        new_stream(&t, &rx, json!({ "method": POLL })).await.expect(201);
    }
    for _ in 0..3 {
        assert!(new_stream(&t, &rx, json!({ "method": POLL })).await.error(409, "too_many_streams").contains("delete"));
    }
    let stored = t.app.store.ssf_streams(None).await.unwrap();
    assert_eq!(stored.len(), max);
    // Another receiver has its own allowance.
    let other = receiver(&t, "other").await;
    new_stream(&t, &other, json!({ "method": POLL })).await.expect(201);
    let deleted = t.api(Method::DELETE, &format!("/ssf/streams?stream_id={}", stored[0].id)).bearer(&rx).send().await;
    deleted.expect(204);
    new_stream(&t, &rx, json!({ "method": POLL })).await.expect(201);
}

/// Streams belong to the token that made them, not to its name: an admin
/// who makes another `ssf` token under a name already in use (for another
/// receiver, or by mistake) does not hand it the first receiver's streams.
async fn a_token_with_the_same_name_does_not_inherit_the_streams(t: TestApp) {
    let first = receiver(&t, "acme-rx").await;
    let created = new_stream(&t, &first, json!({ "method": POLL })).await.expect(201);
    let stream_id = text(&created["stream_id"]);
    let second = receiver(&t, "acme-rx").await;
    let listed = t.api(Method::GET, "/ssf/streams").bearer(&second).send().await.ok();
    assert_eq!(listed, json!([]), "the namesake lists none of the first token's streams");
    let one = format!("/ssf/streams?stream_id={stream_id}");
    t.api(Method::GET, &one).bearer(&second).send().await.expect(404);
    let poll = format!("/ssf/poll/{stream_id}");
    t.api(Method::POST, &poll).bearer(&second).json(json!({ "returnImmediately": true })).send().await.expect(404);
    t.api(Method::DELETE, &one).bearer(&second).send().await.expect(404);
    // The first token still has it, and both tokens' SETs name the same audience.
    let mine = t.api(Method::GET, &one).bearer(&first).send().await.ok();
    assert_eq!(mine["aud"], "acme-rx", "{mine}");
}
