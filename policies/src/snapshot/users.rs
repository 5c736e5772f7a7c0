//! Per-user state: locks, "every token issued at or before T is dead"
//! (`revoked_before_ms`, the O(users) form of terminate-all), and "tokens
//! issued at or before T carry these groups now" (a [`GroupsOverride`], from
//! an identity provider's claims-change event). T is in milliseconds, so a
//! login in the same second after a termination is alive. Users are named by
//! subject or by email, so a lock can precede the user's first login.

use std::sync::Arc;

use foldhash::fast::FixedState;
use imbl::shared_ptr::DefaultSharedPtr;
use imbl::GenericHashMap;
use serde::{Deserialize, Serialize};

use crate::facts::Identity;
use crate::ids::UserRef;

/// A lock on a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    /// When the lock lifts by itself (Unix seconds); `None` = until unlocked.
    pub until: Option<i64>,
    /// Why the user was locked, shown in denials.
    pub reason: String,
}

/// The groups a user has now, replacing those in the user's tokens issued
/// at or before `since_ms` (their claims predate the change). A token issued
/// later carries the identity provider's fresh groups and keeps them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupsOverride {
    /// The groups, sorted and de-duplicated by [`UserStates::override_groups`].
    pub groups: Vec<String>,
    /// Tokens issued at or before this instant (Unix milliseconds; compared
    /// with [`crate::Identity::issued_at_ms`], as `revoked_before_ms` is) are
    /// judged with `groups`.
    pub since_ms: i64,
    /// When no token it applies to can be alive any more (Unix seconds);
    /// `ExpireBefore` forgets it then.
    pub expires_at: i64,
}

/// Revocation state and group override of one user.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserState {
    /// The lock, if any.
    pub lock: Option<Lock>,
    /// Tokens issued at or before this instant (Unix milliseconds) are
    /// dead; see [`crate::Identity::issued_at_ms`] for tokens that only
    /// know their second.
    pub revoked_before_ms: Option<i64>,
    /// The groups the user's older tokens are judged with, if overridden.
    /// (Added in wire format version 3.)
    pub groups: Option<GroupsOverride>,
}

/// Why a user's request is refused before policy is consulted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserDenial<'s> {
    /// The user is locked.
    Locked(&'s Lock),
    /// The token predates a terminate-all for this user.
    TokenRevoked,
}

/// Emails are compared lowercased, however the reference was built (a
/// `UserRef` decoded from the wire did not go through `UserRef::email`).
fn email_key(email: &Arc<str>) -> Arc<str> {
    if email.bytes().any(|b| b.is_ascii_uppercase()) {
        Arc::from(email.to_ascii_lowercase())
    } else {
        email.clone()
    }
}

type Map = GenericHashMap<Arc<str>, UserState, FixedState, DefaultSharedPtr>;

/// Locks, `revoked_before_ms` instants and group overrides, by subject and
/// by email.
#[derive(Debug, Clone, Default)]
pub struct UserStates {
    by_subject: Map,
    by_email: Map,
}

impl UserStates {
    fn slot(&mut self, user: &UserRef) -> &mut UserState {
        match user {
            UserRef::Subject(s) => self.by_subject.entry(s.clone()).or_default(),
            UserRef::Email(e) => self.by_email.entry(email_key(e)).or_default(),
        }
    }

    /// The state recorded for `user`.
    pub fn get(&self, user: &UserRef) -> Option<&UserState> {
        match user {
            UserRef::Subject(s) => self.by_subject.get(&**s),
            UserRef::Email(e) => self.by_email.get(&*email_key(e)),
        }
    }

    /// Sets or replaces the user's lock.
    pub fn lock(&mut self, user: &UserRef, lock: Lock) {
        self.slot(user).lock = Some(lock);
    }

    /// Lifts the user's lock.
    pub fn unlock(&mut self, user: &UserRef) {
        self.slot(user).lock = None;
        self.drop_if_empty(user);
    }

