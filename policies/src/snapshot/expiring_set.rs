//! A set of keys that each expire at a time, built for a million entries and
//! cheap copy-on-write updates.
//!
//! Split structure: a large frozen `base` hash map behind an `Arc` (compact,
//! about 25 bytes a slot) plus a small persistent `recent` map (a HAMT, so an
//! insert copies only one path of nodes). Cloning the set is two pointer
//! copies; inserting touches only `recent`; when `recent` grows past a
//! fraction of `base`, the two are merged into a new base. That merge is
//! O(n) but happens once per `n / 16` inserts, so inserts stay amortised O(1)
//! and the median insert never copies the big map.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

use foldhash::fast::FixedState;
use imbl::shared_ptr::DefaultSharedPtr;
use imbl::GenericHashMap;

/// `recent` may hold up to `max(MIN_RECENT, base.len() / RECENT_FRACTION)` keys.
const MIN_RECENT: usize = 1024;
const RECENT_FRACTION: usize = 16;

/// Keys with an expiry time (Unix seconds).
#[derive(Clone)]
pub struct ExpiringSet<K: Hash + Eq + Clone> {
    base: Arc<HashMap<K, i64, FixedState>>,
    recent: GenericHashMap<K, i64, FixedState, DefaultSharedPtr>,
    /// Keys of `recent` that are not also in `base`.
    recent_only: usize,
}

impl<K: Hash + Eq + Clone> Default for ExpiringSet<K> {
    fn default() -> Self {
        Self { base: Arc::default(), recent: GenericHashMap::default(), recent_only: 0 }
    }
}

impl<K: Hash + Eq + Clone> ExpiringSet<K> {
    /// Builds a set in one go (a full snapshot).
    pub fn from_entries(entries: impl IntoIterator<Item = (K, i64)>) -> Self {
        let mut base: HashMap<K, i64, FixedState> = HashMap::default();
        for (key, expires_at) in entries {
            let slot = base.entry(key).or_insert(expires_at);
            *slot = (*slot).max(expires_at);
        }
        base.shrink_to_fit();
        Self { base: Arc::new(base), ..Self::default() }
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.base.len() + self.recent_only
    }

    /// True when the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The expiry of `key`, if present.
    #[inline]
    pub fn get<Q>(&self, key: &Q) -> Option<i64>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.recent.get(key).or_else(|| self.base.get(key)).copied()
    }

    /// True when `key` is present.
    #[inline]
    pub fn contains<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.get(key).is_some()
    }

    /// Adds `key`, keeping the later expiry if it is already present.
    pub fn insert(&mut self, key: K, expires_at: i64) {
        let in_base = self.base.get(&key);
        match self.recent.get(&key).or(in_base) {
            Some(&existing) if existing >= expires_at => return,
            Some(_) => {}
            None => self.recent_only += 1,
        }
        self.recent.insert(key, expires_at);
        if self.recent.len() > MIN_RECENT.max(self.base.len() / RECENT_FRACTION) {
            self.merge(|_| true);
        }
    }

    /// Drops every key that expired at or before `cutoff`.
    pub fn expire(&mut self, cutoff: i64) {
        self.merge(|expires_at| expires_at > cutoff);
    }

    /// Rebuilds `base` from both parts, keeping entries `keep` accepts.
    fn merge(&mut self, keep: impl Fn(i64) -> bool) {
        let mut base: HashMap<K, i64, FixedState> =
            HashMap::with_capacity_and_hasher(self.len(), FixedState::default());
        for (key, &expires_at) in self.base.iter().chain(self.recent.iter()) {
            if keep(expires_at) {
                let slot = base.entry(key.clone()).or_insert(expires_at);
                *slot = (*slot).max(expires_at);
            }
        }
        self.base = Arc::new(base);
        self.recent = GenericHashMap::default();
        self.recent_only = 0;
    }

    /// Every key with its expiry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, i64)> + '_ {
        let recent = self.recent.iter().map(|(k, &e)| (k, e));
        let base = self.base.iter().filter(|(k, _)| !self.recent.contains_key(*k)).map(|(k, &e)| (k, e));
        recent.chain(base)
    }
}

impl<K: Hash + Eq + Clone + Ord> ExpiringSet<K> {
    /// Every entry, sorted by key (for comparisons and deterministic output).
    pub fn to_sorted_vec(&self) -> Vec<(K, i64)> {
        let mut entries: Vec<(K, i64)> = self.iter().map(|(k, e)| (k.clone(), e)).collect();
        entries.sort_unstable();
        entries
    }
}

impl<K: Hash + Eq + Clone + std::fmt::Debug> std::fmt::Debug for ExpiringSet<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ExpiringSet({} keys)", self.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserts_survive_merges_and_keep_the_later_expiry() {
        let mut set = ExpiringSet::from_entries((0u32..5000).map(|k| (k, 100)));
        for k in 4000u32..8000 {
            set.insert(k, 200);
        }
        assert_eq!(set.len(), 8000);
        assert_eq!(set.get(&10), Some(100));
        assert_eq!(set.get(&4500), Some(200));
        set.insert(7000, 50);
        assert_eq!(set.get(&7000), Some(200), "an earlier expiry never shortens an entry");
        assert!(!set.contains(&9000));
    }

    #[test]
    fn clones_are_independent() {
        let mut a = ExpiringSet::from_entries([(1u32, 10)]);
        let b = a.clone();
        a.insert(2, 10);
        assert!(a.contains(&2) && !b.contains(&2));
        assert_eq!((a.len(), b.len()), (2, 1));
    }

    #[test]
    fn expire_drops_only_past_entries() {
        let mut set = ExpiringSet::from_entries([(1u32, 10), (2, 20)]);
        set.insert(3, 30);
        set.insert(1, 40);
        set.expire(20);
        assert_eq!(set.to_sorted_vec(), vec![(1, 40), (3, 30)]);
    }
}
