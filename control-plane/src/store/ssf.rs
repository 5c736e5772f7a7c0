//! Shared Signals streams and their events. A stream's events are outbox
//! jobs (sink `ssf-push` or `ssf-poll`, target = the stream id), enqueued
//! in the transaction of the action they tell of; push jobs are delivered
//! by the outbox worker, poll jobs wait for the receiver to fetch and
//! acknowledge them (RFC 8936).

use async_trait::async_trait;
use serde_json::json;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::audit::insert_audit;
use super::outbox::{enqueue_in, job, NewJob, OutboxJob, JOB_COLUMNS};
use super::rows::{json_list, to_json};
use super::{SqlStore, StoreResult};
use crate::model::{Actor, Millis};
use crate::termination::Termination;

/// The outbox sink of push streams' events.
pub const SSF_PUSH: &str = "ssf-push";
/// The outbox sink of poll streams' events.
pub const SSF_POLL: &str = "ssf-poll";
/// An undelivered or unacknowledged event is given up after this long.
pub const SSF_DEADLINE_MS: Millis = 7 * 86_400_000;

/// A stream as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsfStream {
    /// Stream id.
    pub id: String,
    /// The actor (API token) that made it.
    pub owner: String,
    /// The `aud` of its SETs.
    pub audience: String,
    /// `push` or `poll`.
    pub method: String,
    /// Push: where SETs are posted.
    pub endpoint_url: Option<String>,
    /// Push: the receiver's Authorization header, sealed.
    pub authorization_sealed: Option<String>,
    /// Event types the receiver asked for.
    pub events_requested: Vec<String>,
    /// Of those, the ones this transmitter sends.
    pub events_delivered: Vec<String>,
    /// The receiver's description.
    pub description: Option<String>,
    /// `enabled`, `paused` or `disabled`.
    pub status: String,
    /// Why the status was set.
    pub status_reason: Option<String>,
    /// Created.
    pub created_ms: Millis,
    /// Last changed.
    pub updated_ms: Millis,
}

const STREAM_COLUMNS: &str = "id, owner, audience, method, endpoint_url, authorization_sealed, events_requested, \
     events_delivered, description, status, status_reason, created_ms, updated_ms";

fn stream(row: &AnyRow) -> StoreResult<SsfStream> {
    Ok(SsfStream {
        id: row.try_get("id")?,
        owner: row.try_get("owner")?,
        audience: row.try_get("audience")?,
        method: row.try_get("method")?,
        endpoint_url: row.try_get("endpoint_url")?,
        authorization_sealed: row.try_get("authorization_sealed")?,
        events_requested: json_list(&row.try_get::<String, _>("events_requested")?)?,
        events_delivered: json_list(&row.try_get::<String, _>("events_delivered")?)?,
        description: row.try_get("description")?,
        status: row.try_get("status")?,
        status_reason: row.try_get("status_reason")?,
        created_ms: row.try_get("created_ms")?,
        updated_ms: row.try_get("updated_ms")?,
    })
}

/// The outbox sink of a stream's events.
fn sink_of(method: &str) -> &'static str {
    if method == "push" {
        SSF_PUSH
    } else {
        SSF_POLL
    }
}

/// SSF streams.
#[async_trait]
pub trait SsfStore: Send + Sync {
    /// Stores a new stream.
    async fn create_ssf_stream(&self, stream: &SsfStream, actor: &Actor, now: Millis) -> StoreResult<()>;
    /// One stream.
    async fn ssf_stream(&self, id: &str) -> StoreResult<Option<SsfStream>>;
    /// Streams, of one owner or all.
    async fn ssf_streams(&self, owner: Option<&str>) -> StoreResult<Vec<SsfStream>>;
    /// Replaces a stream's settings (not its id, owner or creation time).
    async fn update_ssf_stream(&self, stream: &SsfStream, actor: &Actor, now: Millis) -> StoreResult<bool>;
    /// Deletes a stream; its undelivered events die with it.
    async fn delete_ssf_stream(&self, id: &str, actor: &Actor, now: Millis) -> StoreResult<bool>;
    /// Enqueues a verification event for the stream; returns its `jti`, or
    /// `None` when one is still undelivered (or unacknowledged): a stream
    /// has one verification in flight at a time.
    async fn enqueue_ssf_verification(
        &self,
        stream: &SsfStream,
        state: Option<&str>,
        now: Millis,
    ) -> StoreResult<Option<String>>;
    /// Up to `max` unacknowledged events of a poll stream, oldest first.
    async fn ssf_poll(&self, stream_id: &str, max: u32) -> StoreResult<(Vec<OutboxJob>, bool)>;
    /// Acknowledges (`acks`) or records the receiver's errors on (`errors`:
    /// jti, error) events of a poll stream; unknown jtis are ignored.
    async fn ssf_acknowledge(
        &self,
        stream_id: &str,
        acks: &[String],
        errors: &[(String, String)],
        now: Millis,
    ) -> StoreResult<()>;
}

