//! Slack. The fake follows the Web API:
//! - users.lookupByEmail: <https://api.slack.com/methods/users.lookupByEmail>
//!   (`{"ok": true, "user": {…}}`, or `ok: false` with `users_not_found`);
//! - admin.users.session.reset: <https://api.slack.com/methods/admin.users.session.reset>
//!   (a form with `user_id`; `{"ok": true}`);
//! - errors come as HTTP 200 with `"ok": false` (`invalid_auth`, `missing_scope` with
//!   `needed`, `internal_error`…): <https://api.slack.com/web#evaluating_responses>;
//! - rate limits: HTTP 429 with `Retry-After`: <https://api.slack.com/apis/rate-limits>.

use axum::http::Method;
use portcullis_control_plane::relying_parties::Delivery;
use serde_json::json;

use crate::fake::{ok, reply, Fake, Seen};

const TOKEN: &str = "xoxp-test-org-admin-token";
/// A token without `admin.users:write`.
const READ_ONLY: &str = "xoxp-test-read-only-token";

fn slack(request: &Seen) -> axum::response::Response {
    let token = request.header("authorization").and_then(|a| a.strip_prefix("Bearer "));
    if token != Some(TOKEN) && token != Some(READ_ONLY) {
        return ok(json!({"ok": false, "error": "invalid_auth"}));
    }
    match (&request.method, request.path.as_str()) {
        (&Method::GET, "/api/users.lookupByEmail") => match request.param("email").as_deref() {
            Some("bob@example.com") => ok(json!({"ok": true, "user": {"id": "W012A3CDE", "team_id": "T012AB3C4",
                                                                     "name": "bob", "deleted": false}})),
            Some("busy@example.com") => {
                reply(429, &[("retry-after", "30")], Some(json!({"ok": false, "error": "ratelimited"})))
            }
            Some("flaky@example.com") => ok(json!({"ok": false, "error": "internal_error"})),
            _ => ok(json!({"ok": false, "error": "users_not_found"})),
        },
        (&Method::POST, "/api/admin.users.session.reset") if token == Some(READ_ONLY) => ok(json!({
            "ok": false, "error": "missing_scope", "needed": "admin.users:write", "provided": "users:read.email"
        })),
        (&Method::POST, "/api/admin.users.session.reset") => match request.field("user_id").as_deref() {
            Some("W012A3CDE") => ok(json!({"ok": true})),
            _ => ok(json!({"ok": false, "error": "user_not_found"})),
        },
        _ => ok(json!({"ok": false, "error": "unknown_method"})),
    }
}

fn entry(url: &str) -> String {
    format!("name = \"slack\"\nkind = \"slack\"\nurl = \"{url}/api\"\nsecret_env = \"SLACK_TOKEN\"\n")
}

#[tokio::test]
async fn the_user_found_by_email_has_every_session_reset() {
    let fake = Fake::start(slack).await;
    let rp = crate::build(&entry(&fake.url), &[("SLACK_TOKEN", TOKEN)]);
    assert_eq!(crate::deliver(&rp, "bob@example.com").await, Delivery::applied());
    let seen = fake.seen();
    let lines: Vec<String> = seen.iter().map(Seen::line).collect();
    assert_eq!(lines, ["GET /api/users.lookupByEmail?email=bob%40example.com", "POST /api/admin.users.session.reset"]);
    assert!(seen.iter().all(|s| s.header("authorization") == Some(&*format!("Bearer {TOKEN}"))));
    assert_eq!(seen[1].header("content-type"), Some("application/x-www-form-urlencoded"));
    assert_eq!(
        seen[1].form(),
        [("user_id".to_owned(), "W012A3CDE".to_owned())],
        "the token travels in the header only"
    );
}

#[tokio::test]
async fn an_email_slack_does_not_know_has_nothing_to_reset() {
    let fake = Fake::start(slack).await;
    let rp = crate::build(&entry(&fake.url), &[("SLACK_TOKEN", TOKEN)]);
    assert_eq!(crate::deliver(&rp, "nobody@example.com").await, crate::no_account());
    assert_eq!(fake.count("/api/admin.users.session.reset"), 0);
}

#[tokio::test]
async fn rate_limits_and_slacks_own_failures_are_retried() {
    let fake = Fake::start(slack).await;
    let rp = crate::build(&entry(&fake.url), &[("SLACK_TOKEN", TOKEN)]);
    assert_eq!(crate::retry_after_s(crate::deliver(&rp, "busy@example.com").await), 30);
    let flaky = crate::deliver(&rp, "flaky@example.com").await;
    assert!(matches!(&flaky, Delivery::Retry { error, after: None } if error == "slack: internal_error"), "{flaky:?}");
}

#[tokio::test]
async fn refused_credentials_fail_in_slacks_words_without_the_token() {
    let fake = Fake::start(slack).await;
    let wrong = "xoxp-wrong-token-must-not-leak";
    let rp = crate::build(&entry(&fake.url), &[("SLACK_TOKEN", wrong)]);
    let error = crate::failed(crate::deliver(&rp, "bob@example.com").await);
    assert_eq!(error, "slack: invalid_auth");

    let rp = crate::build(&entry(&fake.url), &[("SLACK_TOKEN", READ_ONLY)]);
    let error = crate::failed(crate::deliver(&rp, "bob@example.com").await);
    assert_eq!(error, "slack: missing_scope (needs admin.users:write)");
}
