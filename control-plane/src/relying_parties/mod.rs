//! Relying parties: the services that trust the same identities as the
//! edges (the SSO, Slack, a webhook…) and whose sessions a termination must
//! end too. Each is a [`Connector`] built from a `[[relying_parties]]` entry
//! of the configuration; the outbox worker (`crate::outbox`) hands it one
//! [`Termination`] at a time and records the [`Delivery`] it answers.
//!
//! Contract of a connector: find the user by email (or subject) where the
//! API needs an id, end their sessions, and classify the answer — applied,
//! retry (network failure, 5xx, 408, 429 with its `Retry-After`), or failed
//! for good (the API refused: wrong credentials, missing scope). It never
//! panics and never logs a secret.

mod auth0;
mod entra;
mod google;
mod http;
mod keycloak;
mod oauth;
mod okta;
pub mod settings;
mod slack;
pub mod webhook;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

pub use crate::termination::{Action, Termination};
pub use http::{classify, client as http_client, HttpCall};
pub use settings::{ConnectorKind, RelyingPartySettings, SecretSource};

/// What one delivery attempt achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The relying party ended the sessions (or the user has none there).
    Applied {
        /// What the relying party said, shown in the receipt
        /// ("no account at this relying party").
        detail: Option<String>,
    },
    /// Try again later: the relying party was unreachable, overloaded or
    /// rate-limited us (`after` from its `Retry-After`).
    Retry {
        /// Why, as the relying party said it.
        error: String,
        /// The wait it asked for.
        after: Option<Duration>,
    },
    /// The relying party refused for good; retrying cannot help until an
    /// admin fixes something (credentials, scopes) and retries by hand.
    Failed {
        /// Why, as the relying party said it.
        error: String,
    },
}

impl Delivery {
    /// Applied, with nothing more to say.
    pub fn applied() -> Self {
        Self::Applied { detail: None }
    }
}

/// Ends a user's sessions at one relying party.
#[async_trait]
pub trait Connector: Send + Sync {
    /// Delivers `job`; `idempotency_key` is the same on every attempt of
    /// the same job (sent where the API takes one).
    async fn deliver(&self, job: &Termination, idempotency_key: &str) -> Delivery;
}

/// A configured relying party: its settings and its connector.
#[derive(Clone)]
pub struct RelyingParty {
    /// Settings (name, actions, limits).
    pub settings: Arc<RelyingPartySettings>,
    /// The connector.
    pub connector: Arc<dyn Connector>,
}

/// Builds the connector of every configured relying party, reading their
/// secrets (files, environment) now so a missing one stops the start.
pub fn build(all: &[RelyingPartySettings]) -> Result<Vec<RelyingParty>, settings::SecretError> {
    let client = http::client();
    all.iter()
        .map(|settings| {
            let name = settings.name.as_str();
            let timeout = settings.timeout;
            let connector: Arc<dyn Connector> = match &settings.kind {
                ConnectorKind::Webhook { url, secret } => {
                    Arc::new(webhook::Webhook::new(client.clone(), url.clone(), secret.read_for(name)?, timeout))
                }
                ConnectorKind::Okta { url, secret, revoke_oauth_tokens } => Arc::new(okta::Okta::new(
                    client.clone(),
                    url.clone(),
                    secret.read_for(name)?,
                    *revoke_oauth_tokens,
                    timeout,
                )),
                ConnectorKind::Entra { url, token_url, client_id, secret } => Arc::new(entra::Entra::new(
                    client.clone(),
                    url.clone(),
                    token_url.clone(),
                    client_id.clone(),
                    secret.read_for(name)?,
                    timeout,
                )),
                ConnectorKind::Google { url, token_url, secret, admin_email } => Arc::new(google::Google::new(
                    client.clone(),
                    name,
                    url.clone(),
                    token_url.clone(),
                    &secret.read_for(name)?,
                    admin_email.clone(),
                    timeout,
                )?),
                ConnectorKind::Keycloak { url, realm, client_id, secret } => Arc::new(keycloak::Keycloak::new(
                    client.clone(),
                    url,
                    realm,
                    client_id.clone(),
                    secret.read_for(name)?,
                    timeout,
                )),
                ConnectorKind::Auth0 { url, token_url, client_id, secret } => Arc::new(auth0::Auth0::new(
                    client.clone(),
                    url.clone(),
                    token_url.clone(),
                    client_id.clone(),
                    secret.read_for(name)?,
                    timeout,
                )),
                ConnectorKind::Slack { url, secret } => {
                    Arc::new(slack::Slack::new(client.clone(), url.clone(), secret.read_for(name)?, timeout))
                }
            };
            Ok(RelyingParty { settings: Arc::new(settings.clone()), connector })
        })
        .collect()
}
