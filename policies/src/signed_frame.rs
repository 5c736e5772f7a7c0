//! The signature envelope around every frame of the edge stream: the
//! control plane seals each wire message (snapshot, delta, heartbeat) with
//! the stream-signing key, and the edge opens it before decoding, so a man
//! in the middle or anyone posing as the control plane can neither change a
//! frame nor make one up.
//!
//! A signature alone would let an attacker replay genuine frames: an old
//! snapshot that predates a termination, a delta twice, or heartbeats that
//! make a dead stream look alive. So every frame is also bound to its
//! stream and its place in it ([`StreamBinding`]): the edge draws a random
//! nonce for each stream it opens and sends it with `since`; the control
//! plane signs that nonce, that `since` and a counter (0, 1, 2, … per
//! stream) into every frame. A frame from another stream, from an earlier
//! place in this one, or after a dropped frame is refused.
//!
//! ```text
//! frame payload = magic "PCSIGN01" ‖ key id (8) ‖ nonce (16) ‖ since flag (1) ‖ since (u64 BE)
//!               ‖ counter (u64 BE) ‖ message (wire::encode) ‖ Ed25519 signature (64)
//! signed bytes  = everything before the signature
//! ```
//!
//! The binding travels in clear so a refusal can say what went wrong; it is
//! signed, and the edge compares it with what it sent, so it cannot be
//! altered. A payload without the magic is an unsigned frame (a bare wire
//! message starts with its version number, 1 or 2).

use std::fmt;
use std::str::FromStr;

use ed25519_dalek::{Signature, Signer};

use crate::stream_key::{StreamKeyId, StreamPublicKey, StreamSigningKey};

/// The first bytes of every signed frame (format version 1).
pub const FRAME_MAGIC: [u8; 8] = *b"PCSIGN01";
/// Bytes before the message: magic, key id, nonce, since, counter.
pub const HEADER_BYTES: usize = 8 + 8 + 16 + 1 + 8 + 8;
/// Bytes of the signature after the message.
pub const SIGNATURE_BYTES: usize = 64;

/// 128 random bits the edge draws for each stream it opens, written as 32
/// lowercase hex digits in `?nonce=`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct StreamNonce(pub [u8; 16]);

/// A nonce that is not 32 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid stream nonce: expected 32 hexadecimal digits")]
pub struct InvalidStreamNonce;

impl FromStr for StreamNonce {
    type Err = InvalidStreamNonce;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let digits = text.as_bytes();
        if digits.len() != 32 {
            return Err(InvalidStreamNonce);
        }
        let value = |d: u8| (d as char).to_digit(16).map(|v| v as u8).ok_or(InvalidStreamNonce);
        let mut bytes = [0u8; 16];
        for (byte, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
            *byte = (value(pair[0])? << 4) | value(pair[1])?;
        }
        Ok(Self(bytes))
    }
}

impl fmt::Display for StreamNonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

impl fmt::Debug for StreamNonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StreamNonce({self})")
    }
}

/// What one stream's frames are bound to: the request that opened it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamBinding {
    /// The edge's nonce for this stream.
    pub nonce: StreamNonce,
    /// The `since` the edge asked for (absent: a full snapshot).
    pub since: Option<u64>,
}

impl StreamBinding {
    fn write_header(&self, key: StreamKeyId, counter: u64, out: &mut Vec<u8>) {
        out.extend_from_slice(&FRAME_MAGIC);
        out.extend_from_slice(&key.0);
        out.extend_from_slice(&self.nonce.0);
        out.push(u8::from(self.since.is_some()));
        out.extend_from_slice(&self.since.unwrap_or(0).to_be_bytes());
        out.extend_from_slice(&counter.to_be_bytes());
    }
}

/// Seals the frames of one stream, in order (control-plane side).
pub struct FrameSigner {
    key: StreamSigningKey,
    key_id: StreamKeyId,
    binding: StreamBinding,
    next: u64,
}

impl FrameSigner {
    /// A signer for the stream opened with `binding`; its first frame is 0.
    pub fn new(key: &StreamSigningKey, binding: StreamBinding) -> Self {
        Self { key: key.clone(), key_id: key.public_key().key_id(), binding, next: 0 }
    }

    /// Appends the signed payload for `message` (an encoded wire message)
    /// to `out`, as the next frame of the stream.
    pub fn seal_into(&mut self, message: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        out.reserve(HEADER_BYTES + message.len() + SIGNATURE_BYTES);
        self.binding.write_header(self.key_id, self.next, out);
        out.extend_from_slice(message);
        let signature = self.key.signing_key().sign(&out[start..]);
        out.extend_from_slice(&signature.to_bytes());
        self.next += 1;
    }

    /// The signed payload for `message`, as the next frame.
    pub fn seal(&mut self, message: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        self.seal_into(message, &mut out);
        out
    }
}

