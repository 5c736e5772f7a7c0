//! Starting the control plane: read the TLS files (if any), open the store
//! and the key-encryption key, load or create the signing keys (sessions,
//! stream) and the first admin token (written to a 0600 file, never to the
//! log), then serve the admin API and the edge channel (HTTPS with
//! `tls_cert`, else plain HTTP) until Ctrl-C or SIGTERM.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::serve::{IncomingStream, Listener};
use axum::Router;
use tokio::net::TcpListener;
use tower::Layer;

use crate::app::App;
use crate::authority::SessionAuthority;
use crate::config::{Config, ConfigError};
use crate::edge_trust::EdgeTrust;
use crate::feed::ChangeFeed;
use crate::key_vault::{KeyVault, KeyVaultError};
use crate::model::{now_ms, Actor, ApiTokenRecord};
use crate::secrets::{new_id, new_token, token_hash};
use crate::store::{Backend, ChangeStore, EdgeIdentityStore, SqlStore, StoreError, TokenStore};

/// Why the control plane could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The key-encryption key could not be read or does not open the stored keys.
    #[error(transparent)]
    Keys(#[from] KeyVaultError),
    /// A file the configuration names is unusable (the TLS certificate or key).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A relying party's credential could not be read.
    #[error(transparent)]
    RelyingParty(#[from] crate::relying_parties::settings::SecretError),
    /// A listener could not bind or failed.
    #[error("listener {address}: {source}")]
    Listen {
        /// Address.
        address: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
}

/// Opens the store and builds the shared state (also used by tests).
pub async fn build(config: Config) -> Result<Arc<App>, ServeError> {
    let store = Arc::new(SqlStore::connect(&config.database_url).await?);
    let vault = KeyVault::open_source(&config.key_encryption)?;
    let stream_key = crate::stream_key::load_or_create(&*store, &vault).await?;
    let edge_trust = Arc::new(EdgeTrust::load(&*store, &vault).await?);
    let set_signer = crate::ssf::signer::SetSigner::load_or_create(&*store, &vault).await?;
    let ssf = Arc::new(crate::ssf::SsfState::new(
        set_signer,
        vault.clone(),
        config.public_url.clone(),
        config.allow_plain_http,
        config.ssf_push_private_networks,
    ));
    let authority = Arc::new(SessionAuthority::load_or_create(&*store, &config.issuer, vault).await?);
    authority.follow(Arc::clone(&store) as Arc<dyn crate::store::Store>, KEY_FOLLOW_PERIOD);
    let public_key = stream_key.public_key();
    tracing::info!(%public_key, "edge streams are signed with this key: pin it as the edges' stream_public_key");
    bootstrap_admin_token(&store, config.bootstrap_token.as_deref(), &config.admin_token_file, config.log_format)
        .await?;
    let feed = Arc::new(ChangeFeed::of_store(&store, store.head_seq().await?));
    feed.spawn_poller(Arc::clone(&store) as Arc<dyn ChangeStore>);
    if store.backend() == Backend::Postgres {
        feed.spawn_postgres_listener(store.url().to_owned());
    }
    spawn_change_log_pruning(Arc::clone(&store), config.change_log_retention);
    edge_trust.spawn_refresher(Arc::clone(&store) as Arc<dyn EdgeIdentityStore>, Arc::clone(&feed));
    if config.edge_secret.is_some() {
        tracing::warn!("edge_secret is set: edges holding it may enroll without a join token (quickstart only)");
    }
    let relying_parties = crate::relying_parties::build(&config.relying_parties)?;
    store.subscribe(crate::outbox::subscriptions(&relying_parties));
    let signals = crate::signals::Signals::new(&config.ssf_transmitters)?;
    let app = Arc::new(App::new(
        config,
        Arc::clone(&store),
        (authority, stream_key),
        feed,
        edge_trust,
        (Arc::clone(&ssf), signals),
    ));
    crate::signals::spawn(&app);
    crate::siem::spawn(&app);
    let mut sinks: Vec<_> = relying_parties.into_iter().map(crate::outbox::SinkWorker::relying_party).collect();
    sinks.push(crate::outbox::SinkWorker {
        name: crate::store::SSF_PUSH.into(),
        concurrency: 8,
        longest: crate::ssf::delivery::PUSH_TIMEOUT,
        sink: Arc::new(crate::ssf::delivery::PushSink::new(Arc::clone(&store), ssf)),
    });
    crate::outbox::spawn(store, sinks, app.metrics.outbox.clone());
    Ok(app)
}

/// How often a replica checks whether another one changed the signing key.
const KEY_FOLLOW_PERIOD: Duration = Duration::from_secs(1);

/// Creates the first admin token when there is none: the configured
/// bootstrap token, or a new one written to `token_file` (mode 0600; the
/// log only says where), so the secret never lands in a log collector.
async fn bootstrap_admin_token(
    store: &SqlStore,
    bootstrap: Option<&str>,
    token_file: &std::path::Path,
    log_format: portcullis_settings::LogFormat,
) -> Result<(), ServeError> {
    if !store.list_api_tokens("admin").await?.is_empty() {
        if let Some(token) = bootstrap {
            // Make a configured bootstrap token usable even on a store that has others.
            if store.api_token_by_hash(&token_hash(token)).await?.is_none() {
                insert_admin(store, token).await?;
            }
        }
        return Ok(());
    }
    let token = match bootstrap {
        Some(token) => token.to_owned(),
        None => {
            let token = new_token("pcat_");
            if token_file.exists() {
                // A file from an earlier store (deleted database): replace it.
                std::fs::remove_file(token_file)
                    .map_err(|source| KeyVaultError::File { path: token_file.display().to_string(), source })?;
            }
            crate::key_vault::write_private(token_file, &format!("{token}\n"))?;
            if log_format == portcullis_settings::LogFormat::Json {
                // A log collector reads JSON lines only: the same, as one.
                tracing::warn!(path = %token_file.display(), "first start: created an admin API token (readable by \
                    this user only); export PORTCULLIS_TOKEN=$(cat <path>) for the CLI");
                return Ok(insert_admin(store, &token).await?);
            }
            eprintln!(
                "\n  First start: created an admin API token in {} (readable by this user only).\n  \
                 Use it as `Authorization: Bearer <token>` or PORTCULLIS_TOKEN for the CLI:\n\n    \
                 export PORTCULLIS_TOKEN=$(cat {})\n",
                token_file.display(),
                token_file.display()
            );
            token
        }
    };
    Ok(insert_admin(store, &token).await?)
}

async fn insert_admin(store: &SqlStore, token: &str) -> Result<(), StoreError> {
    let now = now_ms();
    let record = ApiTokenRecord {
        id: new_id(),
        kind: "admin".into(),
        name: "bootstrap".into(),
        token_hash: token_hash(token),
        scopes: vec!["admin".into()],
        subject: String::new(),
        groups: Vec::new(),
        created_ms: now,
        expires_ms: None,
        revoked_ms: None,
        last_used_ms: None,
        created_by: "system".into(),
    };
    store.insert_api_token(&record, &Actor::system(), now).await
}

/// How often edges are told to forget expired revocations.
const EXPIRY_PERIOD: Duration = Duration::from_secs(600);
/// Slack before an expired entry is forgotten, for clock skew between nodes.
const EXPIRY_SLACK_S: i64 = 300;

/// Keeps the change log to `retention` rows, and every ten minutes tells
/// edges to drop terminations whose sessions have expired anyway (the
/// snapshot rebuilt from the tables already leaves them out).
fn spawn_change_log_pruning(store: Arc<SqlStore>, retention: u64) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        let mut last_expiry = tokio::time::Instant::now();
        loop {
            tick.tick().await;
            let result = async {
                if last_expiry.elapsed() >= EXPIRY_PERIOD {
                    last_expiry = tokio::time::Instant::now();
                    store.expire_before(now_ms() / 1000 - EXPIRY_SLACK_S, now_ms()).await?;
                }
                let head = store.head_seq().await?;
                store.prune_changes_before(head.saturating_sub(retention)).await
            }
            .await;
            if let Err(error) = result {
                tracing::warn!(%error, "change-log maintenance failed");
            }
        }
    });
}

