//! Getting a session token for `portcullis connect`: the OAuth device flow
//! through the edge when the IdP offers it (the user opens a URL, possibly
//! on another device, and confirms a code), otherwise a browser login that
//! comes back to a loopback listener of this process. The edge encrypts the
//! token in the code the browser carries, bound to a verifier only this
//! process knows (see the edge's `login/cli.rs`).
//!
//! A device login is bound to this process: it sends the S256 challenge of
//! a random verifier when it starts the login and the verifier with every
//! poll. A route that does not allow device login (`device_login`) refuses
//! it, and `--login auto` logs in through the browser instead.
//!
//! With `--login auto`, any refusal of the device grant falls back to the
//! browser login with a one-line notice: an IdP that advertises the device
//! flow may still refuse it to the edge's client (RFC 8628 §3.2, §3.5: any
//! RFC 6749 §5.2 error, such as `unauthorized_client` or `invalid_grant`),
//! and an answer may be malformed. What the browser login could not get past
//! either (no such route, login unavailable, the user's own `access_denied`,
//! an expired code) ends the login instead.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use clap::ValueEnum;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::edge_api::EdgeApi;
use super::token_cache::CachedSession;

/// How long a login may take.
const LOGIN_WITHIN: Duration = Duration::from_secs(600);

/// Which login to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LoginMode {
    /// The device flow when the IdP offers it; the browser when it does not,
    /// or refuses the device grant.
    Auto,
    /// The device flow only.
    Device,
    /// A browser login through a loopback redirect.
    Browser,
}

/// How a device login ended, when it did not fail outright.
enum DeviceLogin {
    /// Logged in.
    Done(CachedSession),
    /// The IdP does not offer the device flow.
    Unavailable,
    /// The device grant was refused, or an answer was malformed; a browser
    /// login may still work. The reason, as a sentence.
    Refused(String),
}

/// Logs in for a flow to `target`.
pub async fn log_in(api: &EdgeApi, target: &str, mode: LoginMode, open_browser: bool) -> anyhow::Result<CachedSession> {
    if mode != LoginMode::Browser {
        match (device_flow(api, target, open_browser).await?, mode) {
            (DeviceLogin::Done(session), _) => return Ok(session),
            (DeviceLogin::Unavailable, LoginMode::Device) => {
                bail!("the identity provider of {} does not offer the device flow; use --login browser", api.base)
            }
            (DeviceLogin::Refused(why), LoginMode::Device) => {
                bail!("device login refused: {}; use --login browser", why.trim_end_matches('.'))
            }
            (DeviceLogin::Refused(why), _) => {
                eprintln!(
                    "portcullis: device login refused: {}; logging in through the browser instead",
                    why.trim_end_matches('.')
                );
            }
            (DeviceLogin::Unavailable, _) => {}
        }
    }
    browser_flow(api, target, open_browser).await
}

fn session_of(body: &Value) -> anyhow::Result<CachedSession> {
    let text = |name: &str| body[name].as_str().map(str::to_owned);
    match (text("token"), text("session_id")) {
        (Some(token), Some(session_id)) => Ok(CachedSession { token, session_id }),
        _ => bail!("the edge's login answer has no token"),
    }
}

/// Tries to open `url` in the user's browser; printing it is what counts.
fn open_in_browser(url: &str, wanted: bool) {
    if wanted && std::env::var_os("PORTCULLIS_NO_BROWSER").is_none() {
        let _ = std::process::Command::new("xdg-open")
            .arg(url)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
    }
}

/// Edge answers that no other login gets past either: no such route (404),
/// too many attempts (429), login not configured (501) or unavailable (503).
fn ends_every_login(status: u16) -> bool {
    matches!(status, 404 | 429 | 501 | 503)
}

