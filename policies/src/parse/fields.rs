//! Reading typed values out of the YAML tree. Every reader records a
//! positioned error and returns `None` instead of failing fast, so that one
//! `policy check` run reports every problem in the document.

use std::collections::HashSet;

use super::yaml::{Node, NodeKind};
use crate::error::{Diagnostics, Location};

/// The keys of one mapping, checked against the keys it may have.
pub(crate) struct Fields<'n> {
    pub at: Location,
    entries: Vec<(&'n str, &'n Node, &'n Node)>,
}

impl<'n> Fields<'n> {
    /// Reads `node` as a mapping called `what` whose keys must be among
    /// `allowed`. Unknown and repeated keys are errors naming the key.
    pub(crate) fn new(node: &'n Node, what: &str, allowed: &[&str], d: &mut Diagnostics) -> Option<Self> {
        let NodeKind::Map(pairs) = &node.kind else {
            d.error(node.at, format!("expected {what} (a mapping), found {}", node.describe()));
            return None;
        };
        let mut seen = HashSet::new();
        let mut entries = Vec::with_capacity(pairs.len());
        for (key, value) in pairs {
            let NodeKind::Scalar { value: name, .. } = &key.kind else {
                d.error(key.at, format!("keys of {what} must be plain words, found {}", key.describe()));
                continue;
            };
            if !allowed.contains(&name.as_str()) {
                let hint = closest(name, allowed).map(|k| format!("did you mean `{k}`? ")).unwrap_or_default();
                d.error(
                    key.at,
                    format!("unknown key `{name}` in {what}; {hint}expected one of: {}", allowed.join(", ")),
                );
                continue;
            }
            if !seen.insert(name.as_str()) {
                d.error(key.at, format!("key `{name}` appears twice in {what}"));
                continue;
            }
            entries.push((name.as_str(), key, value));
        }
        Some(Self { at: node.at, entries })
    }

    /// The value of `key`, if present.
    pub(crate) fn get(&self, key: &str) -> Option<&'n Node> {
        self.entries.iter().find(|(name, _, _)| *name == key).map(|(_, _, value)| *value)
    }

    /// Where `key` is written, if present.
    pub(crate) fn key_at(&self, key: &str) -> Option<Location> {
        self.entries.iter().find(|(name, _, _)| *name == key).map(|(_, k, _)| k.at)
    }

    /// The value of `key`, or an error saying it is required.
    pub(crate) fn require(&self, key: &str, what: &str, d: &mut Diagnostics) -> Option<&'n Node> {
        let value = self.get(key);
        if value.is_none() {
            d.error(self.at, format!("{what} needs the key `{key}`"));
        }
        value
    }

    /// The (key, value) pairs in document order.
    pub(crate) fn entries(&self) -> impl Iterator<Item = (&'n str, &'n Node)> + '_ {
        self.entries.iter().map(|(name, _, value)| (*name, *value))
    }
}

/// A scalar's text, or an error naming what was expected.
pub(crate) fn text<'n>(node: &'n Node, what: &str, d: &mut Diagnostics) -> Option<&'n str> {
    match &node.kind {
        NodeKind::Scalar { value, .. } if !node.is_null() => Some(value.as_str()),
        _ => {
            d.error(node.at, format!("expected {what}, found {}", node.describe()));
            None
        }
    }
}

/// `true` or `false`.
pub(crate) fn boolean(node: &Node, what: &str, d: &mut Diagnostics) -> Option<bool> {
    match &node.kind {
        NodeKind::Scalar { value, plain: true } if value == "true" => Some(true),
        NodeKind::Scalar { value, plain: true } if value == "false" => Some(false),
        _ => {
            d.error(node.at, format!("expected {what} (true or false), found {}", describe_value(node)));
            None
        }
    }
}

/// A non-negative integer.
pub(crate) fn unsigned(node: &Node, what: &str, d: &mut Diagnostics) -> Option<u32> {
    let parsed = match &node.kind {
        NodeKind::Scalar { value, plain: true } => value.parse::<u32>().ok(),
        _ => None,
    };
    if parsed.is_none() {
        d.error(node.at, format!("expected {what} (a whole number), found {}", describe_value(node)));
    }
    parsed
}

/// A list of scalars, each converted by `item`; a single scalar is accepted
/// as a list of one. An empty list is an error: it would match nothing.
pub(crate) fn list<'n, T>(
    node: &'n Node,
    what: &str,
    d: &mut Diagnostics,
    mut item: impl FnMut(&'n str, Location, &mut Diagnostics) -> Option<T>,
) -> Option<Vec<T>> {
    let items: Vec<&Node> = match &node.kind {
        NodeKind::Seq(items) => items.iter().collect(),
        NodeKind::Scalar { .. } if !node.is_null() => vec![node],
        _ => {
            d.error(node.at, format!("expected {what} (a list), found {}", node.describe()));
            return None;
        }
    };
    if items.is_empty() {
        d.error(node.at, format!("{what} is an empty list, which can never match; remove the key instead"));
        return None;
    }
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    for entry in items {
        match text(entry, &format!("an entry of {what}"), d).and_then(|t| item(t, entry.at, d)) {
            Some(value) => out.push(value),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// The key of `known` closest to the unknown `name`, when it is close enough
/// to be a slip of the keyboard: at most a third of its letters (and at
/// least one) edited away, compared case-insensitively.
pub(crate) fn closest<'k>(name: &str, known: &[&'k str]) -> Option<&'k str> {
    let name = name.to_ascii_lowercase();
    let allowed = (name.chars().count() / 3).max(1);
    known
        .iter()
        .map(|k| (edit_distance(&name, &k.to_ascii_lowercase()), *k))
        .filter(|(distance, _)| *distance <= allowed)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, k)| k)
}

/// Edit distance counting an insertion, a deletion, a substitution or a
/// swap of two neighbouring letters as one edit (optimal string alignment).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let width = b.len() + 1;
    let mut d: Vec<usize> = (0..(a.len() + 1) * width).map(|k| if k < width { k } else { 0 }).collect();
    for i in 1..=a.len() {
        d[i * width] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best =
                (d[(i - 1) * width + j] + 1).min(d[i * width + j - 1] + 1).min(d[(i - 1) * width + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[(i - 2) * width + j - 2] + 1);
            }
            d[i * width + j] = best;
        }
    }
    d[a.len() * width + b.len()]
}

fn describe_value(node: &Node) -> String {
    match &node.kind {
        NodeKind::Scalar { value, .. } if !node.is_null() => format!("`{value}`"),
        _ => node.describe().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misspelt_keys_find_their_closest_known_key() {
        let keys = ["email", "email_domain", "groups_any", "groups_all", "paths", "methods"];
        assert_eq!(closest("grups_any", &keys), Some("groups_any"));
        assert_eq!(closest("Groups_All", &keys), Some("groups_all"));
        assert_eq!(closest("emial", &keys), Some("email"));
        assert_eq!(closest("path", &keys), Some("paths"));
        assert_eq!(closest("colour", &keys), None, "nothing is close");
        assert_eq!(closest("description", &keys), None);
    }

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("grups_any", "groups_any"), 1);
        assert_eq!(edit_distance("same", "same"), 0);
        assert_eq!(edit_distance("emial", "email"), 1, "a swap is one edit");
    }
}