/// Why a frame was refused. Nothing of a refused frame is applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameRefusal {
    /// No signature envelope (or too short to hold one).
    #[error("unsigned frame: it carries no stream signature")]
    Unsigned,
    /// Signed with another key than the one this edge pins.
    #[error("frame signed with stream key {found}, but this edge pins stream key {pinned}")]
    WrongKey {
        /// Key id in the frame.
        found: StreamKeyId,
        /// Key id of the pinned key.
        pinned: StreamKeyId,
    },
    /// The signature does not verify: the frame was altered or forged.
    #[error("bad signature: frame {counter} does not verify with stream key {key} (altered or forged)")]
    BadSignature {
        /// The frame's counter as it claims.
        counter: u64,
        /// The pinned key's id.
        key: StreamKeyId,
    },
    /// Genuinely signed, but for another stream (another nonce or `since`):
    /// replayed from an earlier stream.
    #[error("replayed frame: signed for another stream (nonce {found}), not this one (nonce {expected})")]
    OtherStream {
        /// This stream's nonce.
        expected: StreamNonce,
        /// The nonce in the frame.
        found: StreamNonce,
    },
    /// Genuinely signed for this stream, but not the next frame: an earlier
    /// frame again (replayed) or a later one (frames were dropped).
    #[error("frame {found} where frame {expected} was due ({})", out_of_order_cause(*found, *expected))]
    OutOfOrder {
        /// The counter due.
        expected: u64,
        /// The counter in the frame.
        found: u64,
    },
}

fn out_of_order_cause(found: u64, expected: u64) -> &'static str {
    if found < expected {
        "replayed"
    } else {
        "frames dropped"
    }
}

/// Every [`FrameRefusal::reason`], for metrics that start at 0.
pub const REFUSAL_REASONS: [&str; 5] = ["unsigned", "wrong_key", "bad_signature", "replayed", "out_of_order"];

impl FrameRefusal {
    /// A short stable label for metrics: one of [`REFUSAL_REASONS`].
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Unsigned => "unsigned",
            Self::WrongKey { .. } => "wrong_key",
            Self::BadSignature { .. } => "bad_signature",
            Self::OtherStream { .. } => "replayed",
            Self::OutOfOrder { expected, found } if found < expected => "replayed",
            Self::OutOfOrder { .. } => "out_of_order",
        }
    }
}

/// Opens the frames of one stream, in order (edge side).
pub struct FrameVerifier {
    key: StreamPublicKey,
    binding: StreamBinding,
    next: u64,
}

impl FrameVerifier {
    /// A verifier for the stream this edge opened with `binding`.
    pub fn new(key: StreamPublicKey, binding: StreamBinding) -> Self {
        Self { key, binding, next: 0 }
    }

    /// Frames verified so far.
    pub fn verified(&self) -> u64 {
        self.next
    }

