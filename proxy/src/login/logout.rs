//! `/.portcullis/logout`: a cross-site link or image must not end anyone's
//! session, so a GET only shows a confirmation form and only a POST ends
//! sessions.
//!
//! ```text
//! GET  → nonce cookie N (random, HttpOnly) + form with csrf = HMAC(key; N, session cookie values)
//! POST csrf=… → N and the session cookies still match the tag → every session cookie of this
//!               host ended at the control plane and cleared → on to the IdP's end-session endpoint
//! POST with Authorization: Bearer <session token> → that session ended (no form: a cross-site
//!               form cannot set Authorization)
//! ```
//!
//! The tag is a double-submit token bound by an HMAC whose key every edge
//! derives from the fleet key, so a cookie tossed in from a sibling
//! domain is worthless without a tag for it, and a tag is worthless without
//! the victim's HttpOnly session cookies. A POST whose `Origin` names
//! another site is refused before the form is read.

use bytes::Bytes;
use pingora_http::ResponseHeader;
use pingora_proxy::Session;
use portcullis_policy::{CredentialKind, Snapshot};

use super::answers::{answer, redirect_with};
use super::state::StateSealer;
use super::{LoginService, RequestInfo};
use crate::authority_client::AuthorityError;
use crate::credentials::{cookie, PresentedSession, SessionCookies};
use crate::responses::{escape_html, respond, FAVICON_LINK};

/// HMAC context of logout CSRF tags.
const CSRF_CONTEXT: &str = "portcullis logout csrf v1";
/// Form field carrying the tag.
const CSRF_FIELD: &str = "csrf";
/// Seconds a confirmation form stays usable.
const FORM_TTL_S: i64 = 600;
/// Largest logout form body.
const MAX_FORM_BODY: usize = 16 * 1024;

/// The name of the cookie holding the confirmation form's nonce
/// (`<base>_logout`, an edge cookie; `__Host-` when cookies are Secure).
pub fn nonce_cookie_name(cookies: &SessionCookies) -> String {
    let prefix = if cookies.secure() { "__Host-" } else { "" };
    format!("{prefix}{}_logout", cookies.base())
}

