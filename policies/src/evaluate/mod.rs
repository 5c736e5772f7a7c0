//! `evaluate(&Snapshot, &Facts) -> Decision`: the one function that decides
//! every request and flow, on the edge and in `policy explain` alike.
//!
//! Order: revocations (terminated session, locked user, tokens revoked for
//! the user, revoked token id) → the user's group override → route lookup →
//! first matching rule → default deny. It does not allocate unless the host
//! is not lowercase, a `case_insensitive_paths` route gets a path with upper
//! case, or the snapshot overrides the groups of the identity's token (a
//! [`crate::snapshot::GroupsOverride`]: the identity is copied with the new
//! groups, and everything after the revocations judges that copy).
//!
//! When no rule matches a logged-in caller, one more scan (on that path only)
//! asks whether a fresh login would help: if the first rule matching with
//! `logged_in_within` / `max_session_age` left out is an allow rule, the
//! answer is [`Outcome::LoginRequired`] with [`Reason::LoginTooOld`] instead
//! of a bare default deny.

use std::borrow::Cow;
use std::fmt;

use crate::conditions::{method_bit, RequestFacts};
use crate::duration::format_seconds;
use crate::facts::{Facts, Identity, Target};
use crate::policy::{Route, Rule, RuleEffect};
use crate::request_target::lowercase_path;
use crate::snapshot::{Lock, Snapshot, UserDenial};

/// The verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Forward the request or open the flow.
    Allow,
    /// Refuse it.
    Deny,
    /// No login was presented and no public rule allows the request, or the
    /// login presented is too old for the rule that would allow it.
    LoginRequired,
}

/// Why the verdict was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// A rule matched; its effect decided.
    RuleMatched,
    /// No rule of the route matched a logged-in caller (default deny).
    NoRuleMatched,
    /// No rule matched a logged-in caller, but a rule would allow the request
    /// after a fresh login: its `logged_in_within` / `max_session_age` limit
    /// has lapsed ([`Decision::rule`] is that rule).
    LoginTooOld,
    /// No rule allows anonymous access and no login was presented.
    LoginRequired,
    /// No route serves the host and path (or CONNECT name).
    NoRoute,
    /// The path has dot segments, doubled or encoded separators.
    PathNotNormalized,
    /// The session was terminated.
    SessionTerminated,
    /// The user is locked.
    UserLocked,
    /// The token predates a terminate-all for the user.
    UserTokensRevoked,
    /// The token id was revoked.
    TokenRevoked,
    /// The control-plane key that signed the token was revoked.
    SigningKeyRevoked,
}

/// A decision with what made it, borrowing names from the snapshot.
#[derive(Debug, Clone, Copy)]
pub struct Decision<'s> {
    /// Allow, deny or login required.
    pub outcome: Outcome,
    /// Why.
    pub reason: Reason,
    /// The route that served the request, when one did.
    pub route: Option<&'s Route>,
    /// The rule that decided, when one did; for [`Reason::LoginTooOld`], the
    /// rule a fresh login would satisfy.
    pub rule: Option<&'s Rule>,
    /// The lock, for [`Reason::UserLocked`].
    pub lock: Option<&'s Lock>,
}

impl Outcome {
    /// `allow`, `deny` or `login-required`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::LoginRequired => "login-required",
        }
    }
}

impl<'s> Decision<'s> {
    fn revoked(reason: Reason, lock: Option<&'s Lock>) -> Self {
        Self { outcome: Outcome::Deny, reason, route: None, rule: None, lock }
    }

    /// True for [`Outcome::Allow`].
    pub fn is_allowed(&self) -> bool {
        self.outcome == Outcome::Allow
    }

