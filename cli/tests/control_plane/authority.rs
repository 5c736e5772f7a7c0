//! The session authority verifies (issue 12): a real control plane, asked
//! for sessions by an authenticated edge the way a compromised edge would.
//! It creates a session only for an ID token the configured identity
//! provider signed — checked by the control plane itself, once per token —
//! and reads who logged in from that token alone. The provider here is the
//! shared test issuer (discovery and JWKS on a loopback port, its key held
//! by the test), plus a second, foreign one.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use portcullis_dev_idp::test_issuer::{TestIssuer, TestKey};
use serde_json::{json, Value};

use crate::harness::{ControlPlane, TempDir, EDGE_SECRET, POLICY};

/// `POST /edge/v1/sessions` as the enrolled (authenticated) edge `rogue`;
/// (status, body).
async fn create(plane: &ControlPlane, body: &Value) -> (u16, Value) {
    let edge = crate::edge_identity::test_edge_through(plane.http(), &plane.edge_url, "rogue", EDGE_SECRET).await;
    let response = edge
        .authorize(plane.http().post(format!("{}/edge/v1/sessions", plane.edge_url)))
        .json(body)
        .send()
        .await
        .expect("POST /edge/v1/sessions");
    (response.status().as_u16(), response.json().await.unwrap_or(Value::Null))
}

/// The body of a login on `wiki` with `token` and `nonce`.
fn login(token: &str, nonce: &Value) -> Value {
    json!({ "id_token": token, "nonce": nonce, "route": "wiki", "source_address": "203.0.113.66",
            "user_agent": "rogue-edge" })
}

/// `claims` with `changes` merged in (`null` removes a claim).
fn with(claims: &Value, changes: Value) -> Value {
    let mut claims = claims.clone();
    for (name, value) in changes.as_object().expect("an object of changes") {
        match value {
            Value::Null => claims.as_object_mut().expect("claims").remove(name),
            other => claims.as_object_mut().expect("claims").insert(name.clone(), other.clone()),
        };
    }
    claims
}

/// A compact JWS with `header` and `claims` and a signature of garbage.
fn unsigned(header: Value, claims: &Value) -> String {
    let part = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    format!("{}.{}.{}", part(&header), part(claims), URL_SAFE_NO_PAD.encode(b"not a signature"))
}

