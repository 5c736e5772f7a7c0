//! End-to-end tests of the `portcullis` binary's policy commands: `policy
//! check` on the shipped examples and on broken copies (exit codes, errors
//! naming file:line:column, unreadable files), and `policy explain` output for
//! allowed, denied, anonymous and TCP requests, and for malformed arguments.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The workspace root; commands run there so paths print as
/// `policies/examples/company.yaml`.
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

const COMPANY: &str = "policies/examples/company.yaml";

fn portcullis(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_portcullis")).args(args).current_dir(workspace()).output().unwrap()
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn run(args: &[&str]) -> Run {
    let output = portcullis(args);
    Run {
        code: output.status.code(),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {:?}\n--- stdout\n{}--- stderr\n{}", self.code, self.stdout, self.stderr)
    }
}

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("portcullis-cli-{}-{label}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn write(&self, name: &str, text: &str) -> String {
        let path = self.0.join(name);
        fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn company_text() -> String {
    fs::read_to_string(workspace().join(COMPANY)).unwrap()
}

#[test]
fn check_accepts_every_shipped_example() {
    let mut examples: Vec<String> = fs::read_dir(workspace().join("policies/examples"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".yaml"))
        .map(|name| format!("policies/examples/{name}"))
        .collect();
    examples.sort();
    assert!(examples.contains(&COMPANY.to_owned()));
    let args: Vec<&str> = ["policy", "check"].into_iter().chain(examples.iter().map(String::as_str)).collect();
    let out = run(&args);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stderr.is_empty(), "{out:?}");
    for example in &examples {
        assert!(out.stdout.contains(&format!("{example}: ok (")), "{out:?}");
    }
    assert!(out.stdout.contains(&format!("{COMPANY}: ok (4 routes, 10 rules)")), "{out:?}");
}

/// Inserts `line` after the first line of company.yaml equal to `after`,
/// returning the text and the 1-based number of the inserted line.
fn insert_after(after: &str, line: &str) -> (String, usize) {
    let text = company_text();
    let mut lines: Vec<&str> = text.lines().collect();
    let at = lines.iter().position(|l| *l == after).unwrap_or_else(|| panic!("no line `{after}`")) + 1;
    lines.insert(at, line);
    (lines.join("\n") + "\n", at + 1)
}

#[test]
fn check_names_the_line_of_an_inserted_unknown_key() {
    let dir = TempDir::new("unknown-key");
    let cases = [
        ("version: 1", "colour: blue", 1, "unknown key `colour` in the policy document"),
        ("    host: admin.corp.example", "    colour: blue", 5, "unknown key `colour` in a route"),
        ("      on_ip_change: deny", "      colour: blue", 7, "unknown key `colour` in route `options`"),
        ("      - name: sre", "        colour: blue", 9, "unknown key `colour` in a rule"),
        (
            "          groups_any: [admins]",
            "          colour: blue",
            11,
            "unknown key `colour` in the `allow` conditions",
        ),
    ];
    for (i, (after, line, column, message)) in cases.into_iter().enumerate() {
        let (text, line_no) = insert_after(after, line);
        let path = dir.write(&format!("company-{i}.yaml"), &text);
        let out = run(&["policy", "check", &path]);
        assert_eq!(out.code, Some(1), "{out:?}");
        assert!(out.stdout.is_empty(), "{out:?}");
        let expected = format!("{path}:{line_no}:{column}: error: {message}");
        assert!(out.stderr.contains(&expected), "expected `{expected}` in\n{out:?}");
        // Compiler-style excerpt: the offending line and a caret under the column.
        assert!(out.stderr.contains(&format!("{line_no} | {line}\n")), "{out:?}");
        assert!(out.stderr.contains(&format!("| {}^", " ".repeat(column - 1))), "{out:?}");
        assert!(out.stderr.contains("1 of 1 policy files have errors"), "{out:?}");
    }
}

#[test]
fn check_reports_every_file_and_fails_if_any_fails() {
    let dir = TempDir::new("mixed");
    let (text, line_no) = insert_after("    host: wiki.corp.example", "    colour: blue");
    let bad = dir.write("bad.yaml", &text);
    let out = run(&["policy", "check", COMPANY, &bad]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stdout.contains(&format!("{COMPANY}: ok")), "{out:?}");
    assert!(out.stderr.contains(&format!("{bad}:{line_no}:5: error: unknown key `colour`")), "{out:?}");
    assert!(out.stderr.contains("1 of 2 policy files have errors"), "{out:?}");
}

#[test]
fn check_of_a_missing_file_says_it_cannot_read_it() {
    let dir = TempDir::new("missing");
    let missing = dir.0.join("no-such-policy.yaml");
    let missing = missing.to_str().unwrap();
    let out = run(&["policy", "check", missing]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains(&format!("error: cannot read {missing}: ")), "{out:?}");
    assert!(out.stderr.contains("1 of 1 policy files have errors"), "{out:?}");
}

#[test]
fn check_and_explain_refuse_a_deeply_nested_file_without_crashing() {
    // 200,000 nested `- ` used to overflow the stack: SIGABRT, no message.
    let dir = TempDir::new("nested");
    let path = dir.write("nested.yaml", &"- ".repeat(200_000));
    let expected = format!("{path}:1:129: error: lists and mappings nest deeper than the limit of 64 levels here");
    let mut explain: Vec<&str> = ADMIN_REQUEST.to_vec();
    explain[3] = &path;
    explain.push("203.0.113.7");
    for args in [&["policy", "check", &path][..], &explain] {
        let out = run(args);
        assert_eq!(out.code, Some(1), "{out:?}");
        assert!(out.stderr.contains(&expected), "{out:?}");
        // The 400 KB line is shown cut around the column, not whole.
        assert!(out.stderr.len() < 1_000, "{} bytes of errors", out.stderr.len());
    }
}

#[test]
fn check_needs_at_least_one_file() {
    let out = run(&["policy", "check"]);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("<FILES>..."), "{out:?}");
}

