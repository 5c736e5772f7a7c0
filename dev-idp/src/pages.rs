//! The provider's two pages: pick a user to log in as, and a message. Both
//! carry the banner that says this is for development only. Everything
//! interpolated is HTML-escaped (the request's parameters come from anyone).

use axum::response::Html;

use crate::{AuthorizeParams, User};

const STYLE: &str = "font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;color:#1f2933";
const BANNER: &str = "<p style=\"background:#fff4e5;border:1px solid #f0b429;padding:.6rem .8rem;border-radius:6px\">\
    <strong>Development identity provider.</strong> Anyone can log in as anyone here. \
    Use a real OpenID provider in production.</p>";

fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    html_escape::encode_quoted_attribute(text)
}

fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\
         <meta name=\"viewport\" content=\"width=device-width\"></head><body style=\"{STYLE}\">\
         <h1>{t}</h1>{BANNER}{body}</body></html>",
        t = escape(title)
    ))
}

/// A page with a message.
pub(crate) fn message(title: &str, text: &str) -> Html<String> {
    page(title, &format!("<p>{}</p>", escape(text)))
}

/// The login page: one button per user; the request travels in hidden fields.
pub(crate) fn login(users: &[User], request: &AuthorizeParams) -> Html<String> {
    let hidden = |name: &str, value: Option<&str>| {
        value.map_or_else(String::new, |v| format!("<input type=\"hidden\" name=\"{name}\" value=\"{}\">", escape(v)))
    };
    let fields = [
        hidden("response_type", request.response_type.as_deref()),
        hidden("client_id", Some(&request.client_id)),
        hidden("redirect_uri", Some(&request.redirect_uri)),
        hidden("scope", Some(&request.scope)),
        hidden("state", request.state.as_deref()),
        hidden("nonce", request.nonce.as_deref()),
        hidden("code_challenge", request.code_challenge.as_deref()),
        hidden("code_challenge_method", request.code_challenge_method.as_deref()),
    ]
    .concat();
    let buttons: String = users
        .iter()
        .map(|u| {
            format!(
                "<p><button name=\"user\" value=\"{n}\" style=\"font-size:1rem;padding:.5rem 1rem\">Log in as {n}</button> \
                 <span style=\"color:#52606d\">{e} · groups: {g}</span></p>",
                n = escape(&u.name),
                e = escape(&u.email),
                g = escape(&u.groups.join(", "))
            )
        })
        .collect();
    let body = format!(
        "<p>Signing in to <code>{}</code>.</p><form method=\"post\" action=\"authorize\">{fields}{buttons}</form>",
        escape(&request.client_id)
    );
    page("Log in", &body)
}
