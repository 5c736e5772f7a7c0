//! The snapshot every edge enforces, and the deltas that move it forward.
//!
//! A [`Snapshot`] is cheap to clone (every part is shared or persistent), so
//! the edge applies a delta to a clone and swaps the whole value in; readers
//! never lock. [`Snapshot::apply`] also says which live connections the change
//! affects, which is what the edge's kill path looks up.

mod expiring_set;
mod users;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use expiring_set::ExpiringSet;
pub use users::{GroupsOverride, Lock, UserDenial, UserState, UserStates};

use crate::error::PolicyErrors;
use crate::ids::{SessionId, TokenId, UserRef};
use crate::policy::{Policy, PolicySource};

/// Signature algorithms of the control plane's session-signing keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyAlgorithm {
    /// ECDSA P-256 with SHA-256.
    ES256,
    /// Ed25519.
    EdDSA,
}

/// A public key edges verify session tokens with, in JWK form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKey {
    /// Key id (`kid` in token headers).
    pub kid: String,
    /// The only algorithm this key may be used with.
    pub alg: KeyAlgorithm,
    /// Base64url `x` coordinate (or the Ed25519 public key).
    pub x: String,
    /// Base64url `y` coordinate (ES256 only).
    pub y: Option<String>,
}

/// One change to the snapshot, numbered by the control plane's change log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delta {
    /// Change-log sequence number; must be the snapshot's `seq + 1`.
    pub seq: u64,
    /// What changed.
    pub change: Change,
}

/// The kinds of change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Change {
    /// A session is terminated; remembered until it would have expired.
    TerminateSession {
        /// The session.
        session: SessionId,
        /// The session's own expiry (Unix seconds).
        expires_at: i64,
    },
    /// Every token of the user issued at or before `revoked_before_ms` is dead.
    TerminateUser {
        /// The user.
        user: UserRef,
        /// Unix milliseconds: the instant of the termination. (Wire format
        /// version 1 carried whole seconds; [`crate::wire::decode`] converts.)
        revoked_before_ms: i64,
    },
    /// The user is denied everywhere until unlocked (or `until`).
    LockUser {
        /// The user.
        user: UserRef,
        /// The lock.
        lock: Lock,
    },
    /// Lifts a lock.
    UnlockUser {
        /// The user.
        user: UserRef,
    },
    /// A token id (`jti` or service token) is dead until it would expire.
    RevokeToken {
        /// The token id.
        token: TokenId,
        /// The token's own expiry (Unix seconds).
        expires_at: i64,
    },
    /// A new policy document is in force.
    ReplacePolicy {
        /// The document; edges compile it with this crate.
        policy: PolicySource,
    },
    /// The session-signing public keys changed.
    RotateKeys {
        /// The keys now valid.
        keys: Vec<PublicKey>,
    },
    /// Forget terminations, revocations, locks and group overrides that
    /// ended at or before `cutoff`.
    ExpireBefore {
        /// Unix seconds.
        cutoff: i64,
    },
    /// The user's groups changed at the identity provider (an OpenID CAEP
    /// `token-claims-change`): the user's tokens issued at or before
    /// `since_ms` are judged with `groups` instead of the groups they carry.
    /// Replaces the user's earlier override. (Wire format version 3.)
    OverrideGroups {
        /// The user.
        user: UserRef,
        /// The user's groups now.
        groups: Vec<String>,
        /// Unix milliseconds: the instant of the change; compared with
        /// [`crate::Identity::issued_at_ms`] like `revoked_before_ms`.
        since_ms: i64,
        /// Unix seconds: when no token issued by `since_ms` can be alive
        /// (`since` plus the longest session lifetime); forgotten then.
        expires_at: i64,
    },
}

/// Which live connections a change may have to close.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Affected {
    /// Connections of this session.
    Session(SessionId),
    /// Connections of this user.
    User(UserRef),
    /// This user's connections must be re-evaluated (the groups their
    /// tokens are judged with changed); only those no longer allowed close.
    UserClaims(UserRef),
    /// Connections carrying this token id.
    Token(TokenId),
    /// Every connection must be re-evaluated (the policy changed).
    All,
    /// A signing key is no longer published (revoked, or its grace period
    /// ended): every connection must be re-evaluated, since the tokens it
    /// signed are dead.
    KeysWithdrawn,
    /// No connection is affected.
    Nothing,
}