    /// Records that tokens issued at or before `time_ms` (Unix
    /// milliseconds) are dead; an earlier time never replaces a later one.
    pub fn revoke_before(&mut self, user: &UserRef, time_ms: i64) {
        let slot = self.slot(user);
        slot.revoked_before_ms = Some(slot.revoked_before_ms.map_or(time_ms, |t| t.max(time_ms)));
    }

    /// Sets the groups of the user's tokens issued at or before `since_ms`,
    /// replacing any earlier override (the newest change wins, whatever its
    /// `since_ms`: the control plane's table holds one row per user too).
    pub fn override_groups(&mut self, user: &UserRef, groups: &[String], since_ms: i64, expires_at: i64) {
        let mut groups = groups.to_vec();
        groups.sort_unstable();
        groups.dedup();
        self.slot(user).groups = Some(GroupsOverride { groups, since_ms, expires_at });
    }

    fn drop_if_empty(&mut self, user: &UserRef) {
        if self.get(user).is_some_and(|s| *s == UserState::default()) {
            match user {
                UserRef::Subject(s) => self.by_subject.remove(&**s),
                UserRef::Email(e) => self.by_email.remove(&*email_key(e)),
            };
        }
    }

    /// Drops locks that lifted, and group overrides that expired, at or
    /// before `cutoff`.
    pub fn expire(&mut self, cutoff: i64) {
        let lock_lifted = |s: &UserState| s.lock.as_ref().is_some_and(|l| l.until.is_some_and(|u| u <= cutoff));
        let override_ended = |s: &UserState| s.groups.as_ref().is_some_and(|g| g.expires_at <= cutoff);
        for map in [&mut self.by_subject, &mut self.by_email] {
            let expired: Vec<Arc<str>> =
                map.iter().filter(|(_, s)| lock_lifted(s) || override_ended(s)).map(|(k, _)| k.clone()).collect();
            for key in expired {
                if let Some(state) = map.get_mut(&key) {
                    if lock_lifted(state) {
                        state.lock = None;
                    }
                    if override_ended(state) {
                        state.groups = None;
                    }
                    if *state == UserState::default() {
                        map.remove(&key);
                    }
                }
            }
        }
    }

    /// Checks the identity's subject and email at time `now`.
    #[inline]
    pub fn check(&self, identity: &Identity, now: i64) -> Option<UserDenial<'_>> {
        if self.by_subject.is_empty() && self.by_email.is_empty() {
            return None;
        }
        [self.by_subject.get(identity.subject()), self.by_email.get(identity.email())].into_iter().flatten().find_map(
            |state| {
                if let Some(lock) = state.lock.as_ref().filter(|l| l.until.is_none_or(|u| now < u)) {
                    return Some(UserDenial::Locked(lock));
                }
                state.revoked_before_ms.filter(|&t| identity.issued_at_ms <= t).map(|_| UserDenial::TokenRevoked)
            },
        )
    }

    /// The group override that applies to `identity`: one recorded for its
    /// subject or its email whose `since_ms` the token was issued at or
    /// before (the later of the two when both apply). Costs nothing when no
    /// user has recorded state, and never allocates.
    #[inline]
    pub fn groups_override(&self, identity: &Identity) -> Option<&GroupsOverride> {
        if self.by_subject.is_empty() && self.by_email.is_empty() {
            return None;
        }
        [self.by_subject.get(identity.subject()), self.by_email.get(identity.email())]
            .into_iter()
            .flatten()
            .filter_map(|state| state.groups.as_ref())
            .filter(|o| identity.issued_at_ms <= o.since_ms)
            .max_by_key(|o| o.since_ms)
    }

    /// Every user with recorded state.
    pub fn iter(&self) -> impl Iterator<Item = (UserRef, &UserState)> + '_ {
        let subjects = self.by_subject.iter().map(|(k, v)| (UserRef::Subject(k.clone()), v));
        let emails = self.by_email.iter().map(|(k, v)| (UserRef::Email(k.clone()), v));
        subjects.chain(emails)
    }

    /// Number of users with recorded state.
    pub fn len(&self) -> usize {
        self.by_subject.len() + self.by_email.len()
    }

    /// True when no user has recorded state.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
