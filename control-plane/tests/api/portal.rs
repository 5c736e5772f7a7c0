//! The portal's server side: token sign-in and its cookie, the session
//! document, the admin API through the cookie (changes need the CSRF
//! header; cross-site requests are refused; bearer clients are unaffected),
//! portal sessions that end with their admin token, forged cookies, sign-out,
//! and the security headers of every portal answer.

use axum::http::Method;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use portcullis_control_plane::portal::assets::ASSETS;
use portcullis_control_plane::portal::CONTENT_SECURITY_POLICY;
use serde_json::{json, Value};

use crate::client::{Answer, CLIENT_IP};
use crate::fixtures::{apply_policy, login, reason, text, Login};
use crate::harness::{TestApp, BOOTSTRAP_TOKEN};

api_tests!(
    token_sign_in_sets_a_strict_http_only_cookie,
    changes_through_the_cookie_need_the_csrf_token,
    portal_sessions_end_with_their_token_and_forgeries_are_refused,
    portal_answers_carry_strict_security_headers,
);

/// A signed-in portal browser: its `Cookie` header and CSRF token.
pub struct Portal {
    /// `portcullis_portal=…`.
    pub cookie: String,
    /// The session's CSRF token.
    pub csrf: String,
}

fn set_cookie(answer: &Answer) -> String {
    let value = answer.headers.get("set-cookie").unwrap_or_else(|| panic!("{}: no Set-Cookie", answer.what));
    value.to_str().expect("text").to_owned()
}

pub async fn sign_in(t: &TestApp, token: &str) -> Portal {
    let answer = t.post("/portal/token-login").no_auth().json(json!({ "token": token })).send().await;
    let body = answer.ok();
    let cookie = set_cookie(&answer).split(';').next().expect("name=value").to_owned();
    Portal { cookie, csrf: text(&body["csrf_token"]) }
}

impl Portal {
    /// A request with the cookie only (no Authorization, no CSRF header).
    pub fn call(&self, t: &TestApp, method: Method, uri: &str) -> crate::client::Call {
        t.api(method, uri).no_auth().header("cookie", &self.cookie)
    }

    /// A request as the portal page makes it: cookie, CSRF header, same origin.
    pub fn page(&self, t: &TestApp, method: Method, uri: &str) -> crate::client::Call {
        self.call(t, method, uri).header("x-csrf-token", &self.csrf).header("sec-fetch-site", "same-origin")
    }
}

