//! The portal's policy page in a real browser, signed in with the admin
//! API token: a document with a syntax error shows line:column and is not
//! applied; a valid edit shows its diff and applies; history and rollback;
//! "explain" answers with the decision and the rule.

use crate::portal::{Parts, PortalWorld};

/// The policy in force at the start (version 1).
const V1: &str = "\
version: 1
routes:
  - name: wiki
    host: wiki.corp.example
    upstream: http://10.0.0.5:8080
    rules:
      - name: staff
        allow: { email_domain: [corp.example] }
";

/// Line 5 is indented too far: YAML refuses it at 5:15.
const BROKEN: &str = "\
version: 1
routes:
  - name: wiki
    host: wiki.corp.example
      upstream: http://10.0.0.5:8080
";

/// V1 plus an admin route.
const V2: &str = "\
version: 1
routes:
  - name: wiki
    host: wiki.corp.example
    upstream: http://10.0.0.5:8080
    rules:
      - name: staff
        allow: { email_domain: [corp.example] }
  - name: admin
    host: admin.corp.example
    upstream: http://10.0.0.6:8080
    rules:
      - name: admins
        allow: { groups_any: [admins] }
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portal_policy_editor_validates_diffs_applies_rolls_back_and_explains() {
    let Some(world) = PortalWorld::start("portal-policy", Parts::default()).await else { return };
    let (plane, chrome) = (&world.plane, &world.chrome);
    assert_eq!(plane.apply_policy(V1).await, 1);
    world.sign_in_with_token().await;
    chrome.goto(&world.portal("#/policy")).await;
    chrome.wait_text("[data-test=version]", "Version 1 in force").await;
    chrome.wait_text("[data-test=validation]", "Valid").await;
    chrome.screenshots("policy").await;

    // A syntax error: shown at line:column, and Apply stays off.
    chrome.type_into("[data-test=editor]", BROKEN).await;
    chrome.click("[data-test=validate]").await;
    let problems = chrome.wait_text("[data-test=problems]", "line 5:15").await;
    assert!(problems.contains("mapping values are not allowed"), "{problems}");
    assert!(chrome.wait_text("[data-test=validation]", "problem").await.contains("cannot be applied"));
    let apply_enabled = chrome.find("[data-test=apply]").await.is_enabled().await.expect("apply button state");
    assert!(!apply_enabled, "a document with errors cannot be applied");
    chrome
        .wait_until(
            "the gutter marks line 5",
            "return document.querySelector('.gutter div.error')?.textContent === '5'",
        )
        .await;
    chrome.screenshots("policy-error").await;
    assert_eq!(plane.api_get("/policy").await["version"], 1, "nothing was applied");

    // A valid edit: its diff, then apply with a message.
    chrome.type_into("[data-test=editor]", V2).await;
    chrome.wait_text("[data-test=validation]", "Valid · 2 routes").await;
    let diff = chrome.wait_text("[data-test=diff]", "+   - name: admin").await;
    assert!(!diff.contains("- name: wiki"), "only the new route is added: {diff}");
    chrome.screenshots("policy-diff").await;
    chrome.click("[data-test=apply]").await;
    chrome.type_into("dialog textarea[name=reason]", "admin console for the admins group").await;
    chrome.click("dialog button[type=submit]").await;
    let done = chrome.wait_text("dialog [data-test=dialog-done]", "Version 2 is in force").await;
    assert!(
        done.contains("Edges applied") && done.contains("Connections closed"),
        "a receipt, as for terminations: {done}"
    );
    chrome.screenshots("policy-applied").await;
    chrome.click("dialog [data-test=dialog-close]").await;
    let current = plane.api_get("/policy").await;
    assert_eq!((current["version"].as_i64(), current["document"].as_str()), (Some(2), Some(V2)));
    assert_eq!(current["author"], "portal:token:bootstrap");
    assert_eq!(current["message"], "admin console for the admins group");
    chrome.wait_text("[data-test=version]", "Version 2 in force").await;

    // Explain: the same evaluator as the edge.
    chrome.click("[data-tab=explain]").await;
    chrome.type_into("[data-test=explain-form] input[name=email]", "ada@corp.example").await;
    chrome.type_into("[data-test=explain-form] input[name=groups]", "dev").await;
    chrome.type_into("[data-test=explain-form] input[name=host]", "admin.corp.example").await;
    chrome.click("[data-test=explain]").await;
    let decision = chrome.wait_text("[data-test=decision]", "deny").await;
    assert!(decision.contains("no rule of route `admin` allows this request"), "{decision}");
    let checks = chrome.wait_text("[data-test=rule-checks]", "admins").await;
    assert!(checks.contains("`groups_any` [admins] — the user is in [dev]"), "which condition failed: {checks}");
    chrome.type_into("[data-test=explain-form] input[name=groups]", "dev, admins").await;
    chrome.click("[data-test=explain]").await;
    let decision = chrome.wait_text("[data-test=decision]", "allow").await;
    assert!(decision.contains("admins") && decision.contains("line 13:"), "names the rule and its line: {decision}");
    chrome.screenshots("policy-explain").await;

    // History and rollback.
    chrome.click("[data-tab=history]").await;
    chrome.find("[data-test=history] tr[data-version='1']").await;
    chrome.screenshots("policy-history").await;
    chrome.click("[data-test=history] tr[data-version='1'] [data-test=rollback]").await;
    chrome.type_into("dialog textarea[name=reason]", "the admin console is not ready").await;
    chrome.click("dialog button[type=submit]").await;
    chrome.wait_text("dialog [data-test=dialog-done]", "Version 3 is in force").await;
    chrome.click("dialog [data-test=dialog-close]").await;
    let current = plane.api_get("/policy").await;
    assert_eq!((current["version"].as_i64(), current["document"].as_str()), (Some(3), Some(V1)), "v1 is back");
    chrome.wait_text("[data-test=history] tr[data-version='3']", "in force").await;
}
