//! SIEM sink cursors, on both backends: one holder of a sink's lease at a
//! time, a stale holder cannot move the cursor, and entries are read after
//! the cursor in id order.

use portcullis_control_plane::store::{SinkStart, SqlStore, UserStore};
use portcullis_policy::UserRef;

use crate::fixtures::{actor, T0};

async fn one_replica_delivers_for_a_sink_at_a_time(store: SqlStore) {
    for n in 0..3 {
        store.lock_user(&UserRef::email(&format!("u{n}@corp.example")), "x", None, &actor(), T0).await.unwrap();
    }
    let lease = 1_000;
    assert_eq!(store.claim_sink("soc", "a", SinkStart::Beginning, T0, lease).await.unwrap(), Some(0));
    assert_eq!(store.claim_sink("soc", "b", SinkStart::Beginning, T0 + 10, lease).await.unwrap(), None, "a holds it");
    let batch = store.audit_after(0, 2).await.unwrap();
    assert_eq!(batch.len(), 2);
    assert!(batch[0].id < batch[1].id, "in id order");
    assert!(!store.advance_sink("soc", "b", batch[1].id, T0 + 20).await.unwrap(), "b cannot move it");
    assert!(store.advance_sink("soc", "a", batch[1].id, T0 + 20).await.unwrap());
    assert_eq!(store.sink_backlog("soc").await.unwrap().pending, 1);
    // a stalls past its lease: b takes over where a left off; a can no longer move it.
    assert_eq!(store.claim_sink("soc", "b", SinkStart::Beginning, T0 + 2_000, lease).await.unwrap(), Some(batch[1].id));
    let rest = store.audit_after(batch[1].id, 100).await.unwrap();
    assert!(!store.advance_sink("soc", "a", rest[0].id, T0 + 2_001).await.unwrap(), "a's lease lapsed");
    assert!(store.advance_sink("soc", "b", rest[0].id, T0 + 2_001).await.unwrap());
    assert_eq!(store.sink_backlog("soc").await.unwrap().pending, 0);
    // A sink added later that starts "now" skips the history.
    assert_eq!(store.claim_sink("late", "c", SinkStart::Now, T0, lease).await.unwrap(), Some(rest[0].id));
}

store_tests!(one_replica_delivers_for_a_sink_at_a_time);
