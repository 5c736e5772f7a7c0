//! A scripted login through the test IdP's development forms, for harnesses
//! that measure a relying party's authenticated path (Apache +
//! mod_auth_openidc): GET the protected URL, follow every redirect by hand,
//! post the IdP's login form (any password) and consent form, follow the
//! callback, and keep the cookies each host sets.
//!
//! The process tests' `Browser` (`cli/tests/control_plane/browser.rs`) does
//! the same with reqwest's cookie jar; that jar is a reqwest feature the
//! `portcullis` binary is built without, and turning it on for the benches
//! would rebuild (and change) the binary under test, so this keeps a
//! minimal jar of its own: cookies by host, name and value, paths and
//! expiry ignored, enough for one login.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use anyhow::{bail, Context, Result};
use reqwest::{Method, Url};

/// Most requests one login takes.
const MAX_STEPS: usize = 30;

/// A client that logs in at the IdP and remembers cookies per host.
pub struct Login {
    http: reqwest::Client,
    /// host → cookie name → value.
    jar: BTreeMap<String, BTreeMap<String, String>>,
    /// What happened, for the error message.
    trail: Vec<String>,
}

/// The last answer of a login: not a redirect.
pub struct Landed {
    /// Its status.
    pub status: u16,
    /// Its body.
    pub body: String,
}

impl Login {
    /// A client that resolves `host` to 127.0.0.1 (the URL's port is kept).
    pub fn resolving(host: &str) -> Result<Self> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .resolve(host, SocketAddr::from(([127, 0, 0, 1], 0)))
            .build()?;
        Ok(Self { http, jar: BTreeMap::new(), trail: Vec::new() })
    }

    /// Starts at `url`, logs `user` in at the IdP's forms when they are
    /// shown, and follows redirects until an answer that is not one.
    pub async fn run(&mut self, url: &str, user: &str) -> Result<Landed> {
        let (mut method, mut url, mut form) = (Method::GET, url.to_owned(), None::<BTreeMap<String, String>>);
        for _ in 0..MAX_STEPS {
            let parsed = Url::parse(&url).with_context(|| format!("not a URL: {url}"))?;
            let host = parsed.host_str().unwrap_or_default().to_owned();
            let mut request = self.http.request(method.clone(), parsed.clone()).header("accept", "text/html");
            if let Some(cookies) = self.jar.get(&host).filter(|c| !c.is_empty()) {
                let header: Vec<String> = cookies.iter().map(|(name, value)| format!("{name}={value}")).collect();
                request = request.header("cookie", header.join("; "));
            }
            if let Some(fields) = &form {
                request = request.form(fields);
            }
            let response = request.send().await.with_context(|| format!("{method} {url}"))?;
            let status = response.status().as_u16();
            for set in response.headers().get_all("set-cookie") {
                let text = String::from_utf8_lossy(set.as_bytes());
                let pair = text.split(';').next().unwrap_or_default();
                if let Some((name, value)) = pair.split_once('=') {
                    let cookies = self.jar.entry(host.clone()).or_default();
                    match value.trim() {
                        "" => cookies.remove(name.trim()),
                        value => cookies.insert(name.trim().to_owned(), value.to_owned()),
                    };
                }
            }
            let location = response.headers().get("location").and_then(|v| v.to_str().ok()).map(str::to_owned);
            let body = response.text().await.unwrap_or_default();
            self.trail.push(format!("{method} {url} -> {status} {}", location.as_deref().unwrap_or("")));
            if let Some(location) = location.filter(|_| matches!(status, 301 | 302 | 303 | 307 | 308)) {
                (method, url, form) = (Method::GET, parsed.join(&location)?.to_string(), None);
                continue;
            }
            let Some((action, mut fields)) = post_form(&body) else {
                return Ok(Landed { status, body });
            };
            match fields.get("prompt").map(String::as_str) {
                Some("login") => {
                    fields.insert("login".into(), user.into());
                    fields.insert("password".into(), "any password will do".into());
                }
                Some("consent") => {}
                _ => bail!("unexpected form at {url}:\n{}", self.trail.join("\n")),
            }
            (method, url, form) = (Method::POST, parsed.join(&action)?.to_string(), Some(fields));
        }
        bail!("more than {MAX_STEPS} steps:\n{}", self.trail.join("\n"))
    }

    /// The cookie `name` that `host` set, as `name=value`.
    pub fn cookie(&self, host: &str, name: &str) -> Option<String> {
        self.jar.get(host)?.get(name).map(|value| format!("{name}={value}"))
    }

    /// Every request of the login so far, one a line.
    pub fn trail(&self) -> String {
        self.trail.join("\n")
    }
}

/// The first `<form method="post">` of an IdP page: its action and hidden
/// inputs. Enough for oidc-provider's development templates, not for HTML
/// in general.
fn post_form(html: &str) -> Option<(String, BTreeMap<String, String>)> {
    let lower = html.to_ascii_lowercase();
    let mut from = 0;
    while let Some(start) = lower[from..].find("<form").map(|i| i + from) {
        let tag_end = lower[start..].find('>')? + start;
        from = tag_end;
        let tag = &html[start..=tag_end];
        if !attribute(tag, "method").is_some_and(|m| m.eq_ignore_ascii_case("post")) {
            continue;
        }
        let end = lower[tag_end..].find("</form").map_or(html.len(), |i| i + tag_end);
        let mut hidden = BTreeMap::new();
        let mut at = tag_end;
        while let Some(input) = lower[at..end].find("<input").map(|i| i + at) {
            let input_end = lower[input..end].find('>').map_or(end, |i| i + input + 1);
            let input_tag = &html[input..input_end];
            at = input_end;
            if attribute(input_tag, "type").is_some_and(|t| t.eq_ignore_ascii_case("hidden")) {
                if let Some(name) = attribute(input_tag, "name") {
                    hidden.insert(name, attribute(input_tag, "value").unwrap_or_default());
                }
            }
        }
        return Some((attribute(tag, "action").unwrap_or_default(), hidden));
    }
    None
}

/// The double-quoted value of attribute `name` in one tag, `&amp;` and
/// `&quot;` decoded.
fn attribute(tag: &str, name: &str) -> Option<String> {
    let needle = format!(" {name}=\"");
    let start = tag.to_ascii_lowercase().find(&needle)? + needle.len();
    let value = &tag[start..start + tag[start..].find('"')?];
    Some(value.replace("&quot;", "\"").replace("&amp;", "&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_post_form_and_its_hidden_inputs() {
        let html = r#"<form method="get" action="/nope"></form>
            <form autocomplete="off" action="/interaction/u1/login?a=1&amp;b=2" method="post">
            <input type="hidden" name="prompt" value="login"/><input required type="text" name="login">
            </form>"#;
        let (action, hidden) = post_form(html).unwrap();
        assert_eq!(action, "/interaction/u1/login?a=1&b=2");
        assert_eq!(hidden.get("prompt").map(String::as_str), Some("login"));
        assert!(!hidden.contains_key("login"));
    }
}
