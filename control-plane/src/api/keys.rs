//! `/api/v1/signing-keys/rotate`: replaces the session-signing key. The old
//! public key stays published for a week so sessions it signed keep working.

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
