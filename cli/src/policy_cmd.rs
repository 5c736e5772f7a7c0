//! `portcullis policy check|explain`: the policy compiler's front end. Both
//! call the same functions the edge runs, so `explain` shows exactly what the
//! edge would decide.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{anyhow, Context};
use clap::{Args, Subcommand};
use portcullis_policy::{
    evaluate, judged_path, rule_checks, ClaimValue, CredentialKind, Facts, Identity, IdentityParts, Policy,
    PolicySource, Reason, Route, RouteTarget, Snapshot, Target,
};

/// Policy subcommands.
#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Check policy files; prints compiler-style errors and exits 1 on any.
    Check {
        /// Policy files (YAML).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Show the decision, the deciding rule and the reason for one request.
    Explain(Box<ExplainArgs>),
    /// Apply a policy file on the control plane (it becomes the version in force).
    Apply(Box<crate::policy_apply::ApplyArgs>),
}

/// The request to explain.
#[derive(Args)]
pub struct ExplainArgs {
    /// The policy file.
    #[arg(long)]
    policy: PathBuf,
    /// The user's email; omit for an anonymous request.
    #[arg(long)]
    email: Option<String>,
    /// The IdP subject (defaults to the email).
    #[arg(long)]
    sub: Option<String>,
    /// Comma-separated groups.
    #[arg(long, value_delimiter = ',')]
    groups: Vec<String>,
    /// Other claims as NAME=VALUE (repeatable).
    #[arg(long = "claim", value_parser = parse_claim)]
    claims: Vec<(String, String)>,
    /// Credential kind: browser, bearer or service.
    #[arg(long, default_value = "browser")]
    credential: CredentialKind,
    /// Request host (HTTP).
    #[arg(long, required_unless_present = "tcp", conflicts_with = "tcp")]
    host: Option<String>,
    /// Request target (HTTP): a path, optionally with a query, judged in the
    /// canonical form the edge judges.
    #[arg(long, default_value = "/")]
    path: String,
    /// Request method (HTTP).
    #[arg(long, default_value = "GET")]
    method: String,
    /// A TCP route's CONNECT name, e.g. ssh.internal:22, instead of --host.
    #[arg(long)]
    tcp: Option<String>,
    /// The client's IP address.
    #[arg(long)]
    ip: IpAddr,
    /// When the request happens (RFC 3339, e.g. 2026-11-23T10:00:00+01:00); default now.
    #[arg(long)]
    at: Option<String>,
    /// How long ago the session started, e.g. 2h (default: just now).
    #[arg(long)]
    session_age: Option<String>,
    /// How long ago the user authenticated at the IdP, e.g. 30m (default: when the session started).
    #[arg(long)]
    auth_age: Option<String>,
}

fn parse_claim(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected NAME=VALUE, found `{text}`"))
}

/// Runs a policy subcommand.
pub fn run(command: PolicyCommand) -> anyhow::Result<ExitCode> {
    match command {
        PolicyCommand::Check { files } => Ok(check(&files)),
        PolicyCommand::Explain(args) => explain(&args),
        PolicyCommand::Apply(args) => crate::policy_apply::run(*args),
    }
}

fn load(path: &PathBuf) -> anyhow::Result<Result<Policy, String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let source = PolicySource { name: path.display().to_string(), text };
    let rendered_source = source.text.clone();
    Ok(Policy::compile(source).map_err(|errors| errors.render(&rendered_source)))
}

