//! Shared utilities of the in-process edge tests: the real edge
//! ([`InProcessEdge`], every listener on port 0) between a stand-in
//! control plane ([`control_plane`]) and a recording upstream
//! ([`upstream`]), with clients that hold connections open ([`clients`])
//! and sessions minted as the control plane would ([`sessions`]).

pub mod clients;
pub mod control_plane;
pub mod sessions;
pub mod upstream;

use std::future::Future;
use std::time::{Duration, Instant};

use portcullis_edge::config::EdgeConfig;
use portcullis_edge::in_process::InProcessEdge;

use control_plane::{ControlPlane, EDGE_SECRET};
use sessions::{SessionKeys, TempDir};
use upstream::Upstream;

/// Polls `holds` every 10 ms for at most `limit`; how long it took, or a
/// panic naming `what`.
pub async fn within<F, Fut>(limit: Duration, what: &str, mut holds: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if holds().await {
            return started.elapsed();
        }
        assert!(started.elapsed() < limit, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Prints a measured figure (shown with `--nocapture`).
pub fn figure(test: &str, text: &str) {
    println!("[figure] {test}: {text}");
}

/// An edge with its control plane, its upstream and the session key.
pub struct World {
    /// The protected app.
    pub upstream: Upstream,
    /// The stand-in control plane.
    pub plane: ControlPlane,
    /// The control plane's session-signing key (in the snapshot).
    pub keys: SessionKeys,
    /// The edge under test.
    pub edge: InProcessEdge,
    _dir: TempDir,
}

impl World {
    /// Starts everything and waits until the edge applied the first snapshot (seq 1).
    pub async fn start(name: &str) -> Self {
        Self::start_with(name, "").await
    }

    /// [`World::start`] with `more_routes` in the policy (YAML list items).
    pub async fn start_with(name: &str, more_routes: &str) -> Self {
        let dir = TempDir::new(name);
        let upstream = Upstream::start().await;
        let keys = SessionKeys::new("k1");
        let plane = ControlPlane::start(sessions::snapshot(upstream.port, &keys, more_routes)).await;
        let (cert, key) = sessions::certificate(dir.path());
        let toml = format!(
            "listen = \"127.0.0.1:0\"\nhttps_listen = \"127.0.0.1:0\"\ntls_cert = \"{cert}\"\ntls_key = \"{key}\"\n\
             metrics_listen = \"127.0.0.1:0\"\ncontrol_plane_url = \"{}\"\nedge_secret = \"{EDGE_SECRET}\"\n\
             stream_public_key = \"{}\"\nedge_id = \"edge-{name}\"\nsession_issuer = \"{}\"\ncookie_secure = false\n",
            plane.url,
            plane.stream_key,
            sessions::ISSUER,
        );
        let config = EdgeConfig::load(&toml, |_| None).expect("a valid edge configuration");
        let edge = InProcessEdge::start(config).expect("the edge starts in process");
        let world = Self { upstream, plane, keys, edge, _dir: dir };
        within(Duration::from_secs(10), "the edge applies the first snapshot", || async {
            world.edge.state.snapshots.seq() == Some(1)
        })
        .await;
        world
    }

    /// The sequence the edge applied.
    pub fn applied(&self) -> Option<u64> {
        self.edge.state.snapshots.seq()
    }

    /// `GET /metrics` on the edge's status listener.
    pub async fn metrics(&self) -> String {
        let url = format!("http://{}/metrics", self.edge.metrics_listen);
        reqwest::get(url).await.expect("GET /metrics").text().await.expect("metrics text")
    }

    /// One sample of `/metrics` (`name` with its labels, as printed).
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let text = self.metrics().await;
        text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
    }

    /// `GET /readyz`: (status, body).
    pub async fn readyz(&self) -> (u16, String) {
        let response = reqwest::get(format!("http://{}/readyz", self.edge.metrics_listen)).await.expect("GET /readyz");
        (response.status().as_u16(), response.text().await.unwrap_or_default())
    }
}
