//! Logins through the edge channel: route session limits (`refuse` and
//! `end_oldest`), and session tokens that verify against the published keys.

use axum::http::Method;
use portcullis_control_plane::authority::{verify, SESSION_TOKEN_AUDIENCE};
use portcullis_policy::wire::Message;
use portcullis_policy::{Change, SessionId, UserRef};
use serde_json::json;

use crate::fixtures::{apply_policy, published_keys, signed, snapshot, text, Login};
use crate::harness::{TestApp, ISSUER};

api_tests!(
    session_limit_refuse_answers_409,
    session_limit_end_oldest_ends_the_first,
    session_tokens_verify_against_published_keys,
    logins_need_a_known_route,
    locked_users_cannot_log_in,
    a_login_right_after_a_terminate_all_is_issued_after_it,
    an_ended_session_demands_a_new_sign_in_but_a_logout_does_not
);

/// Issue 13: the token of a login right after a terminate-all (typically in
/// the same second, often the same millisecond) is issued after it, so the
/// edges admit the session the control plane lists as active.
async fn a_login_right_after_a_terminate_all_is_issued_after_it(t: TestApp) {
    apply_policy(&t).await;
    let keys = published_keys(&t).await;
    for _ in 0..5 {
        let terminate = json!({ "email": "ada@test.example", "reason": "offboarded" });
        t.post("/api/v1/users/terminate").json(terminate).send().await.ok();
        // The IdP's old sign-in does not count any more: a new one does.
        let stale = Login::new("ada@test.example").send(&t).await;
        assert!(stale.error(401, "reauthentication_required").contains("sign in again"));
        let token = text(&Login::new("ada@test.example").fresh().ok(&t).await["token"]);
        let claims = verify(&token, &keys, ISSUER).expect("the token verifies");
        let body = snapshot(&t).await;
        let ada = body.users.iter().find(|(u, _)| *u == UserRef::email("ada@test.example")).expect("ada");
        let revoked_before_ms = ada.1.revoked_before_ms.expect("revoked_before_ms");
        let iat_ms = claims.iat_ms.expect("iat_ms");
        assert!(iat_ms > revoked_before_ms, "issued at {iat_ms}, revoked up to {revoked_before_ms}");
    }
}

async fn locked_users_cannot_log_in(t: TestApp) {
    apply_policy(&t).await;
    let lock = json!({ "email": "Eve@Test.Example", "reason": "investigation" });
    t.post("/api/v1/users/lock").json(lock).send().await.ok();
    let refused = Login::new("eve@test.example").route("wiki").send(&t).await;
    assert!(refused.error(403, "user_locked").contains("investigation"));
    let until = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let by_subject = json!({ "sub": "sub-bob@test.example", "reason": "paused", "until": until });
    t.post("/api/v1/users/lock").json(by_subject).send().await.ok();
    Login::new("bob@test.example").route("wiki").send(&t).await.error(403, "user_locked");
    t.post("/api/v1/users/unlock").json(json!({ "email": "eve@test.example" })).send().await.ok();
    // Whoever held the account while it was locked must sign in again.
    Login::new("eve@test.example").route("wiki").send(&t).await.error(401, "reauthentication_required");
    Login::new("eve@test.example").route("wiki").fresh().ok(&t).await;
}

async fn an_ended_session_demands_a_new_sign_in_but_a_logout_does_not(t: TestApp) {
    apply_policy(&t).await;
    let ada = text(&Login::new("ada@test.example").ok(&t).await["session_id"]);
    t.post(&format!("/api/v1/sessions/{ada}/terminate")).json(json!({ "reason": "stolen" })).send().await.ok();
    let stale = Login::new("ada@test.example").route("admin").send(&t).await;
    assert!(stale.error(401, "reauthentication_required").contains("identity provider"), "on every route");
    Login::new("ada@test.example").fresh().ok(&t).await;
    let audit = t.get("/api/v1/audit?action=session.terminate").send().await.ok();
    assert_eq!(audit["entries"].as_array().map(Vec::len), Some(1));
    // Bob logs out himself: his next login may ride on the IdP's session.
    let bob = text(&Login::new("bob@test.example").ok(&t).await["session_id"]);
    t.edge(Method::POST, &format!("/edge/v1/sessions/{bob}/logout")).json(json!({})).send().await.ok();
    Login::new("bob@test.example").ok(&t).await;
}

async fn session_limit_refuse_answers_409(t: TestApp) {
    apply_policy(&t).await;
    let first = Login::new("ada@test.example").route("admin").ok(&t).await;
    assert_eq!(first["replaced_sessions"], json!([]));
    let head = t.head().await;
    let second = Login::new("ada@test.example").route("admin").edge("edge-b").send(&t).await;
    let message = second.error(409, "session_limit");
    assert!(message.contains('1'), "{message}");
    assert_eq!(t.head().await, head, "a refused login changes nothing");
    let sessions = t.get("/api/v1/sessions?route=admin").send().await.ok();
    assert_eq!(sessions["sessions"].as_array().unwrap().len(), 1);
    assert_eq!(sessions["sessions"][0]["id"], first["session_id"]);
    assert_eq!(sessions["sessions"][0]["state"], "active");

    // The limit is per user and per route.
    Login::new("bob@test.example").route("admin").ok(&t).await;
    Login::new("ada@test.example").route("wiki").ok(&t).await;
    Login::new("ada@test.example").route("wiki").ok(&t).await;
    // Once the first session ends, a new login is accepted.
    let id = text(&first["session_id"]);
    t.post(&format!("/api/v1/sessions/{id}/terminate")).json(json!({ "reason": "r" })).send().await.ok();
    Login::new("ada@test.example").route("admin").fresh().ok(&t).await;
}

