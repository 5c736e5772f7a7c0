//! `POST /api/v1/signals`: a tool's signal is recorded once per id and
//! audited; bad input is refused with the API's error body; without a
//! response rule that matches, nothing else happens. (The rules themselves,
//! with real edges, are in `cli/tests/control_plane/signals_responses.rs`.)

use serde_json::json;

use crate::harness::TestApp;

api_tests!(a_signal_is_recorded_once_and_bad_ones_are_refused);

async fn a_signal_is_recorded_once_and_bad_ones_are_refused(t: TestApp) {
    let signal = json!({ "id": "alert-1", "type": "edr.malware", "risk_level": "High", "email": "Ada@Test.example",
                         "detail": "trojan" });
    let first = t.post("/api/v1/signals").json(signal.clone()).send().await.ok();
    assert_eq!(first, json!({ "id": "alert-1", "duplicate": false, "fired": [] }), "no rule matches");
    let again = t.post("/api/v1/signals").json(signal).send().await.ok();
    assert_eq!(again["duplicate"], true, "the same id is one signal: {again}");
    let audit = t.get("/api/v1/audit?action=signal.received").send().await.ok();
    let entries = audit["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{audit}");
    assert_eq!(entries[0]["user_email"], "ada@test.example");
    let reason = entries[0]["reason"].as_str().unwrap();
    assert!(reason.contains("`edr.malware`") && reason.contains("risk high") && reason.contains("trojan"), "{reason}");
    let minted = t.post("/api/v1/signals").json(json!({ "type": "siem.alert", "sub": "00u1" })).send().await.ok();
    assert!(minted["id"].as_str().is_some_and(|id| !id.is_empty()), "an id is made when none is given: {minted}");
    for body in [
        json!({ "type": "", "email": "a@test.example" }),
        json!({ "type": "x y", "email": "a@test.example" }),
        json!({ "type": "x", "risk_level": "severe", "email": "a@test.example" }),
        json!({ "type": "x", "email": "a@test.example", "sub": "s" }),
        json!({ "type": "x" }),
        json!({ "type": "sessions-revoked", "email": "a@test.example" }),
        json!({ "type": "x", "email": "a@test.example", "detail": "two\nlines" }),
        json!({ "type": "x", "email": "a@test.example", "id": "has space" }),
    ] {
        t.post("/api/v1/signals").json(body.clone()).send().await.error(422, "invalid_body");
    }
    t.post("/api/v1/signals").json(json!({ "type": "x", "session": "nope" })).send().await.error(404, "not_found");
    let refused = t.post("/api/v1/signals").json(json!({ "type": "x", "email": "a@test.example", "colour": 1 }));
    refused.send().await.error(422, "invalid_body");
}
