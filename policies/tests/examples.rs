//! A table of decisions on the shipped example policy
//! (`policies/examples/company.yaml`): for each request (identity, target,
//! source address, time) the expected outcome, reason, route and rule. This
//! is the behaviour `portcullis policy explain` documents for that file.

use std::net::IpAddr;
use std::sync::Arc;

use portcullis_policy::{
    evaluate, ClaimValue, CredentialKind, Facts, Identity, IdentityParts, Outcome, Policy, PolicySource, Reason,
    Snapshot, Target,
};

use CredentialKind::{Bearer, Browser, Service};
use Outcome::{Allow, Deny, LoginRequired};

/// Who is asking; `None` in a case means an anonymous request.
struct Who {
    email: &'static str,
    groups: &'static [&'static str],
    credential: CredentialKind,
    claims: &'static [(&'static str, &'static str)],
    /// How long ago the session started, in seconds.
    session_age: i64,
    /// How long ago the user authenticated at the IdP, in seconds.
    auth_age: i64,
}

const HOUR: i64 = 3600;

const fn user(email: &'static str, groups: &'static [&'static str]) -> Option<Who> {
    Some(Who { email, groups, credential: Browser, claims: &[], session_age: HOUR, auth_age: HOUR })
}

const ADMIN: Who = Who {
    email: "ada@corp.example",
    groups: &["admins"],
    credential: Browser,
    claims: &[],
    session_age: HOUR,
    auth_age: HOUR,
};
const ADMIN_WITH_BEARER: Who = Who { credential: Bearer, ..ADMIN };
const ADMIN_LOGGED_IN_13H_AGO: Who = Who { session_age: 13 * HOUR, auth_age: 13 * HOUR, ..ADMIN };
const ADMIN_RELOGGED_IN_11H_AGO: Who = Who { session_age: 13 * HOUR, auth_age: 11 * HOUR, ..ADMIN };
const SRE: Who = Who { groups: &["sre"], ..ADMIN };
const SRE_WITH_BEARER: Who = Who { credential: Bearer, ..SRE };
const CI: Who = Who {
    email: "ci@ci.internal",
    groups: &[],
    credential: Service,
    claims: &[("client_id", "ci-runner")],
    session_age: 0,
    auth_age: 0,
};
const OTHER_CLIENT: Who = Who { claims: &[("client_id", "ci-runner-2")], ..CI };
const CI_CLAIM_ON_BEARER: Who = Who { credential: Bearer, ..CI };

enum To {
    Http(&'static str, &'static str, &'static str),
    Tcp(&'static str),
}

const fn get(host: &'static str, path: &'static str) -> To {
    To::Http(host, path, "GET")
}

/// The decision a case expects: outcome, reason, route and rule names.
type Expect = (Outcome, Reason, Option<&'static str>, Option<&'static str>);

const fn allowed(route: &'static str, rule: &'static str) -> Expect {
    (Allow, Reason::RuleMatched, Some(route), Some(rule))
}
const fn denied_by(route: &'static str, rule: &'static str) -> Expect {
    (Deny, Reason::RuleMatched, Some(route), Some(rule))
}
const fn default_deny(route: &'static str) -> Expect {
    (Deny, Reason::NoRuleMatched, Some(route), None)
}
const fn login_required(route: &'static str) -> Expect {
    (LoginRequired, Reason::LoginRequired, Some(route), None)
}
/// A fresh login would let the caller in through `rule`.
const fn login_too_old(route: &'static str, rule: &'static str) -> Expect {
    (LoginRequired, Reason::LoginTooOld, Some(route), Some(rule))
}
const NO_ROUTE: Expect = (Deny, Reason::NoRoute, None, None);
const NOT_NORMALIZED: Expect = (Deny, Reason::PathNotNormalized, None, None);

struct Case {
    name: &'static str,
    who: Option<Who>,
    to: To,
    ip: &'static str,
    /// RFC 3339. 2026-11-23 is a Monday; Berlin is at +01:00 then.
    at: &'static str,
    expect: Expect,
}

const fn case(
    name: &'static str,
    who: Option<Who>,
    to: To,
    ip: &'static str,
    at: &'static str,
    expect: Expect,
) -> Case {
    Case { name, who, to, ip, at, expect }
}

const OFFICE: &str = "203.0.113.7";
const HOME: &str = "198.51.100.23";
const MONDAY_10: &str = "2026-11-23T10:00:00+01:00";

#[rustfmt::skip]
const CASES: &[Case] = &[
    // wiki: public health check, employees only otherwise.
    case("wiki health check, anonymous", None, get("wiki.corp.example", "/healthz"), HOME, MONDAY_10, allowed("wiki", "health-check")),
    case("wiki health check, anonymous HEAD with a query", None, To::Http("wiki.corp.example", "/healthz?probe=1", "HEAD"), HOME, MONDAY_10, allowed("wiki", "health-check")),
    case("wiki health check, anonymous POST", None, To::Http("wiki.corp.example", "/healthz", "POST"), HOME, MONDAY_10, login_required("wiki")),
    case("wiki, employee", user("bob@corp.example", &[]), get("wiki.corp.example", "/page/Home"), HOME, MONDAY_10, allowed("wiki", "employees")),
    case("wiki, employee with a mixed-case email", user("Bob@CORP.example", &[]), get("wiki.corp.example", "/"), HOME, MONDAY_10, allowed("wiki", "employees")),
    case("wiki, non-employee", user("eve@other.example", &["admins"]), get("wiki.corp.example", "/"), OFFICE, MONDAY_10, default_deny("wiki")),
    case("wiki, look-alike domain", user("eve@evilcorp.example", &[]), get("wiki.corp.example", "/"), HOME, MONDAY_10, default_deny("wiki")),
    case("wiki, anonymous, not the health check", None, get("wiki.corp.example", "/page/Home"), HOME, MONDAY_10, login_required("wiki")),
    case("uppercase host still routes", user("bob@corp.example", &[]), get("WIKI.Corp.Example", "/"), HOME, MONDAY_10, allowed("wiki", "employees")),
    // admin: admins, from the office, in working hours, recent login, no tokens.
    case("admin from the office in working hours", Some(ADMIN), get("admin.corp.example", "/"), OFFICE, MONDAY_10, allowed("admin", "admins-from-office")),
    case("admin from the office over IPv6", Some(ADMIN), To::Http("admin.corp.example", "/users", "POST"), "2001:db8:10:1::5", MONDAY_10, allowed("admin", "admins-from-office")),
    case("admin outside the office", Some(ADMIN), get("admin.corp.example", "/"), HOME, MONDAY_10, default_deny("admin")),
    case("admin on a Saturday", Some(ADMIN), get("admin.corp.example", "/"), OFFICE, "2026-11-28T10:00:00+01:00", default_deny("admin")),
    case("admin at 19:59 Berlin time", Some(ADMIN), get("admin.corp.example", "/"), OFFICE, "2026-11-23T18:59:00Z", allowed("admin", "admins-from-office")),
    case("admin at 20:00 Berlin time", Some(ADMIN), get("admin.corp.example", "/"), OFFICE, "2026-11-23T19:00:00Z", default_deny("admin")),
    case("admin logged in 13 hours ago", Some(ADMIN_LOGGED_IN_13H_AGO), get("admin.corp.example", "/"), OFFICE, MONDAY_10, login_too_old("admin", "admins-from-office")),
    case("admin logged in 13 hours ago, on a Saturday", Some(ADMIN_LOGGED_IN_13H_AGO), get("admin.corp.example", "/"), OFFICE, "2026-11-28T10:00:00+01:00", default_deny("admin")),
    case("admin logged in 13 hours ago, from home", Some(ADMIN_LOGGED_IN_13H_AGO), get("admin.corp.example", "/"), HOME, MONDAY_10, default_deny("admin")),
    case("admin with an old session but a fresh login", Some(ADMIN_RELOGGED_IN_11H_AGO), get("admin.corp.example", "/"), OFFICE, MONDAY_10, allowed("admin", "admins-from-office")),
    case("admin with a bearer token", Some(ADMIN_WITH_BEARER), get("admin.corp.example", "/"), OFFICE, MONDAY_10, denied_by("admin", "no-bearer-tokens")),
    case("non-admin employee on admin", user("bob@corp.example", &["engineering"]), get("admin.corp.example", "/"), OFFICE, MONDAY_10, default_deny("admin")),
    case("admin health check, anonymous GET", None, get("admin.corp.example", "/healthz"), HOME, MONDAY_10, allowed("admin", "health-check")),
    case("admin health check, anonymous HEAD", None, To::Http("admin.corp.example", "/healthz", "HEAD"), HOME, MONDAY_10, login_required("admin")),
    // *.apps.corp.example: engineers; contractors read-only; the CI service.
    case("wildcard app, engineer", user("bob@corp.example", &["engineering"]), get("x.apps.corp.example", "/"), HOME, MONDAY_10, allowed("internal-apps", "engineers")),
    case("wildcard app two labels deep", user("bob@corp.example", &["engineering"]), To::Http("a.b.apps.corp.example", "/x", "DELETE"), HOME, MONDAY_10, allowed("internal-apps", "engineers")),
    case("the wildcard's parent is not covered", user("bob@corp.example", &["engineering"]), get("apps.corp.example", "/"), HOME, MONDAY_10, NO_ROUTE),
    case("wildcard app, engineer outside corp.example", user("eng@other.example", &["engineering"]), get("x.apps.corp.example", "/"), HOME, MONDAY_10, default_deny("internal-apps")),
    case("contractor GET", user("carl@contractor.example", &["contractors"]), get("x.apps.corp.example", "/report"), HOME, MONDAY_10, allowed("internal-apps", "contractors-read-only")),
    case("contractor POST", user("carl@contractor.example", &["contractors"]), To::Http("x.apps.corp.example", "/report", "POST"), HOME, MONDAY_10, denied_by("internal-apps", "contractors-no-writes")),
    case("contractor who is also an engineer, POST", user("cleo@corp.example", &["contractors", "engineering"]), To::Http("x.apps.corp.example", "/", "POST"), HOME, MONDAY_10, denied_by("internal-apps", "contractors-no-writes")),
    case("CI service token", Some(CI), To::Http("deploy.apps.corp.example", "/hooks", "POST"), "10.0.9.9", MONDAY_10, allowed("internal-apps", "ci-service")),
    case("another client's service token", Some(OTHER_CLIENT), To::Http("deploy.apps.corp.example", "/hooks", "POST"), "10.0.9.9", MONDAY_10, default_deny("internal-apps")),
    case("the CI client id on a bearer token", Some(CI_CLAIM_ON_BEARER), To::Http("deploy.apps.corp.example", "/hooks", "POST"), "10.0.9.9", MONDAY_10, default_deny("internal-apps")),
    // ssh over CONNECT: sre with a browser session.
    case("ssh, sre", Some(SRE), To::Tcp("ssh.internal:22"), HOME, MONDAY_10, allowed("ssh", "sre")),
    case("ssh, uppercase CONNECT name", Some(SRE), To::Tcp("SSH.internal:22"), HOME, MONDAY_10, allowed("ssh", "sre")),
    case("ssh, not sre", Some(ADMIN), To::Tcp("ssh.internal:22"), OFFICE, MONDAY_10, default_deny("ssh")),
    case("ssh, sre with a bearer token", Some(SRE_WITH_BEARER), To::Tcp("ssh.internal:22"), HOME, MONDAY_10, default_deny("ssh")),
    case("ssh, anonymous", None, To::Tcp("ssh.internal:22"), HOME, MONDAY_10, login_required("ssh")),
    case("ssh on another port", Some(SRE), To::Tcp("ssh.internal:2222"), HOME, MONDAY_10, NO_ROUTE),
    // No route, and paths that are not in normal form.
    case("unknown host", Some(ADMIN), get("intranet.corp.example", "/"), OFFICE, MONDAY_10, NO_ROUTE),
    case("unknown host, anonymous", None, get("intranet.corp.example", "/"), OFFICE, MONDAY_10, NO_ROUTE),
    case("dot-dot path", user("bob@corp.example", &[]), get("wiki.corp.example", "/a/../admin"), HOME, MONDAY_10, NOT_NORMALIZED),
    case("encoded slash in the health check path", None, get("wiki.corp.example", "/healthz%2f..%2fadmin"), HOME, MONDAY_10, NOT_NORMALIZED),
];

fn company_policy() -> Snapshot {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/company.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    let policy = Policy::compile(PolicySource { name: "examples/company.yaml".into(), text })
        .unwrap_or_else(|errors| panic!("the example policy does not compile:\n{errors}"));
    Snapshot::new(1, Arc::new(policy))
}

fn unix_seconds(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339).unwrap().timestamp()
}

fn identity(who: &Who, now: i64) -> Identity {
    let session_started_at = now - who.session_age;
    Identity::new(IdentityParts {
        subject: format!("sub:{}", who.email),
        email: who.email.into(),
        groups: who.groups.iter().map(|g| (*g).into()).collect(),
        claims: who.claims.iter().map(|(k, v)| ((*k).into(), ClaimValue::One((*v).into()))).collect(),
        credential: Some(who.credential),
        issued_at: session_started_at,
        auth_time: now - who.auth_age,
        session_started_at,
        ..IdentityParts::default()
    })
}

#[test]
fn company_policy_decisions() {
    let snapshot = company_policy();
    let mut failures = Vec::new();
    for case in CASES {
        let now = unix_seconds(case.at);
        let identity = case.who.as_ref().map(|who| identity(who, now));
        let target = match case.to {
            To::Http(host, path, method) => Target::Http { host, path, method },
            To::Tcp(name) => Target::Tcp { name },
        };
        let source_ip: IpAddr = case.ip.parse().unwrap();
        let decision = evaluate(&snapshot, &Facts { target, source_ip, now, identity: identity.as_ref() });
        let got =
            (decision.outcome, decision.reason, decision.route.map(|r| r.name()), decision.rule.map(|r| r.name()));
        let want = case.expect;
        if got != want {
            failures.push(format!("{}:\n    got  {got:?} ({decision})\n    want {want:?}", case.name));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), CASES.len(), failures.join("\n"));
}

#[test]
fn every_route_and_rule_of_the_example_is_exercised() {
    let snapshot = company_policy();
    for route in snapshot.policy().routes() {
        for rule in route.rules() {
            let covered = CASES.iter().any(|c| c.expect.2 == Some(route.name()) && c.expect.3 == Some(rule.name()));
            assert!(covered, "no case is decided by rule `{}` of route `{}`", rule.name(), route.name());
        }
    }
}
