//! Signals in: how long after a Shared Signals transmitter pushes a CAEP
//! `session-revoked` SET does the revoked login's websocket close on the
//! client's side, wherever it is connected?
//!
//! Why: an IdP revoking a login is the path with no admin in the loop, and
//! it costs more than an admin's termination before the kill is committed
//! (bearer token check, SET signature against the transmitter's JWKS, claim
//! checks, `jti` replay record, the plan, then the same store path). This
//! measures that whole path with real processes and real sockets.
//!
//! One control plane (SQLite) and `--edges` edges (default 4) as real
//! processes, an in-process websocket echo upstream, and this process as the
//! SSF transmitter `bench-tx`: an ES256 key, its JWKS served on loopback
//! (`jwks_url` in the transmitter's settings, so no discovery), push
//! delivery (RFC 8935) with a bearer token. `--sessions` sessions (default
//! 400), each from its own IdP login (`sid` in the test issuer's ID token,
//! ten sessions per user), are minted through the edge channel; one
//! websocket per session, round-robin over the edges, each checked with one
//! echo. Then every session is revoked by its own SET (`sub_id` complex with
//! the `session` `sid`, event `session-revoked`) POSTed to
//! `/ssf/receiver/bench-tx`, `--callers` pushes in flight (default 10);
//! every push must be answered 202. Per socket: the time from its push
//! being sent to its close on the client, the same from the 202, and the
//! push's round trip. At the end the control plane's own figures are read
//! from its `/metrics` (`signal_received_to_edges_seconds`,
//! `signal_events_total`) to check that every SET was applied once, and the
//! edges' kill counters.
//!
//! ```sh
//! cargo build --release -p portcullis
//! cargo build --release -p portcullis-benches --bin signal_latency
//! $CARGO_TARGET_DIR/release/signal_latency [--edges 4] [--sessions 400] [--callers 10]
//! ```
//!
//! Needs about three file descriptors per websocket here: raise `ulimit -n`
//! if the harness says so.

// Shared with the other harnesses, which use other parts of it.
#[allow(dead_code)]
mod processes;
mod ws_upstream;

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use clap::Parser;
use futures_util::{stream, StreamExt};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::pkcs8::{EncodePrivateKey, LineEnding};
use portcullis_dev_idp::test_issuer::TestIssuer;
use serde_json::json;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use processes::{kills, signed_ms, ControlPlane, Edge, WorkDir, USER_DOMAIN};
use ws_upstream::Socket;

/// The transmitter's name (its push URL is `/ssf/receiver/bench-tx`).
const TRANSMITTER: &str = "bench-tx";
/// The `aud` of its SETs.
const AUDIENCE: &str = "urn:portcullis:bench";
/// The bearer token it presents.
const PUSH_TOKEN: &str = "bench-push-token-0123456789abcdef";
/// The key id of its signing key.
const KID: &str = "bench-tx-1";
/// CAEP session revoked.
const SESSION_REVOKED: &str = "https://schemas.openid.net/secevent/caep/event-type/session-revoked";

