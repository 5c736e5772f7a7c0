//! The conditions a rule tests, compiled for fast matching, and the
//! implication test that finds rules an earlier rule already covers.
//!
//! A [`Conditions`] block matches when every condition it has holds. Lists are
//! "any of" except `groups_all`. An empty list or a zero bit set means the
//! condition is absent.

mod failure;
pub mod glob;
pub mod time_window;

use ipnet::IpNet;

use crate::facts::{ClaimValue, Facts, Identity};
pub use glob::PathGlob;
pub use time_window::TimeWindow;

/// A test on one claim of the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimTest {
    /// The claim name.
    pub name: Box<str>,
    /// How the claim is compared.
    pub op: ClaimOp,
    /// The value compared with.
    pub value: Box<str>,
}

/// Claim comparisons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimOp {
    /// The claim is exactly this string (arrays never equal a string).
    Equals,
    /// An array claim holds this element, or a string claim contains it.
    Contains,
}

impl ClaimTest {
    fn holds(&self, identity: &Identity) -> bool {
        match (identity.claim(&self.name), self.op) {
            (Some(ClaimValue::One(v)), ClaimOp::Equals) => *v == self.value,
            (Some(ClaimValue::One(v)), ClaimOp::Contains) => v.contains(&*self.value),
            (Some(ClaimValue::Many(vs)), ClaimOp::Contains) => vs.contains(&self.value),
            (Some(ClaimValue::Many(_)), ClaimOp::Equals) | (None, _) => false,
        }
    }
}

/// HTTP methods rules can name, as bits.
pub(crate) const METHODS: [&str; 9] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"];

/// The bit of a request method; unknown methods get a bit no rule names.
pub(crate) fn method_bit(method: &str) -> u16 {
    METHODS.iter().position(|m| m.eq_ignore_ascii_case(method)).map_or(1 << 15, |i| 1 << i)
}

/// One block of conditions, all of which must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conditions {
    pub(crate) emails: Box<[Box<str>]>,
    pub(crate) email_domains: Box<[Box<str>]>,
    pub(crate) groups_any: Box<[Box<str>]>,
    pub(crate) groups_all: Box<[Box<str>]>,
    pub(crate) claims: Box<[ClaimTest]>,
    pub(crate) credentials: u8,
    pub(crate) source_ips: Box<[IpNet]>,
    pub(crate) methods: u16,
    pub(crate) paths: Box<[PathGlob]>,
    pub(crate) time: Option<TimeWindow>,
    pub(crate) max_session_age: Option<u32>,
    pub(crate) logged_in_within: Option<u32>,
}

/// The request-side facts, computed once per evaluation.
pub(crate) struct RequestFacts<'a> {
    pub facts: &'a Facts<'a>,
    pub method: u16,
    pub path: Option<&'a str>,
}

impl Conditions {
    /// True when the block tests who the caller is (and so cannot match an
    /// anonymous request).
    pub(crate) fn tests_identity(&self) -> bool {
        !self.emails.is_empty()
            || !self.email_domains.is_empty()
            || !self.groups_any.is_empty()
            || !self.groups_all.is_empty()
            || !self.claims.is_empty()
            || self.credentials != 0
            || self.max_session_age.is_some()
            || self.logged_in_within.is_some()
    }

    /// How many entries the block's lists hold (at least 1): comparing two
    /// blocks with [`Conditions::implies`] costs at most the product.
    pub(crate) fn entries(&self) -> u64 {
        let lists = self.emails.len()
            + self.email_domains.len()
            + self.groups_any.len()
            + self.groups_all.len()
            + self.claims.len()
            + self.source_ips.len()
            + self.paths.len();
        lists.max(1) as u64
    }

    /// True when the block tests HTTP-only facts (method or path).
    pub(crate) fn tests_http(&self) -> bool {
        self.methods != 0 || !self.paths.is_empty()
    }

    /// True when the block limits how long ago the caller logged in
    /// (`logged_in_within`) or started the session (`max_session_age`).
    pub(crate) fn limits_login_age(&self) -> bool {
        self.max_session_age.is_some() || self.logged_in_within.is_some()
    }

