//! The JSON bodies of the edge channel's calls (the report is in
//! [`super::report`]): one owned type per message, which the edge
//! serializes and the control plane decodes (requests), or the other way
//! round (answers).
//!
//! Requests refuse unknown fields (`deny_unknown_fields`), as the control
//! plane always has: a misspelt field is an error, not silently ignored.
//! Answers accept them, so an edge keeps working with a newer control plane
//! that says more. `Option` fields are written as `null` unless marked
//! otherwise, and read as `None` when absent.

use serde::{Deserialize, Serialize};

use super::STREAM_PATH;
use crate::signed_frame::StreamBinding;

/// `POST /edge/v1/enroll` (bearer: a join token or the bootstrap secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollBody {
    /// The edge's id (must match the join token's, if it names one).
    pub edge_id: String,
    /// Display name (a join token's name wins).
    pub name: Option<String>,
    /// SPKI PEM (`BEGIN PUBLIC KEY`) of the edge's P-256 key.
    pub public_key: String,
}

/// The answer to [`EnrollBody`]: the edge is enrolled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollAnswer {
    /// The enrolled id.
    pub edge_id: String,
    /// The display name recorded.
    pub name: String,
    /// SHA-256 of the key's SPKI DER, hex.
    pub key_fingerprint: String,
    /// The `aud` assertions must carry ([`super::EDGE_CHANNEL_AUDIENCE`]).
    pub audience: String,
    /// Longest accepted assertion lifetime, seconds ([`super::MAX_ASSERTION_LIFETIME_S`]).
    pub max_assertion_lifetime_s: i64,
    /// The fleet key (32 bytes, base64url).
    pub fleet_key: String,
}

/// `GET /edge/v1/fleet-key`: the fleet key, for an enrolled edge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetKeyAnswer {
    /// 32 bytes, base64url.
    pub fleet_key: String,
}

/// The query of `GET /edge/v1/stream`: `?nonce=HEX[&since=SEQ]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    /// The last sequence the edge applied; absent for a full snapshot.
    pub since: Option<u64>,
    /// 32 hex digits the edge drew for this stream; every frame is bound to
    /// it (optional here so that its absence gets its own error).
    pub nonce: Option<String>,
}

impl StreamQuery {
    /// The query of a stream bound to `binding`.
    pub fn of(binding: &StreamBinding) -> Self {
        Self { since: binding.since, nonce: Some(binding.nonce.to_string()) }
    }
}

/// The path and query of a stream bound to `binding`:
/// `/edge/v1/stream?nonce=HEX[&since=SEQ]` (a [`StreamQuery`]).
pub fn stream_path(binding: &StreamBinding) -> String {
    let since = binding.since.map(|s| format!("&since={s}")).unwrap_or_default();
    format!("{STREAM_PATH}?nonce={}{since}", binding.nonce)
}

/// How a login was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoginFlow {
    /// Authorization code with PKCE, `state` and `nonce` (the browser, and
    /// `portcullis connect`'s loopback login).
    #[default]
    Browser,
    /// The device authorization grant (RFC 8628): no authorization request,
    /// so no nonce.
    Device,
}

/// `POST /edge/v1/sessions`: a completed login, the IdP's ID token and what
/// only the edge knows. The control plane reads who logged in from the
/// verified token, never from the body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    /// The ID token the login ended with, as the IdP issued it (the edge
    /// always sends it; without one the control plane refuses the login).
    #[serde(default)]
    pub id_token: Option<String>,
    /// The nonce of the authorization request (absent for the device flow).
    #[serde(default)]
    pub nonce: Option<String>,
    /// `browser` (the default) or `device`.
    #[serde(default)]
    pub flow: LoginFlow,
    /// The route the user logged in for (by name).
    pub route: String,
    /// Client address.
    pub source_address: String,
    /// Client user agent (kept as text; never interpreted).
    #[serde(default)]
    pub user_agent: String,
}

/// The answer to [`LoginBody`]: the created session and its token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginAnswer {
    /// Session id.
    pub session_id: String,
    /// Signed session token (the edge's cookie value).
    pub token: String,
    /// Expiry (RFC 3339).
    pub expires_at: String,
    /// Sessions ended to respect the route's limit.
    pub replaced_sessions: Vec<String>,
}

/// `GET /edge/v1/sessions/{id}`: whether a session is active; if not, when,
/// why and by whom it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionStatus {
    /// Session id.
    pub id: String,
    /// `active` or `ended`.
    pub state: String,
    /// Email.
    pub email: String,
    /// Expiry (RFC 3339).
    pub expires_at: String,
    /// When it ended (RFC 3339), if it has.
    pub ended_at: Option<String>,
    /// Why it ended (`expired` for an expired session).
    pub end_reason: Option<String>,
    /// Who ended it: `administrator`, `user` (logged out), `identity_provider`
    /// (back-channel logout), `session_limit` (a newer login), `system`, or
    /// `expired`.
    pub ended_by: Option<String>,
}

/// `POST /edge/v1/idp-logout`: an OIDC back-channel logout the edge
/// received and verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdpLogoutBody {
    /// The IdP that sent the logout token (`iss`).
    pub idp_issuer: String,
    /// The IdP session (`sid`), when the token names one.
    pub idp_session_id: Option<String>,
    /// The IdP subject (`sub`), when the token names one.
    pub subject: Option<String>,
}

/// The answer to [`IdpLogoutBody`]: the sessions it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdpLogoutAnswer {
    /// Sessions terminated by this call.
    pub terminated: Vec<String>,
}

/// `POST /edge/v1/service-tokens/verify`: the token to look up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceTokenBody {
    /// The service token as presented (`pcst_…`).
    pub token: String,
}

/// The answer to [`ServiceTokenBody`]: the identity a valid service token
/// carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceIdentity {
    /// Token id: what revocation names.
    pub id: String,
    /// Token name (rules match it as the `client_id` claim).
    pub name: String,
    /// Subject it acts as.
    pub subject: String,
    /// Groups it carries.
    pub groups: Vec<String>,
    /// Created, Unix seconds (its `iat`).
    pub issued_at: i64,
    /// Created, Unix milliseconds: compared with the subject's terminate-all
    /// (left out when unknown; absent from older control planes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_at_ms: Option<i64>,
    /// Expiry, Unix seconds, if any.
    pub expires_at: Option<i64>,
}

/// Every refusal and failure of the edge channel (4xx, 5xx):
/// `{"error": {"code": "...", "message": "..."}}`. (The control plane
/// answers it through its own `ErrorBody`, which also documents it in the
/// OpenAPI description; a test there keeps the two the same.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorAnswer {
    /// The error.
    pub error: ErrorDetail,
}

/// Code and message of an [`ErrorAnswer`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Stable machine-readable code (`unauthorized`, `user_locked`, …).
    pub code: String,
    /// What went wrong, for people.
    pub message: String,
}
