//! The versioned encoding of what the control plane streams to edges: full
//! snapshots, deltas and heartbeats.
//!
//! Every message is `version (u16, little endian) ‖ postcard(Message)`.
//! Postcard is compact (a terminated session costs about 21 bytes) and has a
//! stable, documented format. A decoder refuses versions it does not know
//! rather than guessing.
//!
//! | version | what changed |
//! |---|---|
//! | 1 | first: a user's `revoked_before` in whole seconds |
//! | 2 | `revoked_before_ms` in milliseconds (the same shape, another unit) |
//! | 3 | group overrides: `Change::OverrideGroups` (appended), and `UserState` gains `groups` |
//!
//! Versions 1 and 2 are still read, because the change log keeps the deltas
//! as they were written. Both are decoded with the version-2 shapes
//! ([`legacy`]: a `UserState` without `groups`) and converted: version 1's
//! seconds become the last millisecond of that second (`s * 1000 + 999`), so
//! everything it revoked stays revoked. A `Change` is decoded with this
//! version's enum, since variants are only ever appended and postcard numbers
//! them in order.

use serde::{Deserialize, Serialize};

use crate::error::PolicyErrors;
use crate::ids::{SessionId, TokenId, UserRef};
use crate::policy::{Policy, PolicySource};
use crate::snapshot::{Change, Delta, ExpiringSet, PublicKey, Snapshot, UserState, UserStates};

/// The wire format version written in every message.
pub const WIRE_VERSION: u16 = 3;
/// The previous version, still read: no group overrides.
pub const WIRE_VERSION_NO_OVERRIDES: u16 = 2;
/// The first version, still read: `revoked_before` in whole seconds.
pub const WIRE_VERSION_SECONDS: u16 = 1;

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
    /// Locks, `revoked_before_ms` and group overrides per user.
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

/// Decodes a message, checking its version header; a version-1 or -2
/// message comes out in this version's shapes and units.
pub fn decode(bytes: &[u8]) -> Result<Message, WireError> {
    let (header, body) = bytes.split_first_chunk::<2>().ok_or(WireError::Truncated)?;
    match u16::from_le_bytes(*header) {
        WIRE_VERSION => Ok(postcard::from_bytes(body)?),
        WIRE_VERSION_NO_OVERRIDES => Ok(postcard::from_bytes::<legacy::Message>(body)?.into()),
        WIRE_VERSION_SECONDS => Ok(from_seconds(postcard::from_bytes::<legacy::Message>(body)?.into())),
        found => Err(WireError::UnsupportedVersion { found }),
    }
}

/// The shapes of versions 1 and 2, as they were written: a `UserState`
/// without `groups`. Only what differs from version 3 is declared here.
pub mod legacy {
    use serde::{Deserialize, Serialize};

    use crate::ids::{SessionId, TokenId, UserRef};
    use crate::policy::PolicySource;
    use crate::snapshot::{Delta, Lock, PublicKey};

    /// [`super::Message`] of versions 1 and 2.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub enum Message {
        /// A full snapshot.
        Snapshot(SnapshotBody),
        /// The next change.
        Delta(Delta),
        /// Liveness.
        Heartbeat {
            /// Latest committed change-log sequence.
            head_seq: u64,
            /// Control-plane clock, Unix milliseconds.
            sent_at_ms: i64,
        },
    }

    /// [`super::SnapshotBody`] of versions 1 and 2.
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
        /// Locks and `revoked_before_ms` per user.
        pub users: Vec<(UserRef, UserState)>,
        /// Session-signing public keys.
        pub signing_keys: Vec<PublicKey>,
    }

    /// [`crate::snapshot::UserState`] of versions 1 and 2: no group override.
    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
    pub struct UserState {
        /// The lock, if any.
        pub lock: Option<Lock>,
        /// Version 1: seconds; version 2: milliseconds.
        pub revoked_before_ms: Option<i64>,
    }

    impl From<Message> for super::Message {
        fn from(message: Message) -> Self {
            match message {
                Message::Snapshot(body) => Self::Snapshot(super::SnapshotBody {
                    seq: body.seq,
                    policy: body.policy,
                    terminated_sessions: body.terminated_sessions,
                    revoked_tokens: body.revoked_tokens,
                    users: body
                        .users
                        .into_iter()
                        .map(|(user, state)| {
                            let state = crate::snapshot::UserState {
                                lock: state.lock,
                                revoked_before_ms: state.revoked_before_ms,
                                groups: None,
                            };
                            (user, state)
                        })
                        .collect(),
                    signing_keys: body.signing_keys,
                }),
                Message::Delta(delta) => Self::Delta(delta),
                Message::Heartbeat { head_seq, sent_at_ms } => Self::Heartbeat { head_seq, sent_at_ms },
            }
        }
    }
}

