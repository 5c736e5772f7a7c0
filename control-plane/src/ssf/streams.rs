//! SSF 1.0 §8.1: stream management, status and verification. A receiver
//! (an API token with the `ssf` scope) sees and changes only the streams it
//! made; a token with `admin` sees all of them.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{SsfState, EVENTS_SUPPORTED, POLL_METHOD, PUSH_METHOD};
use crate::api::auth::Caller;
use crate::app::App;
use crate::error::ApiError;
use crate::http::{ApiJson, ApiQuery};
use crate::model::now_ms;
use crate::store::SsfStream;

/// Most event types a stream may ask for.
const MAX_EVENTS_REQUESTED: usize = 32;
/// Longest push Authorization header.
const MAX_AUTHORIZATION: usize = 4096;
/// Most streams one receiver may have: each termination enqueues an event
/// per stream inside its own transaction, so they must stay few.
pub const MAX_STREAMS_PER_RECEIVER: usize = 10;

/// `delivery` of a stream configuration.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    /// `urn:ietf:rfc:8935` (push) or `urn:ietf:rfc:8936` (poll).
    pub method: String,
    /// Push: where SETs are posted; poll: set by the transmitter.
    pub endpoint_url: Option<String>,
    /// Push: the Authorization header sent with each SET (write-only).
    #[serde(skip_serializing)]
    pub authorization_header: Option<String>,
}

/// Without the Authorization header: a debug print of a request must not
/// show the receiver's secret.
impl std::fmt::Debug for DeliveryConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryConfig")
            .field("method", &self.method)
            .field("endpoint_url", &self.endpoint_url)
            .field("authorization_header", &self.authorization_header.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// A stream configuration as receivers send it. Transmitter-supplied
/// fields are accepted (a PUT may echo them) and ignored.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamRequest {
    /// The stream (PUT, PATCH).
    pub stream_id: Option<String>,
    /// Delivery.
    pub delivery: Option<DeliveryConfig>,
    /// Event types wanted.
    pub events_requested: Option<Vec<String>>,
    /// Free text.
    pub description: Option<String>,
    /// Transmitter-supplied, ignored.
    pub iss: Option<Value>,
    /// Transmitter-supplied, ignored.
    pub aud: Option<Value>,
    /// Transmitter-supplied, ignored.
    pub events_supported: Option<Value>,
    /// Transmitter-supplied, ignored.
    pub events_delivered: Option<Value>,
    /// Transmitter-supplied, ignored.
    pub min_verification_interval: Option<Value>,
}

/// A stream configuration as the transmitter answers it.
#[derive(Debug, Serialize)]
pub struct StreamConfig {
    stream_id: String,
    iss: String,
    aud: String,
    delivery: DeliveryConfig,
    events_supported: Vec<String>,
    events_requested: Vec<String>,
    events_delivered: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
}

fn config(state: &SsfState, s: &SsfStream) -> StreamConfig {
    let (method, endpoint_url) = if s.method == "push" {
        (PUSH_METHOD, s.endpoint_url.clone())
    } else {
        (POLL_METHOD, Some(format!("{}/ssf/poll/{}", state.issuer(), s.id)))
    };
    StreamConfig {
        stream_id: s.id.clone(),
        iss: state.issuer().to_owned(),
        aud: s.audience.clone(),
        delivery: DeliveryConfig { method: method.into(), endpoint_url, authorization_header: None },
        events_supported: EVENTS_SUPPORTED.iter().map(|e| (*e).to_owned()).collect(),
        events_requested: s.events_requested.clone(),
        events_delivered: s.events_delivered.clone(),
        description: s.description.clone(),
    }
}

/// `?stream_id=`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    /// The stream.
    pub stream_id: Option<String>,
}

/// The stream `id` if the caller may see it (404 otherwise: another
/// receiver's streams are not even confirmed to exist).
pub async fn owned(app: &App, caller: &Caller, id: &str) -> Result<SsfStream, ApiError> {
    caller.require("ssf")?;
    match app.store().ssf_stream(id).await? {
        Some(stream) if stream.owner == caller.principal() || caller.require("admin").is_ok() => Ok(stream),
        _ => Err(ApiError::not_found(format!("no stream `{id}`"))),
    }
}

