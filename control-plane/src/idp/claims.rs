//! The claims of an ID token whose signature, `iss`, `aud` and `exp` were
//! already checked, judged against what session creation needs (OpenID
//! Connect Core 1.0 §3.1.3.7): `iat` recent and not in the future, `azp`
//! when several audiences, the `nonce` of the login (none for the device
//! flow), `auth_time`, a subject, an email the provider verified, and the
//! groups. Pure: no IO, the time is a parameter.

use serde_json::{Map, Value};

use crate::config::LoginIdpSettings;

/// How the login the token ends was made (the edge says so in its login body).
pub use portcullis_policy::edge_channel::LoginFlow;

/// Longest an ID token may have existed before it creates a session,
/// seconds: an edge sends it on right after the code exchange or the
/// device-code poll.
pub const MAX_ID_TOKEN_AGE_S: i64 = 600;

/// What the edge says about the login, to be checked against the token.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// The nonce the edge put in the authorization request.
    pub nonce: Option<&'a str>,
    /// The flow.
    pub flow: LoginFlow,
    /// Unix seconds now.
    pub now: i64,
    /// Tolerated clock difference, seconds.
    pub skew: i64,
}

/// Who logged in, read from a verified ID token only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedLogin {
    /// `iss`.
    pub issuer: String,
    /// `sub`.
    pub subject: String,
    /// `email`, lowercased.
    pub email: String,
    /// The configured groups claim.
    pub groups: Vec<String>,
    /// The provider's session (`sid`).
    pub idp_session_id: Option<String>,
    /// `auth_time`, Unix seconds.
    pub auth_time: i64,
    /// `exp`, Unix seconds.
    pub expires_at: i64,
}

fn integer(claims: &Map<String, Value>, name: &str) -> Result<i64, String> {
    match claims.get(name) {
        Some(value) => value.as_i64().ok_or_else(|| format!("`{name}` is not a number of seconds")),
        None => Err(format!("the token has no `{name}`")),
    }
}

fn text<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    claims.get(name).and_then(Value::as_str)
}

/// A claim as a list of strings: an array of strings, or one string.
fn string_list(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::Array(items)) => items.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
        Some(Value::String(one)) => vec![one.clone()],
        _ => Vec::new(),
    }
}

