//! Login redirects and logout. A login started with a hostile `rd`
//! (absolute URLs, `//host`, backslashes, encoded slashes, CR/LF, tabs,
//! `javascript:`) is completed against the fake IdP and never ends in a
//! `Location` off this origin, nor injects a header; the edge's own "log in
//! first" redirect stays on the origin. `GET /.portcullis/logout` does not
//! end a session (a cross-site link must not log users out); only the POST
//! of the confirmation form does.

use crate::wire::{exchange, get, request, Response};
use crate::world::{mint_for, World};
use crate::Report;

const APP: &str = "app.corp.example";

/// Every `name=value` a response sets, joined as a `Cookie` header.
fn cookies_set(response: &Response) -> String {
    response.all("set-cookie").iter().filter_map(|c| c.split(';').next()).collect::<Vec<_>>().join("; ")
}

/// A `Location` a browser would resolve on this origin.
fn same_origin(location: &str) -> Result<(), String> {
    if location.bytes().any(|b| b < 0x20 || b == 0x7f || b == b'\\') {
        return Err(format!("Location with control bytes or a backslash: {location:?}"));
    }
    if location.starts_with('/') && !location.starts_with("//") {
        return Ok(());
    }
    match reqwest::Url::parse(location) {
        Ok(url) if url.host_str() == Some(APP) && matches!(url.scheme(), "http" | "https") => Ok(()),
        _ => Err(format!("Location off this origin: {location:?}")),
    }
}

fn no_injection(response: &Response) -> Result<(), String> {
    let head = response.head.to_ascii_lowercase();
    if head.contains("injected") || response.all("location").len() > 1 {
        return Err(format!("a header was injected: {}", response.head));
    }
    Ok(())
}

/// Starts a login with the raw query `rd=<rd>`, completes it at the fake
/// IdP, and returns the callback's answer (`None` if the edge refused to start).
async fn login(world: &World, rd: &str) -> Result<Option<Response>, String> {
    let html = [("Accept", "text/html")];
    let start = exchange(world.edge.port, &get(&format!("/.portcullis/login?rd={rd}"), APP, &html)).await?;
    no_injection(&start)?;
    if start.status == 400 {
        return Ok(None);
    }
    let location = start.header("location").unwrap_or("").to_owned();
    if start.status != 302 || !location.starts_with(&format!("{}/authorize?", world.idp.issuer)) {
        return Err(format!("the login did not go to the IdP: {} Location {location:?}", start.status));
    }
    let url = reqwest::Url::parse(&location).map_err(|e| e.to_string())?;
    let param =
        |name: &str| url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned()).unwrap_or_default();
    let callback = format!("/.portcullis/callback?code={}&state={}", param("nonce"), param("state"));
    let cookie = cookies_set(&start);
    let done = exchange(world.edge.port, &get(&callback, APP, &[("Accept", "text/html"), ("Cookie", &cookie)])).await?;
    no_injection(&done)?;
    if done.status != 302 {
        return Err(format!("the callback answered {}", done.summary()));
    }
    Ok(Some(done))
}