/// Why a delta could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// The delta is not the next in sequence; the edge must resynchronise.
    #[error("delta {got} does not follow snapshot {current}; a full snapshot is needed")]
    OutOfSequence {
        /// The snapshot's sequence.
        current: u64,
        /// The delta's sequence.
        got: u64,
    },
    /// The new policy does not compile; the snapshot is unchanged.
    #[error("the new policy does not compile:\n{0}")]
    Policy(#[from] PolicyErrors),
}

/// Policy, revocations and keys at one change-log sequence.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub(crate) seq: u64,
    pub(crate) policy: Arc<Policy>,
    pub(crate) terminated_sessions: ExpiringSet<SessionId>,
    pub(crate) revoked_tokens: ExpiringSet<TokenId>,
    pub(crate) users: UserStates,
    pub(crate) signing_keys: Arc<[PublicKey]>,
}

impl Snapshot {
    /// A snapshot at `seq` with `policy` and no revocations.
    pub fn new(seq: u64, policy: Arc<Policy>) -> Self {
        Self {
            seq,
            policy,
            terminated_sessions: ExpiringSet::default(),
            revoked_tokens: ExpiringSet::default(),
            users: UserStates::default(),
            signing_keys: Arc::new([]),
        }
    }

    /// The change-log sequence this snapshot reflects.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The policy in force.
    pub fn policy(&self) -> &Arc<Policy> {
        &self.policy
    }

    /// Terminated sessions with their expiry.
    pub fn terminated_sessions(&self) -> &ExpiringSet<SessionId> {
        &self.terminated_sessions
    }

    /// Revoked token ids with their expiry.
    pub fn revoked_tokens(&self) -> &ExpiringSet<TokenId> {
        &self.revoked_tokens
    }

    /// Locks, `revoked_before_ms` and group overrides per user.
    pub fn users(&self) -> &UserStates {
        &self.users
    }

    /// The control plane's session-signing public keys.
    pub fn signing_keys(&self) -> &[PublicKey] {
        &self.signing_keys
    }

    /// Applies the next delta in place (call it on a clone, then swap the
    /// clone in). On error the snapshot is unchanged.
    pub fn apply(&mut self, delta: &Delta) -> Result<Affected, ApplyError> {
        // `checked_add`: at `u64::MAX` nothing follows (and `+ 1` would panic,
        // or in release builds wrap and accept delta 0).
        if self.seq.checked_add(1) != Some(delta.seq) {
            return Err(ApplyError::OutOfSequence { current: self.seq, got: delta.seq });
        }
        let affected = match &delta.change {
            Change::TerminateSession { session, expires_at } => {
                self.terminated_sessions.insert(*session, *expires_at);
                Affected::Session(*session)
            }
            Change::TerminateUser { user, revoked_before_ms } => {
                self.users.revoke_before(user, *revoked_before_ms);
                Affected::User(user.clone())
            }
            Change::LockUser { user, lock } => {
                self.users.lock(user, lock.clone());
                Affected::User(user.clone())
            }
            Change::UnlockUser { user } => {
                self.users.unlock(user);
                Affected::Nothing
            }
            Change::RevokeToken { token, expires_at } => {
                self.revoked_tokens.insert(token.clone(), *expires_at);
                Affected::Token(token.clone())
            }
            Change::ReplacePolicy { policy } => {
                self.policy = Arc::new(Policy::compile(policy.clone())?);
                Affected::All
            }
            Change::RotateKeys { keys } => {
                let withdrawn = self.signing_keys.iter().any(|old| !keys.iter().any(|new| new.kid == old.kid));
                self.signing_keys = keys.clone().into();
                if withdrawn {
                    Affected::KeysWithdrawn
                } else {
                    Affected::Nothing
                }
            }
            Change::ExpireBefore { cutoff } => {
                self.terminated_sessions.expire(*cutoff);
                self.revoked_tokens.expire(*cutoff);
                self.users.expire(*cutoff);
                Affected::Nothing
            }
            Change::OverrideGroups { user, groups, since_ms, expires_at } => {
                self.users.override_groups(user, groups, *since_ms, *expires_at);
                Affected::UserClaims(user.clone())
            }
        };
        self.seq = delta.seq;
        Ok(affected)
    }
}

#[cfg(test)]
mod override_tests;
#[cfg(test)]
mod tests;
