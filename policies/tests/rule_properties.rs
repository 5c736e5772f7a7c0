//! Property tests of the compiled policy: (d) on generated policies with
//! enough rules to use the rule index, the decision is made by the first
//! rule that matches on its own; (e) a rule the compiler refuses as
//! shadowed never matches a request its shadowing rule does not. (The wire,
//! revocation, delta-model and override properties are in `properties.rs`.)

// Shared with `properties.rs`, which uses other parts of it.
#[allow(dead_code)]
mod policy_gen;

use std::sync::Arc;

use policy_gen::{
    compile, compiling_policy, facts_spec, request_target, route_spec, routes_spec, shadowed_pairs, FactsSpec,
    RouteKind, RouteSpec, RuleSpec,
};
use portcullis_policy::{evaluate, rule_checks, Facts, Identity, Outcome, Reason, RuleEffect, Snapshot};
use proptest::prelude::*;
use proptest::test_runner::Config;

// ------------------------------------ (d) the index finds the first match

/// The request of `facts` to `name`, as `identity` (or anonymously).
fn request<'a>(facts: &FactsSpec, name: &'a str, tcp: bool, identity: Option<&'a Identity>) -> Facts<'a> {
    Facts { target: facts.target(name, tcp), source_ip: facts.source_ip(), now: facts.now, identity }
}

proptest! {
    #![proptest_config(Config::with_cases(128))]

    /// Routes get up to 40 rules, so many are past the linear-scan limit and
    /// use the rule index. The reference tries each rule alone, in order.
    #[test]
    fn the_first_rule_that_matches_on_its_own_decides(
        routes in routes_spec(32),
        facts in facts_spec(),
        anonymous in prop::bool::weighted(0.2),
    ) {
        let (text, kept) = compiling_policy(&routes);
        let snapshot = Snapshot::new(1, Arc::new(compile(&text).unwrap()));
        let i = facts.route % routes.len();
        let (kind, tcp) = (routes[i].kind, matches!(routes[i].kind, RouteKind::Tcp));
        let who = facts.identity();
        let identity = (!anonymous).then_some(&who);
        let name = request_target(kind, i);
        let decision = evaluate(&snapshot, &request(&facts, &name, tcp, identity));
        let route = decision.route.unwrap();
        prop_assert_eq!(route.name(), format!("route{i}"));

        let alone_name = request_target(kind, 0);
        let first = kept[i].iter().position(|rule| {
            let (text, _) = compiling_policy(&[RouteSpec { kind, rules: vec![rule.clone()] }]);
            let alone = Snapshot::new(1, Arc::new(compile(&text).unwrap()));
            evaluate(&alone, &request(&facts, &alone_name, tcp, identity)).reason == Reason::RuleMatched
        });
        // A stale login (LoginTooOld) names the rule a fresh login would meet;
        // only a rule that matched decides.
        let decided = decision.rule.filter(|_| decision.reason == Reason::RuleMatched);
        prop_assert_eq!(decided.map(|r| r.name()), first.map(|j| route.rules()[j].name()));
        // `policy explain`'s rule by rule account agrees, naming a failed
        // condition for every rule before the one that decided.
        let checks = rule_checks(&snapshot, &request(&facts, &name, tcp, identity));
        let matched = checks.last().filter(|c| c.failed.is_none()).map(|c| c.rule.name());
        prop_assert_eq!(matched, first.map(|j| route.rules()[j].name()));
        prop_assert!(checks.iter().rev().skip(1).all(|c| c.failed.is_some()));
        prop_assert_eq!(checks.len(), first.map_or(route.rules().len(), |j| j + 1));
        let outcome = match first.map(|j| route.rules()[j].effect()) {
            Some(RuleEffect::Allow) => Outcome::Allow,
            Some(RuleEffect::Deny) => Outcome::Deny,
            None if anonymous => Outcome::LoginRequired,
            None if decision.reason == Reason::LoginTooOld => Outcome::LoginRequired,
            None => Outcome::Deny,
        };
        prop_assert_eq!(decision.outcome, outcome);
    }
}

// ------------------------------------------ (e) shadowing errors are sound

/// True when `rule`, as the only rule of a route, decides the request.
fn matches_alone(kind: RouteKind, rule: &RuleSpec, facts: &FactsSpec, anonymous: bool) -> bool {
    let (text, _) = compiling_policy(&[RouteSpec { kind, rules: vec![rule.clone()] }]);
    let snapshot = Snapshot::new(1, Arc::new(compile(&text).unwrap()));
    let who = facts.identity();
    let name = request_target(kind, 0);
    let request = request(facts, &name, matches!(kind, RouteKind::Tcp), (!anonymous).then_some(&who));
    evaluate(&snapshot, &request).reason == Reason::RuleMatched
}

proptest! {
    #![proptest_config(Config::with_cases(128))]

    /// "Rule B can never match: rule A comes first" must be true, or the
    /// compiler refuses policies that are fine.
    #[test]
    fn a_rule_refused_as_shadowed_only_matches_what_the_earlier_rule_matches(
        route in route_spec(12),
        requests in prop::collection::vec((facts_spec(), prop::bool::weighted(0.2)), 24),
    ) {
        for (later, earlier) in shadowed_pairs(&route) {
            for (facts, anonymous) in &requests {
                if matches_alone(route.kind, &route.rules[later], facts, *anonymous) {
                    prop_assert!(
                        matches_alone(route.kind, &route.rules[earlier], facts, *anonymous),
                        "rule {} was refused as shadowed by rule {}, but only it matches {:?}",
                        later,
                        earlier,
                        facts
                    );
                }
            }
        }
    }
}
