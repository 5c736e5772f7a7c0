//! `portcullis policy apply FILE -m MESSAGE`: sends a policy document to the
//! control plane, which compiles it and makes it the version in force. A
//! document that does not compile changes nothing; its problems are printed
//! as `FILE:LINE:COL: error: MESSAGE`, like `policy check`. An applied one
//! is followed by its receipt, as a termination is: how many connected edges
//! applied it (all of them, with `--wait`) and how many live connections they
//! closed because the new policy no longer allows them.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use reqwest::{header, Method, StatusCode};
use serde::Deserialize;

use portcullis_control_plane::receipt::Receipt;

use crate::api_client::{block_on, decode, print_json, ApiClient, ApiFailure, Connection};
use crate::sessions_cmd::receipt_line;

/// `policy apply` arguments.
#[derive(Args)]
pub struct ApplyArgs {
    /// The policy file (YAML).
    file: PathBuf,
    /// Why: stored with the version and in the audit log.
    #[arg(short = 'm', long)]
    message: String,
    /// Wait (bounded) until every connected edge has applied it.
    #[arg(long)]
    wait: bool,
    #[command(flatten)]
    connection: Connection,
}

#[derive(Deserialize)]
struct Applied {
    version: i64,
    seq: u64,
    receipt: Receipt,
}

#[derive(Deserialize)]
struct Problem {
    line: u32,
    column: u32,
    message: String,
}

#[derive(Deserialize)]
struct Rejected {
    problems: Vec<Problem>,
}

/// Runs `policy apply`.
pub fn run(args: ApplyArgs) -> anyhow::Result<ExitCode> {
    let document =
        std::fs::read_to_string(&args.file).with_context(|| format!("cannot read {}", args.file.display()))?;
    block_on(apply(args, document))
}

async fn apply(args: ApplyArgs, document: String) -> anyhow::Result<ExitCode> {
    let client = ApiClient::new(&args.connection)?;
    let request = client
        .request(Method::PUT, "/policy")
        .query(&[("message", args.message.as_str())])
        .query(&[("wait", args.wait)])
        .header(header::CONTENT_TYPE, "application/yaml")
        .body(document);
    let value = match client.send(request).await {
        Ok(value) => value,
        Err(error) => return rejected(&args, error),
    };
    if args.connection.json {
        print_json(&value)?;
    } else {
        let applied: Applied = decode(&value)?;
        println!("applied {} as policy version {} (change {})", args.file.display(), applied.version, applied.seq);
        println!("{}", receipt_line(&applied.receipt));
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints a rejected document's problems with their positions; any other error passes through.
fn rejected(args: &ApplyArgs, error: anyhow::Error) -> anyhow::Result<ExitCode> {
    let Some(failure) = error.downcast_ref::<ApiFailure>() else { return Err(error) };
    let Some(body) = failure.body.as_ref().filter(|_| failure.status == StatusCode::UNPROCESSABLE_ENTITY) else {
        return Err(error);
    };
    let Ok(rejected) = serde_json::from_value::<Rejected>(body.clone()) else { return Err(error) };
    if args.connection.json {
        print_json(body)?;
        return Ok(ExitCode::FAILURE);
    }
    let file = args.file.display();
    for p in &rejected.problems {
        eprintln!("{file}:{}:{}: error: {}", p.line, p.column, p.message);
    }
    let count = rejected.problems.len();
    eprintln!(
        "error: {file} was not applied ({count} error{}); the policy in force is unchanged",
        if count == 1 { "" } else { "s" }
    );
    Ok(ExitCode::FAILURE)
}
