//! The fleet key: one random root per deployment, made by the control plane
//! and given only to enrolled edges, from which every edge derives the same
//! login-state, loop-guard and CLI-code keys (a browser may come back to
//! another edge behind a load balancer). It arrives after start-up (with
//! enrollment), so holders read it late: until it is known they use a key of
//! their own that opens nothing another edge sealed.

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The fleet key, once the control plane gave it (cheap to clone; shared).
#[derive(Clone, Default)]
pub struct FleetKey(Arc<ArcSwapOption<[u8; 32]>>);

impl std::fmt::Debug for FleetKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.load().is_some() { "FleetKey(known)" } else { "FleetKey(unknown)" })
    }
}

impl FleetKey {
    /// Stores the key the control plane gave; returns whether it changed
    /// (a control plane whose database was replaced has another key).
    pub fn set(&self, key: [u8; 32]) -> bool {
        let changed = self.0.load().as_deref() != Some(&key);
        if changed {
            self.0.store(Some(Arc::new(key)));
        }
        changed
    }

    /// Whether the key is known yet.
    pub fn is_known(&self) -> bool {
        self.0.load().is_some()
    }

    /// The key for `purpose` (HMAC-SHA256 of the fleet key), once known.
    pub fn derive(&self, purpose: &str) -> Option<[u8; 32]> {
        let root = self.0.load_full()?;
        Some(derive(&*root, purpose))
    }
}

/// HMAC-SHA256(`root`, `purpose`).
pub fn derive(root: &[u8], purpose: &str) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(root).expect("HMAC takes keys of any length");
    mac.update(purpose.as_bytes());
    mac.finalize().into_bytes().into()
}

/// A key derived from the fleet key for one purpose, with a random stand-in
/// until the fleet key is known (so nothing is ever sealed with a guessable
/// key, and nothing sealed by another edge opens before then).
pub struct DerivedKey {
    fleet: Option<FleetKey>,
    purpose: &'static str,
    fixed: [u8; 32],
}

impl DerivedKey {
    /// The key for `purpose` under `fleet`.
    pub fn from_fleet(fleet: &FleetKey, purpose: &'static str) -> Self {
        Self { fleet: Some(fleet.clone()), purpose, fixed: rand::random() }
    }

    /// The key for `purpose` under a fixed root (tests and tools).
    pub fn from_root(root: &[u8], purpose: &'static str) -> Self {
        Self { fleet: None, purpose, fixed: derive(root, purpose) }
    }

    /// The key now.
    pub fn get(&self) -> [u8; 32] {
        self.fleet.as_ref().and_then(|f| f.derive(self.purpose)).unwrap_or(self.fixed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edges_with_one_fleet_key_derive_the_same_keys() {
        let (a, b) = (FleetKey::default(), FleetKey::default());
        let (key_a, key_b) = (DerivedKey::from_fleet(&a, "p"), DerivedKey::from_fleet(&b, "p"));
        assert_ne!(key_a.get(), key_b.get(), "unknown fleet key: a private stand-in each");
        assert!(a.set([7; 32]) && b.set([7; 32]));
        assert!(!a.set([7; 32]), "the same key again changes nothing");
        assert_eq!(key_a.get(), key_b.get());
        assert_ne!(key_a.get(), DerivedKey::from_fleet(&a, "q").get(), "one key per purpose");
        assert_eq!(key_a.get(), DerivedKey::from_root(&[7; 32], "p").get());
    }
}
