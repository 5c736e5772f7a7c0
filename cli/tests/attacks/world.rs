//! What every attack class runs against: a control plane (SQLite), an edge
//! with `cookie_secure = false` and the fake IdP, the recording upstream, a
//! TCP recorder for CONNECT routes, sessions minted the way the edge's
//! login does (`POST /edge/v1/sessions`, `route` set), a service token, and
//! the control plane's session-signing key read from its database so token
//! cases can sign precisely wrong tokens.

use std::collections::HashMap;

use serde_json::json;

use crate::edge_node::{certificate, EdgeNode};
use crate::fake_idp::{FakeIdp, API_AUDIENCE, CLIENT_ID, CLIENT_SECRET};
use crate::harness::{free_port, ControlPlane, TempDir, ADMIN_TOKEN};
use crate::recording_upstream::{RecordingUpstream, TcpRecorder};

/// Where the issue-11 route options are written in the policy.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Placement {
    /// Under `options:` (like `on_ip_change`).
    Options,
    /// As keys of the route itself.
    Route,
    /// Left out (an edge without them).
    Absent,
}

/// `key: value` route options in `placement`, as YAML lines of a route.
fn extra(placement: Placement, pairs: &[(&str, &str)]) -> String {
    let lines = |indent: &str| pairs.iter().map(|(k, v)| format!("{indent}{k}: {v}\n")).collect::<String>();
    match placement {
        Placement::Options => format!("    options:\n{}", lines("      ")),
        Placement::Route => lines("    "),
        Placement::Absent => String::new(),
    }
}

