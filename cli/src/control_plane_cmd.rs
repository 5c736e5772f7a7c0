//! `portcullis control-plane --config FILE`: reads the configuration (file
//! plus `PORTCULLIS_…` overrides) and runs the control plane. A bad
//! configuration exits with status 64 and names the key.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use portcullis_control_plane::config::KEYS;
use portcullis_control_plane::Config;

/// Control-plane options.
#[derive(Args)]
pub struct ControlPlaneArgs {
    /// TOML configuration file (optional; every key can come from PORTCULLIS_<KEY>).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Print every configuration key with its documentation and exit.
    #[arg(long)]
    help_config: bool,
}

/// Exit status for a configuration error (EX_CONFIG-like usage error).
const EXIT_CONFIG: u8 = 64;

/// Runs the control plane until Ctrl-C or SIGTERM.
pub fn run(args: ControlPlaneArgs) -> anyhow::Result<ExitCode> {
    if args.help_config {
        for (key, doc) in KEYS {
            println!("{key:<22} {doc}\n{:<22} env: PORTCULLIS_{}", "", key.to_ascii_uppercase());
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
    let config = match Config::load(&text, |name| std::env::var(name).ok()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(portcullis_control_plane::run(config))?;
    Ok(ExitCode::SUCCESS)
}
