//! `portcullis sessions list|terminate`: the live session list with filters,
//! and ending one session everywhere (optionally waiting until every
//! connected edge has applied it).

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use portcullis_control_plane::model::SessionView;
use portcullis_control_plane::receipt::{Receipt, RelyingPartyOutcome};
use serde::Deserialize;
use serde_json::json;

use crate::api_client::{block_on, decode, print_json, ApiClient, Connection};
use crate::output::{list, when, Table};

/// Session subcommands.
#[derive(Subcommand)]
pub enum SessionsCommand {
    /// List sessions, newest first.
    List(ListArgs),
    /// End one session on every edge.
    Terminate(TerminateArgs),
}

/// `sessions list` filters.
#[derive(Args)]
pub struct ListArgs {
    /// Sessions of this user (email, case-insensitive).
    #[arg(long, value_name = "EMAIL")]
    user: Option<String>,
    /// Sessions of this route.
    #[arg(long)]
    route: Option<String>,
    /// Active sessions only.
    #[arg(long, conflicts_with = "ended")]
    active: bool,
    /// Ended (terminated, logged out or expired) sessions only.
    #[arg(long)]
    ended: bool,
    /// Sessions served by this edge id.
    #[arg(long)]
    edge: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    #[arg(long)]
    limit: Option<u32>,
    /// Continue after a previous page (its `next_cursor`).
    #[arg(long)]
    cursor: Option<String>,
    #[command(flatten)]
    connection: Connection,
}

/// `sessions terminate` arguments.
#[derive(Args)]
pub struct TerminateArgs {
    /// The session id (32 hex digits, from `sessions list`).
    id: String,
    /// Why: goes to the audit log and the user's denial page.
    #[arg(long)]
    reason: String,
    /// Wait (bounded) until every connected edge has applied it.
    #[arg(long)]
    wait: bool,
    #[command(flatten)]
    connection: Connection,
}

#[derive(Deserialize)]
struct SessionPage {
    sessions: Vec<SessionView>,
    next_cursor: Option<String>,
}

#[derive(Deserialize)]
struct SessionTermination {
    receipt: Receipt,
    session: SessionView,
}

/// Runs a sessions subcommand.
pub fn run(command: SessionsCommand) -> anyhow::Result<ExitCode> {
    match command {
        SessionsCommand::List(args) => block_on(list_sessions(args)),
        SessionsCommand::Terminate(args) => block_on(terminate(args)),
    }
}

async fn list_sessions(args: ListArgs) -> anyhow::Result<ExitCode> {
    let client = ApiClient::new(&args.connection)?;
    let state_filter = if args.active { Some("active".to_owned()) } else { args.ended.then(|| "ended".to_owned()) };
    let query = [
        ("email", args.user),
        ("route", args.route),
        ("state", state_filter),
        ("edge", args.edge),
        ("limit", args.limit.map(|l| l.to_string())),
        ("cursor", args.cursor),
    ];
    let value = client.get("/sessions", &query).await?;
    if args.connection.json {
        print_json(&value)?;
        return Ok(ExitCode::SUCCESS);
    }
    let page: SessionPage = decode(&value)?;
    let now = chrono::Utc::now();
    let mut table = Table::new(&["ID", "USER", "ROUTE", "STATE", "CREATED", "LAST SEEN", "CONNS", "SOURCE"]);
    for s in &page.sessions {
        table.row(vec![
            s.id.clone(),
            s.email.clone(),
            s.route.clone(),
            state(s),
            when(Some(&s.created_at), now),
            when(Some(&s.last_seen_at), now),
            s.live_connections.to_string(),
            list(&s.source_addresses),
        ]);
    }
    table.print_or("no sessions match");
    if let Some(cursor) = page.next_cursor {
        println!("more sessions: add --cursor {cursor}");
    }
    Ok(ExitCode::SUCCESS)
}

/// "active", "locked" (until when), or "ended: <reason>" shortened to fit a table.
fn state(session: &SessionView) -> String {
    if session.state == "active" {
        return match (session.locked, &session.locked_until) {
            (true, Some(until)) => format!("locked until {}", when(Some(until), chrono::Utc::now())),
            (true, None) => "locked".to_owned(),
            (false, _) => session.state.clone(),
        };
    }
    match session.end_reason.as_deref() {
        Some(reason) if reason.chars().count() > 40 => {
            format!("ended: {}…", reason.chars().take(39).collect::<String>())
        }
        Some(reason) => format!("ended: {reason}"),
        None => session.state.clone(),
    }
}

