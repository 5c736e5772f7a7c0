//! A scripted browser for the login tests: a cookie jar, redirects followed
//! by hand (each hop recorded), and the IdP's HTML forms (login, consent,
//! logout, device approval) found and submitted like a user would.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use reqwest::cookie::{CookieStore, Jar};
use reqwest::{Method, Url};

use crate::idp::Idp;

/// Most redirects or forms one browser step follows.
const MAX_STEPS: usize = 30;

/// One HTTP exchange of a [`Browser`].
#[derive(Clone, Debug)]
pub struct Hop {
    /// `GET` or `POST`.
    pub method: String,
    /// The URL requested.
    pub url: String,
    /// The status answered.
    pub status: u16,
    /// The `Location` header, resolved against `url`.
    pub location: Option<String>,
    /// Every `Set-Cookie` header.
    pub set_cookies: Vec<String>,
}

impl fmt::Display for Hop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} -> {}", self.method, self.url, self.status)?;
        if let Some(location) = &self.location {
            write!(f, " -> {location}")?;
        }
        for cookie in &self.set_cookies {
            write!(f, "\n    set-cookie: {cookie}")?;
        }
        Ok(())
    }
}

/// Where [`Browser::follow`] stopped: the first answer that is not a
/// redirect.
#[derive(Debug)]
pub struct FinalResponse {
    /// The URL of the last request.
    pub url: String,
    /// Its status.
    pub status: u16,
    /// Its body as text.
    pub body: String,
    /// Every exchange, the last one included.
    pub hops: Vec<Hop>,
}