/// The last millisecond of second `s`: a version-1 "issued at or before
/// second `s`" revokes exactly what it did.
fn last_ms_of(s: i64) -> i64 {
    s.saturating_mul(1000).saturating_add(999)
}

/// A version-1 message (revocation instants in seconds) in milliseconds.
fn from_seconds(message: Message) -> Message {
    match message {
        Message::Delta(Delta { seq, change: Change::TerminateUser { user, revoked_before_ms } }) => {
            Message::Delta(Delta {
                seq,
                change: Change::TerminateUser { user, revoked_before_ms: last_ms_of(revoked_before_ms) },
            })
        }
        Message::Snapshot(mut body) => {
            for (_, state) in &mut body.users {
                state.revoked_before_ms = state.revoked_before_ms.map(last_ms_of);
            }
            Message::Snapshot(body)
        }
        other => other,
    }
}

impl Snapshot {
    /// Builds a snapshot from its wire form, compiling the policy.
    pub fn from_body(body: SnapshotBody) -> Result<Self, PolicyErrors> {
        let mut users = UserStates::default();
        for (user, state) in body.users {
            if let Some(lock) = state.lock {
                users.lock(&user, lock);
            }
            if let Some(t) = state.revoked_before_ms {
                users.revoke_before(&user, t);
            }
            if let Some(o) = state.groups {
                users.override_groups(&user, &o.groups, o.since_ms, o.expires_at);
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
    use crate::snapshot::{GroupsOverride, Lock};

    #[test]
    fn unknown_versions_are_refused() {
        let mut bytes = encode(&Message::Heartbeat { head_seq: 7, sent_at_ms: 1 });
        assert!(matches!(decode(&bytes), Ok(Message::Heartbeat { head_seq: 7, .. })));
        bytes[0] = 9;
        assert!(matches!(decode(&bytes), Err(WireError::UnsupportedVersion { found: 9 })));
        assert!(matches!(decode(&[1]), Err(WireError::Truncated)));
        assert!(matches!(decode(&[3, 0, 0xff, 0xff]), Err(WireError::Malformed(_))));
        assert!(matches!(decode(&[2, 0, 0xff, 0xff]), Err(WireError::Malformed(_))), "version 2 too");
        assert!(matches!(decode(&[1, 0, 0xff, 0xff]), Err(WireError::Malformed(_))), "version 1 too");
    }

    /// `message` as a version-`version` encoder wrote it (the old shapes).
    fn old(version: u16, message: &legacy::Message) -> Vec<u8> {
        postcard::to_extend(message, version.to_le_bytes().to_vec()).unwrap()
    }

    fn old_body(users: Vec<(UserRef, legacy::UserState)>) -> legacy::SnapshotBody {
        legacy::SnapshotBody {
            seq: 4,
            policy: Policy::empty().source().clone(),
            terminated_sessions: vec![(SessionId::from_bytes([1; 16]), 1_800_000_500)],
            revoked_tokens: vec![(TokenId::new("t"), 1_800_000_600)],
            users,
            signing_keys: vec![],
        }
    }

    #[test]
    fn version_1_seconds_keep_revoking_their_whole_second() {
        let ada = UserRef::email("ada@corp.example");
        let change = Change::TerminateUser { user: ada.clone(), revoked_before_ms: 1_800_000_000 };
        let delta = legacy::Message::Delta(Delta { seq: 4, change });
        let Message::Delta(decoded) = decode(&old(WIRE_VERSION_SECONDS, &delta)).unwrap() else { panic!("a delta") };
        assert_eq!(decoded.change, Change::TerminateUser { user: ada.clone(), revoked_before_ms: 1_800_000_000_999 });

        let lock = Lock { until: Some(1_800_000_100), reason: "x".into() };
        let body = old_body(vec![
            (ada.clone(), legacy::UserState { lock: None, revoked_before_ms: Some(1_800_000_000) }),
            (UserRef::subject("s"), legacy::UserState { lock: Some(lock.clone()), revoked_before_ms: None }),
        ]);
        let Message::Snapshot(decoded) =
            decode(&old(WIRE_VERSION_SECONDS, &legacy::Message::Snapshot(body.clone()))).unwrap()
        else {
            panic!("a snapshot")
        };
        assert_eq!(decoded.users[0].1.revoked_before_ms, Some(1_800_000_000_999));
        assert_eq!(
            decoded.users[1].1,
            UserState { lock: Some(lock), revoked_before_ms: None, groups: None },
            "locks stay in seconds"
        );
        assert_eq!(decoded.terminated_sessions, body.terminated_sessions, "expiries stay in seconds");
        let heartbeat = legacy::Message::Heartbeat { head_seq: 4, sent_at_ms: 9 };
        assert_eq!(
            decode(&old(WIRE_VERSION_SECONDS, &heartbeat)).unwrap(),
            Message::Heartbeat { head_seq: 4, sent_at_ms: 9 }
        );
    }

    #[test]
    fn version_2_is_read_as_written_without_group_overrides() {
        let ada = UserRef::email("ada@corp.example");
        let change = Change::TerminateUser { user: ada.clone(), revoked_before_ms: 1_800_000_000_123 };
        let delta = legacy::Message::Delta(Delta { seq: 4, change: change.clone() });
        let decoded = decode(&old(WIRE_VERSION_NO_OVERRIDES, &delta)).unwrap();
        assert_eq!(decoded, Message::Delta(Delta { seq: 4, change }), "milliseconds are taken as written");

        let lock = Lock { until: None, reason: "x".into() };
        let body = old_body(vec![
            (ada.clone(), legacy::UserState { lock: None, revoked_before_ms: Some(1_800_000_000_123) }),
            (UserRef::subject("s"), legacy::UserState { lock: Some(lock.clone()), revoked_before_ms: None }),
        ]);
        let bytes = old(WIRE_VERSION_NO_OVERRIDES, &legacy::Message::Snapshot(body.clone()));
        let Message::Snapshot(decoded) = decode(&bytes).unwrap() else { panic!("a snapshot") };
        assert_eq!(decoded.seq, body.seq);
        assert_eq!(decoded.terminated_sessions, body.terminated_sessions);
        assert_eq!(decoded.revoked_tokens, body.revoked_tokens);
        assert_eq!(
            decoded.users,
            [
                (ada, UserState { lock: None, revoked_before_ms: Some(1_800_000_000_123), groups: None }),
                (UserRef::subject("s"), UserState { lock: Some(lock), revoked_before_ms: None, groups: None }),
            ]
        );
        let snapshot = Snapshot::from_body(decoded).unwrap();
        assert_eq!(snapshot.users().len(), 2);
    }

    #[test]
    fn group_overrides_survive_the_wire() {
        let ada = UserRef::subject("sub-ada");
        let change = Change::OverrideGroups {
            user: ada.clone(),
            groups: vec!["dev".into(), "qa".into()],
            since_ms: 1_800_000_000_123,
            expires_at: 1_800_086_400,
        };
        let delta = Message::Delta(Delta { seq: 9, change });
        let bytes = encode(&delta);
        assert_eq!(&bytes[..2], &3u16.to_le_bytes()[..]);
        assert_eq!(decode(&bytes).unwrap(), delta);

        let mut snapshot = Snapshot::new(8, std::sync::Arc::new(Policy::empty()));
        let Message::Delta(delta) = delta else { unreachable!() };
        snapshot.apply(&delta).unwrap();
        let body = snapshot.to_body();
        let expected = GroupsOverride {
            groups: vec!["dev".into(), "qa".into()],
            since_ms: 1_800_000_000_123,
            expires_at: 1_800_086_400,
        };
        assert_eq!(body.users, [(ada.clone(), UserState { groups: Some(expected), ..UserState::default() })]);
        let Message::Snapshot(decoded) = decode(&encode(&Message::Snapshot(body.clone()))).unwrap() else {
            panic!("a snapshot")
        };
        assert_eq!(decoded, body);
        assert_eq!(Snapshot::from_body(decoded).unwrap().to_body(), body, "rebuilt as it was");
    }
}
