//! HTTP/1.1 request smuggling: ambiguous framing (CL+TE, duplicate or
//! malformed Content-Length, obfuscated Transfer-Encoding, chunk-size
//! overflow), malformed heads, and pipelining a denied request behind an
//! allowed one. Whatever the edge answers, the upstream only ever receives
//! the allowed requests (`/hello`, `/healthz`), never with both framing
//! headers; after each case two more requests flush any bytes left on the
//! edge's pooled upstream connections.

use std::time::Duration;

use crate::recording_upstream::Recorded;
use crate::wire::{get, Conn};
use crate::world::World;
use crate::{listing, Report, SETTLE};

const APP: &str = "app.corp.example";

/// Cases: name, bytes, acceptable statuses of each answer in order.
type Table = Vec<(String, Vec<u8>, Vec<&'static [u16]>)>;

/// Reads every response the edge sends on the connection (until it closes
/// or stays silent).
async fn statuses(conn: &mut Conn, expected: usize) -> Vec<u16> {
    let mut seen = Vec::new();
    loop {
        let wait = if seen.len() < expected { Duration::from_secs(5) } else { Duration::from_millis(300) };
        match conn.response(wait).await {
            Ok(Some(response)) => seen.push(response.status),
            _ => return seen,
        }
    }
}

fn upstream_clean(seen: &[Recorded]) -> Result<(), String> {
    for one in seen {
        let target_ok = matches!(one.target.as_str(), "/hello" | "/healthz");
        let both = one.header("content-length").is_some() && one.header("transfer-encoding").is_some();
        if !target_ok || both || !matches!(one.method.as_str(), "GET" | "POST") {
            return Err(format!("the upstream received a smuggled or ambiguous request: {}", listing(seen)));
        }
    }
    Ok(())
}

/// Sends `bytes`, checks the statuses in order (a missing answer counts as 0,
/// extra answers must not be 2xx), flushes, and checks the upstream.
async fn case(world: &World, bytes: &[u8], expected: &[&[u16]]) -> Result<(), String> {
    let mark = world.upstream.log.mark();
    let mut conn = Conn::open(world.edge.port).await;
    conn.send(bytes).await;
    let got = statuses(&mut conn, expected.len()).await;
    drop(conn);
    let ada = world.cookie("ada", "app");
    for _ in 0..2 {
        let _ = crate::wire::exchange(world.edge.port, &get("/hello", APP, &[("Cookie", &ada)])).await;
    }
    tokio::time::sleep(SETTLE).await;
    upstream_clean(&world.upstream.log.since(mark))?;
    for (i, allowed) in expected.iter().enumerate() {
        let status = got.get(i).copied().unwrap_or(0);
        if !allowed.contains(&status) {
            return Err(format!("answers {got:?}: answer {} is {status}, expected one of {allowed:?}", i + 1));
        }
    }
    if let Some(extra) = got.iter().skip(expected.len()).find(|s| (200..300).contains(*s)) {
        return Err(format!("answers {got:?}: an extra {extra} answer"));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_smuggling() {
    let world = World::start("smuggling").await;
    let mut report = Report::new("smuggling", &world);
    let ada = world.cookie("ada", "app");
    let admin = format!("GET /admin/users HTTP/1.1\r\nHost: {APP}\r\nCookie: {ada}\r\n\r\n");
    let head = |framing: &str| format!("POST /hello HTTP/1.1\r\nHost: {APP}\r\nCookie: {ada}\r\n{framing}\r\n");
    const REFUSED: &[u16] = &[400, 0];
    const EITHER: &[u16] = &[200, 400, 0];
    const UNKNOWN_TE: &[u16] = &[400, 501, 0];
    const TOO_BIG: &[u16] = &[400, 413, 0];
    const BAD_BODY: &[u16] = &[400, 502, 0];
    const OVERFLOW: &[u16] = &[400, 413, 502, 0];
    const VERSION: &[u16] = &[400, 505, 0];
    const NO_HOST: &[u16] = &[400, 404, 0];
    const BARE_LF: &[u16] = &[400, 403, 0];
    const ALLOWED: &[u16] = &[200];
    // A pipelined request may be answered or the connection closed; never forwarded.
    const DENIED: &[u16] = &[403, 0];
    const ANON: &[u16] = &[401, 403, 0];
    const LATER: &[u16] = &[200, 0];
    const GET_BODY: &[u16] = &[200, 400];
    let mut cases: Table = Vec::new();
    let mut add = |name: &str, bytes: String, expected: Vec<&'static [u16]>| {
        cases.push((name.to_owned(), bytes.into_bytes(), expected))
    };

    // CL + TE in both orders; the edge must not forward both, nor the tail.
    add(
        "CL+TE",
        format!("{}0\r\n\r\n{admin}", head("Content-Length: 4\r\nTransfer-Encoding: chunked\r\n")),
        vec![EITHER],
    );
    add(
        "TE+CL",
        format!("{}0\r\n\r\n{admin}", head("Transfer-Encoding: chunked\r\nContent-Length: 4\r\n")),
        vec![EITHER],
    );
    let tail = format!("0\r\n\r\n{admin}");
    add(
        "CL covering a smuggled request after the chunked end",
        format!("{}{tail}", head(&format!("Transfer-Encoding: chunked\r\nContent-Length: {}\r\n", tail.len()))),
        vec![EITHER],
    );
    add(
        "TE.CL: chunk that hides a request from a CL reader",
        format!(
            "{}{:x}\r\n{admin}\r\n0\r\n\r\n",
            head("Transfer-Encoding: chunked\r\nContent-Length: 4\r\n"),
            admin.len()
        ),
        vec![EITHER],
    );

    // Content-Length that is not one number.
    add(
        "duplicate differing Content-Length",
        format!("{}abcd{admin}", head("Content-Length: 4\r\nContent-Length: 40\r\n")),
        vec![REFUSED],
    );
    add("Content-Length list", format!("{}abcd{admin}", head("Content-Length: 4, 40\r\n")), vec![REFUSED]);
    add("Content-Length with a plus sign", format!("{}abcd", head("Content-Length: +4\r\n")), vec![REFUSED]);
    add("negative Content-Length", format!("{}abcd", head("Content-Length: -1\r\n")), vec![REFUSED]);
    add("hex Content-Length", format!("{}abcd", head("Content-Length: 0x4\r\n")), vec![REFUSED]);
    add(
        "Content-Length overflowing u64",
        format!("{}abcd", head("Content-Length: 99999999999999999999999\r\n")),
        vec![TOO_BIG],
    );

    // Transfer-Encoding obfuscations.
    add(
        "TE chunked with obs-fold",
        format!("{}0\r\n\r\n{admin}", head("Content-Length: 4\r\nTransfer-Encoding:\r\n chunked\r\n")),
        vec![REFUSED],
    );
    add(
        "TE xchunked",
        format!("{}abcd{admin}", head("Content-Length: 4\r\nTransfer-Encoding: xchunked\r\n")),
        vec![UNKNOWN_TE],
    );
    add(
        "TE chunked then identity",
        format!("{}0\r\n\r\n{admin}", head("Transfer-Encoding: chunked, identity\r\n")),
        vec![UNKNOWN_TE],
    );
    add(
        "TE twice, chunked not last",
        format!("{}0\r\n\r\n{admin}", head("Transfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n")),
        vec![UNKNOWN_TE],
    );
    add(
        "space before the colon of TE",
        format!("{}0\r\n\r\n{admin}", head("Content-Length: 4\r\nTransfer-Encoding : chunked\r\n")),
        vec![REFUSED],
    );
    add(
        "TE with a vertical tab",
        format!("{}0\r\n\r\n{admin}", head("Content-Length: 4\r\nTransfer-Encoding:\x0bchunked\r\n")),
        vec![REFUSED],
    );
    add("TE on HTTP/1.0", format!("POST /hello HTTP/1.0\r\nHost: {APP}\r\nCookie: {ada}\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n{admin}"), vec![EITHER]);

    // Chunk sizes.
    add(
        "chunk-size overflow",
        format!("{}ffffffffffffffff1\r\nx\r\n0\r\n\r\n{admin}", head("Transfer-Encoding: chunked\r\n")),
        vec![OVERFLOW],
    );
    add(
        "negative chunk size",
        format!("{}-1\r\nx\r\n0\r\n\r\n{admin}", head("Transfer-Encoding: chunked\r\n")),
        vec![BAD_BODY],
    );
    add(
        "chunk data longer than its size",
        format!("{}3\r\nabcdef{admin}\r\n0\r\n\r\n", head("Transfer-Encoding: chunked\r\n")),
        vec![BAD_BODY],
    );
    add(
        "chunk size with 0x prefix",
        format!("{}0x3\r\nabc\r\n0\r\n\r\n{admin}", head("Transfer-Encoding: chunked\r\n")),
        vec![BAD_BODY],
    );

    // Pipelining into a denied path on one connection.
    let hello = format!("GET /hello HTTP/1.1\r\nHost: {APP}\r\nCookie: {ada}\r\n\r\n");
    add("pipelined /admin after /hello", format!("{hello}{admin}"), vec![ALLOWED, DENIED]);
    add(
        "pipelined /%61dmin after /hello",
        format!("{hello}{}", admin.replace("/admin/", "/%61dmin/")),
        vec![ALLOWED, DENIED],
    );
    add(
        "pipelined anonymous /admin between two allowed",
        format!("{hello}GET /admin/users HTTP/1.1\r\nHost: {APP}\r\n\r\n{hello}"),
        vec![ALLOWED, ANON, LATER],
    );
    add(
        "pipelined /admin after a POST with a body",
        format!("{}a=1{admin}", head("Content-Length: 3\r\n")),
        vec![ALLOWED, DENIED],
    );
    add(
        "pipelined /admin after a public request",
        format!("GET /healthz HTTP/1.1\r\nHost: {APP}\r\n\r\n{admin}"),
        vec![ALLOWED, DENIED],
    );
    add(
        "GET with a body holding a request",
        format!(
            "GET /hello HTTP/1.1\r\nHost: {APP}\r\nCookie: {ada}\r\nContent-Length: {}\r\n\r\n{admin}",
            admin.len()
        ),
        vec![GET_BODY],
    );

    // Malformed heads.
    let bad = |line: &str| format!("GET /hello HTTP/1.1\r\nHost: {APP}\r\nCookie: {ada}\r\n{line}\r\n\r\n");
    add("NUL in a header value", bad("X-Test: a\0b"), vec![REFUSED]);
    add("header without a colon", bad("X-Test foo"), vec![REFUSED]);
    add("bare CR in a header value", bad("X-Test: a\rX-Injected: b"), vec![REFUSED]);
    add("space in a header name", bad("X Test: a"), vec![REFUSED]);
    add("two different Host headers", bad("Host: admin.corp.example"), vec![REFUSED]);
    add(
        "Host with a path",
        format!("GET /hello HTTP/1.1\r\nHost: {APP}/admin\r\nCookie: {ada}\r\n\r\n"),
        vec![NO_HOST],
    );
    add(
        "whitespace before the first header",
        format!("GET /hello HTTP/1.1\r\n Host: {APP}\r\nCookie: {ada}\r\n\r\n"),
        vec![REFUSED],
    );
    add(
        "request line with extra tokens",
        format!("GET /hello HTTP/1.1 x\r\nHost: {APP}\r\nCookie: {ada}\r\n\r\n"),
        vec![REFUSED],
    );
    add("HTTP/0.9 request for /admin", "GET /admin/users\r\n\r\n".to_owned(), vec![VERSION]);
    add("unknown HTTP version", format!("GET /hello HTTP/9.1\r\nHost: {APP}\r\nCookie: {ada}\r\n\r\n"), vec![VERSION]);
    add(
        "bare LF line endings for /admin",
        format!("GET /admin/users HTTP/1.1\nHost: {APP}\nCookie: {ada}\n\n"),
        vec![BARE_LF],
    );

    for (name, bytes, expected) in cases {
        let outcome = case(&world, &bytes, &expected).await;
        report.record(&name, outcome);
    }
    report.finish();
}
