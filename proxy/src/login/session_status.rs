//! `GET /.portcullis/session[?target=host:port]` with the session token as
//! `Authorization: Bearer`: is this session still good, and if not, why?
//! `portcullis connect` asks when the edge closes its flow, to tell its
//! user "session terminated by an administrator: stolen laptop" rather than
//! show a broken pipe.
//!
//! Active: 200 `{"state": "active", …}` (with `target` also whether the
//! policy allows a flow there now). Otherwise 401 with the house error body:
//! `session_terminated` (an administrator ended it, with their reason),
//! `session_ended` (logout, the IdP, a newer login), `session_expired`,
//! `user_locked`, or `invalid_token`. The reason of a terminated session
//! comes from the control plane; the snapshot only knows that it ended.
//! A token that is not shaped like a JWT is refused unread, and asking the
//! control plane draws on the client's lookup budget (429 `rate_limited`).

use std::time::Instant;

use pingora_proxy::Session;
use portcullis_policy::edge_channel::SessionStatus;
use portcullis_policy::{evaluate, CredentialKind, Facts, Reason, Snapshot, Target};
use serde_json::json;

use super::{answer, query_param, LoginService, RequestInfo};
use crate::credentials::lookup_guard::Refused;
use crate::credentials::{jwt_format_ok, CredentialError};
use crate::responses::respond;

/// What to tell the user about an ended session, from the control plane's record.
pub fn ended_message(status: &SessionStatus) -> (&'static str, String) {
    let reason = status.end_reason.as_deref().unwrap_or("no reason given");
    match status.ended_by.as_deref() {
        Some("administrator") => ("session_terminated", format!("session terminated by an administrator: {reason}")),
        Some("expired") => ("session_expired", "session expired; log in again".to_owned()),
        Some(_) => ("session_ended", format!("session ended: {reason}")),
        None => ("session_ended", format!("session ended: {reason}")),
    }
}

impl LoginService {
    /// `GET /.portcullis/session`.
    pub(super) async fn session_status(
        &self,
        session: &mut Session,
        snapshot: &Snapshot,
        info: &RequestInfo<'_>,
        query: &str,
    ) -> pingora_core::Result<bool> {
        let req = session.req_header();
        let from_cookie = || self.cookies.jar().presented(req).first().map(|p| p.value.to_owned());
        let token = match super::logout::bearer(session).map(str::to_owned).or_else(from_cookie) {
            Some(token) => token,
            None => {
                let message = "Send the session token as Authorization: Bearer.";
                respond(session, 401, "unauthorized", "Login required", message, &[]).await?;
                return Ok(true);
            }
        };
        let client_ip = info.client_ip.parse().unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
        let verified = if jwt_format_ok(&token) {
            self.sessions.verify(&token, CredentialKind::Browser, snapshot.signing_keys(), info.now)
        } else {
            Refused::Format.count();
            Err(CredentialError::Malformed)
        };
        let Ok((identity, _)) = verified else {
            let message = "The session token is invalid or has expired; log in again.";
            respond(session, 401, "invalid_token", "Login required", message, &[]).await?;
            return Ok(true);
        };
        let target = query_param(query, "target").map(|t| t.to_ascii_lowercase());
        let facts = Facts {
            target: Target::Tcp { name: target.as_deref().unwrap_or("") },
            source_ip: client_ip,
            now: info.now,
            identity: Some(&identity),
        };
        let decision = evaluate(snapshot, &facts);
        let sid = identity.session_id().map(|s| s.to_string()).unwrap_or_default();
        let (code, message) = match decision.reason {
            Reason::SessionTerminated | Reason::UserTokensRevoked => {
                // An ended session stays ended: its record is asked for once,
                // and only within the client's lookup budget.
                let status = match self.authority.ended_session(&sid) {
                    Some(known) => Ok(known),
                    None if !self.authority.lookup_budget().try_acquire(client_ip, Instant::now()) => {
                        let message = "Too many session checks from this address; try again in a moment.";
                        let retry = [("retry-after", "1".to_owned())];
                        respond(session, 429, "rate_limited", "Too many requests", message, &retry).await?;
                        return Ok(true);
                    }
                    None => self.authority.session_status(&sid).await,
                };
                match status {
                    Ok(status) if status.state != "active" => ended_message(&status),
                    Ok(_) => ("session_ended", "session ended: the user's sessions were ended".to_owned()),
                    Err(error) => {
                        tracing::warn!(%error, "cannot ask the control plane why a session ended");
                        ("session_ended", "session terminated (the reason cannot be fetched right now)".to_owned())
                    }
                }
            }
            Reason::UserLocked => {
                let reason = decision.lock.map_or("no reason given", |l| l.reason.as_str());
                ("user_locked", format!("user locked by an administrator: {reason}"))
            }
            _ => {
                let mut body = json!({
                    "state": "active",
                    "session_id": sid,
                    "email": identity.email(),
                    "groups": identity.groups(),
                });
                if let Some(name) = &target {
                    body["target"] = json!({
                        "name": name,
                        "allowed": decision.is_allowed(),
                        "reason": decision.to_string(),
                    });
                }
                return answer(session, 200, "application/json", body.to_string()).await;
            }
        };
        respond(session, 401, code, "Session ended", &message, &[]).await?;
        Ok(true)
    }
}
