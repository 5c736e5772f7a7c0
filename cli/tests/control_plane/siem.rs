//! Security events out (issue 17) to the real NATS JetStream server on
//! 127.0.0.1:4222: 10,000 audit events (API signals) are delivered as
//! OCSF events while the control plane is SIGKILLed mid-delivery and
//! restarted; the stream then holds every event exactly once per event id,
//! in audit order, each naming its user.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use base64::Engine;
use futures_util::{stream, StreamExt};
use portcullis_control_plane::siem::nats::Connection;
use serde_json::{json, Value};

use crate::harness::{free_port, ControlPlane, TempDir, ADMIN_TOKEN};

const NATS: &str = "127.0.0.1:4222";
const EVENTS: usize = 10_000;

async fn start(database: &str, dir: &TempDir, listen: u16, stream: &str, prefix: &str) -> ControlPlane {
    let sinks = format!(
        "[{{ name = \"soc\", kind = \"nats\", url = \"nats://{NATS}\", stream = \"{stream}\", \
         subject_prefix = \"{prefix}\", batch = 500 }}]"
    );
    ControlPlane::start_on_with(database, dir.path(), listen, free_port(), &[("siem_sinks", sinks)])
        .await
        .unwrap_or_else(|log| panic!("the control plane did not start:\n{log}"))
}

async fn signal(plane: &ControlPlane, n: usize) {
    let body = json!({ "id": format!("n-{n}"), "type": "load.test", "email": format!("user{}@corp.example", n % 97) });
    let url = format!("{}/api/v1/signals", plane.url);
    let answer = plane.http().post(url).bearer_auth(ADMIN_TOKEN).json(&body).send().await.expect("POST a signal");
    assert_eq!(answer.status(), 200, "signal {n}");
}

async fn metric(plane: &ControlPlane, name: &str) -> Option<f64> {
    let text = plane.http().get(format!("{}/metrics", plane.url)).send().await.ok()?.text().await.ok()?;
    text.lines().find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_events_reach_jetstream_exactly_once_across_a_sigkill() {
    let Ok(mut nats) = Connection::connect(NATS, None).await else {
        assert!(std::env::var_os("CI").is_none(), "NATS JetStream must run on 127.0.0.1:4222 in CI");
        return;
    };
    let dir = TempDir::new("siem-nats");
    let unique =
        format!("{}{}", std::process::id(), Instant::now().elapsed().as_nanos() % 1_000_000 + free_port() as u128);
    let (stream_name, prefix) = (format!("PCTEST_{unique}"), format!("pctest{unique}"));
    let database = format!("sqlite://{}", dir.path().join("cp.db").display());
    let listen = free_port();
    let plane = start(&database, &dir, listen, &stream_name, &prefix).await;

    // Events pour in while the sink delivers; the control plane is killed halfway.
    stream::iter(0..EVENTS / 2).for_each_concurrent(8, |n| signal(&plane, n)).await;
    plane.kill();
    let delivered_before = {
        let info = nats.request(&format!("$JS.API.STREAM.INFO.{stream_name}"), &json!({})).await.unwrap();
        info.pointer("/state/messages").and_then(Value::as_u64).unwrap_or(0)
    };
    let plane = start(&database, &dir, listen, &stream_name, &prefix).await;
    stream::iter(EVENTS / 2..EVENTS).for_each_concurrent(8, |n| signal(&plane, n)).await;

    // Every audit entry (the signals and the control plane's own entries) arrives.
    let audit = plane.api_get("/audit?limit=1").await;
    let newest = audit["entries"][0]["id"].as_u64().expect("an audit entry");
    assert!(newest >= EVENTS as u64, "{audit}");
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut messages = 0;
    while Instant::now() < deadline {
        let info = nats.request(&format!("$JS.API.STREAM.INFO.{stream_name}"), &json!({})).await.unwrap();
        messages = info.pointer("/state/messages").and_then(Value::as_u64).unwrap_or(0);
        if messages >= newest {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(messages, newest, "one message per audit entry (delivered before the kill: {delivered_before})");
    assert!(delivered_before > 0 && delivered_before < newest, "the kill came mid-delivery: {delivered_before}");

    // Exactly once per event id, in audit order, OCSF-shaped.
    let mut seen = HashSet::new();
    for seq in 1..=messages {
        let got = nats.request(&format!("$JS.API.STREAM.MSG.GET.{stream_name}"), &json!({ "seq": seq })).await.unwrap();
        let message = &got["message"];
        let data = base64::engine::general_purpose::STANDARD.decode(message["data"].as_str().unwrap()).unwrap();
        let event: Value = serde_json::from_slice(&data).unwrap();
        let uid = event["metadata"]["uid"].as_str().unwrap().to_owned();
        assert_eq!(uid, format!("portcullis-audit-{seq}"), "in audit order");
        let headers = base64::engine::general_purpose::STANDARD.decode(message["hdrs"].as_str().unwrap()).unwrap();
        assert!(String::from_utf8_lossy(&headers).contains(&format!("Nats-Msg-Id: {uid}")), "de-duplication id");
        if event["unmapped"]["action"] == "signal.received" {
            assert_eq!(event["class_uid"], 6003, "{event}");
            assert!(event["user"]["email_addr"].as_str().is_some_and(|e| e.ends_with("@corp.example")), "{event}");
            assert!(message["subject"].as_str().unwrap().ends_with(".api_activity"));
        }
        assert!(seen.insert(uid), "no event twice");
    }
    // The backlog gauge (refreshed every 5 s) comes down to zero.
    let deadline = Instant::now() + Duration::from_secs(15);
    while metric(&plane, "portcullis_control_plane_siem_backlog{sink=\"soc\"}").await != Some(0.0) {
        assert!(Instant::now() < deadline, "the backlog gauge reads 0 once everything is delivered");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let _ = nats.request(&format!("$JS.API.STREAM.DELETE.{stream_name}"), &json!({})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_follow_tails_the_log_for_one_user() {
    use tokio::io::{AsyncBufReadExt, BufReader};

    let dir = TempDir::new("audit-follow");
    let plane = ControlPlane::start(&format!("sqlite://{}", dir.path().join("cp.db").display()), dir.path()).await;
    signal(&plane, 1).await; // user1@corp.example: before the follow starts
    let mut child = tokio::process::Command::from(crate::harness::command())
        .args(["audit", "--follow", "--json", "--limit", "5", "--user", "user1@corp.example"])
        .env("PORTCULLIS_URL", &plane.url)
        .env("PORTCULLIS_TOKEN", ADMIN_TOKEN)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("portcullis audit --follow");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next = async || -> Value {
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line()).await.expect("a line").unwrap();
        serde_json::from_str(&line.expect("still following")).expect("JSON lines")
    };
    assert_eq!(next().await["reason"].as_str().map(|r| r.contains("(id n-1)")), Some(true), "the recent entry first");
    signal(&plane, 2).await; // user2: not followed
    signal(&plane, 98).await; // 98 % 97 = 1: user1 again
    let newer = next().await;
    assert!(newer["reason"].as_str().is_some_and(|r| r.contains("(id n-98)")), "{newer}");
    assert_eq!(newer["user_email"], "user1@corp.example");
    child.kill().await.unwrap();
}
