//! Portal single sign-on up to the code exchange, against a stub OpenID
//! provider (discovery, an empty key set and a token endpoint that refuses
//! every code): the authorization request carries PKCE (S256), `state` and
//! `nonce`; the login state travels in a Lax, HttpOnly cookie scoped to the
//! callback; callbacks that this browser did not start, with a wrong state,
//! an IdP error or a refused code are answered with a page and no session.
//! The whole flow against a real provider runs in a browser
//! (`cli/tests/control_plane/portal*.rs`). SQLite only: nothing here
//! depends on the backend.

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::{Method, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::client::{Call, Listener};

/// Serves discovery, an empty JWKS and a token endpoint that refuses every code.
async fn stub_provider() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let issuer = format!("http://{}", listener.local_addr().expect("address"));
    let document = json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/auth"),
        "token_endpoint": format!("{issuer}/token"),
        "jwks_uri": format!("{issuer}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
    });
    let app = Router::new()
        .route("/.well-known/openid-configuration", get(move || async move { Json(document) }))
        .route("/jwks", get(|| async { Json(json!({ "keys": [] })) }))
        .route("/token", post(|| async { (StatusCode::BAD_REQUEST, Json(json!({ "error": "invalid_grant" }))) }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    issuer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portal_sso_starts_with_pkce_state_and_nonce_and_refuses_callbacks_it_did_not_start() {
    let issuer = stub_provider().await;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!("portcullis-portal-oidc-{}-{nanos}", std::process::id()));
    let config = format!(
        "database_url = \"sqlite://{}/cp.db\"\nedge_secret = \"{}\"\npublic_url = \"https://cp.test.example\"\n\
         oidc_issuer = \"{issuer}\"\noidc_client_id = \"portal\"\noidc_client_secret = \"s3cret\"\n\
         oidc_scopes = [\"email\", \"groups\"]\n",
        dir.display(),
        crate::harness::EDGE_SECRET
    );
    let config = portcullis_control_plane::Config::load(&config, |_| None).expect("configuration");
    let app = portcullis_control_plane::build(config).await.expect("control plane");
    let router = portcullis_control_plane::api::router(Arc::clone(&app));
    let call = |uri: &str| Call::new(router.clone(), Listener::Admin, Method::GET, uri);

    let session = call("/portal/session").send().await.ok();
    assert_eq!((session["authenticated"].as_bool(), session["oidc"].as_bool()), (Some(false), Some(true)));

    let start = call("/portal/login").send().await;
    assert_eq!(start.status.as_u16(), 302, "{}", start.text());
    let location = reqwest::Url::parse(start.headers["location"].to_str().unwrap()).expect("URL");
    assert_eq!(location.as_str().split('?').next(), Some(&*format!("{issuer}/auth")));
    let query: HashMap<String, String> = location.query_pairs().into_owned().collect();
    assert_eq!(query["response_type"], "code");
    assert_eq!(query["client_id"], "portal");
    assert_eq!(query["redirect_uri"], "https://cp.test.example/portal/callback");
    assert_eq!(query["scope"].split(' ').collect::<Vec<_>>(), ["openid", "email", "groups"]);
    assert_eq!(query["code_challenge_method"], "S256");
    assert_eq!(query["code_challenge"].len(), 43, "a SHA-256 challenge");
    assert!(query["state"].len() >= 16 && query["nonce"].len() >= 16, "{query:?}");
    let cookie = start.headers["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("portcullis_portal_login="), "{cookie}");
    for attribute in ["; Path=/portal/callback;", "; Max-Age=600", "; HttpOnly", "; SameSite=Lax", "; Secure"] {
        assert!(cookie.contains(attribute), "{attribute} in {cookie}");
    }
    let login_cookie = cookie.split(';').next().unwrap().to_owned();
    let again = call("/portal/login").send().await;
    let again = reqwest::Url::parse(again.headers["location"].to_str().unwrap()).expect("URL");
    let state = &query["state"];
    assert!(!again.query().unwrap_or_default().contains(state.as_str()), "every login has its own state");

    // Callbacks this browser did not start, or with another state.
    let callback = format!("/portal/callback?code=stolen&state={state}");
    let foreign = call(&callback).send().await;
    assert_eq!(foreign.status.as_u16(), 400);
    assert!(foreign.text().contains("not started in this browser"), "{}", foreign.text());
    let other_state = call("/portal/callback?code=stolen&state=another").header("cookie", &login_cookie).send().await;
    assert_eq!(other_state.status.as_u16(), 400);
    let denied = call("/portal/callback?error=access_denied&error_description=%3Cb%3Enope%3C%2Fb%3E").send().await;
    assert_eq!(denied.status.as_u16(), 403);
    assert!(denied.text().contains("access_denied: &lt;b&gt;nope&lt;/b&gt;"), "escaped: {}", denied.text());
    // The right state, but the provider refuses the code: no session.
    let refused = call(&callback).header("cookie", &login_cookie).send().await;
    assert_eq!(refused.status.as_u16(), 403, "{}", refused.text());
    assert!(refused.text().contains("refused the code"), "{}", refused.text());
    let cookies: Vec<&str> = refused.headers.get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()).collect();
    assert!(cookies.iter().all(|c| !c.starts_with("portcullis_portal=")), "no portal session: {cookies:?}");
    assert!(cookies.iter().any(|c| c.starts_with("portcullis_portal_login=;")), "the login state is cleared");

    app.store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}
