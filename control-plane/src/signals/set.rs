//! Security Event Token validation (RFC 8417, as OpenID SSF 1.0 profiles
//! it): `typ` `secevent+jwt`, an asymmetric signature by a key of the
//! transmitter's JWKS, `iss`, `aud`, an `iat` neither in the future nor
//! older than the transmitter's `max_age`, a `jti`, at least one event;
//! `exp` is not required. Replays (`jti`) are caught by the store, which
//! remembers every applied `jti` durably. Errors carry RFC 8935's codes.

use std::time::{Duration, Instant};

use jsonwebtoken::{decode, decode_header, Algorithm, Validation};
use portcullis_oidc_discovery::KeySet;
use serde_json::{Map, Value};
use std::sync::Arc;
use tokio::sync::Mutex;

use super::settings::TransmitterSettings;

/// Largest SET accepted, bytes.
pub const MAX_SET_BYTES: usize = 64 * 1024;
/// Most events in one SET (SSF 1.0 sends one per SET): each is planned,
/// summarised in the audit row and run through the response rules.
pub const MAX_EVENTS: usize = 16;
/// Shortest interval between two JWKS fetches caused by an unknown `kid`.
const KEY_REFETCH_INTERVAL: Duration = Duration::from_secs(5);

/// Why a SET is refused: RFC 8935 §2.3's error codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetError {
    /// Malformed, or a claim is missing or wrong.
    #[error("{0}")]
    InvalidRequest(String),
    /// No key verifies it.
    #[error("{0}")]
    InvalidKey(String),
    /// `iss` is not the transmitter's.
    #[error("{0}")]
    InvalidIssuer(String),
    /// `aud` does not name us.
    #[error("{0}")]
    InvalidAudience(String),
}

impl SetError {
    /// The RFC 8935 / 8936 error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "invalid_request",
            Self::InvalidKey(_) => "invalid_key",
            Self::InvalidIssuer(_) => "invalid_issuer",
            Self::InvalidAudience(_) => "invalid_audience",
        }
    }
}

/// A verified SET.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedSet {
    /// Its unique id.
    pub jti: String,
    /// When it was issued, Unix seconds.
    pub iat: i64,
    /// The transaction id, if any.
    pub txn: Option<String>,
    /// The top-level `sub_id`, if any.
    pub sub_id: Option<Value>,
    /// Event type URI → payload.
    pub events: Map<String, Value>,
}

/// The transmitter's keys, fetched on first use and again (at most every
/// 5 s) when a SET names a key we do not have.
pub struct TransmitterKeys {
    http: reqwest::Client,
    cached: Mutex<Option<(Instant, Arc<KeySet>)>>,
}

impl Default for TransmitterKeys {
    fn default() -> Self {
        Self { http: portcullis_oidc_discovery::http_client(), cached: Mutex::new(None) }
    }
}

/// Where `issuer`'s SSF configuration is (SSF 1.0 §7.2: the well-known
/// segment goes between the host and the issuer's path).
pub fn configuration_url(issuer: &str) -> String {
    let issuer = issuer.trim_end_matches('/');
    match url::Url::parse(issuer) {
        Ok(url) if url.path().len() > 1 => {
            let origin = url.origin().ascii_serialization();
            format!("{origin}/.well-known/ssf-configuration{}", url.path())
        }
        _ => format!("{issuer}/.well-known/ssf-configuration"),
    }
}

impl TransmitterKeys {
    async fn jwks_url(&self, transmitter: &TransmitterSettings) -> Result<String, String> {
        if let Some(url) = &transmitter.jwks_url {
            return Ok(url.clone());
        }
        let url = configuration_url(&transmitter.issuer);
        let body = portcullis_oidc_discovery::fetch_bounded(&self.http, &url).await?;
        let document: Value = serde_json::from_slice(&body).map_err(|e| format!("{url}: {e}"))?;
        if document.get("issuer").and_then(Value::as_str).map(|i| i.trim_end_matches('/')) != Some(&transmitter.issuer)
        {
            return Err(format!("{url}: the document does not name issuer `{}`", transmitter.issuer));
        }
        document.get("jwks_uri").and_then(Value::as_str).map(str::to_owned).ok_or_else(|| format!("{url}: no jwks_uri"))
    }

