//! The versioned encoding of what the control plane streams to edges: full
//! snapshots, deltas and heartbeats.
//!
//! Every message is `version (u16, little endian) ‖ postcard(Message)`.
//! Postcard is compact (a terminated session costs about 21 bytes) and has a
//! stable, documented format. A decoder refuses versions it does not know
//! rather than guessing.

use serde::{Deserialize, Serialize};

use crate::error::PolicyErrors;
use crate::ids::{SessionId, TokenId, UserRef};
use crate::policy::{Policy, PolicySource};
use crate::snapshot::{Delta, ExpiringSet, PublicKey, Snapshot, UserState, UserStates};

/// The wire format version written in every message.
pub const WIRE_VERSION: u16 = 1;

/// One message on the edge stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Message {
    /// Replace everything with this snapshot.
    Snapshot(SnapshotBody),
    /// Apply the next change.
    Delta(Delta),
    /// The control plane is alive; `head_seq` is its latest sequence.
    Heartbeat {
        /// Latest committed change-log sequence.
        head_seq: u64,
        /// Control-plane clock, Unix milliseconds.
        sent_at_ms: i64,
    },
}

/// A full snapshot as it travels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotBody {
    /// Change-log sequence.
    pub seq: u64,
    /// The policy document in force.
    pub policy: PolicySource,
    /// Terminated sessions with their expiry.
    pub terminated_sessions: Vec<(SessionId, i64)>,
    /// Revoked token ids with their expiry.
    pub revoked_tokens: Vec<(TokenId, i64)>,
    /// Locks and `revoked_before` per user.
    pub users: Vec<(UserRef, UserState)>,
    /// Session-signing public keys.
    pub signing_keys: Vec<PublicKey>,
}

/// A message that could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// Shorter than the version header.
    #[error("message too short to hold a format version")]
    Truncated,
    /// Written by a newer or unknown encoder.
    #[error("unsupported wire format version {found}; this build reads version {WIRE_VERSION}")]
    UnsupportedVersion {
        /// The version in the message.
        found: u16,
    },
    /// The body is not valid postcard for [`Message`].
    #[error("malformed message body: {0}")]
    Malformed(#[from] postcard::Error),
}

/// Encodes a message with its version header.
pub fn encode(message: &Message) -> Vec<u8> {
    let header = WIRE_VERSION.to_le_bytes().to_vec();
    postcard::to_extend(message, header).unwrap_or_else(|e| unreachable!("encoding into a Vec cannot fail: {e}"))
}

/// Decodes a message, checking its version header.
pub fn decode(bytes: &[u8]) -> Result<Message, WireError> {
    let (header, body) = bytes.split_first_chunk::<2>().ok_or(WireError::Truncated)?;
    let found = u16::from_le_bytes(*header);
    if found != WIRE_VERSION {
        return Err(WireError::UnsupportedVersion { found });
    }
    Ok(postcard::from_bytes(body)?)
}

impl Snapshot {
    /// Builds a snapshot from its wire form, compiling the policy.
    pub fn from_body(body: SnapshotBody) -> Result<Self, PolicyErrors> {
        let mut users = UserStates::default();
        for (user, state) in body.users {
            if let Some(lock) = state.lock {
                users.lock(&user, lock);
            }
            if let Some(t) = state.revoked_before {
                users.revoke_before(&user, t);
            }
        }
        Ok(Self {
            seq: body.seq,
            policy: std::sync::Arc::new(Policy::compile(body.policy)?),
            terminated_sessions: ExpiringSet::from_entries(body.terminated_sessions),
            revoked_tokens: ExpiringSet::from_entries(body.revoked_tokens),
            users,
            signing_keys: body.signing_keys.into(),
        })
    }

    /// The wire form of this snapshot, entries sorted for stable output.
    pub fn to_body(&self) -> SnapshotBody {
        let mut users: Vec<(UserRef, UserState)> = self.users.iter().map(|(u, s)| (u, s.clone())).collect();
        users.sort_by(|a, b| a.0.cmp(&b.0));
        SnapshotBody {
            seq: self.seq,
            policy: self.policy.source().clone(),
            terminated_sessions: self.terminated_sessions.to_sorted_vec(),
            revoked_tokens: self.revoked_tokens.to_sorted_vec(),
            users,
            signing_keys: self.signing_keys.to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_versions_are_refused() {
        let mut bytes = encode(&Message::Heartbeat { head_seq: 7, sent_at_ms: 1 });
        assert!(matches!(decode(&bytes), Ok(Message::Heartbeat { head_seq: 7, .. })));
        bytes[0] = 9;
        assert!(matches!(decode(&bytes), Err(WireError::UnsupportedVersion { found: 9 })));
        assert!(matches!(decode(&[1]), Err(WireError::Truncated)));
        assert!(matches!(decode(&[1, 0, 0xff, 0xff]), Err(WireError::Malformed(_))));
    }
}
