//! Okta: find the user by login, then clear their sessions.
//!
//! ```text
//! GET    {org}/api/v1/users/{url-encoded login}     Authorization: SSWS {token}
//!        → 200 {"id": "00u…", …} | 404 {"errorCode": "E0000007", …}
//! DELETE {org}/api/v1/users/{id}/sessions[?oauthTokens=true]   → 204
//! ```
//!
//! Okta rate-limits with 429 and `X-Rate-Limit-Reset` (the epoch second the
//! window resets), honoured when there is no `Retry-After`.
//! <https://developer.okta.com/docs/api/openapi/okta-management/management/tag/UserSessions/>

use std::time::Duration;

use async_trait::async_trait;
use reqwest::StatusCode;
use serde::Deserialize;

use super::http::{classify_with_reset, encode, no_account, no_email};
use super::{Connector, Delivery, HttpCall, Termination};

/// Okta's rate-limit reset header.
const RESET: &str = "x-rate-limit-reset";

/// Clears Okta sessions with an API token.
pub struct Okta {
    client: reqwest::Client,
    url: String,
    token: String,
    revoke_oauth_tokens: bool,
    timeout: Duration,
}

#[derive(Deserialize)]
struct User {
    id: String,
}

impl Okta {
    /// Okta at the org `url`, with the API `token`.
    pub fn new(
        client: reqwest::Client,
        url: String,
        token: String,
        revoke_oauth_tokens: bool,
        timeout: Duration,
    ) -> Self {
        Self { client, url, token, revoke_oauth_tokens, timeout }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<HttpCall, Delivery> {
        let request =
            request.header("authorization", format!("SSWS {}", self.token)).header("accept", "application/json");
        HttpCall::send(request, self.timeout).await
    }

    async fn end_sessions(&self, email: &str) -> Result<Delivery, Delivery> {
        let user = self.send(self.client.get(format!("{}/api/v1/users/{}", self.url, encode(email)))).await?;
        if user.status == StatusCode::NOT_FOUND {
            return Ok(no_account());
        }
        if user.status != StatusCode::OK {
            return Ok(classify_with_reset(&user, RESET));
        }
        let User { id } = user.json()?;
        let mut url = format!("{}/api/v1/users/{}/sessions", self.url, encode(&id));
        if self.revoke_oauth_tokens {
            url.push_str("?oauthTokens=true");
        }
        let cleared = self.send(self.client.delete(url)).await?;
        if cleared.status == StatusCode::NOT_FOUND {
            return Ok(no_account());
        }
        Ok(classify_with_reset(&cleared, RESET))
    }
}

#[async_trait]
impl Connector for Okta {
    async fn deliver(&self, job: &Termination, _idempotency_key: &str) -> Delivery {
        let Some(email) = job.email() else { return no_email(job) };
        self.end_sessions(email).await.unwrap_or_else(|delivery| delivery)
    }
}
