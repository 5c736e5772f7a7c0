//! The portal's Edges page in a real browser: an admin makes a one-time join
//! token (shown once; a new edge enrolls with it) and revokes a live edge
//! with a reason — the edge is cut off at once, the action is audited under
//! the admin's name — and the same call without the page's CSRF token is
//! refused.

use std::time::{Duration, Instant};

use crate::edge_identity::TestEdge;
use crate::portal::{Parts, PortalWorld};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portal_admin_makes_a_join_token_and_revokes_an_edge() {
    let Some(world) = PortalWorld::start("portal-edges", Parts { idp: false, edge: true }).await else { return };
    let (plane, chrome) = (&world.plane, &world.chrome);
    let edge = world.edge.as_ref().expect("an edge");
    world.sign_in_with_token().await;
    chrome.goto(&world.portal("#/edges")).await;
    chrome.wait_text("tr[data-edge='edge-eu-1'] [data-test=health]", "Connected").await;

    // A join token, shown once; an edge enrolls with it.
    chrome.click("[data-test=new-join-token]").await;
    chrome.type_into("dialog textarea[name=reason]", "eu-west 3").await;
    chrome.click("dialog button[type=submit]").await;
    let token = chrome.wait_text("dialog [data-test=join-token]", "pcjt_").await;
    chrome.screenshots("edges-join-token").await;
    chrome.click("dialog [data-test=dialog-close]").await;
    let joined = TestEdge::enroll_with(&plane.edge_url, "eu-west-3", token.trim()).await.expect("the token enrolls");
    assert_eq!(joined.enrolled["name"], "eu-west 3");
    chrome.wait_text("tr[data-edge='eu-west-3'] [data-test=health]", "Enrolled").await;

    // Without the page's CSRF token, the portal session cannot revoke anything.
    let forged = "return fetch('/api/v1/edges/eu-west-3/revoke', { method: 'POST', credentials: 'same-origin', \
                  headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ reason: 'csrf' }) }).then(r => r.status)";
    assert_eq!(chrome.eval(forged).await, 403, "a cross-site form or script without the CSRF token");
    assert_eq!(plane.api_get("/audit?action=edge.revoke").await["entries"], serde_json::json!([]));

    // Revoke the live edge with a reason.
    chrome.click("tr[data-edge='edge-eu-1'] [data-test=revoke]").await;
    chrome.type_into("dialog textarea[name=reason]", "decommissioned").await;
    let started = Instant::now();
    chrome.click("dialog button[type=submit]").await;
    chrome.wait_text("dialog [data-test=dialog-done]", "revoked").await;
    chrome.click("dialog [data-test=dialog-close]").await;
    chrome.wait_text("tr[data-edge='edge-eu-1'] [data-test=health]", "decommissioned").await;
    chrome.screenshots("edges-revoked").await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !edge.metrics_text().await.contains("portcullis_edge_control_plane_connected 0") {
        assert!(Instant::now() < deadline, "the revoked edge stayed connected:\n{}", edge.log_text());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!("enrollment figures: portal revoke to edge disconnected: {} ms", started.elapsed().as_millis());
    let audit = plane.api_get("/audit?action=edge.revoke").await;
    let entry = &audit["entries"][0];
    assert!(entry["actor"].as_str().unwrap_or_default().starts_with("portal:"), "the admin's name: {entry}");
    assert_eq!(
        (entry["target"].as_str(), entry["reason"].as_str(), entry["source_address"].as_str()),
        (Some("edge:edge-eu-1"), Some("decommissioned"), Some("127.0.0.1"))
    );
    assert!(!chrome.exists("tr[data-edge='edge-eu-1'] [data-test=revoke]").await, "no second Revoke");
}
