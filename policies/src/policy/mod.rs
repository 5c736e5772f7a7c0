//! A compiled policy: routes with their options and ordered rules, indexed so
//! that the per-request lookup touches only the route it needs.
//!
//! Data flow: YAML text → [`crate::parse`] (positioned errors) → [`Policy`]
//! with a [`HostIndex`] and per-route [`RuleIndex`] → [`crate::evaluate`].

mod host_index;
mod rule_index;

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::conditions::Conditions;
use crate::error::{Location, PolicyErrors};
pub use host_index::HostIndex;
pub use rule_index::RuleIndex;

/// A policy document as written, with the name its errors are reported under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicySource {
    /// A file path or a label such as `policy v12`.
    pub name: String,
    /// The YAML text.
    pub text: String,
}

/// A compiled, evaluation-ready policy.
#[derive(Debug)]
pub struct Policy {
    pub(crate) source: PolicySource,
    pub(crate) routes: Box<[Route]>,
    pub(crate) hosts: HostIndex,
    pub(crate) responses: Box<[crate::responses::ResponseRule]>,
}

impl Policy {
    /// Parses, checks and compiles a policy document.
    pub fn compile(source: PolicySource) -> Result<Self, PolicyErrors> {
        let (routes, responses) = crate::parse::document(&source.name, &source.text)?;
        let hosts = HostIndex::build(&routes);
        Ok(Self { source, routes: routes.into(), hosts, responses: responses.into() })
    }

    /// A policy with no routes: every request is denied.
    pub fn empty() -> Self {
        let source = PolicySource { name: "empty policy".into(), text: "version: 1\nroutes: []\n".into() };
        Self { source, routes: Box::new([]), hosts: HostIndex::default(), responses: Box::new([]) }
    }

    /// The automated response rules (the control plane runs them).
    pub fn responses(&self) -> &[crate::responses::ResponseRule] {
        &self.responses
    }

    /// The document this policy was compiled from.
    pub fn source(&self) -> &PolicySource {
        &self.source
    }

    /// All routes in document order.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The route serving an HTTP request for `host` (lowercase, no port) and `path`.
    pub fn http_route(&self, host: &str, path: &str) -> Option<&Route> {
        self.hosts.http_route(host, path).map(|i| &self.routes[i])
    }

    /// The TCP route named `name` (e.g. `ssh.internal:22`).
    pub fn tcp_route(&self, name: &str) -> Option<&Route> {
        self.hosts.tcp_route(name).map(|i| &self.routes[i])
    }
}

/// One protected application or TCP service.
#[derive(Debug)]
pub struct Route {
    pub(crate) name: Arc<str>,
    pub(crate) at: Location,
    pub(crate) target: RouteTarget,
    pub(crate) options: RouteOptions,
    pub(crate) rules: Box<[Rule]>,
    pub(crate) index: RuleIndex,
}

impl Route {
    /// The route's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The route's name, shared (the edge keeps it per request without copying).
    pub fn shared_name(&self) -> &Arc<str> {
        &self.name
    }

    /// Where the route is declared.
    pub fn location(&self) -> Location {
        self.at
    }

    /// What the route serves and where it forwards.
    pub fn target(&self) -> &RouteTarget {
        &self.target
    }

    /// Session and connection options.
    pub fn options(&self) -> &RouteOptions {
        &self.options
    }

    /// Rules in evaluation order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }
}

/// What a route serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteTarget {
    /// HTTP(S) requests for a host, optionally under a path prefix.
    Http {
        /// `wiki.corp.example` or `*.corp.example`.
        host: Box<str>,
        /// Path prefix on a segment boundary (`/api` covers `/api/x`, not `/apix`).
        path_prefix: Option<Box<str>>,
        /// Where allowed requests go.
        upstream: Upstream,
    },
    /// TCP flows opened with `CONNECT name`.
    Tcp {
        /// The CONNECT target, `host:port`.
        name: Box<str>,
        /// The `host:port` the flow is piped to.
        upstream: Box<str>,
    },
}

/// An HTTP(S) upstream. Shared text, so the edge can keep one per request
/// without allocating.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// The URL as written.
    pub url: Arc<str>,
    /// True for `https`.
    pub tls: bool,
    /// Host name or address.
    pub host: Arc<str>,
    /// Port (defaults 80 / 443).
    pub port: u16,
}

/// What the control plane does when a login would exceed `max_sessions_per_user`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionLimitAction {
    /// Refuse the new login.
    Refuse,
    /// End the user's oldest session on the route.
    EndOldest,
}

/// What the edge does when a session shows up from a new source address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IpChangeAction {
    /// Nothing.
    Allow,
    /// Report a warning event to the control plane.
    Warn,
    /// Deny the request and report it.
    Deny,
}

/// What an edge does on a route once it has not heard from the control
/// plane for `max_staleness` (Teleport's best-effort and strict modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StaleMode {
    /// Keep enforcing the last snapshot.
    Keep,
    /// Refuse requests and close the route's live connections (503).
    Deny,
}