/// Applies `request` to `stream` (all of it for a PUT, what it names for a PATCH).
fn apply(state: &SsfState, stream: &mut SsfStream, request: StreamRequest, replace: bool) -> Result<(), ApiError> {
    if let Some(delivery) = request.delivery {
        match delivery.method.as_str() {
            PUSH_METHOD => {
                let url = delivery
                    .endpoint_url
                    .ok_or_else(|| ApiError::invalid("push delivery needs `delivery.endpoint_url`"))?;
                // Where it points first: that refusal holds whatever the scheme.
                state.check_endpoint(url.trim()).map_err(ApiError::invalid)?;
                let url = crate::relying_parties::settings::checked_url(&url, state.allow_plain_http)
                    .map_err(ApiError::invalid)?;
                stream.method = "push".into();
                stream.endpoint_url = Some(url);
                stream.authorization_sealed = match delivery.authorization_header {
                    Some(h)
                        if h.len() > MAX_AUTHORIZATION
                            || h.trim().is_empty()
                            || reqwest::header::HeaderValue::from_str(h.trim()).is_err()
                            || h.chars().any(char::is_control) =>
                    {
                        return Err(ApiError::invalid(
                            "`delivery.authorization_header` must be one line of at most 4096 characters, \
                             without control characters",
                        ))
                    }
                    Some(h) => Some(state.seal_authorization(&stream.id, h.trim())),
                    None => None,
                };
            }
            POLL_METHOD => {
                if delivery.authorization_header.is_some() {
                    return Err(ApiError::invalid("poll delivery takes no `authorization_header`"));
                }
                stream.method = "poll".into();
                stream.endpoint_url = None;
                stream.authorization_sealed = None;
            }
            other => {
                return Err(ApiError::invalid(format!(
                    "delivery method `{other}` is not supported; use {PUSH_METHOD} or {POLL_METHOD}"
                )))
            }
        }
    } else if replace {
        return Err(ApiError::invalid("`delivery` is required"));
    }
    if let Some(requested) = request.events_requested {
        if requested.len() > MAX_EVENTS_REQUESTED || requested.iter().any(|e| e.len() > 256) {
            return Err(ApiError::invalid("`events_requested`: at most 32 event types of at most 256 characters"));
        }
        stream.events_delivered =
            EVENTS_SUPPORTED.iter().filter(|e| requested.iter().any(|r| r == *e)).map(|e| (*e).to_owned()).collect();
        stream.events_requested = requested;
    } else if replace {
        stream.events_requested.clear();
        stream.events_delivered.clear();
    }
    if request.description.is_some() || replace {
        if request.description.as_ref().is_some_and(|d| d.chars().count() > 500) {
            return Err(ApiError::invalid("`description`: at most 500 characters"));
        }
        stream.description = request.description;
    }
    Ok(())
}

/// `POST /ssf/streams`: a new stream, enabled.
pub async fn create(
    State(app): State<Arc<App>>,
    caller: Caller,
    ApiJson(request): ApiJson<StreamRequest>,
) -> Result<(StatusCode, Json<StreamConfig>), ApiError> {
    caller.require("ssf")?;
    if request.stream_id.is_some() {
        return Err(ApiError::invalid("`stream_id` is chosen by the transmitter"));
    }
    if app.store().ssf_streams(Some(caller.principal())).await?.len() >= MAX_STREAMS_PER_RECEIVER {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "too_many_streams",
            format!("a receiver has at most {MAX_STREAMS_PER_RECEIVER} streams; delete one first"),
        ));
    }
    let now = now_ms();
    let mut stream = SsfStream {
        id: crate::secrets::new_id(),
        owner: caller.principal().to_owned(),
        audience: caller.actor.name.strip_prefix("token:").unwrap_or(&caller.actor.name).to_owned(),
        method: String::new(),
        endpoint_url: None,
        authorization_sealed: None,
        events_requested: Vec::new(),
        events_delivered: Vec::new(),
        description: None,
        status: "enabled".into(),
        status_reason: None,
        created_ms: now,
        updated_ms: now,
    };
    apply(&app.ssf, &mut stream, request, true)?;
    app.store().create_ssf_stream(&stream, &caller.actor, now).await?;
    Ok((StatusCode::CREATED, Json(config(&app.ssf, &stream))))
}

/// `GET /ssf/streams[?stream_id=]`: one stream, or all of the caller's.
pub async fn read(
    State(app): State<Arc<App>>,
    caller: Caller,
    ApiQuery(query): ApiQuery<StreamQuery>,
) -> Result<Json<Value>, ApiError> {
    if let Some(id) = query.stream_id {
        let stream = owned(&app, &caller, &id).await?;
        return Ok(Json(serde_json::to_value(config(&app.ssf, &stream)).map_err(ApiError::internal)?));
    }
    caller.require("ssf")?;
    let owner = if caller.require("admin").is_ok() { None } else { Some(caller.principal()) };
    let streams = app.store().ssf_streams(owner).await?;
    let configs: Vec<StreamConfig> = streams.iter().map(|s| config(&app.ssf, s)).collect();
    Ok(Json(serde_json::to_value(configs).map_err(ApiError::internal)?))
}

