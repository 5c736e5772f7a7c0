//! First-match rule lookup that skips rules a request cannot match.
//!
//! A rule that names emails, email domains or groups can only match a user
//! who has one of them; a rule whose path globs all start with a literal
//! segment (`/reports/**`) can only match paths starting with that segment.
//! Each rule is filed under the most selective such key set (the one whose
//! keys are shared by the fewest rules). For a request, the candidate lists
//! (rules filed under the user's email, domain, each group and the path's
//! first segment, plus the rules filed under nothing) are merged in rule
//! order without allocating, and full conditions are checked only on those
//! candidates. A route with a thousand per-user or per-path rules then costs
//! a few hash lookups instead of a thousand condition checks.

use std::collections::HashMap;

use foldhash::fast::FixedState;

use super::Rule;
use crate::facts::Identity;

/// Routes with at most this many rules are scanned in order.
const LINEAR_SCAN_MAX_RULES: usize = 16;
/// Most candidate lists merged at once; more falls back to a scan.
const MAX_MERGED_LISTS: usize = 32;

/// The kinds of key a rule can be filed under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum KeyKind {
    Email,
    Domain,
    Group,
    PathSegment,
}

type Postings = HashMap<Box<str>, Vec<u32>, FixedState>;

/// Per-route index from identity and path keys to rule positions.
#[derive(Debug, Default)]
pub struct RuleIndex {
    linear: bool,
    rule_count: u32,
    by_email: Postings,
    by_domain: Postings,
    by_group: Postings,
    by_path_segment: Postings,
    unfiled: Vec<u32>,
    /// Rules an anonymous request can match ([`Rule::applies_to_anonymous`]), in order.
    anonymous: Vec<u32>,
}

/// The key sets a rule could be filed under: for each, matching the rule
/// requires the request to carry one of the keys.
fn filing_options(rule: &Rule) -> Vec<(KeyKind, Vec<&str>)> {
    fn all(keys: &[Box<str>]) -> Vec<&str> {
        keys.iter().map(|k| &**k).collect()
    }
    let mut options = Vec::new();
    for block in rule.blocks.iter() {
        if !block.emails.is_empty() {
            options.push((KeyKind::Email, all(&block.emails)));
        }
        if !block.email_domains.is_empty() {
            options.push((KeyKind::Domain, all(&block.email_domains)));
        }
        if !block.groups_any.is_empty() {
            options.push((KeyKind::Group, all(&block.groups_any)));
        }
        options.extend(block.groups_all.iter().map(|g| (KeyKind::Group, vec![&**g])));
        let segments: Option<Vec<&str>> = block.paths.iter().map(|g| g.literal_first_segment()).collect();
        if let Some(mut segments) = segments.filter(|s| !s.is_empty()) {
            segments.sort_unstable();
            segments.dedup();
            options.push((KeyKind::PathSegment, segments));
        }
    }
    options
}

impl RuleIndex {
    /// Files each rule under its most selective key set.
    pub(crate) fn build(rules: &[Rule]) -> Self {
        let mut index = Self {
            linear: rules.len() <= LINEAR_SCAN_MAX_RULES,
            rule_count: u32::try_from(rules.len()).unwrap_or(u32::MAX),
            ..Self::default()
        };
        let options: Vec<_> = rules.iter().map(filing_options).collect();
        let mut sharing: HashMap<(KeyKind, &str), usize> = HashMap::new();
        for rule_options in &options {
            let mut keys: Vec<(KeyKind, &str)> =
                rule_options.iter().flat_map(|(kind, keys)| keys.iter().map(|k| (*kind, *k))).collect();
            keys.sort_unstable();
            keys.dedup();
            for key in keys {
                *sharing.entry(key).or_default() += 1;
            }
        }
        for (position, (rule, rule_options)) in rules.iter().zip(&options).enumerate() {
            let position = position as u32;
            if rule.applies_to_anonymous() {
                index.anonymous.push(position);
            }
            let cost = |(kind, keys): &&(KeyKind, Vec<&str>)| keys.iter().map(|k| sharing[&(*kind, *k)]).sum::<usize>();
            let Some((kind, keys)) = rule_options.iter().min_by_key(cost) else {
                index.unfiled.push(position);
                continue;
            };
            let postings = match kind {
                KeyKind::Email => &mut index.by_email,
                KeyKind::Domain => &mut index.by_domain,
                KeyKind::Group => &mut index.by_group,
                KeyKind::PathSegment => &mut index.by_path_segment,
            };
            for key in keys {
                postings.entry((*key).into()).or_default().push(position);
            }
        }
        index
    }

    /// The position of the first rule for which `matches` is true, visiting
    /// only rules that `identity` could match (for anonymous requests: the
    /// public rules and the deny rules that need no identity, in order).
    pub(crate) fn first_match(
        &self,
        identity: Option<&Identity>,
        path: Option<&str>,
        mut matches: impl FnMut(u32) -> bool,
    ) -> Option<u32> {
        let Some(identity) = identity else {
            return self.anonymous.iter().copied().find(|&i| matches(i));
        };
        if self.linear {
            return (0..self.rule_count).find(|&i| matches(i));
        }
        let mut heads: [&[u32]; MAX_MERGED_LISTS] = [&[]; MAX_MERGED_LISTS];
        let mut count = 0;
        let lists = [
            Some(&self.unfiled[..]),
            self.by_email.get(identity.email()).map(Vec::as_slice),
            self.by_domain.get(identity.email_domain()).map(Vec::as_slice),
            path.and_then(|p| self.by_path_segment.get(first_segment(p))).map(Vec::as_slice),
        ]
        .into_iter()
        .chain(identity.groups().iter().map(|g| self.by_group.get(&**g).map(Vec::as_slice)));
        for list in lists.flatten() {
            if count == MAX_MERGED_LISTS {
                return (0..self.rule_count).find(|&i| matches(i));
            }
            heads[count] = list;
            count += 1;
        }
        merge_first(&mut heads[..count], matches)
    }
}

