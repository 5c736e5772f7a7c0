//! Path encodings: every spelling of a denied path is judged as the path
//! it means, what has no single meaning is refused with 400, and what is
//! allowed reaches the upstream as exactly the canonical path the policy
//! judged (origin form, unreserved escapes decoded, other escapes in
//! upper-case hex, dot segments resolved, `//` collapsed).

use crate::wire::{get, request};
use crate::world::World;
use crate::{run_cases, Case, Expect, Report, BAD, DENY, LOGIN, OK};

/// Longest request target the edge accepts.
const MAX_TARGET: usize = 8192;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_encodings() {
    let world = World::start("paths").await;
    let mut report = Report::new("paths", &world);
    let app = "app.corp.example";
    let ada = world.cookie("ada", "app");
    let both = format!("{ada}; {}", world.cookie("ada", "api"));
    let as_ada = |target: &str| get(target, app, &[("Cookie", &ada)]);
    let anon = |target: &str| get(target, app, &[]);
    let on = |host: &str, route: &str, target: &str| get(target, host, &[("Cookie", &world.cookie("ada", route))]);
    let mut cases = Vec::new();
    let mut add = |name: &str, request: Vec<u8>, status: &[u16], upstream: Expect| {
        cases.push(Case::new(name, request, status, upstream));
    };

    // Controls: the policy works as written.
    add("control: /hello allowed", as_ada("/hello"), OK, Expect::Target("/hello".into()));
    add("control: /admin/users denied", as_ada("/admin/users"), DENY, Expect::Nothing);
    let root = world.cookie("root", "app");
    add(
        "control: admin on /admin/users",
        get("/admin/users", app, &[("Cookie", &root)]),
        OK,
        Expect::Target("/admin/users".into()),
    );

    // The examples.
    for target in ["/%61dmin/users", "/adm%69n/users", "/%61%64%6d%69%6e/users", "/%61DMIN/../admin/users"] {
        add(&format!("escaped unreserved {target}"), as_ada(target), DENY, Expect::Nothing);
    }
    for target in ["/admi%6E/users", "/admi%6e/users", "/%41dmin/../admin/users"] {
        add(&format!("case-mixed escapes {target}"), as_ada(target), DENY, Expect::Nothing);
    }
    add(
        "double escape is not decoded twice",
        as_ada("/%2561dmin/users"),
        OK,
        Expect::Target("/%2561dmin/users".into()),
    );
    for target in ["/admin;x/users", "/admin;/users", "/admin/users;jsessionid=1", "/t/..;/admin/users"] {
        add(&format!("path parameters {target}"), as_ada(target), BAD, Expect::Nothing);
    }
    let absolute = |t: &str| request("GET", t, app, &[("Cookie", &ada)], "");
    add(
        "absolute form http://app.corp.example/%61dmin/users",
        absolute("http://app.corp.example/%61dmin/users"),
        DENY,
        Expect::Nothing,
    );
    add(
        "absolute form HTTP://APP.CORP.EXAMPLE:80/admin/users",
        absolute("HTTP://APP.CORP.EXAMPLE:80/admin/users"),
        &[400, 403],
        Expect::Nothing,
    );
    add("absolute form other authority", absolute("http://admin.corp.example/hello"), BAD, Expect::Nothing);
    add("absolute form userinfo", absolute("http://app.corp.example@evil.example/hello"), BAD, Expect::Nothing);
    add(
        "absolute form allowed goes upstream in origin form",
        absolute("http://app.corp.example/public/%78"),
        OK,
        Expect::Target("/public/x".into()),
    );
    add(
        "absolute form with query",
        absolute("http://app.corp.example/hello?a=1"),
        OK,
        Expect::Target("/hello?a=1".into()),
    );
    add("asterisk form", request("OPTIONS", "*", app, &[("Cookie", &ada)], ""), BAD, Expect::Nothing);
    add(
        "authority form on GET",
        request("GET", "app.corp.example:80", app, &[("Cookie", &ada)], ""),
        BAD,
        Expect::Nothing,
    );

    // Dot segments and empty segments resolve to what they mean.
    for target in [
        "//admin/users",
        "/./admin/users",
        "/x/../admin/users",
        "/x/%2e%2e/admin/users",
        "/x/%2E%2e/admin/users",
        "/x/.%2e/admin/users",
        "/x/%2e./admin/users",
        "/%2e/admin/users",
        "/admin//users",
        "/admin/./users",
        "/public/../admin/users",
        "/api/../admin/users",
        "/x/y/../../admin/users",
    ] {
        add(&format!("dot/empty segments {target}"), as_ada(target), DENY, Expect::Nothing);
    }
    add(
        "allowed dot segments reach the upstream resolved",
        as_ada("/x/./y/../hello"),
        OK,
        Expect::Target("/x/hello".into()),
    );
    add("allowed // collapsed upstream", as_ada("//hello//there"), OK, Expect::Target("/hello/there".into()));
    for target in
        ["/../admin/users", "/%2e%2e/admin/users", "/x/../../admin/users", "/t/.;x/admin/users", "/t/..;x/admin/users"]
    {
        add(&format!("above the root or dot with params {target}"), as_ada(target), BAD, Expect::Nothing);
    }

    // What has no single meaning.
    for target in [
        "/admin%2fusers",
        "/admin%2Fusers",
        "/x%2f..%2fadmin/users",
        "/admin%5cusers",
        "/x/..%5cadmin/users",
        "/x\\..\\admin\\users",
        "/admin/users%00",
        "/admin%00/users",
        "/admin/%0d%0ausers",
        "/admin/%7fusers",
        "/admin/%09users",
        "/%",
        "/admin/%G1",
        "/admin/%4",
        "/admin/%zz",
        "/%c0%ae%c0%ae/admin/users",
        "/%e0%80%ae/admin",
        "/%ff/admin",
        "/%c3/admin",
        "/%ed%a0%80/admin",
        "/%2e%2e%2fadmin/users",
    ] {
        add(&format!("refused {target}"), as_ada(target), BAD, Expect::Nothing);
    }
    let raw = |line: &[u8]| {
        let mut bytes = line.to_vec();
        bytes.extend_from_slice(format!(" HTTP/1.1\r\nHost: {app}\r\nCookie: {ada}\r\n\r\n").as_bytes());
        bytes
    };
    add("raw non-UTF-8 byte in the path", raw(&b"GET /admin/\xff"[..]), BAD, Expect::Nothing);
    add("raw UTF-8 in the path", raw("GET /admin/\u{e9}".as_bytes()), BAD, Expect::Nothing);
    add("raw non-UTF-8 byte in the query", raw(&b"GET /hello?q=\xe9"[..]), BAD, Expect::Nothing);
    // The fragment never leaves the edge (it is not part of the request target).
    add("# in the query", as_ada("/hello?a#b"), OK, Expect::Target("/hello?a".into()));
    add(
        "target longer than 8192 bytes",
        as_ada(&format!("/hello/{}", "a".repeat(MAX_TARGET))),
        &[400, 414],
        Expect::Nothing,
    );

    // The upstream receives the canonical path.
    add(
        "unreserved escapes decoded upstream",
        as_ada("/%68ello/%7e%2D%5f%2E"),
        OK,
        Expect::Target("/hello/~-_.".into()),
    );
    add(
        "reserved escapes kept in upper case",
        as_ada("/hello/a%2cb%40%3d"),
        OK,
        Expect::Target("/hello/a%2Cb%40%3D".into()),
    );
    // Servers that decode before stripping `;` parameters read %3B as one: no single meaning.
    add("encoded ; is refused", as_ada("/admin%3bx/users"), BAD, Expect::Nothing);
    add("encoded ; before a dot segment is refused", as_ada("/t/..%3B/admin/users"), BAD, Expect::Nothing);
    add("space stays escaped", as_ada("/hello%20there"), OK, Expect::Target("/hello%20there".into()));
    add(
        "escaped capital is another path on a case-sensitive route",
        as_ada("/%41dmin/users"),
        OK,
        Expect::Target("/Admin/users".into()),
    );
    add("query kept as sent", as_ada("/hello?x=%2e%2e&y=%2F"), OK, Expect::Target("/hello?x=%2e%2e&y=%2F".into()));
    add("export denied", as_ada("/export/data"), DENY, Expect::Nothing);
    add("export denied escaped", as_ada("/%65xport/data"), DENY, Expect::Nothing);
    add("export denied via dot segment", as_ada("/public/%2e%2e/export/data"), DENY, Expect::Nothing);

    // `path: /api` cannot be escaped onto the host's `/` route.
    add("/%61pi/x with the app cookie is the api route", as_ada("/%61pi/x"), LOGIN, Expect::Nothing);
    add(
        "/%61pi/x with both cookies is judged by api",
        get("/%61pi/x", app, &[("Cookie", &both)]),
        DENY,
        Expect::Nothing,
    );
    add("//api/x is the api route", get("//api/x", app, &[("Cookie", &both)]), DENY, Expect::Nothing);
    add("/x/../api/x is the api route", get("/x/../api/x", app, &[("Cookie", &both)]), DENY, Expect::Nothing);
    add("/apix is not under /api", as_ada("/apix"), OK, Expect::Target("/apix".into()));

    // A deny rule before a public allow: anonymous spellings.
    add("anonymous /public/x allowed", anon("/public/x"), OK, Expect::Target("/public/x".into()));
    add("anonymous /%70ublic/x decoded upstream", anon("/%70ublic/x"), OK, Expect::Target("/public/x".into()));
    for target in
        ["/public/secret/x", "/public/%73ecret/x", "/public/./secret/x", "/public//secret/x", "/public/x/../secret/x"]
    {
        add(&format!("anonymous deny before public {target}"), anon(target), DENY, Expect::Nothing);
    }
    add("anonymous /public/../admin/users", anon("/public/../admin/users"), &[401, 403], Expect::Nothing);
    add("anonymous /public/%2e%2e/hello needs a login", anon("/public/%2e%2e/hello"), LOGIN, Expect::Nothing);
    add("anonymous ; on a public path", anon("/public;x/secret/x"), BAD, Expect::Nothing);

    // `case_insensitive_paths: true`.
    let ci = "ci.corp.example";
    for target in ["/ADMIN/users", "/Admin/Users", "/%41DMIN/users", "/aDmIn/./users"] {
        add(&format!("case-insensitive route {target}"), on(ci, "ci", target), DENY, Expect::Nothing);
    }
    add("case-insensitive route ; still refused", on(ci, "ci", "/aDmIn;x/users"), BAD, Expect::Nothing);
    add(
        "case-insensitive route allows other paths",
        on(ci, "ci", "/Hello"),
        OK,
        Expect::Check(Box::new(|seen: &[crate::recording_upstream::Recorded]| match seen {
            [one] if one.target.eq_ignore_ascii_case("/hello") => Ok(()),
            _ => Err(format!("expected /hello in any case, got {}", crate::listing(seen))),
        })),
    );

    // `allow_path_parameters: true`: judged without them, forwarded with them.
    let params = "params.corp.example";
    for target in ["/admin;x/users", "/admin;/users", "/%61dmin;x/users", "/admin/users;a=b"] {
        add(&format!("parameters route {target}"), on(params, "params", target), DENY, Expect::Nothing);
    }
    for target in ["/t/..;/admin/users", "/t/.;/admin/users", "/x/..;a=b/admin"] {
        add(&format!("parameters route dot with params {target}"), on(params, "params", target), BAD, Expect::Nothing);
    }
    add(
        "parameters route forwards them",
        on(params, "params", "/docs;jsessionid=abc/page"),
        OK,
        Expect::Target("/docs;jsessionid=abc/page".into()),
    );

    run_cases(&world, &mut report, cases).await;
    report.finish();
}
