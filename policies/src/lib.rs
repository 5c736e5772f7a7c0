//! Portcullis policy: the language admins write, the pure evaluator every edge
//! runs on every request, and the snapshot the control plane pushes to edges.
//!
//! ```text
//! YAML ──parse──▶ Policy (indexed routes + rules) ─┐
//! deltas ──apply──▶ Snapshot (policy + revocations) ┴─▶ evaluate(&Snapshot, &Facts) ─▶ Decision
//! ```
//!
//! This crate does no IO: the edge and the control plane move the bytes, and
//! both call the same functions here, so what `policy explain` says is what
//! the edge enforces.

#![forbid(unsafe_code)]

pub mod conditions;
mod duration;
pub mod edge_channel;
pub mod error;
pub mod evaluate;
pub mod facts;
mod holds;
pub mod ids;
mod judged_path;
pub mod limits;
mod parse;
pub mod policy;
pub mod request_target;
pub mod responses;
pub mod signed_frame;
pub mod snapshot;
pub mod stream_key;
pub mod wire;

pub use duration::parse_seconds as parse_duration;
pub use error::{Location, PolicyError, PolicyErrors};
pub use evaluate::{evaluate, rule_checks, Decision, Outcome, Reason, RuleCheck};
pub use facts::{ClaimValue, CredentialKind, Facts, Identity, IdentityParts, Target};
pub use holds::holds_until;
pub use ids::{SessionId, TokenId, UserRef};
pub use judged_path::{judged_path, JudgedPath, PathRefusal};
pub use parse::LANGUAGE_VERSION;
pub use policy::{Policy, PolicySource, Route, RouteTarget, Rule, RuleEffect};
pub use request_target::{canonicalize, lowercase_path, CanonicalTarget, TargetError};
pub use snapshot::{Change, Delta, Snapshot};
