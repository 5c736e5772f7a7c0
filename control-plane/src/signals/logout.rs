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
use portcullis_oidc_discovery::VerificationKey;
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
        .ok_or("this issuer may not call Universal Logout here")?;
    let mut keys = transmitter.keys.get(&transmitter.settings, false).await?;
    let key = match keys.find(header.kid.as_deref()) {
        Some(key) => key,
        None => {
            keys = transmitter.keys.get(&transmitter.settings, true).await?;
            keys.find(header.kid.as_deref()).ok_or("no key of that kid")?
        }
    };
    let endpoint = format!("{}{PATH}", app.config.public_url.trim_end_matches('/'));
    let jti = check_token(token, &header, &key, &transmitter.settings.issuer, &endpoint)?;
    Ok((Arc::clone(transmitter), jti))
}

/// Checks the bearer JWT against `key`: not a Security Event Token (those
/// are for the receiver), the key's pinned `alg`, `iss`, `aud` naming this
/// endpoint (only: a token addressed to the control plane at large, such as
/// a SET, must not double as a logout credential for any `sub_id`), `exp`
/// and a `jti`. Returns the `jti`.
fn check_token(
    token: &str,
    header: &jsonwebtoken::Header,
    key: &VerificationKey,
    issuer: &str,
    endpoint: &str,
) -> Result<String, String> {
    let typ = header.typ.as_deref().unwrap_or("").to_ascii_lowercase();
    if typ.ends_with("secevent+jwt") {
        return Err("a Security Event Token is not a Universal Logout credential".into());
    }
    if key.alg.is_some_and(|alg| alg != header.alg) {
        return Err("the key does not sign with the JWT's alg".into());
    }
    let mut validation = Validation::new(header.alg);
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    validation.set_issuer(&[issuer, &format!("{issuer}/")]);
    validation.set_audience(&[endpoint]);
    validation.leeway = super::settings::DEFAULT_CLOCK_SKEW_S;
    let verified = decode::<Map<String, Value>>(token, &key.key, &validation).map_err(|e| e.to_string())?.claims;
    match verified.get("jti").and_then(Value::as_str) {
        Some(jti) if !jti.is_empty() && jti.len() <= 256 && !jti.contains(char::is_control) => Ok(jti.to_owned()),
        _ => Err("the JWT needs a jti (replays are refused)".into()),
    }
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
            // The reason stays in our log: the caller is not authenticated
            // yet, and a reason can name our JWKS URL or its fetch error.
            tracing::warn!(%reason, "a Universal Logout call was refused");
            app.metrics.signals.events.with_label_values(&["universal-logout", "-", "rejected:invalid_token"]).inc();
            return refusal(StatusCode::UNAUTHORIZED, "invalid_token", "the bearer JWT does not verify");
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

#[cfg(test)]
mod tests {
    use jsonwebtoken::{encode, DecodingKey, EncodingKey, Header};
    use p256::ecdsa::SigningKey;
    use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
    use serde_json::json;

    use super::*;

    const ISSUER: &str = "https://idp.example";
    const ENDPOINT: &str = "https://pc.example/signals/global-token-revocation";

    fn keys() -> (EncodingKey, DecodingKey) {
        let key = SigningKey::random(&mut rand::rngs::OsRng);
        let private = key.to_pkcs8_pem(LineEnding::LF).unwrap();
        let public = key.verifying_key().to_public_key_pem(LineEnding::LF).unwrap();
        (EncodingKey::from_ec_pem(private.as_bytes()).unwrap(), DecodingKey::from_ec_pem(public.as_bytes()).unwrap())
    }

    fn check(typ: Option<&str>, claims: Value, pinned: Option<Algorithm>) -> Result<String, String> {
        let (encoding, decoding) = keys();
        let mut header = Header::new(Algorithm::ES256);
        header.typ = typ.map(str::to_owned);
        let token = encode(&header, &claims, &encoding).unwrap();
        let key = VerificationKey { key: decoding, alg: pinned };
        check_token(&token, &decode_header(&token).unwrap(), &key, ISSUER, ENDPOINT)
    }

    #[test]
    fn only_a_logout_jwt_for_this_endpoint_is_a_credential() {
        let exp = now_ms() / 1000 + 300;
        let good = json!({"iss": ISSUER, "aud": ENDPOINT, "exp": exp, "jti": "j1"});
        assert_eq!(check(Some("JWT"), good.clone(), None), Ok("j1".to_owned()));
        assert_eq!(check(None, good.clone(), Some(Algorithm::ES256)), Ok("j1".to_owned()));
        // A token for the control plane at large (the SETs' default audience,
        // `public_url`) names no sub_id: it must not end whoever the body names.
        let at_large = json!({"iss": ISSUER, "aud": "https://pc.example", "exp": exp, "jti": "j2"});
        assert!(check(Some("JWT"), at_large, None).is_err());
        // A SET, even one addressed to this endpoint, is not a logout credential.
        assert!(check(Some("secevent+jwt"), good.clone(), None).is_err());
        assert!(check(Some("application/secevent+jwt"), good.clone(), None).is_err());
        // The JWK's pinned algorithm is honoured.
        assert!(check(Some("JWT"), good, Some(Algorithm::ES384)).is_err());
        for bad in [
            json!({"iss": ISSUER, "aud": ENDPOINT, "jti": "j3"}),
            json!({"iss": ISSUER, "aud": ENDPOINT, "exp": exp}),
            json!({"iss": ISSUER, "aud": ENDPOINT, "exp": exp, "jti": "a\nb"}),
            json!({"iss": "https://evil.example", "aud": ENDPOINT, "exp": exp, "jti": "j4"}),
            json!({"iss": ISSUER, "aud": ENDPOINT, "exp": exp - 3600, "jti": "j5"}),
        ] {
            assert!(check(Some("JWT"), bad.clone(), None).is_err(), "{bad}");
        }
    }
}
