//! The edge's per-request check as the proxy runs it, minus the network:
//! find the session token, verify it through the verified-token cache (a
//! hit: a keyed hash and a full compare, no signature check), then
//! `evaluate` — revocation lookups against 100,000 terminated sessions, the
//! route, 1,000 rules. Also the cost of a miss (ES256 verification), paid
//! once per token. Target (edge issue): ≤ 2 µs median for the hit path.
//!
//! `edge_gate/*` is the whole admission gate the proxy runs since the
//! "edge request path" issue: canonicalise the request target, find the
//! route, pick the route's own cookie out of the `Cookie` header, verify
//! (cache hit), `evaluate`, compute the instant the admission lapses and
//! bind the connection in the registry. Target: ≤ 1 µs median.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use criterion::{criterion_group, criterion_main, Criterion};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::pkcs8::{EncodePrivateKey, LineEnding};
use portcullis_benches::{policy, snapshot, Rng, RuleShape};
use portcullis_edge::credentials::{SessionVerifier, SESSION_TOKEN_AUDIENCE, SESSION_TOKEN_TYPE};
use portcullis_policy::snapshot::{KeyAlgorithm, PublicKey};
use portcullis_policy::{evaluate, CredentialKind, Facts, Outcome, Snapshot, Target};

const ISSUER: &str = "https://control-plane.bench";

/// A fresh ES256 key: its published form and a token for `sid`.
fn signed_token(sid: &str, now: i64) -> (PublicKey, String) {
    let key = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
    let pem = key.to_pkcs8_pem(LineEnding::LF).expect("pem");
    let point = key.verifying_key().to_encoded_point(false);
    let public = PublicKey {
        kid: "bench".into(),
        alg: KeyAlgorithm::ES256,
        x: URL_SAFE_NO_PAD.encode(point.x().expect("x")),
        y: Some(URL_SAFE_NO_PAD.encode(point.y().expect("y"))),
    };
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("bench".into());
    header.typ = Some(SESSION_TOKEN_TYPE.into());
    let claims = serde_json::json!({
        "iss": ISSUER, "aud": SESSION_TOKEN_AUDIENCE, "sub": "sub-dev", "email": "dev@corp.example",
        "groups": ["dev", "team3"], "sid": sid, "iat": now - 60, "exp": now + 3600, "auth_time": now - 60,
        "route": "app42",
    });
    let token =
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ec_pem(pem.as_bytes()).expect("key")).expect("sign");
    (public, token)
}

fn bench_edge_check(c: &mut Criterion) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64;
    let sid = Rng::new(99).session_id().to_string();
    let (public, token) = signed_token(&sid, now);
    let mut body = snapshot(100_000, 11).to_body();
    body.policy = policy(1_000, RuleShape::TenPerRoute).source().clone();
    body.signing_keys = vec![public];
    let snapshot = Snapshot::from_body(body).expect("compiles");
    let cookie = format!("theme=dark; portcullis_session={token}; lang=en");
    let verifier = SessionVerifier::new(ISSUER, 100_000);
    let ip = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));
    let check = |verifier: &SessionVerifier| {
        let token = cookie.split(';').find_map(|p| p.trim().strip_prefix("portcullis_session=")).expect("cookie");
        let (identity, _) =
            verifier.verify(token, CredentialKind::Browser, snapshot.signing_keys(), now).expect("valid token");
        let facts = Facts {
            target: Target::Http { host: "app42.corp.example", path: "/p3/reports", method: "GET" },
            source_ip: ip,
            now,
            identity: Some(&identity),
        };
        evaluate(&snapshot, &facts).outcome
    };
    assert_eq!(check(&verifier), Outcome::Allow);
    c.bench_function("edge_check/cached_token_100k_terminated_1000_rules", |b| b.iter(|| check(black_box(&verifier))));
    c.bench_function("edge_check/token_cache_miss_es256_verify", |b| {
        b.iter(|| {
            let cold = SessionVerifier::new(ISSUER, 16);
            check(black_box(&cold))
        })
    });
}

