//! Service tokens (shown once, never listed, revocation streamed to edges)
//! and session-signing key rotation.

use axum::http::Method;
use portcullis_control_plane::authority::verify;
use portcullis_policy::wire::Message;
use portcullis_policy::{Change, TokenId};
use serde_json::json;

use crate::fixtures::{apply_policy, published_keys, text, Login};
use crate::harness::{TestApp, ISSUER};

api_tests!(service_tokens_are_shown_once_and_revocation_streams, signing_key_rotation_publishes_new_keys);

async fn service_tokens_are_shown_once_and_revocation_streams(t: TestApp) {
    let created = t
        .post("/api/v1/service-tokens")
        .json(json!({ "name": "ci-runner", "groups": ["ci"], "expires_in_days": 30 }))
        .send()
        .await
        .expect(201);
    let (id, secret) = (text(&created["id"]), text(&created["token"]));
    assert!(secret.starts_with("pcst_") && secret.len() > 40, "{secret}");
    assert_eq!(created["info"]["subject"], "service:ci-runner", "the default subject");
    assert_eq!(created["info"]["groups"], json!(["ci"]));
    assert_eq!(created["info"]["scopes"], json!([]));
    assert!(created["info"]["expires_at"].is_string());
    let other =
        t.post("/api/v1/service-tokens").json(json!({ "name": "backup", "subject": "svc-backup" })).send().await;
    let other = other.expect(201);
    assert_eq!(other["info"]["subject"], "svc-backup");
    assert!(other["info"]["expires_at"].is_null());

    // Listing never shows a secret, nor its hash.
    let listed = t.get("/api/v1/service-tokens").send().await;
    let listed_text = listed.text();
    let list = listed.ok();
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert!(!listed_text.contains(&secret) && !listed_text.contains("pcst_"), "{listed_text}");
    assert!(!listed_text.contains("hash"), "{listed_text}");
    for entry in list.as_array().unwrap() {
        assert!(entry.get("token").is_none(), "{entry}");
    }
    let admins = t.get("/api/v1/admin-tokens").send().await;
    assert!(!admins.text().contains("pcat_"), "{}", admins.text());
    assert!(admins.ok().as_array().unwrap().iter().all(|e| e["id"] != id.as_str()), "kinds are listed apart");

    // A service token is not an admin token; scopes belong to admin tokens.
    t.get("/api/v1/sessions").bearer(&secret).send().await.error(401, "unauthorized");
    let scoped = t.post("/api/v1/service-tokens").json(json!({ "name": "x", "scopes": ["admin"] })).send().await;
    assert!(scoped.error(422, "invalid_body").contains("scopes"));
    t.post("/api/v1/service-tokens").json(json!({ "name": " " })).send().await.error(422, "invalid_body");

    // Revocation reaches a stream opened before it.
    let head = t.head().await;
    let mut stream = t.edge(Method::GET, &format!("/edge/v1/stream?since={head}")).open().await;
    let revoked = t.api(Method::DELETE, &format!("/api/v1/service-tokens/{id}")).send().await;
    assert_eq!(revoked.status.as_u16(), 204, "{}", revoked.text());
    assert!(revoked.body.is_empty());
    match stream.expect_change().await {
        Message::Delta(delta) => {
            assert_eq!(delta.seq, head + 1);
            match delta.change {
                Change::RevokeToken { token, expires_at } => {
                    assert_eq!(token, TokenId::new(&id));
                    let in_30_days = chrono::Utc::now().timestamp() + 30 * 86_400;
                    assert!((expires_at - in_30_days).abs() < 120, "the token's own expiry: {expires_at}");
                }
                other => panic!("expected RevokeToken, got {other:?}"),
            }
        }
        other => panic!("expected a delta, got {other:?}"),
    }
    let list = t.get("/api/v1/service-tokens").send().await.ok();
    let entry = list.as_array().unwrap().iter().find(|e| e["id"] == id.as_str()).cloned().expect("still listed");
    assert!(entry["revoked_at"].is_string(), "{entry}");

    // Revoking again is accepted and changes nothing; the snapshot carries the revocation.
    let again = t.api(Method::DELETE, &format!("/api/v1/service-tokens/{id}")).send().await;
    assert_eq!(again.status.as_u16(), 204);
    assert_eq!(t.head().await, head + 1);
    let body = crate::fixtures::snapshot(&t).await;
    assert_eq!(body.revoked_tokens.iter().map(|(token, _)| token.clone()).collect::<Vec<_>>(), [TokenId::new(&id)]);
    let audit = t.get("/api/v1/audit?action=service_token.revoke").send().await.ok();
    assert_eq!(audit["entries"][0]["target"], format!("token:{id}"));
    assert_eq!(audit["entries"][0]["seq"].as_u64(), Some(head + 1));
}

fn kid(token: &str) -> String {
    jsonwebtoken::decode_header(token).expect("a JWT").kid.expect("a kid")
}

async fn signing_key_rotation_publishes_new_keys(t: TestApp) {
    apply_policy(&t).await;
    let before = published_keys(&t).await;
    assert_eq!(before.len(), 1, "one key from the first start");
    let old_token = text(&Login::new("ada@test.example").ok(&t).await["token"]);
    assert_eq!(kid(&old_token), before[0].kid);

    let head = t.head().await;
    let mut stream = t.edge(Method::GET, &format!("/edge/v1/stream?since={head}")).open().await;
    let rotated = t.post("/api/v1/signing-keys/rotate").send().await.ok();
    assert_eq!(rotated, json!({ "seq": head + 1 }));
    let streamed = match stream.expect_change().await {
        Message::Delta(delta) => match delta.change {
            Change::RotateKeys { keys } => keys,
            other => panic!("expected RotateKeys, got {other:?}"),
        },
        other => panic!("expected a delta, got {other:?}"),
    };

    let after = published_keys(&t).await;
    assert_eq!(after, streamed, "the delta and a fresh snapshot agree");
    assert_eq!(after.len(), 2, "the old key stays published for tokens it signed");
    assert!(after.iter().any(|k| k.kid == before[0].kid));
    let new_kid = after.iter().find(|k| k.kid != before[0].kid).expect("a new key").kid.clone();

    // New tokens are signed with the new key; old ones still verify.
    let new_token = text(&Login::new("bob@test.example").ok(&t).await["token"]);
    assert_eq!(kid(&new_token), new_kid);
    assert!(verify(&new_token, &after, ISSUER).is_some());
    assert!(verify(&old_token, &after, ISSUER).is_some());
    assert!(verify(&new_token, &before, ISSUER).is_none(), "the old key set does not know the new key");

    // Rotating again retires the second key too; all three stay published.
    t.post("/api/v1/signing-keys/rotate").send().await.ok();
    let third = published_keys(&t).await;
    assert_eq!(third.len(), 3);
    assert!(verify(&old_token, &third, ISSUER).is_some());
    let audit = t.get("/api/v1/audit?action=signing_key.rotate").send().await.ok();
    let entries = audit["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 3, "first start and two rotations: {audit}");
    assert_eq!(entries[0]["actor"], "token:bootstrap");
    assert_eq!(entries[2]["actor"], "system");
}
