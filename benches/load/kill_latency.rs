//! Kill latency: how long after the admin API answers a termination do the
//! affected websockets close on the client's side?
//!
//! One control plane (SQLite) and `--edges` edges (default 4) as real
//! processes, an in-process websocket echo upstream, and `--users` users
//! (default 100) with `--sessions-per-user` sessions each (default 10), i.e.
//! 1,000 sessions minted through the edge channel. One websocket per
//! session, spread round-robin over the edges, each checked with one echo,
//! so a user's 10 sockets sit on all four edges. Then every user is
//! terminated with `POST /api/v1/users/terminate` (one call per user,
//! `--callers` calls in flight at once, default 10, without `?wait`), and
//! each socket's latency is the time from its user's API answer to the
//! moment the socket closes on the client (it can be negative: the edge may
//! close it before the answer is read). Also shown: the same from the moment
//! the call was sent, and the API's own answer time.
//!
//! The single-session path is measured after it: `--single` more sessions
//! (default 100, one per user, one websocket each, round-robin), terminated
//! one after another with `POST /api/v1/sessions/{id}/terminate`.
//!
//! Target of the edge issue: p99 ≤ 100 ms from the answer.
//!
//! ```sh
//! cargo build --release -p portcullis
//! cargo run --release -p portcullis-benches --bin kill_latency -- [--edges 4] [--users 100] [--sessions-per-user 10]
//! ```
//!
//! Needs about three file descriptors per websocket in this process (client
//! and upstream sockets) and two per websocket over the edges: raise
//! `ulimit -n` (to 8192 or more) if the harness says so.

// Shared with the other harness, which uses other parts of it.
#[allow(dead_code)]
mod processes;
mod ws_upstream;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use futures_util::{stream, StreamExt};
use serde_json::{json, Value};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use processes::{kills, signed_ms, ControlPlane, Edge, WorkDir, USER_DOMAIN};
use ws_upstream::Socket;

/// Options.
#[derive(Parser)]
#[command(about = "Kill latency: websockets over several edges, users terminated")]
struct Args {
    /// Edges.
    #[arg(long, default_value_t = 4)]
    edges: usize,
    /// Users terminated.
    #[arg(long, default_value_t = 100)]
    users: usize,
    /// Sessions (and websockets) per user.
    #[arg(long, default_value_t = 10)]
    sessions_per_user: usize,
    /// Terminate calls in flight at once.
    #[arg(long, default_value_t = 10)]
    callers: usize,
    /// Sessions terminated one by one on the single-session path (0: skip).
    #[arg(long, default_value_t = 100)]
    single: usize,
    /// Proxy threads per edge.
    #[arg(long, default_value_t = 2)]
    edge_threads: usize,
    /// Seconds to wait for the sockets to close after the last answer.
    #[arg(long, default_value_t = 10)]
    close_timeout: u64,
    /// The portcullis binary.
    #[arg(long)]
    binary: Option<PathBuf>,
    /// Keep the temp dir (configs and logs).
    #[arg(long)]
    keep: bool,
}

/// A session and the user it belongs to.
struct Session {
    user: usize,
    id: String,
    token: String,
}

/// A terminate call: when it was sent and answered.
struct Call {
    sent: Instant,
    answered: Instant,
}

