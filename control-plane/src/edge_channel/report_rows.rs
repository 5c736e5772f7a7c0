//! The audit rows an edge's report brings: denials (one by one, or a burst
//! summed with its count), TCP flows opened and closed, and the live
//! connections the edge closed because access ended. Each row names the
//! user, the session, the route and the client's address; the store adds
//! the edge and, for a session, its user's email and subject. A denial's
//! row ends with the reference its client was shown, ` (ref K7Q2-M9XD-4RTA)`
//! (the audit log's `reference` filter finds it there).

use portcullis_policy::edge_channel::ActivityEvent;

use crate::store::EdgeAuditRow;

/// ` (session ID)`, or nothing.
fn session_text(session_id: Option<&str>) -> String {
    session_id.map(|s| format!(" (session {s})")).unwrap_or_default()
}

/// The audit target of a flow's or a denial's user: one word (the audit
/// log files a row under the session or user its target's last word names,
/// so an identity string `eve@corp.example session:<id>` must not file
/// eve's rows under another session).
fn user_target(user: &str) -> String {
    if user.is_empty() {
        "user:anonymous".to_owned()
    } else {
        let word: String = user.chars().map(|c| if c.is_whitespace() || c.is_control() { '_' } else { c }).collect();
        format!("user:{word}")
    }
}

/// The row's target: the session (the row names its user too; response
/// rules count a session's denials), else the user.
fn target(session_id: Option<&str>, user: &str) -> String {
    match session_id {
        Some(session) => format!("session:{session}"),
        None => user_target(user),
    }
}

/// The user as the row names it: absent for anonymous.
fn named(user: String) -> Option<String> {
    (!user.is_empty()).then_some(user)
}

/// Seconds with one decimal.
fn seconds(ms: i64) -> String {
    format!("{:.1}", ms as f64 / 1000.0)
}

/// What a closed connection's reason means, in words.
fn closed_because(reason: &str) -> &'static str {
    match reason {
        "session_terminated" => "the session was terminated",
        "user" => "the user was terminated or locked",
        "token_revoked" => "the token was revoked",
        "policy_changed" => "the policy no longer allows it",
        "expired" => "the token or a time limit of the policy expired",
        "stale_snapshot" => "the edge's policy went stale on a route that fails closed",
        "key_revoked" => "the key that signed the session was revoked",
        "claims_changed" => "the user's groups changed",
        _ => "access ended",
    }
}

