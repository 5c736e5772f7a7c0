//! First-match rule lookup that skips rules a user cannot match.
//!
//! A rule that names emails, email domains or groups can only match a user
//! who has one of them, so each such rule is filed under those keys. For a
//! request, the candidate lists (rules filed under the user's email, domain
//! and each group, plus the rules filed under nothing) are merged in rule
//! order without allocating, and full conditions are checked only on those
//! candidates. A route with a thousand per-user rules then costs a handful of
//! hash lookups instead of a thousand condition checks.

use std::collections::HashMap;

use foldhash::fast::FixedState;

use super::Rule;
use crate::facts::Identity;

/// Routes with at most this many rules are scanned in order.
const LINEAR_SCAN_MAX_RULES: usize = 16;
/// Most candidate lists merged at once; more falls back to a scan.
const MAX_MERGED_LISTS: usize = 32;

enum Key {
    Email,
    Domain,
    Group,
}

type Postings = HashMap<Box<str>, Vec<u32>, FixedState>;

/// Per-route index from identity keys to rule positions.
#[derive(Debug, Default)]
pub struct RuleIndex {
    linear: bool,
    rule_count: u32,
    by_email: Postings,
    by_domain: Postings,
    by_group: Postings,
    unfiled: Vec<u32>,
    public: Vec<u32>,
}

impl RuleIndex {
    /// Files each rule under the identity keys it requires.
    pub(crate) fn build(rules: &[Rule]) -> Self {
        let mut index = Self {
            linear: rules.len() <= LINEAR_SCAN_MAX_RULES,
            rule_count: u32::try_from(rules.len()).unwrap_or(u32::MAX),
            ..Self::default()
        };
        for (position, rule) in rules.iter().enumerate() {
            let position = position as u32;
            if rule.public {
                index.public.push(position);
            }
            let filed = rule.blocks.iter().find_map(|block| {
                if !block.emails.is_empty() {
                    Some((Key::Email, &block.emails[..]))
                } else if !block.email_domains.is_empty() {
                    Some((Key::Domain, &block.email_domains[..]))
                } else if !block.groups_any.is_empty() {
                    Some((Key::Group, &block.groups_any[..]))
                } else if !block.groups_all.is_empty() {
                    Some((Key::Group, &block.groups_all[..1]))
                } else {
                    None
                }
            });
            match filed {
                Some((kind, keys)) => {
                    let postings = match kind {
                        Key::Email => &mut index.by_email,
                        Key::Domain => &mut index.by_domain,
                        Key::Group => &mut index.by_group,
                    };
                    for key in keys {
                        postings.entry(key.clone()).or_default().push(position);
                    }
                }
                None => index.unfiled.push(position),
            }
        }
        index
    }

    /// The position of the first rule for which `matches` is true, visiting
    /// only rules that `identity` could match (public rules for anonymous
    /// requests).
    pub(crate) fn first_match(&self, identity: Option<&Identity>, mut matches: impl FnMut(u32) -> bool) -> Option<u32> {
        let Some(identity) = identity else {
            return self.public.iter().copied().find(|&i| matches(i));
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
    use super::*;

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
}
