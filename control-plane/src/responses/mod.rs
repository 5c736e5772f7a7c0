//! The automated response rules of the policy in force (`responses:`),
//! run where their facts arrive: after an edge reports a session's denials
//! (`denials`) or a change of its address (`source_outside`), and when a
//! signal comes in through the API or as a Shared Signals event (`signal`).
//! A rule that fires is applied through the same store path as a signal
//! (`SqlStore::apply_signal`), recorded by (rule, session or signal id), so
//! it fires once per session or signal however many reports follow; a
//! `dry_run` rule only writes what it would have done to the audit log
//! (`response.dry_run`). A failure here is logged, never fails the report.

use std::net::IpAddr;
use std::sync::Arc;

use portcullis_policy::responses::{ResponseAction, ResponseRule, Trigger};
use portcullis_policy::{Policy, UserRef};

use crate::app::App;
use crate::model::{now_ms, Actor};
use crate::store::{AppliedSignal, SessionStore, SignalRecord, SignalStep, StoreResult};

/// Whom a fired rule acts on.
#[derive(Debug, Clone)]
pub struct Subject {
    /// The Portcullis session, if the facts name one.
    pub session: Option<String>,
    /// The user.
    pub user: Option<UserRef>,
}

fn steps(action: ResponseAction, subject: &Subject) -> Vec<SignalStep> {
    match (action, &subject.session, &subject.user) {
        (ResponseAction::TerminateSession | ResponseAction::RequireReauth, Some(session), _) => {
            vec![SignalStep::EndSession(session.clone())]
        }
        (
            ResponseAction::TerminateSession | ResponseAction::RequireReauth | ResponseAction::TerminateUser,
            _,
            Some(user),
        ) => {
            vec![SignalStep::EndUser(user.clone())]
        }
        (ResponseAction::Lock, _, Some(user)) => vec![SignalStep::Lock(user.clone())],
        _ => Vec::new(),
    }
}

/// Applies `rule` to `subject` once per `occurrence` (a session id, a signal id).
pub async fn fire(
    app: &App,
    rule: &ResponseRule,
    subject: &Subject,
    occurrence: &str,
    why: &str,
) -> StoreResult<AppliedSignal> {
    let source = format!("response:{}", rule.name);
    let target = match (&subject.session, &subject.user) {
        (Some(session), _) => format!("session:{session}"),
        (None, Some(user)) => crate::store::signal_target(Some(user), None),
        (None, None) => "nobody".to_owned(),
    };
    let verb = if rule.dry_run { "dry run, would" } else { "→" };
    let summary = format!("response rule `{}`: {why} {verb} {}", rule.name, rule.then.as_str());
    let planned = steps(rule.then, subject);
    let record = SignalRecord {
        source: &source,
        jti: occurrence,
        event_types: "response",
        iat_ms: now_ms(),
        target: &target,
        summary: &summary,
        audit_action: if rule.dry_run { "response.dry_run" } else { "response.fired" },
        acked: true,
    };
    let actor = Actor { name: source.clone(), source_address: String::new() };
    let steps = if rule.dry_run { &[][..] } else { &planned[..] };
    let applied = app.store.apply_signal(&record, steps, None, &actor, now_ms()).await?;
    if !applied.duplicate {
        tracing::warn!(rule = %rule.name, %target, dry_run = rule.dry_run, "{summary}");
        let outcome = if rule.dry_run { "dry_run" } else { "fired" };
        app.metrics.signals.events.with_label_values(&[&source, "response", outcome]).inc();
    }
    Ok(applied)
}

/// The policy in force (its `responses()` are the rules), shared, not copied:
/// every edge report with a denial or an address change asks for it.
async fn policy(app: &App) -> Option<Arc<Policy>> {
    match app.current_policy().await {
        Ok(policy) => Some(policy),
        Err(error) => {
            tracing::error!(%error, "response rules: the policy could not be read");
            None
        }
    }
}

async fn session_subject(app: &App, session: &str) -> Option<Subject> {
    match app.store.get_session(session).await {
        Ok(Some(record)) if record.ended_ms.is_none() => {
            Some(Subject { session: Some(session.to_owned()), user: Some(UserRef::email(&record.email)) })
        }
        Ok(_) => None,
        Err(error) => {
            tracing::error!(%error, "response rules: the session could not be read");
            None
        }
    }
}

/// After an edge reported denials of `session`. Every report of a denied
/// session lands here, so the work is bounded: nothing without a denial
/// rule, one read for the session (an ended one is not counted again), one
/// count per rule, and a write only for a rule that has not fired yet.
pub async fn after_denial(app: &Arc<App>, session: &str) {
    let Some(policy) = policy(app).await else { return };
    let rules: Vec<&ResponseRule> =
        policy.responses().iter().filter(|r| matches!(r.when, Trigger::Denials { .. })).collect();
    if rules.is_empty() {
        return;
    }
    let Some(subject) = session_subject(app, session).await else { return };
    for rule in rules {
        let Trigger::Denials { at_least, within_s } = rule.when else { continue };
        let since = now_ms() - i64::from(within_s) * 1000;
        let count = match app.store.denials_since(session, since).await {
            Ok(count) => count,
            Err(error) => {
                tracing::error!(%error, "response rules: denials could not be counted");
                continue;
            }
        };
        if count < i64::from(at_least) {
            continue;
        }
        let why = format!("{count} denials of session {session} within {within_s} s");
        if let Err(error) = fire(app, rule, &subject, session, &why).await {
            tracing::error!(%error, rule = %rule.name, "a response rule could not be applied");
        }
    }
}

/// After an edge reported `session` used from `address`.
pub async fn after_address(app: &Arc<App>, session: &str, address: &str) {
    let Ok(ip) = address.parse::<IpAddr>() else { return };
    let Some(policy) = policy(app).await else { return };
    let rules: Vec<&ResponseRule> = policy.responses().iter().filter(|r| r.when.matches_address(ip)).collect();
    if rules.is_empty() {
        return;
    }
    let Some(subject) = session_subject(app, session).await else { return };
    for rule in rules {
        let why = format!("session {session} used from {ip}, outside the allowed networks");
        if let Err(error) = fire(app, rule, &subject, &format!("{session}@{ip}"), &why).await {
            tracing::error!(%error, rule = %rule.name, "a response rule could not be applied");
        }
    }
}

/// After a signal of `kind` at `risk_level` about `subject` (`id`: its
/// unique id at its source); the rules that fired.
pub async fn after_signal(
    app: &App,
    subject: &Subject,
    (kind, risk_level): (&str, Option<&str>),
    id: &str,
) -> StoreResult<Vec<(String, bool)>> {
    let mut fired = Vec::new();
    let Some(policy) = policy(app).await else { return Ok(fired) };
    for rule in policy.responses().iter().filter(|r| r.when.matches_signal(kind, risk_level)) {
        let risk = risk_level.map(|r| format!(" (risk {r})")).unwrap_or_default();
        let why = format!("signal `{kind}`{risk}, {id}");
        let applied = fire(app, rule, subject, id, &why).await?;
        fired.push((rule.name.to_string(), !applied.duplicate));
    }
    Ok(fired)
}
