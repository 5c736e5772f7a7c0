//! The few pages the server renders itself (sign-in refused, not an admin,
//! provider unavailable): static HTML with the portal's stylesheet, every
//! variable part HTML-escaped, no script.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    html_escape::encode_quoted_attribute(text)
}

/// A page with a title and paragraphs of HTML (callers escape their text).
fn page(status: StatusCode, title: &str, paragraphs_html: &[String]) -> Response {
    let body: String = paragraphs_html.iter().map(|p| format!("<p>{p}</p>")).collect();
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · Portcullis</title>\
         <link rel=\"icon\" href=\"/portal/assets/favicon.svg\" type=\"image/svg+xml\">\
         <link rel=\"stylesheet\" href=\"/portal/assets/portal.css\"></head>\
         <body class=\"standalone\"><main class=\"notice-card\">\
         <div class=\"brand\"><img src=\"/portal/assets/favicon.svg\" alt=\"\" width=\"28\" height=\"28\"><span>Portcullis</span></div>\
         <div class=\"notice-mark\" aria-hidden=\"true\"><svg viewBox=\"0 0 24 24\" fill=\"none\" stroke=\"currentColor\" \
         stroke-width=\"2\" stroke-linecap=\"round\" stroke-linejoin=\"round\"><path d=\"M5 11h14v10H5z\"/>\
         <path d=\"M8 11V7a4 4 0 0 1 8 0v4\"/></svg></div>\
         <h1>{title}</h1>{body}\
         <p><a class=\"button\" href=\"/portal/\">Back to the sign-in page</a></p></main></body></html>",
        title = escape(title),
    );
    (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
}

/// A page that says what went wrong.
pub fn problem(status: StatusCode, title: &str, message: &str) -> Response {
    page(status, title, &[escape(message).into_owned()])
}

/// 403 for a user the IdP knows who is not in the admin group.
pub fn not_an_admin(email: &str, group: &str) -> Response {
    page(
        StatusCode::FORBIDDEN,
        "Access denied",
        &[
            format!(
                "You are signed in as <strong>{}</strong>, but the Portcullis portal is only for members of \
                 the <code>{}</code> group.",
                escape(email),
                escape(group)
            ),
            "If you need access, ask your security team to add you to that group at the identity provider. \
             This attempt has been recorded in the audit log."
                .to_owned(),
        ],
    )
}

/// 503 when the IdP cannot be reached.
pub fn unavailable() -> Response {
    let mut response = problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "Temporarily unavailable",
        "The identity provider cannot be reached right now. Try again in a moment, or sign in with an admin API token.",
    );
    response.headers_mut().insert(header::RETRY_AFTER, axum::http::HeaderValue::from_static("5"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape(r#"<img src=x onerror="alert('x')">&"#),
            "&lt;img src=x onerror=&quot;alert(&#x27;x&#x27;)&quot;&gt;&amp;"
        );
    }
}
