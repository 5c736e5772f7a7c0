//! The admin API as an API user finds it (issue 18): schemathesis (PyPI,
//! installed by `scripts/setup.sh`) reads `/api/v1/openapi.json` of a real
//! control plane on SQLite and sends every documented operation a bounded
//! number of generated requests, valid and invalid, with and without the
//! admin token, then follows the links it infers (a listed session to its
//! terminate, a created token to its revoke). Each answer must be no 5xx,
//! a documented status, the documented content type and a body that matches
//! the documented schema. Sessions, an edge, a token and a signal are made
//! first so the operations on existing records are reached too; the control
//! plane is thrown away afterwards, so destructive operations are welcome.
//!
//! The seed is fixed so CI runs the same requests each time;
//! `SCHEMATHESIS_SEED=<n>` explores others (a failure prints the seed and an
//! `st replay` line to reproduce it).

use std::process::Stdio;
use std::time::Duration;

use serde_json::json;

use crate::harness::{ControlPlane, TempDir, ADMIN_TOKEN, POLICY};

/// The schemathesis `scripts/setup.sh` pins.
const SCHEMATHESIS: &str = "4.32.5";
/// Generated requests per operation and phase: enough to reach each
/// operation's validation and its success path, small enough for ~30 s.
const EXAMPLES_PER_OPERATION: &str = "25";
/// The checks: what the API promises its users. Not `negative_data_rejection`
/// and `positive_data_acceptance`: the document describes shapes, while the
/// handlers also check values the schema cannot say (a reason's length
/// after trimming, an email with `@`), so those two would flag the
/// validation the API is meant to do.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance";
const DEFAULT_SEED: &str = "18";

fn schemathesis_version() -> String {
    let output = std::process::Command::new("st").arg("--version").output();
    let output = output.unwrap_or_else(|e| {
        panic!("schemathesis (`st`) is missing ({e}): run scripts/setup.sh (PyPI schemathesis=={SCHEMATHESIS})")
    });
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

async fn seed_records(plane: &ControlPlane) {
    plane.apply_policy(POLICY).await;
    for (email, route) in [("ada@corp.example", "wiki"), ("bob@corp.example", "admin"), ("eve@corp.example", "wiki")] {
        plane.create_session(email, route).await;
    }
    let (status, body) = plane
        .api_post("/service-tokens", &json!({ "name": "ci-runner", "groups": ["deployers"] }))
        .await
        .expect("POST a service token");
    assert_eq!(status, 201, "{body}");
    let (status, body) = plane
        .api_post("/signals", &json!({ "id": "seed-1", "type": "edr.alert", "email": "ada@corp.example" }))
        .await
        .expect("POST a signal");
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_answers_as_its_openapi_document_says() {
    let version = schemathesis_version();
    assert!(
        version.ends_with(SCHEMATHESIS),
        "schemathesis {SCHEMATHESIS} expected, found `{version}`: run scripts/setup.sh"
    );
    let dir = TempDir::new("schemathesis");
    let plane = ControlPlane::start(&format!("sqlite://{}", dir.path().join("cp.db").display()), dir.path()).await;
    seed_records(&plane).await;

    let seed = std::env::var("SCHEMATHESIS_SEED").unwrap_or_else(|_| DEFAULT_SEED.to_owned());
    let schema = format!("{}/api/v1/openapi.json", plane.url);
    let header = format!("Authorization: Bearer {ADMIN_TOKEN}");
    let run = tokio::process::Command::new("st")
        .args(["run", &schema, "--header", &header, "--checks", CHECKS])
        .args(["--max-examples", EXAMPLES_PER_OPERATION, "--seed", &seed, "--workers", "2"])
        .args(["--generation-database", "none", "--request-timeout", "10", "--no-color"])
        // In the temp dir: no `schemathesis.toml` of the checkout applies, no report lands in it.
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(300), run)
        .await
        .expect("schemathesis finishes within 300 s")
        .expect("run schemathesis");
    let report = String::from_utf8_lossy(&output.stdout);
    eprintln!("{report}"); // shown with --nocapture: operations, phases, test cases, warnings
    assert!(
        output.status.success(),
        "schemathesis found answers the OpenAPI document does not describe (seed {seed}):\n{report}\n{}\n\
         --- control-plane log\n{}",
        String::from_utf8_lossy(&output.stderr),
        plane.log_text()
    );
    let count = |label: &str| report.lines().find_map(|l| l.trim().strip_prefix(label)?.trim().parse::<u32>().ok());
    let selected = report.lines().find_map(|l| l.trim().strip_prefix("Selected: ")?.split('/').nth(1)?.parse().ok());
    assert_eq!(count("Tested: "), selected, "every documented operation was tested:\n{report}");

    // The run kept its own token: the later operations were not answered 401 only.
    plane.api_get("/sessions?limit=1").await;
}
