//! Decodes routes: their target (HTTP host and path, or TCP name), upstream,
//! options and ordered rules.

use std::sync::Arc;

use super::conditions::{self, ConditionSets};
use super::fields::{boolean, text, Fields};
use super::options::options;
use super::yaml::{Node, NodeKind};
use crate::error::{Diagnostics, Location};
use crate::limits::{MAX_RULES, MAX_RULES_PER_ROUTE};
use crate::policy::{RouteOptions, RouteTarget, Rule, RuleEffect, Upstream};
use crate::request_target::lowercase_path;

/// A decoded route before indexing.
pub(crate) struct RouteDecl {
    pub name: Box<str>,
    pub at: Location,
    pub target: RouteTarget,
    pub options: RouteOptions,
    pub rules: Vec<Rule>,
}

const ROUTE_KEYS: &[&str] = &["name", "host", "path", "tcp", "upstream", "options", "rules"];

/// Rules seen in the routes decoded so far, to hold the document to [`MAX_RULES`].
#[derive(Default)]
pub(crate) struct RuleCount(usize);

/// Decodes one entry of `routes`.
pub(crate) fn route(
    node: &Node,
    sets: &ConditionSets,
    count: &mut RuleCount,
    d: &mut Diagnostics,
) -> Option<RouteDecl> {
    let fields = Fields::new(node, "a route", ROUTE_KEYS, d)?;
    let name = fields.require("name", "a route", d).and_then(|n| identifier(n, "a route name", d));
    let target = target(&fields, d);
    let is_tcp = matches!(target, Some(RouteTarget::Tcp { .. }));
    let options = fields.get("options").map_or(Some(RouteOptions::default()), |n| options(n, d));
    let lowercase = options.as_ref().is_some_and(|o| o.case_insensitive_paths);
    if lowercase {
        check_lowercase_prefix(&fields, d);
    }
    let mut rules = match fields.get("rules") {
        Some(node) => rules(node, sets, is_tcp, lowercase, count, d),
        None => {
            d.error(fields.at, "a route needs `rules` (an ordered list; requests no rule allows are denied)");
            None
        }
    };
    if let (Some(limit), Some(rules)) = (options.as_ref().and_then(|o| o.reauth_after), rules.as_mut()) {
        require_recent_login(rules, limit);
    }
    Some(RouteDecl { name: name?.into(), at: node.at, target: target?, options: options?, rules: rules? })
}

/// Applies the route's `reauth_after` (seconds): every allow rule that needs
/// a login gets it as its own `logged_in_within`, or keeps its own limit when
/// that is smaller (the limits of the condition sets it uses hold as well, all
/// blocks must match). Compiled into the rules, the limit is seen by
/// evaluation, the "log in again" answer and its `max_age`, and admission
/// deadlines exactly like one written in the rule.
///
/// Left as written:
/// - deny rules: the option asks for a recent login to be let in, it does not
///   widen or narrow what is refused;
/// - `public: true` rules: they match requests with no login at all, so a
///   login limit would turn a public path into one that asks for a login (an
///   anonymous request would no longer match). A logged-in caller with an old
///   login is let through a public rule like anyone else.
///
/// Service tokens have no IdP login; their `auth_time` is the token's issue
/// time, so they are judged like with `logged_in_within`: a token older than
/// the limit is refused with "log in again".
fn require_recent_login(rules: &mut [Rule], limit: u32) {
    for rule in rules.iter_mut().filter(|r| r.effect == RuleEffect::Allow && !r.public) {
        // The rule's own block comes first; condition sets (shared) follow.
        let own = Arc::make_mut(&mut rule.blocks[0]);
        own.logged_in_within = Some(own.logged_in_within.map_or(limit, |l| l.min(limit)));
    }
}

