//! `POST /.portcullis/backchannel-logout`: the OIDC Back-Channel Logout
//! receiver. The IdP posts a signed logout token (checked by
//! [`crate::oidc::logout_token`]); the control plane then ends every
//! session of that IdP session (or subject), which closes their live
//! connections on every edge. Answers are the JSON the specification asks
//! for: 200 `{}`, 400 with the reason, 503 when the IdP's keys or the
//! control plane cannot be reached.

use pingora_proxy::Session;
use portcullis_policy::edge_channel::IdpLogoutBody;

use super::answers::answer;
use super::{LoginService, RequestInfo};
use crate::oidc::logout_token::{self, LogoutTokenError};

/// Largest back-channel logout request body.
const MAX_LOGOUT_BODY: usize = 64 * 1024;

impl LoginService {
    /// `POST /.portcullis/backchannel-logout`.
    pub(super) async fn backchannel_logout(
        &self,
        session: &mut Session,
        info: &RequestInfo<'_>,
    ) -> pingora_core::Result<bool> {
        let refuse = |description: String| {
            serde_json::json!({ "error": "invalid_request", "error_description": description }).to_string()
        };
        let Some(provider) = self.provider() else {
            return answer(session, 400, "application/json", refuse("back-channel logout is not configured".into()))
                .await;
        };
        let mut body = Vec::new();
        while let Some(chunk) = session.read_request_body().await? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_LOGOUT_BODY {
                return answer(session, 413, "application/json", refuse("the request body is too large".into())).await;
            }
        }
        let token = url::form_urlencoded::parse(&body).find(|(k, _)| k == "logout_token").map(|(_, v)| v.into_owned());
        let Some(token) = token else {
            return answer(session, 400, "application/json", refuse("no logout_token in the form body".into())).await;
        };
        let request = match logout_token::verify(provider, &self.replays, &token, info.now).await {
            Ok(request) => request,
            Err(LogoutTokenError::Unavailable) => {
                return answer(session, 503, "application/json", refuse("the IdP's keys are unavailable".into())).await
            }
            Err(LogoutTokenError::Invalid(reason)) => {
                tracing::warn!(reason, "back-channel logout refused");
                return answer(session, 400, "application/json", refuse(reason.into())).await;
            }
        };
        let logout =
            IdpLogoutBody { idp_issuer: request.issuer, idp_session_id: request.session, subject: request.subject };
        match self.authority.idp_logout(&logout).await {
            Ok(result) => {
                tracing::info!(sessions = result.terminated.len(), "back-channel logout: sessions terminated");
                answer(session, 200, "application/json", "{}".into()).await
            }
            Err(error) => {
                tracing::warn!(%error, "back-channel logout could not reach the control plane");
                let body = serde_json::json!({ "error": "temporarily_unavailable" }).to_string();
                answer(session, 503, "application/json", body).await
            }
        }
    }
}
