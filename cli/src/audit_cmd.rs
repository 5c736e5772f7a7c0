//! `portcullis audit`: who did what, when, why, from where.

use std::process::ExitCode;

use clap::Args;
use portcullis_control_plane::model::AuditEntry;
use serde::Deserialize;

use crate::api_client::{block_on, decode, print_json, ApiClient, Connection};
use crate::output::{rfc3339_option, when, Table};

/// `audit` filters.
#[derive(Args)]
pub struct AuditArgs {
    /// Entries at or after this time (RFC 3339).
    #[arg(long)]
    since: Option<String>,
    /// Entries by this actor, e.g. `token:bootstrap`.
    #[arg(long)]
    actor: Option<String>,
    /// Entries with this action, e.g. `session.terminate`.
    #[arg(long)]
    action: Option<String>,
    /// Entries whose target contains this text.
    #[arg(long)]
    target: Option<String>,
    /// Everything about one user (email or IdP subject): logins, session
    /// ends, terminations, locks, relying-party sign-outs.
    #[arg(long)]
    user: Option<String>,
    /// Everything about one session.
    #[arg(long)]
    session: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    #[arg(long)]
    limit: Option<u32>,
    /// Continue after a previous page (its `next_cursor`).
    #[arg(long)]
    cursor: Option<i64>,
    #[command(flatten)]
    connection: Connection,
}

#[derive(Deserialize)]
struct AuditPage {
    entries: Vec<AuditEntry>,
    next_cursor: Option<i64>,
}

/// Runs `portcullis audit`.
pub fn audit(args: AuditArgs) -> anyhow::Result<ExitCode> {
    let since = args.since.as_deref().map(|s| rfc3339_option("since", s)).transpose()?;
    block_on(async move {
        let client = ApiClient::new(&args.connection)?;
        let query = [
            ("since", since),
            ("actor", args.actor),
            ("action", args.action),
            ("target", args.target),
            ("user", args.user),
            ("session", args.session),
            ("limit", args.limit.map(|l| l.to_string())),
            ("cursor", args.cursor.map(|c| c.to_string())),
        ];
        let value = client.get("/audit", &query).await?;
        if args.connection.json {
            print_json(&value)?;
            return Ok(ExitCode::SUCCESS);
        }
        let page: AuditPage = decode(&value)?;
        let now = chrono::Utc::now();
        let mut table = Table::new(&["WHEN", "ACTOR", "ACTION", "TARGET", "REASON", "FROM", "SEQ"]);
        for e in &page.entries {
            table.row(vec![
                when(Some(&e.at), now),
                e.actor.clone(),
                e.action.clone(),
                e.target.clone(),
                if e.reason.is_empty() { "-".into() } else { e.reason.clone() },
                if e.source_address.is_empty() { "-".into() } else { e.source_address.clone() },
                e.seq.map_or_else(|| "-".into(), |s| s.to_string()),
            ]);
        }
        table.print_or("no audit entries match");
        if let Some(cursor) = page.next_cursor {
            println!("more entries: add --cursor {cursor}");
        }
        Ok(ExitCode::SUCCESS)
    })
}
