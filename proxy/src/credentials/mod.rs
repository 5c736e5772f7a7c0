//! Credentials on a request, and the identity they prove:
//!
//! | presented as | token | verified by |
//! |---|---|---|
//! | the session cookie | Portcullis session token | control plane's keys in the snapshot |
//! | `Authorization: Bearer` | Portcullis session token (`typ` `portcullis-session+jwt`) | same |
//! | `Authorization: Bearer` | IdP access token (JWT) | the IdP's JWKS |
//! | `Authorization: Bearer` | service token (`pcst_…`) | a control-plane lookup, cached |
//!
//! Every kind is cached once verified; revocation never is. A token that
//! is not cached passes a format check first, and lookups at the control
//! plane are budgeted per client ([`lookup_guard`]).

mod cache;
pub mod lookup_guard;
mod service_token;
mod session_cookie;
mod session_token;

use std::net::IpAddr;
use std::sync::Arc;

use pingora_http::RequestHeader;
use portcullis_policy::snapshot::PublicKey;
use portcullis_policy::{ClaimValue, CredentialKind, Identity};

pub use cache::TokenCache;
pub use lookup_guard::{jwt_format_ok, service_token_format_ok, LookupBudget, NegativeCache};
pub use service_token::ServiceTokens;
pub use session_cookie::{PresentedSession, SessionCookies};
pub use session_token::{SessionVerifier, LOGIN_IP_CLAIM, ROUTE_CLAIM, SESSION_TOKEN_AUDIENCE, SESSION_TOKEN_TYPE};

use crate::oidc::access_token::AccessTokenVerifier;

/// Why a credential was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// Not a JWT, or claims missing.
    #[error("the token is malformed")]
    Malformed,
    /// Header algorithm or type not allowed.
    #[error("the token's algorithm or type is not accepted")]
    WrongType,
    /// No published key has the token's `kid`.
    #[error("the token was signed by an unknown key")]
    UnknownKey,
    /// Signature, issuer, audience or time checks failed.
    #[error("the token is invalid or expired")]
    Invalid,
    /// The party that vouches for this kind of token cannot be reached.
    #[error("the token cannot be checked right now")]
    Unavailable,
    /// An OpenID Connect ID token presented as a bearer token.
    #[error("an ID token is not an access token")]
    IdToken,
    /// This client asked the control plane about too many tokens too quickly.
    #[error("too many credential checks from this address; slow down")]
    RateLimited,
}

/// A credential as it arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presented<'r> {
    /// The session cookie's value.
    Cookie(&'r str),
    /// An `Authorization: Bearer` token.
    Bearer(&'r str),
}

/// The value of cookie `name`, if the request carries it.
pub fn cookie<'r>(req: &'r RequestHeader, name: &str) -> Option<&'r str> {
    for value in req.headers.get_all(http::header::COOKIE) {
        let Ok(text) = value.to_str() else { continue };
        for pair in text.split(';') {
            if let Some((key, value)) = pair.trim().split_once('=') {
                if key == name && !value.is_empty() {
                    return Some(value);
                }
            }
        }
    }
    None
}

/// The credential on a request: cookie `cookie_name` first, then
/// `Authorization: Bearer`. Not route-aware: the gate reads a route's
/// session cookie with [`SessionCookies::find`].
pub fn presented<'r>(req: &'r RequestHeader, cookie_name: &str) -> Option<Presented<'r>> {
    if let Some(token) = cookie(req, cookie_name) {
        return Some(Presented::Cookie(token));
    }
    bearer_token(req, http::header::AUTHORIZATION).map(Presented::Bearer)
}

/// The token of a `Bearer` credential in header `name` (`Authorization`,
/// `Proxy-Authorization`). A request with two such headers carries neither:
/// which one a server believes is not ours to guess.
pub fn bearer_token(req: &RequestHeader, name: http::header::HeaderName) -> Option<&str> {
    let mut values = req.headers.get_all(name).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    value
        .to_str()
        .ok()
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|t| !t.is_empty())
}

/// A token refused by its format alone, counted.
fn malformed() -> CredentialError {
    lookup_guard::Refused::Format.count();
    CredentialError::Malformed
}

/// The route a Portcullis session token was issued for (its `route`
/// claim); `None` for other credentials or a token without one.
pub fn session_route(identity: &Identity) -> Option<&str> {
    if identity.credential() != CredentialKind::Browser {
        return None; // an IdP token's own `route` claim is no binding of ours
    }
    match identity.claim(session_token::ROUTE_CLAIM)? {
        ClaimValue::One(route) if !route.is_empty() => Some(route),
        _ => None,
    }
}

/// Every verifier the edge has.
pub struct Credentials {
    /// Portcullis session tokens.
    pub sessions: Arc<SessionVerifier>,
    /// IdP access tokens, when an IdP is configured.
    pub access_tokens: Option<AccessTokenVerifier>,
    /// Service tokens.
    pub service_tokens: ServiceTokens,
}

impl Credentials {
    /// The identity `presented` proves, and whether it came from a cache.
    /// `keys` are the snapshot's session keys; `now` is Unix seconds;
    /// `client_ip` is whom lookups at the control plane are counted against.
    pub async fn identify(
        &self,
        presented: Presented<'_>,
        keys: &[PublicKey],
        now: i64,
        client_ip: IpAddr,
    ) -> Result<(Arc<Identity>, bool), CredentialError> {
        let token = match presented {
            Presented::Cookie(token) => {
                if let Some(identity) = self.sessions.cache_hit(token, CredentialKind::Browser, now) {
                    return Ok((identity, true));
                }
                if !jwt_format_ok(token) {
                    return Err(malformed());
                }
                return self.sessions.verify(token, CredentialKind::Browser, keys, now);
            }
            Presented::Bearer(token) => token,
        };
        if token.starts_with(service_token::PREFIX) {
            // Boxed: the look-up's future (an HTTP call) is large and rare; the
            // request path should not carry its size.
            return Box::pin(self.service_tokens.verify(token, now, client_ip)).await;
        }
        // A cached JWT needs no header decoding: look in both caches first.
        if let Some(identity) = self.sessions.cache_hit(token, CredentialKind::Browser, now) {
            return Ok((identity, true));
        }
        if let Some(identity) = self.access_tokens.as_ref().and_then(|v| v.cache_hit(token, now)) {
            return Ok((identity, true));
        }
        if !jwt_format_ok(token) {
            return Err(malformed());
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| CredentialError::Malformed)?;
        if header.typ.as_deref() == Some(SESSION_TOKEN_TYPE) {
            return self.sessions.verify(token, CredentialKind::Browser, keys, now);
        }
        match &self.access_tokens {
            Some(verifier) => Box::pin(verifier.verify(token, now)).await,
            None => Err(CredentialError::WrongType),
        }
    }
}
