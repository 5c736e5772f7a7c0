//! What the soak harness does to one cluster (a control plane and its
//! edges) for the whole run, and what it counts.
//!
//! Two loops run side by side until the deadline:
//! - **traffic**: `--rps` plain HTTP requests a second, round-robin over the
//!   edges, each with a session of the live pool; every `--probe-every`th
//!   request instead replays a session terminated earlier (must be refused:
//!   an admission is a *revival*);
//! - **churn**, once a second and one step at a time: a login every
//!   `--login-every` s (`POST /edge/v1/sessions` as an enrolled edge,
//!   as an edge does; when the pool is full its oldest session is terminated
//!   first), a session terminated every `--terminate-every` s, a whole user
//!   every `--user-terminate-every` s, the oldest websocket replaced every
//!   `--ws-replace-every` s, and the websockets kept at `--websockets`.
//!
//! Every termination is sent with `?wait=true`, so when it answers every
//! edge has applied it: each edge must refuse the session within
//! [`ENFORCED_WITHIN`] and each of its websockets must be closed by then.
//! A user is not logged in again within [`RELOGIN_AFTER`] of its
//! termination: tokens are revoked by the second, and a session minted in
//! the same second as its user's termination is refused (a known bug,
//! outside what a soak measures).
//!
//! Anything unexpected is a *failure*, counted and described.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, Result};
use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::time::{Instant, MissedTickBehavior};

use crate::processes::{ControlPlane, APP_HOST, USER_DOMAIN};
use crate::soak_sockets::{HeldSocket, SocketEnd};

/// How long after a termination's answer every edge must refuse the session.
pub const ENFORCED_WITHIN: Duration = Duration::from_secs(2);
/// How long a terminated user waits before logging in again.
pub const RELOGIN_AFTER: Duration = Duration::from_secs(2);
/// Terminated sessions kept for replay probes.
const PROBED: usize = 200;
/// Failure descriptions kept for the report.
const DESCRIBED: usize = 20;

/// The load on each cluster.
#[derive(clap::Args, Clone, Debug)]
pub struct Load {
    /// Live sessions kept in the pool.
    #[arg(long, default_value_t = 40)]
    pub sessions: usize,
    /// Users the sessions belong to (round-robin).
    #[arg(long, default_value_t = 10)]
    pub users: usize,
    /// HTTP requests a second through the edges.
    #[arg(long, default_value_t = 40.0)]
    pub rps: f64,
    /// Every Nth request replays a terminated session instead.
    #[arg(long, default_value_t = 10)]
    pub probe_every: u64,
    /// Seconds between logins.
    #[arg(long, default_value_t = 2)]
    pub login_every: u64,
    /// Seconds between single-session terminations.
    #[arg(long, default_value_t = 5)]
    pub terminate_every: u64,
    /// Seconds between whole-user terminations.
    #[arg(long, default_value_t = 30)]
    pub user_terminate_every: u64,
    /// Websockets held open.
    #[arg(long, default_value_t = 8)]
    pub websockets: usize,
    /// Seconds between replacing the oldest websocket.
    #[arg(long, default_value_t = 15)]
    pub ws_replace_every: u64,
}

/// What a cluster's workload did so far (read per minute as differences).
#[derive(Default)]
pub struct Tally {
    /// Requests with a live session, let through.
    pub requests: AtomicU64,
    /// Requests replaying a terminated session, refused.
    pub probes: AtomicU64,
    /// Sessions minted.
    pub logins: AtomicU64,
    /// Sessions ended by terminations (single and whole-user).
    pub terminations: AtomicU64,
    /// Websockets opened.
    pub ws_opened: AtomicU64,
    /// Terminated sessions let through again.
    pub revivals: AtomicU64,
    /// Anything unexpected.
    pub failures: AtomicU64,
    described: Mutex<Vec<String>>,
}

/// The counters of a [`Tally`], in the order of [`Tally::HEADINGS`].
pub type Counts = [u64; 7];

impl Tally {
    /// Column names of [`Tally::counts`].
    pub const HEADINGS: [&'static str; 7] =
        ["requests", "probes", "logins", "terminations", "ws opened", "revivals", "failures"];

    /// The counters now.
    pub fn counts(&self) -> Counts {
        let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            read(&self.requests),
            read(&self.probes),
            read(&self.logins),
            read(&self.terminations),
            read(&self.ws_opened),
            read(&self.revivals),
            read(&self.failures),
        ]
    }