/// One websocket being watched: resolves to when it closed.
struct Watched {
    user: usize,
    closed: JoinHandle<Instant>,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let sockets = args.users * args.sessions_per_user + args.single;
    let needed = sockets as u64 * 3 + 256;
    if processes::open_files_limit().is_some_and(|limit| limit < needed) {
        bail!("{sockets} websockets need about {needed} open files here: run `ulimit -n {}` first", needed.max(8192));
    }
    let binary = processes::binary(args.binary.clone())?;
    let dir = WorkDir::new("kill-latency", args.keep)?;
    let plane = ControlPlane::start(&binary, &dir).await?;
    let upstream = ws_upstream::start().await?;
    plane.apply_policy(&processes::policy(&format!("http://127.0.0.1:{upstream}"))).await?;
    let mut edges = Vec::new();
    for i in 0..args.edges {
        edges.push(Edge::start(&binary, &plane, &format!("edge-{}", i + 1), args.edge_threads, &dir).await?);
    }
    let ports: Vec<u16> = edges.iter().map(|e| e.port).collect();
    println!(
        "control plane + {} edges ({} threads each); {} users × {} sessions; {} terminate calls in flight",
        args.edges, args.edge_threads, args.users, args.sessions_per_user, args.callers
    );

    let sessions = create_sessions(&plane, "user", args.users, args.sessions_per_user).await?;
    let watched = open_all(&ports, &sessions).await?;
    println!("{} websockets open, each echoed once", watched.len());
    let kills_before = kills(&edges).await?;
    let calls = terminate_users(&plane, args.users, args.callers).await?;
    let closes = collect(watched, Duration::from_secs(args.close_timeout)).await;
    let kills_counted = kills(&edges).await? - kills_before;
    let answer_ms: Vec<f64> = calls.iter().map(|c| signed_ms(c.answered, c.sent)).collect();
    let mut rows = vec![summarize("users/terminate", &closes, &calls, answer_ms)];
    println!("edges counted {kills_counted} kills");

    if args.single > 0 {
        let sessions = create_sessions(&plane, "solo", args.single, 1).await?;
        let watched = open_all(&ports, &sessions).await?;
        let mut calls = Vec::new();
        for session in &sessions {
            let sent = Instant::now();
            let body = json!({"reason": "kill-latency bench"});
            let response = plane.post(&format!("/sessions/{}/terminate", session.id), &body).send().await?;
            let answered = Instant::now();
            check_answer(response).await?;
            calls.push(Call { sent, answered });
        }
        let closes = collect(watched, Duration::from_secs(args.close_timeout)).await;
        let answer_ms: Vec<f64> = calls.iter().map(|c| signed_ms(c.answered, c.sent)).collect();
        rows.push(summarize("sessions/{id}/terminate, one at a time", &closes, &calls, answer_ms));
    }
    print_table(&rows);
    Ok(())
}

/// `users` users with `per_user` sessions each, four logins in flight.
async fn create_sessions(plane: &ControlPlane, prefix: &str, users: usize, per_user: usize) -> Result<Vec<Session>> {
    let logins = stream::iter((0..users * per_user).map(|i| async move {
        let user = i % users;
        let (id, token) = plane.login(&email(prefix, user)).await?;
        anyhow::Ok(Session { user, id, token })
    }));
    logins.buffered(4).collect::<Vec<_>>().await.into_iter().collect()
}

fn email(prefix: &str, user: usize) -> String {
    format!("{prefix}{user}@{USER_DOMAIN}")
}

/// Opens one websocket per session (socket `i` on edge `i % edges`), checks
/// one echo on each, then watches each for its close.
async fn open_all(ports: &[u16], sessions: &[Session]) -> Result<Vec<Watched>> {
    let opened = stream::iter(sessions.iter().enumerate().map(|(i, session)| async move {
        let port = ports[i % ports.len()];
        let socket = ws_upstream::open_through_edge(port, &session.token)
            .await
            .with_context(|| format!("websocket {i} through port {port}"))?;
        anyhow::Ok(Watched { user: session.user, closed: tokio::spawn(watch(socket)) })
    }));
    opened.buffered(32).collect::<Vec<_>>().await.into_iter().collect()
}

/// Waits for the socket to close (end of stream, error or close frame).
async fn watch(mut socket: Socket) -> Instant {
    loop {
        match socket.next().await {
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Text(_) | Message::Binary(_))) => continue,
            _ => return Instant::now(),
        }
    }
}