fn check(files: &[PathBuf]) -> ExitCode {
    let mut failed = 0;
    for path in files {
        match load(path) {
            Ok(Ok(policy)) => {
                let rules: usize = policy.routes().iter().map(|r| r.rules().len()).sum();
                println!("{}: ok ({} routes, {rules} rules)", path.display(), policy.routes().len());
            }
            Ok(Err(rendered)) => {
                eprintln!("{rendered}\n");
                failed += 1;
            }
            Err(error) => {
                eprintln!("error: {error:#}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        eprintln!("{failed} of {} policy files have errors", files.len());
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// An age given as `--{option}` in seconds (0 when not given).
fn seconds(option: &str, text: Option<&str>) -> anyhow::Result<i64> {
    text.map_or(Ok(0), |t| portcullis_policy::parse_duration(t).map(i64::from).map_err(|e| anyhow!("--{option}: {e}")))
}

fn explain(args: &ExplainArgs) -> anyhow::Result<ExitCode> {
    let policy = match load(&args.policy)? {
        Ok(policy) => policy,
        Err(rendered) => {
            eprintln!("{rendered}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let now = match &args.at {
        Some(at) => chrono::DateTime::parse_from_rfc3339(at)
            .with_context(|| format!("--at expects RFC 3339 such as 2026-11-23T10:00:00+01:00, found `{at}`"))?
            .timestamp(),
        None => chrono::Utc::now().timestamp(),
    };
    let session_started_at = now - seconds("session-age", args.session_age.as_deref())?;
    let auth_time = match &args.auth_age {
        Some(age) => now - seconds("auth-age", Some(age))?,
        None => session_started_at,
    };
    let identity = args.email.as_ref().map(|email| {
        Identity::new(IdentityParts {
            subject: args.sub.clone().unwrap_or_else(|| email.clone()),
            email: email.clone(),
            groups: args.groups.clone(),
            claims: args.claims.iter().map(|(k, v)| (k.clone(), ClaimValue::One(v.as_str().into()))).collect(),
            credential: Some(args.credential),
            issued_at: session_started_at,
            auth_time,
            session_started_at,
            ..IdentityParts::default()
        })
    });
    let snapshot = Snapshot::new(0, Arc::new(policy));
    // As the edge: canonical target, route, `;` parameters, case folding.
    let judged = match (&args.tcp, &args.host) {
        (None, Some(host)) => match judged_path(snapshot.policy(), host, &args.path) {
            Ok(judged) => Some(judged),
            Err(refused) => {
                println!("decision  deny");
                println!("reason    {refused}");
                return Ok(ExitCode::SUCCESS);
            }
        },
        _ => None,
    };
    let target = match (&args.tcp, &args.host, &judged) {
        (Some(name), _, _) => Target::Tcp { name },
        (None, Some(host), Some(judged)) => Target::Http { host, path: &judged.judged, method: &args.method },
        _ => return Err(anyhow!("give --host (HTTP) or --tcp (CONNECT name)")),
    };
    let facts = Facts { target, source_ip: args.ip, now, identity: identity.as_ref() };
    let decision = evaluate(&snapshot, &facts);
    let file = &snapshot.policy().source().name;
    println!("decision  {}", decision.outcome.as_str());
    println!("reason    {decision}");
    if let Some(route) = decision.route {
        println!("route     {} ({file}:{}) {}", route.name(), route.location(), describe(route));
    }
    if let Some(rule) = decision.rule {
        println!("rule      {} ({file}:{}) {}", rule.name(), rule.location(), rule.effect());
    }
    if let Some(judged) = judged.as_ref().filter(|j| j.judged != args.path) {
        println!("path      {} (upstream receives {})", judged.judged, judged.upstream_path());
    }
    if matches!(
        decision.reason,
        Reason::RuleMatched | Reason::NoRuleMatched | Reason::LoginRequired | Reason::LoginTooOld
    ) {
        // Each rule up to the one that decided, with the condition it failed.
        for (i, check) in rule_checks(&snapshot, &facts).iter().enumerate() {
            let label = if i == 0 { "rules" } else { "" };
            let why = check.failed.as_deref().unwrap_or("matched");
            println!("{label:<9} {} ({file}:{}): {why}", check.rule.name(), check.rule.location());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn describe(route: &Route) -> String {
    match route.target() {
        RouteTarget::Http { upstream, .. } => format!("-> {}", upstream.url),
        RouteTarget::Tcp { upstream, .. } => format!("-> tcp {upstream}"),
    }
}
