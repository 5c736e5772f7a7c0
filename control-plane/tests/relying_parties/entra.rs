//! Microsoft Entra ID. The fake follows:
//! - the client-credentials token: <https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-client-creds-grant-flow>
//!   (form POST; 401 `invalid_client` with an `AADSTS…` description for a wrong secret);
//! - list users with `$filter`: <https://learn.microsoft.com/en-us/graph/api/user-list?view=graph-rest-1.0>
//!   and OData string literals (`'` doubled): <https://learn.microsoft.com/en-us/graph/filter-query-parameter>;
//! - revokeSignInSessions: <https://learn.microsoft.com/en-us/graph/api/user-revokesigninsessions?view=graph-rest-1.0>
//!   (200 `{"value": true}`);
//! - throttling: <https://learn.microsoft.com/en-us/graph/throttling> (429 with `Retry-After`);
//! - an expired or revoked token: 401 `InvalidAuthenticationToken`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::http::Method;
use portcullis_control_plane::relying_parties::Delivery;
use serde_json::json;

use crate::fake::{ok, reply, Fake, Seen};

const CLIENT_ID: &str = "6731de76-14a6-49ae-97bc-6eba6914391e";
const SECRET: &str = "test-entra-client-secret~value";
const BOB_ID: &str = "87d349ed-44d7-43e1-9a83-5f2406dee5bd";
const OBRIEN_ID: &str = "5d6e1b2c-0000-4000-8000-0000000000ob";
const TOKEN_PATH: &str = "/tenant/oauth2/v2.0/token";

/// The fake's state: tokens issued, and the one Graph accepts now.
#[derive(Default)]
struct Graph {
    issued: AtomicUsize,
    valid: Mutex<String>,
}