/// The policy of the suite: route `app` (host app.corp.example) with the
/// issue's rule shape, `api` (`path: /api` on the same host), and one route
/// per option under test, plus two TCP routes.
fn policy(http: u16, tcp: u16, placement: Placement) -> String {
    let employees = "    rules:\n      - name: no-admin\n        deny: { paths: [\"/admin/**\"] }\n      - name: employees\n        allow: { email_domain: [corp.example] }\n";
    let ci = extra(placement, &[("case_insensitive_paths", "true")]);
    let params = extra(placement, &[("allow_path_parameters", "true")]);
    let bearer = extra(placement, &[("forward_bearer", "true")]);
    let pass = extra(placement, &[("pass_client_headers", "[X-Real-IP]")]);
    format!(
        "version: 1
routes:
  - name: app
    host: app.corp.example
    upstream: http://127.0.0.1:{http}
    rules:
      - name: admins
        allow: {{ groups_any: [admins], paths: [\"/admin/**\"] }}
      - name: no-admin
        deny: {{ paths: [\"/admin/**\"] }}
      - name: no-export
        deny: {{ paths: [\"/export/**\"] }}
      - name: no-delete
        deny: {{ methods: [DELETE] }}
      - name: no-secret
        deny: {{ paths: [\"/public/secret/**\"] }}
      - name: health
        public: true
        allow: {{ paths: [/healthz, \"/public/**\"] }}
      - name: reports
        allow:
          credential: [service]
          claims:
            client_id: {{ equals: reports-bot }}
      - name: employees
        allow: {{ email_domain: [corp.example] }}
  - name: api
    host: app.corp.example
    path: /api
    upstream: http://127.0.0.1:{http}
    rules:
      - name: api-users
        allow: {{ groups_any: [api-users] }}
  - name: ci
    host: ci.corp.example
    upstream: http://127.0.0.1:{http}
{ci}{employees}  - name: params
    host: params.corp.example
    upstream: http://127.0.0.1:{http}
{params}{employees}  - name: bearer
    host: bearer.corp.example
    upstream: http://127.0.0.1:{http}
{bearer}{employees}  - name: passthru
    host: passthru.corp.example
    upstream: http://127.0.0.1:{http}
{pass}{employees}  - name: pinned
    host: pinned.corp.example
    upstream: http://127.0.0.1:{http}
    options:
      on_ip_change: deny
{employees}  - name: fresh
    host: fresh.corp.example
    upstream: http://127.0.0.1:{http}
    rules:
      - name: recent-login
        allow: {{ email_domain: [corp.example], logged_in_within: 20s }}
  - name: fresh-tcp
    tcp: fresh.internal:22
    upstream: 127.0.0.1:{tcp}
    rules:
      - name: recent-login
        allow: {{ groups_any: [staff], logged_in_within: 20s }}
  - name: echo
    tcp: echo.internal:7
    upstream: 127.0.0.1:{tcp}
    rules:
      - name: staff
        allow: {{ groups_any: [staff] }}
  - name: pinned-tcp
    tcp: pinned.internal:22
    upstream: 127.0.0.1:{tcp}
    options:
      on_ip_change: deny
    rules:
      - name: staff
        allow: {{ groups_any: [staff] }}
"
    )
}

/// The control plane's current session-signing key.
pub struct SigningKey {
    /// `kid`.
    pub kid: String,
    /// PKCS#8 PEM private key.
    pub private_pem: String,
    /// Public coordinates, base64url.
    pub x: String,
    /// Public coordinates, base64url.
    pub y: String,
}

/// Everything a class attacks.
pub struct World {
    /// The control plane.
    pub plane: ControlPlane,
    /// The edge.
    pub edge: EdgeNode,
    /// The HTTP upstream.
    pub upstream: RecordingUpstream,
    /// The TCP upstream of `echo` and `pinned-tcp`.
    pub tcp: TcpRecorder,
    /// The IdP.
    pub idp: FakeIdp,
    /// Set when the edge refused the policy with the issue-11 options.
    pub policy_note: Option<String>,
    /// The edge's HTTPS (HTTP/1.1 and HTTP/2) port.
    pub https_port: u16,
    /// The PEM certificate the HTTPS listener presents.
    pub https_pem: Vec<u8>,
    /// The policy document in force.
    pub policy: String,
    /// A service token the `reports` rule allows.
    pub service_token: String,
    /// The control plane's signing key.
    pub signing_key: SigningKey,
    tokens: HashMap<(String, String), String>,
    _dir: TempDir,
}

/// The users the suite logs in: (name, email, groups, source address).
const USERS: &[(&str, &str, &[&str], &str)] = &[
    ("ada", "ada@corp.example", &["staff"], "127.0.0.1"),
    ("root", "root@corp.example", &["admins", "staff"], "127.0.0.1"),
    ("eve", "eve@corp.example", &["x,admins", "staff"], "127.0.0.1"),
    ("uma", "uma@corp.example", &["ünïcode", "staff"], "127.0.0.1"),
    ("moved", "moved@corp.example", &["staff"], "198.51.100.7"),
];

/// The routes sessions are minted for.
const ROUTES: &[&str] = &["app", "api", "ci", "params", "bearer", "passthru", "pinned", "echo", "pinned-tcp"];

impl World {
    /// Starts everything for class `label`.
    pub async fn start(label: &str) -> Self {
        let dir = TempDir::new(&format!("attacks-{label}"));
        let database = dir.path().join("cp.db");
        let idp = FakeIdp::start().await;
        let plane = ControlPlane::start_trusting(
            &format!("sqlite://{}", database.display()),
            dir.path(),
            &[(&idp.issuer, CLIENT_ID)],
        )
        .await;
        let upstream = RecordingUpstream::start().await;
        let tcp = TcpRecorder::start().await;
        let mut refusals = Vec::new();
        let mut policy_note = None;
        let mut document = String::new();
        for placement in [Placement::Options, Placement::Route, Placement::Absent] {
            document = policy(upstream.port, tcp.port, placement);
            let (status, body) = put_policy(&plane, &document).await;
            if status == 200 {
                if placement == Placement::Absent {
                    policy_note = Some(format!(
                        "the policy with `case_insensitive_paths`, `allow_path_parameters`, `forward_bearer` and \
                         `pass_client_headers` was refused (under `options:`: {}; on the route: {}); ran without them",
                        refusals[0], refusals[1]
                    ));
                }
                break;
            }
            assert!(placement != Placement::Absent, "even the reduced policy was refused: {status} {body}");
            refusals.push(body.chars().take(200).collect::<String>());
        }
        let (cert, tls_key, pem) = certificate(&dir);
        let https_port = free_port();
        let settings = [
            ("https_listen", format!("127.0.0.1:{https_port}")),
            ("tls_cert", cert),
            ("tls_key", tls_key),
            ("cookie_secure", "false".to_owned()),
            ("oidc_issuer", idp.issuer.clone()),
            ("oidc_client_id", CLIENT_ID.to_owned()),
            ("oidc_client_secret", CLIENT_SECRET.to_owned()),
            ("bearer_audiences", API_AUDIENCE.to_owned()),
            ("bearer_token_types", "at+jwt,JWT".to_owned()),
        ];
        let edge = EdgeNode::start_with(&plane, &format!("edge-{label}"), dir.path(), &settings).await;
        let mut tokens = HashMap::new();
        for (name, email, groups, source) in USERS {
            for route in ROUTES {
                let token = mint(&plane, email, groups, route, source).await;
                tokens.insert(((*name).to_owned(), (*route).to_owned()), token);
            }
        }
        let (status, created) =
            plane.api_post("/service-tokens", &json!({ "name": "reports-bot" })).await.expect("POST");
        assert_eq!(status, 201, "service token: {created}");
        let service_token = created["token"].as_str().expect("token").to_owned();
        let signing_key = read_signing_key(&database).await;
        Self {
            plane,
            edge,
            upstream,
            tcp,
            idp,
            policy_note,
            https_port,
            https_pem: pem,
            policy: document,
            service_token,
            signing_key,
            tokens,
            _dir: dir,
        }
    }

    /// The session token of `user` for `route`.
    pub fn token(&self, user: &str, route: &str) -> &str {
        self.tokens
            .get(&(user.to_owned(), route.to_owned()))
            .map(String::as_str)
            .unwrap_or_else(|| panic!("no token {user}/{route}"))
    }

    /// `portcullis_session.<route>=<token of user for route>` (with
    /// `ATTACKS_LEGACY_COOKIE=1`, the pre-issue-11 name `portcullis_session`,
    /// to see which attacks an edge without per-route cookies lets through).
    pub fn cookie(&self, user: &str, route: &str) -> String {
        if std::env::var_os("ATTACKS_LEGACY_COOKIE").is_some() {
            return format!("portcullis_session={}", self.token(user, route));
        }
        format!("portcullis_session.{route}={}", self.token(user, route))
    }
}

/// A new session for `email` on `route`, from 127.0.0.1; its token.
pub async fn mint_for(world: &World, email: &str, groups: &[&str], route: &str) -> String {
    mint(&world.plane, email, groups, route, "127.0.0.1").await
}

/// PUT /api/v1/policy; (status, body).
pub async fn put_policy(plane: &ControlPlane, document: &str) -> (u16, String) {
    let response = plane
        .http()
        .put(format!("{}/api/v1/policy?message=attacks", plane.url))
        .bearer_auth(ADMIN_TOKEN)
        .body(document.to_owned())
        .send()
        .await
        .expect("PUT the policy");
    (response.status().as_u16(), response.text().await.unwrap_or_default())
}

/// A session for `email` on `route`, created as from `source`; its token.
async fn mint(plane: &ControlPlane, email: &str, groups: &[&str], route: &str, source: &str) -> String {
    mint_at(plane, email, groups, route, source, chrono::Utc::now().timestamp()).await
}

/// A session for `email` on `route`, created as from `source`, logged in at `auth_time`; its token.
pub async fn mint_at(
    plane: &ControlPlane,
    email: &str,
    groups: &[&str],
    route: &str,
    source: &str,
    auth_time: i64,
) -> String {
    let body = json!({
        "subject": format!("sub-{email}"), "email": email, "groups": groups,
        "idp_issuer": "https://idp.corp.example", "auth_time": auth_time,
        "route": route, "source_address": source, "user_agent": "attack-suite",
    });
    let answer = crate::edge_node::create_session(plane, &body).await;
    answer["token"].as_str().unwrap_or_else(|| panic!("no token for {email} on {route}: {answer}")).to_owned()
}

/// The unretired signing key, from the control plane's SQLite database,
/// opened with the key-encryption key beside it (the attacker here holds
/// both: the suite forges what a thief of the key could).
async fn read_signing_key(database: &std::path::Path) -> SigningKey {
    use portcullis_control_plane::key_vault::{KekSource, KeyVault, DEFAULT_KEK_FILE};
    use sqlx::Row;
    let url = format!("sqlite://{}?mode=ro", database.display());
    let pool = sqlx::SqlitePool::connect(&url).await.expect("open the control plane's database");
    let row = sqlx::query(
        "SELECT kid, private_pem, x, y FROM signing_keys WHERE retired_ms IS NULL ORDER BY created_ms DESC LIMIT 1",
    )
    .fetch_one(&pool)
    .await
    .expect("a signing key");
    let kid: String = row.get("kid");
    let kek = database.parent().expect("a directory").join(DEFAULT_KEK_FILE);
    let vault = KeyVault::open_source(&KekSource::BesideDatabase(kek)).expect("the key-encryption key");
    let sealed: String = row.get("private_pem");
    let private_pem = vault
        .open(portcullis_control_plane::authority::SESSION_KEY_PURPOSE, &kid, &sealed)
        .expect("the key opens with its KEK");
    let key =
        SigningKey { kid, private_pem, x: row.get("x"), y: row.get::<Option<String>, _>("y").unwrap_or_default() };
    pool.close().await;
    key
}