    /// For [`Reason::LoginTooOld`]: how recent, in seconds, a login must be
    /// for the rule a fresh login would satisfy (its strictest
    /// `logged_in_within` / `max_session_age`). A login redirect should ask
    /// the IdP to authenticate again (OIDC `max_age` of at most this, or
    /// `prompt=login`): an IdP session would otherwise hand back the same
    /// old `auth_time`.
    pub fn login_max_age(&self) -> Option<u32> {
        if self.reason != Reason::LoginTooOld {
            return None;
        }
        self.rule.and_then(|rule| rule.blocks.iter().filter_map(|b| b.login_age_limit()).min())
    }
}

/// Decides one request or flow.
pub fn evaluate<'s>(snapshot: &'s Snapshot, facts: &Facts<'_>) -> Decision<'s> {
    if let Some(identity) = facts.identity {
        if identity.session_id.is_some_and(|sid| snapshot.terminated_sessions.contains(&sid)) {
            return Decision::revoked(Reason::SessionTerminated, None);
        }
        match snapshot.users.check(identity, facts.now) {
            Some(UserDenial::Locked(lock)) => return Decision::revoked(Reason::UserLocked, Some(lock)),
            Some(UserDenial::TokenRevoked) => return Decision::revoked(Reason::UserTokensRevoked, None),
            None => {}
        }
        if identity.token_id.as_ref().is_some_and(|jti| snapshot.revoked_tokens.contains(jti)) {
            return Decision::revoked(Reason::TokenRevoked, None);
        }
        // Cached identities too: a token dies the moment its key is no
        // longer published, whatever cache it sits in.
        if identity.signing_key().is_some_and(|kid| !snapshot.signing_keys().iter().any(|k| *k.kid == *kid)) {
            return Decision::revoked(Reason::SigningKeyRevoked, None);
        }
        if let Some(groups) = snapshot.users.groups_override(identity) {
            return with_overridden_groups(snapshot, facts, identity, &groups.groups);
        }
    }
    decide(snapshot, facts)
}

/// [`decide`] for an identity whose token's groups the snapshot replaced.
#[cold]
#[inline(never)]
fn with_overridden_groups<'s>(
    snapshot: &'s Snapshot,
    facts: &Facts<'_>,
    identity: &Identity,
    groups: &[String],
) -> Decision<'s> {
    let overridden = identity.with_groups(groups);
    decide(snapshot, &Facts { identity: Some(&overridden), ..*facts })
}

/// Route lookup, first matching rule, default deny: everything after the
/// revocation checks.
fn decide<'s>(snapshot: &'s Snapshot, facts: &Facts<'_>) -> Decision<'s> {
    let policy = &snapshot.policy;
    let (route, path, method) = match facts.target {
        Target::Http { host, path, method } => {
            let path = path.split_once('?').map_or(path, |(p, _)| p);
            if !is_normalized_path(path) {
                return Decision {
                    outcome: Outcome::Deny,
                    reason: Reason::PathNotNormalized,
                    route: None,
                    rule: None,
                    lock: None,
                };
            }
            let host = lowercase(host);
            (policy.http_route(&host, path), Some(path), method_bit(method))
        }
        Target::Tcp { name } => (policy.tcp_route(&lowercase(name)), None, method_bit("CONNECT")),
    };
    let Some(route) = route else {
        return Decision { outcome: Outcome::Deny, reason: Reason::NoRoute, route: None, rule: None, lock: None };
    };
    let path = match path {
        Some(path) if route.options.case_insensitive_paths => Some(lowercase_path(path)),
        path => path.map(Cow::Borrowed),
    };
    let request = RequestFacts { facts, method, path: path.as_deref() };
    let matched = route.index.first_match(facts.identity, request.path, |i| {
        route.rules[i as usize].blocks.iter().all(|block| block.matches(&request))
    });
    let (outcome, reason, rule) = match matched.map(|i| &route.rules[i as usize]) {
        Some(rule) if rule.effect == RuleEffect::Allow => (Outcome::Allow, Reason::RuleMatched, Some(rule)),
        Some(rule) => (Outcome::Deny, Reason::RuleMatched, Some(rule)),
        None if facts.identity.is_none() => (Outcome::LoginRequired, Reason::LoginRequired, None),
        None => match allowed_after_fresh_login(route, &request) {
            Some(rule) => (Outcome::LoginRequired, Reason::LoginTooOld, Some(rule)),
            None => (Outcome::Deny, Reason::NoRuleMatched, None),
        },
    };
    Decision { outcome, reason, route: Some(route), rule, lock: None }
}

