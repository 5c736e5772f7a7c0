//! The quickstart's demo upstream: a page showing the identity headers the
//! edge added (and the assertion), a websocket echo page, and a slow
//! streaming download, so a kill is something you can watch happen.

use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::{header, HeaderMap};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures_util::StreamExt;
use portcullis_edge::FAVICON_LINK;

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:46rem;margin:2.5rem auto;padding:0 1rem;color:#1f2933}\
    table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #e4e7eb;padding:.35rem .5rem;text-align:left;\
    vertical-align:top;font-size:.95rem}code,td.v{font-family:ui-monospace,monospace;word-break:break-all}\
    nav{display:flex;flex-wrap:wrap;gap:.3rem 1rem}nav a{white-space:nowrap}#log{font-family:ui-monospace,monospace;background:#f5f7fa;padding:.6rem;min-height:6rem;\
    max-height:24rem;overflow-y:auto;list-style:none;margin:0;white-space:pre-wrap}#log li{padding:.1rem 0;display:flex;gap:.6rem}\
    #log time{color:#7b8794;flex:none}#status{padding:.5rem .7rem;border-radius:4px;background:#e3f8ff;\
    color:#0b4f71}#status.closed{background:#ffe3e3;color:#8a1c1c}.closed{color:#c81e1e;font-weight:600}";

fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    html_escape::encode_quoted_attribute(text)
}

fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title} · Portcullis demo</title>\
         <meta name=\"viewport\" content=\"width=device-width\"><link rel=\"stylesheet\" href=\"/style.css\">{FAVICON_LINK}</head>\
         <body><nav><a href=\"/\">Who am I</a><a href=\"/websocket\">Websocket</a><a href=\"/download\">Slow download</a>\
         <a href=\"/.portcullis/logout\">Log out</a></nav><h1>{title}</h1>{body}</body></html>"
    ))
}

async fn whoami(headers: HeaderMap) -> Html<String> {
    let mut rows = String::new();
    for (name, value) in headers.iter().filter(|(n, _)| n.as_str().starts_with("x-")) {
        let value = value.to_str().unwrap_or("(not text)");
        rows.push_str(&format!("<tr><th>{}</th><td class=\"v\">{}</td></tr>", escape(name.as_str()), escape(value)));
    }
    let user = headers.get("x-portcullis-email").and_then(|v| v.to_str().ok()).unwrap_or("nobody");
    page(
        &format!("Hello, {}", escape(user)),
        &format!(
            "<p>This page is the demo app behind the Portcullis edge. These are the identity headers the edge \
             added to your request (anything a client sends under these names is removed first):</p><table>{rows}</table>"
        ),
    )
}

/// The websocket page's script: the newest line on top, each with its time,
/// and on close who closed it and why (all text, never HTML: the reason
/// comes from the network).
const WEBSOCKET_JS: &str = "const log=document.getElementById('log');\
const banner=document.getElementById('status');\
const two=n=>String(n).padStart(2,'0');\
const now=()=>{const d=new Date();return two(d.getHours())+':'+two(d.getMinutes())+':'+two(d.getSeconds())};\
const say=(text,cls)=>{const line=document.createElement('li');const time=document.createElement('time');\
time.textContent=now();line.append(time,' ',text);if(cls)line.className=cls;log.prepend(line);\
while(log.children.length>500)log.lastChild.remove()};\
const show=(text,cls)=>{banner.textContent=text;banner.className=cls||''};\
const ws=new WebSocket((location.protocol==='https:'?'wss://':'ws://')+location.host+'/ws');\
let n=0;ws.onopen=()=>{say('open');show('connected: a ping every second');\
setInterval(()=>{if(ws.readyState===1)ws.send('ping '+(++n))},1000)};\
ws.onmessage=e=>say('echo: '+e.data);\
ws.onclose=e=>{const text=e.code===1008?'closed by Portcullis ('+e.code+'): '+(e.reason||'no reason given')\
:e.code===1006?'connection lost (1006): no close frame, the app or the network went away'\
:'closed ('+e.code+')'+(e.reason?': '+e.reason:'');say(text,'closed');show(text,'closed')};";

async fn websocket_page() -> Html<String> {
    page(
        "Websocket echo",
        "<p>Sends a message every second and shows the echo, newest first. Terminate this session from the portal \
         or the API and watch Portcullis close the connection, and say why.</p>\
         <p id=\"status\" data-test=\"ws-status\">connecting…</p>\
         <ul id=\"log\" data-test=\"ws-log\"></ul><script src=\"/websocket.js\"></script>",
    )
}

async fn echo(upgrade: WebSocketUpgrade) -> Response {
    // (No delay needed: the edge proxies upgrades itself, see proxy/src/upgrade.rs.)
    upgrade.on_upgrade(|mut socket: WebSocket| async move {
        while let Some(Ok(message)) = socket.next().await {
            if let Message::Text(_) = message {
                if socket.send(message).await.is_err() {
                    return;
                }
            }
        }
    })
}

async fn download() -> Response {
    let ticks = futures_util::stream::unfold(0u32, |i| async move {
        if i >= 3600 {
            return None;
        }
        if i > 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        Some((Ok::<_, std::convert::Infallible>(format!("chunk {i}: still downloading…\n")), i + 1))
    });
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8"), (header::CACHE_CONTROL, "no-store")],
        axum::body::Body::from_stream(ticks),
    )
        .into_response()
}

/// The demo app's routes.
pub fn router() -> Router {
    Router::new()
        .route("/", get(whoami))
        .route("/websocket", get(websocket_page))
        .route("/websocket.js", get(|| async { ([(header::CONTENT_TYPE, "text/javascript")], WEBSOCKET_JS) }))
        .route("/style.css", get(|| async { ([(header::CONTENT_TYPE, "text/css")], STYLE) }))
        .route("/ws", get(echo))
        .route("/download", get(download))
}

/// `portcullis demo-app`: the demo upstream on its own (deploy/ runs it
/// behind edges); the quickstart runs it in-process.
#[derive(clap::Args)]
pub struct DemoAppArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7700", env = "PORTCULLIS_DEMO_LISTEN")]
    listen: std::net::SocketAddr,
}

/// Serves the demo app until the process is stopped.
pub fn run(args: DemoAppArgs) -> anyhow::Result<std::process::ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen).await?;
        tracing::info!(listen = %args.listen, "demo app listening");
        axum::serve(listener, router())
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?;
        Ok(std::process::ExitCode::SUCCESS)
    })
}
