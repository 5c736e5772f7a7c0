//! Group commit for session terminations: concurrent terminate calls are
//! gathered into one transaction, so a burst pays one durable commit instead
//! of one per session. Each termination keeps its own change-log sequence
//! and audit row, in arrival order, and each caller is answered only after
//! the commit that contains its termination — durability is unchanged. A
//! lone call is committed at once: batching never waits for company.

use std::sync::{Arc, OnceLock};

use sqlx::{Any, Row, Transaction};
use tokio::sync::{mpsc, oneshot};

use portcullis_policy::UserRef;

use super::sessions::{end_session_in, EndedSession};
use super::users::{demand_reauthentication, user_key};
use super::{SqlStore, StoreError, StoreResult};
use crate::model::{Actor, Millis};
use crate::termination::Action;

/// Most terminations committed together.
const MAX_BATCH: usize = 128;

/// Who ended a session, which decides whether its user must sign in again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EndedBy {
    /// An admin (or a signal): the user's next login must be a new sign-in
    /// at the IdP (`users.reauth_after_ms`).
    Admin,
    /// The user logged out.
    Logout,
}

struct Termination {
    by: EndedBy,
    id: String,
    reason: String,
    actor: Actor,
    now: Millis,
    answer: oneshot::Sender<StoreResult<Option<u64>>>,
}

/// The queue in front of the committing task (started on first use).
#[derive(Clone, Default)]
pub(crate) struct TerminationQueue(Arc<OnceLock<mpsc::UnboundedSender<Termination>>>);

impl SqlStore {
    /// Terminates one session through the group commit.
    pub(crate) async fn terminate_grouped(
        &self,
        id: &str,
        reason: &str,
        actor: &Actor,
        now: Millis,
        by: EndedBy,
    ) -> StoreResult<Option<u64>> {
        let queue = self.terminations.0.get_or_init(|| {
            let (sender, receiver) = mpsc::unbounded_channel();
            tokio::spawn(commit_loop(self.clone(), receiver));
            sender
        });
        let (answer, answered) = oneshot::channel();
        let termination =
            Termination { by, id: id.to_owned(), reason: reason.to_owned(), actor: actor.clone(), now, answer };
        queue.send(termination).map_err(|_| StoreError::NotCommitted("the termination queue is closed".into()))?;
        answered.await.map_err(|_| StoreError::NotCommitted("the termination was dropped before its commit".into()))?
    }
}

async fn commit_loop(store: SqlStore, mut queue: mpsc::UnboundedReceiver<Termination>) {
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        match commit(&store, &batch).await {
            Ok(results) => {
                for (termination, result) in batch.into_iter().zip(results) {
                    let _ = termination.answer.send(result);
                }
            }
            Err(error) => {
                tracing::error!(%error, terminations = batch.len(), "a group of terminations failed to commit");
                let message = error.to_string();
                for termination in batch {
                    let _ = termination.answer.send(Err(StoreError::NotCommitted(message.clone())));
                }
            }
        }
    }
}

/// One transaction for the whole batch; per-call outcomes (ended, already
/// ended, unknown) are returned, database failures fail the batch.
async fn commit(store: &SqlStore, batch: &[Termination]) -> StoreResult<Vec<StoreResult<Option<u64>>>> {
    let mut tx = store.begin_change().await?;
    let mut results = Vec::with_capacity(batch.len());
    let mut enqueued = false;
    for termination in batch {
        let t = termination;
        let (result, jobs) = terminate_in(&mut tx, store, (&t.id, &t.reason, &t.actor, t.now, t.by)).await?;
        results.push(result);
        enqueued |= jobs;
    }
    let newest = results.iter().filter_map(|r| r.as_ref().ok().copied().flatten()).max();
    store.commit_change(tx, newest).await?;
    if enqueued {
        store.outbox.wake();
    }
    Ok(results)
}

/// The parts of one termination: session id, reason, actor, when, by whom.
pub(crate) type TerminationParts<'a> = (&'a str, &'a str, &'a Actor, Millis, EndedBy);

/// One termination in a change's transaction (the batch's, or a signal's):
/// its outcome, and whether it enqueued outbox jobs (an admin's
/// termination signs the user out of the relying parties that follow
/// `terminate_session`).
pub(crate) async fn terminate_in(
    tx: &mut Transaction<'static, Any>,
    store: &SqlStore,
    (id, reason, actor, now, by): TerminationParts<'_>,
) -> StoreResult<(StoreResult<Option<u64>>, bool)> {
    let Some(row) = sqlx::query("SELECT ended_ms, expires_ms, email, subject FROM sessions WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?
    else {
        return Ok((Err(StoreError::NotFound), false));
    };
    if row.try_get::<Option<i64>, _>("ended_ms")?.is_some() {
        return Ok((Ok(None), false));
    }
    if id.parse::<portcullis_policy::SessionId>().is_err() {
        return Ok((Err(StoreError::Corrupt(format!("session id {id}"))), false));
    }
    let (email, subject): (String, String) = (row.try_get("email")?, row.try_get("subject")?);
    if by == EndedBy::Admin {
        demand_reauthentication(tx, &UserRef::email(&email), now).await?;
    }
    let ended = EndedSession { id, expires_ms: row.try_get("expires_ms")?, reason, email: &email, subject: &subject };
    let seq = end_session_in(tx, store.backend, &ended, "session.terminate", actor, now).await?;
    let mut enqueued = false;
    if by == EndedBy::Admin {
        let event = crate::termination::Termination {
            action: Action::TerminateSession,
            user: user_key(&UserRef::email(&email)),
            email: Some(email),
            session_id: Some(id.to_owned()),
            reason: reason.to_owned(),
            at_ms: now,
        };
        enqueued = store.enqueue_termination(tx, &event, seq).await?;
    }
    Ok((Ok(Some(seq)), enqueued))
}
