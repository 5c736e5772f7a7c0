//! RFC 8936 poll delivery: one poller per polled transmitter. Each poll
//! carries the `ack`s of SETs applied since the last one (read from the
//! store, so acknowledgements survive a restart: a SET applied but not
//! yet acknowledged when we crashed is acknowledged by the next poll, and
//! if the transmitter hands it over again its `jti` is recognised and it
//! is not applied twice) and the `setErrs` of SETs refused. A SET whose
//! application failed (the store is down) is neither acknowledged nor
//! refused: the transmitter hands it over again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use super::settings::Delivery;
use super::{apply_set, verify_set, ReceiveError, Transmitter};
use crate::app::App;

/// Longest pause after failures.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Largest poll answer read.
const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;
/// Timeout of one poll request.
const POLL_TIMEOUT: Duration = Duration::from_secs(30);

/// Polls `transmitter` until the process ends.
pub async fn run(app: Arc<App>, transmitter: Arc<Transmitter>) {
    let Delivery::Poll { url, interval, max_events } = &transmitter.settings.delivery else { return };
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(3))
        .timeout(POLL_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_default();
    let mut endpoint = url.clone();
    let mut errors: Map<String, Value> = Map::new();
    let mut failures = 0u32;
    loop {
        if endpoint.is_none() {
            endpoint = match super::stream::poll_endpoint(&app, &transmitter).await {
                Ok(found) => Some(found),
                Err(error) => {
                    tracing::warn!(transmitter = %transmitter.settings.name, %error, "no poll endpoint yet");
                    None
                }
            };
        }
        let outcome = match &endpoint {
            Some(endpoint) => poll_once(&app, &transmitter, &http, endpoint, *max_events, &mut errors).await,
            None => Err("no poll endpoint".into()),
        };
        let pause = match outcome {
            Ok(true) => Duration::ZERO,
            Ok(false) => {
                failures = 0;
                *interval
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                tracing::warn!(transmitter = %transmitter.settings.name, %error, failures, "polling failed");
                (*interval * 2u32.saturating_pow(failures.min(10))).min(MAX_BACKOFF)
            }
        };
        tokio::time::sleep(pause).await;
    }
}

/// One poll: acknowledges, fetches, applies. `Ok(true)`: more are available.
async fn poll_once(
    app: &Arc<App>,
    transmitter: &Transmitter,
    http: &reqwest::Client,
    endpoint: &str,
    max_events: u32,
    errors: &mut Map<String, Value>,
) -> Result<bool, String> {
    let source = transmitter.source();
    let acks = app.store.unacked_signals(&source, 1000).await.map_err(|e| e.to_string())?;
    let mut body = json!({ "ack": acks, "maxEvents": max_events, "returnImmediately": true });
    if !errors.is_empty() {
        body["setErrs"] = Value::Object(errors.clone());
    }
    let mut request = http.post(endpoint).json(&body);
    if let Some(token) = &transmitter.client_token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.map_err(|e| e.without_url().to_string())?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("{endpoint} answered {status}"));
    }
    let bytes = super::bounded_body(response, MAX_ANSWER_BYTES).await.map_err(|e| format!("{endpoint}: {e}"))?;
    // The transmitter has our acks and errors now.
    app.store.mark_signals_acked(&source, &acks).await.map_err(|e| e.to_string())?;
    errors.clear();
    let answer: Value = serde_json::from_slice(&bytes).map_err(|e| format!("{endpoint}: not JSON: {e}"))?;
    let sets: HashMap<String, String> = match answer.get("sets") {
        Some(Value::Object(sets)) => {
            sets.iter().filter_map(|(jti, set)| Some((jti.clone(), set.as_str()?.to_owned()))).collect()
        }
        _ => HashMap::new(),
    };
    for (jti, token) in sets {
        let received = Instant::now();
        let result = match verify_set(app, transmitter, &token).await {
            Ok(set) if set.jti != jti => Err(ReceiveError::Invalid(super::set::SetError::InvalidRequest(
                "the SET's jti is not the one it was handed over as".into(),
            ))),
            Ok(set) => apply_set(app, transmitter, &set, false, received).await.map(|_| ()),
            Err(error) => Err(error),
        };
        match result {
            Ok(()) => {}
            Err(ReceiveError::Invalid(error)) => {
                tracing::warn!(transmitter = %transmitter.settings.name, %jti, code = error.code(), %error, "a polled SET was refused");
                errors.insert(jti, json!({ "err": error.code(), "description": error.to_string() }));
            }
            Err(ReceiveError::Store(error)) => return Err(format!("the store failed: {error}")),
        }
    }
    Ok(answer.get("moreAvailable").and_then(Value::as_bool).unwrap_or(false))
}