async fn change(
    app: &App,
    caller: &Caller,
    request: StreamRequest,
    replace: bool,
) -> Result<Json<StreamConfig>, ApiError> {
    let id = request.stream_id.clone().ok_or_else(|| ApiError::invalid("`stream_id` is required"))?;
    let mut stream = owned(app, caller, &id).await?;
    apply(&app.ssf, &mut stream, request, replace)?;
    if !app.store().update_ssf_stream(&stream, &caller.actor, now_ms()).await? {
        return Err(ApiError::not_found(format!("no stream `{id}`")));
    }
    Ok(Json(config(&app.ssf, &stream)))
}

/// `PATCH /ssf/streams`: changes what the body names.
pub async fn update(
    State(app): State<Arc<App>>,
    caller: Caller,
    ApiJson(request): ApiJson<StreamRequest>,
) -> Result<Json<StreamConfig>, ApiError> {
    change(&app, &caller, request, false).await
}

/// `PUT /ssf/streams`: replaces the receiver-supplied configuration.
pub async fn replace(
    State(app): State<Arc<App>>,
    caller: Caller,
    ApiJson(request): ApiJson<StreamRequest>,
) -> Result<Json<StreamConfig>, ApiError> {
    change(&app, &caller, request, true).await
}

/// `DELETE /ssf/streams?stream_id=`: the stream and its undelivered events.
pub async fn delete(
    State(app): State<Arc<App>>,
    caller: Caller,
    ApiQuery(query): ApiQuery<StreamQuery>,
) -> Result<StatusCode, ApiError> {
    let id = query.stream_id.ok_or_else(|| ApiError::bad_request("`stream_id` is required"))?;
    owned(&app, &caller, &id).await?;
    app.store().delete_ssf_stream(&id, &caller.actor, now_ms()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// SSF 1.0 §8.1.2: a stream's status.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamStatus {
    /// The stream.
    pub stream_id: String,
    /// `enabled`, `paused` (events held) or `disabled` (events dropped).
    pub status: String,
    /// Why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `GET /ssf/streams/status?stream_id=`.
pub async fn status(
    State(app): State<Arc<App>>,
    caller: Caller,
    ApiQuery(query): ApiQuery<StreamQuery>,
) -> Result<Json<StreamStatus>, ApiError> {
    let id = query.stream_id.ok_or_else(|| ApiError::bad_request("`stream_id` is required"))?;
    let stream = owned(&app, &caller, &id).await?;
    Ok(Json(StreamStatus { stream_id: stream.id, status: stream.status, reason: stream.status_reason }))
}

/// `POST /ssf/streams/status`: enable, pause or disable a stream.
pub async fn set_status(
    State(app): State<Arc<App>>,
    caller: Caller,
    ApiJson(request): ApiJson<StreamStatus>,
) -> Result<Json<StreamStatus>, ApiError> {
    if !["enabled", "paused", "disabled"].contains(&request.status.as_str()) {
        return Err(ApiError::invalid("`status` is enabled, paused or disabled"));
    }
    if request.reason.as_ref().is_some_and(|r| r.chars().count() > 500) {
        return Err(ApiError::invalid("`reason`: at most 500 characters"));
    }
    let mut stream = owned(&app, &caller, &request.stream_id).await?;
    stream.status = request.status;
    stream.status_reason = request.reason;
    app.store().update_ssf_stream(&stream, &caller.actor, now_ms()).await?;
    Ok(Json(StreamStatus { stream_id: stream.id, status: stream.status, reason: stream.status_reason }))
}

/// SSF 1.0 §8.1.4: a verification request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// The stream.
    pub stream_id: String,
    /// Echoed in the verification event.
    pub state: Option<String>,
}

/// `POST /ssf/verify`: a verification event is sent on the stream.
pub async fn verify(
    State(app): State<Arc<App>>,
    caller: Caller,
    ApiJson(request): ApiJson<VerifyRequest>,
) -> Result<StatusCode, ApiError> {
    if request.state.as_ref().is_some_and(|s| s.len() > 1024) {
        return Err(ApiError::invalid("`state`: at most 1024 characters"));
    }
    let stream = owned(&app, &caller, &request.stream_id).await?;
    if stream.status != "enabled" {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "stream_not_enabled",
            format!("the stream is {}", stream.status),
        ));
    }
    if app.store().enqueue_ssf_verification(&stream, request.state.as_deref(), now_ms()).await?.is_none() {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "verification_pending",
            "the stream's previous verification event is not yet delivered or acknowledged",
        ));
    }
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_debug_print_of_a_request_hides_the_push_secret() {
        let request: StreamRequest = serde_json::from_value(serde_json::json!({ "delivery": {
            "method": PUSH_METHOD, "endpoint_url": "https://rx.example", "authorization_header": "Bearer s3cr3t-rx" } }))
        .unwrap();
        let printed = format!("{request:?}");
        assert!(!printed.contains("s3cr3t-rx") && printed.contains("<redacted>"), "{printed}");
    }
}
