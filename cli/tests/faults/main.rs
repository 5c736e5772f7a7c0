//! The fault suite of issue 13: real control planes (SQLite and
//! PostgreSQL) and real `portcullis edge` processes, broken on purpose —
//! SIGKILLed right after answered terminations and with terminations in
//! flight, paused with SIGSTOP, restarted again and again, run as two
//! replicas of which one dies, and a randomized run of a few hundred
//! operations with a fixed seed. Every test asserts what the edges do with
//! a session afterwards (an HTTP request or a live websocket through them),
//! never only what the control plane answered:
//!
//! - **no revival**: a session whose termination was answered is never let
//!   through again, by any edge, whatever was killed;
//! - **enforced within 2 s** on every ready edge ([`ENFORCED_WITHIN`]),
//!   measured from the answer (or, when the control plane died before it
//!   could tell anyone, from its return);
//! - **honest readiness**: an edge that cannot hear the control plane says
//!   so on `/readyz` within seconds, and routes with `stale_mode: deny`
//!   close;
//! - **signed stream** (`signed_stream`): a man in the middle that forges,
//!   tampers with, replays or drops frames changes nothing the edge
//!   enforces, and the edge says so.
//!
//! Run: `cargo test -p portcullis --test faults -- --nocapture` (part of
//! `scripts/test.sh`; figures are printed as `fault figures: …`).

#[path = "../control_plane/edge_identity.rs"]
mod edge_identity;
#[path = "../control_plane/harness.rs"]
#[allow(dead_code)]
mod harness;
#[path = "../control_plane/postgres.rs"]
#[allow(dead_code)]
mod postgres;
#[path = "../attacks/recording_upstream.rs"]
#[allow(dead_code)]
mod recording_upstream;
#[path = "../control_plane/upstream.rs"]
#[allow(dead_code)]
mod upstream;

mod cluster;
mod crash;
mod failover;
mod pause;
mod random;
mod restarts;
mod signed_stream;
mod stream_proxy;

use std::time::Duration;

/// Longest a termination may take to be in force on every ready edge.
pub const ENFORCED_WITHIN: Duration = Duration::from_secs(2);

/// How long a probe keeps looking before it reports a miss (longer than
/// the limit, so a miss says by how much).
pub const LOOK_FOR: Duration = Duration::from_secs(15);

/// Prints one line of figures where `--nocapture` and CI logs show it.
pub fn figures(test: &str, text: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "fault figures: {test}: {text}");
}
