//! Portcullis control plane: the single source of truth for sessions,
//! terminations, user locks and the policy in force. It will serve the admin
//! REST API and portal, mint session tokens, and stream snapshots and deltas
//! (encoded with [`portcullis_policy::wire`]) to every edge.
//!
//! This crate is filled in by the control-plane issue; today it only fixes
//! its place in the workspace graph (it depends on the policy crate, never on
//! the edge).

#![forbid(unsafe_code)]
