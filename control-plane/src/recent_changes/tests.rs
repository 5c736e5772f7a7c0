use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use portcullis_policy::wire::SnapshotBody;

use super::{RecentChanges, KEPT};
use crate::model::Millis;
use crate::store::{ChangeStore, StoreError, StoreResult};

/// A change log in memory that counts its reads.
#[derive(Default)]
struct Log {
    rows: Mutex<Vec<(u64, Vec<u8>)>>,
    reads: AtomicUsize,
}

impl Log {
    fn append(&self, count: u64) {
        let mut rows = self.rows.lock().unwrap();
        let next = rows.last().map_or(1, |r| r.0 + 1);
        rows.extend((next..next + count).map(|seq| (seq, format!("delta {seq}").into_bytes())));
    }
}

#[async_trait]
impl ChangeStore for Log {
    async fn head_seq(&self) -> StoreResult<u64> {
        Ok(self.rows.lock().unwrap().last().map_or(0, |r| r.0))
    }
    async fn oldest_retained_seq(&self) -> StoreResult<Option<u64>> {
        Ok(self.rows.lock().unwrap().first().map(|r| r.0))
    }
    async fn changes_after(&self, after: u64, limit: u32) -> StoreResult<Vec<(u64, Vec<u8>)>> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        let rows = self.rows.lock().unwrap();
        Ok(rows.iter().filter(|r| r.0 > after).take(limit as usize).cloned().collect())
    }
    async fn prune_changes_before(&self, _: u64) -> StoreResult<u64> {
        Err(StoreError::Corrupt("not in this test".into()))
    }
    async fn snapshot_body(&self, _: Millis) -> StoreResult<SnapshotBody> {
        Err(StoreError::Corrupt("not in this test".into()))
    }
    async fn expire_before(&self, _: i64, _: Millis) -> StoreResult<u64> {
        Err(StoreError::Corrupt("not in this test".into()))
    }
}

fn seqs(rows: &[(u64, bytes::Bytes)]) -> Vec<u64> {
    rows.iter().map(|r| r.0).collect()
}

#[tokio::test]
async fn many_streams_after_one_change_read_the_store_once_and_get_what_it_holds() {
    let log = Arc::new(Log::default());
    log.append(3);
    let recent = Arc::new(RecentChanges::default());
    assert_eq!(seqs(&recent.after(&*log, 0, 512).await.unwrap()), [1, 2, 3]);
    log.append(1);
    let reads = log.reads.load(Ordering::Relaxed);
    let mut streams = Vec::new();
    for _ in 0..500 {
        let (log, recent) = (Arc::clone(&log), Arc::clone(&recent));
        streams.push(tokio::spawn(async move { recent.after(&*log, 3, 512).await.unwrap() }));
    }
    for stream in streams {
        let rows = stream.await.unwrap();
        assert_eq!(seqs(&rows), [4]);
        assert_eq!(&rows[0].1[..], b"delta 4", "the store's bytes");
    }
    assert_eq!(log.reads.load(Ordering::Relaxed) - reads, 1, "one read for 500 streams");
    assert_eq!(seqs(&recent.after(&*log, 1, 2).await.unwrap()), [2, 3], "limit, from inside the window");
    assert!(recent.after(&*log, 4, 512).await.unwrap().is_empty(), "nothing newer");
}

#[tokio::test]
async fn a_stream_behind_the_window_reads_the_store_and_the_window_stays() {
    let log = Log::default();
    log.append(KEPT as u64 + 10);
    let recent = RecentChanges::default();
    let head = KEPT as u64 + 10;
    assert_eq!(seqs(&recent.after(&log, head - 2, 512).await.unwrap()), [head - 1, head]);
    let old = recent.after(&log, 0, 3).await.unwrap();
    assert_eq!(seqs(&old), [1, 2, 3], "from the store: the window starts later");
    assert_eq!(recent.bounds(), (Some(head - 1), Some(head)), "not replaced by an old stretch");
}

#[tokio::test]
async fn the_window_keeps_a_bounded_number_of_consecutive_changes() {
    let log = Log::default();
    let recent = RecentChanges::default();
    let mut after = 0;
    for _ in 0..20 {
        log.append(500);
        loop {
            let rows = recent.after(&log, after, 512).await.unwrap();
            let Some(last) = rows.last() else { break };
            assert_eq!(seqs(&rows), (after + 1..=last.0).collect::<Vec<_>>(), "no gap, no repeat");
            after = last.0;
        }
    }
    assert_eq!(after, 10_000);
    let (first, last) = recent.bounds();
    assert_eq!(last, Some(10_000));
    assert_eq!(last.unwrap() - first.unwrap() + 1, KEPT as u64);
}

#[tokio::test]
async fn a_snapshot_older_than_the_window_clears_it() {
    let log = Log::default();
    log.append(5);
    let recent = RecentChanges::default();
    recent.after(&log, 0, 512).await.unwrap();
    recent.saw_head(5);
    assert_eq!(recent.bounds().1, Some(5), "the same database");
    recent.saw_head(2);
    assert_eq!(recent.bounds(), (None, None), "another database's rows are gone");
}
