//! The control plane's admin API (`/api/v1`) and edge channel under
//! attack: no token, wrong tokens and every other credential the system
//! issues are 401; unknown fields are 422; oversized bodies are 413; and
//! none of the refused calls changed anything.

use serde_json::json;

use crate::harness::{ADMIN_TOKEN, EDGE_SECRET};
use crate::wire::{exchange, request};
use crate::world::World;
use crate::Report;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api() {
    let world = World::start("admin-api").await;
    let mut report = Report::new("admin_api", &world);
    let (admin_port, edge_port) = world.plane.ports();
    let host = format!("127.0.0.1:{admin_port}");
    let session = world.token("ada", "app").to_owned();
    let sid = {
        use base64::Engine;
        let payload = session.split('.').nth(1).unwrap_or("");
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap_or_default();
        serde_json::from_slice::<serde_json::Value>(&bytes)
            .map_or(String::new(), |v| v["sid"].as_str().unwrap_or("").to_owned())
    };
    let json_body = [("Content-Type", "application/json")];
    let calls: Vec<(&str, &str, String)> = vec![
        ("GET", "/api/v1/sessions", String::new()),
        ("GET", "/api/v1/policy", String::new()),
        ("PUT", "/api/v1/policy", "version: 1\nroutes: []\n".into()),
        ("POST", "/api/v1/service-tokens", json!({"name": "attack-no-auth"}).to_string()),
        ("POST", "/api/v1/admin-tokens", json!({"name": "attack-no-auth"}).to_string()),
        ("POST", "/api/v1/users/lock", json!({"email": "ada@corp.example", "reason": "attack"}).to_string()),
        ("POST", "/api/v1/signing-keys/rotate", String::new()),
        ("GET", "/api/v1/audit", String::new()),
    ];
    let bad_credentials = [
        ("no token", None),
        ("wrong token", Some("Bearer pcat_wrong_token_0123456789abcdef0123456789".to_owned())),
        ("admin token with a suffix", Some(format!("Bearer {ADMIN_TOKEN}x"))),
        ("admin token as Basic", Some(format!("Basic {ADMIN_TOKEN}"))),
        ("edge secret", Some(format!("Bearer {EDGE_SECRET}"))),
        ("session token", Some(format!("Bearer {session}"))),
        ("service token", Some(format!("Bearer {}", world.service_token))),
    ];
    for (credential, header) in &bad_credentials {
        for (method, path, body) in &calls {
            let mut headers = vec![json_body[0]];
            if let Some(value) = header {
                headers.push(("Authorization", value.as_str()));
            }
            let outcome = match exchange(admin_port, &request(method, path, &host, &headers, body)).await {
                Ok(r) if r.status == 401 => Ok(()),
                Ok(r) => Err(format!("status {}", r.summary())),
                Err(e) => Err(e),
            };
            // Every (credential, call) pair is a case only for the first two credentials; the others on two calls.
            if *credential == "no token"
                || *credential == "wrong token"
                || *method == "GET" && path.ends_with("sessions")
                || path.ends_with("lock")
            {
                report.record(&format!("{credential}: {method} {path} is 401"), outcome);
            }
        }
    }
    let query =
        exchange(admin_port, &request("GET", &format!("/api/v1/sessions?token={ADMIN_TOKEN}"), &host, &[], "")).await;
    report.record(
        "admin token in the query is 401",
        match query {
            Ok(r) if r.status == 401 => Ok(()),
            Ok(r) => Err(format!("status {}", r.summary())),
            Err(e) => Err(e),
        },
    );

    let auth = format!("Bearer {ADMIN_TOKEN}");
    let admin = [("Content-Type", "application/json"), ("Authorization", auth.as_str())];
    let unknown: Vec<(&str, String, String)> = vec![
        ("POST", "/api/v1/service-tokens".into(), json!({"name": "attack-unknown", "admin": true}).to_string()),
        ("POST", "/api/v1/admin-tokens".into(), json!({"name": "attack-unknown", "role": "root"}).to_string()),
        (
            "POST",
            "/api/v1/users/lock".into(),
            json!({"email": "ada@corp.example", "reason": "attack", "forever": true}).to_string(),
        ),
        (
            "POST",
            "/api/v1/users/terminate".into(),
            json!({"email": "ada@corp.example", "reason": "attack", "all": true}).to_string(),
        ),
        ("POST", format!("/api/v1/sessions/{sid}/terminate"), json!({"reason": "attack", "force": true}).to_string()),
        ("POST", "/api/v1/policy/rollback".into(), json!({"version": 1, "force": true}).to_string()),
        (
            "POST",
            "/api/v1/policy/explain".into(),
            json!({"host": "app.corp.example", "path": "/", "sudo": true}).to_string(),
        ),
    ];
    for (method, path, body) in &unknown {
        let outcome = match exchange(admin_port, &request(method, path, &host, &admin, body)).await {
            Ok(r) if r.status == 422 => Ok(()),
            Ok(r) => Err(format!("status {}", r.summary())),
            Err(e) => Err(e),
        };
        report.record(&format!("unknown field: {method} {path} is 422"), outcome);
    }
    let query = exchange(admin_port, &request("GET", "/api/v1/sessions?bogus=1", &host, &admin, "")).await;
    report.record(
        "unknown query parameter is refused",
        match query {
            Ok(r) if matches!(r.status, 400 | 422) => Ok(()),
            Ok(r) => Err(format!("status {}", r.summary())),
            Err(e) => Err(e),
        },
    );

    let huge = json!({"name": "x".repeat(2 * 1024 * 1024)}).to_string();
    let minter = crate::edge_identity::minting_edge(&world.plane.edge_url, EDGE_SECRET).await;
    let edge_auth = format!("Bearer {}", minter.assertion());
    let edge_host = format!("127.0.0.1:{edge_port}");
    let edge_headers = [
        ("Content-Type", "application/json"),
        ("Authorization", edge_auth.as_str()),
        ("x-portcullis-edge-id", "attacker"),
    ];
    let oversized: Vec<(&str, u16, Vec<u8>)> = vec![
        (
            "POST /api/v1/service-tokens with 2 MiB",
            admin_port,
            request("POST", "/api/v1/service-tokens", &host, &admin, &huge),
        ),
        (
            "PUT /api/v1/policy with 2 MiB",
            admin_port,
            request(
                "PUT",
                "/api/v1/policy",
                &host,
                &admin,
                &format!("version: 1\n# {}\nroutes: []\n", "x".repeat(2 * 1024 * 1024)),
            ),
        ),
        (
            "POST /edge/v1/sessions with 2 MiB",
            edge_port,
            request("POST", "/edge/v1/sessions", &edge_host, &edge_headers, &huge),
        ),
    ];
    for (name, port, bytes) in oversized {
        let outcome = match exchange(port, &bytes).await {
            Ok(r) if r.status == 413 => Ok(()),
            Ok(r) => Err(format!("status {}", r.summary())),
            Err(e) => Err(e),
        };
        report.record(&format!("oversized: {name} is 413"), outcome);
    }

    // The edge channel takes only an enrolled edge's assertion: not the
    // bootstrap secret (it only enrolls), nor any other credential.
    let new_session = json!({"id_token": "e30.e30.c2ln", "nonce": "n", "route": "app", "source_address": "127.0.0.1",
        "user_agent": "attack"})
    .to_string();
    let admin_auth = format!("Bearer {ADMIN_TOKEN}");
    for (name, auth) in [
        ("no credential", None),
        ("the shared edge secret", Some(&*format!("Bearer {EDGE_SECRET}"))),
        ("the admin token", Some(admin_auth.as_str())),
        ("a session token", Some(&*format!("Bearer {session}"))),
    ] {
        let mut headers = vec![("Content-Type", "application/json"), ("x-portcullis-edge-id", "attacker")];
        if let Some(value) = auth {
            headers.push(("Authorization", value));
        }
        let outcome = match exchange(
            edge_port,
            &request("POST", "/edge/v1/sessions", &edge_host, &headers, &new_session),
        )
        .await
        {
            Ok(r) if r.status == 401 => Ok(()),
            Ok(r) => Err(format!("status {}", r.summary())),
            Err(e) => Err(e),
        };
        report.record(&format!("edge channel with {name} is 401"), outcome);
    }
    let mut with_extra: serde_json::Value = serde_json::from_str(&new_session).expect("JSON");
    with_extra["admin"] = json!(true);
    let outcome = match exchange(
        edge_port,
        &request("POST", "/edge/v1/sessions", &edge_host, &edge_headers, &with_extra.to_string()),
    )
    .await
    {
        Ok(r) if r.status == 422 => Ok(()),
        Ok(r) => Err(format!("status {}", r.summary())),
        Err(e) => Err(e),
    };
    report.record("edge channel unknown field is 422", outcome);

    // Nothing the refused calls asked for happened.
    let tokens = world.plane.api_get("/service-tokens").await.to_string();
    let admins = world.plane.api_get("/admin-tokens").await.to_string();
    let lock = world.plane.api_get("/users/lock?email=ada@corp.example").await;
    let outcome = if tokens.contains("attack-") || admins.contains("attack-") {
        Err(format!("a refused call created a token: {tokens} {admins}"))
    } else if lock["locked"].as_bool() == Some(true) || lock["lock"].is_object() {
        Err(format!("a refused call locked ada: {lock}"))
    } else {
        Ok(())
    };
    report.record("refused calls changed nothing", outcome);
    report.finish();
}
