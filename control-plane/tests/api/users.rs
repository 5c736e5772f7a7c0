//! `/api/v1/users/…`: terminate every session of a user by email, and locks.

use portcullis_policy::snapshot::{Lock, UserState};
use portcullis_policy::UserRef;
use serde_json::{json, Value};

use crate::client::CLIENT_IP;
use crate::fixtures::{apply_policy, login, reason, snapshot, text, Login};
use crate::harness::TestApp;

api_tests!(
    terminate_user_by_email_ends_every_session,
    lock_and_unlock,
    user_actions_validate_their_body,
    a_users_whole_trail_is_one_query,
    locked_sessions_show_locked_and_unlock_ends_them,
    unlock_can_keep_sessions
);

async fn state(t: &TestApp, id: &str) -> (String, Option<String>) {
    let view = t.get(&format!("/api/v1/sessions/{id}")).send().await.ok();
    (text(&view["state"]), view["end_reason"].as_str().map(str::to_owned))
}

async fn terminate_user_by_email_ends_every_session(t: TestApp) {
    apply_policy(&t).await;
    let ada_wiki = login(&t, "ada@test.example").await;
    let ada_admin = text(&Login::new("ADA@test.example").route("admin").edge("edge-b").ok(&t).await["session_id"]);
    let bob = login(&t, "bob@test.example").await;
    let head = t.head().await;

    let answer = t
        .post("/api/v1/users/terminate")
        .json(json!({ "email": "Ada@Test.Example", "reason": "offboarded" }))
        .send()
        .await
        .ok();
    assert_eq!(answer["user"], "email:ada@test.example");
    assert_eq!(answer["sessions_ended"], 2, "{answer}");
    assert_eq!(answer["receipt"]["seq"].as_u64(), Some(head + 1));
    assert_eq!(answer["receipt"]["durable"], true);
    for id in [&ada_wiki, &ada_admin] {
        assert_eq!(state(&t, id).await, ("ended".to_owned(), Some("offboarded".to_owned())), "{id}");
    }
    assert_eq!(state(&t, &bob).await, ("active".to_owned(), None), "other users keep their sessions");

    let audit = t.get("/api/v1/audit?action=user.terminate").send().await.ok();
    let entry = &audit["entries"][0];
    assert_eq!(audit["entries"].as_array().unwrap().len(), 1, "{audit}");
    assert_eq!(entry["actor"], "token:bootstrap");
    assert_eq!(entry["target"], "email:ada@test.example");
    assert_eq!(entry["reason"], "offboarded");
    assert_eq!(entry["source_address"], CLIENT_IP);
    assert_eq!(entry["seq"].as_u64(), Some(head + 1));

    // Edges learn that every token of the user issued until now is dead.
    let body = snapshot(&t).await;
    let (_, user_state) = body.users.iter().find(|(u, _)| *u == UserRef::email("ada@test.example")).expect("ada");
    let revoked_before_ms = user_state.revoked_before_ms.expect("revoked_before_ms");
    assert!((revoked_before_ms - chrono::Utc::now().timestamp_millis()).abs() < 60_000, "{revoked_before_ms}");

    // Again: no sessions left to end, but still a change (new logins since are unaffected).
    let again = t.post("/api/v1/users/terminate").json(json!({ "email": "ada@test.example", "reason": "again" }));
    let again = again.send().await.ok();
    assert_eq!(again["sessions_ended"], 0);
    // By subject.
    let by_sub = t.post("/api/v1/users/terminate").json(json!({ "sub": "sub-bob@test.example", "reason": "r" }));
    assert_eq!(by_sub.send().await.ok()["sessions_ended"], 1);
    assert_eq!(state(&t, &bob).await.0, "ended");
}

