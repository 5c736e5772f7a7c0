//! Security Event Tokens from outbox jobs (RFC 8417 with the SSF 1.0
//! profile): `iss`, `jti` (the job id, so a redelivery is recognisable),
//! `iat`, `aud`, `txn` (the change-log sequence), `sub_id` (RFC 9493
//! subject identifiers), one event in `events`; no `exp`, no `sub`.

use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::store::{OutboxJob, SsfStream};
use crate::termination::{Termination, CAEP_SESSION_REVOKED, SSF_VERIFICATION};

/// What an SSF job carries.
#[derive(Debug, Deserialize)]
struct Job {
    event_type: String,
    termination: Option<Termination>,
    state: Option<String>,
}

/// The claims of the SET for `job` on `stream`, issued by `issuer` at `now_s`.
pub fn claims(job: &OutboxJob, stream: &SsfStream, issuer: &str, now_s: i64) -> Result<Value, String> {
    let parsed: Job = serde_json::from_str(&job.event).map_err(|e| format!("the job's event does not decode: {e}"))?;
    let (sub_id, payload) = match (&parsed.termination, parsed.event_type.as_str()) {
        (_, SSF_VERIFICATION) => {
            let mut payload = Map::new();
            if let Some(state) = &parsed.state {
                payload.insert("state".into(), json!(state));
            }
            (json!({ "format": "opaque", "id": stream.id }), Value::Object(payload))
        }
        (Some(t), event_type) => (subject(t, event_type), payload(t, event_type)),
        (None, event_type) => return Err(format!("a {event_type} event without its termination")),
    };
    let mut claims = json!({
        "iss": issuer,
        "jti": job.id,
        "iat": now_s,
        "aud": stream.audience,
        "sub_id": sub_id,
        "events": { parsed.event_type: payload },
    });
    if let Some(seq) = job.seq {
        claims["txn"] = json!(seq.to_string());
    }
    Ok(claims)
}

/// The subject: the user by email (or by an opaque IdP subject when no email
/// is known); for a CAEP session-revoked of one session, the user and the
/// session (a `complex` subject).
fn subject(t: &Termination, event_type: &str) -> Value {
    let user = match t.email() {
        Some(email) => json!({ "format": "email", "email": email }),
        None => json!({ "format": "opaque", "id": t.subject().unwrap_or(&t.user) }),
    };
    match (&t.session_id, event_type) {
        (Some(session), CAEP_SESSION_REVOKED) => {
            json!({ "format": "complex", "user": user, "session": { "format": "opaque", "id": session } })
        }
        _ => user,
    }
}

/// The event's own claims. CAEP events carry the time, who acted and why
/// (the admin's reason in `reason_admin`, never shown to the user).
fn payload(t: &Termination, event_type: &str) -> Value {
    if event_type == CAEP_SESSION_REVOKED {
        json!({
            "event_timestamp": t.at_ms.div_euclid(1000),
            "initiating_entity": "admin",
            "reason_admin": { "en": t.reason },
        })
    } else {
        json!({})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::JobState;
    use crate::termination::{Action, RISC_SESSIONS_REVOKED};

    fn job(event: Value, seq: Option<u64>) -> OutboxJob {
        OutboxJob {
            id: "jti-1".into(),
            sink: "ssf-push".into(),
            target: Some("s1".into()),
            event: event.to_string(),
            user_key: None,
            seq,
            state: JobState::Pending,
            attempts: 1,
            next_attempt_ms: 0,
            deadline_ms: 0,
            in_flight: true,
            last_error: None,
            detail: None,
            created_ms: 0,
            updated_ms: 0,
            finished_ms: None,
            lease_token: None,
        }
    }

    fn stream() -> SsfStream {
        SsfStream {
            id: "s1".into(),
            owner: "token:rx".into(),
            audience: "rx".into(),
            method: "push".into(),
            endpoint_url: None,
            authorization_sealed: None,
            events_requested: vec![],
            events_delivered: vec![],
            description: None,
            status: "enabled".into(),
            status_reason: None,
            created_ms: 0,
            updated_ms: 0,
        }
    }

    fn termination(action: Action, session: Option<&str>) -> Termination {
        Termination {
            action,
            user: "email:bob@corp.example".into(),
            email: Some("bob@corp.example".into()),
            session_id: session.map(Into::into),
            reason: "laptop stolen".into(),
            at_ms: 1_700_000_000_123,
        }
    }

    #[test]
    fn a_session_revoked_names_the_user_and_the_session() {
        let t = termination(Action::TerminateSession, Some("abc"));
        let event = json!({ "event_type": CAEP_SESSION_REVOKED, "termination": t });
        let claims = claims(&job(event, Some(42)), &stream(), "https://cp.example", 1_700_000_001).unwrap();
        assert_eq!(
            claims,
            json!({
                "iss": "https://cp.example", "jti": "jti-1", "iat": 1_700_000_001, "aud": "rx", "txn": "42",
                "sub_id": { "format": "complex", "user": { "format": "email", "email": "bob@corp.example" },
                            "session": { "format": "opaque", "id": "abc" } },
                "events": { CAEP_SESSION_REVOKED: { "event_timestamp": 1_700_000_000, "initiating_entity": "admin",
                            "reason_admin": { "en": "laptop stolen" } } }
            })
        );
        assert!(claims.get("exp").is_none() && claims.get("sub").is_none(), "RFC 8417: no exp, no sub");
    }

    #[test]
    fn a_terminate_all_is_a_risc_sessions_revoked_of_the_email() {
        let t = termination(Action::TerminateUser, None);
        let event = json!({ "event_type": RISC_SESSIONS_REVOKED, "termination": t });
        let claims = claims(&job(event, Some(7)), &stream(), "https://cp.example", 1).unwrap();
        assert_eq!(claims["sub_id"], json!({ "format": "email", "email": "bob@corp.example" }));
        assert_eq!(claims["events"], json!({ RISC_SESSIONS_REVOKED: {} }));
    }

    #[test]
    fn a_verification_is_about_the_stream_and_echoes_the_state() {
        let event = json!({ "event_type": SSF_VERIFICATION, "state": "VGhpcyBpcyBhbiBleGFtcGxl" });
        let claims = claims(&job(event, None), &stream(), "https://cp.example", 1).unwrap();
        assert_eq!(claims["sub_id"], json!({ "format": "opaque", "id": "s1" }));
        assert_eq!(claims["events"][SSF_VERIFICATION]["state"], "VGhpcyBpcyBhbiBleGFtcGxl");
        assert!(claims.get("txn").is_none());
    }
}