/// The rule that would allow `request` if login-age limits were left out,
/// when the first rule matching under that relaxation is an allow rule.
/// Called only when no rule matched a logged-in caller; a route without
/// login-age limits costs one pass over its rules' blocks.
#[cold]
#[inline(never)]
fn allowed_after_fresh_login<'s>(route: &'s Route, request: &RequestFacts<'_>) -> Option<&'s Rule> {
    if !route.rules.iter().any(|rule| rule.blocks.iter().any(|block| block.limits_login_age())) {
        return None;
    }
    let matched = route.index.first_match(request.facts.identity, request.path, |i| {
        route.rules[i as usize].blocks.iter().all(|block| block.matches_ignoring_login_age(request))
    })?;
    let rule = &route.rules[matched as usize];
    (rule.effect == RuleEffect::Allow).then_some(rule)
}

fn lowercase(text: &str) -> Cow<'_, str> {
    if text.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(text.to_ascii_lowercase())
    } else {
        Cow::Borrowed(text)
    }
}

/// True when `path` starts with `/` and has no `.` or `..` segments, no
/// empty segments inside, no backslash and no percent-encoded `.`, `/` or `\`
/// (all of which could make a path rule see a different path than the app).
pub fn is_normalized_path(path: &str) -> bool {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return false;
    }
    let mut segment_start = 1;
    for i in 1..=bytes.len() {
        let at_end = i == bytes.len();
        if at_end || bytes[i] == b'/' {
            let segment = &bytes[segment_start..i];
            if segment == b"." || segment == b".." || (segment.is_empty() && !at_end) {
                return false;
            }
            segment_start = i + 1;
        } else if bytes[i] == b'\\' {
            return false;
        } else if bytes[i] == b'%' {
            let code = bytes.get(i + 1..i + 3).map(|h| [h[0].to_ascii_lowercase(), h[1].to_ascii_lowercase()]);
            if matches!(code, Some([b'2', b'e']) | Some([b'2', b'f']) | Some([b'5', b'c'])) {
                return false;
            }
        }
    }
    true
}

