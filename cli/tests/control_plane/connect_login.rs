//! `portcullis connect --login auto` (the default) against an OpenID
//! provider that advertises the device flow but refuses it: whatever the
//! refusal, the CLI says why in one line and goes on to the browser login.
//! The provider is a small one in this process that answers the device
//! authorization request (RFC 8628 §3.1-3.2) and the device-code token
//! request (§3.4-3.5) as each case says, and records what it received; the
//! edge and the control plane are the real processes.
//!
//! RFC 8628 §3.5: besides `authorization_pending` and `slow_down` (keep
//! polling), `access_denied` (the user said no) and `expired_token`, the
//! token endpoint may answer any RFC 6749 §5.2 error (`invalid_client`,
//! `invalid_grant`, `unauthorized_client`, `unsupported_grant_type`, …);
//! the device authorization endpoint answers the same §5.2 errors (§3.2).
//! Only the user's own `access_denied` ends the login; every refusal of the
//! grant itself falls back to the browser.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::edge_node::EdgeNode;
use crate::harness::{free_port, ControlPlane, TempDir};
use crate::tunnel_kit::{connect_command, echo_upstream, line_with};

const CLIENT_SECRET: &str = "edge-client-secret-0123456789abcdef";
/// The device code the provider issues.
const DEVICE_CODE: &str = "device-code-0123456789";
/// How long each step may take (the CLI polls every second here).
const WITHIN: Duration = Duration::from_secs(20);

/// One answer: status and JSON (or other) body.
type Answer = (u16, String);

/// What the provider answers and what it has received.
#[derive(Default)]
struct Script {
    device: Option<Answer>,
    token: Option<Answer>,
    /// `(path, Authorization header, form body)` of every POST.
    received: Vec<(String, String, String)>,
}