/// The first segment of a path (`/a/b` → `a`, `/` → ``).
fn first_segment(path: &str) -> &str {
    let rest = path.strip_prefix('/').unwrap_or(path);
    rest.split_once('/').map_or(rest, |(first, _)| first)
}

/// Walks the union of sorted lists in ascending order, skipping repeats, and
/// returns the first element `matches` accepts.
fn merge_first(heads: &mut [&[u32]], mut matches: impl FnMut(u32) -> bool) -> Option<u32> {
    let mut last = None;
    loop {
        let (list, &rule) =
            heads.iter().enumerate().filter_map(|(i, list)| list.first().map(|r| (i, r))).min_by_key(|(_, r)| **r)?;
        heads[list] = &heads[list][1..];
        if last == Some(rule) {
            continue;
        }
        last = Some(rule);
        if matches(rule) {
            return Some(rule);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::*;
    use crate::conditions::{Conditions, PathGlob, RequestFacts};
    use crate::error::Location;
    use crate::facts::{Facts, IdentityParts, Target};
    use crate::policy::RuleEffect;

    #[test]
    fn merge_visits_the_union_in_order_once() {
        let (a, b, c) = ([1u32, 4, 9], [2u32, 4, 5], [9u32]);
        let mut heads: Vec<&[u32]> = vec![&a, &b, &c];
        let mut seen = Vec::new();
        assert_eq!(
            merge_first(&mut heads, |r| {
                seen.push(r);
                false
            }),
            None
        );
        assert_eq!(seen, [1, 2, 4, 5, 9]);
    }

    const EMAILS: [&str; 3] = ["a@x.example", "b@x.example", "c@y.example"];
    const GROUPS: [&str; 3] = ["dev", "ops", "sre"];
    const PATHS: [&str; 4] = ["/a/**", "/b/*", "/**", "/a"];

    fn names(pool: &[&str], mask: u8) -> Box<[Box<str>]> {
        let mut picked: Vec<Box<str>> =
            pool.iter().enumerate().filter(|(i, _)| mask & (1 << i) != 0).map(|(_, s)| (*s).into()).collect();
        picked.sort_unstable();
        picked.into()
    }

    fn block() -> impl Strategy<Value = Conditions> {
        // A third of the blocks test no identity, so anonymous requests meet
        // deny and public rules often.
        let who = (0u8..8, 0u8..4, 0u8..8, 0u8..8).prop_map(|w| w);
        let nobody = Just((0u8, 0u8, 0u8, 0u8));
        (prop_oneof![2 => who, 1 => nobody], 0u8..16).prop_map(|((emails, domains, any, all), paths)| Conditions {
            emails: names(&EMAILS, emails),
            email_domains: names(&["x.example", "y.example"], domains),
            groups_any: names(&GROUPS, any),
            groups_all: names(&GROUPS, all),
            paths: PATHS
                .iter()
                .enumerate()
                .filter(|(i, _)| paths & (1 << i) != 0)
                .map(|(_, p)| PathGlob::new(p).unwrap())
                .collect(),
            ..Conditions::default()
        })
    }

    fn rule() -> impl Strategy<Value = Rule> {
        (prop::collection::vec(block(), 1..3), any::<bool>(), any::<bool>()).prop_map(|(blocks, public, deny)| Rule {
            name: "r".into(),
            at: Location::default(),
            effect: if deny { RuleEffect::Deny } else { RuleEffect::Allow },
            public: public && !deny && blocks.iter().all(|b| !b.tests_identity()),
            blocks: blocks.into_iter().map(Arc::new).collect(),
        })
    }

    proptest! {
        /// The index finds exactly the rule a scan in order would find.
        #[test]
        fn index_agrees_with_a_linear_scan(
            rules in prop::collection::vec(rule(), 17..60),
            email in 0usize..3,
            groups in 0u8..8,
            path in prop::sample::select(vec!["/", "/a", "/a/x", "/b/y", "/c", "/b"]),
            anonymous in any::<bool>(),
        ) {
            let index = RuleIndex::build(&rules);
            let who = Identity::new(IdentityParts {
                email: EMAILS[email].into(),
                groups: names(&GROUPS, groups).iter().map(|g| g.to_string()).collect(),
                ..IdentityParts::default()
            });
            let identity = (!anonymous).then_some(&who);
            let facts = Facts {
                target: Target::Http { host: "h", path, method: "GET" },
                source_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
                now: 0,
                identity,
            };
            let request = RequestFacts { facts: &facts, method: 1, path: Some(path) };
            let matches = |i: u32| {
                let rule = &rules[i as usize];
                let reachable = identity.is_some() || rule.public || rule.effect == RuleEffect::Deny;
                reachable && rule.blocks.iter().all(|b| b.matches(&request))
            };
            // The reference scans every rule in order. An anonymous request
            // is decided by public rules and by deny rules (those that test
            // the user simply do not match it); other allow rules need a login.
            let expected = (0..rules.len() as u32).find(|&i| matches(i));
            prop_assert_eq!(index.first_match(identity, Some(path), matches), expected);
        }
    }
}
