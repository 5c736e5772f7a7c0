//! Secrets the control plane makes and compares: random tokens and ids,
//! token hashes (only hashes are stored), and constant-time comparison.
//! Below every component that handles credentials (admin API, portal, edge
//! channel).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

/// The prefix of edge join tokens (admin tokens are `pcat_`, service tokens `pcst_`).
pub const JOIN_TOKEN_PREFIX: &str = "pcjt_";

/// A new random token with a recognisable prefix (`pcat_` admin, `pcst_` service).
pub fn new_token(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::Rng::fill(&mut rand::rngs::OsRng, &mut bytes);
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// A short random id for records.
pub fn new_id() -> String {
    let mut bytes = [0u8; 12];
    rand::Rng::fill(&mut rand::rngs::OsRng, &mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The SHA-256 of a token, hex.
pub fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Constant-time comparison of two secrets through fixed-length digests.
pub fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
