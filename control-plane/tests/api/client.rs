//! An in-process HTTP client for the two routers: requests go through
//! `tower::ServiceExt::oneshot`, answers are buffered (or, for the edge
//! stream, read frame by frame), and every admin-API answer is checked to
//! come from a route the OpenAPI document lists.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, MatchedPath, Request};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use bytes::Bytes;
use http_body_util::BodyExt;
use portcullis_control_plane::api::ApiDoc;
use portcullis_policy::signed_frame::{FrameVerifier, StreamBinding, StreamNonce};
use portcullis_policy::stream_key::StreamPublicKey;
use portcullis_policy::wire::{decode, Message};
use serde_json::Value;
use tower::ServiceExt;
use utoipa::OpenApi;

use crate::edge_auth::TestEdges;

/// The client address every request appears to come from (audit `source_address`).
pub const CLIENT_IP: &str = "203.0.113.9";

/// The message of the admin router's fallback, for paths it does not serve.
pub const NO_SUCH_ENDPOINT: &str = "no such API endpoint";

/// The route (as the router matched it) that answered, copied into the response.
#[derive(Debug, Clone)]
struct AnsweredBy(String);

/// Middleware for the suite's routers: records the matched route on the answer.
pub async fn record_route(request: Request, next: Next) -> Response {
    let matched = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned());
    let mut response = next.run(request).await;
    if let Some(matched) = matched {
        response.extensions_mut().insert(AnsweredBy(matched));
    }
    response
}

/// `(method, path)` pairs of an OpenAPI document, methods lower case.
pub fn documented_routes(document: &Value) -> BTreeSet<(String, String)> {
    let paths = document["paths"].as_object().expect("the document has `paths`");
    paths
        .iter()
        .flat_map(|(path, item)| {
            let methods = item.as_object().expect("a path item is an object");
            methods
                .keys()
                .filter(|m| ["get", "put", "post", "delete", "patch", "head", "options", "trace"].contains(&m.as_str()))
                .map(move |m| (m.clone(), path.clone()))
        })
        .collect()
}

/// The routes of the OpenAPI document the control plane serves.
pub fn api_doc_routes() -> &'static BTreeSet<(String, String)> {
    static ROUTES: OnceLock<BTreeSet<(String, String)>> = OnceLock::new();
    ROUTES.get_or_init(|| {
        documented_routes(&serde_json::to_value(ApiDoc::openapi()).expect("the OpenAPI document serialises"))
    })
}

/// Which listener a request goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// Admin API, health and metrics.
    Admin,
    /// Edge channel.
    Edge,
}

/// A request being built.
pub struct Call {
    router: Router,
    listener: Listener,
    method: Method,
    uri: String,
    headers: HeaderMap,
    body: Vec<u8>,
    stream_key: Option<StreamPublicKey>,
    /// Sent with an assertion of this test edge (unless the test sets its own `Authorization`).
    edge: Option<(Arc<TestEdges>, String)>,
}

impl Call {
    /// A request without headers or body.
    pub fn new(router: Router, listener: Listener, method: Method, uri: &str) -> Self {
        let (uri, headers) = (uri.to_owned(), HeaderMap::new());
        Self { router, listener, method, uri, headers, body: Vec::new(), stream_key: None, edge: None }
    }

    /// The key [`Self::open`] verifies stream frames with.
    pub fn stream_key(mut self, key: StreamPublicKey) -> Self {
        self.stream_key = Some(key);
        self
    }

    /// Authenticated as test edge `id` of `edges` (enrolled on first use).
    pub fn signed_by_edge(mut self, edges: Arc<TestEdges>, id: &str) -> Self {
        self.edge = Some((edges, id.to_owned()));
        self
    }

