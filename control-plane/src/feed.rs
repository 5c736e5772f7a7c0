//! Wakes whoever waits for the change log: edge streams (new changes) and
//! termination receipts (edge reports). In one process a `watch` channel
//! carries the head sequence — the store's own ([`SqlStore::commit_change`]
//! moves it as part of every commit, so no handler has to); with PostgreSQL, a LISTEN connection turns
//! other replicas' commits into the same signal; a slow poll covers any
//! notification lost while reconnecting. The same connection hears other
//! replicas' edge revocations ([`ChangeFeed::edge_revoked`]).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};

use crate::recent_changes::RecentChanges;
use crate::store::{ChangeStore, SqlStore, CHANGES_CHANNEL, EDGES_CHANNEL};

/// Head-of-log and edge-report signals, and the newest changes.
pub struct ChangeFeed {
    head: Arc<watch::Sender<u64>>,
    /// The newest changes, read once for every stream of this replica.
    pub recent: RecentChanges,
    reports: Notify,
    edges: Notify,
}

impl ChangeFeed {
    /// A feed starting at `head`, on its own (tests).
    pub fn new(head: u64) -> Self {
        Self {
            head: Arc::new(watch::channel(head).0),
            recent: RecentChanges::default(),
            reports: Notify::new(),
            edges: Notify::new(),
        }
    }

    /// The feed of `store`, starting at `head`: the store's commits move it
    /// themselves.
    pub fn of_store(store: &SqlStore, head: u64) -> Self {
        let feed = Self {
            head: store.commit_signal(),
            recent: RecentChanges::default(),
            reports: Notify::new(),
            edges: Notify::new(),
        };
        feed.publish(head);
        feed
    }

    /// Records that `seq` is committed (never moves backwards).
    pub fn publish(&self, seq: u64) {
        self.head.send_if_modified(|head| {
            let newer = seq > *head;
            if newer {
                *head = seq;
            }
            newer
        });
    }

    /// The latest committed sequence known here.
    pub fn head(&self) -> u64 {
        *self.head.borrow()
    }

    /// A receiver that wakes when the head moves.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.head.subscribe()
    }

    /// Signals that an edge report was recorded.
    pub fn report_arrived(&self) {
        self.reports.notify_waiters();
    }

    /// Waits for the next edge report (or returns after `timeout`).
    pub async fn next_report(&self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.reports.notified()).await;
    }

    /// Resolves when another replica announces an edge revocation.
    pub async fn edge_revoked(&self) {
        self.edges.notified().await;
    }

    /// Polls the store's head every second; catches commits by other
    /// replicas whose notification was missed.
    pub fn spawn_poller(self: &Arc<Self>, store: Arc<dyn ChangeStore>) {
        let feed = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                match store.head_seq().await {
                    Ok(head) => feed.publish(head),
                    Err(error) => tracing::warn!(%error, "cannot read the change-log head"),
                }
            }
        });
    }

    /// Listens for other replicas' commits on PostgreSQL.
    pub fn spawn_postgres_listener(self: &Arc<Self>, url: String) {
        let feed = Arc::clone(self);
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(100);
            loop {
                match listen(&feed, &url).await {
                    Ok(()) => backoff = Duration::from_millis(100),
                    Err(error) => {
                        tracing::warn!(%error, "PostgreSQL LISTEN connection lost; reconnecting");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            }
        });
    }
}

async fn listen(feed: &ChangeFeed, url: &str) -> Result<(), sqlx::Error> {
    let mut listener = sqlx::postgres::PgListener::connect(url).await?;
    listener.listen_all([CHANGES_CHANNEL, EDGES_CHANNEL]).await?;
    loop {
        let notification = listener.recv().await?;
        if notification.channel() == EDGES_CHANNEL {
            feed.edges.notify_waiters();
        } else if let Ok(seq) = notification.payload().parse::<u64>() {
            feed.publish(seq);
        }
    }
}
