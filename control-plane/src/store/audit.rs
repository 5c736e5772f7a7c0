//! The audit log: writing a row inside an action's transaction (whom it is
//! about, read from its target or given), writing the rows an edge's report
//! brings in one transaction, and reading the log with filters.
//!
//! Every row names the user it is about (email and IdP subject), the
//! session, the route and the edge where it has them, and how many
//! occurrences it stands for (an edge sums a burst of identical denials or
//! closed connections into one row), so a per-user, per-route or per-edge
//! query is one indexed lookup.

use sqlx::{Any, Row, Transaction};

use super::rows::{audit_entry, contains, seq_param, Params};
use super::{AuditFilter, SqlStore, StoreResult};
use crate::model::{Actor, AuditEntry, Millis};

/// Whom and where an audit row is about, so a user's whole trail is one query.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct AuditAbout<'a> {
    /// The user's email (stored lower case).
    pub email: Option<&'a str>,
    /// The user's IdP subject.
    pub subject: Option<&'a str>,
    /// The session.
    pub session: Option<&'a str>,
    /// The policy route it happened on.
    pub route: Option<&'a str>,
    /// The edge it happened on.
    pub edge: Option<&'a str>,
    /// How many occurrences the row stands for (0 is read as 1).
    pub occurrences: u64,
}

/// One audit row an edge's report brings: a denial, TCP flows, live
/// connections it closed, a session's change of address.
#[derive(Debug, Clone)]
pub struct EdgeAuditRow {
    /// What, e.g. `access.denied`.
    pub action: &'static str,
    /// On what (`session:<id>`, `user:<email>`).
    pub target: String,
    /// What happened, in words.
    pub reason: String,
    /// The client's address.
    pub source_address: String,
    /// When (Unix ms).
    pub at_ms: Millis,
    /// The user as the edge named them: an email, or an IdP subject.
    pub user: Option<String>,
    /// The session, whose user (email and subject) the store reads.
    pub session: Option<String>,
    /// The route.
    pub route: Option<String>,
    /// How many occurrences it stands for.
    pub occurrences: u64,
}

/// Writes one audit row inside an action's transaction. Whom it is about is
/// read from `target`: `email:…`, `sub:…`, or a target whose last word is
/// one of those (`okta email:bob@…`); for `session:<id>` the session's user
/// is read in the same transaction (callers that hold the session's row
/// already use [`insert_audit_about`]).
pub(crate) async fn insert_audit(
    tx: &mut Transaction<'static, Any>,
    action: &str,
    target: &str,
    reason: &str,
    actor: &Actor,
    now: Millis,
    seq: Option<u64>,
) -> StoreResult<()> {
    let last = target.rsplit(' ').next().unwrap_or(target);
    let mut about = AuditAbout::default();
    let owner;
    if let Some(address) = last.strip_prefix("email:") {
        about.email = Some(address);
    } else if let Some(sub) = last.strip_prefix("sub:") {
        about.subject = Some(sub);
    } else if let Some(id) = last.strip_prefix("session:") {
        about.session = Some(id);
        owner = session_owner(tx, id).await?;
        if let Some((email, subject)) = &owner {
            (about.email, about.subject) = (Some(email.as_str()), Some(subject.as_str()));
        }
    }
    insert_audit_about(tx, action, target, about, reason, actor, now, seq).await
}

/// The email and subject of session `id`, if it exists.
async fn session_owner(tx: &mut Transaction<'static, Any>, id: &str) -> StoreResult<Option<(String, String)>> {
    let row =
        sqlx::query("SELECT email, subject FROM sessions WHERE id = $1").bind(id).fetch_optional(&mut **tx).await?;
    row.map(|row| Ok((row.try_get("email")?, row.try_get("subject")?))).transpose()
}

/// Writes one audit row about `about` inside an action's transaction.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn insert_audit_about(
    tx: &mut Transaction<'static, Any>,
    action: &str,
    target: &str,
    about: AuditAbout<'_>,
    reason: &str,
    actor: &Actor,
    now: Millis,
    seq: Option<u64>,
) -> StoreResult<()> {
    let row = ActionAudit { action, target: target.to_owned(), about, reason, actor, at_ms: now, seq };
    insert_audits(tx, std::slice::from_ref(&row)).await
}

/// One audit row of an action, for [`insert_audits`].
pub(crate) struct ActionAudit<'a> {
    /// What, e.g. `session.terminate`.
    pub action: &'a str,
    /// On what (`session:<id>`, `email:…`).
    pub target: String,
    /// Whom and where it is about.
    pub about: AuditAbout<'a>,
    /// Why.
    pub reason: &'a str,
    /// Who did it.
    pub actor: &'a Actor,
    /// When.
    pub at_ms: Millis,
    /// The change it made.
    pub seq: Option<u64>,
}

/// Audit rows per statement (13 parameters each, well under either backend's limit).
const AUDIT_ROWS_PER_STATEMENT: usize = 256;