async fn check_answer(response: reqwest::Response) -> Result<Value> {
    let status = response.status();
    let body: Value = response.json().await?;
    if !status.is_success() {
        bail!("terminate: {status} {body}");
    }
    Ok(body)
}

/// Terminates every user, `callers` calls in flight; one call per user.
async fn terminate_users(plane: &ControlPlane, users: usize, callers: usize) -> Result<Vec<Call>> {
    let calls = stream::iter((0..users).map(|user| async move {
        let body = json!({"email": email("user", user), "reason": "kill-latency bench"});
        let sent = Instant::now();
        let response = plane.post("/users/terminate", &body).send().await?;
        let answered = Instant::now();
        let answer = check_answer(response).await?;
        if answer["sessions_ended"].as_u64().unwrap_or(0) == 0 {
            bail!("terminating user {user} ended no session: {answer}");
        }
        anyhow::Ok(Call { sent, answered })
    }));
    // `buffered` keeps the order, so calls[u] is user u's call.
    calls.buffered(callers.max(1)).collect::<Vec<_>>().await.into_iter().collect()
}

/// Each socket's user and close time (`None`: still open after `timeout`).
async fn collect(watched: Vec<Watched>, timeout: Duration) -> Vec<(usize, Option<Instant>)> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut closes = Vec::with_capacity(watched.len());
    for socket in watched {
        let closed = tokio::time::timeout_at(deadline, socket.closed).await.ok().and_then(Result::ok);
        closes.push((socket.user, closed));
    }
    closes
}

/// One table row.
struct Row {
    path: &'static str,
    sockets: usize,
    closed: usize,
    from_answer: Vec<f64>,
    from_sent: Vec<f64>,
    answer: Vec<f64>,
}

fn summarize(path: &'static str, closes: &[(usize, Option<Instant>)], calls: &[Call], answer: Vec<f64>) -> Row {
    let (mut from_answer, mut from_sent) = (Vec::new(), Vec::new());
    for (user, closed) in closes {
        if let Some(closed) = closed {
            from_answer.push(signed_ms(*closed, calls[*user].answered));
            from_sent.push(signed_ms(*closed, calls[*user].sent));
        }
    }
    let closed = from_answer.len();
    for samples in [&mut from_answer, &mut from_sent] {
        samples.sort_by(f64::total_cmp);
    }
    let mut answer = answer;
    answer.sort_by(f64::total_cmp);
    Row { path, sockets: closes.len(), closed, from_answer, from_sent, answer }
}

fn print_table(rows: &[Row]) {
    let p = processes::percentile;
    println!("\nfrom the API's answer to the socket's close (ms):\n");
    println!("| terminate call | sockets | closed | min | p50 | p90 | p99 | max |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let s = &r.from_answer;
        println!(
            "| {} | {} | {} ({:.1}%) | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
            r.path,
            r.sockets,
            r.closed,
            100.0 * r.closed as f64 / r.sockets.max(1) as f64,
            p(s, 0.0),
            p(s, 0.5),
            p(s, 0.9),
            p(s, 0.99),
            p(s, 1.0)
        );
    }
    println!("\nfrom the call being sent to the socket's close, and the API's answer time (ms):\n");
    println!("| terminate call | close p50 | close p99 | close max | answer p50 | answer p99 | answer max |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let (s, a) = (&r.from_sent, &r.answer);
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
            r.path,
            p(s, 0.5),
            p(s, 0.99),
            p(s, 1.0),
            p(a, 0.5),
            p(a, 0.99),
            p(a, 1.0)
        );
    }
    let all_closed = rows.iter().all(|r| r.closed == r.sockets);
    let p99 = rows.first().map_or(f64::NAN, |r| p(&r.from_answer, 0.99));
    let met = all_closed && p99 <= 100.0;
    println!("\ntarget p99 ≤ 100 ms from the answer, every socket closed: {}", if met { "met" } else { "MISSED" });
}
