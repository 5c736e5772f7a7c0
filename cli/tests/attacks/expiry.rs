//! Expiry of live connections: a websocket, a CONNECT flow and an idle
//! keep-alive connection admitted with a token whose `exp` has passed (but
//! is within the edge's clock skew), and a websocket and a CONNECT flow on
//! routes whose rule says `logged_in_within: 20s` for a login 15 s old, are
//! closed once their admission stops holding (or refused at once), while a
//! connection whose admission still holds stays open.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::fake_idp::now;
use crate::forge::session_token;
use crate::wire::{get, request, Conn, ANSWER_WITHIN};
use crate::world::{mint_at, World};
use crate::Report;

/// How long past the moment its admission lapses a connection may live.
const CLOSED_WITHIN: Duration = Duration::from_secs(12);

/// Opens a websocket on `host` with `cookie`: the socket after a 101, or the refusal status.
async fn open_websocket(
    world: &World,
    host: &str,
    cookie: &str,
) -> Result<WebSocketStream<impl AsyncRead + AsyncWrite + Unpin + Send>, u16> {
    let mut conn = Conn::open(world.edge.port).await;
    let headers = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Cookie", cookie),
    ];
    conn.send(&request("GET", "/ws", host, &headers, "")).await;
    match conn.response(ANSWER_WITHIN).await {
        Ok(Some(response)) if response.status == 101 => Ok(conn.into_websocket().await),
        Ok(Some(response)) => Err(response.status),
        _ => Err(0),
    }
}

/// Whether `ws` stops echoing within `within`.
async fn websocket_closes<S: AsyncRead + AsyncWrite + Unpin>(mut ws: WebSocketStream<S>, within: Duration) -> bool {
    tokio::time::timeout(within, async {
        loop {
            if ws.send(Message::text("tick")).await.is_err() {
                return;
            }
            match tokio::time::timeout(Duration::from_millis(250), ws.next()).await {
                Ok(Some(Ok(Message::Text(_)))) => tokio::time::sleep(Duration::from_millis(250)).await,
                Err(_) => {}
                _ => return,
            }
        }
    })
    .await
    .is_ok()
}

/// A websocket that must be closed (or refused) once its admission lapses.
async fn websocket_case(world: &World, host: &str, cookie: &str, refusal_ok: bool) -> Result<(), String> {
    match open_websocket(world, host, cookie).await {
        Ok(ws) => match websocket_closes(ws, CLOSED_WITHIN).await {
            true => Ok(()),
            false => Err(format!("the websocket still echoes {CLOSED_WITHIN:?} later")),
        },
        Err(401) if refusal_ok => Ok(()),
        Err(status) => Err(format!("the websocket was not opened ({status})")),
    }
}

