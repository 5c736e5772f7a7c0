//! `/api/v1/audit`: who did what, when, why, from where.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::Caller;
use super::parse_time;
use crate::app::App;
use crate::error::ApiError;
use crate::http::ApiQuery;
use crate::model::AuditEntry;
use crate::store::AuditFilter;

/// Audit filters.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Entries by this actor (e.g. `token:ops`).
    pub actor: Option<String>,
    /// Entries with this action (e.g. `session.terminate`).
    pub action: Option<String>,
    /// Entries whose target contains this text.
    pub target: Option<String>,
    /// Everything about one user: an email or an IdP subject (their
    /// sessions' logins and terminations, locks, relying-party deliveries).
    pub user: Option<String>,
    /// Everything about one session.
    pub session: Option<String>,
    /// Everything on one policy route (denials, TCP flows, closed connections).
    pub route: Option<String>,
    /// Everything one edge reported (its id, as `portcullis edges` lists it).
    pub edge: Option<String>,
    /// The denial an end user was shown this reference for (e.g.
    /// `K7Q2-M9XD-4RTA`; any case, dashes optional): its route, rule or
    /// lock reason, user, session and address.
    pub reference: Option<String>,
    /// At or after (RFC 3339).
    pub since: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<i64>,
    /// Entries after this id, oldest first (to follow the log: pass the
    /// largest id seen); not with `cursor`.
    pub after: Option<i64>,
    /// Page size, 1 to 1000 (default 100).
    pub limit: Option<u32>,
}

/// One page of the audit log, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditPage {
    /// Entries.
    pub entries: Vec<AuditEntry>,
    /// Pass as `cursor` for the next page.
    pub next_cursor: Option<i64>,
}

/// Reads the audit log.
#[utoipa::path(get, path = "/api/v1/audit", params(AuditQuery), responses((status = 200, body = AuditPage)))]
pub async fn audit(
    State(app): State<Arc<App>>,
    caller: Caller,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    caller.require("audit:read")?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("`limit` is between 1 and 1000"));
    }
    if query.after.is_some() && query.cursor.is_some() {
        return Err(ApiError::bad_request("give `cursor` (older entries) or `after` (newer entries), not both"));
    }
    let reference = query
        .reference
        .as_deref()
        .map(|r| r.parse().map_err(|e| ApiError::bad_request(format!("`reference`: {e}"))))
        .transpose()?;
    let filter = AuditFilter {
        after_id: query.after,
        actor: query.actor,
        action: query.action,
        target: query.target,
        user: query.user.map(|u| u.trim().to_owned()).filter(|u| !u.is_empty()),
        session: query.session,
        route: query.route,
        edge: query.edge,
        reference,
        since_ms: query.since.as_deref().map(|s| parse_time("since", s)).transpose()?,
        before_id: query.cursor,
        limit,
    };
    let entries = app.store().audit(&filter).await?;
    let next_cursor =
        (query.after.is_none() && entries.len() == limit as usize).then(|| entries.last().map(|e| e.id)).flatten();
    Ok(Json(AuditPage { entries, next_cursor }))
}
