//! What an upstream receives: the request head the edge forwards is the
//! client's head with everything the edge does not vouch for taken out, and
//! the edge's own statements put in. Used for ordinary requests and for
//! websocket upgrades alike.
//!
//! Removed: hop-by-hop headers (`Connection` and every header it names,
//! `Keep-Alive`, `Proxy-Connection`, `TE` other than `trailers`, `Trailer`,
//! `Upgrade` unless the request is a checked websocket upgrade,
//! `HTTP2-Settings`, `Proxy-Authorization`, `Proxy-Authenticate`); any
//! header that reads as `x-portcullis-*` once `_` is taken for `-` (CGI and
//! WSGI servers fold both into `HTTP_X_PORTCULLIS_*`); client addressing and
//! rewrite headers (`Forwarded`, `X-Real-IP`, `True-Client-IP`,
//! `X-Original-URL`, `X-Rewrite-URL`, the method-override family) unless the
//! route passes them on; the client's `X-Forwarded-*`; the edge's own
//! cookies; `Authorization` when it carried a Portcullis credential (or an
//! IdP token on a route that does not forward bearer tokens).
//!
//! Added: `x-portcullis-user`, `-email`, `-groups` (a JSON array), `-session`,
//! the signed assertion, `Forwarded` and `X-Forwarded-For/-Proto/-Host`.

use http::header::{HeaderName, HeaderValue};
use pingora_core::Result;
use pingora_http::RequestHeader;
use portcullis_policy::Identity;

use crate::assertion::ASSERTION_HEADER;
use crate::credentials::SessionCookies;

/// Client headers that rewrite the request's meaning or claim an address;
/// a route may pass some of them on (`pass_client_headers`).
pub use portcullis_policy::policy::PASSABLE_CLIENT_HEADERS as OVERRIDE_HEADERS;

/// Hop-by-hop headers (RFC 9110 §7.6.1 and the ones proxies have used).
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "http2-settings",
    "proxy-authorization",
    "proxy-authenticate",
];

/// The edge's own identity header names.
const USER: &str = "x-portcullis-user";
const EMAIL: &str = "x-portcullis-email";
const GROUPS: &str = "x-portcullis-groups";
const SESSION: &str = "x-portcullis-session";

/// What `Authorization` carried, as far as forwarding goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthorizationUse {
    /// Not used as the credential (or absent): forwarded as the client sent it.
    Foreign,
    /// A Portcullis session or service token: never forwarded.
    Edge,
    /// An IdP access token: forwarded only when the route says so.
    IdpToken,
}

/// Everything the upstream head is built from.
pub struct UpstreamHead<'a> {
    /// The canonical path and query, as the policy judged them.
    pub path_and_query: &'a str,
    /// The identity, when the request carried one.
    pub identity: Option<&'a Identity>,
    /// The signed assertion for this route.
    pub assertion: Option<&'a str>,
    /// `X-Forwarded-For` chain (trusted hops and the peer).
    pub forwarded_for: &'a str,
    /// The client's address, for `Forwarded: for=`.
    pub client_ip: std::net::IpAddr,
    /// `http` or `https` as the client sees it.
    pub proto: &'a str,
    /// The host the client asked for.
    pub host: &'a str,
    /// Override headers the route passes on (lowercase).
    pub pass_client_headers: &'a [Box<str>],
    /// What `Authorization` carried.
    pub authorization: AuthorizationUse,
    /// The route forwards IdP access tokens.
    pub forward_bearer: bool,
    /// A checked websocket upgrade: keep `Upgrade: websocket` and `Connection: upgrade`.
    pub websocket: bool,
    /// The edge's cookies.
    pub cookies: &'a SessionCookies,
}

/// True for a name that reads as one of the edge's own headers once `_` is
/// taken for `-` and case is ignored.
pub fn is_own_header_lookalike(name: &str) -> bool {
    const PREFIX: &[u8] = b"x-portcullis-";
    let bytes = name.as_bytes();
    bytes.len() >= PREFIX.len()
        && bytes.iter().zip(PREFIX).all(|(b, p)| {
            let b = if *b == b'_' { b'-' } else { b.to_ascii_lowercase() };
            b == *p
        })
}