    /// The first failures and revivals, described.
    pub fn described(&self) -> Vec<String> {
        self.described.lock().expect("tally lock").clone()
    }

    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn fail(&self, what: String) {
        Self::add(&self.failures, 1);
        self.describe(what);
    }

    fn describe(&self, what: String) {
        let mut described = self.described.lock().expect("tally lock");
        if described.len() < DESCRIBED {
            described.push(what);
        }
    }
}

/// A session minted by the workload.
#[derive(Clone)]
struct Session {
    id: String,
    token: String,
    user: usize,
}

/// One cluster's workload and its state.
pub struct Workload<'a> {
    plane: &'a ControlPlane,
    edge_ports: Vec<u16>,
    load: Load,
    /// Live sessions, oldest first.
    pool: Mutex<Vec<Session>>,
    /// Terminated sessions, refused by every edge; newest last.
    ended: Mutex<VecDeque<Session>>,
    http: reqwest::Client,
    /// What happened.
    pub tally: Tally,
}

impl<'a> Workload<'a> {
    /// A workload on `plane` and the edges listening on `edge_ports`.
    pub fn new(plane: &'a ControlPlane, edge_ports: Vec<u16>, load: Load) -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        let tally = Tally::default();
        Self { plane, edge_ports, load, pool: Mutex::default(), ended: Mutex::default(), http, tally }
    }

    /// Fills the session pool and opens the websockets; runs both loops
    /// until `until`; closes the websockets.
    pub async fn run(&self, until: Instant) {
        let mut churn = Churn { sockets: VecDeque::new(), next_user: 0, cooling: Vec::new(), opened: 0 };
        for _ in 0..self.load.sessions {
            self.login(&mut churn).await;
        }
        self.top_up_sockets(&mut churn).await;
        tokio::join!(self.traffic(until), self.churn(&mut churn, until));
        for socket in churn.sockets.drain(..) {
            socket.close().await;
        }
    }