/// The device flow.
async fn device_flow(api: &EdgeApi, target: &str, open_browser: bool) -> anyhow::Result<DeviceLogin> {
    // The login is bound to this process: only the holder of the verifier
    // collects its session (a phished user code serves nobody else).
    let (verifier, challenge) = verifier_and_challenge();
    let started = api.post("/device/start", &json!({ "target": target, "challenge": challenge })).await?;
    match (started.status, started.code()) {
        (200, _) => {}
        (501, "device_flow_unavailable") => return Ok(DeviceLogin::Unavailable),
        (status, _) if ends_every_login(status) => bail!("cannot start a login: {}", started.message()),
        // The IdP's refusal (the edge answers 502 `idp_refused`), or any other.
        _ => return Ok(DeviceLogin::Refused(started.message())),
    }
    let body = &started.body;
    let Some(handle) = body["handle"].as_str() else {
        return Ok(DeviceLogin::Refused("the edge's device login answer has no handle".into()));
    };
    let code = body["user_code"].as_str().unwrap_or_default();
    let uri = body["verification_uri"].as_str().unwrap_or_default();
    match body["verification_uri_complete"].as_str() {
        Some(complete) => {
            eprintln!("portcullis: to log in for {target}, open {complete}\nportcullis: and check that it shows the code {code}");
            open_in_browser(complete, open_browser);
        }
        None => {
            eprintln!("portcullis: to log in for {target}, open {uri} and enter the code {code}");
            open_in_browser(uri, open_browser);
        }
    }
    let mut interval = Duration::from_secs(body["interval"].as_u64().unwrap_or(5).clamp(1, 60));
    let deadline = Instant::now() + Duration::from_secs(body["expires_in"].as_u64().unwrap_or(600).min(3600));
    loop {
        tokio::time::sleep(interval).await;
        if Instant::now() > deadline {
            bail!("the login was not completed in time; run the command again");
        }
        let polled = api.post("/device/poll", &json!({ "handle": handle, "verifier": verifier })).await?;
        match (polled.status, polled.code()) {
            (200, _) => {
                return Ok(match session_of(&polled.body) {
                    Ok(session) => {
                        eprintln!("portcullis: logged in");
                        DeviceLogin::Done(session)
                    }
                    Err(error) => DeviceLogin::Refused(error.to_string()),
                });
            }
            (_, "authorization_pending") => {}
            (_, "slow_down") => interval += Duration::from_secs(5),
            // The user's answer, or the user's delay: ask them, not the browser.
            (_, "access_denied" | "expired_token") => bail!("login failed: {}", polled.message()),
            // 403: the login itself was refused (its ID token, a lock).
            (status, _) if status == 403 || ends_every_login(status) => bail!("login failed: {}", polled.message()),
            // The IdP refused the device grant (`login_refused`: invalid_grant,
            // unauthorized_client, …), or the answer made no sense.
            _ => return Ok(DeviceLogin::Refused(polled.message())),
        }
    }
}

/// A random PKCE-style verifier (43 characters) and its S256 challenge.
fn verifier_and_challenge() -> (String, String) {
    let bytes: [u8; 32] = rand::random();
    let verifier = URL_SAFE_NO_PAD.encode(bytes);
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

const DONE_PAGE: &str =
    "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Logged in</title></head>\
<body style=\"font-family:system-ui,sans-serif;max-width:40rem;margin:4rem auto\"><h1>Logged in</h1>\
<p>You can close this window and go back to the terminal.</p><p style=\"color:#666\">Portcullis</p></body></html>";

/// Waits for the browser to land on the loopback listener with `?code=`.
async fn receive_code(listener: &TcpListener) -> anyhow::Result<String> {
    loop {
        let (mut socket, _) = listener.accept().await.context("waiting for the browser")?;
        let mut buf = Vec::with_capacity(2048);
        let path = loop {
            let mut chunk = [0u8; 2048];
            let n = socket.read(&mut chunk).await.unwrap_or(0);
            if n == 0 {
                break None;
            }
            buf.extend_from_slice(&chunk[..n]);
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut request = httparse::Request::new(&mut headers);
            match request.parse(&buf) {
                Ok(httparse::Status::Complete(_)) => break request.path.map(str::to_owned),
                Ok(httparse::Status::Partial) if buf.len() < 64 * 1024 => {}
                _ => break None,
            }
        };
        let code = path
            .and_then(|p| reqwest::Url::parse(&format!("http://127.0.0.1{p}")).ok())
            .filter(|url| url.path() == "/callback")
            .and_then(|url| url.query_pairs().find(|(k, _)| k == "code").map(|(_, v)| v.into_owned()));
        let (status, body) = match &code {
            Some(_) => ("200 OK", DONE_PAGE),
            None => ("404 Not Found", "not found\n"),
        };
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\
             Cache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = socket.write_all(response.as_bytes()).await;
        let _ = socket.shutdown().await;
        if let Some(code) = code {
            return Ok(code);
        }
    }
}

/// The browser login through a loopback redirect.
async fn browser_flow(api: &EdgeApi, target: &str, open_browser: bool) -> anyhow::Result<CachedSession> {
    let listener = TcpListener::bind("127.0.0.1:0").await.context("cannot listen on 127.0.0.1 for the login")?;
    let port = listener.local_addr()?.port();
    let (verifier, challenge) = verifier_and_challenge();
    let mut url = reqwest::Url::parse(&format!("{}/.portcullis/cli-login", api.base))?;
    url.query_pairs_mut()
        .append_pair("port", &port.to_string())
        .append_pair("challenge", &challenge)
        .append_pair("target", target);
    eprintln!("portcullis: to log in for {target}, open this URL in a browser on this computer:\n{url}");
    open_in_browser(url.as_str(), open_browser);
    let code = tokio::time::timeout(LOGIN_WITHIN, receive_code(&listener))
        .await
        .context("the login was not completed in time; run the command again")??;
    let answer = api.post("/cli-login/token", &json!({ "code": code, "verifier": verifier })).await?;
    if answer.status != 200 {
        bail!("login failed: {}", answer.message());
    }
    eprintln!("portcullis: logged in");
    session_of(&answer.body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_challenge_is_the_s256_of_the_verifier() {
        let (verifier, challenge) = verifier_and_challenge();
        assert_eq!(verifier.len(), 43);
        assert_eq!(challenge, URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())));
        assert_ne!(verifier_and_challenge().0, verifier, "random");
    }
}
