//! Proptest generators for whole policies and for request facts, shared by the
//! property tests. Policies are built as YAML text from a small vocabulary of
//! valid values, then trimmed rule by rule so that the result always compiles
//! (the only way a generated rule can be refused is by being shadowed by an
//! earlier one, which is a compile error).

use std::net::IpAddr;

use portcullis_policy::{
    ClaimValue, CredentialKind, Identity, IdentityParts, Policy, PolicySource, SessionId, Target, TokenId,
};
use proptest::prelude::*;

pub const EMAILS: [&str; 3] = ["ada@corp.example", "bob@corp.example", "eve@other.example"];
pub const DOMAINS: [&str; 2] = ["corp.example", "other.example"];
pub const GROUPS: [&str; 4] = ["eng", "sre", "ops", "admins"];
pub const METHODS: [&str; 4] = ["GET", "HEAD", "POST", "DELETE"];
pub const PATH_GLOBS: [&str; 5] = ["/", "/api/**", "/api/*/x", "/admin/**", "/healthz"];
pub const REQUEST_PATHS: [&str; 6] = ["/", "/api", "/api/v1/x", "/admin/a", "/healthz", "/other"];
pub const CIDRS: [&str; 4] = ["10.0.0.0/8", "10.1.0.0/16", "192.0.2.0/24", "2001:db8::/32"];
pub const SOURCE_IPS: [&str; 5] = ["10.1.2.3", "10.200.0.1", "192.0.2.9", "2001:db8::1", "198.51.100.1"];
pub const CREDENTIALS: [CredentialKind; 3] = [CredentialKind::Browser, CredentialKind::Bearer, CredentialKind::Service];
pub const AGES: [(&str, i64); 2] = [("1h", 3_600), ("8h", 28_800)];
pub const CLIENT_IDS: [&str; 2] = ["ci-runner", "deployer"];

/// Monday 2026-11-23 00:00:00 UTC, in Unix seconds.
pub fn monday() -> i64 {
    chrono::DateTime::parse_from_rfc3339("2026-11-23T00:00:00Z").unwrap().timestamp()
}

/// One generated rule; empty lists mean "condition absent".
#[derive(Debug, Clone)]
pub struct RuleSpec {
    pub allow: bool,
    pub public: bool,
    pub emails: Vec<usize>,
    pub domains: Vec<usize>,
    pub groups_any: Vec<usize>,
    pub groups_all: Vec<usize>,
    pub credentials: Vec<usize>,
    pub client_id: Option<usize>,
    pub max_session_age: Option<usize>,
    pub methods: Vec<usize>,
    pub paths: Vec<usize>,
    pub cidrs: Vec<usize>,
    pub office_hours: bool,
}

/// One generated route: HTTP (exact or wildcard host) or TCP.
#[derive(Debug, Clone)]
pub struct RouteSpec {
    pub kind: RouteKind,
    pub rules: Vec<RuleSpec>,
}

#[derive(Debug, Clone, Copy)]
pub enum RouteKind {
    Http,
    Wildcard,
    Tcp,
}

fn few(n: usize) -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(0..n, 0..3)
}

pub fn rule_spec() -> impl Strategy<Value = RuleSpec> {
    let identity = (few(EMAILS.len()), few(DOMAINS.len()), few(GROUPS.len()), few(GROUPS.len()), few(3));
    let more = (prop::option::weighted(0.2, 0..CLIENT_IDS.len()), prop::option::weighted(0.2, 0..AGES.len()));
    let request = (few(METHODS.len()), few(PATH_GLOBS.len()), few(CIDRS.len()), prop::bool::weighted(0.15));
    (any::<bool>(), prop::bool::weighted(0.25), identity, more, request).prop_map(
        |(allow, public, identity, more, request)| {
            let (emails, domains, groups_any, groups_all, credentials) = identity;
            let mut rule = RuleSpec {
                allow,
                public,
                emails,
                domains,
                groups_any,
                groups_all,
                credentials,
                client_id: more.0,
                max_session_age: more.1,
                methods: request.0,
                paths: request.1,
                cidrs: request.2,
                office_hours: request.3,
            };
            if public {
                // A public rule may not test identity; keep only request facts.
                rule.emails.clear();
                rule.domains.clear();
                rule.groups_any.clear();
                rule.groups_all.clear();
                rule.credentials.clear();
                rule.client_id = None;
                rule.max_session_age = None;
            }
            rule
        },
    )
}