async fn terminate(args: TerminateArgs) -> anyhow::Result<ExitCode> {
    let client = ApiClient::new(&args.connection)?;
    let query: Vec<(&str, String)> = if args.wait { vec![("wait", "true".into())] } else { Vec::new() };
    let path = format!("/sessions/{}/terminate", path_segment(&args.id)?);
    let value = client.post(&path, &query, &json!({ "reason": args.reason })).await?;
    if args.connection.json {
        print_json(&value)?;
        return Ok(ExitCode::SUCCESS);
    }
    let answer: SessionTermination = decode(&value)?;
    let s = &answer.session;
    if answer.receipt.seq.is_none() {
        let reason = s.end_reason.as_deref().unwrap_or("no reason recorded");
        let ended = when(s.ended_at.as_deref(), chrono::Utc::now());
        println!("session {} had already ended {ended}: {reason}; nothing changed", s.id);
    } else {
        println!("terminated session {} ({}, route {})", s.id, s.email, s.route);
        println!("{}", receipt_line(&answer.receipt));
    }
    Ok(ExitCode::SUCCESS)
}

/// Refuses ids that would change the request path.
fn path_segment(id: &str) -> anyhow::Result<&str> {
    let ok = !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    ok.then_some(id).with_context(|| format!("`{id}` is not a session id (32 hex digits, see `sessions list`)"))
}

/// One line saying how far a change has reached the edges.
pub fn receipt_line(r: &Receipt) -> String {
    let mut text = edges_line(r);
    for rp in &r.relying_parties {
        text.push('\n');
        text.push_str(&relying_party_line(rp));
    }
    text
}

/// One relying party's line of a receipt.
pub fn relying_party_line(rp: &RelyingPartyOutcome) -> String {
    let said = match (&rp.error, &rp.detail) {
        (_, Some(detail)) if rp.state == "applied" => format!(": {detail}"),
        (Some(error), _) if rp.state != "applied" => format!(": {error}"),
        _ => String::new(),
    };
    let next = rp
        .next_attempt_at
        .as_deref()
        .map(|at| format!(", next attempt {}", when(Some(at), chrono::Utc::now())))
        .unwrap_or_default();
    format!(
        "  relying party {}: {} after {} attempt(s){said}{next} (delivery {})",
        rp.relying_party, rp.state, rp.attempts, rp.job
    )
}

fn edges_line(r: &Receipt) -> String {
    let change = r.seq.map_or_else(|| "no change".to_owned(), |s| format!("change {s}"));
    let closed = match r.connections_closed {
        1 => "1 live connection closed".to_owned(),
        n => format!("{n} live connections closed"),
    };
    if r.edges_total == 0 {
        format!("durable ({change}); no edge is connected right now")
    } else if !r.waited {
        format!(
            "durable ({change}); {} of {} connected edges applied it so far (add --wait to wait for all)",
            r.edges_applied, r.edges_total
        )
    } else if r.complete {
        format!("durable ({change}); applied by all {} connected edges in {} ms, {closed}", r.edges_total, r.elapsed_ms)
    } else {
        format!(
            "durable ({change}); only {} of {} connected edges applied it within {} ms, {closed}",
            r.edges_applied, r.edges_total, r.elapsed_ms
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receipt(waited: bool, applied: u32, total: u32) -> Receipt {
        Receipt {
            seq: Some(7),
            durable: true,
            waited,
            complete: applied >= total,
            edges_applied: applied,
            edges_total: total,
            connections_closed: 3,
            elapsed_ms: 12,
            relying_parties: Vec::new(),
        }
    }

    #[test]
    fn each_relying_party_gets_a_line() {
        let mut r = receipt(true, 1, 1);
        r.relying_parties.push(RelyingPartyOutcome {
            relying_party: "okta".into(),
            job: "j1".into(),
            state: "retrying".into(),
            attempts: 1,
            error: Some("429 Too Many Requests: slow down".into()),
            detail: None,
            finished_at: None,
            next_attempt_at: Some("2026-12-02T15:00:01.000Z".into()),
        });
        let text = receipt_line(&r);
        let line = text.lines().nth(1).unwrap_or_default();
        assert!(
            line.starts_with(
                "  relying party okta: retrying after 1 attempt(s): 429 Too Many Requests: slow down, next attempt "
            ),
            "{text}"
        );
        assert!(line.ends_with(" (2026-12-02 15:00:01Z) (delivery j1)"), "times as everywhere in the CLI: {text}");
    }

    #[test]
    fn receipts_read_as_sentences() {
        assert_eq!(receipt_line(&receipt(false, 0, 0)), "durable (change 7); no edge is connected right now");
        assert!(receipt_line(&receipt(false, 1, 2)).contains("1 of 2 connected edges applied it so far"));
        assert_eq!(
            receipt_line(&receipt(true, 2, 2)),
            "durable (change 7); applied by all 2 connected edges in 12 ms, 3 live connections closed"
        );
        assert!(receipt_line(&receipt(true, 1, 2)).contains("only 1 of 2"));
    }

    #[test]
    fn session_ids_stay_in_their_path_segment() {
        assert!(path_segment("0123456789abcdef0123456789abcdef").is_ok());
        assert!(path_segment("../users/terminate").is_err());
        assert!(path_segment("").is_err());
    }
}
