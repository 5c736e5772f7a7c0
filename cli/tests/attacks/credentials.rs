//! Credentials stay at the edge: the edge's cookies are cut out of `Cookie`
//! (the app's kept), session and service tokens never go upstream, an IdP
//! access token only on a `forward_bearer` route, upstream `Set-Cookie` for
//! the edge's cookie names is dropped, and a session token works only on
//! the route it was issued for (HTTP and CONNECT alike), and not from a new
//! address on an `on_ip_change: deny` route.

use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::checks;
use crate::recording_upstream::Recorded;
use crate::wire::{get, request, Conn};
use crate::world::World;
use crate::{run_cases, Case, Expect, Report, DENY, LOGIN, OK};

const APP: &str = "app.corp.example";

/// `CONNECT target` with `Proxy-Authorization: Bearer token`; the status, and
/// whether bytes echo through when it is 200.
async fn connect(world: &World, target: &str, token: &str) -> (u16, bool) {
    let mut conn = Conn::open(world.edge.port).await;
    let head = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nProxy-Authorization: Bearer {token}\r\n\r\n");
    conn.send(head.as_bytes()).await;
    let mut seen = std::mem::take(&mut conn.buffer);
    let mut byte = [0u8; 1];
    while !seen.ends_with(b"\r\n\r\n") {
        match tokio::time::timeout(Duration::from_secs(5), conn.stream.read(&mut byte)).await {
            Ok(Ok(1)) => seen.push(byte[0]),
            _ => return (0, false),
        }
    }
    let head = String::from_utf8_lossy(&seen);
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    if status != 200 {
        return (status, false);
    }
    let _ = conn.stream.write_all(b"echo me").await;
    let mut echoed = [0u8; 7];
    let ok = tokio::time::timeout(Duration::from_secs(3), conn.stream.read_exact(&mut echoed)).await;
    (200, matches!(ok, Ok(Ok(_))) && &echoed == b"echo me")
}

