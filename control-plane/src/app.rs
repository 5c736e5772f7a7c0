//! The shared state every handler sees.

use std::sync::Arc;

use portcullis_policy::stream_key::StreamSigningKey;
use portcullis_policy::{Policy, PolicySource};
use tokio::sync::Mutex;

use crate::authority::SessionAuthority;
use crate::config::Config;
use crate::edge_trust::EdgeTrust;
use crate::feed::ChangeFeed;
use crate::idp::{LoginIdps, PortalState};
use crate::metrics::Metrics;
use crate::store::{PolicyStore, SqlStore, Store, StoreError, StoreResult};

/// Control-plane state.
pub struct App {
    /// Validated configuration.
    pub config: Config,
    /// The store.
    pub store: Arc<SqlStore>,
    /// Signs session tokens.
    pub authority: Arc<SessionAuthority>,
    /// Signs every frame of the edge stream.
    pub stream_key: StreamSigningKey,
    /// Change and report signals.
    pub feed: Arc<ChangeFeed>,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// The admin portal's OpenID provider (discovered on first use).
    pub portal: PortalState,
    /// The providers whose ID tokens create sessions (discovered on first use).
    pub login_idps: LoginIdps,
    /// The fleet key and the revoked edges.
    pub edge_trust: Arc<EdgeTrust>,
    /// The Shared Signals transmitter.
    pub ssf: Arc<crate::ssf::SsfState>,
    /// The Shared Signals transmitters we receive from.
    pub signals: crate::signals::Signals,
    compiled: Mutex<Option<(i64, Arc<Policy>)>>,
}

impl App {
    /// Assembles the state.
    pub fn new(
        config: Config,
        store: Arc<SqlStore>,
        (authority, stream_key): (Arc<SessionAuthority>, StreamSigningKey),
        feed: Arc<ChangeFeed>,
        edge_trust: Arc<EdgeTrust>,
        (ssf, signals): (Arc<crate::ssf::SsfState>, crate::signals::Signals),
    ) -> Self {
        let portal = PortalState::new(&config);
        let metrics = Metrics::new();
        let login_idps = LoginIdps::new(&config.login);
        Self {
            config,
            store,
            authority,
            stream_key,
            feed,
            metrics,
            portal,
            login_idps,
            edge_trust,
            ssf,
            signals,
            compiled: Mutex::new(None),
        }
    }

    /// The store as the trait object handlers use.
    pub fn store(&self) -> &dyn Store {
        &*self.store
    }

    /// The policy in force, compiled (cached per version).
    pub async fn current_policy(&self) -> StoreResult<Arc<Policy>> {
        let current = self.store.current_policy().await?;
        let version = current.as_ref().map_or(0, |p| p.version);
        let mut cache = self.compiled.lock().await;
        if let Some((_, policy)) = cache.as_ref().filter(|(cached, _)| *cached == version) {
            return Ok(Arc::clone(policy));
        }
        let policy = match current {
            Some(p) => Policy::compile(PolicySource { name: format!("policy v{}", p.version), text: p.document })
                .map_err(|e| StoreError::Corrupt(format!("stored policy v{version} does not compile: {e}")))?,
            None => Policy::empty(),
        };
        let policy = Arc::new(policy);
        *cache = Some((version, Arc::clone(&policy)));
        Ok(policy)
    }
}