/// Polls a future that completes without waiting (a cache hit does).
fn ready<T>(future: impl std::future::Future<Output = T>) -> T {
    let mut future = std::pin::pin!(future);
    match future.as_mut().poll(&mut std::task::Context::from_waker(std::task::Waker::noop())) {
        std::task::Poll::Ready(value) => value,
        std::task::Poll::Pending => panic!("the gate waited on a cache hit"),
    }
}

fn bench_edge_gate(c: &mut Criterion) {
    use std::sync::Arc;

    use pingora_http::RequestHeader;
    use portcullis_edge::credentials::{Credentials, ServiceTokens, SessionCookies};
    use portcullis_edge::gate::{canonical_target, Arrival, Gate};
    use portcullis_edge::registry::{ConnKey, ConnRegistry};

    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64;
    let sid = Rng::new(98).session_id().to_string();
    let (public, token) = signed_token(&sid, now);
    let mut body = snapshot(100_000, 11).to_body();
    body.policy = policy(1_000, RuleShape::TenPerRoute).source().clone();
    body.signing_keys = vec![public];
    let snapshots = Arc::new(portcullis_edge::SnapshotStore::new());
    snapshots.replace(Snapshot::from_body(body).expect("compiles"));
    let channel = portcullis_edge::control_planes::ChannelConfig::single("http://127.0.0.1:9", "bench", "bench");
    let planes = Arc::new(portcullis_edge::control_planes::ControlPlanes::new(channel));
    let authority = Arc::new(portcullis_edge::authority_client::AuthorityClient::new(planes));
    let registry = ConnRegistry::new();
    let gate = Gate {
        snapshots: Arc::clone(&snapshots),
        registry: Arc::clone(&registry),
        credentials: Arc::new(Credentials {
            sessions: Arc::new(SessionVerifier::new(ISSUER, 100_000)),
            access_tokens: None,
            service_tokens: ServiceTokens::new(authority, 1_000),
        }),
        cookies: SessionCookies::new("portcullis_session", true),
        trusted_proxies: Default::default(),
        status: Default::default(),
        // The edge's defaults: 5 s, then keep enforcing the last snapshot.
        max_staleness: std::time::Duration::from_secs(5),
        stale_mode: portcullis_policy::policy::StaleMode::Keep,
        activity: Default::default(),
        metrics: Arc::new(portcullis_edge::metrics::EdgeMetrics::new()),
    };
    let mut head = RequestHeader::build("GET", b"/p3/reports?page=2", None).expect("head");
    head.insert_header("host", "app42.corp.example").expect("host");
    head.insert_header("cookie", format!("theme=dark; __Host-portcullis_session.app42={token}; lang=en"))
        .expect("cookie");
    let key =
        ConnKey { peer: "203.0.113.7:40000".parse().expect("peer"), local: "10.0.0.1:443".parse().expect("local") };
    let _connection = registry.register(key);
    let peer = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));
    let admit = || {
        let snapshot = gate.snapshot().expect("snapshot");
        let target = canonical_target(&head).expect("canonical");
        let arrival = Arrival::Http { host: "app42.corp.example", target: &target, method: "GET", multiplexed: false };
        ready(gate.admit(&snapshot, arrival, &head, peer, Some(key))).is_ok()
    };
    assert!(admit(), "the bench request is admitted");
    c.bench_function("edge_gate/admit_cached_token_canonical_path_bind_100k_terminated_1000_rules", |b| {
        b.iter(|| black_box(admit()))
    });
    let mut encoded = RequestHeader::build("GET", b"/p3/./%72eports/../reports?page=2", None).expect("head");
    encoded.insert_header("host", "app42.corp.example").expect("host");
    c.bench_function("edge_gate/canonical_target_with_escapes_and_dot_segments", |b| {
        b.iter(|| black_box(canonical_target(black_box(&encoded)).is_ok()))
    });
}

criterion_group!(benches, bench_edge_check, bench_edge_gate);
criterion_main!(benches);
