//! Header look-alikes and overrides: whatever a client spells like the
//! edge's identity headers (underscores, case, repetition, `Connection`
//! tricks) never reaches the upstream, the edge's own always does; address
//! and rewrite headers are stripped unless the route passes them; hop-by-hop
//! headers go; groups arrive as an unambiguous JSON array.

use crate::checks;
use crate::recording_upstream::Recorded;
use crate::wire::{get, request};
use crate::world::World;
use crate::{run_cases, Case, Expect, Report, DENY, OK};

const APP: &str = "app.corp.example";
const ADA: &str = "sub-ada@corp.example";

type Check = crate::RequestCheck;

fn ada_ok() -> Check {
    Box::new(|r: &Recorded| checks::identity(r, ADA, &["staff"]))
}

fn and(extra: impl Fn(&Recorded) -> Result<(), String> + Send + Sync + 'static) -> Check {
    Box::new(move |r: &Recorded| checks::all([checks::identity(r, ADA, &["staff"]), extra(r)]))
}

fn header_is(name: &'static str, expected: &'static str) -> impl Fn(&Recorded) -> Result<(), String> + Send + Sync {
    move |r| match r.all(name).as_slice() {
        [one] if *one == expected => Ok(()),
        other => Err(format!("{name} arrived as {other:?}, expected [{expected:?}]")),
    }
}