async fn bind(address: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(address).await.map_err(|source| ServeError::Listen { address, source })
}

/// Serves both listeners until shutdown.
pub async fn run(config: Config) -> Result<(), ServeError> {
    // Before anything else, so a bad file is a configuration error that leaves nothing behind.
    let tls = config.tls.as_ref().map(crate::tls::server_config).transpose()?;
    let (listen, edge_listen) = (config.listen, config.edge_listen);
    let app = build(config).await?;
    let admin = bind(listen).await?;
    let edge = bind(edge_listen).await?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(%listen, %edge_listen, scheme, "control plane listening");
    let admin_app = crate::api::router(Arc::clone(&app));
    let edge_app = crate::edge_channel::router(Arc::clone(&app));
    let (a, e) = match tls {
        Some(tls) => {
            let listener = |tcp: TcpListener, address| {
                crate::tls::TlsListener::new(tcp, Arc::clone(&tls))
                    .map_err(|source| ServeError::Listen { address, source })
            };
            let (admin, edge) = (listener(admin, listen)?, listener(edge, edge_listen)?);
            tokio::join!(serve(admin, admin_app), serve(edge, edge_app))
        }
        None => tokio::join!(serve(admin, admin_app), serve(edge, edge_app)),
    };
    a.map_err(|source| ServeError::Listen { address: listen, source })?;
    e.map_err(|source| ServeError::Listen { address: edge_listen, source })?;
    app.store.close().await;
    Ok(())
}

/// Serves `router` on `listener` until shutdown; handlers see the peer's
/// address as `ConnectInfo<SocketAddr>`, plain or TLS alike.
async fn serve<L: Listener<Addr = SocketAddr>>(listener: L, router: Router) -> std::io::Result<()> {
    let per_connection = tower::service_fn(move |incoming: IncomingStream<'_, L>| {
        let service = axum::Extension(ConnectInfo(*incoming.remote_addr())).layer(router.clone());
        std::future::ready(Ok::<_, Infallible>(service))
    });
    axum::serve(listener, per_connection).with_graceful_shutdown(shutdown_signal()).await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        if let Ok(mut signal) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            signal.recv().await;
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = terminate => {} }
}
