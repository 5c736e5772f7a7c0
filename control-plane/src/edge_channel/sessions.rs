//! The session authority's edge-facing calls: create a session after an
//! edge completed an OIDC login — only for an ID token the control plane
//! verified itself (see [`crate::idp`]), once per token — enforcing the
//! route's session limit and its `device_login` option; end
//! one when the user logs out, and say whether a session is still active —
//! and if not, why and by whom it was ended (what `portcullis connect`
//! tells its user when its flow is closed).

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use portcullis_policy::edge_channel::{IdpLogoutAnswer, IdpLogoutBody, LoginAnswer, LoginBody, SessionStatus};
use portcullis_policy::UserRef;

use super::{EdgeCaller, JsonAnswer};
use crate::app::App;
use crate::config::MAX_LOGIN_CLOCK_SKEW_S;
use crate::error::ApiError;
use crate::http::ApiJson;
use crate::idp::{IdTokenError, LoginFlow, VerifiedLogin};
use crate::model::{now_ms, rfc3339};
use crate::receipt::{receipt, Receipt};
use crate::store::{AuditFilter, NewSession, SessionLimit};

fn new_session_id() -> String {
    let mut bytes = [0u8; 16];
    rand::Rng::fill(&mut rand::rngs::OsRng, &mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn refused(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, code, message)
}

/// Verifies the login's ID token and consumes it: each token creates one session.
async fn verified_login(app: &App, edge: &EdgeCaller, body: &LoginBody) -> Result<VerifiedLogin, ApiError> {
    let Some(id_token) = body.id_token.as_deref().filter(|t| !t.is_empty()) else {
        return Err(refused("id_token_required", "a session is created only for the identity provider's ID token"));
    };
    let now_s = now_ms() / 1000;
    let verified = match app.login_idps.verify(id_token, body.nonce.as_deref(), body.flow, now_s).await {
        Ok(verified) => verified,
        Err(IdTokenError::NotConfigured) => {
            tracing::error!("login refused: no identity provider is configured (login_idps)");
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "login_idp_not_configured",
                IdTokenError::NotConfigured.to_string(),
            ));
        }
        Err(IdTokenError::Unavailable(error)) => {
            tracing::warn!(%error, "login refused: identity provider unavailable");
            return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "idp_unavailable", error.to_string()));
        }
        Err(error) => {
            tracing::warn!(edge = %edge.id, %error, "login refused");
            return Err(refused("id_token_invalid", error.to_string()));
        }
    };
    let login = verified.login;
    // Kept while the token could still be accepted: `exp` plus the tolerated skew.
    let keep_until_ms = (login.expires_at + MAX_LOGIN_CLOCK_SKEW_S as i64) * 1000;
    if !app.store().use_id_token(&verified.replay_key, &login.issuer, keep_until_ms, now_ms()).await? {
        let reason = format!("ID token from {} already created a session: replay refused", login.issuer);
        tracing::warn!(edge = %edge.id, user = %login.email, "login refused: replayed ID token");
        app.store()
            .record_audit("session.replay_refused", &format!("email:{}", login.email), &reason, &edge.actor, now_ms())
            .await?;
        return Err(refused("id_token_replayed", "this ID token was already used to create a session; log in again"));
    }
    Ok(login)
}

/// Creates a session for a completed login.
pub async fn create(
    State(app): State<Arc<App>>,
    edge: EdgeCaller,
    ApiJson(body): ApiJson<LoginBody>,
) -> JsonAnswer<LoginAnswer> {
    let policy = app.current_policy().await?;
    let route = policy
        .routes()
        .iter()
        .find(|r| r.name() == body.route)
        .ok_or_else(|| ApiError::invalid(format!("no route `{}` in the policy in force", body.route)))?;
    let options = route.options();
    if body.flow == LoginFlow::Device && !options.device_login {
        let message = format!("route `{}` does not allow the device flow (route option `device_login`)", body.route);
        return Err(ApiError::new(StatusCode::FORBIDDEN, "device_login_disabled", message));
    }
    let login = verified_login(&app, &edge, &body).await?;
    let users = [UserRef::subject(&login.subject), UserRef::email(&login.email)];
    if let Some(reason) = app.store().active_lock(&users, now_ms() / 1000).await? {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "user_locked", format!("this user is locked: {reason}")));
    }
    let limit = options.max_sessions_per_user.map(|max| SessionLimit { max, action: options.on_session_limit });
    let new = NewSession {
        id: new_session_id(),
        subject: login.subject,
        email: login.email,
        groups: login.groups,
        idp_issuer: login.issuer,
        idp_session_id: login.idp_session_id,
        route: body.route,
        lifetime_ms: i64::from(options.session_lifetime) * 1000,
        auth_time_s: login.auth_time,
        source_address: body.source_address,
        user_agent: body.user_agent.chars().take(512).collect(),
        edge_id: edge.id.clone(),
    };
    let created = app.store().create_session(new, limit, &edge.actor, now_ms()).await?;
    let token = app.authority.sign(&created.record).await?;
    Ok(Json(LoginAnswer {
        session_id: created.record.id.clone(),
        token,
        expires_at: rfc3339(created.record.expires_ms),
        replaced_sessions: created.replaced.into_iter().map(|(id, _)| id).collect(),
    }))
}

