//! A bare pingora HTTP reverse proxy: every request goes to one fixed
//! upstream, with no hook but `upstream_peer` — no credential, no policy, no
//! connection registry, no header rewriting. `edge_vs_nginx` runs it as a
//! fourth target, with the edge's pingora version, server configuration,
//! thread count and allocator, so its table separates what pingora itself
//! costs (bare vs nginx) from what Portcullis adds on top (edge vs bare).
//!
//! ```sh
//! pingora_baseline --listen 127.0.0.1:8081 --upstream 127.0.0.1:8082 --threads 2 [--no-work-stealing]
//! ```

use std::net::SocketAddr;

use async_trait::async_trait;
use clap::Parser;
use pingora_core::server::configuration::{Opt, ServerConf};
use pingora_core::server::Server;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_proxy::{ProxyHttp, Session};

/// The allocator of the `portcullis` binary (its default `mimalloc`
/// feature), so bare vs edge compares only what Portcullis adds.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Options.
#[derive(Parser)]
#[command(about = "A bare pingora reverse proxy to one upstream")]
struct Args {
    /// Listener.
    #[arg(long)]
    listen: SocketAddr,
    /// The upstream (plain HTTP).
    #[arg(long)]
    upstream: SocketAddr,
    /// Worker threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Run one single-threaded runtime per thread instead of one
    /// work-stealing runtime (pingora's `work_stealing = false`).
    #[arg(long)]
    no_work_stealing: bool,
}

/// Forwards everything to `upstream`.
struct BareProxy {
    upstream: SocketAddr,
}

#[async_trait]
impl ProxyHttp for BareProxy {
    type CTX = ();

    fn new_ctx(&self) -> Self::CTX {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> pingora_core::Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }
}

fn main() {
    let args = Args::parse();
    // The edge's server configuration (proxy/src/server.rs).
    let conf = ServerConf {
        threads: args.threads,
        grace_period_seconds: Some(1),
        graceful_shutdown_timeout_seconds: Some(2),
        work_stealing: !args.no_work_stealing,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(Opt::default(), conf);
    server.bootstrap();
    let mut proxy = pingora_proxy::http_proxy_service(&server.configuration, BareProxy { upstream: args.upstream });
    proxy.add_tcp(&args.listen.to_string());
    server.add_service(proxy);
    server.run_forever();
}
