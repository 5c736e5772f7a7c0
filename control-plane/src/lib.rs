//! Portcullis control plane: the single source of truth for sessions,
//! terminations, user locks and the policy in force. It serves the admin
//! REST API, mints session tokens, and streams snapshots and deltas (encoded
//! with [`portcullis_policy::wire`], every frame signed with the stream key,
//! [`stream_key`]) to every edge.
//!
//! ```text
//! admin API ──▶ store: domain row + change-log row + audit row (one transaction)
//!                 │ commit → ChangeFeed (watch; PostgreSQL LISTEN/NOTIFY across replicas)
//!                 ▼
//! edge channel ──▶ snapshot, then deltas, heartbeats ──▶ edges ──▶ reports ──▶ receipts
//! ```

#![forbid(unsafe_code)]

pub mod api;
pub mod app;
pub mod authority;
pub mod config;
pub mod edge_channel;
pub mod edge_trust;
pub mod error;
pub mod feed;
pub mod files;
pub mod http;
pub mod idp;
pub mod key_vault;
pub mod metrics;
pub mod model;
pub mod outbox;
pub mod portal;
pub mod portal_cookie;
pub mod receipt;
pub mod recent_changes;
pub mod relying_parties;
pub mod responses;
pub mod secrets;
pub mod server;
pub mod siem;
pub mod signals;
pub mod ssf;
pub mod store;
pub mod stream_key;
pub mod termination;
pub mod tls;

pub use config::Config;
pub use server::{build, run};