fn target(fields: &Fields<'_>, d: &mut Diagnostics) -> Option<RouteTarget> {
    let upstream = fields.require("upstream", "a route", d);
    match (fields.get("host"), fields.get("tcp")) {
        (Some(host), None) => {
            let host = host_pattern(host, d);
            let path_prefix = match fields.get("path") {
                Some(node) => Some(path_prefix(node, d)?),
                None => None,
            };
            let upstream = http_upstream(upstream?, d)?;
            Some(RouteTarget::Http { host: host?, path_prefix, upstream })
        }
        (None, Some(tcp)) => {
            if let Some(at) = fields.key_at("path") {
                d.error(at, "`path` applies to HTTP routes only; a `tcp` route forwards whole connections");
            }
            let name = host_port(tcp, "the CONNECT name", d);
            let upstream = host_port(upstream?, "the upstream", d);
            Some(RouteTarget::Tcp { name: name?, upstream: upstream? })
        }
        (Some(_), Some(_)) => {
            // Point at whichever of the two keys is written second.
            let (host_at, tcp_at) =
                (fields.key_at("host").unwrap_or(fields.at), fields.key_at("tcp").unwrap_or(fields.at));
            let (at, other, first) =
                if tcp_at > host_at { (tcp_at, "host", host_at) } else { (host_at, "tcp", tcp_at) };
            d.error(
                at,
                format!(
                    "a route has either `host` (HTTP) or `tcp` (CONNECT), not both; \
                     this route also has `{other}` at line {}",
                    first.line
                ),
            );
            None
        }
        (None, None) => {
            d.error(fields.at, "a route needs `host` (an HTTP route) or `tcp` (a TCP route reached with CONNECT)");
            None
        }
    }
}

fn identifier<'n>(node: &'n Node, what: &str, d: &mut Diagnostics) -> Option<&'n str> {
    let value = text(node, what, d)?;
    let ok = !value.is_empty() && value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !ok {
        d.error(node.at, format!("{what} may use letters, digits, `-`, `_` and `.`, found `{value}`"));
    }
    ok.then_some(value)
}

fn is_hostname(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty() && label.len() <= 63 && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

fn host_pattern(node: &Node, d: &mut Diagnostics) -> Option<Box<str>> {
    let value = text(node, "a host such as `wiki.corp.example` or `*.corp.example`", d)?.to_ascii_lowercase();
    let bare = value.strip_prefix("*.").unwrap_or(&value);
    if !is_hostname(bare) || (bare.len() < value.len() && !bare.contains('.')) {
        d.error(
            node.at,
            format!(
                "expected a host such as `wiki.corp.example` or `*.corp.example` (no port, no scheme), found `{value}`"
            ),
        );
        return None;
    }
    Some(value.into())
}

fn path_prefix(node: &Node, d: &mut Diagnostics) -> Option<Box<str>> {
    let value = text(node, "a path prefix such as `/api`", d)?;
    if !value.starts_with('/') || value.contains(['*', '?', '#']) {
        d.error(node.at, format!("expected a path prefix starting with `/` (no wildcards), found `{value}`"));
        return None;
    }
    Some(value.into())
}

fn host_port(node: &Node, what: &str, d: &mut Diagnostics) -> Option<Box<str>> {
    let value = text(node, what, d)?;
    let ok = value.rsplit_once(':').is_some_and(|(host, port)| {
        let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        port.parse::<u16>().is_ok_and(|p| p > 0) && (is_hostname(host) || host.parse::<std::net::IpAddr>().is_ok())
    });
    if !ok {
        d.error(node.at, format!("expected {what} as `host:port`, e.g. `ssh.internal:22`, found `{value}`"));
    }
    ok.then(|| value.to_ascii_lowercase().into())
}

fn http_upstream(node: &Node, d: &mut Diagnostics) -> Option<Upstream> {
    let value = text(node, "an upstream URL such as `http://10.0.1.10:8080`", d)?;
    let parsed = (|| {
        let (scheme, rest) = value.split_once("://")?;
        let tls = match scheme {
            "http" => false,
            "https" => true,
            _ => return None,
        };
        let authority = rest.split('/').next()?;
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || authority.starts_with('[') => {
                (host, port.parse::<u16>().ok()?)
            }
            _ => (authority, if tls { 443 } else { 80 }),
        };
        let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        (is_hostname(bare) || bare.parse::<std::net::IpAddr>().is_ok()).then(|| Upstream {
            url: value.into(),
            tls,
            host: bare.into(),
            port,
        })
    })();
    if parsed.is_none() {
        d.error(
            node.at,
            format!(
                "expected an upstream URL such as `http://10.0.1.10:8080` or `https://app.internal`, found `{value}`"
            ),
        );
    }
    parsed
}

