//! The connection registry: every downstream connection (HTTP keep-alive,
//! HTTP/2, websocket, CONNECT tunnel) can be cancelled from outside, and is
//! indexed by session and by user once a request on it authenticates.
//!
//! Kill path: a delta arrives → the subscriber asks the registry for the
//! connections of the affected session or user (a map lookup) → cancels
//! their tokens → the tasks serving them drop their sockets. A policy change
//! re-evaluates every bound connection against the new snapshot; a change of
//! one user's groups (a group override) re-evaluates only that user's
//! bindings and closes those the new groups no longer allow.
//!
//! Connections are keyed by their socket pair (client address, local
//! address), which both the accept wrapper and the per-request hooks can see,
//! including for HTTP/2 streams served on other tasks.
//!
//! A connection carries one binding per identity that used it: HTTP/1.1
//! requests follow one another, so each replaces the last; an HTTP/2
//! connection may carry streams of up to [`MAX_IDENTITIES_PER_CONNECTION`]
//! identities at once, and ending any of them closes the connection with
//! all its streams. Anonymous requests bind too (identity `None`), so a
//! policy that stops allowing anonymous access closes their websockets.
//!
//! Every binding carries the instant its admission stops holding (token
//! expiry, the end of a `time:` window, a `logged_in_within` limit); the
//! [`deadlines`] wheel finds the connections due at each second without
//! looking at the others, and [`ConnRegistry::expire`] re-checks them.

mod binding;
mod close_notice;
mod closed;
mod deadlines;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use portcullis_policy::snapshot::Affected;
use portcullis_policy::{Identity, SessionId, Snapshot, UserRef};
use tokio_util::sync::CancellationToken;

use binding::same_identity;
pub use binding::{Binding, BoundTarget};
use close_notice::CloseNotice;
pub use closed::{ClosedConnection, KillReason};
use deadlines::DeadlineWheel;

/// The registry's maps: a seeded fast hash (foldhash) instead of SipHash,
/// on the request path.
type FastMap<K, V> = DashMap<K, V, foldhash::fast::RandomState>;

/// Most distinct identities one (HTTP/2) connection may carry at once;
/// past that the request gets 421 and the client opens another connection.
pub const MAX_IDENTITIES_PER_CONNECTION: usize = 4;

/// Identifies a live downstream connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnKey {
    /// The client's address.
    pub peer: SocketAddr,
    /// The local (listener) address.
    pub local: SocketAddr,
}

struct Entry {
    cancel: CancellationToken,
    bindings: Vec<Binding>,
    /// The earliest `until` of the bindings, as filed in the wheel.
    deadline: Option<i64>,
    /// Why it was cancelled, for the task serving it.
    notice: CloseNotice,
}

impl Entry {
    fn earliest(&self) -> Option<i64> {
        self.bindings.iter().filter_map(|b| b.until).min()
    }
}

/// Why bindings are re-checked, which decides what a failed check does and
/// which deadlines are filed again.
#[derive(Debug, Clone, Copy)]
enum Recheck<'a> {
    /// The policy changed: a route with `reevaluate_live_connections: false`
    /// keeps connections the new policy would refuse.
    PolicyChanged,
    /// Their deadlines came: they were taken from the wheel, so every
    /// survivor is filed again.
    Due,
    /// This user's groups changed: only the user's bindings are re-checked,
    /// and, as for a revocation, no route option keeps one the new groups do
    /// not allow. Other identities' bindings on the same (HTTP/2)
    /// connection are left as they are: nothing changed for them.
    Claims(&'a UserRef),
}

/// The result of [`ConnRegistry::bind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindOutcome {
    /// Bound (or the binding refreshed).
    Bound,
    /// The connection is not registered (already closed).
    Closed,
    /// An HTTP/2 connection already carries [`MAX_IDENTITIES_PER_CONNECTION`] identities.
    TooManyIdentities,
}

/// Live connections, cancellable and indexed by session and user.
#[derive(Default)]
pub struct ConnRegistry {
    conns: FastMap<ConnKey, Entry>,
    by_session: FastMap<SessionId, Vec<ConnKey>>,
    by_subject: FastMap<Arc<str>, Vec<ConnKey>>,
    by_email: FastMap<Arc<str>, Vec<ConnKey>>,
    deadlines: DeadlineWheel,
    opened: AtomicU64,
    closed: closed::ClosedLog,
}

