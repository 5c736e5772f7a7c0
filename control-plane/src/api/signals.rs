//! `POST /api/v1/signals`: a SIEM, an EDR or any tool reports something
//! about a user or a session (a type, a risk level); the policy's response
//! rules decide what it does. Every signal is recorded (audited as
//! `signal.received`) once per id: a tool retrying the same id does not
//! set the rules off twice. Needs the `signals:write` scope.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use portcullis_policy::UserRef;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Caller;
use crate::app::App;
use crate::error::ApiError;
use crate::http::ApiJson;
use crate::model::{now_ms, Actor};
use crate::responses::{after_signal, Subject};
use crate::store::{SessionStore, SignalRecord};

/// A signal from a security tool.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSignal {
    /// Its unique id at the tool (a retry with the same id is recognised);
    /// default: a new one.
    pub id: Option<String>,
    /// What happened, e.g. `edr.malware` (letters, digits, `.`, `-`, `_`, `:`).
    #[serde(rename = "type")]
    pub kind: String,
    /// `low`, `medium` or `high`.
    pub risk_level: Option<String>,
    /// The user's email (give one of `email`, `sub`, `session`).
    pub email: Option<String>,
    /// The user's IdP subject.
    pub sub: Option<String>,
    /// A Portcullis session id.
    pub session: Option<String>,
    /// Free text for the audit log (at most 500 characters).
    pub detail: Option<String>,
}

/// What a signal did.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SignalAnswer {
    /// The signal's id.
    pub id: String,
    /// The id was seen before: nothing was done again.
    pub duplicate: bool,
    /// The response rules it set off, with whether each acted now (false:
    /// that rule had already fired for this signal).
    pub fired: Vec<FiredRule>,
}

/// One response rule a signal set off.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FiredRule {
    /// The rule's name.
    pub rule: String,
    /// Whether it acted (or, in dry run, audited) now.
    pub applied: bool,
}

fn token(text: &str, what: &str, max: usize) -> Result<String, ApiError> {
    let text = text.trim();
    let ok = !text.is_empty()
        && text.len() <= max
        && text.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'));
    if ok {
        Ok(text.to_owned())
    } else {
        Err(ApiError::invalid(format!("`{what}` is 1 to {max} letters, digits, `.`, `-`, `_` or `:`")))
    }
}

/// A user identifier: one word of at most `max` bytes. It becomes the
/// audit row's target, which the audit log files under its last word: a
/// space would let a caller file the row under any session or user.
fn identifier<'t>(text: &'t str, what: &str, max: usize) -> Result<&'t str, ApiError> {
    let text = text.trim();
    if text.is_empty() || text.len() > max || text.contains(|c: char| c.is_whitespace() || c.is_control()) {
        return Err(ApiError::invalid(format!("`{what}` is 1 to {max} bytes with no spaces or control characters")));
    }
    Ok(text)
}

/// Records a signal and runs the response rules on it.
#[utoipa::path(post, path = "/api/v1/signals", request_body = NewSignal,
    responses((status = 200, body = SignalAnswer),
    (status = 404, description = "`session` names no session", body = crate::error::ErrorBody),
    (status = 422, body = crate::error::ErrorBody)))]
pub async fn receive(
    State(app): State<Arc<App>>,
    caller: Caller,
    ApiJson(signal): ApiJson<NewSignal>,
) -> Result<Json<SignalAnswer>, ApiError> {
    caller.require("signals:write")?;
    let kind = token(&signal.kind, "type", 100)?;
    if crate::signals::actions::EventKind::from_short_name(&kind).is_some() {
        // Rules written for an IdP's events must not be set off by any tool with a token.
        return Err(ApiError::invalid(format!(
            "`type` `{kind}` names a Shared Signals event, which only a configured transmitter sends; use your own name"
        )));
    }
    let id = match &signal.id {
        Some(id) => token(id, "id", 128)?,
        None => crate::secrets::new_id(),
    };
    let risk_level = match signal.risk_level.as_deref().map(str::to_ascii_lowercase) {
        None => None,
        Some(level) if ["low", "medium", "high"].contains(&level.as_str()) => Some(level),
        Some(other) => return Err(ApiError::invalid(format!("`risk_level` `{other}`: expected low, medium or high"))),
    };
    let detail = signal.detail.as_deref().map(str::trim).unwrap_or_default();
    if detail.chars().count() > 500 || detail.contains(char::is_control) {
        return Err(ApiError::invalid("`detail` is at most 500 characters on one line"));
    }
    let subject = match (&signal.email, &signal.sub, &signal.session) {
        (Some(email), None, None) => {
            let email = identifier(email, "email", 320)?;
            if !email.contains('@') {
                return Err(ApiError::invalid("`email` is not an email address"));
            }
            Subject { session: None, user: Some(UserRef::email(email)) }
        }
        (None, Some(sub), None) => {
            Subject { session: None, user: Some(UserRef::subject(identifier(sub, "sub", 255)?)) }
        }
        (None, None, Some(session)) => match app.store.get_session(session).await? {
            Some(record) => Subject { session: Some(record.id), user: Some(UserRef::email(&record.email)) },
            None => return Err(ApiError::not_found(format!("no session `{session}`"))),
        },
        _ => return Err(ApiError::invalid("name the subject with exactly one of `email`, `sub`, `session`")),
    };
    let source = format!("api:{}", caller.actor.name.trim_start_matches("token:"));
    let target = match (&subject.session, &subject.user) {
        (Some(session), _) => format!("session:{session}"),
        (None, user) => crate::store::signal_target(user.as_ref(), None),
    };
    let risk = risk_level.as_deref().map(|r| format!(", risk {r}")).unwrap_or_default();
    let summary = format!(
        "signal `{kind}`{risk} from {source} (id {id}){}",
        if detail.is_empty() { String::new() } else { format!(": {detail}") }
    );
    let record = SignalRecord {
        source: &source,
        jti: &id,
        event_types: &kind,
        iat_ms: now_ms(),
        target: &target,
        summary: &summary,
        audit_action: "signal.received",
        acked: true,
    };
    let actor = Actor { name: caller.actor.name.clone(), source_address: caller.actor.source_address.clone() };
    let recorded = app.store.apply_signal(&record, &[], None, &actor, now_ms()).await?;
    // The type is the caller's text: not a label (unbounded), the audit row has it.
    let outcome = if recorded.duplicate { "duplicate" } else { "received" };
    app.metrics.signals.events.with_label_values(&[source.as_str(), "api-signal", outcome]).inc();
    if recorded.duplicate {
        return Ok(Json(SignalAnswer { id, duplicate: true, fired: Vec::new() }));
    }
    let occurrence = format!("{source}:{id}");
    let fired = after_signal(&app, &subject, (&kind, risk_level.as_deref()), &occurrence).await?;
    Ok(Json(SignalAnswer {
        id,
        duplicate: false,
        fired: fired.into_iter().map(|(rule, applied)| FiredRule { rule, applied }).collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::identifier;

    #[test]
    fn a_user_identifier_is_one_word() {
        assert_eq!(identifier(" bob@corp.example ", "email", 320).ok(), Some("bob@corp.example"));
        for bad in ["", "bob@corp.example session:s-1", "bob@corp.example\nforged", &"x".repeat(321)] {
            assert!(identifier(bad, "email", 320).is_err(), "{bad:?}");
        }
    }
}
