//! Decodes a condition block (the mapping under `allow:`, `deny:` or a named
//! condition set) into compiled [`Conditions`], validating every value where
//! it is written.

use std::collections::HashMap;
use std::sync::Arc;

use ipnet::IpNet;

use super::fields::{list, text, Fields};
use super::yaml::Node;
use crate::conditions::time_window::{parse_days, parse_hours, parse_zone, TimeWindow, ALL_DAYS};
use crate::conditions::{ClaimOp, ClaimTest, Conditions, PathGlob, METHODS};
use crate::duration::parse_seconds;
use crate::error::{Diagnostics, Location};
use crate::facts::CredentialKind;

/// Named condition sets, by name.
pub(crate) type ConditionSets = HashMap<String, (Location, Arc<Conditions>)>;

const CONDITION_KEYS: &[&str] = &[
    "email",
    "email_domain",
    "groups_any",
    "groups_all",
    "claims",
    "credential",
    "source_ip",
    "methods",
    "paths",
    "time",
    "max_session_age",
    "logged_in_within",
    "use",
];

/// Decodes a condition block. `sets` is `None` inside a condition set (sets
/// cannot use other sets). Returns the block and the sets it uses.
pub(crate) fn decode(
    node: &Node,
    what: &str,
    sets: Option<&ConditionSets>,
    d: &mut Diagnostics,
) -> Option<(Conditions, Vec<Arc<Conditions>>)> {
    let allowed = if sets.is_some() { CONDITION_KEYS } else { &CONDITION_KEYS[..CONDITION_KEYS.len() - 1] };
    let fields = Fields::new(node, what, allowed, d)?;
    let errors_before = d.error_count();
    let mut block = Conditions::default();
    let mut used = Vec::new();
    for (key, value) in fields.entries() {
        match key {
            "email" => block.emails = sorted(list(value, "`email`", d, email)),
            "email_domain" => block.email_domains = sorted(list(value, "`email_domain`", d, domain)),
            "groups_any" => block.groups_any = boxed(list(value, "`groups_any`", d, word)),
            "groups_all" => block.groups_all = boxed(list(value, "`groups_all`", d, word)),
            "claims" => block.claims = claims(value, d).unwrap_or_default().into(),
            "credential" => block.credentials = bits(list(value, "`credential`", d, credential)),
            "source_ip" => block.source_ips = list(value, "`source_ip`", d, cidr).unwrap_or_default().into(),
            "methods" => block.methods = bits(list(value, "`methods`", d, method)),
            "paths" => block.paths = list(value, "`paths`", d, path_glob).unwrap_or_default().into(),
            "time" => block.time = time_window(value, d),
            "max_session_age" => block.max_session_age = duration(value, d),
            "logged_in_within" => block.logged_in_within = duration(value, d),
            "use" => {
                let sets = sets.unwrap_or_else(|| unreachable!("`use` is only allowed when sets are given"));
                for name in list(value, "`use`", d, |name, at, _| Some((name, at))).unwrap_or_default() {
                    match sets.get(name.0) {
                        Some((_, set)) => used.push(set.clone()),
                        None => d.error(name.1, unknown_set(name.0, sets)),
                    }
                }
            }
            _ => unreachable!("Fields only yields allowed keys"),
        }
    }
    (d.error_count() == errors_before).then_some((block, used))
}

fn unknown_set(name: &str, sets: &ConditionSets) -> String {
    let mut known: Vec<&str> = sets.keys().map(String::as_str).collect();
    known.sort_unstable();
    if known.is_empty() {
        format!("unknown condition set `{name}`; this policy defines no `condition_sets`")
    } else {
        format!("unknown condition set `{name}`; defined sets: {}", known.join(", "))
    }
}

fn sorted(items: Option<Vec<Box<str>>>) -> Box<[Box<str>]> {
    let mut items = items.unwrap_or_default();
    items.sort_unstable();
    items.dedup();
    items.into()
}

fn boxed(items: Option<Vec<Box<str>>>) -> Box<[Box<str>]> {
    items.unwrap_or_default().into()
}

fn bits<T: Default + std::ops::BitOr<Output = T>>(items: Option<Vec<T>>) -> T {
    items.unwrap_or_default().into_iter().fold(T::default(), |acc, b| acc | b)
}

fn email(value: &str, at: Location, d: &mut Diagnostics) -> Option<Box<str>> {
    let ok =
        value.split_once('@').is_some_and(|(user, host)| !user.is_empty() && host.contains('.') && !host.contains('@'));
    if !ok {
        d.error(at, format!("expected an email address such as `ada@corp.example`, found `{value}`"));
    }
    ok.then(|| value.to_ascii_lowercase().into())
}

