//! Upgrade smuggling. `Upgrade: h2c` never switches protocols through the
//! edge: the request goes upstream as a plain request without `Upgrade`,
//! `HTTP2-Settings` or the `Connection` tokens, so an HTTP/2 preface and a
//! HEADERS frame for `/admin/...` sent afterwards never reach the upstream
//! as an h2 request. Websocket upgrades must be well formed (400 otherwise),
//! go upstream with the same header hygiene as any request, and a 101
//! without the right `Sec-WebSocket-Accept` never reaches the client.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::checks;
use crate::recording_upstream::{Proto, Recorded};
use crate::wire::{request, Conn, Response, ANSWER_WITHIN};
use crate::world::World;
use crate::{listing, Report};

const APP: &str = "app.corp.example";
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const SETTINGS: &str = "AAMAAABkAAQCAAAAAAIAAAAA";

/// Sends `bytes`, reads the answer, and then (whatever it was) speaks
/// HTTP/2 on the connection: a request for `/admin/users` claiming to be an
/// admin. Returns the first answer and what the h2 request got, if anything.
async fn h2c_attempt(world: &World, bytes: &[u8]) -> (Option<Response>, String) {
    let mut conn = Conn::open(world.edge.port).await;
    conn.send(bytes).await;
    let first = conn.response(ANSWER_WITHIN).await.ok().flatten();
    let Conn { stream, buffer } = conn;
    let (read, write) = stream.into_split();
    let io = tokio::io::join(tokio::io::AsyncReadExt::chain(std::io::Cursor::new(buffer), read), write);
    let smuggled = tokio::time::timeout(Duration::from_secs(1), async move {
        let (mut client, connection) = h2::client::handshake(io).await.map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        let request = http::Request::builder()
            .uri("http://app.corp.example/admin/users")
            .header("x-portcullis-user", "admin")
            .header("x-portcullis-groups", "[\"admins\"]")
            .body(())
            .map_err(|e| e.to_string())?;
        let (response, _) = client.send_request(request, true).map_err(|e| e.to_string())?;
        let response = response.await.map_err(|e| e.to_string())?;
        Ok::<String, String>(format!("h2 answered {}", response.status()))
    })
    .await
    .unwrap_or_else(|_| Ok("no h2 answer".into()));
    (first, smuggled.unwrap_or_else(|e| format!("h2 failed: {e}")))
}

fn h2c_clean(seen: &[Recorded], target: Option<&str>) -> Result<(), String> {
    if let Some(h2) = seen.iter().find(|r| r.proto == Proto::H2) {
        return Err(format!("an h2 request reached the upstream: {}", h2.describe()));
    }
    if let Some(admin) = seen.iter().find(|r| r.target.contains("admin")) {
        return Err(format!("/admin reached the upstream: {}", admin.describe()));
    }
    for one in seen {
        checks::absent(one, &["upgrade", "http2-settings"])?;
        if one.all("connection").iter().any(|c| c.to_ascii_lowercase().contains("http2-settings")) {
            return Err(format!("Connection: HTTP2-Settings reached the upstream: {}", one.describe()));
        }
    }
    match target {
        Some(target) if seen.len() != 1 || seen[0].target != target => {
            Err(format!("expected one plain request for {target}, got {}", listing(seen)))
        }
        None if !seen.is_empty() => Err(format!("expected nothing upstream, got {}", listing(seen))),
        _ => Ok(()),
    }
}

/// A websocket handshake with `replace` applied to the default headers
/// (a `None` value drops the header) and `extra` headers appended.
fn websocket(path: &str, cookie: &str, replace: &[(&str, Option<&str>)], extra: &[(&str, &str)]) -> Vec<u8> {
    let defaults = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", KEY),
        ("Cookie", cookie),
    ];
    let mut headers: Vec<(&str, &str)> = Vec::new();
    for (name, value) in defaults {
        match replace.iter().find(|(n, _)| *n == name) {
            Some((_, Some(v))) => headers.push((name, v)),
            Some((_, None)) => {}
            None => headers.push((name, value)),
        }
    }
    headers.extend_from_slice(extra);
    request("GET", path, APP, &headers, "")
}

