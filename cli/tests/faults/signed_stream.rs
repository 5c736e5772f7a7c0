//! Signed snapshots and deltas (issue 12), with a man in the middle between
//! the edge and the control plane ([`StreamProxy`]): forged, tampered,
//! unsigned, replayed, duplicated and dropped frames are refused; the edge
//! keeps its last good snapshot (a terminated session stays refused, an
//! allow-all policy never takes effect: the upstream receives nothing of
//! either), says so on `/readyz` and in
//! `portcullis_edge_stream_frames_refused_total{reason}`, and recovers as
//! soon as the genuine stream gets through again. An edge pinned to
//! another key refuses the control plane's stream altogether.

use std::time::{Duration, Instant};

use portcullis_policy::snapshot::Change;
use portcullis_policy::stream_key::StreamSigningKey;
use portcullis_policy::wire::{Message, SnapshotBody};
use portcullis_policy::{Delta, Policy, PolicySource};

use crate::cluster::{policy, Edge, Replica};
use crate::figures;
use crate::harness::TempDir;
use crate::recording_upstream::{Recorded, RecordingUpstream};
use crate::stream_proxy::{message_of, Attack, StreamProxy};

/// Everyone, logged in or not, on route `app`: what an attacker would push.
fn allow_all(upstream: u16) -> String {
    format!(
        "version: 1\nroutes:\n  - name: app\n    host: app.corp.example\n    upstream: http://127.0.0.1:{upstream}\n    \
         rules:\n      - public: true\n        allow: {{}}\n"
    )
}

/// The refused-frame counter for `reason`.
async fn refused(edge: &Edge, reason: &str) -> f64 {
    edge.metric(&format!("portcullis_edge_stream_frames_refused_total{{reason=\"{reason}\"}}")).await.unwrap_or(-1.0)
}

