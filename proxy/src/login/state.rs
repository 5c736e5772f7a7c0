//! The state of a login in flight, kept in the browser rather than on the
//! edge so the callback may land on any edge: a short-lived cookie named
//! after the OAuth `state`, holding the PKCE verifier, the nonce, the host
//! and the path to return to, authenticated with an HMAC whose key every
//! edge derives from the fleet key. The cookie is HttpOnly and
//! scoped to the callback path; a forged or altered one is refused.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::identity::{DerivedKey, FleetKey};

/// Seconds a login may take at the IdP.
pub const LOGIN_TTL_S: i64 = 600;

/// A login in flight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginState {
    /// PKCE code verifier.
    pub verifier: String,
    /// OIDC nonce.
    pub nonce: String,
    /// Host the login started on.
    pub host: String,
    /// Same-origin path (and query) to return to.
    pub return_to: String,
    /// Unix seconds after which the login is refused.
    pub expires_at: i64,
    /// Set when `portcullis connect` started the login: where the session
    /// goes instead of a cookie.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cli: Option<CliLogin>,
    /// Set when the route wants a recent login (`logged_in_within`): the IdP
    /// was asked for `max_age` seconds, and an ID token whose `auth_time` is
    /// older than that when the login started is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<i64>,
}

/// A login for `portcullis connect` (browser through a loopback redirect).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CliLogin {
    /// The CLI's loopback port on 127.0.0.1.
    pub port: u16,
    /// `BASE64URL(SHA-256(verifier))`; only the holder of the verifier can
    /// redeem the code the browser carries back.
    pub challenge: String,
    /// The TCP route the session is for.
    pub route: String,
    /// The `HOST:PORT` the CLI asked for (to start the login again).
    #[serde(default)]
    pub target: String,
}

/// Why a login-state cookie was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// Absent, altered, forged or unreadable.
    #[error("the login could not be matched to one this browser started")]
    Unknown,
    /// Older than [`LOGIN_TTL_S`].
    #[error("the login took too long")]
    Expired,
    /// Started on another host.
    #[error("the login was started for another site")]
    WrongHost,
}

/// Seals and opens login-state cookies.
pub struct StateSealer {
    key: DerivedKey,
}

/// What the sealing key is derived for.
const PURPOSE: &str = "portcullis login state v1";

type HmacSha256 = Hmac<Sha256>;

impl StateSealer {
    /// A sealer whose key is derived from the fleet key, so every edge of
    /// the deployment opens what another sealed.
    pub fn from_fleet(fleet: &FleetKey) -> Self {
        Self { key: DerivedKey::from_fleet(fleet, PURPOSE) }
    }

    /// A sealer whose key is derived from a fixed root (tests and tools).
    pub fn from_secret(secret: &str) -> Self {
        Self { key: DerivedKey::from_root(secret.as_bytes(), PURPOSE) }
    }

    fn mac(&self, state: &str, payload: &str) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key.get()).expect("HMAC takes keys of any length");
        mac.update(state.as_bytes());
        mac.update(b".");
        mac.update(payload.as_bytes());
        mac
    }

    /// `value` as JSON with an HMAC bound to `context` (readable, not forgeable).
    pub fn seal_json<T: Serialize>(&self, context: &str, value: &T) -> String {
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap_or_default());
        let tag = URL_SAFE_NO_PAD.encode(self.mac(context, &payload).finalize().into_bytes());
        format!("{payload}.{tag}")
    }

    /// What [`Self::seal_json`] sealed for `context`.
    pub fn open_json<T: DeserializeOwned>(&self, context: &str, sealed: &str) -> Result<T, StateError> {
        let (payload, tag) = sealed.split_once('.').ok_or(StateError::Unknown)?;
        let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| StateError::Unknown)?;
        self.mac(context, payload).verify_slice(&tag).map_err(|_| StateError::Unknown)?;
        let bytes = URL_SAFE_NO_PAD.decode(payload).map_err(|_| StateError::Unknown)?;
        serde_json::from_slice(&bytes).map_err(|_| StateError::Unknown)
    }

    fn mac_parts(&self, context: &str, parts: &[&str]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key.get()).expect("HMAC takes keys of any length");
        for part in std::iter::once(context).chain(parts.iter().copied()) {
            // Length-prefixed, so no two lists of parts share a tag input.
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part.as_bytes());
        }
        mac
    }

    /// A tag (base64url HMAC) binding `parts` together for `context`.
    pub fn tag(&self, context: &str, parts: &[&str]) -> String {
        URL_SAFE_NO_PAD.encode(self.mac_parts(context, parts).finalize().into_bytes())
    }

    /// True when `tag` is [`Self::tag`] of `parts` for `context` (compared in constant time).
    pub fn verify_tag(&self, context: &str, parts: &[&str], tag: &str) -> bool {
        let Ok(tag) = URL_SAFE_NO_PAD.decode(tag) else { return false };
        self.mac_parts(context, parts).verify_slice(&tag).is_ok()
    }

    /// The cookie value for the login `state`.
    pub fn seal(&self, state: &str, login: &LoginState) -> String {
        self.seal_json(state, login)
    }

    /// The login behind `state`, if `value` was sealed for it, is fresh and is for `host`.
    pub fn open(&self, state: &str, value: &str, host: &str, now: i64) -> Result<LoginState, StateError> {
        let login: LoginState = self.open_json(state, value)?;
        if login.expires_at <= now {
            return Err(StateError::Expired);
        }
        if login.host != host {
            return Err(StateError::WrongHost);
        }
        Ok(login)
    }
}

