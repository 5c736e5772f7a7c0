//! What `portcullis control-plane` and `portcullis edge` share: printing the
//! documented configuration keys, and reading the optional TOML file. Both
//! exit with status 64 on a configuration problem.

use std::path::Path;
use std::process::ExitCode;

/// Exit status for a configuration error (sysexits' EX_USAGE).
pub const EXIT_CONFIG: u8 = 64;

/// Prints every key with its documentation and environment variable.
pub fn print_keys(keys: &[(&str, &str)]) {
    for (key, doc) in keys {
        println!("{key:<22} {doc}\n{:<22} env: PORTCULLIS_{}", "", key.to_ascii_uppercase());
    }
}

/// The file's text (empty without a file), or the exit code after saying why.
pub fn read(path: Option<&Path>) -> Result<String, ExitCode> {
    match path {
        Some(path) => std::fs::read_to_string(path).map_err(|error| {
            eprintln!("error: cannot read {}: {error}", path.display());
            ExitCode::from(EXIT_CONFIG)
        }),
        None => Ok(String::new()),
    }
}

/// Reports a configuration error and returns the exit code.
pub fn invalid(error: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {error}");
    ExitCode::from(EXIT_CONFIG)
}
