//! Credential and cookie extraction from arbitrary request heads: the bytes
//! are parsed with `httparse` (inputs that are not a request head are
//! skipped) into a `RequestHeader`, as pingora hands it to the edge. Then:
//! - `credentials::presented` / `credentials::cookie` never panic, and what
//!   they return is a non-empty part of a `Cookie` / `Authorization` value;
//! - `SessionCookies::find` returns only the value of a cookie named exactly
//!   as the route's session cookie;
//! - after `SessionCookies::strip_from` no `Cookie` header holds an edge
//!   cookie (any `<base>`, `<base>.*`, `<base>_*` name, with or without a
//!   `__Host-`/`__Secure-` prefix), every other cookie pair is kept, in
//!   order and byte for byte, and every other header is untouched.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pingora_http::RequestHeader;
use portcullis_edge::credentials::{self, Presented, SessionCookies};

const BASE: &str = "portcullis_session";

/// A cookie pair as sent (trimmed), its name and its value (both trimmed).
type Pair = (Vec<u8>, Vec<u8>, Vec<u8>);

/// The pairs of every `Cookie` header, in order (an independent reading of
/// RFC 6265's `cookie-string`, as lenient as servers are about whitespace).
fn cookie_pairs(req: &RequestHeader) -> Vec<Pair> {
    let mut out = Vec::new();
    for value in req.headers.get_all("cookie") {
        for raw in value.as_bytes().split(|b| *b == b';') {
            let pair = raw.trim_ascii();
            if pair.is_empty() {
                continue;
            }
            let (name, value) = match pair.iter().position(|b| *b == b'=') {
                Some(at) => (pair[..at].trim_ascii(), pair[at + 1..].trim_ascii()),
                None => (pair, &pair[pair.len()..]),
            };
            out.push((pair.to_vec(), name.to_vec(), value.to_vec()));
        }
    }
    out
}

/// The contract's definition of the edge's cookie names.
fn is_edge_name(name: &[u8]) -> bool {
    let mut rest = name;
    for prefix in [&b"__Host-"[..], b"__Secure-"] {
        if rest.len() >= prefix.len() && rest[..prefix.len()].eq_ignore_ascii_case(prefix) {
            rest = &rest[prefix.len()..];
            break;
        }
    }
    match rest.strip_prefix(BASE.as_bytes()) {
        Some(tail) => tail.is_empty() || tail[0] == b'.' || tail[0] == b'_',
        None => false,
    }
}

/// Every header but `Cookie`, as sorted (name, value) pairs (removing a
/// header may reorder the others in a `HeaderMap`).
fn other_headers(req: &RequestHeader) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = req
        .headers
        .iter()
        .filter(|(name, _)| name.as_str() != "cookie")
        .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
        .collect();
    out.sort();
    out
}

fn request(data: &[u8]) -> Option<RequestHeader> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(_) = parsed.parse(data).ok()? else { return None };
    let mut req = RequestHeader::build(parsed.method?, parsed.path?.as_bytes(), Some(parsed.headers.len())).ok()?;
    for h in parsed.headers.iter() {
        req.append_header(h.name.to_owned(), h.value).ok()?;
    }
    Some(req)
}

fuzz_target!(|data: &[u8]| {
    let Some(req) = request(data) else { return };
    let cookie_text: Vec<String> =
        req.headers.get_all("cookie").iter().filter_map(|v| v.to_str().ok()).map(str::to_owned).collect();

    match credentials::presented(&req, "portcullis_session.app") {
        Some(Presented::Cookie(value)) => {
            assert!(!value.is_empty() && cookie_text.iter().any(|c| c.contains(value)));
        }
        Some(Presented::Bearer(token)) => {
            let auth = req.headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
            assert!(!token.is_empty() && auth.contains(token), "bearer {token:?} not from {auth:?}");
        }
        None => {}
    }
    if let Some(value) = credentials::cookie(&req, "a") {
        assert!(!value.is_empty() && cookie_text.iter().any(|c| c.contains(value)));
    }

    for secure in [false, true] {
        let cookies = SessionCookies::new(BASE, secure);
        let pairs = cookie_pairs(&req);
        let mut routes: Vec<String> = cookies.presented(&req).iter().map(|p| p.route.to_owned()).collect();
        routes.push("app".to_owned());
        for route in &routes {
            if let Some(value) = cookies.find(&req, route) {
                let name = cookies.name_for(route);
                assert!(
                    pairs.iter().any(|(_, n, v)| n == name.as_bytes() && v == value.as_bytes()),
                    "find({route:?}) returned {value:?}, no cookie {name} has it"
                );
            }
        }

        let mut stripped = req.clone();
        cookies.strip_from(&mut stripped);
        let after = cookie_pairs(&stripped);
        for (pair, name, _) in &after {
            assert!(!is_edge_name(name), "edge cookie {:?} kept", String::from_utf8_lossy(pair));
        }
        let expected: Vec<&Vec<u8>> = pairs.iter().filter(|(_, n, _)| !is_edge_name(n)).map(|(p, _, _)| p).collect();
        let kept: Vec<&Vec<u8>> = after.iter().map(|(p, _, _)| p).collect();
        assert_eq!(kept, expected, "the app's cookies changed");
        assert_eq!(other_headers(&stripped), other_headers(&req), "a header other than Cookie changed");
        assert!(cookies.presented(&stripped).is_empty());
        for route in &routes {
            assert!(cookies.find(&stripped, route).is_none(), "route {route:?} still has a session cookie");
        }
    }
});
