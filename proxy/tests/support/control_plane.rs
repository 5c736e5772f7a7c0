//! A stand-in for the control plane's edge channel, a test double of
//! `control-plane/src/edge_channel/` (`enroll.rs`, `stream.rs`, and `report`
//! in `mod.rs`) speaking the same contract, `portcullis_policy::edge_channel`
//! (paths, bodies, frames), and decoding the edge's bodies as strictly:
//!
//! - `POST /edge/v1/enroll` with the bootstrap secret as bearer and an
//!   `EnrollBody`; answers an `EnrollAnswer`. `GET /edge/v1/fleet-key`
//!   answers a `FleetKeyAnswer` to an enrolled edge.
//! - Every other call must carry an ES256 assertion signed by the enrolled
//!   key for audience `portcullis-edge-channel` (else 401, as the real one).
//! - `GET /edge/v1/stream?nonce=HEX&since=N`: frames of a 4-byte big-endian
//!   length and a signed frame bound to that nonce, `since` and a counter
//!   (`FrameSigner`); the snapshot and every delta after it when `since` is
//!   absent or unknown, else only the deltas after `since`; then what the
//!   test pushes, and a heartbeat every second.
//! - `POST /edge/v1/report`: a `ReportBody`, recorded with the status
//!   answered (204, or 503 when the test asked for a refusal).
//!
//! The edge is configured with this stand-in's stream key
//! (`stream_public_key`), so `GET /edge/v1/stream-key` is never asked.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use p256::pkcs8::{DecodePublicKey, EncodePublicKey};
use portcullis_edge::clock::unix_now_ms;
use portcullis_policy::edge_channel::{
    frame_header, EnrollAnswer, EnrollBody, ErrorAnswer, ErrorDetail, FleetKeyAnswer, ReportBody, StreamQuery,
    EDGE_CHANNEL_AUDIENCE, ENROLL_PATH, FLEET_KEY_PATH, MAX_ASSERTION_LIFETIME_S, REPORT_PATH, STREAM_PATH,
};
use portcullis_policy::signed_frame::{FrameSigner, StreamBinding, StreamNonce};
use portcullis_policy::snapshot::Change;
use portcullis_policy::stream_key::{StreamPublicKey, StreamSigningKey};
use portcullis_policy::wire::{encode, Message, SnapshotBody};
use portcullis_policy::Delta;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

/// The bootstrap secret the edge enrolls with.
pub const EDGE_SECRET: &str = "kill-path-bootstrap-secret-0123456789";

type Chunk = Result<Bytes, std::io::Error>;

/// One stream an edge opened, as the stand-in saw and served it.
#[derive(Clone, Debug)]
pub struct Stream {
    /// The `since` the edge asked for.
    pub since: Option<u64>,
    /// The edge's nonce, as sent.
    pub nonce: String,
    /// Every snapshot and delta sent on it, in order (heartbeats left out).
    pub sent: Vec<Message>,
    /// Every frame payload sent on it, heartbeats included, for replays.
    pub frames: Vec<Vec<u8>>,
    /// Still open.
    pub open: bool,
}

/// One report the edge posted.
#[derive(Clone, Debug)]
pub struct Report {
    /// What the stand-in answered.
    pub status: u16,
    /// The body as posted.
    pub body: ReportBody,
}

impl Report {
    /// Its `closed` entries: (seq, connections).
    pub fn closed(&self) -> Vec<(u64, i64)> {
        self.body.closed.iter().map(|c| (c.seq, c.connections)).collect()
    }
}

struct Open {
    signer: FrameSigner,
    tx: mpsc::UnboundedSender<Chunk>,
}

#[derive(Default)]
struct Ledger {
    snapshot: Option<SnapshotBody>,
    deltas: Vec<Delta>,
    streams: Vec<(Stream, Option<Open>)>,
    reports: Vec<Report>,
    refuse_closing_reports: usize,
    enrolled_key: Option<String>,
    fleet_key: String,
}

impl Ledger {
    fn head(&self) -> u64 {
        self.deltas.last().map_or_else(|| self.snapshot.as_ref().map_or(0, |s| s.seq), |d| d.seq)
    }

    /// Signs `message` onto open stream `index`; false when it is closed.
    fn send(&mut self, index: usize, message: &Message) -> bool {
        let (stream, open) = &mut self.streams[index];
        let Some(Open { signer, tx }) = open else { return false };
        let payload = signer.seal(&encode(message));
        if tx.send(Ok(framed(&payload))).is_err() {
            *open = None;
            stream.open = false;
            return false;
        }
        if !matches!(message, Message::Heartbeat { .. }) {
            stream.sent.push(message.clone());
        }
        stream.frames.push(payload);
        true
    }

