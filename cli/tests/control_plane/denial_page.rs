//! What an end user is told when the real edge denies them, and what an
//! admin finds with the reference they quote. The route, its rules, the
//! user's group and the admin's lock reason are canaries: whatever crossed
//! to the client (status, every header, the body), as JSON for an API
//! client and as the page a browser gets, must contain none of them, only
//! a generic message and a reference; `portcullis audit --reference` (and
//! the API's `reference` filter) then finds the one row with the details.
//! A burst of denials past the edge's per-window reporting shares one
//! reference per summed row, and every reference a client saw is found.
//! Last, the page in a real browser (headless Chromium, the quickstart):
//! a locked user's next page, wide and narrow (`denial-page` screenshots).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::edge_node::{create_session, EdgeNode};
use crate::harness::{ControlPlane, TempDir};
use crate::quickstart::{banner_value, free_port_range, start};
use crate::upstream::Upstream;
use crate::webdriver::{self, Chrome};

const ROUTE: &str = "canary-route-h7";
const DENY_RULE: &str = "canary-rule-no-vault";
const ALLOW_RULE: &str = "canary-rule-staff-q3";
const GROUP: &str = "canary-group-k2";
const LOCK_REASON: &str = "INC-4711: canary lock reason, under investigation";

/// What must never reach the client: policy internals and the admin's words.
const SECRETS: [&str; 9] =
    [ROUTE, DENY_RULE, ALLOW_RULE, GROUP, LOCK_REASON, "INC-4711", "canary", "default deny", "is locked"];

fn policy(upstream: u16) -> String {
    format!(
        "version: 1\nroutes:\n  - name: {ROUTE}\n    host: app.corp.example\n    upstream: http://127.0.0.1:{upstream}\n    rules:\n      - name: {DENY_RULE}\n        deny: {{ paths: [\"/vault/**\"] }}\n      - name: {ALLOW_RULE}\n        allow: {{ groups_any: [{GROUP}] }}\n"
    )
}

/// What the client received, whole.
struct Answer {
    status: u16,
    headers: String,
    body: String,
}

impl Answer {
    fn reference(&self) -> String {
        let header = self
            .headers
            .lines()
            .find_map(|l| l.strip_prefix("x-portcullis-reference: "))
            .unwrap_or_else(|| panic!("no reference header:\n{}", self.headers));
        assert!(is_reference(header), "{header}");
        header.to_owned()
    }

    /// Nothing the policy or the admin knows crossed to the client.
    fn assert_discloses_nothing(&self, what: &str) {
        let all = format!("{}\n{}\n{}", self.status, self.headers, self.body);
        for secret in SECRETS {
            assert!(
                !all.to_ascii_lowercase().contains(&secret.to_ascii_lowercase()),
                "{what}: the client received {secret:?}:\n{all}"
            );
        }
    }
}

/// `XXXX-XXXX-XXXX` in Crockford base32.
fn is_reference(text: &str) -> bool {
    text.len() == 14
        && text.split('-').count() == 3
        && text.split('-').all(|g| g.len() == 4 && g.chars().all(|c| "0123456789ABCDEFGHJKMNPQRSTVWXYZ".contains(c)))
}

async fn get(edge: &EdgeNode, path: &str, token: &str, accept: &str) -> Answer {
    let response = reqwest::Client::new()
        .get(edge.url(path))
        .header("host", "app.corp.example")
        .header("accept", accept)
        .header("cookie", format!("__Host-portcullis_session.{ROUTE}={token}"))
        .send()
        .await
        .expect("request through the edge");
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(name, value)| format!("{name}: {}", value.to_str().unwrap_or("?")))
        .collect::<Vec<_>>()
        .join("\n");
    Answer { status, headers, body: response.text().await.expect("body") }
}

