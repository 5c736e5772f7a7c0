//! The gate in-process: a real snapshot signed by a test key, real session
//! tokens, no network. The end-to-end proof (what the upstream received)
//! is the attack suite in `cli/tests/attacks`; these pin the decisions.

use std::net::IpAddr;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::pkcs8::{EncodePrivateKey, LineEnding};
use pingora_http::RequestHeader;
use portcullis_policy::snapshot::{KeyAlgorithm, PublicKey};
use portcullis_policy::{Policy, PolicySource, Snapshot};

use super::*;
use crate::credentials::{ServiceTokens, SessionVerifier, SESSION_TOKEN_AUDIENCE, SESSION_TOKEN_TYPE};
use crate::registry::ConnKey;

const ISSUER: &str = "https://cp.test";

const POLICY: &str = "\
version: 1
routes:
  - name: app
    host: app.example
    upstream: http://127.0.0.1:9
    options: { on_ip_change: deny }
    rules:
      - allow: { groups_any: [admins], paths: [/admin/**] }
      - deny: { paths: [/admin/**] }
      - deny: { paths: [/export/**] }
      - public: true
        allow: { paths: [/export/**, /healthz] }
      - allow: { email_domain: [corp.example] }
  - name: api
    host: app.example
    path: /api
    upstream: http://127.0.0.1:9
    options: { stale_mode: deny }
    rules:
      - allow: { email_domain: [corp.example] }
  - name: recent
    host: recent.example
    upstream: http://127.0.0.1:9
    rules:
      - allow: { email_domain: [corp.example], logged_in_within: 1h }
  - name: payroll
    host: payroll.example
    upstream: http://127.0.0.1:9
    options: { reauth_after: 15m }
    rules:
      - public: true
        allow: { paths: [/healthz] }
      - allow: { email_domain: [corp.example] }
  - name: ssh
    tcp: ssh.internal:22
    upstream: 127.0.0.1:22
    options: { on_ip_change: deny }
    rules:
      - allow: { email_domain: [corp.example] }
";

struct World {
    gate: Gate,
    snapshot: Arc<Snapshot>,
    key: String,
}

fn now() -> i64 {
    unix_now_s()
}

impl World {
    fn new() -> Self {
        let signing = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
        let pem = signing.to_pkcs8_pem(LineEnding::LF).expect("pem").to_string();
        let point = signing.verifying_key().to_encoded_point(false);
        let public = PublicKey {
            kid: "k1".into(),
            alg: KeyAlgorithm::ES256,
            x: URL_SAFE_NO_PAD.encode(point.x().expect("x")),
            y: Some(URL_SAFE_NO_PAD.encode(point.y().expect("y"))),
        };
        let policy = Policy::compile(PolicySource { name: "t".into(), text: POLICY.into() }).expect("policy compiles");
        let mut body = Snapshot::new(1, Arc::new(policy)).to_body();
        body.signing_keys = vec![public];
        let snapshots = Arc::new(crate::SnapshotStore::new());
        snapshots.replace(Snapshot::from_body(body).expect("snapshot"));
        let channel = crate::control_planes::ChannelConfig::single("http://127.0.0.1:9", "s", "edge-test");
        let planes = Arc::new(crate::control_planes::ControlPlanes::new(channel));
        let authority = Arc::new(crate::authority_client::AuthorityClient::new(planes));
        let credentials = Arc::new(Credentials {
            sessions: Arc::new(SessionVerifier::new(ISSUER, 1_000)),
            access_tokens: None,
            service_tokens: ServiceTokens::new(authority, 1_000),
        });
        let gate = Gate {
            snapshots: Arc::clone(&snapshots),
            registry: crate::registry::ConnRegistry::new(),
            credentials,
            cookies: SessionCookies::new("portcullis_session", true),
            trusted_proxies: TrustedProxies::default(),
            status: Arc::new(SyncStatus::default()),
            max_staleness: std::time::Duration::from_secs(5),
            stale_mode: portcullis_policy::policy::StaleMode::Keep,
            activity: Arc::new(ActivityLog::default()),
            metrics: Arc::new(EdgeMetrics::new()),
        };
        gate.status.last_contact_ms.store(unix_now_s() * 1000, std::sync::atomic::Ordering::Relaxed);
        let snapshot = snapshots.load_full().expect("loaded");
        Self { gate, snapshot, key: pem }
    }

    /// A session token of `email` (groups) for `route`, logged in from `login_ip`.
    fn token(&self, email: &str, groups: &[&str], route: &str, login_ip: &str) -> String {
        self.token_at(email, groups, route, login_ip, now() - 5)
    }

    /// Same, for a user who authenticated at the IdP at `auth_time`.
    fn token_at(&self, email: &str, groups: &[&str], route: &str, login_ip: &str, auth_time: i64) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("k1".into());
        header.typ = Some(SESSION_TOKEN_TYPE.into());
        let sid = portcullis_policy::SessionId::from_bytes(rand::random()).to_string();
        let claims = serde_json::json!({
            "iss": ISSUER, "aud": SESSION_TOKEN_AUDIENCE, "sub": format!("sub-{email}"), "email": email,
            "groups": groups, "sid": sid, "iat": now() - 5, "exp": now() + 600, "auth_time": auth_time,
            "route": route, "login_ip": login_ip,
        });
        let key = EncodingKey::from_ec_pem(self.key.as_bytes()).expect("key");
        jsonwebtoken::encode(&header, &claims, &key).expect("sign")
    }

    fn head(&self, target: &str, headers: &[(&str, &str)]) -> RequestHeader {
        let mut head = RequestHeader::build("GET", target.as_bytes(), None).expect("head");
        head.insert_header("host", "app.example").expect("host");
        for (name, value) in headers {
            head.append_header(name.to_string(), *value).expect("header");
        }
        head
    }

    /// Runs the gate on an HTTP request (a cache hit or a refusal never waits).
    fn http(&self, target: &str, headers: &[(&str, &str)], peer: &str) -> Result<Admission, Refusal> {
        let head = self.head(target, headers);
        let canonical = canonical_target(&head)?;
        let arrival = Arrival::Http { host: "app.example", target: &canonical, method: "GET", multiplexed: false };
        ready(self.gate.admit(&self.snapshot, arrival, &head, peer.parse().expect("ip"), None))
    }

    fn connect(&self, name: &str, headers: &[(&str, &str)], peer: &str) -> Result<Admission, Refusal> {
        let mut head = RequestHeader::build("CONNECT", name.as_bytes(), None).expect("head");
        for (header, value) in headers {
            head.append_header(header.to_string(), *value).expect("header");
        }
        ready(self.gate.admit(&self.snapshot, Arrival::Connect { name }, &head, peer.parse().expect("ip"), None))
    }
}

/// Polls a future that must complete without waiting (no network in these tests).
fn ready<T>(future: impl std::future::Future<Output = T>) -> T {
    let mut future = std::pin::pin!(future);
    match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(value) => value,
        Poll::Pending => panic!("the gate waited on something in an offline test"),
    }
}

fn cookie(route: &str, token: &str) -> String {
    format!("theme=dark; __Host-portcullis_session.{route}={token}")
}

const HOME: &str = "127.0.0.1";

#[test]
fn encoded_paths_are_judged_as_the_path_they_decode_to() {
    let w = World::new();
    let ann = w.token("ann@corp.example", &["staff"], "app", HOME);
    let ann_cookie = cookie("app", &ann);
    for target in ["/%61dmin/users", "/adm%69n/users", "/t/../admin/users", "/./admin//users", "/ADMIN/../admin/users"]
    {
        let refused = w.http(target, &[("cookie", &ann_cookie)], HOME).err();
        assert!(matches!(refused, Some(Refusal::Forbidden(_))), "{target}: {refused:?}");
    }
    for target in ["/admin;x/users", "/admin;/users"] {
        assert_eq!(w.http(target, &[("cookie", &ann_cookie)], HOME).err(), Some(Refusal::PathParameters), "{target}");
    }
    for target in ["/t/..;/admin/users", "/a%2fb", "/a%5Cb", "/a\\b", "/%00", "/%ZZ", "/%FF"] {
        let refused = w.http(target, &[("cookie", &ann_cookie)], HOME).err();
        assert!(matches!(refused, Some(Refusal::BadTarget(_))), "{target}: {refused:?}");
    }
    let boss = w.token("boss@corp.example", &["admins"], "app", HOME);
    w.http("/%61dmin/users", &[("cookie", &cookie("app", &boss))], HOME).expect("admins reach /admin");
}

#[test]
fn a_stale_snapshot_closes_only_the_routes_that_fail_closed() {
    let mut w = World::new();
    let app = cookie("app", &w.token("ann@corp.example", &[], "app", HOME));
    let api = cookie("api", &w.token("ann@corp.example", &[], "api", HOME));
    w.http("/api/x", &[("cookie", &api)], HOME).expect("fresh: the strict route serves");
    let heard = (unix_now_s() - 6) * 1000;
    w.gate.status.last_contact_ms.store(heard, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(w.http("/api/x", &[("cookie", &api)], HOME).err(), Some(Refusal::Stale), "stale_mode: deny");
    assert_eq!(w.http("/api/x", &[], HOME).err(), Some(Refusal::Stale), "before any credential is looked at");
    w.http("/x", &[("cookie", &app)], HOME).expect("the edge's default (keep) serves on");
    w.gate.stale_mode = portcullis_policy::policy::StaleMode::Deny;
    assert_eq!(w.http("/x", &[("cookie", &app)], HOME).err(), Some(Refusal::Stale), "the edge's default (deny)");
    w.gate.max_staleness = std::time::Duration::from_secs(60);
    w.http("/x", &[("cookie", &app)], HOME).expect("within max_staleness");
    w.http("/api/x", &[("cookie", &api)], HOME).expect("within max_staleness");
}

#[test]
fn an_encoded_prefix_cannot_leave_its_route() {
    let w = World::new();
    let api = w.token("ann@corp.example", &[], "api", HOME);
    let admitted = w.http("/%61pi/x", &[("cookie", &cookie("api", &api))], HOME).expect("the api route");
    assert_eq!(&*admitted.route, "api");
}

#[test]
fn a_session_token_counts_only_on_its_own_route() {
    let w = World::new();
    let app = w.token("ann@corp.example", &[], "app", HOME);
    // The app route's token as a bearer on the api route: as if none was sent.
    let refused = w.http("/api/x", &[("authorization", &format!("Bearer {app}"))], HOME).err();
    assert!(matches!(refused, Some(Refusal::LoginRequired(_))), "{refused:?}");
    // The app route's cookie is not the api route's cookie.
    let refused = w.http("/api/x", &[("cookie", &cookie("app", &app))], HOME).err();
    assert!(matches!(refused, Some(Refusal::LoginRequired(_))), "{refused:?}");
    // Nor does it open the TCP route.
    let refused = w.connect("ssh.internal:22", &[("proxy-authorization", &format!("Bearer {app}"))], HOME).err();
    assert!(matches!(refused, Some(Refusal::LoginRequired(_))), "{refused:?}");
    let ssh = w.token("ann@corp.example", &[], "ssh", HOME);
    w.connect("ssh.internal:22", &[("proxy-authorization", &format!("Bearer {ssh}"))], HOME).expect("its own route");
}

#[test]
fn identity_free_deny_rules_apply_to_anonymous_requests() {
    let w = World::new();
    let refused = w.http("/export/all.csv", &[], HOME).err();
    assert!(matches!(refused, Some(Refusal::Forbidden(_))), "{refused:?}");
    w.http("/healthz", &[], HOME).expect("the public path");
}

#[test]
fn connect_honours_on_ip_change_deny() {
    let w = World::new();
    let ssh = w.token("ann@corp.example", &[], "ssh", "198.51.100.1");
    let bearer = format!("Bearer {ssh}");
    let refused = w.connect("ssh.internal:22", &[("proxy-authorization", &bearer)], "203.0.113.9").err();
    assert!(matches!(refused, Some(Refusal::LoginRequired(ref why)) if why.contains("network address")), "{refused:?}");
    w.connect("ssh.internal:22", &[("proxy-authorization", &bearer)], "::ffff:198.51.100.1")
        .expect("the same IPv4 address seen through a dual-stack listener");
}

#[test]
fn portcullis_credentials_are_marked_to_stay_at_the_edge() {
    let w = World::new();
    let app = w.token("ann@corp.example", &[], "app", HOME);
    let admitted = w.http("/hello", &[("authorization", &format!("Bearer {app}"))], HOME).expect("bearer session");
    assert_eq!(admitted.authorization, AuthorizationUse::Edge);
    let admitted = w.http("/healthz", &[("authorization", "Bearer pcst_whatever")], HOME);
    assert!(admitted.is_err() || admitted.is_ok_and(|a| a.authorization == AuthorizationUse::Edge));
    let admitted = w.http("/healthz", &[("authorization", "Basic YTpi")], HOME).expect("public");
    assert_eq!(admitted.authorization, AuthorizationUse::Foreign, "the app's own credentials pass");
}

#[test]
fn an_http2_connection_refuses_a_fifth_identity() {
    let w = World::new();
    let key = ConnKey { peer: "127.0.0.1:5000".parse().expect("peer"), local: "127.0.0.1:80".parse().expect("local") };
    let _registration = w.gate.registry.register(key);
    let peer: IpAddr = HOME.parse().expect("ip");
    for n in 0..5 {
        let token = w.token(&format!("u{n}@corp.example"), &[], "app", HOME);
        let head = w.head("/hello", &[("cookie", &cookie("app", &token))]);
        let canonical = canonical_target(&head).expect("target");
        let arrival = Arrival::Http { host: "app.example", target: &canonical, method: "GET", multiplexed: true };
        let result = ready(w.gate.admit(&w.snapshot, arrival, &head, peer, Some(key)));
        assert_eq!(result.is_ok(), n < 4, "identity {n}");
        if n == 4 {
            assert_eq!(result.err(), Some(Refusal::Misdirected));
        }
    }
}

#[test]
fn a_reauth_after_route_asks_a_stale_login_for_a_fresh_one_with_its_max_age() {
    let w = World::new();
    let admit = |path: &str, cookie_header: Option<&str>| {
        let headers: Vec<(&str, &str)> = cookie_header.map(|c| ("cookie", c)).into_iter().collect();
        let mut head = w.head(path, &headers);
        head.insert_header("host", "payroll.example").expect("host");
        let canonical = canonical_target(&head).expect("target");
        let arrival = Arrival::Http { host: "payroll.example", target: &canonical, method: "GET", multiplexed: false };
        ready(w.gate.admit(&w.snapshot, arrival, &head, HOME.parse().expect("ip"), None))
    };
    let stale = cookie("payroll", &w.token_at("ann@corp.example", &[], "payroll", HOME, now() - 1800));
    let refused = admit("/x", Some(&stale)).err();
    assert!(matches!(refused, Some(Refusal::Reauthenticate { max_age: 900, .. })), "{refused:?}");
    let fresh = cookie("payroll", &w.token_at("ann@corp.example", &[], "payroll", HOME, now() - 600));
    admit("/x", Some(&fresh)).expect("a login within 15m");
    // The route's public path stays public: no login, or an old one, is let through.
    admit("/healthz", None).expect("public without a login");
    admit("/healthz", Some(&stale)).expect("public with an old login");
}

#[test]
fn a_login_too_old_for_the_route_asks_for_a_fresh_one_with_max_age() {
    let w = World::new();
    let stale = w.token_at("ann@corp.example", &[], "recent", HOME, now() - 7200);
    let mut head = w.head("/x", &[("cookie", &cookie("recent", &stale))]);
    head.insert_header("host", "recent.example").expect("host");
    let canonical = canonical_target(&head).expect("target");
    let arrival = Arrival::Http { host: "recent.example", target: &canonical, method: "GET", multiplexed: false };
    let refused = ready(w.gate.admit(&w.snapshot, arrival, &head, HOME.parse().expect("ip"), None)).err();
    assert!(matches!(refused, Some(Refusal::Reauthenticate { max_age: 3600, .. })), "{refused:?}");
    let fresh = w.token("ann@corp.example", &[], "recent", HOME);
    let mut head = w.head("/x", &[("cookie", &cookie("recent", &fresh))]);
    head.insert_header("host", "recent.example").expect("host");
    let canonical = canonical_target(&head).expect("target");
    let arrival = Arrival::Http { host: "recent.example", target: &canonical, method: "GET", multiplexed: false };
    ready(w.gate.admit(&w.snapshot, arrival, &head, HOME.parse().expect("ip"), None)).expect("a recent login");
}