fn domain(value: &str, at: Location, d: &mut Diagnostics) -> Option<Box<str>> {
    let ok = value.contains('.') && !value.contains(['@', '/', ' ', '*']);
    if !ok {
        d.error(at, format!("expected an email domain such as `corp.example` (without `@`), found `{value}`"));
    }
    ok.then(|| value.to_ascii_lowercase().into())
}

fn word(value: &str, _at: Location, _d: &mut Diagnostics) -> Option<Box<str>> {
    Some(value.into())
}

fn credential(value: &str, at: Location, d: &mut Diagnostics) -> Option<u8> {
    value.parse::<CredentialKind>().map(CredentialKind::bit).map_err(|e| d.error(at, e)).ok()
}

pub(crate) fn cidr(value: &str, at: Location, d: &mut Diagnostics) -> Option<IpNet> {
    let parsed = value.parse::<IpNet>().or_else(|_| value.parse::<std::net::IpAddr>().map(IpNet::from));
    match parsed {
        Ok(net) if net.trunc() == net => Some(net),
        Ok(net) => {
            d.error(at, format!("`{value}` has host bits set; did you mean `{}`?", net.trunc()));
            None
        }
        Err(_) => {
            d.error(at, format!("expected an IP network such as `10.0.0.0/8` or `2001:db8::/32`, found `{value}`"));
            None
        }
    }
}

fn method(value: &str, at: Location, d: &mut Diagnostics) -> Option<u16> {
    match METHODS.iter().position(|m| *m == value) {
        Some(i) => Some(1 << i),
        None if METHODS.contains(&value.to_ascii_uppercase().as_str()) => {
            d.error(
                at,
                format!("HTTP methods are written in upper case: `{}`, found `{value}`", value.to_ascii_uppercase()),
            );
            None
        }
        None => {
            d.error(at, format!("expected an HTTP method ({}), found `{value}`", METHODS.join(", ")));
            None
        }
    }
}

fn path_glob(value: &str, at: Location, d: &mut Diagnostics) -> Option<PathGlob> {
    PathGlob::new(value).map_err(|e| d.error(at, e)).ok()
}

fn duration(node: &Node, d: &mut Diagnostics) -> Option<u32> {
    let value = text(node, "a duration such as `8h`", d)?;
    parse_seconds(value).map_err(|e| d.error(node.at, e)).ok()
}

fn time_window(node: &Node, d: &mut Diagnostics) -> Option<TimeWindow> {
    let fields = Fields::new(node, "`time`", &["days", "hours", "timezone"], d)?;
    let days = match fields.get("days") {
        Some(node) => bits(Some(list(node, "`days`", d, |v, at, d| parse_days(v).map_err(|e| d.error(at, e)).ok())?)),
        None => ALL_DAYS,
    };
    let (start, end) = match fields.get("hours") {
        Some(node) => {
            let value = text(node, "hours such as `08:00-19:00`", d)?;
            parse_hours(value).map_err(|e| d.error(node.at, e)).ok()?
        }
        None => (0, 24 * 60),
    };
    let zone_node = fields.require("timezone", "`time`", d)?;
    let zone_name = text(zone_node, "an IANA time zone such as `Europe/Berlin`", d)?;
    let zone = parse_zone(zone_name).map_err(|e| d.error(zone_node.at, e)).ok()?;
    Some(TimeWindow::new(days, start, end, zone))
}

fn claims(node: &Node, d: &mut Diagnostics) -> Option<Vec<ClaimTest>> {
    let super::yaml::NodeKind::Map(entries) = &node.kind else {
        d.error(node.at, format!("expected `claims` (a mapping of claim name to test), found {}", node.describe()));
        return None;
    };
    let mut tests = Vec::new();
    for (key, value) in entries {
        let name = text(key, "a claim name", d)?;
        let fields = Fields::new(value, &format!("the test of claim `{name}`"), &["equals", "contains"], d)?;
        let (op, operand) = match (fields.get("equals"), fields.get("contains")) {
            (Some(v), None) => (ClaimOp::Equals, v),
            (None, Some(v)) => (ClaimOp::Contains, v),
            _ => {
                d.error(value.at, format!("the test of claim `{name}` needs exactly one of `equals` or `contains`"));
                continue;
            }
        };
        let operand = text(operand, "a claim value", d)?;
        tests.push(ClaimTest { name: name.into(), op, value: operand.into() });
    }
    Some(tests)
}