    /// Sets (replaces) a header. `X-Portcullis-Edge-Id` on a test edge's call
    /// makes it that edge's call (the control plane itself ignores the header).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        if name.eq_ignore_ascii_case("authorization") {
            self.edge = None;
        }
        if name.eq_ignore_ascii_case("x-portcullis-edge-id") {
            if let Some((_, id)) = self.edge.as_mut() {
                value.clone_into(id);
            }
        }
        let name = HeaderName::from_bytes(name.as_bytes()).expect("valid header name");
        self.headers.insert(name, HeaderValue::from_bytes(value.as_bytes()).expect("valid header value"));
        self
    }

    /// `Authorization: Bearer <token>`.
    pub fn bearer(self, token: &str) -> Self {
        self.header("authorization", &format!("Bearer {token}"))
    }

    /// Without an `Authorization` header.
    pub fn no_auth(self) -> Self {
        self.without(header::AUTHORIZATION.as_str())
    }

    /// Without a header.
    pub fn without(mut self, name: &str) -> Self {
        if name.eq_ignore_ascii_case("authorization") {
            self.edge = None;
        }
        self.headers.remove(name);
        self
    }

    /// A JSON body.
    pub fn json(self, value: Value) -> Self {
        self.raw("application/json", serde_json::to_vec(&value).expect("JSON encodes"))
    }

    /// A body with its content type.
    pub fn raw(mut self, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self.header("content-type", content_type)
    }

    /// A YAML body (policy documents).
    pub fn yaml(self, document: &str) -> Self {
        self.raw("application/yaml", document)
    }

    async fn response(mut self) -> (Response, String) {
        if let Some((edges, id)) = self.edge.take() {
            let assertion = edges.assertion(&id).await;
            self = self.bearer(&assertion);
        }
        let what = format!("{} {}", self.method, self.uri);
        let mut request = Request::builder()
            .method(self.method)
            .uri(&self.uri)
            .body(Body::from(self.body))
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        *request.headers_mut() = self.headers;
        let address: SocketAddr = format!("{CLIENT_IP}:41000").parse().expect("valid address");
        request.extensions_mut().insert(ConnectInfo(address));
        let response = self.router.oneshot(request).await.unwrap_or_else(|e| match e {});
        (response, what)
    }

    /// Sends the request and buffers the answer.
    pub async fn send(self) -> Answer {
        let (listener, method) = (self.listener, self.method.clone());
        let (response, what) = self.response().await;
        let status = response.status();
        let headers = response.headers().clone();
        let route = response.extensions().get::<AnsweredBy>().map(|r| r.0.clone());
        let body = response.into_body().collect().await.unwrap_or_else(|e| panic!("{what}: body: {e}")).to_bytes();
        let answer = Answer { what, status, headers, body, route };
        if listener == Listener::Admin {
            answer.check_documented(&method);
        }
        answer
    }

    /// Opens the edge stream as an edge does, with a fresh nonce unless the
    /// URI has one; fails unless it answers 200. Every frame read is
    /// verified (signature, nonce, `since`, order) like an edge does.
    pub async fn open(mut self) -> EdgeStream {
        let key = self.stream_key.expect("an edge-channel call knows the stream key");
        let query: Vec<(String, String)> = self
            .uri
            .split_once('?')
            .map(|(_, q)| q.split('&').filter_map(|p| p.split_once('=')).map(|(k, v)| (k.into(), v.into())).collect())
            .unwrap_or_default();
        let value = |name: &str| query.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let nonce = match value("nonce") {
            Some(hex) => hex.parse().expect("a valid nonce in the URI"),
            None => {
                let nonce = StreamNonce(rand::random());
                self.uri.push(if self.uri.contains('?') { '&' } else { '?' });
                self.uri.push_str(&format!("nonce={nonce}"));
                nonce
            }
        };
        let since = value("since").map(|s| s.parse().expect("a numeric since"));
        let verifier = FrameVerifier::new(key, StreamBinding { nonce, since });
        let (response, what) = self.response().await;
        if response.status() != StatusCode::OK {
            let status = response.status();
            let body = response.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            panic!("{what}: expected 200, got {status}: {}", String::from_utf8_lossy(&body));
        }
        let content_type = response.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
        assert_eq!(content_type, Some("application/vnd.portcullis.stream"), "{what}");
        EdgeStream { body: response.into_body(), buffer: Vec::new(), verifier }
    }
}

/// A buffered answer.
#[derive(Debug)]
pub struct Answer {
    /// Method and URI, for messages.
    pub what: String,
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
    /// The route that answered, as the router matched it (absent for fallbacks).
    pub route: Option<String>,
}

