//! x
pub struct SnapshotStore;
