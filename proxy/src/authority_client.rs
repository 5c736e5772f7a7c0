//! Calls from the edge to the control plane's session authority: create a
//! session after a login, end one at logout, end the sessions an IdP
//! logged out (back-channel), say why a session ended, and look up service
//! tokens. Every failure is
//! one of three kinds, because the edge answers each differently: the
//! control plane refused (a 4xx with its reason), it is unavailable (the
//! clear 503 page), or it answered something unexpected.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::credentials::LookupBudget;
use crate::subscriber::ChannelConfig;

/// How long a login may wait for the control plane.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a call did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum AuthorityError {
    /// The control plane answered with a client error and its message.
    #[error("{message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// Machine-readable code (`user_locked`, `session_limit`, …).
        code: String,
        /// The control plane's explanation.
        message: String,
    },
    /// Unreachable, timed out or answering 5xx.
    #[error("the control plane is unavailable: {0}")]
    Unavailable(String),
}

/// A completed login, as the control plane records it.
#[derive(Debug, Serialize)]
pub struct NewLogin<'a> {
    /// IdP subject.
    pub subject: &'a str,
    /// Email.
    pub email: &'a str,
    /// Groups.
    pub groups: &'a [String],
    /// IdP issuer.
    pub idp_issuer: &'a str,
    /// IdP session id (`sid`).
    pub idp_session_id: Option<&'a str>,
    /// IdP authentication time, seconds.
    pub auth_time: i64,
    /// Route name.
    pub route: &'a str,
    /// Client address.
    pub source_address: &'a str,
    /// User agent.
    pub user_agent: &'a str,
}

/// A created session.
#[derive(Debug, Deserialize)]
pub struct CreatedSession {
    /// Session id.
    pub session_id: String,
    /// Signed session token: the cookie's value.
    pub token: String,
}

/// A back-channel logout, after the edge verified its token.
#[derive(Debug, Serialize)]
pub struct IdpLogout<'a> {
    /// `iss` of the logout token.
    pub idp_issuer: &'a str,
    /// `sid` of the logout token.
    pub idp_session_id: Option<&'a str>,
    /// `sub` of the logout token.
    pub subject: Option<&'a str>,
}

/// Sessions ended by a back-channel logout.
#[derive(Debug, Deserialize)]
pub struct IdpLogoutResult {
    /// Their ids.
    pub terminated: Vec<String>,
}

/// What a service token stands for.
#[derive(Debug, Clone, Deserialize)]
pub struct ServiceIdentity {
    /// Token id (what revocation names).
    pub id: String,
    /// Token name (the `client_id` claim rules can match).
    pub name: String,
    /// Subject.
    pub subject: String,
    /// Groups.
    pub groups: Vec<String>,
    /// Created, Unix seconds.
    pub issued_at: i64,
    /// Expiry, Unix seconds.
    pub expires_at: Option<i64>,
}

/// A session's state at the control plane.
#[derive(Debug, Clone, Deserialize)]
pub struct SessionStatus {
    /// `active` or `ended`.
    pub state: String,
    /// Why it ended.
    pub end_reason: Option<String>,
    /// Who ended it: `administrator`, `user`, `identity_provider`,
    /// `session_limit`, `system` or `expired`.
    pub ended_by: Option<String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: String,
    message: String,
}

/// The edge's client for the session authority.
pub struct AuthorityClient {
    channel: ChannelConfig,
    client: reqwest::Client,
    lookups: LookupBudget,
}

impl AuthorityClient {
    /// A client for the control plane described by `channel`.
    pub fn new(channel: ChannelConfig) -> Self {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(CALL_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Self { channel, client, lookups: LookupBudget::default() }
    }

    /// The per-client budget of lookups made on behalf of requests
    /// (service tokens, session checks): take from it before such a call.
    pub fn lookup_budget(&self) -> &LookupBudget {
        &self.lookups
    }

    async fn call<T: DeserializeOwned>(&self, path: &str, body: &impl Serialize) -> Result<T, AuthorityError> {
        let url = format!("{}{path}", self.channel.url.trim_end_matches('/'));
        self.send(self.client.post(&url).json(body)).await
    }

    async fn send<T: DeserializeOwned>(&self, request: reqwest::RequestBuilder) -> Result<T, AuthorityError> {
        let response = request
            .bearer_auth(&self.channel.secret)
            .header("x-portcullis-edge-id", &self.channel.edge_id)
            .header("x-portcullis-edge-name", &self.channel.edge_name)
            .send()
            .await
            .map_err(|e| AuthorityError::Unavailable(e.without_url().to_string()))?;
        let status = response.status();
        if status.is_success() {
            return response.json().await.map_err(|e| AuthorityError::Unavailable(e.without_url().to_string()));
        }
        if status.is_client_error() {
            let body = response.json::<ErrorBody>().await.ok();
            let (code, message) = body.map_or_else(
                || ("error".to_owned(), format!("the control plane refused the request ({status})")),
                |b| (b.error.code, b.error.message),
            );
            return Err(AuthorityError::Refused { status: status.as_u16(), code, message });
        }
        Err(AuthorityError::Unavailable(format!("the control plane answered {status}")))
    }

    /// Records a login and returns its session token.
    pub async fn create_session(&self, login: &NewLogin<'_>) -> Result<CreatedSession, AuthorityError> {
        self.call("/edge/v1/sessions", login).await
    }

    /// Ends a session because its user logged out.
    pub async fn logout(&self, session_id: &str) -> Result<(), AuthorityError> {
        self.call::<serde_json::Value>(&format!("/edge/v1/sessions/{session_id}/logout"), &serde_json::json!({}))
            .await
            .map(drop)
    }

    /// Ends the sessions an IdP logged out.
    pub async fn idp_logout(&self, logout: &IdpLogout<'_>) -> Result<IdpLogoutResult, AuthorityError> {
        self.call("/edge/v1/idp-logout", logout).await
    }

    /// Whether a session is active, and if not why it ended.
    pub async fn session_status(&self, session_id: &str) -> Result<SessionStatus, AuthorityError> {
        let safe = !session_id.is_empty() && session_id.bytes().all(|b| b.is_ascii_hexdigit());
        if !safe {
            return Err(AuthorityError::Refused {
                status: 400,
                code: "bad_session".into(),
                message: "not a session id".into(),
            });
        }
        let url = format!("{}/edge/v1/sessions/{session_id}", self.channel.url.trim_end_matches('/'));
        self.send(self.client.get(&url)).await
    }

    /// Looks up a service token.
    pub async fn service_token(&self, token: &str) -> Result<ServiceIdentity, AuthorityError> {
        self.call("/edge/v1/service-tokens/verify", &serde_json::json!({ "token": token })).await
    }
}
