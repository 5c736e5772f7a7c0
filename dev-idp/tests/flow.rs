//! The development IdP's refusals: what a relying party gets wrong must fail
//! loudly, even in development (unregistered redirect URIs, missing PKCE,
//! a wrong verifier, a reused code, a wrong client secret).

use portcullis_dev_idp::{router, Client, DevIdpConfig};
use serde_json::Value;

const REDIRECT: &str = "http://app.localhost/.portcullis/callback";

async fn start() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let config = DevIdpConfig {
        issuer: issuer.clone(),
        users: DevIdpConfig::demo_users("corp.example"),
        clients: vec![Client {
            id: "rp".into(),
            secret: "rp-secret".into(),
            redirect_uris: vec![REDIRECT.into()],
            post_logout_redirect_uris: vec![],
            backchannel_logout_uri: None,
        }],
    };
    tokio::spawn(async move { axum_serve(listener, config).await });
    issuer
}

async fn axum_serve(listener: tokio::net::TcpListener, config: DevIdpConfig) {
    let _ = axum::serve(listener, router(config)).await;
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// Logs alice in with PKCE challenge `challenge`; returns the code.
async fn code(issuer: &str, challenge: &str) -> String {
    let form = [
        ("response_type", "code"),
        ("client_id", "rp"),
        ("redirect_uri", REDIRECT),
        ("scope", "openid email"),
        ("state", "s"),
        ("nonce", "n"),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
        ("user", "alice"),
    ];
    let answer = client().post(format!("{issuer}/authorize")).form(&form).send().await.unwrap();
    let location = answer.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(REDIRECT), "{location}");
    let url = reqwest::Url::parse(&location).unwrap();
    url.query_pairs().find(|(k, _)| k == "code").map(|(_, v)| v.into_owned()).expect("code")
}

async fn exchange(issuer: &str, code: &str, verifier: &str, secret: &str) -> (u16, Value) {
    let form =
        [("grant_type", "authorization_code"), ("code", code), ("redirect_uri", REDIRECT), ("code_verifier", verifier)];
    let answer =
        client().post(format!("{issuer}/token")).basic_auth("rp", Some(secret)).form(&form).send().await.unwrap();
    (answer.status().as_u16(), answer.json().await.unwrap_or(Value::Null))
}

// RFC 7636 appendix B.
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

#[tokio::test]
async fn a_code_is_exchanged_once_with_the_right_verifier_and_secret() {
    let issuer = start().await;
    let code1 = code(&issuer, CHALLENGE).await;
    assert_eq!(exchange(&issuer, &code1, VERIFIER, "wrong").await.0, 401, "wrong client secret");
    let code2 = code(&issuer, CHALLENGE).await;
    assert_eq!(exchange(&issuer, &code2, "not-the-verifier-0000000000000000000000000", "rp-secret").await.0, 400);
    let code3 = code(&issuer, CHALLENGE).await;
    let (status, tokens) = exchange(&issuer, &code3, VERIFIER, "rp-secret").await;
    assert_eq!(status, 200, "{tokens}");
    assert!(tokens["id_token"].as_str().is_some_and(|t| t.split('.').count() == 3));
    assert_eq!(exchange(&issuer, &code3, VERIFIER, "rp-secret").await.0, 400, "a code is used once");
}

#[tokio::test]
async fn unregistered_redirects_and_missing_pkce_are_refused() {
    let issuer = start().await;
    let url =
        |extra: &str| format!("{issuer}/authorize?response_type=code&client_id=rp&scope=openid&redirect_uri={extra}");
    let evil =
        client().get(url("https://evil.example/cb&code_challenge=x&code_challenge_method=S256")).send().await.unwrap();
    assert_eq!(evil.status(), 400, "unregistered redirect_uri");
    let no_pkce = client().get(url(REDIRECT)).send().await.unwrap();
    assert_eq!(no_pkce.status(), 400, "PKCE is required");
    let page = client()
        .get(url(&format!("{REDIRECT}&code_challenge={CHALLENGE}&code_challenge_method=S256")))
        .send()
        .await
        .unwrap();
    let html = page.text().await.unwrap();
    assert!(html.contains("Development identity provider") && html.contains("Log in as alice"), "{html}");
}
