//! `portcullis edges [list]` (enrolled edges, connected or stale, how far
//! behind), `portcullis edges join-token` (a one-time token a new edge
//! enrolls with) and `portcullis edges revoke EDGE --reason …` (cut an edge
//! off at once; its id never enrolls again).

use std::process::ExitCode;

use anyhow::bail;
use clap::{Args, Subcommand};
use portcullis_control_plane::model::EdgeView;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api_client::{block_on, decode, print_json, ApiClient, Connection};
use crate::output::{when, Table};

/// `edges` options: a subcommand, or the list.
#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct EdgesArgs {
    #[command(subcommand)]
    command: Option<EdgesCommand>,
    #[command(flatten)]
    connection: Connection,
}

/// Edge subcommands.
#[derive(Subcommand)]
pub enum EdgesCommand {
    /// List the edges: enrolled, connected or stale, revoked (the default).
    List(ListArgs),
    /// Create a one-time join token a new edge enrolls with (shown once).
    JoinToken(JoinTokenArgs),
    /// Revoke an edge: its calls are refused and its stream cut at once; its id never enrolls again.
    Revoke(RevokeArgs),
}

/// `edges list` options.
#[derive(Args)]
pub struct ListArgs {
    #[command(flatten)]
    connection: Connection,
}

/// `edges join-token` options.
#[derive(Args)]
pub struct JoinTokenArgs {
    /// Display name of the new edge.
    #[arg(long)]
    name: Option<String>,
    /// The id the edge must enroll as (default: any id not enrolled yet).
    #[arg(long)]
    edge_id: Option<String>,
    /// How long the token works: seconds, or with a unit (30m, 1h, 24h at most; default 1h).
    #[arg(long)]
    ttl: Option<String>,
    #[command(flatten)]
    connection: Connection,
}

/// `edges revoke` options.
#[derive(Args)]
pub struct RevokeArgs {
    /// The edge's id.
    edge: String,
    /// Why: goes to the audit log.
    #[arg(long)]
    reason: String,
    #[command(flatten)]
    connection: Connection,
}

#[derive(Deserialize)]
struct CreatedJoinToken {
    id: String,
    token: String,
    edge_id: Option<String>,
    expires_at: String,
}

/// Seconds in `text`: `90`, `90s`, `30m`, `1h`.
fn ttl_seconds(text: &str) -> anyhow::Result<u64> {
    let text = text.trim();
    let (number, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((at, _)) => text.split_at(at),
        None => (text, "s"),
    };
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => bail!("--ttl: expected seconds or a number with s, m or h (e.g. 1h), found `{text}`"),
    };
    match number.parse::<u64>() {
        Ok(n) => Ok(n.saturating_mul(scale)),
        Err(_) => bail!("--ttl: expected seconds or a number with s, m or h (e.g. 1h), found `{text}`"),
    }
}

/// Runs `portcullis edges …`.
pub fn run(args: EdgesArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        None => list(args.connection),
        Some(EdgesCommand::List(list_args)) => list(list_args.connection),
        Some(EdgesCommand::JoinToken(args)) => join_token(args),
        Some(EdgesCommand::Revoke(args)) => revoke(args),
    }
}

fn list(connection: Connection) -> anyhow::Result<ExitCode> {
    block_on(async move {
        let client = ApiClient::new(&connection)?;
        let value = client.get("/edges", &[]).await?;
        if connection.json {
            print_json(&value)?;
            return Ok(ExitCode::SUCCESS);
        }
        let edges: Vec<EdgeView> = decode(&value)?;
        let now = chrono::Utc::now();
        let mut table = Table::new(&["ID", "NAME", "STATE", "APPLIED", "LAG", "CONNS", "LAST REPORT", "ENROLLED"]);
        for e in &edges {
            table.row(vec![
                e.id.clone(),
                e.name.clone(),
                e.state.clone(),
                e.applied_seq.to_string(),
                e.lag.to_string(),
                e.live_connections.to_string(),
                when(e.last_heartbeat_at.as_deref(), now),
                when(e.enrolled_at.as_deref(), now),
            ]);
        }
        table.print_or("no edge has enrolled or reported yet");
        for e in edges.iter().filter(|e| e.revoked_at.is_some()) {
            let by = e.revoked_by.as_deref().unwrap_or("?");
            let why = e.revoke_reason.as_deref().unwrap_or("");
            println!("{} revoked {} by {by}: {why}", e.id, when(e.revoked_at.as_deref(), now));
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn join_token(args: JoinTokenArgs) -> anyhow::Result<ExitCode> {
    let ttl = args.ttl.as_deref().map(ttl_seconds).transpose()?;
    block_on(async move {
        let client = ApiClient::new(&args.connection)?;
        let body = json!({ "name": args.name, "edge_id": args.edge_id, "ttl": ttl });
        let value = client.post("/edges/join-tokens", &[], &body).await?;
        if args.connection.json {
            print_json(&value)?;
            return Ok(ExitCode::SUCCESS);
        }
        let created: CreatedJoinToken = decode(&value)?;
        println!("{}", created.token);
        let edge = created.edge_id.map_or_else(|| "one new edge".to_owned(), |id| format!("edge `{id}`"));
        eprintln!(
            "join token {} for {edge}, works once until {}; shown only now.\n\
             Give it to the edge as join_token (PORTCULLIS_JOIN_TOKEN) with a credential_file to keep its key in.",
            created.id,
            when(Some(&created.expires_at), chrono::Utc::now())
        );
        Ok(ExitCode::SUCCESS)
    })
}

fn revoke(args: RevokeArgs) -> anyhow::Result<ExitCode> {
    let id = &args.edge;
    let plain = id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if id.is_empty() || id.len() > 64 || !plain || id.bytes().all(|b| b == b'.') {
        bail!("`{id}` is not an edge id (letters, digits, `-`, `_`, `.`; up to 64)");
    }
    block_on(async move {
        let client = ApiClient::new(&args.connection)?;
        let path = format!("/edges/{}/revoke", args.edge);
        let value: Value = client.post(&path, &[], &json!({ "reason": args.reason })).await?;
        if args.connection.json {
            print_json(&value)?;
            return Ok(ExitCode::SUCCESS);
        }
        let edge: EdgeView = decode(&value)?;
        println!(
            "edge {} revoked {} by {}: its calls are refused and its stream is cut",
            edge.id,
            when(edge.revoked_at.as_deref(), chrono::Utc::now()),
            edge.revoked_by.as_deref().unwrap_or("?")
        );
        Ok(ExitCode::SUCCESS)
    })
}

#[cfg(test)]
mod tests {
    use super::ttl_seconds;

    #[test]
    fn ttl_units() {
        assert_eq!(ttl_seconds("90").unwrap(), 90);
        assert_eq!(ttl_seconds("30m").unwrap(), 1800);
        assert_eq!(ttl_seconds("1h").unwrap(), 3600);
        assert!(ttl_seconds("1d").is_err());
        assert!(ttl_seconds("h").is_err());
    }
}
