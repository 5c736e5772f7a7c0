//! Auth0: find every user with the email (one per identity: database,
//! Google, enterprise…), then delete each one's sessions.
//!
//! ```text
//! POST   {token_url}   {"grant_type":"client_credentials","client_id","client_secret","audience":"{tenant}/api/v2/"}
//! GET    {tenant}/api/v2/users-by-email?email={email}   → 200 [{"user_id": "auth0|…"}, …]
//! DELETE {tenant}/api/v2/users/{url-encoded user_id}/sessions   → 202 | 204
//! ```
//!
//! Auth0 rate-limits with 429 and `x-ratelimit-reset` (epoch seconds).
//! <https://auth0.com/docs/api/management/v2/users/delete-sessions-for-user>

use std::time::Duration;

use async_trait::async_trait;
use reqwest::StatusCode;
use serde::Deserialize;

use super::http::{classify_with_reset, encode, no_account, no_email};
use super::oauth::{Grant, TokenSource};
use super::{Connector, Delivery, Termination};

/// Auth0's rate-limit reset header.
const RESET: &str = "x-ratelimit-reset";

/// Deletes Auth0 sessions through the Management API.
pub struct Auth0 {
    client: reqwest::Client,
    url: String,
    tokens: TokenSource,
}

#[derive(Deserialize)]
struct User {
    user_id: String,
}

impl Auth0 {
    /// The tenant at `url`, tokens from `token_url` for `client_id`.
    pub fn new(
        client: reqwest::Client,
        url: String,
        token_url: String,
        client_id: String,
        client_secret: String,
        timeout: Duration,
    ) -> Self {
        let grant = Grant::ClientCredentialsJson { client_id, client_secret, audience: format!("{url}/api/v2/") };
        let tokens = TokenSource::new(client.clone(), token_url, grant, timeout);
        Self { client, url, tokens }
    }

    async fn end_sessions(&self, email: &str) -> Result<Delivery, Delivery> {
        let lookup = format!("{}/api/v2/users-by-email?email={}", self.url, encode(email));
        let found = self.tokens.send(|| self.client.get(&lookup).header("accept", "application/json")).await?;
        if found.status != StatusCode::OK {
            return Ok(classify_with_reset(&found, RESET));
        }
        let users: Vec<User> = found.json()?;
        if users.is_empty() {
            return Ok(no_account());
        }
        for user in &users {
            let sessions = format!("{}/api/v2/users/{}/sessions", self.url, encode(&user.user_id));
            let answer = self.tokens.send(|| self.client.delete(&sessions)).await?;
            if answer.status == StatusCode::NOT_FOUND {
                continue;
            }
            if let refused @ (Delivery::Retry { .. } | Delivery::Failed { .. }) = classify_with_reset(&answer, RESET) {
                return Ok(refused);
            }
        }
        Ok(match users.len() {
            1 => Delivery::applied(),
            n => Delivery::Applied { detail: Some(format!("sessions of {n} accounts ended")) },
        })
    }
}

#[async_trait]
impl Connector for Auth0 {
    async fn deliver(&self, job: &Termination, _idempotency_key: &str) -> Delivery {
        let Some(email) = job.email() else { return no_email(job) };
        self.end_sessions(email).await.unwrap_or_else(|delivery| delivery)
    }
}
