//! Microsoft Entra ID: find the user through Microsoft Graph, then revoke
//! their sign-in sessions (refresh tokens and session cookies).
//!
//! ```text
//! POST {token_url}   grant_type=client_credentials&client_id&client_secret
//!                    &scope=https://graph.microsoft.com/.default
//! GET  {graph}/users?$filter=mail eq '{email}' or userPrincipalName eq '{email}'&$select=id
//!      → 200 {"value": [{"id": "…"}]}
//! POST {graph}/users/{id}/revokeSignInSessions   → 200 {"value": true}
//! ```
//!
//! Graph throttles with 429 (and 503) and `Retry-After`.
//! <https://learn.microsoft.com/en-us/graph/api/user-revokesigninsessions?view=graph-rest-1.0>

use std::time::Duration;

use async_trait::async_trait;
use reqwest::StatusCode;
use serde::Deserialize;

use super::http::{empty_post, encode, no_account, no_email};
use super::oauth::{Grant, TokenSource};
use super::{classify, Connector, Delivery, Termination};

/// The scope of an application token for Graph.
const GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";

/// Revokes Entra sign-in sessions as an application.
pub struct Entra {
    client: reqwest::Client,
    url: String,
    tokens: TokenSource,
}

#[derive(Deserialize)]
struct Users {
    value: Vec<User>,
}

#[derive(Deserialize)]
struct User {
    id: String,
}

impl Entra {
    /// Graph at `url`, tokens from `token_url` for `client_id`.
    pub fn new(
        client: reqwest::Client,
        url: String,
        token_url: String,
        client_id: String,
        client_secret: String,
        timeout: Duration,
    ) -> Self {
        let grant = Grant::ClientCredentials { client_id, client_secret, scope: Some(GRAPH_SCOPE.into()) };
        let tokens = TokenSource::new(client.clone(), token_url, grant, timeout);
        Self { client, url, tokens }
    }

    async fn end_sessions(&self, email: &str) -> Result<Delivery, Delivery> {
        let literal = email.replace('\'', "''");
        let filter = format!("mail eq '{literal}' or userPrincipalName eq '{literal}'");
        let lookup = format!("{}/users?$filter={}&$select=id", self.url, encode(&filter));
        let found = self.tokens.send(|| self.client.get(&lookup).header("accept", "application/json")).await?;
        if found.status != StatusCode::OK {
            return Ok(classify(&found));
        }
        let Users { value: users } = found.json()?;
        if users.is_empty() {
            return Ok(no_account());
        }
        for user in &users {
            let revoke = format!("{}/users/{}/revokeSignInSessions", self.url, encode(&user.id));
            let revoked = self.tokens.send(|| empty_post(&self.client, &revoke)).await?;
            match revoked.status {
                StatusCode::NOT_FOUND => {}
                _ => match classify(&revoked) {
                    Delivery::Applied { .. } => {}
                    refused => return Ok(refused),
                },
            }
        }
        Ok(Delivery::applied())
    }
}

#[async_trait]
impl Connector for Entra {
    async fn deliver(&self, job: &Termination, _idempotency_key: &str) -> Delivery {
        let Some(email) = job.email() else { return no_email(job) };
        self.end_sessions(email).await.unwrap_or_else(|delivery| delivery)
    }
}