impl fmt::Display for Decision<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let route = self.route.map_or("", |r| r.name());
        match (self.reason, self.rule) {
            (Reason::RuleMatched, Some(rule)) => {
                let verb = if rule.effect == RuleEffect::Allow { "allowed" } else { "denied" };
                write!(f, "{verb} by rule `{}` of route `{route}`", rule.name)
            }
            (Reason::NoRuleMatched, _) => write!(f, "no rule of route `{route}` allows this request (default deny)"),
            (Reason::LoginTooOld, _) => match self.login_max_age() {
                Some(limit) => write!(
                    f,
                    "log in again: route `{route}` requires a login within the last {}",
                    format_seconds(limit)
                ),
                None => write!(f, "log in again: route `{route}` requires a more recent login"),
            },
            (Reason::LoginRequired, _) => write!(f, "route `{route}` requires a login"),
            (Reason::NoRoute, _) => f.write_str("no route serves this host and path"),
            (Reason::PathNotNormalized, _) => f.write_str(
                "the request path is not in normal form (dot segments, empty segments or encoded separators)",
            ),
            (Reason::SessionTerminated, _) => f.write_str("this session was terminated"),
            (Reason::UserLocked, _) => match self.lock {
                Some(lock) => write!(f, "the user is locked: {}", lock.reason),
                None => f.write_str("the user is locked"),
            },
            (Reason::UserTokensRevoked, _) => f.write_str("every session of this user was terminated; log in again"),
            (Reason::TokenRevoked, _) => f.write_str("this token was revoked"),
            (Reason::SigningKeyRevoked, _) => f.write_str("the key that signed this session was revoked; log in again"),
            (Reason::RuleMatched, None) => f.write_str("a rule matched"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::Arc;

    use super::*;
    use crate::facts::{Identity, IdentityParts};
    use crate::policy::{Policy, PolicySource};

    fn snapshot(rules: &str) -> Snapshot {
        let text = format!(
            "version: 1\nroutes:\n  - name: app\n    host: app.example\n    upstream: http://127.0.0.1:9\n    rules:\n{rules}"
        );
        compiled(text)
    }

    fn compiled(text: String) -> Snapshot {
        let policy = Policy::compile(PolicySource { name: "t".into(), text }).unwrap_or_else(|e| panic!("{e}"));
        Snapshot::new(1, Arc::new(policy))
    }

    fn decide(snapshot: &Snapshot, path: &str, method: &str, identity: Option<&Identity>) -> (Outcome, Option<String>) {
        let facts = Facts {
            target: Target::Http { host: "app.example", path, method },
            source_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            now: 1_800_000_000,
            identity,
        };
        let decision = evaluate(snapshot, &facts);
        (decision.outcome, decision.rule.map(|r| r.name().to_owned()))
    }

    #[test]
    fn identity_free_deny_rules_apply_to_anonymous_requests() {
        // Issue 11: `deny /export/**` then a public allow let anonymous users in.
        let snapshot = snapshot(
            "      - name: no-export\n        deny: {paths: [/export/**]}\n\
             \x20     - name: admins-only\n        deny: {paths: [/admin/**], groups_any: [staff]}\n\
             \x20     - name: anyone\n        public: true\n        allow: {}\n",
        );
        let user = Identity::new(IdentityParts { email: "u@x.example".into(), ..IdentityParts::default() });
        assert_eq!(decide(&snapshot, "/export/all.csv", "GET", None), (Outcome::Deny, Some("no-export".into())));
        assert_eq!(decide(&snapshot, "/export/all.csv", "GET", Some(&user)), (Outcome::Deny, Some("no-export".into())));
        assert_eq!(decide(&snapshot, "/page", "GET", None), (Outcome::Allow, Some("anyone".into())));
        // A deny rule that tests the user cannot match an anonymous request.
        assert_eq!(decide(&snapshot, "/admin/x", "GET", None), (Outcome::Allow, Some("anyone".into())));
    }

    #[test]
    fn anonymous_requests_meet_deny_rules_in_order_past_the_linear_scan_limit() {
        let mut rules = String::new();
        for i in 0..20 {
            rules.push_str(&format!("      - name: user{i}\n        allow: {{email: [u{i}@x.example]}}\n"));
        }
        rules.push_str("      - name: no-delete\n        deny: {methods: [DELETE]}\n");
        rules.push_str("      - name: health\n        public: true\n        allow: {paths: [/healthz]}\n");
        let snapshot = snapshot(&rules);
        assert_eq!(decide(&snapshot, "/healthz", "DELETE", None), (Outcome::Deny, Some("no-delete".into())));
        assert_eq!(decide(&snapshot, "/healthz", "GET", None), (Outcome::Allow, Some("health".into())));
        assert_eq!(decide(&snapshot, "/other", "GET", None), (Outcome::LoginRequired, None));
        // A deny rule that needs no login is not a reason to ask for one.
        assert_eq!(decide(&snapshot, "/other", "DELETE", None), (Outcome::Deny, Some("no-delete".into())));
    }

    #[test]
    fn case_insensitive_routes_judge_the_lowercased_path() {
        let snapshot = compiled(
            "version: 1\nroutes:\n\
             \x20 - name: root\n    host: app.example\n    upstream: http://127.0.0.1:9\n    rules:\n\
             \x20     - public: true\n        allow: {}\n\
             \x20 - name: iis\n    host: app.example\n    path: /legacy\n    upstream: http://127.0.0.1:9\n\
             \x20   options: {case_insensitive_paths: true}\n    rules:\n\
             \x20     - name: no-admin\n        deny: {paths: [/legacy/admin/**]}\n\
             \x20     - name: anyone\n        public: true\n        allow: {}\n"
                .to_owned(),
        );
        for path in ["/legacy/admin/x", "/LEGACY/Admin/x", "/Legacy/ADMIN/%C3%A9"] {
            let facts = Facts {
                target: Target::Http { host: "app.example", path, method: "GET" },
                source_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
                now: 0,
                identity: None,
            };
            let decision = evaluate(&snapshot, &facts);
            assert_eq!(decision.route.map(Route::name), Some("iis"), "{path}");
            assert_eq!(decision.rule.map(Rule::name), Some("no-admin"), "{path}");
        }
        // Other routes keep matching case-sensitively.
        assert_eq!(decide(&snapshot, "/legacyx", "GET", None), (Outcome::Allow, Some("rule-1".into())));
    }

    const NOW: i64 = 1_800_000_000;
    const HOUR: i64 = 3600;

    fn logged_in(groups: &[&str], auth_age: i64, session_age: i64) -> Identity {
        Identity::new(IdentityParts {
            email: "u@x.example".into(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            auth_time: NOW - auth_age,
            session_started_at: NOW - session_age,
            issued_at: NOW - session_age,
            ..IdentityParts::default()
        })
    }

    fn judged(
        snapshot: &Snapshot,
        path: &str,
        identity: Option<&Identity>,
    ) -> (Outcome, Reason, Option<String>, String) {
        let facts = Facts {
            target: Target::Http { host: "app.example", path, method: "GET" },
            source_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            now: NOW,
            identity,
        };
        let decision = evaluate(snapshot, &facts);
        (decision.outcome, decision.reason, decision.rule.map(|r| r.name().to_owned()), decision.to_string())
    }

    #[test]
    fn a_stale_login_is_not_asked_to_log_in_again_when_a_fresh_one_would_not_help() {
        // Hostile first: the relaxation must not turn a default deny into a
        // login prompt when the caller would still be refused after logging in.
        let snapshot = snapshot(
            "      - name: admins\n        allow: {groups_any: [admins], logged_in_within: 1h}\n\
             \x20     - name: young\n        allow: {groups_any: [staff], max_session_age: 2h, paths: [/staff/**]}\n",
        );
        let stale_outsider = logged_in(&["staff"], 5 * HOUR, 5 * HOUR);
        let (outcome, reason, rule, _) = judged(&snapshot, "/admin", Some(&stale_outsider));
        assert_eq!((outcome, reason, rule), (Outcome::Deny, Reason::NoRuleMatched, None));
        // A deny rule that matches once login age is left out comes first: no prompt.
        let snapshot = self::snapshot(
            "      - name: odd-deny\n        deny: {groups_any: [admins], logged_in_within: 30m}\n\
             \x20     - name: admins\n        allow: {groups_any: [admins], logged_in_within: 1h}\n",
        );
        let stale_admin = logged_in(&["admins"], 2 * HOUR, 2 * HOUR);
        let (outcome, reason, rule, _) = judged(&snapshot, "/", Some(&stale_admin));
        assert_eq!((outcome, reason, rule), (Outcome::Deny, Reason::NoRuleMatched, None));
        // A deny rule that matches as is still decides.
        let snapshot = self::snapshot(
            "      - name: admins\n        allow: {groups_any: [admins], logged_in_within: 1h}\n\
             \x20     - name: no-admin\n        deny: {paths: [/admin/**]}\n",
        );
        let (outcome, reason, rule, _) = judged(&snapshot, "/admin/x", Some(&stale_admin));
        assert_eq!((outcome, reason, rule.as_deref()), (Outcome::Deny, Reason::RuleMatched, Some("no-admin")));
        // Anonymous callers keep the plain login prompt.
        let (outcome, reason, rule, _) = judged(&snapshot, "/x", None);
        assert_eq!((outcome, reason, rule), (Outcome::LoginRequired, Reason::LoginRequired, None));
    }

    #[test]
    fn a_lapsed_login_age_limit_asks_for_a_fresh_login() {
        let snapshot = snapshot(
            "      - name: admins\n        allow: {groups_any: [admins], logged_in_within: 12h}\n\
             \x20     - name: staff\n        allow: {groups_any: [staff], max_session_age: 1h30m}\n",
        );
        let fresh = logged_in(&["admins"], 12 * HOUR, 13 * HOUR);
        assert_eq!(judged(&snapshot, "/", Some(&fresh)).0, Outcome::Allow, "the limit itself still holds");
        let stale = logged_in(&["admins"], 12 * HOUR + 1, 13 * HOUR);
        let (outcome, reason, rule, message) = judged(&snapshot, "/", Some(&stale));
        assert_eq!((outcome, reason, rule.as_deref()), (Outcome::LoginRequired, Reason::LoginTooOld, Some("admins")));
        assert_eq!(message, "log in again: route `app` requires a login within the last 12h");
        let facts = Facts {
            target: Target::Http { host: "app.example", path: "/", method: "GET" },
            source_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            now: NOW,
            identity: Some(&stale),
        };
        assert_eq!(evaluate(&snapshot, &facts).login_max_age(), Some(12 * 3600));
        assert_eq!(evaluate(&snapshot, &Facts { identity: None, ..facts }).login_max_age(), None);
        let old_session = logged_in(&["staff"], 0, 2 * HOUR);
        let (outcome, reason, rule, message) = judged(&snapshot, "/", Some(&old_session));
        assert_eq!((outcome, reason, rule.as_deref()), (Outcome::LoginRequired, Reason::LoginTooOld, Some("staff")));
        assert_eq!(message, "log in again: route `app` requires a login within the last 1h30m");
    }

    #[test]
    fn login_too_old_is_found_through_the_rule_index_and_on_tcp_routes() {
        let mut rules = String::new();
        for i in 0..20 {
            rules.push_str(&format!("      - name: user{i}\n        allow: {{email: [u{i}@x.example]}}\n"));
        }
        rules.push_str(
            "      - name: reports\n        allow: {paths: [/reports/**], groups_any: [staff], logged_in_within: 1h}\n",
        );
        let snapshot = snapshot(&rules);
        let stale = logged_in(&["staff"], 2 * HOUR, 2 * HOUR);
        let (outcome, reason, rule, _) = judged(&snapshot, "/reports/q3", Some(&stale));
        assert_eq!((outcome, reason, rule.as_deref()), (Outcome::LoginRequired, Reason::LoginTooOld, Some("reports")));
        assert_eq!(judged(&snapshot, "/other", Some(&stale)).1, Reason::NoRuleMatched);

        let tcp = compiled(
            "version: 1\nroutes:\n  - name: ssh\n    tcp: ssh.internal:22\n    upstream: 127.0.0.1:22\n    rules:\n\
             \x20     - name: fresh\n        allow: {groups_any: [staff], logged_in_within: 10m}\n"
                .to_owned(),
        );
        let facts = Facts {
            target: Target::Tcp { name: "ssh.internal:22" },
            source_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            now: NOW,
            identity: Some(&stale),
        };
        let decision = evaluate(&tcp, &facts);
        assert_eq!((decision.outcome, decision.reason), (Outcome::LoginRequired, Reason::LoginTooOld));
        assert_eq!(decision.to_string(), "log in again: route `ssh` requires a login within the last 10m");
    }

    #[test]
    fn path_normal_form() {
        for ok in ["/", "/a", "/a/b/", "/a.b/c..d", "/%41", "/x%20y"] {
            assert!(is_normalized_path(ok), "{ok}");
        }
        for bad in ["", "a", "//", "/a//b", "/a/./b", "/a/..", "/..", "/a%2fb", "/%2E%2E/x", "/a\\b", "/%5C"] {
            assert!(!is_normalized_path(bad), "{bad}");
        }
    }
}