/// Options.
#[derive(Parser)]
#[command(about = "Signals in: CAEP session-revoked SETs pushed, websockets over several edges closed")]
struct Args {
    /// Edges.
    #[arg(long, default_value_t = 4)]
    edges: usize,
    /// Sessions (IdP logins, websockets, SETs).
    #[arg(long, default_value_t = 400)]
    sessions: usize,
    /// Sessions per user (each its own IdP login).
    #[arg(long, default_value_t = 10)]
    sessions_per_user: usize,
    /// SET pushes in flight at once.
    #[arg(long, default_value_t = 10)]
    callers: usize,
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

/// The in-process SSF transmitter: its issuer URL and signing key.
struct Transmitter {
    issuer: String,
    key: EncodingKey,
}

impl Transmitter {
    /// Makes a key and serves its JWKS at `<issuer>/jwks` on a free loopback port.
    async fn start() -> Result<Self> {
        let signing = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
        let pem = signing.to_pkcs8_pem(LineEnding::LF)?;
        let point = signing.verifying_key().to_encoded_point(false);
        let coordinate = |c: Option<&p256::FieldBytes>| c.map(|c| URL_SAFE_NO_PAD.encode(c)).unwrap_or_default();
        let jwks = json!({"keys": [{
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": KID,
            "x": coordinate(point.x()), "y": coordinate(point.y()),
        }]})
        .to_string();
        let app = axum::Router::new().route(
            "/jwks",
            axum::routing::get(move || {
                let jwks = jwks.clone();
                async move { ([(axum::http::header::CONTENT_TYPE, "application/json")], jwks) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let issuer = format!("http://{}", listener.local_addr()?);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Self { issuer, key: EncodingKey::from_ec_pem(pem.as_bytes())? })
    }

    /// The control plane's `ssf_transmitters` for it, as TOML (the
    /// `PORTCULLIS_SSF_TRANSMITTERS` form); sessions' `sid`s are the test issuer's.
    fn settings(&self, token_file: &std::path::Path) -> String {
        format!(
            "[{{ name = \"{TRANSMITTER}\", issuer = \"{issuer}\", audience = \"{AUDIENCE}\", \
             jwks_url = \"{issuer}/jwks\", login_issuer = \"{login}\", push_token_file = \"{file}\" }}]",
            issuer = self.issuer,
            login = TestIssuer::shared().issuer(),
            file = token_file.display(),
        )
    }

    /// A signed `session-revoked` SET for IdP login `sid`.
    fn session_revoked(&self, sid: &str, jti: &str) -> Result<String> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some("secevent+jwt".into());
        header.kid = Some(KID.into());
        let claims = json!({
            "iss": self.issuer, "aud": AUDIENCE, "iat": now, "jti": jti,
            "sub_id": {"format": "complex", "session": {"format": "opaque", "id": sid}},
            "events": {SESSION_REVOKED: {}},
        });
        Ok(jsonwebtoken::encode(&header, &claims, &self.key)?)
    }
}

/// A session and the IdP login it came from.
struct Session {
    sid: String,
    token: String,
}

/// A push: when it was sent and answered.
struct Push {
    sent: Instant,
    answered: Instant,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let needed = args.sessions as u64 * 3 + 256;
    if processes::open_files_limit().is_some_and(|limit| limit < needed) {
        bail!(
            "{} websockets need about {needed} open files here: run `ulimit -n {}` first",
            args.sessions,
            needed.max(8192)
        );
    }
    let binary = processes::binary(args.binary.clone())?;
    let dir = WorkDir::new("signal-latency", args.keep)?;
    let transmitter = Transmitter::start().await?;
    let token_file = dir.write("push-token", PUSH_TOKEN)?;
    let sqlite = format!("sqlite://{}", dir.path().join("control-plane.db").display());
    let env = [("PORTCULLIS_SSF_TRANSMITTERS", transmitter.settings(&token_file))];
    let plane = ControlPlane::start_with_env(&binary, &dir, &sqlite, &env).await?;
    let upstream = ws_upstream::start().await?;
    plane.apply_policy(&processes::policy(&format!("http://127.0.0.1:{upstream}"))).await?;
    let mut edges = Vec::new();
    for i in 0..args.edges {
        edges.push(Edge::start(&binary, &plane, &format!("edge-{}", i + 1), args.edge_threads, &dir).await?);
    }
    let ports: Vec<u16> = edges.iter().map(|e| e.port).collect();
    println!(
        "control plane + {} edges ({} threads each); {} sessions ({} per user, one IdP login each); {} pushes in flight",
        args.edges, args.edge_threads, args.sessions, args.sessions_per_user, args.callers
    );

    let sessions = create_sessions(&plane, args.sessions, args.sessions_per_user.max(1)).await?;
    let watched = open_all(&ports, &sessions).await?;
    println!("{} websockets open, each echoed once", watched.len());
    let kills_before = kills(&edges).await?;
    let pushes = push_all(&plane, &transmitter, &sessions, args.callers).await?;
    let closes = collect(watched, Duration::from_secs(args.close_timeout)).await;
    let kills_counted = kills(&edges).await? - kills_before;

    print_table(&closes, &pushes);
    println!("\nedges counted {kills_counted} kills");
    print_metrics(&plane).await?;
    Ok(())
}

/// `count` sessions, `per_user` per user, each from its own IdP login
/// (`sid` `bench-sid-<i>`), four logins in flight.
async fn create_sessions(plane: &ControlPlane, count: usize, per_user: usize) -> Result<Vec<Session>> {
    let logins = stream::iter((0..count).map(|i| async move {
        let sid = format!("bench-sid-{i}");
        let email = format!("signal{}@{USER_DOMAIN}", i / per_user);
        let (_, token) = plane.login_with_sid(&email, Some(&sid)).await?;
        anyhow::Ok(Session { sid, token })
    }));
    logins.buffered(4).collect::<Vec<_>>().await.into_iter().collect()
}

/// Opens one websocket per session (socket `i` on edge `i % edges`), checks
/// one echo on each, then watches each for its close.
async fn open_all(ports: &[u16], sessions: &[Session]) -> Result<Vec<JoinHandle<Instant>>> {
    let opened = stream::iter(sessions.iter().enumerate().map(|(i, session)| async move {
        let port = ports[i % ports.len()];
        let socket = ws_upstream::open_through_edge(port, &session.token)
            .await
            .with_context(|| format!("websocket {i} through port {port}"))?;
        anyhow::Ok(tokio::spawn(watch(socket)))
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

/// Pushes one `session-revoked` SET per session, `callers` in flight; each
/// must be answered 202. `pushes[i]` is session `i`'s.
async fn push_all(
    plane: &ControlPlane,
    transmitter: &Transmitter,
    sessions: &[Session],
    callers: usize,
) -> Result<Vec<Push>> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
    let url = format!("{}/ssf/receiver/{TRANSMITTER}", plane.url);
    let run = std::process::id();
    let pushes = stream::iter(sessions.iter().enumerate().map(|(i, session)| {
        let (http, url) = (&http, &url);
        async move {
            let set = transmitter.session_revoked(&session.sid, &format!("bench-{run}-{i}"))?;
            let sent = Instant::now();
            let response = http
                .post(url)
                .bearer_auth(PUSH_TOKEN)
                .header("content-type", "application/secevent+jwt")
                .body(set)
                .send()
                .await?;
            let answered = Instant::now();
            let status = response.status();
            if status != reqwest::StatusCode::ACCEPTED {
                bail!("push for {}: {status} {}", session.sid, response.text().await.unwrap_or_default());
            }
            anyhow::Ok(Push { sent, answered })
        }
    }));
    // `buffered` keeps the order.
    pushes.buffered(callers.max(1)).collect::<Vec<_>>().await.into_iter().collect()
}

/// Each socket's close time (`None`: still open after `timeout`).
async fn collect(watched: Vec<JoinHandle<Instant>>, timeout: Duration) -> Vec<Option<Instant>> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut closes = Vec::with_capacity(watched.len());
    for socket in watched {
        closes.push(tokio::time::timeout_at(deadline, socket).await.ok().and_then(Result::ok));
    }
    closes
}

fn print_table(closes: &[Option<Instant>], pushes: &[Push]) {
    let (mut from_sent, mut from_answer) = (Vec::new(), Vec::new());
    for (closed, push) in closes.iter().zip(pushes) {
        if let Some(closed) = closed {
            from_sent.push(signed_ms(*closed, push.sent));
            from_answer.push(signed_ms(*closed, push.answered));
        }
    }
    let mut round_trip: Vec<f64> = pushes.iter().map(|p| signed_ms(p.answered, p.sent)).collect();
    for samples in [&mut from_sent, &mut from_answer, &mut round_trip] {
        samples.sort_by(f64::total_cmp);
    }
    let closed = from_sent.len();
    let p = processes::percentile;
    println!(
        "\n{closed} of {} sockets closed ({:.1}%), {} pushes answered 202\n",
        closes.len(),
        100.0 * closed as f64 / closes.len().max(1) as f64,
        pushes.len()
    );
    println!("| ms | min | p50 | p90 | p99 | max |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, s) in [
        ("push sent → socket closed", &from_sent),
        ("202 answer → socket closed", &from_answer),
        ("push round trip (sent → 202)", &round_trip),
    ] {
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
            p(s, 0.0),
            p(s, 0.5),
            p(s, 0.9),
            p(s, 0.99),
            p(s, 1.0)
        );
    }
    // A socket closed before its own push was sent was closed by something else.
    let early = from_sent.iter().filter(|ms| **ms < 0.0).count();
    if early > 0 {
        println!("\n{early} sockets closed BEFORE their own SET was sent");
    }
}

/// The control plane's signal metrics: how many SETs it applied and its own
/// receipt → every-edge-applied time (buckets, sum and count; it observes
/// when every edge has *reported* the change applied, so it includes the
/// edges' report delay, which the sockets' close times do not).
async fn print_metrics(plane: &ControlPlane) -> Result<()> {
    let text = reqwest::get(format!("{}/metrics", plane.url)).await?.text().await?;
    println!("\ncontrol plane /metrics:");
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let wanted = line.starts_with("portcullis_control_plane_signal_received_to_edges_seconds")
            || line.starts_with("portcullis_control_plane_signal_events_total");
        if wanted {
            println!("  {line}");
        }
    }
    Ok(())
}
