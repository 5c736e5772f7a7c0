//! Websocket frame boundaries (RFC 6455 §5.2) in a relayed byte stream, and
//! the close frame the edge sends when it ends a connection (§5.5.1).
//!
//! The relay copies bytes without decoding messages. [`FrameCursor`] reads
//! only the frame headers as they pass (payloads are skipped by length),
//! so the relay knows when a direction is between two frames: the only
//! place a frame of the edge's own can go without corrupting the stream.
//! Control frames may sit between the fragments of a message (§5.4), so
//! any frame boundary will do.

use crate::registry::KillReason;

/// Status code 1008, "policy violation" (RFC 6455 §7.4.1).
pub const POLICY_VIOLATION: u16 = 1008;
/// Longest close reason: a control frame's payload is at most 125 bytes,
/// two of which are the code.
pub const MAX_CLOSE_REASON: usize = 123;
/// The close opcode.
const CLOSE: u8 = 0x8;

/// Where one direction of a websocket stream is: in a frame's header, in
/// its payload, or between frames.
#[derive(Debug, Default, Clone)]
pub struct FrameCursor {
    /// The current frame's header bytes read so far (a header is at most 14).
    header: [u8; 14],
    header_len: usize,
    /// Payload bytes of the current frame still to come.
    payload_left: u64,
    /// A close frame's header went by.
    closed: bool,
}

impl FrameCursor {
    /// Between two frames (or before the first).
    pub fn at_boundary(&self) -> bool {
        self.header_len == 0 && self.payload_left == 0
    }

    /// A whole close frame went by (this side said goodbye).
    pub fn closed(&self) -> bool {
        self.closed && self.at_boundary()
    }

    /// Reads `bytes` as the next bytes of the stream; returns how many it
    /// took: all of them, or with `to_frame_end` only up to the end of the
    /// frame in progress (the first boundary reached).
    pub fn advance(&mut self, bytes: &[u8], to_frame_end: bool) -> usize {
        let mut at = 0;
        while at < bytes.len() {
            if self.payload_left > 0 {
                let take = self.payload_left.min((bytes.len() - at) as u64);
                at += take as usize;
                self.payload_left -= take;
            } else {
                self.header[self.header_len] = bytes[at];
                self.header_len += 1;
                at += 1;
                let Some((length, opcode)) = self.complete_header() else { continue };
                self.header_len = 0;
                self.payload_left = length;
                self.closed |= opcode == CLOSE;
            }
            if to_frame_end && self.at_boundary() {
                break;
            }
        }
        at
    }

    /// (payload length, opcode) once the header is complete.
    fn complete_header(&self) -> Option<(u64, u8)> {
        let header = &self.header[..self.header_len];
        let (&first, &second) = (header.first()?, header.get(1)?);
        let extended = match second & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let mask = if second & 0x80 != 0 { 4 } else { 0 };
        if header.len() < 2 + extended + mask {
            return None;
        }
        let length = match extended {
            0 => u64::from(second & 0x7f),
            _ => header[2..2 + extended].iter().fold(0, |length, b| length << 8 | u64::from(*b)),
        };
        Some((length, first & 0x0f))
    }
}

/// What the client is told when the edge ends its websocket: short, and
/// safe for any user to read (no admin's reason, rule name or user id).
pub fn close_reason(reason: Option<KillReason>) -> &'static str {
    match reason {
        Some(KillReason::SessionTerminated) => "session terminated",
        Some(KillReason::User) => "access revoked for this account",
        Some(KillReason::TokenRevoked) => "sign-in revoked",
        Some(KillReason::PolicyChanged) => "access ended: the policy no longer allows this",
        Some(KillReason::Expired) => "access expired: the session or its allowed time ended",
        Some(KillReason::Stale) => "access paused: the proxy cannot confirm it right now",
        Some(KillReason::KeyRevoked) => "sign-in no longer valid: sign in again",
        Some(KillReason::ClaimsChanged) => "access ended: your groups changed",
        None => "closed by the proxy",
    }
}