/// Checks a denial as an API client and as a browser get it; returns both references.
async fn assert_generic_denial(edge: &EdgeNode, path: &str, token: &str, what: &str) -> [String; 2] {
    let api = get(edge, path, token, "application/json").await;
    assert_eq!(api.status, 403, "{what}: {}", api.body);
    api.assert_discloses_nothing(what);
    let body: Value = serde_json::from_str(&api.body).expect("JSON error body");
    let reference = api.reference();
    assert_eq!(body["error"]["code"], "forbidden", "{body}");
    assert_eq!(body["error"]["reference"], reference.as_str(), "the body and the header agree: {body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("administrator")), "{body}");
    assert_eq!(body.as_object().map(|o| o.len()), Some(1), "only `error`: {body}");

    let page = get(edge, path, token, "text/html,application/xhtml+xml").await;
    assert_eq!(page.status, 403, "{what}: {}", page.body);
    page.assert_discloses_nothing(what);
    let page_reference = page.reference();
    assert_ne!(page_reference, reference, "a reference per denial");
    assert!(page.headers.contains("content-type: text/html"), "{}", page.headers);
    assert!(page.headers.contains("content-security-policy: default-src 'none'"), "{}", page.headers);
    for shown in ["<h1>Access denied</h1>", &format!(">{page_reference}</code>"), "administrator", "viewport"] {
        assert!(page.body.contains(shown), "{what}: the page shows {shown:?}:\n{}", page.body);
    }
    assert!(!page.body.contains("<script") && !page.body.contains("src="), "self-contained: {}", page.body);
    println!("[figure] denial page: {} bytes", page.body.len());
    [reference, page_reference]
}

/// The audit rows an admin finds by `reference`, once the edge reported them.
async fn find(plane: &ControlPlane, reference: &str) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let page = plane.api_get(&format!("/audit?reference={reference}")).await;
        let entries = page["entries"].as_array().cloned().unwrap_or_default();
        if !entries.is_empty() || Instant::now() > deadline {
            return entries;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_user_sees_only_a_reference_and_the_admin_finds_the_details_by_it() {
    let dir = TempDir::new("denial-page");
    let plane = ControlPlane::start(&format!("sqlite://{}", dir.path().join("cp.db").display()), dir.path()).await;
    let upstream = Upstream::start().await;
    plane.apply_policy(&policy(upstream.port)).await;
    let edge = EdgeNode::start(&plane, "edge-a", dir.path()).await;
    let body = json!({
        "subject": "sub-ada", "email": "ada@corp.example", "groups": [GROUP],
        "idp_issuer": "https://idp.corp.example", "auth_time": chrono::Utc::now().timestamp(),
        "route": ROUTE, "source_address": "127.0.0.1", "user_agent": "denial-test",
    });
    let token = create_session(&plane, &body).await["token"].as_str().expect("token").to_owned();
    let started = Instant::now();
    for _ in 0..40 {
        assert_eq!(get(&edge, "/hello", &token, "application/json").await.status, 200, "ada is allowed in");
    }
    let allowed = started.elapsed();

    // Denied by a rule.
    let by_rule = assert_generic_denial(&edge, "/vault/keys", &token, "a deny rule").await;
    let rows = find(&plane, &by_rule[0]).await;
    assert_eq!(rows.len(), 1, "{rows:#?}");
    let reason = rows[0]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains(DENY_RULE) && reason.contains(ROUTE), "the admin sees rule and route: {reason}");
    assert!(reason.ends_with(&format!("(ref {})", by_rule[0])), "{reason}");
    assert_eq!(rows[0]["action"], "access.denied");
    let typed = by_rule[1].to_ascii_lowercase().replace('-', "");
    let rows = find(&plane, &typed).await;
    assert_eq!(rows.len(), 1, "as typed from the page, any case, no dashes: {rows:#?}");
    let out = plane.cli(&["audit", "--reference", &by_rule[1], "--json"]).await;
    assert!(out.ok().contains(DENY_RULE), "the CLI finds it: {out:?}");
    let wrong = plane.cli(&["audit", "--reference", "not-a-reference"]).await;
    assert_ne!(wrong.code, Some(0), "{wrong:?}");
    assert!(wrong.stderr.contains("reference"), "says what is wrong: {wrong:?}");

    // Locked, with the admin's internal reason.
    plane.cli(&["users", "lock", "ada@corp.example", "--reason", LOCK_REASON, "--wait", "--json"]).await.ok();
    let locked = assert_generic_denial(&edge, "/hello", &token, "a lock").await;
    for reference in &locked {
        let rows = find(&plane, reference).await;
        assert_eq!(rows.len(), 1, "{reference}: {rows:#?}");
        let reason = rows[0]["reason"].as_str().unwrap_or_default();
        assert!(reason.contains(LOCK_REASON), "the admin sees the lock's reason: {reason}");
        assert_eq!(rows[0]["session_id"].as_str().map(str::is_empty), Some(false), "{}", rows[0]);
    }

    // A burst past what the edge reports one by one: every reference shown is found.
    let mut shown = BTreeSet::new();
    let started = Instant::now();
    for _ in 0..40 {
        let answer = get(&edge, "/hello", &token, "application/json").await;
        assert_eq!(answer.status, 403);
        answer.assert_discloses_nothing("a burst");
        shown.insert(answer.reference());
    }
    println!("[figure] 40 requests, one client each: allowed {allowed:?}, denied {:?}", started.elapsed());
    assert!(shown.len() < 40, "the summed part of the burst shares a reference: {} distinct", shown.len());
    let mut occurrences = 0;
    for reference in &shown {
        let rows = find(&plane, reference).await;
        assert_eq!(rows.len(), 1, "{reference} finds its row: {rows:#?}");
        occurrences += rows[0]["count"].as_i64().unwrap_or(1);
    }
    assert!(occurrences >= 40, "the rows found stand for every denial shown ({occurrences})");
}

/// The quickstart's admin API client, trusting the CA its banner printed.
fn admin_client(banner: &str) -> reqwest::Client {
    let ca = std::fs::read(banner_value(banner, "CA certificate:")).expect("the CA file");
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("PEM"))
        .build()
        .expect("client")
}

