//! The edge channel, on its own listener: edges enroll once (a join token
//! and their public key, [`enroll`]), then authenticate every call with a
//! short-lived assertion signed by that key ([`identity`]), stream
//! signed snapshots and deltas, report what they applied and closed (with session
//! activity, denials and TCP flows, which land in the audit log), and ask
//! the session authority for sessions. The bodies, paths and frames are
//! the contract in `portcullis_policy::edge_channel`, which the edge
//! imports too; the handlers here validate and act on them.

pub mod enroll;
pub mod identity;
mod report_rows;
mod service_tokens;
mod sessions;
mod stream;
pub mod verified;

pub use crate::edge_trust::{EdgeTrust, RevokedSet};
pub use identity::EdgeCaller;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};

use crate::app::App;
use crate::error::ApiError;
use crate::http::ApiJson;
use crate::model::now_ms;
use crate::store::{Activity, ChangeStore, EdgeAuditRow, EdgeReport};

pub use portcullis_policy::edge_channel::FRAME_HEADER_BYTES;
use portcullis_policy::edge_channel::{
    ActivityEvent, ReportBody, ENROLL_PATH, FLEET_KEY_PATH, IDP_LOGOUT_PATH, REPORT_PATH, SERVICE_TOKEN_VERIFY_PATH,
    SESSIONS_PATH, SESSION_LOGOUT_ROUTE, SESSION_ROUTE, STREAM_KEY_PATH, STREAM_PATH,
};

/// `POST /edge/v1/report`: records what the edge applied and closed, and
/// its activity (sessions' last sightings and connections; the rest to the
/// audit log).
async fn report(
    State(app): State<Arc<App>>,
    edge: EdgeCaller,
    ApiJson(body): ApiJson<ReportBody>,
) -> Result<StatusCode, ApiError> {
    // An edge cannot have applied a change that does not exist yet; a report
    // from a confused edge must not make a later receipt complete early. The
    // head this replica has seen committed is never past the database's, so
    // a report within it needs no read (the common case: one per edge per
    // second, and one from every edge after each change).
    let known = app.feed.head();
    let head = if body.applied_seq <= known { known } else { app.store.head_seq().await? };
    let report = EdgeReport {
        edge_id: edge.id.clone(),
        name: edge.name,
        applied_seq: body.applied_seq.min(head),
        live_connections: body.live_connections,
        closed: body.closed.iter().map(|c| (c.seq, c.connections)).collect(),
    };
    app.store().record_edge_report(&report, now_ms()).await?;
    let mut events = Vec::with_capacity(body.activity.len());
    let mut audit = Vec::new();
    let (mut denied_sessions, mut moved_sessions) = (Vec::new(), Vec::new());
    for event in body.activity {
        match event {
            ActivityEvent::Seen { session_id, source_address, at_ms } => {
                events.push(Activity::Seen { session_id, source_address, at_ms });
            }
            ActivityEvent::Connections { session_id, delta } => {
                events.push(Activity::Connections { session_id, delta })
            }
            ActivityEvent::LiveConnections { session_id, connections } => {
                events.push(Activity::LiveConnections { session_id, connections })
            }
            ActivityEvent::AddressChanged { session_id, from, to, denied, at_ms } => {
                moved_sessions.push((session_id.clone(), to.clone()));
                let outcome =
                    if denied { "refused: the route requires a new login" } else { "allowed, with this warning" };
                let reason = format!("source address changed from {from} to {to}; {outcome}");
                audit.push(EdgeAuditRow {
                    action: "session.address_changed",
                    target: format!("session:{session_id}"),
                    reason,
                    source_address: to,
                    at_ms,
                    user: None,
                    session: Some(session_id),
                    route: None,
                    occurrences: 1,
                });
            }
            other => {
                if let ActivityEvent::Denied { session_id: Some(session), .. } = &other {
                    denied_sessions.push(session.clone());
                }
                audit.extend(report_rows::audit_row(other));
            }
        }
    }
    app.store.record_edge_audit(&edge.id, &audit).await?;
    if !events.is_empty() || body.connections_complete {
        app.store().apply_activity(&edge.id, &events, body.connections_complete).await?;
    }
    denied_sessions.sort();
    denied_sessions.dedup();
    for session in denied_sessions {
        crate::responses::after_denial(&app, &session).await;
    }
    for (session, address) in moved_sessions {
        crate::responses::after_address(&app, &session, &address).await;
    }
    app.feed.report_arrived();
    Ok(StatusCode::NO_CONTENT)
}

/// The edge listener's router.
pub fn router(app: Arc<App>) -> Router {
    let max_body = app.config.max_body_bytes;
    Router::new()
        .route(ENROLL_PATH, post(enroll::enroll))
        .route(FLEET_KEY_PATH, get(enroll::fleet_key))
        .route(STREAM_PATH, get(stream::stream))
        .route(STREAM_KEY_PATH, get(stream::stream_key))
        .route(REPORT_PATH, post(report))
        .route(SESSIONS_PATH, post(sessions::create))
        .route(SESSION_ROUTE, get(sessions::status))
        .route(SESSION_LOGOUT_ROUTE, post(sessions::logout))
        .route(IDP_LOGOUT_PATH, post(sessions::idp_logout))
        .route(SERVICE_TOKEN_VERIFY_PATH, post(service_tokens::verify))
        .route("/healthz", get(|| async { "ok\n" }))
        .method_not_allowed_fallback(crate::http::method_not_allowed)
        .fallback(|| async { ApiError::not_found("no such edge-channel endpoint") })
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(app)
}

/// Wraps a JSON answer (used by the session handlers).
pub(crate) type JsonAnswer<T> = Result<Json<T>, ApiError>;

#[cfg(test)]
mod tests {
    use portcullis_policy::edge_channel::ErrorAnswer;

    use crate::error::{ErrorBody, ErrorDetail};

    /// Edges read the control plane's error body as
    /// `portcullis_policy::edge_channel::ErrorAnswer`; `ErrorBody` stays a
    /// type of its own only because the OpenAPI description needs its
    /// schema. The two must stay the same on the wire.
    #[test]
    fn the_error_body_is_the_edge_channels_error_answer() {
        let body = ErrorBody { error: ErrorDetail { code: "user_locked".into(), message: "locked".into() } };
        let wire = serde_json::to_value(&body).unwrap();
        let answer: ErrorAnswer = serde_json::from_value(wire.clone()).expect("an edge reads it");
        assert_eq!((answer.error.code.as_str(), answer.error.message.as_str()), ("user_locked", "locked"));
        assert_eq!(serde_json::to_value(&answer).unwrap(), wire, "and nothing more or less");
    }
}