/// Removes a connection from the registry when the task serving it ends.
pub struct Registration {
    registry: Arc<ConnRegistry>,
    key: ConnKey,
    keep: bool,
    /// Cancelled when the connection must close.
    pub cancelled: CancellationToken,
}

impl Registration {
    /// The connection lives on (keep-alive reuse): leave its entry and
    /// binding in place for the next request on it.
    pub fn keep(mut self) {
        self.keep = true;
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if !self.keep {
            self.registry.remove(self.key);
        }
    }
}

fn push_key<K: std::hash::Hash + Eq>(index: &FastMap<K, Vec<ConnKey>>, key: K, conn: ConnKey) {
    let mut list = index.entry(key).or_default();
    if !list.contains(&conn) {
        list.push(conn);
    }
}

fn drop_key<K, Q>(index: &FastMap<K, Vec<ConnKey>>, key: &Q, conn: ConnKey)
where
    K: std::borrow::Borrow<Q> + std::hash::Hash + Eq,
    Q: std::hash::Hash + Eq + ?Sized,
{
    index.remove_if_mut(key, |_, list| {
        list.retain(|c| *c != conn);
        list.is_empty()
    });
}

fn keys_of<K, Q>(index: &FastMap<K, Vec<ConnKey>>, key: &Q) -> Vec<ConnKey>
where
    K: std::borrow::Borrow<Q> + std::hash::Hash + Eq,
    Q: std::hash::Hash + Eq + ?Sized,
{
    index.get(key).map(|list| list.clone()).unwrap_or_default()
}

impl ConnRegistry {
    /// A new, empty registry.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Registers an accepted connection, or picks up the entry of a
    /// keep-alive connection coming back for its next request.
    pub fn register(self: &Arc<Self>, key: ConnKey) -> Registration {
        let cancelled = self
            .conns
            .entry(key)
            .or_insert_with(|| {
                self.opened.fetch_add(1, Ordering::Relaxed);
                Entry {
                    cancel: CancellationToken::new(),
                    bindings: Vec::new(),
                    deadline: None,
                    notice: CloseNotice::default(),
                }
            })
            .cancel
            .clone();
        Registration { registry: Arc::clone(self), key, keep: false, cancelled }
    }

    /// Live connections.
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    /// True when no connection is live.
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Live connections bound to each session, and the client address of
    /// one of them.
    pub fn connections_per_session(&self) -> std::collections::HashMap<SessionId, (i64, Option<IpAddr>)> {
        let listed: Vec<(SessionId, i64, Option<ConnKey>)> = self
            .by_session
            .iter()
            .map(|entry| (*entry.key(), entry.value().len() as i64, entry.value().first().copied()))
            .collect();
        listed
            .into_iter()
            .map(|(session, count, key)| {
                let address = key.and_then(|key| {
                    let entry = self.conns.get(&key)?;
                    let of_session = entry
                        .bindings
                        .iter()
                        .find(|b| b.identity.as_deref().and_then(Identity::session_id) == Some(session));
                    of_session.map(|b| b.client_ip)
                });
                (session, (count, address))
            })
            .collect()
    }

    /// Connections accepted since start.
    pub fn opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    /// When `identity` is already bound on `key` for a target `same_target`
    /// accepts, from `client_ip`, and nothing else is bound there that this
    /// request would replace: refreshes its deadline and returns true, so
    /// the common keep-alive or HTTP/2 repeat costs no allocation.
    pub fn refresh(
        &self,
        key: ConnKey,
        identity: Option<&Arc<Identity>>,
        same_target: impl Fn(&BoundTarget) -> bool,
        client_ip: IpAddr,
        until: Option<i64>,
        multiplexed: bool,
    ) -> bool {
        let Some(mut entry) = self.conns.get_mut(&key) else { return false };
        if !multiplexed && entry.bindings.len() != 1 {
            return false;
        }
        let same = |b: &Binding| {
            same_identity(b.identity.as_ref(), identity) && b.client_ip == client_ip && same_target(&b.target)
        };
        let Some(binding) = entry.bindings.iter_mut().find(|b| same(b)) else {
            return false;
        };
        binding.until = until;
        let deadline = entry.earliest();
        let refile = deadline != entry.deadline;
        entry.deadline = deadline;
        drop(entry);
        if let (true, Some(at)) = (refile, deadline) {
            self.deadlines.file(at, key);
        }
        true
    }

