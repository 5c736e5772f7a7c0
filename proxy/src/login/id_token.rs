//! Checking the ID token a login ends with — the browser's code exchange
//! and the CLI's device flow alike: signature (with one key refetch when
//! the IdP may have rotated its keys), issuer, audience, expiry, the
//! allowed algorithms and, for the browser, the nonce; then that it names a
//! user with an email. The edge checks early to answer with a clear page;
//! the control plane checks the same token again before it creates a
//! session, and reads who logged in from it alone.

use openidconnect::core::{CoreIdToken, CoreJwsSigningAlgorithm};
use openidconnect::Nonce;
use serde_json::Value;

use super::to_core_alg;
use crate::oidc::{jwt_payload, Discovered, IdentityProvider, KeySet};

/// A login's verified ID token.
pub(crate) struct LoggedInUser {
    /// The ID token, for the control plane to verify again.
    pub id_token: String,
    /// `auth_time` (else `iat`), Unix seconds: the route's `max_age` check.
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
    let client = provider.client(discovered.metadata.clone().set_jwks(keys.for_id_tokens.clone()));
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
    verified.map_err(|e| CallbackError::Refused(format!("the ID token is invalid: {e}")))?;
    // The signature is verified: read the claims openidconnect does not model.
    let claims =
        jwt_payload(&id_token.to_string()).ok_or_else(|| CallbackError::Refused("unreadable ID token".into()))?;
    let email = claims.get("email").and_then(Value::as_str).filter(|e| e.contains('@'));
    if email.is_none() {
        let message = "the identity provider did not say who you are (no email in the ID token)";
        return Err(CallbackError::Refused(message.into()));
    }
    if claims.get("email_verified").and_then(Value::as_bool) == Some(false) {
        return Err(CallbackError::Refused("your email address is not verified at the identity provider".into()));
    }
    let iat = claims.get("iat").and_then(Value::as_i64).unwrap_or(now);
    Ok(LoggedInUser {
        id_token: id_token.to_string(),
        auth_time: claims.get("auth_time").and_then(Value::as_i64).unwrap_or(iat),
    })
}
