//! The connection registry: every downstream connection (HTTP keep-alive,
//! HTTP/2, websocket, CONNECT tunnel) can be cancelled from outside, and is
//! indexed by session and by user once a request on it authenticates.
//!
//! Kill path: a delta arrives → the subscriber asks the registry for the
//! connections of the affected session or user (a map lookup) → cancels
//! their tokens → the tasks serving them drop their sockets. A policy change
//! re-evaluates every bound connection against the new snapshot.
//!
//! Connections are keyed by their socket pair (client address, local
//! address), which both the accept wrapper and the per-request hooks can see,
//! including for HTTP/2 streams served on other tasks.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use portcullis_policy::snapshot::Affected;
use portcullis_policy::{evaluate, Facts, Identity, SessionId, Snapshot, Target, UserRef};
use tokio_util::sync::CancellationToken;

/// Identifies a live downstream connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnKey {
    /// The client's address.
    pub peer: SocketAddr,
    /// The local (listener) address.
    pub local: SocketAddr,
}

/// What a connection was last authorised for, so it can be re-checked.
#[derive(Debug, Clone)]
pub struct Binding {
    /// The verified identity.
    pub identity: Arc<Identity>,
    /// HTTP host or CONNECT name.
    pub target: BoundTarget,
}

/// The target of a bound connection.
#[derive(Debug, Clone)]
pub enum BoundTarget {
    /// HTTP: host, path and method of the request that bound it.
    Http {
        /// Host.
        host: String,
        /// Path.
        path: String,
        /// Method.
        method: String,
    },
    /// A CONNECT tunnel.
    Tcp {
        /// CONNECT name.
        name: String,
    },
}

struct Entry {
    cancel: CancellationToken,
    binding: Option<Binding>,
}

/// Why connections were closed (a metrics label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillReason {
    /// The session was terminated.
    SessionTerminated,
    /// The user was terminated or locked.
    User,
    /// The token was revoked.
    TokenRevoked,
    /// The policy no longer allows it.
    PolicyChanged,
}

impl KillReason {
    /// The metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SessionTerminated => "session_terminated",
            Self::User => "user",
            Self::TokenRevoked => "token_revoked",
            Self::PolicyChanged => "policy_changed",
        }
    }
}

/// Live connections, cancellable and indexed by session and user.
#[derive(Default)]
pub struct ConnRegistry {
    conns: DashMap<ConnKey, Entry>,
    by_session: DashMap<SessionId, Vec<ConnKey>>,
    by_subject: DashMap<Arc<str>, Vec<ConnKey>>,
    by_email: DashMap<Arc<str>, Vec<ConnKey>>,
    opened: AtomicU64,
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

fn push_key<K: std::hash::Hash + Eq>(index: &DashMap<K, Vec<ConnKey>>, key: K, conn: ConnKey) {
    let mut list = index.entry(key).or_default();
    if !list.contains(&conn) {
        list.push(conn);
    }
}

fn drop_key<K, Q>(index: &DashMap<K, Vec<ConnKey>>, key: &Q, conn: ConnKey)
where
    K: std::borrow::Borrow<Q> + std::hash::Hash + Eq,
    Q: std::hash::Hash + Eq + ?Sized,
{
    index.remove_if_mut(key, |_, list| {
        list.retain(|c| *c != conn);
        list.is_empty()
    });
}

fn keys_of<K, Q>(index: &DashMap<K, Vec<ConnKey>>, key: &Q) -> Vec<ConnKey>
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
                Entry { cancel: CancellationToken::new(), binding: None }
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

    /// Live connections bound to each session.
    pub fn connections_per_session(&self) -> std::collections::HashMap<SessionId, i64> {
        self.by_session.iter().map(|entry| (*entry.key(), entry.value().len() as i64)).collect()
    }

    /// Connections accepted since start.
    pub fn opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    /// Binds a connection to the identity a request on it authenticated as
    /// (re-binding on every request keeps the latest target). Returns false
    /// when the connection is not registered (already closed).
    pub fn bind(&self, key: ConnKey, binding: Binding) -> bool {
        let Some(mut entry) = self.conns.get_mut(&key) else { return false };
        let identity = Arc::clone(&binding.identity);
        let same = entry.binding.as_ref().is_some_and(|b| {
            b.identity.session_id() == identity.session_id() && b.identity.subject() == identity.subject()
        });
        let previous = entry.binding.replace(binding);
        drop(entry);
        if !same {
            if let Some(previous) = previous {
                self.unindex(key, &previous.identity);
            }
            if let Some(sid) = identity.session_id() {
                push_key(&self.by_session, sid, key);
            }
            push_key(&self.by_subject, Arc::from(identity.subject()), key);
            push_key(&self.by_email, Arc::from(identity.email()), key);
        }
        true
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
            if let Some(binding) = entry.binding {
                self.unindex(key, &binding.identity);
            }
        }
    }

    fn cancel_all(&self, keys: &[ConnKey]) -> usize {
        keys.iter()
            .filter(|key| match self.conns.get(key) {
                Some(entry) if !entry.cancel.is_cancelled() => {
                    entry.cancel.cancel();
                    true
                }
                _ => false,
            })
            .count()
    }

    /// Closes the connections a change affects; returns how many were closed
    /// and why. Policy changes re-evaluate every bound connection against
    /// `snapshot` at time `now`.
    pub fn close_affected(&self, affected: &Affected, snapshot: &Snapshot, now: i64) -> (usize, KillReason) {
        match affected {
            Affected::Session(sid) => (self.cancel_all(&keys_of(&self.by_session, sid)), KillReason::SessionTerminated),
            Affected::User(UserRef::Subject(sub)) => {
                (self.cancel_all(&keys_of(&self.by_subject, &**sub)), KillReason::User)
            }
            Affected::User(UserRef::Email(email)) => {
                (self.cancel_all(&keys_of(&self.by_email, email.to_ascii_lowercase().as_str())), KillReason::User)
            }
            // A revoked token id is in the snapshot now: re-evaluating finds its connections.
            Affected::Token(_) => (self.reevaluate(snapshot, now), KillReason::TokenRevoked),
            Affected::All => (self.reevaluate(snapshot, now), KillReason::PolicyChanged),
            Affected::Nothing => (0, KillReason::PolicyChanged),
        }
    }

    /// Re-checks every bound connection; cancels those no longer allowed.
    pub fn reevaluate(&self, snapshot: &Snapshot, now: i64) -> usize {
        let mut doomed = Vec::new();
        for entry in self.conns.iter() {
            let Some(binding) = &entry.binding else { continue };
            let target = match &binding.target {
                BoundTarget::Http { host, path, method } => Target::Http { host, path, method },
                BoundTarget::Tcp { name } => Target::Tcp { name },
            };
            let facts = Facts { target, source_ip: entry.key().peer.ip(), now, identity: Some(&binding.identity) };
            let decision = evaluate(snapshot, &facts);
            let reevaluate = decision.route.is_none_or(|r| r.options().reevaluate_live_connections);
            if !decision.is_allowed() && reevaluate {
                doomed.push(*entry.key());
            }
        }
        self.cancel_all(&doomed)
    }
}

#[cfg(test)]
mod tests;
