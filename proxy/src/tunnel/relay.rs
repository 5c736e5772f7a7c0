//! Moving a flow's bytes both ways: copied through user space while the
//! flow is light, spliced from socket to socket once it carries bulk data.
//!
//! ```text
//! early bytes (after the CONNECT head) ──▶ upstream, first
//! copy phase (copy.rs, no buffer held while idle)
//!   │ a full read (bulk) on a plain-TCP client
//!   ▼ settle: write what is spilled, flush pingora's write buffer,
//!     drain pingora's read buffer (forwarded, in order)
//! splice phase (splice.rs): one pipe per direction, until both ends close
//! ```
//!
//! TLS and other streams stay on the copy path, as does a flow whose
//! descriptor or pipes cannot be had. A kill drops the future wherever it
//! is: every step is a poll, none blocks. Half-closes pass through: a
//! source's end shuts down the other side's write side, and the other
//! direction goes on.

use std::future::poll_fn;
use std::io;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use futures_util::FutureExt;
use pingora_core::protocols::l4::stream::DEFAULT_L4_READ_BUFFER_SIZE;
use pingora_core::protocols::Stream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::copy::{Copied, CopyLeg, READ_BYTES};
use super::flow::{FlowCounters, FlowMeters};
use super::splice::{self, SpliceLeg};

// A full read empties pingora's read buffer (see `drain_client`).
const _: () = assert!(READ_BYTES >= DEFAULT_L4_READ_BUFFER_SIZE);

/// Most reads of pingora's buffered bytes before splicing: one suffices
/// (a read of `READ_BYTES` takes all pingora holds); the rest would be
/// bytes put back with `rewind`, which the tunnel path never does.
const DRAIN_READS: usize = 4;

/// Where the bytes of a flow are counted.
pub struct Tally<'f> {
    /// The flow's own counters (for its report).
    pub counters: &'f FlowCounters,
    /// The route's meters.
    pub meters: &'f FlowMeters,
}

impl Tally<'_> {
    /// Client → upstream.
    fn up(&self, n: u64) {
        self.counters.up.fetch_add(n, Ordering::Relaxed);
        self.meters.up.inc_by(n);
    }

    /// Upstream → client.
    fn down(&self, n: u64) {
        self.counters.down.fetch_add(n, Ordering::Relaxed);
        self.meters.down.inc_by(n);
    }
}

/// What an attempt to move to `splice` gave.
enum Promotion {
    /// The flow may splice: the edge's descriptor of the client socket and
    /// the two legs (client → upstream, upstream → client).
    Ready(TcpStream, SpliceLeg, SpliceLeg),
    /// Not possible for this flow: keep copying.
    Never,
}

/// Relays `client` ⇄ `upstream` until both directions ended; `early` goes
/// to the upstream first. Returns on a socket error too (`Err`). Sets
/// `tally.counters.spliced` when the flow moves to `splice`.
pub async fn relay(mut client: Stream, mut upstream: TcpStream, early: &[u8], tally: &Tally<'_>) -> io::Result<()> {
    if !early.is_empty() {
        upstream.write_all(early).await?;
        tally.up(early.len() as u64);
    }
    let (mut up, mut down) = (CopyLeg::default(), CopyLeg::default());
    let mut may_splice = splice::is_plain_tcp(&client);
    loop {
        let copied =
            poll_fn(|cx| copy_both(cx, &mut client, &mut upstream, &mut up, &mut down, may_splice, tally)).await?;
        if copied == Copied::Done {
            return Ok(());
        }
        match promote(&mut client, &mut upstream, &mut up, &mut down, tally).await? {
            Promotion::Ready(socket, mut up_leg, mut down_leg) => {
                tally.counters.spliced.store(true, Ordering::Relaxed);
                return poll_fn(|cx| splice_both(cx, &socket, &upstream, &mut up_leg, &mut down_leg, tally)).await;
            }
            Promotion::Never => may_splice = false,
        }
    }
}

