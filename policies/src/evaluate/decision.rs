//! What [`super::evaluate`] answers: the [`Outcome`], the [`Reason`] and the
//! route and rule behind them, and the sentence the edge shows a refused
//! user and `policy explain` prints.

use std::fmt;

use crate::duration::format_seconds;
use crate::policy::{Route, Rule, RuleEffect};
use crate::snapshot::Lock;

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
    pub(super) fn revoked(reason: Reason, lock: Option<&'s Lock>) -> Self {
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
