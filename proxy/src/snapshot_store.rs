//! The snapshot every request on this edge is checked against.
//!
//! Readers call [`SnapshotStore::load`] once per request: an `ArcSwap` load,
//! no lock, no reference-count traffic on the fast path. The single writer
//! (the snapshot subscriber) builds the next value from a clone of the
//! current one — cheap, because every part of a snapshot is shared or
//! persistent — and swaps it in whole. Until the first snapshot arrives
//! there is nothing to load, and the edge fails closed.

use std::sync::Arc;

use arc_swap::{ArcSwapOption, Guard};
use portcullis_policy::snapshot::{Affected, ApplyError};
use portcullis_policy::{Delta, Snapshot};

/// Why a delta could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No full snapshot has arrived yet, so there is nothing to apply to.
    #[error("no snapshot yet; a full snapshot must arrive before deltas")]
    NoSnapshot,
    /// The snapshot refused the delta (gap in sequence, policy that does not compile).
    #[error(transparent)]
    Apply(#[from] ApplyError),
}

/// Holds the current snapshot, swapped whole.
#[derive(Default)]
pub struct SnapshotStore {
    current: ArcSwapOption<Snapshot>,
}

impl SnapshotStore {
    /// An empty store: requests fail closed until [`Self::replace`].
    pub fn new() -> Self {
        Self::default()
    }

    /// The snapshot in force, or `None` before the first one arrived.
    #[inline]
    pub fn load(&self) -> Guard<Option<Arc<Snapshot>>> {
        self.current.load()
    }

    /// The snapshot in force as an owned `Arc` (for handlers that await).
    #[inline]
    pub fn load_full(&self) -> Option<Arc<Snapshot>> {
        self.current.load_full()
    }

    /// The sequence of the snapshot in force.
    pub fn seq(&self) -> Option<u64> {
        self.current.load().as_ref().map(|s| s.seq())
    }

    /// Replaces everything with a full snapshot.
    pub fn replace(&self, snapshot: Snapshot) {
        self.current.store(Some(Arc::new(snapshot)));
    }

    /// Applies the next delta and swaps the result in; returns what it affects
    /// so the kill path can find live connections. On error nothing changes.
    /// Only one task may write (the subscriber); concurrent writers would lose updates.
    pub fn apply(&self, delta: &Delta) -> Result<Affected, StoreError> {
        let current = self.current.load_full().ok_or(StoreError::NoSnapshot)?;
        let mut next = Snapshot::clone(&current);
        let affected = next.apply(delta)?;
        self.current.store(Some(Arc::new(next)));
        Ok(affected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_policy::{Change, Policy, SessionId};

    fn terminate(seq: u64, byte: u8) -> Delta {
        Delta {
            seq,
            change: Change::TerminateSession { session: SessionId::from_bytes([byte; 16]), expires_at: i64::MAX },
        }
    }

    #[test]
    fn empty_store_fails_closed_and_refuses_deltas() {
        let store = SnapshotStore::new();
        assert!(store.load().is_none());
        assert!(matches!(store.apply(&terminate(1, 1)), Err(StoreError::NoSnapshot)));
    }

    #[test]
    fn readers_keep_their_snapshot_while_the_writer_swaps() {
        let store = SnapshotStore::new();
        store.replace(Snapshot::new(1, Arc::new(Policy::empty())));
        let before = Option::clone(&store.load()).expect("loaded");
        let affected = store.apply(&terminate(2, 9)).expect("in sequence");
        assert_eq!(affected, Affected::Session(SessionId::from_bytes([9; 16])));
        assert_eq!(store.seq(), Some(2));
        assert_eq!(before.seq(), 1, "a reader's snapshot never changes under it");
        assert!(!before.terminated_sessions().contains(&SessionId::from_bytes([9; 16])));
        assert!(matches!(store.apply(&terminate(4, 1)), Err(StoreError::Apply(ApplyError::OutOfSequence { .. }))));
        assert_eq!(store.seq(), Some(2));
    }
}
