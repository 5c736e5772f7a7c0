//! The SQL of a group of terminations in one change transaction: session
//! terminations and terminate-alls, in arrival order, written with a fixed
//! number of statements however many there are (read the sessions, end
//! them, raise the users' instants, append the changes, write the audit
//! rows, enqueue the outbox jobs). The group commit (`group_commit.rs`)
//! sends its whole batch here; a signal, an unlock or a lone call sends one.
//!
//! Each termination keeps its own outcome, change-log sequence, audit row
//! and outbox jobs, exactly as if they had run one after another under the
//! change-log lock: a session ended earlier in the batch counts as already
//! ended for a later request, and a terminate-all ends the sessions the
//! transaction sees live (no login can commit meanwhile: logins take the
//! same lock). A terminate-all revokes the tokens of every session it ends,
//! including one created after its caller read the clock (see
//! [`revoked_before`]).

use std::collections::{HashMap, HashSet};

use portcullis_policy::{Change, SessionId, UserRef};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::audit::{insert_audits, ActionAudit, AuditAbout};
use super::changes::{append_changes, ceil_seconds};
use super::group_commit::EndedBy;
use super::rows::{placeholders, session, value_rows, ROWS_PER_STATEMENT, SESSION_COLUMNS};
use super::sessions::known_email;
use super::users::{raise_user_instants, user_key, UserInstant};
use super::{SqlStore, StoreError, StoreResult};
use crate::model::{Actor, Millis, SessionRecord};
use crate::termination::{Action, Termination};

/// What to end.
#[derive(Debug, Clone)]
pub(crate) enum Ending {
    /// One session; an admin's (or a signal's) termination or a logout.
    Session {
        /// The session id as the caller gave it.
        id: String,
        /// Who ended it.
        by: EndedBy,
    },
    /// Every live session of a user, and every token issued to them.
    User(UserRef),
}

/// One requested termination.
#[derive(Debug, Clone)]
pub(crate) struct EndRequest {
    /// What to end.
    pub ending: Ending,
    /// Why (audit log, the session's end reason).
    pub reason: String,
    /// Who asked.
    pub actor: Actor,
    /// When the caller asked.
    pub now: Millis,
}

/// A session termination's outcome: the change's sequence (`None` when the
/// session had already ended) and the session as this transaction leaves it.
#[derive(Debug, Clone)]
pub(crate) struct SessionEnding {
    /// The `TerminateSession` change, if it ended now.
    pub seq: Option<u64>,
    /// The session row after the termination (boxed: a row is large, and
    /// most outcomes travel through a queue).
    pub session: Box<SessionRecord>,
}

/// What a terminate-all did inside its transaction.
#[derive(Debug, Clone)]
pub(crate) struct UserEnding {
    /// The `TerminateUser` change's sequence.
    pub seq: u64,
    /// The sessions it ended.
    pub sessions: Vec<String>,
}

/// One request's outcome.
#[derive(Debug)]
pub(crate) enum EndOutcome {
    /// Of an [`Ending::Session`]: not found and corrupt ids are per-call errors.
    Session(StoreResult<SessionEnding>),
    /// Of an [`Ending::User`].
    User(UserEnding),
}

/// The outcomes, in request order, and what the commit must know.
#[derive(Debug)]
pub(crate) struct Ended {
    /// One per request.
    pub outcomes: Vec<EndOutcome>,
    /// The newest sequence appended (for the change feed).
    pub newest: Option<u64>,
    /// Outbox jobs were enqueued (wake the workers after commit).
    pub enqueued: bool,
}

/// A live session of a user a terminate-all may end.
struct LiveSession {
    id: String,
    email: String,
    subject: String,
    created_ms: Millis,
}