    /// Binds a connection to what a request on it was admitted as.
    /// `multiplexed` (HTTP/2): other identities' bindings stay; otherwise the
    /// request replaces every earlier binding of the connection.
    pub fn bind(&self, key: ConnKey, binding: Binding, multiplexed: bool) -> BindOutcome {
        let Some(mut entry) = self.conns.get_mut(&key) else { return BindOutcome::Closed };
        let identity = binding.identity.clone();
        let mut unindexed = Vec::new();
        let mut index_new = true;
        match entry.bindings.iter().position(|b| same_identity(b.identity.as_ref(), binding.identity.as_ref())) {
            Some(at) => {
                index_new = false;
                entry.bindings[at] = binding;
                if !multiplexed && entry.bindings.len() > 1 {
                    let kept = entry.bindings.swap_remove(at);
                    unindexed = std::mem::take(&mut entry.bindings);
                    entry.bindings.push(kept);
                }
            }
            None if multiplexed && entry.bindings.len() >= MAX_IDENTITIES_PER_CONNECTION => {
                return BindOutcome::TooManyIdentities
            }
            None if multiplexed => entry.bindings.push(binding),
            None => unindexed = std::mem::replace(&mut entry.bindings, vec![binding]),
        }
        let deadline = entry.earliest();
        let refile = deadline != entry.deadline;
        entry.deadline = deadline;
        drop(entry);
        for old in unindexed {
            if let Some(identity) = &old.identity {
                self.unindex(key, identity);
            }
        }
        if let (true, Some(identity)) = (index_new, &identity) {
            if let Some(sid) = identity.session_id() {
                push_key(&self.by_session, sid, key);
            }
            push_key(&self.by_subject, Arc::from(identity.subject()), key);
            push_key(&self.by_email, Arc::from(identity.email()), key);
        }
        if let (true, Some(at)) = (refile, deadline) {
            self.deadlines.file(at, key);
        }
        BindOutcome::Bound
    }

    fn unindex(&self, key: ConnKey, identity: &Identity) {
        if let Some(sid) = identity.session_id() {
            drop_key(&self.by_session, &sid, key);
        }
        drop_key(&self.by_subject, identity.subject(), key);
        drop_key(&self.by_email, identity.email(), key);
    }

    fn remove(&self, key: ConnKey) {
        if let Some((_, entry)) = self.conns.remove(&key) {
            for binding in entry.bindings {
                if let Some(identity) = &binding.identity {
                    self.unindex(key, identity);
                }
            }
        }
    }

    /// Cancels the connections of `keys` not cancelled yet, then records
    /// their bindings for the next report. Returns how many it cancelled.
    fn cancel_all(&self, keys: &[ConnKey], reason: KillReason) -> usize {
        let mut cancelled = 0;
        let mut closed = Vec::new();
        let at_ms = crate::clock::unix_now_ms();
        for key in keys {
            let Some(entry) = self.conns.get(key) else { continue };
            if entry.cancel.is_cancelled() {
                continue;
            }
            entry.notice.record(reason);
            entry.cancel.cancel();
            cancelled += 1;
            closed.extend(entry.bindings.iter().map(|b| ClosedConnection { binding: b.clone(), reason, at_ms }));
        }
        self.closed.record(closed);
        cancelled
    }

    /// The connections closed since the last call (each binding of each),
    /// and how many closes did not fit the bounded record.
    pub fn take_closed(&self) -> (Vec<ClosedConnection>, u64) {
        self.closed.take()
    }