/// A scripted browser: a cookie jar, redirects followed by hand (each hop
/// recorded), and the IdP's development login, consent and logout forms
/// submitted like a user would.
pub struct Browser {
    http: reqwest::Client,
    jar: Arc<Jar>,
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Browser {
    /// A browser with an empty cookie jar.
    pub fn new() -> Self {
        Self::resolving(&[])
    }

    /// A browser that resolves each of `hosts` (e.g. `wiki.corp.example`)
    /// to 127.0.0.1, so `http://wiki.corp.example:PORT/` reaches a local
    /// edge with the right `Host` header and cookie domain.
    pub fn resolving(hosts: &[&str]) -> Self {
        let jar = Arc::new(Jar::default());
        // Like a browser navigating: edges answer HTML clients with redirects.
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::ACCEPT, reqwest::header::HeaderValue::from_static("text/html,*/*;q=0.8"));
        let mut builder = reqwest::Client::builder()
            .default_headers(headers)
            .cookie_provider(jar.clone())
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30));
        for host in hosts {
            builder = builder.resolve(host, SocketAddr::from(([127, 0, 0, 1], 0)));
        }
        Self { http: builder.build().expect("browser HTTP client"), jar }
    }

    /// The underlying client (same cookie jar, redirects not followed).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The `Cookie` header the browser would send to `url` (empty if none).
    pub fn cookies(&self, url: &str) -> String {
        let url = Url::parse(url).expect("cookie URL");
        self.jar.cookies(&url).map(|v| v.to_str().expect("cookie header text").to_owned()).unwrap_or_default()
    }

    /// One request; returns the hop and the body.
    async fn send(&self, method: Method, url: &str, form: Option<&BTreeMap<String, String>>) -> (Hop, String) {
        let mut request = self.http.request(method.clone(), url);
        if let Some(form) = form {
            request = request.form(form);
        }
        let response = request.send().await.unwrap_or_else(|e| panic!("browser: {method} {url}: {e}"));
        let status = response.status().as_u16();
        let headers = response.headers();
        let location = headers.get(reqwest::header::LOCATION).map(|value| {
            let value = value.to_str().expect("Location is text");
            Url::parse(url).and_then(|base| base.join(value)).expect("Location is a URL").to_string()
        });
        let set_cookies = headers
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        let body = response.text().await.unwrap_or_default();
        (Hop { method: method.to_string(), url: url.to_owned(), status, location, set_cookies }, body)
    }

    /// GETs `url` and follows redirects until an answer that is not one.
    pub async fn follow(&self, url: &str) -> FinalResponse {
        let mut hops = Vec::new();
        let mut url = url.to_owned();
        for _ in 0..MAX_STEPS {
            let (hop, body) = self.send(Method::GET, &url, None).await;
            let next = hop.location.clone().filter(|_| is_redirect(hop.status));
            hops.push(hop);
            match next {
                Some(location) => url = location,
                None => {
                    let status = hops.last().map_or(0, |hop| hop.status);
                    return FinalResponse { url, status, body, hops };
                }
            }
        }
        panic!("browser: more than {MAX_STEPS} redirects:\n{}", trail(&hops));
    }

    /// Logs `user` in at the IdP, starting at `start_url` (a relying-party
    /// URL that redirects to the authorization endpoint, or an authorization
    /// URL): follows redirects, submits the login form (any password) and
    /// the consent form, and returns the first redirect `Location` that
    /// starts with `stop_at_prefix` — without requesting it. If the IdP
    /// session already exists, no form is shown.
    pub async fn login_at_idp(&self, start_url: &str, user: &str, stop_at_prefix: &str) -> String {
        self.drive(start_url, stop_at_prefix, |form, hops| match form.hidden.get("prompt").map(String::as_str) {
            Some("login") => {
                let posted = hops.iter().filter(|hop| hop.method == "POST" && hop.url.ends_with("/login")).count();
                assert!(
                    posted == 0,
                    "the IdP showed its login form again after logging in {user:?} (known users: alice, bob, \
                     mallory):\n{}",
                    trail(hops)
                );
                let mut fields = form.hidden.clone();
                fields.insert("login".into(), user.into());
                fields.insert("password".into(), "any password will do".into());
                fields
            }
            Some("consent") => form.hidden.clone(),
            _ => panic!("browser: unexpected form at {}:\n{}", form.action, trail(hops)),
        })
        .await
    }

    /// Approves a device login (RFC 8628) as `user`: opens the
    /// `verification_uri_complete` the device was given, confirms the code,
    /// logs in and consents, and returns the page that says it succeeded.
    pub async fn approve_device(&self, verification_uri_complete: &str, user: &str) -> String {
        let mut hops: Vec<Hop> = Vec::new();
        let (mut method, mut url, mut form) = (Method::GET, verification_uri_complete.to_owned(), None);
        for _ in 0..MAX_STEPS {
            let (hop, body) = self.send(method.clone(), &url, form.as_ref()).await;
            let (status, location) = (hop.status, hop.location.clone());
            hops.push(hop);
            if let Some(location) = location.filter(|_| is_redirect(status)) {
                (method, url, form) = (Method::GET, location, None);
                continue;
            }
            let Some(found) = Form::parse(&body, &url) else {
                assert_eq!(status, 200, "browser: device login failed at {url}:\n{}\n{body}", trail(&hops));
                assert!(body.contains("Success"), "browser: not the success page:\n{}\n{body}", trail(&hops));
                return body;
            };
            let mut fields = found.hidden.clone();
            match fields.get("prompt").map(String::as_str) {
                Some("login") => {
                    fields.insert("login".into(), user.into());
                    fields.insert("password".into(), "any password will do".into());
                }
                Some("consent") => {}
                // The code passed on (an auto-submitted form), then confirmed.
                _ => assert!(
                    fields.contains_key("user_code") && fields.contains_key("xsrf"),
                    "browser: unexpected form at {}:\n{}",
                    found.action,
                    trail(&hops)
                ),
            }
            (method, url, form) = (Method::POST, found.action, Some(fields));
        }
        panic!("browser: more than {MAX_STEPS} steps approving a device login:\n{}", trail(&hops));
    }

    /// RP-initiated logout: GETs the IdP's end-session endpoint with
    /// `params` (e.g. `id_token_hint`, `post_logout_redirect_uri`, `state`)
    /// and confirms with `logout=yes`, which ends the IdP session and makes
    /// the IdP send back-channel logout tokens (before it answers). Returns
    /// where the browser was sent: the `post_logout_redirect_uri` (not
    /// requested) or the IdP's success page.
    pub async fn logout_at_idp(&self, idp: &Idp, params: &[(&str, &str)]) -> String {
        let mut url = Url::parse(&idp.endpoint("end_session_endpoint")).expect("end-session endpoint URL");
        if !params.is_empty() {
            url.query_pairs_mut().extend_pairs(params);
        }
        let stop = params.iter().find(|(name, _)| *name == "post_logout_redirect_uri").map(|(_, uri)| *uri);
        self.confirm_logout(url.as_str(), stop.unwrap_or(&format!("{}/session/end/success", idp.issuer()))).await
    }

    /// Follows `start_url` (e.g. a relying party's logout URL that redirects
    /// to the IdP's end-session endpoint), confirms the IdP's logout form
    /// with `logout=yes` and returns the first redirect `Location` that
    /// starts with `stop_at_prefix`, without requesting it.
    pub async fn confirm_logout(&self, start_url: &str, stop_at_prefix: &str) -> String {
        self.drive(start_url, stop_at_prefix, |form, hops| {
            assert!(form.hidden.contains_key("xsrf"), "browser: not the IdP's logout form:\n{}", trail(hops));
            let mut fields = form.hidden.clone();
            fields.entry("logout".into()).or_insert_with(|| "yes".into());
            fields
        })
        .await
    }

    /// Follows redirects from `start_url`, posting each HTML form with the
    /// fields `fill` returns, until a `Location` starts with `stop_at_prefix`.
    async fn drive<F>(&self, start_url: &str, stop_at_prefix: &str, fill: F) -> String
    where
        F: Fn(&Form, &[Hop]) -> BTreeMap<String, String>,
    {
        let mut hops: Vec<Hop> = Vec::new();
        let (mut method, mut url, mut form) = (Method::GET, start_url.to_owned(), None);
        for _ in 0..MAX_STEPS {
            let (hop, body) = self.send(method.clone(), &url, form.as_ref()).await;
            let status = hop.status;
            let location = hop.location.clone();
            hops.push(hop);
            if let Some(location) = location.filter(|_| is_redirect(status)) {
                if location.starts_with(stop_at_prefix) {
                    return location;
                }
                (method, url, form) = (Method::GET, location, None);
                continue;
            }
            let Some(found) = Form::parse(&body, &url) else {
                panic!(
                    "browser: stopped at {url} ({status}) before reaching {stop_at_prefix}:\n{}\n{body}",
                    trail(&hops)
                );
            };
            let fields = fill(&found, &hops);
            (method, url, form) = (Method::POST, found.action, Some(fields));
        }
        panic!("browser: more than {MAX_STEPS} steps without reaching {stop_at_prefix}:\n{}", trail(&hops));
    }
}

