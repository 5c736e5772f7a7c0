//! The admin API client the `portcullis` admin commands share: where the
//! control plane is (`--url` / `PORTCULLIS_URL`, `http://` or `https://`),
//! the CA its certificate must chain to (`--ca-file` / `PORTCULLIS_CA_FILE`,
//! else the system's roots), the admin token (`--token` /
//! `PORTCULLIS_TOKEN`), and one request helper that turns every failure
//! into a one-line message — the API's `{"error": {"message"}}`, which URL
//! could not be reached, that its certificate does not verify, or that the
//! server at the URL is not the admin API (an edge, say): only answers that
//! carry the control plane's `x-portcullis-api` header are relayed as the
//! API's word. A base URL ending in `/api/v1` is taken without it, and a
//! token that cannot be one (the README's `pcat_…`) is refused before sending.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use clap::Args;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;

use portcullis_control_plane::api::{ADMIN_API_HEADER, ADMIN_API_MARK};
use reqwest::header::{HeaderMap, LOCATION, WWW_AUTHENTICATE};

use crate::tls_roots::{certificate_problem, untrusted, CaFile};

/// Where the control plane listens when neither `--url` nor `PORTCULLIS_URL` says.
pub const DEFAULT_URL: &str = "http://127.0.0.1:7400";

/// Connection options every admin command takes.
#[derive(Args, Debug, Clone)]
pub struct Connection {
    /// Admin API of the control plane (http:// or https://).
    #[arg(long, env = "PORTCULLIS_URL", default_value = DEFAULT_URL)]
    pub url: String,
    /// PEM file of the CA certificate(s) an https:// control plane must chain to, trusted instead of the system's.
    #[arg(long, env = "PORTCULLIS_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// Admin API token (`pcat_…`).
    #[arg(long, env = "PORTCULLIS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// A non-success answer from the API.
#[derive(Debug)]
pub struct ApiFailure {
    /// HTTP status.
    pub status: StatusCode,
    /// The JSON body, when there was one.
    pub body: Option<Value>,
    /// The error message to show.
    pub message: String,
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ApiFailure {}

/// An authenticated client for `/api/v1`.
pub struct ApiClient {
    base: String,
    token: String,
    http: reqwest::Client,
    ca: Option<CaFile>,
}

impl ApiClient {
    /// Checks the options and builds the client.
    pub fn new(connection: &Connection) -> anyhow::Result<Self> {
        let token = connection
            .token
            .clone()
            .filter(|t| !t.trim().is_empty())
            .ok_or_else(|| anyhow!("this command needs an admin token: set PORTCULLIS_TOKEN or pass --token"))?;
        if !could_be_token(token.trim()) {
            bail!("{NOT_A_TOKEN}");
        }
        let base = connection.url.trim_end_matches('/');
        // The banner and the portal show the API as `…/api/v1`; paths here add it.
        let base = base.strip_suffix("/api/v1").unwrap_or(base).trim_end_matches('/').to_owned();
        if !base.starts_with("http://") && !base.starts_with("https://") {
            bail!("--url / PORTCULLIS_URL must start with http:// or https://, found `{base}`");
        }
        let ca = connection.ca_file.as_deref().map(|path| CaFile::read(path, "--ca-file")).transpose()?;
        // The server bounds `?wait=true` at 60 s; leave room for it.
        // The admin API never redirects; an edge sends a browser to its login.
        let mut http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(75))
            .redirect(reqwest::redirect::Policy::none());
        if let Some(ca) = &ca {
            http = ca.trust_in(http)?;
        }
        let http = http.build().context("cannot build the HTTP client")?;
        Ok(Self { base, token: token.trim().to_owned(), http, ca })
    }

    /// A request to `/api/v1{path}` with the token.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, format!("{}/api/v1{path}", self.base)).bearer_auth(&self.token)
    }

