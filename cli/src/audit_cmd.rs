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
    /// Everything on one policy route: denials, TCP flows, live connections
    /// closed.
    #[arg(long)]
    route: Option<String>,
    /// Everything one edge reported (its id, as `portcullis edges` lists it).
    #[arg(long)]
    edge: Option<String>,
    /// The denial an end user was shown this reference for (e.g.
    /// `K7Q2-M9XD-4RTA`, from the page or the `X-Portcullis-Reference`
    /// header): why, on which route, for whom.
    #[arg(long)]
    reference: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    #[arg(long)]
    limit: Option<u32>,
    /// Continue after a previous page (its `next_cursor`).
    #[arg(long, conflicts_with = "follow")]
    cursor: Option<i64>,
    /// Keep printing new entries as they are recorded, oldest first (after
    /// the last `--limit` ones, default 20), until interrupted; with
    /// `--json`, one JSON object per line.
    #[arg(long, short = 'f')]
    follow: bool,
    #[command(flatten)]
    connection: Connection,
}

#[derive(Deserialize)]
struct AuditPage {
    entries: Vec<AuditEntry>,
    next_cursor: Option<i64>,
}

/// How often `--follow` asks for new entries.
const FOLLOW_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

fn line(e: &AuditEntry) -> String {
    let or_dash = |s: &str| if s.is_empty() { "-".to_owned() } else { s.to_owned() };
    format!(
        "{}  {}  {}{}  {}  {}  from {}",
        e.at,
        e.actor,
        e.action,
        times(e),
        e.target,
        or_dash(&e.reason),
        or_dash(&e.source_address)
    )
}

/// ` ×N` for an entry that sums N occurrences.
fn times(e: &AuditEntry) -> String {
    if e.count > 1 {
        format!(" ×{}", e.count)
    } else {
        String::new()
    }
}

/// `--follow`: the last entries, then every new one as it is recorded.
async fn follow(client: &ApiClient, filters: &[(&str, Option<String>)], limit: u32, json: bool) -> anyhow::Result<()> {
    let mut query: Vec<(&str, Option<String>)> = filters.to_vec();
    query.push(("limit", Some(limit.to_string())));
    let page: AuditPage = decode(&client.get("/audit", &query).await?)?;
    let mut after = page.entries.first().map_or(0, |e| e.id);
    let print = |e: &AuditEntry| -> anyhow::Result<()> {
        if json {
            println!("{}", serde_json::to_string(e)?);
        } else {
            println!("{}", line(e));
        }
        Ok(())
    };
    for e in page.entries.iter().rev() {
        print(e)?;
    }
    loop {
        tokio::time::sleep(FOLLOW_EVERY).await;
        let mut query: Vec<(&str, Option<String>)> = filters.to_vec();
        query.push(("after", Some(after.to_string())));
        query.push(("limit", Some("1000".into())));
        let page: AuditPage = decode(&client.get("/audit", &query).await?)?;
        for e in &page.entries {
            print(e)?;
            after = after.max(e.id);
        }
    }
}

/// Runs `portcullis audit`.
pub fn audit(args: AuditArgs) -> anyhow::Result<ExitCode> {
    let since = args.since.as_deref().map(|s| rfc3339_option("since", s)).transpose()?;
    block_on(async move {
        let client = ApiClient::new(&args.connection)?;
        let filters = [
            ("since", since),
            ("actor", args.actor),
            ("action", args.action),
            ("target", args.target),
            ("user", args.user),
            ("session", args.session),
            ("route", args.route),
            ("edge", args.edge),
            ("reference", args.reference),
        ];
        if args.follow {
            follow(&client, &filters, args.limit.unwrap_or(20), args.connection.json).await?;
            return Ok(ExitCode::SUCCESS);
        }
        let mut query = filters.to_vec();
        query.push(("limit", args.limit.map(|l| l.to_string())));
        query.push(("cursor", args.cursor.map(|c| c.to_string())));
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
                format!("{}{}", e.action, times(e)),
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
