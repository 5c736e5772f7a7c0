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