impl SqlStore {
    /// Enqueues, in `tx`, one event per enabled or paused stream and event
    /// type it receives that tells of `termination`; true when any was.
    pub(crate) async fn enqueue_ssf_events(
        tx: &mut Transaction<'static, Any>,
        terminations: &[(Termination, u64)],
    ) -> StoreResult<bool> {
        let streams =
            sqlx::query(&format!("SELECT {STREAM_COLUMNS} FROM ssf_streams WHERE status IN ('enabled', 'paused')"))
                .fetch_all(&mut **tx)
                .await?;
        let streams = streams.iter().map(stream).collect::<StoreResult<Vec<_>>>()?;
        let mut enqueued = false;
        for (termination, seq) in terminations {
            let mut jobs = Vec::new();
            for stream in &streams {
                for event_type in termination.action.ssf_event_types() {
                    if stream.events_delivered.iter().any(|e| e == event_type) {
                        jobs.push(NewJob {
                            sink: sink_of(&stream.method).to_owned(),
                            target: Some(stream.id.clone()),
                            event: json!({ "event_type": event_type, "termination": termination }).to_string(),
                            user_key: Some(termination.user.clone()),
                            deadline_ms: SSF_DEADLINE_MS,
                        });
                    }
                }
            }
            enqueue_in(tx, &jobs, Some(*seq), termination.at_ms).await?;
            enqueued |= !jobs.is_empty();
        }
        Ok(enqueued)
    }
}

