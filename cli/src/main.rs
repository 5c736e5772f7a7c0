//! `portcullis`: one command for every part of Portcullis. `main` only parses
//! arguments and dispatches; each subcommand lives in its own module.

#![forbid(unsafe_code)]

mod policy_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Portcullis: an identity-aware proxy with continuous access evaluation.
#[derive(Parser)]
#[command(name = "portcullis", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check policy files and explain decisions.
    #[command(subcommand)]
    Policy(policy_cmd::PolicyCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Policy(command) => policy_cmd::run(command),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