    fn open_streams(&self) -> Vec<usize> {
        (0..self.streams.len()).filter(|i| self.streams[*i].1.is_some()).collect()
    }
}

/// The running stand-in.
pub struct ControlPlane {
    /// Its base URL (the edge's `control_plane_url`).
    pub url: String,
    /// The public stream key the edge pins.
    pub stream_key: StreamPublicKey,
    shared: Arc<Shared>,
}

struct Shared {
    key: StreamSigningKey,
    state: Mutex<Ledger>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Ledger> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl ControlPlane {
    /// Serves on a free loopback port; new streams start with `snapshot`.
    pub async fn start(snapshot: SnapshotBody) -> Self {
        let key = StreamSigningKey::from_seed(rand::random());
        let stream_key = key.public_key();
        let fleet: [u8; 32] = rand::random();
        let state = Ledger {
            snapshot: Some(snapshot),
            fleet_key: base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, fleet),
            ..Ledger::default()
        };
        let shared = Arc::new(Shared { key, state: Mutex::new(state) });
        let app = Router::new()
            .route(ENROLL_PATH, post(enroll))
            .route(FLEET_KEY_PATH, get(fleet_key))
            .route(STREAM_PATH, get(stream))
            .route(REPORT_PATH, post(report))
            .with_state(Arc::clone(&shared));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the stand-in");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        tokio::spawn(async move { axum::serve(listener, app).await.expect("serve the stand-in") });
        tokio::spawn(heartbeats(Arc::downgrade(&shared)));
        Self { url, stream_key, shared }
    }

    /// Appends the next change to the log and sends it on every open stream; its sequence.
    pub fn push(&self, change: Change) -> u64 {
        let mut state = self.shared.lock();
        let delta = Delta { seq: state.head() + 1, change };
        state.deltas.push(delta.clone());
        for index in state.open_streams() {
            state.send(index, &Message::Delta(delta.clone()));
        }
        delta.seq
    }

    /// Signs `message` onto every open stream as its next frame, without
    /// putting it in the log (what a confused or replaying sender does).
    pub fn send(&self, message: &Message) {
        let mut state = self.shared.lock();
        for index in state.open_streams() {
            state.send(index, message);
        }
    }

    /// Sends frame `frame` of open stream `stream` again, byte for byte.
    pub fn resend_frame(&self, stream: usize, frame: usize) {
        let mut state = self.shared.lock();
        let (seen, open) = &mut state.streams[stream];
        let payload = seen.frames[frame].clone();
        let open = open.as_ref().expect("the stream is open");
        let _ = open.tx.send(Ok(framed(&payload)));
    }

    /// Aborts every open stream (the connection breaks mid-body).
    pub fn drop_streams(&self) {
        let mut state = self.shared.lock();
        for (stream, open) in &mut state.streams {
            if let Some(open) = open.take() {
                let _ = open.tx.send(Err(std::io::Error::other("the stand-in dropped the stream")));
                stream.open = false;
            }
        }
    }

    /// Answers 503 to the next `count` reports that carry `closed` entries.
    pub fn refuse_closing_reports(&self, count: usize) {
        self.shared.lock().refuse_closing_reports = count;
    }

    /// The streams opened so far.
    pub fn streams(&self) -> Vec<Stream> {
        self.shared.lock().streams.iter().map(|(s, _)| s.clone()).collect()
    }

    /// The reports posted so far.
    pub fn reports(&self) -> Vec<Report> {
        self.shared.lock().reports.clone()
    }
}

/// A heartbeat every second on every open stream, as the control plane sends.
async fn heartbeats(shared: std::sync::Weak<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let Some(shared) = shared.upgrade() else { return };
        let mut state = shared.lock();
        let beat = Message::Heartbeat { head_seq: state.head(), sent_at_ms: unix_now_ms() };
        for index in state.open_streams() {
            state.send(index, &beat);
        }
    }
}

/// A frame on the wire: its length prefix, then the signed frame.
fn framed(payload: &[u8]) -> Bytes {
    let mut framed = frame_header(payload.len()).to_vec();
    framed.extend_from_slice(payload);
    Bytes::from(framed)
}

