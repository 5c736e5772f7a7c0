//! `portcullis`: one command for every part of Portcullis. `main` only parses
//! arguments and dispatches; each subcommand lives in its own module.

#![forbid(unsafe_code)]

mod control_plane_cmd;
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
    /// Run the control plane (admin API, session authority, edge channel).
    ControlPlane(control_plane_cmd::ControlPlaneArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PORTCULLIS_LOG").unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Policy(command) => policy_cmd::run(command),
        Command::ControlPlane(args) => control_plane_cmd::run(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