async fn lock_and_unlock(t: TestApp) {
    apply_policy(&t).await;
    let head = t.head().await;
    let past = "2001-01-01T00:00:00Z";
    let in_the_past =
        t.post("/api/v1/users/lock").json(json!({ "email": "ada@test.example", "reason": "r", "until": past }));
    assert!(in_the_past.send().await.error(422, "invalid_body").contains("past"));
    let garbage =
        t.post("/api/v1/users/lock").json(json!({ "email": "ada@test.example", "reason": "r", "until": "soon" }));
    assert!(garbage.send().await.error(400, "bad_request").contains("until"));
    assert_eq!(t.head().await, head, "refused locks change nothing");

    // Locked until unlocked.
    let lock = t.post("/api/v1/users/lock").json(json!({ "email": "Ada@test.example", "reason": "investigation" }));
    let lock = lock.send().await.ok();
    assert_eq!(lock["user"], "email:ada@test.example");
    assert_eq!(lock["receipt"]["seq"].as_u64(), Some(head + 1));
    assert_eq!(lock["sessions_ended"], 0);
    let expected = UserState {
        lock: Some(Lock { until: None, reason: "investigation".into() }),
        revoked_before_ms: None,
        groups: None,
    };
    assert_eq!(user_state(&t, "ada@test.example").await, Some(expected));

    // Locked until a time (seconds, rounded down).
    let until = "2999-01-01T00:00:00.900Z";
    let timed = t.post("/api/v1/users/lock").json(json!({ "sub": "sub-bob", "reason": "holiday", "until": until }));
    timed.send().await.ok();
    let body = snapshot(&t).await;
    let (_, bob) = body.users.iter().find(|(u, _)| *u == UserRef::subject("sub-bob")).expect("bob is locked");
    let until_s = chrono::DateTime::parse_from_rfc3339("2999-01-01T00:00:00Z").unwrap().timestamp();
    assert_eq!(bob.lock, Some(Lock { until: Some(until_s), reason: "holiday".into() }));

    // Unlock: the lock is gone from what edges load; the reason defaults;
    // a terminate-all comes first (ada had no sessions to end).
    let unlock = t.post("/api/v1/users/unlock").json(json!({ "email": "ada@test.example" })).send().await.ok();
    assert_eq!(unlock["receipt"]["seq"].as_u64(), Some(head + 4));
    assert_eq!(unlock["sessions_ended"], 0);
    assert_eq!(user_state(&t, "ada@test.example").await.and_then(|s| s.lock), None);

    let audit = t.get("/api/v1/audit?target=email:ada@test.example").send().await.ok();
    let actions: Vec<(&str, &str)> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["action"].as_str().unwrap(), e["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(
        actions,
        vec![
            ("user.unlock", "unlocked"),
            ("user.terminate", "ended at unlock: unlocked"),
            ("user.lock", "investigation")
        ]
    );
    assert!(audit["entries"].as_array().unwrap().iter().all(|e| e["source_address"] == CLIENT_IP));
}

async fn user_state(t: &TestApp, email: &str) -> Option<UserState> {
    snapshot(t).await.users.into_iter().find(|(u, _)| *u == UserRef::email(email)).map(|(_, s)| s)
}

async fn user_actions_validate_their_body(t: TestApp) {
    let head = t.head().await;
    let cases: [(&str, Value, &str); 12] = [
        ("terminate", json!({ "reason": "r" }), "email"),
        ("terminate", json!({ "email": "a@b", "sub": "s", "reason": "r" }), "not both"),
        ("terminate", json!({ "email": "not-an-email", "reason": "r" }), "not-an-email"),
        ("terminate", json!({ "email": "a@b" }), "reason"),
        ("terminate", json!({ "email": "a@b", "reason": "" }), "reason"),
        ("terminate", json!({ "email": "a@b", "reason": "r", "until": "2999-01-01T00:00:00Z" }), "until"),
        ("lock", json!({ "email": "a@b" }), "reason"),
        ("lock", json!({ "sub": "", "reason": "r" }), "sub"),
        ("lock", json!({ "email": "a@b", "reason": "r", "keep_sessions": true }), "keep_sessions"),
        ("terminate", json!({ "email": "a@b", "reason": "r", "keep_sessions": false }), "keep_sessions"),
        ("unlock", json!({ "email": "a@b", "until": "2999-01-01T00:00:00Z" }), "until"),
        ("unlock", json!({ "email": "a@b", "keep_sessions": "yes" }), "keep_sessions"),
    ];
    for (action, body, mentions) in cases {
        let message =
            t.post(&format!("/api/v1/users/{action}")).json(body.clone()).send().await.error(422, "invalid_body");
        assert!(message.contains(mentions), "{action} {body}: {message}");
    }
    assert_eq!(t.head().await, head, "nothing changed");
}

/// "Everything that happened to bob": his logins, the termination of one
/// session, terminate-all and the lock are found by his email (any case),
/// by his subject, and one session's by its id — not only rows whose target
/// happens to name him.
async fn a_users_whole_trail_is_one_query(t: TestApp) {
    apply_policy(&t).await;
    let first = login(&t, "Bob@Test.example").await;
    let second = login(&t, "bob@test.example").await;
    login(&t, "eve@test.example").await;
    t.post(&format!("/api/v1/sessions/{first}/terminate")).json(reason("odd location")).send().await.ok();
    t.post("/api/v1/users/terminate")
        .json(json!({ "email": "bob@test.example", "reason": "stolen" }))
        .send()
        .await
        .ok();
    t.post("/api/v1/users/lock").json(json!({ "email": "BOB@test.example", "reason": "hold" })).send().await.ok();

    let actions = |page: &Value| -> Vec<String> {
        page["entries"].as_array().unwrap().iter().map(|e| text(&e["action"])).rev().collect()
    };
    let trail = t.get("/api/v1/audit?user=BOB@test.example").send().await.ok();
    assert_eq!(
        actions(&trail),
        ["session.create", "session.create", "session.terminate", "user.terminate", "user.lock"],
        "{trail}"
    );
    assert!(trail["entries"].as_array().unwrap().iter().all(|e| e["user_email"] == "bob@test.example"), "{trail}");
    let subject = t.get(&format!("/api/v1/sessions/{second}")).send().await.ok()["subject"].clone();
    let by_subject = t.get(&format!("/api/v1/audit?user={}", text(&subject))).send().await.ok();
    assert_eq!(actions(&by_subject), ["session.create", "session.create", "session.terminate"], "{by_subject}");
    let one = t.get(&format!("/api/v1/audit?session={first}")).send().await.ok();
    assert_eq!(actions(&one), ["session.create", "session.terminate"], "{one}");
    let eve = t.get("/api/v1/audit?user=eve@test.example").send().await.ok();
    assert_eq!(actions(&eve), ["session.create"]);
}