impl Graph {
    fn answer(&self, request: &Seen) -> axum::response::Response {
        if request.path == TOKEN_PATH {
            if request.field("client_secret").as_deref() != Some(SECRET) {
                return reply(
                    401,
                    &[],
                    Some(json!({
                        "error": "invalid_client",
                        "error_description": "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value.",
                        "error_codes": [7000215]
                    })),
                );
            }
            let token = format!("entra-token-{}", self.issued.fetch_add(1, Ordering::SeqCst) + 1);
            *self.valid.lock().unwrap() = token.clone();
            return ok(
                json!({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": token}),
            );
        }
        let valid = format!("Bearer {}", self.valid.lock().unwrap());
        if request.header("authorization") != Some(valid.as_str()) {
            return reply(
                401,
                &[],
                Some(
                    json!({"error": {"code": "InvalidAuthenticationToken", "message": "Lifetime validation failed, the token is expired."}}),
                ),
            );
        }
        match (&request.method, request.path.as_str()) {
            (&Method::GET, "/v1.0/users") => {
                let filter = request.param("$filter").unwrap_or_default();
                let id = if filter == "mail eq 'bob@example.com' or userPrincipalName eq 'bob@example.com'" {
                    BOB_ID
                } else if filter == "mail eq 'o''brien@example.com' or userPrincipalName eq 'o''brien@example.com'" {
                    OBRIEN_ID
                } else if filter.contains("'busy@example.com'") {
                    return reply(
                        429,
                        &[("retry-after", "12")],
                        Some(json!({"error": {"code": "TooManyRequests", "message": "Too many requests"}})),
                    );
                } else {
                    return ok(
                        json!({"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users(id)", "value": []}),
                    );
                };
                ok(
                    json!({"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users(id)", "value": [{"id": id}]}),
                )
            }
            (&Method::POST, path) if path.ends_with("/revokeSignInSessions") => {
                ok(json!({"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Edm.Boolean", "value": true}))
            }
            _ => reply(404, &[], Some(json!({"error": {"code": "Request_ResourceNotFound", "message": "not found"}}))),
        }
    }
}

async fn fake() -> (Fake, Arc<Graph>) {
    let graph = Arc::new(Graph::default());
    let state = graph.clone();
    (Fake::start(move |request| state.answer(request)).await, graph)
}

fn entry(url: &str) -> String {
    format!(
        "name = \"entra\"\nkind = \"entra\"\ntenant = \"tenant\"\nclient_id = \"{CLIENT_ID}\"\nsecret_env = \"ENTRA_SECRET\"\n\
         url = \"{url}/v1.0\"\ntoken_url = \"{url}{TOKEN_PATH}\"\n"
    )
}

#[tokio::test]
async fn sign_in_sessions_are_revoked_with_one_application_token() {
    let (fake, graph) = fake().await;
    let rp = crate::build(&entry(&fake.url), &[("ENTRA_SECRET", SECRET)]);
    assert_eq!(crate::deliver(&rp, "bob@example.com").await, Delivery::applied());
    assert_eq!(crate::deliver(&rp, "o'brien@example.com").await, Delivery::applied());
    assert_eq!(graph.issued.load(Ordering::SeqCst), 1, "the token is reused until it expires");

    let seen = fake.seen();
    let token = &seen[0];
    assert_eq!((token.method.as_str(), token.path.as_str()), ("POST", TOKEN_PATH));
    assert_eq!(token.header("content-type"), Some("application/x-www-form-urlencoded"));
    let form = token.form();
    for (key, value) in [
        ("grant_type", "client_credentials"),
        ("client_id", CLIENT_ID),
        ("client_secret", SECRET),
        ("scope", "https://graph.microsoft.com/.default"),
    ] {
        assert!(form.contains(&(key.to_owned(), value.to_owned())), "{key} in {form:?}");
    }
    let lookup = &seen[1];
    assert_eq!((lookup.method.as_str(), lookup.path.as_str()), ("GET", "/v1.0/users"));
    assert_eq!(
        lookup.query.as_deref(),
        Some("$filter=mail%20eq%20%27bob%40example.com%27%20or%20userPrincipalName%20eq%20%27bob%40example.com%27&$select=id")
    );
    assert_eq!(lookup.header("authorization"), Some("Bearer entra-token-1"));
    let revoke = &seen[2];
    assert_eq!(revoke.line(), format!("POST /v1.0/users/{BOB_ID}/revokeSignInSessions"));
    assert_eq!(revoke.header("authorization"), Some("Bearer entra-token-1"));
    assert_eq!(revoke.header("content-length"), Some("0"), "Graph wants a length on an empty POST");
    assert_eq!(seen[4].line(), format!("POST /v1.0/users/{OBRIEN_ID}/revokeSignInSessions"), "quote doubled");
    assert_eq!(seen.len(), 5);
}

#[tokio::test]
async fn a_token_graph_refuses_is_replaced_once() {
    let (fake, graph) = fake().await;
    let rp = crate::build(&entry(&fake.url), &[("ENTRA_SECRET", SECRET)]);
    assert_eq!(crate::deliver(&rp, "bob@example.com").await, Delivery::applied());
    *graph.valid.lock().unwrap() = "revoked by the tenant".into();
    assert_eq!(crate::deliver(&rp, "bob@example.com").await, Delivery::applied());
    assert_eq!(graph.issued.load(Ordering::SeqCst), 2);
    let lines: Vec<String> = fake.seen().iter().map(Seen::line).collect();
    assert_eq!(lines[3], lines[1], "the lookup, refused with the old token");
    assert_eq!(lines[4], format!("POST {TOKEN_PATH}"), "a new token");
    assert_eq!(lines[5], lines[1], "the lookup again");
    assert_eq!(fake.seen()[5].header("authorization"), Some("Bearer entra-token-2"));
}

#[tokio::test]
async fn a_user_the_tenant_does_not_know_has_nothing_to_revoke() {
    let (fake, _) = fake().await;
    let rp = crate::build(&entry(&fake.url), &[("ENTRA_SECRET", SECRET)]);
    assert_eq!(crate::deliver(&rp, "nobody@example.com").await, crate::no_account());
    assert_eq!(fake.count(&format!("/v1.0/users/{BOB_ID}/revokeSignInSessions")), 0);
}

#[tokio::test]
async fn throttling_waits_as_graph_asks() {
    let (fake, _) = fake().await;
    let rp = crate::build(&entry(&fake.url), &[("ENTRA_SECRET", SECRET)]);
    assert_eq!(crate::retry_after_s(crate::deliver(&rp, "busy@example.com").await), 12);
}

#[tokio::test]
async fn a_wrong_secret_fails_in_entras_words_without_the_secret() {
    let (fake, _) = fake().await;
    let wrong = "wrong-entra-secret-must-not-leak";
    let rp = crate::build(&entry(&fake.url), &[("ENTRA_SECRET", wrong)]);
    let error = crate::failed(crate::deliver(&rp, "bob@example.com").await);
    assert!(
        error.contains("token endpoint") && error.contains("invalid_client") && error.contains("AADSTS7000215"),
        "{error}"
    );
    assert!(!error.contains(wrong), "{error}");
    assert_eq!(fake.count("/v1.0/users"), 0, "no API call without a token");
}