    /// The key set, fetched if absent or if `refresh` and the last fetch is
    /// older than the refetch interval.
    pub(crate) async fn get(&self, transmitter: &TransmitterSettings, refresh: bool) -> Result<Arc<KeySet>, String> {
        let mut cached = self.cached.lock().await;
        if let Some((at, keys)) = cached.as_ref() {
            if !refresh || at.elapsed() < KEY_REFETCH_INTERVAL {
                return Ok(keys.clone());
            }
        }
        let url = self.jwks_url(transmitter).await?;
        let keys = Arc::new(KeySet::parse(&portcullis_oidc_discovery::fetch_bounded(&self.http, &url).await?)?);
        *cached = Some((Instant::now(), keys.clone()));
        Ok(keys)
    }

    /// Verifies `token` as a SET from `transmitter` at `now` (Unix seconds).
    pub async fn verify(
        &self,
        transmitter: &TransmitterSettings,
        token: &str,
        now: i64,
    ) -> Result<VerifiedSet, SetError> {
        let bad = |m: String| SetError::InvalidRequest(m);
        if token.len() > MAX_SET_BYTES {
            return Err(bad(format!("the SET is larger than {MAX_SET_BYTES} bytes")));
        }
        let header = decode_header(token).map_err(|e| bad(format!("not a signed JWT: {e}")))?;
        let typ = header.typ.as_deref().unwrap_or("").to_ascii_lowercase();
        if typ != "secevent+jwt" && typ != "application/secevent+jwt" {
            return Err(bad(format!("typ is `{}`, expected secevent+jwt", header.typ.as_deref().unwrap_or(""))));
        }
        if matches!(header.alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
            return Err(SetError::InvalidKey("symmetric algorithms are refused".into()));
        }
        let unavailable = |e: String| SetError::InvalidKey(format!("the transmitter's keys are unavailable: {e}"));
        let mut keys = self.get(transmitter, false).await.map_err(unavailable)?;
        let key = match keys.find(header.kid.as_deref()) {
            Some(key) => key,
            None => {
                keys = self.get(transmitter, true).await.map_err(unavailable)?;
                keys.find(header.kid.as_deref()).ok_or_else(|| {
                    SetError::InvalidKey(format!(
                        "no key `{}` in the transmitter's JWKS",
                        header.kid.as_deref().unwrap_or("")
                    ))
                })?
            }
        };
        if key.alg.is_some_and(|alg| alg != header.alg) {
            return Err(SetError::InvalidKey("the key does not sign with the SET's alg".into()));
        }
        let mut validation = Validation::new(header.alg);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        let claims = decode::<Map<String, Value>>(token, &key.key, &validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                    SetError::InvalidKey("the signature does not verify".into())
                }
                _ => bad(format!("the SET does not decode: {e}")),
            })?
            .claims;
        check_claims(transmitter, claims, now)
    }
}