/// The name of the cookie holding the login `state`: only URL-safe characters.
pub fn cookie_name(prefix: &str, state: &str) -> Option<String> {
    let safe = !state.is_empty()
        && state.len() <= 128
        && state.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'));
    safe.then(|| format!("{prefix}_login_{state}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login() -> LoginState {
        LoginState {
            verifier: "v".repeat(43),
            nonce: "n".into(),
            host: "app.example".into(),
            return_to: "/docs?page=2".into(),
            expires_at: 1_000,
            cli: None,
            max_age: None,
        }
    }

    #[test]
    fn opens_what_it_sealed_for_the_same_state_and_host() {
        let sealer = StateSealer::from_secret("secret-0123456789abcdef0123456789");
        let value = sealer.seal("s1", &login());
        assert_eq!(sealer.open("s1", &value, "app.example", 999), Ok(login()));
        assert_eq!(sealer.open("s2", &value, "app.example", 999), Err(StateError::Unknown), "another state");
        assert_eq!(sealer.open("s1", &value, "evil.example", 999), Err(StateError::WrongHost));
        assert_eq!(sealer.open("s1", &value, "app.example", 1_000), Err(StateError::Expired));
    }

    #[test]
    fn refuses_forged_and_altered_cookies() {
        let sealer = StateSealer::from_secret("secret-0123456789abcdef0123456789");
        let other = StateSealer::from_secret("another-secret-0123456789abcdef01");
        let forged = other.seal("s1", &login());
        assert_eq!(sealer.open("s1", &forged, "app.example", 1), Err(StateError::Unknown));
        let value = sealer.seal("s1", &login());
        let (payload, tag) = value.split_once('.').unwrap();
        let mut altered = login();
        altered.return_to = "//evil.example/".into();
        let altered_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&altered).unwrap());
        assert_eq!(sealer.open("s1", &format!("{altered_payload}.{tag}"), "app.example", 1), Err(StateError::Unknown));
        assert_eq!(sealer.open("s1", payload, "app.example", 1), Err(StateError::Unknown), "no tag");
        assert_eq!(sealer.open("s1", "garbage", "app.example", 1), Err(StateError::Unknown));
    }

    #[test]
    fn tags_bind_every_part_and_the_context() {
        let sealer = StateSealer::from_secret("secret-0123456789abcdef0123456789");
        let tag = sealer.tag("ctx", &["a", "bc"]);
        assert!(!sealer.verify_tag("ctx", &["ab", "c"], &tag), "parts are not concatenated");
        assert!(!sealer.verify_tag("other", &["a", "bc"], &tag));
        assert!(!sealer.verify_tag("ctx", &["a", "bc"], "not base64!"));
        assert!(!StateSealer::from_secret("another-secret-0123456789abcdef01").verify_tag("ctx", &["a", "bc"], &tag));
        assert!(sealer.verify_tag("ctx", &["a", "bc"], &tag));
    }

    #[test]
    fn cookie_names_only_from_safe_states() {
        assert_eq!(cookie_name("pc", "abc-_9").as_deref(), Some("pc_login_abc-_9"));
        assert_eq!(cookie_name("pc", "a;b"), None);
        assert_eq!(cookie_name("pc", ""), None);
        let jar = crate::credentials::SessionCookies::new("pc", true);
        assert!(
            jar.is_edge_cookie(&cookie_name("pc", "abc").unwrap()),
            "stripped before the upstream like the session"
        );
    }
}