/// Writes `rows` inside an action's transaction, in order, in as few
/// statements as the parameter limits allow (a group commit's rows in one).
pub(crate) async fn insert_audits(tx: &mut Transaction<'static, Any>, rows: &[ActionAudit<'_>]) -> StoreResult<()> {
    for chunk in rows.chunks(AUDIT_ROWS_PER_STATEMENT) {
        let values: Vec<String> = (0..chunk.len())
            .map(|i| {
                let p: Vec<String> = (1..=13).map(|n| format!("${}", 13 * i + n)).collect();
                format!("({})", p.join(", "))
            })
            .collect();
        let sql = format!(
            "INSERT INTO audit_log (at_ms, actor, action, target, reason, source_address, seq, user_email, \
             user_subject, session_id, route, edge_id, occurrences) VALUES {}",
            values.join(", ")
        );
        let mut insert = sqlx::query(&sql);
        for row in chunk {
            let (about, actor) = (row.about, row.actor);
            insert = insert
                .bind(row.at_ms)
                .bind(&actor.name)
                .bind(row.action)
                .bind(&row.target)
                .bind(row.reason)
                .bind(&actor.source_address)
                .bind(row.seq.map(seq_param))
                .bind(about.email.map(str::to_ascii_lowercase))
                .bind(about.subject)
                .bind(about.session)
                .bind(about.route)
                .bind(about.edge.or_else(|| actor.name.strip_prefix("edge:")))
                .bind(i64::try_from(about.occurrences.max(1)).unwrap_or(i64::MAX));
        }
        insert.execute(&mut **tx).await?;
    }
    Ok(())
}

impl SqlStore {
    /// Writes the audit rows of one edge report in one transaction, each
    /// naming `edge` (its actor `edge:<id>`) and its session's user.
    pub async fn record_edge_audit(&self, edge_id: &str, rows: &[EdgeAuditRow]) -> StoreResult<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut tx = self.writer.begin().await?;
        for row in rows {
            let owner = match &row.session {
                Some(session) => session_owner(&mut tx, session).await?,
                None => None,
            };
            let mut about = AuditAbout {
                session: row.session.as_deref(),
                route: row.route.as_deref(),
                edge: Some(edge_id),
                occurrences: row.occurrences,
                ..AuditAbout::default()
            };
            match (&owner, row.user.as_deref()) {
                (Some((email, subject)), _) => {
                    (about.email, about.subject) = (Some(email.as_str()), Some(subject.as_str()))
                }
                (None, Some(user)) if user.contains('@') => about.email = Some(user),
                (None, Some(user)) if !user.is_empty() => about.subject = Some(user),
                _ => {}
            }
            let actor = Actor { name: format!("edge:{edge_id}"), source_address: row.source_address.clone() };
            insert_audit_about(&mut tx, row.action, &row.target, about, &row.reason, &actor, row.at_ms, None).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Audit entries matching `filter`: newest first, or oldest first after
    /// `after_id` (to follow the log).
    pub(crate) async fn query_audit(&self, filter: &AuditFilter) -> StoreResult<Vec<AuditEntry>> {
        let mut sql = String::from("SELECT * FROM audit_log WHERE 1 = 1");
        let mut params = Params::default();
        let mut equals = |column: &str, value: &Option<String>, sql: &mut String| {
            if let Some(value) = value {
                sql.push_str(&format!(" AND {column} = {}", params.text(value)));
            }
        };
        equals("actor", &filter.actor, &mut sql);
        equals("action", &filter.action, &mut sql);
        equals("session_id", &filter.session, &mut sql);
        equals("route", &filter.route, &mut sql);
        equals("edge_id", &filter.edge, &mut sql);
        if let Some(target) = &filter.target {
            sql.push_str(&format!(" AND {}", contains(self.backend, "target", &params.text(target))));
        }
        if let Some(reference) = filter.reference {
            // Only the edge writes `(ref …)`, and only into a denial's reason.
            let text = params.text(reference.audit_text());
            let denied = params.text("access.denied");
            sql.push_str(&format!(" AND action = {denied} AND {}", contains(self.backend, "reason", &text)));
        }
        if let Some(user) = &filter.user {
            let (email, subject) = (params.text(user.to_ascii_lowercase()), params.text(user));
            sql.push_str(&format!(" AND (user_email = {email} OR user_subject = {subject})"));
        }
        if let Some(since) = filter.since_ms {
            sql.push_str(&format!(" AND at_ms >= {}", params.int(since)));
        }
        if let Some(before) = filter.before_id {
            sql.push_str(&format!(" AND id < {}", params.int(before)));
        }
        if let Some(after) = filter.after_id {
            sql.push_str(&format!(" AND id > {}", params.int(after)));
        }
        let limit = params.int(i64::from(filter.limit.clamp(1, 1000)));
        let order = if filter.after_id.is_some() { "ASC" } else { "DESC" };
        sql.push_str(&format!(" ORDER BY id {order} LIMIT {limit}"));
        params.bind(sqlx::query(&sql)).fetch_all(&self.reader).await?.iter().map(audit_entry).collect()
    }
}
