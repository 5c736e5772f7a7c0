//! `GET /edge/v1/stream?nonce=HEX&since=SEQ`: a full snapshot when `since`
//! is absent or older than the retained change log, then every delta in
//! order, and a heartbeat every second. Frames are a 4-byte big-endian
//! length followed by a signed frame (`portcullis_policy::signed_frame`):
//! the versioned wire message, bound to the edge's nonce, its `since` and
//! the frame's place in the stream, signed with the stream key. The nonce is
//! required: without it a frame could be replayed into another stream.
//!
//! `GET /edge/v1/stream-key`: the public stream key, for edges that do not
//! pin one in their configuration.
//!
//! The stream of an edge that is revoked ends at once (the connection is
//! aborted), on whichever replica serves it.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use portcullis_policy::edge_channel::{frame_header, StreamQuery, FRAME_HEADER_BYTES};
use portcullis_policy::signed_frame::{FrameSigner, StreamBinding, StreamNonce};
use portcullis_policy::stream_key::PublishedStreamKey;
use portcullis_policy::wire::{encode, Message};

use super::{EdgeCaller, RevokedSet};
use crate::app::App;
use crate::error::ApiError;
use crate::http::ApiQuery;
use crate::model::now_ms;
use crate::store::ChangeStore;

/// Heartbeat period.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// Deltas read from the store at once.
const BATCH: u32 = 512;

/// The next frame: length prefix, then `message` sealed by `signer`.
fn frame(signer: &mut FrameSigner, message: &[u8]) -> Bytes {
    let mut out = vec![0; FRAME_HEADER_BYTES];
    signer.seal_into(message, &mut out);
    let header = frame_header(out.len() - FRAME_HEADER_BYTES);
    out[..FRAME_HEADER_BYTES].copy_from_slice(&header);
    Bytes::from(out)
}

/// Serves the public stream key to edges.
pub async fn stream_key(State(app): State<Arc<App>>, _edge: EdgeCaller) -> axum::Json<PublishedStreamKey> {
    axum::Json(PublishedStreamKey::of(&app.stream_key.public_key()))
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
    signer: FrameSigner,
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
    let nonce = query
        .nonce
        .as_deref()
        .ok_or_else(|| ApiError::bad_request("send `nonce`: 32 hex digits drawn for this stream"))?
        .parse::<StreamNonce>()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let mut signer = FrameSigner::new(&app.stream_key, StreamBinding { nonce, since: query.since });
    let mut pending = std::collections::VecDeque::new();
    let after = if needs_snapshot(&*app.store, query.since).await? {
        let body = app.store.snapshot_body(now_ms()).await?;
        let seq = body.seq;
        app.feed.recent.saw_head(seq);
        pending.push_back(frame(&mut signer, &encode(&Message::Snapshot(body))));
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
        signer,
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
            // Read only when this replica knows of changes past the stream's
            // position (its own commits, `NOTIFY`, the poll every second).
            if *state.head.borrow_and_update() > state.after {
                let changes = match state.app.feed.recent.after(&*state.app.store, state.after, BATCH).await {
                    Ok(changes) => changes,
                    Err(error) => {
                        tracing::warn!(%error, "edge stream cannot read the change log; closing it");
                        return None;
                    }
                };
                if let Some((last, _)) = changes.last() {
                    state.after = *last;
                    for (_, delta) in &changes {
                        let sealed = frame(&mut state.signer, delta);
                        state.pending.push_back(sealed);
                    }
                    continue;
                }
            }
            state.app.metrics.head_seq.set(state.after as i64);
            let woke = tokio::select! {
                woke = tokio::time::timeout(HEARTBEAT, state.head.changed()) => woke.map(drop),
                _ = state.revoked.changed() => continue,
            };
            if woke.is_err() {
                let beat = Message::Heartbeat { head_seq: state.after, sent_at_ms: now_ms() };
                let sealed = frame(&mut state.signer, &encode(&beat));
                state.pending.push_back(sealed);
            }
        }
    });
    Ok(([(header::CONTENT_TYPE, "application/vnd.portcullis.stream")], Body::from_stream(body)).into_response())
}
