//! Makes any pingora `ServerApp` killable from outside: pingora has no API to
//! cancel a connection, so each accepted connection is registered with a
//! cancellation token and served inside `select!` with it; cancelling drops
//! the inner future and with it the socket (idle keep-alive, streaming
//! responses, websockets, HTTP/2 and CONNECT tunnels alike).

use std::sync::Arc;

use async_trait::async_trait;
use pingora_core::apps::ServerApp;
use pingora_core::protocols::Stream;
use pingora_core::server::ShutdownWatch;

use crate::registry::{ConnKey, ConnRegistry};

/// A `ServerApp` whose connections the registry can close.
pub struct Killable<A> {
    inner: Arc<A>,
    registry: Arc<ConnRegistry>,
}

impl<A> Killable<A> {
    /// Wraps `inner`, registering its connections in `registry`.
    pub fn new(inner: A, registry: Arc<ConnRegistry>) -> Self {
        Self { inner: Arc::new(inner), registry }
    }
}

/// The registry key of a stream: its (peer, local) socket pair.
pub fn conn_key(stream: &Stream) -> Option<ConnKey> {
    let digest = stream.get_socket_digest()?;
    Some(ConnKey { peer: *digest.peer_addr()?.as_inet()?, local: *digest.local_addr()?.as_inet()? })
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
        tokio::select! {
            biased;
            () = cancelled.cancelled() => None,
            reused = self.inner.process_new(stream, shutdown) => {
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