/// The claim checks, after the signature.
pub fn check_claims(
    transmitter: &TransmitterSettings,
    mut claims: Map<String, Value>,
    now: i64,
) -> Result<VerifiedSet, SetError> {
    let bad = |m: &str| SetError::InvalidRequest(m.to_owned());
    let iss = claims.get("iss").and_then(Value::as_str).ok_or_else(|| bad("no iss"))?;
    if iss.trim_end_matches('/') != transmitter.issuer {
        let iss = super::plan::printable(iss, 200);
        return Err(SetError::InvalidIssuer(format!("iss `{iss}` is not the transmitter `{}`", transmitter.issuer)));
    }
    let audience_ok = match claims.get("aud") {
        Some(Value::String(aud)) => *aud == transmitter.audience,
        Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(&transmitter.audience)),
        _ => return Err(SetError::InvalidAudience("no aud".into())),
    };
    if !audience_ok {
        return Err(SetError::InvalidAudience(format!("aud does not name `{}`", transmitter.audience)));
    }
    let iat = claims.get("iat").and_then(Value::as_i64).ok_or_else(|| bad("no numeric iat"))?;
    if iat > now + super::settings::DEFAULT_CLOCK_SKEW_S as i64 {
        return Err(bad("iat is in the future"));
    }
    if iat < now - transmitter.max_age.as_secs() as i64 {
        return Err(bad("iat is older than this transmitter's max_age_s"));
    }
    let jti = match claims.get("jti").and_then(Value::as_str) {
        Some(jti) if !jti.is_empty() && jti.len() <= 256 && !jti.contains(char::is_control) => jti.to_owned(),
        _ => return Err(bad("jti is missing, empty, over 256 bytes or has control characters")),
    };
    let events = match claims.remove("events") {
        Some(Value::Object(events)) if !events.is_empty() => events,
        _ => return Err(bad("events must be a non-empty object")),
    };
    if events.len() > MAX_EVENTS {
        return Err(bad("a SET carries at most 16 events"));
    }
    if events.values().any(|payload| !payload.is_object()) {
        return Err(bad("every event's payload must be an object"));
    }
    Ok(VerifiedSet {
        jti,
        iat,
        txn: claims.get("txn").and_then(Value::as_str).map(str::to_owned),
        sub_id: claims.remove("sub_id"),
        events,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::signals::settings::{validate, RawTransmitter};

    fn transmitter() -> TransmitterSettings {
        let raw: RawTransmitter = toml::from_str(
            "name = \"t\"\nissuer = \"https://idp.example\"\naudience = \"https://pc.example\"\npush_token_file = \"f\"\n",
        )
        .unwrap();
        validate(vec![raw], "https://pc.example", false, &|_| None).unwrap().remove(0)
    }

    fn claims(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn claims_are_checked_with_the_rfc_codes() {
        let t = transmitter();
        let good = json!({"iss": "https://idp.example", "aud": ["x", "https://pc.example"], "iat": 1000, "jti": "j1",
                          "events": {"https://schemas.openid.net/secevent/caep/event-type/session-revoked": {}}});
        let set = check_claims(&t, claims(good.clone()), 1000).unwrap();
        assert_eq!(set.jti, "j1");
        for (patch, code) in [
            (json!({"iss": "https://evil.example"}), "invalid_issuer"),
            (json!({"aud": "https://other.example"}), "invalid_audience"),
            (json!({"aud": null}), "invalid_audience"),
            (json!({"iat": 5000}), "invalid_request"),
            (json!({"iat": 1000 - 8 * 86_400}), "invalid_request"),
            (json!({"iat": "1000"}), "invalid_request"),
            (json!({"jti": ""}), "invalid_request"),
            (json!({"jti": null}), "invalid_request"),
            (json!({"events": {}}), "invalid_request"),
            (json!({"events": {"x": "not an object"}}), "invalid_request"),
            (
                json!({"events": (0..=MAX_EVENTS).map(|i| (format!("e{i}"), json!({}))).collect::<Map<_, _>>()}),
                "invalid_request",
            ),
        ] {
            let mut body = claims(good.clone());
            for (k, v) in patch.as_object().unwrap() {
                if v.is_null() {
                    body.remove(k);
                } else {
                    body.insert(k.clone(), v.clone());
                }
            }
            let error = check_claims(&t, body, 1000).unwrap_err();
            assert_eq!(error.code(), code, "{patch}: {error}");
        }
    }

    #[test]
    fn configuration_sits_between_host_and_path() {
        assert_eq!(configuration_url("https://idp.example/"), "https://idp.example/.well-known/ssf-configuration");
        assert_eq!(
            configuration_url("https://idp.example/tenant/1"),
            "https://idp.example/.well-known/ssf-configuration/tenant/1"
        );
    }
}