/// The audit row of one reported event; `None` for what is not audited
/// here (sightings, connection counts, address changes).
pub(super) fn audit_row(event: ActivityEvent) -> Option<EdgeAuditRow> {
    let row = match event {
        ActivityEvent::FlowOpened { session_id, user, route, target: to, source_address, flows, at_ms, .. } => {
            let what = if flows == 1 { "flow opened".to_owned() } else { format!("{flows} flows opened") };
            EdgeAuditRow {
                action: "flow.open",
                target: user_target(&user),
                reason: format!("route `{route}` ({to}){}: {what}", session_text(session_id.as_deref())),
                source_address,
                at_ms,
                user: named(user),
                session: session_id,
                route: Some(route),
                occurrences: flows,
            }
        }
        ActivityEvent::FlowClosed {
            session_id,
            user,
            route,
            target: to,
            source_address,
            bytes_up,
            bytes_down,
            flows,
            duration_ms,
            shortest_ms,
            ended_by,
            at_ms,
            ..
        } => {
            let how = match ended_by.as_str() {
                "access_ended" => "closed by Portcullis: access ended",
                "error" => "ended by a network error",
                "edge_shutdown" => "closed because the edge shut down",
                _ => "closed",
            };
            let what = match (flows, shortest_ms) {
                (1, _) => format!("flow {how} after {} s", seconds(duration_ms)),
                (n, Some(shortest)) if shortest != duration_ms => {
                    format!("{n} flows {how} after {}–{} s", seconds(shortest), seconds(duration_ms))
                }
                (n, _) => format!("{n} flows {how} after {} s", seconds(duration_ms)),
            };
            EdgeAuditRow {
                action: "flow.close",
                target: user_target(&user),
                reason: format!(
                    "route `{route}` ({to}){}: {what}; {bytes_up} bytes up, {bytes_down} bytes down",
                    session_text(session_id.as_deref()),
                ),
                source_address,
                at_ms,
                user: named(user),
                session: session_id,
                route: Some(route),
                occurrences: flows,
            }
        }
        ActivityEvent::Denied {
            user,
            session_id,
            route,
            reason,
            source_address,
            at_ms,
            count,
            first_at_ms,
            reference,
        } => {
            let burst = match first_at_ms {
                Some(first) if count > 1 => format!(" ({count} requests over {} s)", seconds(at_ms - first)),
                _ if count > 1 => format!(" ({count} requests)"),
                _ => String::new(),
            };
            // A denial decided before any route was found (a locked user, a
            // path not in normal form) names none.
            let on = if route.is_empty() { String::new() } else { format!("route `{route}` ") };
            EdgeAuditRow {
                action: "access.denied",
                target: target(session_id.as_deref(), &user),
                reason: format!(
                    "{on}({user}): {reason}{burst}{}",
                    reference.map(|r| r.audit_text()).unwrap_or_default()
                ),
                source_address,
                at_ms,
                user: named(user),
                session: session_id,
                route: (!route.is_empty()).then_some(route),
                occurrences: count,
            }
        }
        ActivityEvent::ConnectionsClosed {
            session_id,
            user,
            route,
            source_address,
            reason,
            connections,
            at_ms,
            ..
        } => {
            let what = if connections == 1 {
                "a live connection".to_owned()
            } else {
                format!("{connections} live connections")
            };
            EdgeAuditRow {
                action: "connection.closed",
                target: target(session_id.as_deref(), &user),
                reason: format!("route `{route}`: closed {what}: {}", closed_because(&reason)),
                source_address,
                at_ms,
                user: named(user),
                session: session_id,
                route: Some(route),
                occurrences: connections,
            }
        }
        ActivityEvent::Seen { .. }
        | ActivityEvent::Connections { .. }
        | ActivityEvent::LiveConnections { .. }
        | ActivityEvent::AddressChanged { .. } => return None,
    };
    Some(row)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_target_is_one_word() {
        assert_eq!(user_target("eve@corp.example session:abc"), "user:eve@corp.example_session:abc");
        assert_eq!(user_target("eve\n@x"), "user:eve_@x");
        assert_eq!(user_target(""), "user:anonymous");
    }

    #[test]
    fn a_summed_burst_of_denials_says_how_many_and_over_how_long() {
        let row = audit_row(ActivityEvent::Denied {
            user: "eve@corp.example".into(),
            session_id: None,
            route: "admin".into(),
            reason: "no rule allows".into(),
            source_address: "203.0.113.9".into(),
            at_ms: 9_500,
            count: 412,
            first_at_ms: Some(1_000),
            reference: Some("K7Q2-M9XD-4RTA".parse().expect("reference")),
        })
        .expect("audited");
        assert_eq!(row.occurrences, 412);
        assert_eq!(
            row.reason,
            "route `admin` (eve@corp.example): no rule allows (412 requests over 8.5 s) (ref K7Q2-M9XD-4RTA)"
        );
        assert_eq!((row.target.as_str(), row.route.as_deref()), ("user:eve@corp.example", Some("admin")));
    }

    #[test]
    fn a_denial_before_any_route_names_none() {
        let row = audit_row(ActivityEvent::Denied {
            user: "eve@corp.example".into(),
            session_id: Some("s1".into()),
            route: String::new(),
            reason: "the user is locked".into(),
            source_address: "203.0.113.9".into(),
            at_ms: 1,
            count: 1,
            first_at_ms: None,
            reference: None,
        })
        .expect("audited");
        assert_eq!((row.reason.as_str(), row.route), ("(eve@corp.example): the user is locked", None));
    }
}
