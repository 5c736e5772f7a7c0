//! `POST /api/v1/policy/explain`: who, where, when → decision and rule,
//! decided by [`portcullis_policy::evaluate`] — the function every edge runs
//! — on the policy in force and the user's lock, so the portal's answer is
//! what the edge would do. The path is first made canonical and routed by
//! [`portcullis_policy::judged_path`], as the edge's gate does: a target the
//! edge refuses with 400 is explained as that refusal.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use portcullis_policy::snapshot::{Lock, UserState};
use portcullis_policy::wire::SnapshotBody;
use portcullis_policy::{
    evaluate, judged_path, rule_checks, ClaimValue, CredentialKind, Facts, Identity, IdentityParts, Policy,
    PolicySource, Reason, RouteTarget, Rule, Snapshot, Target, UserRef,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Caller;
use super::parse_time;
use crate::app::App;
use crate::error::ApiError;
use crate::http::ApiJson;
use crate::model::{now_ms, rfc3339};
use crate::store::ChangeStore as _;

/// The request to explain.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExplainRequest {
    /// The user's email; absent for an anonymous request.
    pub email: Option<String>,
    /// The IdP subject (default: the email).
    pub sub: Option<String>,
    /// The user's groups.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Other claims rules may test, as text.
    #[serde(default)]
    pub claims: BTreeMap<String, String>,
    /// `browser` (default), `bearer` or `service`.
    pub credential: Option<String>,
    /// Request host (HTTP); give this or `tcp`.
    pub host: Option<String>,
    /// Request target (default `/`): a path with an optional query, or an
    /// absolute `http(s)://host/path` naming `host`; judged in canonical form.
    pub path: Option<String>,
    /// Request method (default `GET`).
    pub method: Option<String>,
    /// A TCP route's CONNECT name, e.g. `ssh.internal:22`, instead of `host`.
    pub tcp: Option<String>,
    /// The client's IP address.
    pub ip: String,
    /// When (RFC 3339); default now.
    pub at: Option<String>,
    /// How long ago the session started, e.g. `2h` (default: just now).
    pub session_age: Option<String>,
    /// How long ago the user authenticated at the IdP (default: when the session started).
    pub auth_age: Option<String>,
}

/// Where something is in the policy document.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PolicyPlace {
    /// Its name.
    pub name: String,
    /// Line, from 1.
    pub line: u32,
    /// Column, from 1.
    pub column: u32,
    /// For a route: its upstream; for a rule: its effect.
    pub detail: String,
}

/// How one rule met the request.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RuleOutcome {
    /// The rule's name, line, column and effect.
    pub rule: PolicyPlace,
    /// True for the rule that matched (the last one listed).
    pub matched: bool,
    /// The first condition the request fails, e.g.
    /// "`groups_any` [admins] — the user is in [eng]".
    pub failed: Option<String>,
}

/// The decision and what made it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Explanation {
    /// `allow`, `deny` or `login-required`.
    pub decision: String,
    /// Why, in words.
    pub reason: String,
    /// Why, as a code: `rule_matched`, `no_rule_matched`, `login_required`, `login_too_old`,
    /// `no_route`, `user_locked`, … or, for a target the edge answers with 400,
    /// its error code: `bad_request_target`, `path_parameters`.
    pub reason_code: String,
    /// HTTP: the canonical path the edge sends upstream (absent for TCP and
    /// for a target the edge refuses).
    pub path: Option<String>,
    /// HTTP: the path the route's rules judged (the canonical path without
    /// `;` parameters, lowercased on a `case_insensitive_paths` route).
    pub judged_path: Option<String>,
    /// The route that served the request.
    pub route: Option<PolicyPlace>,
    /// The rule that decided.
    pub rule: Option<PolicyPlace>,
    /// The route's rules in order, up to the one that decided (all of them
    /// when none did), each with the condition it failed; empty when no
    /// route served the request or a refusal came before any rule.
    pub rules: Vec<RuleOutcome>,
    /// The policy version evaluated (0: the built-in deny-everything policy).
    pub policy_version: i64,
    /// The time evaluated (RFC 3339).
    pub at: String,
}

fn reason_code(reason: Reason) -> &'static str {
    match reason {
        Reason::RuleMatched => "rule_matched",
        Reason::NoRuleMatched => "no_rule_matched",
        Reason::LoginTooOld => "login_too_old",
        Reason::LoginRequired => "login_required",
        Reason::NoRoute => "no_route",
        Reason::PathNotNormalized => "path_not_normalized",
        Reason::SessionTerminated => "session_terminated",
        Reason::UserLocked => "user_locked",
        Reason::UserTokensRevoked => "user_tokens_revoked",
        Reason::TokenRevoked => "token_revoked",
        Reason::SigningKeyRevoked => "signing_key_revoked",
    }
}

fn age(field: &str, text: Option<&str>) -> Result<i64, ApiError> {
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else { return Ok(0) };
    portcullis_policy::parse_duration(text).map(i64::from).map_err(|e| ApiError::invalid(format!("`{field}`: {e}")))
}

fn nonempty(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

fn rule_place(rule: &Rule) -> PolicyPlace {
    PolicyPlace {
        name: rule.name().to_owned(),
        line: rule.location().line,
        column: rule.location().column,
        detail: rule.effect().to_string(),
    }
}

/// Explains the decision the edges would make for one request.
#[utoipa::path(post, path = "/api/v1/policy/explain", request_body = ExplainRequest,
    responses((status = 200, body = Explanation), (status = 422, body = crate::error::ErrorBody)))]
