//! HTTP/2 over the edge's TLS listener: the same gate as HTTP/1.1
//! (canonical paths, header hygiene, credentials kept at the edge, route
//! binding), and an HTTP/2 connection carrying several identities is bound
//! to each of them, so a terminated session's streams cannot hide behind
//! another session's later binding (a fifth identity gets 421).

use crate::checks;
use crate::recording_upstream::Recorded;
use crate::world::World;
use crate::{listing, Report};

/// A client that resolves app.corp.example to the edge and trusts its certificate.
fn client(world: &World) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&world.https_pem).expect("PEM"))
        .resolve("app.corp.example", ([127, 0, 0, 1], world.https_port).into())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// GET `path` with `headers` on `client`: (HTTP/2 used, status).
async fn get(
    world: &World,
    client: &reqwest::Client,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<(bool, u16), String> {
    let mut request = client.get(format!("https://app.corp.example:{}{path}", world.https_port));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.map_err(|e| format!("request failed: {e}"))?;
    Ok((response.version() == reqwest::Version::HTTP_2, response.status().as_u16()))
}

type Check = fn(&[Recorded]) -> Result<(), String>;

/// The `sid` claim of a session token.
fn session_id(token: &str) -> String {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap_or("");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap_or_default();
    serde_json::from_slice::<serde_json::Value>(&bytes)
        .map_or(String::new(), |v| v["sid"].as_str().unwrap_or("").to_owned())
}

/// Cases: name, path, headers, expected status, the upstream's side.
type Table<'a> = Vec<(&'a str, &'a str, Vec<(&'a str, &'a str)>, u16, Check)>;

fn nothing(seen: &[Recorded]) -> Result<(), String> {
    if seen.is_empty() {
        Ok(())
    } else {
        Err(format!("the upstream got {}", listing(seen)))
    }
}

fn ada_once(seen: &[Recorded]) -> Result<(), String> {
    match seen {
        [one] => checks::all([
            checks::identity(one, "sub-ada@corp.example", &["staff"]),
            checks::no_credentials(one, &[]),
            checks::absent(one, &["authorization"]),
        ]),
        _ => Err(format!("expected one request, got {}", listing(seen))),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2() {
    let world = World::start("http2").await;
    let mut report = Report::new("http2", &world);
    let ada = world.cookie("ada", "app");
    let root = world.cookie("root", "app");
    let bearer = format!("Bearer {}", world.token("ada", "app"));
    let other_route = format!("portcullis_session.app={}", world.token("ada", "ci"));
    let single: Table = vec![
        ("h2 allowed (control)", "/hello", vec![("cookie", &ada)], 200, ada_once),
        ("h2 escaped denied path", "/%61dmin/users", vec![("cookie", &ada)], 403, nothing),
        ("h2 dot segments to a denied path", "/x/%2e%2e/admin/users", vec![("cookie", &ada)], 403, nothing),
        ("h2 path parameters", "/admin;x/users", vec![("cookie", &ada)], 400, nothing),
        ("h2 encoded slash", "/admin%2fusers", vec![("cookie", &ada)], 400, nothing),
        (
            "h2 look-alike identity headers",
            "/hello",
            vec![("cookie", &ada), ("x-portcullis-user", "root"), ("x_portcullis_groups", "admins")],
            200,
            ada_once,
        ),
        ("h2 Bearer session token not forwarded", "/hello", vec![("authorization", &bearer)], 200, ada_once),
        ("h2 anonymous", "/hello", vec![], 401, nothing),
        ("h2 another route's session", "/hello", vec![("cookie", &other_route)], 401, nothing),
        ("h2 anonymous deny before public", "/public/secret/x", vec![], 403, nothing),
    ];
    for (name, path, headers, status, check) in single {
        let mark = world.upstream.log.mark();
        let outcome = match get(&world, &client(&world), path, &headers).await {
            Ok((true, got)) if got == status => check(&world.upstream.log.since(mark)),
            Ok((h2, got)) => Err(format!("status {got} (expected {status}), HTTP/2: {h2}")),
            Err(e) => Err(e),
        };
        report.record(name, outcome);
    }

    // Two identities on one connection: terminating the first closes it,
    // although the second bound the connection after it.
    let mark = world.upstream.log.mark();
    let shared = client(&world);
    let first = get(&world, &shared, "/hello", &[("cookie", &ada)]).await;
    let second = get(&world, &shared, "/admin/users", &[("cookie", &root)]).await;
    let seen = world.upstream.log.since(mark);
    let outcome = match (first, second) {
        (Ok((true, 200)), Ok((true, 200))) if seen.len() == 2 => {
            let sid = session_id(world.token("ada", "app"));
            let path = format!("/sessions/{sid}/terminate?wait=true");
            match world.plane.api_post(&path, &serde_json::json!({ "reason": "h2 attack" })).await {
                Ok((200, answer)) if answer["receipt"]["connections_closed"].as_i64().unwrap_or(0) >= 1 => Ok(()),
                other => Err(format!("terminating ada closed no connection: {other:?}")),
            }
        }
        other => {
            Err(format!("expected 200 twice on one HTTP/2 connection, got {other:?}; upstream {}", listing(&seen)))
        }
    };
    report.record("h2 terminating the first of two identities on one connection closes it", outcome);
    let mut fifth = Ok(());
    let crowded = client(&world);
    for (n, user) in ["ada", "root", "bob", "eve", "ann"].iter().enumerate() {
        let cookie = format!(
            "portcullis_session.app={}",
            crate::world::mint_for(&world, &format!("{user}-h2@corp.example"), &["staff"], "app").await
        );
        let want = if n < 4 { 200 } else { 421 };
        match get(&world, &crowded, "/hello", &[("cookie", &cookie)]).await {
            Ok((true, got)) if got == want => {}
            other => fifth = Err(format!("identity {n}: expected {want}, got {other:?}")),
        }
    }
    report.record("h2 a fifth identity on one connection is 421", fifth);
    let mark = world.upstream.log.mark();
    let again = client(&world);
    let results = [
        get(&world, &again, "/hello", &[("cookie", &root)]).await,
        get(&world, &again, "/hello", &[("cookie", &root)]).await,
    ];
    let seen = world.upstream.log.since(mark);
    let outcome = match results {
        [Ok((true, 200)), Ok((true, 200))] if seen.len() == 2 => Ok(()),
        other => Err(format!("expected 200 twice, got {other:?}; upstream {}", listing(&seen))),
    };
    report.record("h2 the same identity twice on one connection (control)", outcome);
    report.finish();
}