/// Who ended a session, from the audit entry of the action that did.
async fn ended_by(app: &App, id: &str, email: &str) -> Result<Option<String>, ApiError> {
    let store = app.store();
    let of_session = AuditFilter { target: Some(format!("session:{id}")), limit: 20, ..AuditFilter::default() };
    let mut entry = store
        .audit(&of_session)
        .await?
        .into_iter()
        .find(|e| matches!(e.action.as_str(), "session.terminate" | "session.replace"));
    if entry.is_none() {
        let of_user = AuditFilter {
            action: Some("user.terminate".into()),
            target: Some(format!("email:{email}")),
            limit: 1,
            ..AuditFilter::default()
        };
        entry = store.audit(&of_user).await?.into_iter().next();
    }
    Ok(entry.map(|e| {
        let by = if e.action == "session.replace" {
            "session_limit"
        } else if e.actor == "system" {
            "system"
        } else if e.actor.starts_with("edge:") {
            if e.reason.contains("identity provider") {
                "identity_provider"
            } else {
                "user"
            }
        } else {
            "administrator"
        };
        by.to_owned()
    }))
}

/// Whether a session is active; if not, when, why and by whom it ended.
pub async fn status(
    State(app): State<Arc<App>>,
    _edge: EdgeCaller,
    Path(id): Path<String>,
) -> JsonAnswer<SessionStatus> {
    let record = app.store().get_session(&id).await?.ok_or_else(|| ApiError::not_found("no such session"))?;
    let now = now_ms();
    let (state, ended_by) = match record.ended_ms {
        Some(_) => ("ended", ended_by(&app, &record.id, &record.email).await?),
        None if !record.is_active(now) => ("ended", Some("expired".to_owned())),
        None => ("active", None),
    };
    let end_reason =
        record.end_reason.clone().or_else(|| (ended_by.as_deref() == Some("expired")).then(|| "expired".to_owned()));
    Ok(Json(SessionStatus {
        id: record.id,
        state: state.to_owned(),
        email: record.email,
        expires_at: rfc3339(record.expires_ms),
        ended_at: record.ended_ms.map(rfc3339),
        end_reason,
        ended_by,
    }))
}

/// Ends a session because its user logged out at the edge.
pub async fn logout(State(app): State<Arc<App>>, edge: EdgeCaller, Path(id): Path<String>) -> JsonAnswer<Receipt> {
    let seq = app.store().end_session_at_logout(&id, "logged out", &edge.actor, now_ms()).await?;
    Ok(Json(receipt(app.store(), &app.feed, seq, None, Instant::now()).await?))
}

/// Ends the sessions of an IdP session (or of an IdP subject): the IdP
/// logged the user out and told an edge through OIDC back-channel logout.
pub async fn idp_logout(
    State(app): State<Arc<App>>,
    edge: EdgeCaller,
    ApiJson(body): ApiJson<IdpLogoutBody>,
) -> JsonAnswer<IdpLogoutAnswer> {
    if body.idp_session_id.is_none() && body.subject.is_none() {
        return Err(ApiError::invalid("a back-channel logout names `idp_session_id`, `subject`, or both"));
    }
    let store = app.store();
    let now = now_ms();
    let ids = store
        .live_sessions_of_idp_login(&body.idp_issuer, body.idp_session_id.as_deref(), body.subject.as_deref(), now)
        .await?;
    let mut terminated = Vec::with_capacity(ids.len());
    for id in ids {
        let ended =
            store.end_session_at_logout(&id, "logged out at the identity provider", &edge.actor, now_ms()).await?;
        if ended.is_some() {
            terminated.push(id);
        }
    }
    Ok(Json(IdpLogoutAnswer { terminated }))
}