    /// Sends `request`; returns the JSON body of a 2xx answer (`null` when empty).
    pub async fn send(&self, request: RequestBuilder) -> anyhow::Result<Value> {
        let response = request.send().await.map_err(|e| self.transport_error(&e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.map_err(|e| self.transport_error(&e))?;
        let body: Option<Value> = serde_json::from_str(&text).ok();
        let admin_api = headers.get(ADMIN_API_HEADER).is_some_and(|v| v == ADMIN_API_MARK);
        if status.is_success() {
            return match body {
                Some(body) => Ok(body),
                None if text.trim().is_empty() => Ok(Value::Null),
                None if !admin_api => bail!("{}", self.not_the_admin_api(status, &text, false)),
                None => bail!("the control plane at {} answered {status} with a body that is not JSON", self.base),
            };
        }
        let api_message = body.as_ref().and_then(|b| b.pointer("/error/message")).and_then(Value::as_str);
        let edge = looks_like_an_edge(status, &headers, body.as_ref());
        if !admin_api && (edge || api_message.is_none()) {
            // Not the control plane's answer (maybe behind a proxy that drops
            // the header, so an answer in our shape is still relayed).
            bail!("{}", self.not_the_admin_api(status, &text, edge));
        }
        let message = api_message.map(str::to_owned).unwrap_or_else(|| {
            let text = text.trim();
            let snippet: String = text.chars().take(200).collect();
            if snippet.is_empty() {
                format!("the control plane answered {status}")
            } else {
                format!("the control plane answered {status}: {snippet}")
            }
        });
        Err(ApiFailure { status, body, message }.into())
    }

    /// What to say when the server at `--url` answered but is not the admin API.
    fn not_the_admin_api(&self, status: StatusCode, text: &str, edge: bool) -> String {
        if edge {
            return format!("{} {EDGE_HINT}", self.base);
        }
        let snippet: String = text.trim().chars().take(120).collect();
        let answered = if snippet.is_empty() { format!("{status}") } else { format!("{status}: {snippet}") };
        format!(
            "the server at {} is not the Portcullis control plane's admin API (it answered {answered}); \
             use the control plane's listen address (default {DEFAULT_URL}) for --url / PORTCULLIS_URL",
            self.base
        )
    }

    /// `GET /api/v1{path}` with query pairs (absent values are left out).
    pub async fn get(&self, path: &str, query: &[(&str, Option<String>)]) -> anyhow::Result<Value> {
        let pairs: Vec<(&str, String)> = query.iter().filter_map(|(k, v)| v.clone().map(|v| (*k, v))).collect();
        self.send(self.request(Method::GET, path).query(&pairs)).await
    }

    /// `POST /api/v1{path}` with a JSON body and query pairs.
    pub async fn post(&self, path: &str, query: &[(&str, String)], body: &Value) -> anyhow::Result<Value> {
        self.send(self.request(Method::POST, path).query(query).json(body)).await
    }

    fn transport_error(&self, error: &reqwest::Error) -> anyhow::Error {
        let cause = root_cause(error);
        if let Some(problem) = certificate_problem(error) {
            let server = format!("the control plane at {}", self.base);
            anyhow!(untrusted(&server, &problem, self.ca.as_ref(), "--ca-file", "PORTCULLIS_CA_FILE"))
        } else if error.is_connect() {
            anyhow!("cannot reach the control plane at {}: {cause} (check --url / PORTCULLIS_URL)", self.base)
        } else if error.is_timeout() {
            anyhow!("the control plane at {} did not answer in time: {cause}", self.base)
        } else {
            anyhow!("request to the control plane at {} failed: {cause}", self.base)
        }
    }
}

/// Said, after the URL, of a server that answers as a Portcullis edge does.
const EDGE_HINT: &str = "looks like a Portcullis edge, not the control plane's admin API: use the control \
                         plane's listen address (default 127.0.0.1:7400) for --url / PORTCULLIS_URL";

/// Said of a token no admin token can be.
const NOT_A_TOKEN: &str = "PORTCULLIS_TOKEN / --token is not a valid admin token (an admin token is pcat_ \
                           followed by 43 letters, digits, `-` or `_`; `pcat_…` in the README is a placeholder): \
                           `portcullis control-plane` wrote the first one to data/admin-token, and \
                           `portcullis quickstart` prints its own";

/// True unless `token` has characters no bearer token has (RFC 6750
/// `b64token`), or ends like a placeholder (`pcat_…`, `pcat_...`).
fn could_be_token(token: &str) -> bool {
    let token68 = token.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b));
    token68 && !token.ends_with("...")
}

/// An edge's own refusal: its `Bearer realm="portcullis"` challenge, its
/// "no application here" code, or its login redirect.
fn looks_like_an_edge(status: StatusCode, headers: &HeaderMap, body: Option<&Value>) -> bool {
    let challenge = headers.get(WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let code = body.and_then(|b| b.pointer("/error/code")).and_then(Value::as_str);
    challenge.contains("realm=\"portcullis\"")
        || code == Some("no_route")
        || (status.is_redirection() && headers.contains_key(LOCATION))
}

/// The innermost cause, e.g. "Connection refused (os error 111)".
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

/// Decodes a JSON answer into a typed view for tables.
pub fn decode<T: DeserializeOwned>(value: &Value) -> anyhow::Result<T> {
    serde_json::from_value(value.clone()).context("the control plane answered JSON of an unexpected shape")
}

/// Runs an async admin command on a small runtime.
pub fn block_on<F: std::future::Future<Output = anyhow::Result<std::process::ExitCode>>>(
    future: F,
) -> anyhow::Result<std::process::ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(future)
}

/// Prints a JSON value, pretty.
pub fn print_json(value: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
