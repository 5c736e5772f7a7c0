//! The admin portal in a real browser (headless Chromium over WebDriver,
//! see `webdriver.rs`) against the real `portcullis control-plane`, the
//! real OpenID provider (`idp.rs`) and, where connections must be cut, a
//! real edge. This file holds the shared world and the tests of sign-in
//! refusal and escaping; `portal_sessions.rs` and `portal_policy.rs` hold
//! the rest. Each page is saved as a screenshot, wide and narrow.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::edge_node::EdgeNode;
use crate::harness::{free_port, ControlPlane, TempDir, ADMIN_TOKEN, EDGE_SECRET};
use crate::idp::Idp;
use crate::upstream::Upstream;
use crate::webdriver::{self, Chrome};

/// The portal's client secret at the test IdP.
const PORTAL_SECRET: &str = "portal-client-secret-0123456789abcdef";

/// A control plane (with the IdP as its portal login, when asked), an
/// optional edge with an upstream, and a browser.
pub struct PortalWorld {
    /// The control plane.
    pub plane: ControlPlane,
    /// The OpenID provider.
    pub idp: Option<Idp>,
    /// An edge in front of [`Upstream`], serving `edge_node::policy`.
    pub edge: Option<EdgeNode>,
    /// The browser.
    pub chrome: Chrome,
    _upstream: Option<Upstream>,
    /// Logs and profiles (removed on drop).
    _dir: TempDir,
}

/// What a world has.
#[derive(Debug, Clone, Copy, Default)]
pub struct Parts {
    /// Admins sign in through the IdP.
    pub idp: bool,
    /// An edge and an upstream, with `edge_node::policy` applied.
    pub edge: bool,
}

impl PortalWorld {
    /// Starts everything, or `None` when no browser is installed (and not CI).
    pub async fn start(label: &str, parts: Parts) -> Option<Self> {
        Self::start_with(label, parts, |_| Vec::new()).await
    }

