//! HAProxy as a plain reverse proxy for the edge-vs-nginx harness (Debian's
//! `haproxy` package, run in the foreground with its config in the harness's
//! temp dir): one process with `nbthread` threads (the other proxies' worker
//! count), HTTP mode, keep-alive on both sides, idle upstream connections
//! shared between client connections (`http-reuse always`), no log lines.
//! Stopped with SIGTERM (immediate stop) on drop.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Result};

use crate::processes::{self, WorkDir};

/// The haproxy binary: on `PATH`, or Debian's `/usr/sbin/haproxy`.
pub fn binary() -> Result<PathBuf> {
    match processes::find_program("haproxy", "/usr/sbin/haproxy") {
        Some(path) => Ok(path),
        None => bail!("haproxy is not installed (run scripts/bench-setup.sh)"),
    }
}

/// A running haproxy.
pub struct Haproxy {
    process: processes::Process,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl Haproxy {
    /// The reverse proxy to `127.0.0.1:upstream` with `threads` threads.
    pub fn start(binary: &Path, dir: &WorkDir, threads: usize, upstream: u16) -> Result<Self> {
        let port = processes::free_port()?;
        // No `log` line anywhere: nothing is logged. The timeouts match
        // nginx's keep-alive (75 s), so no connection is cut during a run.
        let config = format!(
            "global\n  nbthread {threads}\n  maxconn 8192\n\
             defaults\n  mode http\n  option http-keep-alive\n  http-reuse always\n  \
             timeout connect 5s\n  timeout client 75s\n  timeout server 75s\n  timeout http-keep-alive 75s\n\
             frontend bench\n  bind 127.0.0.1:{port}\n  default_backend upstream\n\
             backend upstream\n  server app 127.0.0.1:{upstream} maxconn 1024\n"
        );
        let config_path = dir.write("haproxy.cfg", &config)?;
        let mut command = Command::new(binary);
        // -db: stay in the foreground, one process (no master-worker).
        command.arg("-db").arg("-f").arg(config_path);
        let mut process = processes::Process::spawn(command, "haproxy", dir.path().join("haproxy.log"))?;
        process.wait_listening(port)?;
        Ok(Self { process, port })
    }

    /// Its process id (one process; its threads are in its CPU time).
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        processes::terminate(&mut self.process);
    }
}