async fn token_sign_in_sets_a_strict_http_only_cookie(t: TestApp) {
    let wrong = t.post("/portal/token-login").no_auth().json(json!({ "token": "pcat_not-a-token" })).send().await;
    wrong.error(401, "unauthorized");
    assert!(wrong.headers.get("set-cookie").is_none(), "no cookie for a wrong token");
    t.post("/portal/token-login").no_auth().json(json!({ "token": "" })).send().await.error(401, "unauthorized");
    // A cross-site form cannot sign a browser in: JSON only, and same-site only.
    let form = t.post("/portal/token-login").no_auth().raw("application/x-www-form-urlencoded", "token=x");
    form.send().await.error(415, "unsupported_media_type");
    let cross = t.post("/portal/token-login").no_auth().header("sec-fetch-site", "cross-site");
    cross.json(json!({ "token": BOOTSTRAP_TOKEN })).send().await.error(403, "csrf_refused");

    let answer = t.post("/portal/token-login").no_auth().json(json!({ "token": BOOTSTRAP_TOKEN })).send().await;
    let body = answer.ok();
    assert_eq!((body["authenticated"].as_bool(), body["user"].as_str()), (Some(true), Some("token:bootstrap")));
    assert_eq!((body["method"].as_str(), body["actor"].as_str()), (Some("token"), Some("portal:token:bootstrap")));
    assert_eq!(body["scopes"], json!(["admin"]));
    let cookie = set_cookie(&answer);
    assert!(cookie.starts_with("portcullis_portal="), "{cookie}");
    for attribute in ["; Path=/;", "; HttpOnly", "; SameSite=Strict", "; Secure", "; Max-Age=28800"] {
        assert!(cookie.contains(attribute), "{attribute} in {cookie}");
    }
    let portal = Portal { cookie: cookie.split(';').next().unwrap().to_owned(), csrf: text(&body["csrf_token"]) };
    assert!(portal.csrf.len() >= 32, "a long random CSRF token");

    let session = t.get("/portal/session").no_auth().header("cookie", &portal.cookie).send().await.ok();
    assert_eq!(
        (session["user"].as_str(), session["csrf_token"].as_str()),
        (Some("token:bootstrap"), Some(&*portal.csrf))
    );
    let anonymous = t.get("/portal/session").no_auth().send().await.ok();
    assert_eq!(anonymous, json!({ "authenticated": false, "oidc": false, "problem": null }));
    let other = sign_in(&t, BOOTSTRAP_TOKEN).await;
    assert_ne!(other.csrf, portal.csrf, "every portal session has its own CSRF token");

    let audit = t.get("/api/v1/audit?action=portal.login").send().await.ok();
    let entry = &audit["entries"][0];
    assert_eq!(
        (entry["actor"].as_str(), entry["target"].as_str()),
        (Some("portal:token:bootstrap"), Some("token:bootstrap"))
    );
    assert_eq!(entry["source_address"], CLIENT_IP);
}

async fn changes_through_the_cookie_need_the_csrf_token(t: TestApp) {
    let version = apply_policy(&t).await;
    let session = login(&t, "ada@test.example").await;
    let portal = sign_in(&t, BOOTSTRAP_TOKEN).await;
    let terminate = format!("/api/v1/sessions/{session}/terminate?wait=true");

    let page = portal.call(&t, Method::GET, "/api/v1/sessions").send().await.ok();
    assert_eq!(page["sessions"][0]["id"], session.as_str(), "reads need only the cookie");
    let missing = portal.call(&t, Method::POST, &terminate).json(reason("csrf")).send().await;
    assert!(missing.error(403, "csrf_refused").contains("X-CSRF-Token"));
    let wrong =
        portal.call(&t, Method::POST, &terminate).header("x-csrf-token", "guess").json(reason("csrf")).send().await;
    wrong.error(403, "csrf_refused");
    let cross = portal.call(&t, Method::POST, &terminate).header("x-csrf-token", &portal.csrf);
    cross.header("sec-fetch-site", "cross-site").json(reason("csrf")).send().await.error(403, "csrf_refused");
    let policy = portal.call(&t, Method::PUT, "/api/v1/policy?message=csrf").yaml(crate::fixtures::POLICY_V2);
    policy.send().await.error(403, "csrf_refused");
    let lock =
        portal.call(&t, Method::POST, "/api/v1/users/lock").json(json!({ "email": "x@test.example", "reason": "r" }));
    lock.send().await.error(403, "csrf_refused");
    assert_eq!(t.get(&format!("/api/v1/sessions/{session}")).send().await.ok()["state"], "active", "nothing happened");
    assert_eq!(t.get("/api/v1/policy").send().await.ok()["version"], version);

    // The page's own request: cookie, token, same origin.
    let done = portal.page(&t, Method::POST, &terminate).json(reason("stolen laptop")).send().await.ok();
    assert_eq!(done["session"]["state"], "ended");
    let audit = t.get("/api/v1/audit?action=session.terminate").send().await.ok();
    let entry = &audit["entries"][0];
    assert_eq!(
        (entry["actor"].as_str(), entry["reason"].as_str()),
        (Some("portal:token:bootstrap"), Some("stolen laptop"))
    );
    assert_eq!(entry["source_address"], CLIENT_IP);

    // Bearer clients are unaffected; a bearer token always wins over the cookie.
    let other = text(&Login::new("bob@test.example").ok(&t).await["session_id"]);
    t.post(&format!("/api/v1/sessions/{other}/terminate")).json(reason("api client")).send().await.ok();
    let both = portal.page(&t, Method::GET, "/api/v1/sessions").bearer("pcat_wrong-token");
    both.send().await.error(401, "unauthorized");
}