/// The tag a logout form must carry, given the nonce cookie and the session cookies presented.
pub fn csrf_tag(sealer: &StateSealer, nonce: &str, sessions: &[PresentedSession<'_>]) -> String {
    sealer.tag(CSRF_CONTEXT, &tag_parts(nonce, sessions))
}

/// True when `tag` is the [`csrf_tag`] of `nonce` and `sessions`.
pub fn csrf_valid(sealer: &StateSealer, nonce: &str, sessions: &[PresentedSession<'_>], tag: &str) -> bool {
    !nonce.is_empty() && sealer.verify_tag(CSRF_CONTEXT, &tag_parts(nonce, sessions), tag)
}

fn tag_parts<'s>(nonce: &'s str, sessions: &[PresentedSession<'s>]) -> Vec<&'s str> {
    let mut values: Vec<&str> = sessions.iter().map(|s| s.value).collect();
    values.sort_unstable();
    std::iter::once(nonce).chain(values).collect()
}

/// True when `origin` (the `Origin` header) is this site, or absent.
fn same_origin(origin: Option<&str>, info: &RequestInfo<'_>) -> bool {
    match origin {
        None => true,
        Some(origin) => origin.eq_ignore_ascii_case(&format!("{}://{}", info.scheme, info.authority)),
    }
}

fn confirmation_page(host: &str, tag: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Log out</title>\
         <meta name=\"viewport\" content=\"width=device-width\">{FAVICON_LINK}</head>\
         <body style=\"font-family:system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem\">\
         <h1>Log out</h1><p>Log out of {host}?</p>\
         <form method=\"post\" action=\"/.portcullis/logout\">\
         <input type=\"hidden\" name=\"{CSRF_FIELD}\" value=\"{tag}\">\
         <button type=\"submit\">Log out</button></form>\
         <p style=\"color:#666\">Portcullis</p></body></html>",
        host = escape_html(host),
        tag = escape_html(tag),
    )
}

impl LoginService {
    /// `GET /.portcullis/logout`: the confirmation form.
    pub(super) async fn logout_form(
        &self,
        session: &mut Session,
        info: &RequestInfo<'_>,
    ) -> pingora_core::Result<bool> {
        let jar = self.cookies.jar();
        let nonce =
            base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, rand::random::<[u8; 32]>());
        let tag = csrf_tag(&self.sealer, &nonce, &jar.presented(session.req_header()));
        let body = confirmation_page(info.host, &tag);
        let mut header = ResponseHeader::build(200, Some(6))?;
        header.insert_header("content-type", "text/html; charset=utf-8")?;
        header.insert_header("content-length", body.len().to_string())?;
        header.insert_header("cache-control", "no-store")?;
        header.insert_header("x-frame-options", "DENY")?;
        header.insert_header("content-security-policy", "frame-ancestors 'none'")?;
        header.append_header("set-cookie", jar.set_cookie_named(&nonce_cookie_name(&jar), &nonce, "/", FORM_TTL_S))?;
        session.write_response_header(Box::new(header), false).await?;
        session.write_response_body(Some(Bytes::from(body)), true).await?;
        Ok(true)
    }

    /// `POST /.portcullis/logout`.
    pub(super) async fn logout(
        &self,
        session: &mut Session,
        snapshot: &Snapshot,
        info: &RequestInfo<'_>,
    ) -> pingora_core::Result<bool> {
        if let Some(token) = bearer(session).map(str::to_owned) {
            return self.logout_bearer(session, snapshot, info, &token).await;
        }
        let refuse = "This logout form is stale or did not come from this site; open /.portcullis/logout and \
                      confirm again.";
        let origin = session.req_header().headers.get(http::header::ORIGIN).and_then(|v| v.to_str().ok());
        if !same_origin(origin, info) {
            respond(session, 403, "csrf", "Logout refused", refuse, &[]).await?;
            return Ok(true);
        }
        let mut body = Vec::new();
        while let Some(chunk) = session.read_request_body().await? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_FORM_BODY {
                respond(session, 413, "body_too_large", "Logout refused", "The form is too large.", &[]).await?;
                return Ok(true);
            }
        }
        let tag = url::form_urlencoded::parse(&body).find(|(k, _)| k == CSRF_FIELD).map(|(_, v)| v.into_owned());
        let jar = self.cookies.jar();
        let nonce_name = nonce_cookie_name(&jar);
        let req = session.req_header();
        let presented = jar.presented(req);
        let valid = tag.is_some_and(|tag| {
            cookie(req, &nonce_name).is_some_and(|nonce| csrf_valid(&self.sealer, nonce, &presented, &tag))
        });
        if !valid {
            respond(session, 403, "csrf", "Logout refused", refuse, &[]).await?;
            return Ok(true);
        }
        let tokens: Vec<(String, String)> = presented.iter().map(|p| (p.name.to_owned(), p.value.to_owned())).collect();
        let legacy = cookie(req, jar.base()).is_some();
        for (_, token) in &tokens {
            if let Err(message) = self.end_session(snapshot, info, token).await {
                return Self::unavailable(session, message).await;
            }
        }
        let mut clear: Vec<String> = tokens.iter().map(|(name, _)| jar.set_cookie_named(name, "", "/", 0)).collect();
        clear.push(jar.set_cookie_named(&nonce_name, "", "/", 0));
        if legacy {
            clear.push(jar.set_cookie_named(jar.base(), "", "/", 0));
        }
        tracing::info!(sessions = tokens.len(), host = info.host, "logged out at the edge");
        match self.end_session_url().await {
            Some(location) => redirect_with(session, 303, &location, &clear).await,
            None => {
                let body = crate::responses::page("Logged out", "You have been logged out.");
                let mut header = ResponseHeader::build(200, Some(3 + clear.len()))?;
                header.insert_header("content-type", "text/html; charset=utf-8")?;
                header.insert_header("content-length", body.len().to_string())?;
                header.insert_header("cache-control", "no-store")?;
                for cookie in &clear {
                    header.append_header("set-cookie", cookie.as_str())?;
                }
                session.write_response_header(Box::new(header), false).await?;
                session.write_response_body(Some(Bytes::from(body)), true).await?;
                Ok(true)
            }
        }
    }

    /// A POST with the session token as Bearer: ends that session.
    async fn logout_bearer(
        &self,
        session: &mut Session,
        snapshot: &Snapshot,
        info: &RequestInfo<'_>,
        token: &str,
    ) -> pingora_core::Result<bool> {
        let Ok((identity, _)) = self.sessions.verify(token, CredentialKind::Browser, snapshot.signing_keys(), info.now)
        else {
            let message = "The session token is invalid or has expired.";
            respond(session, 401, "invalid_token", "Logout", message, &[]).await?;
            return Ok(true);
        };
        if let Err(message) = self.end_session(snapshot, info, token).await {
            return Self::unavailable(session, message).await;
        }
        let sid = identity.session_id().map(|s| s.to_string()).unwrap_or_default();
        let body = serde_json::json!({ "state": "ended", "session_id": sid });
        answer(session, 200, "application/json", body.to_string()).await
    }

    /// Ends the session `token` stands for at the control plane (nothing for
    /// an invalid token); `Err` when the control plane cannot be reached.
    async fn end_session(&self, snapshot: &Snapshot, info: &RequestInfo<'_>, token: &str) -> Result<(), &'static str> {
        let verified = self.sessions.verify(token, CredentialKind::Browser, snapshot.signing_keys(), info.now);
        let Some(sid) = verified.ok().and_then(|(identity, _)| identity.session_id()) else { return Ok(()) };
        match self.authority.logout(&sid.to_string()).await {
            Ok(()) | Err(AuthorityError::Refused { .. }) => Ok(()),
            Err(AuthorityError::Unavailable(error)) => {
                tracing::warn!(%error, "logout failed: control plane unavailable");
                Err("Your session could not be ended because the Portcullis control plane cannot be reached; it is \
                     still active. Try again in a moment.")
            }
        }
    }

    /// The IdP's end-session URL (RP-initiated logout), if it has one.
    async fn end_session_url(&self) -> Option<String> {
        let provider = self.provider.as_ref()?;
        let end = provider.discovered().await.ok()?.end_session_endpoint.clone()?;
        let mut url = url::Url::parse(&end).ok()?;
        url.query_pairs_mut().append_pair("client_id", &provider.settings.client_id);
        if let Some(after) = &provider.settings.post_logout_redirect_url {
            url.query_pairs_mut().append_pair("post_logout_redirect_uri", after);
        }
        Some(url.to_string())
    }
}

/// The `Authorization: Bearer` token, if the request carries one.
pub(super) fn bearer(session: &Session) -> Option<&str> {
    crate::credentials::bearer_token(session.req_header(), http::header::AUTHORIZATION)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer() -> StateSealer {
        StateSealer::from_secret("secret-0123456789abcdef0123456789")
    }

    fn sessions<'a>(values: &[&'a str]) -> Vec<PresentedSession<'a>> {
        values.iter().map(|value| PresentedSession { name: "pc.app", route: "app", value }).collect()
    }

    #[test]
    fn a_forged_or_transplanted_tag_is_refused() {
        let sealer = sealer();
        let tag = csrf_tag(&sealer, "nonce-1", &sessions(&["tok-a"]));
        assert!(!csrf_valid(&sealer, "nonce-2", &sessions(&["tok-a"]), &tag), "another nonce cookie");
        assert!(!csrf_valid(&sealer, "nonce-1", &sessions(&["tok-b"]), &tag), "another browser's sessions");
        assert!(!csrf_valid(&sealer, "nonce-1", &sessions(&[]), &tag));
        assert!(!csrf_valid(&sealer, "", &sessions(&["tok-a"]), &csrf_tag(&sealer, "", &sessions(&["tok-a"]))));
        assert!(!csrf_valid(&sealer, "nonce-1", &sessions(&["tok-a"]), ""));
        let other = StateSealer::from_secret("another-secret-0123456789abcdef01");
        assert!(!csrf_valid(
            &sealer,
            "nonce-1",
            &sessions(&["tok-a"]),
            &csrf_tag(&other, "nonce-1", &sessions(&["tok-a"]))
        ));
        assert!(csrf_valid(&sealer, "nonce-1", &sessions(&["tok-a"]), &tag));
    }

    #[test]
    fn the_tag_does_not_depend_on_cookie_order() {
        let sealer = sealer();
        let tag = csrf_tag(&sealer, "n", &sessions(&["a", "b"]));
        assert!(csrf_valid(&sealer, "n", &sessions(&["b", "a"]), &tag));
    }

    #[test]
    fn only_this_site_is_the_same_origin() {
        let info = RequestInfo {
            host: "app.example",
            authority: "app.example:8443",
            scheme: "https",
            client_ip: String::new(),
            now: 0,
        };
        assert!(same_origin(None, &info));
        assert!(same_origin(Some("https://app.example:8443"), &info));
        for hostile in ["https://evil.example", "http://app.example:8443", "https://app.example", "null"] {
            assert!(!same_origin(Some(hostile), &info), "{hostile}");
        }
    }

    #[test]
    fn the_nonce_cookie_is_an_edge_cookie() {
        for secure in [true, false] {
            let jar = SessionCookies::new("portcullis_session", secure);
            assert!(jar.is_edge_cookie(&nonce_cookie_name(&jar)));
        }
        assert_eq!(nonce_cookie_name(&SessionCookies::new("pc", true)), "__Host-pc_logout");
    }
}
