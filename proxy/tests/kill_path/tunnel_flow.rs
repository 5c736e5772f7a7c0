//! TCP flows through the real listener (pingora's read buffer in front of
//! the socket): what the client sent in the `CONNECT` packet reaches the
//! upstream once and in order, a bulk flow moves to `splice(2)`, and a
//! termination closes a flow in the middle of a spliced transfer. Asserted
//! on what the upstream received and what both sockets saw.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use crate::support::sessions::Session;
use crate::support::{figure, within, World};
use crate::{terminate, LIMIT};

/// The TCP route, to `port`, for the same staff as `app`.
fn bulk_route(port: u16) -> String {
    format!(
        "  - name: bulk\n    tcp: bulk.internal:9\n    upstream: 127.0.0.1:{port}\n    rules:\n      \
         - allow: {{ email_domain: [corp.example], groups_any: [staff] }}\n"
    )
}

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed).wrapping_add((i >> 16) as u8)).collect()
}

/// An upstream for one flow: sends what it read (until the client's end)
/// on `got`, then answers `bye` and closes.
async fn recording_upstream() -> (u16, oneshot::Receiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut got = Vec::new();
        let _ = stream.read_to_end(&mut got).await;
        let _ = stream.write_all(b"bye").await;
        let _ = stream.shutdown().await;
        let _ = tx.send(got);
    });
    (port, rx)
}

/// `CONNECT bulk.internal:9` followed, in the same write, by `after`.
fn connect_packet(session: &Session, after: &[u8]) -> Vec<u8> {
    let head = format!(
        "CONNECT bulk.internal:9 HTTP/1.1\r\nHost: bulk.internal:9\r\nProxy-Authorization: Bearer {}\r\n\r\n",
        session.token
    );
    [head.as_bytes(), after].concat()
}

/// Reads the answer head byte by byte (nothing after it); its status line.
async fn answer_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(LIMIT, stream.read(&mut byte)).await.expect("an answer").expect("read");
        assert_eq!(n, 1, "closed before answering: {}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).lines().next().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_in_the_connect_packet_reach_the_upstream_once_and_in_order() {
    let (port, got) = recording_upstream().await;
    let world = World::start_with("tunnel-packet", &bulk_route(port)).await;
    let ada = world.keys.mint_for("ada@corp.example", "bulk");
    let body = pattern(9, 6 * 1024 * 1024);
    let packet = connect_packet(&ada, &[&b"HELLO-"[..], &body].concat());
    let stream = TcpStream::connect(world.edge.listen).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let writer = tokio::spawn(async move {
        write.write_all(&packet).await.unwrap();
        write.shutdown().await.unwrap();
    });
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(read.read(&mut byte).await.unwrap(), 1, "{}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&head));
    writer.await.unwrap();
    let received = tokio::time::timeout(LIMIT, got).await.expect("the upstream saw the end").unwrap();
    let expected = [&b"HELLO-"[..], &body].concat();
    assert_eq!(received.len(), expected.len(), "every byte once");
    assert!(received == expected, "in order");
    let mut rest = Vec::new();
    read.read_to_end(&mut rest).await.unwrap();
    assert_eq!(rest, b"bye", "the half-closed client still got the upstream's answer");
    let spliced = world.metric("portcullis_edge_tunnel_flows_spliced_total").await;
    assert_eq!(spliced, Some(1.0), "the bulk flow moved to splice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_termination_closes_a_flow_in_the_middle_of_a_spliced_transfer() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let upstream_end = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0usize;
        while let Ok(n @ 1..) = stream.read(&mut buf).await {
            total += n;
        }
        (total, Instant::now())
    });
    let world = World::start_with("tunnel-kill", &bulk_route(port)).await;
    let ada = world.keys.mint_for("ada@corp.example", "bulk");
    let mut stream = TcpStream::connect(world.edge.listen).await.unwrap();
    stream.write_all(&connect_packet(&ada, b"")).await.unwrap();
    assert!(answer_head(&mut stream).await.starts_with("HTTP/1.1 200"));
    let (mut read, mut write) = stream.into_split();
    let writer = tokio::spawn(async move {
        let chunk = pattern(3, 1 << 20);
        while write.write_all(&chunk).await.is_ok() {}
    });
    within(LIMIT, "the flow is spliced", || async {
        world.metric("portcullis_edge_tunnel_bytes_total{direction=\"up\",route=\"bulk\"}").await.unwrap_or(0.0)
            > 32.0 * 1024.0 * 1024.0
    })
    .await;
    let killed_at = Instant::now();
    world.plane.push(terminate(&ada));
    let mut byte = [0u8; 1];
    let seen = tokio::time::timeout(LIMIT, read.read(&mut byte)).await.expect("the client sees the close");
    let client_took = killed_at.elapsed();
    assert!(matches!(seen, Ok(0) | Err(_)), "{seen:?}");
    let (total, ended) = tokio::time::timeout(LIMIT, upstream_end).await.expect("the upstream sees the end").unwrap();
    figure(
        "tunnel kill",
        &format!(
            "client saw the close {client_took:?} after the delta, upstream {:?} ({total} bytes moved)",
            ended.duration_since(killed_at)
        ),
    );
    assert!(client_took < Duration::from_secs(1), "{client_took:?}");
    writer.abort();
}
