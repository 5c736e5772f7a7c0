//! OAuth 2.0 access tokens for the connectors that need one (Entra,
//! Keycloak, Auth0: client credentials, RFC 6749 §4.4; Google: a JWT bearer
//! assertion, RFC 7523). A [`TokenSource`] asks the token endpoint once,
//! keeps the token until shortly before its `expires_in`, and
//! [`TokenSource::send`] asks again once when the API answers 401 (a token
//! revoked or rotated early).
//!
//! The token endpoint's refusals are classified like any answer
//! ([`classify`]): `invalid_client`, `invalid_grant`, `unauthorized_client`
//! (400/401) fail for good; 429, 5xx and timeouts are retried. Error texts
//! are the endpoint's own words, with the client secret blotted out should
//! the endpoint echo it.

use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use super::{classify, Delivery, HttpCall};

/// Lifetime assumed when the endpoint gives no `expires_in`.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);
/// How long before its expiry a token is replaced.
const EXPIRY_MARGIN: Duration = Duration::from_secs(60);
/// Lifetime of a JWT bearer assertion (Google accepts at most one hour).
const ASSERTION_LIFETIME_S: i64 = 3600;

/// How a token is asked for.
pub enum Grant {
    /// `grant_type=client_credentials` as a form (Entra, Keycloak), the
    /// secret in the body (`client_secret_post`).
    ClientCredentials {
        /// Client id.
        client_id: String,
        /// Client secret.
        client_secret: String,
        /// `scope`, when the endpoint wants one.
        scope: Option<String>,
    },
    /// `client_credentials` as JSON with an `audience` (Auth0).
    ClientCredentialsJson {
        /// Client id.
        client_id: String,
        /// Client secret.
        client_secret: String,
        /// The API the token is for.
        audience: String,
    },
    /// An RS256 assertion signed with a service account's key (Google).
    JwtBearer(ServiceAccount),
}

/// Who a JWT bearer assertion speaks for, and the key that signs it.
pub struct ServiceAccount {
    /// The key.
    pub key: EncodingKey,
    /// Its id, sent as `kid`.
    pub key_id: Option<String>,
    /// `iss`: the service account.
    pub issuer: String,
    /// `sub`: the user it acts as.
    pub subject: String,
    /// `scope`.
    pub scope: String,
}

impl ServiceAccount {
    /// The signed assertion for the token endpoint `audience` (RFC 7523 §3).
    fn assertion(&self, audience: &str) -> Result<String, Delivery> {
        let iat = chrono::Utc::now().timestamp();
        let claims = AssertionClaims {
            iss: &self.issuer,
            sub: &self.subject,
            scope: &self.scope,
            aud: audience,
            iat,
            exp: iat + ASSERTION_LIFETIME_S,
        };
        let mut header = Header::new(Algorithm::RS256);
        header.kid.clone_from(&self.key_id);
        jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|e| Delivery::Failed { error: format!("signing the token assertion: {e}") })
    }
}

#[derive(Serialize)]
struct AssertionClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: i64,
    exp: i64,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: Option<u64>,
}

struct Cached {
    token: String,
    until: Instant,
}

/// Access tokens from one token endpoint, cached.
pub struct TokenSource {
    client: reqwest::Client,
    token_url: String,
    grant: Grant,
    timeout: Duration,
    cached: Mutex<Option<Cached>>,
}

impl TokenSource {
    /// Tokens from `token_url` by `grant`.
    pub fn new(client: reqwest::Client, token_url: String, grant: Grant, timeout: Duration) -> Self {
        Self { client, token_url, grant, timeout, cached: Mutex::new(None) }
    }

    /// A token still valid for a while: the cached one, or a new one.
    /// Concurrent callers wait for the same request.
    pub async fn token(&self) -> Result<String, Delivery> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref().filter(|c| c.until > Instant::now()) {
            return Ok(c.token.clone());
        }
        let answer = self.request().await?;
        let lifetime = answer.expires_in.map_or(DEFAULT_LIFETIME, Duration::from_secs);
        let keep = lifetime.saturating_sub(EXPIRY_MARGIN.min(lifetime / 2));
        *cached = Some(Cached { token: answer.access_token.clone(), until: Instant::now() + keep });
        Ok(answer.access_token)
    }

    /// Drops `token` from the cache (the API refused it).
    async fn forget(&self, token: &str) {
        let mut cached = self.cached.lock().await;
        if cached.as_ref().is_some_and(|c| c.token == token) {
            *cached = None;
        }
    }

    /// Sends the request `build` makes with a bearer token; on a 401 asks
    /// for a new token and sends once more.
    pub async fn send(&self, build: impl Fn() -> reqwest::RequestBuilder) -> Result<HttpCall, Delivery> {
        let token = self.token().await?;
        let call = HttpCall::send(build().bearer_auth(&token), self.timeout).await?;
        if call.status != reqwest::StatusCode::UNAUTHORIZED {
            return Ok(call);
        }
        self.forget(&token).await;
        let token = self.token().await?;
        HttpCall::send(build().bearer_auth(&token), self.timeout).await
    }

    async fn request(&self) -> Result<TokenAnswer, Delivery> {
        let request = self.client.post(&self.token_url).header("accept", "application/json");
        let request = match &self.grant {
            Grant::ClientCredentials { client_id, client_secret, scope } => {
                let mut form = vec![
                    ("grant_type", "client_credentials"),
                    ("client_id", client_id.as_str()),
                    ("client_secret", client_secret.as_str()),
                ];
                if let Some(scope) = scope {
                    form.push(("scope", scope));
                }
                request.form(&form)
            }
            Grant::ClientCredentialsJson { client_id, client_secret, audience } => request.json(&serde_json::json!({
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_secret": client_secret,
                "audience": audience,
            })),
            Grant::JwtBearer(account) => request.form(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                ("assertion", &account.assertion(&self.token_url)?),
            ]),
        };
        let call = HttpCall::send(request, self.timeout).await?;
        if !call.status.is_success() {
            return Err(self.redacted(match classify(&call) {
                Delivery::Retry { error, after } => {
                    Delivery::Retry { error: format!("token endpoint: {error}"), after }
                }
                Delivery::Failed { error } => Delivery::Failed { error: format!("token endpoint: {error}") },
                applied => applied,
            }));
        }
        call.json::<TokenAnswer>().map_err(|_| Delivery::Retry {
            error: format!("token endpoint: {}: the answer holds no access_token", call.status),
            after: None,
        })
    }

    /// `delivery` with the client secret, should the endpoint echo it,
    /// replaced by `[redacted]`.
    fn redacted(&self, delivery: Delivery) -> Delivery {
        let secret = match &self.grant {
            Grant::ClientCredentials { client_secret, .. } | Grant::ClientCredentialsJson { client_secret, .. } => {
                client_secret.as_str()
            }
            Grant::JwtBearer(_) => return delivery,
        };
        let scrub = |error: String| error.replace(secret, "[redacted]");
        match delivery {
            Delivery::Retry { error, after } => Delivery::Retry { error: scrub(error), after },
            Delivery::Failed { error } => Delivery::Failed { error: scrub(error) },
            applied => applied,
        }
    }
}
