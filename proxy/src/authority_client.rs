//! Calls from the edge to the control plane's session authority: create a
//! session after a login, end one at logout, end the sessions an IdP
//! logged out (back-channel), say why a session ended, and look up service
//! tokens. Every failure is
//! one of three kinds, because the edge answers each differently: the
//! control plane refused (a 4xx with its reason), it is unavailable (the
//! clear 503 page), or it answered something unexpected.

use std::time::Duration;

use dashmap::DashMap;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::credentials::LookupBudget;
use portcullis_policy::edge_channel::{
    session_logout_path, session_path, ErrorAnswer, IdpLogoutAnswer, IdpLogoutBody, LoginAnswer, LoginBody,
    ServiceIdentity, ServiceTokenBody, SessionStatus, IDP_LOGOUT_PATH, SERVICE_TOKEN_VERIFY_PATH, SESSIONS_PATH,
};
use std::sync::Arc;

use crate::control_planes::ControlPlanes;

/// Most ended-session records kept (all are dropped when full).
const MAX_ENDED_KEPT: usize = 10_000;
/// How long a login may wait for the control plane.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a call did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum AuthorityError {
    /// The control plane answered with a client error and its message.
    #[error("{message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// Machine-readable code (`user_locked`, `session_limit`, …).
        code: String,
        /// The control plane's explanation.
        message: String,
    },
    /// Unreachable, timed out or answering 5xx.
    #[error("the control plane is unavailable: {0}")]
    Unavailable(String),
}

/// The edge's client for the session authority.
pub struct AuthorityClient {
    planes: Arc<ControlPlanes>,
    client: reqwest::Client,
    lookups: LookupBudget,
    /// Records of ended sessions, by id: an ended session never resumes.
    ended: DashMap<String, SessionStatus>,
}

impl AuthorityClient {
    /// A client for the control-plane replicas `planes`.
    pub fn new(planes: Arc<ControlPlanes>) -> Self {
        let client = planes.client(Duration::from_secs(3), Some(CALL_TIMEOUT));
        Self { planes, client, lookups: LookupBudget::default(), ended: DashMap::new() }
    }

    /// The per-client budget of lookups made on behalf of requests
    /// (service tokens, session checks): take from it before such a call.
    pub fn lookup_budget(&self) -> &LookupBudget {
        &self.lookups
    }

    async fn call<T: DeserializeOwned>(&self, path: &str, body: &impl Serialize) -> Result<T, AuthorityError> {
        self.send(|url| self.client.post(url).json(body), path).await
    }

    /// Sends the request `build` makes for `path` to the replica in use; a
    /// replica that cannot even be connected to has not seen the request,
    /// so it goes to the next one (each replica once).
    async fn send<T: DeserializeOwned>(
        &self,
        build: impl Fn(&str) -> reqwest::RequestBuilder,
        path: &str,
    ) -> Result<T, AuthorityError> {
        let (mut index, _) = self.planes.current();
        let mut tries = self.planes.len();
        let response = loop {
            let request = self.planes.authorize(build(&self.planes.url_at(index, path)));
            match request.send().await {
                Ok(response) => break response,
                Err(error) if error.is_connect() && tries > 1 => {
                    tries -= 1;
                    index = self.planes.failed(index);
                }
                Err(error) => return Err(AuthorityError::Unavailable(error.without_url().to_string())),
            }
        };
        let status = response.status();
        if status.is_success() {
            return response.json().await.map_err(|e| AuthorityError::Unavailable(e.without_url().to_string()));
        }
        if status.is_client_error() {
            let body = response.json::<ErrorAnswer>().await.ok();
            self.planes.check_refusal(status, body.as_ref().map(|b| b.error.code.as_str()));
            let (code, message) = body.map_or_else(
                || ("error".to_owned(), format!("the control plane refused the request ({status})")),
                |b| (b.error.code, b.error.message),
            );
            return Err(AuthorityError::Refused { status: status.as_u16(), code, message });
        }
        Err(AuthorityError::Unavailable(format!("the control plane answered {status}")))
    }

    /// Records a login and returns its session token.
    pub async fn create_session(&self, login: &LoginBody) -> Result<LoginAnswer, AuthorityError> {
        self.call(SESSIONS_PATH, login).await
    }

    /// Ends a session because its user logged out. (The control plane reads
    /// no body, `{}` is sent, and its answer, a receipt, is not needed here.)
    pub async fn logout(&self, session_id: &str) -> Result<(), AuthorityError> {
        let no_body = serde_json::Map::new();
        self.call::<serde::de::IgnoredAny>(&session_logout_path(session_id), &no_body).await.map(drop)
    }

    /// Ends the sessions an IdP logged out.
    pub async fn idp_logout(&self, logout: &IdpLogoutBody) -> Result<IdpLogoutAnswer, AuthorityError> {
        self.call(IDP_LOGOUT_PATH, logout).await
    }