/// Opens a websocket with `bytes`; on 101 checks that a frame echoes.
async fn websocket_attempt(world: &World, bytes: &[u8]) -> Result<(u16, bool), String> {
    let mut conn = Conn::open(world.edge.port).await;
    conn.send(bytes).await;
    let Some(response) = conn.response(ANSWER_WITHIN).await? else { return Ok((0, false)) };
    if response.status != 101 {
        return Ok((response.status, false));
    }
    let Conn { stream, buffer } = conn;
    let (read, write) = stream.into_split();
    let io = tokio::io::join(tokio::io::AsyncReadExt::chain(std::io::Cursor::new(buffer), read), write);
    let role = tokio_tungstenite::tungstenite::protocol::Role::Client;
    let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(io, role, None).await;
    let echoed = tokio::time::timeout(Duration::from_secs(3), async {
        ws.send(Message::text("ping")).await.ok()?;
        match ws.next().await {
            Some(Ok(Message::Text(text))) => Some(text.as_str() == "ping"),
            _ => Some(false),
        }
    })
    .await;
    Ok((101, matches!(echoed, Ok(Some(true)))))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_smuggling() {
    let world = World::start("upgrades").await;
    let mut report = Report::new("upgrades", &world);
    let ada = world.cookie("ada", "app");

    // h2c: the attack and variations.
    let h2c_cases: Vec<(&str, Vec<u8>, u16, Option<&str>)> = vec![
        (
            "h2c on a public path with HTTP2-Settings",
            request(
                "GET",
                "/healthz",
                APP,
                &[("Upgrade", "h2c"), ("HTTP2-Settings", SETTINGS), ("Connection", "Upgrade, HTTP2-Settings")],
                "",
            ),
            200,
            Some("/healthz"),
        ),
        (
            "h2c with Connection: upgrade only",
            request(
                "GET",
                "/healthz",
                APP,
                &[("Upgrade", "h2c"), ("HTTP2-Settings", SETTINGS), ("Connection", "upgrade")],
                "",
            ),
            200,
            Some("/healthz"),
        ),
        (
            "h2c spelled H2C",
            request(
                "GET",
                "/healthz",
                APP,
                &[("Upgrade", "H2C"), ("HTTP2-Settings", SETTINGS), ("Connection", "Upgrade, HTTP2-Settings")],
                "",
            ),
            200,
            Some("/healthz"),
        ),
        (
            "h2c without a Connection header",
            request("GET", "/healthz", APP, &[("Upgrade", "h2c"), ("HTTP2-Settings", SETTINGS)], ""),
            200,
            Some("/healthz"),
        ),
        (
            "h2c logged in",
            request(
                "GET",
                "/hello",
                APP,
                &[
                    ("Cookie", &ada),
                    ("Upgrade", "h2c"),
                    ("HTTP2-Settings", SETTINGS),
                    ("Connection", "Upgrade, HTTP2-Settings"),
                ],
                "",
            ),
            200,
            Some("/hello"),
        ),
        (
            "h2c with a POST body",
            request(
                "POST",
                "/public/form",
                APP,
                &[("Upgrade", "h2c"), ("HTTP2-Settings", SETTINGS), ("Connection", "Upgrade, HTTP2-Settings")],
                "a=1",
            ),
            200,
            Some("/public/form"),
        ),
        (
            "h2c to a denied path",
            request(
                "GET",
                "/admin/users",
                APP,
                &[
                    ("Cookie", &ada),
                    ("Upgrade", "h2c"),
                    ("HTTP2-Settings", SETTINGS),
                    ("Connection", "Upgrade, HTTP2-Settings"),
                ],
                "",
            ),
            403,
            None,
        ),
    ];
    for (name, bytes, status, target) in h2c_cases {
        let mark = world.upstream.log.mark();
        let (first, smuggled) = h2c_attempt(&world, &bytes).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
        let seen = world.upstream.log.since(mark);
        let got = first.as_ref().map_or(0, |r| r.status);
        let outcome = if got != status {
            Err(format!("status {got} (expected {status}); then {smuggled}"))
        } else {
            h2c_clean(&seen, target).map_err(|e| format!("{e}; then {smuggled}"))
        };
        report.record(name, outcome);
    }

    // Websocket handshakes that are not well formed: 400, nothing upstream.
    let malformed: Vec<(&str, Vec<u8>)> = vec![
        ("websocket key too short", websocket("/ws", &ada, &[("Sec-WebSocket-Key", Some("c2hvcnQ="))], &[])),
        (
            "websocket key not base64",
            websocket("/ws", &ada, &[("Sec-WebSocket-Key", Some("not base64 at all!!!!!!="))], &[]),
        ),
        ("websocket key missing", websocket("/ws", &ada, &[("Sec-WebSocket-Key", None)], &[])),
        ("websocket key twice", websocket("/ws", &ada, &[], &[("Sec-WebSocket-Key", "c2Vjb25kIGtleSBzaXh0ZWVuIQ==")])),
        ("websocket version 8", websocket("/ws", &ada, &[("Sec-WebSocket-Version", Some("8"))], &[])),
        ("websocket version missing", websocket("/ws", &ada, &[("Sec-WebSocket-Version", None)], &[])),
        ("websocket without Connection", websocket("/ws", &ada, &[("Connection", None)], &[])),
        ("websocket with Connection: keep-alive", websocket("/ws", &ada, &[("Connection", Some("keep-alive"))], &[])),
    ];
    for (name, bytes) in malformed {
        let mark = world.upstream.log.mark();
        let outcome = match websocket_attempt(&world, &bytes).await {
            Ok((400, _)) => {
                tokio::time::sleep(crate::SETTLE).await;
                let seen = world.upstream.log.since(mark);
                if seen.is_empty() {
                    Ok(())
                } else {
                    Err(format!("upstream got {}", listing(&seen)))
                }
            }
            Ok((status, _)) => Err(format!(
                "status {status} (expected 400); upstream got {}",
                listing(&world.upstream.log.since(mark))
            )),
            Err(e) => Err(e),
        };
        report.record(name, outcome);
    }

    // Well-formed websockets: what the upstream receives.
    let subject = "sub-ada@corp.example";
    let root_token = world.token("root", "app").to_owned();
    let proxy_auth = format!("Bearer {root_token}");
    let with_cookies = format!("theme=dark; {ada}; lang=en");
    let ada_token = world.token("ada", "app").to_owned();
    let valid: Vec<(&str, Vec<u8>, u16, crate::RequestCheck)> = vec![
        (
            "websocket echoes (control)",
            websocket("/ws", &ada, &[], &[]),
            101,
            Box::new(move |r: &Recorded| checks::identity(r, subject, &["staff"])),
        ),
        (
            "websocket strips hop-by-hop, Proxy-Authorization and look-alikes",
            websocket(
                "/ws",
                &ada,
                &[("Connection", Some("Upgrade, X-Hop"))],
                &[
                    ("Proxy-Authorization", &proxy_auth),
                    ("X_Portcullis_Groups", "admins"),
                    ("x-portcullis-user", "root"),
                    ("Keep-Alive", "timeout=5"),
                    ("Proxy-Connection", "keep-alive"),
                    ("TE", "gzip"),
                    ("Trailer", "X-Foo"),
                    ("X-Hop", "1"),
                    ("HTTP2-Settings", SETTINGS),
                    ("X-Real-IP", "10.0.0.1"),
                    ("Forwarded", "for=10.0.0.1"),
                ],
            ),
            101,
            Box::new(move |r: &Recorded| {
                checks::all([
                    checks::identity(r, subject, &["staff"]),
                    checks::absent(
                        r,
                        &[
                            "proxy-authorization",
                            "keep-alive",
                            "proxy-connection",
                            "te",
                            "trailer",
                            "x-hop",
                            "http2-settings",
                            "x-real-ip",
                        ],
                    ),
                    checks::no_credentials(r, &[&root_token]),
                    if r.all("forwarded").iter().any(|f| f.contains("10.0.0.1")) {
                        Err("the client's Forwarded arrived".into())
                    } else {
                        Ok(())
                    },
                    if r.header("upgrade").is_some_and(|u| u.eq_ignore_ascii_case("websocket")) {
                        Ok(())
                    } else {
                        Err("Upgrade: websocket missing".into())
                    },
                ])
            }),
        ),
        (
            "websocket keeps app cookies, drops the edge's",
            websocket("/ws", &with_cookies, &[], &[]),
            101,
            Box::new(|r: &Recorded| {
                let cookies = r.cookies();
                checks::all([
                    checks::no_credentials(r, &[]),
                    if cookies.contains(&"theme=dark".to_owned()) && cookies.contains(&"lang=en".to_owned()) {
                        Ok(())
                    } else {
                        Err(format!("app cookies lost: {cookies:?}"))
                    },
                ])
            }),
        ),
        (
            "websocket with a Bearer session token does not forward it",
            websocket("/ws", "theme=dark", &[], &[("Authorization", &format!("Bearer {ada_token}"))]),
            101,
            Box::new(move |r: &Recorded| {
                checks::all([checks::absent(r, &["authorization"]), checks::no_credentials(r, &[&ada_token])])
            }),
        ),
    ];
    for (name, bytes, status, check) in valid {
        let mark = world.upstream.log.mark();
        let outcome = match websocket_attempt(&world, &bytes).await {
            Ok((got, echoed)) if got == status => {
                let seen = world.upstream.log.since(mark);
                match seen.as_slice() {
                    [one] if one.target == "/ws" && echoed => check(one),
                    [_] if !echoed => Err("upgraded but no echo".into()),
                    _ => Err(format!("expected one upgrade for /ws upstream, got {}", listing(&seen))),
                }
            }
            Ok((got, _)) => Err(format!("status {got} (expected {status})")),
            Err(e) => Err(e),
        };
        report.record(name, outcome);
    }

    // Websockets to what the policy denies, and an upstream that answers wrongly.
    let denied: Vec<(&str, Vec<u8>, &[u16])> = vec![
        ("websocket to a denied path", websocket("/admin/ws", &ada, &[], &[]), &[403][..]),
        ("websocket to an escaped denied path", websocket("/%61dmin/ws", &ada, &[], &[]), &[403][..]),
        ("anonymous websocket to a protected path", websocket("/ws", "theme=dark", &[], &[]), &[401][..]),
        (
            "websocket with a session of another route",
            websocket("/ws", &world.cookie("ada", "ci").replace(".ci=", ".app="), &[], &[]),
            &[401][..],
        ),
    ];
    for (name, bytes, statuses) in denied {
        let mark = world.upstream.log.mark();
        let outcome = match websocket_attempt(&world, &bytes).await {
            Ok((got, _)) if statuses.contains(&got) => {
                tokio::time::sleep(crate::SETTLE).await;
                let seen = world.upstream.log.since(mark);
                if seen.is_empty() {
                    Ok(())
                } else {
                    Err(format!("upstream got {}", listing(&seen)))
                }
            }
            Ok((got, _)) => Err(format!("status {got} (expected {statuses:?})")),
            Err(e) => Err(e),
        };
        report.record(name, outcome);
    }
    let outcome = match websocket_attempt(&world, &websocket("/ws-bad-accept", &ada, &[], &[])).await {
        Ok((502, _)) => Ok(()),
        Ok((got, _)) => Err(format!("the client got {got} (expected 502) for a 101 with a wrong Sec-WebSocket-Accept")),
        Err(e) => Err(e),
    };
    report.record("upstream 101 with a wrong Sec-WebSocket-Accept", outcome);
    report.finish();
}
