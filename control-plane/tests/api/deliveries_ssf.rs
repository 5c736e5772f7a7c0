//! `/api/v1/deliveries` for SSF jobs: admin scope only (a receiver's or a reader's token
//! sees no one's deliveries and retries nothing); a failed delivery is
//! retried once, keeping its id (the SET's `jti`, the idempotency key).

use axum::http::Method;
use portcullis_control_plane::store::OutboxStore;
use serde_json::json;

use crate::fixtures::text;
use crate::harness::TestApp;

api_tests!(deliveries_are_admin_only_and_a_refused_set_is_retried_with_its_jti);

async fn token(t: &TestApp, name: &str, scope: &str) -> String {
    let created =
        t.post("/api/v1/admin-tokens").json(json!({ "name": name, "scopes": [scope] })).send().await.expect(201);
    text(&created["token"])
}

async fn deliveries_are_admin_only_and_a_refused_set_is_retried_with_its_jti(t: TestApp) {
    let rx = token(&t, "rx", "ssf").await;
    let reader = token(&t, "reader", "sessions:read").await;
    let created = t
        .api(Method::POST, "/ssf/streams")
        .bearer(&rx)
        .json(json!({ "delivery": { "method": "urn:ietf:rfc:8936" } }))
        .send()
        .await
        .expect(201);
    let stream_id = text(&created["stream_id"]);
    let poll_path = format!("/ssf/poll/{stream_id}");
    t.api(Method::POST, "/ssf/verify").bearer(&rx).json(json!({ "stream_id": stream_id })).send().await.expect(204);
    let polled = t.api(Method::POST, &poll_path).bearer(&rx).json(json!({ "returnImmediately": true })).send().await;
    let jti = polled.ok()["sets"].as_object().unwrap().keys().next().unwrap().clone();
    let refusal = json!({ "setErrs": { jti.clone(): { "err": "invalid_key", "description": "kid unknown" } },
        "returnImmediately": true });
    let answer = t.api(Method::POST, &poll_path).bearer(&rx).json(refusal).send().await.ok();
    assert_eq!(answer["sets"], json!({}), "a refused SET is not offered again by itself");

    let retry_path = format!("/api/v1/deliveries/{jti}/retry");
    for other in [&rx, &reader] {
        t.get("/api/v1/deliveries").bearer(other).send().await.error(403, "insufficient_scope");
        t.post(&retry_path).bearer(other).send().await.error(403, "insufficient_scope");
    }
    assert_eq!(t.app.store.get_job(&jti).await.unwrap().unwrap().attempts, 1, "nothing was retried");

    let failed = t.get("/api/v1/deliveries?state=failed").send().await.ok();
    let listed = failed.as_array().unwrap();
    assert_eq!(listed.len(), 1, "{failed}");
    assert_eq!((text(&listed[0]["job"]), text(&listed[0]["relying_party"])), (jti.clone(), "ssf-poll".to_owned()));
    assert_eq!(text(&listed[0]["error"]), "invalid_key: kid unknown");

    let retried = t.post(&retry_path).send().await.ok();
    assert_eq!((text(&retried["job"]), text(&retried["state"])), (jti.clone(), "retrying".to_owned()));
    assert!(t.post(&retry_path).send().await.error(409, "not_retryable").contains("retrying"));
    t.post("/api/v1/deliveries/no-such-job/retry").send().await.error(404, "not_found");
    let again = t.api(Method::POST, &poll_path).bearer(&rx).json(json!({ "returnImmediately": true })).send().await;
    let again = again.ok();
    assert!(again["sets"].get(&jti).is_some(), "the same jti once more: {again}");
}
