//! `portcullis deliveries list|retry`: what each relying party answered to
//! the sign-outs terminations sent it, and retrying a failed or dead one
//! once its cause (credentials, scopes) is fixed.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use portcullis_control_plane::api::deliveries::DeliveryView;
use serde_json::json;

use crate::api_client::{block_on, decode, print_json, ApiClient, Connection};
use crate::output::{when, Table};
use crate::sessions_cmd::relying_party_line;

/// Delivery subcommands.
#[derive(Subcommand)]
pub enum DeliveriesCommand {
    /// List sign-outs sent to relying parties, newest first.
    List(ListArgs),
    /// Try a failed or dead delivery again.
    Retry(RetryArgs),
}

/// `deliveries list` arguments.
#[derive(Args)]
pub struct ListArgs {
    /// Only this user's (email).
    #[arg(long, conflicts_with = "sub")]
    email: Option<String>,
    /// Only this user's (IdP subject).
    #[arg(long)]
    sub: Option<String>,
    /// Only in this state: pending, applied, failed, dead.
    #[arg(long)]
    state: Option<String>,
    /// At most this many.
    #[arg(long, default_value_t = 100)]
    limit: u32,
    #[command(flatten)]
    connection: Connection,
}

/// `deliveries retry` arguments.
#[derive(Args)]
pub struct RetryArgs {
    /// The delivery id, from `portcullis deliveries list`.
    id: String,
    #[command(flatten)]
    connection: Connection,
}

/// Runs a deliveries subcommand.
pub fn run(command: DeliveriesCommand) -> anyhow::Result<ExitCode> {
    block_on(async move {
        match command {
            DeliveriesCommand::List(args) => {
                let client = ApiClient::new(&args.connection)?;
                let query = [
                    ("limit", Some(args.limit.to_string())),
                    ("email", args.email),
                    ("sub", args.sub),
                    ("state", args.state),
                ];
                let value = client.get("/deliveries", &query).await?;
                if args.connection.json {
                    print_json(&value)?;
                    return Ok(ExitCode::SUCCESS);
                }
                let deliveries: Vec<DeliveryView> = decode(&value)?;
                let now = chrono::Utc::now();
                let mut table =
                    Table::new(&["ID", "RELYING PARTY", "USER", "ACTION", "STATE", "TRIES", "SENT", "ANSWER"]);
                for d in &deliveries {
                    table.row(vec![
                        d.outcome.job.clone(),
                        d.outcome.relying_party.clone(),
                        d.user.clone().unwrap_or_default(),
                        d.action.clone().unwrap_or_default(),
                        d.outcome.state.clone(),
                        d.outcome.attempts.to_string(),
                        when(Some(&d.created_at), now),
                        // The relying party's last words: its remark once applied, else its error.
                        if d.outcome.state == "applied" {
                            d.outcome.detail.clone().unwrap_or_default()
                        } else {
                            d.outcome.error.clone().unwrap_or_default()
                        },
                    ]);
                }
                table.print_or("no deliveries");
                Ok(ExitCode::SUCCESS)
            }
            DeliveriesCommand::Retry(args) => {
                let client = ApiClient::new(&args.connection)?;
                let value = client.post(&format!("/deliveries/{}/retry", args.id), &[], &json!({})).await?;
                if args.connection.json {
                    print_json(&value)?;
                    return Ok(ExitCode::SUCCESS);
                }
                let delivery: DeliveryView = decode(&value)?;
                println!("queued again:\n{}", relying_party_line(&delivery.outcome));
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}