fn no_portcullis_headers(r: &Recorded) -> Result<(), String> {
    // An anonymous request carries no identity; at most the edge's own signed assertion.
    let forged = |(n, v): &&(String, String)| {
        let name = checks::folded(n);
        name.starts_with("x-portcullis-")
            && (name != "x-portcullis-assertion" || n.contains('_') || v.split('.').count() != 3)
    };
    match r.headers.iter().find(forged) {
        Some((n, v)) => Err(format!("an anonymous request arrived with {n}: {v}")),
        None => Ok(()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_look_alikes() {
    let world = World::start("headers").await;
    let mut report = Report::new("headers", &world);
    let ada = world.cookie("ada", "app");
    let mut cases = Vec::new();
    let mut as_ada = |name: &str, headers: &[(&str, &str)], check: Check| {
        let mut all = vec![("Cookie", ada.as_str())];
        all.extend_from_slice(headers);
        cases.push(Case::new(name, get("/hello", APP, &all), OK, Expect::one("/hello", check)));
    };

    as_ada("X_Portcullis_User (underscore)", &[("X_Portcullis_User", "root")], ada_ok());
    as_ada("x-portcullis-user twice", &[("x-portcullis-user", "root"), ("x-portcullis-user", "admin")], ada_ok());
    as_ada("X-PORTCULLIS-GROUPS upper case", &[("X-PORTCULLIS-GROUPS", "[\"admins\"]")], ada_ok());
    as_ada("X_PORTCULLIS_GROUPS underscore", &[("X_PORTCULLIS_GROUPS", "admins")], ada_ok());
    as_ada("x_portcullis-user mixed separators", &[("x_portcullis-user", "root")], ada_ok());
    as_ada("X-Portcullis-Anything", &[("X-Portcullis-Anything", "1"), ("X_Portcullis_Role", "admin")], ada_ok());
    as_ada(
        "x-portcullis-email forged",
        &[("x-portcullis-email", "ceo@corp.example"), ("X_Portcullis_Email", "ceo@corp.example")],
        and(header_is("x-portcullis-email", "ada@corp.example")),
    );
    as_ada(
        "x-portcullis-assertion forged",
        &[("x-portcullis-assertion", "forged"), ("X_Portcullis_Assertion", "forged")],
        and(|r| match r.all("x-portcullis-assertion").as_slice() {
            [one] if one.split('.').count() == 3 && *one != "forged" => Ok(()),
            other => Err(format!("assertion arrived as {other:?}")),
        }),
    );
    as_ada(
        "x-portcullis-session forged",
        &[("x-portcullis-session", "s-forged")],
        and(|r| match r.all("x-portcullis-session").as_slice() {
            [one] if *one != "s-forged" => Ok(()),
            other => Err(format!("session header arrived as {other:?}")),
        }),
    );
    as_ada(
        "Connection names x-portcullis-user",
        &[("Connection", "x-portcullis-user"), ("x-portcullis-user", "root")],
        ada_ok(),
    );
    as_ada(
        "Connection names the assertion and groups",
        &[("Connection", "close, x-portcullis-assertion, x-portcullis-groups")],
        and(|r| {
            if r.header("x-portcullis-assertion").is_some() {
                Ok(())
            } else {
                Err("the edge's assertion was removed".into())
            }
        }),
    );
    as_ada(
        "Connection names forwarded",
        &[("Connection", "forwarded"), ("Forwarded", "for=10.0.0.1")],
        and(|r| match r.all("forwarded").as_slice() {
            [one] if one.contains("127.0.0.1") && !one.contains("10.0.0.1") => Ok(()),
            other => Err(format!("Forwarded arrived as {other:?}, expected the edge's own")),
        }),
    );
    as_ada(
        "Forwarded replaced by the edge's",
        &[("Forwarded", "for=10.0.0.1;host=admin.corp.example;proto=https")],
        and(|r| match r.all("forwarded").as_slice() {
            [one] if one.contains("for=127.0.0.1") || one.contains("for=\"127.0.0.1") => {
                if one.contains("10.0.0.1") || one.contains("admin.corp.example") {
                    Err(format!("client Forwarded kept: {one}"))
                } else {
                    Ok(())
                }
            }
            other => Err(format!("Forwarded arrived as {other:?}")),
        }),
    );
    for name in [
        "X-Real-IP",
        "True-Client-IP",
        "X-Original-URL",
        "X-Rewrite-URL",
        "X-HTTP-Method-Override",
        "X-HTTP-Method",
        "X-Method-Override",
    ] {
        let value = if name.contains("URL") {
            "/admin/users"
        } else if name.contains("Method") {
            "DELETE"
        } else {
            "10.0.0.1"
        };
        let lower = name.to_ascii_lowercase();
        as_ada(&format!("{name} stripped"), &[(name, value)], and(move |r| checks::absent(r, &[lower.as_str()])));
    }
    as_ada(
        "X-Forwarded-For replaced",
        &[("X-Forwarded-For", "10.0.0.1")],
        and(header_is("x-forwarded-for", "127.0.0.1")),
    );
    as_ada(
        "X-Forwarded-Host replaced",
        &[("X-Forwarded-Host", "admin.corp.example")],
        and(header_is("x-forwarded-host", APP)),
    );
    as_ada(
        "X-Forwarded-Proto replaced",
        &[("X-Forwarded-Proto", "https")],
        and(header_is("x-forwarded-proto", "http")),
    );
    as_ada(
        "hop-by-hop headers stripped",
        &[
            ("Keep-Alive", "timeout=5"),
            ("Proxy-Connection", "keep-alive"),
            ("TE", "gzip"),
            ("Trailer", "X-Foo"),
            ("Upgrade", "foo/1"),
            ("HTTP2-Settings", "AAMAAABkAAQCAAAAAAIAAAAA"),
            ("Proxy-Authorization", "Basic Zm9vOmJhcg=="),
            ("Proxy-Authenticate", "Basic"),
        ],
        and(|r| {
            checks::absent(
                r,
                &[
                    "keep-alive",
                    "proxy-connection",
                    "te",
                    "trailer",
                    "upgrade",
                    "http2-settings",
                    "proxy-authorization",
                    "proxy-authenticate",
                ],
            )
        }),
    );
    as_ada(
        "a header named by Connection is stripped",
        &[("Connection", "X-Custom-Hop"), ("X-Custom-Hop", "1")],
        and(|r| checks::absent(r, &["x-custom-hop"])),
    );

    let ada2 = world.cookie("ada", "app");
    // pingora refuses a `Connection` header naming a header it protects (400): safe too.
    cases.push(Case::new(
        "Connection names x-forwarded-for",
        get("/hello", APP, &[("Cookie", &ada2), ("Connection", "x-forwarded-for"), ("X-Forwarded-For", "10.0.0.1")]),
        &[200, 400],
        Expect::Check(Box::new(|seen: &[Recorded]| match seen {
            [] => Ok(()),
            [one] => {
                checks::all([checks::identity(one, ADA, &["staff"]), header_is("x-forwarded-for", "127.0.0.1")(one)])
            }
            _ => Err(format!("the upstream got {}", crate::listing(seen))),
        })),
    ));
    cases.push(Case::new(
        "POST with X-HTTP-Method-Override: DELETE on a route denying DELETE",
        request(
            "POST",
            "/hello",
            APP,
            &[("Cookie", &ada2), ("X-HTTP-Method-Override", "DELETE"), ("X-Method-Override", "DELETE")],
            "a=1",
        ),
        OK,
        Expect::one("/hello", |r: &Recorded| {
            checks::all([
                checks::absent(r, &["x-http-method-override", "x-method-override"]),
                if r.method == "POST" { Ok(()) } else { Err(format!("method {}", r.method)) },
            ])
        }),
    ));
    cases.push(Case::new(
        "DELETE itself is denied (control)",
        request("DELETE", "/hello", APP, &[("Cookie", &ada2)], ""),
        DENY,
        Expect::Nothing,
    ));

    // Groups arrive unambiguously.
    let eve = world.cookie("eve", "app");
    cases.push(Case::new(
        "group x,admins arrives as one JSON element",
        get("/hello", APP, &[("Cookie", &eve)]),
        OK,
        Expect::one("/hello", |r: &Recorded| checks::identity(r, "sub-eve@corp.example", &["x,admins", "staff"])),
    ));
    cases.push(Case::new(
        "group x,admins is not admins",
        get("/admin/users", APP, &[("Cookie", &eve)]),
        DENY,
        Expect::Nothing,
    ));
    let uma = world.cookie("uma", "app");
    cases.push(Case::new(
        "non-ASCII group arrives as ASCII JSON",
        get("/hello", APP, &[("Cookie", &uma)]),
        OK,
        Expect::one("/hello", |r: &Recorded| checks::identity(r, "sub-uma@corp.example", &["ünïcode", "staff"])),
    ));

    // Anonymous requests carry no identity at all.
    for (name, headers) in [
        ("anonymous with x-portcullis-user", vec![("x-portcullis-user", "root")]),
        (
            "anonymous with X_Portcullis_Groups",
            vec![("X_Portcullis_Groups", "admins"), ("X-Portcullis-Email", "root@corp.example")],
        ),
        (
            "anonymous with a forged assertion",
            vec![("x-portcullis-assertion", "forged"), ("X_Portcullis_Assertion", "a.b.c")],
        ),
    ] {
        cases.push(Case::new(
            name,
            get("/public/x", APP, &headers),
            OK,
            Expect::one("/public/x", no_portcullis_headers),
        ));
    }

    // A route that passes X-Real-IP on passes that one only.
    let pass = world.cookie("ada", "passthru");
    cases.push(Case::new(
        "pass_client_headers passes X-Real-IP only",
        get(
            "/hello",
            "passthru.corp.example",
            &[("Cookie", &pass), ("X-Real-IP", "10.0.0.1"), ("True-Client-IP", "10.0.0.2")],
        ),
        OK,
        Expect::one("/hello", |r: &Recorded| {
            checks::all([header_is("x-real-ip", "10.0.0.1")(r), checks::absent(r, &["true-client-ip"])])
        }),
    ));
    run_cases(&world, &mut report, cases).await;
    report.finish();
}
