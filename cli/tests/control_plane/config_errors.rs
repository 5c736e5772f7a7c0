//! A bad configuration stops `portcullis control-plane` (and `portcullis
//! edge`) before it opens anything: exit status 64 and a message naming the
//! key, whether the mistake is in the TOML file or in a `PORTCULLIS_*`
//! variable.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::harness::{command, Run, TempDir, EDGE_SECRET};

/// Runs the control plane with `file` as its configuration and `env`; it
/// must exit on its own within 10 s.
fn start(file: &str, env: &[(&str, &str)]) -> Run {
    start_as("control-plane", file, env)
}

/// Runs `portcullis <subcommand>` with `file` as its configuration and `env`.
fn start_as(subcommand: &str, file: &str, env: &[(&str, &str)]) -> Run {
    let dir = TempDir::new("config");
    let path = dir.write("control-plane.toml", file);
    let mut cmd = command();
    cmd.arg(subcommand).arg("--config").arg(&path).current_dir(dir.path());
    // A configuration that is accidentally valid must not touch anything shared.
    cmd.env("PORTCULLIS_DATABASE_URL", format!("sqlite://{}", dir.path().join("db.sqlite").display()));
    for (key, value) in env {
        cmd.env(key, value);
    }
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().expect("poll").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "the control plane kept running with a bad configuration: {:?}",
                Run::from(child.wait_with_output().unwrap())
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output").into()
}

/// Asserts exit status 64 and that standard error names `key`.
fn rejects(run: &Run, key: &str) {
    assert_eq!(run.code, Some(64), "{run:?}");
    assert!(run.stderr.contains(&format!("`{key}`")), "the message should name `{key}`: {run:?}");
    assert!(run.stderr.starts_with("error: "), "{run:?}");
    assert_eq!(run.stderr.lines().count(), 1, "one line, no log noise: {run:?}");
}

fn secret_line() -> String {
    format!("edge_secret = \"{EDGE_SECRET}\"\n")
}

#[test]
fn an_unknown_key_in_the_file_is_named() {
    let run = start(&format!("{}lisen = \"127.0.0.1:7400\"\n", secret_line()), &[]);
    rejects(&run, "lisen");
}

#[test]
fn an_edge_without_a_way_to_enroll_is_named() {
    let run = start_as("edge", "edge_id = \"e1\"\n", &[]);
    rejects(&run, "join_token");
    assert!(run.stderr.contains("PORTCULLIS_JOIN_TOKEN"), "says how to set it: {run:?}");
    let without_file = start_as("edge", "join_token = \"pcjt_x\"\n", &[]);
    rejects(&without_file, "credential_file");
    let not_a_key = start_as("edge", "credential_file = \"/dev/null\"\n", &[]);
    rejects(&not_a_key, "credential_file");
}

#[test]
fn a_short_edge_secret_is_named() {
    rejects(&start("edge_secret = \"short\"\n", &[]), "edge_secret");
}

#[test]
fn a_bad_listen_address_is_named() {
    rejects(&start(&format!("{}listen = \"nowhere\"\n", secret_line()), &[]), "listen");
}

#[test]
fn a_bad_address_from_the_environment_is_named() {
    let run = start(&secret_line(), &[("PORTCULLIS_EDGE_LISTEN", "localhost")]);
    rejects(&run, "edge_listen");
}

#[test]
fn a_wrong_type_is_named() {
    rejects(&start(&format!("{}receipt_wait_ms = \"soon\"\n", secret_line()), &[]), "receipt_wait_ms");
}

#[test]
fn an_unsupported_database_is_named() {
    let run = start(&secret_line(), &[("PORTCULLIS_DATABASE_URL", "mysql://root@127.0.0.1/portcullis")]);
    rejects(&run, "database_url");
}

#[test]
fn a_file_that_is_not_toml_is_rejected() {
    let run = start("edge_secret = \n", &[]);
    assert_eq!(run.code, Some(64), "{run:?}");
    assert!(run.stderr.contains("line 1"), "points at the line: {run:?}");
}

#[test]
fn an_unreadable_file_is_named() {
    let mut cmd = command();
    let run: Run =
        cmd.args(["control-plane", "--config", "/nonexistent/portcullis.toml"]).output().expect("run").into();
    assert_eq!(run.code, Some(64), "{run:?}");
    assert!(run.stderr.contains("/nonexistent/portcullis.toml"), "{run:?}");
}

#[test]
fn log_format_json_writes_one_json_object_per_line() {
    // A relying party whose secret file is missing stops the start after
    // the first log lines: those must be JSON, the final error plain.
    let file = format!(
        "{}log_format = \"json\"\n[[relying_parties]]\nname = \"hook\"\nkind = \"webhook\"\n\
         url = \"https://hooks.example\"\nsecret_file = \"/nonexistent/hook-secret\"\n",
        secret_line()
    );
    let run = start(&file, &[]);
    assert_ne!(run.code, Some(0), "{run:?}");
    let (error, logs): (Vec<&str>, Vec<&str>) = run.stderr.lines().partition(|l| l.starts_with("error: "));
    assert_eq!(
        error,
        ["error: relying party `hook`: secret_file /nonexistent/hook-secret: No such file or directory (os error 2)"]
    );
    assert!(!logs.is_empty(), "{run:?}");
    for line in logs {
        let record: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(record["level"].is_string() && record["timestamp"].is_string(), "{record}");
        assert!(record["fields"]["message"].is_string(), "{record}");
    }
    rejects(&start(&format!("{}log_format = \"xml\"\n", secret_line()), &[]), "log_format");
}
