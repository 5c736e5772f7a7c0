//! Which credential a request carries for the route it is for, what it
//! proves, and what its `Authorization` header may do upstream.
//!
//! HTTP: the route's own session cookie, else `Authorization: Bearer`.
//! CONNECT: `Proxy-Authorization: Bearer`, else `Authorization: Bearer`,
//! else the route's cookie. A Portcullis session token counts only on the
//! route named in its `route` claim: anywhere else it is as if no
//! credential had been sent, so a protected app that sees (or logs) its
//! visitors' tokens cannot replay them on another route.

use std::net::IpAddr;
use std::sync::Arc;

use pingora_http::RequestHeader;
use portcullis_policy::{ClaimValue, CredentialKind, Identity, Snapshot};

use super::{Arrival, Gate, Refusal};
use crate::credentials::{bearer_token, CredentialError, Presented, SESSION_TOKEN_TYPE};
use crate::upstream_headers::AuthorizationUse;

/// What the credential step found.
pub(super) struct Found {
    /// The identity, when a credential valid on this route was presented.
    pub identity: Option<Arc<Identity>>,
    /// What `Authorization` carried.
    pub authorization: AuthorizationUse,
}

/// What the client's `Authorization` header holds, judged by its content
/// (whether or not it was the credential the edge used).
pub fn presented_authorization(head: &RequestHeader) -> AuthorizationUse {
    if head.headers.get_all(http::header::AUTHORIZATION).iter().count() > 1 {
        // Two credentials: whichever the upstream believes, it gets neither.
        return AuthorizationUse::Edge;
    }
    let Some(token) = bearer_token(head, http::header::AUTHORIZATION) else { return AuthorizationUse::Foreign };
    if token.starts_with("pcst_") {
        return AuthorizationUse::Edge;
    }
    if token.split('.').count() != 3 {
        return AuthorizationUse::Foreign;
    }
    match jsonwebtoken::decode_header(token) {
        Ok(header) if header.typ.as_deref() == Some(SESSION_TOKEN_TYPE) => AuthorizationUse::Edge,
        Ok(_) => AuthorizationUse::IdpToken,
        // Unreadable: nobody downstream needs it, and it may be a mangled credential of ours.
        Err(_) => AuthorizationUse::Edge,
    }
}

/// The route a session token was issued for.
fn session_route(identity: &Identity) -> Option<&str> {
    match identity.claim("route")? {
        ClaimValue::One(route) => Some(route),
        ClaimValue::Many(_) => None,
    }
}

/// The identity the request's credential proves on `route`.
pub(super) async fn identify(
    gate: &Gate,
    head: &RequestHeader,
    arrival: &Arrival<'_>,
    route: &str,
    client_ip: IpAddr,
    snapshot: &Snapshot,
    now: i64,
) -> Result<Found, Refusal> {
    let authorization = presented_authorization(head);
    let cookie = || gate.cookies.find(head, route).map(Presented::Cookie);
    let presented = match arrival {
        Arrival::Http { .. } => {
            cookie().or_else(|| bearer_token(head, http::header::AUTHORIZATION).map(Presented::Bearer))
        }
        Arrival::Connect { .. } => bearer_token(head, http::header::PROXY_AUTHORIZATION)
            .or_else(|| bearer_token(head, http::header::AUTHORIZATION))
            .map(Presented::Bearer)
            .or_else(cookie),
    };
    let Some(presented) = presented else { return Ok(Found { identity: None, authorization }) };
    let identity = match gate.credentials.identify(presented, snapshot.signing_keys(), now, client_ip).await {
        Ok((identity, hit)) => {
            if hit { &gate.metrics.token_cache_hits } else { &gate.metrics.token_cache_misses }.inc();
            identity
        }
        Err(CredentialError::Unavailable) => return Err(Refusal::CredentialUnavailable),
        Err(CredentialError::RateLimited) => return Err(Refusal::RateLimited),
        Err(error) => return Err(Refusal::LoginRequired(format!("Your credential was refused: {error}."))),
    };
    let bound_elsewhere = identity.credential() == CredentialKind::Browser && session_route(&identity) != Some(route);
    if bound_elsewhere {
        return Ok(Found { identity: None, authorization });
    }
    Ok(Found { identity: Some(identity), authorization })
}
