//! The edge channel's contract, the parts both sides must agree on byte for
//! byte: route paths, the stream's frame layout (a 4-byte big-endian length,
//! then a signed frame, see [`crate::signed_frame`]) and the rule for edge
//! ids. IO-free; the control plane (`control-plane/src/edge_channel`) and
//! the edge (`proxy/src/subscriber.rs`, `proxy/src/authority_client.rs`)
//! both import it, so neither can drift from the other.

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
/// `POST`: a session for a login (`/{id}`: its status; `/{id}/logout`).
pub const SESSIONS_PATH: &str = "/edge/v1/sessions";
/// `POST`: an OIDC back-channel logout, passed on.
pub const IDP_LOGOUT_PATH: &str = "/edge/v1/idp-logout";
/// `POST`: is this service token good.
pub const SERVICE_TOKEN_VERIFY_PATH: &str = "/edge/v1/service-tokens/verify";

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_round_trips_and_partial_frames_wait() {
        let payload = b"signed frame bytes";
        let mut wire = frame_header(payload.len()).to_vec();
        wire.extend_from_slice(payload);
        wire.extend_from_slice(&frame_header(0));
        assert_eq!(next_frame(&wire), Ok(Some(&payload[..])));
        assert_eq!(next_frame(&wire[payload.len() + FRAME_HEADER_BYTES..]), Ok(Some(&b""[..])));
        assert_eq!(next_frame(&wire[..FRAME_HEADER_BYTES + 3]), Ok(None), "a frame in flight");
        assert_eq!(next_frame(&wire[..3]), Ok(None), "a header in flight");
        assert_eq!(next_frame(&[0xff; 4]), Err(FrameTooLarge(u32::MAX as usize)));
    }

    #[test]
    fn edge_ids() {
        for good in ["edge-1", "eu_west.3", &"a".repeat(64)] {
            assert!(valid_edge_id(good), "{good}");
        }
        for bad in ["", "edge 1", "edge/1", "édge", &"a".repeat(65), "e\0"] {
            assert!(!valid_edge_id(bad), "{bad:?}");
        }
    }
}
