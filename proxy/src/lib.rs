//! Portcullis edge: checks every request and flow against the snapshot the
//! control plane pushes, and closes live connections when access ends.
//!
//! ```text
//! control plane ──stream──▶ subscriber ──apply──▶ SnapshotStore (ArcSwap)
//!                                  │                     ▲ load per request
//!                                  └──affected──▶ ConnRegistry ◀──bind── gate ◀── proxy / tunnel
//!                                                  │ cancel
//!                                                  ▼
//!                                      Killable<HttpProxy> drops the socket
//! ```
//!
//! `CONNECT` requests on the same listeners are TCP flows ([`tunnel`]):
//! checked the same way, registered in the same registry, then piped.

#![forbid(unsafe_code)]

pub mod activity;
pub mod assertion;
pub mod authority_client;
pub mod channel_tls;
pub mod clock;
pub mod config;
pub mod control_planes;
pub mod credentials;
pub mod forwarded;
pub mod gate;
pub mod identity;
pub mod in_process;
pub mod killable;
pub mod login;
pub mod metrics;
pub mod oidc;
pub mod proxy;
pub mod registry;
mod responses;
pub mod server;
mod snapshot_store;
pub mod stream_trust;
pub mod subscriber;
pub mod tunnel;
pub mod upgrade;
pub mod upstream_headers;

pub use responses::FAVICON_LINK;
pub use snapshot_store::{SnapshotStore, StoreError};
