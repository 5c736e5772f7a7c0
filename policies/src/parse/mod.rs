//! From YAML text to checked routes: load a positioned tree, decode it with
//! unknown keys refused, then run the checks that need the whole document
//! (duplicate routes, rules shadowed by an earlier rule).

mod conditions;
mod fields;
mod options;
mod responses;
mod routes;
mod yaml;

use std::collections::HashMap;
use std::sync::Arc;

use fields::{text, Fields};
use routes::RouteDecl;
use yaml::NodeKind;

use crate::conditions::Conditions;
use crate::error::{Diagnostics, PolicyErrors};
use crate::limits::{MAX_ROUTES, MAX_SHADOW_CHECK_COST};
use crate::policy::{Route, RouteTarget, Rule, RuleIndex};

/// The policy-language version this crate reads.
pub const LANGUAGE_VERSION: &str = "1";

/// What a document holds: its routes, ready to index, and its response rules.
pub(crate) type Parsed = (Vec<Route>, Vec<crate::responses::ResponseRule>);

/// Parses and checks a document.
pub(crate) fn document(file: &str, source: &str) -> Result<Parsed, PolicyErrors> {
    let mut d = Diagnostics::new(file);
    let Some(root) = yaml::load(source, &mut d) else {
        return d.into_result((Vec::new(), Vec::new()));
    };
    let keys = ["version", "condition_sets", "routes", "responses"];
    let Some(fields) = Fields::new(&root, "the policy document", &keys, &mut d) else {
        return d.into_result((Vec::new(), Vec::new()));
    };
    if let Some(version) = fields.require("version", "the policy document", &mut d) {
        if let Some(v) = text(version, "the policy language version", &mut d) {
            if v != LANGUAGE_VERSION {
                d.error(
                    version.at,
                    format!("unsupported policy version `{v}`; this Portcullis reads version {LANGUAGE_VERSION}"),
                );
            }
        }
    }
    let sets = fields.get("condition_sets").map(|node| condition_sets(node, &mut d)).unwrap_or_default();
    let mut decls = Vec::new();
    if let Some(node) = fields.require("routes", "the policy document", &mut d) {
        match &node.kind {
            NodeKind::Seq(items) if items.len() > MAX_ROUTES => d.error(
                items[MAX_ROUTES].at,
                format!("more than {MAX_ROUTES} routes (the limit); this is route {}", MAX_ROUTES + 1),
            ),
            NodeKind::Seq(items) => {
                let mut rules = routes::RuleCount::default();
                decls.extend(items.iter().filter_map(|item| routes::route(item, &sets, &mut rules, &mut d)));
            }
            _ => d.error(node.at, format!("expected `routes` (a list), found {}", node.describe())),
        }
    }
    check_duplicate_routes(&decls, &mut d);
    let mut budget = ShadowBudget::default();
    for decl in &decls {
        if !check_shadowed_rules(&decl.rules, &mut budget, &mut d) {
            break;
        }
    }
    let routes = decls
        .into_iter()
        .map(|decl| Route {
            index: RuleIndex::build(&decl.rules),
            name: decl.name.into(),
            at: decl.at,
            target: decl.target,
            options: decl.options,
            rules: decl.rules.into(),
        })
        .collect();
    let responses = fields.get("responses").map(|node| responses::responses(node, &mut d)).unwrap_or_default();
    d.into_result((routes, responses))
}

fn condition_sets(node: &yaml::Node, d: &mut Diagnostics) -> conditions::ConditionSets {
    let mut sets = HashMap::new();
    let NodeKind::Map(entries) = &node.kind else {
        d.error(
            node.at,
            format!("expected `condition_sets` (a mapping of name to conditions), found {}", node.describe()),
        );
        return sets;
    };
    for (key, value) in entries {
        let Some(name) = text(key, "a condition set name", d) else {
            continue;
        };
        if let Some((first, _)) = sets.get(name) {
            let first: &crate::error::Location = first;
            d.error(key.at, format!("condition set `{name}` is already defined at line {}", first.line));
            continue;
        }
        if let Some((block, _)) = conditions::decode(value, &format!("condition set `{name}`"), None, d) {
            sets.insert(name.to_owned(), (key.at, Arc::new(block)));
        }
    }
    sets
}

