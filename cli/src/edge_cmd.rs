//! `portcullis edge --config FILE`: reads the edge configuration (file plus
//! `PORTCULLIS_…` overrides) and runs the edge. A bad configuration exits
//! with status 64 and names the key.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use portcullis_edge::config::{EdgeConfig, KEYS};

use crate::config_file;

/// Edge options.
#[derive(Args)]
pub struct EdgeArgs {
    /// TOML configuration file (optional; every key can come from PORTCULLIS_<KEY>).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Print every configuration key with its documentation and exit.
    #[arg(long)]
    help_config: bool,
}

/// Runs the edge; returns only on a configuration or start-up error.
pub fn run(args: EdgeArgs) -> anyhow::Result<ExitCode> {
    if args.help_config {
        config_file::print_keys(KEYS);
        return Ok(ExitCode::SUCCESS);
    }
    let text = match config_file::read(args.config.as_deref()) {
        Ok(text) => text,
        Err(code) => return Ok(code),
    };
    let config = match EdgeConfig::load(&text, |name| std::env::var(name).ok()) {
        Ok(config) => config,
        Err(error) => return Ok(config_file::invalid(error)),
    };
    crate::init_logging(config.log_format);
    portcullis_edge::server::run(config)?;
    Ok(ExitCode::SUCCESS)
}
