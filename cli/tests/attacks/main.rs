//! The attack suite of issue 11: the real control plane and `portcullis
//! edge` processes in front of a recording upstream, attacked with raw
//! bytes. Every case asserts the status the client saw AND what the
//! upstream actually received (or that it received nothing). One
//! `#[tokio::test]` per class; each collects every failing case and panics
//! once at the end, naming them all, after printing
//! `attack class <name>: N cases`.
//!
//! Classes: `paths` (canonical request targets), `upgrades` (h2c and
//! websocket smuggling), `credentials` (what must stay at the edge),
//! `headers` (look-alikes and overrides), `anonymous`, `smuggling`
//! (HTTP/1.1 framing), `tokens` (forged and misused tokens), `login`
//! (redirects and logout), `http2` (the TLS listener), `expiry` (live
//! connections outliving their admission) and `admin_api`; `login_loop`
//! (a session refused right after its login ends on a page, not in a
//! redirect loop) drives the fake IdP like a browser.
//!
//! Run: `cargo test -p portcullis --test attacks -- --nocapture` (it is part
//! of `scripts/test.sh`); about 30 s, one control plane and edge per class.
//! `ATTACKS_LEGACY_COOKIE=1` presents sessions in the pre-issue-11 cookie
//! `portcullis_session`, to see what an edge without per-route cookies lets
//! through.

#[path = "../control_plane/edge_identity.rs"]
mod edge_identity;
#[path = "../control_plane/edge_node.rs"]
#[allow(dead_code)]
mod edge_node;
#[path = "../control_plane/harness.rs"]
#[allow(dead_code)]
mod harness;

mod admin_api;
mod anonymous;
mod checks;
mod credentials;
mod expiry;
mod fake_idp;
mod forge;
mod headers;
mod http2;
mod login;
mod login_loop;
mod paths;
mod recording_upstream;
mod smuggling;
mod tokens;
mod upgrades;
mod wire;
mod world;

use std::time::Duration;

use recording_upstream::Recorded;
use world::World;

/// The outcomes of one class.
pub struct Report {
    class: &'static str,
    cases: usize,
    failures: Vec<String>,
}

impl Report {
    /// A report for `class`; a policy the edge could not take is its first failure.
    pub fn new(class: &'static str, world: &World) -> Self {
        let mut report = Self { class, cases: 0, failures: Vec::new() };
        if let Some(note) = &world.policy_note {
            report.failures.push(format!("[setup] {note}"));
        }
        report
    }

    /// Records one case.
    pub fn record(&mut self, name: &str, outcome: Result<(), String>) {
        self.cases += 1;
        if let Err(why) = outcome {
            self.failures.push(format!("{name}: {why}"));
        }
    }

    /// Prints the count; panics listing every failure.
    pub fn finish(self) {
        println!("attack class {}: {} cases", self.class, self.cases);
        if !self.failures.is_empty() {
            panic!(
                "attack class {}: {} of {} cases failed:\n  - {}",
                self.class,
                self.failures.len(),
                self.cases,
                self.failures.join("\n  - ")
            );
        }
    }
}

/// A check over every request the upstream received during a case.
pub type SeenCheck = Box<dyn Fn(&[Recorded]) -> Result<(), String> + Send + Sync>;
/// A check of one request the upstream received.
pub type RequestCheck = Box<dyn Fn(&Recorded) -> Result<(), String> + Send + Sync>;

/// What the upstream must have received for a case.
pub enum Expect {
    /// Nothing at all.
    Nothing,
    /// Exactly one HTTP/1 request, with exactly this request target.
    Target(String),
    /// A check over everything received during the case.
    Check(SeenCheck),
}

impl Expect {
    /// Exactly one request with `target`, and `check` holds for it.
    pub fn one(target: &str, check: impl Fn(&Recorded) -> Result<(), String> + Send + Sync + 'static) -> Self {
        let target = target.to_owned();
        Self::Check(Box::new(move |seen| {
            let [one] = seen else { return Err(format!("expected one request for {target}, got {}", listing(seen))) };
            if one.target != target {
                return Err(format!("the upstream got target {:?}, expected {target:?}", one.target));
            }
            check(one)
        }))
    }

    /// Checks `seen`.
    pub fn verify(&self, seen: &[Recorded]) -> Result<(), String> {
        match self {
            Self::Nothing if seen.is_empty() => Ok(()),
            Self::Nothing => Err(format!("the upstream must receive nothing, got {}", listing(seen))),
            Self::Target(target) => match seen {
                [one] if one.target == *target => Ok(()),
                _ => Err(format!("the upstream must receive exactly {target:?}, got {}", listing(seen))),
            },
            Self::Check(check) => check(seen),
        }
    }
}

/// Requests for failure messages.
pub fn listing(seen: &[Recorded]) -> String {
    if seen.is_empty() {
        return "nothing".into();
    }
    seen.iter().map(Recorded::describe).collect::<Vec<_>>().join(" ;; ")
}

/// One table-driven case: raw request bytes, acceptable statuses (0: the
/// edge closed without answering), and what the upstream must receive.
pub struct Case {
    /// Name in the report.
    pub name: String,
    /// The bytes sent on a fresh connection.
    pub request: Vec<u8>,
    /// Acceptable statuses.
    pub status: Vec<u16>,
    /// The upstream's side.
    pub upstream: Expect,
}

impl Case {
    /// A case.
    pub fn new(name: impl Into<String>, request: Vec<u8>, status: &[u16], upstream: Expect) -> Self {
        Self { name: name.into(), request, status: status.to_vec(), upstream }
    }
}

/// Time for a request the edge forwarded late to show up upstream.
pub const SETTLE: Duration = Duration::from_millis(30);

/// Runs `cases` one after the other against the world's edge.
pub async fn run_cases(world: &World, report: &mut Report, cases: Vec<Case>) {
    for case in cases {
        let mark = world.upstream.log.mark();
        let outcome = match wire::exchange(world.edge.port, &case.request).await {
            Err(e) => Err(e),
            Ok(response) => {
                tokio::time::sleep(SETTLE).await;
                let seen = world.upstream.log.since(mark);
                let status = if case.status.contains(&response.status) {
                    Ok(())
                } else {
                    Err(format!("status {} (expected one of {:?})", response.summary(), case.status))
                };
                match (status, case.upstream.verify(&seen)) {
                    (Ok(()), Ok(())) => Ok(()),
                    (Err(a), Ok(())) | (Ok(()), Err(a)) => Err(a),
                    (Err(a), Err(b)) => Err(format!("{a}; {b}")),
                }
            }
        };
        report.record(&case.name, outcome);
    }
}

/// Statuses of a refusal that needs a login (API client).
pub const LOGIN: &[u16] = &[401];
/// A canonicalization refusal.
pub const BAD: &[u16] = &[400];
/// Forbidden by policy.
pub const DENY: &[u16] = &[403];
/// Allowed.
pub const OK: &[u16] = &[200];
