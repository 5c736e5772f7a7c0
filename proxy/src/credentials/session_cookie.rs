//! The edge's cookies on a request: finding the session cookie of a route,
//! recognising every cookie the edge owns, and removing them before the
//! request goes upstream.
//!
//! | cookie | name (`cookie_secure = true`) | name (`false`) |
//! |---|---|---|
//! | session of route `R` | `__Host-<base>.R` | `<base>.R` |
//! | login in flight | `<base>_login_<state>` | same |
//! | a login of route `R` just completed (loop guard) | `__Host-<base>_fresh.R` | `<base>_fresh.R` |
//!
//! Every name that is, without a `__Host-`/`__Secure-` prefix, `<base>` or
//! starts with `<base>.` or `<base>_` is the edge's ([`SessionCookies::is_edge_cookie`]);
//! [`SessionCookies::strip_from`] drops those and keeps the app's cookies
//! byte for byte. Parsing works on bytes, so a `Cookie` header with bytes
//! that are not visible ASCII is still stripped.

use http::header::COOKIE;
use http::HeaderValue;
use pingora_http::RequestHeader;

/// Prefix a browser accepts only on a `Secure`, `Path=/`, host-only cookie.
const HOST_PREFIX: &str = "__Host-";
/// Prefix a browser accepts only on a `Secure` cookie.
const SECURE_PREFIX: &str = "__Secure-";

/// Names and parses the edge's cookies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionCookies {
    base: String,
    secure: bool,
}

/// A session cookie the edge issued, as presented on a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresentedSession<'r> {
    /// The cookie's full name, as sent.
    pub name: &'r str,
    /// The route it is for (the name after `<base>.`).
    pub route: &'r str,
    /// Its value (never empty).
    pub value: &'r str,
}

/// The `name=value` pairs of one `Cookie` header, as byte slices: each pair
/// without the whitespace around it; a pair without `=` has an empty value.
fn pairs(header: &[u8]) -> impl Iterator<Item = (&[u8], &[u8], &[u8])> {
    header.split(|b| *b == b';').filter_map(|raw| {
        let pair = raw.trim_ascii();
        if pair.is_empty() {
            return None;
        }
        let (name, value) = match pair.iter().position(|b| *b == b'=') {
            Some(at) => (pair[..at].trim_ascii(), pair[at + 1..].trim_ascii()),
            None => (pair, &pair[pair.len()..]),
        };
        Some((pair, name, value))
    })
}

/// True when `route` is a valid route name (letters, digits, `-`, `_`, `.`).
fn valid_route(route: &str) -> bool {
    !route.is_empty() && route.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// `text` without `prefix`, compared ASCII case-insensitively (as browsers do).
fn strip_prefix_ignore_case<'t>(text: &'t [u8], prefix: &str) -> Option<&'t [u8]> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix.as_bytes()).then(|| &text[prefix.len()..])
}

impl SessionCookies {
    /// Cookies named after `base` (the `cookie_name` setting); `secure`
    /// adds `Secure` and the `__Host-` prefix to session cookies.
    pub fn new(base: &str, secure: bool) -> Self {
        Self { base: base.to_owned(), secure }
    }

    /// The configured base name.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Whether cookies are `Secure` (and session cookies `__Host-`).
    pub fn secure(&self) -> bool {
        self.secure
    }

