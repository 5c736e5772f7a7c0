//! nginx instances for the edge-vs-nginx harness, each with its own prefix
//! and config in the harness's temp dir, on a free loopback port, in the
//! foreground (`daemon off`): the upstream (`return 200 "hello\n"`) and the
//! plain reverse proxy in front of it. Both have no access log and allow a
//! practically unlimited number of requests per keep-alive connection (the
//! default of 1,000 would make wrk reconnect); the proxy keeps idle
//! connections to the upstream (`keepalive`, HTTP/1.1), as the edge does.
//! Stopped with SIGTERM (nginx's fast shutdown, which also stops its
//! workers) on drop.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::processes::{self, WorkDir};

/// The nginx binary: on `PATH`, or Debian's `/usr/sbin/nginx`.
pub fn binary() -> Result<PathBuf> {
    match processes::find_program("nginx", "/usr/sbin/nginx") {
        Some(path) => Ok(path),
        None => bail!("nginx is not installed (run scripts/bench-setup.sh)"),
    }
}

/// A running nginx (master and workers).
pub struct Nginx {
    process: processes::Process,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

const COMMON: &str = "daemon off;\nerror_log error.log warn;\npid nginx.pid;\n\
events { worker_connections 4096; }\n";
const HTTP_COMMON: &str = "access_log off;\nkeepalive_requests 10000000;\nkeepalive_timeout 75s;\n";

impl Nginx {
    /// The upstream: answers every request with `200 hello\n`.
    pub fn start_upstream(binary: &std::path::Path, dir: &WorkDir, workers: usize) -> Result<Self> {
        let port = processes::free_port()?;
        let config = format!(
            "worker_processes {workers};\n{COMMON}http {{\n{HTTP_COMMON}\
             server {{ listen 127.0.0.1:{port}; default_type text/plain; location / {{ return 200 \"hello\\n\"; }} }}\n}}\n"
        );
        Self::start(binary, dir, "nginx-upstream", &config, port)
    }

    /// The plain reverse proxy to `upstream`, with `workers` worker processes.
    pub fn start_proxy(binary: &std::path::Path, dir: &WorkDir, workers: usize, upstream: u16) -> Result<Self> {
        let port = processes::free_port()?;
        let config = format!(
            "worker_processes {workers};\n{COMMON}http {{\n{HTTP_COMMON}\
             upstream app {{ server 127.0.0.1:{upstream}; keepalive 256; keepalive_requests 10000000; }}\n\
             server {{ listen 127.0.0.1:{port}; location / {{ proxy_pass http://app; \
             proxy_http_version 1.1; proxy_set_header Connection \"\"; }} }}\n}}\n"
        );
        Self::start(binary, dir, "nginx-proxy", &config, port)
    }

    /// A relying party's sign-out endpoint for the outbox harness, one
    /// worker: `/ok` answers `204`; `/limited` allows `rate` requests a second
    /// (nginx's `limit_req`: a bucket of `rate` requests refilled at `rate` a
    /// second, as SaaS APIs limit) and answers the rest `429` with
    /// `Retry-After: 1` (it proxies to `/ok`: a `return` would answer before
    /// `limit_req` runs).
    #[allow(dead_code)] // each harness binary uses its own part of this module
    pub fn start_relying_party(binary: &std::path::Path, dir: &WorkDir, rate: u32) -> Result<Self> {
        let port = processes::free_port()?;
        let config = format!(
            "worker_processes 1;\n{COMMON}http {{\n{HTTP_COMMON}\
             limit_req_zone $binary_remote_addr zone=rp:1m rate={rate}r/s;\n\
             server {{ listen 127.0.0.1:{port}; default_type text/plain;\n\
             location /ok {{ return 204; }}\n\
             location /limited {{ limit_req zone=rp burst={rate} nodelay; limit_req_status 429; add_header Retry-After 1 always; \
             proxy_pass http://127.0.0.1:{port}/ok; }} }}\n}}\n"
        );
        Self::start(binary, dir, "nginx-relying-party", &config, port)
    }

    fn start(binary: &std::path::Path, dir: &WorkDir, name: &str, config: &str, port: u16) -> Result<Self> {
        let prefix = dir.path().join(name);
        std::fs::create_dir_all(&prefix).with_context(|| format!("create {}", prefix.display()))?;
        let config_path = prefix.join("nginx.conf");
        std::fs::write(&config_path, config)?;
        let mut command = Command::new(binary);
        command.arg("-p").arg(&prefix).arg("-c").arg(&config_path).arg("-e").arg(prefix.join("error.log"));
        let mut process = processes::Process::spawn(command, name, dir.path().join(format!("{name}.log")))?;
        process.wait_listening(port)?;
        Ok(Self { process, port })
    }

    /// The master's process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The master and its workers (whose CPU time is the proxy's).
    #[allow(dead_code)] // each harness binary uses its own part of this module
    pub fn pids(&self) -> Vec<u32> {
        let master = self.process.pid();
        let mut pids = processes::children(master);
        pids.push(master);
        pids
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // nginx's fast shutdown, which also stops its workers.
        processes::terminate(&mut self.process);
    }
}