fn one_with(check: impl Fn(&Recorded) -> Result<(), String> + Send + Sync + 'static, target: &str) -> Expect {
    Expect::one(target, check)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_stay_at_the_edge() {
    let world = World::start("credentials").await;
    let mut report = Report::new("credentials", &world);
    let ada_token = world.token("ada", "app").to_owned();
    let ada = world.cookie("ada", "app");
    let root_token = world.token("root", "app").to_owned();
    let service = world.service_token.clone();
    let idp_token = world.idp.access_token(&json!({}));
    let mut cases = Vec::new();

    let mixed = format!("theme=dark; {ada}; csrftoken=abc");
    let t = ada_token.clone();
    cases.push(Case::new(
        "session cookie among app cookies",
        get("/hello", APP, &[("Cookie", &mixed)]),
        OK,
        one_with(
            move |r| {
                let cookies = r.cookies();
                checks::all([
                    checks::no_credentials(r, &[&t]),
                    if cookies == ["theme=dark", "csrftoken=abc"] {
                        Ok(())
                    } else {
                        Err(format!("app cookies arrived as {cookies:?}"))
                    },
                ])
            },
            "/hello",
        ),
    ));
    let variants = format!(
        "portcullis_session=x; {ada}; __Host-portcullis_session.app=y; __Secure-portcullis_session.app=z; \
         portcullis_session_login_abc=w; portcullis_session.other=v; portcullis_sessionx=keep1; portcullis=keep2"
    );
    let t = ada_token.clone();
    cases.push(Case::new(
        "every edge cookie name is cut, look-alike app cookies kept",
        get("/hello", APP, &[("Cookie", &variants)]),
        OK,
        one_with(
            move |r| {
                let cookies = r.cookies();
                checks::all([
                    checks::no_credentials(r, &[&t]),
                    if cookies == ["portcullis_sessionx=keep1", "portcullis=keep2"] {
                        Ok(())
                    } else {
                        Err(format!("cookies arrived as {cookies:?}"))
                    },
                ])
            },
            "/hello",
        ),
    ));
    let t = ada_token.clone();
    cases.push(Case::new(
        "two Cookie headers",
        get("/hello", APP, &[("Cookie", "a=1"), ("Cookie", &ada)]),
        OK,
        one_with(
            move |r| {
                checks::all([
                    checks::no_credentials(r, &[&t]),
                    if r.cookies() == ["a=1"] { Ok(()) } else { Err(format!("cookies arrived as {:?}", r.cookies())) },
                ])
            },
            "/hello",
        ),
    ));
    let t = ada_token.clone();
    cases.push(Case::new(
        "only the edge cookie",
        get("/hello", APP, &[("Cookie", &ada)]),
        OK,
        one_with(move |r| checks::no_credentials(r, &[&t]), "/hello"),
    ));
    for (name, scheme) in [
        ("Bearer session token not forwarded", "Bearer"),
        ("bearer (lower case) session token not forwarded", "bearer"),
    ] {
        let t = ada_token.clone();
        let auth = format!("{scheme} {ada_token}");
        cases.push(Case::new(
            name,
            get("/hello", APP, &[("Authorization", &auth)]),
            OK,
            one_with(
                move |r| {
                    checks::all([
                        checks::absent(r, &["authorization"]),
                        checks::no_credentials(r, &[&t]),
                        checks::identity(r, "sub-ada@corp.example", &["staff"]),
                    ])
                },
                "/hello",
            ),
        ));
    }
    let s = service.clone();
    let auth = format!("Bearer {service}");
    cases.push(Case::new(
        "service token not forwarded",
        get("/hello", APP, &[("Authorization", &auth)]),
        OK,
        one_with(
            move |r| checks::all([checks::absent(r, &["authorization"]), checks::no_credentials(r, &[&s])]),
            "/hello",
        ),
    ));
    let s = service.clone();
    cases.push(Case::new(
        "service token never forwarded on a forward_bearer route",
        get("/hello", "bearer.corp.example", &[("Authorization", &auth)]),
        &[200, 403],
        Expect::Check(Box::new(move |seen: &[Recorded]| {
            seen.iter().try_for_each(|r| checks::no_credentials(r, &[&s]))
        })),
    ));
    let i = idp_token.clone();
    let idp_auth = format!("Bearer {idp_token}");
    cases.push(Case::new(
        "IdP access token not forwarded by default",
        get("/hello", APP, &[("Authorization", &idp_auth)]),
        OK,
        one_with(
            move |r| {
                checks::all([
                    checks::absent(r, &["authorization"]),
                    checks::no_credentials(r, &[&i]),
                    checks::identity(r, "sub-ivy", &["staff"]),
                ])
            },
            "/hello",
        ),
    ));
    let expected = idp_auth.clone();
    cases.push(Case::new(
        "IdP access token forwarded on a forward_bearer route",
        get("/hello", "bearer.corp.example", &[("Authorization", &idp_auth)]),
        OK,
        one_with(
            move |r| {
                if r.all("authorization") == [expected.as_str()] {
                    Ok(())
                } else {
                    Err(format!("Authorization arrived as {:?}", r.all("authorization")))
                }
            },
            "/hello",
        ),
    ));
    let bearer_session = world.token("ada", "bearer").to_owned();
    let t = bearer_session.clone();
    let auth_bs = format!("Bearer {bearer_session}");
    cases.push(Case::new(
        "session token never forwarded on a forward_bearer route",
        get("/hello", "bearer.corp.example", &[("Authorization", &auth_bs)]),
        OK,
        one_with(
            move |r| checks::all([checks::absent(r, &["authorization"]), checks::no_credentials(r, &[&t])]),
            "/hello",
        ),
    ));
    let t = root_token.clone();
    let proxy_auth = format!("Bearer {root_token}");
    cases.push(Case::new(
        "Proxy-Authorization with another user's session is dropped",
        get("/hello", APP, &[("Cookie", &ada), ("Proxy-Authorization", &proxy_auth)]),
        OK,
        one_with(
            move |r| {
                checks::all([
                    checks::absent(r, &["proxy-authorization"]),
                    checks::no_credentials(r, &[&t]),
                    checks::identity(r, "sub-ada@corp.example", &["staff"]),
                ])
            },
            "/hello",
        ),
    ));

    // Route binding.
    let app_token_as_ci = format!("portcullis_session.ci={ada_token}");
    cases.push(Case::new(
        "app session under the ci cookie name on ci",
        get("/hello", "ci.corp.example", &[("Cookie", &app_token_as_ci)]),
        LOGIN,
        Expect::Nothing,
    ));
    cases.push(Case::new(
        "app session cookie on the ci host",
        get("/hello", "ci.corp.example", &[("Cookie", &ada)]),
        LOGIN,
        Expect::Nothing,
    ));
    let bearer_app = format!("Bearer {ada_token}");
    cases.push(Case::new(
        "app session as Bearer on ci",
        get("/hello", "ci.corp.example", &[("Authorization", &bearer_app)]),
        LOGIN,
        Expect::Nothing,
    ));
    cases.push(Case::new(
        "app session as Bearer on params",
        get("/hello", "params.corp.example", &[("Authorization", &bearer_app)]),
        LOGIN,
        Expect::Nothing,
    ));
    cases.push(Case::new(
        "app session on the api path",
        get("/api/x", APP, &[("Cookie", &ada)]),
        LOGIN,
        Expect::Nothing,
    ));
    let api_as_app = format!("portcullis_session.app={}", world.token("ada", "api"));
    cases.push(Case::new(
        "api session under the app cookie name",
        get("/hello", APP, &[("Cookie", &api_as_app)]),
        LOGIN,
        Expect::Nothing,
    ));
    let echo_as_app = format!("portcullis_session.app={}", world.token("ada", "echo"));
    cases.push(Case::new(
        "TCP-route session on an HTTP route",
        get("/hello", APP, &[("Cookie", &echo_as_app)]),
        LOGIN,
        Expect::Nothing,
    ));
    cases.push(Case::new(
        "browser with another route's session goes to login",
        get("/hello", "ci.corp.example", &[("Cookie", &app_token_as_ci), ("Accept", "text/html")]),
        &[302],
        Expect::Nothing,
    ));
    let moved = format!("portcullis_session.pinned={}", world.token("moved", "pinned"));
    cases.push(Case::new(
        "on_ip_change deny: session from another address",
        get("/hello", "pinned.corp.example", &[("Cookie", &moved)]),
        LOGIN,
        Expect::Nothing,
    ));
    let pinned = world.cookie("ada", "pinned");
    cases.push(Case::new(
        "on_ip_change deny: same address allowed (control)",
        get("/hello", "pinned.corp.example", &[("Cookie", &pinned)]),
        OK,
        Expect::Target("/hello".into()),
    ));
    cases.push(Case::new(
        "root's app session under the api cookie name",
        get("/admin/users", APP, &[("Cookie", &format!("portcullis_session.api={root_token}"))]),
        &[401, 403],
        Expect::Nothing,
    ));
    cases.push(Case::new(
        "DELETE denied (control)",
        request("DELETE", "/hello", APP, &[("Cookie", &ada)], ""),
        DENY,
        Expect::Nothing,
    ));
    run_cases(&world, &mut report, cases).await;

    // Upstream Set-Cookie for the edge's names never reaches the browser.
    let outcome = match crate::wire::exchange(world.edge.port, &get("/set-cookie", APP, &[("Cookie", &ada)])).await {
        Ok(response) if response.status == 200 => {
            let set = response.all("set-cookie");
            let edge: Vec<&&str> =
                set.iter().filter(|c| checks::is_edge_cookie(c.split('=').next().unwrap_or(""))).collect();
            if !edge.is_empty() {
                Err(format!("the upstream set the edge's cookie: {edge:?}"))
            } else if !set.iter().any(|c| c.starts_with("app=1")) {
                Err(format!("the app's own cookie was lost: {set:?}"))
            } else {
                Ok(())
            }
        }
        Ok(response) => Err(format!("status {}", response.summary())),
        Err(e) => Err(e),
    };
    report.record("upstream Set-Cookie for edge cookie names dropped", outcome);

    // CONNECT: only a session of the TCP route itself.
    let connects = [
        ("CONNECT with the HTTP route's session", "echo.internal:7", ada_token.clone(), 407, false),
        (
            "CONNECT with another TCP route's session",
            "echo.internal:7",
            world.token("ada", "pinned-tcp").to_owned(),
            407,
            false,
        ),
        ("CONNECT with a service token of no TCP rule", "echo.internal:7", service.clone(), 403, false),
        (
            "CONNECT on_ip_change deny from another address",
            "pinned.internal:22",
            world.token("moved", "pinned-tcp").to_owned(),
            407,
            false,
        ),
        (
            "CONNECT with the route's own session (control)",
            "echo.internal:7",
            world.token("ada", "echo").to_owned(),
            200,
            true,
        ),
    ];
    for (name, target, token, status, flows) in connects {
        let before = world.tcp.count();
        let (got, echoed) = connect(&world, target, &token).await;
        tokio::time::sleep(crate::SETTLE).await;
        let opened = world.tcp.count() - before;
        let outcome = if got != status {
            Err(format!("status {got} (expected {status}); {opened} upstream connections"))
        } else if flows && (!echoed || opened != 1) {
            Err(format!("the flow did not echo (opened {opened})"))
        } else if !flows && opened != 0 {
            Err(format!("the TCP upstream got {opened} connections"))
        } else {
            Ok(())
        };
        report.record(name, outcome);
    }
    report.finish();
}
