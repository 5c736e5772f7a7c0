//! Checking the ID token a login ends with — the browser's code exchange
//! and the CLI's device flow alike: signature (with one key refetch when
//! the IdP may have rotated its keys), issuer, audience, expiry, the
//! allowed algorithms and, for the browser, the nonce; then the user it
//! names (subject, a verified email, groups, the IdP session).

use openidconnect::core::{CoreClient, CoreIdToken, CoreJwsSigningAlgorithm};
use openidconnect::{ClientId, ClientSecret, Nonce};
use serde_json::Value;

use super::to_core_alg;
use crate::oidc::{jwt_payload, string_list, Discovered, IdentityProvider, KeySet};

/// Who logged in.
pub(crate) struct LoggedInUser {
    pub subject: String,
    pub email: String,
    pub groups: Vec<String>,
    pub idp_session: Option<String>,
    pub auth_time: i64,
}

/// Why a login could not be completed.
pub(crate) enum CallbackError {
    /// The IdP (or its keys) cannot be reached.
    Unavailable(String),
    /// The IdP or the token said no.
    Refused(String),
}

/// The subject of `id_token` if its signature and claims check out against `keys`.
fn check(
    provider: &IdentityProvider,
    discovered: &Discovered,
    keys: &KeySet,
    id_token: &CoreIdToken,
    nonce: Option<&Nonce>,
) -> Result<String, String> {
    let settings = &provider.settings;
    let client = CoreClient::from_provider_metadata(
        discovered.metadata.clone().set_jwks(keys.for_id_tokens.clone()),
        ClientId::new(settings.client_id.clone()),
        settings.client_secret.clone().map(ClientSecret::new),
    );
    let allowed: Vec<CoreJwsSigningAlgorithm> = settings.algorithms.iter().filter_map(|a| to_core_alg(*a)).collect();
    let verifier = client.id_token_verifier().set_allowed_algs(allowed);
    let claims = match nonce {
        Some(nonce) => id_token.claims(&verifier, nonce),
        // The device flow has no nonce: the token came straight from the
        // token endpoint to this edge, for a device code only it holds.
        None => id_token.claims(&verifier, |_: Option<&Nonce>| Ok(())),
    };
    claims.map(|c| c.subject().to_string()).map_err(|e| e.to_string())
}

/// Verifies `id_token` and reads the user from it; `now` is Unix seconds.
pub(crate) async fn verify(
    provider: &IdentityProvider,
    discovered: &Discovered,
    id_token: &CoreIdToken,
    nonce: Option<&Nonce>,
    now: i64,
) -> Result<LoggedInUser, CallbackError> {
    let keys = provider.keys().await.map_err(|e| CallbackError::Unavailable(e.to_string()))?;
    let mut verified = check(provider, discovered, &keys, id_token, nonce);
    if verified.is_err() {
        // The IdP may have rotated its keys since we fetched them.
        let keys = provider.refresh_keys().await.map_err(|e| CallbackError::Unavailable(e.to_string()))?;
        verified = check(provider, discovered, &keys, id_token, nonce);
    }
    let subject = verified.map_err(|e| CallbackError::Refused(format!("the ID token is invalid: {e}")))?;
    // The signature is verified: read the claims openidconnect does not model.
    let claims =
        jwt_payload(&id_token.to_string()).ok_or_else(|| CallbackError::Refused("unreadable ID token".into()))?;
    let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_owned);
    let email = text("email").filter(|e| e.contains('@')).ok_or_else(|| {
        CallbackError::Refused("the identity provider did not say who you are (no email in the ID token)".into())
    })?;
    if claims.get("email_verified").and_then(Value::as_bool) == Some(false) {
        return Err(CallbackError::Refused("your email address is not verified at the identity provider".into()));
    }
    let iat = claims.get("iat").and_then(Value::as_i64).unwrap_or(now);
    Ok(LoggedInUser {
        subject,
        email,
        groups: string_list(claims.get(&provider.settings.groups_claim)),
        idp_session: text("sid"),
        auth_time: claims.get("auth_time").and_then(Value::as_i64).unwrap_or(iat),
    })
}