/// A server's close frame (unmasked, FIN set) with `code` and `reason`,
/// the reason cut to [`MAX_CLOSE_REASON`] bytes at a character boundary.
pub fn close_frame(code: u16, reason: &str) -> Vec<u8> {
    let mut end = reason.len().min(MAX_CLOSE_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let reason = &reason.as_bytes()[..end];
    let mut frame = Vec::with_capacity(4 + reason.len());
    frame.extend_from_slice(&[0x80 | CLOSE, (2 + reason.len()) as u8]);
    frame.extend_from_slice(&code.to_be_bytes());
    frame.extend_from_slice(reason);
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame as a server sends it (`mask`: as a client does).
    fn frame(opcode: u8, fin: bool, payload: &[u8], mask: bool) -> Vec<u8> {
        let mut out = vec![u8::from(fin) << 7 | opcode];
        let bit = if mask { 0x80 } else { 0 };
        match payload.len() {
            n if n < 126 => out.push(bit | n as u8),
            n if n <= 0xffff => {
                out.push(bit | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(bit | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        if mask {
            out.extend_from_slice(&[1, 2, 3, 4]);
        }
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn follows_frames_of_every_length_form_byte_by_byte_and_whole() {
        let mut stream = Vec::new();
        let mut ends = Vec::new();
        for (opcode, fin, length, mask) in [
            (1, true, 5, false),
            (2, false, 300, true),
            (0, true, 70_000, false),
            (9, true, 0, true),
            (1, true, 125, false),
        ] {
            stream.extend(frame(opcode, fin, &vec![0xAB; length], mask));
            ends.push(stream.len());
        }
        let mut whole = FrameCursor::default();
        assert_eq!(whole.advance(&stream, false), stream.len());
        assert!(whole.at_boundary() && !whole.closed());
        let mut cursor = FrameCursor::default();
        for (at, byte) in stream.iter().enumerate() {
            cursor.advance(std::slice::from_ref(byte), false);
            assert_eq!(cursor.at_boundary(), ends.contains(&(at + 1)), "after byte {at}");
        }
    }

    #[test]
    fn stops_at_the_end_of_the_frame_in_progress() {
        let first = frame(2, true, &[7; 1000], false);
        let mut stream = first.clone();
        stream.extend(frame(1, true, b"next", false));
        let mut cursor = FrameCursor::default();
        assert_eq!(cursor.advance(&stream[..10], false), 10);
        assert!(!cursor.at_boundary());
        assert_eq!(cursor.advance(&stream[10..], true), first.len() - 10, "up to the end of the first frame only");
        assert!(cursor.at_boundary());
        // Stopped inside a header: it still finds the frame's end.
        let mut cursor = FrameCursor::default();
        cursor.advance(&stream[..1], false);
        assert_eq!(cursor.advance(&stream[1..], true), first.len() - 1);
    }

    #[test]
    fn notices_a_close_frame_once_it_is_whole() {
        let close = frame(CLOSE, true, &[0x03, 0xe8, b'b', b'y', b'e'], true);
        let mut cursor = FrameCursor::default();
        cursor.advance(&close[..close.len() - 1], false);
        assert!(!cursor.closed(), "its payload is not all here yet");
        cursor.advance(&close[close.len() - 1..], false);
        assert!(cursor.closed());
    }

    #[test]
    fn the_close_frame_carries_1008_and_a_reason_cut_to_123_bytes_of_whole_characters() {
        let frame = close_frame(POLICY_VIOLATION, "session terminated");
        assert_eq!(&frame[..4], &[0x88, 20, 0x03, 0xf0]);
        assert_eq!(&frame[4..], b"session terminated");
        let mut cursor = FrameCursor::default();
        assert_eq!(cursor.advance(&frame, false), frame.len());
        assert!(cursor.closed());
        let long = "é".repeat(100);
        let frame = close_frame(POLICY_VIOLATION, &long);
        assert_eq!(usize::from(frame[1]), frame.len() - 2);
        assert!(frame.len() - 4 <= MAX_CLOSE_REASON && std::str::from_utf8(&frame[4..]).is_ok());
        assert_eq!(frame.len() - 4, 122, "61 two-byte characters");
    }

    #[test]
    fn every_reason_is_short_and_says_nothing_internal() {
        let reasons = [
            None,
            Some(KillReason::SessionTerminated),
            Some(KillReason::User),
            Some(KillReason::TokenRevoked),
            Some(KillReason::PolicyChanged),
            Some(KillReason::Expired),
            Some(KillReason::Stale),
            Some(KillReason::KeyRevoked),
            Some(KillReason::ClaimsChanged),
        ];
        for reason in reasons {
            let text = close_reason(reason);
            assert!(!text.is_empty() && text.len() <= MAX_CLOSE_REASON, "{text}");
            assert!(text.is_ascii() && !text.contains('_'), "plain words, not a metrics label: {text}");
        }
    }
}