pub fn route_spec(max_rules: usize) -> impl Strategy<Value = RouteSpec> {
    let kind = prop_oneof![3 => Just(RouteKind::Http), 1 => Just(RouteKind::Wildcard), 1 => Just(RouteKind::Tcp)];
    (kind, prop::collection::vec(rule_spec(), 0..=max_rules)).prop_map(|(kind, rules)| RouteSpec { kind, rules })
}

pub fn routes_spec(max_rules: usize) -> impl Strategy<Value = Vec<RouteSpec>> {
    prop::collection::vec(route_spec(max_rules), 1..4)
}

fn quoted(pool: &[&str], picks: &[usize]) -> String {
    let items: Vec<String> = picks.iter().map(|&i| format!("\"{}\"", pool[i])).collect();
    format!("[{}]", items.join(", "))
}

/// The host (HTTP) or CONNECT name (TCP) of route number `i`, as a request
/// would name it.
pub fn request_target(kind: RouteKind, i: usize) -> String {
    match kind {
        RouteKind::Http => format!("r{i}.corp.example"),
        RouteKind::Wildcard => format!("x.w{i}.corp.example"),
        RouteKind::Tcp => format!("svc{i}.internal:22"),
    }
}

fn route_header(kind: RouteKind, i: usize) -> String {
    match kind {
        RouteKind::Http => {
            format!("  - name: route{i}\n    host: r{i}.corp.example\n    upstream: http://10.9.0.{i}:80\n")
        }
        RouteKind::Wildcard => {
            format!("  - name: route{i}\n    host: \"*.w{i}.corp.example\"\n    upstream: http://10.9.0.{i}:80\n")
        }
        RouteKind::Tcp => format!("  - name: route{i}\n    tcp: svc{i}.internal:22\n    upstream: 10.9.0.{i}:22\n"),
    }
}

/// The YAML of one rule named `name`; HTTP-only conditions are left out on
/// TCP routes.
pub fn rule_yaml(rule: &RuleSpec, name: &str, tcp: bool) -> String {
    let mut conditions = Vec::new();
    let mut list = |key: &str, pool: &[&str], picks: &[usize]| {
        if !picks.is_empty() {
            conditions.push(format!("{key}: {}", quoted(pool, picks)));
        }
    };
    list("email", &EMAILS, &rule.emails);
    list("email_domain", &DOMAINS, &rule.domains);
    list("groups_any", &GROUPS, &rule.groups_any);
    list("groups_all", &GROUPS, &rule.groups_all);
    list("credential", &["browser", "bearer", "service"], &rule.credentials);
    list("source_ip", &CIDRS, &rule.cidrs);
    if !tcp {
        list("methods", &METHODS, &rule.methods);
        list("paths", &PATH_GLOBS, &rule.paths);
    }
    if let Some(c) = rule.client_id {
        conditions.push(format!("claims: {{client_id: {{equals: \"{}\"}}}}", CLIENT_IDS[c]));
    }
    if let Some(a) = rule.max_session_age {
        conditions.push(format!("max_session_age: \"{}\"", AGES[a].0));
    }
    if rule.office_hours {
        conditions.push("time: {days: [weekdays], hours: \"08:00-18:00\", timezone: UTC}".into());
    }
    let effect = if rule.allow { "allow" } else { "deny" };
    format!("      - name: {name}\n        public: {}\n        {effect}: {{{}}}\n", rule.public, conditions.join(", "))
}

/// A policy built from `routes`, keeping each rule only if its route still
/// compiles with it (so shadowed rules are dropped). Returns the text and the
/// rules kept per route.
pub fn compiling_policy(routes: &[RouteSpec]) -> (String, Vec<Vec<RuleSpec>>) {
    let mut text = String::from("version: 1\nroutes:\n");
    let mut kept = Vec::with_capacity(routes.len());
    for (i, route) in routes.iter().enumerate() {
        let tcp = matches!(route.kind, RouteKind::Tcp);
        let mut rules: Vec<RuleSpec> = Vec::new();
        let mut yaml = String::new();
        for (j, rule) in route.rules.iter().enumerate() {
            let rule_text = rule_yaml(rule, &format!("r{j}"), tcp);
            // Shadowing is checked within a route, so trying the route alone is enough.
            let trial = format!("version: 1\nroutes:\n{}    rules:\n{yaml}{rule_text}", route_header(route.kind, i));
            match compile(&trial) {
                Ok(_) => {
                    yaml.push_str(&rule_text);
                    rules.push(rule.clone());
                }
                Err(errors) => assert!(
                    errors.iter().all(|e| e.contains("can never match")),
                    "the generator wrote an invalid rule:\n{}\n{trial}",
                    errors.join("\n")
                ),
            }
        }
        text.push_str(&route_header(route.kind, i));
        text.push_str(if rules.is_empty() { "    rules: []\n" } else { "    rules:\n" });
        text.push_str(&yaml);
        kept.push(rules);
    }
    (text, kept)
}

