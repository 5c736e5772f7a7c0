//! The default JSON shape of a security event: OCSF 1.1 (Open Cybersecurity
//! Schema Framework, schema.ocsf.io). Each audit entry maps to one class:
//!
//! | audit action | OCSF class (uid) | activity |
//! |---|---|---|
//! | `session.create` | Authentication (3002) | 1 Logon |
//! | `session.terminate`, `session.logout`, `session.replace`, `user.terminate` | Authentication (3002) | 2 Logoff |
//! | `user.lock` / `user.unlock` | Account Change (3001) | 9 Lock / 99 Other (`Unlock`) |
//! | `access.denied`, `session.address_changed`, `user.groups_overridden` | Authorize Session (3003) | 99 Other |
//! | `flow.open` / `flow.close`, `connection.closed` (live connections an edge closed) | Network Activity (4001) | 1 Open / 2 Close |
//! | everything else (policy, tokens, keys, edges, signals, responses, deliveries) | API Activity (6003) | 1 Create, 3 Update, 4 Delete or 99 Other |
//!
//! Common fields: `time` (ms), `severity_id`, `status_id` (1 Success, 2
//! Failure), `message` (the entry's reason), `metadata` (`product`,
//! `version`, `uid` = the event id sinks de-duplicate on, `log_name`),
//! `actor.user.name` (who did it), `user` (`email_addr`, `uid` = IdP
//! subject), `session.uid`, `src_endpoint.ip`, `count` (when an entry sums
//! several occurrences), and `unmapped` (`action`, `target`, `change_seq`,
//! `route`, `edge`): everything needed to find all of one user's events.

use serde_json::{json, Map, Value};

use crate::model::AuditEntry;

/// OCSF schema version written in `metadata.version`.
pub const OCSF_VERSION: &str = "1.1.0";

/// The class, category and activity of an action.
fn classify(action: &str) -> (u32, u32, u32, &'static str) {
    match action {
        "session.create" => (3002, 3, 1, "Logon"),
        "session.terminate" | "session.logout" | "session.replace" | "user.terminate" => (3002, 3, 2, "Logoff"),
        "user.lock" => (3001, 3, 9, "Lock"),
        "user.unlock" => (3001, 3, 99, "Unlock"),
        "access.denied" | "session.address_changed" | "user.groups_overridden" => (3003, 3, 99, "Authorize"),
        "flow.open" => (4001, 4, 1, "Open"),
        "flow.close" | "connection.closed" => (4001, 4, 2, "Close"),
        a if a.ends_with(".create") || a.ends_with(".enroll") => (6003, 6, 1, "Create"),
        a if a.ends_with(".revoke") || a.ends_with(".delete") || a.ends_with(".end") => (6003, 6, 4, "Delete"),
        a if a.starts_with("policy.") || a.ends_with(".rotate") => (6003, 6, 3, "Update"),
        _ => (6003, 6, 99, "Other"),
    }
}

/// The event id sinks de-duplicate on: stable across redeliveries.
pub fn event_id(entry: &AuditEntry) -> String {
    format!("portcullis-audit-{}", entry.id)
}

/// The event class name used for routing (NATS subjects, indices):
/// `authentication`, `account_change`, `authorize_session`,
/// `network_activity` or `api_activity`.
pub fn class_name(action: &str) -> &'static str {
    match classify(action).0 {
        3002 => "authentication",
        3001 => "account_change",
        3003 => "authorize_session",
        4001 => "network_activity",
        _ => "api_activity",
    }
}

fn failed(action: &str) -> bool {
    matches!(action, "access.denied" | "session.login_refused" | "portal.login_refused")
        || action.ends_with(".refused")
        || action.ends_with(".failed")
}

