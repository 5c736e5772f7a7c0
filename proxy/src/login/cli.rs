//! Browser login for `portcullis connect` when the IdP has no device flow:
//! a loopback redirect, with the session token readable only by the CLI.
//!
//! ```text
//! CLI: verifier V (random), challenge C = BASE64URL(SHA-256(V)), listens on 127.0.0.1:N
//!  └─ browser → GET /.portcullis/cli-login?port=N&challenge=C&target=ssh.internal:22
//!       └─ the usual OIDC login (state cookie carries N, C and the route) → /.portcullis/callback
//!            └─ session created → code = AES-256-GCM(token; AAD = C) → 302 http://127.0.0.1:N/callback?code=…
//! CLI: POST /.portcullis/cli-login/token {code, verifier: V} → the edge decrypts with AAD = SHA-256(V)
//! ```
//!
//! The code in the browser's address bar is useless without V, which never
//! leaves the CLI; any enrolled edge (they derive the key from the fleet
//! key) can redeem it, and only for [`CODE_TTL_S`] seconds.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use openssl::symm::{decrypt_aead, encrypt_aead, Cipher};
use pingora_proxy::Session;
use portcullis_policy::Snapshot;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::answers::{answer, query_param, read_json, redirect};
use super::id_token::LoggedInUser;
use super::state::CliLogin;
use super::{tcp_route, LoginService, RequestInfo};
use crate::identity::{DerivedKey, FleetKey};
use crate::responses::respond;

/// Seconds the CLI has to redeem a code.
pub const CODE_TTL_S: i64 = 120;
const NONCE_BYTES: usize = 12;
const TAG_BYTES: usize = 16;

/// What a code carries, encrypted.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct CliGrant {
    /// The session token.
    pub token: String,
    /// The session id.
    pub session_id: String,
    /// Unix seconds after which the code is refused.
    pub expires_at: i64,
}

/// Why a code was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    /// Altered, forged, or redeemed with the wrong verifier.
    #[error("the login code is invalid or the verifier does not match")]
    Invalid,
    /// Older than [`CODE_TTL_S`].
    #[error("the login code has expired; log in again")]
    Expired,
}

/// Encrypts and decrypts CLI login codes with a key every edge derives
/// from the fleet key.
pub struct CliCodes {
    key: DerivedKey,
}

/// What the code key is derived for.
const PURPOSE: &str = "portcullis cli login code v1";