/// Per-route options, with their defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteOptions {
    /// Lifetime of sessions created for this route, seconds (default 12 h).
    pub session_lifetime: u32,
    /// At most this many live sessions per user (default: no limit).
    pub max_sessions_per_user: Option<u32>,
    /// What happens past that limit (default: end the oldest session).
    pub on_session_limit: SessionLimitAction,
    /// Reaction to a session's source address changing (default: warn).
    pub on_ip_change: IpChangeAction,
    /// Re-check live connections when the policy changes (default: yes).
    pub reevaluate_live_connections: bool,
    /// Route and judge paths without regard to ASCII case, for IIS-like
    /// upstreams (default: no). The route's `path:` prefix and path globs are
    /// then lower case, and rules see the request path lowercased.
    pub case_insensitive_paths: bool,
    /// Accept `;` path parameters (default: no, the edge answers 400). When
    /// set, routing and rules judge the path without its parameters and the
    /// upstream receives it with them.
    pub allow_path_parameters: bool,
    /// Forward an IdP access token presented as `Authorization: Bearer` to the
    /// upstream (default: no; Portcullis session and service tokens never are).
    pub forward_bearer: bool,
    /// Client headers the edge lets through to the upstream instead of
    /// removing them, lowercased; each one of [`PASSABLE_CLIENT_HEADERS`]
    /// (default: none).
    pub pass_client_headers: Box<[Box<str>]>,
    /// Once the edge's snapshot is stale: keep serving or fail closed
    /// (default: the edge's own `stale_mode`).
    pub stale_mode: Option<StaleMode>,
    /// Let `portcullis connect` log in to this route with the OAuth device
    /// flow (default: no; the device flow lets a session be collected by
    /// whoever started it, so a route opts in).
    pub device_login: bool,
    /// Re-authentication for a sensitive route, seconds (default: none).
    /// Every allow rule that needs a login behaves as if it said
    /// `logged_in_within: <this>`, keeping its own limit when that is
    /// smaller; the compiler writes it into those rules, so evaluation,
    /// admission deadlines and `login_max_age` see it like any other limit.
    /// Public rules and deny rules are left as written.
    pub reauth_after: Option<u32>,
}

/// The client headers a route may let through with `pass_client_headers`;
/// the edge removes them otherwise, since upstreams read them as the client
/// address, the original URL or the real method.
pub const PASSABLE_CLIENT_HEADERS: &[&str] = &[
    "forwarded",
    "x-real-ip",
    "true-client-ip",
    "x-original-url",
    "x-rewrite-url",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

impl RouteOptions {
    /// True when the route lets the client header `name` (any case) through.
    pub fn passes_client_header(&self, name: &str) -> bool {
        self.pass_client_headers.iter().any(|h| h.eq_ignore_ascii_case(name))
    }
}

/// Default session lifetime: 12 hours, in seconds.
pub const DEFAULT_SESSION_LIFETIME_SECS: u32 = 12 * 3600;

impl Default for RouteOptions {
    fn default() -> Self {
        Self {
            session_lifetime: DEFAULT_SESSION_LIFETIME_SECS,
            max_sessions_per_user: None,
            on_session_limit: SessionLimitAction::EndOldest,
            on_ip_change: IpChangeAction::Warn,
            reevaluate_live_connections: true,
            case_insensitive_paths: false,
            allow_path_parameters: false,
            forward_bearer: false,
            pass_client_headers: Box::new([]),
            stale_mode: None,
            device_login: false,
            reauth_after: None,
        }
    }
}

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleEffect {
    /// Let the request through.
    Allow,
    /// Refuse the request.
    Deny,
}

/// One ordered rule of a route.
#[derive(Debug)]
pub struct Rule {
    pub(crate) name: Box<str>,
    pub(crate) at: Location,
    pub(crate) effect: RuleEffect,
    pub(crate) public: bool,
    pub(crate) blocks: Box<[Arc<Conditions>]>,
}

impl Rule {
    /// The rule's name (`rule N` when the document gives none).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where the rule is declared.
    pub fn location(&self) -> Location {
        self.at
    }

    /// Allow or deny.
    pub fn effect(&self) -> RuleEffect {
        self.effect
    }

    /// True when the rule is marked `public: true` (an allow that also
    /// matches requests with no login).
    pub fn is_public(&self) -> bool {
        self.public
    }

    /// True when the rule can decide a request with no login: a public rule,
    /// or a deny rule whose conditions need no identity (only paths, methods,
    /// source addresses and time). Anonymous requests visit exactly these
    /// rules, in rule order.
    pub fn applies_to_anonymous(&self) -> bool {
        self.public || (self.effect == RuleEffect::Deny && !self.blocks.iter().any(|b| b.tests_identity()))
    }
}

impl fmt::Display for RuleEffect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
        })
    }
}
