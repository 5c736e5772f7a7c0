//! `portcullis edge --config FILE`: reads the edge configuration (file plus
//! `PORTCULLIS_…` overrides) and runs the edge. A bad configuration exits
//! with status 64 and names the key.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use portcullis_edge::config::{EdgeConfig, KEYS};

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

const EXIT_CONFIG: u8 = 64;

/// Runs the edge; returns only on a configuration or start-up error.
pub fn run(args: EdgeArgs) -> anyhow::Result<ExitCode> {
    if args.help_config {
        for (key, doc) in KEYS {
            println!("{key:<20} {doc}\n{:<20} env: PORTCULLIS_{}", "", key.to_ascii_uppercase());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let text = match &args.config {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) => {
                eprintln!("error: cannot read {}: {error}", path.display());
                return Ok(ExitCode::from(EXIT_CONFIG));
            }
        },
        None => String::new(),
    };
    let config = match EdgeConfig::load(&text, |name| std::env::var(name).ok()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
    };
    portcullis_edge::server::run(config)?;
    Ok(ExitCode::SUCCESS)
}
