//! What signals change beyond ending sessions (issue 16): a CAEP
//! `token-claims-change` removing a group closes, on every edge, only the
//! live connections that group allowed; the policy's response rules end a
//! session after repeated denials, lock a user on a high-risk signal from
//! the API, and in dry run only write what they would have done.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::edge_node::EdgeNode;
use crate::edge_proxy::open_live_connections;
use crate::harness::{free_port, TempDir, ADMIN_TOKEN};
use crate::signals::{active, email, login_in, start_plane, wait_until, Transmitter, CAEP};
use crate::tunnel_kit::{bearer, closed_within, connect, echo_upstream};
use crate::upstream::Upstream;

/// `app` (HTTP) for staff, `db` (TCP echo) for ops; and response rules.
fn policy(http: u16, echo: u16) -> String {
    format!(
        "version: 1
routes:
  - name: app
    host: app.corp.example
    upstream: http://127.0.0.1:{http}
    rules:
      - name: staff-hello
        allow: {{ groups_any: [staff], paths: [/hello, /stream, /ws] }}
  - name: db
    tcp: db.internal:5432
    upstream: 127.0.0.1:{echo}
    rules:
      - name: ops
        allow: {{ groups_any: [ops] }}
responses:
  - name: brute-force
    when: {{ denials: {{ at_least: 5, within: 1m }} }}
    then: terminate_session
  - name: edr-high-risk
    when: {{ signal: {{ type: [edr.malware], risk_level: high }} }}
    then: lock
  - name: siem-watch
    when: {{ signal: {{ type: siem.alert }} }}
    then: terminate_user
    dry_run: true
"
    )
}