/// Ends what `requests` ask inside `tx` (from `begin_change`), in order.
/// Database failures fail the whole batch; per-call outcomes do not.
pub(crate) async fn end_in(
    tx: &mut Transaction<'static, Any>,
    store: &SqlStore,
    requests: &[EndRequest],
) -> StoreResult<Ended> {
    let mut rows = sessions_by_id(tx, requests).await?;
    let live = live_sessions_of_users(tx, requests).await?;
    let mut ended_now: HashSet<String> = HashSet::new();
    let mut updates: Vec<(String, Millis, &str)> = Vec::new();
    let (mut reauth, mut revoked) = (Vec::new(), Vec::new());
    let mut changes = Vec::new();
    // Per request: the index of its change, and the facts its audit row and outbox jobs need.
    let mut pending: Vec<Pending> = Vec::with_capacity(requests.len());
    for request in requests {
        let now = request.now;
        match &request.ending {
            Ending::Session { id, by } => {
                let Some(record) = rows.get_mut(id) else {
                    pending.push(Pending::Outcome(Err(StoreError::NotFound)));
                    continue;
                };
                if record.ended_ms.is_some() {
                    pending.push(Pending::Outcome(Ok(SessionEnding { seq: None, session: Box::new(record.clone()) })));
                    continue;
                }
                let Ok(session) = id.parse::<SessionId>() else {
                    pending.push(Pending::Outcome(Err(StoreError::Corrupt(format!("session id {id}")))));
                    continue;
                };
                record.ended_ms = Some(now);
                record.end_reason = Some(request.reason.clone());
                ended_now.insert(id.clone());
                updates.push((id.clone(), now, request.reason.as_str()));
                if *by == EndedBy::Admin {
                    reauth.push((UserRef::email(&record.email), now, now));
                }
                changes.push((Change::TerminateSession { session, expires_at: ceil_seconds(record.expires_ms) }, now));
                pending.push(Pending::Session { change: changes.len() - 1, record: Box::new(record.clone()), by: *by });
            }
            Ending::User(user) => {
                let mine: Vec<&LiveSession> =
                    live.iter().filter(|s| owned_by(s, user) && !ended_now.contains(&s.id)).collect();
                let revoked_before_ms = revoked_before(now, &mine);
                let mut sessions = Vec::with_capacity(mine.len());
                for s in mine {
                    ended_now.insert(s.id.clone());
                    updates.push((s.id.clone(), now, request.reason.as_str()));
                    if let Some(record) = rows.get_mut(&s.id) {
                        record.ended_ms = Some(now);
                        record.end_reason = Some(request.reason.clone());
                    }
                    sessions.push(s.id.clone());
                }
                revoked.push((user.clone(), revoked_before_ms, now));
                changes.push((Change::TerminateUser { user: user.clone(), revoked_before_ms }, now));
                pending.push(Pending::User { change: changes.len() - 1, sessions });
            }
        }
    }
    end_sessions(tx, &updates).await?;
    raise_user_instants(tx, UserInstant::ReauthAfter, &reauth).await?;
    raise_user_instants(tx, UserInstant::RevokedBefore, &revoked).await?;
    let appended = changes.len() as u64;
    let first = append_changes(tx, store.backend, changes).await?;
    let newest = (appended > 0).then(|| first + appended - 1);
    let mut audits = Vec::with_capacity(requests.len());
    let mut events = Vec::new();
    let mut outcomes = Vec::with_capacity(requests.len());
    for (request, done) in requests.iter().zip(pending) {
        let (reason, now) = (request.reason.as_str(), request.now);
        match done {
            Pending::Outcome(outcome) => outcomes.push(EndOutcome::Session(outcome)),
            Pending::Session { change, record, by } => {
                let seq = first + change as u64;
                if by == EndedBy::Admin {
                    events.push((termination(Action::TerminateSession, &record, reason, now), seq));
                }
                outcomes.push(EndOutcome::Session(Ok(SessionEnding { seq: Some(seq), session: record })));
            }
            Pending::User { change, sessions } => {
                let seq = first + change as u64;
                let Ending::User(user) = &request.ending else { unreachable!("a user request") };
                let event = Termination {
                    action: Action::TerminateUser,
                    user: user_key(user),
                    email: known_email(tx, user).await?,
                    session_id: None,
                    reason: reason.to_owned(),
                    at_ms: now,
                };
                events.push((event, seq));
                outcomes.push(EndOutcome::User(UserEnding { seq, sessions }));
            }
        }
    }
    for (request, outcome) in requests.iter().zip(&outcomes) {
        if let Some(audit) = audit_of(request, outcome) {
            audits.push(audit);
        }
    }
    insert_audits(tx, &audits).await?;
    let enqueued = store.enqueue_terminations(tx, &events).await?;
    Ok(Ended { outcomes, newest, enqueued })
}

/// A request's state between deciding and writing.
enum Pending {
    /// Decided without a change.
    Outcome(StoreResult<SessionEnding>),
    /// A session ended by the batch's `change`-th change.
    Session { change: usize, record: Box<SessionRecord>, by: EndedBy },
    /// A terminate-all, the batch's `change`-th change.
    User { change: usize, sessions: Vec<String> },
}

/// The instant up to which a terminate-all revokes the user's tokens: the
/// caller's `now`, or later if a session it ends was created after that (a
/// login that committed between the caller reading the clock and this
/// transaction taking the change-log lock; its token is issued at its
/// `created_ms`, and the edges learn of this termination only through
/// `revoked_before_ms`).
fn revoked_before(now: Millis, ending: &[&LiveSession]) -> Millis {
    ending.iter().map(|s| s.created_ms).fold(now, Millis::max)
}