/// In a real browser (headless Chromium) through the quickstart's edge: bob
/// is in the demo app, an admin locks him with an internal reason, and his
/// next page is the denial page with a reference and nothing else; the
/// reference finds the lock's reason in the audit log, and after the
/// unlock bob is back in. Saved as the `denial-page` screenshots.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_user_gets_the_denial_page_in_a_browser() {
    if !webdriver::available() {
        return;
    }
    let dir = TempDir::new("denial-browser");
    let base = free_port_range();
    let quickstart = start(&dir, base);
    let app = format!("http://demo.localhost:{}/websocket", base + 4);
    let banner = quickstart.output.join("\n");
    let (api, admin) = (banner_value(&banner, "Admin API"), admin_client(&banner));
    let chrome = Chrome::start(dir.path(), "denial").await;
    chrome.goto(&app).await;
    chrome.click("button[name=user][value=bob]").await;
    chrome.wait_text("[data-test=ws-status]", "connected").await;

    let internal = "INC-4711: bob's laptop reported stolen";
    let lock = |path: &str, body: Value| {
        admin.post(format!("{api}/users/{path}?wait=true")).bearer_auth(&quickstart.admin_token).json(&body).send()
    };
    let locked = lock("lock", json!({ "email": "bob@corp.example", "reason": internal })).await.expect("lock");
    assert_eq!(locked.status(), 200, "{}", locked.text().await.unwrap_or_default());
    chrome.goto(&app).await;
    let reference = chrome.wait_text("[data-test=reference]", "-").await;
    assert!(is_reference(&reference), "{reference}");
    let text = chrome.page_text().await.replace(&reference, "");
    assert!(text.contains("Access denied") && text.contains("administrator"), "{text}");
    for secret in ["INC-4711", "stolen", "locked", "developers", "demo", "dev"] {
        assert!(!text.to_ascii_lowercase().contains(secret), "the page shows {secret:?}: {text}");
    }
    let font = chrome.eval("return getComputedStyle(document.querySelector('[data-test=reference]')).fontFamily").await;
    assert!(font.as_str().is_some_and(|f| f.contains("monospace")), "the reference is monospace: {font}");
    chrome.screenshots("denial-page").await;
    let overflow = chrome.eval("return document.documentElement.scrollWidth <= window.innerWidth").await;
    assert_eq!(overflow, json!(true), "nothing overflows a phone-sized window");

    let deadline = Instant::now() + Duration::from_secs(20);
    let entries = loop {
        let page: Value = admin
            .get(format!("{api}/audit?reference={reference}"))
            .bearer_auth(&quickstart.admin_token)
            .send()
            .await
            .expect("audit")
            .json()
            .await
            .expect("audit JSON");
        let entries = page["entries"].as_array().cloned().unwrap_or_default();
        if !entries.is_empty() || Instant::now() > deadline {
            break entries;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(entries.len(), 1, "{entries:#?}");
    let reason = entries[0]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains(internal) && reason.contains("bob@corp.example"), "the admin sees why: {reason}");

    let unlocked = lock("unlock", json!({ "email": "bob@corp.example", "keep_sessions": true })).await.expect("unlock");
    assert_eq!(unlocked.status(), 200, "{}", unlocked.text().await.unwrap_or_default());
    chrome.goto(&app).await;
    chrome.wait_text("[data-test=ws-status]", "connected").await;
}