/// A portal cookie with these claims, signed by a key of our own.
fn forged(claims: &Value, kid: &str) -> String {
    let key = p256::SecretKey::random(&mut rand::rngs::OsRng);
    let pem = p256::pkcs8::EncodePrivateKey::to_pkcs8_pem(&key, p256::pkcs8::LineEnding::LF).expect("PEM");
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.to_owned());
    header.typ = Some("portcullis-portal+jwt".into());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_ec_pem(pem.as_bytes()).expect("key")).expect("JWT")
}

fn jwt_part(token: &str, n: usize) -> Value {
    use base64::Engine;
    let part = token.split('.').nth(n).expect("JWT part");
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).expect("base64"))
        .expect("JSON")
}

async fn portal_sessions_end_with_their_token_and_forgeries_are_refused(t: TestApp) {
    // A token with fewer scopes gives a portal session with those scopes.
    let created =
        t.post("/api/v1/admin-tokens").json(json!({ "name": "viewer", "scopes": ["sessions:read"] })).send().await;
    let created = created.expect(201);
    let viewer = sign_in(&t, &text(&created["token"])).await;
    viewer.call(&t, Method::GET, "/api/v1/sessions").send().await.ok();
    viewer.call(&t, Method::GET, "/api/v1/policy").send().await.error(403, "insufficient_scope");
    // Revoking the token ends its portal sessions at once.
    t.api(Method::DELETE, &format!("/api/v1/admin-tokens/{}", text(&created["id"]))).send().await.expect(204);
    let revoked = viewer.call(&t, Method::GET, "/api/v1/sessions").send().await;
    assert!(revoked.error(401, "unauthorized").contains("revoked"));
    let session = t.get("/portal/session").no_auth().header("cookie", &viewer.cookie).send().await;
    assert_eq!(session.ok()["authenticated"], false);
    assert!(set_cookie(&session).contains("Max-Age=0"), "the dead cookie is cleared");

    // Forgeries: another key under our kid, a tampered payload, alg none,
    // a session token of an edge, garbage.
    let portal = sign_in(&t, BOOTSTRAP_TOKEN).await;
    let token = portal.cookie.trim_start_matches("portcullis_portal=").to_owned();
    let (header, claims) = (jwt_part(&token, 0), jwt_part(&token, 1));
    assert_eq!(header["typ"], "portcullis-portal+jwt");
    assert_eq!((claims["aud"].as_str(), claims["sub"].as_str()), (Some("portcullis-portal"), Some("token:bootstrap")));
    let mut promoted = claims.clone();
    promoted["sub"] = json!("alice@test.example");
    promoted["method"] = json!("oidc");
    promoted["groups"] = json!(["admins"]);
    let tampered = {
        use base64::Engine;
        let parts: Vec<&str> = token.split('.').collect();
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(promoted.to_string());
        format!("{}.{payload}.{}", parts[0], parts[2])
    };
    let none = {
        use base64::Engine;
        let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        format!("{}.{}.", b64(&json!({ "alg": "none", "typ": "portcullis-portal+jwt" })), b64(&promoted))
    };
    apply_policy(&t).await;
    let edge_session = text(&Login::new("eve@test.example").ok(&t).await["token"]);
    for (what, value) in [
        ("another key", forged(&promoted, header["kid"].as_str().unwrap())),
        ("tampered", tampered),
        ("alg none", none),
        ("an edge session token", edge_session),
        ("garbage", "not-a-jwt".to_owned()),
    ] {
        let answer =
            t.get("/api/v1/sessions").no_auth().header("cookie", &format!("portcullis_portal={value}")).send().await;
        answer.error(401, "unauthorized");
        let session = t.get("/portal/session").no_auth().header("cookie", &format!("portcullis_portal={value}"));
        assert_eq!(session.send().await.ok()["authenticated"], false, "{what}");
    }
    // The cookie is not an admin token.
    t.get("/api/v1/sessions").bearer(&token).send().await.error(401, "unauthorized");

    // Portal sessions survive a signing-key rotation (verified with the stored keys).
    t.post("/api/v1/signing-keys/rotate").send().await.ok();
    portal.call(&t, Method::GET, "/api/v1/sessions").send().await.ok();

    // Sign-out needs the CSRF token too, clears the cookie and is recorded.
    let refused = portal.call(&t, Method::POST, "/portal/logout").send().await;
    refused.error(403, "csrf_refused");
    let out = portal.page(&t, Method::POST, "/portal/logout").send().await;
    assert_eq!(out.status.as_u16(), 204);
    assert!(set_cookie(&out).starts_with("portcullis_portal=; Path=/; Max-Age=0"), "{}", set_cookie(&out));
    let audit = t.get("/api/v1/audit?action=portal.logout").send().await.ok();
    assert_eq!(audit["entries"][0]["actor"], "portal:token:bootstrap");
}

