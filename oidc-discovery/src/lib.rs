//! OpenID Connect Discovery 1.0, one implementation for the edge (browser
//! login, device flow, IdP bearer tokens, back-channel logout) and the
//! control plane (the portal's login, the session authority's ID-token
//! check), which never import each other. Each keeps its own cache and
//! refetch policy; this crate only fetches and checks:
//!
//! - `<issuer>/.well-known/openid-configuration`, whose `issuer` must be the
//!   configured one (§4.3; a trailing `/` is not a difference);
//! - the fields `openidconnect`'s core metadata does not carry
//!   (`end_session_endpoint`, `device_authorization_endpoint`);
//! - the JWKS at `jwks_uri`, raw, for each side to parse its way.
//!
//! Every document is refused above [`MAX_DOCUMENT_BYTES`] and on any status
//! but 2xx; the caller's HTTP client decides timeouts and redirects (both
//! sides follow none).

mod keys;

pub use keys::{KeySet, VerificationKey};

use bytes::Bytes;
use openidconnect::core::CoreProviderMetadata;
use serde::Deserialize;

/// Largest discovery or JWKS document accepted.
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// What discovery found.
#[derive(Debug, Clone)]
pub struct Discovered {
    /// Provider metadata (endpoints, supported algorithms), without keys.
    pub metadata: CoreProviderMetadata,
    /// RP-initiated logout endpoint, if the provider has one.
    pub end_session_endpoint: Option<String>,
    /// Device authorization endpoint (RFC 8628), if the provider offers it.
    pub device_authorization_endpoint: Option<String>,
    /// The JWKS document as served.
    pub jwks: Bytes,
}

/// Discovery fields `openidconnect`'s core metadata does not carry.
#[derive(Debug, Deserialize)]
struct ExtraMetadata {
    end_session_endpoint: Option<String>,
    device_authorization_endpoint: Option<String>,
}

/// The HTTP client for calls to a provider: 3 s to connect, 10 s a call,
/// and no redirects followed (openidconnect's advice: SSRF).
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(3))
        .timeout(std::time::Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_default()
}

/// GETs `url`: its body if the answer is 2xx and at most
/// [`MAX_DOCUMENT_BYTES`]; otherwise a reason naming the URL.
pub async fn fetch_bounded(http: &reqwest::Client, url: &str) -> Result<Bytes, String> {
    let failed = |e: String| format!("{url}: {e}");
    let response = http.get(url).send().await.map_err(|e| failed(e.without_url().to_string()))?;
    if !response.status().is_success() {
        return Err(failed(format!("answered {}", response.status())));
    }
    if response.content_length().is_some_and(|n| n > MAX_DOCUMENT_BYTES as u64) {
        return Err(failed("document too large".into()));
    }
    let body = response.bytes().await.map_err(|e| failed(e.without_url().to_string()))?;
    if body.len() > MAX_DOCUMENT_BYTES {
        return Err(failed("document too large".into()));
    }
    Ok(body)
}

/// Fetches and checks `issuer`'s discovery document and JWKS.
pub async fn discover(http: &reqwest::Client, issuer: &str) -> Result<Discovered, String> {
    let issuer = issuer.trim_end_matches('/');
    let url = format!("{issuer}/.well-known/openid-configuration");
    let body = fetch_bounded(http, &url).await?;
    let bad = |e: String| format!("{url}: {e}");
    let metadata: CoreProviderMetadata = serde_json::from_slice(&body).map_err(|e| bad(e.to_string()))?;
    if metadata.issuer().as_str().trim_end_matches('/') != issuer {
        return Err(bad(format!("the document names issuer `{}`", metadata.issuer().as_str())));
    }
    let extra: ExtraMetadata = serde_json::from_slice(&body).map_err(|e| bad(e.to_string()))?;
    let jwks = fetch_bounded(http, metadata.jwks_uri().as_str()).await?;
    Ok(Discovered {
        metadata,
        end_session_endpoint: extra.end_session_endpoint,
        device_authorization_endpoint: extra.device_authorization_endpoint,
        jwks,
    })
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;
    use axum::routing::get;
    use axum::Router;

    use super::*;

    /// A provider on a loopback port whose document names `named_issuer`
    /// (`{base}` is replaced by its own URL) and whose JWKS is `jwks`.
    async fn provider(named_issuer: &'static str, jwks: String, status: StatusCode) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let document = serde_json::json!({
            "issuer": named_issuer.replace("{base}", &base),
            "authorization_endpoint": format!("{base}/auth"),
            "token_endpoint": format!("{base}/token"),
            "jwks_uri": format!("{base}/jwks"),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "end_session_endpoint": format!("{base}/logout"),
        })
        .to_string();
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(move || async move { (status, document) }))
            .route("/jwks", get(move || async move { jwks }));
        tokio::spawn(async move { axum::serve(listener, app).await });
        base
    }

    #[tokio::test]
    async fn a_document_for_this_issuer_with_its_extras_and_keys() {
        let base = provider("{base}/", r#"{"keys":[]}"#.into(), StatusCode::OK).await;
        let found = discover(&reqwest::Client::new(), &base).await.expect("discovered");
        assert_eq!(found.end_session_endpoint, Some(format!("{base}/logout")));
        assert_eq!(found.device_authorization_endpoint, None);
        assert_eq!(&found.jwks[..], br#"{"keys":[]}"#);
        assert_eq!(found.metadata.token_endpoint().map(|u| u.to_string()), Some(format!("{base}/token")));
    }

    #[tokio::test]
    async fn another_issuer_a_failure_status_or_an_oversized_document_is_refused() {
        let http = reqwest::Client::new();
        let other = provider("https://evil.example", "{}".into(), StatusCode::OK).await;
        let refused = discover(&http, &other).await.expect_err("another issuer");
        assert!(refused.contains("names issuer `https://evil.example`"), "{refused}");
        let down = provider("{base}", "{}".into(), StatusCode::SERVICE_UNAVAILABLE).await;
        assert!(discover(&http, &down).await.expect_err("503").contains("answered 503"));
        let huge = provider("{base}", "x".repeat(MAX_DOCUMENT_BYTES + 1), StatusCode::OK).await;
        assert!(discover(&http, &huge).await.expect_err("too large").contains("too large"));
    }
}
