//! The edge inside this process, on the caller's tokio runtime: the same
//! services [`run`](crate::server::run) hands to pingora
//! ([`EdgeServices::assemble`]), on listeners bound here first, so a
//! configuration may ask for port 0 and learn which port it got. For tests
//! that drive the real edge without starting a process; production uses
//! `run`, which owns the threads, the signals and graceful upgrades.
//!
//! Pingora binds a listener itself unless the table of listening sockets it
//! is given already holds one for that address (how a graceful upgrade
//! hands sockets over): each address is bound here, non-blocking, and its
//! socket put in that table under the address pingora is told to listen on.

use std::net::{SocketAddr, TcpListener};
use std::os::fd::IntoRawFd;
use std::sync::Arc;

use pingora_core::server::configuration::ServerConf;
use pingora_core::server::{Fds, ListenFds};
use pingora_core::services::{ServiceReadyNotifier, ServiceWithDependents};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::EdgeConfig;
use crate::server::{EdgeError, EdgeServices, EdgeState};

/// A running edge in this process; its services stop when it is dropped.
pub struct InProcessEdge {
    /// The plain-HTTP listener's address (the port bound when 0 was asked).
    pub listen: SocketAddr,
    /// The HTTPS listener's address, when `https_listen` is configured.
    pub https: Option<SocketAddr>,
    /// The status listener's address (`/healthz`, `/readyz`, `/metrics`).
    pub metrics_listen: SocketAddr,
    /// What the services share: snapshot, live connections, freshness, metrics.
    pub state: EdgeState,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// Binds `address` (port 0: any free port) and files the socket in `fds`
/// under the address actually bound, which is returned.
fn bind(fds: &mut Fds, address: SocketAddr) -> Result<SocketAddr, EdgeError> {
    let listen = |e: std::io::Error| EdgeError::Listen(address, e.to_string());
    let listener = TcpListener::bind(address).map_err(listen)?;
    listener.set_nonblocking(true).map_err(listen)?;
    let bound = listener.local_addr().map_err(listen)?;
    fds.add(bound.to_string(), listener.into_raw_fd());
    Ok(bound)
}

impl InProcessEdge {
    /// Binds the listeners of `config`, assembles the edge exactly as `run`
    /// does and starts its services on the current tokio runtime.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn start(mut config: EdgeConfig) -> Result<Self, EdgeError> {
        let mut fds = Fds::new();
        config.listen = bind(&mut fds, config.listen)?;
        if let Some((address, ..)) = &mut config.https {
            *address = bind(&mut fds, *address)?;
        }
        config.metrics_listen = bind(&mut fds, config.metrics_listen)?;
        let server_conf = Arc::new(ServerConf { threads: config.threads, ..ServerConf::default() });
        let edge = EdgeServices::assemble(&config, &server_conf)?;
        let fds: ListenFds = Arc::new(parking_lot::Mutex::new(fds));
        let (shutdown, watch) = watch::channel(false);
        let tasks = edge
            .services
            .into_iter()
            .map(|mut service: Box<dyn ServiceWithDependents>| {
                let (fds, watch) = (Arc::clone(&fds), watch.clone());
                let (ready, _) = watch::channel(false);
                tokio::spawn(async move {
                    service.start_service(Some(fds), watch, 1, ServiceReadyNotifier::new(ready)).await;
                })
            })
            .collect();
        tracing::info!(listen = %config.listen, metrics = %config.metrics_listen, edge = %config.edge_id, "edge started in process");
        Ok(Self {
            listen: config.listen,
            https: config.https.map(|(address, ..)| address),
            metrics_listen: config.metrics_listen,
            state: edge.state,
            shutdown,
            tasks,
        })
    }
}

impl Drop for InProcessEdge {
    fn drop(&mut self) {
        // Listeners stop accepting on the shutdown signal; the background
        // services (the stream, the reports) are stopped outright.
        let _ = self.shutdown.send(true);
        for task in &self.tasks {
            task.abort();
        }
    }
}
