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

/// The groups a `token-claims-change` event carries in `groups_claim`.
fn groups(event: &Value, groups_claim: &str) -> Option<Vec<String>> {
    let claim = event.get("claims")?.get(groups_claim)?;
    match claim {
        Value::Array(items) => Some(items.iter().filter_map(Value::as_str).map(str::to_owned).collect()),
        Value::String(one) => Some(vec![one.clone()]),
        _ => None,
    }
}

/// Plans `set` from `transmitter`; `groups_claim` names the claim carrying groups.
pub fn plan(transmitter: &TransmitterSettings, set: &VerifiedSet, groups_claim: &str) -> Result<Plan, SetError> {
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
                match (&subject.user, groups(event, groups_claim)) {
                    (Some(user), Some(groups)) => {
                        line = format!("{line} with groups [{}]", groups.join(", "));
                        plan.groups = Some((user.clone(), groups));
                        acted = true;
                    }
                    _ => line = format!("{line}: no `{groups_claim}` claim for a user, nothing to re-evaluate"),
                }
            }
        }
        match kind {
            Some(EventKind::StreamUpdated) => {
                let status = event.get("status").and_then(Value::as_str).unwrap_or("?");
                line = format!("stream-updated: status {status}");
            }
            Some(EventKind::Verification) => {
                let state = event.get("state").and_then(Value::as_str).unwrap_or("");
                line = format!("verification (state `{}`)", state.chars().take(64).collect::<String>());
            }
            None => line = format!("unknown event type `{}` ignored", uri.chars().take(200).collect::<String>()),
            _ => {}
        }
        if about.is_none() {
            about = subject;
        }
        plan.events.push((label.to_owned(), acted));
        plan.summary = if plan.summary.is_empty() { line } else { format!("{}; {line}", plan.summary) };
        if !plan.event_types.is_empty() {
            plan.event_types.push(',');
        }
        plan.event_types.push_str(name);
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
            let planned = plan(&t, &set(sub_id, json!({ event.clone(): {} })), "groups").unwrap();
            assert_eq!(planned.steps, expected, "{event}");
            assert_eq!(planned.target, "email:bob@corp.example");
        }
    }

    #[test]
    fn claims_changes_carry_the_new_groups_and_bad_subjects_are_refused() {
        let t = transmitter();
        let bob = json!({"format": "email", "email": "bob@corp.example"});
        let event = json!({ format!("{CAEP}token-claims-change"): {"claims": {"groups": ["dev"]}} });
        let planned = plan(&t, &set(bob.clone(), event), "groups").unwrap();
        assert_eq!(planned.groups, Some((UserRef::email("bob@corp.example"), vec!["dev".to_owned()])));
        assert!(planned.steps.is_empty());
        let up = json!({ format!("{CAEP}device-compliance-change"): {"current_status": "compliant"} });
        assert!(plan(&t, &set(bob, up), "groups").unwrap().steps.is_empty(), "an improvement does nothing");
        let bad = json!({"format": "email", "email": "nope"});
        let error = plan(&t, &set(bad, json!({ format!("{CAEP}session-revoked"): {} })), "groups").unwrap_err();
        assert_eq!(error.code(), "invalid_request");
    }
}
