//! Google Workspace: sign the user out of every web and device session
//! (Admin SDK Directory API), as a service account with domain-wide
//! delegation acting for a Workspace admin.
//!
//! ```text
//! POST {token_uri}   grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion={RS256 JWT}
//!      JWT: {"iss": client_email, "sub": admin_email, "scope": …user.security,
//!            "aud": token_uri, "iat", "exp": iat + 3600}
//! POST {api}/admin/directory/v1/users/{email}/signOut   → 204 | 404 (no such user)
//! ```
//!
//! <https://developers.google.com/workspace/admin/directory/reference/rest/v1/users/signOut>,
//! <https://developers.google.com/identity/protocols/oauth2/service-account#httprest>

use std::time::Duration;

use async_trait::async_trait;
use jsonwebtoken::EncodingKey;
use reqwest::StatusCode;

use super::http::{empty_post, encode, no_account, no_email};
use super::oauth::{Grant, ServiceAccount, TokenSource};
use super::settings::{checked_url, SecretError};
use super::{classify, Connector, Delivery, Termination};

/// The one scope `users.signOut` needs.
const SCOPE: &str = "https://www.googleapis.com/auth/admin.directory.user.security";

/// Signs Workspace users out.
pub struct Google {
    client: reqwest::Client,
    url: String,
    tokens: TokenSource,
}

/// What the connector takes from a service account's JSON key.
struct KeyFile {
    client_email: String,
    private_key: EncodingKey,
    private_key_id: Option<String>,
    token_uri: Option<String>,
}

/// Reads a service-account key file's text. Errors name the field, never
/// a value (the file holds the private key).
fn read_key(text: &str) -> Result<KeyFile, String> {
    let json: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("the service-account key is not JSON ({e})"))?;
    let field = |name: &str| json.get(name).and_then(serde_json::Value::as_str).map(str::to_owned);
    let required =
        |name: &str| field(name).ok_or_else(|| format!("the service-account key has no `{name}` (a string)"));
    let pem = required("private_key")?;
    let private_key = EncodingKey::from_rsa_pem(pem.as_bytes())
        .map_err(|e| format!("the service-account key's `private_key` is not an RSA private key in PEM ({e})"))?;
    Ok(KeyFile {
        client_email: required("client_email")?,
        private_key,
        private_key_id: field("private_key_id"),
        token_uri: field("token_uri"),
    })
}

impl Google {
    /// The Admin SDK at `url`, as the service account in `key_json`
    /// acting for `admin_email`; `token_url` overrides the key's `token_uri`.
    pub fn new(
        client: reqwest::Client,
        name: &str,
        url: String,
        token_url: Option<String>,
        key_json: &str,
        admin_email: String,
        timeout: Duration,
    ) -> Result<Self, SecretError> {
        let error = |message: String| SecretError { name: name.to_owned(), message };
        let key = read_key(key_json).map_err(error)?;
        let token_url = match (token_url, key.token_uri) {
            (Some(url), _) => url,
            (None, Some(uri)) => checked_url(&uri, false).map_err(|e| error(format!("token_uri: {e}")))?,
            (None, None) => return Err(error("the service-account key has no `token_uri`; set `token_url`".into())),
        };
        let account = ServiceAccount {
            key: key.private_key,
            key_id: key.private_key_id,
            issuer: key.client_email,
            subject: admin_email,
            scope: SCOPE.into(),
        };
        let tokens = TokenSource::new(client.clone(), token_url, Grant::JwtBearer(account), timeout);
        Ok(Self { client, url, tokens })
    }

    async fn end_sessions(&self, email: &str) -> Result<Delivery, Delivery> {
        let sign_out = format!("{}/admin/directory/v1/users/{}/signOut", self.url, encode(email));
        let answer = self.tokens.send(|| empty_post(&self.client, &sign_out)).await?;
        if answer.status == StatusCode::NOT_FOUND {
            return Ok(no_account());
        }
        Ok(classify(&answer))
    }
}

#[async_trait]
impl Connector for Google {
    async fn deliver(&self, job: &Termination, _idempotency_key: &str) -> Delivery {
        let Some(email) = job.email() else { return no_email(job) };
        self.end_sessions(email).await.unwrap_or_else(|delivery| delivery)
    }
}
