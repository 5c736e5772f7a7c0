//! `GET /edge/v1/stream?since=SEQ`: a full snapshot when `since` is absent or
//! older than the retained change log, then every delta in order, and a
//! heartbeat every second. Frames are a 4-byte big-endian length followed by
//! a versioned wire message. The stream of an edge that is revoked ends at
//! once (the connection is aborted), on whichever replica serves it.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use portcullis_policy::wire::{encode, Message};
use serde::Deserialize;

use super::{EdgeCaller, RevokedSet};
use crate::api::ApiQuery;
use crate::app::App;
use crate::error::ApiError;
use crate::model::now_ms;
use crate::store::ChangeStore;

/// Heartbeat period.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// Deltas read from the store at once.
const BATCH: u32 = 512;

/// Stream parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    /// The last sequence the edge applied; absent for a full snapshot.
    pub since: Option<u64>,
}

fn frame(payload: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(payload.len() + super::FRAME_HEADER_BYTES);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    Bytes::from(out)
}

/// Where the stream starts: whether a full snapshot is needed first.
async fn needs_snapshot(store: &dyn ChangeStore, since: Option<u64>) -> Result<bool, ApiError> {
    let Some(since) = since else { return Ok(true) };
    let head = store.head_seq().await?;
    if since > head {
        // The edge is ahead of this database (restored backup?): start over.
        return Ok(true);
    }
    Ok(match store.oldest_retained_seq().await? {
        Some(oldest) => since + 1 < oldest,
        None => since < head,
    })
}

struct StreamState {
    app: Arc<App>,
    edge_id: String,
    revoked: tokio::sync::watch::Receiver<RevokedSet>,
    cut: bool,
    after: u64,
    head: tokio::sync::watch::Receiver<u64>,
    pending: std::collections::VecDeque<Bytes>,
    _guard: StreamGauge,
}

struct StreamGauge(Arc<App>);

impl Drop for StreamGauge {
    fn drop(&mut self) {
        self.0.metrics.streams.dec();
    }
}

/// Opens the stream.
pub async fn stream(
    State(app): State<Arc<App>>,
    edge: EdgeCaller,
    ApiQuery(query): ApiQuery<StreamQuery>,
) -> Result<Response, ApiError> {
    let mut pending = std::collections::VecDeque::new();
    let after = if needs_snapshot(&*app.store, query.since).await? {
        let body = app.store.snapshot_body(now_ms()).await?;
        let seq = body.seq;
        pending.push_back(frame(&encode(&Message::Snapshot(body))));
        seq
    } else {
        query.since.unwrap_or_default()
    };
    tracing::info!(edge = %edge.id, since = ?query.since, from = after, "edge stream opened");
    app.metrics.streams.inc();
    let state = StreamState {
        head: app.feed.subscribe(),
        revoked: app.edge_trust.watch_revoked(),
        edge_id: edge.id,
        cut: false,
        _guard: StreamGauge(Arc::clone(&app)),
        app,
        after,
        pending,
    };
    let body = futures_util::stream::unfold(state, |mut state| async move {
        loop {
            if state.cut {
                return None;
            }
            if state.revoked.borrow_and_update().contains(&state.edge_id) {
                // An error, not an end: the connection is aborted, not finished.
                state.cut = true;
                state.app.metrics.streams_cut.with_label_values(&["revoked"]).inc();
                tracing::warn!(edge = %state.edge_id, "edge stream cut: the edge was revoked");
                let error = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "edge revoked");
                return Some((Err(error), state));
            }
            if let Some(bytes) = state.pending.pop_front() {
                return Some((Ok::<_, std::io::Error>(bytes), state));
            }
            let changes = match state.app.store.changes_after(state.after, BATCH).await {
                Ok(changes) => changes,
                Err(error) => {
                    tracing::warn!(%error, "edge stream cannot read the change log; closing it");
                    return None;
                }
            };
            if let Some((last, _)) = changes.last() {
                state.after = *last;
                state.pending.extend(changes.iter().map(|(_, delta)| frame(delta)));
                continue;
            }
            state.app.metrics.head_seq.set(state.after as i64);
            let woke = tokio::select! {
                woke = tokio::time::timeout(HEARTBEAT, state.head.changed()) => woke.map(drop),
                _ = state.revoked.changed() => continue,
            };
            if woke.is_err() {
                let beat = Message::Heartbeat { head_seq: state.after, sent_at_ms: now_ms() };
                state.pending.push_back(frame(&encode(&beat)));
            }
        }
    });
    Ok(([(header::CONTENT_TYPE, "application/vnd.portcullis.stream")], Body::from_stream(body)).into_response())
}