    /// Same, with more control-plane settings, made knowing the world's
    /// temporary directory (for secret files).
    pub async fn start_with(
        label: &str,
        parts: Parts,
        extra: impl FnOnce(&TempDir) -> Vec<(&'static str, String)>,
    ) -> Option<Self> {
        if !webdriver::available() {
            return None;
        }
        let dir = TempDir::new(label);
        let database = format!("sqlite://{}", dir.path().join("cp.db").display());
        let (listen, edge_listen) = (free_port(), free_port());
        let mut settings = vec![("portal_cookie_secure", "false".to_owned())];
        settings.extend(extra(&dir));
        let idp = if parts.idp {
            let clients = json!([{
                "client_id": "portal", "client_secret": PORTAL_SECRET,
                "redirect_uris": [format!("http://127.0.0.1:{listen}/portal/callback")],
            }]);
            let idp = Idp::start(dir.path(), clients).await;
            settings.extend([
                ("oidc_issuer", idp.issuer()),
                ("oidc_client_id", "portal".to_owned()),
                ("oidc_client_secret", PORTAL_SECRET.to_owned()),
                ("oidc_scopes", "email,profile,groups".to_owned()),
            ]);
            Some(idp)
        } else {
            None
        };
        let plane = ControlPlane::start_on_with(&database, dir.path(), listen, edge_listen, &settings)
            .await
            .unwrap_or_else(|log| panic!("the control plane did not start:\n{log}"));
        let (edge, upstream) = if parts.edge {
            let upstream = Upstream::start().await;
            plane.apply_policy(&crate::edge_node::policy(upstream.port)).await;
            (Some(EdgeNode::start(&plane, "edge-eu-1", dir.path()).await), Some(upstream))
        } else {
            (None, None)
        };
        let chrome = Chrome::start(dir.path(), label).await;
        Some(Self { plane, idp, edge, chrome, _upstream: upstream, _dir: dir })
    }

    /// A URL of the portal.
    pub fn portal(&self, path: &str) -> String {
        format!("{}/portal/{path}", self.plane.url)
    }

    /// Signs `user` in through the IdP's login and consent pages; waits for the portal.
    pub async fn sign_in_with_idp(&self, user: &str) {
        self.chrome.goto(&self.portal("")).await;
        self.chrome.click("[data-test=sso]").await;
        self.chrome.type_into("input[name=login]", user).await;
        self.chrome.type_into("input[name=password]", "any password will do").await;
        self.chrome.click("button[type=submit]").await;
        // Consent (once per client), then back at the portal: signed in, or refused.
        let deadline = Instant::now() + webdriver::WAIT;
        while Instant::now() < deadline {
            if self.chrome.exists("[data-test=signed-in-as], .notice-card").await {
                return;
            }
            let consent = self.chrome.eval(
                "const b = [...document.querySelectorAll('button[type=submit]')].find(b => b.textContent.trim() === 'Continue'); \
                 if (b) { b.click(); return true; } return false;",
            );
            if consent.await == json!(true) {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "no portal after signing in {user} at the IdP; page:\n{}\nIdP log:\n{}",
            self.chrome.page_text().await,
            self.idp.as_ref().map(Idp::log_text).unwrap_or_default()
        );
    }

    /// Signs in with the bootstrap admin token; waits for the portal.
    pub async fn sign_in_with_token(&self) {
        self.chrome.goto(&self.portal("")).await;
        self.chrome.type_into("input[name=token]", ADMIN_TOKEN).await;
        self.chrome.click("[data-test=token-submit]").await;
        self.chrome.wait_text("[data-test=signed-in-as]", "token:bootstrap").await;
    }
}

/// A session created the way an edge's login does (POST /edge/v1/sessions);
/// returns (id, token).
pub async fn edge_login(plane: &ControlPlane, email: &str, source: &str, user_agent: &str) -> (String, String) {
    let body = json!({
        "subject": format!("sub-{}", email.split('@').next().unwrap_or(email)), "email": email,
        "groups": ["staff"], "idp_issuer": "https://idp.corp.example", "auth_time": chrono::Utc::now().timestamp(),
        "route": "app", "source_address": source, "user_agent": user_agent,
    });
    let body = portcullis_dev_idp::test_issuer::TestIssuer::shared().login_body(&body);
    let (status, answer) = crate::edge_identity::post_session(plane.http(), &plane.edge_url, EDGE_SECRET, &body).await;
    assert_eq!(status, 200, "create a session: {status} {answer}");
    (answer["session_id"].as_str().expect("id").to_owned(), answer["token"].as_str().expect("token").to_owned())
}

/// Browsers' user agents, for realistic tables.
pub const USER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portal_refuses_a_user_outside_the_admin_group_with_a_clear_page() {
    let Some(world) = PortalWorld::start("portal-403", Parts { idp: true, edge: false }).await else { return };
    world.chrome.goto(&world.portal("")).await;
    world.chrome.find("[data-test=sso]").await;
    world.chrome.screenshots("sign-in").await;
    world.sign_in_with_idp("bob").await;
    let text = world.chrome.wait_text(".notice-card", "Access denied").await;
    assert!(text.contains("bob@corp.example") && text.contains("admins"), "says who and which group: {text}");
    world.chrome.screenshots("forbidden").await;
    // No portal session: the portal shows its sign-in page and the API refuses the browser.
    world.chrome.goto(&world.portal("")).await;
    world.chrome.find("[data-test=token-form]").await;
    let api = world.chrome.eval("return fetch('/api/v1/sessions').then(r => r.status)").await;
    assert_eq!(api, 401, "no portal session after a refused sign-in");
    let audit = world.plane.api_get("/audit?action=portal.login_refused").await;
    let entry = &audit["entries"][0];
    assert_eq!(
        (entry["actor"].as_str(), entry["target"].as_str()),
        (Some("portal:bob@corp.example"), Some("email:bob@corp.example"))
    );
    assert_eq!(entry["source_address"], "127.0.0.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portal_renders_attacker_controlled_strings_as_text() {
    let Some(world) = PortalWorld::start("portal-xss", Parts::default()).await else { return };
    world.plane.apply_policy(&crate::edge_node::policy(9)).await;
    let payload = r#"<img src=x onerror="window.__pwned=1;document.title='pwned'"><script>window.__pwned=2</script>"#;
    let (session, _) = edge_login(&world.plane, "eve@corp.example", "198.51.100.66", payload).await;
    let (ended, _) = edge_login(&world.plane, "eve@corp.example", "198.51.100.67", USER_AGENTS[0]).await;
    let reason = r#"<b>bold</b><img src=y onerror="window.__pwned=3">"#;
    let (status, _) =
        world.plane.api_post(&format!("/sessions/{ended}/terminate"), &json!({ "reason": reason })).await.unwrap();
    assert_eq!(status, 200);

    world.sign_in_with_token().await;
    let row = format!("tr[data-session='{session}'] [data-test=user-agent]");
    world.chrome.wait_text(&row, "<script>window.__pwned=2</script>").await;
    let ua = world.chrome.eval(&format!("return document.querySelector(\"{row}\").textContent")).await;
    assert_eq!(ua, payload, "the user agent is shown literally");
    let reason_cell = format!("tr[data-session='{ended}'] [data-test=end-reason]");
    assert_eq!(world.chrome.wait_text(&reason_cell, "<b>bold</b>").await, reason);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let checks = world
        .chrome
        .eval(
            "return { pwned: window.__pwned === undefined ? null : window.__pwned, title: document.title, \
             injected: document.querySelectorAll('main img, main script, main b').length }",
        )
        .await;
    assert_eq!(checks, json!({ "pwned": null, "title": "Sessions · Portcullis", "injected": 0 }), "nothing ran");
    world.chrome.screenshots("sessions-escaped").await;
}
