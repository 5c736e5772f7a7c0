//! OIDC Back-Channel Logout 1.0 logout tokens: signed by the IdP (algorithm
//! allow-list, key from its JWKS), `typ` `logout+jwt`, `iss` the IdP, `aud`
//! this client, `iat` recent, the back-channel-logout event present, no
//! `nonce`, `sid` or `sub` present, and a `jti` never seen before on this
//! edge (replays are refused for as long as the token could be accepted).

use std::collections::HashMap;
use std::sync::Mutex;

use jsonwebtoken::Validation;
use serde_json::Value;

use super::IdentityProvider;

/// The event a logout token must carry.
pub const BACKCHANNEL_LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// How far `iat` may be from now, seconds.
const IAT_WINDOW_S: i64 = 300;
/// Most remembered `jti`s (old ones are dropped first once full).
const MAX_REMEMBERED: usize = 100_000;

/// Who a verified logout token logs out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutRequest {
    /// The IdP.
    pub issuer: String,
    /// IdP session (`sid`).
    pub session: Option<String>,
    /// IdP subject (`sub`).
    pub subject: Option<String>,
}

/// Why a logout token was refused (the text goes back to the IdP).
#[derive(Debug, thiserror::Error)]
pub enum LogoutTokenError {
    /// Any check failed.
    #[error("{0}")]
    Invalid(&'static str),
    /// The IdP's keys could not be fetched.
    #[error("the identity provider's keys are unavailable")]
    Unavailable,
}

/// `jti`s already accepted, with when they stop mattering.
#[derive(Default)]
pub struct ReplayGuard {
    seen: Mutex<HashMap<String, i64>>,
}

impl ReplayGuard {
    /// Records `jti` until `forget_after`; false if it was already recorded.
    fn first_use(&self, jti: &str, now: i64, forget_after: i64) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.len() >= MAX_REMEMBERED {
            seen.retain(|_, until| *until > now);
        }
        if seen.get(jti).is_some_and(|until| *until > now) {
            return false;
        }
        seen.insert(jti.to_owned(), forget_after);
        true
    }
}

/// Verifies a logout token; `now` is Unix seconds.
pub async fn verify(
    provider: &IdentityProvider,
    replays: &ReplayGuard,
    token: &str,
    now: i64,
) -> Result<LogoutRequest, LogoutTokenError> {
    use LogoutTokenError::Invalid;
    let settings = &provider.settings;
    let header = jsonwebtoken::decode_header(token).map_err(|_| Invalid("the logout token is not a JWT"))?;
    if !settings.algorithms.contains(&header.alg) {
        return Err(Invalid("the logout token's algorithm is not accepted"));
    }
    let typ = header.typ.as_deref().unwrap_or("");
    if !typ.eq_ignore_ascii_case("logout+jwt") && !typ.eq_ignore_ascii_case("application/logout+jwt") {
        return Err(Invalid("the logout token's typ is not logout+jwt"));
    }
    let key = provider
        .key(header.kid.as_deref())
        .await
        .map_err(|_| LogoutTokenError::Unavailable)?
        .ok_or(Invalid("the logout token was signed by an unknown key"))?;
    if key.alg.is_some_and(|pinned| pinned != header.alg) {
        return Err(Invalid("the logout token's algorithm does not match its key"));
    }
    let mut validation = Validation::new(header.alg);
    validation.algorithms = vec![header.alg];
    validation.set_audience(&[&settings.client_id]);
    validation.set_issuer(&[&settings.issuer]);
    validation.set_required_spec_claims(&["iss", "aud"]);
    validation.leeway = settings.clock_skew_s;
    let claims = jsonwebtoken::decode::<serde_json::Map<String, Value>>(token, &key.key, &validation)
        .map_err(|_| Invalid("the logout token's signature, issuer, audience or expiry is invalid"))?
        .claims;
    let iat = claims.get("iat").and_then(Value::as_i64).ok_or(Invalid("the logout token has no iat"))?;
    if (now - iat).abs() > IAT_WINDOW_S {
        return Err(Invalid("the logout token was not issued recently"));
    }
    let has_event = claims
        .get("events")
        .and_then(Value::as_object)
        .is_some_and(|events| events.contains_key(BACKCHANNEL_LOGOUT_EVENT));
    if !has_event {
        return Err(Invalid("the logout token lacks the back-channel logout event"));
    }
    if claims.contains_key("nonce") {
        return Err(Invalid("a logout token must not contain a nonce"));
    }
    let text = |name: &str| claims.get(name).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned);
    let (session, subject) = (text("sid"), text("sub"));
    if session.is_none() && subject.is_none() {
        return Err(Invalid("the logout token names neither sid nor sub"));
    }
    let jti = text("jti").ok_or(Invalid("the logout token has no jti"))?;
    let exp = claims.get("exp").and_then(Value::as_i64).unwrap_or(iat + IAT_WINDOW_S);
    if !replays.first_use(&jti, now, exp.max(iat + IAT_WINDOW_S) + 60) {
        return Err(Invalid("the logout token was already used"));
    }
    Ok(LogoutRequest { issuer: settings.issuer.clone(), session, subject })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jti_is_accepted_once_while_it_matters() {
        let guard = ReplayGuard::default();
        assert!(guard.first_use("a", 100, 200));
        assert!(!guard.first_use("a", 150, 250), "replay");
        assert!(guard.first_use("b", 150, 250));
        assert!(guard.first_use("a", 201, 300), "forgotten once the token could no longer be accepted");
    }
}
