//! The HTTP plumbing every listener shares (admin API, portal, edge
//! channel): body and query extractors that answer in the API's error
//! format, the bearer token of a request and its client address. Below the
//! components, so none of them imports another for it.

use std::net::SocketAddr;

use axum::extract::rejection::{JsonRejection, QueryRejection, StringRejection};
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::Json;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// JSON body that rejects unknown fields with 422 naming the field, and
/// oversized bodies with 413, in the API's error format.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Json(value) = Json::<T>::from_request(req, state).await.map_err(|e: JsonRejection| ApiError::from(e))?;
        Ok(Self(value))
    }
}

/// A text body (policy documents) with oversized bodies answered 413 and
/// non-UTF-8 ones 400, in the API's error format.
pub struct ApiText(pub String);

impl<S: Send + Sync> FromRequest<S> for ApiText {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let text = String::from_request(req, state).await.map_err(|e: StringRejection| ApiError::from(e))?;
        Ok(Self(text))
    }
}

/// Query string in the API's error format.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Query(value) =
            Query::<T>::from_request_parts(parts, state).await.map_err(|e: QueryRejection| ApiError::from(e))?;
        Ok(Self(value))
    }
}

/// The token of an `Authorization: Bearer <token>` value (the scheme is
/// case-insensitive, as HTTP says).
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Compares two secrets in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The client address of a request, when the server recorded it.
pub fn source_address(parts: &Parts) -> String {
    parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string()).unwrap_or_default()
}

/// 405 in the API's error format (the router still adds the `Allow` header).
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not accept that method",
    )
}
