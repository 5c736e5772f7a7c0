//! Makes any pingora `ServerApp` killable from outside: pingora has no API to
//! cancel a connection, so each accepted connection is registered with a
//! cancellation token and served inside `select!` with it; cancelling drops
//! the inner future and with it the socket (idle keep-alive, streaming
//! responses, websockets, HTTP/2 and CONNECT tunnels alike). The one
//! exception is a connection whose task said it tells its client why
//! ([`ConnRegistry::says_goodbye`], the websocket relay): it gets up to
//! [`GOODBYE_LIMIT`] to send its close frame, and is dropped after that.
//!
//! With a [`TunnelService`], the first bytes of each HTTP/1 connection are
//! read first: a `CONNECT` becomes a TCP flow served here, anything else
//! goes to the inner app with those bytes put back. HTTP/2 (ALPN `h2`) goes
//! to the inner app untouched. Pingora serves keep-alive requests inside
//! one `process_new` call, so only a connection's first request can be a
//! tunnel; a `CONNECT` after other requests gets pingora's 405.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora_core::apps::ServerApp;
use pingora_core::protocols::{Stream, ALPN};
use pingora_core::server::ShutdownWatch;
use tokio_util::sync::CancellationToken;

use crate::registry::{ConnKey, ConnRegistry};
use crate::tunnel::head::{sniff, Sniffed};
use crate::tunnel::TunnelService;

/// Longest a cancelled connection's task may take to tell its client why
/// (a websocket close frame, [`crate::upgrade`]) before it is dropped.
pub const GOODBYE_LIMIT: Duration = Duration::from_millis(1500);

/// A `ServerApp` whose connections the registry can close.
pub struct Killable<A> {
    inner: Arc<A>,
    registry: Arc<ConnRegistry>,
    tunnels: Option<Arc<TunnelService>>,
}

impl<A> Killable<A> {
    /// Wraps `inner`, registering its connections in `registry`.
    pub fn new(inner: A, registry: Arc<ConnRegistry>) -> Self {
        Self { inner: Arc::new(inner), registry, tunnels: None }
    }

    /// Serves `CONNECT` requests as TCP flows with `tunnels`.
    pub fn with_tunnels(mut self, tunnels: Arc<TunnelService>) -> Self {
        self.tunnels = Some(tunnels);
        self
    }
}

/// The registry key of a stream: its (peer, local) socket pair.
pub fn conn_key(stream: &Stream) -> Option<ConnKey> {
    let digest = stream.get_socket_digest()?;
    Some(ConnKey { peer: *digest.peer_addr()?.as_inet()?, local: *digest.local_addr()?.as_inet()? })
}

impl<A: ServerApp + Send + Sync + 'static> Killable<A> {
    /// Serves a registered connection: a tunnel, or the inner app.
    async fn serve(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
        key: ConnKey,
        cancelled: CancellationToken,
    ) -> Option<Stream> {
        let tunnels = match &self.tunnels {
            Some(tunnels) if !matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) => tunnels,
            _ => return self.inner.process_new(stream, shutdown).await,
        };
        match sniff(stream).await {
            Sniffed::Other(stream) => self.inner.process_new(stream, shutdown).await,
            Sniffed::Connect { stream, head, rest } => {
                tunnels.serve(stream, head, rest, key, cancelled).await;
                None
            }
            Sniffed::BadConnect(stream, error) => {
                tunnels.refuse_head(stream, error).await;
                None
            }
            Sniffed::Closed => None,
        }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for Killable<A> {
    async fn process_new(self: &Arc<Self>, stream: Stream, shutdown: &ShutdownWatch) -> Option<Stream> {
        let Some(key) = conn_key(&stream) else {
            // Not a TCP socket (never the case for our listeners): serve it unregistered.
            return self.inner.process_new(stream, shutdown).await;
        };
        let registration = self.registry.register(key);
        let cancelled = registration.cancelled.clone();
        let serve = self.serve(stream, shutdown, key, cancelled.clone());
        tokio::pin!(serve);
        tokio::select! {
            biased;
            () = cancelled.cancelled() => {
                if self.registry.will_say_goodbye(key) {
                    // A websocket relay writes its close frame and returns;
                    // past the limit the connection is dropped all the same.
                    let _ = tokio::time::timeout(GOODBYE_LIMIT, serve).await;
                }
                None
            }
            reused = &mut serve => {
                if reused.is_some() {
                    // Keep-alive: the same connection comes back for its next
                    // request; keep its entry (and binding) so an idle
                    // connection can still be found and closed.
                    registration.keep();
                }
                reused
            }
        }
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await;
    }
}
