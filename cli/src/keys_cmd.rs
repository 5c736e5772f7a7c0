//! `portcullis keys list|rotate|revoke`: the control plane's
//! session-signing keys. `revoke KID` is the emergency brake for a leaked
//! key: every session it signed ends at once on every edge (their users log
//! in again), unlike `rotate`, which lets the old key's sessions run out.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use portcullis_control_plane::api::keys::{KeyRevocation, Rotated, SigningKeyView};
use serde_json::json;

use crate::api_client::{block_on, decode, print_json, ApiClient, Connection};
use crate::output::{when, Table};
use crate::sessions_cmd::receipt_line;

/// Key subcommands.
#[derive(Subcommand)]
pub enum KeysCommand {
    /// List the session-signing keys: current, retired (still verifying) and revoked.
    List(ListArgs),
    /// Make a new key current; sessions signed by the old one keep working until they expire.
    Rotate(ListArgs),
    /// Revoke a key now (it leaked): every session it signed ends on every edge.
    Revoke(RevokeArgs),
}

/// `keys list` / `keys rotate` arguments.
#[derive(Args)]
pub struct ListArgs {
    #[command(flatten)]
    connection: Connection,
}

/// `keys revoke` arguments.
#[derive(Args)]
pub struct RevokeArgs {
    /// The key id (`kid`), from `portcullis keys list`.
    kid: String,
    /// Why: goes to the audit log.
    #[arg(long)]
    reason: String,
    /// Wait (bounded) until every connected edge has applied it.
    #[arg(long)]
    wait: bool,
    #[command(flatten)]
    connection: Connection,
}

/// Runs a keys subcommand.
pub fn run(command: KeysCommand) -> anyhow::Result<ExitCode> {
    block_on(async move {
        match command {
            KeysCommand::List(args) => list(args.connection).await,
            KeysCommand::Rotate(args) => {
                let client = ApiClient::new(&args.connection)?;
                let value = client.post("/signing-keys/rotate", &[], &json!({})).await?;
                if args.connection.json {
                    print_json(&value)?;
                } else {
                    let rotated: Rotated = decode(&value)?;
                    println!("rotated the session-signing key (change {})", rotated.seq);
                }
                Ok(ExitCode::SUCCESS)
            }
            KeysCommand::Revoke(args) => {
                let client = ApiClient::new(&args.connection)?;
                let query: Vec<(&str, String)> = if args.wait { vec![("wait", "true".into())] } else { Vec::new() };
                let path = format!("/signing-keys/{}/revoke", args.kid);
                let value = client.post(&path, &query, &json!({ "reason": args.reason })).await?;
                if args.connection.json {
                    print_json(&value)?;
                    return Ok(ExitCode::SUCCESS);
                }
                let revoked: KeyRevocation = decode(&value)?;
                println!(
                    "revoked key {}: every session it signed is refused on every edge; new sessions are signed with {}",
                    revoked.kid, revoked.current_kid
                );
                println!("{}", receipt_line(&revoked.receipt));
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}

async fn list(connection: Connection) -> anyhow::Result<ExitCode> {
    let client = ApiClient::new(&connection)?;
    let value = client.get("/signing-keys", &[]).await?;
    if connection.json {
        print_json(&value)?;
        return Ok(ExitCode::SUCCESS);
    }
    let keys: Vec<SigningKeyView> = decode(&value)?;
    let now = chrono::Utc::now();
    let mut table = Table::new(&["KID", "ALG", "STATE", "CREATED", "RETIRED", "REVOKED"]);
    for key in &keys {
        let state = match (key.current, &key.revoked_at) {
            (_, Some(_)) => "revoked",
            (true, None) => "current",
            (false, None) => "retired",
        };
        table.row(vec![
            key.kid.clone(),
            key.alg.clone(),
            state.into(),
            when(Some(&key.created_at), now),
            when(key.retired_at.as_deref(), now),
            when(key.revoked_at.as_deref(), now),
        ]);
    }
    table.print_or("no signing keys");
    Ok(ExitCode::SUCCESS)
}
