//! A constant-rate (open-loop) HTTP/1.1 load client, wrk2-style, for the
//! p99 of each target at the same offered rate. wrk2 is not packaged by
//! Debian, so the harness carries this instead of building one more tool.
//!
//! `connections` keep-alive connections each send the same request bytes on
//! their own fixed schedule (request `k` of connection `i` is due at
//! `start + (i / connections + k) × connections / rate`), one request in
//! flight per connection as wrk2 does. Latency is corrected for coordinated
//! omission: when a request is due while its connection still waits for the
//! previous answer, it is timed from when it was due, so a proxy that stalls
//! is charged for every request the stall held back. When the connection was
//! idle at the due time, the request is timed from when it was actually
//! written, so the client's own timer slack (tokio's timers have 1 ms
//! resolution) is not charged to the proxy. A target that cannot keep up
//! shows it twice: its achieved rate falls below the offered one and its
//! latencies grow with the backlog.
//!
//! Responses are read by `Content-Length` (or to the end of a chunked body);
//! a status other than 2xx, a broken connection or no answer within
//! [`ANSWER_WITHIN`] counts as an error, and the connection is reopened.
//! The client runs on its own multi-threaded runtime with `threads` workers
//! (wrk's `-t`), on a thread of its own.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::processes;

/// Longest wait for one answer before it counts as an error.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// How to load a target.
pub struct FixedRate {
    /// Client threads.
    pub threads: usize,
    /// Connections, each with one request in flight at most.
    pub connections: usize,
    /// The request (`GET / HTTP/1.1` with the bench headers), as written.
    pub request: Arc<Vec<u8>>,
}

/// What one run measured.
#[derive(Debug, Clone)]
pub struct FixedRun {
    /// Requests per second offered.
    pub offered_per_s: f64,
    /// Answers per second received (2xx or not).
    pub achieved_per_s: f64,
    /// Latency percentiles of the 2xx answers, in ms.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest answer.
    pub max_ms: f64,
    /// Non-2xx answers, broken connections and answers that never came.
    pub errors: u64,
}

/// What one connection measured.
#[derive(Default)]
struct ConnectionTally {
    latencies_us: Vec<f64>,
    answers: u64,
    errors: u64,
}

impl FixedRate {
    /// The request `GET / HTTP/1.1` with `headers` (`Name: value`, `Host` among them).
    pub fn request(headers: &[String]) -> Arc<Vec<u8>> {
        let mut text = String::from("GET / HTTP/1.1\r\n");
        for header in headers {
            text.push_str(header);
            text.push_str("\r\n");
        }
        text.push_str("\r\n");
        Arc::new(text.into_bytes())
    }

    /// Offers `rate` requests/s to `127.0.0.1:port` for `duration`.
    pub async fn run(&self, port: u16, rate: f64, duration: Duration) -> Result<FixedRun> {
        let (threads, connections, request) = (self.threads.max(1), self.connections.max(1), self.request.clone());
        let worker = std::thread::spawn(move || -> Result<Vec<ConnectionTally>> {
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build()?;
            runtime.block_on(async move {
                let address = SocketAddr::from(([127, 0, 0, 1], port));
                let interval = Duration::from_secs_f64(connections as f64 / rate);
                let start = Instant::now() + Duration::from_millis(50);
                let end = start + duration;
                let tasks: Vec<_> = (0..connections)
                    .map(|i| {
                        let first = start + interval.mul_f64(i as f64 / connections as f64);
                        tokio::spawn(connection(address, request.clone(), first, interval, end))
                    })
                    .collect();
                let mut tallies = Vec::with_capacity(tasks.len());
                for task in tasks {
                    tallies.push(task.await?);
                }
                Ok(tallies)
            })
        });
        let tallies = tokio::task::spawn_blocking(move || worker.join())
            .await?
            .map_err(|_| anyhow::anyhow!("the constant-rate client panicked"))?
            .context("constant-rate client")?;
        let mut latencies: Vec<f64> = tallies.iter().flat_map(|t| t.latencies_us.iter().copied()).collect();
        latencies.sort_by(f64::total_cmp);
        let ms = |q: f64| processes::percentile(&latencies, q) / 1e3;
        let answers: u64 = tallies.iter().map(|t| t.answers).sum();
        Ok(FixedRun {
            offered_per_s: rate,
            achieved_per_s: answers as f64 / duration.as_secs_f64(),
            p50_ms: ms(0.50),
            p90_ms: ms(0.90),
            p99_ms: ms(0.99),
            max_ms: latencies.last().map_or(f64::NAN, |us| us / 1e3),
            errors: tallies.iter().map(|t| t.errors).sum(),
        })
    }
}

