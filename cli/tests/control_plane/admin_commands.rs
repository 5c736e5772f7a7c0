//! The admin commands end to end against a running control plane: the
//! session list and its filters, terminating a session and every session of
//! a user, locks, `policy apply` (good and broken), the audit log, edges,
//! `--json`, and the error messages for API errors, bad tokens and
//! unreachable control planes.

use portcullis_policy::wire::Message;
use serde_json::Value;

use crate::edge_node::EdgeNode;
use crate::harness::{command, free_port, ControlPlane, Run, TempDir, ADMIN_TOKEN, POLICY};

const BROKEN: &str = "version: 1\nroutes:\n  - name: wiki\n    hots: wiki.corp.example\n    upstream: http://10.0.0.5:8080\n    rules:\n      - allow: { email_domain: [corp.example] }\n";

fn ids(list: &Value) -> Vec<&str> {
    list["sessions"].as_array().expect("sessions").iter().map(|s| s["id"].as_str().expect("id")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_commands_end_to_end() {
    let dir = TempDir::new("admin");
    let plane = ControlPlane::start(&format!("sqlite://{}", dir.path().join("cp.db").display()), dir.path()).await;
    let good = dir.write("good.yaml", POLICY);
    let broken = dir.write("broken.yaml", BROKEN);
    let (good, broken) = (good.to_str().unwrap(), broken.to_str().unwrap());

    // policy apply: prints the version, the change sequence and its receipt.
    let out = plane.cli(&["policy", "apply", good, "-m", "initial policy"]).await;
    assert!(out.ok().contains("as policy version 1 (change "), "{out:?}");
    assert!(out.stdout.contains("no edge is connected right now"), "{out:?}");

    let ada1 = plane.create_session("ada@corp.example", "wiki").await;
    let ada2 = plane.create_session("Ada@Corp.Example", "admin").await;
    let bob = plane.create_session("bob@corp.example", "wiki").await;

    // sessions list: a table with every session, newest first; filters.
    let out = plane.cli(&["sessions", "list"]).await;
    let table = out.ok();
    assert!(table.starts_with("ID "), "{out:?}");
    assert!(
        table.contains("CREATED") && table.contains("just now (20") && table.contains("ada@corp.example"),
        "{out:?}"
    );
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "header and three sessions: {out:?}");
    assert!(lines[1].starts_with(&bob) && lines[3].starts_with(&ada1), "newest first: {out:?}");
    let all = plane.cli(&["sessions", "list", "--json"]).await.json();
    assert_eq!(ids(&all), [bob.as_str(), ada2.as_str(), ada1.as_str()]);
    let ada = plane.cli(&["sessions", "list", "--user", "ADA@corp.example", "--json"]).await.json();
    assert_eq!(ids(&ada), [ada2.as_str(), ada1.as_str()]);
    let wiki = plane.cli(&["sessions", "list", "--route", "wiki", "--json"]).await.json();
    assert_eq!(ids(&wiki), [bob.as_str(), ada1.as_str()]);
    let out = plane.cli(&["sessions", "list", "--limit", "1"]).await;
    assert!(out.ok().contains("more sessions: add --cursor "), "{out:?}");
    let page = plane.cli(&["sessions", "list", "--limit", "2", "--json"]).await.json();
    let cursor = page["next_cursor"].as_str().expect("a cursor").to_owned();
    let rest = plane.cli(&["sessions", "list", "--cursor", &cursor, "--json"]).await.json();
    assert_eq!(ids(&rest), [ada1.as_str()]);

    // sessions terminate: one session, with a receipt.
    let out = plane.cli(&["sessions", "terminate", &bob, "--reason", "stolen laptop", "--wait"]).await;
    assert!(out.ok().contains(&format!("terminated session {bob}")) && out.stdout.contains("durable"), "{out:?}");
    let out = plane.cli(&["sessions", "terminate", &bob, "--reason", "again"]).await;
    assert!(out.ok().contains("had already ended") && out.stdout.contains("stolen laptop"), "{out:?}");
    let ended = plane.cli(&["sessions", "list", "--ended", "--json"]).await.json();
    assert_eq!(ids(&ended), [bob.as_str()]);
    let out = plane.cli(&["sessions", "list", "--ended"]).await;
    assert!(out.ok().contains("ended: stolen laptop"), "{out:?}");

    // users terminate: every session of the email, whatever its case.
    let out = plane.cli(&["users", "terminate", "ADA@corp.example", "--reason", "offboarding"]).await;
    assert!(out.ok().contains("ended 2 sessions of ada@corp.example"), "{out:?}");
    let out = plane.cli(&["sessions", "list", "--active"]).await;
    assert_eq!(out.ok().trim(), "no sessions match", "{out:?}");
    let json = plane.cli(&["users", "terminate", "nobody@corp.example", "--reason", "r", "--json"]).await.json();
    assert_eq!(json["sessions_ended"], 0);

    // lock / unlock.
    let out = plane
        .cli(&["users", "lock", "eve@corp.example", "--reason", "investigation", "--until", "2099-01-01T00:00:00Z"])
        .await;
    // Times as everywhere in the CLI: relative, then UTC.
    assert!(out.ok().contains("locked eve@corp.example until in "), "{out:?}");
    assert!(out.stdout.contains("d (2099-01-01 00:00:00Z)"), "{out:?}");
    let out = plane.cli(&["users", "lock", "mallory@corp.example"]).await;
    assert!(out.ok().contains("locked mallory@corp.example until unlocked"), "{out:?}");
    let out = plane.cli(&["users", "unlock", "eve@corp.example", "--reason", "cleared"]).await;
    assert!(out.ok().contains("unlocked eve@corp.example"), "{out:?}");
    let snapshot = plane.open_stream("edge-locks", None).await.snapshot().await;
    let locked: Vec<String> =
        snapshot.users.iter().filter(|(_, state)| state.lock.is_some()).map(|(user, _)| user.to_string()).collect();
    assert_eq!(locked.len(), 1, "only mallory stays locked: {locked:?}");
    assert!(locked[0].contains("mallory@corp.example"), "{locked:?}");
    let out = plane.cli(&["users", "lock", "eve@corp.example", "--until", "next week"]).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("--until expects an RFC 3339 time"), "{out:?}");

    // policy apply with a broken document: positions, exit 1, nothing changed.
    let out = plane.cli(&["policy", "apply", broken, "-m", "oops"]).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains(&format!("{broken}:4:5: error: unknown key `hots`")), "{out:?}");
    assert!(out.stderr.contains("the policy in force is unchanged"), "{out:?}");
    let current = plane.api_get("/policy").await;
    assert_eq!((current["version"].as_i64(), current["message"].as_str()), (Some(1), Some("initial policy")));
    let json = plane.cli(&["policy", "apply", broken, "-m", "oops", "--json"]).await;
    assert_eq!(json.code, Some(1), "{json:?}");
    let body: Value = serde_json::from_str(&json.stdout).expect("the 422 body as JSON");
    let problems = body["problems"].as_array().expect("problems");
    assert!(problems.iter().any(|p| p["line"] == 4 && p["column"] == 5), "{body}");

    // audit: actions with actor and reason; filters; --json.
    let out = plane.cli(&["audit"]).await;
    let audit = out.ok();
    for expected in [
        "session.terminate",
        "stolen laptop",
        "user.terminate",
        "offboarding",
        "user.lock",
        "investigation",
        "user.unlock",
        "cleared",
        "policy.apply",
        "initial policy",
        "token:bootstrap",
    ] {
        assert!(audit.contains(expected), "audit lacks `{expected}`: {out:?}");
    }
    let locks = plane.cli(&["audit", "--action", "user.lock", "--json"]).await.json();
    let entries = locks["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 2, "{locks}");
    assert_eq!(entries[1]["reason"], "investigation");
    assert_eq!(entries[1]["actor"], "token:bootstrap");
    assert_eq!(entries[1]["target"], "email:eve@corp.example");
    let by_actor = plane.cli(&["audit", "--actor", "edge:edge-1", "--limit", "1", "--json"]).await.json();
    assert_eq!(by_actor["entries"][0]["action"], "session.create");
    let none = plane.cli(&["audit", "--since", "2099-01-01T00:00:00Z"]).await;
    assert_eq!(none.ok().trim(), "no audit entries match");

    // edges.
    // edge-1 (which created the sessions above) is enrolled and has not reported.
    let out = plane.cli(&["edges"]).await;
    assert!(out.ok().contains("edge-1") && out.stdout.contains("enrolled"), "{out:?}");
    assert!(!out.stdout.contains("edge-7"), "{out:?}");
    plane.report("edge-7", 3).await;
    let out = plane.cli(&["edges", "list"]).await;
    assert!(out.ok().contains("edge-7") && out.stdout.contains("connected"), "{out:?}");
    let edges = plane.cli(&["edges", "--json"]).await.json();
    let edge_7 = edges.as_array().expect("list").iter().find(|e| e["id"] == "edge-7").expect("edge-7 listed");
    assert_eq!((edge_7["state"].as_str(), edge_7["enrolled_via"].as_str()), (Some("connected"), Some("bootstrap")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_command_errors() {
    let dir = TempDir::new("admin-errors");
    let plane = ControlPlane::start(&format!("sqlite://{}", dir.path().join("cp.db").display()), dir.path()).await;

    // An API error prints its message and exits 1.
    let out = plane.cli(&["sessions", "terminate", "0123456789abcdef0123456789abcdef", "--reason", "x"]).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert_eq!(out.stderr.trim(), "error: no session `0123456789abcdef0123456789abcdef`");
    let out = plane.cli(&["sessions", "list", "--limit", "0"]).await;
    assert_eq!(out.stderr.trim(), "error: `limit` is between 1 and 1000", "{out:?}");
    let out = plane.cli(&["users", "terminate", "ada@corp.example", "--reason", " "]).await;
    assert!(out.stderr.starts_with("error: `reason` is required"), "{out:?}");

    // A wrong token, a missing token, an unreachable control plane.
    let url = plane.url.clone();
    let run = |args: &'static [&'static str], env: Vec<(&'static str, String)>| {
        let mut cmd = command();
        cmd.args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Run::from(cmd.output().expect("run"))
    };
    let out = run(&["edges"], vec![("PORTCULLIS_URL", url.clone()), ("PORTCULLIS_TOKEN", "pcat_wrong".into())]);
    assert_eq!((out.code, out.stderr.trim()), (Some(1), "error: unknown, revoked or expired token"), "{out:?}");
    let out = run(&["edges", "--token", "pcat_wrong_too"], vec![("PORTCULLIS_URL", url.clone())]);
    assert_eq!(out.stderr.trim(), "error: unknown, revoked or expired token", "{out:?}");
    let out = run(&["sessions", "list"], vec![("PORTCULLIS_URL", url.clone())]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("PORTCULLIS_TOKEN"), "{out:?}");
    let closed = format!("http://127.0.0.1:{}", free_port());
    let out = run(&["audit", "--url"], vec![]);
    assert_eq!(out.code, Some(2), "clap rejects a missing value: {out:?}");
    let out = run(&["audit"], vec![("PORTCULLIS_URL", closed.clone()), ("PORTCULLIS_TOKEN", "t".into())]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.starts_with(&format!("error: cannot reach the control plane at {closed}")), "{out:?}");
    let out = run(&["audit"], vec![("PORTCULLIS_URL", "ftp://cp.example".into()), ("PORTCULLIS_TOKEN", "t".into())]);
    assert!(out.stderr.contains("must start with http:// or https://"), "{out:?}");
    let https = vec![("PORTCULLIS_URL", "https://cp.example".into()), ("PORTCULLIS_TOKEN", "t".into())];
    let out = run(&["audit", "--ca-file", "/nonexistent/ca.pem"], https);
    assert!(out.stderr.starts_with("error: cannot read --ca-file /nonexistent/ca.pem"), "{out:?}");
}

/// Locks as the CLI shows them: the sessions list says `locked until …`,
/// `users status` gives the reason and expiry, and an unlock ends the
/// sessions (saying how many) unless `--keep-sessions`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_show_and_unlock_ends_sessions() {
    let dir = TempDir::new("admin-locks");
    let plane = ControlPlane::start(&format!("sqlite://{}", dir.path().join("cp.db").display()), dir.path()).await;
    plane.apply_policy(POLICY).await;
    let carol = plane.create_session("carol@corp.example", "wiki").await;
    let dave = plane.create_session("dave@corp.example", "wiki").await;

    let until = "2099-01-01T00:00:00Z";
    let out = plane.cli(&["users", "lock", "carol@corp.example", "--reason", "investigation", "--until", until]).await;
    assert!(out.ok().contains("locked carol@corp.example until in "), "{out:?}");
    let out = plane.cli(&["sessions", "list"]).await;
    let line = |id: &str| out.stdout.lines().find(|l| l.starts_with(id)).unwrap_or_default().to_owned();
    assert!(line(&carol).contains("locked until in ") && line(&carol).contains("(2099-01-01 00:00:00Z)"), "{out:?}");
    assert!(line(&dave).contains(" active "), "{out:?}");
    let out = plane.cli(&["users", "status", "carol@corp.example"]).await;
    let status = out.ok().trim().to_owned();
    assert!(status.starts_with("carol@corp.example is locked until in "), "{out:?}");
    assert!(status.ends_with("d (2099-01-01 00:00:00Z): investigation"), "{out:?}");
    let out = plane.cli(&["users", "status", "dave@corp.example"]).await;
    assert_eq!(out.ok().trim(), "dave@corp.example is not locked", "{out:?}");

    // --keep-sessions: the lock lifts, dave's session stands.
    plane.cli(&["users", "lock", "dave@corp.example"]).await.ok();
    let out = plane.cli(&["sessions", "list", "--user", "dave@corp.example"]).await;
    assert!(out.ok().contains(" locked "), "{out:?}");
    let out = plane.cli(&["users", "unlock", "dave@corp.example", "--keep-sessions", "--wait"]).await;
    assert!(out.ok().contains("unlocked dave@corp.example; kept their sessions"), "{out:?}");
    assert!(out.stdout.contains("durable"), "a receipt: {out:?}");
    let out = plane.cli(&["sessions", "list", "--user", "dave@corp.example", "--active"]).await;
    assert!(out.ok().contains(&dave) && out.stdout.contains(" active "), "{out:?}");

    // By default the unlock ends them, with --wait's receipt.
    let out = plane.cli(&["users", "unlock", "carol@corp.example", "--wait"]).await;
    assert!(out.ok().contains("unlocked carol@corp.example; ended 1 session of theirs"), "{out:?}");
    assert!(out.stdout.contains("durable"), "a receipt: {out:?}");
    let out = plane.cli(&["sessions", "list", "--user", "carol@corp.example"]).await;
    assert!(out.ok().contains("ended: ended at unlock: unlocked"), "{out:?}");
    let out = plane.cli(&["users", "status", "carol@corp.example"]).await;
    assert_eq!(out.ok().trim(), "carol@corp.example is not locked", "{out:?}");
}

/// Wrong inputs a new user makes, each answered with what to do: an edge's
/// port as the admin URL, the banner's `…/api/v1` URL, the README's
/// placeholder token, another server at the URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_url_or_token_says_what_to_do() {
    let dir = TempDir::new("admin-wrong");
    let plane = ControlPlane::start(&format!("sqlite://{}", dir.path().join("cp.db").display()), dir.path()).await;
    let policy = "version: 1\nroutes:\n  - name: demo\n    host: localhost\n    upstream: http://127.0.0.1:9\n    \
                  rules:\n      - allow: { email_domain: [corp.example] }\n";
    plane.apply_policy(policy).await;
    let edge = EdgeNode::start(&plane, "edge-wrong", dir.path()).await;
    let run = |url: String, token: &str| {
        let mut cmd = command();
        cmd.args(["sessions", "list"]).env("PORTCULLIS_URL", url).env("PORTCULLIS_TOKEN", token);
        Run::from(cmd.output().expect("run"))
    };
    let looks_like_an_edge = "looks like a Portcullis edge, not the control plane's admin API: use the control \
                              plane's listen address (default 127.0.0.1:7400)";

    // The edge's port: a route there (its bearer-token check answers) or none.
    for url in [format!("http://localhost:{}", edge.port), format!("http://127.0.0.1:{}", edge.port)] {
        let out = run(url.clone(), ADMIN_TOKEN);
        assert_eq!(out.code, Some(1), "{out:?}");
        assert_eq!(out.stderr.trim(), format!("error: {url} {looks_like_an_edge} for --url / PORTCULLIS_URL"));
    }
    // Another server altogether (the edge's metrics listener).
    let metrics = format!("http://127.0.0.1:{}", edge.metrics);
    let out = run(metrics.clone(), ADMIN_TOKEN);
    let other = format!("error: the server at {metrics} is not the Portcullis control plane's admin API");
    assert!(out.stderr.starts_with(&other), "{out:?}");
    assert!(out.stderr.contains("default http://127.0.0.1:7400"), "{out:?}");

    // The banner's URL, `…/api/v1` (with or without a slash), works.
    for url in [format!("{}/api/v1", plane.url), format!("{}/api/v1/", plane.url)] {
        let out = run(url, ADMIN_TOKEN);
        assert_eq!(out.ok().trim(), "no sessions match", "{out:?}");
    }
    // A client that does not strip it gets a hint from the API itself.
    let doubled = plane.http().get(format!("{}/api/v1/api/v1/sessions", plane.url)).bearer_auth(ADMIN_TOKEN);
    let body: Value = doubled.send().await.expect("send").json().await.expect("json");
    assert!(text(&body).contains("/api/v1 twice"), "{body}");

    // The README's placeholder, as the CLI's token and sent by hand.
    for placeholder in ["pcat_…", "pcat_...", "\"pcat_x\""] {
        let out = run(plane.url.clone(), placeholder);
        assert_eq!(out.code, Some(1), "{out:?}");
        assert!(
            out.stderr
                .starts_with("error: PORTCULLIS_TOKEN / --token is not a valid admin token (an admin token is pcat_"),
            "{placeholder}: {out:?}"
        );
        assert!(out.stderr.contains("data/admin-token"), "{out:?}");
    }
    let by_hand = plane
        .http()
        .get(format!("{}/api/v1/sessions", plane.url))
        .header("authorization", reqwest::header::HeaderValue::from_bytes("Bearer pcat_…".as_bytes()).unwrap());
    let body: Value = by_hand.send().await.expect("send").json().await.expect("json");
    assert!(text(&body).contains("not a valid admin token") && text(&body).contains("placeholder"), "{body}");
}

