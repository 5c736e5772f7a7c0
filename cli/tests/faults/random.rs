//! A randomized run with a fixed seed: two PostgreSQL replicas and two
//! edges (each listing both replicas, in opposite orders), and a few
//! hundred operations — mint a session, terminate a session, terminate a
//! user, SIGKILL or bring back a replica, restart an edge, look for
//! revivals. It counts revivals (a terminated session let through again by
//! any ready edge: must be 0) and measures, for every termination, the time
//! from the answer until every ready edge refuses it (must be at most
//! [`ENFORCED_WITHIN`]), and for every new session the time until every
//! edge admits it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::cluster::{admitted_everywhere, percentiles, policy, refused_everywhere, Edge, Replica};
use crate::harness::TempDir;
use crate::upstream::Upstream;
use crate::{figures, postgres, ENFORCED_WITHIN, LOOK_FOR};

const OPERATIONS: usize = 300;
const SEED: u64 = 13;
const USERS: usize = 6;

struct Session {
    id: String,
    token: String,
    email: String,
}

struct Run {
    replicas: [Replica; 2],
    edges: [Edge; 2],
    random: StdRng,
    live: Vec<Session>,
    terminated: Vec<Session>,
    gaps: Vec<Duration>,
    admit_gaps: Vec<Duration>,
    revivals: Vec<String>,
    done: BTreeMap<&'static str, usize>,
}

impl Run {
    fn alive(&mut self) -> usize {
        let up: Vec<usize> = (0..2).filter(|&i| self.replicas[i].live.is_some()).collect();
        up[self.random.gen_range(0..up.len())]
    }

    fn edges(&self) -> [&Edge; 2] {
        [&self.edges[0], &self.edges[1]]
    }

    async fn mint(&mut self) {
        let email = format!("user{}@corp.example", self.random.gen_range(0..USERS));
        let via = self.alive();
        let (id, token) = self.replicas[via].mint(&email, "app").await;
        let minted = Instant::now();
        let gap = admitted_everywhere(&self.edges(), &token, minted, LOOK_FOR).await;
        self.admit_gaps.push(gap.unwrap_or_else(|| panic!("new session {id} of {email} is not admitted")));
        self.live.push(Session { id, token, email });
    }

    async fn terminate_session(&mut self) {
        if self.live.is_empty() {
            return self.mint().await;
        }
        let session = self.live.swap_remove(self.random.gen_range(0..self.live.len()));
        let via = self.alive();
        self.replicas[via].terminate(&session.id).await.expect("terminate");
        self.enforced(vec![session], Instant::now()).await;
    }

    async fn terminate_user(&mut self) {
        let email = format!("user{}@corp.example", self.random.gen_range(0..USERS));
        let via = self.alive();
        self.replicas[via].terminate_user(&email).await.expect("terminate user");
        let answered = Instant::now();
        let (ended, kept) = std::mem::take(&mut self.live).into_iter().partition(|s| s.email == email);
        self.live = kept;
        self.enforced(ended, answered).await;
    }

    async fn enforced(&mut self, ended: Vec<Session>, answered: Instant) {
        for session in ended {
            let gap = refused_everywhere(&self.edges(), &session.token, answered, LOOK_FOR).await;
            self.gaps.push(gap.unwrap_or_else(|| panic!("terminated {} is still admitted", session.id)));
            self.terminated.push(session);
        }
    }

    async fn kill_or_revive_a_replica(&mut self) {
        match (0..2).find(|&i| self.replicas[i].live.is_none()) {
            Some(dead) => {
                self.replicas[dead].restart().await;
            }
            None => {
                let victim = self.random.gen_range(0..2);
                self.replicas[victim].kill();
            }
        }
    }

    async fn restart_an_edge(&mut self) {
        let which = self.random.gen_range(0..2);
        self.edges[which].restart().await;
        self.sweep().await;
    }

    /// Asks every ready edge about every terminated session.
    async fn sweep(&mut self) {
        for session in &self.terminated {
            for edge in &self.edges {
                if edge.ready().await && edge.admits(&session.token).await {
                    self.revivals.push(format!("{} on {}", session.id, edge.id));
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_randomized_run_never_revives_a_session_and_enforces_within_two_seconds() {
    let Some(database) = postgres::fresh("a_randomized_run_never_revives_a_session").await else { return };
    let dir = TempDir::new("random");
    let upstream = Upstream::start().await;
    let replicas = [Replica::start(&database.url, dir.path()).await, Replica::start(&database.url, dir.path()).await];
    replicas[0].plane().apply_policy(&policy(upstream.port)).await;
    let (a, b) = (replicas[0].edge_url(), replicas[1].edge_url());
    let edges = [
        Edge::start("edge-a", &[a.clone(), b.clone()], dir.path()).await,
        Edge::start("edge-b", &[b, a], dir.path()).await,
    ];
    let mut run = Run {
        replicas,
        edges,
        random: StdRng::seed_from_u64(SEED),
        live: Vec::new(),
        terminated: Vec::new(),
        gaps: Vec::new(),
        admit_gaps: Vec::new(),
        revivals: Vec::new(),
        done: BTreeMap::new(),
    };
    let started = Instant::now();
    for _ in 0..OPERATIONS {
        let roll = run.random.gen_range(0..100);
        let kind = match roll {
            0..35 => "mint",
            35..65 => "terminate session",
            65..75 => "terminate user",
            75..85 => "kill or revive a replica",
            85..90 => "restart an edge",
            _ => "sweep for revivals",
        };
        match kind {
            "mint" => run.mint().await,
            "terminate session" => run.terminate_session().await,
            "terminate user" => run.terminate_user().await,
            "kill or revive a replica" => run.kill_or_revive_a_replica().await,
            "restart an edge" => run.restart_an_edge().await,
            _ => run.sweep().await,
        }
        *run.done.entry(kind).or_default() += 1;
    }
    if let Some(dead) = (0..2).find(|&i| run.replicas[i].live.is_none()) {
        run.replicas[dead].restart().await;
    }
    run.sweep().await;
    let ops = run.done.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", ");
    figures(
        "randomized run",
        &format!(
            "seed {SEED}, {OPERATIONS} operations in {:.1?} ({ops}); revivals {}; termination to refused on every \
             ready edge: {}; new session to admitted everywhere: {}",
            started.elapsed(),
            run.revivals.len(),
            percentiles(&mut run.gaps.clone()),
            percentiles(&mut run.admit_gaps.clone())
        ),
    );
    assert!(run.revivals.is_empty(), "revived: {:?}", run.revivals);
    let slowest = run.gaps.iter().max().copied().unwrap_or_default();
    assert!(slowest <= ENFORCED_WITHIN, "a termination took {slowest:?} to be in force everywhere");
    let slowest = run.admit_gaps.iter().max().copied().unwrap_or_default();
    assert!(slowest <= ENFORCED_WITHIN, "a new session took {slowest:?} to be admitted everywhere");
}
