//! Fixtures shared by the benchmarks: policies with a chosen number of rules
//! in a chosen shape, snapshots with many terminated sessions, identities.
//! Everything is generated from a fixed seed so runs are comparable.

#![forbid(unsafe_code)]

pub mod control_plane;
pub mod group_commit;

use std::fmt::Write as _;
use std::sync::Arc;

use portcullis_policy::wire::SnapshotBody;
use portcullis_policy::{CredentialKind, Identity, IdentityParts, Policy, PolicySource, SessionId, Snapshot};

/// How the rules of a generated policy are laid out.
#[derive(Debug, Clone, Copy)]
pub enum RuleShape {
    /// One route whose rules each allow one user by email: the rule index
    /// finds the user's rule directly. The benchmarked user matches the last rule.
    PerUserOneRoute,
    /// One route whose rules each allow a path prefix: nothing to index by
    /// identity, so every rule before the match is checked (the worst case).
    PerPathOneRoute,
    /// Ten rules per route over `n / 10` hosts: the route lookup is a hash hit
    /// and only that route's rules are checked.
    TenPerRoute,
}

/// A deterministic 64-bit generator (SplitMix64).
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A random session id.
    pub fn session_id(&mut self) -> SessionId {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.next_u64().to_le_bytes());
        bytes[8..].copy_from_slice(&self.next_u64().to_le_bytes());
        SessionId::from_bytes(bytes)
    }
}

/// YAML for a policy with `rules` rules in `shape`.
pub fn policy_yaml(rules: usize, shape: RuleShape) -> String {
    let mut yaml = String::from("version: 1\nroutes:\n");
    match shape {
        RuleShape::PerUserOneRoute | RuleShape::PerPathOneRoute => {
            yaml.push_str(
                "  - name: app\n    host: app.corp.example\n    upstream: http://127.0.0.1:8080\n    rules:\n",
            );
            for i in 0..rules {
                match shape {
                    RuleShape::PerUserOneRoute => {
                        let _ =
                            writeln!(yaml, "      - allow: {{ email: [user{i}@corp.example], methods: [GET, POST] }}");
                    }
                    _ => {
                        let _ = writeln!(yaml, "      - allow: {{ paths: [/p{i}/**], groups_any: [dev] }}");
                    }
                }
            }
        }
        RuleShape::TenPerRoute => {
            for route in 0..rules.div_ceil(10) {
                let _ = write!(
                    yaml,
                    "  - name: app{route}\n    host: app{route}.corp.example\n    upstream: http://127.0.0.1:8080\n    rules:\n"
                );
                for i in 0..10.min(rules - route * 10) {
                    let _ = writeln!(yaml, "      - allow: {{ groups_any: [team{i}], paths: [/p{i}/**] }}");
                }
            }
        }
    }
    yaml
}

/// The compiled policy for `policy_yaml(rules, shape)`.
pub fn policy(rules: usize, shape: RuleShape) -> Arc<Policy> {
    let source = PolicySource { name: format!("bench-{rules}"), text: policy_yaml(rules, shape) };
    Arc::new(Policy::compile(source).unwrap_or_else(|e| panic!("bench policy does not compile: {e}")))
}

/// A browser-session identity with the given email and groups.
pub fn identity(email: &str, groups: &[&str], session: SessionId, now: i64) -> Identity {
    Identity::new(IdentityParts {
        subject: format!("sub-{email}"),
        email: email.to_owned(),
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        credential: Some(CredentialKind::Browser),
        session_id: Some(session),
        issued_at: now - 60,
        auth_time: now - 60,
        session_started_at: now - 60,
        ..IdentityParts::default()
    })
}

/// The wire body of a snapshot with `terminated` random terminated sessions.
pub fn snapshot_body(terminated: usize, seed: u64) -> SnapshotBody {
    let mut rng = Rng::new(seed);
    let policy = policy(10, RuleShape::TenPerRoute);
    SnapshotBody {
        seq: 1,
        policy: policy.source().clone(),
        terminated_sessions: (0..terminated).map(|i| (rng.session_id(), 1_800_000_000 + i as i64)).collect(),
        revoked_tokens: Vec::new(),
        users: Vec::new(),
        signing_keys: Vec::new(),
    }
}

/// A snapshot with `terminated` random terminated sessions.
pub fn snapshot(terminated: usize, seed: u64) -> Snapshot {
    Snapshot::from_body(snapshot_body(terminated, seed)).unwrap_or_else(|e| panic!("bench snapshot: {e}"))
}
