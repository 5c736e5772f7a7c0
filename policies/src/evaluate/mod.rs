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

mod decision;
mod trace;

use std::borrow::Cow;

pub use decision::{Decision, Outcome, Reason};
pub use trace::{rule_checks, RuleCheck};

use crate::conditions::{method_bit, RequestFacts};
use crate::facts::{Facts, Identity, Target};
use crate::policy::{Route, Rule, RuleEffect};
use crate::request_target::lowercase_path;
use crate::snapshot::{Snapshot, UserDenial};

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
    let (route, path, method) = match routed(snapshot, facts) {
        Ok(routed) => routed,
        Err(reason) => return Decision { outcome: Outcome::Deny, reason, route: None, rule: None, lock: None },
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

/// The route serving `facts`, with the path its rules judge (query cut off,
/// lowercased on a `case_insensitive_paths` route) and the method's bit;
/// or why there is none ([`Reason::PathNotNormalized`], [`Reason::NoRoute`]).
fn routed<'s, 'f>(snapshot: &'s Snapshot, facts: &Facts<'f>) -> Result<(&'s Route, Option<Cow<'f, str>>, u16), Reason> {
    let policy = &snapshot.policy;
    let (route, path, method) = match facts.target {
        Target::Http { host, path, method } => {
            let path = path.split_once('?').map_or(path, |(p, _)| p);
            if !is_normalized_path(path) {
                return Err(Reason::PathNotNormalized);
            }
            let host = lowercase(host);
            (policy.http_route(&host, path), Some(path), method_bit(method))
        }
        Target::Tcp { name } => (policy.tcp_route(&lowercase(name)), None, method_bit("CONNECT")),
    };
    let route = route.ok_or(Reason::NoRoute)?;
    let path = match path {
        Some(path) if route.options.case_insensitive_paths => Some(lowercase_path(path)),
        path => path.map(Cow::Borrowed),
    };
    Ok((route, path, method))
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

#[cfg(test)]
mod tests;