async fn sample_ws(live: &mut crate::edge_proxy::LiveConnections, text: &str) -> bool {
    if live.websocket.send(Message::text(text)).await.is_err() {
        return false;
    }
    let echoed = tokio::time::timeout(Duration::from_secs(5), live.websocket.next()).await;
    matches!(echoed, Ok(Some(Ok(Message::Text(ref t)))) if t.as_str() == text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claims_change_closes_only_what_the_removed_group_allowed_on_every_edge() {
    let dir = TempDir::new("signals-claims");
    let listen = free_port();
    let tx = Transmitter::start(&format!("http://127.0.0.1:{listen}"), "urn:portcullis:test");
    let plane =
        start_plane(&format!("sqlite://{}", dir.path().join("cp.db").display()), &dir, listen, &tx, "push").await;
    let (upstream, echo) = (Upstream::start().await, echo_upstream().await);
    plane.apply_policy(&policy(upstream.port, echo)).await;
    let (edge_a, edge_b) =
        (EdgeNode::start(&plane, "edge-a", dir.path()).await, EdgeNode::start(&plane, "edge-b", dir.path()).await);
    let groups = ["staff", "ops"];
    let (_, web) = login_in(&plane, "ada@corp.example", &groups, "app", "sid-1").await;
    let (_, db) = login_in(&plane, "ada@corp.example", &groups, "db", "sid-1").await;
    let (_, bob_db) = login_in(&plane, "bob@corp.example", &groups, "db", "sid-b").await;
    let mut on_a = open_live_connections(&edge_a, &web).await;
    let mut flow_b = connect(edge_b.port, "db.internal:5432", &[("Proxy-Authorization", &bearer(&db))]).await;
    assert_eq!(flow_b.status, 200, "{}", flow_b.head);
    let mut flow_a = connect(edge_a.port, "db.internal:5432", &[("Proxy-Authorization", &bearer(&db))]).await;
    assert_eq!(flow_a.status, 200, "{}", flow_a.head);
    let mut bobs = connect(edge_b.port, "db.internal:5432", &[("Proxy-Authorization", &bearer(&bob_db))]).await;
    assert_eq!(bobs.status, 200);

    // Ada leaves `ops`: the IdP says so.
    let change = json!({ "claims": { "groups": ["staff"] }, "event_timestamp": 1 });
    let (status, body) =
        tx.push(&format!("{CAEP}token-claims-change"), change, email("ada@corp.example"), json!({})).await;
    assert_eq!(status, 202, "{body}");
    // Her database flows close on both edges; her web connections (staff) stay.
    assert!(closed_within(&mut flow_a.stream, Duration::from_secs(5)).await.is_some(), "flow on edge A closed");
    assert!(closed_within(&mut flow_b.stream, Duration::from_secs(5)).await.is_some(), "flow on edge B closed");
    assert!(sample_ws(&mut on_a, "still staff").await, "the websocket staff allows stays open");
    let (status, seen) = edge_a.get("/hello", Some(&web), &[]).await;
    assert_eq!(status, 200, "staff still reaches the app");
    assert_eq!(seen["x-portcullis-groups"], "[\"staff\"]", "the upstream hears the new groups: {seen}");
    let again = connect(edge_b.port, "db.internal:5432", &[("Proxy-Authorization", &bearer(&db))]).await;
    assert_eq!(again.status, 403, "her old token no longer opens the database: {}", again.body);
    // Bob was not in the event: his flow carries on.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    bobs.stream.write_all(b"ping").await.unwrap();
    let mut four = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(5), bobs.stream.read_exact(&mut four)).await.unwrap().unwrap();
    assert_eq!(&four, b"ping");
    let audit = plane.api_get("/audit?action=user.groups_overridden").await;
    assert_eq!(audit["entries"].as_array().map(Vec::len), Some(1), "{audit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_rules_end_a_session_after_denials_and_act_on_api_signals() {
    let dir = TempDir::new("signals-rules");
    let listen = free_port();
    let tx = Transmitter::start(&format!("http://127.0.0.1:{listen}"), "urn:portcullis:test");
    let plane =
        start_plane(&format!("sqlite://{}", dir.path().join("cp.db").display()), &dir, listen, &tx, "push").await;
    let upstream = Upstream::start().await;
    plane.apply_policy(&policy(upstream.port, free_port())).await;
    let edge = EdgeNode::start(&plane, "edge-a", dir.path()).await;
    let (probing, probe_token) = login_in(&plane, "mallory@corp.example", &["staff"], "app", "sid-m").await;
    let (quiet, quiet_token) = login_in(&plane, "ada@corp.example", &["staff"], "app", "sid-a").await;
    let mut live = open_live_connections(&edge, &probe_token).await;

    // Four denials: under the rule's five.
    for path in ["/admin", "/etc/passwd", "/.git/config", "/backup.tar"] {
        assert_eq!(edge.get(path, Some(&probe_token), &[]).await.0, 403, "{path}");
    }
    assert_eq!(edge.get("/admin", Some(&quiet_token), &[]).await.0, 403, "one denial for ada");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(active(&plane, &probing).await, "four denials do not set it off");
    assert!(sample_ws(&mut live, "before").await);
    // The fifth.
    assert_eq!(edge.get("/wp-login.php", Some(&probe_token), &[]).await.0, 403);
    wait_until("the probing session is ended", || async { !active(&plane, &probing).await }).await;
    // Its live websocket closes as soon as the edge applies the termination.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while sample_ws(&mut live, "after").await {
        assert!(std::time::Instant::now() < deadline, "its live websocket is closed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(edge.get("/hello", Some(&probe_token), &[]).await.0, 401);
    assert!(active(&plane, &quiet).await, "another user's one denial changes nothing");
    let fired = plane.api_get("/audit?action=response.fired").await;
    let entries = fired["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "fired once, however many reports follow: {fired}");
    assert!(entries[0]["reason"].as_str().unwrap().contains("5 denials of session"), "{fired}");

    // Signals from any tool, with a scoped token.
    let (status, created) =
        plane.api_post("/admin-tokens", &json!({ "name": "edr", "scopes": ["signals:write"] })).await.unwrap();
    assert_eq!(status, 201, "{created}");
    let edr = created["token"].as_str().unwrap().to_owned();
    let post = |token: String, body: serde_json::Value| {
        let (http, url) = (plane.http().clone(), format!("{}/api/v1/signals", plane.url));
        async move {
            let response = http.post(url).bearer_auth(token).json(&body).send().await.unwrap();
            (response.status().as_u16(), response.json::<serde_json::Value>().await.unwrap())
        }
    };
    let (status, answer) =
        post(edr.clone(), json!({ "type": "siem.alert", "email": "ada@corp.example", "id": "s-1" })).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["fired"], json!([{ "rule": "siem-watch", "applied": true }]));
    assert!(active(&plane, &quiet).await, "a dry-run rule only audits");
    let dry = plane.api_get("/audit?action=response.dry_run").await;
    assert!(dry["entries"][0]["reason"].as_str().unwrap().contains("dry run, would terminate_user"), "{dry}");
    let (status, answer) =
        post(edr.clone(), json!({ "type": "edr.malware", "risk_level": "low", "email": "ada@corp.example" })).await;
    assert_eq!((status, answer["fired"].clone()), (200, json!([])), "low risk sets nothing off");
    let high = json!({ "type": "edr.malware", "risk_level": "HIGH", "email": "ada@corp.example", "id": "e-9",
                       "detail": "trojan on laptop-42" });
    let (status, answer) = post(edr.clone(), high.clone()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["fired"], json!([{ "rule": "edr-high-risk", "applied": true }]));
    let lock = plane.api_get("/users/lock?email=ada@corp.example").await;
    assert_eq!(lock["locked"], true, "{lock}");
    let (_, again) = post(edr.clone(), high).await;
    assert_eq!(again["duplicate"], true, "the same id twice is one signal: {again}");
    // Bad input: clear errors; the wrong scope: refused.
    for (body, expected) in [
        (json!({ "type": "edr.malware", "risk_level": "severe", "email": "a@corp.example" }), "risk_level"),
        (json!({ "type": "edr malware!", "email": "a@corp.example" }), "`type`"),
        (json!({ "type": "x", "email": "a@corp.example", "sub": "s" }), "exactly one"),
        (json!({ "type": "x", "email": "a@corp.example", "colour": "red" }), "colour"),
        (json!({ "type": "x", "session": "nope" }), "no session"),
        (json!({ "type": "credential-compromise", "email": "a@corp.example" }), "Shared Signals event"),
    ] {
        let (status, answer) = post(edr.clone(), body.clone()).await;
        assert!((400..500).contains(&status), "{body} → {status} {answer}");
        assert!(answer.to_string().contains(expected), "{body} → {answer}");
    }
    let (status, _) = post(ADMIN_TOKEN.to_owned(), json!({ "type": "x", "email": "a@corp.example" })).await;
    assert_eq!(status, 200, "admin implies every scope");
    let (_, reader) =
        plane.api_post("/admin-tokens", &json!({ "name": "reader", "scopes": ["audit:read"] })).await.unwrap();
    let (status, _) =
        post(reader["token"].as_str().unwrap().to_owned(), json!({ "type": "x", "email": "a@corp.example" })).await;
    assert_eq!(status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_portal_shows_what_signals_and_response_rules_did() {
    let Some(world) = crate::portal::PortalWorld::start("portal-signals", crate::portal::Parts::default()).await else {
        return;
    };
    let (plane, chrome) = (&world.plane, &world.chrome);
    plane.apply_policy(&policy(free_port(), free_port())).await;
    let (session, _) = login_in(plane, "ada@corp.example", &["staff"], "app", "sid-a").await;
    let signal = json!({ "id": "alert-4411", "type": "edr.malware", "risk_level": "high",
                         "email": "ada@corp.example", "detail": "trojan on laptop-42" });
    let answer = plane
        .http()
        .post(format!("{}/api/v1/signals", plane.url))
        .bearer_auth(ADMIN_TOKEN)
        .json(&signal)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    world.sign_in_with_token().await;
    chrome.goto(&world.portal("#/user/ada@corp.example")).await;
    let history = chrome.wait_text("[data-test=history]", "response.fired").await;
    assert!(history.contains("signal.received") && history.contains("trojan on laptop-42"), "{history}");
    assert!(history.contains("response rule `edr-high-risk`"), "{history}");
    chrome.wait_text(".user-id .meta", "Locked").await;
    chrome.wait_text(&format!("tr[data-session='{session}'] [data-test=state]"), "Locked").await;
    chrome.screenshots("signals-user").await;
    chrome.goto(&world.portal("#/audit")).await;
    chrome.find("select[name=action]").await.select_by_value("response.fired").await.expect("filter by action");
    chrome.wait_text("[data-test=audit]", "edr-high-risk").await;
    chrome.screenshots("signals-audit").await;
}
