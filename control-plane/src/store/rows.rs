//! Row decoding shared by the store modules.

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, Row};

use super::{Backend, StoreError, StoreResult};
use crate::model::{ApiTokenRecord, AuditEntry, PolicyVersion, SessionRecord};

/// The columns of `sessions`, in the order [`session`] reads them.
pub(crate) const SESSION_COLUMNS: &str = "id, subject, email, groups_json, idp_issuer, idp_session_id, route, \
     created_ms, last_seen_ms, expires_ms, auth_time_s, ended_ms, end_reason, source_addresses_json, user_agent, \
     edges_json, live_connections";

pub(crate) fn json_list(text: &str) -> StoreResult<Vec<String>> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("list column: {e}")))
}

pub(crate) fn to_json(list: &[String]) -> String {
    serde_json::to_string(list).unwrap_or_else(|_| "[]".into())
}

pub(crate) fn session(row: &AnyRow) -> StoreResult<SessionRecord> {
    Ok(SessionRecord {
        id: row.try_get("id")?,
        subject: row.try_get("subject")?,
        email: row.try_get("email")?,
        groups: json_list(&row.try_get::<String, _>("groups_json")?)?,
        idp_issuer: row.try_get("idp_issuer")?,
        idp_session_id: row.try_get("idp_session_id")?,
        route: row.try_get("route")?,
        created_ms: row.try_get("created_ms")?,
        last_seen_ms: row.try_get("last_seen_ms")?,
        expires_ms: row.try_get("expires_ms")?,
        auth_time_s: row.try_get("auth_time_s")?,
        ended_ms: row.try_get("ended_ms")?,
        end_reason: row.try_get("end_reason")?,
        source_addresses: json_list(&row.try_get::<String, _>("source_addresses_json")?)?,
        user_agent: row.try_get("user_agent")?,
        edges: json_list(&row.try_get::<String, _>("edges_json")?)?,
        live_connections: row.try_get("live_connections")?,
    })
}

pub(crate) fn policy_version(row: &AnyRow) -> StoreResult<PolicyVersion> {
    Ok(PolicyVersion {
        version: row.try_get("version")?,
        document: row.try_get("document")?,
        author: row.try_get("author")?,
        message: row.try_get("message")?,
        created_at: crate::model::rfc3339(row.try_get("created_ms")?),
    })
}

pub(crate) fn api_token(row: &AnyRow) -> StoreResult<ApiTokenRecord> {
    let scopes: String = row.try_get("scopes")?;
    Ok(ApiTokenRecord {
        id: row.try_get("id")?,
        kind: row.try_get("kind")?,
        name: row.try_get("name")?,
        token_hash: row.try_get("token_hash")?,
        scopes: scopes.split_whitespace().map(str::to_owned).collect(),
        subject: row.try_get("subject")?,
        groups: json_list(&row.try_get::<String, _>("groups_json")?)?,
        created_ms: row.try_get("created_ms")?,
        expires_ms: row.try_get("expires_ms")?,
        revoked_ms: row.try_get("revoked_ms")?,
        last_used_ms: row.try_get("last_used_ms")?,
        created_by: row.try_get("created_by")?,
    })
}

pub(crate) fn audit_entry(row: &AnyRow) -> StoreResult<AuditEntry> {
    Ok(AuditEntry {
        id: row.try_get("id")?,
        at: crate::model::rfc3339(row.try_get("at_ms")?),
        actor: row.try_get("actor")?,
        action: row.try_get("action")?,
        target: row.try_get("target")?,
        reason: row.try_get("reason")?,
        source_address: row.try_get("source_address")?,
        seq: row.try_get("seq")?,
        user_email: row.try_get("user_email")?,
        user_subject: row.try_get("user_subject")?,
        session_id: row.try_get("session_id")?,
        route: row.try_get("route")?,
        edge: row.try_get("edge_id")?,
        count: row.try_get("occurrences")?,
    })
}

/// Numbered parameters for a query assembled from optional filters; each
/// `push` returns the placeholder to write (`$1`, `$2`, … in order, which
/// both backends accept). Values are always bound, never spliced into SQL.
#[derive(Default)]
pub(crate) struct Params {
    values: Vec<Param>,
}

enum Param {
    Text(String),
    Int(i64),
}

impl Params {
    pub(crate) fn text(&mut self, value: impl Into<String>) -> String {
        self.values.push(Param::Text(value.into()));
        format!("${}", self.values.len())
    }

    pub(crate) fn int(&mut self, value: i64) -> String {
        self.values.push(Param::Int(value));
        format!("${}", self.values.len())
    }

    pub(crate) fn bind<'q>(self, mut query: Query<'q, Any, AnyArguments<'q>>) -> Query<'q, Any, AnyArguments<'q>> {
        for value in self.values {
            query = match value {
                Param::Text(t) => query.bind(t),
                Param::Int(i) => query.bind(i),
            };
        }
        query
    }
}

/// SQL that is true when `column` contains the text bound at `placeholder`,
/// exactly (case-sensitive, no wildcards) on both backends. Not `LIKE`:
/// SQLite's ignores ASCII case where PostgreSQL's does not.
pub(crate) fn contains(backend: Backend, column: &str, placeholder: &str) -> String {
    match backend {
        Backend::Sqlite => format!("instr({column}, {placeholder}) > 0"),
        Backend::Postgres => format!("strpos({column}, {placeholder}) > 0"),
    }
}

/// A sequence number as SQL's signed 64-bit integer. Sequences beyond
/// `i64::MAX` are never allocated; they saturate rather than wrap to negative
/// numbers, which would invert comparisons (`seq > after` matching every row).
pub(crate) fn seq_param(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

/// Rows per multi-row statement: keeps every statement far below SQLite's
/// and PostgreSQL's parameter limits at the widths the store uses (≤ 5).
pub(crate) const ROWS_PER_STATEMENT: usize = 1_000;

/// `$from, $from+1, …` (`count` of them).
pub(crate) fn placeholders(count: usize, from: usize) -> String {
    (from..from + count).map(|n| format!("${n}")).collect::<Vec<_>>().join(", ")
}

/// `($1, …, $width), ($width+1, …), …` for `rows` rows: the `VALUES` of a
/// multi-row statement.
pub(crate) fn value_rows(rows: usize, width: usize) -> String {
    (0..rows).map(|r| format!("({})", placeholders(width, r * width + 1))).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod placeholder_tests {
    use super::value_rows;

    #[test]
    fn value_rows_number_every_parameter_once_in_order() {
        assert_eq!(value_rows(2, 3), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(value_rows(1, 5), "($1, $2, $3, $4, $5)");
    }
}
