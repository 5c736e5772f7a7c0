//! Slack (Enterprise Grid): find the user by email, then reset their
//! sessions on every device.
//!
//! ```text
//! GET  {api}/users.lookupByEmail?email={email}   Authorization: Bearer {token}
//!      → {"ok": true, "user": {"id": "W…"}} | {"ok": false, "error": "users_not_found"}
//! POST {api}/admin.users.session.reset   user_id={id}   → {"ok": true}
//! ```
//!
//! Slack answers most errors with HTTP 200 and `"ok": false`; a rate limit
//! is HTTP 429 with `Retry-After`.
//! <https://api.slack.com/methods/admin.users.session.reset>,
//! <https://api.slack.com/methods/users.lookupByEmail>, <https://api.slack.com/apis/rate-limits>

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use super::http::{encode, no_account, no_email};
use super::{classify, Connector, Delivery, HttpCall, Termination};

/// Resets Slack sessions with an org admin's token.
pub struct Slack {
    client: reqwest::Client,
    url: String,
    token: String,
    timeout: Duration,
}

/// The envelope of every Web API answer.
#[derive(Deserialize)]
struct Answer {
    ok: bool,
    error: Option<String>,
    /// The scope a `missing_scope` error needed.
    needed: Option<String>,
    user: Option<User>,
}

#[derive(Deserialize)]
struct User {
    id: String,
}

impl Slack {
    /// The Web API at `url`, with `token`.
    pub fn new(client: reqwest::Client, url: String, token: String, timeout: Duration) -> Self {
        Self { client, url, token, timeout }
    }

    /// Calls a method; an answer that is not `ok` is classified.
    async fn call(&self, request: reqwest::RequestBuilder) -> Result<Answer, Delivery> {
        let call = HttpCall::send(request.bearer_auth(&self.token), self.timeout).await?;
        if !call.status.is_success() {
            return Err(classify(&call));
        }
        let answer: Answer = call.json()?;
        if answer.ok {
            return Ok(answer);
        }
        let code = answer.error.clone().unwrap_or_default();
        let error = match &answer.needed {
            Some(needed) => format!("slack: {code} (needs {needed})"),
            None => format!("slack: {code}"),
        };
        Err(match code.as_str() {
            "users_not_found" | "user_not_found" => no_account(),
            "ratelimited" | "internal_error" | "fatal_error" | "service_unavailable" | "request_timeout" => {
                Delivery::Retry { error, after: call.retry_after() }
            }
            _ => Delivery::Failed { error },
        })
    }

    async fn end_sessions(&self, email: &str) -> Result<Delivery, Delivery> {
        let lookup = format!("{}/users.lookupByEmail?email={}", self.url, encode(email));
        let found = self.call(self.client.get(lookup)).await?;
        let Some(User { id }) = found.user else {
            return Err(Delivery::Retry { error: "slack: users.lookupByEmail answered no user".into(), after: None });
        };
        let reset = self.client.post(format!("{}/admin.users.session.reset", self.url)).form(&[("user_id", id)]);
        self.call(reset).await?;
        Ok(Delivery::applied())
    }
}

#[async_trait]
impl Connector for Slack {
    async fn deliver(&self, job: &Termination, _idempotency_key: &str) -> Delivery {
        let Some(email) = job.email() else { return no_email(job) };
        self.end_sessions(email).await.unwrap_or_else(|delivery| delivery)
    }
}