/// Polls both copy legs: `Done` when both are, `Bulk` as soon as one says so.
fn copy_both(
    cx: &mut Context<'_>,
    client: &mut Stream,
    upstream: &mut TcpStream,
    up: &mut CopyLeg,
    down: &mut CopyLeg,
    tell_bulk: bool,
    tally: &Tally<'_>,
) -> Poll<io::Result<Copied>> {
    let up_state = up.poll_copy(cx, client, upstream, tell_bulk, &mut |n| tally.up(n), &mut |_| {})?;
    if up_state == Poll::Ready(Copied::Bulk) {
        return Poll::Ready(Ok(Copied::Bulk));
    }
    let down_state = down.poll_copy(cx, upstream, client, tell_bulk, &mut |_| {}, &mut |n| tally.down(n))?;
    if down_state == Poll::Ready(Copied::Bulk) {
        return Poll::Ready(Ok(Copied::Bulk));
    }
    if up.is_done() && down.is_done() {
        Poll::Ready(Ok(Copied::Done))
    } else {
        Poll::Pending
    }
}

/// Leaves nothing of the flow in user space, then takes the descriptor and
/// the pipes splicing needs.
async fn promote(
    client: &mut Stream,
    upstream: &mut TcpStream,
    up: &mut CopyLeg,
    down: &mut CopyLeg,
    tally: &Tally<'_>,
) -> io::Result<Promotion> {
    poll_fn(|cx| {
        let up_settled = up.poll_settle(cx, upstream, &mut |_| {})?;
        let down_settled = down.poll_settle(cx, client, &mut |n| tally.down(n))?;
        if up_settled.is_ready() && down_settled.is_ready() {
            Poll::Ready(Ok::<_, io::Error>(()))
        } else {
            Poll::Pending
        }
    })
    .await?;
    let client_ended = up.source_ended() || drain_client(client, upstream, tally).await?;
    let Some(socket) = splice::client_socket(client) else { return Ok(Promotion::Never) };
    let legs = SpliceLeg::new(client_ended, up.is_done())
        .and_then(|up_leg| SpliceLeg::new(down.source_ended(), down.is_done()).map(|down_leg| (up_leg, down_leg)));
    match legs {
        Ok((up_leg, down_leg)) => Ok(Promotion::Ready(socket, up_leg, down_leg)),
        Err(error) => {
            // Out of descriptors, most likely: this flow keeps copying.
            tracing::debug!(%error, "no pipes for a TCP flow: it is copied");
            Ok(Promotion::Never)
        }
    }
}

/// Forwards what pingora already read from the client but the flow has not
/// (its read buffer), without waiting for the socket; `true` if the client
/// ended its side meanwhile.
async fn drain_client(client: &mut Stream, upstream: &mut TcpStream, tally: &Tally<'_>) -> io::Result<bool> {
    let mut buf = vec![0u8; READ_BYTES];
    for _ in 0..DRAIN_READS {
        match client.read(&mut buf).now_or_never() {
            None => break,
            Some(Ok(0)) => return Ok(true),
            Some(Ok(n)) => {
                tally.up(n as u64);
                upstream.write_all(&buf[..n]).await?;
            }
            Some(Err(error)) => return Err(error),
        }
    }
    Ok(false)
}

/// Polls both splice legs until both are done.
fn splice_both(
    cx: &mut Context<'_>,
    client: &TcpStream,
    upstream: &TcpStream,
    up: &mut SpliceLeg,
    down: &mut SpliceLeg,
    tally: &Tally<'_>,
) -> Poll<io::Result<()>> {
    let up_state = up.poll_relay(cx, client, upstream, &mut |n| tally.up(n), &mut |_| {})?;
    let down_state = down.poll_relay(cx, upstream, client, &mut |_| {}, &mut |n| tally.down(n))?;
    if up_state.is_ready() && down_state.is_ready() {
        Poll::Ready(Ok(()))
    } else {
        Poll::Pending
    }
}

#[cfg(test)]
#[path = "relay_tests.rs"]
mod tests;
