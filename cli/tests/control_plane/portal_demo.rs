//! The quickstart's demo app in a real browser (headless Chromium, see
//! `webdriver.rs`), through the real edge: bob logs in at the development
//! IdP, watches the websocket page echo, and an admin terminates his
//! session through the API; the page says Portcullis closed it (1008) and
//! why, in words fit for bob, without the admin's own reason. Saved as the
//! `demo-websocket-closed` screenshots.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::TempDir;
use crate::quickstart::{banner_value, free_port_range, start};
use crate::webdriver::{self, Chrome};

/// The admin API of the quickstart, trusting the CA its banner printed.
fn admin_client(banner: &str) -> reqwest::Client {
    let ca = std::fs::read(banner_value(banner, "CA certificate:")).expect("the CA file");
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("PEM"))
        .build()
        .expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_websocket_page_shows_that_portcullis_closed_it_and_why() {
    if !webdriver::available() {
        return;
    }
    let dir = TempDir::new("portal-demo");
    let base = free_port_range();
    let quickstart = start(&dir, base);
    let edge = base + 4;
    let banner = quickstart.output.join("\n");
    let chrome = Chrome::start(dir.path(), "demo").await;

    // bob opens the page, logs in at the development IdP, and is sent back.
    chrome.goto(&format!("http://demo.localhost:{edge}/websocket")).await;
    chrome.click("button[name=user][value=bob]").await;
    chrome.wait_text("[data-test=ws-status]", "connected").await;
    chrome
        .wait_until(
            "three echoes",
            "return [...document.querySelectorAll('#log li')].filter(l => l.textContent.includes('echo: ping')).length >= 3",
        )
        .await;
    let newest_on_top = chrome
        .eval(
            "const lines = [...document.querySelectorAll('#log li')]; \
             const echoes = lines.filter(l => l.textContent.includes('echo: ping')).length; \
             return lines[0].textContent.endsWith('echo: ping ' + echoes)",
        )
        .await;
    assert_eq!(newest_on_top, json!(true), "the newest echo on top: {}", chrome.page_text().await);
    let stamped = chrome
        .eval("return [...document.querySelectorAll('#log li time')].every(t => /^\\d\\d:\\d\\d:\\d\\d$/.test(t.textContent))")
        .await;
    assert_eq!(stamped, json!(true), "every line has its time: {}", chrome.page_text().await);

    // An admin terminates his session through the API.
    let api = banner_value(&banner, "Admin API");
    let admin = admin_client(&banner);
    let sessions: Value = admin
        .get(format!("{api}/sessions?email=bob@corp.example&state=active"))
        .bearer_auth(&quickstart.admin_token)
        .send()
        .await
        .expect("list sessions")
        .json()
        .await
        .expect("sessions JSON");
    let id = sessions["sessions"][0]["id"].as_str().unwrap_or_else(|| panic!("bob's session: {sessions}"));
    let internal = "INC-4711: laptop reported stolen";
    let started = Instant::now();
    let answer = admin
        .post(format!("{api}/sessions/{id}/terminate?wait=true"))
        .bearer_auth(&quickstart.admin_token)
        .json(&json!({ "reason": internal }))
        .send()
        .await
        .expect("terminate");
    assert_eq!(answer.status(), 200, "{}", answer.text().await.unwrap_or_default());

    let status = chrome.wait_text("[data-test=ws-status]", "closed by Portcullis (1008)").await;
    println!("[figure] demo page: the close reason shown {:?} after the terminate call", started.elapsed());
    assert_eq!(status, "closed by Portcullis (1008): session terminated");
    let newest = chrome.wait_text("[data-test=ws-log] li:first-child", "closed by Portcullis").await;
    assert!(newest.ends_with("closed by Portcullis (1008): session terminated"), "newest line on top: {newest}");
    assert!(!chrome.page_text().await.contains("INC-4711"), "the admin's reason stays with the admins");
    // The page stays put: no more echoes after the close.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let first = chrome.eval("return document.querySelector('#log li').textContent").await;
    assert!(first.as_str().is_some_and(|t| t.contains("closed by Portcullis")), "{first}");
    chrome.screenshots("demo-websocket-closed").await;
}
