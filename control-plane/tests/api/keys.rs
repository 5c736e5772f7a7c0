//! Signing keys and portal sessions through the admin API: listing keys,
//! revoking a retired one and the current one (a replacement signs from
//! then on, the revoked key leaves every snapshot and its portal sessions
//! stop verifying), and portal sessions that are listed and ended by an
//! admin or by logout, on both backends.

use axum::http::Method;
use portcullis_policy::wire::Message;
use portcullis_policy::Change;
use serde_json::{json, Value};

use crate::fixtures::{apply_policy, reason, snapshot, text, Login};
use crate::harness::{TestApp, BOOTSTRAP_TOKEN};
use crate::portal::sign_in;

api_tests!(revoking_signing_keys_withdraws_them_and_replaces_the_current_one, portal_sessions_are_listed_and_ended);

fn kids(keys: &Value, pick: impl Fn(&Value) -> bool) -> Vec<String> {
    keys.as_array().expect("a list").iter().filter(|k| pick(k)).map(|k| text(&k["kid"])).collect()
}

async fn revoking_signing_keys_withdraws_them_and_replaces_the_current_one(t: TestApp) {
    apply_policy(&t).await;
    let first = kids(&t.get("/api/v1/signing-keys").send().await.ok(), |k| k["current"] == true);
    assert_eq!(first.len(), 1);
    t.post("/api/v1/signing-keys/rotate").json(json!({})).send().await.ok();
    let keys = t.get("/api/v1/signing-keys").send().await.ok();
    let current = kids(&keys, |k| k["current"] == true);
    assert_eq!(kids(&keys, |k| k["current"] == false && k["retired_at"].is_string()), first, "{keys}");
    assert!(keys.to_string().find("PRIVATE").is_none(), "never the private key: {keys}");
    let published: Vec<String> = snapshot(&t).await.signing_keys.iter().map(|k| k.kid.clone()).collect();
    assert_eq!(published, [first[0].clone(), current[0].clone()], "the retired key still verifies");

    // The retired key leaked: withdrawn at once.
    t.post(&format!("/api/v1/signing-keys/{}/revoke", first[0]))
        .json(json!({}))
        .send()
        .await
        .error(422, "invalid_body");
    let answer = t.post(&format!("/api/v1/signing-keys/{}/revoke", first[0])).json(reason("leaked")).send().await.ok();
    assert_eq!((text(&answer["kid"]), text(&answer["current_kid"])), (first[0].clone(), current[0].clone()));
    let published: Vec<String> = snapshot(&t).await.signing_keys.iter().map(|k| k.kid.clone()).collect();
    assert_eq!(published, current, "the revoked key is no longer published");
    let again = t.post(&format!("/api/v1/signing-keys/{}/revoke", first[0])).json(reason("again")).send().await;
    again.error(404, "not_found");
    t.post("/api/v1/signing-keys/nope/revoke").json(reason("unknown")).send().await.error(404, "not_found");

    // The current key leaked: a new one signs from now on, in the same change.
    let portal = sign_in(&t, BOOTSTRAP_TOKEN).await;
    let mut stream = t.edge(Method::GET, "/edge/v1/stream").open().await;
    stream.expect_next().await;
    let answer =
        t.post(&format!("/api/v1/signing-keys/{}/revoke", current[0])).json(reason("leaked")).send().await.ok();
    let replacement = text(&answer["current_kid"]);
    assert_ne!(replacement, current[0]);
    match stream.expect_change().await {
        Message::Delta(delta) => match delta.change {
            Change::RotateKeys { keys } => {
                assert_eq!(keys.iter().map(|k| k.kid.clone()).collect::<Vec<_>>(), std::slice::from_ref(&replacement));
            }
            other => panic!("expected the new key set, got {other:?}"),
        },
        other => panic!("expected a delta, got {other:?}"),
    }
    let token = text(&Login::new("ada@corp.example").ok(&t).await["token"]);
    let header = jsonwebtoken::decode_header(&token).expect("a JWT");
    assert_eq!(header.kid.as_deref(), Some(replacement.as_str()), "new sessions are signed with the replacement");
    let session = portal.call(&t, Method::GET, "/api/v1/sessions").send().await;
    session.error(401, "unauthorized");
    let audit = t.get("/api/v1/audit?action=signing_key.revoke").send().await.ok();
    assert_eq!(audit["entries"].as_array().map(Vec::len), Some(2), "{audit}");
    t.get("/api/v1/signing-keys").bearer("pcat_not-a-token-0123456789").send().await.error(401, "unauthorized");
}

async fn portal_sessions_are_listed_and_ended(t: TestApp) {
    let first = sign_in(&t, BOOTSTRAP_TOKEN).await;
    let second = sign_in(&t, BOOTSTRAP_TOKEN).await;
    let listed = t.get("/api/v1/portal-sessions").send().await.ok();
    let ids = kids_of(&listed);
    assert_eq!(ids.len(), 2, "{listed}");
    assert!(listed[0]["subject"] == "token:bootstrap" && listed[0]["method"] == "token", "{listed}");
    first.call(&t, Method::GET, "/api/v1/sessions").send().await.ok();
    second.call(&t, Method::GET, "/api/v1/sessions").send().await.ok();

    // An admin ends one (say, a stolen cookie): refused from the next request on.
    let mine = text(&t.get("/portal/session").no_auth().header("cookie", &first.cookie).send().await.ok()["user"]);
    assert_eq!(mine, "token:bootstrap");
    let target = ids.iter().find(|id| !id.is_empty()).expect("an id").clone();
    t.post(&format!("/api/v1/portal-sessions/{target}/end")).json(json!({})).send().await.error(422, "invalid_body");
    let ended = t.post(&format!("/api/v1/portal-sessions/{target}/end")).json(reason("cookie stolen")).send().await;
    let ended = ended.ok();
    assert!(ended["ended_at"].is_string() && ended["end_reason"] == "cookie stolen", "{ended}");
    let again = t.post(&format!("/api/v1/portal-sessions/{target}/end")).json(reason("again")).send().await;
    again.error(404, "not_found");
    let mut statuses = Vec::new();
    for portal in [&first, &second] {
        statuses.push(portal.call(&t, Method::GET, "/api/v1/sessions").send().await.status.as_u16());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 401).count(), 1, "exactly the ended one is refused: {statuses:?}");
    assert_eq!(kids_of(&t.get("/api/v1/portal-sessions").send().await.ok()).len(), 1);

    // Logout ends the other one server side: its cookie, replayed, is refused.
    let survivor = if statuses[0] == 401 { &second } else { &first };
    survivor.page(&t, Method::POST, "/portal/logout").send().await;
    survivor.call(&t, Method::GET, "/api/v1/sessions").send().await.error(401, "unauthorized");
    assert_eq!(kids_of(&t.get("/api/v1/portal-sessions").send().await.ok()).len(), 0);
    let audit = t.get("/api/v1/audit?action=portal_session.end").send().await.ok();
    assert_eq!(audit["entries"].as_array().map(Vec::len), Some(2), "admin end and logout are audited: {audit}");
}

fn kids_of(list: &Value) -> Vec<String> {
    list.as_array().expect("a list").iter().map(|s| text(&s["id"])).collect()
}
