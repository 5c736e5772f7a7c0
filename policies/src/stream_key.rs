//! The stream-signing key pair: the control plane signs every frame it
//! streams to edges (snapshots, deltas, heartbeats) with it, and edges
//! verify with the public half, pinned in their configuration or fetched
//! once. It is a key of its own, separate from the session-signing keys.
//!
//! Why Ed25519 rather than ECDSA P-256 (which signs session tokens):
//! signatures are deterministic by construction, so no per-signature random
//! nonce can leak the key (an ECDSA nonce bug does); strict verification
//! refuses malleable and small-order signatures; the public key is 32
//! bytes, short enough to pin as one line of configuration
//! (`ed25519:` + 43 base64url characters); and verifying a heartbeat costs
//! tens of microseconds. The stream needs no interoperability with JOSE
//! libraries, which is the main reason session tokens stay on ES256.
//!
//! Text forms: the public key as `ed25519:<base64url of the 32 bytes>` or as
//! a PEM `PUBLIC KEY` (SubjectPublicKeyInfo, RFC 8410, what `openssl pkey
//! -pubout` prints); the private key as a PEM `PRIVATE KEY` (PKCS#8 v1, RFC
//! 8410), which only the control plane's database holds.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use ed25519_dalek::{SigningKey, VerifyingKey};

/// The algorithm name stored next to the key and shown to operators.
pub const ALGORITHM: &str = "Ed25519";
/// Prefix of the one-line text form of a public key.
const TEXT_PREFIX: &str = "ed25519:";
/// DER of an Ed25519 SubjectPublicKeyInfo before the 32 key bytes.
const SPKI_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];
/// DER of an Ed25519 PKCS#8 v1 private key before the 32 seed bytes.
const PKCS8_PREFIX: [u8; 16] =
    [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];

/// A stream key that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamKeyError {
    /// Not one of the accepted text forms.
    #[error("expected an Ed25519 public key as `ed25519:<base64url>` or a PEM `PUBLIC KEY` block; {0}")]
    PublicFormat(&'static str),
    /// Decodes, but is not a usable Ed25519 point (invalid or of small order).
    #[error("not a usable Ed25519 public key (invalid or weak point)")]
    WeakPublicKey,
    /// The private key is not an Ed25519 PKCS#8 PEM.
    #[error("expected an Ed25519 private key as a PKCS#8 PEM `PRIVATE KEY` block")]
    PrivateFormat,
}

/// The private stream-signing key. Its `Debug` shows only the public half,
/// and the key bytes are wiped from memory when it is dropped.
#[derive(Clone)]
pub struct StreamSigningKey(SigningKey);

impl StreamSigningKey {
    /// The key for 32 secret random bytes (the control plane draws them
    /// from the operating system's CSPRNG).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self(SigningKey::from_bytes(&seed))
    }

    /// Reads a PKCS#8 PEM `PRIVATE KEY`.
    pub fn from_pkcs8_pem(text: &str) -> Result<Self, StreamKeyError> {
        let der = pem_body(text, "PRIVATE KEY").ok_or(StreamKeyError::PrivateFormat)?;
        let seed = der.strip_prefix(&PKCS8_PREFIX[..]).ok_or(StreamKeyError::PrivateFormat)?;
        let seed: [u8; 32] = seed.try_into().map_err(|_| StreamKeyError::PrivateFormat)?;
        Ok(Self::from_seed(seed))
    }

    /// The PKCS#8 PEM `PRIVATE KEY` (secret: for the database only).
    pub fn to_pkcs8_pem(&self) -> String {
        let mut der = PKCS8_PREFIX.to_vec();
        der.extend_from_slice(self.0.as_bytes());
        pem("PRIVATE KEY", &der)
    }

    /// The public half.
    pub fn public_key(&self) -> StreamPublicKey {
        StreamPublicKey(self.0.verifying_key())
    }

    pub(crate) fn signing_key(&self) -> &SigningKey {
        &self.0
    }
}

impl fmt::Debug for StreamSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StreamSigningKey({})", self.public_key())
    }
}

/// The public stream key edges verify frames with.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct StreamPublicKey(VerifyingKey);

impl StreamPublicKey {
    /// The key for its 32 bytes; refuses invalid and small-order points.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, StreamKeyError> {
        let key = VerifyingKey::from_bytes(bytes).map_err(|_| StreamKeyError::WeakPublicKey)?;
        if key.is_weak() {
            return Err(StreamKeyError::WeakPublicKey);
        }
        Ok(Self(key))
    }

    /// The 32 bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The short id frames carry, so an edge can tell "signed with another
    /// key" from "tampered with": the first 8 bytes of the public key.
    pub fn key_id(&self) -> StreamKeyId {
        let mut id = [0u8; 8];
        id.copy_from_slice(&self.0.as_bytes()[..8]);
        StreamKeyId(id)
    }

    /// The PEM `PUBLIC KEY` (SubjectPublicKeyInfo) form.
    pub fn to_pem(&self) -> String {
        let mut der = SPKI_PREFIX.to_vec();
        der.extend_from_slice(self.0.as_bytes());
        pem("PUBLIC KEY", &der)
    }

    pub(crate) fn verifying_key(&self) -> &VerifyingKey {
        &self.0
    }
}

impl FromStr for StreamPublicKey {
    type Err = StreamKeyError;

