//! Auth0. The fake follows the Management API v2:
//! - the machine-to-machine token: <https://auth0.com/docs/secure/tokens/access-tokens/management-api-access-tokens/get-management-api-access-tokens-for-production>
//!   (JSON `client_credentials` with the `audience`; 401 `access_denied` for a wrong secret);
//! - users by email: <https://auth0.com/docs/api/management/v2/users-by-email/get-users-by-email>
//!   (an array: one user per identity — database, social, enterprise);
//! - delete a user's sessions: <https://auth0.com/docs/api/management/v2/users/delete-sessions-for-user> (202);
//! - rate limits: <https://auth0.com/docs/troubleshoot/customer-support/operational-policies/rate-limit-policy>
//!   (429 with `x-ratelimit-limit`, `-remaining`, `-reset` in epoch seconds).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::http::Method;
use portcullis_control_plane::relying_parties::Delivery;
use serde_json::json;

use crate::fake::{epoch_in, ok, reply, Fake, Seen};

const SECRET: &str = "test-auth0-client-secret";
const DATABASE: &str = "auth0|64f1c0ffee";
const GOOGLE: &str = "google-oauth2|103547991597142817347";

fn auth0(issued: &AtomicUsize, request: &Seen) -> axum::response::Response {
    if request.path == "/oauth/token" {
        if request.json()["client_secret"] != SECRET {
            return reply(401, &[], Some(json!({"error": "access_denied", "error_description": "Unauthorized"})));
        }
        let n = issued.fetch_add(1, Ordering::SeqCst) + 1;
        return ok(json!({"access_token": format!("auth0-token-{n}"), "expires_in": 86400, "token_type": "Bearer",
                         "scope": "read:users delete:sessions"}));
    }
    if request.header("authorization") != Some("Bearer auth0-token-1") {
        return reply(401, &[], Some(json!({"statusCode": 401, "error": "Unauthorized", "message": "Invalid token"})));
    }
    match (&request.method, request.path.as_str()) {
        (&Method::GET, "/api/v2/users-by-email") => match request.param("email").as_deref() {
            Some("bob@example.com") => ok(json!([
                {"user_id": DATABASE, "email": "bob@example.com", "identities": [{"provider": "auth0"}]},
                {"user_id": GOOGLE, "email": "bob@example.com", "identities": [{"provider": "google-oauth2"}]},
            ])),
            Some("busy@example.com") => reply(
                429,
                &[("x-ratelimit-limit", "50"), ("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", &epoch_in(20))],
                Some(
                    json!({"statusCode": 429, "error": "Too Many Requests", "message": "Global limit has been reached"}),
                ),
            ),
            _ => ok(json!([])),
        },
        (&Method::DELETE, "/api/v2/users/auth0%7C64f1c0ffee/sessions")
        | (&Method::DELETE, "/api/v2/users/google-oauth2%7C103547991597142817347/sessions") => reply(202, &[], None),
        _ => reply(404, &[], Some(json!({"statusCode": 404, "error": "Not Found", "message": "Not Found"}))),
    }
}

async fn fake() -> (Fake, Arc<AtomicUsize>) {
    let issued = Arc::new(AtomicUsize::new(0));
    let count = issued.clone();
    (Fake::start(move |request| auth0(&count, request)).await, issued)
}

fn entry(url: &str) -> String {
    format!("name = \"auth0\"\nkind = \"auth0\"\nurl = \"{url}\"\nclient_id = \"m2m-client\"\nsecret_env = \"AUTH0_SECRET\"\n")
}

#[tokio::test]
async fn the_sessions_of_every_identity_with_the_email_are_deleted() {
    let (fake, issued) = fake().await;
    let rp = crate::build(&entry(&fake.url), &[("AUTH0_SECRET", SECRET)]);
    let two = Delivery::Applied { detail: Some("sessions of 2 accounts ended".into()) };
    assert_eq!(crate::deliver(&rp, "bob@example.com").await, two);
    assert_eq!(crate::deliver(&rp, "bob@example.com").await, two);
    assert_eq!(issued.load(Ordering::SeqCst), 1, "the token is reused until it expires");

    let seen = fake.seen();
    assert_eq!(seen[0].line(), "POST /oauth/token");
    assert_eq!(seen[0].header("content-type"), Some("application/json"));
    assert_eq!(
        seen[0].json(),
        json!({"grant_type": "client_credentials", "client_id": "m2m-client", "client_secret": SECRET,
               "audience": format!("{}/api/v2/", fake.url)})
    );
    let lines: Vec<String> = seen[1..4].iter().map(Seen::line).collect();
    assert_eq!(
        lines,
        [
            "GET /api/v2/users-by-email?email=bob%40example.com",
            "DELETE /api/v2/users/auth0%7C64f1c0ffee/sessions",
            "DELETE /api/v2/users/google-oauth2%7C103547991597142817347/sessions",
        ]
    );
    assert!(seen[1..].iter().all(|s| s.header("authorization") == Some("Bearer auth0-token-1")));
    assert_eq!(seen.len(), 7);
}

#[tokio::test]
async fn an_email_the_tenant_does_not_know_has_nothing_to_end() {
    let (fake, _) = fake().await;
    let rp = crate::build(&entry(&fake.url), &[("AUTH0_SECRET", SECRET)]);
    assert_eq!(crate::deliver(&rp, "nobody@example.com").await, crate::no_account());
    assert!(fake.seen().iter().all(|s| s.method != Method::DELETE));
}

#[tokio::test]
async fn a_rate_limit_waits_until_the_reset() {
    let (fake, _) = fake().await;
    let rp = crate::build(&entry(&fake.url), &[("AUTH0_SECRET", SECRET)]);
    let wait = crate::retry_after_s(crate::deliver(&rp, "busy@example.com").await);
    assert!((18..=20).contains(&wait), "x-ratelimit-reset is 20 s away, waited {wait}");
}

#[tokio::test]
async fn a_wrong_secret_fails_in_auth0s_words_without_the_secret() {
    let (fake, _) = fake().await;
    let wrong = "wrong-auth0-secret-must-not-leak";
    let rp = crate::build(&entry(&fake.url), &[("AUTH0_SECRET", wrong)]);
    let error = crate::failed(crate::deliver(&rp, "bob@example.com").await);
    assert!(error.contains("401") && error.contains("access_denied"), "{error}");
    assert!(!error.contains(wrong), "{error}");
}
