//! Anonymous requests: deny rules whose conditions need no identity (paths,
//! methods) apply to anonymous requests too, in rule order with the public
//! rules, so a `deny` before a `public: true` allow holds for everyone; and
//! an anonymous websocket is closed when the policy stops allowing it.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::wire::{get, request, Conn, ANSWER_WITHIN};
use crate::world::{put_policy, World};
use crate::{run_cases, Case, Expect, Report, DENY, LOGIN, OK};

const APP: &str = "app.corp.example";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_requests() {
    let world = World::start("anonymous").await;
    let mut report = Report::new("anonymous", &world);
    let html = [("Accept", "text/html")];
    let mut cases = vec![
        Case::new("public /healthz (control)", get("/healthz", APP, &[]), OK, Expect::Target("/healthz".into())),
        Case::new("public /public/x (control)", get("/public/x", APP, &[]), OK, Expect::Target("/public/x".into())),
        Case::new(
            "case differs from the deny: still public",
            get("/public/Secret/x", APP, &[]),
            OK,
            Expect::Target("/public/Secret/x".into()),
        ),
        Case::new("protected path needs a login", get("/hello", APP, &[]), LOGIN, Expect::Nothing),
        Case::new("deny before public: GET", get("/public/secret/x", APP, &[]), DENY, Expect::Nothing),
        Case::new(
            "deny before public: browser gets 403, not a login",
            get("/public/secret/x", APP, &html),
            DENY,
            Expect::Nothing,
        ),
        Case::new(
            "deny before public: POST",
            request("POST", "/public/secret/x", APP, &[], "a=1"),
            DENY,
            Expect::Nothing,
        ),
        Case::new(
            "deny before public: OPTIONS",
            request("OPTIONS", "/public/secret/x", APP, &[], ""),
            DENY,
            Expect::Nothing,
        ),
        Case::new("deny before public: escaped", get("/public/%73ecret/x", APP, &[]), DENY, Expect::Nothing),
        Case::new("deny before public: dot segment", get("/public/x/../secret/x", APP, &[]), DENY, Expect::Nothing),
        Case::new(
            "deny before public: websocket",
            request(
                "GET",
                "/public/secret/ws",
                APP,
                &[
                    ("Upgrade", "websocket"),
                    ("Connection", "Upgrade"),
                    ("Sec-WebSocket-Version", "13"),
                    ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                ],
                "",
            ),
            DENY,
            Expect::Nothing,
        ),
        Case::new(
            "method deny applies to anonymous DELETE on a public path",
            request("DELETE", "/public/x", APP, &[], ""),
            DENY,
            Expect::Nothing,
        ),
        Case::new(
            "method deny applies to anonymous DELETE /healthz",
            request("DELETE", "/healthz", APP, &[], ""),
            DENY,
            Expect::Nothing,
        ),
        Case::new(
            "identity-free deny without a public rule: /export",
            get("/export/data", APP, &[]),
            DENY,
            Expect::Nothing,
        ),
        Case::new("anonymous /admin/users", get("/admin/users", APP, &[]), &[401, 403], Expect::Nothing),
        Case::new(
            "empty session cookie is no credential",
            get("/public/x", APP, &[("Cookie", "portcullis_session.app=")]),
            OK,
            Expect::Target("/public/x".into()),
        ),
        Case::new(
            "garbage session cookie on the denied path",
            get("/public/secret/x", APP, &[("Cookie", "portcullis_session.app=garbage")]),
            &[401, 403],
            Expect::Nothing,
        ),
    ];
    let ada = world.cookie("ada", "app");
    cases.push(Case::new(
        "logged in: deny before public holds too (control)",
        get("/public/secret/x", APP, &[("Cookie", &ada)]),
        DENY,
        Expect::Nothing,
    ));
    run_cases(&world, &mut report, cases).await;

    // A browser sent to login stays on this origin.
    let outcome = match crate::wire::exchange(world.edge.port, &get("/hello?a=1", APP, &html)).await {
        Ok(r) if r.status == 302 && r.header("location").is_some_and(|l| l.starts_with("/.portcullis/login?rd=")) => {
            Ok(())
        }
        Ok(r) => Err(format!("{} location {:?}", r.status, r.header("location"))),
        Err(e) => Err(e),
    };
    report.record("browser without a session is sent to login", outcome);

    // An anonymous websocket lives only as long as the policy allows it.
    let outcome = anonymous_websocket_is_closed(&world).await;
    report.record("anonymous websocket closed when the policy stops allowing it", outcome);
    report.finish();
}

async fn anonymous_websocket_is_closed(world: &World) -> Result<(), String> {
    let mut conn = Conn::open(world.edge.port).await;
    conn.send(&request(
        "GET",
        "/public/ws",
        APP,
        &[
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ],
        "",
    ))
    .await;
    let response = conn.response(ANSWER_WITHIN).await?.ok_or("no answer")?;
    if response.status != 101 {
        return Err(format!("the anonymous websocket was not opened: {}", response.summary()));
    }
    let Conn { stream, buffer } = conn;
    let (read, write) = stream.into_split();
    let io = tokio::io::join(tokio::io::AsyncReadExt::chain(std::io::Cursor::new(buffer), read), write);
    let role = tokio_tungstenite::tungstenite::protocol::Role::Client;
    let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(io, role, None).await;
    ws.send(Message::text("before")).await.map_err(|e| e.to_string())?;
    match tokio::time::timeout(Duration::from_secs(3), ws.next()).await {
        Ok(Some(Ok(Message::Text(_)))) => {}
        other => return Err(format!("no echo before the change: {other:?}")),
    }
    let narrower = world.policy.replace("        public: true\n", "");
    let (status, body) = put_policy(&world.plane, &narrower).await;
    if status != 200 {
        return Err(format!("the narrower policy was refused: {status} {body}"));
    }
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let _ = ws.send(Message::text("after")).await;
            match tokio::time::timeout(Duration::from_millis(200), ws.next()).await {
                Ok(Some(Ok(Message::Text(_)))) | Err(_) => continue,
                _ => return,
            }
        }
    })
    .await;
    let _ = put_policy(&world.plane, &world.policy).await;
    closed.map_err(|_| "the anonymous websocket still echoes 5 s after the policy stopped allowing it".to_owned())
}