pub async fn explain(
    State(app): State<Arc<App>>,
    caller: Caller,
    ApiJson(request): ApiJson<ExplainRequest>,
) -> Result<Json<Explanation>, ApiError> {
    caller.require("policy:read")?;
    let source_ip: IpAddr = request
        .ip
        .trim()
        .parse()
        .map_err(|_| ApiError::invalid(format!("`ip`: `{}` is not an IP address", request.ip)))?;
    let now = match nonempty(&request.at) {
        Some(at) => parse_time("at", at)?.div_euclid(1000),
        None => now_ms() / 1000,
    };
    let credential = match nonempty(&request.credential) {
        Some(kind) => kind.parse::<CredentialKind>().map_err(|e| ApiError::invalid(format!("`credential`: {e}")))?,
        None => CredentialKind::Browser,
    };
    let session_started_at = now - age("session_age", request.session_age.as_deref())?;
    let auth_time = match nonempty(&request.auth_age) {
        Some(text) => now - age("auth_age", Some(text))?,
        None => session_started_at,
    };
    let email = nonempty(&request.email);
    let subject = nonempty(&request.sub).or(email);
    let identity = email.map(|email| {
        Identity::new(IdentityParts {
            subject: subject.unwrap_or(email).to_owned(),
            email: email.to_owned(),
            groups: request.groups.iter().map(|g| g.trim().to_owned()).filter(|g| !g.is_empty()).collect(),
            claims: request.claims.iter().map(|(k, v)| (k.clone(), ClaimValue::One(v.as_str().into()))).collect(),
            credential: Some(credential),
            issued_at: session_started_at,
            auth_time,
            session_started_at,
            ..IdentityParts::default()
        })
    });
    let (path, method) = (nonempty(&request.path).unwrap_or("/"), nonempty(&request.method).unwrap_or("GET"));
    let (tcp, host) = match (nonempty(&request.tcp), nonempty(&request.host)) {
        (Some(name), None) => (Some(name), None),
        (None, Some(host)) => (None, Some(host)),
        _ => return Err(ApiError::invalid("give `host` (HTTP) or `tcp` (a CONNECT name), not both")),
    };

    // The policy in force and the user's lock, as the edges hold them.
    let current = app.store().current_policy().await?;
    let (version, document) = match current {
        Some(p) => (p.version, p.document),
        None => (0, Policy::empty().source().text.clone()),
    };
    let mut users = Vec::new();
    if let Some(email) = email {
        let refs = [UserRef::email(email), UserRef::subject(subject.unwrap_or(email))];
        if let Some(reason) = app.store().active_lock(&refs, now).await? {
            users.push((
                UserRef::email(email),
                UserState { lock: Some(Lock { until: None, reason }), revoked_before_ms: None, groups: None },
            ));
        }
    }
    let body = SnapshotBody {
        seq: app.store.head_seq().await?,
        policy: PolicySource { name: format!("policy v{version}"), text: document },
        terminated_sessions: Vec::new(),
        revoked_tokens: Vec::new(),
        users,
        signing_keys: Vec::new(),
    };
    let snapshot = Snapshot::from_body(body)
        .map_err(|e| ApiError::internal(format!("stored policy v{version} does not compile: {e}")))?;
    let at = rfc3339(now * 1000);
    // The edge refuses some targets before routing or any rule (400), and
    // judges the others on their canonical path.
    let judged = match host.map(|host| judged_path(snapshot.policy(), host, path)).transpose() {
        Ok(judged) => judged,
        Err(refused) => {
            return Ok(Json(Explanation {
                decision: "deny".to_owned(),
                reason: refused.to_string(),
                reason_code: refused.code().to_owned(),
                path: None,
                judged_path: None,
                route: None,
                rule: None,
                rules: Vec::new(),
                policy_version: version,
                at,
            }))
        }
    };
    let target = match (tcp, host, &judged) {
        (Some(name), _, _) => Target::Tcp { name },
        (None, Some(host), Some(judged)) => Target::Http { host, path: &judged.judged, method },
        _ => return Err(ApiError::internal("an HTTP request without a judged path")),
    };
    let facts = Facts { target, source_ip, now, identity: identity.as_ref() };
    let decision = evaluate(&snapshot, &facts);
    // Rules are only reached once no revocation or lock decided.
    let rules = match decision.reason {
        Reason::RuleMatched | Reason::NoRuleMatched | Reason::LoginRequired | Reason::LoginTooOld => {
            rule_checks(&snapshot, &facts)
                .into_iter()
                .map(|check| RuleOutcome {
                    rule: rule_place(check.rule),
                    matched: check.failed.is_none(),
                    failed: check.failed,
                })
                .collect()
        }
        _ => Vec::new(),
    };
    let upstream_path = judged.as_ref().map(|j| j.upstream_path().into_owned());
    Ok(Json(Explanation {
        decision: decision.outcome.as_str().to_owned(),
        reason: decision.to_string(),
        reason_code: reason_code(decision.reason).to_owned(),
        path: upstream_path,
        judged_path: judged.map(|j| j.judged),
        route: decision.route.map(|route| PolicyPlace {
            name: route.name().to_owned(),
            line: route.location().line,
            column: route.location().column,
            detail: match route.target() {
                RouteTarget::Http { upstream, .. } => upstream.url.to_string(),
                RouteTarget::Tcp { upstream, .. } => format!("tcp {upstream}"),
            },
        }),
        rule: decision.rule.map(rule_place),
        rules,
        policy_version: version,
        at,
    }))
}
