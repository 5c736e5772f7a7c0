//! The kill path, in process: the real edge services on port 0
//! (`portcullis_edge::in_process`) fed by a stand-in control plane that
//! signs its own stream, in front of a recording upstream. A termination
//! delta closes a session's keep-alive connection, websocket and HTTP/2
//! stream and the next report counts them; a dropped stream resumes by
//! sequence; a replayed delta changes nothing; a refused report is retried.
//! Every assertion is about what the other side received: the client's
//! socket, the app's log, the control plane's reports. What a websocket
//! client is told when it is cut: `websocket_close`; TCP flows through the
//! real listener, spliced and killed: `tunnel_flow`.

mod support;
#[path = "kill_path/tunnel_flow.rs"]
mod tunnel_flow;
#[path = "kill_path/websocket_close.rs"]
mod websocket_close;

use std::time::Duration;

use portcullis_edge::clock::unix_now_s;
use portcullis_policy::snapshot::Change;
use portcullis_policy::wire::Message;
use portcullis_policy::{Delta, SessionId};

use support::clients::{H2Stream, KeepAlive, WebSocket};
use support::sessions::Session;
use support::{figure, within, World};

const LIMIT: Duration = Duration::from_secs(5);

/// The delta that terminates `session`.
fn terminate(session: &Session) -> Change {
    Change::TerminateSession { session: session.id, expires_at: unix_now_s() + 600 }
}

/// The paths the app received from `session`, in order.
fn paths_of(world: &World, session: &Session) -> Vec<String> {
    let sid = session.id.to_string();
    let seen = world.upstream.requests();
    let mine = seen.iter().filter(|s| s.email.as_deref() == Some(&session.email));
    mine.inspect(|s| assert_eq!(s.session.as_deref(), Some(sid.as_str()), "{s:?}")).map(|s| s.path.clone()).collect()
}