fn text(body: &Value) -> String {
    body["error"]["message"].as_str().unwrap_or_default().to_owned()
}

/// `--wait` with an edge connected: the edge applies each change and
/// reports it, so the receipt says every connected edge applied it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_reports_every_connected_edge() {
    let dir = TempDir::new("admin-wait");
    let plane = ControlPlane::start(&format!("sqlite://{}", dir.path().join("cp.db").display()), dir.path()).await;
    plane.apply_policy(POLICY).await;
    let session = plane.create_session("ada@corp.example", "wiki").await;
    let plane = std::sync::Arc::new(plane);
    let edge = std::sync::Arc::clone(&plane);
    let mut stream = plane.open_stream("edge-9", None).await;
    let edge_task = tokio::spawn(async move {
        loop {
            let applied = match stream.next(std::time::Duration::from_secs(30)).await {
                Some(Message::Snapshot(body)) => body.seq,
                Some(Message::Delta(delta)) => delta.seq,
                Some(Message::Heartbeat { head_seq, .. }) => head_seq,
                None => return,
            };
            edge.report("edge-9", applied).await;
        }
    });
    // Let the edge report once so it counts as connected.
    let connected =
        |edges: serde_json::Value| edges.as_array().is_some_and(|e| e.iter().any(|e| e["state"] == "connected"));
    while !connected(plane.api_get("/edges").await) {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let out = plane.cli(&["sessions", "terminate", &session, "--reason", "incident", "--wait"]).await;
    assert!(out.ok().contains("applied by all 1 connected edges in "), "{out:?}");
    let json =
        plane.cli(&["users", "lock", "ada@corp.example", "--reason", "incident", "--wait", "--json"]).await.json();
    assert_eq!(
        (json["receipt"]["complete"].as_bool(), json["receipt"]["edges_applied"].as_u64()),
        (Some(true), Some(1))
    );
    edge_task.abort();
}
