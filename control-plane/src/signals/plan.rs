//! From a verified SET to what it does: each event's kind, its subject,
//! the transmitter's response for it, and the store steps that carry the
//! response out. Pure; the caller applies the plan.

use portcullis_policy::UserRef;
use serde_json::Value;

use super::actions::{EventKind, Response};
use super::set::{SetError, VerifiedSet};
use super::settings::TransmitterSettings;
use super::subject::{self, Subject};
use crate::store::{signal_target, SignalStep};

/// What one SET does.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The store steps, in order.
    pub steps: Vec<SignalStep>,
    /// New groups for a user (`token-claims-change` with `reevaluate`).
    pub groups: Option<(UserRef, Vec<String>)>,
    /// The audit target.
    pub target: String,
    /// One line per event: `session-revoked → terminate_session`.
    pub summary: String,
    /// The event short names (unknown ones by URI), comma-separated.
    pub event_types: String,
    /// Per event: its metrics label and whether it did something.
    pub events: Vec<(String, bool)>,
    /// The user the SET is about, if it names one (response rules act on it).
    pub user: Option<UserRef>,
}

fn steps_for(response: Response, subject: &Subject, login_issuer: &str) -> Vec<SignalStep> {
    let session = subject
        .idp_session
        .as_ref()
        .map(|sid| SignalStep::EndIdpSession { idp_issuer: login_issuer.to_owned(), sid: sid.clone() });
    let user = subject.user.clone();
    match response {
        Response::Ignore | Response::Reevaluate => Vec::new(),
        Response::TerminateSession => match (session, user) {
            (Some(session), _) => vec![session],
            (None, Some(user)) => vec![SignalStep::EndUser(user)],
            (None, None) => Vec::new(),
        },
        Response::TerminateUser => match (user, session) {
            (Some(user), _) => vec![SignalStep::EndUser(user)],
            (None, Some(session)) => vec![session],
            (None, None) => Vec::new(),
        },
        Response::Lock => user.map(SignalStep::Lock).into_iter().chain(session).collect(),
        Response::TerminateAndLock => match user {
            Some(user) => vec![SignalStep::EndUser(user.clone()), SignalStep::Lock(user)],
            None => session.into_iter().collect(),
        },
    }
}

/// Most groups a `token-claims-change` may carry.
pub const MAX_GROUPS: usize = 256;
/// Longest group name accepted, bytes.
const MAX_GROUP_BYTES: usize = 256;

/// The groups a `token-claims-change` event carries in `groups_claim`;
/// `Err` when there are too many, or one is too long or has control
/// characters (they reach every edge and the audit log).
fn groups(event: &Value, groups_claim: &str) -> Result<Option<Vec<String>>, SetError> {
    let Some(claim) = event.get("claims").and_then(|c| c.get(groups_claim)) else { return Ok(None) };
    let groups: Vec<String> = match claim {
        Value::Array(items) => items.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        Value::String(one) => vec![one.clone()],
        _ => return Ok(None),
    };
    let bad = |g: &String| g.is_empty() || g.len() > MAX_GROUP_BYTES || g.contains(char::is_control);
    if groups.len() > MAX_GROUPS || groups.iter().any(bad) {
        return Err(SetError::InvalidRequest(format!(
            "`claims.{groups_claim}`: at most {MAX_GROUPS} groups of 1 to {MAX_GROUP_BYTES} bytes without control \
             characters"
        )));
    }
    Ok(Some(groups))
}

/// `text` for a log line or an audit row: at most `max` characters, control
/// characters (a forged line break) shown as `?`.
pub fn printable(text: &str, max: usize) -> String {
    text.chars().take(max).map(|c| if c.is_control() { '?' } else { c }).collect()
}

/// Adds one event's summary line and type to the plan.
fn push_line(plan: &mut Plan, line: String, name: &str) {
    if !plan.summary.is_empty() {
        plan.summary.push_str("; ");
    }
    plan.summary.push_str(&line);
    if !plan.event_types.is_empty() {
        plan.event_types.push(',');
    }
    plan.event_types.push_str(&printable(name, 200));
}

