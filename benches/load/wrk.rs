//! Running `wrk --latency` and reading its report: requests/s, the latency
//! distribution (50/90/99 %, max), and errors (socket errors plus non-2xx/3xx
//! answers, which would make a fast proxy look good for the wrong reason).

use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// Fails with a hint when wrk is missing.
pub fn check_installed() -> Result<()> {
    match Command::new("wrk").arg("--version").output() {
        Ok(_) => Ok(()),
        Err(_) => bail!("wrk is not installed (run scripts/bench-setup.sh)"),
    }
}

/// How to load a target.
pub struct Wrk {
    /// `-t`.
    pub threads: usize,
    /// `-c`.
    pub connections: usize,
    /// `-H`, on every request.
    pub headers: Vec<String>,
}

/// What one run measured.
#[derive(Debug, Clone)]
pub struct WrkRun {
    /// Completed requests.
    pub requests: u64,
    /// Requests per second.
    pub requests_per_s: f64,
    /// Median latency.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest request.
    pub max_ms: f64,
    /// Socket errors plus non-2xx/3xx answers.
    pub errors: u64,
}

impl Wrk {
    /// Loads `http://127.0.0.1:{port}/` for `duration`.
    pub async fn run(&self, port: u16, duration: Duration) -> Result<WrkRun> {
        let mut command = Command::new("wrk");
        command
            .arg(format!("-t{}", self.threads))
            .arg(format!("-c{}", self.connections))
            .arg(format!("-d{}s", duration.as_secs().max(1)))
            .arg("--latency");
        for header in &self.headers {
            command.arg("-H").arg(header);
        }
        command.arg(format!("http://127.0.0.1:{port}/"));
        let output = tokio::task::spawn_blocking(move || command.output()).await?.context("run wrk")?;
        let text = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            bail!("wrk failed: {}{}", text, String::from_utf8_lossy(&output.stderr));
        }
        parse(&text).with_context(|| format!("cannot read wrk's report:\n{text}"))
    }
}

/// A wrk duration such as `812.00us`, `1.23ms`, `2.01s` or `1.00m`, in ms.
fn millis(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().ok()?;
    let scale = match unit {
        "us" => 0.001,
        "ms" => 1.0,
        "s" => 1000.0,
        "m" => 60_000.0,
        "h" => 3_600_000.0,
        _ => return None,
    };
    Some(value * scale)
}

/// Reads wrk's report.
pub fn parse(text: &str) -> Result<WrkRun> {
    let field = |prefix: &str, index: usize| {
        text.lines().map(str::trim).find(|l| l.starts_with(prefix)).and_then(|l| l.split_whitespace().nth(index))
    };
    let percentile = |p: &str| field(p, 1).and_then(millis).context(format!("no {p} latency"));
    let requests_per_s: f64 = field("Requests/sec:", 1).context("no Requests/sec")?.parse()?;
    let requests: u64 = text
        .lines()
        .find(|l| l.contains(" requests in "))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .context("no request count")?;
    let socket_errors: u64 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Socket errors:"))
        .map(|rest| rest.split(',').filter_map(|part| part.split_whitespace().nth(1)?.parse::<u64>().ok()).sum())
        .unwrap_or(0);
    let non_2xx: u64 = field("Non-2xx or 3xx responses:", 4).and_then(|v| v.parse().ok()).unwrap_or(0);
    Ok(WrkRun {
        requests,
        requests_per_s,
        p50_ms: percentile("50%")?,
        p90_ms: percentile("90%")?,
        p99_ms: percentile("99%")?,
        max_ms: field("Latency", 3).and_then(millis).context("no max latency")?,
        errors: socket_errors + non_2xx,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = "Running 15s test @ http://127.0.0.1:8080/
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.23ms  456.00us  12.34ms   78.90%
    Req/Sec    25.00k     1.23k   30.00k    70.00%
  Latency Distribution
     50%  812.00us
     75%    1.40ms
     90%    1.80ms
     99%    3.20ms
  745678 requests in 15.00s, 90.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 12
Requests/sec:  49711.87
Transfer/sec:      6.00MB
";

    #[test]
    fn reads_a_report() {
        let run = parse(REPORT).unwrap();
        assert_eq!(run.requests, 745_678);
        assert!((run.requests_per_s - 49_711.87).abs() < 1e-6);
        assert!((run.p50_ms - 0.812).abs() < 1e-9);
        assert!((run.p99_ms - 3.2).abs() < 1e-9);
        assert!((run.max_ms - 12.34).abs() < 1e-9);
        assert_eq!(run.errors, 15);
    }
}
