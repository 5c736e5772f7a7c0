//! The relay between real loopback sockets, the client side wrapped in
//! pingora's own plain-TCP stream (so the flow may splice) or in a test
//! double (so it must copy). Every test asserts what the other end
//! received, byte for byte, and what the flow counted.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use prometheus::{IntCounter, IntGauge};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::{relay, Tally};
use crate::tunnel::flow::{FlowCounters, FlowMeters};
use crate::tunnel::head::{sniff, Sniffed};
use pingora_core::protocols::Stream;

const MIB: usize = 1024 * 1024;

fn meters() -> FlowMeters {
    FlowMeters {
        up: IntCounter::new("up", "up").unwrap(),
        down: IntCounter::new("down", "down").unwrap(),
        closed: IntCounter::new("closed", "closed").unwrap(),
        open: IntGauge::new("open", "open").unwrap(),
        spliced: IntCounter::new("spliced", "spliced").unwrap(),
    }
}

/// A connected pair on loopback: (the connecting side, the accepted side).
async fn socket_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let connecting = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
    let (accepted, _) = listener.accept().await.unwrap();
    (connecting, accepted)
}

/// A recognisable byte stream: position `i` of stream `seed`.
fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed).wrapping_add((i >> 16) as u8)).collect()
}

async fn read_to_end<S: AsyncReadExt + Unpin>(stream: &mut S) -> Vec<u8> {
    let mut all = Vec::new();
    stream.read_to_end(&mut all).await.unwrap();
    all
}

/// Client and upstream sockets around an edge whose client side is
/// pingora's plain stream, with `put_back` already read by pingora.
async fn plain_flow(put_back: &[u8]) -> (TcpStream, Stream, TcpStream, TcpStream) {
    let (client, edge_side) = socket_pair().await;
    let mut l4 = pingora_core::protocols::l4::stream::Stream::from(edge_side);
    l4.rewind(put_back);
    let (edge_upstream, upstream) = socket_pair().await;
    (client, Box::new(l4), edge_upstream, upstream)
}

#[tokio::test]
async fn bytes_read_before_the_relay_reach_the_upstream_once_and_in_order_then_it_splices() {
    let (mut client, edge_client, edge_upstream, mut upstream) = plain_flow(b"BUFFERED-").await;
    let body = pattern(1, 8 * MIB);
    let sent = body.clone();
    let sender = tokio::spawn(async move {
        client.write_all(b"SOCKET-").await.unwrap();
        client.write_all(&sent).await.unwrap();
        client.shutdown().await.unwrap();
        let reply = read_to_end(&mut client).await;
        reply
    });
    let (counters, meters) = (FlowCounters::default(), meters());
    let upstream_side = async {
        let got = read_to_end(&mut upstream).await;
        upstream.write_all(b"bye").await.unwrap();
        upstream.shutdown().await.unwrap();
        got
    };
    let tally = Tally { counters: &counters, meters: &meters };
    let (relayed, got) = tokio::join!(relay(edge_client, edge_upstream, b"EARLY-", &tally), upstream_side);
    relayed.unwrap();
    let mut expected = b"EARLY-BUFFERED-SOCKET-".to_vec();
    expected.extend_from_slice(&body);
    assert_eq!(got.len(), expected.len(), "the upstream received every byte once");
    assert!(got == expected, "the upstream received the bytes in order");
    assert_eq!(sender.await.unwrap(), b"bye", "the client got the upstream's answer");
    assert!(counters.spliced.load(Ordering::Relaxed), "a bulk plain-TCP flow moves to splice");
    assert_eq!(counters.up.load(Ordering::Relaxed), expected.len() as u64);
    assert_eq!(counters.down.load(Ordering::Relaxed), 3);
    assert_eq!(meters.up.get(), expected.len() as u64);
}

/// A client that uploads `upload` bytes, half-closes, and then reads what
/// the upstream sends back after it saw the end: `download` bytes.
async fn half_close(upload: usize, download: usize) -> bool {
    let (mut client, edge_client, edge_upstream, mut upstream) = plain_flow(b"").await;
    let (up_body, down_body) = (pattern(2, upload), pattern(3, download));
    let sent = up_body.clone();
    let client_side = tokio::spawn(async move {
        client.write_all(&sent).await.unwrap();
        client.shutdown().await.unwrap();
        read_to_end(&mut client).await
    });
    let reply = down_body.clone();
    let upstream_side = async move {
        let got = read_to_end(&mut upstream).await;
        // Only after the client's end: the flow is half-closed now.
        upstream.write_all(&reply).await.unwrap();
        upstream.shutdown().await.unwrap();
        got
    };
    let (counters, meters) = (FlowCounters::default(), meters());
    let tally = Tally { counters: &counters, meters: &meters };
    let (relayed, got) = tokio::join!(relay(edge_client, edge_upstream, b"", &tally), upstream_side);
    relayed.unwrap();
    assert!(got == up_body, "the upstream got the upload ({} of {upload} bytes)", got.len());
    let back = client_side.await.unwrap();
    assert!(back == down_body, "the half-closed client got all ({} of {download} bytes)", back.len());
    assert_eq!(counters.up.load(Ordering::Relaxed), upload as u64);
    assert_eq!(counters.down.load(Ordering::Relaxed), download as u64);
    counters.spliced.load(Ordering::Relaxed)
}

#[tokio::test]
async fn a_half_closed_client_still_receives_the_upstreams_remaining_bytes() {
    assert!(half_close(4 * MIB, 8 * MIB).await, "spliced both ways");
    assert!(half_close(2, 3 * MIB).await, "spliced after the client's end");
    assert!(!half_close(2, 5).await, "a light flow is copied");
}