fn owned_by(session: &LiveSession, user: &UserRef) -> bool {
    match user {
        UserRef::Email(e) => session.email.eq_ignore_ascii_case(e),
        UserRef::Subject(s) => session.subject == **s,
    }
}

fn termination(action: Action, record: &SessionRecord, reason: &str, now: Millis) -> Termination {
    Termination {
        action,
        user: user_key(&UserRef::email(&record.email)),
        email: Some(record.email.clone()),
        session_id: Some(record.id.clone()),
        reason: reason.to_owned(),
        at_ms: now,
    }
}

/// The audit row of a request that changed something.
fn audit_of<'a>(request: &'a EndRequest, outcome: &'a EndOutcome) -> Option<ActionAudit<'a>> {
    let (action, target, about, seq) = match (&request.ending, outcome) {
        (Ending::Session { .. }, EndOutcome::Session(Ok(SessionEnding { seq: Some(seq), session }))) => {
            let about = AuditAbout {
                email: Some(&session.email),
                subject: Some(&session.subject),
                session: Some(&session.id),
                ..AuditAbout::default()
            };
            ("session.terminate", format!("session:{}", session.id), about, *seq)
        }
        (Ending::User(user), EndOutcome::User(done)) => {
            let about = match user {
                UserRef::Email(e) => AuditAbout { email: Some(e), ..AuditAbout::default() },
                UserRef::Subject(s) => AuditAbout { subject: Some(s), ..AuditAbout::default() },
            };
            ("user.terminate", user_key(user), about, done.seq)
        }
        _ => return None,
    };
    Some(ActionAudit {
        action,
        target,
        about,
        reason: &request.reason,
        actor: &request.actor,
        at_ms: request.now,
        seq: Some(seq),
    })
}

/// The rows of the sessions the requests name, by id.
async fn sessions_by_id(
    tx: &mut Transaction<'static, Any>,
    requests: &[EndRequest],
) -> StoreResult<HashMap<String, SessionRecord>> {
    let ids: Vec<&str> = requests
        .iter()
        .filter_map(|r| match &r.ending {
            Ending::Session { id, .. } => Some(id.as_str()),
            Ending::User(_) => None,
        })
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let mut found = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(ROWS_PER_STATEMENT) {
        let sql = format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id IN ({})", placeholders(chunk.len(), 1));
        let mut query = sqlx::query(&sql);
        for id in chunk {
            query = query.bind(*id);
        }
        for row in query.fetch_all(&mut **tx).await? {
            let record = session(&row)?;
            found.insert(record.id.clone(), record);
        }
    }
    Ok(found)
}

/// The live sessions of the users the requests name.
async fn live_sessions_of_users(
    tx: &mut Transaction<'static, Any>,
    requests: &[EndRequest],
) -> StoreResult<Vec<LiveSession>> {
    let (mut emails, mut subjects) = (HashSet::new(), HashSet::new());
    for request in requests {
        match &request.ending {
            Ending::User(UserRef::Email(e)) => emails.insert(e.to_ascii_lowercase()),
            Ending::User(UserRef::Subject(s)) => subjects.insert(s.to_string()),
            Ending::Session { .. } => false,
        };
    }
    let mut live = Vec::new();
    for (column, values) in [("email", emails), ("subject", subjects)] {
        let values: Vec<String> = values.into_iter().collect();
        for chunk in values.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "SELECT id, email, subject, created_ms FROM sessions WHERE {column} IN ({}) AND ended_ms IS NULL",
                placeholders(chunk.len(), 1)
            );
            let mut query = sqlx::query(&sql);
            for value in chunk {
                query = query.bind(value);
            }
            for row in query.fetch_all(&mut **tx).await? {
                let row: &AnyRow = &row;
                let session = LiveSession {
                    id: row.try_get("id")?,
                    email: row.try_get("email")?,
                    subject: row.try_get("subject")?,
                    created_ms: row.try_get("created_ms")?,
                };
                // A session matched by both lists is listed once.
                if !live.iter().any(|s: &LiveSession| s.id == session.id) {
                    live.push(session);
                }
            }
        }
    }
    Ok(live)
}

/// Sets `ended_ms` and `end_reason` of each `(id, at, reason)`.
async fn end_sessions(tx: &mut Transaction<'static, Any>, updates: &[(String, Millis, &str)]) -> StoreResult<()> {
    for chunk in updates.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "UPDATE sessions SET ended_ms = v.column2, end_reason = v.column3 FROM (VALUES {}) AS v \
             WHERE sessions.id = v.column1",
            value_rows(chunk.len(), 3)
        );
        let mut update = sqlx::query(&sql);
        for (id, at, reason) in chunk {
            update = update.bind(id.as_str()).bind(*at).bind(*reason);
        }
        update.execute(&mut **tx).await?;
    }
    Ok(())
}
