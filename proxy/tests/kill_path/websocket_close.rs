//! What a websocket client is told when the edge ends its connection: a
//! close frame with code 1008 and a reason any user may read, put between
//! two of the app's frames, never inside one; and nothing of the kind when
//! the app itself goes away. Everything is asserted on what the client's
//! websocket library received (tokio-tungstenite).

use std::time::Duration;

use portcullis_policy::snapshot::{Change, Lock};
use portcullis_policy::UserRef;
use tokio_tungstenite::tungstenite::Message;

use crate::support::clients::{Ending, WebSocket};
use crate::support::{figure, within, World};
use crate::{terminate, LIMIT};

/// The close frame's (code, reason), or a panic saying what came instead.
fn close_of(ending: &Ending) -> (u16, &str) {
    match &ending.close {
        Some((code, reason)) => (*code, reason.as_str()),
        None => panic!("no close frame: {ending:?}"),
    }
}

/// The payload the upstream's `slow`/`stall` frames carry.
fn pattern(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i % 251) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminated_session_gets_close_1008_with_a_plain_reason() {
    let world = World::start("ws-terminate").await;
    let ada = world.keys.mint("ada@corp.example");
    let mut ws = WebSocket::open(world.edge.listen, &ada.cookie()).await;
    assert_eq!(ws.echo("ping").await, "ping");

    world.plane.push(terminate(&ada));
    let ending = ws.ending(LIMIT).await;
    assert_eq!(close_of(&ending), (1008, "session terminated"), "{ending:?}");
    assert!(ending.messages.is_empty(), "{ending:?}");
    figure("ws-terminate", &format!("close frame 1008 received {:?} after the delta was pushed", ending.took));
    assert_eq!(world.metric("portcullis_edge_kills_total{reason=\"session_terminated\"}").await, Some(1.0));
    within(LIMIT, "the app's side of the websocket ends", || async { world.upstream.ended().contains(&"/ws".into()) })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_user_is_told_access_was_revoked_and_not_the_admins_reason() {
    let world = World::start("ws-lock").await;
    let bob = world.keys.mint("bob@corp.example");
    let mut ws = WebSocket::open(world.edge.listen, &bob.cookie()).await;
    assert_eq!(ws.echo("ping").await, "ping");

    let lock = Lock { until: None, reason: "INC-4711 stolen laptop, ask secops".into() };
    world.plane.push(Change::LockUser { user: UserRef::email("bob@corp.example"), lock });
    let ending = ws.ending(LIMIT).await;
    let (code, reason) = close_of(&ending);
    assert_eq!((code, reason), (1008, "access revoked for this account"), "{ending:?}");
    assert!(!reason.contains("INC") && !reason.contains("bob"), "nothing internal: {reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_close_frame_waits_for_the_end_of_the_frame_the_app_is_sending() {
    let world = World::start("ws-midframe").await;
    let carol = world.keys.mint("carol@corp.example");
    let mut ws = WebSocket::open(world.edge.listen, &carol.cookie()).await;
    assert_eq!(ws.echo("ping").await, "ping");

    // 100 kB in five pieces 80 ms apart: the termination lands inside the frame.
    ws.send("slow 100000").await;
    within(LIMIT, "the app starts its frame", || async { world.upstream.notes().contains(&"slow started".into()) })
        .await;
    world.plane.push(terminate(&carol));
    let ending = ws.ending(LIMIT).await;
    let whole = ending.messages == [Message::binary(pattern(100_000))];
    assert!(
        whole,
        "the whole frame, intact, first: {:?}",
        ending.messages.iter().map(Message::len).collect::<Vec<_>>()
    );
    assert_eq!(close_of(&ending), (1008, "session terminated"), "then the close frame: {ending:?}");
    figure("ws-midframe", &format!("close frame after the app's frame, {:?} after the delta", ending.took));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_the_app_never_finishes_ends_without_a_close_frame_rather_than_a_corrupt_one() {
    let world = World::start("ws-stall").await;
    let dave = world.keys.mint("dave@corp.example");
    let mut ws = WebSocket::open(world.edge.listen, &dave.cookie()).await;
    assert_eq!(ws.echo("ping").await, "ping");

    ws.send("stall 100000").await;
    within(LIMIT, "the app sends half a frame", || async { world.upstream.notes().contains(&"stall sent".into()) })
        .await;
    world.plane.push(terminate(&dave));
    let ending = ws.ending(LIMIT).await;
    assert_eq!(ending.close, None, "no close frame inside the app's frame: {ending:?}");
    assert!(ending.messages.is_empty(), "half a frame is no message: {ending:?}");
    assert!(ending.error.is_some(), "the connection was dropped: {ending:?}");
    let bound = portcullis_edge::upgrade::FRAME_END_WAIT + Duration::from_millis(900);
    assert!(ending.took < bound, "dropped within {bound:?}: {ending:?}");
    figure("ws-stall", &format!("dropped {:?} after the delta (frame-end wait included)", ending.took));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_that_goes_away_gives_no_1008() {
    let world = World::start("ws-crash").await;
    let erin = world.keys.mint("erin@corp.example");
    let mut ws = WebSocket::open(world.edge.listen, &erin.cookie()).await;
    assert_eq!(ws.echo("ping").await, "ping");

    ws.send("crash").await;
    let ending = ws.ending(LIMIT).await;
    assert_eq!(ending.close, None, "the edge speaks only for its own kills: {ending:?}");
    assert!(ending.messages.is_empty(), "{ending:?}");
    assert_eq!(world.metric("portcullis_edge_kills_total{reason=\"session_terminated\"}").await, None);
}