    /// The record of an ended session already fetched by [`Self::session_status`].
    pub fn ended_session(&self, session_id: &str) -> Option<SessionStatus> {
        self.ended.get(session_id).map(|status| status.clone())
    }

    /// Whether a session is active, and if not why it ended (an ended
    /// session's record is kept, see [`Self::ended_session`]).
    pub async fn session_status(&self, session_id: &str) -> Result<SessionStatus, AuthorityError> {
        if let Some(known) = self.ended_session(session_id) {
            return Ok(known);
        }
        let safe = !session_id.is_empty() && session_id.bytes().all(|b| b.is_ascii_hexdigit());
        if !safe {
            return Err(AuthorityError::Refused {
                status: 400,
                code: "bad_session".into(),
                message: "not a session id".into(),
            });
        }
        let status: SessionStatus = self.send(|url| self.client.get(url), &session_path(session_id)).await?;
        if status.state != "active" {
            if self.ended.len() >= MAX_ENDED_KEPT {
                self.ended.clear();
            }
            self.ended.insert(session_id.to_owned(), status.clone());
        }
        Ok(status)
    }

    /// Looks up a service token.
    pub async fn service_token(&self, token: &str) -> Result<ServiceIdentity, AuthorityError> {
        self.call(SERVICE_TOKEN_VERIFY_PATH, &ServiceTokenBody { token: token.to_owned() }).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A session's status as the control plane answers it.
    const ACTIVE: &str = r#"{"id":"0123abcd","state":"active","email":"ada@corp.example",
        "expires_at":"2026-12-02T10:00:00Z","ended_at":null,"end_reason":null,"ended_by":null}"#;
    /// An ended session's status.
    const ENDED: &str = r#"{"id":"0123abcd","state":"ended","email":"ada@corp.example",
        "expires_at":"2026-12-02T10:00:00Z","ended_at":"2026-12-02T09:00:00Z","end_reason":"stolen laptop",
        "ended_by":"administrator"}"#;

    /// A control plane answering every request with `body`, counting them.
    async fn control_plane(body: &'static str) -> (AuthorityClient, Arc<AtomicUsize>) {
        let (url, asked) = answering(body).await;
        let planes = ControlPlanes::new(crate::control_planes::ChannelConfig::single(url, "s", "edge-test"));
        (AuthorityClient::new(Arc::new(planes)), asked)
    }

    /// A port nothing listens on.
    async fn closed_port() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    }

    /// The URL of a server answering every request with `body`, and how many it got.
    async fn answering(body: &'static str) -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let asked = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&asked);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                let mut buffer = [0u8; 4096];
                let _ = stream.read(&mut buffer).await;
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            }
        });
        (url, asked)
    }

    #[tokio::test]
    async fn a_replica_that_refuses_connections_is_skipped_and_the_next_one_kept() {
        let dead = closed_port().await;
        let (alive, asked) = answering(ACTIVE).await;
        let mut channel = crate::control_planes::ChannelConfig::single(dead.clone(), "s", "edge-test");
        channel.urls.push(alive.clone());
        let planes = Arc::new(ControlPlanes::new(channel));
        let client = AuthorityClient::new(Arc::clone(&planes));
        client.session_status("0123abcd").await.expect("the second replica answers");
        assert_eq!(planes.current().1, alive, "the replica that answered is the one in use");
        client.session_status("0123abcd").await.expect("again");
        assert_eq!(asked.load(Ordering::SeqCst), 2);
        // Every replica down: unavailable, after one try each.
        let mut channel = crate::control_planes::ChannelConfig::single(dead, "s", "edge-test");
        channel.urls.push(closed_port().await);
        let client = AuthorityClient::new(Arc::new(ControlPlanes::new(channel)));
        let error = client.session_status("0123abcd").await.unwrap_err();
        assert!(matches!(error, AuthorityError::Unavailable(_)), "{error:?}");
    }

    #[tokio::test]
    async fn an_ended_session_is_asked_about_once() {
        let (client, asked) = control_plane(ENDED).await;
        for _ in 0..5 {
            let status = client.session_status("0123abcd").await.expect("status");
            assert_eq!(status.end_reason.as_deref(), Some("stolen laptop"));
        }
        assert_eq!(asked.load(Ordering::SeqCst), 1);
        assert!(client.ended_session("0123abcd").is_some());
        assert!(client.session_status("../admin").await.is_err(), "never a path of our choosing");
        assert_eq!(asked.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn an_active_session_is_asked_about_every_time() {
        let (client, asked) = control_plane(ACTIVE).await;
        for _ in 0..3 {
            client.session_status("0123abcd").await.expect("status");
        }
        assert_eq!(asked.load(Ordering::SeqCst), 3);
        assert!(client.ended_session("0123abcd").is_none());
    }
}
