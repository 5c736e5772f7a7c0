//! RFC 8935 push delivery: a transmitter POSTs one SET
//! (`Content-Type: application/secevent+jwt`) with its bearer token. A
//! valid SET, or one already applied (a retry), is answered 202 with no
//! body; an invalid one 400 with `{"err": <RFC code>, "description": …}`
//! (§2.3); a missing or wrong token, or an unknown transmitter name, 401
//! `authentication_failed`. A store failure is a 503: the SET was not
//! applied and the transmitter retries.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::set::MAX_SET_BYTES;
use super::{receive_set, ReceiveError};
use crate::app::App;
use crate::http::{bearer_token, constant_time_eq};

const AUTHENTICATION_FAILED: &str = "send the bearer token configured for this transmitter";

fn refusal(status: StatusCode, err: &str, description: impl Into<String>) -> Response {
    (status, Json(json!({ "err": err, "description": description.into() }))).into_response()
}

/// `POST /ssf/receiver/{transmitter}`.
pub async fn receive(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // An unknown name is answered like a wrong token: the names of our
    // transmitters (which IdP and security tools we listen to) are not
    // told to whoever asks.
    let Some(transmitter) = app.signals.get(&name).filter(|t| t.push_token.is_some()) else {
        return refusal(StatusCode::UNAUTHORIZED, "authentication_failed", AUTHENTICATION_FAILED);
    };
    let presented = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(bearer_token);
    let expected = transmitter.push_token.as_deref().unwrap_or_default();
    if !presented.is_some_and(|token| constant_time_eq(token.as_bytes(), expected.as_bytes())) {
        app.metrics
            .signals
            .events
            .with_label_values(&[&transmitter.source(), "-", "rejected:authentication_failed"])
            .inc();
        return refusal(StatusCode::UNAUTHORIZED, "authentication_failed", AUTHENTICATION_FAILED);
    }
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !content_type.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/secevent+jwt") {
        return refusal(StatusCode::BAD_REQUEST, "invalid_request", "Content-Type must be application/secevent+jwt");
    }
    if body.len() > MAX_SET_BYTES {
        return refusal(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("the SET is larger than {MAX_SET_BYTES} bytes"),
        );
    }
    let Ok(token) = std::str::from_utf8(&body) else {
        return refusal(StatusCode::BAD_REQUEST, "invalid_request", "the body is not UTF-8");
    };
    match receive_set(&app, transmitter, token.trim(), true).await {
        Ok(_) => StatusCode::ACCEPTED.into_response(),
        Err(ReceiveError::Invalid(error)) => {
            tracing::warn!(transmitter = %name, code = error.code(), %error, "a pushed SET was refused");
            refusal(StatusCode::BAD_REQUEST, error.code(), error.to_string())
        }
        Err(ReceiveError::Store(error)) => {
            tracing::error!(transmitter = %name, %error, "a pushed SET could not be applied");
            refusal(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", "the SET was not applied; retry")
        }
    }
}
