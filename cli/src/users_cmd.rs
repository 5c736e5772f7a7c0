//! `portcullis users terminate|lock|unlock|status EMAIL`: "give me an email,
//! end everything", and locks that deny a user everywhere until lifted (an
//! unlock ends the user's sessions unless told to keep them).

use std::process::ExitCode;

use clap::{Args, Subcommand};
use portcullis_control_plane::receipt::Receipt;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api_client::{block_on, decode, print_json, ApiClient, Connection};
use crate::output::{rfc3339_option, when};
use crate::sessions_cmd::receipt_line;

/// Reason recorded for a lock when `--reason` is not given (the API requires one).
pub const DEFAULT_LOCK_REASON: &str = "locked with `portcullis users lock` (no reason given)";

/// User subcommands.
#[derive(Subcommand)]
pub enum UsersCommand {
    /// End every session of the user and invalidate every token issued to them until now.
    Terminate(TerminateArgs),
    /// Lock the user: denied everywhere, live connections closed, until unlocked.
    Lock(LockArgs),
    /// Lift a lock; also ends every session of the user unless --keep-sessions.
    Unlock(UnlockArgs),
    /// Whether the user is locked, why and until when.
    Status(StatusArgs),
}

/// `users terminate` arguments.
#[derive(Args)]
pub struct TerminateArgs {
    /// The user's email.
    email: String,
    /// Why: goes to the audit log.
    #[arg(long)]
    reason: String,
    /// Wait (bounded) until every connected edge has applied it.
    #[arg(long)]
    wait: bool,
    #[command(flatten)]
    connection: Connection,
}

/// `users lock` arguments.
#[derive(Args)]
pub struct LockArgs {
    /// The user's email.
    email: String,
    /// Why: goes to the audit log.
    #[arg(long)]
    reason: Option<String>,
    /// When the lock lifts by itself (RFC 3339); default: until unlocked.
    #[arg(long)]
    until: Option<String>,
    /// Wait (bounded) until every connected edge has applied it.
    #[arg(long)]
    wait: bool,
    #[command(flatten)]
    connection: Connection,
}

/// `users unlock` arguments.
#[derive(Args)]
pub struct UnlockArgs {
    /// The user's email.
    email: String,
    /// Why: goes to the audit log (default "unlocked").
    #[arg(long)]
    reason: Option<String>,
    /// Keep the user's sessions (the lock suspended them; they come back).
    /// Default: end them and invalidate their tokens, as `users terminate`.
    #[arg(long)]
    keep_sessions: bool,
    /// Wait (bounded) until every connected edge has applied it.
    #[arg(long)]
    wait: bool,
    #[command(flatten)]
    connection: Connection,
}

/// `users status` arguments.
#[derive(Args)]
pub struct StatusArgs {
    /// The user's email.
    email: String,
    #[command(flatten)]
    connection: Connection,
}

#[derive(Deserialize)]
struct LockStatus {
    user: String,
    locked: bool,
    reason: Option<String>,
    #[serde(default)]
    until: Option<String>,
}

#[derive(Deserialize)]
struct UserActionAnswer {
    user: String,
    sessions_ended: usize,
    receipt: Receipt,
}

/// Runs a users subcommand.
pub fn run(command: UsersCommand) -> anyhow::Result<ExitCode> {
    match command {
        UsersCommand::Terminate(args) => {
            let body = json!({ "email": args.email, "reason": args.reason });
            block_on(act(args.connection, "terminate", body, args.wait))
        }
        UsersCommand::Lock(args) => {
            let until = args.until.as_deref().map(|u| rfc3339_option("until", u)).transpose()?;
            let reason = args.reason.unwrap_or_else(|| DEFAULT_LOCK_REASON.to_owned());
            let mut body = json!({ "email": args.email, "reason": reason });
            if let Some(until) = until {
                body["until"] = Value::String(until);
            }
            block_on(act(args.connection, "lock", body, args.wait))
        }
        UsersCommand::Unlock(args) => {
            let mut body = json!({ "email": args.email });
            if let Some(reason) = args.reason {
                body["reason"] = Value::String(reason);
            }
            if args.keep_sessions {
                body["keep_sessions"] = Value::Bool(true);
            }
            block_on(act(args.connection, "unlock", body, args.wait))
        }
        UsersCommand::Status(args) => block_on(status(args)),
    }
}

async fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let client = ApiClient::new(&args.connection)?;
    let value = client.get("/users/lock", &[("email", Some(args.email))]).await?;
    if args.connection.json {
        print_json(&value)?;
        return Ok(ExitCode::SUCCESS);
    }
    let lock: LockStatus = decode(&value)?;
    let user = lock.user.strip_prefix("email:").unwrap_or(&lock.user);
    if !lock.locked {
        println!("{user} is not locked");
        return Ok(ExitCode::SUCCESS);
    }
    let until = lock
        .until
        .as_deref()
        .map_or_else(|| "until unlocked".to_owned(), |u| format!("until {}", when(Some(u), chrono::Utc::now())));
    println!("{user} is locked {until}: {}", lock.reason.as_deref().unwrap_or("no reason given"));
    Ok(ExitCode::SUCCESS)
}

async fn act(connection: Connection, action: &str, body: Value, wait: bool) -> anyhow::Result<ExitCode> {
    let client = ApiClient::new(&connection)?;
    let query: Vec<(&str, String)> = if wait { vec![("wait", "true".into())] } else { Vec::new() };
    let value = client.post(&format!("/users/{action}"), &query, &body).await?;
    if connection.json {
        print_json(&value)?;
        return Ok(ExitCode::SUCCESS);
    }
    let answer: UserActionAnswer = decode(&value)?;
    let user = answer.user.strip_prefix("email:").unwrap_or(&answer.user);
    let sessions = if answer.sessions_ended == 1 { "session" } else { "sessions" };
    match action {
        "terminate" => {
            println!(
                "ended {} {sessions} of {user}; tokens issued to them until now are invalid",
                answer.sessions_ended
            );
        }
        "lock" => match body.get("until").and_then(Value::as_str) {
            Some(until) => println!("locked {user} until {}", when(Some(until), chrono::Utc::now())),
            None => println!("locked {user} until unlocked"),
        },
        _ if body.get("keep_sessions").is_some() => println!("unlocked {user}; kept their sessions"),
        _ => println!(
            "unlocked {user}; ended {} {sessions} of theirs; tokens issued to them until now are invalid",
            answer.sessions_ended
        ),
    }
    println!("{}", receipt_line(&answer.receipt));
    Ok(ExitCode::SUCCESS)
}
