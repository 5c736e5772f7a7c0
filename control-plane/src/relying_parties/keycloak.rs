//! Keycloak: find the user in the realm by exact email, then log them out
//! of every session (admin REST API, as a service-account client).
//!
//! ```text
//! POST {server}/realms/{realm}/protocol/openid-connect/token   client_credentials
//! GET  {server}/admin/realms/{realm}/users?email={email}&exact=true   → 200 [{"id": …}, …]
//! POST {server}/admin/realms/{realm}/users/{id}/logout                → 204
//! ```
//!
//! <https://www.keycloak.org/docs-api/latest/rest-api/index.html#_users>

use std::time::Duration;

use async_trait::async_trait;
use reqwest::StatusCode;
use serde::Deserialize;

use super::http::{empty_post, encode, no_account, no_email};
use super::oauth::{Grant, TokenSource};
use super::{classify, Connector, Delivery, Termination};

/// Logs users out of one Keycloak realm.
pub struct Keycloak {
    client: reqwest::Client,
    /// `{server}/admin/realms/{realm}`.
    admin: String,
    tokens: TokenSource,
}

#[derive(Deserialize)]
struct User {
    id: String,
}

impl Keycloak {
    /// Keycloak at `url`, realm `realm`, as the client `client_id`.
    pub fn new(
        client: reqwest::Client,
        url: &str,
        realm: &str,
        client_id: String,
        client_secret: String,
        timeout: Duration,
    ) -> Self {
        let realm = encode(realm);
        let token_url = format!("{url}/realms/{realm}/protocol/openid-connect/token");
        let grant = Grant::ClientCredentials { client_id, client_secret, scope: None };
        let tokens = TokenSource::new(client.clone(), token_url, grant, timeout);
        Self { client, admin: format!("{url}/admin/realms/{realm}"), tokens }
    }

    async fn end_sessions(&self, email: &str) -> Result<Delivery, Delivery> {
        let lookup = format!("{}/users?email={}&exact=true", self.admin, encode(email));
        let found = self.tokens.send(|| self.client.get(&lookup).header("accept", "application/json")).await?;
        if found.status != StatusCode::OK {
            return Ok(classify(&found));
        }
        let users: Vec<User> = found.json()?;
        if users.is_empty() {
            return Ok(no_account());
        }
        for user in &users {
            let logout = format!("{}/users/{}/logout", self.admin, encode(&user.id));
            let answer = self.tokens.send(|| empty_post(&self.client, &logout)).await?;
            if answer.status == StatusCode::NOT_FOUND {
                continue;
            }
            if let refused @ (Delivery::Retry { .. } | Delivery::Failed { .. }) = classify(&answer) {
                return Ok(refused);
            }
        }
        Ok(Delivery::applied())
    }
}

#[async_trait]
impl Connector for Keycloak {
    async fn deliver(&self, job: &Termination, _idempotency_key: &str) -> Delivery {
        let Some(email) = job.email() else { return no_email(job) };
        self.end_sessions(email).await.unwrap_or_else(|delivery| delivery)
    }
}
