//! Who is calling on the edge channel: every call but enrollment carries
//! `Authorization: Bearer <edge assertion>`, a short-lived ES256 JWT the edge
//! signs with the private key it enrolled (`iss` = `sub` = its id, `aud` =
//! [`EDGE_CHANNEL_AUDIENCE`], `iat`, `exp` at most
//! [`MAX_ASSERTION_LIFETIME_S`] later, `jti`). The id comes from the
//! verified token only (`X-Portcullis-Edge-Id` is not read); the key and the
//! revocation come from the store on every call, so a revocation refuses
//! the next call on every replica. The signature of a token this replica
//! verified before against the same key is not checked again
//! ([`super::verified`]).

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::app::App;
use crate::error::ApiError;
use crate::http::{bearer_token, source_address};
use crate::model::{now_ms, Actor};
use crate::store::EdgeCredential;

use super::verified::token_digest;

pub use portcullis_policy::edge_channel::{EDGE_CHANNEL_AUDIENCE, MAX_ASSERTION_LIFETIME_S};
/// Clock difference tolerated between an edge and the control plane, seconds.
pub const CLOCK_SKEW_S: i64 = 30;
/// Longest accepted assertion, bytes.
const MAX_ASSERTION_BYTES: usize = 4096;

/// An authenticated edge.
#[derive(Debug, Clone)]
pub struct EdgeCaller {
    /// Edge id, from the verified assertion.
    pub id: String,
    /// Display name, as enrolled.
    pub name: String,
    /// For the audit log.
    pub actor: Actor,
}

pub use portcullis_policy::edge_channel::valid_edge_id;

/// The claims of an edge assertion.
#[derive(Debug, Deserialize)]
struct AssertionClaims {
    iat: i64,
    exp: i64,
    #[serde(default)]
    jti: String,
}

fn unauthorized(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
}

/// The `sub` of an assertion, before anything is verified: which key to check it with.
fn claimed_edge(token: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Subject {
        sub: String,
    }
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    serde_json::from_slice::<Subject>(&bytes).ok().map(|s| s.sub).filter(|id| valid_edge_id(id))
}

/// Verifies an edge assertion; the edge's credential when it holds.
pub async fn verify_assertion(app: &App, token: &str) -> Result<EdgeCredential, ApiError> {
    if token.len() > MAX_ASSERTION_BYTES {
        return Err(unauthorized("the edge assertion is too long"));
    }
    let header = jsonwebtoken::decode_header(token)
        .map_err(|_| unauthorized("edges send `Authorization: Bearer <edge assertion>` (an ES256 JWT)"))?;
    if header.alg != Algorithm::ES256 {
        return Err(unauthorized("edge assertions are signed with ES256 only"));
    }
    let id = claimed_edge(token).ok_or_else(|| unauthorized("the edge assertion names no valid edge id (`sub`)"))?;
    let credential = app
        .store()
        .edge_credential(&id)
        .await?
        .ok_or_else(|| unauthorized(format!("edge `{id}` is not enrolled: enroll it with a join token first")))?;
    if credential.revoked_ms.is_some() {
        return Err(unauthorized(format!("edge `{id}` was revoked")));
    }
    let digest = token_digest(token);
    let now = now_ms() / 1000;
    if app.edge_trust.verified.holds(&digest, &id, &credential.key_fingerprint, now) {
        return Ok(credential);
    }
    let key = DecodingKey::from_ec_pem(credential.public_key_pem.as_bytes())
        .map_err(|e| ApiError::internal(format!("stored key of edge {id}: {e}")))?;
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_audience(&[EDGE_CHANNEL_AUDIENCE]);
    validation.set_issuer(&[&id]);
    validation.sub = Some(id.clone());
    validation.leeway = CLOCK_SKEW_S as u64;
    validation.set_required_spec_claims(&["exp", "iat", "iss", "sub", "aud"]);
    let claims = jsonwebtoken::decode::<AssertionClaims>(token, &key, &validation)
        .map_err(|e| {
            unauthorized(match e.kind() {
                ErrorKind::ExpiredSignature => "the edge assertion has expired (is the edge's clock right?)",
                ErrorKind::InvalidAudience => "the edge assertion is for another audience",
                ErrorKind::InvalidSignature => "the edge assertion is not signed with this edge's enrolled key",
                ErrorKind::InvalidAlgorithm => "edge assertions are signed with ES256 only",
                ErrorKind::InvalidIssuer | ErrorKind::InvalidSubject => "`iss` and `sub` must both name the edge",
                _ => "the edge assertion is malformed",
            })
        })?
        .claims;
    if claims.iat > now + CLOCK_SKEW_S {
        return Err(unauthorized("the edge assertion was issued in the future (is the edge's clock right?)"));
    }
    if claims.exp <= claims.iat || claims.exp - claims.iat > MAX_ASSERTION_LIFETIME_S {
        return Err(unauthorized(format!("edge assertions last at most {MAX_ASSERTION_LIFETIME_S} s")));
    }
    if claims.jti.is_empty() || claims.jti.len() > 128 {
        return Err(unauthorized("the edge assertion has no `jti`"));
    }
    let accepted_until = claims.exp + CLOCK_SKEW_S;
    app.edge_trust.verified.remember(digest, &id, &credential.key_fingerprint, accepted_until, now);
    Ok(credential)
}

impl FromRequestParts<Arc<App>> for EdgeCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token)
            .ok_or_else(|| unauthorized("edges send `Authorization: Bearer <edge assertion>`"))?;
        let credential = verify_assertion(app, token).await?;
        let id = credential.edge_id;
        let actor = Actor { name: format!("edge:{id}"), source_address: source_address(parts) };
        Ok(Self { id, name: credential.name, actor })
    }
}
