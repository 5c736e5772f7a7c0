//! SIEM sinks against real receivers: the signed JSON-lines webhook against
//! the independent Python receiver (a refused batch is sent again, whole;
//! every event arrives, in order, with a valid signature), and syslog
//! (RFC 5424, octet counting) over TCP and TLS into Debian's rsyslogd.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{free_port, ControlPlane, TempDir, ADMIN_TOKEN};
use crate::relying_parties::Receiver;

async fn plane_with(dir: &TempDir, sinks: String) -> ControlPlane {
    let database = format!("sqlite://{}", dir.path().join("cp.db").display());
    ControlPlane::start_on_with(&database, dir.path(), free_port(), free_port(), &[("siem_sinks", sinks)])
        .await
        .unwrap_or_else(|log| panic!("the control plane did not start:\n{log}"))
}

async fn signals(plane: &ControlPlane, count: usize) {
    for n in 0..count {
        let body = json!({ "id": format!("s-{n}"), "type": "sink.test", "email": format!("user{n}@corp.example") });
        let answer = plane
            .http()
            .post(format!("{}/api/v1/signals", plane.url))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
    }
}

async fn newest_audit_id(plane: &ControlPlane) -> i64 {
    plane.api_get("/audit?limit=1").await["entries"][0]["id"].as_i64().expect("an entry")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_sink_sends_signed_json_lines_and_resends_a_refused_batch_whole() {
    let dir = TempDir::new("siem-webhook");
    let receiver = Receiver::start(&dir, "500,204");
    let secret = dir.path().join("hook-secret");
    let sinks = format!(
        "[{{ name = \"hook\", kind = \"webhook\", url = \"http://127.0.0.1:{}/siem\", token_file = \"{}\", batch = 50 }}]",
        receiver.port,
        secret.display()
    );
    let plane = plane_with(&dir, sinks).await;
    signals(&plane, 30).await;
    let newest = newest_audit_id(&plane).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let (requests, delivered) = loop {
        let requests = receiver.wait_for(2, Duration::from_secs(30)).await;
        let delivered: Vec<i64> = requests
            .iter()
            .filter(|r| r["answer"] == "204")
            .flat_map(|r| r["body"].as_array().cloned().unwrap_or_default())
            .map(|e| e["metadata"]["uid"].as_str().unwrap().trim_start_matches("portcullis-audit-").parse().unwrap())
            .collect();
        if delivered.last() == Some(&newest) {
            break (requests, delivered);
        }
        assert!(Instant::now() < deadline, "not everything arrived: {delivered:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(delivered, (1..=newest).collect::<Vec<_>>(), "every event once, in order, after the refusal");
    assert!(requests.iter().all(|r| r["signature_ok"] == true), "signed: {requests:?}");
    assert!(requests.iter().all(|r| r["content_type"] == "application/x-ndjson"));
    // The refused batch is read again from the cursor: its events lead the
    // next batch (which may have grown), none skipped.
    let (refused, first_ok) = (&requests[0], &requests[1]);
    assert_eq!(refused["answer"], "500");
    let refused_events = refused["body"].as_array().unwrap();
    assert_eq!(&first_ok["body"].as_array().unwrap()[..refused_events.len()], &refused_events[..]);
    let event =
        &first_ok["body"].as_array().unwrap().iter().find(|e| e["unmapped"]["action"] == "signal.received").cloned();
    let event = event.as_ref().expect("a signal event");
    assert_eq!(event["class_uid"], 6003);
    assert!(event["user"]["email_addr"].as_str().is_some_and(|e| e.ends_with("@corp.example")), "{event}");
}

/// `rsyslogd` in the foreground on `port`, writing `msgid sd msg` lines to
/// `out`; over TLS with `cert`/`key` when given.
struct Rsyslog {
    child: Child,
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Rsyslog {
    fn start(dir: &Path, name: &str, port: u16, tls: Option<((&Path, &Path), &Path)>) -> Option<Self> {
        if !Path::new("/usr/sbin/rsyslogd").exists() {
            assert!(std::env::var_os("CI").is_none(), "scripts/setup.sh installs rsyslog");
            return None;
        }
        let work = dir.join(format!("{name}-work"));
        std::fs::create_dir_all(&work).unwrap();
        let out = dir.join(format!("{name}.log"));
        let driver = match tls {
            Some(((cert, key), ca)) => format!(
                "global(workDirectory=\"{w}\" DefaultNetstreamDriver=\"gtls\" DefaultNetstreamDriverCAFile=\"{a}\" \
                 DefaultNetstreamDriverCertFile=\"{c}\" DefaultNetstreamDriverKeyFile=\"{k}\")\n\
                 module(load=\"imtcp\" StreamDriver.Name=\"gtls\" StreamDriver.Mode=\"1\" StreamDriver.AuthMode=\"anon\")\n",
                w = work.display(),
                a = ca.display(),
                c = cert.display(),
                k = key.display()
            ),
            None => format!("global(workDirectory=\"{}\")\nmodule(load=\"imtcp\")\n", work.display()),
        };
        let config = format!(
            "{driver}input(type=\"imtcp\" port=\"{port}\" address=\"127.0.0.1\")\n\
             template(name=\"fields\" type=\"list\") {{ property(name=\"msgid\") constant(value=\"\\t\") \
             property(name=\"structured-data\") constant(value=\"\\t\") property(name=\"msg\") constant(value=\"\\n\") }}\n\
             action(type=\"omfile\" file=\"{}\" template=\"fields\")\n",
            out.display()
        );
        let conf = dir.join(format!("{name}.conf"));
        std::fs::write(&conf, config).unwrap();
        let child = Command::new("/usr/sbin/rsyslogd")
            .arg("-n")
            .arg("-f")
            .arg(&conf)
            .arg("-i")
            .arg(dir.join(format!("{name}.pid")))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start rsyslogd");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "rsyslogd did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(Self { child })
    }
}

/// The lines rsyslogd wrote: (msgid, structured data, the OCSF event).
fn received(out: &Path) -> Vec<(String, String, Value)> {
    let text = std::fs::read_to_string(out).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, '\t');
            let (msgid, sd, msg) = (parts.next()?, parts.next()?, parts.next()?);
            Some((msgid.to_owned(), sd.to_owned(), serde_json::from_str(msg.trim()).ok()?))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syslog_sinks_deliver_rfc5424_over_tcp_and_tls_to_rsyslog() {
    let dir = TempDir::new("siem-syslog");
    let (tcp_port, tls_port) = (free_port(), free_port());
    let pki = crate::tls::TestPki::new(dir.path(), "syslog");
    let Some(_plain) = Rsyslog::start(dir.path(), "plain", tcp_port, None) else { return };
    let Some(_tls) =
        Rsyslog::start(dir.path(), "tls", tls_port, Some(((pki.cert.as_path(), pki.key.as_path()), pki.ca.as_path())))
    else {
        return;
    };
    let cert = pki.ca_arg();
    let sinks = format!(
        "[{{ name = \"syslog-tcp\", kind = \"syslog\", url = \"tcp://127.0.0.1:{tcp_port}\", hostname = \"cp-test\" }}, \
         {{ name = \"syslog-tls\", kind = \"syslog\", url = \"tls://127.0.0.1:{tls_port}\", ca_file = \"{cert}\" }}]"
    );
    let plane = plane_with(&dir, sinks).await;
    signals(&plane, 25).await;
    let newest = newest_audit_id(&plane).await;
    for name in ["plain", "tls"] {
        let out = dir.path().join(format!("{name}.log"));
        let deadline = Instant::now() + Duration::from_secs(30);
        let lines = loop {
            let lines = received(&out);
            if lines.len() as i64 >= newest {
                break lines;
            }
            assert!(
                Instant::now() < deadline,
                "{name}: {} of {newest} events arrived\n{}",
                lines.len(),
                plane.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let ids: Vec<String> =
            lines.iter().map(|(_, _, e)| e["metadata"]["uid"].as_str().unwrap().to_owned()).collect();
        let expected: Vec<String> = (1..=newest).map(|n| format!("portcullis-audit-{n}")).collect();
        assert_eq!(ids, expected, "{name}: every event once, in order");
        let (msgid, sd, event) = lines.iter().find(|(_, _, e)| e["unmapped"]["action"] == "signal.received").unwrap();
        assert_eq!(msgid, "signal.received");
        assert!(sd.starts_with("[portcullis@32473 uid=\"portcullis-audit-"), "{name}: {sd}");
        assert!(sd.contains("user=\"user") && sd.contains("class_uid=\"6003\""), "{name}: {sd}");
        assert_eq!(event["class_uid"], 6003);
    }
}

/// `cli/tests/receivers/siem_http.py`: Splunk HEC and Elastic bulk, from their documentation.
struct SiemHttp {
    child: Child,
    port: u16,
    log: std::path::PathBuf,
}

impl Drop for SiemHttp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SiemHttp {
    fn start(dir: &Path, hec_token: &str) -> Self {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/receivers/siem_http.py");
        let (port_file, log) = (dir.join("siem-http.port"), dir.join("siem-http.jsonl"));
        let child = Command::new("python3")
            .args([script, &port_file.display().to_string(), &log.display().to_string(), hec_token])
            .spawn()
            .expect("start the SIEM contract server");
        let deadline = Instant::now() + Duration::from_secs(10);
        let port = loop {
            if let Some(port) = std::fs::read_to_string(&port_file).ok().and_then(|p| p.trim().parse().ok()) {
                break port;
            }
            assert!(Instant::now() < deadline, "the SIEM contract server did not start");
            std::thread::sleep(Duration::from_millis(20));
        };
        Self { child, port, log }
    }

    fn stored(&self, sink: &str) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()).filter(|v| v["sink"] == sink).collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn splunk_hec_and_elastic_bulk_store_every_event_once_through_their_faults() {
    let dir = TempDir::new("siem-saas");
    let server = SiemHttp::start(dir.path(), "hec-token-5f2a");
    let token = dir.write("hec-token", "hec-token-5f2a");
    let sinks = format!(
        "[{{ name = \"splunk\", kind = \"splunk\", url = \"http://127.0.0.1:{p}\", token_file = \"{t}\", hostname = \"cp-test\", batch = 20 }}, \
         {{ name = \"elastic\", kind = \"elastic\", url = \"http://127.0.0.1:{p}\", index = \"portcullis-events\", batch = 20 }}]",
        p = server.port,
        t = token.display()
    );
    let plane = plane_with(&dir, sinks).await;
    signals(&plane, 40).await;
    let poison = json!({ "id": "poison-1", "type": "sink.test", "email": "eve@corp.example", "detail": "poison pill" });
    let answer = plane
        .http()
        .post(format!("{}/api/v1/signals", plane.url))
        .bearer_auth(ADMIN_TOKEN)
        .json(&poison)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    signals(&plane, 5).await; // after the poison: must still arrive
    let newest = newest_audit_id(&plane).await;
    let uid = |v: &Value| v.as_str().unwrap().trim_start_matches("portcullis-audit-").parse::<i64>().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let splunk: Vec<i64> = server.stored("splunk").iter().map(|e| uid(&e["event"]["metadata"]["uid"])).collect();
        let elastic: Vec<i64> = server.stored("elastic").iter().map(|d| uid(&d["_id"])).collect();
        if splunk.last() == Some(&newest) && elastic.len() as i64 == newest - 1 {
            // Splunk: every event once, in order, after the busy answer.
            assert_eq!(splunk, (1..=newest).collect::<Vec<_>>());
            // Elastic: every event once (the 429 item sent again, its batch's
            // stored items refused as conflicts), except the poison pill.
            let mut sorted = elastic.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), elastic.len(), "no document twice");
            assert_eq!(sorted.len() as i64, newest - 1, "all but the poison pill");
            break;
        }
        assert!(Instant::now() < deadline, "splunk {splunk:?}\nelastic {elastic:?}\n{}", plane.log_text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let hec = server.stored("splunk");
    assert_eq!((hec[0]["sourcetype"].as_str(), hec[0]["host"].as_str()), (Some("ocsf"), Some("cp-test")));
    let doc = server.stored("elastic").into_iter().find(|d| d["doc"]["event"]["action"] == "signal.received").unwrap();
    assert_eq!(doc["doc"]["event"]["category"], json!(["configuration"]));
    assert!(doc["doc"]["user"]["email"].as_str().is_some_and(|e| e.ends_with("@corp.example")), "{doc}");
    assert!(doc["doc"]["@timestamp"].as_str().is_some(), "ECS @timestamp: {doc}");
    let metrics = plane.http().get(format!("{}/metrics", plane.url)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("siem_events_total{outcome=\"rejected\",sink=\"elastic\"} 1"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqs_sink_signs_with_sigv4_and_fills_a_fifo_queue_in_order() {
    let Ok(moto) = which_moto() else {
        assert!(std::env::var_os("CI").is_none(), "scripts/setup.sh installs moto[server]");
        return;
    };
    let dir = TempDir::new("siem-sqs");
    let port = free_port();
    let _server = Killed(
        Command::new(moto)
            .args(["-p", &port.to_string()])
            .env("INITIAL_NO_AUTH_ACTION_COUNT", "4") // the setup's calls; then every request must be signed
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server"),
    );
    let endpoint = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "moto_server did not listen");
        std::thread::sleep(Duration::from_millis(100));
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/receivers/sqs_queue.py");
    let setup = Command::new("python3").args([script, "setup", &endpoint]).output().expect("set the queue up");
    assert!(setup.status.success(), "{}", String::from_utf8_lossy(&setup.stderr));
    let queue: Value = serde_json::from_slice(&setup.stdout).unwrap();
    let (url, key, secret) = (
        queue["queue_url"].as_str().unwrap().to_owned(),
        queue["access_key_id"].as_str().unwrap().to_owned(),
        queue["secret_access_key"].as_str().unwrap().to_owned(),
    );
    let secret_file = dir.write("sqs-secret", &secret);
    let sinks = format!(
        "[{{ name = \"sqs\", kind = \"sqs\", url = \"{url}\", endpoint = \"{endpoint}\", region = \"us-east-1\", \
         access_key_id = \"{key}\", token_file = \"{}\", batch = 40 }}]",
        secret_file.display()
    );
    let plane = plane_with(&dir, sinks).await;
    signals(&plane, 25).await;
    let newest = newest_audit_id(&plane).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut bodies: Vec<Value> = Vec::new();
    while (bodies.len() as i64) < newest {
        assert!(Instant::now() < deadline, "{} of {newest} arrived\n{}", bodies.len(), plane.log_text());
        tokio::time::sleep(Duration::from_millis(200)).await;
        let drained = Command::new("python3").args([script, "drain", &endpoint, &url, &key, &secret]).output().unwrap();
        assert!(drained.status.success(), "{}", String::from_utf8_lossy(&drained.stderr));
        bodies.extend(
            String::from_utf8_lossy(&drained.stdout).lines().map(|l| serde_json::from_str::<Value>(l).unwrap()),
        );
    }
    let ids: Vec<String> = bodies.iter().map(|b| b["metadata"]["uid"].as_str().unwrap().to_owned()).collect();
    let expected: Vec<String> = (1..=newest).map(|n| format!("portcullis-audit-{n}")).collect();
    assert_eq!(ids, expected, "every event once, in order (FIFO queue)");
    assert!(!plane.log_text().contains("SQS answered 403"), "every request was signed correctly");
}

fn which_moto() -> Result<std::path::PathBuf, ()> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("moto_server"))
        .find(|candidate| candidate.exists())
        .ok_or(())
}

/// A child process killed on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