/// A CONNECT flow that must be closed (or refused) once its admission lapses.
async fn connect_case(world: &World, target: &str, token: &str, refusal_ok: bool) -> Result<(), String> {
    let mut conn = Conn::open(world.edge.port).await;
    let head = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nProxy-Authorization: Bearer {token}\r\n\r\n");
    conn.send(head.as_bytes()).await;
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    while !seen.ends_with(b"\r\n\r\n") {
        match tokio::time::timeout(ANSWER_WITHIN, conn.stream.read(&mut byte)).await {
            Ok(Ok(1)) => seen.push(byte[0]),
            _ => return Err("no answer to the CONNECT".into()),
        }
    }
    let status: u16 = String::from_utf8_lossy(&seen).split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    if status == 407 && refusal_ok {
        return Ok(());
    }
    if status != 200 {
        return Err(format!("the CONNECT was answered {status}"));
    }
    let closed = tokio::time::timeout(CLOSED_WITHIN, async {
        let mut buffer = [0u8; 64];
        loop {
            if conn.stream.write_all(b"tick").await.is_err() {
                return;
            }
            match tokio::time::timeout(Duration::from_millis(250), conn.stream.read(&mut buffer)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return,
                _ => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    })
    .await;
    closed.map_err(|_| format!("the flow is still open {CLOSED_WITHIN:?} later"))
}

/// An idle keep-alive connection that must be closed once its token expired.
async fn keep_alive_case(world: &World, cookie: &str) -> Result<(), String> {
    let mut conn = Conn::open(world.edge.port).await;
    conn.send(&get("/hello", "app.corp.example", &[("Cookie", cookie)])).await;
    match conn.response(ANSWER_WITHIN).await {
        Ok(Some(r)) if r.status == 401 => return Ok(()),
        Ok(Some(r)) if r.status == 200 => {}
        other => return Err(format!("the request was answered {other:?}")),
    }
    let mut buffer = [0u8; 64];
    match tokio::time::timeout(CLOSED_WITHIN, conn.stream.read(&mut buffer)).await {
        Ok(Ok(0)) | Ok(Err(_)) => Ok(()),
        Ok(Ok(_)) => Err("unexpected bytes on the idle connection".into()),
        Err(_) => Err(format!("the idle keep-alive connection is still open {CLOSED_WITHIN:?} later")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_of_live_connections() {
    let world = World::start("expiry").await;
    let mut report = Report::new("expiry", &world);
    let t = now();
    let expired_app =
        format!("portcullis_session.app={}", session_token(&world, "ada", "app", &json!({"exp": t - 25})));
    let expired_echo = session_token(&world, "ada", "echo", &json!({"exp": t - 25}));
    let (plane, ada) = (&world.plane, ["staff"]);
    let fresh = mint_at(plane, "ada@corp.example", &ada, "fresh", "127.0.0.1", t - 15).await;
    let fresh_tcp = mint_at(plane, "ada@corp.example", &ada, "fresh-tcp", "127.0.0.1", t - 15).await;
    let fresh_cookie = format!("portcullis_session.fresh={fresh}");
    let control = open_websocket(&world, "app.corp.example", &world.cookie("ada", "app")).await;

    let (ws_exp, connect_exp, idle_exp, ws_recent, connect_recent) = tokio::join!(
        websocket_case(&world, "app.corp.example", &expired_app, true),
        connect_case(&world, "echo.internal:7", &expired_echo, true),
        keep_alive_case(&world, &expired_app),
        websocket_case(&world, "fresh.corp.example", &fresh_cookie, false),
        connect_case(&world, "fresh.internal:22", &fresh_tcp, false),
    );
    report.record("websocket admitted with an expired token (within skew) is closed", ws_exp);
    report.record("CONNECT flow admitted with an expired token (within skew) is closed", connect_exp);
    report.record("idle keep-alive connection of an expired token is closed", idle_exp);
    report.record("websocket closed when logged_in_within lapses", ws_recent);
    report.record("CONNECT flow closed when logged_in_within lapses", connect_recent);
    let after =
        crate::wire::exchange(world.edge.port, &get("/hello", "fresh.corp.example", &[("Cookie", &fresh_cookie)]))
            .await
            .map(|r| {
                let challenge =
                    r.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case("www-authenticate")).map(|(_, v)| v.clone());
                (r.status, challenge.unwrap_or_default())
            });
    // A fresh login fixes it: 401 with RFC 9470's step-up challenge, not a bare 403.
    report.record(
        "after logged_in_within lapsed a request asks for a fresh login",
        match &after {
            Ok((401, challenge))
                if challenge.contains("insufficient_user_authentication") && challenge.contains("max_age=20") =>
            {
                Ok(())
            }
            other => Err(format!("answered {other:?}")),
        },
    );
    let browser = crate::wire::exchange(
        world.edge.port,
        &get("/hello", "fresh.corp.example", &[("Cookie", &fresh_cookie), ("Accept", "text/html")]),
    )
    .await
    .map(|r| (r.status, r.headers.into_iter().find(|(n, _)| n.eq_ignore_ascii_case("location")).map(|(_, v)| v)));
    report.record(
        "a browser with a stale login is sent to a login that asks the IdP for max_age",
        match &browser {
            Ok((302, Some(location)))
                if location.starts_with("/.portcullis/login?rd=") && location.ends_with("&max_age=20") =>
            {
                Ok(())
            }
            other => Err(format!("answered {other:?}")),
        },
    );
    let control = match control {
        Ok(ws) => match websocket_closes(ws, Duration::from_secs(1)).await {
            false => Ok(()),
            true => Err("a websocket whose admission still holds was closed".to_owned()),
        },
        Err(status) => Err(format!("the control websocket was not opened ({status})")),
    };
    report.record("a websocket whose admission holds stays open (control)", control);
    report.finish();
}