    fn session_prefix(&self) -> &'static str {
        if self.secure {
            HOST_PREFIX
        } else {
            ""
        }
    }

    /// The session cookie name for `route`: `__Host-<base>.<route>` when
    /// secure, else `<base>.<route>`. Bytes a route name cannot hold are
    /// percent-encoded, so the name never breaks a `Set-Cookie` header.
    pub fn name_for(&self, route: &str) -> String {
        self.route_cookie_name(".", route)
    }

    /// The name of the login-loop guard of `route`
    /// (`crate::login::loop_guard`): `__Host-<base>_fresh.<route>` when
    /// secure, else `<base>_fresh.<route>`; an edge cookie, never a session.
    pub fn fresh_login_name_for(&self, route: &str) -> String {
        self.route_cookie_name("_fresh.", route)
    }

    fn route_cookie_name(&self, separator: &str, route: &str) -> String {
        let mut name = format!("{}{}{separator}", self.session_prefix(), self.base);
        for b in route.bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.') {
                name.push(b as char);
            } else {
                name.push_str(&format!("%{b:02X}"));
            }
        }
        name
    }

    /// The route a session cookie named `name` is for, if it is one.
    fn route_of<'n>(&self, name: &'n [u8]) -> Option<&'n [u8]> {
        let rest = name.strip_prefix(self.session_prefix().as_bytes())?;
        let route = rest.strip_prefix(self.base.as_bytes())?.strip_prefix(b".")?;
        (!route.is_empty()).then_some(route)
    }

    /// The value of `route`'s session cookie: every `Cookie` header is read,
    /// the name must match exactly, and empty values are skipped. On the
    /// request path: no allocation, and the separators are found with
    /// `memchr` (a session token is most of the header's bytes).
    pub fn find<'r>(&self, req: &'r RequestHeader, route: &str) -> Option<&'r str> {
        if !valid_route(route) {
            return None;
        }
        let wanted = [self.session_prefix().as_bytes(), self.base.as_bytes(), b".", route.as_bytes()];
        let is_wanted = |name: &[u8]| {
            name.len() == wanted.iter().map(|p| p.len()).sum::<usize>() && {
                let mut rest = name;
                wanted.iter().all(|part| match rest.strip_prefix(*part) {
                    Some(after) => {
                        rest = after;
                        true
                    }
                    None => false,
                })
            }
        };
        for header in req.headers.get_all(COOKIE) {
            let bytes = header.as_bytes();
            let mut start = 0;
            while start < bytes.len() {
                let end = memchr::memchr(b';', &bytes[start..]).map_or(bytes.len(), |at| start + at);
                let pair = bytes[start..end].trim_ascii();
                start = end + 1;
                let Some(eq) = memchr::memchr(b'=', pair) else { continue };
                if !is_wanted(pair[..eq].trim_ascii()) {
                    continue;
                }
                let value = pair[eq + 1..].trim_ascii();
                if let (false, Ok(value)) = (value.is_empty(), std::str::from_utf8(value)) {
                    return Some(value);
                }
            }
        }
        None
    }

    /// Every session cookie of this edge on the request (any route), in order.
    pub fn presented<'r>(&self, req: &'r RequestHeader) -> Vec<PresentedSession<'r>> {
        let mut found = Vec::new();
        for header in req.headers.get_all(COOKIE) {
            for (_, name, value) in pairs(header.as_bytes()) {
                let Some(route) = self.route_of(name) else { continue };
                if value.is_empty() {
                    continue;
                }
                if let (Ok(name), Ok(route), Ok(value)) =
                    (std::str::from_utf8(name), std::str::from_utf8(route), std::str::from_utf8(value))
                {
                    found.push(PresentedSession { name, route, value });
                }
            }
        }
        found
    }

    fn is_edge_name(&self, name: &[u8]) -> bool {
        let unprefixed = strip_prefix_ignore_case(name, HOST_PREFIX)
            .or_else(|| strip_prefix_ignore_case(name, SECURE_PREFIX))
            .unwrap_or(name);
        match unprefixed.strip_prefix(self.base.as_bytes()) {
            Some(rest) => rest.is_empty() || rest.starts_with(b".") || rest.starts_with(b"_"),
            None => false,
        }
    }

    /// True when the edge owns a cookie named `name`: `<base>`, `<base>.*`
    /// or `<base>_*`, with or without a `__Host-`/`__Secure-` prefix.
    pub fn is_edge_cookie(&self, name: &str) -> bool {
        self.is_edge_name(name.trim_ascii().as_bytes())
    }

    /// Removes the edge's cookies from every `Cookie` header, keeping the
    /// app's cookies byte for byte (joined with `; `); a header left with
    /// no cookie is removed. Headers without an edge cookie are untouched.
    pub fn strip_from(&self, req: &mut RequestHeader) {
        let headers: Vec<HeaderValue> = req.headers.get_all(COOKIE).iter().cloned().collect();
        if !headers.iter().any(|h| pairs(h.as_bytes()).any(|(_, name, _)| self.is_edge_name(name))) {
            return;
        }
        let mut kept = Vec::with_capacity(headers.len());
        for header in &headers {
            if !pairs(header.as_bytes()).any(|(_, name, _)| self.is_edge_name(name)) {
                kept.push(header.clone());
                continue;
            }
            let mut rewritten = Vec::with_capacity(header.len());
            for (pair, name, _) in pairs(header.as_bytes()) {
                if self.is_edge_name(name) {
                    continue;
                }
                if !rewritten.is_empty() {
                    rewritten.extend_from_slice(b"; ");
                }
                rewritten.extend_from_slice(pair);
            }
            // The kept bytes came from a valid header value, so this cannot fail.
            if let Ok(value) = HeaderValue::from_bytes(&rewritten) {
                if !rewritten.is_empty() {
                    kept.push(value);
                }
            }
        }
        req.remove_header(&COOKIE);
        for value in kept {
            // Appending a valid value under a valid name cannot fail.
            let _ = req.append_header(COOKIE, value);
        }
    }

    /// A `Set-Cookie` value for cookie `name` (the attributes every edge cookie carries).
    pub fn set_cookie_named(&self, name: &str, value: &str, path: &str, max_age: i64) -> String {
        let secure = if self.secure { "; Secure" } else { "" };
        format!("{name}={value}; Path={path}; Max-Age={}; HttpOnly; SameSite=Lax{secure}", max_age.max(0))
    }

    /// The `Set-Cookie` value giving `route` the session cookie `value` for `max_age` seconds.
    pub fn set_cookie_header(&self, route: &str, value: &str, max_age: i64) -> String {
        self.set_cookie_named(&self.name_for(route), value, "/", max_age)
    }

    /// The `Set-Cookie` value removing `route`'s session cookie.
    pub fn clear_cookie_header(&self, route: &str) -> String {
        self.set_cookie_named(&self.name_for(route), "", "/", 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(cookies: &[&[u8]]) -> RequestHeader {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        for cookie in cookies {
            req.append_header(COOKIE, HeaderValue::from_bytes(cookie).unwrap()).unwrap();
        }
        req
    }

    fn cookie_headers(req: &RequestHeader) -> Vec<Vec<u8>> {
        req.headers.get_all(COOKIE).iter().map(|v| v.as_bytes().to_vec()).collect()
    }

    #[test]
    fn find_refuses_look_alikes_and_other_routes() {
        let secure = SessionCookies::new("portcullis_session", true);
        let hostile = request(&[
            b"portcullis_session.app=plain; __Secure-portcullis_session.app=sec; __host-portcullis_session.app=lower",
            b"__Host-portcullis_session.app2=other; __Host-portcullis_session.ap=short; __Host-portcullis_session=legacy",
            b"__Host-portcullis_session.app=; x__Host-portcullis_session.app=pre",
        ]);
        assert_eq!(secure.find(&hostile, "app"), None, "only the exact __Host- name, with a value");
        assert_eq!(secure.find(&hostile, "app;x"), None);
        let plain = SessionCookies::new("portcullis_session", false);
        assert_eq!(plain.find(&hostile, "app"), Some("plain"));
        assert_eq!(plain.find(&request(&[b"portcullis_session.app"]), "app"), None, "no value");
    }

    #[test]
    fn find_reads_every_cookie_header() {
        let cookies = SessionCookies::new("pc", true);
        let req = request(&[b"a=1; b=2", b"c=3;__Host-pc.wiki = tok.en.sig ;d=4", b"__Host-pc.wiki=second"]);
        assert_eq!(cookies.find(&req, "wiki"), Some("tok.en.sig"));
        assert_eq!(cookies.name_for("wiki"), "__Host-pc.wiki");
        assert_eq!(SessionCookies::new("pc", false).name_for("wiki"), "pc.wiki");
        assert_eq!(cookies.name_for("a;b=c"), "__Host-pc.a%3Bb%3Dc", "never breaks a header");
        let guard = cookies.fresh_login_name_for("wiki");
        assert_eq!(guard, "__Host-pc_fresh.wiki");
        assert!(cookies.is_edge_cookie(&guard), "stripped before the upstream");
        let with_guard = request(&[format!("{guard}=1; __Host-pc.wiki=t").as_bytes()]);
        assert_eq!(cookies.find(&with_guard, "wiki"), Some("t"), "the guard is not the session");
        assert_eq!(cookies.presented(&with_guard).len(), 1);
        let non_ascii = request(&[b"caf\xc3\xa9=1; __Host-pc.wiki=t"]);
        assert_eq!(cookies.find(&non_ascii, "wiki"), Some("t"), "other cookies' bytes do not matter");
    }

    #[test]
    fn edge_cookies_are_recognised_with_any_prefix() {
        let cookies = SessionCookies::new("portcullis_session", true);
        for name in [
            "portcullis_session",
            "portcullis_session.app",
            "portcullis_session_login_abc",
            "__Host-portcullis_session.app",
            "__host-portcullis_session.app",
            "__Secure-portcullis_session_login_x",
            "__SECURE-portcullis_session",
        ] {
            assert!(cookies.is_edge_cookie(name), "{name}");
        }
        for name in ["portcullis_sessionx", "portcullis", "app", "x_portcullis_session", "__Host-other", ""] {
            assert!(!cookies.is_edge_cookie(name), "{name}");
        }
    }

    #[test]
    fn strip_removes_every_edge_cookie_and_keeps_the_apps_bytes() {
        let cookies = SessionCookies::new("portcullis_session", true);
        let mut req = request(&[
            b"__Host-portcullis_session.app=tok; app_sid=\"q=1\";  theme=dark ",
            b"portcullis_session.ssh=x;portcullis_session_login_s=y",
            b"caf\xc3\xa9=\xff; __Secure-portcullis_session=z",
            b"untouched=1;;  spaced = 2",
            b"portcullis_session",
        ]);
        cookies.strip_from(&mut req);
        assert_eq!(
            cookie_headers(&req),
            vec![
                b"app_sid=\"q=1\"; theme=dark".to_vec(),
                b"caf\xc3\xa9=\xff".to_vec(),
                b"untouched=1;;  spaced = 2".to_vec(),
            ]
        );
        let mut only_edge = request(&[b"__Host-portcullis_session.app=tok"]);
        cookies.strip_from(&mut only_edge);
        assert!(only_edge.headers.get(COOKIE).is_none(), "an emptied header is removed");
        let mut none = request(&[b"a=1 ;b=2"]);
        cookies.strip_from(&mut none);
        assert_eq!(cookie_headers(&none), vec![b"a=1 ;b=2".to_vec()], "untouched when nothing is the edge's");
    }

    #[test]
    fn presented_lists_session_cookies_of_every_route() {
        let cookies = SessionCookies::new("pc", false);
        let req = request(&[b"pc.wiki=a; pc_login_s=b; pc.=c; pc.ssh=; x=1", b"pc.grafana=d"]);
        let found: Vec<_> = cookies.presented(&req).into_iter().map(|p| (p.name, p.route, p.value)).collect();
        assert_eq!(found, vec![("pc.wiki", "wiki", "a"), ("pc.grafana", "grafana", "d")]);
    }

    #[test]
    fn set_cookie_headers_carry_the_prefix_rules() {
        let secure = SessionCookies::new("pc", true);
        assert_eq!(
            secure.set_cookie_header("wiki", "tok", 60),
            "__Host-pc.wiki=tok; Path=/; Max-Age=60; HttpOnly; SameSite=Lax; Secure"
        );
        assert_eq!(
            SessionCookies::new("pc", false).clear_cookie_header("wiki"),
            "pc.wiki=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax"
        );
    }
}
