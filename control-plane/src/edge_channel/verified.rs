//! Edge assertions this replica already verified. An edge reuses one
//! assertion for about 40 seconds (`proxy/src/identity`) across its stream,
//! its report every second and its session calls, so verifying its ES256
//! signature (and parsing the stored PEM key) on every call costs a
//! fleet's worth of signature checks per second for nothing new. A hit
//! skips only that: the exact token (by SHA-256) verified before against
//! the same key (by fingerprint), and not yet expired. The credential,
//! its revocation and its current key are still read from the store on
//! every call (`identity.rs`), so a revoked or re-enrolled edge is refused
//! on its next call on every replica, as before.

use std::collections::HashMap;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

/// Most assertions remembered (one or two per connected edge); when full,
/// expired entries go, and if none has expired, everything does.
const CAPACITY: usize = 16_384;

/// What a verification established about one token.
struct Verified {
    edge_id: String,
    key_fingerprint: String,
    /// Last second (Unix) at which the token is accepted: `exp` plus the
    /// clock skew the full verification tolerates.
    accepted_until_s: i64,
}

/// Verified assertions, keyed by the SHA-256 of the token.
#[derive(Default)]
pub struct VerifiedAssertions(Mutex<HashMap<[u8; 32], Verified>>);

/// The key a token is remembered under.
pub fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl VerifiedAssertions {
    /// Whether the token with `digest` was verified as `edge_id`'s against
    /// the key with `key_fingerprint` and is still within its lifetime at
    /// `now_s`.
    pub fn holds(&self, digest: &[u8; 32], edge_id: &str, key_fingerprint: &str, now_s: i64) -> bool {
        let known = self.0.lock().unwrap_or_else(|e| e.into_inner());
        known
            .get(digest)
            .is_some_and(|v| v.edge_id == edge_id && v.key_fingerprint == key_fingerprint && now_s < v.accepted_until_s)
    }

    /// Remembers a token that just passed the full verification.
    pub fn remember(&self, digest: [u8; 32], edge_id: &str, key_fingerprint: &str, accepted_until_s: i64, now_s: i64) {
        let mut known = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if known.len() >= CAPACITY {
            known.retain(|_, v| now_s < v.accepted_until_s);
            if known.len() >= CAPACITY {
                known.clear();
            }
        }
        let verified =
            Verified { edge_id: edge_id.to_owned(), key_fingerprint: key_fingerprint.to_owned(), accepted_until_s };
        known.insert(digest, verified);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_holds_only_for_its_edge_its_key_and_its_lifetime() {
        let verified = VerifiedAssertions::default();
        let digest = token_digest("header.claims.signature");
        assert!(!verified.holds(&digest, "edge-1", "fp-1", 100), "nothing verified yet");
        verified.remember(digest, "edge-1", "fp-1", 160, 100);
        assert!(verified.holds(&digest, "edge-1", "fp-1", 159));
        assert!(!verified.holds(&digest, "edge-1", "fp-1", 160), "expired");
        assert!(!verified.holds(&digest, "edge-1", "fp-2", 120), "the edge enrolled another key since");
        assert!(!verified.holds(&digest, "edge-2", "fp-1", 120), "another edge's id");
        assert!(!verified.holds(&token_digest("header.claims.signaturf"), "edge-1", "fp-1", 120), "another token");
    }

    #[test]
    fn a_full_cache_forgets_expired_tokens_first_and_never_grows_past_its_capacity() {
        let verified = VerifiedAssertions::default();
        for i in 0..CAPACITY as u32 {
            let until = if i % 2 == 0 { 50 } else { 500 };
            verified.remember(token_digest(&i.to_string()), "e", "f", until, 10);
        }
        verified.remember(token_digest("new"), "e", "f", 500, 100);
        assert_eq!(verified.len(), CAPACITY / 2 + 1, "the expired half went");
        assert!(verified.holds(&token_digest("1"), "e", "f", 100), "a live one stayed");
        for i in 0..CAPACITY as u32 {
            verified.remember(token_digest(&format!("live-{i}")), "e", "f", 500, 100);
        }
        assert!(verified.len() <= CAPACITY);
    }
}