#[async_trait]
impl SsfStore for SqlStore {
    async fn create_ssf_stream(&self, s: &SsfStream, actor: &Actor, now: Millis) -> StoreResult<()> {
        let mut tx = self.writer.begin().await?;
        sqlx::query(&format!(
            "INSERT INTO ssf_streams ({STREAM_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        ))
        .bind(&s.id)
        .bind(&s.owner)
        .bind(&s.audience)
        .bind(&s.method)
        .bind(&s.endpoint_url)
        .bind(&s.authorization_sealed)
        .bind(to_json(&s.events_requested))
        .bind(to_json(&s.events_delivered))
        .bind(&s.description)
        .bind(&s.status)
        .bind(&s.status_reason)
        .bind(s.created_ms)
        .bind(s.updated_ms)
        .execute(&mut *tx)
        .await?;
        let reason = format!("{} delivery, events {}", s.method, s.events_delivered.join(" "));
        insert_audit(&mut tx, "ssf.stream.create", &format!("stream:{}", s.id), &reason, actor, now, None).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn ssf_stream(&self, id: &str) -> StoreResult<Option<SsfStream>> {
        let row = sqlx::query(&format!("SELECT {STREAM_COLUMNS} FROM ssf_streams WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.writer)
            .await?;
        row.as_ref().map(stream).transpose()
    }

    async fn ssf_streams(&self, owner: Option<&str>) -> StoreResult<Vec<SsfStream>> {
        let rows = sqlx::query(&format!(
            "SELECT {STREAM_COLUMNS} FROM ssf_streams WHERE ($1 IS NULL OR owner = $1) ORDER BY created_ms, id"
        ))
        .bind(owner)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(stream).collect()
    }

    async fn update_ssf_stream(&self, s: &SsfStream, actor: &Actor, now: Millis) -> StoreResult<bool> {
        let mut tx = self.writer.begin().await?;
        let updated = sqlx::query(
            "UPDATE ssf_streams SET method = $1, endpoint_url = $2, authorization_sealed = $3, events_requested = $4, \
             events_delivered = $5, description = $6, status = $7, status_reason = $8, updated_ms = $9 WHERE id = $10",
        )
        .bind(&s.method)
        .bind(&s.endpoint_url)
        .bind(&s.authorization_sealed)
        .bind(to_json(&s.events_requested))
        .bind(to_json(&s.events_delivered))
        .bind(&s.description)
        .bind(&s.status)
        .bind(&s.status_reason)
        .bind(now)
        .bind(&s.id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if updated {
            let reason = format!("{} {} delivery, events {}", s.status, s.method, s.events_delivered.join(" "));
            insert_audit(&mut tx, "ssf.stream.update", &format!("stream:{}", s.id), &reason, actor, now, None).await?;
        }
        tx.commit().await?;
        Ok(updated)
    }

    async fn delete_ssf_stream(&self, id: &str, actor: &Actor, now: Millis) -> StoreResult<bool> {
        let mut tx = self.writer.begin().await?;
        let deleted = sqlx::query("DELETE FROM ssf_streams WHERE id = $1").bind(id).execute(&mut *tx).await?;
        if deleted.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query(
            "UPDATE outbox SET state = 'dead', last_error = 'the stream was deleted', finished_ms = $1, updated_ms = $1, \
             lease_token = NULL, lease_until_ms = NULL \
             WHERE sink IN ($2, $3) AND target = $4 AND state = 'pending'",
        )
        .bind(now)
        .bind(SSF_PUSH)
        .bind(SSF_POLL)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        insert_audit(&mut tx, "ssf.stream.delete", &format!("stream:{id}"), "deleted", actor, now, None).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn enqueue_ssf_verification(
        &self,
        s: &SsfStream,
        state: Option<&str>,
        now: Millis,
    ) -> StoreResult<Option<String>> {
        let mut tx = self.writer.begin().await?;
        // Verification jobs are the stream's jobs of no change (`seq`).
        let waiting: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM outbox WHERE sink IN ($1, $2) AND target = $3 AND seq IS NULL AND state = 'pending'",
        )
        .bind(SSF_PUSH)
        .bind(SSF_POLL)
        .bind(&s.id)
        .fetch_one(&mut *tx)
        .await?;
        if waiting > 0 {
            return Ok(None);
        }
        let event = json!({ "event_type": crate::termination::SSF_VERIFICATION, "state": state }).to_string();
        let new = NewJob {
            sink: sink_of(&s.method).to_owned(),
            target: Some(s.id.clone()),
            event,
            user_key: None,
            deadline_ms: SSF_DEADLINE_MS,
        };
        enqueue_in(&mut tx, std::slice::from_ref(&new), None, now).await?;
        let jti: String = sqlx::query_scalar(
            "SELECT id FROM outbox WHERE sink = $1 AND target = $2 AND created_ms = $3 AND seq IS NULL \
             AND state = 'pending'",
        )
        .bind(&new.sink)
        .bind(&s.id)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        self.outbox.wake();
        Ok(Some(jti))
    }

    async fn ssf_poll(&self, stream_id: &str, max: u32) -> StoreResult<(Vec<OutboxJob>, bool)> {
        let rows = sqlx::query(&format!(
            "SELECT {JOB_COLUMNS} FROM outbox WHERE sink = $1 AND target = $2 AND state = 'pending' \
             ORDER BY created_ms, id LIMIT $3"
        ))
        .bind(SSF_POLL)
        .bind(stream_id)
        .bind(i64::from(max) + 1)
        .fetch_all(&self.writer)
        .await?;
        let mut jobs = rows.iter().map(job).collect::<StoreResult<Vec<_>>>()?;
        let more = jobs.len() > max as usize;
        jobs.truncate(max as usize);
        Ok((jobs, more))
    }

    async fn ssf_acknowledge(
        &self,
        stream_id: &str,
        acks: &[String],
        errors: &[(String, String)],
        now: Millis,
    ) -> StoreResult<()> {
        let mut tx = self.writer.begin().await?;
        let outcomes = acks
            .iter()
            .map(|jti| (jti, "applied", None, Some("acknowledged by the receiver")))
            .chain(errors.iter().map(|(jti, error)| (jti, "failed", Some(error.as_str()), None)));
        for (jti, state, error, detail) in outcomes {
            sqlx::query(
                "UPDATE outbox SET state = $1, last_error = COALESCE($2, last_error), detail = $3, finished_ms = $4, \
                 updated_ms = $4, attempts = attempts + 1 WHERE id = $5 AND sink = $6 AND target = $7 AND state = 'pending'",
            )
            .bind(state)
            .bind(error)
            .bind(detail)
            .bind(now)
            .bind(jti)
            .bind(SSF_POLL)
            .bind(stream_id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