fn assert_security_headers(answer: &Answer) {
    let header = |name: &str| answer.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert_eq!(header("content-security-policy"), CONTENT_SECURITY_POLICY, "{}", answer.what);
    assert_eq!(header("x-content-type-options"), "nosniff", "{}", answer.what);
    assert_eq!(header("referrer-policy"), "same-origin", "{}", answer.what);
    assert_eq!(header("x-frame-options"), "DENY", "{}", answer.what);
}

async fn portal_answers_carry_strict_security_headers(t: TestApp) {
    for needle in ["script-src 'self'", "style-src 'self'", "frame-ancestors 'none'", "base-uri 'none'"] {
        assert!(CONTENT_SECURITY_POLICY.contains(needle), "{needle}");
    }
    assert!(!CONTENT_SECURITY_POLICY.contains("unsafe"), "no unsafe-inline or unsafe-eval");
    let bare = t.get("/portal").no_auth().send().await;
    assert_eq!((bare.status.as_u16(), bare.headers["location"].to_str().unwrap()), (308, "/portal/"));
    let index = t.get("/portal/").no_auth().send().await;
    assert_eq!(index.status.as_u16(), 200);
    assert_eq!(index.headers["content-type"], "text/html; charset=utf-8");
    assert!(index.text().contains(r#"<script type="module" src="/portal/assets/app.js"></script>"#));
    assert_security_headers(&index);
    for asset in ASSETS {
        let answer = t.get(&format!("/portal/assets/{}", asset.path)).no_auth().send().await;
        assert_eq!(answer.status.as_u16(), 200, "{}", asset.path);
        assert_eq!(answer.headers["content-type"], asset.content_type, "{}", asset.path);
        assert_eq!(&answer.body[..], asset.body, "{}", asset.path);
        assert_security_headers(&answer);
    }
    let missing = t.get("/portal/assets/nope.js").no_auth().send().await;
    assert_eq!(missing.status.as_u16(), 404);
    assert_security_headers(&missing);
    // Without an OpenID provider, single sign-on says so and points to tokens.
    let login = t.get("/portal/login").no_auth().send().await;
    assert_eq!(login.status.as_u16(), 404);
    assert!(login.text().contains("admin API token"), "{}", login.text());
    assert!(!login.text().contains("<script"), "server pages have no script");
    assert_security_headers(&login);
    assert_security_headers(&t.get("/portal/session").no_auth().send().await);
    // The API itself is unchanged.
    assert!(t.get("/api/v1/sessions").send().await.headers.get("content-security-policy").is_none());
}
