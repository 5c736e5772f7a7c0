//! The protected app behind the edge: a raw-TCP HTTP/1.1 server that
//! records every request it receives (with the identity headers the edge
//! added) and every connection that ended, so tests assert on what the app
//! actually got. `/ws` upgrades to a
//! websocket that echoes, except three commands: `crash` drops the
//! connection without a close frame, `slow N` sends a binary frame of N
//! bytes in five pieces 80 ms apart, and `stall N` sends the header and
//! half of such a frame and nothing more (each noted in [`Upstream::notes`]
//! once its first piece is out); `/stream` answers a chunked body that never ends
//! (a chunk every 100 ms); anything else answers `200 hello` and keeps the
//! connection alive.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

/// One request as the upstream received it.
#[derive(Clone, Debug)]
pub struct Seen {
    /// The request target.
    pub path: String,
    /// `x-portcullis-email` as the edge set it.
    pub email: Option<String>,
    /// `x-portcullis-session` as the edge set it.
    pub session: Option<String>,
}

#[derive(Default)]
struct Log {
    requests: Vec<Seen>,
    /// The last path served on each connection whose peer (the edge) went away.
    ended: Vec<String>,
    /// What the websocket commands did, in order.
    notes: Vec<String>,
}

/// The running upstream.
#[derive(Clone)]
pub struct Upstream {
    /// Its port on 127.0.0.1.
    pub port: u16,
    log: Arc<Mutex<Log>>,
}

impl Upstream {
    /// Serves on a free loopback port.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the upstream");
        let port = listener.local_addr().expect("address").port();
        let upstream = Self { port, log: Arc::default() };
        let serving = upstream.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serving.clone().serve(stream));
            }
        });
        upstream
    }

    fn lock(&self) -> MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Seen> {
        self.lock().requests.clone()
    }

    /// The paths of the connections that ended so far (the edge closed them).
    pub fn ended(&self) -> Vec<String> {
        self.lock().ended.clone()
    }

    /// What the websocket commands did so far (`slow started`, …).
    pub fn notes(&self) -> Vec<String> {
        self.lock().notes.clone()
    }

    fn note(&self, note: &str) {
        self.lock().notes.push(note.to_owned());
    }

    async fn serve(self, mut stream: TcpStream) {
        let mut buffer = Vec::new();
        let mut last = String::new();
        loop {
            let Some(head) = read_head(&mut stream, &mut buffer).await else { break };
            let mut lines = head.lines();
            let path = lines.next().and_then(|l| l.split_whitespace().nth(1)).unwrap_or_default().to_owned();
            let headers: Vec<(String, String)> = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
                .collect();
            let header = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
            let seen = Seen {
                path: path.clone(),
                email: header("x-portcullis-email"),
                session: header("x-portcullis-session"),
            };
            self.lock().requests.push(seen);
            last = path.clone();
            let served = match path.as_str() {
                "/ws" => self.websocket(stream, header("sec-websocket-key").unwrap_or_default()).await,
                "/stream" => endless(stream).await,
                _ => {
                    let body = format!("hello {path}");
                    let answer = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}", body.len());
                    match stream.write_all(answer.as_bytes()).await {
                        Ok(()) => continue,
                        Err(_) => None,
                    }
                }
            };
            match served {
                Some(back) => stream = back,
                None => break,
            }
        }
        self.lock().ended.push(last);
    }
}

/// Reads one request head (the request bodies here are empty); `None` at the end.
async fn read_head(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
            buffer.drain(..end + 4);
            return Some(head);
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    }
}

impl Upstream {
    /// Answers the upgrade and echoes (or runs a command) until the peer
    /// goes; the connection is spent.
    async fn websocket(&self, mut stream: TcpStream, key: String) -> Option<TcpStream> {
        let accept = derive_accept_key(key.as_bytes());
        let answer = format!(
            "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\nsec-websocket-accept: {accept}\r\n\r\n"
        );
        stream.write_all(answer.as_bytes()).await.ok()?;
        let mut socket = WebSocketStream::from_raw_socket(stream, Role::Server, None).await;
        while let Some(Ok(message)) = socket.next().await {
            let command = message.to_text().unwrap_or_default().to_owned();
            let mut words = command.split(' ');
            let (verb, size) = (words.next(), words.next().and_then(|n| n.parse::<usize>().ok()));
            match (verb, size) {
                (Some("crash"), _) => {
                    self.note("crash");
                    return None;
                }
                (Some(verb @ ("slow" | "stall")), Some(size)) => {
                    let whole = verb == "slow";
                    self.raw_frame(socket.get_mut(), verb, size, whole).await?;
                    if !whole {
                        // Never finish it: wait for the peer to go.
                        while let Some(Ok(_)) = socket.next().await {}
                        return None;
                    }
                }
                _ if (message.is_text() || message.is_binary()) && socket.send(message).await.is_err() => break,
                _ => {}
            }
        }
        None
    }

    /// Writes a binary frame of `size` bytes (byte `i` is `i % 251`) straight
    /// to the socket in five pieces 80 ms apart, or only the header and half
    /// of it unless `whole`; notes `{verb} started` after the first piece.
    async fn raw_frame(&self, stream: &mut TcpStream, verb: &str, size: usize, whole: bool) -> Option<()> {
        let payload: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let mut frame = vec![0x82, 127];
        frame.extend_from_slice(&(size as u64).to_be_bytes());
        frame.extend_from_slice(&payload);
        let end = if whole { frame.len() } else { 10 + size / 2 };
        let piece = end.div_ceil(5);
        for (at, chunk) in frame[..end].chunks(piece).enumerate() {
            if at > 0 {
                tokio::time::sleep(Duration::from_millis(80)).await;
            }
            stream.write_all(chunk).await.ok()?;
            stream.flush().await.ok()?;
            if at == 0 {
                self.note(&format!("{verb} started"));
            }
        }
        self.note(&format!("{verb} sent"));
        Some(())
    }
}

/// A chunked body that never ends: a chunk every 100 ms until the peer goes.
async fn endless(mut stream: TcpStream) -> Option<TcpStream> {
    let head = "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n";
    stream.write_all(head.as_bytes()).await.ok()?;
    let mut probe = [0u8; 1];
    loop {
        stream.write_all(b"5\r\ntick\n\r\n").await.ok()?;
        tokio::select! {
            read = stream.read(&mut probe) => match read {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            },
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
}
