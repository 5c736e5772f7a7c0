//! The portal's sessions and user pages in a real browser: the admin signs
//! in through the IdP, watches a session appear live, terminates it with a
//! reason and reads the receipt, while the user's download through the edge
//! is cut; then ends every session of an email at once, locks and unlocks
//! the user, and looks at the audit log and the edges. Screenshots of every
//! page, wide and narrow.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Value;

use crate::edge_node::EdgeNode;
use crate::portal::{edge_login, Parts, PortalWorld, USER_AGENTS};

/// A streaming download through the edge with `token`; the task ends when
/// the connection is cut (or the minute-long stream ends) and returns the
/// chunks it read.
async fn download(edge: &EdgeNode, token: &str) -> tokio::task::JoinHandle<usize> {
    let request = reqwest::Client::new()
        .get(edge.url("/stream"))
        .header("host", "app.corp.example")
        .header("cookie", format!("__Host-portcullis_session.app={token}"));
    let mut body = request.send().await.expect("start the download").bytes_stream();
    assert!(body.next().await.is_some_and(|c| c.is_ok()), "the download starts");
    tokio::spawn(async move {
        let mut chunks = 1;
        while let Some(Ok(_)) = body.next().await {
            chunks += 1;
        }
        chunks
    })
}

async fn assert_cut(download: tokio::task::JoinHandle<usize>, what: &str) {
    let chunks = tokio::time::timeout(Duration::from_secs(5), download)
        .await
        .unwrap_or_else(|_| panic!("{what}: the download was not cut"))
        .expect("download task");
    assert!(chunks < 100, "{what}: cut, not finished ({chunks} chunks)");
}

