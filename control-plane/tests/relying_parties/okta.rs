//! Okta. The fake follows the Management API:
//! - get a user by login: <https://developer.okta.com/docs/api/openapi/okta-management/management/tag/User/#tag/User/operation/getUser>
//!   (200 with the user, 404 `E0000007`; 401 `E0000011` for a bad token);
//! - revoke all sessions: <https://developer.okta.com/docs/api/openapi/okta-management/management/tag/UserSessions/#tag/UserSessions/operation/revokeUserSessions>
//!   (204; `oauthTokens=true` also revokes OAuth tokens);
//! - rate limits: <https://developer.okta.com/docs/reference/rl-best-practices/>
//!   (429 with `X-Rate-Limit-Limit`, `-Remaining`, `-Reset` in epoch seconds).

use axum::http::Method;
use portcullis_control_plane::relying_parties::Delivery;
use serde_json::json;

use crate::fake::{epoch_in, ok, reply, Fake, Seen};

const TOKEN: &str = "00test-okta-api-token";
const BOB_ID: &str = "00ub0oNGTSWTBKOLGLNR";

fn okta(request: &Seen) -> axum::response::Response {
    if request.header("authorization") != Some(&format!("SSWS {TOKEN}")) {
        return reply(401, &[], Some(json!({"errorCode": "E0000011", "errorSummary": "Invalid token provided"})));
    }
    match (&request.method, request.path.as_str()) {
        (&Method::GET, "/api/v1/users/bob%2Bops%40example.com") => {
            ok(json!({"id": BOB_ID, "status": "ACTIVE", "profile": {"login": "bob+ops@example.com"}}))
        }
        (&Method::GET, "/api/v1/users/busy%40example.com") => reply(
            429,
            &[("x-rate-limit-limit", "600"), ("x-rate-limit-remaining", "0"), ("x-rate-limit-reset", &epoch_in(30))],
            Some(
                json!({"errorCode": "E0000047", "errorSummary": "API call exceeded rate limit due to too many requests."}),
            ),
        ),
        (&Method::GET, path) if path.starts_with("/api/v1/users/") => reply(
            404,
            &[],
            Some(json!({"errorCode": "E0000007", "errorSummary": "Not found: Resource not found: (User)"})),
        ),
        (&Method::DELETE, path) if path == format!("/api/v1/users/{BOB_ID}/sessions") => reply(204, &[], None),
        _ => reply(404, &[], Some(json!({"errorCode": "E0000022", "errorSummary": "The endpoint does not exist."}))),
    }
}

fn entry(url: &str, revoke_oauth_tokens: bool) -> String {
    format!(
        "name = \"okta\"\nkind = \"okta\"\nurl = \"{url}\"\nsecret_env = \"OKTA_TOKEN\"\nrevoke_oauth_tokens = {revoke_oauth_tokens}\n"
    )
}

#[tokio::test]
async fn the_user_found_by_login_has_their_sessions_and_tokens_revoked() {
    let fake = Fake::start(okta).await;
    let rp = crate::build(&entry(&fake.url, true), &[("OKTA_TOKEN", TOKEN)]);
    assert_eq!(crate::deliver(&rp, "bob+ops@example.com").await, Delivery::applied());
    let seen = fake.seen();
    let lines: Vec<String> = seen.iter().map(Seen::line).collect();
    assert_eq!(
        lines,
        [
            "GET /api/v1/users/bob%2Bops%40example.com".to_owned(),
            format!("DELETE /api/v1/users/{BOB_ID}/sessions?oauthTokens=true"),
        ]
    );
    for request in &seen {
        assert_eq!(request.header("authorization"), Some(format!("SSWS {TOKEN}").as_str()));
        assert_eq!(request.header("accept"), Some("application/json"));
        assert!(request.header("idempotency-key").is_none(), "Okta documents no idempotency key");
    }

    let without_tokens = Fake::start(okta).await;
    let rp = crate::build(&entry(&without_tokens.url, false), &[("OKTA_TOKEN", TOKEN)]);
    assert_eq!(crate::deliver(&rp, "bob+ops@example.com").await, Delivery::applied());
    assert_eq!(without_tokens.seen()[1].line(), format!("DELETE /api/v1/users/{BOB_ID}/sessions"));
}

#[tokio::test]
async fn a_login_okta_does_not_know_has_nothing_to_end() {
    let fake = Fake::start(okta).await;
    let rp = crate::build(&entry(&fake.url, true), &[("OKTA_TOKEN", TOKEN)]);
    assert_eq!(crate::deliver(&rp, "nobody@example.com").await, crate::no_account());
    assert!(fake.seen().iter().all(|s| s.method == Method::GET), "nothing deleted: {:?}", fake.seen());
}

#[tokio::test]
async fn a_rate_limit_waits_until_the_window_resets() {
    let fake = Fake::start(okta).await;
    let rp = crate::build(&entry(&fake.url, true), &[("OKTA_TOKEN", TOKEN)]);
    let delivery = crate::deliver(&rp, "busy@example.com").await;
    assert!(matches!(&delivery, Delivery::Retry { error, .. } if error.contains("E0000047")), "{delivery:?}");
    let wait = crate::retry_after_s(delivery);
    assert!((28..=30).contains(&wait), "X-Rate-Limit-Reset is 30 s away, waited {wait}");
}

#[tokio::test]
async fn a_wrong_token_fails_in_oktas_words_without_the_token() {
    let fake = Fake::start(okta).await;
    let wrong = "00wrong-token-that-must-not-leak";
    let rp = crate::build(&entry(&fake.url, true), &[("OKTA_TOKEN", wrong)]);
    let error = crate::failed(crate::deliver(&rp, "bob+ops@example.com").await);
    assert!(error.contains("401") && error.contains("Invalid token provided"), "{error}");
    assert!(!error.contains(wrong), "{error}");
}