    /// `ed25519:<base64url>` (padding optional) or a PEM `PUBLIC KEY` block.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let bytes = if let Some(encoded) = text.strip_prefix(TEXT_PREFIX) {
            URL_SAFE_NO_PAD
                .decode(encoded.trim_end_matches('='))
                .map_err(|_| StreamKeyError::PublicFormat("the part after `ed25519:` is not base64url"))?
        } else if text.starts_with("-----BEGIN") {
            let der = pem_body(text, "PUBLIC KEY")
                .ok_or(StreamKeyError::PublicFormat("the PEM block is not a readable `PUBLIC KEY`"))?;
            der.strip_prefix(&SPKI_PREFIX[..])
                .ok_or(StreamKeyError::PublicFormat("the PEM block holds a key of another algorithm"))?
                .to_vec()
        } else {
            return Err(StreamKeyError::PublicFormat("found neither"));
        };
        let bytes: [u8; 32] =
            bytes.try_into().map_err(|_| StreamKeyError::PublicFormat("an Ed25519 public key is 32 bytes"))?;
        Self::from_bytes(&bytes)
    }
}

impl fmt::Display for StreamPublicKey {
    /// The one-line form, `ed25519:<base64url>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{TEXT_PREFIX}{}", URL_SAFE_NO_PAD.encode(self.0.as_bytes()))
    }
}

impl fmt::Debug for StreamPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StreamPublicKey({self})")
    }
}

/// The public stream key as `GET /edge/v1/stream-key` serves it (JSON) to
/// edges that do not pin one.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PublishedStreamKey {
    /// [`ALGORITHM`].
    pub algorithm: String,
    /// The one-line form, `ed25519:<base64url>`.
    pub public_key: String,
    /// [`StreamPublicKey::key_id`], 16 hex digits.
    pub kid: String,
}

impl PublishedStreamKey {
    /// The published form of `key`.
    pub fn of(key: &StreamPublicKey) -> Self {
        Self { algorithm: ALGORITHM.into(), public_key: key.to_string(), kid: key.key_id().to_string() }
    }

    /// The key it names (the algorithm must be [`ALGORITHM`]).
    pub fn key(&self) -> Result<StreamPublicKey, StreamKeyError> {
        if self.algorithm != ALGORITHM {
            return Err(StreamKeyError::PublicFormat("the algorithm is not Ed25519"));
        }
        self.public_key.parse()
    }
}

/// The id of a stream key as frames carry it, shown as 16 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct StreamKeyId(pub [u8; 8]);

impl fmt::Display for StreamKeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

impl fmt::Debug for StreamKeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StreamKeyId({self})")
    }
}

/// A PEM block with 64-character lines.
fn pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The DER inside the first `label` PEM block of `text`.
fn pem_body(text: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)? + begin.len();
    let stop = start + text[start..].find(&end)?;
    let base64: String = text[start..stop].chars().filter(|c| !c.is_ascii_whitespace()).collect();
    STANDARD.decode(base64).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_forms_round_trip() {
        let key = StreamSigningKey::from_seed([7; 32]);
        let public = key.public_key();
        let line = public.to_string();
        assert!(line.starts_with("ed25519:") && line.len() == 8 + 43, "{line}");
        assert_eq!(line.parse::<StreamPublicKey>(), Ok(public));
        assert_eq!(format!("  {line}=\n").parse::<StreamPublicKey>(), Ok(public), "whitespace, padding");
        assert_eq!(public.to_pem().parse::<StreamPublicKey>(), Ok(public));
        let private = key.to_pkcs8_pem();
        assert!(private.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{private}");
        assert_eq!(StreamSigningKey::from_pkcs8_pem(&private).unwrap().public_key(), public);
        assert_eq!(public.key_id().to_string().len(), 16);
    }

    #[test]
    fn openssl_pem_forms_are_read() {
        // `openssl genpkey -algorithm ed25519` and `openssl pkey -pubout` of it
        // (a throwaway key made for this test).
        let private = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEILfrTj0+0wJ2apWS1WEoRqrUaP3QXR2UpVCmGrCcv1Tg\n-----END PRIVATE KEY-----\n";
        let public = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAJEEWWvwa4zbffNZAmSsdL6WVsPoThmrV3OBZNo4UU1g=\n-----END PUBLIC KEY-----\n";
        let key = StreamSigningKey::from_pkcs8_pem(private).unwrap();
        assert_eq!(key.to_pkcs8_pem(), private, "the same bytes as OpenSSL writes");
        assert_eq!(key.public_key().to_pem(), public);
        assert_eq!(public.parse::<StreamPublicKey>(), Ok(key.public_key()));
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let key = StreamSigningKey::from_seed([0x42; 32]);
        let shown = format!("{key:?}");
        assert!(shown.contains(&key.public_key().to_string()), "{shown}");
        assert!(!shown.contains("42, 42") && !shown.contains("4242"), "{shown}");
    }

    #[test]
    fn malformed_and_weak_keys_are_refused() {
        for bad in [
            "",
            "ed25519:",
            "ed25519:!!!",
            "ed25519:AAAA",
            "rsa:AAAA",
            "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----",
        ] {
            assert!(bad.parse::<StreamPublicKey>().is_err(), "{bad:?}");
        }
        // The identity point: every signature would "verify" under a weak key.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(StreamPublicKey::from_bytes(&identity), Err(StreamKeyError::WeakPublicKey));
        assert_eq!(StreamSigningKey::from_pkcs8_pem("nope").unwrap_err(), StreamKeyError::PrivateFormat);
    }
}
