//! CONNECT request heads from arbitrary bytes: `parse_head` (what the
//! edge's listeners run on the first bytes of every connection that starts
//! with `CONNECT `) must never panic, and what it accepts must be a
//! consistent `CONNECT host:port` head:
//! - the head length is within the input and within `MAX_HEAD_BYTES`;
//! - the method is CONNECT and the authority is `host:port` with a port;
//! - parsing exactly the head gives the same head (bytes after it, meant
//!   for the upstream, never change it), and no shorter prefix of it is a
//!   complete head (the read loop would otherwise stop early).

#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_edge::tunnel::head::{parse_head, MAX_HEAD_BYTES};

fuzz_target!(|data: &[u8]| {
    let Ok(Some((head, len))) = parse_head(data) else { return };
    assert!(len <= data.len() && len <= MAX_HEAD_BYTES, "head length {len} of {}", data.len());
    assert_eq!(head.header.method.as_str(), "CONNECT");
    let (host, port) = head.authority.rsplit_once(':').expect("authority has a port");
    assert!(!host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0), "authority {:?}", head.authority);
    assert!(!head.authority.bytes().any(|b| b.is_ascii_control() || b == b' ' || b == b'/'), "{:?}", head.authority);

    let (again, again_len) =
        parse_head(&data[..len]).expect("the head alone parses").expect("the head alone is complete");
    assert_eq!(again_len, len);
    assert_eq!(again.authority, head.authority);
    assert_eq!(again.header.headers, head.header.headers);
    assert!(!matches!(parse_head(&data[..len - 1]), Ok(Some(_))), "a prefix of a complete head is itself complete");
});