    /// The strictest login-age limit of the block, in seconds.
    pub(crate) fn login_age_limit(&self) -> Option<u32> {
        match (self.logged_in_within, self.max_session_age) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// True when every condition holds.
    #[inline]
    pub(crate) fn matches(&self, request: &RequestFacts<'_>) -> bool {
        self.matches_with::<true>(request)
    }

    /// True when every condition holds once `logged_in_within` and
    /// `max_session_age` are left out: would a fresh login match?
    pub(crate) fn matches_ignoring_login_age(&self, request: &RequestFacts<'_>) -> bool {
        self.matches_with::<false>(request)
    }

    #[inline]
    fn matches_with<const LOGIN_AGE: bool>(&self, request: &RequestFacts<'_>) -> bool {
        let facts = request.facts;
        if self.methods != 0 && self.methods & request.method == 0 {
            return false;
        }
        if !self.paths.is_empty() && !request.path.is_some_and(|p| self.paths.iter().any(|g| g.matches(p))) {
            return false;
        }
        if !self.source_ips.is_empty() && !self.source_ips.iter().any(|net| net.contains(&facts.source_ip)) {
            return false;
        }
        if self.time.as_ref().is_some_and(|w| !w.contains(facts.now)) {
            return false;
        }
        if !self.tests_identity() {
            return true;
        }
        let Some(id) = facts.identity else {
            return false;
        };
        (self.emails.is_empty() || contains_sorted(&self.emails, &id.email))
            && (self.email_domains.is_empty() || contains_sorted(&self.email_domains, id.email_domain()))
            && (self.groups_any.is_empty() || self.groups_any.iter().any(|g| id.in_group(g)))
            && self.groups_all.iter().all(|g| id.in_group(g))
            && self.claims.iter().all(|c| c.holds(id))
            && (self.credentials == 0 || self.credentials & id.credential.bit() != 0)
            && (!LOGIN_AGE
                || (self.max_session_age.is_none_or(|max| facts.now - id.session_started_at <= i64::from(max))
                    && self.logged_in_within.is_none_or(|max| facts.now - id.auth_time <= i64::from(max))))
    }

    /// True when every request matching `self` also matches `other`. Sound
    /// but not complete: `false` means "could not prove it".
    pub(crate) fn implies(&self, other: &Conditions) -> bool {
        let b = self;
        let a = other;
        let emails = a.emails.is_empty() || (!b.emails.is_empty() && subset(&b.emails, &a.emails));
        let domains = a.email_domains.is_empty()
            || (!b.email_domains.is_empty() && subset(&b.email_domains, &a.email_domains))
            || (!b.emails.is_empty()
                && b.emails
                    .iter()
                    .all(|e| e.rsplit_once('@').is_some_and(|(_, d)| contains_sorted(&a.email_domains, d))));
        let groups_any = a.groups_any.is_empty()
            || (!b.groups_any.is_empty() && subset(&b.groups_any, &a.groups_any))
            || b.groups_all.iter().any(|g| a.groups_any.contains(g));
        let groups_all = subset(&a.groups_all, &b.groups_all);
        let claims = a.claims.iter().all(|c| b.claims.contains(c));
        let credentials = a.credentials == 0 || (b.credentials != 0 && b.credentials & !a.credentials == 0);
        let ips = a.source_ips.is_empty()
            || (!b.source_ips.is_empty() && b.source_ips.iter().all(|n| a.source_ips.iter().any(|m| m.contains(n))));
        let methods = a.methods == 0 || (b.methods != 0 && b.methods & !a.methods == 0);
        let paths = a.paths.is_empty()
            || a.paths.iter().any(|g| g.as_str() == "/**")
            || (!b.paths.is_empty() && b.paths.iter().all(|g| a.paths.contains(g)));
        let time = match (&a.time, &b.time) {
            (None, _) => true,
            (Some(wa), Some(wb)) => wa.covers(wb),
            (Some(_), None) => false,
        };
        let age = at_most(a.max_session_age, b.max_session_age);
        let login = at_most(a.logged_in_within, b.logged_in_within);
        emails
            && domains
            && groups_any
            && groups_all
            && claims
            && credentials
            && ips
            && methods
            && paths
            && time
            && age
            && login
    }
}

fn contains_sorted(sorted: &[Box<str>], item: &str) -> bool {
    sorted.binary_search_by(|x| (**x).cmp(item)).is_ok()
}

fn subset(small: &[Box<str>], big: &[Box<str>]) -> bool {
    small.iter().all(|x| big.contains(x))
}

/// An upper bound `a` is implied by bound `b` when `b` is at least as strict.
fn at_most(a: Option<u32>, b: Option<u32>) -> bool {
    match (a, b) {
        (None, _) => true,
        (Some(a), Some(b)) => b <= a,
        (Some(_), None) => false,
    }
}
