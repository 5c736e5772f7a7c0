//! The `responses:` section: a list of automated response rules, each
//! `{ name, when, then, dry_run }`, where `when` is exactly one of
//! `denials: { at_least, within }`, `signal: { type, risk_level }` or
//! `source_outside: [networks]`. Errors carry line and column like the rest.

use std::collections::HashMap;

use super::conditions::cidr;
use super::fields::{boolean, list, text, unsigned, Fields};
use super::yaml::{Node, NodeKind};
use crate::error::Diagnostics;
use crate::limits::MAX_RESPONSE_RULES;
use crate::responses::{ResponseAction, ResponseRule, Trigger};

/// Longest denial window, seconds (a day).
const MAX_WINDOW_S: u32 = 86_400;
/// Risk levels a signal may carry.
const RISK_LEVELS: &[&str] = &["low", "medium", "high"];

/// Reads the section.
pub(crate) fn responses(node: &Node, d: &mut Diagnostics) -> Vec<ResponseRule> {
    let NodeKind::Seq(items) = &node.kind else {
        d.error(node.at, format!("expected `responses` (a list of response rules), found {}", node.describe()));
        return Vec::new();
    };
    if items.len() > MAX_RESPONSE_RULES {
        d.error(items[MAX_RESPONSE_RULES].at, format!("more than {MAX_RESPONSE_RULES} response rules (the limit)"));
        return Vec::new();
    }
    let mut names = HashMap::new();
    let mut rules = Vec::with_capacity(items.len());
    for item in items {
        let Some(rule) = rule(item, d) else { continue };
        if let Some(first) = names.insert(rule.name.clone(), rule.at) {
            let first: crate::error::Location = first;
            d.error(rule.at, format!("response rule name `{}` is already used at line {}", rule.name, first.line));
            continue;
        }
        rules.push(rule);
    }
    rules
}

fn rule(item: &Node, d: &mut Diagnostics) -> Option<ResponseRule> {
    let fields = Fields::new(item, "a response rule", &["name", "when", "then", "dry_run"], d)?;
    let name = fields.require("name", "a response rule", d).and_then(|n| text(n, "a rule name", d));
    let what = format!("response rule `{}`", name.unwrap_or("?"));
    let when = fields.require("when", &what, d).and_then(|node| trigger(node, &what, d));
    let then = fields.require("then", &what, d).and_then(|node| {
        let name = text(node, "an action", d)?;
        let action = ResponseAction::parse(name);
        if action.is_none() {
            d.error(node.at, format!("unknown action `{name}` in {what}; expected one of: {}", ResponseAction::NAMES));
        }
        action
    });
    let dry_run = match fields.get("dry_run") {
        Some(node) => boolean(node, "`dry_run`", d)?,
        None => false,
    };
    let (name, when, then) = (name?, when?, then?);
    Some(ResponseRule { name: name.into(), at: item.at, when, then, dry_run })
}

fn trigger(node: &Node, what: &str, d: &mut Diagnostics) -> Option<Trigger> {
    let fields = Fields::new(node, &format!("`when` of {what}"), &["denials", "signal", "source_outside"], d)?;
    let mut entries = fields.entries();
    let (Some((key, value)), None) = (entries.next(), entries.next()) else {
        d.error(node.at, format!("`when` of {what} needs exactly one of: denials, signal, source_outside"));
        return None;
    };
    match key {
        "denials" => {
            let f = Fields::new(value, "`denials`", &["at_least", "within"], d)?;
            let at_least = f.require("at_least", "`denials`", d).and_then(|n| unsigned(n, "`at_least`", d));
            let within = f.require("within", "`denials`", d).and_then(|n| {
                let text = text(n, "`within` (a duration such as 10m)", d)?;
                match crate::parse_duration(text) {
                    Ok(s) if (1..=MAX_WINDOW_S).contains(&s) => Some(s),
                    Ok(_) => {
                        d.error(n.at, format!("`within` must be between 1s and {MAX_WINDOW_S}s (a day)"));
                        None
                    }
                    Err(e) => {
                        d.error(n.at, e);
                        None
                    }
                }
            });
            let at_least = at_least?;
            if at_least == 0 {
                d.error(value.at, "`at_least` must be 1 or more");
                return None;
            }
            Some(Trigger::Denials { at_least, within_s: within? })
        }
        "signal" => {
            let f = Fields::new(value, "`signal`", &["type", "risk_level"], d)?;
            let types = match f.get("type") {
                Some(n) => list(n, "`type`", d, |t, _, _| Some(t.to_owned()))?,
                None => Vec::new(),
            };
            let risk_levels = match f.get("risk_level") {
                Some(n) => list(n, "`risk_level`", d, |t, at, d| {
                    let level = t.to_ascii_lowercase();
                    if RISK_LEVELS.contains(&level.as_str()) {
                        Some(level)
                    } else {
                        d.error(at, format!("unknown risk level `{t}`; expected low, medium or high"));
                        None
                    }
                })?,
                None => Vec::new(),
            };
            if types.is_empty() && risk_levels.is_empty() {
                d.error(value.at, "`signal` needs `type` or `risk_level` (or it would match every signal)");
                return None;
            }
            Some(Trigger::Signal { types, risk_levels })
        }
        _ => Some(Trigger::SourceOutside(list(value, "`source_outside`", d, cidr)?)),
    }
}
