//! Request targets from arbitrary UTF-8: `request_target::canonicalize`
//! (what the edge runs on every request line before routing and policy)
//! must never panic, and what it accepts must have a single meaning:
//! - the canonical path starts with `/` and has no `//`, no dot segments,
//!   no `\`, no `%2F`/`%5C`/`%00`, no control or non-ASCII bytes, no `?` or
//!   `#`, only upper-case escapes and no escape of an unreserved character;
//! - canonicalizing the canonical form again gives the same result
//!   (idempotent), and so does the same for `path_without_params` and
//!   `lowercase_path`;
//! - a server that percent-decodes the whole path and then resolves dot and
//!   empty segments (Tomcat, Spring, most frameworks) reaches the same
//!   segments as the canonical path decoded.
//!
//! Input: `host\ntarget` calls with `Some(host)`, a plain `target` with `None`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_policy::request_target::{canonicalize, lowercase_path};

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Checks the shape every canonical path must have.
fn assert_canonical(path: &str, what: &str) {
    let bytes = path.as_bytes();
    assert!(path.starts_with('/'), "{what} {path:?} does not start with /");
    for bad in ["//", "/./", "/../", "\\", "?", "#"] {
        assert!(!path.contains(bad), "{what} {path:?} contains {bad:?}");
    }
    assert!(!path.ends_with("/.") && !path.ends_with("/.."), "{what} {path:?} ends in a dot segment");
    assert!(!bytes.iter().any(|b| *b < 0x20 || *b >= 0x7F), "{what} {path:?} has a control or non-ASCII byte");
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).expect("a complete escape");
            assert!(
                hex.iter().all(|h| h.is_ascii_digit() || (b'A'..=b'F').contains(h)),
                "{what} {path:?}: escape at {i} is not upper-case hex"
            );
            let value = u8::from_str_radix(std::str::from_utf8(hex).unwrap_or("zz"), 16).expect("hex");
            assert!(!is_unreserved(value), "{what} {path:?}: escaped unreserved byte at {i}");
            assert!(!matches!(value, b'/' | b'\\' | 0x00..=0x1F | 0x7F), "{what} {path:?}: escape at {i}");
            i += 3;
        } else {
            i += 1;
        }
    }
}

/// Percent-decodes every escape (as a decoding server does).
fn decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escape = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match escape.and_then(|h| u8::from_str_radix(h, 16).ok()).filter(|_| bytes[i] == b'%') {
            Some(value) => {
                out.push(value);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    out
}

/// The segments a decode-then-normalize server routes on.
fn resolved_segments(decoded: &[u8]) -> Vec<&[u8]> {
    let mut out: Vec<&[u8]> = Vec::new();
    for segment in decoded.split(|b| *b == b'/') {
        match segment {
            b"" | b"." => {}
            b".." => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (host, target) = match text.split_once('\n') {
        Some((host, target)) => (Some(host), target),
        None => (None, text),
    };
    let Ok(canonical) = canonicalize(target, host) else { return };
    assert_canonical(&canonical.path, "path");
    if let Some(query) = &canonical.query {
        assert!(!query.bytes().any(|b| b < 0x20 || b >= 0x7F || b == b'#'), "query {query:?}");
    }
    // A `;` in the path is always flagged (the reverse may be conservative:
    // `/;x/../a` is flagged although the parameter went with its segment).
    assert!(canonical.has_params || !canonical.path.contains(';'), "has_params for {:?}", canonical.path);

    // Idempotent: the canonical form is its own canonical form.
    let again = canonicalize(&canonical.path_and_query(), None).expect("the canonical form is accepted");
    assert_eq!(again.path, canonical.path);
    assert_eq!(again.query, canonical.query);
    assert_eq!(again.has_params, again.path.contains(';'));

    let without = canonical.path_without_params();
    assert!(!without.contains(';'), "path_without_params {without:?}");
    assert_canonical(&without, "path_without_params");
    let plain = canonicalize(&without, None).expect("path_without_params is accepted");
    assert_eq!(plain.path, without, "path_without_params is canonical");

    let lower = lowercase_path(&canonical.path);
    assert_canonical(&lower, "lowercase_path");
    assert_eq!(canonicalize(&lower, None).expect("lowercase path is accepted").path, lower);
    assert_eq!(lowercase_path(&lower), lower);

    // One meaning: a server that decodes everything first and then
    // resolves dot segments reaches the same resource.
    if target.starts_with('/') && !canonical.path.contains(';') && !target.contains(';') {
        let raw_path = target.split_once('?').map_or(target, |(path, _)| path);
        let theirs = decode(raw_path);
        let ours = decode(&canonical.path);
        assert_eq!(
            resolved_segments(&theirs),
            resolved_segments(&ours),
            "{target:?} canonicalized to {:?} reaches another resource",
            canonical.path
        );
    }
});