    /// Closes the connections a change affects; returns how many were closed
    /// and why. Policy changes re-evaluate every bound connection against
    /// `snapshot` at time `now`; a user's changed groups re-evaluate that
    /// user's connections only.
    pub fn close_affected(&self, affected: &Affected, snapshot: &Snapshot, now: i64) -> (usize, KillReason) {
        match affected {
            Affected::Session(sid) => {
                let reason = KillReason::SessionTerminated;
                (self.cancel_all(&keys_of(&self.by_session, sid), reason), reason)
            }
            Affected::User(UserRef::Subject(sub)) => {
                (self.cancel_all(&keys_of(&self.by_subject, &**sub), KillReason::User), KillReason::User)
            }
            Affected::User(UserRef::Email(email)) => {
                let keys = keys_of(&self.by_email, email.to_ascii_lowercase().as_str());
                (self.cancel_all(&keys, KillReason::User), KillReason::User)
            }
            // A revoked token id is in the snapshot now: re-evaluating finds its connections.
            Affected::Token(_) => {
                (self.reevaluate_as(snapshot, now, KillReason::TokenRevoked), KillReason::TokenRevoked)
            }
            Affected::UserClaims(user) => {
                let keys = match user {
                    UserRef::Subject(sub) => keys_of(&self.by_subject, &**sub),
                    UserRef::Email(email) => keys_of(&self.by_email, email.to_ascii_lowercase().as_str()),
                };
                let reason = KillReason::ClaimsChanged;
                (self.recheck(&keys, snapshot, now, Recheck::Claims(user), reason), reason)
            }
            Affected::All => (self.reevaluate(snapshot, now), KillReason::PolicyChanged),
            Affected::KeysWithdrawn => {
                (self.reevaluate_as(snapshot, now, KillReason::KeyRevoked), KillReason::KeyRevoked)
            }
            Affected::Nothing => (0, KillReason::PolicyChanged),
        }
    }

    /// Re-checks every bound connection after a policy change; cancels
    /// those no longer allowed and refiles the deadlines of the others.
    pub fn reevaluate(&self, snapshot: &Snapshot, now: i64) -> usize {
        self.reevaluate_as(snapshot, now, KillReason::PolicyChanged)
    }

    /// [`Self::reevaluate`], telling the closed connections `reason`.
    fn reevaluate_as(&self, snapshot: &Snapshot, now: i64, reason: KillReason) -> usize {
        let keys: Vec<ConnKey> = self.conns.iter().filter(|e| !e.bindings.is_empty()).map(|e| *e.key()).collect();
        self.recheck(&keys, snapshot, now, Recheck::PolicyChanged, reason)
    }

    /// Closes every connection with a binding `doomed` picks, for `reason`; returns how many.
    pub fn close_where(&self, doomed: impl Fn(&Binding) -> bool, reason: KillReason) -> usize {
        let keys: Vec<ConnKey> =
            self.conns.iter().filter(|e| e.bindings.iter().any(&doomed)).map(|e| *e.key()).collect();
        self.cancel_all(&keys, reason)
    }

    /// Re-checks the connections whose deadline has come by `now`; cancels
    /// those whose admission lapsed. Returns how many were closed.
    pub fn expire(&self, snapshot: &Snapshot, now: i64) -> usize {
        let due = self.deadlines.take_due(now);
        self.recheck(&due, snapshot, now, Recheck::Due, KillReason::Expired)
    }

    fn recheck(
        &self,
        keys: &[ConnKey],
        snapshot: &Snapshot,
        now: i64,
        cause: Recheck<'_>,
        reason: KillReason,
    ) -> usize {
        let policy_change = matches!(cause, Recheck::PolicyChanged);
        let mut doomed = Vec::new();
        for key in keys {
            let Some(mut entry) = self.conns.get_mut(key) else { continue };
            let mut lapsed = false;
            for binding in entry.bindings.iter_mut() {
                if let Recheck::Claims(user) = cause {
                    if !binding.is_of(user) {
                        continue;
                    }
                }
                match binding.recheck(snapshot, now, policy_change) {
                    Some(until) => binding.until = until,
                    None => lapsed = true,
                }
            }
            if lapsed {
                doomed.push(*key);
                continue;
            }
            let deadline = entry.earliest();
            let refile = deadline != entry.deadline || matches!(cause, Recheck::Due);
            entry.deadline = deadline;
            drop(entry);
            if let (true, Some(at)) = (refile, deadline) {
                self.deadlines.file(at, *key);
            }
        }
        self.cancel_all(&doomed, reason)
    }
}

#[cfg(test)]
mod tests;
