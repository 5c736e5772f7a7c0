//! Stream management as a receiver (SSF 1.0 §8): with `manage_stream`, the
//! control plane reads its stream at the transmitter (the configuration
//! endpoint named by `/.well-known/ssf-configuration`), creates it when
//! there is none — push to our `/ssf/receiver/<name>` with our bearer
//! token, or poll — and asks for a verification event, which arrives like
//! any other SET and is audited. `stream-updated` events are audited too.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::set::configuration_url;
use super::settings::Delivery;
use super::Transmitter;
use crate::app::App;

/// RFC 8935 push, as SSF names it.
const PUSH: &str = "urn:ietf:rfc:8935";
/// RFC 8936 poll.
const POLL: &str = "urn:ietf:rfc:8936";

fn client() -> reqwest::Client {
    portcullis_oidc_discovery::http_client()
}

/// The transmitter's configuration document.
async fn configuration(http: &reqwest::Client, transmitter: &Transmitter) -> Result<Value, String> {
    let url = configuration_url(&transmitter.settings.issuer);
    let body = portcullis_oidc_discovery::fetch_bounded(http, &url).await?;
    serde_json::from_slice(&body).map_err(|e| format!("{url}: {e}"))
}

/// An endpoint the configuration names: https (our bearer tokens travel to it).
fn endpoint(app: &App, document: &Value, name: &str) -> Result<String, String> {
    let url =
        document.get(name).and_then(Value::as_str).ok_or_else(|| format!("the SSF configuration has no {name}"))?;
    crate::relying_parties::settings::checked_url(url, app.config.allow_plain_http).map_err(|e| format!("{name}: {e}"))
}

/// Largest stream description read.
const MAX_STREAM_BYTES: usize = 1024 * 1024;

async fn json_body(response: reqwest::Response) -> Result<Value, String> {
    let body = super::bounded_body(response, MAX_STREAM_BYTES).await?;
    serde_json::from_slice(&body).map_err(|e| format!("the stream is not JSON: {e}"))
}

/// Our stream at the transmitter, created if there is none; read once per
/// process (both the manager and the poller ask for it at start).
async fn ensure_stream(app: &App, transmitter: &Transmitter) -> Result<(Value, Value), String> {
    let mut known = transmitter.stream.lock().await;
    if let Some(found) = known.as_ref() {
        return Ok(found.clone());
    }
    let found = read_or_create(app, transmitter).await?;
    *known = Some(found.clone());
    Ok(found)
}

async fn read_or_create(app: &App, transmitter: &Transmitter) -> Result<(Value, Value), String> {
    let http = client();
    let document = configuration(&http, transmitter).await?;
    let streams_url = endpoint(app, &document, "configuration_endpoint")?;
    let streams_url = streams_url.as_str();
    let token = transmitter.client_token.as_deref().ok_or("no poll_token_* to manage the stream with")?;
    let answer = http.get(streams_url).bearer_auth(token).send().await.map_err(|e| e.without_url().to_string())?;
    let existing = match answer.status().as_u16() {
        200 => {
            let found: Value = json_body(answer).await?;
            match found {
                Value::Array(mut streams) if !streams.is_empty() => Some(streams.swap_remove(0)),
                Value::Object(_) => Some(found),
                _ => None,
            }
        }
        404 => None,
        status => return Err(format!("{streams_url} answered {status} to reading our stream")),
    };
    if let Some(stream) = existing {
        return Ok((document, stream));
    }
    let delivery = match &transmitter.settings.delivery {
        Delivery::Push { .. } => json!({
            "method": PUSH,
            "endpoint_url": format!("{}/ssf/receiver/{}", app.config.public_url, transmitter.settings.name),
            "authorization_header": format!("Bearer {}", transmitter.push_token.as_deref().unwrap_or_default()),
        }),
        Delivery::Poll { .. } => json!({ "method": POLL }),
    };
    let events: Vec<String> = super::actions::all_uris();
    let request = json!({ "delivery": delivery, "events_requested": events, "description": "Portcullis" });
    let answer = http
        .post(streams_url)
        .bearer_auth(token)
        .json(&request)
        .send()
        .await
        .map_err(|e| e.without_url().to_string())?;
    let status = answer.status();
    if !status.is_success() {
        return Err(format!("{streams_url} answered {status} to creating our stream"));
    }
    let stream: Value = json_body(answer).await?;
    tracing::info!(transmitter = %transmitter.settings.name, stream = ?stream.get("stream_id"), "created our stream");
    Ok((document, stream))
}

/// The poll endpoint of our stream at the transmitter.
pub async fn poll_endpoint(app: &App, transmitter: &Transmitter) -> Result<String, String> {
    let (_, stream) = ensure_stream(app, transmitter).await?;
    let url =
        stream.pointer("/delivery/endpoint_url").and_then(Value::as_str).ok_or("the stream names no poll endpoint")?;
    crate::relying_parties::settings::checked_url(url, app.config.allow_plain_http)
}

/// Makes sure our stream exists and asks for a verification event; retried
/// with backoff until the transmitter answers.
pub async fn manage(app: Arc<App>, transmitter: Arc<Transmitter>) {
    let mut pause = Duration::from_secs(1);
    loop {
        match verify(&app, &transmitter).await {
            Ok(()) => return,
            Err(error) => tracing::warn!(transmitter = %transmitter.settings.name, %error, "stream management failed"),
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(60));
    }
}

async fn verify(app: &App, transmitter: &Transmitter) -> Result<(), String> {
    let (document, stream) = ensure_stream(app, transmitter).await?;
    let url = endpoint(app, &document, "verification_endpoint")?;
    let stream_id = stream.get("stream_id").and_then(Value::as_str).ok_or("the stream has no stream_id")?;
    let state = format!("portcullis-{}", crate::model::now_ms());
    let token = transmitter.client_token.as_deref().unwrap_or_default();
    let answer = client()
        .post(&url)
        .bearer_auth(token)
        .json(&json!({ "stream_id": stream_id, "state": state }))
        .send()
        .await
        .map_err(|e| e.without_url().to_string())?;
    if !answer.status().is_success() {
        return Err(format!("{url} answered {} to our verification request", answer.status()));
    }
    tracing::info!(transmitter = %transmitter.settings.name, %stream_id, "asked for a verification event");
    Ok(())
}
