//! Shared fixtures: a fixed clock, actors, logins, and readers for the change
//! and audit logs that decode and check what they read.

use portcullis_control_plane::model::{Actor, AuditEntry, Millis, SessionRecord};
use portcullis_control_plane::store::{AuditFilter, ChangeStore, EdgeStore, NewSession, SessionStore, SqlStore};
use portcullis_policy::wire::{decode, Message};
use portcullis_policy::{Change, Delta};

/// A fixed "now" (2025-06-15); tests move forward from it.
pub const T0: Millis = 1_750_000_000_000;
/// One hour in milliseconds.
pub const HOUR: Millis = 3_600_000;
/// Session lifetime of [`login`]: deliberately not whole seconds, so change
/// expiries must round up.
pub const LIFETIME: Millis = 8 * HOUR + 123;

/// A valid policy document with one route.
pub const POLICY_A: &str = "\
version: 1
routes:
  - name: app
    host: app.corp.example
    upstream: http://10.0.0.2:8080
    rules:
      - name: everyone
        allow: {}
";
/// Another valid policy document.
pub const POLICY_B: &str = include_str!("../../../policies/examples/company.yaml");

/// The admin most tests act as.
pub fn actor() -> Actor {
    Actor { name: "token:ops".into(), source_address: "198.51.100.7".into() }
}

/// A session id (32 hex digits) from a number.
pub fn sid(n: u64) -> String {
    format!("{n:032x}")
}

/// A login on `route` by `subject`/`email`, served by `edge-1`.
pub fn login(id: &str, subject: &str, email: &str, route: &str) -> NewSession {
    NewSession {
        id: id.to_owned(),
        subject: subject.to_owned(),
        email: email.to_owned(),
        groups: vec!["engineers".into(), "sre".into()],
        idp_issuer: "https://idp.corp.example".into(),
        idp_session_id: Some(format!("idp-{id}")),
        route: route.to_owned(),
        lifetime_ms: LIFETIME,
        auth_time_s: T0 / 1000 - 60,
        source_address: "203.0.113.7".into(),
        user_agent: "Mozilla/5.0 (test)".into(),
        edge_id: "edge-1".into(),
    }
}

/// Records `new` at `now` with no session limit, signed in at the IdP at
/// that moment (a login after any earlier termination is a new sign-in).
pub async fn create(store: &SqlStore, new: NewSession, now: Millis) -> SessionRecord {
    let new = NewSession { auth_time_s: new.auth_time_s.max(now / 1000), ..new };
    let id = new.id.clone();
    let created = store.create_session(new, None, &actor(), now).await.unwrap_or_else(|e| panic!("create {id}: {e}"));
    assert!(created.replaced.is_empty());
    created.record
}

/// Seconds, rounding up (how the store turns expiries into change times).
pub fn ceil_s(ms: Millis) -> i64 {
    ms.div_euclid(1000) + i64::from(ms.rem_euclid(1000) != 0)
}

/// Every change in the log, decoded, checking that each row's sequence is
/// the one its delta carries.
pub async fn all_changes(store: &SqlStore) -> Vec<Delta> {
    let rows = store.changes_after(0, 100_000).await.expect("changes_after");
    rows.into_iter()
        .map(|(seq, bytes)| match decode(&bytes) {
            Ok(Message::Delta(delta)) => {
                assert_eq!(delta.seq, seq, "change-log row {seq} holds a delta numbered {}", delta.seq);
                delta
            }
            other => panic!("change-log row {seq} is not a delta: {other:?}"),
        })
        .collect()
}

/// The change recorded at `seq`.
pub async fn change_at(store: &SqlStore, seq: u64) -> Change {
    let rows = store.changes_after(seq - 1, 1).await.expect("changes_after");
    assert_eq!(rows.len(), 1, "no change-log row {seq}");
    assert_eq!(rows[0].0, seq);
    match decode(&rows[0].1) {
        Ok(Message::Delta(Delta { seq: s, change })) if s == seq => change,
        other => panic!("change-log row {seq} does not decode to its delta: {other:?}"),
    }
}

/// The whole audit log, newest first.
pub async fn audit_all(store: &SqlStore) -> Vec<AuditEntry> {
    store.audit(&AuditFilter { limit: 1000, ..AuditFilter::default() }).await.expect("audit")
}

/// The newest audit entry with `action`.
pub async fn last_audit(store: &SqlStore, action: &str) -> AuditEntry {
    let filter = AuditFilter { action: Some(action.into()), limit: 1, ..AuditFilter::default() };
    let entries = store.audit(&filter).await.expect("audit");
    entries.into_iter().next().unwrap_or_else(|| panic!("no audit entry with action {action}"))
}