fn is_redirect(status: u16) -> bool {
    matches!(status, 301 | 302 | 303 | 307 | 308)
}

fn trail(hops: &[Hop]) -> String {
    hops.iter().map(|hop| format!("  {hop}")).collect::<Vec<_>>().join("\n")
}

/// The first POST form of a page: its absolute action and hidden inputs.
#[derive(Debug)]
struct Form {
    action: String,
    hidden: BTreeMap<String, String>,
}

impl Form {
    /// Finds the first `<form method="post">` of `html` (served at `url`).
    /// Good enough for the IdP's own templates, not for HTML in general.
    fn parse(html: &str, url: &str) -> Option<Self> {
        let lower = html.to_ascii_lowercase();
        let mut from = 0;
        while let Some(start) = lower[from..].find("<form").map(|i| i + from) {
            let tag_end = lower[start..].find('>')? + start;
            let tag = &html[start..=tag_end];
            from = tag_end;
            if !attribute(tag, "method").is_some_and(|m| m.eq_ignore_ascii_case("post")) {
                continue;
            }
            let action = attribute(tag, "action").unwrap_or_default();
            let action = Url::parse(url).and_then(|base| base.join(&action)).ok()?.to_string();
            let end = lower[tag_end..].find("</form").map_or(html.len(), |i| i + tag_end);
            let mut hidden = BTreeMap::new();
            let mut at = tag_end;
            while let Some(input) = lower[at..end].find("<input").map(|i| i + at) {
                let input_end = lower[input..end].find('>').map_or(end, |i| i + input + 1);
                let tag = &html[input..input_end];
                at = input_end;
                if attribute(tag, "type").is_some_and(|t| t.eq_ignore_ascii_case("hidden")) {
                    if let Some(name) = attribute(tag, "name") {
                        hidden.insert(name, attribute(tag, "value").unwrap_or_default());
                    }
                }
            }
            return Some(Self { action, hidden });
        }
        None
    }
}