/// Compiles `text`, returning the error messages on failure.
pub fn compile(text: &str) -> Result<Policy, Vec<String>> {
    Policy::compile(PolicySource { name: "generated.yaml".into(), text: text.into() })
        .map_err(|errors| errors.0.iter().map(|e| e.to_string()).collect())
}

/// A generated request: who, from where, when, to what.
#[derive(Debug, Clone)]
pub struct FactsSpec {
    pub email: usize,
    pub groups: Vec<bool>,
    pub credential: usize,
    pub client_id: Option<usize>,
    pub session_age: i64,
    pub source_ip: usize,
    pub now: i64,
    pub route: usize,
    pub unknown_host: bool,
    pub method: usize,
    pub path: usize,
    pub session: [u8; 16],
}

pub fn facts_spec() -> impl Strategy<Value = FactsSpec> {
    let who = (0..EMAILS.len(), prop::collection::vec(any::<bool>(), GROUPS.len()), 0..CREDENTIALS.len());
    let how = (prop::option::of(0..CLIENT_IDS.len()), 0..40_000i64, 0..SOURCE_IPS.len(), 0..7 * 86_400i64);
    let what = (0..8usize, prop::bool::weighted(0.05), 0..METHODS.len(), 0..REQUEST_PATHS.len(), any::<[u8; 16]>());
    (who, how, what).prop_map(|(who, how, what)| FactsSpec {
        email: who.0,
        groups: who.1,
        credential: who.2,
        client_id: how.0,
        session_age: how.1,
        source_ip: how.2,
        now: monday() + how.3,
        route: what.0,
        unknown_host: what.1,
        method: what.2,
        path: what.3,
        session: what.4,
    })
}

impl FactsSpec {
    pub fn identity(&self) -> Identity {
        let started = self.now - self.session_age;
        Identity::new(IdentityParts {
            subject: format!("sub-{}", self.email),
            email: EMAILS[self.email].into(),
            groups: GROUPS.iter().zip(&self.groups).filter(|(_, &on)| on).map(|(g, _)| (*g).into()).collect(),
            claims: self
                .client_id
                .map(|c| ("client_id".into(), ClaimValue::One(CLIENT_IDS[c].into())))
                .into_iter()
                .collect(),
            credential: Some(CREDENTIALS[self.credential]),
            session_id: Some(SessionId::from_bytes(self.session)),
            token_id: Some(TokenId::new(&format!("jti-{}", self.session[0]))),
            issued_at: started,
            issued_at_ms: None,
            auth_time: started,
            session_started_at: started,
            signing_key: None,
        })
    }

    pub fn source_ip(&self) -> IpAddr {
        SOURCE_IPS[self.source_ip].parse().unwrap()
    }

    /// The host or CONNECT name requested (owned so the target can borrow it).
    pub fn target_name(&self, routes: &[RouteSpec]) -> (String, bool) {
        let i = self.route % routes.len();
        let kind = routes[i].kind;
        let name = if self.unknown_host { "nowhere.example".to_owned() } else { request_target(kind, i) };
        (name, matches!(kind, RouteKind::Tcp))
    }

    pub fn target<'a>(&self, name: &'a str, tcp: bool) -> Target<'a> {
        if tcp {
            Target::Tcp { name }
        } else {
            Target::Http { host: name, path: REQUEST_PATHS[self.path], method: METHODS[self.method] }
        }
    }
}

/// Pairs `(later, earlier)` of rule positions in `route.rules` where the
/// compiler refused `later` as shadowed by `earlier`, building the route up
/// rule by rule as [`compiling_policy`] does.
pub fn shadowed_pairs(route: &RouteSpec) -> Vec<(usize, usize)> {
    let tcp = matches!(route.kind, RouteKind::Tcp);
    let mut yaml = String::new();
    let mut pairs = Vec::new();
    for (j, rule) in route.rules.iter().enumerate() {
        let rule_text = rule_yaml(rule, &format!("r{j}"), tcp);
        let trial = format!("version: 1\nroutes:\n{}    rules:\n{yaml}{rule_text}", route_header(route.kind, 0));
        match compile(&trial) {
            Ok(_) => yaml.push_str(&rule_text),
            Err(errors) => {
                let earlier = errors[0].split("rule `r").nth(2).and_then(|rest| rest.split('`').next());
                pairs
                    .push((j, earlier.and_then(|n| n.parse().ok()).expect("a shadowing error names the earlier rule")));
            }
        }
    }
    pairs
}
