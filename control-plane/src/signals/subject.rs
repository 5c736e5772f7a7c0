//! Subject identifiers (RFC 9493, as SSF 1.0 uses them in `sub_id`): which
//! user, and which of the IdP's sessions, an event is about. Formats
//! `email`, `iss_sub`, `opaque` and `complex` (`user` + `session`); an
//! `iss_sub` or `opaque` names a subject of this transmitter only (a
//! transmitter cannot speak for another issuer's users).

use portcullis_policy::UserRef;
use serde_json::Value;

/// Largest identifier accepted, bytes.
const MAX_IDENTIFIER: usize = 512;

/// Who an event is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    /// The user.
    pub user: Option<UserRef>,
    /// The IdP's session id (`sid`).
    pub idp_session: Option<String>,
}

/// Why a subject identifier is refused (a malformed request).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sub_id: {0}")]
pub struct BadSubject(pub String);

fn text<'v>(object: &'v Value, field: &str, format: &str) -> Result<&'v str, BadSubject> {
    // One word: an identifier becomes an audit target, filed by its last word.
    match object.get(field).and_then(Value::as_str).map(str::trim) {
        Some(value)
            if !value.is_empty()
                && value.len() <= MAX_IDENTIFIER
                && !value.contains(|c: char| c.is_control() || c.is_whitespace()) =>
        {
            Ok(value)
        }
        Some(_) => Err(BadSubject(format!(
            "`{field}` of format `{format}` is empty, too long or has spaces or control characters"
        ))),
        None => Err(BadSubject(format!("format `{format}` needs a string `{field}`"))),
    }
}

/// Reads one simple identifier naming a user. `issuers`: the issuers whose
/// subjects this transmitter may name.
fn user(id: &Value, issuers: &[&str]) -> Result<UserRef, BadSubject> {
    let format = id.get("format").and_then(Value::as_str).ok_or_else(|| BadSubject("no `format`".into()))?;
    match format {
        "email" => {
            let email = text(id, "email", format)?;
            let valid = email.split_once('@').is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'));
            if !valid {
                return Err(BadSubject(format!("`{email}` is not an email address")));
            }
            Ok(UserRef::email(email))
        }
        "iss_sub" => {
            let iss = text(id, "iss", format)?;
            if !issuers.iter().any(|known| known.trim_end_matches('/') == iss.trim_end_matches('/')) {
                return Err(BadSubject(format!("iss_sub names issuer `{iss}`, not this transmitter's")));
            }
            Ok(UserRef::subject(text(id, "sub", format)?))
        }
        "opaque" => Ok(UserRef::subject(text(id, "id", format)?)),
        other => Err(BadSubject(format!("unsupported format `{other}` for a user"))),
    }
}

/// Reads `sub_id`. `issuers`: the transmitter's own issuers.
pub fn parse(sub_id: &Value, issuers: &[&str]) -> Result<Subject, BadSubject> {
    if !sub_id.is_object() {
        return Err(BadSubject("must be an object".into()));
    }
    match sub_id.get("format").and_then(Value::as_str) {
        Some("complex") => {
            let user = sub_id.get("user").map(|u| user(u, issuers)).transpose()?;
            let idp_session = match sub_id.get("session") {
                None => None,
                Some(session) => match session.get("format").and_then(Value::as_str) {
                    Some("opaque") => Some(text(session, "id", "opaque")?.to_owned()),
                    _ => return Err(BadSubject("a session is named by format `opaque` with its `id`".into())),
                },
            };
            if user.is_none() && idp_session.is_none() {
                return Err(BadSubject("a complex subject needs `user` or `session`".into()));
            }
            Ok(Subject { user, idp_session })
        }
        _ => Ok(Subject { user: Some(user(sub_id, issuers)?), idp_session: None }),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const OURS: &[&str] = &["https://idp.example"];

    #[test]
    fn every_format() {
        assert_eq!(
            parse(&json!({"format": "email", "email": "Bob@Corp.Example"}), OURS).unwrap().user,
            Some(UserRef::email("bob@corp.example"))
        );
        assert_eq!(
            parse(&json!({"format": "iss_sub", "iss": "https://idp.example/", "sub": "00u1"}), OURS).unwrap().user,
            Some(UserRef::subject("00u1"))
        );
        assert_eq!(parse(&json!({"format": "opaque", "id": "u-7"}), OURS).unwrap().user, Some(UserRef::subject("u-7")));
        let complex = json!({"format": "complex", "user": {"format": "email", "email": "b@c.example"},
                              "session": {"format": "opaque", "id": "sid-1"}});
        let subject = parse(&complex, OURS).unwrap();
        assert_eq!(subject.user, Some(UserRef::email("b@c.example")));
        assert_eq!(subject.idp_session.as_deref(), Some("sid-1"));
    }

    #[test]
    fn malformed_and_foreign_subjects_are_refused() {
        for bad in [
            json!("bob@corp.example"),
            json!({"format": "email"}),
            json!({"format": "email", "email": "not-an-address"}),
            json!({"format": "email", "email": ""}),
            json!({"format": "email", "email": "a@b.example\nx"}),
            json!({"format": "email", "email": "a@b.example session:s-1"}),
            json!({"format": "opaque", "id": "00u1 session:s-1"}),
            json!({"format": "iss_sub", "iss": "https://other.example", "sub": "00u1"}),
            json!({"format": "phone_number", "phone_number": "+1"}),
            json!({"format": "complex"}),
            json!({"format": "complex", "session": {"format": "email", "email": "a@b.example"}}),
            json!({"format": "opaque", "id": "x".repeat(600)}),
            json!({"email": "a@b.example"}),
        ] {
            assert!(parse(&bad, OURS).is_err(), "{bad}");
        }
    }
}
