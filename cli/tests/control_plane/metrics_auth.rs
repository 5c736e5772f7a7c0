//! `/metrics` behind a bearer token (`metrics_token`) on the control plane
//! and the edge: a scraper without it gets 401 and no figures, with it the
//! figures; the probes (`/healthz`, `/readyz`) stay open.

use crate::edge_node::EdgeNode;
use crate::harness::{free_port, ControlPlane, TempDir};

const TOKEN: &str = "metrics-scraper-token-0123456789abcdef";

async fn get(url: &str, token: Option<&str>) -> (u16, String) {
    let mut request = reqwest::Client::new().get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("GET");
    (response.status().as_u16(), response.text().await.expect("text"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_need_the_metrics_token_when_one_is_set() {
    let dir = TempDir::new("metrics-token");
    let database = format!("sqlite://{}", dir.path().join("cp.db").display());
    let settings = [("metrics_token", TOKEN.to_owned())];
    let plane = ControlPlane::start_on_with(&database, dir.path(), free_port(), free_port(), &settings)
        .await
        .expect("control plane");
    let edge = EdgeNode::start_with(&plane, "edge-a", dir.path(), &settings).await;
    let metrics = [format!("{}/metrics", plane.url), format!("http://127.0.0.1:{}/metrics", edge.metrics)];
    for url in &metrics {
        for wrong in [None, Some("wrong-token-0123456789abcdef0123456789"), Some(&TOKEN[1..])] {
            let (status, body) = get(url, wrong).await;
            assert_eq!(status, 401, "{url} with {wrong:?}: {body}");
            assert!(!body.contains("portcullis_"), "no figures without the token: {body}");
        }
        let (status, body) = get(url, Some(TOKEN)).await;
        assert_eq!(status, 200, "{url}: {body}");
        assert!(body.contains("portcullis_"), "{body}");
    }
    for probe in [format!("{}/healthz", plane.url), format!("http://127.0.0.1:{}/healthz", edge.metrics)] {
        assert_eq!(get(&probe, None).await.0, 200, "{probe} stays open");
    }
}
