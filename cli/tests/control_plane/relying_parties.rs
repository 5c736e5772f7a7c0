//! Terminate everywhere (issue 15): a termination signs the user out of the
//! relying parties too, through the durable outbox, against a webhook
//! receiver written independently in Python (`cli/tests/receivers`) that
//! checks the HMAC signature itself and records what it received.
//!
//! The receiver first rate-limits (429, Retry-After: 1), then holds the
//! next attempt while the control plane is SIGKILLed; after the restart the
//! job's lease runs out and it is delivered again, with the same
//! idempotency key, and applied. A refusal (401) fails a job until an admin
//! retries it.

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{free_port, ControlPlane, TempDir};
use crate::portal::{Parts, PortalWorld};

pub(crate) const SECRET: &str = "whsec-portcullis-test-4b1d9c2e7f";

pub(crate) struct Receiver {
    child: Child,
    log: PathBuf,
    pub(crate) port: u16,
}

impl Receiver {
    pub(crate) fn start(dir: &TempDir, plan: &str) -> Self {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/receivers/webhook_receiver.py");
        let port_file = dir.path().join("receiver.port");
        let log = dir.path().join("receiver.jsonl");
        let secret = dir.write("hook-secret", SECRET);
        let child = Command::new("python3")
            .args([script, &port_file.display().to_string(), &log.display().to_string()])
            .arg(&secret)
            .arg(plan)
            .spawn()
            .expect("start the Python webhook receiver");
        let deadline = Instant::now() + Duration::from_secs(10);
        let port = loop {
            if let Some(port) = std::fs::read_to_string(&port_file).ok().and_then(|p| p.trim().parse().ok()) {
                break port;
            }
            assert!(Instant::now() < deadline, "the receiver did not start");
            std::thread::sleep(Duration::from_millis(20));
        };
        Self { child, log, port }
    }

    fn requests(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines().map(|line| serde_json::from_str(line).expect("a receiver log line")).collect()
    }