/// The value of attribute `name` in one tag (double- or single-quoted),
/// with HTML character references decoded.
fn attribute(tag: &str, name: &str) -> Option<String> {
    let lower = tag.to_ascii_lowercase();
    let mut from = 0;
    while let Some(i) = lower[from..].find(name).map(|i| i + from) {
        from = i + name.len();
        let before = lower[..i].chars().next_back();
        if !before.is_some_and(char::is_whitespace) {
            continue;
        }
        let rest = tag[from..].trim_start();
        let Some(rest) = rest.strip_prefix('=') else { continue };
        let rest = rest.trim_start();
        let quote = rest.chars().next()?;
        let value = if quote == '"' || quote == '\'' {
            let rest = &rest[1..];
            &rest[..rest.find(quote)?]
        } else {
            &rest[..rest.find(|c: char| c.is_whitespace() || c == '>' || c == '/').unwrap_or(rest.len())]
        };
        return Some(decode_entities(value));
    }
    None
}

fn decode_entities(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let decoded = rest.find(';').and_then(|end| {
            let entity = &rest[1..end];
            let c = match entity {
                "amp" => Some('&'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                "lt" => Some('<'),
                "gt" => Some('>'),
                _ => entity
                    .strip_prefix("#x")
                    .or_else(|| entity.strip_prefix("#X"))
                    .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                    .or_else(|| entity.strip_prefix('#').and_then(|dec| dec.parse().ok()))
                    .and_then(char::from_u32),
            };
            c.map(|c| (c, end + 1))
        });
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_post_form_and_its_hidden_inputs() {
        let html = r#"<form method="get" action="/nope"></form>
            <form autocomplete="off" action="http://127.0.0.1:9/interaction/u1/login?a=1&amp;b=2" method="post">
              <input type="hidden" name="prompt" value="login"/>
              <input required type="text" name="login" placeholder="Enter any login" autofocus="on">
            </form>"#;
        let form = Form::parse(html, "http://127.0.0.1:9/interaction/u1").expect("a form");
        assert_eq!(form.action, "http://127.0.0.1:9/interaction/u1/login?a=1&b=2");
        assert_eq!(form.hidden, BTreeMap::from([("prompt".to_owned(), "login".to_owned())]));
    }

    #[test]
    fn resolves_relative_actions_and_decodes_values() {
        let html = r#"<FORM id="op.logoutForm" method="POST" action="/session/end/confirm"><input type="hidden" name="xsrf" value="a&#x2F;b&#47;c"/></FORM>"#;
        let form = Form::parse(html, "http://127.0.0.1:9/session/end?x=1").expect("a form");
        assert_eq!(form.action, "http://127.0.0.1:9/session/end/confirm");
        assert_eq!(form.hidden["xsrf"], "a/b/c");
        assert!(Form::parse("<p>no form</p>", "http://127.0.0.1:9/").is_none());
    }

    #[test]
    fn attribute_names_match_whole_words_only() {
        assert_eq!(attribute(r#"<input data-name="x" name='y'>"#, "name").as_deref(), Some("y"));
        assert_eq!(attribute("<input type=hidden>", "type").as_deref(), Some("hidden"));
        assert_eq!(attribute("<input>", "value"), None);
    }
}