/// Polls `holds` every 20 ms for at most `limit`; how long it took.
async fn within<F, Fut>(limit: Duration, mut holds: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while started.elapsed() < limit {
        if holds().await {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// The email every request the upstream received carried.
fn emails(seen: &[Recorded]) -> Vec<String> {
    seen.iter().map(|r| r.header("x-portcullis-email").unwrap_or("(anonymous)").to_owned()).collect()
}

/// The edge-channel port of `replica`.
fn edge_port(replica: &Replica) -> u16 {
    replica.edge_url().rsplit(':').next().and_then(|p| p.parse().ok()).expect("a port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_man_in_the_middle_cannot_change_what_the_edge_enforces() {
    let dir = TempDir::new("mitm");
    let upstream = RecordingUpstream::start().await;
    let replica = Replica::start(&format!("sqlite://{}", dir.path().join("cp.db").display()), dir.path()).await;
    replica.plane().apply_policy(&policy(upstream.port)).await;
    let proxy = StreamProxy::start(edge_port(&replica)).await;
    let edge = Edge::start("edge-1", &[proxy.url()], dir.path()).await;
    let (gone_id, gone) = replica.mint("ada@corp.example", "app").await;
    let (bob_id, kept) = replica.mint("bob@corp.example", "app").await;
    let (carol_id, carol) = replica.mint("carol@corp.example", "app").await;
    replica.terminate(&gone_id).await.expect("terminated");
    within(Duration::from_secs(5), || async { !edge.admits(&gone).await }).await.expect("the termination applies");
    let seq = edge.metric("portcullis_edge_snapshot_seq").await.expect("a snapshot seq");
    let mark = upstream.log.mark();

    // What the attacker makes from what it saw: the edge's first snapshot
    // (from before the termination), the termination's delta, and forgeries.
    let carried = proxy.carried();
    let Some(Message::Snapshot(genuine)) = message_of(&carried[0].frames[0]) else { panic!("a first snapshot") };
    let termination = carried.iter().enumerate().find_map(|(s, stream)| {
        stream
            .frames
            .iter()
            .position(|f| {
                matches!(message_of(f), Some(Message::Delta(Delta { change: Change::TerminateSession { .. }, .. })))
            })
            .map(|f| (s, f))
    });
    let (stream, frame) = termination.expect("the termination's delta went through the proxy");
    let forged_policy = PolicySource { name: "forged".into(), text: allow_all(upstream.port) };
    Policy::compile(forged_policy.clone()).expect("the forgery would be enforced if it were believed");
    let allow_all_delta =
        Message::Delta(Delta { seq: seq as u64 + 1, change: Change::ReplacePolicy { policy: forged_policy.clone() } });
    let rolled_back = Message::Snapshot(SnapshotBody {
        seq: seq as u64 + 1,
        policy: forged_policy,
        terminated_sessions: vec![],
        ..genuine
    });
    let attacker = Box::new(StreamSigningKey::from_seed(rand::random()));
    let cases = [
        ("a tampered allow-all delta", Attack::Tamper(allow_all_delta.clone()), "bad_signature"),
        ("a tampered snapshot without the termination", Attack::Tamper(rolled_back.clone()), "bad_signature"),
        (
            "an allow-all delta signed by another key",
            Attack::Forge(allow_all_delta.clone(), attacker.clone()),
            "wrong_key",
        ),
        ("a snapshot without the termination, another key", Attack::Forge(rolled_back.clone(), attacker), "wrong_key"),
        ("an unsigned allow-all delta", Attack::Unsigned(allow_all_delta.clone()), "unsigned"),
        ("an unsigned snapshot without the termination", Attack::Unsigned(rolled_back), "unsigned"),
        ("the snapshot from before the termination, replayed", Attack::Replay { stream: 0, frame: 0 }, "replayed"),
        ("the termination's delta, replayed", Attack::Replay { stream, frame }, "replayed"),
        ("a frame sent twice", Attack::Duplicate, "replayed"),
    ];
    let mut failures = Vec::new();
    let mut took = Vec::new();
    for (name, attack, reason) in cases {
        let before = refused(&edge, reason).await;
        proxy.attack_next(attack);
        proxy.cut();
        let Some(after) = within(Duration::from_secs(6), || async { refused(&edge, reason).await > before }).await
        else {
            failures.push(format!("{name}: not counted as `{reason}` within 6 s"));
            continue;
        };
        took.push(after);
        let anonymous = edge.status_on("app.corp.example", "app", "").await;
        let outcome = (
            edge.admits(&gone).await,
            anonymous,
            edge.admits(&kept).await,
            edge.metric("portcullis_edge_snapshot_seq").await,
        );
        if outcome != (false, outcome.1, true, Some(seq)) || anonymous == 200 {
            failures.push(format!(
                "{name}: terminated admitted {}, anonymous status {anonymous}, kept admitted {}, snapshot seq {:?} \
                 (was {seq})",
                outcome.0, outcome.2, outcome.3
            ));
        }
    }
    assert!(failures.is_empty(), "{}\n{}", failures.join("\n"), edge.log_text());
    figures("signed stream", &format!("each forged or replayed frame refused {took:?} after the stream was cut"));

    // A termination the attacker drops: the next frame shows the gap.
    let before = refused(&edge, "out_of_order").await;
    proxy.attack_next(Attack::DropDeltas);
    proxy.cut();
    let streams = proxy.carried().len();
    within(Duration::from_secs(5), || async { proxy.carried().len() > streams }).await.expect("a new stream");
    replica.terminate(&carol_id).await.expect("terminated");
    let answered = Instant::now();
    let enforced = within(Duration::from_secs(10), || async { !edge.admits(&carol).await }).await;
    let enforced = enforced.unwrap_or_else(|| panic!("carol's termination never applied:\n{}", edge.log_text()));
    let carol_ended = upstream.log.mark();
    assert!(refused(&edge, "out_of_order").await > before, "the dropped delta was noticed");
    figures("signed stream", &format!("a dropped termination enforced {:?} after the answer", answered.elapsed()));
    assert!(enforced <= Duration::from_secs(5), "carol refused only {enforced:?} after her termination");

    // Forgeries on every stream: no verified frame, so not ready, and says why.
    let before = refused(&edge, "bad_signature").await;
    proxy.attack_every(Some(Attack::Tamper(allow_all_delta)));
    proxy.cut();
    let unready = within(Duration::from_secs(15), || async { !edge.ready().await }).await;
    let unready = unready.unwrap_or_else(|| panic!("/readyz stayed 200 under forgeries:\n{}", edge.log_text()));
    let (status, body) = edge.readyz().await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("bad signature") && body.contains("no verified frame"), "/readyz says why: {body}");
    assert!(refused(&edge, "bad_signature").await >= before + 2.0, "every attempt is refused and counted");
    assert!(!edge.admits(&gone).await && edge.admits(&kept).await, "the last good snapshot, stale, still rules");
    assert!(edge.log_text().contains("refused a frame from the control plane: bad signature"), "one clear line");

    // The genuine stream again: ready, and enforcing what happened meanwhile.
    proxy.attack_every(None);
    replica.terminate(&bob_id).await.expect("terminated");
    let recovered = within(Duration::from_secs(10), || async { edge.ready().await }).await;
    let recovered = recovered.unwrap_or_else(|| panic!("not ready again:\n{}", edge.log_text()));
    let enforced = within(Duration::from_secs(5), || async { !edge.admits(&kept).await }).await;
    let bob_ended = upstream.log.mark();
    figures(
        "signed stream",
        &format!("unready {unready:?} into forgeries; ready {recovered:?} after they stopped, then {enforced:?}"),
    );
    assert!(enforced.is_some(), "bob's termination applies once the genuine stream is back");

    // What the protected app received through it all: never the terminated
    // session or an anonymous request; bob's and carol's until their own
    // terminations applied, nothing of either after.
    let seen = emails(&upstream.log.since(mark));
    assert!(seen.iter().any(|e| e == "bob@corp.example"), "bob was served while the forgeries were refused");
    assert!(seen.iter().all(|e| e == "bob@corp.example" || e == "carol@corp.example"), "{seen:?}");
    let after_carol = emails(&upstream.log.since(carol_ended));
    assert!(after_carol.iter().all(|e| e == "bob@corp.example"), "carol after her termination: {after_carol:?}");
    assert!(upstream.log.since(bob_ended).is_empty(), "nothing after bob's termination");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_pinned_to_another_stream_key_refuses_the_stream() {
    let dir = TempDir::new("pinned");
    let upstream = RecordingUpstream::start().await;
    let replica = Replica::start(&format!("sqlite://{}", dir.path().join("cp.db").display()), dir.path()).await;
    replica.plane().apply_policy(&policy(upstream.port)).await;
    let (_, token) = replica.mint("ada@corp.example", "app").await;

    let wrong = StreamSigningKey::from_seed(rand::random()).public_key();
    let settings = [("stream_public_key", wrong.to_string())];
    let edge = Edge::launch("edge-wrong", &[replica.edge_url()], dir.path(), &settings);
    let counted = within(Duration::from_secs(15), || async { refused(&edge, "wrong_key").await >= 1.0 }).await;
    counted.unwrap_or_else(|| panic!("no wrong_key refusal:\n{}", edge.log_text()));
    let (status, body) = edge.readyz().await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("no snapshot") && body.contains(&format!("pins stream key {}", wrong.key_id())), "{body}");
    assert_eq!(edge.status_on("app.corp.example", "app", &token).await, 503, "no verified snapshot: fail closed");
    assert!(upstream.log.since(0).is_empty(), "the upstream received nothing");

    // The right key, from the admin API, pinned as a PEM file: it streams.
    let published = replica.plane().api_get("/stream-key").await;
    let pem = dir.write("stream.pem", published["pem"].as_str().expect("a PEM"));
    let pinned = Edge::launch(
        "edge-pinned",
        &[replica.edge_url()],
        dir.path(),
        &[("stream_public_key", pem.display().to_string())],
    );
    pinned.wait_ready().await;
    assert!(pinned.admits(&token).await);
    assert_eq!(upstream.log.since(0).len(), 1, "one request, through the correctly pinned edge");
    for log in [edge.log_text(), pinned.log_text(), replica.plane().log_text()] {
        assert!(!log.contains("PRIVATE KEY"), "no private key in any log");
    }
}