/// With `case_insensitive_paths`, the route's `path:` prefix must be lower case.
fn check_lowercase_prefix(fields: &Fields<'_>, d: &mut Diagnostics) {
    if let Some(node) = fields.get("path") {
        if let NodeKind::Scalar { value, .. } = &node.kind {
            if lowercase_path(value) != value.as_str() {
                d.error(node.at, not_lowercase("`path` prefix", value));
            }
        }
    }
}

fn not_lowercase(what: &str, value: &str) -> String {
    format!(
        "the route sets `case_insensitive_paths: true`, so every {what} must be lower case (requests are matched \
         lowercased); found `{value}`, write `{}`",
        lowercase_path(value)
    )
}

/// With `case_insensitive_paths`, the path globs of a rule (its own and
/// those of the condition sets it uses) must be lower case.
fn check_lowercase_globs(body: &Node, sets: &ConditionSets, d: &mut Diagnostics) {
    let NodeKind::Map(entries) = &body.kind else {
        return;
    };
    let items = |value: &'_ Node| -> Vec<(String, Location)> {
        match &value.kind {
            NodeKind::Seq(items) => items
                .iter()
                .filter_map(|item| match &item.kind {
                    NodeKind::Scalar { value, .. } => Some((value.clone(), item.at)),
                    _ => None,
                })
                .collect(),
            NodeKind::Scalar { value: text, .. } => vec![(text.clone(), value.at)],
            _ => Vec::new(),
        }
    };
    for (key, value) in entries {
        match &key.kind {
            NodeKind::Scalar { value: k, .. } if k == "paths" => {
                for (glob, at) in items(value) {
                    if lowercase_path(&glob) != glob.as_str() {
                        d.error(at, not_lowercase("path glob", &glob));
                    }
                }
            }
            NodeKind::Scalar { value: k, .. } if k == "use" => {
                for (name, at) in items(value) {
                    let Some((_, set)) = sets.get(&name) else { continue };
                    if let Some(glob) = set.paths.iter().find(|g| lowercase_path(g.as_str()) != g.as_str()) {
                        let what = format!("path glob (here from condition set `{name}`)");
                        d.error(at, not_lowercase(&what, glob.as_str()));
                    }
                }
            }
            _ => {}
        }
    }
}

fn rules(
    node: &Node,
    sets: &ConditionSets,
    is_tcp: bool,
    lowercase: bool,
    count: &mut RuleCount,
    d: &mut Diagnostics,
) -> Option<Vec<Rule>> {
    let NodeKind::Seq(items) = &node.kind else {
        d.error(node.at, format!("expected `rules` (a list), found {}", node.describe()));
        return None;
    };
    // Past a limit nothing more is decoded: the document is refused anyway,
    // and this bounds the work a hostile one costs.
    let in_earlier_routes = count.0;
    count.0 += items.len();
    if items.len() > MAX_RULES_PER_ROUTE {
        let message = format!("more than {MAX_RULES_PER_ROUTE} rules in one route (the limit)");
        d.error(items[MAX_RULES_PER_ROUTE].at, message);
        return None;
    }
    if count.0 > MAX_RULES {
        if in_earlier_routes <= MAX_RULES {
            let message =
                format!("more than {MAX_RULES} rules in the policy (the limit); this is rule {}", MAX_RULES + 1);
            d.error(items[MAX_RULES - in_earlier_routes].at, message);
        }
        return None;
    }
    let before = d.error_count();
    let rules: Vec<Rule> =
        items.iter().enumerate().filter_map(|(i, item)| rule(item, i + 1, sets, is_tcp, lowercase, d)).collect();
    for (i, rule) in rules.iter().enumerate() {
        if let Some(first) = rules[..i].iter().find(|r| r.name == rule.name) {
            d.error(rule.at, format!("rule name `{}` is already used at line {}", rule.name, first.at.line));
        }
    }
    (d.error_count() == before).then_some(rules)
}

