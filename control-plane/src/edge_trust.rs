//! What this replica knows about edges beyond the store rows it reads per
//! call: the fleet key (made once, kept in the database) and the set of
//! revoked edge ids, which open snapshot streams watch so that a revoked
//! edge's stream is cut within a second on every replica.
//!
//! ```text
//! revoke (this replica) ──refresh──▶ RevokedEdges (watch) ──▶ every open stream of that edge ends
//! revoke (other replica) ──NOTIFY portcullis_edges──▶ ChangeFeed ──┘   (and a poll every 250 ms)
//! ```

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use tokio::sync::watch;

use crate::edge_channel::verified::VerifiedAssertions;
use crate::feed::ChangeFeed;
use crate::key_vault::KeyVault;
use crate::model::now_ms;
use crate::store::{EdgeIdentityStore, StoreResult};

/// How often the revoked set is re-read (covers a missed notification).
const POLL: Duration = Duration::from_millis(250);

/// The key-vault purpose and id of the fleet key (its sealing context).
const FLEET_KEY_PURPOSE: &str = "fleet";
const FLEET_KEY_ID: &str = "1";

/// The ids of revoked edges, as last read from the store.
pub type RevokedSet = Arc<BTreeSet<String>>;

/// Edge trust state of this replica.
pub struct EdgeTrust {
    /// The fleet key, base64url of 32 bytes.
    pub fleet_key: String,
    revoked: watch::Sender<RevokedSet>,
    /// Assertions verified here already (their signature is not checked again).
    pub verified: VerifiedAssertions,
}

impl EdgeTrust {
    /// Loads (or makes, on first start) the fleet key and the revoked set.
    /// The fleet key is stored sealed by `vault`, like the signing keys: it
    /// is a secret (edges derive their cookie and login-state keys from it).
    pub async fn load(store: &dyn EdgeIdentityStore, vault: &KeyVault) -> StoreResult<Self> {
        let mut candidate = [0u8; 32];
        rand::Rng::fill(&mut rand::rngs::OsRng, &mut candidate);
        let sealed = vault.seal(FLEET_KEY_PURPOSE, FLEET_KEY_ID, &URL_SAFE_NO_PAD.encode(candidate));
        candidate.fill(0);
        let stored = store.fleet_key(&sealed, now_ms()).await?;
        let fleet_key = vault
            .open(FLEET_KEY_PURPOSE, FLEET_KEY_ID, &stored)
            .map_err(|e| crate::store::StoreError::Corrupt(e.to_string()))?;
        let revoked: BTreeSet<String> = store.revoked_edges().await?.into_iter().collect();
        Ok(Self { fleet_key, revoked: watch::channel(Arc::new(revoked)).0, verified: VerifiedAssertions::default() })
    }

    /// Re-reads the revoked set; wakes streams when it changed.
    pub async fn refresh(&self, store: &dyn EdgeIdentityStore) -> StoreResult<()> {
        let now: BTreeSet<String> = store.revoked_edges().await?.into_iter().collect();
        self.revoked.send_if_modified(|known| {
            let changed = **known != now;
            if changed {
                *known = Arc::new(now);
            }
            changed
        });
        Ok(())
    }

    /// A receiver that wakes when the revoked set changes.
    pub fn watch_revoked(&self) -> watch::Receiver<RevokedSet> {
        self.revoked.subscribe()
    }

    /// Whether `edge_id` is known here to be revoked.
    pub fn is_revoked(&self, edge_id: &str) -> bool {
        self.revoked.borrow().contains(edge_id)
    }

    /// Re-reads the revoked set every [`POLL`], and at once when another
    /// replica announces a revocation through `feed`.
    pub fn spawn_refresher(self: &Arc<Self>, store: Arc<dyn EdgeIdentityStore>, feed: Arc<ChangeFeed>) {
        let trust = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(POLL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = feed.edge_revoked() => {}
                }
                if let Err(error) = trust.refresh(&*store).await {
                    tracing::warn!(%error, "cannot read the revoked edges");
                }
            }
        });
    }
}