/// Header names the `Connection` header lists (lowercase).
fn connection_tokens(head: &RequestHeader) -> Vec<String> {
    head.headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

/// Should this client header be dropped?
fn dropped(name: &str, plan: &UpstreamHead<'_>, connection: &[String]) -> bool {
    if HOP_BY_HOP.contains(&name) {
        return !(plan.websocket && name == "upgrade");
    }
    if connection.iter().any(|t| t == name) {
        return true;
    }
    if is_own_header_lookalike(name) || name.starts_with("x-forwarded-") || name.starts_with("x_forwarded") {
        return true;
    }
    if OVERRIDE_HEADERS.contains(&name) {
        return !plan.pass_client_headers.iter().any(|p| &**p == name);
    }
    // Underscore spellings of the override headers fold into the same CGI variable.
    if name.contains('_') {
        let dashed = name.replace('_', "-");
        return OVERRIDE_HEADERS.contains(&dashed.as_str()) || dashed.starts_with("x-forwarded-");
    }
    false
}

/// A JSON array of strings, ASCII only (anything else as `\uXXXX`), so a
/// group name with a comma or a quote cannot read as another group.
pub fn json_string_array<S: AsRef<str>>(items: &[S]) -> String {
    let mut out = String::with_capacity(2 + items.iter().map(|s| s.as_ref().len() + 3).sum::<usize>());
    out.push('[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('"');
        for unit in item.as_ref().encode_utf16() {
            match unit {
                0x22 => out.push_str("\\\""),
                0x5c => out.push_str("\\\\"),
                0x20..=0x7e => out.push(char::from(unit as u8)),
                _ => out.push_str(&format!("\\u{unit:04x}")),
            }
        }
        out.push('"');
    }
    out.push(']');
    out
}

/// A header value from edge-known text; control bytes become spaces, and
/// non-ASCII is escaped as in JSON strings.
fn value(text: &str) -> Result<HeaderValue> {
    let cleaned: String = if text.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        text.to_owned()
    } else {
        let quoted = json_string_array(&[text]);
        quoted[2..quoted.len() - 2].to_owned()
    };
    HeaderValue::from_str(&cleaned)
        .map_err(|e| pingora_core::Error::explain(pingora_core::ErrorType::InternalError, e.to_string()))
}

/// `Forwarded: for=…;proto=…;host=…` (RFC 7239), IPv6 quoted and bracketed.
fn forwarded(plan: &UpstreamHead<'_>) -> String {
    let for_ = match plan.client_ip {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => format!("\"[{v6}]\""),
    };
    let host_ok =
        !plan.host.is_empty() && plan.host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
    if host_ok {
        format!("for={for_};proto={};host={}", plan.proto, plan.host)
    } else {
        format!("for={for_};proto={}", plan.proto)
    }
}

/// Rewrites `head` (a copy of the client's request) into what the upstream
/// receives.
pub fn prepare(head: &mut RequestHeader, plan: &UpstreamHead<'_>) -> Result<()> {
    if head.headers.get(http::header::HOST).is_none() {
        // HTTP/2 carries the host as `:authority`; the HTTP/1.1 upstream needs `Host`.
        if let Some(authority) = head.uri.authority().map(|a| a.as_str().to_owned()) {
            head.insert_header(http::header::HOST, authority)?;
        }
    }
    // Through the raw target: an absolute-form request keeps its verbatim
    // target there, which would otherwise go upstream as sent.
    head.set_raw_path(plan.path_and_query.as_bytes())?;
    let connection = connection_tokens(head);
    let names: Vec<HeaderName> = head.headers.keys().cloned().collect();
    for name in names {
        if dropped(name.as_str(), plan, &connection) {
            head.remove_header(&name);
        }
    }
    let authorization_kept = match plan.authorization {
        AuthorizationUse::Foreign => true,
        AuthorizationUse::Edge => false,
        AuthorizationUse::IdpToken => plan.forward_bearer,
    };
    if !authorization_kept {
        head.remove_header(&http::header::AUTHORIZATION);
    }
    plan.cookies.strip_from(head);
    if plan.websocket {
        head.insert_header(http::header::CONNECTION, "upgrade")?;
        head.insert_header(http::header::UPGRADE, "websocket")?;
    }
    if let Some(identity) = plan.identity {
        head.insert_header(USER, value(identity.subject())?)?;
        head.insert_header(EMAIL, value(identity.email())?)?;
        head.insert_header(GROUPS, json_string_array(identity.groups()))?;
        if let Some(sid) = identity.session_id() {
            head.insert_header(SESSION, sid.to_string())?;
        }
    }
    if let Some(assertion) = plan.assertion {
        head.insert_header(ASSERTION_HEADER, assertion)?;
    }
    head.insert_header("forwarded", forwarded(plan))?;
    head.insert_header("x-forwarded-for", plan.forwarded_for)?;
    head.insert_header("x-forwarded-proto", plan.proto)?;
    head.insert_header("x-forwarded-host", value(plan.host)?)?;
    Ok(())
}

/// Removes the upstream's `Set-Cookie` headers that would set one of the
/// edge's own cookies (an app must not be able to log its visitors in as
/// someone else, or out).
pub fn drop_edge_set_cookies(response: &mut pingora_http::ResponseHeader, cookies: &SessionCookies) {
    let set = http::header::SET_COOKIE;
    let values: Vec<HeaderValue> = response.headers.get_all(&set).iter().cloned().collect();
    let kept: Vec<HeaderValue> = values
        .iter()
        .filter(|value| {
            let name = value.as_bytes().split(|b| *b == b'=').next().unwrap_or_default();
            let name = String::from_utf8_lossy(name);
            !cookies.is_edge_cookie(name.trim())
        })
        .cloned()
        .collect();
    if kept.len() == values.len() {
        return;
    }
    response.remove_header(&set);
    for value in kept {
        // Appending values that were already valid headers cannot fail.
        let _ = response.append_header(set.clone(), value);
    }
}

#[cfg(test)]
mod tests;