    async fn traffic(&self, until: Instant) {
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / self.load.rps.max(0.1)));
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut in_flight = FuturesUnordered::new();
        let mut sent = 0u64;
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if Instant::now() >= until {
                        break;
                    }
                    sent += 1;
                    let port = self.edge_ports[sent as usize % self.edge_ports.len()];
                    let probe = self.load.probe_every > 0 && sent.is_multiple_of(self.load.probe_every);
                    in_flight.push(self.request(port, probe, sent));
                }
                Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
            }
        }
        while in_flight.next().await.is_some() {}
    }

    /// One request on edge `port`: with a live session, or replaying a
    /// terminated one when `probe` (a live one while none has ended yet).
    async fn request(&self, port: u16, probe: bool, n: u64) {
        let ended = probe.then(|| self.pick(self.ended.lock().expect("ended lock").iter(), n)).flatten();
        let probe = ended.is_some();
        let Some(session) = ended.or_else(|| self.pick(self.pool.lock().expect("pool lock").iter(), n)) else { return };
        let admitted = match self.admits(port, &session.token, n).await {
            Ok(admitted) => admitted,
            Err(why) => return self.tally.fail(format!("request on port {port}: {why:#}")),
        };
        match (probe, admitted) {
            (true, false) => Tally::add(&self.tally.probes, 1),
            (true, true) => {
                Tally::add(&self.tally.revivals, 1);
                self.tally.describe(format!("REVIVAL: terminated session {} let through on port {port}", session.id));
            }
            (false, true) => Tally::add(&self.tally.requests, 1),
            // Terminated while the request was in flight: what should happen.
            (false, false) if !self.is_live(&session.id) => {}
            (false, false) => self.tally.fail(format!("live session {} refused on port {port}", session.id)),
        }
    }

    fn pick<'s>(&self, sessions: impl IntoIterator<Item = &'s Session>, n: u64) -> Option<Session> {
        let sessions: Vec<&Session> = sessions.into_iter().collect();
        (!sessions.is_empty()).then(|| sessions[(n as usize / 7) % sessions.len()].clone())
    }

    fn is_live(&self, id: &str) -> bool {
        self.pool.lock().expect("pool lock").iter().any(|s| s.id == id)
    }

    /// Does the edge on `port` let `token` through to the upstream now?
    /// (`Ok(false)`: refused with a login redirect, 401 or 403.)
    async fn admits(&self, port: u16, token: &str, n: u64) -> Result<bool> {
        let response = self
            .http
            .get(format!("http://127.0.0.1:{port}/soak/{n}"))
            .header("host", APP_HOST)
            .header("cookie", format!("__Host-portcullis_session.app={token}"))
            .send()
            .await?;
        match response.status().as_u16() {
            200 => {
                let body = response.text().await?;
                if body != "ok\n" {
                    bail!("200 with a body not from the upstream: {body:?}");
                }
                Ok(true)
            }
            302 | 401 | 403 => Ok(false),
            status => bail!("status {status}: {}", response.text().await.unwrap_or_default()),
        }
    }

    async fn churn(&self, churn: &mut Churn, until: Instant) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let every = |n: u64, second: u64| n > 0 && second.is_multiple_of(n);
        let mut second = 0u64;
        loop {
            tick.tick().await;
            if Instant::now() >= until {
                return;
            }
            second += 1;
            self.reap_sockets(churn);
            if every(self.load.login_every, second) {
                if self.pool.lock().expect("pool lock").len() >= self.load.sessions {
                    self.terminate_session(churn, 0).await;
                }
                self.login(churn).await;
            }
            if every(self.load.terminate_every, second) {
                let live = self.pool.lock().expect("pool lock").len();
                if live > 0 {
                    self.terminate_session(churn, second as usize % live).await;
                }
            }
            if every(self.load.user_terminate_every, second) {
                self.terminate_user(churn).await;
            }
            if every(self.load.ws_replace_every, second) {
                if let Some(oldest) = churn.sockets.pop_front() {
                    oldest.close().await;
                }
            }
            self.top_up_sockets(churn).await;
        }
    }

    /// Mints a session for the next user not cooling down after a termination.
    async fn login(&self, churn: &mut Churn) {
        churn.cooling.retain(|(_, since)| since.elapsed() < RELOGIN_AFTER);
        let users = self.load.users.max(1);
        let Some(user) = (0..users)
            .map(|i| (churn.next_user + i) % users)
            .find(|user| churn.cooling.iter().all(|(cooling, _)| cooling != user))
        else {
            return;
        };
        churn.next_user = user + 1;
        match self.plane.login(&email(user)).await {
            Ok((id, token)) => {
                Tally::add(&self.tally.logins, 1);
                self.pool.lock().expect("pool lock").push(Session { id, token, user });
            }
            Err(why) => self.tally.fail(format!("login of {}: {why:#}", email(user))),
        }
    }

    /// Terminates the pool's session at `index` (`?wait=true`) and checks it.
    async fn terminate_session(&self, churn: &mut Churn, index: usize) {
        let session = {
            let mut pool = self.pool.lock().expect("pool lock");
            if index >= pool.len() {
                return;
            }
            pool.remove(index)
        };
        let path = format!("/sessions/{}/terminate?wait=true", session.id);
        match self.call(&path, &json!({"reason": "soak"})).await {
            Ok(_) => {
                Tally::add(&self.tally.terminations, 1);
                self.check_ended(churn, vec![session]).await;
            }
            Err(why) => self.tally.fail(format!("terminate session {}: {why:#}", session.id)),
        }
    }

    /// Terminates the next user holding sessions (`?wait=true`) and checks
    /// each of its sessions.
    async fn terminate_user(&self, churn: &mut Churn) {
        let sessions: Vec<Session> = {
            let mut pool = self.pool.lock().expect("pool lock");
            let Some(user) = pool.first().map(|s| s.user) else { return };
            let (ended, kept) = std::mem::take(&mut *pool).into_iter().partition(|s| s.user == user);
            *pool = kept;
            ended
        };
        let user = sessions[0].user;
        let body = json!({"email": email(user), "reason": "soak"});
        match self.call("/users/terminate?wait=true", &body).await {
            Ok(answer) => {
                churn.cooling.push((user, std::time::Instant::now()));
                let ended = answer["sessions_ended"].as_u64().unwrap_or(0);
                Tally::add(&self.tally.terminations, ended);
                if ended != sessions.len() as u64 {
                    self.tally.fail(format!(
                        "terminating {} ended {ended} sessions, not {}",
                        email(user),
                        sessions.len()
                    ));
                }
                self.check_ended(churn, sessions).await;
            }
            Err(why) => self.tally.fail(format!("terminate user {}: {why:#}", email(user))),
        }
    }

    /// `POST /api/v1{path}`; the answer, or why it failed.
    async fn call(&self, path: &str, body: &Value) -> Result<Value> {
        let response = self.plane.post(path, body).send().await?;
        let status = response.status();
        let answer: Value = response.json().await?;
        if !status.is_success() {
            bail!("{status} {answer}");
        }
        if answer["receipt"]["complete"] != json!(true) {
            bail!("not applied by every edge: {}", answer["receipt"]);
        }
        Ok(answer)
    }

    /// Each terminated session must be refused by every edge and its
    /// websockets closed within [`ENFORCED_WITHIN`]; then it joins the probes.
    async fn check_ended(&self, churn: &mut Churn, sessions: Vec<Session>) {
        let answered = Instant::now();
        for session in sessions {
            for &port in &self.edge_ports {
                loop {
                    match self.admits(port, &session.token, 0).await {
                        Ok(false) => break,
                        Ok(true) if answered.elapsed() < ENFORCED_WITHIN => {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        Ok(true) => {
                            self.tally.fail(format!("session {} still let through on port {port} 2 s on", session.id));
                            break;
                        }
                        Err(why) => {
                            self.tally.fail(format!("checking ended session {} on port {port}: {why:#}", session.id));
                            break;
                        }
                    }
                }
            }
            let (theirs, others) =
                std::mem::take(&mut churn.sockets).into_iter().partition(|s| s.session == session.id);
            churn.sockets = others;
            for socket in theirs {
                let left = ENFORCED_WITHIN.saturating_sub(answered.elapsed()).max(Duration::from_millis(100));
                match socket.ended_within(left).await {
                    Some(SocketEnd::ClosedByEdge) => {}
                    other => self.tally.fail(format!("websocket of ended session {}: {other:?}", session.id)),
                }
            }
            let mut ended = self.ended.lock().expect("ended lock");
            ended.push_back(session);
            if ended.len() > PROBED {
                ended.pop_front();
            }
        }
    }

    /// Counts websockets that ended without being asked to as failures.
    fn reap_sockets(&self, churn: &mut Churn) {
        let (done, open): (VecDeque<HeldSocket>, _) =
            std::mem::take(&mut churn.sockets).into_iter().partition(HeldSocket::is_finished);
        churn.sockets = open;
        for socket in done {
            self.tally.fail(format!("websocket of live session {} ended on its own", socket.session));
        }
    }

    /// Opens websockets on live sessions (those without one first) until
    /// there are `--websockets`.
    async fn top_up_sockets(&self, churn: &mut Churn) {
        while churn.sockets.len() < self.load.websockets {
            let session = {
                let pool = self.pool.lock().expect("pool lock");
                let free = pool.iter().find(|s| churn.sockets.iter().all(|held| held.session != s.id));
                match free.or_else(|| pool.get(churn.opened % pool.len().max(1))) {
                    Some(session) => session.clone(),
                    None => return,
                }
            };
            let port = self.edge_ports[churn.opened % self.edge_ports.len()];
            churn.opened += 1;
            match HeldSocket::open(port, &session.id, &session.token).await {
                Ok(socket) => {
                    Tally::add(&self.tally.ws_opened, 1);
                    churn.sockets.push_back(socket);
                }
                Err(why) => return self.tally.fail(format!("websocket on port {port}: {why:#}")),
            }
        }
    }
}

/// The churn loop's own state.
struct Churn {
    /// Open websockets, oldest first.
    sockets: VecDeque<HeldSocket>,
    next_user: usize,
    /// Users terminated lately, and when.
    cooling: Vec<(usize, std::time::Instant)>,
    /// Websockets opened so far (spreads them over edges and sessions).
    opened: usize,
}

fn email(user: usize) -> String {
    format!("soak{user}@{USER_DOMAIN}")
}
