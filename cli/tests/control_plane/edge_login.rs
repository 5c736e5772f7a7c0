//! Browser login and IdP tokens end to end: a real OpenID provider
//! (npm `oidc-provider`), a control plane, an edge and an upstream, driven
//! by a scripted browser. Login through the IdP, allowed and denied by
//! policy; a terminated session goes back to login; logout at the edge ends
//! the session server side; OIDC back-channel logout from the IdP ends the
//! session and cuts its live download; IdP bearer tokens allowed, denied,
//! expired, forged and revoked; open redirects and forged login state refused;
//! a locked user cannot log in.

use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::edge_node::EdgeNode;
use crate::harness::{free_port, ControlPlane, TempDir};
use crate::idp::{jwt_parts, Browser, Idp};
use crate::upstream::Upstream;

const CLIENT_SECRET: &str = "edge-client-secret-0123456789abcdef";
const WITHIN: Duration = Duration::from_secs(5);
const API_AUDIENCE: &str = "http://api.corp.example/";
const SHORT_AUDIENCE: &str = "http://short-lived.corp.example/";

fn policy(upstream: u16) -> String {
    format!(
        "version: 1
routes:
  - name: wiki
    host: wiki.corp.example
    upstream: http://127.0.0.1:{upstream}
    rules:
      - name: developers
        allow: {{ groups_any: [dev], credential: [browser] }}
  - name: admin
    host: admin.corp.example
    upstream: http://127.0.0.1:{upstream}
    rules:
      - name: admins
        allow: {{ groups_any: [admins] }}
  - name: api
    host: api.corp.example
    upstream: http://127.0.0.1:{upstream}
    rules:
      - name: robots
        allow: {{ credential: [bearer], groups_any: [robots] }}
  - name: short
    host: short-lived.corp.example
    upstream: http://127.0.0.1:{upstream}
    rules:
      - name: robots
        allow: {{ credential: [bearer], groups_any: [robots] }}
"
    )
}

/// A control plane, an upstream, the IdP and one edge wired to it.
pub(crate) struct World {
    pub(crate) plane: ControlPlane,
    pub(crate) idp: Idp,
    edge: EdgeNode,
    _upstream: Upstream,
    _dir: TempDir,
}

impl World {
    pub(crate) async fn start(label: &str) -> Self {
        let dir = TempDir::new(label);
        let port = free_port();
        let callbacks: Vec<String> = ["wiki", "admin"]
            .iter()
            .map(|host| format!("http://{host}.corp.example:{port}/.portcullis/callback"))
            .collect();
        let clients = json!([
            {
                "client_id": "edge", "client_secret": CLIENT_SECRET, "redirect_uris": callbacks,
                "post_logout_redirect_uris": [format!("http://wiki.corp.example:{port}/")],
                "backchannel_logout_uri": format!("http://127.0.0.1:{port}/.portcullis/backchannel-logout"),
            },
            {
                "client_id": "robot", "client_secret": "robot-secret", "grant_types": ["client_credentials"],
                "response_types": [], "redirect_uris": [], "x_email": "robot@corp.example", "x_groups": ["robots"],
            },
            {
                "client_id": "intruder", "client_secret": "intruder-secret", "grant_types": ["client_credentials"],
                "response_types": [], "redirect_uris": [], "x_groups": ["visitors"],
            },
        ]);
        let idp = Idp::start(dir.path(), clients).await;
        let database = format!("sqlite://{}", dir.path().join("cp.db").display());
        let plane = ControlPlane::start_trusting(&database, dir.path(), &[(&idp.issuer(), "edge")]).await;
        let upstream = Upstream::start().await;
        plane.apply_policy(&policy(upstream.port)).await;
        let settings = [
            ("listen", format!("127.0.0.1:{port}")),
            ("oidc_issuer", idp.issuer()),
            ("oidc_client_id", "edge".to_owned()),
            ("oidc_client_secret", CLIENT_SECRET.to_owned()),
            ("oidc_scopes", "email,profile,groups".to_owned()),
            ("oidc_post_logout_redirect_url", format!("http://wiki.corp.example:{port}/")),
            ("bearer_audiences", format!("{API_AUDIENCE},{SHORT_AUDIENCE}")),
            ("clock_skew_s", "0".to_owned()),
            ("cookie_secure", "false".to_owned()),
        ];
        let edge = EdgeNode::start_with(&plane, "edge-login", dir.path(), &settings).await;
        Self { plane, idp, edge, _upstream: upstream, _dir: dir }
    }