impl Answer {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{}: body is not JSON ({e}): {}", self.what, self.text()))
    }

    /// Asserts the status; returns the JSON body (`null` when empty).
    #[track_caller]
    pub fn expect(&self, status: u16) -> Value {
        assert_eq!(self.status.as_u16(), status, "{}: unexpected status; body: {}", self.what, self.text());
        if self.body.is_empty() {
            Value::Null
        } else {
            self.json()
        }
    }

    /// Asserts 200 and returns the JSON body.
    #[track_caller]
    pub fn ok(&self) -> Value {
        self.expect(200)
    }

    /// Asserts an error answer: the status, a JSON content type and exactly
    /// `{"error": {"code": code, "message": non-empty}}`. Returns the message.
    #[track_caller]
    pub fn error(&self, status: u16, code: &str) -> String {
        let body = self.expect(status);
        let content_type = self.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
        assert!(content_type.starts_with("application/json"), "{}: error content type {content_type:?}", self.what);
        let outer = body.as_object().unwrap_or_else(|| panic!("{}: error body is not an object: {body}", self.what));
        assert_eq!(outer.len(), 1, "{}: error body has only `error`: {body}", self.what);
        let inner = body["error"].as_object().unwrap_or_else(|| panic!("{}: no `error` object: {body}", self.what));
        assert_eq!(inner.len(), 2, "{}: `error` has exactly `code` and `message`: {body}", self.what);
        assert_eq!(inner.get("code").and_then(Value::as_str), Some(code), "{}: error code: {body}", self.what);
        let message = inner.get("message").and_then(Value::as_str).unwrap_or_default();
        assert!(!message.is_empty(), "{}: empty error message: {body}", self.what);
        message.to_owned()
    }

    /// True when the admin router's fallback answered (no such route).
    pub fn is_fallback(&self) -> bool {
        self.status == StatusCode::NOT_FOUND && self.text().contains(NO_SUCH_ENDPOINT)
    }

    /// A route under `/api/v1` that answered must be in the OpenAPI document.
    #[track_caller]
    fn check_documented(&self, method: &Method) {
        let Some(route) = self.route.as_deref() else { return };
        let not_served = self.is_fallback() || self.status == StatusCode::METHOD_NOT_ALLOWED;
        if !route.starts_with("/api/v1/") || route == "/api/v1/openapi.json" || not_served {
            return;
        }
        let key = (method.as_str().to_ascii_lowercase(), route.to_owned());
        assert!(
            api_doc_routes().contains(&key),
            "{}: answered by `{} {route}`, which the OpenAPI document does not list",
            self.what,
            method
        );
    }
}

/// The edge stream, read frame by frame (4-byte big-endian length, then a
/// signed frame around a wire message).
pub struct EdgeStream {
    body: Body,
    buffer: Vec<u8>,
    verifier: FrameVerifier,
}

impl EdgeStream {
    /// Whether the control plane aborts the stream within `within` (frames
    /// before that are skipped).
    pub async fn aborted_within(&mut self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.body.frame()).await {
                Err(_) => return false,
                Ok(None) | Ok(Some(Err(_))) => return true,
                Ok(Some(Ok(_))) => {}
            }
        }
    }

    /// The next message, or `None` when none arrives within `within`.
    pub async fn next(&mut self, within: Duration) -> Option<Message> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(message) = self.take_frame() {
                return Some(message);
            }
            let frame = tokio::time::timeout_at(deadline, self.body.frame()).await.ok()?;
            let frame = frame.expect("the control plane never ends the stream").expect("stream body error");
            if let Ok(data) = frame.into_data() {
                self.buffer.extend_from_slice(&data);
            }
        }
    }

    /// The next message other than a heartbeat, or `None` within `within`.
    pub async fn next_change(&mut self, within: Duration) -> Option<Message> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await? {
                Message::Heartbeat { .. } => continue,
                other => return Some(other),
            }
        }
    }

    /// The next message; fails when none arrives within five seconds.
    pub async fn expect_next(&mut self) -> Message {
        self.next(Duration::from_secs(5)).await.expect("a stream message within 5 s")
    }

    /// The next delta or snapshot; fails when none arrives within five seconds.
    pub async fn expect_change(&mut self) -> Message {
        self.next_change(Duration::from_secs(5)).await.expect("a delta within 5 s")
    }

    fn take_frame(&mut self) -> Option<Message> {
        let header: [u8; 4] = self.buffer.get(..4)?.try_into().ok()?;
        let length = u32::from_be_bytes(header) as usize;
        let payload = self.buffer.get(4..4 + length)?;
        let message = self.verifier.open(payload).unwrap_or_else(|e| panic!("a stream frame is refused: {e}"));
        let message = decode(message).unwrap_or_else(|e| panic!("undecodable stream frame: {e}"));
        self.buffer.drain(..4 + length);
        Some(message)
    }
}