    pub(crate) async fn wait_for(&self, count: usize, within: Duration) -> Vec<Value> {
        let deadline = Instant::now() + within;
        loop {
            let requests = self.requests();
            if requests.len() >= count {
                return requests;
            }
            assert!(
                Instant::now() < deadline,
                "the receiver got {} requests, not {count}: {requests:?}",
                requests.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn relying_parties(dir: &TempDir, hook_port: u16) -> String {
    format!(
        "[{{ name = \"hook\", kind = \"webhook\", url = \"http://127.0.0.1:{hook_port}/portcullis\", \
         secret_file = \"{}\", on = [\"terminate_user\", \"lock\"], timeout_ms = 1500 }}]",
        dir.path().join("hook-secret").display()
    )
}

async fn start_plane(database: &str, dir: &TempDir, ports: (u16, u16), hook_port: u16) -> ControlPlane {
    let settings = [("relying_parties", relying_parties(dir, hook_port)), ("log", "info".to_owned())];
    ControlPlane::start_on_with(database, dir.path(), ports.0, ports.1, &settings)
        .await
        .unwrap_or_else(|log| panic!("the control plane did not start:\n{log}"))
}

async fn delivery_of(plane: &ControlPlane, email: &str) -> Value {
    let deliveries = plane.api_get(&format!("/deliveries?email={email}")).await;
    assert_eq!(deliveries.as_array().map(Vec::len), Some(1), "{deliveries}");
    deliveries[0].clone()
}

async fn wait_state(plane: &ControlPlane, email: &str, state: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let delivery = delivery_of(plane, email).await;
        if delivery["state"] == state {
            return delivery;
        }
        assert!(Instant::now() < deadline, "the delivery never became {state}: {delivery}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_termination_reaches_the_relying_party_through_429_and_a_crash() {
    let dir = TempDir::new("rp-webhook");
    let receiver = Receiver::start(&dir, "429:1,hang:20,204,401,204");
    let database = format!("sqlite://{}", dir.path().join("cp.db").display());
    let ports = (free_port(), free_port());
    let plane = start_plane(&database, &dir, ports, receiver.port).await;

    let terminate = json!({ "email": "Bob@Corp.example", "reason": "laptop stolen" });
    let (status, answer) = plane.api_post("/users/terminate?wait=true", &terminate).await.unwrap();
    assert_eq!(status, 200, "{answer}");
    let line = &answer["receipt"]["relying_parties"][0];
    assert_eq!((line["relying_party"].as_str(), line["state"].as_str()), (Some("hook"), Some("retrying")), "{answer}");
    assert!(line["error"].as_str().is_some_and(|e| e.starts_with("429")), "the RP's own words: {line}");
    assert!(line["next_attempt_at"].is_string(), "{line}");

    // The second attempt comes after the asked-for second, and is held
    // while the control plane dies.
    let requests = receiver.wait_for(2, Duration::from_secs(10)).await;
    let waited = requests[1]["at"].as_f64().unwrap() - requests[0]["at"].as_f64().unwrap();
    assert!(waited >= 1.0, "Retry-After: 1 was honoured ({waited:.3} s)");
    plane.kill();
    let killed = Instant::now();
    let plane = start_plane(&database, &dir, ports, receiver.port).await;
    let applied = wait_state(&plane, "bob@corp.example", "applied").await;
    let redelivered_after = killed.elapsed();

    let requests = receiver.requests();
    assert_eq!(requests.len(), 3, "one attempt per 429, crash and success, no more: {requests:?}");
    let key = requests[0]["idempotency_key"].as_str().expect("an idempotency key");
    for request in &requests {
        assert_eq!(request["idempotency_key"], key, "every attempt of the job carries the same key");
        assert_eq!(request["signature_ok"], true, "the receiver verified the signature: {request}");
        assert_eq!(request["content_type"], "application/json");
        assert_eq!(request["path"], "/portcullis");
        let body = &request["body"];
        assert_eq!(
            (body["type"].as_str(), body["user"].as_str(), body["email"].as_str(), body["reason"].as_str()),
            (Some("terminate_user"), Some("email:bob@corp.example"), Some("bob@corp.example"), Some("laptop stolen"))
        );
        assert_eq!(body["id"], key);
    }
    assert_eq!((applied["job"].as_str(), applied["attempts"].as_u64()), (Some(key), Some(3)), "{applied}");
    eprintln!("redelivered and applied {} ms after the SIGKILL", redelivered_after.as_millis());

    // A refusal fails the job until an admin retries it.
    let lock = json!({ "email": "eve@corp.example", "reason": "suspicious" });
    let (status, answer) = plane.api_post("/users/lock?wait=true", &lock).await.unwrap();
    assert_eq!(status, 200, "{answer}");
    let failed = wait_state(&plane, "eve@corp.example", "failed").await;
    assert!(failed["error"].as_str().is_some_and(|e| e.contains("401") && e.contains("answer 401")), "{failed}");
    assert_eq!(receiver.requests()[3]["body"]["type"], "lock");
    let job = failed["job"].as_str().unwrap();
    let retry = plane.cli(&["deliveries", "retry", job]).await;
    assert!(retry.ok().contains(job), "{retry:?}");
    wait_state(&plane, "eve@corp.example", "applied").await;
    let (status, again) = plane.api_post(&format!("/deliveries/{job}/retry"), &json!(null)).await.unwrap();
    assert_eq!((status, again["error"]["code"].as_str()), (409, Some("not_retryable")), "{again}");

    let audit = plane.api_get("/audit?action=relying_party.delivery").await;
    let reasons: Vec<&str> = audit["entries"].as_array().unwrap().iter().filter_map(|e| e["reason"].as_str()).collect();
    assert_eq!(
        reasons.len(),
        4,
        "429, applied, 401, applied (the attempt cut by the crash left no result): {reasons:?}"
    );
    let metrics = plane.http().get(format!("{}/metrics", plane.url)).send().await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains(
            "portcullis_control_plane_relying_party_deliveries_total{outcome=\"applied\",relying_party=\"hook\"} 2"
        ),
        "{metrics}"
    );
    assert!(!plane.log_text().contains(SECRET), "the webhook secret stays out of the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_portal_shows_each_relying_partys_answer_and_retries_a_refused_one() {
    let receiver_dir = TempDir::new("rp-portal-receiver");
    let receiver = Receiver::start(&receiver_dir, "401,204");
    let secret = receiver_dir.path().join("hook-secret");
    let Some(world) = PortalWorld::start_with("rp-portal", Parts::default(), |dir| {
        std::fs::copy(&secret, dir.path().join("hook-secret")).expect("the hook secret");
        vec![("relying_parties", relying_parties(dir, receiver.port))]
    })
    .await
    else {
        return;
    };
    let chrome = &world.chrome;
    world.sign_in_with_token().await;
    chrome.goto(&world.portal("#/user/bob%40corp.example")).await;
    chrome.click("[data-test=terminate-all]").await;
    chrome.type_into("dialog textarea[name=reason]", "laptop stolen").await;
    chrome.click("dialog button[type=submit]").await;
    // The receipt waits for the relying party's first answer and shows it.
    let line = chrome.wait_text("dialog [data-test=receipt-relying-parties]", "Failed").await;
    assert!(line.contains("hook") && line.contains("401"), "{line}");
    chrome.screenshots("receipt-relying-parties").await;
    chrome.click("dialog [data-test=dialog-close]").await;

    chrome.find("tr[data-test=delivery][data-state=failed]").await;
    chrome.screenshots("user-deliveries-failed").await;
    chrome.click("tr[data-test=delivery] [data-test=retry-delivery]").await;
    chrome.find("tr[data-test=delivery][data-state=applied]").await;
    chrome.screenshots("user-deliveries-applied").await;
    let requests = receiver.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(requests[0]["idempotency_key"], requests[1]["idempotency_key"], "a retry is the same delivery");
    let audit = world.plane.api_get("/audit?action=relying_party.retry").await;
    assert_eq!(audit["entries"][0]["actor"], "portal:token:bootstrap", "{audit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_postgres_replicas_deliver_each_job_once() {
    let Some(database) = crate::postgres::fresh("two_postgres_replicas_deliver_each_job_once").await else { return };
    let dir = TempDir::new("rp-replicas");
    let receiver = Receiver::start(&dir, "204");
    let a = start_plane(&database.url, &dir, (free_port(), free_port()), receiver.port).await;
    let b = start_plane(&database.url, &dir, (free_port(), free_port()), receiver.port).await;
    // Terminations through both replicas: each replica's worker wakes at
    // once for its own, and polls for the other's; both claim from one queue.
    let terminations = 60;
    for n in 0..terminations {
        let plane = if n % 2 == 0 { &a } else { &b };
        let body = json!({ "email": format!("user{n}@corp.example"), "reason": "sweep" });
        let (status, answer) = plane.api_post("/users/terminate", &body).await.unwrap();
        assert_eq!(status, 200, "{answer}");
    }
    let requests = receiver.wait_for(terminations, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await; // a second delivery of any job would show by now
    let requests = receiver.requests().len().max(requests.len());
    assert_eq!(requests, terminations, "each job delivered exactly once across the two replicas");
    let keys: std::collections::HashSet<String> =
        receiver.requests().iter().map(|r| r["idempotency_key"].as_str().unwrap().to_owned()).collect();
    assert_eq!(keys.len(), terminations);
    let deliveries = a.api_get("/deliveries?state=applied&limit=1000").await;
    assert_eq!(deliveries.as_array().map(Vec::len), Some(terminations), "every job applied");
    // Both replicas delivered: the queue is shared, not owned by one of them.
    let mut per_replica = Vec::new();
    for plane in [&a, &b] {
        let metrics = plane.http().get(format!("{}/metrics", plane.url)).send().await.unwrap().text().await.unwrap();
        let line = metrics
            .lines()
            .find(|l| l.starts_with("portcullis_control_plane_relying_party_deliveries_total{outcome=\"applied\""))
            .unwrap_or_else(|| panic!("no applied deliveries counted:\n{metrics}"));
        per_replica.push(line.rsplit(' ').next().unwrap().parse::<usize>().unwrap());
    }
    eprintln!("deliveries per replica: {per_replica:?}");
    assert_eq!(per_replica.iter().sum::<usize>(), terminations, "{per_replica:?}");
    assert!(per_replica.iter().all(|n| *n > 0), "both replicas delivered: {per_replica:?}");
}
