//! Portcullis edge. Today: the [`SnapshotStore`] every request reads. The
//! pingora proxy, TCP tunnel and kill path are built by the edge issue.
#![forbid(unsafe_code)]

mod snapshot_store;

pub use snapshot_store::SnapshotStore;
