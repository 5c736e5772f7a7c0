//! Verified tokens, cached by a keyed hash of the token so the signature
//! check (or the control-plane lookup) is paid once per token, not once per
//! request. A hit compares the full token, so a hash collision can never
//! hand one caller another's identity. Bounded: when full, it is emptied
//! (simple, and a refill costs one verification per live token). Only
//! *validity* is cached; revocation is checked against the snapshot on
//! every request.

use std::hash::BuildHasher;
use std::sync::Arc;

use dashmap::DashMap;
use portcullis_policy::Identity;

struct Cached {
    token: Box<str>,
    identity: Arc<Identity>,
    /// Unix seconds after which the entry is not used.
    valid_until: i64,
}

/// A bounded map from token to the identity it proved.
pub struct TokenCache {
    map: DashMap<u64, Cached>,
    capacity: usize,
    hasher: foldhash::fast::RandomState,
}

impl TokenCache {
    /// A cache holding up to `capacity` tokens (at least 16).
    pub fn new(capacity: usize) -> Self {
        Self { map: DashMap::new(), capacity: capacity.max(16), hasher: foldhash::fast::RandomState::default() }
    }

    /// Number of cached tokens.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The identity `token` proved, if cached and still valid at `now` (Unix seconds).
    pub fn get(&self, token: &str, now: i64) -> Option<Arc<Identity>> {
        let hit = self.map.get(&self.hasher.hash_one(token))?;
        (&*hit.token == token && hit.valid_until > now).then(|| Arc::clone(&hit.identity))
    }

    /// Remembers that `token` proves `identity` until `valid_until` (Unix seconds).
    pub fn insert(&self, token: &str, identity: Arc<Identity>, valid_until: i64) {
        if self.map.len() >= self.capacity {
            self.map.clear();
        }
        self.map.insert(self.hasher.hash_one(token), Cached { token: token.into(), identity, valid_until });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_policy::IdentityParts;

    fn identity(subject: &str) -> Arc<Identity> {
        Arc::new(Identity::new(IdentityParts { subject: subject.into(), ..IdentityParts::default() }))
    }

    #[test]
    fn hits_only_the_same_token_before_it_expires() {
        let cache = TokenCache::new(16);
        cache.insert("token-a", identity("a"), 100);
        assert_eq!(cache.get("token-a", 99).map(|i| i.subject().to_owned()).as_deref(), Some("a"));
        assert!(cache.get("token-a", 100).is_none(), "expired");
        assert!(cache.get("token-b", 1).is_none(), "another token");
    }

    #[test]
    fn stays_bounded() {
        let cache = TokenCache::new(16);
        for n in 0..100 {
            cache.insert(&format!("token-{n}"), identity("x"), 100);
            assert!(cache.len() <= 16);
        }
        assert!(cache.get("token-99", 1).is_some(), "the newest entry survives a reset");
    }
}
