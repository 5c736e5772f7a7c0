//! Okta Universal Logout: Global Token Revocation
//! (draft-parecki-oauth-global-token-revocation; Okta's guide "Build
//! Universal Logout for your app", developer.okta.com/docs/guides/
//! oin-universal-logout-overview). The IdP POSTs `{"sub_id": …}` with
//! `Authorization: Bearer <JWT>` signed by its keys (`iss` its issuer,
//! `aud` this endpoint's URL, `exp`, `jti`); we terminate the user
//! everywhere — edges, relying parties — and demand a new sign-in.
//! Answers: 204 done; 400 malformed `sub_id`; 401 the JWT does not verify;
//! 404 no such user here.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use jsonwebtoken::{decode, decode_header, Algorithm, Validation};
use serde_json::{json, Map, Value};

use super::subject;
use super::Transmitter;
use crate::app::App;
use crate::http::bearer_token;
use crate::model::{now_ms, Actor};
use crate::store::{signal_target, SignalRecord, SignalStep};

/// The path, appended to `public_url` to form the expected `aud`.
pub const PATH: &str = "/signals/global-token-revocation";

fn refusal(status: StatusCode, error: &str, description: impl Into<String>) -> Response {
    (status, Json(json!({ "error": error, "error_description": description.into() }))).into_response()
}

/// Verifies the bearer JWT: the transmitter that signed it and its `jti`.
async fn authenticate(app: &App, token: &str) -> Result<(Arc<Transmitter>, String), String> {
    let header = decode_header(token).map_err(|e| format!("not a signed JWT: {e}"))?;
    if matches!(header.alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
        return Err("symmetric algorithms are refused".into());
    }
    // Which transmitter: the unverified `iss`, checked by the signature below.
    let payload = token.split('.').nth(1).ok_or("not a JWT")?;
    let claims: Value = base64_json(payload).ok_or("the JWT's claims do not decode")?;
    let iss = claims.get("iss").and_then(Value::as_str).ok_or("no iss")?.trim_end_matches('/');
    let transmitter = app
        .signals
        .all()
        .iter()
        .find(|t| t.settings.universal_logout && t.settings.issuer == iss)
        .ok_or_else(|| format!("issuer `{iss}` may not call Universal Logout here"))?;
    let mut keys = transmitter.keys.get(&transmitter.settings, false).await?;
    let key = match keys.find(header.kid.as_deref()) {
        Some(key) => key,
        None => {
            keys = transmitter.keys.get(&transmitter.settings, true).await?;
            keys.find(header.kid.as_deref()).ok_or("no key of that kid")?
        }
    };
    let mut validation = Validation::new(header.alg);
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    validation.set_issuer(&[transmitter.settings.issuer.as_str(), &format!("{}/", transmitter.settings.issuer)]);
    let endpoint = format!("{}{PATH}", app.config.public_url);
    validation.set_audience(&[endpoint.as_str(), transmitter.settings.audience.as_str()]);
    validation.leeway = super::settings::DEFAULT_CLOCK_SKEW_S;
    let verified = decode::<Map<String, Value>>(token, &key.key, &validation).map_err(|e| e.to_string())?.claims;
    let jti = match verified.get("jti").and_then(Value::as_str) {
        Some(jti) if !jti.is_empty() && jti.len() <= 256 => jti.to_owned(),
        _ => return Err("the JWT needs a jti (replays are refused)".into()),
    };
    Ok((Arc::clone(transmitter), jti))
}

fn base64_json(segment: &str) -> Option<Value> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(segment.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// `POST /signals/global-token-revocation`.
pub async fn global_token_revocation(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    let presented = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(bearer_token);
    let Some(token) = presented else {
        return refusal(StatusCode::UNAUTHORIZED, "invalid_token", "send Authorization: Bearer <signed JWT>");
    };
    let (transmitter, jti) = match authenticate(&app, token).await {
        Ok(found) => found,
        Err(reason) => {
            tracing::warn!(%reason, "a Universal Logout call was refused");
            app.metrics.signals.events.with_label_values(&["universal-logout", "-", "rejected:invalid_token"]).inc();
            return refusal(StatusCode::UNAUTHORIZED, "invalid_token", reason);
        }
    };
    let source = format!("universal-logout:{}", transmitter.settings.name);
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return refusal(StatusCode::BAD_REQUEST, "invalid_request", "the body must be JSON with sub_id");
    };
    let issuers = [transmitter.settings.issuer.as_str(), transmitter.settings.login_issuer.as_str()];
    let user = match body.get("sub_id").map(|s| subject::parse(s, &issuers)) {
        Some(Ok(subject::Subject { user: Some(user), .. })) => user,
        Some(Err(error)) => return refusal(StatusCode::BAD_REQUEST, "invalid_request", error.to_string()),
        _ => return refusal(StatusCode::BAD_REQUEST, "invalid_request", "sub_id must name a user"),
    };
    match app.store.user_known(&user).await {
        Ok(true) => {}
        Ok(false) => return refusal(StatusCode::NOT_FOUND, "user_not_found", "no such user here"),
        Err(error) => {
            tracing::error!(%error, "Universal Logout: the store failed");
            return refusal(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", "retry");
        }
    }
    let target = signal_target(Some(&user), None);
    let summary = format!("global token revocation → terminate_user via {source} (jti {jti})");
    let record = SignalRecord {
        source: &source,
        jti: &jti,
        event_types: "global-token-revocation",
        iat_ms: now_ms(),
        target: &target,
        summary: &summary,
        audit_action: "signal.applied",
        acked: true,
    };
    let actor = Actor { name: source.clone(), source_address: String::new() };
    match app.store.apply_signal(&record, &[SignalStep::EndUser(user)], None, &actor, now_ms()).await {
        Ok(applied) => {
            let outcome = if applied.duplicate { "duplicate" } else { "applied" };
            app.metrics.signals.events.with_label_values(&[&source, "global-token-revocation", outcome]).inc();
            if applied.duplicate {
                return refusal(StatusCode::UNAUTHORIZED, "invalid_token", "this JWT was used already");
            }
            StatusCode::NO_CONTENT.into_response()
        }
        Err(error) => {
            tracing::error!(%error, "Universal Logout: the termination failed");
            refusal(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", "the user was not signed out; retry")
        }
    }
}