const ADMIN_REQUEST: [&str; 15] = [
    "policy",
    "explain",
    "--policy",
    COMPANY,
    "--email",
    "ada@corp.example",
    "--groups",
    "admins",
    "--host",
    "admin.corp.example",
    "--method",
    "GET",
    "--at",
    "2026-11-23T10:00:00+01:00",
    "--ip",
];

fn explain_admin(ip: &str, extra: &[&str]) -> Run {
    let args: Vec<&str> = ADMIN_REQUEST.iter().copied().chain([ip]).chain(extra.iter().copied()).collect();
    run(&args)
}

fn lines(out: &Run) -> Vec<&str> {
    out.stdout.lines().collect()
}

#[test]
fn explain_an_allowed_request() {
    let out = explain_admin("203.0.113.7", &[]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(
        lines(&out),
        [
            "decision  allow",
            "reason    allowed by rule `admins-from-office` of route `admin`",
            "route     admin (policies/examples/company.yaml:40:5) -> https://10.0.1.20:8443",
            "rule      admins-from-office (policies/examples/company.yaml:57:9) allow",
            "rules     health-check (policies/examples/company.yaml:49:9): `paths` [/healthz] — the path is /",
            "          no-bearer-tokens (policies/examples/company.yaml:54:9): \
             `credential` [bearer, service] — the caller used browser",
            "          admins-from-office (policies/examples/company.yaml:57:9): matched",
        ],
        "{out:?}"
    );
}

#[test]
fn explain_a_request_no_rule_allows() {
    let out = explain_admin("198.51.100.1", &[]);
    assert_eq!(out.code, Some(0), "explaining a denial is not a failure: {out:?}");
    assert_eq!(
        lines(&out),
        [
            "decision  deny",
            "reason    no rule of route `admin` allows this request (default deny)",
            "route     admin (policies/examples/company.yaml:40:5) -> https://10.0.1.20:8443",
            "rules     health-check (policies/examples/company.yaml:49:9): `paths` [/healthz] — the path is /",
            "          no-bearer-tokens (policies/examples/company.yaml:54:9): \
             `credential` [bearer, service] — the caller used browser",
            "          admins-from-office (policies/examples/company.yaml:57:9): \
             `source_ip` [203.0.113.0/24, 2001:db8:10::/48] — the client is 198.51.100.1",
        ],
        "{out:?}"
    );
}

#[test]
fn explain_a_request_a_deny_rule_refuses() {
    let out = explain_admin("203.0.113.7", &["--credential", "bearer"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(lines(&out)[..2], ["decision  deny", "reason    denied by rule `no-bearer-tokens` of route `admin`"]);
    assert_eq!(lines(&out)[3], "rule      no-bearer-tokens (policies/examples/company.yaml:54:9) deny", "{out:?}");
}

#[test]
fn explain_uses_session_and_login_ages() {
    let stale = explain_admin("203.0.113.7", &["--session-age", "13h"]);
    assert_eq!(
        lines(&stale)[..2],
        ["decision  login-required", "reason    log in again: route `admin` requires a login within the last 12h"],
        "{stale:?}"
    );
    let relogged = explain_admin("203.0.113.7", &["--session-age", "13h", "--auth-age", "1h"]);
    assert_eq!(lines(&relogged)[0], "decision  allow", "{relogged:?}");
}

#[test]
fn explain_judges_the_canonical_path_like_the_edge() {
    let refused = explain_admin("203.0.113.7", &["--path", "/a%2fb"]);
    assert_eq!(refused.code, Some(0), "{refused:?}");
    assert_eq!(lines(&refused)[0], "decision  deny", "{refused:?}");
    assert!(lines(&refused)[1].starts_with("reason    the edge answers 400 (bad_request_target): "), "{refused:?}");
    let params = explain_admin("203.0.113.7", &["--path", "/x;jsessionid=1"]);
    assert!(lines(&params)[1].starts_with("reason    the edge answers 400 (path_parameters): "), "{params:?}");
    let dots = explain_admin("203.0.113.7", &["--path", "/t/../%61dmin//x"]);
    assert_eq!(lines(&dots)[0], "decision  allow", "{dots:?}");
    assert_eq!(lines(&dots)[4], "path      /admin/x (upstream receives /admin/x)", "{dots:?}");
}

#[test]
fn explain_an_anonymous_request_and_a_tcp_flow() {
    let common = ["policy", "explain", "--policy", COMPANY, "--ip", "198.51.100.1", "--at", "2026-11-23T10:00:00Z"];
    let anonymous: Vec<&str> = common.iter().copied().chain(["--host", "wiki.corp.example", "--path", "/x"]).collect();
    let out = run(&anonymous);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(lines(&out)[..2], ["decision  login-required", "reason    route `wiki` requires a login"], "{out:?}");

    let health: Vec<&str> =
        common.iter().copied().chain(["--host", "wiki.corp.example", "--path", "/healthz"]).collect();
    assert_eq!(lines(&run(&health))[0], "decision  allow");

    let ssh_args = ["--tcp", "ssh.internal:22", "--email", "sam@corp.example", "--groups", "sre,oncall"];
    let ssh: Vec<&str> = common.iter().copied().chain(ssh_args).collect();
    let out = run(&ssh);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(
        lines(&out),
        [
            "decision  allow",
            "reason    allowed by rule `sre` of route `ssh`",
            "route     ssh (policies/examples/company.yaml:84:5) -> tcp 10.0.2.5:22",
            "rule      sre (policies/examples/company.yaml:91:9) allow",
            "rules     sre (policies/examples/company.yaml:91:9): matched",
        ],
        "{out:?}"
    );

    let nowhere: Vec<&str> = common.iter().copied().chain(["--host", "nowhere.example"]).collect();
    let out = run(&nowhere);
    assert_eq!(lines(&out), ["decision  deny", "reason    no route serves this host and path"], "{out:?}");
}

#[test]
fn explain_passes_claims() {
    let common = ["policy", "explain", "--policy", COMPANY, "--ip", "10.0.9.9", "--host", "ci.apps.corp.example"];
    let service = ["--email", "ci@ci.internal", "--credential", "service", "--method", "POST"];
    let args: Vec<&str> = common.iter().chain(&service).copied().chain(["--claim", "client_id=ci-runner"]).collect();
    assert_eq!(lines(&run(&args))[1], "reason    allowed by rule `ci-service` of route `internal-apps`");
    let args: Vec<&str> = common.iter().chain(&service).copied().chain(["--claim", "client_id=other"]).collect();
    assert_eq!(lines(&run(&args))[0], "decision  deny");
    let args: Vec<&str> = common.iter().chain(&service).copied().chain(["--claim", "client_id"]).collect();
    let out = run(&args);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("expected NAME=VALUE, found `client_id`"), "{out:?}");
}

#[test]
fn explain_rejects_a_malformed_time_clearly() {
    for bad in ["2026-11-23", "2026-11-23 10:00", "tomorrow", "2026-11-23T25:00:00Z"] {
        let args: Vec<&str> = ADMIN_REQUEST[..12].iter().copied().chain(["--ip", "203.0.113.7", "--at", bad]).collect();
        let out = run(&args);
        assert_eq!(out.code, Some(1), "{out:?}");
        assert!(out.stdout.is_empty(), "{out:?}");
        let expected = format!("error: --at expects RFC 3339 such as 2026-11-23T10:00:00+01:00, found `{bad}`");
        assert!(out.stderr.starts_with(&expected), "{out:?}");
    }
}

#[test]
fn explain_rejects_a_malformed_age_naming_the_option() {
    let out = explain_admin("203.0.113.7", &["--session-age", "5x"]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("--session-age"), "{out:?}");
    assert!(out.stderr.contains("expected a duration such as `30m`, `8h` or `1h30m`, found `5x`"), "{out:?}");
    let out = explain_admin("203.0.113.7", &["--auth-age", "soon"]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("--auth-age"), "{out:?}");
}

#[test]
fn explain_with_a_broken_policy_prints_its_errors() {
    let dir = TempDir::new("explain-broken");
    let (text, line_no) = insert_after("    host: admin.corp.example", "    colour: blue");
    let path = dir.write("broken.yaml", &text);
    let out = run(&["policy", "explain", "--policy", &path, "--host", "admin.corp.example", "--ip", "10.0.0.1"]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    assert!(out.stderr.contains(&format!("{path}:{line_no}:5: error: unknown key `colour` in a route")), "{out:?}");
}
