//! The relay of an upgraded websocket: bytes both ways until either side
//! closes, with the frame headers of both directions followed as they pass
//! ([`FrameCursor`]).
//!
//! When the registry cancels the connection, the relay says goodbye
//! instead of vanishing: it stops reading the client and writing to the
//! app; lets the frame the app is in the middle of reach the client (for
//! up to [`FRAME_END_WAIT`]; past that it drops the connection without a
//! word rather than cut a frame short); sends a close frame with code 1008
//! and a reason any user may read ([`close_reason`]); then reads what the
//! client still sends, up to its own close frame or [`CLIENT_CLOSE_WAIT`],
//! so the socket ends with a FIN, not a reset that could discard the close
//! frame on its way. An app that already sent its own close frame gets no
//! second one from the edge. An app that goes away ends the relay without
//! a close frame, as before: the client sees 1006, never 1008.

use std::time::Duration;

use bytes::Bytes;
use pingora_core::Result;
use pingora_proxy::Session;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::frames::{close_frame, close_reason, FrameCursor, POLICY_VIOLATION};
use super::upstream_error;
use crate::registry::{ConnKey, ConnRegistry};

/// How long a cancelled relay waits for the app's frame in progress to end.
pub const FRAME_END_WAIT: Duration = Duration::from_millis(500);
/// How long it waits, after its close frame, for the client's.
pub const CLIENT_CLOSE_WAIT: Duration = Duration::from_millis(500);

/// Where the relay learns that its connection is closed, and why.
#[derive(Clone, Copy)]
pub struct Watch<'a> {
    /// The registry the connection is in.
    pub registry: &'a ConnRegistry,
    /// The connection.
    pub key: ConnKey,
}

/// One websocket's relay state.
struct Relay<'a> {
    session: &'a mut Session,
    upstream: &'a mut TcpStream,
    buffer: Vec<u8>,
    /// The app's frames, towards the client.
    to_client: FrameCursor,
    /// The client's frames, towards the app.
    from_client: FrameCursor,
    client_open: bool,
}

/// Pipes bytes both ways after the `101` until either side closes or
/// `watch`'s connection is cancelled.
pub async fn relay(session: &mut Session, upstream: &mut TcpStream, watch: Option<Watch<'_>>) -> Result<()> {
    // A connection the registry does not know (never the case) is never cancelled here.
    let cancelled: CancellationToken = watch.and_then(|w| w.registry.says_goodbye(w.key)).unwrap_or_default();
    let mut relay = Relay {
        session,
        upstream,
        buffer: vec![0u8; 16 * 1024],
        to_client: FrameCursor::default(),
        from_client: FrameCursor::default(),
        client_open: true,
    };
    loop {
        tokio::select! {
            biased;
            () = cancelled.cancelled() => {
                let reason = watch.and_then(|w| w.registry.kill_reason(w.key));
                return relay.goodbye(close_reason(reason)).await;
            }
            from_client = relay.session.read_request_body(), if relay.client_open => match from_client? {
                Some(bytes) => {
                    relay.from_client.advance(&bytes, false);
                    relay.upstream.write_all(&bytes).await.map_err(|e| upstream_error("writing", e))?;
                }
                None => {
                    relay.client_open = false;
                    let _ = relay.upstream.shutdown().await;
                }
            },
            from_upstream = relay.upstream.read(&mut relay.buffer) => match from_upstream {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    relay.to_client.advance(&relay.buffer[..n], false);
                    let bytes = Bytes::copy_from_slice(&relay.buffer[..n]);
                    relay.session.write_response_body(Some(bytes), false).await?;
                }
            },
        }
    }
    relay.session.write_response_body(None, true).await
}

impl Relay<'_> {
    /// Tells the client why its websocket ends (see the module's doc).
    async fn goodbye(mut self, reason: &str) -> Result<()> {
        if !self.to_client.at_boundary() {
            let ended = tokio::time::timeout(FRAME_END_WAIT, self.finish_frame()).await;
            if !matches!(ended, Ok(true)) {
                tracing::debug!("websocket closed mid-frame: the app's frame did not end in time");
                return Ok(());
            }
        }
        if self.to_client.closed() {
            return Ok(());
        }
        let frame = Bytes::from(close_frame(POLICY_VIOLATION, reason));
        self.session.write_response_body(Some(frame), false).await?;
        if self.client_open && !self.from_client.closed() {
            let _ = tokio::time::timeout(CLIENT_CLOSE_WAIT, self.await_client_close()).await;
        }
        Ok(())
    }

    /// Relays the app's bytes up to the end of its frame in progress; false
    /// when either side went away first.
    async fn finish_frame(&mut self) -> bool {
        while !self.to_client.at_boundary() {
            let n = match self.upstream.read(&mut self.buffer).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => n,
            };
            let take = self.to_client.advance(&self.buffer[..n], true);
            let bytes = Bytes::copy_from_slice(&self.buffer[..take]);
            if self.session.write_response_body(Some(bytes), false).await.is_err() {
                return false;
            }
        }
        true
    }

    /// Reads (and drops) what the client sends until its close frame or its end.
    async fn await_client_close(&mut self) {
        while let Ok(Some(bytes)) = self.session.read_request_body().await {
            self.from_client.advance(&bytes, false);
            if self.from_client.closed() {
                return;
            }
        }
    }
}