    /// Checks `payload` as the next frame and returns the wire message it
    /// carries. The signature is checked before the binding, so
    /// `OtherStream` and `OutOfOrder` mean "genuine, but replayed or
    /// reordered" and `BadSignature` means "not made by the key holder".
    pub fn open<'f>(&mut self, payload: &'f [u8]) -> Result<&'f [u8], FrameRefusal> {
        if payload.len() < HEADER_BYTES + SIGNATURE_BYTES || payload[..8] != FRAME_MAGIC {
            return Err(FrameRefusal::Unsigned);
        }
        let (signed, signature) = payload.split_at(payload.len() - SIGNATURE_BYTES);
        let field = |at: usize| -> [u8; 8] { signed[at..at + 8].try_into().unwrap_or_default() };
        let pinned = self.key.key_id();
        let found = StreamKeyId(field(8));
        if found != pinned {
            return Err(FrameRefusal::WrongKey { found, pinned });
        }
        let counter = u64::from_be_bytes(field(41));
        let signature = Signature::from_bytes(signature.try_into().unwrap_or(&[0; SIGNATURE_BYTES]));
        if self.key.verifying_key().verify_strict(signed, &signature).is_err() {
            return Err(FrameRefusal::BadSignature { counter, key: pinned });
        }
        let nonce = StreamNonce(signed[16..32].try_into().unwrap_or_default());
        let since = (signed[32] == 1).then(|| u64::from_be_bytes(field(33)));
        if nonce != self.binding.nonce || since != self.binding.since {
            return Err(FrameRefusal::OtherStream { expected: self.binding.nonce, found: nonce });
        }
        if counter != self.next {
            return Err(FrameRefusal::OutOfOrder { expected: self.next, found: counter });
        }
        self.next += 1;
        Ok(&signed[HEADER_BYTES..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{decode, encode, Message};

    fn key(seed: u8) -> StreamSigningKey {
        StreamSigningKey::from_seed([seed; 32])
    }

    fn binding(nonce: u8, since: Option<u64>) -> StreamBinding {
        StreamBinding { nonce: StreamNonce([nonce; 16]), since }
    }

    fn heartbeat(head_seq: u64) -> Vec<u8> {
        encode(&Message::Heartbeat { head_seq, sent_at_ms: 1_800_000_000_000 })
    }

    #[test]
    fn sealed_frames_open_in_order() {
        let (key, binding) = (key(1), binding(9, Some(41)));
        let mut signer = FrameSigner::new(&key, binding);
        let mut verifier = FrameVerifier::new(key.public_key(), binding);
        for seq in 41..45 {
            let frame = signer.seal(&heartbeat(seq));
            assert_eq!(frame.len(), HEADER_BYTES + heartbeat(seq).len() + SIGNATURE_BYTES);
            let message = verifier.open(&frame).expect("a genuine frame in order");
            assert!(matches!(decode(message), Ok(Message::Heartbeat { head_seq, .. }) if head_seq == seq));
        }
        assert_eq!(verifier.verified(), 4);
        let mut out = vec![0xee; 4];
        FrameSigner::new(&key, binding).seal_into(b"x", &mut out);
        assert_eq!(&out[..4], &[0xee; 4], "sealing appends after what the buffer holds");
    }

    #[test]
    fn every_altered_byte_is_refused() {
        let (key, binding) = (key(1), binding(9, None));
        let frame = FrameSigner::new(&key, binding).seal(&heartbeat(7));
        for at in 0..frame.len() {
            let mut altered = frame.clone();
            altered[at] ^= 0x01;
            let refusal = FrameVerifier::new(key.public_key(), binding).open(&altered).unwrap_err();
            let expected = match at {
                0..8 => "unsigned",
                8..16 => "wrong_key",
                _ => "bad_signature",
            };
            assert_eq!(refusal.reason(), expected, "byte {at}: {refusal}");
        }
    }

    #[test]
    fn unsigned_and_foreign_frames_are_refused() {
        let binding = binding(9, None);
        let mut verifier = FrameVerifier::new(key(1).public_key(), binding);
        assert_eq!(verifier.open(&heartbeat(3)), Err(FrameRefusal::Unsigned), "a bare wire message");
        assert_eq!(verifier.open(b""), Err(FrameRefusal::Unsigned));
        assert_eq!(verifier.open(&FRAME_MAGIC), Err(FrameRefusal::Unsigned), "too short for a signature");
        let foreign = FrameSigner::new(&key(2), binding).seal(&heartbeat(3));
        assert_eq!(verifier.open(&foreign).unwrap_err().reason(), "wrong_key");
        // An attacker's key presenting the real key's id: the signature fails.
        let mut spoofed = foreign.clone();
        spoofed[8..16].copy_from_slice(&key(1).public_key().key_id().0);
        let len = spoofed.len();
        let signature = key(2).signing_key().sign(&spoofed[..len - SIGNATURE_BYTES]);
        spoofed[len - SIGNATURE_BYTES..].copy_from_slice(&signature.to_bytes());
        assert!(matches!(verifier.open(&spoofed), Err(FrameRefusal::BadSignature { counter: 0, .. })));
        assert_eq!(verifier.verified(), 0, "nothing refused counts");
    }

    #[test]
    fn frames_of_another_stream_or_place_are_refused() {
        let key = key(1);
        let mut old = FrameSigner::new(&key, binding(1, None));
        let old_snapshot = old.seal(&heartbeat(1));
        let old_delta = old.seal(&heartbeat(2));

        let now = binding(2, Some(5));
        let mut signer = FrameSigner::new(&key, now);
        let mut verifier = FrameVerifier::new(key.public_key(), now);
        assert_eq!(verifier.open(&old_snapshot).unwrap_err().reason(), "replayed", "another stream's first frame");
        let other_since = FrameSigner::new(&key, binding(2, None)).seal(&heartbeat(1));
        assert_eq!(verifier.open(&other_since).unwrap_err().reason(), "replayed", "the same nonce, another since");
        let first = signer.seal(&heartbeat(5));
        verifier.open(&first).expect("frame 0");
        assert_eq!(verifier.open(&first).unwrap_err().reason(), "replayed", "frame 0 again");
        let _dropped = signer.seal(&heartbeat(6));
        let third = signer.seal(&heartbeat(7));
        let refusal = verifier.open(&third).unwrap_err();
        assert_eq!(refusal, FrameRefusal::OutOfOrder { expected: 1, found: 2 });
        assert_eq!(refusal.reason(), "out_of_order");
        assert!(refusal.to_string().contains("frames dropped"), "{refusal}");
        assert_eq!(verifier.open(&old_delta).unwrap_err().reason(), "replayed");
    }

    #[test]
    fn nonces_are_32_hex_digits() {
        let nonce: StreamNonce = "00112233445566778899aabbccddeeff".parse().unwrap();
        assert_eq!(nonce.to_string(), "00112233445566778899aabbccddeeff");
        assert_eq!("00112233445566778899AABBCCDDEEFF".parse(), Ok(nonce));
        for bad in ["", "0011", "00112233445566778899aabbccddeefg", "+0112233445566778899aabbccddeeff"] {
            assert_eq!(bad.parse::<StreamNonce>(), Err(InvalidStreamNonce), "{bad}");
        }
    }
}