/// One audit entry as an OCSF event.
pub fn to_ocsf(entry: &AuditEntry) -> Value {
    let at_ms = chrono::DateTime::parse_from_rfc3339(&entry.at).map_or(0, |t| t.timestamp_millis());
    let (class_uid, category_uid, activity_id, activity_name) = classify(&entry.action);
    let failure = failed(&entry.action);
    let severity_id = match (class_uid, failure) {
        (_, true) => 3,
        (3001, _) | (3002, _) if entry.action != "session.create" => 2,
        _ => 1,
    };
    let mut event = Map::new();
    event.insert("class_uid".into(), json!(class_uid));
    event.insert("category_uid".into(), json!(category_uid));
    event.insert("activity_id".into(), json!(activity_id));
    event.insert("activity_name".into(), json!(activity_name));
    event.insert("type_uid".into(), json!(class_uid * 100 + activity_id));
    event.insert("time".into(), json!(at_ms));
    event.insert("severity_id".into(), json!(severity_id));
    event.insert("status_id".into(), json!(if failure { 2 } else { 1 }));
    event.insert("status".into(), json!(if failure { "Failure" } else { "Success" }));
    event.insert("message".into(), json!(entry.reason));
    event.insert(
        "metadata".into(),
        json!({
            "version": OCSF_VERSION,
            "uid": event_id(entry),
            "log_name": "audit",
            "product": { "name": "Portcullis", "vendor_name": "Portcullis" },
        }),
    );
    event.insert("actor".into(), json!({ "user": { "name": entry.actor } }));
    let mut user = Map::new();
    if let Some(email) = &entry.user_email {
        user.insert("email_addr".into(), json!(email));
        user.insert("name".into(), json!(email));
    }
    if let Some(subject) = &entry.user_subject {
        user.insert("uid".into(), json!(subject));
    }
    if !user.is_empty() {
        event.insert("user".into(), Value::Object(user));
    }
    if let Some(session) = &entry.session_id {
        event.insert("session".into(), json!({ "uid": session }));
    }
    if !entry.source_address.is_empty() {
        event.insert("src_endpoint".into(), json!({ "ip": entry.source_address }));
    }
    if entry.count > 1 {
        // OCSF's base `count`: how many times the event occurred (an edge
        // sums a burst of identical denials or closed connections).
        event.insert("count".into(), json!(entry.count));
    }
    let mut unmapped = json!({ "action": entry.action, "target": entry.target, "change_seq": entry.seq });
    if let Some(route) = &entry.route {
        unmapped["route"] = json!(route);
    }
    if let Some(edge) = &entry.edge {
        unmapped["edge"] = json!(edge);
    }
    event.insert("unmapped".into(), unmapped);
    Value::Object(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(action: &str) -> AuditEntry {
        AuditEntry {
            id: 42,
            at: "2026-12-02T10:00:00Z".into(),
            actor: "token:admin".into(),
            action: action.into(),
            target: "session:abc".into(),
            reason: "stolen laptop".into(),
            source_address: "203.0.113.7".into(),
            seq: Some(7),
            user_email: Some("bob@corp.example".into()),
            user_subject: Some("00u1".into()),
            session_id: Some("abc".into()),
            route: None,
            edge: None,
            count: 1,
        }
    }

    #[test]
    fn a_termination_is_an_authentication_logoff_naming_the_user_and_session() {
        let event = to_ocsf(&entry("session.terminate"));
        assert_eq!(event["class_uid"], 3002);
        assert_eq!(event["type_uid"], 300202);
        assert_eq!(event["user"]["email_addr"], "bob@corp.example");
        assert_eq!(event["user"]["uid"], "00u1");
        assert_eq!(event["session"]["uid"], "abc");
        assert_eq!(event["actor"]["user"]["name"], "token:admin");
        assert_eq!(event["src_endpoint"]["ip"], "203.0.113.7");
        assert_eq!(event["metadata"]["uid"], "portcullis-audit-42");
        assert_eq!(event["unmapped"]["change_seq"], 7);
        assert_eq!(event["time"], 1_796_205_600_000_i64);
    }

    #[test]
    fn every_class_of_the_table() {
        for (action, class, activity) in [
            ("session.create", 3002, 1),
            ("user.terminate", 3002, 2),
            ("user.lock", 3001, 9),
            ("user.unlock", 3001, 99),
            ("access.denied", 3003, 99),
            ("flow.open", 4001, 1),
            ("flow.close", 4001, 2),
            ("admin_token.create", 6003, 1),
            ("service_token.revoke", 6003, 4),
            ("policy.apply", 6003, 3),
            ("signal.applied", 6003, 99),
        ] {
            let event = to_ocsf(&entry(action));
            assert_eq!(
                (event["class_uid"].as_u64(), event["activity_id"].as_u64()),
                (Some(class), Some(activity)),
                "{action}"
            );
        }
        assert_eq!(to_ocsf(&entry("access.denied"))["status"], "Failure");
        assert_eq!(class_name("flow.close"), "network_activity");
    }
}