fn rule(
    node: &Node,
    number: usize,
    sets: &ConditionSets,
    is_tcp: bool,
    lowercase: bool,
    d: &mut Diagnostics,
) -> Option<Rule> {
    let fields = Fields::new(node, "a rule", &["name", "public", "allow", "deny"], d)?;
    let name = match fields.get("name") {
        Some(n) => identifier(n, "a rule name", d)?.into(),
        None => format!("rule-{number}").into(),
    };
    let public = match fields.get("public") {
        Some(n) => boolean(n, "`public`", d)?,
        None => false,
    };
    let (effect, body, key) = match (fields.get("allow"), fields.get("deny")) {
        (Some(body), None) => (RuleEffect::Allow, body, "allow"),
        (None, Some(body)) => (RuleEffect::Deny, body, "deny"),
        (Some(_), Some(_)) => {
            d.error(node.at, "a rule has `allow` or `deny`, not both");
            return None;
        }
        (None, None) => {
            d.error(
                node.at,
                "a rule needs `allow: {conditions}` or `deny: {conditions}` (`{}` matches everyone logged in)",
            );
            return None;
        }
    };
    let (own, used) = conditions::decode(body, &format!("the `{key}` conditions"), Some(sets), d)?;
    if lowercase {
        let before = d.error_count();
        check_lowercase_globs(body, sets, d);
        if d.error_count() > before {
            return None;
        }
    }
    let blocks: Vec<Arc<_>> = std::iter::once(Arc::new(own)).chain(used).collect();
    if public && blocks.iter().any(|b| b.tests_identity()) {
        let no_login = "but a `public` rule also matches requests with no login";
        match first_key(body, IDENTITY_KEYS) {
            Some((key, at)) => d.error(
                at,
                format!("`{key}` tests the logged-in user, {no_login}; remove `public: true` or the `{key}` condition"),
            ),
            None => d.error(
                use_at(body),
                format!(
                    "a condition set in `use` tests the logged-in user \
                     (email, groups, claims, credential or session age), {no_login}"
                ),
            ),
        }
        return None;
    }
    if is_tcp && blocks.iter().any(|b| b.tests_http()) {
        let http_only = "HTTP routes only, and this is a `tcp` route";
        match first_key(body, &["methods", "paths"]) {
            Some((key, at)) => d.error(at, format!("`{key}` applies to {http_only}")),
            None => d.error(
                use_at(body),
                format!("a condition set in `use` tests `methods` or `paths`, which apply to {http_only}"),
            ),
        }
        return None;
    }
    Some(Rule { name, at: node.at, effect, public, blocks: blocks.into() })
}

/// Condition keys that test the logged-in user rather than the request.
const IDENTITY_KEYS: &[&str] = &[
    "email",
    "email_domain",
    "groups_any",
    "groups_all",
    "claims",
    "credential",
    "max_session_age",
    "logged_in_within",
];

/// The first key of the mapping `node` that is one of `keys`, with where it is written.
fn first_key<'n>(node: &'n Node, keys: &[&str]) -> Option<(&'n str, Location)> {
    let NodeKind::Map(entries) = &node.kind else {
        return None;
    };
    entries.iter().find_map(|(key, _)| match &key.kind {
        NodeKind::Scalar { value, .. } if keys.contains(&value.as_str()) => Some((value.as_str(), key.at)),
        _ => None,
    })
}

/// Where the `use` key of a condition block is written (the block itself if it has none).
fn use_at(body: &Node) -> Location {
    first_key(body, &["use"]).map_or(body.at, |(_, at)| at)
}