/// `BASE64URL(SHA-256(verifier))`.
pub fn challenge_of(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

impl CliCodes {
    /// Derives the key from the fleet key.
    pub fn from_fleet(fleet: &FleetKey) -> Self {
        Self { key: DerivedKey::from_fleet(fleet, PURPOSE) }
    }

    /// Derives the key from a fixed root (tests and tools).
    pub fn from_secret(secret: &str) -> Self {
        Self { key: DerivedKey::from_root(secret.as_bytes(), PURPOSE) }
    }

    /// A code for `grant` that only the holder of the verifier behind `challenge` can redeem.
    pub fn seal(&self, grant: &CliGrant, challenge: &str) -> Option<String> {
        let nonce: [u8; NONCE_BYTES] = rand::random();
        let plain = serde_json::to_vec(grant).ok()?;
        let mut tag = [0u8; TAG_BYTES];
        let cipher =
            encrypt_aead(Cipher::aes_256_gcm(), &self.key.get(), Some(&nonce), challenge.as_bytes(), &plain, &mut tag)
                .ok()?;
        let mut code = Vec::with_capacity(NONCE_BYTES + cipher.len() + TAG_BYTES);
        code.extend_from_slice(&nonce);
        code.extend_from_slice(&cipher);
        code.extend_from_slice(&tag);
        Some(URL_SAFE_NO_PAD.encode(code))
    }

    /// The grant in `code`, given the CLI's `verifier`, at Unix time `now`.
    pub fn open(&self, code: &str, verifier: &str, now: i64) -> Result<CliGrant, CodeError> {
        let bytes = URL_SAFE_NO_PAD.decode(code).map_err(|_| CodeError::Invalid)?;
        if bytes.len() < NONCE_BYTES + TAG_BYTES {
            return Err(CodeError::Invalid);
        }
        let (nonce, rest) = bytes.split_at(NONCE_BYTES);
        let (cipher, tag) = rest.split_at(rest.len() - TAG_BYTES);
        let challenge = challenge_of(verifier);
        let plain =
            decrypt_aead(Cipher::aes_256_gcm(), &self.key.get(), Some(nonce), challenge.as_bytes(), cipher, tag)
                .map_err(|_| CodeError::Invalid)?;
        let grant: CliGrant = serde_json::from_slice(&plain).map_err(|_| CodeError::Invalid)?;
        if grant.expires_at <= now {
            return Err(CodeError::Expired);
        }
        Ok(grant)
    }
}

/// True for a `BASE64URL(SHA-256(…))` challenge: 43 base64url characters.
pub(super) fn valid_challenge(text: &str) -> bool {
    text.len() == 43 && text.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
}

#[derive(Deserialize)]
struct TokenRequest {
    code: String,
    verifier: String,
}

impl LoginService {
    /// `GET /.portcullis/cli-login?port=N&challenge=C&target=HOST:PORT`.
    pub(super) async fn cli_login(
        &self,
        session: &mut Session,
        snapshot: &Snapshot,
        info: &RequestInfo<'_>,
        query: &str,
    ) -> pingora_core::Result<bool> {
        let Some(provider) = self.provider_or_501(session, "Login").await? else { return Ok(true) };
        let port = query_param(query, "port").and_then(|p| p.parse::<u16>().ok()).filter(|p| *p >= 1024);
        let challenge = query_param(query, "challenge").filter(|c| valid_challenge(c));
        let (Some(port), Some(challenge)) = (port, challenge) else {
            let message = "This login link is malformed: start it again with `portcullis connect`.";
            respond(session, 400, "bad_cli_login", "Bad request", message, &[]).await?;
            return Ok(true);
        };
        let target = query_param(query, "target").unwrap_or_default();
        let Some(route) = tcp_route(snapshot, &target, info.now) else {
            let message = format!("No TCP route is named `{target}`.");
            respond(session, 404, "no_route", "Not found", &message, &[]).await?;
            return Ok(true);
        };
        // `max_age=0`: the control plane wants a new sign-in (see `finish_cli_login`).
        let max_age = query_param(query, "max_age").and_then(|m| m.parse::<u32>().ok()).map(i64::from);
        let cli = CliLogin { port, challenge: challenge.into_owned(), route, target: target.into_owned() };
        self.start_login(session, &provider, info, "/".into(), Some(cli), max_age).await
    }

    /// The end of a CLI login at the callback: the session, sealed into a
    /// code, goes to the CLI's loopback listener.
    pub(super) async fn finish_cli_login(
        &self,
        session: &mut Session,
        user: &LoggedInUser,
        nonce: &str,
        cli: &CliLogin,
        info: &RequestInfo<'_>,
        (clear_state, forced): (String, bool),
    ) -> pingora_core::Result<bool> {
        // As for a browser login: once more with a new sign-in when the
        // control plane asks for one.
        let fresh = (!forced).then(|| {
            let target = crate::proxy::percent_encode(&cli.target);
            format!("/.portcullis/cli-login?port={}&challenge={}&target={target}&max_age=0", cli.port, cli.challenge)
        });
        let created = self.new_session(session, user, Some(nonce), &cli.route, &info.client_ip, fresh).await?;
        let Some(created) = created else { return Ok(true) };
        let grant =
            CliGrant { token: created.token, session_id: created.session_id, expires_at: info.now + CODE_TTL_S };
        let Some(code) = self.cli_codes.seal(&grant, &cli.challenge) else {
            return Self::unavailable(session, "Could not finish the login.").await;
        };
        tracing::info!(session = %grant.session_id, route = %cli.route, "CLI login completed");
        let location = format!("http://127.0.0.1:{}/callback?code={code}", cli.port);
        redirect(session, &location, &[clear_state]).await
    }

    /// `POST /.portcullis/cli-login/token` with `{"code", "verifier"}`.
    pub(super) async fn cli_token(&self, session: &mut Session, info: &RequestInfo<'_>) -> pingora_core::Result<bool> {
        let Some(request) = read_json::<TokenRequest>(session).await? else {
            let message = "Send {\"code\": …, \"verifier\": …} as JSON.";
            respond(session, 400, "bad_request", "Bad request", message, &[]).await?;
            return Ok(true);
        };
        match self.cli_codes.open(&request.code, &request.verifier, info.now) {
            Ok(grant) => {
                let body = serde_json::json!({ "token": grant.token, "session_id": grant.session_id });
                answer(session, 200, "application/json", body.to_string()).await
            }
            Err(error) => {
                respond(session, 400, "invalid_grant", "Login failed", &error.to_string(), &[]).await?;
                Ok(true)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_verifier_behind_the_challenge_redeems_a_code() {
        let codes = CliCodes::from_secret("secret-0123456789abcdef0123456789");
        let grant = CliGrant { token: "t".into(), session_id: "s".into(), expires_at: 100 };
        let verifier = "v".repeat(43);
        let code = codes.seal(&grant, &challenge_of(&verifier)).unwrap();
        assert_eq!(codes.open(&code, &verifier, 99), Ok(grant));
        assert_eq!(codes.open(&code, &"w".repeat(43), 99), Err(CodeError::Invalid), "another verifier");
        assert_eq!(codes.open(&code, &verifier, 100), Err(CodeError::Expired));
        let other = CliCodes::from_secret("another-secret-0123456789abcdef01");
        assert_eq!(other.open(&code, &verifier, 99), Err(CodeError::Invalid), "another deployment");
        let mut bytes = URL_SAFE_NO_PAD.decode(&code).unwrap();
        bytes[NONCE_BYTES] ^= 1;
        assert_eq!(codes.open(&URL_SAFE_NO_PAD.encode(bytes), &verifier, 99), Err(CodeError::Invalid), "altered");
        let raw = URL_SAFE_NO_PAD.decode(&code).unwrap();
        assert!(!String::from_utf8_lossy(&raw).contains("token"), "the token is encrypted, not only signed");
    }

    #[test]
    fn challenges_are_base64url_sha256() {
        // RFC 7636 appendix B.
        assert_eq!(
            challenge_of("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert!(valid_challenge("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"));
        assert!(!valid_challenge("short") && !valid_challenge(&"a".repeat(42)));
    }
}