/// The same token with its ECDSA signature (r, s) replaced by (r, n − s),
/// which verifies just as well: a replay that is not byte-for-byte the same.
fn malleated(token: &str) -> String {
    let (signed, signature) = token.rsplit_once('.').expect("a JWS");
    let bytes = URL_SAFE_NO_PAD.decode(signature).expect("base64url");
    let signature = p256::ecdsa::Signature::from_slice(&bytes).expect("an ES256 signature");
    let (r, s) = signature.split_scalars();
    let flipped = p256::ecdsa::Signature::from_scalars(r, -*s).expect("(r, n - s)");
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(flipped.to_bytes()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_cannot_create_a_session_without_a_valid_id_token_of_the_configured_idp() {
    let dir = TempDir::new("authority");
    let plane = ControlPlane::start(&format!("sqlite://{}", dir.path().join("cp.db").display()), dir.path()).await;
    plane.apply_policy(POLICY).await;
    let issuer = TestIssuer::shared();
    let foreign = TestIssuer::start();
    let claims = issuer.claims("sub-boss", "boss@corp.example", &["admins", "sre"]);
    let nonce = claims["nonce"].clone();
    let now = chrono::Utc::now().timestamp();
    let sign = |claims: &Value| issuer.id_token(claims);
    let hs256 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"the-enrollment-secret-perhaps"),
    )
    .expect("HS256");

    let cases: Vec<(&str, Value, u16, &str, &str)> = vec![
        (
            "no token",
            json!({ "nonce": nonce, "route": "wiki", "source_address": "203.0.113.66" }),
            401,
            "id_token_required",
            "ID token",
        ),
        (
            "an asserted identity",
            json!({ "subject": "sub-boss", "email": "boss@corp.example", "groups": ["admins"],
         "idp_issuer": issuer.issuer(), "auth_time": now, "route": "wiki", "source_address": "203.0.113.66" }),
            422,
            "invalid_body",
            "unknown field",
        ),
        (
            "a forged token (another key, the issuer's kid)",
            login(&TestKey::with_kid(issuer.key().kid()).sign(&claims), &nonce),
            401,
            "id_token_invalid",
            "signature does not verify",
        ),
        (
            "a token signed by an unpublished key",
            login(&TestKey::generate().sign(&claims), &nonce),
            401,
            "id_token_invalid",
            "does not publish",
        ),
        (
            "a token from a foreign IdP",
            login(&foreign.id_token(&with(&claims, json!({ "iss": foreign.issuer() }))), &nonce),
            401,
            "id_token_invalid",
            "not an identity provider this control plane trusts",
        ),
        (
            "a token for another audience",
            login(&sign(&with(&claims, json!({ "aud": "another-client" }))), &nonce),
            401,
            "id_token_invalid",
            "`aud`",
        ),
        (
            "an expired token",
            login(&sign(&with(&claims, json!({ "iat": now - 400, "exp": now - 120 }))), &nonce),
            401,
            "id_token_invalid",
            "expired",
        ),
        (
            "a token whose nonce differs",
            login(&sign(&claims), &json!("the-nonce-of-another-login")),
            401,
            "id_token_invalid",
            "`nonce`",
        ),
        (
            "email_verified: false",
            login(&sign(&with(&claims, json!({ "email_verified": false }))), &nonce),
            401,
            "id_token_invalid",
            "email_verified",
        ),
        (
            "no email_verified",
            login(&sign(&with(&claims, json!({ "email_verified": null }))), &nonce),
            401,
            "id_token_invalid",
            "email_verified",
        ),
        (
            "no auth_time",
            login(&sign(&with(&claims, json!({ "auth_time": null }))), &nonce),
            401,
            "id_token_invalid",
            "auth_time",
        ),
        (
            "alg none",
            login(&unsigned(json!({ "alg": "none", "typ": "JWT" }), &claims), &nonce),
            401,
            "id_token_invalid",
            "`none`",
        ),
        ("HS256 (a shared secret)", login(&hs256, &nonce), 401, "id_token_invalid", "`HS256`"),
        (
            "a browser token as a device login",
            with(
                &login(&sign(&claims), &Value::Null),
                json!({ "flow": "device",
         "route": "wiki", "nonce": null }),
            ),
            403,
            "device_login_disabled",
            "device_login",
        ),
    ];
    let mut failures = Vec::new();
    for (name, body, status, code, says) in &cases {
        let (got, answer) = create(&plane, body).await;
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        if (got, answer["error"]["code"].as_str()) != (*status, Some(*code)) || !message.contains(says) {
            failures.push(format!("{name}: expected {status} {code} ({says}), got {got} {answer}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} hostile logins were not refused as expected:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    let sessions = plane.api_get("/sessions?email=boss@corp.example").await;
    assert_eq!(sessions["sessions"], json!([]), "no session from any of them");

    // The valid token creates one session, with the identity it carries.
    let token = sign(&with(&claims, json!({ "sid": "idp-session-7", "auth_time": now - 42 })));
    let (status, created) = create(&plane, &login(&token, &nonce)).await;
    assert_eq!(status, 200, "{created}");
    let session = plane.api_get(&format!("/sessions/{}", created["session_id"].as_str().expect("id"))).await;
    assert_eq!(session["email"], "boss@corp.example");
    assert_eq!(session["groups"], json!(["admins", "sre"]));
    assert_eq!(session["idp_issuer"], issuer.issuer());
    assert_eq!(session["idp_session_id"], "idp-session-7");
    println!("session as stored: {session}");

    // Each token creates one session: the same token again, and the same
    // token with its signature re-encoded (still valid), are replays.
    for (name, replay) in [("the same token", token.clone()), ("its malleated signature", malleated(&token))] {
        let (status, answer) = create(&plane, &login(&replay, &nonce)).await;
        assert_eq!((status, answer["error"]["code"].as_str()), (401, Some("id_token_replayed")), "{name}: {answer}");
    }
    let sessions = plane.api_get("/sessions?email=boss@corp.example").await;
    assert_eq!(sessions["sessions"].as_array().map(Vec::len), Some(1), "{sessions}");
    let audit = plane.api_get("/audit?action=session.replay_refused").await;
    let entries = audit["entries"].as_array().cloned().unwrap_or_default();
    assert_eq!(entries.len(), 2, "one audit line per replay: {audit}");
    assert_eq!(
        (entries[0]["actor"].as_str(), entries[0]["target"].as_str()),
        (Some("edge:rogue"), Some("email:boss@corp.example"))
    );
    assert!(entries[0]["reason"].as_str().is_some_and(|r| r.contains("replay")), "{audit}");

    // A restart does not forget which tokens were used.
    let log = plane.log_text();
    assert!(!log.contains(&token), "the ID token is never logged");
    drop(plane);
    let plane = ControlPlane::start(&format!("sqlite://{}", dir.path().join("cp.db").display()), dir.path()).await;
    let (status, answer) = create(&plane, &login(&token, &nonce)).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (401, Some("id_token_replayed")), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_idp_configured_every_session_is_refused_with_a_clear_error() {
    let dir = TempDir::new("authority-none");
    let database = format!("sqlite://{}", dir.path().join("cp.db").display());
    let (listen, edge_listen) = (crate::harness::free_port(), crate::harness::free_port());
    let plane =
        ControlPlane::start_on_with(&database, dir.path(), listen, edge_listen, &[("login_idps", "[]".to_owned())])
            .await
            .unwrap_or_else(|log| panic!("the control plane starts without login_idps:\n{log}"));
    plane.apply_policy(POLICY).await;
    let claims = TestIssuer::shared().claims("sub-ann", "ann@corp.example", &["staff"]);
    let (status, answer) = create(&plane, &login(&TestIssuer::shared().id_token(&claims), &claims["nonce"])).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (403, Some("login_idp_not_configured")), "{answer}");
    assert!(answer["error"]["message"].as_str().is_some_and(|m| m.contains("login_idps")), "{answer}");
}