async fn session_limit_end_oldest_ends_the_first(t: TestApp) {
    apply_policy(&t).await;
    let first = text(&Login::new("ada@test.example").route("console").ok(&t).await["session_id"]);
    let head = t.head().await;
    let mut stream = t.edge(Method::GET, &format!("/edge/v1/stream?since={head}")).open().await;

    let second = Login::new("ada@test.example").route("console").edge("edge-b").ok(&t).await;
    assert_eq!(second["replaced_sessions"], json!([first.clone()]));
    let second_id = text(&second["session_id"]);
    assert_ne!(second_id, first);

    let view = t.get(&format!("/api/v1/sessions/{first}")).send().await.ok();
    assert_eq!(view["state"], "ended");
    assert!(view["end_reason"].as_str().unwrap().contains("newer login"), "{view}");
    let view = t.get(&format!("/api/v1/sessions/{second_id}")).send().await.ok();
    assert_eq!(view["state"], "active");

    // Edges are told at once.
    match stream.expect_change().await {
        Message::Delta(delta) => {
            assert_eq!(delta.seq, head + 1);
            let expected: SessionId = first.parse().unwrap();
            assert!(matches!(delta.change, Change::TerminateSession { session, .. } if session == expected));
        }
        other => panic!("expected a delta, got {other:?}"),
    }
    let audit = t.get("/api/v1/audit?action=session.replace").send().await.ok();
    assert_eq!(audit["entries"][0]["target"], format!("session:{first}"));
    assert_eq!(audit["entries"][0]["actor"], "edge:edge-b");

    // A third login replaces the second.
    let third = Login::new("ada@test.example").route("console").ok(&t).await;
    assert_eq!(third["replaced_sessions"], json!([second_id]));
    let active = t.get("/api/v1/sessions?route=console&state=active").send().await.ok();
    assert_eq!(active["sessions"].as_array().unwrap().len(), 1);
    assert_eq!(active["sessions"][0]["id"], third["session_id"]);
}

async fn session_tokens_verify_against_published_keys(t: TestApp) {
    apply_policy(&t).await;
    let mut login = Login::new("Ada.Lovelace@Test.Example").identity();
    login["groups"] = json!(["admins", "engineering"]);
    login["idp_session_id"] = json!("idp-123");
    let answer = t.edge(Method::POST, "/edge/v1/sessions").json(signed(&login)).send().await.ok();
    let (session_id, token) = (text(&answer["session_id"]), text(&answer["token"]));
    assert_eq!(session_id.len(), 32);
    assert!(session_id.bytes().all(|b| b.is_ascii_hexdigit()));

    let keys = published_keys(&t).await;
    let claims = verify(&token, &keys, ISSUER).expect("the token verifies against the snapshot's keys");
    assert_eq!(claims.sid, session_id);
    assert_eq!(claims.sub, "sub-ada.lovelace@test.example");
    assert_eq!(claims.email, "ada.lovelace@test.example", "lowercased");
    assert_eq!(claims.groups, ["admins", "engineering"]);
    assert_eq!(claims.route, "wiki");
    assert_eq!(claims.iss, ISSUER);
    assert_eq!(claims.aud, SESSION_TOKEN_AUDIENCE);
    assert_eq!(claims.auth_time, 1_700_000_000);
    assert_eq!(claims.idp_sid.as_deref(), Some("idp-123"));
    let expires = chrono::DateTime::parse_from_rfc3339(answer["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!(claims.exp, expires.timestamp());
    assert!(claims.exp > claims.iat && (claims.iat - chrono::Utc::now().timestamp()).abs() < 60);
    let iat_ms = claims.iat_ms.expect("the issue time in milliseconds, for terminate-all");
    assert_eq!(iat_ms.div_euclid(1000), claims.iat, "`iat_ms` lies in the second `iat` names");

    // Anything else does not verify.
    assert!(verify(&token, &keys, "https://someone-else.example").is_none(), "another issuer");
    assert!(verify(&token, &[], ISSUER).is_none(), "no keys");
    let (head, signature) = token.rsplit_once('.').unwrap();
    let flipped =
        if signature.starts_with('A') { signature.replacen('A', "B", 1) } else { format!("A{}", &signature[1..]) };
    assert!(verify(&format!("{head}.{flipped}"), &keys, ISSUER).is_none(), "a changed signature");
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let claims_json = base64_decode(&parts[1]).replace("sub-ada", "sub-eve");
    parts[1] = base64_encode(&claims_json);
    assert!(verify(&parts.join("."), &keys, ISSUER).is_none(), "changed claims");
}

fn base64_decode(text: &str) -> String {
    use base64::Engine;
    String::from_utf8(base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text).unwrap()).unwrap()
}

fn base64_encode(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

async fn logins_need_a_known_route(t: TestApp) {
    let before_policy = Login::new("ada@test.example").send(&t).await;
    assert!(before_policy.error(422, "invalid_body").contains("wiki"), "the built-in policy has no routes");
    apply_policy(&t).await;
    let unknown = Login::new("ada@test.example").route("nowhere").send(&t).await;
    assert!(unknown.error(422, "invalid_body").contains("nowhere"));
    let mut empty = Login::new("ada@test.example").identity();
    empty["email"] = json!("");
    let refused = t.edge(Method::POST, "/edge/v1/sessions").json(signed(&empty)).send().await;
    assert!(refused.error(401, "id_token_invalid").contains("no `email`"), "an ID token without an email");
    let sessions = t.get("/api/v1/sessions").send().await.ok();
    assert_eq!(sessions["sessions"], json!([]));
}
