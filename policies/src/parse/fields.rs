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
                d.error(key.at, format!("unknown key `{name}` in {what}; expected one of: {}", allowed.join(", ")));
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

fn describe_value(node: &Node) -> String {
    match &node.kind {
        NodeKind::Scalar { value, .. } if !node.is_null() => format!("`{value}`"),
        _ => node.describe().to_owned(),
    }
}