#[tokio::test]
async fn a_kill_during_a_large_splice_closes_both_sides_promptly() {
    let (client, edge_client, edge_upstream, mut upstream) = plain_flow(b"").await;
    let (mut client_read, mut client_write) = client.into_split();
    let writer = tokio::spawn(async move {
        let chunk = pattern(4, MIB);
        while client_write.write_all(&chunk).await.is_ok() {}
    });
    let received = tokio::spawn(async move {
        let mut buf = vec![0u8; MIB];
        let mut total = 0usize;
        loop {
            match upstream.read(&mut buf).await {
                Ok(0) | Err(_) => return (total, Instant::now()),
                Ok(n) => total += n,
            }
        }
    });
    let (counters, meters) = (FlowCounters::default(), meters());
    let killed = CancellationToken::new();
    let kill = killed.clone();
    let kill_at = async {
        while counters.up.load(Ordering::Relaxed) < 64 * MIB as u64 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(counters.spliced.load(Ordering::Relaxed), "the transfer is spliced when killed");
        let at = Instant::now();
        kill.cancel();
        at
    };
    let tally = Tally { counters: &counters, meters: &meters };
    // As the accept wrapper does: the kill drops the task serving the flow.
    let serve = async {
        tokio::select! {
            biased;
            () = killed.cancelled() => None,
            relayed = relay(edge_client, edge_upstream, b"", &tally) => Some(relayed),
        }
    };
    let (served, killed_at) = tokio::join!(serve, kill_at);
    assert!(served.is_none(), "the flow was still running when killed: {served:?}");
    let mut byte = [0u8; 1];
    let client_saw = tokio::time::timeout(Duration::from_secs(2), client_read.read(&mut byte)).await;
    let client_took = killed_at.elapsed();
    assert!(matches!(client_saw, Ok(Ok(0) | Err(_))), "the client sees its flow end: {client_saw:?}");
    let (total, upstream_end) = tokio::time::timeout(Duration::from_secs(2), received).await.unwrap().unwrap();
    let upstream_took = upstream_end.duration_since(killed_at);
    println!("[figure] kill during splice: client closed after {client_took:?}, upstream after {upstream_took:?} ({total} bytes)");
    assert!(client_took < Duration::from_millis(500), "the client's side closes promptly: {client_took:?}");
    assert!(upstream_took < Duration::from_millis(500), "the upstream's side closes promptly: {upstream_took:?}");
    writer.abort();
}

#[tokio::test]
async fn data_in_the_connect_packet_reaches_the_upstream_once_after_sniffing() {
    let (mut client, edge_side) = socket_pair().await;
    let (edge_upstream, mut upstream) = socket_pair().await;
    let body = pattern(5, 3 * MIB);
    let mut packet = b"CONNECT db.internal:5432 HTTP/1.1\r\nHost: db.internal:5432\r\n\r\nHELLO-".to_vec();
    packet.extend_from_slice(&body);
    let sent = packet.clone();
    let client_side = tokio::spawn(async move {
        client.write_all(&sent).await.unwrap();
        client.shutdown().await.unwrap();
        read_to_end(&mut client).await
    });
    let Sniffed::Connect { stream, head, rest } =
        sniff(Box::new(pingora_core::protocols::l4::stream::Stream::from(edge_side))).await
    else {
        panic!("a CONNECT")
    };
    assert_eq!(head.authority, "db.internal:5432");
    let (counters, meters) = (FlowCounters::default(), meters());
    let tally = Tally { counters: &counters, meters: &meters };
    let upstream_side = async {
        let got = read_to_end(&mut upstream).await;
        upstream.shutdown().await.unwrap();
        got
    };
    let (relayed, got) = tokio::join!(relay(stream, edge_upstream, &rest, &tally), upstream_side);
    relayed.unwrap();
    let mut expected = b"HELLO-".to_vec();
    expected.extend_from_slice(&body);
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "what followed the head arrives once and in order");
    assert_eq!(client_side.await.unwrap(), b"");
}

#[tokio::test]
async fn streams_that_are_not_plain_tcp_are_copied_both_ways() {
    let (near, mut far) = tokio::io::duplex(64 * 1024);
    let (edge_upstream, mut upstream) = socket_pair().await;
    let (up_body, down_body) = (pattern(6, 3 * MIB), pattern(7, 2 * MIB));
    let sent = up_body.clone();
    let reply = down_body.clone();
    let (counters, meters) = (FlowCounters::default(), meters());
    let tally = Tally { counters: &counters, meters: &meters };
    let client_side = async move {
        let (mut read, mut write) = tokio::io::split(&mut far);
        let writing = async {
            write.write_all(&sent).await.unwrap();
            write.shutdown().await.unwrap();
        };
        let (_, back) = tokio::join!(writing, read_to_end(&mut read));
        back
    };
    let upstream_side = async move {
        let (mut read, mut write) = upstream.split();
        let writing = async {
            write.write_all(&reply).await.unwrap();
            write.shutdown().await.unwrap();
        };
        let (_, got) = tokio::join!(writing, read_to_end(&mut read));
        got
    };
    let client: Stream = Box::new(near);
    let (relayed, back, got) = tokio::join!(relay(client, edge_upstream, b"", &tally), client_side, upstream_side);
    relayed.unwrap();
    assert!(got == up_body && back == down_body, "both directions arrive whole");
    assert!(!counters.spliced.load(Ordering::Relaxed), "a test double (like TLS) cannot splice");
    assert_eq!(counters.up.load(Ordering::Relaxed), up_body.len() as u64);
    assert_eq!(counters.down.load(Ordering::Relaxed), down_body.len() as u64);
}
