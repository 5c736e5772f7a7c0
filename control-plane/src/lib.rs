//! Portcullis control plane: the single source of truth for sessions,
//! terminations, user locks and the policy in force. It serves the admin
//! REST API, mints session tokens, and streams snapshots and deltas (encoded
//! with [`portcullis_policy::wire`]) to every edge.

#![forbid(unsafe_code)]

pub mod model;
pub mod store;