/// A provider with discovery (device flow advertised), an empty JWKS and
/// scripted `/device` and `/token` endpoints.
async fn scripted_idp(script: Arc<Mutex<Script>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the IdP");
    let issuer = format!("http://127.0.0.1:{}", listener.local_addr().expect("address").port());
    let discovery = json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "device_authorization_endpoint": format!("{issuer}/device"),
        "jwks_uri": format!("{issuer}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
    })
    .to_string();
    let endpoint = |path: &'static str| {
        let script = Arc::clone(&script);
        post(move |headers: HeaderMap, body: String| async move {
            let mut script = script.lock().expect("script");
            let auth = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
            script.received.push((path.to_owned(), auth, body));
            let (status, body) = match path {
                "/device" => script.device.clone(),
                _ => script.token.clone(),
            }
            .unwrap_or((500, "{}".into()));
            (StatusCode::from_u16(status).expect("status"), [(CONTENT_TYPE, "application/json")], body)
        })
    };
    let app = axum::Router::new()
        .route("/.well-known/openid-configuration", get(move || async move { discovery }))
        .route("/jwks", get(|| async { r#"{"keys": []}"# }))
        .route("/device", endpoint("/device"))
        .route("/token", endpoint("/token"));
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve the IdP") });
    issuer
}

/// A device authorization the CLI will poll every second.
fn started() -> Answer {
    let body = json!({
        "device_code": DEVICE_CODE, "user_code": "WDJB-MJHT", "verification_uri": "http://idp.example/device",
        "expires_in": 60, "interval": 1,
    });
    (200, body.to_string())
}

fn error(status: u16, code: &str) -> Answer {
    (status, json!({ "error": code }).to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_auto_falls_back_to_the_browser_on_any_refusal_of_the_device_grant() {
    let dir = TempDir::new("connect-login");
    let plane = ControlPlane::start(&format!("sqlite://{}", dir.path().join("cp.db").display()), dir.path()).await;
    let policy = format!(
        "version: 1\nroutes:\n  - name: echo\n    tcp: echo.internal:7\n    upstream: 127.0.0.1:{}\n    \
         options: {{ device_login: true }}\n    rules:\n      - allow: {{ groups_any: [dev] }}\n",
        echo_upstream().await
    );
    plane.apply_policy(&policy).await;
    let script = Arc::new(Mutex::new(Script::default()));
    let issuer = scripted_idp(Arc::clone(&script)).await;
    let port = free_port();
    let settings = [
        ("listen", format!("127.0.0.1:{port}")),
        ("oidc_issuer", issuer),
        ("oidc_client_id", "edge".to_owned()),
        ("oidc_client_secret", CLIENT_SECRET.to_owned()),
        ("cookie_secure", "false".to_owned()),
        // Ten device logins in a row from one address.
        ("device_logins_per_hour", "3600".to_owned()),
    ];
    let edge = EdgeNode::start_with(&plane, "connect-login", dir.path(), &settings).await;
    let edge_url = format!("http://127.0.0.1:{}", edge.port);
    let xdg = dir.path().join("xdg");

    let refused_to_start = "The identity provider refused to start a device login";
    let refused_poll = "The identity provider refused the device login.";
    let malformed = "The identity provider answered the device authorization request with something unexpected.";
    let cases: Vec<(&str, Answer, Option<Answer>, String)> = vec![
        (
            "§3.2 unauthorized_client",
            error(400, "unauthorized_client"),
            None,
            format!("{refused_to_start} (unauthorized_client)."),
        ),
        ("§3.2 invalid_client", error(401, "invalid_client"), None, format!("{refused_to_start} (invalid_client).")),
        ("§3.2 invalid_request", error(400, "invalid_request"), None, format!("{refused_to_start} (invalid_request).")),
        ("HTTP 403, not JSON", (403, "forbidden".into()), None, format!("{refused_to_start} (error).")),
        ("a malformed authorization", (200, json!({"user_code": "X"}).to_string()), None, malformed.to_owned()),
        ("§3.5 invalid_grant", started(), Some(error(400, "invalid_grant")), refused_poll.to_owned()),
        ("§3.5 unauthorized_client", started(), Some(error(400, "unauthorized_client")), refused_poll.to_owned()),
        ("§3.5 invalid_client", started(), Some(error(401, "invalid_client")), refused_poll.to_owned()),
        ("§3.5 unsupported_grant_type", started(), Some(error(400, "unsupported_grant_type")), refused_poll.to_owned()),
    ];
    for (name, device, token, why) in cases {
        {
            let mut script = script.lock().expect("script");
            *script = Script { device: Some(device), token: token.clone(), received: Vec::new() };
        }
        let mut child = connect_command(&xdg, &["echo.internal:7", "--edge", &edge_url]).spawn().expect("connect");
        let mut stderr = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let mut seen = String::new();
        let url = line_with(&mut stderr, "/.portcullis/cli-login?", WITHIN, &mut seen).await;
        assert!(url.starts_with(&format!("{edge_url}/.portcullis/cli-login?port=")), "{name}: {seen}");
        let why = why.trim_end_matches('.');
        let notice = format!("portcullis: device login refused: {why}; logging in through the browser instead");
        assert!(seen.lines().any(|l| l == notice), "{name}: expected {notice:?} in:\n{seen}");
        child.kill().await.expect("stop the waiting CLI");

        // What the provider received: the edge's client asked for a device
        // code and, when it got one, polled with it as RFC 8628 §3.4 says.
        let received = std::mem::take(&mut script.lock().expect("script").received);
        let (path, auth, form) = &received[0];
        assert_eq!(path, "/device", "{name}: {received:?}");
        assert!(auth.starts_with("Basic ") && form.contains("scope=openid"), "{name}: {received:?}");
        if token.is_some() {
            let (path, _, form) = received.get(1).unwrap_or_else(|| panic!("{name}: no poll in {received:?}"));
            assert_eq!(path, "/token", "{name}: {received:?}");
            let grant = "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code";
            assert!(form.contains(grant) && form.contains(&format!("device_code={DEVICE_CODE}")), "{name}: {form}");
        } else {
            assert_eq!(received.len(), 1, "{name}: {received:?}");
        }
    }

    // The user's own refusal (§3.5 access_denied) ends the login: no browser.
    *script.lock().expect("script") =
        Script { device: Some(started()), token: Some(error(400, "access_denied")), received: Vec::new() };
    let child = connect_command(&xdg, &["echo.internal:7", "--edge", &edge_url]).spawn().expect("connect");
    let output = tokio::time::timeout(WITHIN, child.wait_with_output()).await.expect("exits").expect("connect");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("login failed: The login was refused at the identity provider."), "{stderr}");
    assert!(!stderr.contains("cli-login"), "{stderr}");
}
