//! `/api/v1/deliveries`: a termination's relying-party jobs listed per user
//! and state, in the receipt, and retried by hand only when failed or dead.
//! The relying party here is a webhook to a closed loopback port, so every
//! attempt fails at once as unreachable and is retried (the process tests
//! in `cli/tests/control_plane/relying_parties.rs` deliver for real).

use serde_json::{json, Value};

use crate::harness::{run_configured, Backend, TestApp, HOOK_SECRET_ENV};

fn extra() -> String {
    format!(
        "[[relying_parties]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/hook\"\n\
         secret_env = \"{HOOK_SECRET_ENV}\"\non = [\"terminate_user\"]\ndeadline_s = 3600\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deliveries_sqlite() {
    run_configured(Backend::Sqlite, "deliveries", &extra(), deliveries).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deliveries_postgres() {
    run_configured(Backend::Postgres, "deliveries", &extra(), deliveries).await;
}

async fn deliveries(t: TestApp) {
    let answer = t
        .post("/api/v1/users/terminate?wait=true")
        .json(json!({ "email": "Ada@Test.example", "reason": "incident" }))
        .send()
        .await
        .ok();
    let line = &answer["receipt"]["relying_parties"][0];
    assert_eq!((line["relying_party"].as_str(), line["state"].as_str()), (Some("hook"), Some("retrying")), "{answer}");
    assert!(line["error"].as_str().is_some_and(|e| e.starts_with("unreachable: connection failed")), "{line}");
    assert!(!line["error"].as_str().unwrap().contains("secret"), "{line}");
    let job = line["job"].as_str().unwrap().to_owned();

    let listed = t.get("/api/v1/deliveries?email=ada@test.example").send().await.ok();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0]["job"].as_str(), listed[0]["action"].as_str(), listed[0]["user"].as_str()),
        (Some(job.as_str()), Some("terminate_user"), Some("email:ada@test.example"))
    );
    assert!(listed[0]["seq"].as_u64() == answer["receipt"]["seq"].as_u64(), "{listed:?}");
    let none: Value = t.get("/api/v1/deliveries?email=bob@test.example").send().await.ok();
    assert_eq!(none, json!([]));
    let pending: Value = t.get("/api/v1/deliveries?state=pending").send().await.ok();
    assert_eq!(pending.as_array().map(Vec::len), Some(1));
    t.get("/api/v1/deliveries?state=lost").send().await.error(400, "bad_request");
    t.get("/api/v1/deliveries?email=a@b.example&sub=x").send().await.error(400, "bad_request");
    t.get("/api/v1/deliveries?limit=0").send().await.error(400, "bad_request");
    t.get("/api/v1/deliveries?colour=red").send().await.error(400, "bad_request");

    // Retrying is for failed or dead deliveries; this one is still retrying by itself.
    let message = t.post(&format!("/api/v1/deliveries/{job}/retry")).send().await.error(409, "not_retryable");
    assert!(message.contains("retrying") || message.contains("pending"), "{message}");
    t.post("/api/v1/deliveries/no-such-job/retry").send().await.error(404, "not_found");

    // A token without the admin scope sees none of it.
    let created = t
        .post("/api/v1/admin-tokens")
        .json(json!({ "name": "reader", "scopes": ["sessions:read"] }))
        .send()
        .await
        .expect(201);
    let reader = created["token"].as_str().unwrap();
    t.get("/api/v1/deliveries").bearer(reader).send().await.error(403, "insufficient_scope");
    t.post(&format!("/api/v1/deliveries/{job}/retry")).bearer(reader).send().await.error(403, "insufficient_scope");
}
