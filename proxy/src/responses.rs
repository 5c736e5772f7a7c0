//! The edge's own answers: login redirects, 401 for API clients, 403 with
//! the reason, and the fail-closed 503 — HTML for browsers, JSON otherwise.
//! Every interpolated string is HTML-escaped.

use bytes::Bytes;
use pingora_http::ResponseHeader;
use pingora_proxy::Session;

/// True when the client prefers HTML (a browser navigation).
pub fn wants_html(session: &Session) -> bool {
    session
        .req_header()
        .headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"))
}

/// Escapes text for HTML.
pub fn escape_html(text: &str) -> std::borrow::Cow<'_, str> {
    html_escape::encode_quoted_attribute(text)
}

/// The Portcullis icon (the portal's `favicon.svg`) as a `<link>` with a
/// `data:` URI, for the pages the edge and the demo write themselves: the
/// browser then asks no `/favicon.ico` (which would 404, or be proxied).
pub const FAVICON_LINK: &str = "<link rel=\"icon\" type=\"image/svg+xml\" href=\"data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 32 32'%3E%3Crect width='32' height='32' rx='7' fill='%233550d4'/%3E%3Cpath d='M8 25V12a8 8 0 0 1 16 0v13' fill='none' stroke='%23fff' stroke-width='2.2' stroke-linecap='round'/%3E%3Cpath d='M12.5 25V13.5M16 25V13.5M19.5 25V13.5M9 17.5h14M9 21.5h14' stroke='%23fff' stroke-width='1.6' stroke-linecap='round' opacity='.9'/%3E%3C/svg%3E\">";

/// A minimal HTML page.
pub fn page(title: &str, message: &str) -> String {
    page_with_link(title, message, None)
}

/// A minimal HTML page, with a link (`(text, same-origin href)`) under the message.
pub fn page_with_link(title: &str, message: &str, link: Option<(&str, &str)>) -> String {
    let link = link.map_or_else(String::new, |(text, href)| {
        format!("<p><a href=\"{}\">{}</a></p>", escape_html(href), escape_html(text))
    });
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\
         <meta name=\"viewport\" content=\"width=device-width\">{FAVICON_LINK}</head>\
         <body style=\"font-family:system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem\">\
         <h1>{t}</h1><p>{m}</p>{link}<p style=\"color:#666\">Portcullis</p></body></html>",
        t = escape_html(title),
        m = escape_html(message)
    )
}

/// Sends a complete response; `code` is a machine-readable error code.
pub async fn respond(
    session: &mut Session,
    status: u16,
    code: &str,
    title: &str,
    message: &str,
    extra: &[(&'static str, String)],
) -> pingora_core::Result<()> {
    let (content_type, body) = if wants_html(session) {
        ("text/html; charset=utf-8", page(title, message))
    } else {
        let body = serde_json::json!({ "error": { "code": code, "message": message } });
        ("application/json", body.to_string())
    };
    let mut header = ResponseHeader::build(status, Some(4 + extra.len()))?;
    header.insert_header("content-type", content_type)?;
    header.insert_header("content-length", body.len().to_string())?;
    header.insert_header("cache-control", "no-store")?;
    for (name, value) in extra {
        header.append_header(*name, value.as_str())?;
    }
    session.write_response_header(Box::new(header), false).await?;
    session.write_response_body(Some(Bytes::from(body)), true).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_carry_the_portal_icon_inline() {
        assert!(page("Denied", "no").contains(FAVICON_LINK), "no /favicon.ico request, so no 404");
        let uri = FAVICON_LINK.split("href=\"data:image/svg+xml,").nth(1).and_then(|r| r.strip_suffix("\">"));
        let decoded = uri.expect("a data URI").replace("%3C", "<").replace("%3E", ">").replace("%23", "#");
        let portal = include_str!("../../control-plane/src/portal/assets/favicon.svg").trim().replace('"', "'");
        assert_eq!(decoded, portal, "the same icon as the portal's favicon.svg");
    }
}
