//! Group commit for terminations: concurrent session terminations and
//! terminate-alls are gathered into one transaction, so a burst pays one
//! durable commit, and a fixed number of statements
//! (`termination_batch.rs`), instead of one commit per call. Each keeps its
//! own change-log sequence, audit row and outbox jobs, in arrival order, and
//! each caller is answered only after the commit that contains its
//! termination — durability is unchanged. A lone call is committed at once:
//! batching never waits for company.

use std::sync::{Arc, OnceLock};

use sqlx::{Any, Transaction};
use tokio::sync::{mpsc, oneshot};

use portcullis_policy::UserRef;

use super::termination_batch::{end_in, EndOutcome, EndRequest, Ending, SessionEnding, UserEnding};
use super::{SqlStore, StoreError, StoreResult};
use crate::model::{Actor, Millis};

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

struct Queued {
    request: EndRequest,
    answer: oneshot::Sender<StoreResult<EndOutcome>>,
}

/// The queue in front of the committing task (started on first use).
#[derive(Clone, Default)]
pub(crate) struct TerminationQueue(Arc<OnceLock<mpsc::UnboundedSender<Queued>>>);

impl SqlStore {
    /// Terminates one session through the group commit.
    pub(crate) async fn terminate_grouped(
        &self,
        id: &str,
        reason: &str,
        actor: &Actor,
        now: Millis,
        by: EndedBy,
    ) -> StoreResult<SessionEnding> {
        let ending = Ending::Session { id: id.to_owned(), by };
        match self.end_grouped(ending, reason, actor, now).await? {
            EndOutcome::Session(outcome) => outcome,
            EndOutcome::User(_) => Err(StoreError::Corrupt("a session termination answered as a user's".into())),
        }
    }

    /// Terminates every session of `user` through the group commit.
    pub(crate) async fn terminate_user_grouped(
        &self,
        user: &UserRef,
        reason: &str,
        actor: &Actor,
        now: Millis,
    ) -> StoreResult<UserEnding> {
        match self.end_grouped(Ending::User(user.clone()), reason, actor, now).await? {
            EndOutcome::User(ended) => Ok(ended),
            EndOutcome::Session(_) => Err(StoreError::Corrupt("a user termination answered as a session's".into())),
        }
    }

    async fn end_grouped(&self, ending: Ending, reason: &str, actor: &Actor, now: Millis) -> StoreResult<EndOutcome> {
        let queue = self.terminations.0.get_or_init(|| {
            let (sender, receiver) = mpsc::unbounded_channel();
            tokio::spawn(commit_loop(self.clone(), receiver));
            sender
        });
        let (answer, answered) = oneshot::channel();
        let request = EndRequest { ending, reason: reason.to_owned(), actor: actor.clone(), now };
        queue
            .send(Queued { request, answer })
            .map_err(|_| StoreError::NotCommitted("the termination queue is closed".into()))?;
        answered.await.map_err(|_| StoreError::NotCommitted("the termination was dropped before its commit".into()))?
    }
}

/// The next batch of a group commit: waits for one entry, then takes
/// whatever else is already queued, up to `max` in all (never waits for
/// company); `None` once the queue is closed and empty.
pub(super) async fn next_batch<T>(queue: &mut mpsc::UnboundedReceiver<T>, max: usize) -> Option<Vec<T>> {
    let mut batch = vec![queue.recv().await?];
    while batch.len() < max {
        match queue.try_recv() {
            Ok(next) => batch.push(next),
            Err(_) => break,
        }
    }
    Some(batch)
}

async fn commit_loop(store: SqlStore, mut queue: mpsc::UnboundedReceiver<Queued>) {
    while let Some(batch) = next_batch(&mut queue, MAX_BATCH).await {
        let (requests, answers): (Vec<EndRequest>, Vec<_>) = batch.into_iter().map(|q| (q.request, q.answer)).unzip();
        match commit(&store, &requests).await {
            Ok(outcomes) => {
                for (answer, outcome) in answers.into_iter().zip(outcomes) {
                    let _ = answer.send(Ok(outcome));
                }
            }
            Err(error) => {
                tracing::error!(%error, terminations = requests.len(), "a group of terminations failed to commit");
                let message = error.to_string();
                for answer in answers {
                    let _ = answer.send(Err(StoreError::NotCommitted(message.clone())));
                }
            }
        }
    }
}

/// One transaction for the whole batch; per-call outcomes (ended, already
/// ended, unknown) are returned, database failures fail the batch.
async fn commit(store: &SqlStore, requests: &[EndRequest]) -> StoreResult<Vec<EndOutcome>> {
    let mut tx = store.begin_change().await?;
    let ended = end_in(&mut tx, store, requests).await?;
    store.commit_change(tx, ended.newest).await?;
    if ended.enqueued {
        store.outbox.wake();
    }
    Ok(ended.outcomes)
}

/// The parts of one termination: session id, reason, actor, when, by whom.
pub(crate) type TerminationParts<'a> = (&'a str, &'a str, &'a Actor, Millis, EndedBy);

/// One session termination in a change's transaction (a signal's): its
/// outcome, and whether it enqueued outbox jobs (an admin's termination
/// signs the user out of the relying parties that follow
/// `terminate_session`).
pub(crate) async fn terminate_in(
    tx: &mut Transaction<'static, Any>,
    store: &SqlStore,
    (id, reason, actor, now, by): TerminationParts<'_>,
) -> StoreResult<(StoreResult<Option<u64>>, bool)> {
    let request = EndRequest {
        ending: Ending::Session { id: id.to_owned(), by },
        reason: reason.to_owned(),
        actor: actor.clone(),
        now,
    };
    let ended = end_in(tx, store, std::slice::from_ref(&request)).await?;
    let outcome = match ended.outcomes.into_iter().next() {
        Some(EndOutcome::Session(outcome)) => outcome.map(|e| e.seq),
        _ => Err(StoreError::Corrupt("a session termination without its outcome".into())),
    };
    Ok((outcome, ended.enqueued))
}
