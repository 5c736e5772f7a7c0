//! `portcullis control-plane --config FILE`: reads the configuration (file
//! plus `PORTCULLIS_…` overrides) and runs the control plane. A bad
//! configuration exits with status 64 and names the key.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use portcullis_control_plane::config::KEYS;
use portcullis_control_plane::server::ServeError;
use portcullis_control_plane::Config;

use crate::config_file;

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

/// Runs the control plane until Ctrl-C or SIGTERM.
pub fn run(args: ControlPlaneArgs) -> anyhow::Result<ExitCode> {
    if args.help_config {
        config_file::print_keys(KEYS);
        return Ok(ExitCode::SUCCESS);
    }
    let text = match config_file::read(args.config.as_deref()) {
        Ok(text) => text,
        Err(code) => return Ok(code),
    };
    let config = match Config::load(&text, |name| std::env::var(name).ok()) {
        Ok(config) => config,
        Err(error) => return Ok(config_file::invalid(error)),
    };
    crate::init_logging(config.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match runtime.block_on(portcullis_control_plane::run(config)) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        // An unusable TLS certificate or key is a configuration error too.
        Err(ServeError::Config(error)) => Ok(config_file::invalid(error)),
        Err(error) => Err(error.into()),
    }
}
