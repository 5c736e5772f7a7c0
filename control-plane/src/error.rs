//! The one HTTP error type of the control plane: a status and a stable JSON
//! body `{"error": {"code": "...", "message": "..."}}`. Internal errors are
//! logged with their detail and shown to clients only as "internal error".

use axum::extract::rejection::{JsonRejection, QueryRejection, StringRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::store::StoreError;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// Human-readable message (never internals).
    pub message: String,
}

/// The JSON body of every error (edges read it as
/// `portcullis_policy::edge_channel::ErrorAnswer`; this copy carries the
/// OpenAPI schema, which the IO-free policy crate does not derive).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// Code and message.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable code, e.g. `not_found`.
    pub code: String,
    /// What went wrong.
    pub message: String,
}

impl ApiError {
    /// An error with a status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into() }
    }

    /// 400 with code `bad_request`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 404 with code `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 422 with code `invalid_body`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body", message)
    }

    /// 500; the detail goes to the log only.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error; see the control-plane log")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { error: ErrorDetail { code: self.code.into(), message: self.message } };
        (self.status, Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound => Self::not_found("no such record"),
            // PostgreSQL refuses NUL characters in text ("invalid byte sequence
            // for encoding UTF8: 0x00", SQLSTATE 22021): the client's input, not ours.
            StoreError::Database(sqlx::Error::Database(e)) if e.code().as_deref() == Some("22021") => {
                Self::bad_request("text must not contain NUL characters")
            }
            StoreError::SessionLimit(max) => Self::new(
                StatusCode::CONFLICT,
                "session_limit",
                format!("the user already has {max} active sessions on this route"),
            ),
            StoreError::ReauthenticationRequired => Self::new(
                StatusCode::UNAUTHORIZED,
                "reauthentication_required",
                "this account's sessions were ended after that sign-in: sign in again at the identity provider",
            ),
            StoreError::NotCommitted(why) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_committed",
                format!("the change was not committed, retry: {why}"),
            ),
            other => Self::internal(other),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => {
                Self::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", "the request body is too large")
            }
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Self::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send JSON with `Content-Type: application/json`",
            ),
            // serde's message names the field: "unknown field `x`, expected one of …"
            _ => Self::invalid(rejection.body_text()),
        }
    }
}

impl From<StringRejection> for ApiError {
    fn from(rejection: StringRejection) -> Self {
        match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => {
                Self::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", "the request body is too large")
            }
            _ => Self::bad_request(rejection.body_text()),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::bad_request(rejection.body_text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_failures_map_to_what_a_client_can_do_about_them() {
        let not_committed = ApiError::from(StoreError::NotCommitted("the batch failed".into()));
        assert_eq!((not_committed.status, not_committed.code), (StatusCode::SERVICE_UNAVAILABLE, "not_committed"));
        assert!(not_committed.message.contains("retry"), "{}", not_committed.message);
        let corrupt = ApiError::from(StoreError::Corrupt("row 7".into()));
        assert_eq!(corrupt.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(ApiError::from(StoreError::NotFound).status, StatusCode::NOT_FOUND);
    }
}