fn check_duplicate_routes(decls: &[RouteDecl], d: &mut Diagnostics) {
    let mut names = HashMap::new();
    let mut targets: HashMap<(&str, &str), &RouteDecl> = HashMap::new();
    for decl in decls {
        if let Some(first) = names.insert(&*decl.name, decl.at) {
            d.error(decl.at, format!("route name `{}` is already used at line {}", decl.name, first.line));
        }
        let key = match &decl.target {
            RouteTarget::Http { host, path_prefix, .. } => (&**host, path_prefix.as_deref().unwrap_or("/")),
            RouteTarget::Tcp { name, .. } => (&**name, "tcp"),
        };
        if let Some(first) = targets.get(&key) {
            d.error(
                decl.at,
                format!(
                    "route `{}` serves the same {} as route `{}` at line {}",
                    decl.name,
                    describe(&decl.target),
                    first.name,
                    first.at.line
                ),
            );
        } else {
            targets.insert(key, decl);
        }
    }
}

fn describe(target: &RouteTarget) -> String {
    match target {
        RouteTarget::Http { host, path_prefix, .. } => {
            format!("host and path (`{host}{}`)", path_prefix.as_deref().unwrap_or(""))
        }
        RouteTarget::Tcp { name, .. } => format!("CONNECT name (`{name}`)"),
    }
}

/// What the shadowed-rule check may still spend ([`MAX_SHADOW_CHECK_COST`]).
#[derive(Default)]
struct ShadowBudget {
    spent: u64,
}

impl ShadowBudget {
    /// Whether `block_b` implies `block_a`, or `None` when proving it would
    /// pass the budget.
    fn implies(&mut self, block_b: &Arc<Conditions>, block_a: &Arc<Conditions>) -> Option<bool> {
        if Arc::ptr_eq(block_a, block_b) {
            return Some(true);
        }
        self.spent = self.spent.saturating_add(block_a.entries().saturating_mul(block_b.entries()));
        (self.spent <= MAX_SHADOW_CHECK_COST).then(|| block_b.implies(block_a))
    }

    /// Whether one of `blocks` implies `block_a`.
    fn implied(&mut self, blocks: &[Arc<Conditions>], block_a: &Arc<Conditions>) -> Option<bool> {
        for block_b in blocks {
            if self.implies(block_b, block_a)? {
                return Some(true);
            }
        }
        Some(false)
    }
}

/// Earlier rule `a` shadows later rule `b` when every request `b` matches is
/// also matched by `a`, so `b` can never decide anything. Anonymous requests
/// count: a rule they reach is shadowed only by a rule they also reach.
/// `None` when the budget ran out.
fn shadows(a: &Rule, b: &Rule, budget: &mut ShadowBudget) -> Option<bool> {
    if b.applies_to_anonymous() && !a.applies_to_anonymous() {
        return Some(false);
    }
    for block_a in a.blocks.iter() {
        if !budget.implied(&b.blocks, block_a)? {
            return Some(false);
        }
    }
    Some(true)
}

/// Reports rules an earlier rule shadows; false (with an error) when the
/// check ran out of budget, at the rule it was checking.
fn check_shadowed_rules(rules: &[Rule], budget: &mut ShadowBudget, d: &mut Diagnostics) -> bool {
    for (i, later) in rules.iter().enumerate() {
        let mut shadowed_by = None;
        for earlier in &rules[..i] {
            match shadows(earlier, later, budget) {
                Some(true) => {
                    shadowed_by = Some(earlier);
                    break;
                }
                Some(false) => {}
                None => {
                    d.error(
                        later.at,
                        format!(
                            "checking whether rule `{}` can ever match takes more than {MAX_SHADOW_CHECK_COST} \
                             comparisons of condition entries in this policy (the limit); use fewer or shorter \
                             lists, or share them through `condition_sets`",
                            later.name
                        ),
                    );
                    return false;
                }
            }
        }
        if let Some(earlier) = shadowed_by {
            d.error(
                later.at,
                format!(
                    "rule `{}` can never match: rule `{}` at line {} comes first and matches every request it would; \
                     move it above rule `{}`, or remove it",
                    later.name, earlier.name, earlier.at.line, earlier.name
                ),
            );
        }
    }
    true
}