async fn session(world: &PortalWorld, id: &str) -> Value {
    world.plane.api_get(&format!("/sessions/{id}")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portal_admin_terminates_a_live_session_and_every_session_of_a_user() {
    let Some(world) = PortalWorld::start("portal-sessions", Parts { idp: true, edge: true }).await else { return };
    let (plane, chrome) = (&world.plane, &world.chrome);
    let edge = world.edge.as_ref().expect("an edge");

    world.sign_in_with_idp("alice").await;
    chrome.wait_text("[data-test=signed-in-as]", "alice@corp.example").await;
    chrome.find("[data-test=sessions], .empty").await;

    // A session appears without a reload, within two seconds or so.
    let (ada, ada_token) = edge_login(plane, "ada@corp.example", "203.0.113.24", USER_AGENTS[0]).await;
    let created = Instant::now();
    chrome.find(&format!("tr[data-session='{ada}']")).await;
    let appeared = created.elapsed();
    assert!(appeared < Duration::from_millis(3_500), "the list updates live (took {appeared:?})");
    let ada_download = download(edge, &ada_token).await;
    for (n, (email, source)) in [
        ("grace@corp.example", "198.51.100.7"),
        ("linus@corp.example", "192.0.2.41"),
        ("grace@corp.example", "198.51.100.9"),
    ]
    .into_iter()
    .enumerate()
    {
        edge_login(plane, email, source, USER_AGENTS[(n + 1) % USER_AGENTS.len()]).await;
    }
    let live = format!("tr[data-session='{ada}'] td[data-label=Live]");
    chrome.wait_text(&live, "1").await;
    chrome.screenshots("sessions").await;

    // Terminate with a reason: the dialog shows the receipt, the download is cut.
    chrome.click(&format!("tr[data-session='{ada}'] [data-test=terminate]")).await;
    chrome.type_into("dialog textarea[name=reason]", "stolen laptop").await;
    chrome.screenshot("terminate-dialog-wide").await;
    chrome.click("dialog button[type=submit]").await;
    chrome.find("dialog [data-test=receipt]").await;
    assert_eq!(chrome.wait_text("dialog [data-test=edges-applied]", "/").await, "1 / 1", "one edge, and it applied it");
    let closed = chrome.wait_text("dialog [data-test=connections-closed]", "").await;
    assert!(closed.parse::<i64>().is_ok_and(|n| n >= 1), "the download's connection was closed: {closed}");
    assert!(chrome.wait_text("dialog [data-test=elapsed]", "").await.ends_with('s'), "elapsed time is shown");
    chrome.screenshots("terminate-receipt").await;
    assert_cut(ada_download, "terminate").await;
    chrome.click("dialog [data-test=dialog-close]").await;
    let state = chrome.wait_text(&format!("tr[data-session='{ada}'] [data-test=state]"), "stolen laptop").await;
    assert!(state.contains("Ended"), "{state}");
    let view = session(&world, &ada).await;
    assert_eq!((view["state"].as_str(), view["end_reason"].as_str()), (Some("ended"), Some("stolen laptop")));
    let audit = plane.api_get("/audit?action=session.terminate").await;
    let entry = &audit["entries"][0];
    assert_eq!(entry["actor"], "portal:alice@corp.example", "audited under the admin's name: {entry}");
    assert_eq!(
        (entry["reason"].as_str(), entry["source_address"].as_str()),
        (Some("stolen laptop"), Some("127.0.0.1"))
    );

    // Every session of one email, at once.
    let (first, first_token) = edge_login(plane, "carol@corp.example", "203.0.113.80", USER_AGENTS[1]).await;
    let (second, _) = edge_login(plane, "carol@corp.example", "198.51.100.23", USER_AGENTS[2]).await;
    let carol_download = download(edge, &first_token).await;
    chrome.goto(&world.portal("#/user")).await;
    chrome.find(".empty").await;
    chrome.type_into("input[name=email]", "Carol@corp.example").await;
    chrome.click("[data-test=user-form] button[type=submit]").await;
    chrome.find(&format!("tr[data-session='{second}']")).await;
    chrome.wait_text(&format!("tr[data-session='{first}'] td[data-label=Live]"), "1").await;
    chrome.screenshots("user").await;
    chrome.click("[data-test=terminate-all]").await;
    chrome.type_into("dialog textarea[name=reason]", "offboarding").await;
    chrome.click("dialog button[type=submit]").await;
    let done = chrome.wait_text("dialog [data-test=dialog-done]", "2 sessions ended").await;
    assert!(done.contains("All sessions terminated"), "{done}");
    assert_eq!(chrome.wait_text("dialog [data-test=edges-applied]", "/").await, "1 / 1");
    assert_cut(carol_download, "terminate all").await;
    chrome.click("dialog [data-test=dialog-close]").await;
    for id in [&first, &second] {
        let view = session(&world, id).await;
        assert_eq!(view["state"], "ended", "{view}");
        chrome.wait_text(&format!("tr[data-session='{id}'] [data-test=state]"), "offboarding").await;
    }

    // Lock with a reason and an expiry: carol's new session shows locked,
    // the page shows until when; the unlock ends the session (unless
    // "Keep their sessions" is ticked; it is not by default).
    let (third, _) = edge_login(plane, "carol@corp.example", "203.0.113.81", USER_AGENTS[1]).await;
    chrome.wait_text(&format!("tr[data-session='{third}'] [data-test=state]"), "Active").await;
    chrome.click("[data-test=lock]").await;
    chrome.type_into("dialog textarea[name=reason]", "investigation INC-4711").await;
    chrome.eval("document.querySelector('dialog input[name=until]').value = '2099-01-01T00:00'; return true").await;
    chrome.click("dialog button[type=submit]").await;
    chrome.find("dialog [data-test=receipt]").await;
    chrome.click("dialog [data-test=dialog-close]").await;
    chrome.wait_text(".user-id .meta", "Locked: investigation INC-4711").await;
    let lock = plane.api_get("/users/lock?email=carol@corp.example").await;
    assert_eq!(lock["locked"], true, "{lock}");
    assert!(
        lock["until"].as_str().is_some_and(|u| u.starts_with("2099-01-01") || u.starts_with("2098-12-31")),
        "{lock}"
    );
    chrome.wait_text(".user-id .meta [data-test=lock-until]", "2099").await;
    let state = chrome.wait_text(&format!("tr[data-session='{third}'] [data-test=state]"), "Locked").await;
    assert!(state.contains("until") && state.contains("2099"), "{state}");
    chrome.wait_text("[data-test=lock]", "Unlock").await;
    chrome.screenshots("user-locked").await;
    chrome.click("[data-test=lock]").await;
    let keep = chrome.eval("return document.querySelector('dialog input[name=keep_sessions]').checked").await;
    assert_eq!(keep, Value::Bool(false), "keeping sessions is opt-in");
    chrome.click("dialog button[type=submit]").await;
    chrome.wait_text("dialog [data-test=dialog-done]", "1 session ended").await;
    chrome.click("dialog [data-test=dialog-close]").await;
    chrome.wait_text(".user-id .meta", "Not locked").await;
    chrome.wait_text(&format!("tr[data-session='{third}'] [data-test=state]"), "ended at unlock").await;
    assert_eq!(session(&world, &third).await["state"], "ended");

    // The audit log and the edges.
    chrome.goto(&world.portal("#/audit")).await;
    chrome.wait_text("[data-test=audit]", "portal:alice@corp.example").await;
    chrome.screenshots("audit").await;
    chrome.find("select[name=action]").await.select_by_value("user.terminate").await.expect("filter by action");
    chrome.wait_until("the audit log is filtered", "return [...document.querySelectorAll('[data-test=audit] tbody tr')].every(r => r.textContent.includes('user.terminate'))").await;
    chrome.wait_text("[data-test=audit]", "offboarding").await;
    chrome.goto(&world.portal("#/edges")).await;
    chrome.wait_text("[data-test=edges]", "edge-eu-1").await;
    chrome.wait_text("[data-test=edges]", "in sync").await;
    chrome.screenshots("edges").await;
}

/// A denied user quotes the reference on their page; the admin types it into
/// the portal's audit page (as a person would: lowercase, spaces for dashes)
/// and gets that one denial with its reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_portal_finds_a_denial_by_the_reference_a_user_quotes() {
    let Some(world) = PortalWorld::start("portal-reference", Parts { idp: false, edge: true }).await else { return };
    let (plane, chrome) = (&world.plane, &world.chrome);
    let edge = world.edge.as_ref().expect("an edge");
    let (_, token) = edge_login(plane, "ada@corp.example", "192.0.2.10", USER_AGENTS[0]).await;
    let lock = serde_json::json!({ "email": "ada@corp.example", "reason": "INC-9: under investigation" });
    let (status, answer) = plane.api_post("/users/lock?wait=true", &lock).await.expect("lock");
    assert_eq!(status, 200, "{answer}");
    let denied = reqwest::Client::new()
        .get(edge.url("/"))
        .header("host", "app.corp.example")
        .header("accept", "application/json")
        .header("cookie", format!("__Host-portcullis_session.app={token}"))
        .send()
        .await
        .expect("a request through the edge");
    assert_eq!(denied.status(), 403);
    let reference = denied.headers()["x-portcullis-reference"].to_str().expect("ASCII").to_owned();
    let deadline = Instant::now() + Duration::from_secs(20);
    while plane.api_get(&format!("/audit?reference={reference}")).await["entries"].as_array().is_none_or(Vec::is_empty)
    {
        assert!(Instant::now() < deadline, "the edge reported the denial {reference}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    world.sign_in_with_token().await;
    chrome.goto(&world.portal("#/audit")).await;
    chrome.wait_text("[data-test=audit]", "user.lock").await;
    chrome.type_into("input[name=reference]", &reference.to_lowercase().replace('-', " ")).await;
    chrome
        .wait_until(
            "only the quoted denial is listed",
            "const rows = document.querySelectorAll('[data-test=audit] tbody tr'); \
             return rows.length === 1 && rows[0].textContent.includes('access.denied')",
        )
        .await;
    let row = chrome.wait_text("[data-test=audit] tbody tr", "INC-9").await;
    assert!(row.contains("ada@corp.example"), "the denial names the user: {row}");
    chrome.screenshots("audit-reference").await;
}
