//! The login-loop guard. A browser whose new session is refused at once
//! (its user terminated between the callback and the next request, an edge
//! that cannot verify what the control plane signs, …) would be sent to log
//! in again, and a live IdP session would send it straight back with
//! another session, refused again: a redirect loop that ends in
//! ERR_TOO_MANY_REDIRECTS and leaves a session per round (issue 13).
//!
//! So the callback also sets a cookie for [`FRESH_LOGIN_S`] seconds that
//! binds the new session token to its route: an HMAC with the key every edge
//! derives from the fleet key, so it reveals nothing of the token and
//! cannot be forged. A "log in" refusal of exactly that token while the
//! cookie holds renders a page instead of another automatic login, with a
//! link the person may follow to sign in again. Older sessions, and requests
//! without that token, go to login as before.
//!
//! The page is a 403: the person did authenticate, and signing in again at
//! once would not change the answer; a 401 would ask for authentication
//! (and must carry a challenge a browser has no use for).

use pingora_http::RequestHeader;
use pingora_proxy::Session;

use super::answers::answer;
use super::state::StateSealer;
use super::LoginService;
use crate::credentials::{cookie, SessionCookies};
use crate::responses::page_with_link;

/// Seconds after a login during which a refusal of its session is answered
/// with a page, not another login.
pub const FRESH_LOGIN_S: i64 = 10;

/// HMAC context of the guard's tag.
const CONTEXT: &str = "portcullis fresh login v1";

/// The `Set-Cookie` marking `token` as the session a login of `route` set
/// at `now` (Unix seconds): `<until>.<tag>`, path `/`.
fn guard_cookie(sealer: &StateSealer, jar: &SessionCookies, route: &str, token: &str, now: i64) -> String {
    let until = (now + FRESH_LOGIN_S).to_string();
    let tag = sealer.tag(CONTEXT, &[route, token, &until]);
    jar.set_cookie_named(&jar.fresh_login_name_for(route), &format!("{until}.{tag}"), "/", FRESH_LOGIN_S)
}

/// True when `head` presents `route`'s session token and the guard a login
/// set with it less than [`FRESH_LOGIN_S`] seconds ago.
fn guarded(sealer: &StateSealer, jar: &SessionCookies, head: &RequestHeader, route: &str, now: i64) -> bool {
    let Some(token) = jar.find(head, route) else { return false };
    let Some(guard) = cookie(head, &jar.fresh_login_name_for(route)) else { return false };
    let Some((until, tag)) = guard.split_once('.') else { return false };
    until.parse::<i64>().is_ok_and(|until| now < until) && sealer.verify_tag(CONTEXT, &[route, token, until], tag)
}

impl LoginService {
    /// The `Set-Cookie` of the guard for the session `token` a login of
    /// `route` just set.
    pub(super) fn fresh_login_cookie(&self, route: &str, token: &str, now: i64) -> String {
        guard_cookie(&self.sealer, &self.cookies.jar(), route, token, now)
    }

    /// True when the request presents `route`'s session token that a login
    /// set less than [`FRESH_LOGIN_S`] seconds ago.
    pub fn presents_fresh_login(&self, head: &RequestHeader, route: &str, now: i64) -> bool {
        guarded(&self.sealer, &self.cookies.jar(), head, route, now)
    }

    /// The page instead of another login: why the new session of `route`
    /// was refused, and `login_url` for the person to sign in again.
    pub async fn refused_right_after_login(
        &self,
        session: &mut Session,
        route: &str,
        why: &str,
        login_url: &str,
    ) -> pingora_core::Result<bool> {
        tracing::warn!(route, reason = why, "a session was refused right after its login: a page, not another login");
        let message = format!(
            "Your sign-in was refused right after it completed: {why} Signing in again at once would only repeat \
             this, so Portcullis stopped here. Try again in a moment; if this keeps happening, contact your \
             administrator."
        );
        let body = page_with_link("Sign-in refused", &message, Some(("Sign in again", login_url)));
        answer(session, 403, "text/html; charset=utf-8", body).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(cookie: &str) -> RequestHeader {
        let mut head = RequestHeader::build("GET", b"/hello", None).unwrap();
        head.insert_header("cookie", cookie).unwrap();
        head
    }

    /// The `name=value` of a `Set-Cookie`.
    fn pair(set_cookie: &str) -> &str {
        set_cookie.split(';').next().unwrap()
    }

    #[test]
    fn the_guard_holds_for_its_token_and_route_for_a_few_seconds() {
        let sealer = StateSealer::from_secret("secret-0123456789abcdef0123456789");
        let jar = SessionCookies::new("pc", false);
        let set = guard_cookie(&sealer, &jar, "app", "tok.en.1", 1_000);
        assert!(set.starts_with("pc_fresh.app=1010."), "{set}");
        assert!(set.contains("Max-Age=10") && set.contains("HttpOnly") && set.contains("Path=/"), "{set}");
        let guard = pair(&set);
        assert!(!guard.contains("tok.en"), "the token is not in the cookie");
        let fresh = |cookies: &str, route: &str, now| guarded(&sealer, &jar, &request(cookies), route, now);
        assert!(fresh(&format!("pc.app=tok.en.1; {guard}"), "app", 1_000));
        assert!(fresh(&format!("pc.app=tok.en.1; {guard}"), "app", 1_009));
        assert!(!fresh(&format!("pc.app=tok.en.1; {guard}"), "app", 1_010), "expired");
        assert!(!fresh(&format!("pc.app=tok.en.2; {guard}"), "app", 1_000), "another session");
        assert!(!fresh(guard, "app", 1_000), "no session");
        assert!(!fresh("pc.app=tok.en.1", "app", 1_000), "no guard");
        assert!(!fresh(&format!("pc.wiki=tok.en.1; {guard}"), "wiki", 1_000), "another route");
        let (name, value) = guard.split_once('=').unwrap();
        let (_, tag) = value.split_once('.').unwrap();
        assert!(!fresh(&format!("pc.app=tok.en.1; {name}=99999.{tag}"), "app", 1_000), "a longer life is forged");
        let other = StateSealer::from_secret("another-secret-0123456789abcdef01");
        let forged = guard_cookie(&other, &jar, "app", "tok.en.1", 1_000);
        assert!(!fresh(&format!("pc.app=tok.en.1; {}", pair(&forged)), "app", 1_000), "another key");
    }
}
