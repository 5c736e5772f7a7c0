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
mod service_tokens;
mod sessions;
mod stream;

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
use crate::model::{now_ms, Actor};
use crate::store::{Activity, ChangeStore, EdgeReport};

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
    // from a confused edge must not make a later receipt complete early.
    let head = app.store.head_seq().await?;
    let report = EdgeReport {
        edge_id: edge.id.clone(),
        name: edge.name,
        applied_seq: body.applied_seq.min(head),
        live_connections: body.live_connections,
        closed: body.closed.iter().map(|c| (c.seq, c.connections)).collect(),
    };
    app.store().record_edge_report(&report, now_ms()).await?;
    let mut events = Vec::with_capacity(body.activity.len());
    let (mut denied_sessions, mut moved_sessions) = (Vec::new(), Vec::new());
    for event in body.activity {
        match event {
            ActivityEvent::Seen { session_id, source_address, at_ms } => {
                events.push(Activity::Seen { session_id, source_address, at_ms });
            }
            ActivityEvent::Connections { session_id, delta } => {
                events.push(Activity::Connections { session_id, delta })
            }
            ActivityEvent::AddressChanged { session_id, from, to, denied, at_ms } => {
                moved_sessions.push((session_id.clone(), to.clone()));
                let outcome =
                    if denied { "refused: the route requires a new login" } else { "allowed, with this warning" };
                let actor = Actor { name: edge.actor.name.clone(), source_address: to.clone() };
                let reason = format!("source address changed from {from} to {to}; {outcome}");
                app.store()
                    .record_audit("session.address_changed", &format!("session:{session_id}"), &reason, &actor, at_ms)
                    .await?;
            }
            ActivityEvent::FlowOpened { session_id, user, route, target, source_address, flows, at_ms, .. } => {
                let actor = Actor { name: edge.actor.name.clone(), source_address };
                let what = if flows == 1 { "flow opened".to_owned() } else { format!("{flows} flows opened") };
                let reason = format!("route `{route}` ({target}){}: {what}", session_text(session_id.as_deref()));
                app.store().record_audit("flow.open", &user_target(&user), &reason, &actor, at_ms).await?;
            }
            ActivityEvent::FlowClosed {
                session_id,
                user,
                route,
                target,
                source_address,
                bytes_up,
                bytes_down,
                flows,
                duration_ms,
                shortest_ms,
                ended_by,
                at_ms,
                ..
            } => {
                let actor = Actor { name: edge.actor.name.clone(), source_address };
                let how = match ended_by.as_str() {
                    "access_ended" => "closed by Portcullis: access ended",
                    "error" => "ended by a network error",
                    "edge_shutdown" => "closed because the edge shut down",
                    _ => "closed",
                };
                let seconds = |ms: i64| format!("{:.1}", ms as f64 / 1000.0);
                let what = match (flows, shortest_ms) {
                    (1, _) => format!("flow {how} after {} s", seconds(duration_ms)),
                    (n, Some(shortest)) if shortest != duration_ms => {
                        format!("{n} flows {how} after {}–{} s", seconds(shortest), seconds(duration_ms))
                    }
                    (n, _) => format!("{n} flows {how} after {} s", seconds(duration_ms)),
                };
                let reason = format!(
                    "route `{route}` ({target}){}: {what}; {bytes_up} bytes up, {bytes_down} bytes down",
                    session_text(session_id.as_deref()),
                );
                app.store().record_audit("flow.close", &user_target(&user), &reason, &actor, at_ms).await?;
            }
            ActivityEvent::Denied { user, session_id, route, reason, source_address, at_ms } => {
                let actor = Actor { name: edge.actor.name.clone(), source_address };
                let target = match &session_id {
                    // Filed under the session (the audit row names its user too), so
                    // response rules can count a session's denials.
                    Some(session) => format!("session:{session}"),
                    None => user_target(&user),
                };
                let reason = format!("route `{route}` ({user}): {reason}");
                app.store().record_audit("access.denied", &target, &reason, &actor, at_ms).await?;
                if let Some(session) = session_id {
                    denied_sessions.push(session);
                }
            }
        }
    }
    if !events.is_empty() {
        app.store().apply_activity(&edge.id, &events).await?;
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

/// ` (session ID)`, or nothing.
fn session_text(session_id: Option<&str>) -> String {
    session_id.map(|s| format!(" (session {s})")).unwrap_or_default()
}

/// The audit target of a flow's or a denial's user: one word (the audit
/// log files a row under the session or user its target's last word names,
/// so an identity string `eve@corp.example session:<id>` must not file
/// eve's rows under another session).
fn user_target(user: &str) -> String {
    if user.is_empty() {
        "user:anonymous".to_owned()
    } else {
        let word: String = user.chars().map(|c| if c.is_whitespace() || c.is_control() { '_' } else { c }).collect();
        format!("user:{word}")
    }
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
    fn a_user_target_is_one_word() {
        assert_eq!(super::user_target("eve@corp.example session:abc"), "user:eve@corp.example_session:abc");
        assert_eq!(super::user_target("eve\n@x"), "user:eve_@x");
        assert_eq!(super::user_target(""), "user:anonymous");
    }

    #[test]
    fn the_error_body_is_the_edge_channels_error_answer() {
        let body = ErrorBody { error: ErrorDetail { code: "user_locked".into(), message: "locked".into() } };
        let wire = serde_json::to_value(&body).unwrap();
        let answer: ErrorAnswer = serde_json::from_value(wire.clone()).expect("an edge reads it");
        assert_eq!((answer.error.code.as_str(), answer.error.message.as_str()), ("user_locked", "locked"));
        assert_eq!(serde_json::to_value(&answer).unwrap(), wire, "and nothing more or less");
    }
}