/// Plans `set` from `transmitter`; `groups_claim` names the claim carrying
/// groups when the transmitter speaks for a login identity provider of
/// ours (its `login_issuer`), and is `None` otherwise: only the IdP that
/// issues a user's groups may change them (a security tool that can only
/// end sessions must not be able to grant a group).
pub fn plan(
    transmitter: &TransmitterSettings,
    set: &VerifiedSet,
    groups_claim: Option<&str>,
) -> Result<Plan, SetError> {
    let issuers = [transmitter.issuer.as_str(), transmitter.login_issuer.as_str()];
    let mut plan = Plan {
        steps: Vec::new(),
        groups: None,
        target: String::new(),
        summary: String::new(),
        event_types: String::new(),
        events: Vec::new(),
        user: None,
    };
    let mut about: Option<Subject> = None;
    for (uri, event) in &set.events {
        let kind = EventKind::from_uri(uri);
        let label = kind.map_or("unknown", EventKind::short_name);
        let name: &str = kind.map_or(uri.as_str(), |k| k.short_name());
        let sub_id = set.sub_id.as_ref().or_else(|| event.get("subject"));
        let subject = match (kind, sub_id) {
            (Some(EventKind::Verification | EventKind::StreamUpdated), _) | (None, None) => None,
            (Some(_), None) => return Err(SetError::InvalidRequest(format!("{name}: no sub_id"))),
            (_, Some(sub_id)) => match subject::parse(sub_id, &issuers) {
                Ok(subject) => Some(subject),
                Err(error) if kind.is_none() => {
                    tracing::debug!(%error, "the subject of an unknown event type does not matter");
                    None
                }
                Err(error) => return Err(SetError::InvalidRequest(error.to_string())),
            },
        };
        let response = match kind {
            Some(kind) if kind.is_degradation(event) => transmitter.response(kind),
            _ => Response::Ignore,
        };
        let mut line = format!("{name} → {}", response.as_str());
        let mut acted = false;
        if let Some(subject) = &subject {
            let steps = steps_for(response, subject, &transmitter.login_issuer);
            acted = !steps.is_empty();
            plan.steps.extend(steps);
            if response == Response::Reevaluate {
                match (groups_claim, &subject.user) {
                    (None, _) => {
                        line = format!("{line}: not a login identity provider's transmitter, groups left unchanged");
                    }
                    (Some(claim), user) => match (user, groups(event, claim)?) {
                        (Some(user), Some(groups)) => {
                            line = format!("{line} with groups [{}]", printable(&groups.join(", "), 2000));
                            plan.groups = Some((user.clone(), groups));
                            acted = true;
                        }
                        _ => line = format!("{line}: no `{claim}` claim for a user, nothing to re-evaluate"),
                    },
                }
            }
        }
        match kind {
            Some(EventKind::StreamUpdated) => {
                let status = event.get("status").and_then(Value::as_str).unwrap_or("?");
                line = format!("stream-updated: status {}", printable(status, 64));
            }
            Some(EventKind::Verification) => {
                let state = event.get("state").and_then(Value::as_str).unwrap_or("");
                line = format!("verification (state `{}`)", printable(state, 64));
            }
            None => line = format!("unknown event type `{}` ignored", printable(uri, 200)),
            _ => {}
        }
        if about.is_none() {
            about = subject;
        }
        plan.events.push((label.to_owned(), acted));
        push_line(&mut plan, line, name);
    }
    plan.user = about.as_ref().and_then(|s| s.user.clone());
    plan.target = signal_target(
        about.as_ref().and_then(|s| s.user.as_ref()),
        about.as_ref().and_then(|s| s.idp_session.as_deref()),
    );
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Map};

    use super::*;
    use crate::signals::settings::{validate, RawTransmitter};

    fn transmitter() -> TransmitterSettings {
        let raw: RawTransmitter =
            toml::from_str("name = \"t\"\nissuer = \"https://idp.example\"\npush_token_file = \"f\"\n").unwrap();
        validate(vec![raw], "https://pc.example", false, &|_| None).unwrap().remove(0)
    }

    fn set(sub_id: Value, events: Value) -> VerifiedSet {
        VerifiedSet {
            jti: "j".into(),
            iat: 0,
            txn: None,
            sub_id: Some(sub_id),
            events: events.as_object().cloned().unwrap_or_else(Map::new),
        }
    }

    const CAEP: &str = "https://schemas.openid.net/secevent/caep/event-type/";
    const RISC: &str = "https://schemas.openid.net/secevent/risc/event-type/";

    #[test]
    fn default_responses_become_steps() {
        let t = transmitter();
        let bob = json!({"format": "email", "email": "bob@corp.example"});
        let complex = json!({"format": "complex", "user": bob, "session": {"format": "opaque", "id": "sid-9"}});
        let end_sid = SignalStep::EndIdpSession { idp_issuer: "https://idp.example".into(), sid: "sid-9".into() };
        let user = UserRef::email("bob@corp.example");
        for (sub_id, event, expected) in [
            (complex.clone(), format!("{CAEP}session-revoked"), vec![end_sid.clone()]),
            (bob.clone(), format!("{CAEP}session-revoked"), vec![SignalStep::EndUser(user.clone())]),
            (complex.clone(), format!("{CAEP}credential-change"), vec![SignalStep::EndUser(user.clone())]),
            (bob.clone(), format!("{RISC}account-disabled"), vec![SignalStep::Lock(user.clone())]),
            (
                bob.clone(),
                format!("{RISC}credential-compromise"),
                vec![SignalStep::EndUser(user.clone()), SignalStep::Lock(user.clone())],
            ),
            (bob.clone(), format!("{RISC}sessions-revoked"), vec![SignalStep::EndUser(user.clone())]),
            (bob.clone(), format!("{RISC}account-enabled"), vec![]),
            (bob.clone(), "https://vendor.example/new-thing".into(), vec![]),
        ] {
            let planned = plan(&t, &set(sub_id, json!({ event.clone(): {} })), Some("groups")).unwrap();
            assert_eq!(planned.steps, expected, "{event}");
            assert_eq!(planned.target, "email:bob@corp.example");
        }
    }

    #[test]
    fn claims_changes_carry_the_new_groups_and_bad_subjects_are_refused() {
        let t = transmitter();
        let bob = json!({"format": "email", "email": "bob@corp.example"});
        let event = json!({ format!("{CAEP}token-claims-change"): {"claims": {"groups": ["dev"]}} });
        let planned = plan(&t, &set(bob.clone(), event.clone()), Some("groups")).unwrap();
        assert_eq!(planned.groups, Some((UserRef::email("bob@corp.example"), vec!["dev".to_owned()])));
        assert!(planned.steps.is_empty());
        let up = json!({ format!("{CAEP}device-compliance-change"): {"current_status": "compliant"} });
        assert!(
            plan(&t, &set(bob.clone(), up), Some("groups")).unwrap().steps.is_empty(),
            "an improvement does nothing"
        );
        let bad = json!({"format": "email", "email": "nope"});
        let error = plan(&t, &set(bad, json!({ format!("{CAEP}session-revoked"): {} })), Some("groups")).unwrap_err();
        assert_eq!(error.code(), "invalid_request");
    }

    #[test]
    fn only_a_login_idps_transmitter_changes_groups_and_within_bounds() {
        let t = transmitter();
        let bob = json!({"format": "email", "email": "bob@corp.example"});
        let grant = json!({ format!("{CAEP}token-claims-change"): {"claims": {"groups": ["admins"]}} });
        // A transmitter that does not speak for a login IdP (a security tool)
        // may end sessions, never grant a group.
        let planned = plan(&t, &set(bob.clone(), grant), None).unwrap();
        assert_eq!(planned.groups, None);
        assert_eq!(planned.events, vec![("token-claims-change".to_owned(), false)]);
        assert_eq!(planned.target, "email:bob@corp.example");
        for groups in [
            json!(vec!["g"; MAX_GROUPS + 1]),
            json!(["ops", "x".repeat(300)]),
            json!(["ops\nsignal.applied forged"]),
            json!([""]),
        ] {
            let event = json!({ format!("{CAEP}token-claims-change"): {"claims": {"groups": groups}} });
            let error = plan(&t, &set(bob.clone(), event), Some("groups")).unwrap_err();
            assert_eq!(error.code(), "invalid_request");
        }
    }

    #[test]
    fn transmitter_text_reaches_the_audit_log_on_one_line() {
        let t = transmitter();
        let bob = json!({"format": "email", "email": "bob@corp.example"});
        let events = json!({
            "https://vendor.example/x\n2024 INFO forged": {},
            format!("https://schemas.openid.net/secevent/ssf/event-type/stream-updated"): {"status": "on\r\nforged"},
        });
        let planned = plan(&t, &set(bob, events), Some("groups")).unwrap();
        assert!(!planned.summary.contains(char::is_control), "{}", planned.summary);
        assert!(!planned.event_types.contains(char::is_control), "{}", planned.event_types);
    }
}
