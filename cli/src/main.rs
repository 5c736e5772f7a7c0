//! `portcullis`: one command for every part of Portcullis. `main` only parses
//! arguments and dispatches; each subcommand lives in its own module (admin
//! commands by noun, all sharing the API client in `api_client`).

#![forbid(unsafe_code)]

mod api_client;
mod audit_cmd;
mod config_file;
mod connect_cmd;
mod control_plane_cmd;
mod deliveries_cmd;
mod edge_cmd;
mod edges_cmd;
mod keys_cmd;
mod output;
mod policy_apply;
mod policy_cmd;
mod quickstart;
mod sessions_cmd;
mod tls_roots;
mod users_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc rather than glibc's malloc: see the `mimalloc` feature in
/// `cli/Cargo.toml` and benches/RESULTS.md for what it gives.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Run an edge proxy node (pingora): checks every request, kills live connections.
    Edge(edge_cmd::EdgeArgs),
    /// List and terminate sessions (admin API; needs PORTCULLIS_TOKEN).
    #[command(subcommand)]
    Sessions(sessions_cmd::SessionsCommand),
    /// End every session of a user, lock and unlock users (admin API).
    #[command(subcommand)]
    Users(users_cmd::UsersCommand),
    /// Read the audit log: who did what, when, why, from where (admin API).
    Audit(audit_cmd::AuditArgs),
    /// Edges: list them (connected, stale, revoked), make join tokens, revoke (admin API).
    Edges(edges_cmd::EdgesArgs),
    /// Sign-outs sent to relying parties (Okta, Slack, webhooks…): list, retry (admin API).
    #[command(subcommand)]
    Deliveries(deliveries_cmd::DeliveriesCommand),
    /// Session-signing keys: list, rotate, revoke a leaked one (admin API).
    #[command(subcommand)]
    Keys(keys_cmd::KeysCommand),
    /// Reach a TCP route (SSH, a database) through an edge as the logged-in user;
    /// e.g. `ssh -o ProxyCommand='portcullis connect %h:%p' host`.
    Connect(connect_cmd::ConnectArgs),
    /// Everything on this machine in one command: control plane, edge, demo app, development IdP.
    Quickstart(quickstart::QuickstartArgs),
    /// The quickstart's demo upstream app on its own (identity headers, websocket echo, slow download).
    DemoApp(quickstart::demo_app::DemoAppArgs),
}

/// Starts logging to standard error: `PORTCULLIS_LOG` filters (default
/// `info`); `json` writes one JSON object per line. The servers call it once
/// their configuration (and its `log_format`) is read; every other command
/// at once.
pub fn init_logging(format: portcullis_settings::LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PORTCULLIS_LOG").unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        portcullis_settings::LogFormat::Json => builder.json().with_current_span(false).try_init(),
        // Colour for a terminal only: logs written to files stay plain text.
        portcullis_settings::LogFormat::Text => {
            builder.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).try_init()
        }
    };
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::ControlPlane(_) | Command::Edge(_)) {
        init_logging(portcullis_settings::LogFormat::Text);
    }
    let result = match cli.command {
        Command::Policy(command) => policy_cmd::run(command),
        Command::ControlPlane(args) => control_plane_cmd::run(args),
        Command::Edge(args) => edge_cmd::run(args),
        Command::Sessions(command) => sessions_cmd::run(command),
        Command::Users(command) => users_cmd::run(command),
        Command::Audit(args) => audit_cmd::audit(args),
        Command::Edges(args) => edges_cmd::run(args),
        Command::Keys(command) => keys_cmd::run(command),
        Command::Deliveries(command) => deliveries_cmd::run(command),
        Command::Connect(args) => connect_cmd::run(args),
        Command::Quickstart(args) => quickstart::run(args),
        Command::DemoApp(args) => quickstart::demo_app::run(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