    pub(crate) fn url(&self, app: &str, path: &str) -> String {
        format!("http://{app}.corp.example:{}{path}", self.edge.port)
    }

    /// Logs `user` in to `app` in `browser`, starting at `path`; returns the final answer.
    pub(crate) async fn log_in(
        &self,
        browser: &Browser,
        user: &str,
        app: &str,
        path: &str,
    ) -> crate::idp::FinalResponse {
        let callback = browser.login_at_idp(&self.url(app, path), user, &self.url(app, "/.portcullis/callback")).await;
        browser.follow(&callback).await
    }

    /// How many of `email`'s sessions are active.
    pub(crate) async fn active_sessions_of(&self, email: &str) -> usize {
        self.sessions_of(email).await.iter().filter(|s| s["state"] == "active").count()
    }

    async fn sessions_of(&self, email: &str) -> Vec<Value> {
        let page = self.plane.api_get(&format!("/sessions?email={email}")).await;
        page["sessions"].as_array().cloned().unwrap_or_default()
    }

    /// GET `url` with only the given headers (no browser cookies): status and `Location`.
    async fn bare_get(&self, url: &str, headers: &[(&str, &str)]) -> (u16, String) {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .resolve_to_addrs(
                reqwest::Url::parse(url).expect("URL").host_str().expect("host"),
                &[([127, 0, 0, 1], self.edge.port).into()],
            )
            .build()
            .expect("client");
        let mut request = client.get(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("request through the edge");
        let location = response.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        (response.status().as_u16(), location)
    }
}

async fn eventually<F: std::future::Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    let deadline = Instant::now() + WITHIN;
    while !check().await {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn session_cookie(browser: &Browser, url: &str) -> String {
    browser
        .cookies(url)
        .split("; ")
        .find(|c| c.starts_with("portcullis_session."))
        .unwrap_or_else(|| panic!("no session cookie for {url}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_logs_in_through_the_idp_and_policy_decides_what_it_reaches() {
    let world = World::start("login-browser").await;
    let bob = Browser::resolving(&["wiki.corp.example", "admin.corp.example"]);

    let done = world.log_in(&bob, "bob", "wiki", "/hello").await;
    let trail: Vec<String> = done.hops.iter().map(ToString::to_string).collect();
    assert_eq!(done.status, 200, "bob reaches the wiki:\n{}", trail.join("\n"));
    assert_eq!(done.url, world.url("wiki", "/hello"), "back where the login started");
    let seen: Value = serde_json::from_str(&done.body).expect("upstream JSON");
    assert_eq!(seen["x-portcullis-email"], "bob@corp.example");
    assert_eq!(seen["x-portcullis-groups"], "[\"dev\"]");
    assert_eq!(seen["x-portcullis-user"], "bob");
    let set_cookie = done.hops[0].set_cookies.iter().find(|c| c.starts_with("portcullis_session.")).expect("cookie");
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(set_cookie.contains(attribute), "{attribute} in {set_cookie}");
    }

    let sessions = world.sessions_of("bob@corp.example").await;
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(
        (sessions[0]["route"].as_str(), sessions[0]["idp_issuer"].as_str()),
        (Some("wiki"), Some(&*world.idp.issuer()))
    );
    assert!(sessions[0]["idp_session_id"].as_str().is_some_and(|s| !s.is_empty()), "the IdP sid is kept");

    // Same IdP session, another app: no form, but bob is not an admin.
    let admin = world.log_in(&bob, "bob", "admin", "/").await;
    assert_eq!(admin.status, 403, "bob is not in admins");
    assert!(admin.body.contains("Access denied"), "an HTML page says why: {}", admin.body);

    let mallory = Browser::resolving(&["wiki.corp.example"]);
    assert_eq!(world.log_in(&mallory, "mallory", "wiki", "/hello").await.status, 403, "mallory is not a developer");

    // A terminated session sends the next request back to login.
    let id = sessions[0]["id"].as_str().expect("id");
    let (status, _) = world
        .plane
        .api_post(&format!("/sessions/{id}/terminate?wait=true"), &json!({ "reason": "test" }))
        .await
        .unwrap();
    assert_eq!(status, 200);
    let cookie = session_cookie(&bob, &world.url("wiki", "/"));
    let (status, location) =
        world.bare_get(&world.url("wiki", "/hello"), &[("cookie", &cookie), ("accept", "text/html")]).await;
    assert_eq!((status, location.as_str()), (302, "/.portcullis/login?rd=/hello"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logging_out_at_the_edge_ends_the_session_on_the_server_and_continues_to_the_idp() {
    let world = World::start("login-logout").await;
    let bob = Browser::resolving(&["wiki.corp.example"]);
    assert_eq!(world.log_in(&bob, "bob", "wiki", "/hello").await.status, 200);
    let cookie = session_cookie(&bob, &world.url("wiki", "/"));

    // GET only asks; a POST without the form's CSRF tag ends nothing; the confirmed form does.
    let logout_url = world.url("wiki", "/.portcullis/logout");
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .resolve("wiki.corp.example", ([127, 0, 0, 1], world.edge.port).into())
        .build()
        .expect("client");
    let form_page = client.get(&logout_url).header("cookie", &cookie).send().await.expect("logout form");
    assert_eq!(form_page.status(), 200);
    let nonce = form_page.headers().get("set-cookie").and_then(|v| v.to_str().ok()).expect("nonce cookie");
    let nonce = nonce.split(';').next().expect("name=value").to_owned();
    let html = form_page.text().await.expect("form");
    let tag = html.split("name=\"csrf\" value=\"").nth(1).and_then(|t| t.split('"').next()).expect("csrf field");
    let forged = client.post(&logout_url).header("cookie", &cookie).form(&[("csrf", "x")]).send().await.unwrap();
    assert_eq!(forged.status(), 403, "a cross-site form cannot log anyone out");
    let (status, _) = world.bare_get(&world.url("wiki", "/hello"), &[("cookie", &cookie)]).await;
    assert_eq!(status, 200, "the refused logout left the session alone");
    let confirmed = client
        .post(&logout_url)
        .header("cookie", format!("{cookie}; {nonce}"))
        .form(&[("csrf", tag)])
        .send()
        .await
        .expect("logout");
    let location = confirmed.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    assert_eq!(confirmed.status(), 303);
    assert!(location.starts_with(&format!("{}/session/end?", world.idp.issuer())), "on to the IdP: {location}");
    assert!(location.contains("client_id=edge"), "{location}");
    let (status, _) = world.bare_get(&world.url("wiki", "/hello"), &[("cookie", &cookie)]).await;
    assert_eq!(status, 401, "the old cookie is dead on the server, not just deleted in the browser");
    let sessions = world.sessions_of("bob@corp.example").await;
    assert_eq!(
        (sessions[0]["state"].as_str(), sessions[0]["end_reason"].as_str()),
        (Some("ended"), Some("logged out"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_channel_logout_from_the_idp_ends_the_session_and_its_live_download() {
    let world = World::start("login-backchannel").await;
    let alice = Browser::resolving(&["wiki.corp.example"]);
    assert_eq!(world.log_in(&alice, "alice", "wiki", "/hello").await.status, 200);
    let cookie = session_cookie(&alice, &world.url("wiki", "/"));
    let download = reqwest::Client::builder()
        .resolve("wiki.corp.example", ([127, 0, 0, 1], world.edge.port).into())
        .build()
        .expect("client")
        .get(world.url("wiki", "/stream"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("download");
    assert_eq!(download.status(), 200);
    let mut body = download.bytes_stream();
    assert!(body.next().await.is_some_and(|c| c.is_ok()), "the download starts");

    // Forged logout tokens are refused before anything is ended.
    let forged = format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"logout+jwt"}"#),
        URL_SAFE_NO_PAD.encode(json!({"iss": world.idp.issuer(), "aud": "edge", "sub": "alice"}).to_string()),
        ""
    );
    let refused = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}/.portcullis/backchannel-logout", world.edge.port))
        .form(&[("logout_token", forged.as_str())])
        .send()
        .await
        .expect("post");
    assert_eq!(refused.status(), 400, "an unsigned logout token");

    // Alice logs out at the IdP, which tells the edge through the back channel.
    let landed = alice.logout_at_idp(&world.idp, &[("client_id", "edge")]).await;
    assert!(landed.contains("/session/end/success"), "{landed}");
    let cut = tokio::time::timeout(WITHIN, async {
        let mut more = 0;
        while let Some(Ok(_)) = body.next().await {
            more += 1;
        }
        more
    })
    .await
    .unwrap_or_else(|_| {
        panic!("the download is cut; edge log:\n{}\nIdP log:\n{}", world.edge.log_text(), world.idp.log_text())
    });
    assert!(cut < 100, "cut, not finished");
    let sessions = world.sessions_of("alice@corp.example").await;
    assert_eq!(
        (sessions[0]["state"].as_str(), sessions[0]["end_reason"].as_str()),
        (Some("ended"), Some("logged out at the identity provider"))
    );
    let (status, _) =
        world.bare_get(&world.url("wiki", "/hello"), &[("cookie", &cookie), ("accept", "text/html")]).await;
    assert_eq!(status, 302, "back to login");
}

/// A client-credentials access token from the IdP for `resource`.
async fn robot_token(world: &World, client: &str, resource: &str) -> String {
    world.idp.client_credentials_token(client, &format!("{client}-secret"), resource).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idp_bearer_tokens_are_checked_like_sessions_and_forgeries_are_refused() {
    let world = World::start("login-bearer").await;
    let api = world.url("api", "/hello");
    let call = |token: String| {
        let api = api.clone();
        let world = &world;
        async move { world.bare_get(&api, &[("authorization", &format!("Bearer {token}"))]).await.0 }
    };

    let robot = robot_token(&world, "robot", API_AUDIENCE).await;
    assert_eq!(call(robot.clone()).await, 200, "the robots rule allows it");
    assert_eq!(call(robot_token(&world, "intruder", API_AUDIENCE).await).await, 403, "not a robot");
    assert_eq!(call(robot_token(&world, "robot", "http://elsewhere.corp.example/").await).await, 401, "wrong audience");

    let (header, payload) = jwt_parts(&robot);
    let signature = robot.rsplit('.').next().expect("signature");
    let encode = |value: &Value| URL_SAFE_NO_PAD.encode(value.to_string());
    let mut none = header.clone();
    none["alg"] = json!("none");
    assert_eq!(call(format!("{}.{}.", encode(&none), encode(&payload))).await, 401, "alg none");
    let mut promoted = payload.clone();
    promoted["groups"] = json!(["robots", "admins"]);
    assert_eq!(call(format!("{}.{}.{signature}", encode(&header), encode(&promoted))).await, 401, "altered claims");
    let jwks = reqwest::get(world.idp.endpoint("jwks_uri")).await.expect("JWKS").text().await.expect("text");
    let mut hs = header.clone();
    hs["alg"] = json!("HS256");
    let hs_token = jsonwebtoken::encode(
        &serde_json::from_value(hs).expect("header"),
        &payload,
        &jsonwebtoken::EncodingKey::from_secret(jwks.as_bytes()),
    )
    .expect("HS256 token");
    assert_eq!(call(hs_token).await, 401, "HS256 keyed with the public key");
    let own_key = p256::SecretKey::random(&mut rand::rngs::OsRng);
    let pem = p256::pkcs8::EncodePrivateKey::to_pkcs8_pem(&own_key, p256::pkcs8::LineEnding::LF).expect("PEM");
    let mut es = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    es.kid = header["kid"].as_str().map(str::to_owned);
    es.typ = Some("at+jwt".into());
    let es_token =
        jsonwebtoken::encode(&es, &payload, &jsonwebtoken::EncodingKey::from_ec_pem(pem.as_bytes()).expect("key"))
            .expect("ES256 token");
    assert_eq!(call(es_token).await, 401, "signed by someone else under the IdP's kid");

    let short = robot_token(&world, "robot", SHORT_AUDIENCE).await;
    let short_url = world.url("short-lived", "/hello");
    let auth = format!("Bearer {short}");
    assert_eq!(world.bare_get(&short_url, &[("authorization", &auth)]).await.0, 200);
    tokio::time::sleep(Duration::from_millis(3_200)).await; // 2 s of life, whole-second clocks
    let lifetime = jwt_parts(&short).1;
    assert_eq!(
        world.bare_get(&short_url, &[("authorization", &auth)]).await.0,
        401,
        "expired, though cached (iat {}, exp {})",
        lifetime["iat"],
        lifetime["exp"]
    );

    // Continuous evaluation covers bearer tokens: ending the user ends them.
    let (status, _) = world
        .plane
        .api_post("/users/terminate", &json!({ "email": "robot@corp.example", "reason": "test" }))
        .await
        .unwrap();
    assert_eq!(status, 200);
    eventually("the robot's token dies with the user's termination", || call(robot.clone()).map_eq(401)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_redirects_forged_login_state_and_locked_users_are_refused() {
    let world = World::start("login-refusals").await;
    let bob = Browser::resolving(&["wiki.corp.example"]);
    let hostile = world.url("wiki", "/.portcullis/login?rd=https%3A%2F%2Fevil.example%2F");
    let callback = bob.login_at_idp(&hostile, "bob", &world.url("wiki", "/.portcullis/callback")).await;
    let done = bob.follow(&callback).await;
    assert_eq!(done.hops[0].location.as_deref(), Some(&*world.url("wiki", "/")), "an absolute URL becomes `/`");
    for hostile in ["//evil.example/", "/\\evil.example"] {
        let start = format!(
            "{}?rd={}",
            world.url("wiki", "/.portcullis/login"),
            reqwest::Url::parse_with_params("http://x/", &[("rd", hostile)])
                .expect("URL")
                .query()
                .expect("query")
                .trim_start_matches("rd=")
                .to_owned()
        );
        let callback = bob.login_at_idp(&start, "bob", &world.url("wiki", "/.portcullis/callback")).await;
        assert_eq!(
            bob.follow(&callback).await.hops[0].location.as_deref(),
            Some(&*world.url("wiki", "/")),
            "{hostile}"
        );
    }

    let (status, _) = world.bare_get(&world.url("wiki", "/.portcullis/callback?state=forged&code=stolen"), &[]).await;
    assert_eq!(status, 400, "a callback this browser did not start");
    let forged_cookie = "portcullis_session_login_forged=eyJ2ZXJpZmllciI6IngifQ.AAAA";
    let (status, _) = world
        .bare_get(&world.url("wiki", "/.portcullis/callback?state=forged&code=stolen"), &[("cookie", forged_cookie)])
        .await;
    assert_eq!(status, 400, "a forged login-state cookie");

    let (status, _) = world
        .plane
        .api_post("/users/lock", &json!({ "email": "mallory@evil.example", "reason": "compromised" }))
        .await
        .unwrap();
    assert_eq!(status, 200);
    let mallory = Browser::resolving(&["wiki.corp.example"]);
    let refused = world.log_in(&mallory, "mallory", "wiki", "/hello").await;
    assert_eq!(refused.status, 403);
    assert!(refused.body.contains("locked"), "says why: {}", refused.body);
    assert!(world.sessions_of("mallory@evil.example").await.is_empty(), "no session for a locked user");
}

/// `future.map_eq(x)`: resolves to whether the future's output equals `x`.
trait MapEq: std::future::Future + Sized {
    fn map_eq(self, expected: Self::Output) -> impl std::future::Future<Output = bool>
    where
        Self::Output: PartialEq,
    {
        async move { self.await == expected }
    }
}

impl<F: std::future::Future> MapEq for F {}