/// Checks `claims` (signature, `iss`, `aud`, `exp` and `nbf` already
/// verified) of a token from `idp`; the reason is a sentence fragment.
pub fn check(
    claims: &Map<String, Value>,
    idp: &LoginIdpSettings,
    expected: &Expected,
) -> Result<VerifiedLogin, String> {
    let (now, skew) = (expected.now, expected.skew);
    let iat = integer(claims, "iat")?;
    if iat > now + skew {
        return Err("it was issued in the future (`iat`)".into());
    }
    if iat < now - MAX_ID_TOKEN_AGE_S - skew {
        return Err(format!("it was issued more than {MAX_ID_TOKEN_AGE_S} s ago (`iat`)"));
    }
    let audiences = string_list(claims.get("aud"));
    match text(claims, "azp") {
        Some(azp) if !idp.audiences.iter().any(|a| a == azp) => {
            return Err(format!("it was issued to another client (`azp` {azp})"));
        }
        None if audiences.len() > 1 => return Err("it has several audiences but no `azp`".into()),
        _ => {}
    }
    let nonce = claims.get("nonce");
    match (expected.flow, expected.nonce, nonce) {
        (LoginFlow::Browser, None, _) => return Err("the edge sent no nonce for a browser login".into()),
        (LoginFlow::Browser, Some(_), None) => return Err("it carries no `nonce`".into()),
        (LoginFlow::Browser, Some(sent), Some(carried)) if carried.as_str() != Some(sent) => {
            return Err("its `nonce` is not the one of this login".into());
        }
        (LoginFlow::Device, Some(_), _) => return Err("a device login has no nonce".into()),
        (LoginFlow::Device, None, Some(_)) => {
            return Err("it carries a `nonce`, so it is not from a device login".into())
        }
        _ => {}
    }
    let auth_time = integer(claims, "auth_time")?;
    if auth_time > now + skew {
        return Err("the user authenticated in the future (`auth_time`)".into());
    }
    let subject = text(claims, "sub").filter(|s| !s.is_empty()).ok_or("it has no `sub`")?;
    let email = text(claims, "email")
        .filter(|e| e.contains('@'))
        .ok_or("the identity provider did not say who the user is (no `email`)")?;
    let verified = matches!(claims.get("email_verified"), Some(Value::Bool(true)))
        || text(claims, "email_verified") == Some("true");
    if !verified && !idp.trust_unverified_email {
        return Err("the identity provider does not say the email address is verified (`email_verified`)".into());
    }
    Ok(VerifiedLogin {
        issuer: idp.issuer.clone(),
        subject: subject.to_owned(),
        email: email.to_ascii_lowercase(),
        groups: string_list(claims.get(&idp.groups_claim)),
        idp_session_id: text(claims, "sid").map(str::to_owned),
        auth_time,
        expires_at: integer(claims, "exp")?,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn idp() -> LoginIdpSettings {
        LoginIdpSettings {
            issuer: "https://idp.example".into(),
            audiences: vec!["edge".into(), "edge-2".into()],
            groups_claim: "roles".into(),
            trust_unverified_email: false,
        }
    }

    fn claims(extra: Value) -> Map<String, Value> {
        let mut claims = json!({
            "iss": "https://idp.example", "aud": "edge", "sub": "u1", "email": "Ada@Corp.Example",
            "email_verified": true, "iat": NOW - 5, "exp": NOW + 300, "auth_time": NOW - 60, "nonce": "n1",
            "roles": ["admins", "dev"], "sid": "s1",
        });
        for (key, value) in extra.as_object().expect("object") {
            match value {
                Value::Null => claims.as_object_mut().expect("object").remove(key),
                other => claims.as_object_mut().expect("object").insert(key.clone(), other.clone()),
            };
        }
        claims.as_object().expect("object").clone()
    }

    fn browser(nonce: &str) -> Expected<'_> {
        Expected { nonce: Some(nonce), flow: LoginFlow::Browser, now: NOW, skew: 30 }
    }

    const DEVICE: Expected<'static> = Expected { nonce: None, flow: LoginFlow::Device, now: NOW, skew: 30 };

    #[test]
    fn the_identity_comes_from_the_claims() {
        let login = check(&claims(json!({})), &idp(), &browser("n1")).expect("valid");
        assert_eq!(login.email, "ada@corp.example");
        assert_eq!(
            (login.subject.as_str(), login.groups.as_slice()),
            ("u1", &["admins".to_owned(), "dev".to_owned()][..])
        );
        assert_eq!(
            (login.auth_time, login.expires_at, login.idp_session_id.as_deref()),
            (NOW - 60, NOW + 300, Some("s1"))
        );
        let device = check(&claims(json!({"nonce": null})), &idp(), &DEVICE).expect("a device login has no nonce");
        assert_eq!(device.subject, "u1");
    }

    #[test]
    fn hostile_claims_are_refused() {
        let refused = |extra: Value, expected: &Expected, says: &str| {
            let reason = check(&claims(extra.clone()), &idp(), expected).expect_err(&extra.to_string());
            assert!(reason.contains(says), "{extra}: {reason}");
        };
        refused(json!({}), &browser("n2"), "not the one of this login");
        refused(json!({"nonce": null}), &browser("n1"), "no `nonce`");
        refused(json!({}), &Expected { nonce: None, ..browser("") }, "no nonce for a browser login");
        refused(json!({}), &DEVICE, "not from a device login");
        refused(json!({"nonce": null}), &Expected { nonce: Some("x"), ..DEVICE }, "a device login has no nonce");
        refused(json!({"email_verified": false}), &browser("n1"), "verified");
        refused(json!({"email_verified": null}), &browser("n1"), "verified");
        refused(json!({"email_verified": "false"}), &browser("n1"), "verified");
        refused(json!({"auth_time": null}), &browser("n1"), "no `auth_time`");
        refused(json!({"auth_time": "yesterday"}), &browser("n1"), "`auth_time`");
        refused(json!({"auth_time": NOW + 120}), &browser("n1"), "in the future");
        refused(json!({"iat": null}), &browser("n1"), "no `iat`");
        refused(json!({"iat": NOW + 120}), &browser("n1"), "in the future");
        refused(json!({"iat": NOW - MAX_ID_TOKEN_AGE_S - 60}), &browser("n1"), "more than 600 s ago");
        refused(json!({"aud": ["edge", "other"]}), &browser("n1"), "no `azp`");
        refused(json!({"azp": "other"}), &browser("n1"), "another client");
        refused(json!({"sub": ""}), &browser("n1"), "no `sub`");
        refused(json!({"email": "not-an-address"}), &browser("n1"), "no `email`");
        refused(json!({"email": null}), &browser("n1"), "no `email`");
    }

    #[test]
    fn trusting_unverified_emails_is_per_issuer() {
        let trusting = LoginIdpSettings { trust_unverified_email: true, ..idp() };
        assert!(check(&claims(json!({"email_verified": null})), &trusting, &browser("n1")).is_ok());
        assert!(check(&claims(json!({"email_verified": "true"})), &idp(), &browser("n1")).is_ok(), "a string");
        let several = json!({"aud": ["edge", "edge-2"], "azp": "edge-2"});
        assert!(check(&claims(several), &idp(), &browser("n1")).is_ok(), "several audiences with azp");
        assert!(check(&claims(json!({"iat": NOW + 20, "auth_time": NOW + 20})), &idp(), &browser("n1")).is_ok());
        assert_eq!(check(&claims(json!({"roles": "one"})), &idp(), &browser("n1")).unwrap().groups, ["one"]);
    }
}
