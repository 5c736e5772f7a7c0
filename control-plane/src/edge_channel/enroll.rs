//! `POST /edge/v1/enroll`: an edge registers the public half of a P-256 key
//! it made itself, presenting a one-time join token (or, where the control
//! plane has `edge_secret`, that bootstrap secret) as its bearer; the answer
//! carries the fleet key. `GET /edge/v1/fleet-key` gives the fleet key to an
//! edge that enrolled earlier (it authenticates with an assertion).
//!
//! The fleet key is the root every edge derives its login-state,
//! loop-guard and CLI-code keys from, so that a browser may come back to
//! any edge of the deployment; only enrolled, unrevoked edges get it.

use std::sync::Arc;

use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use p256::pkcs8::{DecodePublicKey, EncodePublicKey, LineEnding};
use portcullis_policy::edge_channel::{EnrollAnswer, EnrollBody, FleetKeyAnswer};
use sha2::{Digest, Sha256};

use super::identity::{valid_edge_id, EdgeCaller, EDGE_CHANNEL_AUDIENCE, MAX_ASSERTION_LIFETIME_S};
use super::JsonAnswer;
use crate::app::App;
use crate::error::ApiError;
use crate::http::bearer_token;
use crate::http::ApiJson;
use crate::model::{now_ms, Actor};
use crate::secrets::{same_secret, token_hash};
use crate::store::NewEnrollment;

pub use crate::secrets::JOIN_TOKEN_PREFIX;

fn unauthorized(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
}

/// The key in canonical SPKI PEM and its fingerprint.
fn parse_public_key(pem: &str) -> Result<(String, String), ApiError> {
    let key = p256::PublicKey::from_public_key_pem(pem.trim())
        .map_err(|_| ApiError::invalid("`public_key` must be a P-256 public key in SPKI PEM (BEGIN PUBLIC KEY)"))?;
    let der = key.to_public_key_der().map_err(ApiError::internal)?;
    let pem = key.to_public_key_pem(LineEnding::LF).map_err(ApiError::internal)?;
    let fingerprint = Sha256::digest(der.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    Ok((pem, fingerprint))
}

/// The hash of the join token presented, or `None` for the bootstrap secret.
fn presented(app: &App, headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let credential = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token)
        .ok_or_else(|| unauthorized("send `Authorization: Bearer <join token>` to enroll"))?;
    if credential.starts_with(JOIN_TOKEN_PREFIX) && credential.len() <= 256 {
        return Ok(Some(token_hash(credential)));
    }
    match &app.config.edge_secret {
        Some(secret) if same_secret(credential, secret) => Ok(None),
        Some(_) => Err(unauthorized("neither a join token nor the bootstrap secret")),
        None => Err(unauthorized("not a join token (`pcjt_…`); create one with `portcullis edges join-token`")),
    }
}

/// Enrolls an edge.
pub async fn enroll(
    State(app): State<Arc<App>>,
    parts: Parts,
    ApiJson(body): ApiJson<EnrollBody>,
) -> JsonAnswer<EnrollAnswer> {
    let join_token_hash = presented(&app, &parts.headers)?;
    if !valid_edge_id(&body.edge_id) {
        return Err(ApiError::invalid("`edge_id`: 1 to 64 letters, digits, `-`, `_` or `.`"));
    }
    let name = body.name.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty());
    if name.as_ref().is_some_and(|n| n.chars().count() > 100) {
        return Err(ApiError::invalid("`name` has at most 100 characters"));
    }
    let (public_key_pem, key_fingerprint) = parse_public_key(&body.public_key)?;
    let actor = Actor { name: format!("edge:{}", body.edge_id), source_address: crate::http::source_address(&parts) };
    let bootstrap = join_token_hash.is_none();
    let enrollment = NewEnrollment { edge_id: body.edge_id, name, public_key_pem, key_fingerprint, join_token_hash };
    let credential = app.store().enroll_edge(&enrollment, &actor, now_ms()).await?.map_err(|refusal| {
        tracing::warn!(edge = %enrollment.edge_id, %refusal, "enrollment refused");
        unauthorized(refusal.to_string())
    })?;
    tracing::info!(edge = %credential.edge_id, bootstrap, key = %&credential.key_fingerprint[..16], "edge enrolled");
    Ok(Json(EnrollAnswer {
        edge_id: credential.edge_id,
        name: credential.name,
        key_fingerprint: credential.key_fingerprint,
        audience: EDGE_CHANNEL_AUDIENCE.to_owned(),
        max_assertion_lifetime_s: MAX_ASSERTION_LIFETIME_S,
        fleet_key: app.edge_trust.fleet_key.clone(),
    }))
}

/// The fleet key, for an enrolled edge.
pub async fn fleet_key(State(app): State<Arc<App>>, _edge: EdgeCaller) -> JsonAnswer<FleetKeyAnswer> {
    Ok(Json(FleetKeyAnswer { fleet_key: app.edge_trust.fleet_key.clone() }))
}
