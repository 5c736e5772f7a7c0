//! The authority of an absolute-form request target (`http://host:port/…`):
//! split off, checked as a `host[:port]`, and compared with `Host` (same
//! host, same port once the scheme's default is filled in).

use super::{is_unreserved, TargetError};

/// Splits `http(s)://authority` off an absolute-form target: the byte where
/// the path (or query) starts, the authority, and true for `https`.
pub(super) fn absolute_form(target: &str) -> Result<(usize, &str, bool), TargetError> {
    let Some((scheme, rest)) = target.split_once("://") else {
        return Err(if target.contains('/') { TargetError::UnsupportedForm } else { TargetError::AuthorityForm });
    };
    let tls = match scheme {
        s if s.eq_ignore_ascii_case("http") => false,
        s if s.eq_ignore_ascii_case("https") => true,
        _ => return Err(TargetError::UnsupportedForm),
    };
    let end = rest.bytes().position(|b| matches!(b, b'/' | b'?' | b'#')).unwrap_or(rest.len());
    let authority = &rest[..end];
    if split_authority(authority).is_none() {
        return Err(TargetError::BadAuthority);
    }
    Ok((scheme.len() + 3 + end, authority, tls))
}

/// `host[:port]` split into host and port text; `None` unless the host is a
/// registered name of `[A-Za-z0-9-._~]` or a bracketed IPv6 address and the
/// port is digits.
fn split_authority(authority: &str) -> Option<(&str, &str)> {
    let (host, port) = if authority.starts_with('[') {
        let close = authority.find(']')?;
        let (host, after) = authority.split_at(close + 1);
        let inner = &host[1..host.len() - 1];
        if inner.is_empty() || !inner.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.') {
            return None;
        }
        match after {
            "" => (host, ""),
            _ => (host, after.strip_prefix(':')?),
        }
    } else {
        let (host, port) = authority.split_once(':').unwrap_or((authority, ""));
        if host.is_empty() || !host.bytes().all(is_unreserved) {
            return None;
        }
        (host, port)
    };
    port.bytes().all(|b| b.is_ascii_digit()).then_some((host, port))
}

/// True when `authority` and `host` name the same host and port.
pub(super) fn same_authority(authority: &str, host: &str, tls: bool) -> bool {
    let default = if tls { 443 } else { 80 };
    let port = |text: &str| if text.is_empty() { Some(default) } else { text.parse::<u16>().ok() };
    match (split_authority(authority), split_authority(host)) {
        (Some((a_host, a_port)), Some((h_host, h_port))) => {
            a_host.eq_ignore_ascii_case(h_host) && port(a_port).is_some() && port(a_port) == port(h_port)
        }
        _ => false,
    }
}
