//! The Shared Signals transmitter (OpenID Shared Signals Framework 1.0):
//! other systems that trust the same users (an SSO, an app) subscribe to
//! security events and hear of every termination and lock as a signed
//! Security Event Token — CAEP `session-revoked`, RISC `sessions-revoked`
//! and `account-disabled` — pushed to them (RFC 8935) or polled (RFC 8936).
//!
//! ```text
//! GET  /.well-known/ssf-configuration   transmitter metadata (public)
//! GET  /ssf/jwks                        the SET signing key (public)
//! GET|POST|PUT|PATCH|DELETE /ssf/streams        stream management (scope `ssf`)
//! GET|POST /ssf/streams/status          stream status
//! POST /ssf/verify                      ask for a verification event
//! POST /ssf/poll/{stream_id}            poll delivery
//! ```
//!
//! A receiver authenticates with an API token holding the `ssf` scope and
//! manages only its own streams; its SETs' `aud` is the token's name.

pub mod delivery;
pub mod endpoint;
pub mod events;
pub mod signer;
pub mod streams;

use std::sync::Arc;

use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::app::App;
use crate::key_vault::KeyVault;
use crate::store::{OutboxJob, SsfStream};
use crate::termination::{CAEP_SESSION_REVOKED, RISC_ACCOUNT_DISABLED, RISC_SESSIONS_REVOKED, SSF_VERIFICATION};

/// RFC 8935 push delivery.
pub const PUSH_METHOD: &str = "urn:ietf:rfc:8935";
/// RFC 8936 poll delivery.
pub const POLL_METHOD: &str = "urn:ietf:rfc:8936";
/// The event types this transmitter sends.
pub const EVENTS_SUPPORTED: &[&str] =
    &[CAEP_SESSION_REVOKED, RISC_SESSIONS_REVOKED, RISC_ACCOUNT_DISABLED, SSF_VERIFICATION];
/// The sealing context of push streams' Authorization headers.
const AUTHORIZATION_PURPOSE: &str = "ssf-authorization";

/// What the transmitter needs beyond the store.
pub struct SsfState {
    signer: signer::SetSigner,
    vault: KeyVault,
    issuer: String,
    allow_plain_http: bool,
    private_networks: bool,
    waiting_polls: tokio::sync::Semaphore,
}

/// Most polls waiting at once on this replica; a poll beyond them answers
/// at once, as with `returnImmediately` (the receiver polls again).
pub const MAX_WAITING_POLLS: usize = 64;

impl SsfState {
    /// The transmitter of `issuer` (the control plane's public URL);
    /// `private_networks`: push endpoints may be loopback or private
    /// addresses (see [`endpoint`]).
    pub fn new(
        signer: signer::SetSigner,
        vault: KeyVault,
        issuer: String,
        allow_plain_http: bool,
        private_networks: bool,
    ) -> Self {
        let waiting_polls = tokio::sync::Semaphore::new(MAX_WAITING_POLLS);
        Self { signer, vault, issuer, allow_plain_http, private_networks, waiting_polls }
    }

    /// Whether `url` may be pushed to, as far as its literal host tells.
    pub fn check_endpoint(&self, url: &str) -> Result<(), String> {
        endpoint::check_url(url, self.private_networks)
    }

    /// The client push deliveries use (see [`endpoint::client`]).
    pub fn push_client(&self) -> reqwest::Client {
        endpoint::client(self.private_networks)
    }

    /// The signed SET for `job` on `stream`.
    pub fn set_for(&self, job: &OutboxJob, stream: &SsfStream) -> Result<String, String> {
        let claims = events::claims(job, stream, &self.issuer, chrono::Utc::now().timestamp())?;
        self.signer.sign(&claims).map_err(|e| e.to_string())
    }

    /// Seals a push stream's Authorization header for storage.
    pub fn seal_authorization(&self, stream_id: &str, header: &str) -> String {
        self.vault.seal(AUTHORIZATION_PURPOSE, stream_id, header)
    }

    /// Opens it for a delivery.
    pub fn open_authorization(&self, stream_id: &str, sealed: &str) -> Result<String, String> {
        self.vault.open(AUTHORIZATION_PURPOSE, stream_id, sealed).map_err(|e| e.to_string())
    }

    /// A slot for a poll to wait in, if one is free.
    pub fn wait_slot(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        self.waiting_polls.try_acquire().ok()
    }

    /// How many polls are waiting now.
    pub fn waiting_polls(&self) -> usize {
        MAX_WAITING_POLLS - self.waiting_polls.available_permits()
    }

    /// The issuer of SETs.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// SSF 1.0 §7.1: the transmitter configuration metadata.
    pub fn configuration(&self) -> Value {
        let base = &self.issuer;
        json!({
            "spec_version": "1_0",
            "issuer": base,
            "jwks_uri": format!("{base}/ssf/jwks"),
            "delivery_methods_supported": [PUSH_METHOD, POLL_METHOD],
            "configuration_endpoint": format!("{base}/ssf/streams"),
            "status_endpoint": format!("{base}/ssf/streams/status"),
            "verification_endpoint": format!("{base}/ssf/verify"),
            "authorization_schemes": [{ "spec_urn": "urn:ietf:rfc:6750" }],
            "default_subjects": "ALL",
        })
    }
}

/// The transmitter's routes (merged into the admin listener).
pub fn router() -> Router<Arc<App>> {
    Router::new()
        .route(
            "/.well-known/ssf-configuration",
            get(|app: axum::extract::State<Arc<App>>| async move { Json(app.ssf.configuration()) }),
        )
        .route("/ssf/jwks", get(|app: axum::extract::State<Arc<App>>| async move { Json(app.ssf.signer.jwks()) }))
        .route(
            "/ssf/streams",
            get(streams::read)
                .post(streams::create)
                .put(streams::replace)
                .patch(streams::update)
                .delete(streams::delete),
        )
        .route("/ssf/streams/status", get(streams::status).post(streams::set_status))
        .route("/ssf/verify", post(streams::verify))
        .route("/ssf/poll/{stream_id}", post(delivery::poll))
}