/// Every `closed` entry of the reports the stand-in accepted.
fn accepted_closes(world: &World) -> Vec<(u64, i64)> {
    world.plane.reports().iter().filter(|r| r.status == 204).flat_map(|r| r.closed()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_termination_closes_keep_alive_websocket_and_h2_and_the_report_counts_them() {
    let world = World::start("terminate").await;
    let (ada, bob) = (world.keys.mint("ada@corp.example"), world.keys.mint("bob@corp.example"));
    let mut ada_http = KeepAlive::open(world.edge.listen).await;
    assert_eq!(ada_http.get("/hello", &ada.cookie()).await, Ok((200, "hello /hello".into())));
    let mut bob_http = KeepAlive::open(world.edge.listen).await;
    assert_eq!(bob_http.get("/hello", &bob.cookie()).await, Ok((200, "hello /hello".into())));
    let mut ws = WebSocket::open(world.edge.listen, &ada.cookie()).await;
    assert_eq!(ws.echo("ping").await, "ping");
    let https = world.edge.https.expect("an HTTPS listener");
    let mut h2 = H2Stream::open(https, "/stream", &ada.cookie()).await;
    assert_eq!((h2.status, &h2.first[..]), (200, &b"tick\n"[..]));
    assert_eq!(paths_of(&world, &ada), ["/hello", "/ws", "/stream"], "the app served ada three ways");
    assert_eq!(world.edge.state.registry.len(), 4, "four live connections");

    let seq = world.plane.push(terminate(&ada));
    let keep_alive = ada_http.closed_within(LIMIT).await.expect("ada's keep-alive connection closes");
    let websocket = ws.closed_within(LIMIT).await.expect("ada's websocket closes");
    let (h2_took, h2_end) = h2.closed_within(LIMIT).await.expect("ada's HTTP/2 stream breaks");
    figure(
        "termination",
        &format!("keep-alive closed after {keep_alive:?}, websocket {websocket:?}, h2 {h2_took:?} ({h2_end})"),
    );

    // The report: the three connections, once, under the termination's sequence.
    within(LIMIT, "an accepted report carries the closes", || async { !accepted_closes(&world).is_empty() }).await;
    assert_eq!(accepted_closes(&world), [(seq, 3)], "{:?}", world.plane.reports());
    let report = world.plane.reports().into_iter().find(|r| !r.closed().is_empty()).expect("the report");
    assert_eq!(report.body.applied_seq, seq, "{report:?}");
    assert_eq!(world.metric("portcullis_edge_kills_total{reason=\"session_terminated\"}").await, Some(3.0));

    // The app's side: its websocket and its endless response were cut too.
    within(LIMIT, "the app sees its websocket and stream connections end", || async {
        let ended = world.upstream.ended();
        ended.iter().any(|p| p == "/ws") && ended.iter().any(|p| p == "/stream")
    })
    .await;

    // Only ada: bob's idle connection still serves; ada is refused and the app hears nothing of her.
    assert_eq!(bob_http.get("/after", &bob.cookie()).await, Ok((200, "hello /after".into())));
    let mut again = KeepAlive::open(world.edge.listen).await;
    let (status, _) = again.get("/hello", &ada.cookie()).await.expect("an answer to ada");
    assert_ne!(status, 200, "a terminated session is refused");
    assert_eq!(paths_of(&world, &ada), ["/hello", "/ws", "/stream"], "nothing of ada after the termination");
    assert_eq!(paths_of(&world, &bob), ["/hello", "/after"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_stream_resumes_from_the_last_sequence_without_a_snapshot() {
    let world = World::start("resume").await;
    let (carol, dave) = (world.keys.mint("carol@corp.example"), world.keys.mint("dave@corp.example"));
    let mut dave_http = KeepAlive::open(world.edge.listen).await;
    assert_eq!(dave_http.get("/hello", &dave.cookie()).await.map(|r| r.0), Ok(200));
    let two = world.plane.push(terminate(&carol));
    within(LIMIT, "the edge applies delta 2", || async { world.applied() == Some(two) }).await;

    world.plane.drop_streams();
    // Changed while the stream is down (or just after it is back: either way
    // it must arrive on the resumed stream).
    let three = world.plane.push(terminate(&dave));
    let took = within(LIMIT, "the edge applies delta 3", || async { world.applied() == Some(three) }).await;
    figure("resume", &format!("delta 3 applied {took:?} after the stream was dropped"));
    dave_http.closed_within(LIMIT).await.expect("dave's connection closes on the resumed stream");

    let streams = world.plane.streams();
    assert_eq!(streams.len(), 2, "one reconnection: {streams:?}");
    assert_eq!(streams[0].since, None, "the first stream asks for a snapshot");
    assert_eq!(streams[1].since, Some(two), "the edge resumes after the last sequence it applied");
    assert_ne!(streams[0].nonce, streams[1].nonce, "a fresh nonce for every stream");
    let resumed = &streams[1].sent;
    assert!(!resumed.iter().any(|m| matches!(m, Message::Snapshot(_))), "no second snapshot: {resumed:?}");
    assert!(matches!(resumed.as_slice(), [Message::Delta(Delta { seq, .. })] if *seq == three), "{resumed:?}");
    assert_eq!(world.readyz().await.0, 200);
    let mut again = KeepAlive::open(world.edge.listen).await;
    assert_ne!(again.get("/hello", &dave.cookie()).await.map(|r| r.0), Ok(200), "dave's termination holds");
    assert_eq!(paths_of(&world, &dave), ["/hello"], "the app heard nothing of dave after delta 3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_deltas_change_nothing() {
    let world = World::start("replay").await;
    let (erin, frank) = (world.keys.mint("erin@corp.example"), world.keys.mint("frank@corp.example"));
    let mut erin_http = KeepAlive::open(world.edge.listen).await;
    assert_eq!(erin_http.get("/hello", &erin.cookie()).await.map(|r| r.0), Ok(200));
    let two = world.plane.push(terminate(&frank));
    within(LIMIT, "the edge applies delta 2", || async { world.applied() == Some(two) }).await;

    // A genuinely signed, correctly bound frame whose delta is old (seq 2
    // again, now terminating erin): the edge has applied 2 and ignores it.
    let old = Delta { seq: two, change: terminate(&erin) };
    world.plane.send(&Message::Delta(old));
    // A later delta on the same stream shows the old one was read first.
    let three = world.plane.push(Change::TerminateSession { session: SessionId::from_bytes([7; 16]), expires_at: 0 });
    within(LIMIT, "the edge applies delta 3", || async { world.applied() == Some(three) }).await;
    assert_eq!(erin_http.get("/still", &erin.cookie()).await.map(|r| r.0), Ok(200), "erin's connection lives");
    assert_eq!(world.plane.streams().len(), 1, "the stream was kept");
    assert!(accepted_closes(&world).is_empty(), "nothing was closed: {:?}", world.plane.reports());

    // The same frame bytes again (delta 2's frame of this stream): refused by
    // the signed-frame binding as replayed, and the stream is dropped.
    let frames = world.plane.streams()[0].frames.clone();
    let delta_two = frames.iter().position(|f| is_delta(f, two)).expect("delta 2's frame");
    world.plane.resend_frame(0, delta_two);
    let replayed = "portcullis_edge_stream_frames_refused_total{reason=\"replayed\"}";
    within(LIMIT, "the replayed frame is refused", || async { world.metric(replayed).await == Some(1.0) }).await;
    within(LIMIT, "the edge streams again", || async { world.plane.streams().len() == 2 }).await;
    let streams = world.plane.streams();
    assert_eq!(streams[1].since, Some(three), "it resumes where it was: {streams:?}");
    assert_eq!(world.applied(), Some(three));
    assert_eq!(erin_http.get("/after", &erin.cookie()).await.map(|r| r.0), Ok(200), "erin still served");
    assert!(accepted_closes(&world).is_empty(), "nothing was closed: {:?}", world.plane.reports());
    assert_eq!(paths_of(&world, &erin), ["/hello", "/still", "/after"]);
}

/// Whether signed frame `payload` carries delta `seq`.
fn is_delta(payload: &[u8], seq: u64) -> bool {
    use portcullis_policy::signed_frame::{HEADER_BYTES, SIGNATURE_BYTES};
    let message = payload.get(HEADER_BYTES..payload.len().saturating_sub(SIGNATURE_BYTES));
    matches!(message.map(portcullis_policy::wire::decode), Some(Ok(Message::Delta(d))) if d.seq == seq)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_report_is_retried_with_its_closes() {
    let world = World::start("report").await;
    let grace = world.keys.mint("grace@corp.example");
    let mut grace_http = KeepAlive::open(world.edge.listen).await;
    assert_eq!(grace_http.get("/hello", &grace.cookie()).await.map(|r| r.0), Ok(200));
    world.plane.refuse_closing_reports(1);
    let seq = world.plane.push(terminate(&grace));
    grace_http.closed_within(LIMIT).await.expect("grace's connection closes");
    let took = within(LIMIT, "the retried report arrives", || async { !accepted_closes(&world).is_empty() }).await;
    figure("report", &format!("the closes arrived {took:?} after the connection closed, one 503 in between"));
    let reports = world.plane.reports();
    let closing: Vec<_> = reports.iter().filter(|r| !r.closed().is_empty()).map(|r| (r.status, r.closed())).collect();
    assert_eq!(closing, [(503, vec![(seq, 1)]), (204, vec![(seq, 1)])], "refused once, then carried again");
}
