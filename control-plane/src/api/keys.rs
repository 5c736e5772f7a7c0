//! `/api/v1/signing-keys/rotate`: replaces the session-signing key. The old
//! public key stays published for a week so sessions it signed keep working.
//! `/api/v1/stream-key`: the public key edges verify the stream with, to pin
//! as their `stream_public_key`.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Caller;
use crate::app::App;
use crate::error::ApiError;

/// The rotation's change.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Rotated {
    /// Change-log sequence that publishes the new key set.
    pub seq: u64,
}

/// Rotates the session-signing key.
#[utoipa::path(post, path = "/api/v1/signing-keys/rotate", responses((status = 200, body = Rotated)))]
pub async fn rotate(State(app): State<Arc<App>>, caller: Caller) -> Result<Json<Rotated>, ApiError> {
    caller.require("admin")?;
    let seq = app.authority.rotate(app.store(), &caller.actor).await?;
    app.feed.publish(seq);
    Ok(Json(Rotated { seq }))
}

/// The public stream-signing key.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StreamKey {
    /// `Ed25519`.
    pub algorithm: String,
    /// `ed25519:<base64url>`: the value of an edge's `stream_public_key`.
    pub public_key: String,
    /// Key id (16 hex digits), as every frame carries it.
    pub kid: String,
    /// The same key as a PEM `PUBLIC KEY` block (also accepted by edges).
    pub pem: String,
}

/// The public key every frame of the edge stream is signed with.
#[utoipa::path(get, path = "/api/v1/stream-key", responses((status = 200, body = StreamKey)))]
pub async fn stream_key(State(app): State<Arc<App>>, caller: Caller) -> Result<Json<StreamKey>, ApiError> {
    caller.require("admin")?;
    let public = app.stream_key.public_key();
    Ok(Json(StreamKey {
        algorithm: portcullis_policy::stream_key::ALGORITHM.into(),
        public_key: public.to_string(),
        kid: public.key_id().to_string(),
        pem: public.to_pem(),
    }))
}
