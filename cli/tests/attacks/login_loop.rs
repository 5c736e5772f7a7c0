//! The login-loop guard (issue 13). A browser whose brand-new session is
//! refused at once was sent to log in again, and a live IdP session sent
//! it straight back with another session, refused again: ERR_TOO_MANY_REDIRECTS
//! and a pile of sessions. Now the first refusal of a session the edge set
//! moments ago is a clear 403 page, not another login; an older session
//! still goes back to login; the guard's cookie never reaches the upstream.
//!
//! Two edges of one control plane and fake IdP: one whose `session_issuer`
//! is wrong (every session it gets is refused: the loop, persistent), and a
//! sound one (a session terminated between the callback and the next
//! request: the loop of issue 13, once).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::edge_node::EdgeNode;
use crate::fake_idp::{FakeIdp, CLIENT_ID, CLIENT_SECRET};
use crate::harness::{ControlPlane, TempDir};
use crate::recording_upstream::RecordingUpstream;
use crate::wire::{exchange, get, Response};

const APP: &str = "app.corp.example";
/// The fake IdP logs everyone in as this user.
const LIN: &str = "lin@corp.example";
/// What the guard's page says.
const REFUSED_AT_ONCE: &str = "refused right after it completed";

/// A browser: a cookie jar, following the edge's redirects and completing
/// each login at the fake IdP at once, as a live IdP session would.
#[derive(Default)]
struct Browser {
    jar: BTreeMap<String, String>,
    /// Logins completed (callbacks answered with a redirect).
    logins: usize,
    /// `status location` of every answer, for failure messages.
    trail: Vec<String>,
}

impl Browser {
    fn cookie_header(&self) -> String {
        self.jar.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    /// GET `target` with the jar's cookies; keeps what the answer sets.
    async fn request(&mut self, port: u16, target: &str) -> Response {
        let cookie = self.cookie_header();
        let mut headers = vec![("Accept", "text/html")];
        if !cookie.is_empty() {
            headers.push(("Cookie", cookie.as_str()));
        }
        let response = exchange(port, &get(target, APP, &headers)).await.expect("an answer from the edge");
        for set in response.all("set-cookie") {
            let Some((name, value)) = set.split(';').next().and_then(|pair| pair.split_once('=')) else { continue };
            if value.is_empty() || set.contains("Max-Age=0") {
                self.jar.remove(name);
            } else {
                self.jar.insert(name.to_owned(), value.to_owned());
            }
        }
        self.trail.push(format!("{target} -> {} {}", response.status, response.header("location").unwrap_or("")));
        response
    }

    /// The callback a login that went to the IdP comes back to (the fake
    /// IdP takes the nonce as the code).
    fn callback(location: &str) -> String {
        let url = reqwest::Url::parse(location).expect("the IdP's authorization URL");
        let param =
            |name: &str| url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned()).unwrap_or_default();
        format!("/.portcullis/callback?code={}&state={}", param("nonce"), param("state"))
    }

    /// Follows redirects from `target`, at most `hops` requests; with
    /// `stop_after_login`, returns the first callback's answer unfollowed.
    async fn visit(&mut self, port: u16, idp: &FakeIdp, target: &str, hops: usize, stop_after_login: bool) -> Response {
        let mut target = target.to_owned();
        let mut last = Response::default();
        for _ in 0..hops {
            let callback = target.starts_with("/.portcullis/callback");
            last = self.request(port, &target).await;
            if callback && last.status == 302 {
                self.logins += 1;
                if stop_after_login {
                    return last;
                }
            }
            let location = last.header("location").unwrap_or("").to_owned();
            target = match last.status {
                302 if location.starts_with(&format!("{}/authorize?", idp.issuer)) => Self::callback(&location),
                302 if location.starts_with('/') => location,
                _ => return last,
            };
        }
        last
    }
}

fn policy(upstream: u16) -> String {
    format!(
        "version: 1\nroutes:\n  - name: app\n    host: {APP}\n    upstream: http://127.0.0.1:{upstream}\n    rules:\n      - name: staff\n        allow: {{ email_domain: [corp.example] }}\n"
    )
}

async fn sessions_of(plane: &ControlPlane, email: &str) -> Vec<Value> {
    plane.api_get(&format!("/sessions?email={email}")).await["sessions"].as_array().cloned().unwrap_or_default()
}