/// One connection's schedule: a request every `interval` from `first` until `end`.
async fn connection(
    address: SocketAddr,
    request: Arc<Vec<u8>>,
    first: Instant,
    interval: Duration,
    end: Instant,
) -> ConnectionTally {
    let mut tally = ConnectionTally::default();
    let mut stream: Option<TcpStream> = None;
    let mut buffer = Vec::with_capacity(4096);
    let mut due = first;
    // Nothing is sent after `end`, even by a connection that fell behind.
    while due < end && Instant::now() < end {
        let now = Instant::now();
        // Idle at the due time: wait for it and time from the write. Late
        // (still busy with the previous answer): send now, time from `due`.
        let started = if now < due {
            tokio::time::sleep_until(due.into()).await;
            Instant::now()
        } else {
            due
        };
        due += interval;
        if stream.is_none() {
            stream = TcpStream::connect(address).await.ok().inspect(|s| {
                let _ = s.set_nodelay(true);
            });
        }
        let Some(open) = stream.as_mut() else {
            tally.errors += 1;
            continue;
        };
        let outcome = tokio::time::timeout(ANSWER_WITHIN, exchange(open, &request, &mut buffer)).await;
        match outcome {
            Ok(Ok(Answer { status, keep_alive })) => {
                tally.answers += 1;
                if (200..300).contains(&status) {
                    tally.latencies_us.push(started.elapsed().as_secs_f64() * 1e6);
                } else {
                    tally.errors += 1;
                }
                if !keep_alive {
                    stream = None;
                }
            }
            Ok(Err(_)) | Err(_) => {
                tally.errors += 1;
                stream = None;
            }
        }
    }
    tally
}

/// The parts of an answer the client needs.
struct Answer {
    status: u16,
    keep_alive: bool,
}

/// Writes `request` and reads one whole answer.
async fn exchange(stream: &mut TcpStream, request: &[u8], buffer: &mut Vec<u8>) -> Result<Answer> {
    stream.write_all(request).await?;
    buffer.clear();
    let head_end = loop {
        if let Some(at) = find(buffer, b"\r\n\r\n") {
            break at + 4;
        }
        read_more(stream, buffer).await?;
    };
    let head = std::str::from_utf8(&buffer[..head_end]).context("answer head is not text")?.to_ascii_lowercase();
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).context("no status")?;
    let header = |name: &str| {
        head.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(':').map(str::trim).map(str::to_owned))
    };
    let keep_alive = header("connection").is_none_or(|value| !value.contains("close"));
    if let Some(length) = header("content-length") {
        let length: usize = length.parse().context("bad content-length")?;
        while buffer.len() < head_end + length {
            read_more(stream, buffer).await?;
        }
    } else if header("transfer-encoding").is_some_and(|value| value.contains("chunked")) {
        while find(&buffer[head_end..], b"0\r\n\r\n").is_none() {
            read_more(stream, buffer).await?;
        }
    }
    Ok(Answer { status, keep_alive })
}

async fn read_more(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Result<()> {
    let mut chunk = [0u8; 4096];
    let read = stream.read(&mut chunk).await?;
    if read == 0 {
        anyhow::bail!("connection closed mid-answer");
    }
    buffer.extend_from_slice(&chunk[..read]);
    Ok(())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}