async fn status_with(world: &World, cookie: &str) -> u16 {
    exchange(world.edge.port, &get("/hello", APP, &[("Cookie", cookie)])).await.map_or(0, |r| r.status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_redirects_and_logout() {
    let world = World::start("login").await;
    let mut report = Report::new("login", &world);

    // Control: a same-origin rd is honoured and the route's cookie works.
    let outcome = match login(&world, "%2Fpublic%2Fx%3Fy%3D1").await {
        Ok(Some(done)) => {
            let location = done.header("location").unwrap_or("");
            let cookie = cookies_set(&done);
            if !location.ends_with("/public/x?y=1") {
                Err(format!("went to {location:?}"))
            } else if !cookie.contains("portcullis_session.app=") {
                Err(format!("no portcullis_session.app cookie: {:?}", done.all("set-cookie")))
            } else {
                match status_with(&world, &cookie).await {
                    200 => Ok(()),
                    other => Err(format!("the new session answered {other}")),
                }
            }
        }
        Ok(None) => Err("the login was refused".into()),
        Err(e) => Err(e),
    };
    report.record("login with a same-origin rd (control)", outcome);

    for rd in [
        "https://evil.example/",
        "https%3A%2F%2Fevil.example%2F",
        "//evil.example/",
        "%2F%2Fevil.example",
        "/%2F%2Fevil.example",
        "%252F%252Fevil.example",
        "/\\evil.example",
        "/%5Cevil.example",
        "%5C%5Cevil.example",
        "https:/%5Cevil.example",
        "/%09/evil.example",
        "%20//evil.example",
        "http:evil.example",
        "javascript:alert(1)",
        "http://app.corp.example@evil.example/",
        "/x%0d%0aLocation:%20https://evil.example",
        "/x%0d%0aSet-Cookie:%20injected=1",
        "%0d%0a%0d%0a<html>injected",
    ] {
        let outcome = match login(&world, rd).await {
            Ok(Some(done)) => same_origin(done.header("location").unwrap_or("")),
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        };
        report.record(&format!("login rd={rd}"), outcome);
    }

    // The edge's own "log in first" redirect.
    for target in ["//evil.example/", "/%2F%2Fevil.example", "/x/..//evil.example", "/hello?next=//evil.example"] {
        let outcome = match exchange(world.edge.port, &get(target, APP, &[("Accept", "text/html")])).await {
            Ok(r) if r.status == 400 => Ok(()),
            Ok(r) => match r.header("location") {
                Some(l) if l.starts_with("/.portcullis/login?") => no_injection(&r),
                other => Err(format!("{} with Location {other:?}", r.status)),
            },
            Err(e) => Err(e),
        };
        report.record(&format!("login-required redirect for {target}"), outcome);
    }

    // Logout: GET and forged POSTs leave the session alone.
    let token = mint_for(&world, "lou@corp.example", &["staff"], "app").await;
    let cookie = format!("portcullis_session.app={token}");
    let attempts: Vec<(&str, Vec<u8>)> = vec![
        ("GET /.portcullis/logout", get("/.portcullis/logout", APP, &[("Cookie", &cookie), ("Accept", "text/html")])),
        (
            "GET /.portcullis/logout cross-site",
            get(
                "/.portcullis/logout?confirm=1",
                APP,
                &[("Cookie", &cookie), ("Sec-Fetch-Site", "cross-site"), ("Referer", "https://evil.example/")],
            ),
        ),
        (
            "HEAD-less GET with an API Accept",
            get("/.portcullis/logout", APP, &[("Cookie", &cookie), ("Accept", "application/json")]),
        ),
        (
            "POST /.portcullis/logout without a CSRF token",
            request(
                "POST",
                "/.portcullis/logout",
                APP,
                &[("Cookie", &cookie), ("Content-Type", "application/x-www-form-urlencoded")],
                "",
            ),
        ),
        (
            "POST /.portcullis/logout cross-site",
            request(
                "POST",
                "/.portcullis/logout",
                APP,
                &[
                    ("Cookie", &cookie),
                    ("Origin", "https://evil.example"),
                    ("Content-Type", "application/x-www-form-urlencoded"),
                ],
                "csrf=x",
            ),
        ),
        (
            "POST /.portcullis/logout with a forged double-submit",
            request(
                "POST",
                "/.portcullis/logout",
                APP,
                &[
                    ("Cookie", &format!("{cookie}; portcullis_session_csrf=forged; portcullis_csrf=forged")),
                    ("Content-Type", "application/x-www-form-urlencoded"),
                ],
                "csrf=forged&csrf_token=forged&_csrf=forged",
            ),
        ),
    ];
    for (name, bytes) in attempts {
        let outcome = match exchange(world.edge.port, &bytes).await {
            Ok(_) => match status_with(&world, &cookie).await {
                200 => Ok(()),
                other => Err(format!("the session no longer works ({other})")),
            },
            Err(e) => Err(e),
        };
        report.record(&format!("logout: {name} does not end the session"), outcome);
    }
    report.record(
        "logout: the confirmation form's POST ends the session (control)",
        confirmed_logout(&world, &cookie).await,
    );
    report.finish();
}

/// The hidden inputs of every form on a page: `name=value&…`.
fn hidden_fields(page: &str) -> String {
    let attribute = |tag: &str, name: &str| {
        let start = tag.find(&format!("{name}=\""))? + name.len() + 2;
        Some(tag[start..].split('"').next()?.to_owned())
    };
    page.split("<input")
        .skip(1)
        .filter_map(|rest| rest.split('>').next())
        .filter_map(|tag| Some(format!("{}={}", attribute(tag, "name")?, attribute(tag, "value").unwrap_or_default())))
        .collect::<Vec<_>>()
        .join("&")
}

async fn confirmed_logout(world: &World, cookie: &str) -> Result<(), String> {
    let page =
        exchange(world.edge.port, &get("/.portcullis/logout", APP, &[("Cookie", cookie), ("Accept", "text/html")]))
            .await?;
    let form = hidden_fields(&page.text());
    let extra = cookies_set(&page);
    let both = if extra.is_empty() { cookie.to_owned() } else { format!("{cookie}; {extra}") };
    let headers = [
        ("Cookie", both.as_str()),
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("Origin", "http://app.corp.example"),
    ];
    let answer = exchange(world.edge.port, &request("POST", "/.portcullis/logout", APP, &headers, &form)).await?;
    for _ in 0..40 {
        if status_with(world, cookie).await == 401 {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    Err(format!("POST with the form ({form:?}) answered {} and the session still works", answer.status))
}