/// The guard's page: 403, HTML, saying why and offering a login the person starts.
fn assert_guard_page(answer: &Response, browser: &Browser, why: &str) {
    let trail = browser.trail.join("\n");
    assert_eq!(answer.status, 403, "a page, not another login:\n{trail}\n{}", answer.text());
    let body = answer.text();
    assert!(body.contains(REFUSED_AT_ONCE), "says what happened: {body}");
    assert!(body.contains(why), "says why ({why}): {body}");
    assert!(body.contains("href=\"/.portcullis/login?rd=/hello\""), "offers to sign in again by hand: {body}");
    assert!(answer.header("location").is_none(), "no redirect: {}", answer.head);
    assert!(!body.contains("eyJ"), "no token in the page: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_refused_at_once_ends_on_a_page_not_in_a_loop() {
    let dir = TempDir::new("attacks-login-loop");
    let idp = FakeIdp::start().await;
    let database = format!("sqlite://{}", dir.path().join("cp.db").display());
    let plane = ControlPlane::start_trusting(&database, dir.path(), &[(&idp.issuer, CLIENT_ID)]).await;
    let upstream = RecordingUpstream::start().await;
    plane.apply_policy(&policy(upstream.port)).await;
    let settings = |issuer: Option<&str>| {
        let mut settings = vec![
            ("cookie_secure", "false".to_owned()),
            ("oidc_issuer", idp.issuer.clone()),
            ("oidc_client_id", CLIENT_ID.to_owned()),
            ("oidc_client_secret", CLIENT_SECRET.to_owned()),
        ];
        settings.extend(issuer.map(|issuer| ("session_issuer", issuer.to_owned())));
        settings
    };
    let misconfigured = settings(Some("https://not-the-control-plane.example"));
    let broken = EdgeNode::start_with(&plane, "edge-wrong-issuer", dir.path(), &misconfigured).await;
    let sound = EdgeNode::start_with(&plane, "edge-sound", dir.path(), &settings(None)).await;
    let mark = upstream.log.mark();

    // Every session refused: one login, then the page (no third redirect).
    let mut browser = Browser::default();
    let answer = browser.visit(broken.port, &idp, "/hello", 12, false).await;
    assert_guard_page(&answer, &browser, "Your credential was refused");
    assert_eq!(browser.logins, 1, "one login, not a loop:\n{}", browser.trail.join("\n"));
    assert_eq!(sessions_of(&plane, LIN).await.len(), 1, "one session created");
    // Asking again at once is the same page; the login is the person's to start.
    assert_eq!(browser.request(broken.port, "/hello").await.status, 403);
    assert_eq!(sessions_of(&plane, LIN).await.len(), 1);
    // Without the guard (later than its few seconds), the refused session goes to login.
    browser.jar.retain(|name, _| !name.contains("_fresh"));
    let later = browser.request(broken.port, "/hello").await;
    assert_eq!(later.status, 302, "an old session goes back to login: {}", later.head);
    assert!(later.header("location").is_some_and(|l| l.starts_with("/.portcullis/login?")), "{}", later.head);
    assert!(upstream.log.since(mark).is_empty(), "the upstream received nothing");

    // Sound edge: a login works, and the guard's cookie stays at the edge.
    let mut browser = Browser::default();
    let answer = browser.visit(sound.port, &idp, "/hello", 12, false).await;
    assert_eq!(answer.status, 200, "{}\n{}", browser.trail.join("\n"), answer.text());
    let seen = upstream.log.since(mark);
    let [hello] = seen.as_slice() else { panic!("one request upstream, got {}", seen.len()) };
    assert_eq!((hello.target.as_str(), hello.header("x-portcullis-email")), ("/hello", Some(LIN)));
    assert!(hello.cookies().is_empty(), "no edge cookie upstream: {:?}", hello.cookies());

    // The loop of issue 13: terminated between the callback and the next request.
    let mut browser = Browser::default();
    let before = sessions_of(&plane, LIN).await.len();
    let back = browser.visit(sound.port, &idp, "/hello", 12, true).await;
    let (status, answer) = plane
        .api_post("/users/terminate?wait=true", &json!({ "email": LIN, "reason": "issue 13" }))
        .await
        .expect("terminate");
    assert_eq!(status, 200, "{answer}");
    let mark = upstream.log.mark();
    let location = back.header("location").expect("back to /hello").to_owned();
    let answer = browser.visit(sound.port, &idp, &location, 12, false).await;
    assert_guard_page(&answer, &browser, "every session of this user was terminated");
    assert_eq!(browser.logins, 1, "{}", browser.trail.join("\n"));
    assert_eq!(sessions_of(&plane, LIN).await.len(), before + 1, "no session after the refused one");
    assert!(upstream.log.since(mark).is_empty(), "the upstream received nothing");
}
