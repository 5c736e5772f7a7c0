//! Keycloak. The fake follows the admin REST API
//! (<https://www.keycloak.org/docs-api/latest/rest-api/index.html>):
//! - the service account's token, client credentials at the realm's
//!   OpenID Connect token endpoint
//!   (<https://www.keycloak.org/docs/latest/server_admin/index.html#_service_accounts>;
//!   401 `unauthorized_client` for a wrong secret);
//! - `GET /admin/realms/{realm}/users?email=…&exact=true`: an array, several
//!   users when the realm allows duplicate emails, empty when none;
//! - `POST /admin/realms/{realm}/users/{id}/logout`: 204;
//! - a gateway's rate limit: 429 with `Retry-After`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::http::Method;
use portcullis_control_plane::relying_parties::Delivery;
use serde_json::json;

use crate::fake::{ok, reply, Fake, Seen};

const SECRET: &str = "test-keycloak-client-secret";
const TOKEN_PATH: &str = "/realms/acme/protocol/openid-connect/token";

fn keycloak(issued: &AtomicUsize, request: &Seen) -> axum::response::Response {
    if request.path == TOKEN_PATH {
        if request.field("client_id").as_deref() == Some("overloaded") {
            return reply(503, &[("retry-after", "7")], Some(json!({"error": "temporarily_unavailable"})));
        }
        if request.field("client_id").as_deref() == Some("echoes") {
            let secret = request.field("client_secret").unwrap_or_default();
            return reply(
                400,
                &[],
                Some(json!({"error": "invalid_client", "error_description": format!("no secret {secret}")})),
            );
        }
        if request.field("client_secret").as_deref() != Some(SECRET) {
            return reply(
                401,
                &[],
                Some(
                    json!({"error": "unauthorized_client", "error_description": "Invalid client or Invalid client credentials"}),
                ),
            );
        }
        let n = issued.fetch_add(1, Ordering::SeqCst) + 1;
        return ok(
            json!({"access_token": format!("kc-token-{n}"), "expires_in": 300, "token_type": "Bearer", "scope": "profile email"}),
        );
    }
    if !request.header("authorization").is_some_and(|a| a.starts_with("Bearer kc-token-")) {
        return reply(401, &[], Some(json!({"error": "HTTP 401 Unauthorized"})));
    }
    let user = |id: &str, email: &str| json!({"id": id, "username": id, "email": email, "enabled": true});
    match (&request.method, request.path.as_str()) {
        (&Method::GET, "/admin/realms/acme/users") => match request.param("email").as_deref() {
            Some("bob@example.com") => ok(json!([user("b0b-1", "bob@example.com"), user("b0b-2", "bob@example.com")])),
            Some("busy@example.com") => ok(json!([user("busy-1", "busy@example.com")])),
            _ => ok(json!([])),
        },
        (&Method::POST, "/admin/realms/acme/users/b0b-1/logout" | "/admin/realms/acme/users/b0b-2/logout") => {
            reply(204, &[], None)
        }
        (&Method::POST, "/admin/realms/acme/users/busy-1/logout") => {
            reply(429, &[("retry-after", "5")], Some(json!({"error": "too many requests"})))
        }
        _ => reply(404, &[], Some(json!({"error": "User not found"}))),
    }
}

async fn fake() -> (Fake, Arc<AtomicUsize>) {
    let issued = Arc::new(AtomicUsize::new(0));
    let count = issued.clone();
    (Fake::start(move |request| keycloak(&count, request)).await, issued)
}

fn entry(url: &str) -> String {
    entry_for(url, "portcullis")
}

fn entry_for(url: &str, client_id: &str) -> String {
    format!(
        "name = \"keycloak\"\nkind = \"keycloak\"\nurl = \"{url}\"\nrealm = \"acme\"\nclient_id = \"{client_id}\"\n\
         secret_env = \"KC_SECRET\"\n"
    )
}

