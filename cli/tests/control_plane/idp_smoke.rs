//! The test OpenID provider on its own, without the edge: the code flow with
//! PKCE puts email, groups and `sid` in the ID token, client_credentials
//! gives a JWT access token for a resource, and RP-initiated logout sends a
//! back-channel logout token. These pin what the edge's OIDC tests rely on.

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::harness::{free_port, TempDir};
use crate::idp::{jwt_parts, Browser, Idp, PKCE_VERIFIER, RESOURCE_SCOPE};

const SECRET: &str = "edge-client-secret-0123456789";
const BACKCHANNEL_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// A relying party's redirect URI on a port nobody needs to listen on: the
/// browser stops at the redirect.
fn callback() -> String {
    format!("http://127.0.0.1:{}/.portcullis/callback", free_port())
}

/// The query parameters of `url`.
fn query(url: &str) -> Value {
    let url = reqwest::Url::parse(url).expect("redirect URL");
    url.query_pairs().map(|(k, v)| (k.into_owned(), Value::String(v.into_owned()))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_flow_with_pkce_puts_email_groups_and_sid_in_the_id_token() {
    let dir = TempDir::new("idp-code");
    let redirect = callback();
    let clients = json!([{ "client_id": "edge", "client_secret": SECRET, "redirect_uris": [redirect] }]);
    let idp = Idp::start(dir.path(), clients).await;
    let discovery = idp.discovery();
    assert_eq!(discovery["issuer"], idp.issuer().as_str(), "{discovery}");
    assert_eq!(discovery["code_challenge_methods_supported"], json!(["S256"]), "{discovery}");
    assert!(discovery["end_session_endpoint"].is_string(), "{discovery}");
    let browser = Browser::new();

    // PKCE is required: no code_challenge, no code.
    let mut no_pkce = reqwest::Url::parse(&idp.endpoint("authorization_endpoint")).expect("authorization URL");
    no_pkce.query_pairs_mut().extend_pairs([
        ("response_type", "code"),
        ("client_id", "edge"),
        ("scope", "openid"),
        ("redirect_uri", redirect.as_str()),
    ]);
    let refused = browser.login_at_idp(no_pkce.as_str(), "alice", &redirect).await;
    assert_eq!(query(&refused)["error"], "invalid_request", "{refused}");

    let scope = "openid email groups";
    let url = idp.authorization_url("edge", &redirect, scope, &[("state", "state-1"), ("nonce", "nonce-1")]);
    let landed = browser.login_at_idp(&url, "alice", &redirect).await;
    let params = query(&landed);
    assert_eq!(params["state"], "state-1", "{landed}");
    assert_eq!(params["iss"], idp.issuer().as_str(), "{landed}");
    let code = params["code"].as_str().unwrap_or_else(|| panic!("no code in {landed}"));
    // The IdP's cookies are prefixed: cookies ignore ports, and the edge on
    // another port of 127.0.0.1 has its own.
    let cookies = browser.cookies(&idp.issuer());
    assert!(cookies.contains("idp_session="), "{cookies}");
    assert!(cookies.split("; ").all(|cookie| cookie.starts_with("idp_")), "{cookies}");

    let wrong =
        idp.exchange_code("edge", SECRET, code, &redirect, "wrong-verifier-wrong-verifier-wrong-verifier").await;
    assert!(wrong.as_ref().is_err_and(|e| e.contains("invalid_grant")), "{wrong:?}");
    let tokens = idp.exchange_code("edge", SECRET, code, &redirect, PKCE_VERIFIER).await.expect("code exchange");
    let (header, claims) = jwt_parts(tokens["id_token"].as_str().expect("an ID token"));
    assert_eq!(header["alg"], "RS256", "{header}");
    assert_eq!(claims["iss"], idp.issuer().as_str(), "{claims}");
    assert_eq!(claims["aud"], "edge", "{claims}");
    assert_eq!(claims["sub"], "alice", "{claims}");
    assert_eq!(claims["nonce"], "nonce-1", "{claims}");
    assert_eq!(claims["email"], "alice@corp.example", "{claims}");
    assert_eq!(claims["email_verified"], true, "{claims}");
    assert_eq!(claims["groups"], json!(["admins", "dev"]), "{claims}");
    assert!(claims["sid"].as_str().is_some_and(|sid| !sid.is_empty()), "no sid: {claims}");
    assert!(claims.get("name").is_none(), "profile was not asked for: {claims}");
    let userinfo: Value = browser
        .http()
        .get(idp.endpoint("userinfo_endpoint"))
        .bearer_auth(tokens["access_token"].as_str().expect("an access token"))
        .send()
        .await
        .expect("GET userinfo")
        .json()
        .await
        .expect("userinfo JSON");
    assert_eq!(userinfo["groups"], json!(["admins", "dev"]), "{userinfo}");

    // The IdP session is remembered: the next login shows no form at all.
    let again = browser.login_at_idp(&url, "alice", &redirect).await;
    assert!(query(&again)["code"].is_string(), "{again}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_credentials_with_a_resource_gives_a_jwt_access_token() {
    let dir = TempDir::new("idp-cc");
    let clients = json!([{
        "client_id": "robot",
        "client_secret": SECRET,
        "grant_types": ["client_credentials"],
        "response_types": [],
        "redirect_uris": [],
        "x_email": "robot@corp.example",
        "x_groups": ["robots"],
    }]);
    let idp = Idp::start(dir.path(), clients).await;
    let resource = "http://api.corp.example/";

    let token = idp.client_credentials_token("robot", SECRET, resource).await;
    let (header, claims) = jwt_parts(&token);
    assert_eq!(header["typ"], "at+jwt", "{header}");
    assert_eq!(header["alg"], "RS256", "{header}");
    let jwks: Value = reqwest::get(idp.endpoint("jwks_uri")).await.expect("GET jwks").json().await.expect("JWKS");
    let kids: Vec<&Value> = jwks["keys"].as_array().expect("keys").iter().map(|key| &key["kid"]).collect();
    assert!(kids.contains(&&header["kid"]), "kid {} not in {jwks}", header["kid"]);
    assert_eq!(claims["iss"], idp.issuer().as_str(), "{claims}");
    assert_eq!(claims["aud"], resource, "{claims}");
    assert_eq!(claims["sub"], "robot", "{claims}");
    assert_eq!(claims["client_id"], "robot", "{claims}");
    assert_eq!(claims["scope"], RESOURCE_SCOPE, "{claims}");
    assert_eq!(claims["email"], "robot@corp.example", "{claims}");
    assert_eq!(claims["groups"], json!(["robots"]), "{claims}");
    let lifetime = claims["exp"].as_i64().expect("exp") - claims["iat"].as_i64().expect("iat");
    assert_eq!(lifetime, 600, "{claims}");

    let form = [("grant_type", "client_credentials"), ("resource", resource)];
    let refused = idp.token_request("robot", "not-the-secret", &form).await;
    assert!(refused.as_ref().is_err_and(|e| e.contains("invalid_client")), "{refused:?}");
    let form = [("grant_type", "client_credentials"), ("resource", "urn:not-a-url")];
    let refused = idp.token_request("robot", SECRET, &form).await;
    assert!(refused.as_ref().is_err_and(|e| e.contains("invalid_target")), "{refused:?}");
}

/// A relying party's back-channel logout endpoint: every request it receives
/// (request line and body) is sent on the channel and answered 200.
async fn backchannel_receiver() -> (u16, mpsc::UnboundedReceiver<(String, String)>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the back-channel receiver");
    let port = listener.local_addr().expect("receiver address").port();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                let mut chunk = [0u8; 4096];
                let (head_len, body_len) = loop {
                    let Ok(read) = stream.read(&mut chunk).await else { return };
                    if read == 0 {
                        return;
                    }
                    buffer.extend_from_slice(&chunk[..read]);
                    if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
                        let length = head
                            .lines()
                            .find_map(|line| line.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        break (end + 4, length);
                    }
                };
                while buffer.len() < head_len + body_len {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(read) => buffer.extend_from_slice(&chunk[..read]),
                    }
                }
                let head = String::from_utf8_lossy(&buffer[..head_len]);
                let request_line = head.lines().next().unwrap_or_default().to_owned();
                let body = String::from_utf8_lossy(&buffer[head_len..head_len + body_len]).into_owned();
                let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
                let _ = stream.write_all(answer).await;
                let _ = tx.send((request_line, body));
            });
        }
    });
    (port, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rp_initiated_logout_sends_a_backchannel_logout_token() {
    let dir = TempDir::new("idp-bcl");
    let (receiver_port, mut received) = backchannel_receiver().await;
    let redirect = callback();
    let logged_out = format!("http://127.0.0.1:{}/.portcullis/logged-out", free_port());
    let clients = json!([{
        "client_id": "edge",
        "client_secret": SECRET,
        "redirect_uris": [redirect],
        "post_logout_redirect_uris": [logged_out],
        "backchannel_logout_uri": format!("http://127.0.0.1:{receiver_port}/.portcullis/backchannel-logout"),
    }]);
    let idp = Idp::start(dir.path(), clients).await;
    let browser = Browser::new();

    let url = idp.authorization_url("edge", &redirect, "openid email", &[("state", "s"), ("nonce", "n")]);
    let landed = browser.login_at_idp(&url, "alice", &redirect).await;
    let code = query(&landed)["code"].as_str().map(str::to_owned).unwrap_or_else(|| panic!("no code: {landed}"));
    let tokens = idp.exchange_code("edge", SECRET, &code, &redirect, PKCE_VERIFIER).await.expect("code exchange");
    let id_token = tokens["id_token"].as_str().expect("an ID token");
    let (_, id_claims) = jwt_parts(id_token);
    assert!(received.try_recv().is_err(), "a logout token before logging out");

    let params = [("id_token_hint", id_token), ("post_logout_redirect_uri", logged_out.as_str()), ("state", "bye")];
    let back = browser.logout_at_idp(&idp, &params).await;
    assert_eq!(query(&back)["state"], "bye", "{back}");

    // The IdP posts the logout token before it answers the confirmation.
    let (request_line, body) = tokio::time::timeout(std::time::Duration::from_secs(5), received.recv())
        .await
        .unwrap_or_else(|_| panic!("no back-channel logout request\n{}", idp.log_text()))
        .expect("receiver running");
    assert_eq!(request_line, "POST /.portcullis/backchannel-logout HTTP/1.1");
    let token = body.strip_prefix("logout_token=").unwrap_or_else(|| panic!("not a logout_token form: {body}"));
    assert!(!token.contains('&'), "{body}");
    let (header, claims) = jwt_parts(token);
    assert_eq!(header["typ"], "logout+jwt", "{header}");
    assert!(claims["events"].get(BACKCHANNEL_EVENT).is_some(), "{claims}");
    assert_eq!(claims["iss"], idp.issuer().as_str(), "{claims}");
    assert_eq!(claims["aud"], "edge", "{claims}");
    assert_eq!(claims["sub"], "alice", "{claims}");
    assert_eq!(claims["sid"], id_claims["sid"], "logout sid vs ID token sid: {claims} {id_claims}");
    assert!(claims.get("nonce").is_none(), "{claims}");

    // The IdP session is gone: the authorization request shows the login form.
    let page = browser.follow(&url).await;
    assert_eq!(page.status, 200, "{page:?}");
    assert!(page.url.starts_with(&format!("{}/interaction/", idp.issuer())), "{page:?}");
    assert!(page.body.contains(r#"name="login""#), "{}", page.body);
    assert!(page.hops.iter().any(|hop| hop.location.as_ref().is_some_and(|l| l.contains("/interaction/"))), "{page:?}");
    let landed = browser.login_at_idp(&url, "bob", &redirect).await;
    let code = query(&landed)["code"].as_str().map(str::to_owned).unwrap_or_else(|| panic!("no code: {landed}"));
    let tokens = idp.exchange_code("edge", SECRET, &code, &redirect, PKCE_VERIFIER).await.expect("code exchange");
    let (_, claims) = jwt_parts(tokens["id_token"].as_str().expect("an ID token"));
    assert_eq!(claims["sub"], "bob", "{claims}");
    assert_ne!(claims["sid"], id_claims["sid"], "{claims}");
}
