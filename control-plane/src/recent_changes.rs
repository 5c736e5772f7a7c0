//! The newest stretch of the change log, in memory, shared by every edge
//! stream of this replica. After a change every stream needs the same
//! rows; read from the store by each, that is one query per connected edge
//! per change (500 edges: 500 queries for one termination). Here the first
//! stream to need rows past the window reads them once, under a lock the
//! others wait on, and the rest copy them from the window.
//!
//! The window only ever holds consecutive sequences (the log has no gaps:
//! sequences are allocated under the change-log lock and committed in
//! order), so a stream whose position lies inside it gets exactly what the
//! store would have returned. A stream behind the window (reconnected with
//! an old `since`) reads the store directly, as before.

use std::collections::VecDeque;
use std::sync::RwLock;

use bytes::Bytes;

use crate::store::{ChangeStore, StoreResult};

/// Changes kept in the window (a few hundred bytes each).
const KEPT: usize = 4096;

/// The shared window and the lock around refilling it.
#[derive(Default)]
pub struct RecentChanges {
    window: RwLock<VecDeque<(u64, Bytes)>>,
    filling: tokio::sync::Mutex<()>,
}

impl RecentChanges {
    /// Deltas with `seq > after`, in order, at most `limit`, like
    /// [`ChangeStore::changes_after`].
    pub async fn after(&self, store: &dyn ChangeStore, after: u64, limit: u32) -> StoreResult<Vec<(u64, Bytes)>> {
        let limit = limit as usize;
        if let Some(rows) = self.cached(after, limit) {
            return Ok(rows);
        }
        let _filling = self.filling.lock().await;
        if let Some(rows) = self.cached(after, limit) {
            return Ok(rows);
        }
        // Extend the window from its end when `after` lies within it (or
        // right at its end); otherwise start a new window at `after`,
        // unless that is behind the current one.
        let (start, end) = self.bounds();
        let from = match (start, end) {
            (Some(first), Some(last)) if after + 1 >= first && after <= last => last,
            (Some(first), _) if after + 1 < first => {
                return Ok(store.changes_after(after, limit as u32).await?.into_iter().map(to_bytes).collect());
            }
            _ => after,
        };
        let rows: Vec<(u64, Bytes)> =
            store.changes_after(from, limit as u32).await?.into_iter().map(to_bytes).collect();
        self.append(from, &rows);
        Ok(self.cached(after, limit).unwrap_or_default())
    }

    /// A snapshot was built at `head`: a window reaching past it came from
    /// another database (restored under a running replica) and goes.
    pub fn saw_head(&self, head: u64) {
        let mut window = self.window.write().unwrap_or_else(|e| e.into_inner());
        if window.back().is_some_and(|r| r.0 > head) {
            window.clear();
        }
    }

    /// The window's first and last sequences.
    fn bounds(&self) -> (Option<u64>, Option<u64>) {
        let window = self.window.read().unwrap_or_else(|e| e.into_inner());
        (window.front().map(|r| r.0), window.back().map(|r| r.0))
    }

    /// What the window holds past `after`, if `after` lies within it and
    /// the window reaches further.
    fn cached(&self, after: u64, limit: usize) -> Option<Vec<(u64, Bytes)>> {
        let window = self.window.read().unwrap_or_else(|e| e.into_inner());
        let (first, last) = (window.front()?.0, window.back()?.0);
        if after + 1 < first || after >= last {
            return None;
        }
        let skip = usize::try_from(after + 1 - first).ok()?;
        Some(window.range(skip..).take(limit).cloned().collect())
    }

    /// Adds `rows`, read as the changes after `from`: appended when they
    /// continue the window, else they replace it. Rows with a gap (which
    /// the log never has) are not kept.
    fn append(&self, from: u64, rows: &[(u64, Bytes)]) {
        let consecutive = rows.iter().zip(from + 1..).all(|((seq, _), expected)| *seq == expected);
        if rows.is_empty() || !consecutive {
            return;
        }
        let mut window = self.window.write().unwrap_or_else(|e| e.into_inner());
        if window.back().map(|r| r.0) != Some(from) {
            window.clear();
        }
        window.extend(rows.iter().cloned());
        let excess = window.len().saturating_sub(KEPT);
        window.drain(..excess);
    }
}

fn to_bytes((seq, delta): (u64, Vec<u8>)) -> (u64, Bytes) {
    (seq, Bytes::from(delta))
}

#[cfg(test)]
mod tests;