#[tokio::test]
async fn every_user_with_the_email_is_logged_out_with_one_token() {
    let (fake, issued) = fake().await;
    let rp = crate::build(&entry(&fake.url), &[("KC_SECRET", SECRET)]);
    assert_eq!(crate::deliver(&rp, "bob@example.com").await, Delivery::applied());
    assert_eq!(crate::deliver(&rp, "bob@example.com").await, Delivery::applied());
    assert_eq!(issued.load(Ordering::SeqCst), 1, "the token is reused until it expires");

    let seen = fake.seen();
    let lines: Vec<String> = seen.iter().map(Seen::line).collect();
    assert_eq!(
        lines[..4],
        [
            format!("POST {TOKEN_PATH}"),
            "GET /admin/realms/acme/users?email=bob%40example.com&exact=true".to_owned(),
            "POST /admin/realms/acme/users/b0b-1/logout".to_owned(),
            "POST /admin/realms/acme/users/b0b-2/logout".to_owned(),
        ]
    );
    let form = seen[0].form();
    for (key, value) in [("grant_type", "client_credentials"), ("client_id", "portcullis"), ("client_secret", SECRET)] {
        assert!(form.contains(&(key.to_owned(), value.to_owned())), "{key} in {form:?}");
    }
    assert!(seen[1..].iter().all(|s| s.header("authorization") == Some("Bearer kc-token-1")));
    assert_eq!(seen[2].header("content-length"), Some("0"));
    assert_eq!(seen.len(), 7, "the second delivery asks no new token");
}

#[tokio::test]
async fn an_email_the_realm_does_not_know_has_nothing_to_log_out() {
    let (fake, _) = fake().await;
    let rp = crate::build(&entry(&fake.url), &[("KC_SECRET", SECRET)]);
    assert_eq!(crate::deliver(&rp, "nobody@example.com").await, crate::no_account());
    assert!(fake.seen().iter().all(|s| !s.path.ends_with("/logout")));
}

#[tokio::test]
async fn a_rate_limit_waits_as_asked() {
    let (fake, _) = fake().await;
    let rp = crate::build(&entry(&fake.url), &[("KC_SECRET", SECRET)]);
    assert_eq!(crate::retry_after_s(crate::deliver(&rp, "busy@example.com").await), 5);
}

#[tokio::test]
async fn a_wrong_secret_fails_in_keycloaks_words_without_the_secret() {
    let (fake, _) = fake().await;
    let wrong = "wrong-keycloak-secret-must-not-leak";
    let rp = crate::build(&entry(&fake.url), &[("KC_SECRET", wrong)]);
    let error = crate::failed(crate::deliver(&rp, "bob@example.com").await);
    assert!(error.contains("401") && error.contains("Invalid client or Invalid client credentials"), "{error}");
    assert!(!error.contains(wrong), "{error}");
}

#[tokio::test]
async fn an_overloaded_token_endpoint_is_retried_and_an_echoed_secret_blotted_out() {
    let (fake, _) = fake().await;
    let rp = crate::build(&entry_for(&fake.url, "overloaded"), &[("KC_SECRET", SECRET)]);
    let delivery = crate::deliver(&rp, "bob@example.com").await;
    assert!(
        matches!(&delivery, Delivery::Retry { error, .. } if error.contains("token endpoint: 503")),
        "{delivery:?}"
    );
    assert_eq!(crate::retry_after_s(delivery), 7);

    let rp = crate::build(&entry_for(&fake.url, "echoes"), &[("KC_SECRET", SECRET)]);
    let error = crate::failed(crate::deliver(&rp, "bob@example.com").await);
    assert!(error.contains("invalid_client") && error.contains("no secret [redacted]"), "{error}");
    assert!(!error.contains(SECRET), "{error}");
    assert!(fake.seen().iter().all(|s| s.path == TOKEN_PATH), "no API call without a token");
}
