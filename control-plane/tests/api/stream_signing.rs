//! The signed stream, control-plane side: a stream needs the edge's nonce,
//! and the public stream key is served to edges and admins (every frame
//! every other test of this suite reads is verified with it, see
//! `client.rs`).

use axum::http::Method;
use portcullis_policy::stream_key::{PublishedStreamKey, StreamPublicKey};

use crate::harness::TestApp;

api_tests!(the_stream_needs_a_nonce, the_stream_key_is_served_to_edges_and_admins);

async fn the_stream_needs_a_nonce(t: TestApp) {
    let head = t.head().await;
    for uri in ["/edge/v1/stream".to_owned(), format!("/edge/v1/stream?since={head}")] {
        let message = t.edge(Method::GET, &uri).send().await.error(400, "bad_request");
        assert!(message.contains("nonce"), "{uri}: {message}");
    }
    for nonce in ["", "00", "zz112233445566778899aabbccddeeff", "00112233445566778899aabbccddeeff00"] {
        let uri = format!("/edge/v1/stream?nonce={nonce}");
        let message = t.edge(Method::GET, &uri).send().await.error(400, "bad_request");
        assert!(message.contains("nonce"), "{uri}: {message}");
    }
    let metrics = t.get("/metrics").no_auth().send().await.text();
    assert!(metrics.contains("portcullis_control_plane_edge_streams 0"), "no stream was opened: {metrics}");
}

async fn the_stream_key_is_served_to_edges_and_admins(t: TestApp) {
    let key = t.app.stream_key.public_key();
    let published: PublishedStreamKey =
        serde_json::from_value(t.edge(Method::GET, "/edge/v1/stream-key").send().await.ok()).expect("the contract");
    assert_eq!(published, PublishedStreamKey::of(&key));
    assert_eq!(published.key(), Ok(key));
    t.edge(Method::GET, "/edge/v1/stream-key").no_auth().send().await.error(401, "unauthorized");

    let answer = t.get("/api/v1/stream-key").send().await.ok();
    assert_eq!(answer["algorithm"], "Ed25519");
    assert_eq!(answer["public_key"], key.to_string());
    assert_eq!(answer["kid"], key.key_id().to_string());
    let pem = answer["pem"].as_str().expect("a PEM");
    assert_eq!(pem.parse::<StreamPublicKey>(), Ok(key));
    assert!(!answer.to_string().contains("PRIVATE"), "{answer}");
    t.get("/api/v1/stream-key").no_auth().send().await.error(401, "unauthorized");
}
