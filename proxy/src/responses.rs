//! The edge's own answers: login redirects, 401 for API clients, 403 with
//! a denial's reference (never the policy's reason), and the fail-closed
//! 503 — a small self-contained page for browsers (inline style, no
//! script, a CSP that loads nothing), JSON otherwise
//! (`{"error": {"code", "message", "reference"?}}`). Every interpolated
//! string is HTML-escaped.

use bytes::Bytes;
use pingora_http::ResponseHeader;
use pingora_proxy::Session;
use portcullis_policy::edge_channel::DenialReference;

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

/// The page's style: one card, centred, readable from a phone to a wide
/// screen, light or dark as the device prefers. Inline (no asset to load
/// from an edge that just refused the request).
const STYLE: &str = ":root{color-scheme:light dark;--bg:#f3f4f6;--card:#fff;--fg:#1f2937;--muted:#5b6472;\
--line:#e3e6eb;--accent:#b42318;--code:#f3f4f6}\
@media (prefers-color-scheme:dark){:root{--bg:#111318;--card:#1b1f27;--fg:#e5e7eb;--muted:#9aa3b2;\
--line:#2d333d;--accent:#f97066;--code:#111318}}\
*{box-sizing:border-box}\
body{margin:0;min-height:100vh;display:flex;align-items:center;justify-content:center;padding:1.25rem;\
background:var(--bg);color:var(--fg);font:16px/1.55 system-ui,-apple-system,\"Segoe UI\",Roboto,sans-serif}\
main{width:100%;max-width:34rem;background:var(--card);border:1px solid var(--line);\
border-top:4px solid var(--accent);border-radius:12px;padding:2rem 1.75rem 1.5rem;\
box-shadow:0 10px 30px rgba(0,0,0,.06)}\
h1{margin:0 0 .75rem;font-size:1.5rem;line-height:1.25}\
p{margin:0 0 1rem}\
a{color:inherit}\
.ref{margin:1.25rem 0 .5rem;padding:.75rem 1rem;border:1px dashed var(--line);border-radius:8px;\
background:var(--code)}\
.ref span{display:block;font-size:.75rem;letter-spacing:.08em;text-transform:uppercase;color:var(--muted)}\
.ref code{display:block;font:600 1.35rem/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;\
letter-spacing:.06em;overflow-wrap:anywhere;user-select:all}\
footer{margin-top:1.5rem;padding-top:.75rem;border-top:1px solid var(--line);font-size:.8rem;color:var(--muted)}";

/// The edge's own pages may load nothing and run nothing.
pub const PAGE_CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// A page of the edge's own: a title, a message.
pub fn page(title: &str, message: &str) -> String {
    render_page(title, message, None, None)
}

/// A page with a link (`(text, same-origin href)`) under the message.
pub fn page_with_link(title: &str, message: &str, link: Option<(&str, &str)>) -> String {
    render_page(title, message, link, None)
}

/// The page: title, message, then the link or the reference to quote.
fn render_page(title: &str, message: &str, link: Option<(&str, &str)>, reference: Option<DenialReference>) -> String {
    let link = link.map_or_else(String::new, |(text, href)| {
        format!("<p><a href=\"{}\">{}</a></p>", escape_html(href), escape_html(text))
    });
    // A reference is 14 characters of `0-9A-Z-`: nothing to escape.
    let reference = reference.map_or_else(String::new, |reference| {
        format!(
            "<div class=\"ref\"><span>Reference</span><code data-test=\"reference\">{reference}</code></div>\
             <p class=\"hint\">Your administrator can look up what happened with this reference.</p>"
        )
    });
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <meta name=\"robots\" content=\"noindex\"><title>{t}</title>{FAVICON_LINK}<style>{STYLE}</style></head>\
         <body><main><h1>{t}</h1><p>{m}</p>{link}{reference}<footer>Portcullis</footer></main></body></html>",
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
    respond_with_reference(session, status, code, title, message, None, extra).await
}

/// [`respond`], with the reference of a denial: on the page, as
/// `error.reference` in JSON, and in `X-Portcullis-Reference`.
pub async fn respond_with_reference(
    session: &mut Session,
    status: u16,
    code: &str,
    title: &str,
    message: &str,
    reference: Option<DenialReference>,
    extra: &[(&'static str, String)],
) -> pingora_core::Result<()> {
    let html = wants_html(session);
    let (content_type, body) = if html {
        ("text/html; charset=utf-8", render_page(title, message, None, reference))
    } else {
        let mut error = serde_json::json!({ "code": code, "message": message });
        if let Some(reference) = reference {
            error["reference"] = reference.to_string().into();
        }
        ("application/json", serde_json::json!({ "error": error }).to_string())
    };
    let mut header = ResponseHeader::build(status, Some(6 + extra.len()))?;
    header.insert_header("content-type", content_type)?;
    header.insert_header("content-length", body.len().to_string())?;
    header.insert_header("cache-control", "no-store")?;
    if html {
        header.insert_header("content-security-policy", PAGE_CSP)?;
    }
    if let Some(reference) = reference {
        header.insert_header("x-portcullis-reference", reference.to_string())?;
    }
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

    #[test]
    fn a_denial_page_shows_the_reference_and_escapes_the_rest() {
        let reference: DenialReference = "K7Q2-M9XD-4RTA".parse().expect("reference");
        let html = render_page("Access denied", "<b>no</b>", None, Some(reference));
        assert!(html.contains("<code data-test=\"reference\">K7Q2-M9XD-4RTA</code>"), "{html}");
        assert!(html.contains("&lt;b&gt;no&lt;/b&gt;"), "{html}");
        assert!(!html.contains("href=\"http") && !html.contains("src=\"http"), "no external asset: {html}");
        assert!(html.len() < 4096, "a small page: {} bytes", html.len());
        assert!(!page("Logged out", "bye").contains("Reference"));
    }
}
