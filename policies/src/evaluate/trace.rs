//! Why each rule did or did not match, for `policy explain`: the rules of
//! the route that served a request, in order, up to the one that decided
//! (all of them when none did), each with the first of its conditions the
//! request fails. The edge never calls this; it judges the same route, path
//! and (overridden) groups as [`super::evaluate`], and a test holds the two
//! to the same answer.

use super::{routed, RequestFacts};
use crate::facts::{Facts, Identity};
use crate::policy::Rule;
use crate::snapshot::Snapshot;

/// One rule as the request met it.
#[derive(Debug, Clone)]
pub struct RuleCheck<'s> {
    /// The rule.
    pub rule: &'s Rule,
    /// `None` when the rule matched; otherwise the first condition the
    /// request fails, in words: "`groups_any` [admins] — the user is in [eng]".
    pub failed: Option<String>,
}

/// The rules of the route serving `facts`, in order, up to the first that
/// matches (every rule when none does). Empty when no route serves the
/// request. Revocations are not judged here: [`super::evaluate`] says when
/// they decided before any rule.
pub fn rule_checks<'s>(snapshot: &'s Snapshot, facts: &Facts<'_>) -> Vec<RuleCheck<'s>> {
    let overridden: Option<Identity> =
        facts.identity.and_then(|id| snapshot.users.groups_override(id).map(|o| id.with_groups(&o.groups)));
    let facts = Facts { identity: overridden.as_ref().or(facts.identity), ..*facts };
    let Ok((route, path, method)) = routed(snapshot, &facts) else { return Vec::new() };
    let request = RequestFacts { facts: &facts, method, path: path.as_deref() };
    let mut checks = Vec::new();
    for rule in route.rules.iter() {
        let failed = failure(rule, &request);
        let matched = failed.is_none();
        checks.push(RuleCheck { rule, failed });
        if matched {
            break;
        }
    }
    checks
}

fn failure(rule: &Rule, request: &RequestFacts<'_>) -> Option<String> {
    if request.facts.identity.is_none() && !rule.applies_to_anonymous() {
        return Some("the rule is not `public` — no login was presented".to_owned());
    }
    rule.blocks.iter().find_map(|block| block.first_failure(request))
}