/// An error answer, as the control plane's.
fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let answer = ErrorAnswer { error: ErrorDetail { code: code.into(), message: message.into() } };
    (status, Json(answer)).into_response()
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers.get("authorization")?.to_str().ok()?.strip_prefix("Bearer ")
}

/// Whether the call carries a valid assertion of the enrolled key.
fn authorized(shared: &Shared, headers: &HeaderMap) -> bool {
    let Some(pem) = shared.lock().enrolled_key.clone() else { return false };
    let (Some(token), Ok(key)) = (bearer(headers), jsonwebtoken::DecodingKey::from_ec_pem(pem.as_bytes())) else {
        return false;
    };
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_audience(&[EDGE_CHANNEL_AUDIENCE]);
    jsonwebtoken::decode::<Value>(token, &key, &validation).is_ok()
}

async fn enroll(State(shared): State<Arc<Shared>>, headers: HeaderMap, Json(body): Json<EnrollBody>) -> Response {
    if bearer(&headers) != Some(EDGE_SECRET) || body.edge_id.is_empty() {
        return error(StatusCode::UNAUTHORIZED, "unauthorized", "not the bootstrap secret");
    }
    let Ok(key) = p256::PublicKey::from_public_key_pem(body.public_key.trim()) else {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body", "not a P-256 public key in SPKI PEM");
    };
    let der = key.to_public_key_der().expect("a P-256 key encodes");
    let key_fingerprint = Sha256::digest(der.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    let mut state = shared.lock();
    state.enrolled_key = Some(body.public_key);
    Json(EnrollAnswer {
        name: body.name.unwrap_or_else(|| body.edge_id.clone()),
        edge_id: body.edge_id,
        key_fingerprint,
        audience: EDGE_CHANNEL_AUDIENCE.into(),
        max_assertion_lifetime_s: MAX_ASSERTION_LIFETIME_S,
        fleet_key: state.fleet_key.clone(),
    })
    .into_response()
}

async fn fleet_key(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if !authorized(&shared, &headers) {
        return error(StatusCode::UNAUTHORIZED, "unauthorized", "no valid assertion");
    }
    Json(FleetKeyAnswer { fleet_key: shared.lock().fleet_key.clone() }).into_response()
}

async fn stream(State(shared): State<Arc<Shared>>, headers: HeaderMap, Query(query): Query<StreamQuery>) -> Response {
    if !authorized(&shared, &headers) {
        return error(StatusCode::UNAUTHORIZED, "unauthorized", "no valid assertion");
    }
    let Some(Ok(nonce)) = query.nonce.as_deref().map(str::parse::<StreamNonce>) else {
        return error(StatusCode::BAD_REQUEST, "bad_request", "nonce: 32 hex digits");
    };
    let signer = FrameSigner::new(&shared.key, StreamBinding { nonce, since: query.since });
    let (tx, rx) = mpsc::unbounded_channel::<Chunk>();
    let mut state = shared.lock();
    let seen =
        Stream { since: query.since, nonce: query.nonce.unwrap_or_default(), sent: vec![], frames: vec![], open: true };
    state.streams.push((seen, Some(Open { signer, tx })));
    let index = state.streams.len() - 1;
    let base = state.snapshot.as_ref().map_or(0, |s| s.seq);
    let after = match query.since {
        Some(since) if since >= base && since <= state.head() => since,
        _ => {
            let snapshot = state.snapshot.clone().expect("a snapshot");
            state.send(index, &Message::Snapshot(snapshot));
            base
        }
    };
    let deltas: Vec<Delta> = state.deltas.iter().filter(|d| d.seq > after).cloned().collect();
    for delta in deltas {
        state.send(index, &Message::Delta(delta));
    }
    drop(state);
    let body = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|chunk| (chunk, rx)) });
    ([("content-type", "application/vnd.portcullis.stream")], Body::from_stream(body)).into_response()
}

async fn report(State(shared): State<Arc<Shared>>, headers: HeaderMap, Json(body): Json<ReportBody>) -> Response {
    if !authorized(&shared, &headers) {
        return error(StatusCode::UNAUTHORIZED, "unauthorized", "no valid assertion");
    }
    let mut state = shared.lock();
    let closing = !body.closed.is_empty();
    let refuse = closing && state.refuse_closing_reports > 0;
    let status = if refuse { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::NO_CONTENT };
    if refuse {
        state.refuse_closing_reports -= 1;
    }
    state.reports.push(Report { status: status.as_u16(), body });
    drop(state);
    if refuse {
        return error(status, "unavailable", "the database is unavailable");
    }
    status.into_response()
}
