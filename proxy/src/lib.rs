//! Portcullis edge: checks every request and flow against the snapshot the
//! control plane pushes, and closes live connections when access ends.
//!
//! Today this crate holds the [`SnapshotStore`] that every request reads; the
//! pingora proxy, the CONNECT tunnel, the connection registry and the kill
//! path are built on it by the edge issue.

#![forbid(unsafe_code)]

mod snapshot_store;

pub use snapshot_store::{SnapshotStore, StoreError};