async fn session_view(t: &TestApp, id: &str) -> Value {
    t.get(&format!("/api/v1/sessions/{id}")).send().await.ok()
}

/// A lock suspends the user's sessions: the API lists them `active` but
/// `locked`, with the lock's expiry, and `GET /users/lock` shows it too; the
/// unlock ends them (and says how many) so whoever held one before the lock
/// does not walk back in.
async fn locked_sessions_show_locked_and_unlock_ends_them(t: TestApp) {
    apply_policy(&t).await;
    let wiki = login(&t, "ada@test.example").await;
    let admin = text(&Login::new("ada@test.example").route("admin").ok(&t).await["session_id"]);
    let bob = login(&t, "bob@test.example").await;
    let lock = json!({ "email": "ADA@test.example", "reason": "investigation", "until": "2999-01-01T00:00:00Z" });
    t.post("/api/v1/users/lock").json(lock).send().await.ok();

    let page = t.get("/api/v1/sessions?state=active").send().await.ok();
    for session in page["sessions"].as_array().unwrap() {
        let is_ada = session["email"] == "ada@test.example";
        assert_eq!(session["state"], "active", "{session}");
        assert_eq!(session["locked"], is_ada, "{session}");
        let until = if is_ada { json!("2999-01-01T00:00:00.000Z") } else { Value::Null };
        assert_eq!(session["locked_until"], until, "{session}");
    }
    assert_eq!(session_view(&t, &wiki).await["locked"], true);
    let status = t.get("/api/v1/users/lock?email=ada@test.example").send().await.ok();
    assert_eq!(
        status,
        json!({ "user": "email:ada@test.example", "locked": true, "reason": "investigation",
                "until": "2999-01-01T00:00:00.000Z" })
    );
    // Locked by subject, until unlocked: the session shows it, no expiry.
    t.post("/api/v1/users/lock").json(json!({ "sub": "sub-bob@test.example", "reason": "r" })).send().await.ok();
    let view = session_view(&t, &bob).await;
    assert_eq!((&view["locked"], &view["locked_until"]), (&json!(true), &Value::Null), "{view}");
    let status = t.get("/api/v1/users/lock?sub=sub-bob@test.example").send().await.ok();
    assert_eq!((&status["locked"], &status["until"]), (&json!(true), &Value::Null), "{status}");

    let head = t.head().await;
    let unlock = t.post("/api/v1/users/unlock").json(json!({ "email": "ada@test.example", "reason": "cleared" }));
    let unlock = unlock.send().await.ok();
    assert_eq!(unlock["sessions_ended"], 2, "{unlock}");
    assert_eq!(unlock["receipt"]["seq"].as_u64(), Some(head + 2), "terminate-all, then unlock: {unlock}");
    for id in [&wiki, &admin] {
        let view = session_view(&t, id).await;
        assert_eq!(
            (text(&view["state"]), text(&view["end_reason"])),
            ("ended".into(), "ended at unlock: cleared".into())
        );
        assert_eq!(view["locked"], false, "an ended session is not shown locked: {view}");
    }
    let body = snapshot(&t).await;
    let (_, ada) = body.users.iter().find(|(u, _)| *u == UserRef::email("ada@test.example")).expect("ada");
    assert!(ada.lock.is_none() && ada.revoked_before_ms.is_some(), "{ada:?}");
    let status = t.get("/api/v1/users/lock?email=ada@test.example").send().await.ok();
    assert_eq!(status, json!({ "user": "email:ada@test.example", "locked": false, "reason": null, "until": null }));
}

/// `"keep_sessions": true`: the lock lifts, the sessions it suspended stay.
async fn unlock_can_keep_sessions(t: TestApp) {
    apply_policy(&t).await;
    let bob = login(&t, "bob@test.example").await;
    t.post("/api/v1/users/lock").json(json!({ "email": "bob@test.example", "reason": "r" })).send().await.ok();
    let head = t.head().await;
    let unlock = t.post("/api/v1/users/unlock").json(json!({ "email": "bob@test.example", "keep_sessions": true }));
    let unlock = unlock.send().await.ok();
    assert_eq!(unlock["sessions_ended"], 0, "{unlock}");
    assert_eq!(unlock["receipt"]["seq"].as_u64(), Some(head + 1), "only the unlock: {unlock}");
    let view = session_view(&t, &bob).await;
    assert_eq!((text(&view["state"]), &view["locked"]), ("active".into(), &json!(false)), "{view}");
    let body = snapshot(&t).await;
    let bob_state = body.users.iter().find(|(u, _)| *u == UserRef::email("bob@test.example"));
    assert!(bob_state.is_none_or(|(_, s)| s.revoked_before_ms.is_none()), "no terminate-all: {bob_state:?}");
}
