//! The edge channel's contract, everything both sides must agree on byte
//! for byte: route paths, the stream's frame layout (a 4-byte big-endian
//! length, then a signed frame, see [`crate::signed_frame`]), the rule for
//! edge ids, the assertion's audience and lifetime, and every JSON body
//! (`messages.rs`, `report.rs`: one owned type per message). IO-free; the
//! control plane (`control-plane/src/edge_channel`) and the edge
//! (`proxy/src/subscriber.rs`, `proxy/src/authority_client.rs`,
//! `proxy/src/identity`) both import it, so neither can drift from the other.

mod messages;
mod reference;
mod report;
#[cfg(test)]
mod tests;

pub use messages::{
    stream_path, EnrollAnswer, EnrollBody, ErrorAnswer, ErrorDetail, FleetKeyAnswer, IdpLogoutAnswer, IdpLogoutBody,
    LoginAnswer, LoginBody, LoginFlow, ServiceIdentity, ServiceTokenBody, SessionStatus, StreamQuery,
};
pub use reference::{DenialReference, InvalidDenialReference};
pub use report::{ActivityEvent, ClosedConnections, ReportBody};

/// `POST`: enroll with a join token (or the bootstrap secret) and a public key.
pub const ENROLL_PATH: &str = "/edge/v1/enroll";
/// `GET`: the fleet key, for an enrolled edge.
pub const FLEET_KEY_PATH: &str = "/edge/v1/fleet-key";
/// `GET ?nonce=HEX[&since=SEQ]`: the signed snapshot stream.
pub const STREAM_PATH: &str = "/edge/v1/stream";
/// `GET`: the public stream-signing key.
pub const STREAM_KEY_PATH: &str = "/edge/v1/stream-key";
/// `POST`: what the edge applied and closed, and its activity.
pub const REPORT_PATH: &str = "/edge/v1/report";
/// `POST`: a session for a login.
pub const SESSIONS_PATH: &str = "/edge/v1/sessions";
/// `GET`: a session's status (the route; [`session_path`] fills it in).
pub const SESSION_ROUTE: &str = "/edge/v1/sessions/{id}";
/// `POST`: a session's user logged out (the route; [`session_logout_path`] fills it in).
pub const SESSION_LOGOUT_ROUTE: &str = "/edge/v1/sessions/{id}/logout";
/// `POST`: an OIDC back-channel logout, passed on.
pub const IDP_LOGOUT_PATH: &str = "/edge/v1/idp-logout";
/// `POST`: is this service token good.
pub const SERVICE_TOKEN_VERIFY_PATH: &str = "/edge/v1/service-tokens/verify";

/// The path of session `id`'s status ([`SESSION_ROUTE`]).
pub fn session_path(id: &str) -> String {
    format!("{SESSIONS_PATH}/{id}")
}

/// The path of session `id`'s logout ([`SESSION_LOGOUT_ROUTE`]).
pub fn session_logout_path(id: &str) -> String {
    format!("{SESSIONS_PATH}/{id}/logout")
}

/// The `aud` of edge assertions: the control plane's edge channel.
pub const EDGE_CHANNEL_AUDIENCE: &str = "portcullis-edge-channel";
/// Longest assertion lifetime (`exp - iat`) the control plane accepts, seconds.
pub const MAX_ASSERTION_LIFETIME_S: i64 = 60;

/// Bytes of a stream frame's length prefix.
pub const FRAME_HEADER_BYTES: usize = 4;
/// The largest frame an edge accepts (a snapshot of a very large fleet).
pub const MAX_FRAME_BYTES: usize = 256 * 1024 * 1024;

/// A frame whose length prefix exceeds [`MAX_FRAME_BYTES`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("frame of {0} bytes is too large")]
pub struct FrameTooLarge(pub usize);

/// The length prefix of a frame whose payload is `payload_len` bytes (the
/// caller keeps payloads under [`MAX_FRAME_BYTES`]).
pub fn frame_header(payload_len: usize) -> [u8; FRAME_HEADER_BYTES] {
    (payload_len as u32).to_be_bytes()
}

/// The first complete frame's payload at the start of `buffer`, if it holds
/// one yet; the frame then takes `FRAME_HEADER_BYTES + payload.len()` bytes.
pub fn next_frame(buffer: &[u8]) -> Result<Option<&[u8]>, FrameTooLarge> {
    let Some(header) = buffer.first_chunk::<FRAME_HEADER_BYTES>() else { return Ok(None) };
    let len = u32::from_be_bytes(*header) as usize;
    if len > MAX_FRAME_BYTES {
        return Err(FrameTooLarge(len));
    }
    Ok(buffer.get(FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + len))
}

/// An edge id: 1 to 64 letters, digits, `-`, `_`, `.`.
pub fn valid_edge_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}
