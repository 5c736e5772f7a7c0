//! Per-user revocation state: locks and "every token issued at or before T
//! is dead" (`revoked_before_ms`, the O(users) form of terminate-all). T is
//! in milliseconds, so a login in the same second after a termination is
//! alive. Users are named by subject or by email, so a lock can precede the
//! user's first login.

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

/// Revocation state of one user.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserState {
    /// The lock, if any.
    pub lock: Option<Lock>,
    /// Tokens issued at or before this instant (Unix milliseconds) are
    /// dead; see [`crate::Identity::issued_at_ms`] for tokens that only
    /// know their second.
    pub revoked_before_ms: Option<i64>,
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

/// Locks and `revoked_before_ms` instants, by subject and by email.
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

    fn drop_if_empty(&mut self, user: &UserRef) {
        if self.get(user).is_some_and(|s| *s == UserState::default()) {
            match user {
                UserRef::Subject(s) => self.by_subject.remove(&**s),
                UserRef::Email(e) => self.by_email.remove(&*email_key(e)),
            };
        }
    }

    /// Drops locks that lifted at or before `cutoff`.
    pub fn expire(&mut self, cutoff: i64) {
        for map in [&mut self.by_subject, &mut self.by_email] {
            let expired: Vec<Arc<str>> = map
                .iter()
                .filter(|(_, s)| s.lock.as_ref().is_some_and(|l| l.until.is_some_and(|u| u <= cutoff)))
                .map(|(k, _)| k.clone())
                .collect();
            for key in expired {
                if let Some(state) = map.get_mut(&key) {
                    state.lock = None;
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
