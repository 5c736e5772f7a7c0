//! A man in the middle on the edge channel, controlled by the test: a raw
//! TCP proxy in front of a control plane's edge listener. Every request is
//! forwarded; the answer of `GET /edge/v1/stream` is taken apart (HTTP
//! chunks, then frames) so the test can alter, forge, drop, duplicate or
//! replay frames, and every genuine frame is kept for later replays. Other
//! requests pass through untouched (with `Connection: close`, so no pooled
//! connection carries a later stream past the interception). The proxy can
//! cut the streams it carries.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use portcullis_policy::signed_frame::{FrameSigner, StreamBinding, HEADER_BYTES, SIGNATURE_BYTES};
use portcullis_policy::stream_key::StreamSigningKey;
use portcullis_policy::wire::{decode, encode, Message};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does to the first frame of a stream (the rest pass).
#[derive(Clone)]
pub enum Attack {
    /// Keeps the genuine frame's envelope and signature, swaps the message.
    Tamper(Message),
    /// Sends `message` signed by `key` (the attacker's own key), correctly
    /// bound to the stream the edge opened.
    Forge(Message, Box<StreamSigningKey>),
    /// Sends `message` as a bare wire message, without any envelope.
    Unsigned(Message),
    /// Sends frame `frame` of earlier stream `stream` (genuine) instead.
    Replay { stream: usize, frame: usize },
    /// Sends the first frame twice.
    Duplicate,
    /// Drops every delta (heartbeats pass): a termination that never arrives.
    DropDeltas,
}

/// One stream the proxy carried: its genuine frames.
#[derive(Clone)]
pub struct Carried {
    /// Every genuine frame payload, in order.
    pub frames: Vec<Vec<u8>>,
}

#[derive(Default)]
struct Control {
    /// One attack for each of the next streams.
    next: VecDeque<Attack>,
    /// An attack on every stream while set.
    standing: Option<Attack>,
    carried: Vec<Carried>,
}

/// The proxy.
pub struct StreamProxy {
    /// Its port on 127.0.0.1.
    pub port: u16,
    control: Arc<Mutex<Control>>,
    cut: watch::Sender<u64>,
}

impl StreamProxy {
    /// Listens on a free port, forwarding to the edge channel on `target`.
    pub async fn start(target: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let port = listener.local_addr().expect("address").port();
        let control = Arc::new(Mutex::new(Control::default()));
        let (cut, _) = watch::channel(0);
        let proxy = Self { port, control: Arc::clone(&control), cut: cut.clone() };
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (control, cut) = (Arc::clone(&control), cut.subscribe());
                tokio::spawn(async move {
                    let _ = serve(client, target, control, cut).await;
                });
            }
        });
        proxy
    }

    /// The URL edges use for it.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The next stream gets `attack`.
    pub fn attack_next(&self, attack: Attack) {
        self.control.lock().unwrap().next.push_back(attack);
    }

    /// Every stream gets `attack` (or none) from now on.
    pub fn attack_every(&self, attack: Option<Attack>) {
        self.control.lock().unwrap().standing = attack;
    }

    /// Closes every stream it carries now.
    pub fn cut(&self) {
        self.cut.send_modify(|n| *n += 1);
    }

    /// The streams carried so far.
    pub fn carried(&self) -> Vec<Carried> {
        self.control.lock().unwrap().carried.clone()
    }
}

/// The wire message inside a genuine signed frame.
pub fn message_of(payload: &[u8]) -> Option<Message> {
    decode(payload.get(HEADER_BYTES..payload.len().checked_sub(SIGNATURE_BYTES)?)?).ok()
}

async fn serve(
    mut client: TcpStream,
    target: u16,
    control: Arc<Mutex<Control>>,
    mut cut: watch::Receiver<u64>,
) -> std::io::Result<()> {
    let (head, rest) = read_head(&mut client).await?;
    let mut server = TcpStream::connect(("127.0.0.1", target)).await?;
    let target_line = head.lines().next().unwrap_or_default().to_owned();
    let path = target_line.split_whitespace().nth(1).unwrap_or_default().to_owned();
    if !path.starts_with("/edge/v1/stream?") {
        // Pass through, and make both sides close after this exchange.
        let mut lines: Vec<&str> =
            head.lines().filter(|l| !l.to_ascii_lowercase().starts_with("connection:") && !l.is_empty()).collect();
        lines.push("connection: close");
        server.write_all(format!("{}\r\n\r\n", lines.join("\r\n")).as_bytes()).await?;
        server.write_all(&rest).await?;
        tokio::select! {
            _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
            _ = cut.changed() => {}
        }
        return Ok(());
    }
    let binding = binding_of(&path);
    let (attack, index) = {
        let mut control = control.lock().unwrap();
        let attack = control.next.pop_front().or_else(|| control.standing.clone());
        control.carried.push(Carried { frames: Vec::new() });
        (attack, control.carried.len() - 1)
    };
    server.write_all(head.as_bytes()).await?;
    server.write_all(&rest).await?;
    let (response_head, mut body) = read_head(&mut server).await?;
    client.write_all(response_head.as_bytes()).await?;
    let mut chunks = Chunks { buffer: std::mem::take(&mut body), server };
    let mut frames: Vec<u8> = Vec::new();
    let mut first = true;
    loop {
        let chunk = tokio::select! {
            chunk = chunks.next() => chunk?,
            _ = cut.changed() => return Ok(()),
        };
        let Some(chunk) = chunk else {
            client.write_all(b"0\r\n\r\n").await?;
            return Ok(());
        };
        frames.extend_from_slice(&chunk);
        while frames.len() >= 4 {
            let length = u32::from_be_bytes(frames[..4].try_into().unwrap()) as usize;
            if frames.len() < 4 + length {
                break;
            }
            let payload: Vec<u8> = frames.drain(..4 + length).skip(4).collect();
            let history = {
                let mut control = control.lock().unwrap();
                control.carried[index].frames.push(payload.clone());
                control.carried.clone()
            };
            let out = match &attack {
                Some(attack) => attacked(attack, first, &payload, binding, &history),
                None => vec![payload],
            };
            first = false;
            for payload in out {
                let mut chunk = format!("{:x}\r\n", payload.len() + 4).into_bytes();
                chunk.extend_from_slice(&(payload.len() as u32).to_be_bytes());
                chunk.extend_from_slice(&payload);
                chunk.extend_from_slice(b"\r\n");
                client.write_all(&chunk).await?;
            }
        }
    }
}

/// What replaces `payload` under `attack` (`first`: the stream's first frame).
fn attacked(attack: &Attack, first: bool, payload: &[u8], binding: StreamBinding, history: &[Carried]) -> Vec<Vec<u8>> {
    if let Attack::DropDeltas = attack {
        return match message_of(payload) {
            Some(Message::Delta(_)) => vec![],
            _ => vec![payload.to_vec()],
        };
    }
    if !first {
        return vec![payload.to_vec()];
    }
    match attack {
        Attack::Tamper(message) => {
            let mut forged = payload[..HEADER_BYTES].to_vec();
            forged.extend_from_slice(&encode(message));
            forged.extend_from_slice(&payload[payload.len() - SIGNATURE_BYTES..]);
            vec![forged]
        }
        Attack::Forge(message, key) => vec![FrameSigner::new(key, binding).seal(&encode(message))],
        Attack::Unsigned(message) => vec![encode(message)],
        Attack::Replay { stream, frame } => vec![history[*stream].frames[*frame].clone()],
        Attack::Duplicate => vec![payload.to_vec(), payload.to_vec()],
        Attack::DropDeltas => unreachable!("handled above"),
    }
}

/// The nonce and `since` of a stream request's path.
fn binding_of(path: &str) -> StreamBinding {
    let query = path.split_once('?').map(|(_, q)| q).unwrap_or_default();
    let value = |name: &str| query.split('&').find_map(|p| p.strip_prefix(&format!("{name}=")[..]));
    StreamBinding {
        nonce: value("nonce").and_then(|n| n.parse().ok()).expect("the edge sends a nonce"),
        since: value("since").and_then(|s| s.parse().ok()),
    }
}

/// Reads up to the end of an HTTP head; (head, bytes after it).
async fn read_head(stream: &mut TcpStream) -> std::io::Result<(String, Vec<u8>)> {
    let mut buffer = Vec::new();
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buffer.split_off(end + 4);
            return Ok((String::from_utf8_lossy(&buffer).into_owned(), rest));
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => buffer.extend_from_slice(&chunk[..n]),
        }
    }
}

/// The chunks of a `Transfer-Encoding: chunked` body.
struct Chunks<R> {
    buffer: Vec<u8>,
    server: R,
}

impl<R: AsyncRead + Unpin> Chunks<R> {
    async fn fill(&mut self, at_least: usize) -> std::io::Result<()> {
        while self.buffer.len() < at_least {
            let mut chunk = [0u8; 16384];
            match self.server.read(&mut chunk).await? {
                0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                n => self.buffer.extend_from_slice(&chunk[..n]),
            }
        }
        Ok(())
    }

    /// The next chunk's data; `None` after the last (empty) chunk.
    async fn next(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        let line_end = loop {
            if let Some(end) = self.buffer.windows(2).position(|w| w == b"\r\n") {
                break end;
            }
            let wanted = self.buffer.len() + 1;
            self.fill(wanted).await?;
        };
        let size_text = String::from_utf8_lossy(&self.buffer[..line_end]).into_owned();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or_default().trim(), 16)
            .map_err(|_| std::io::Error::other(format!("bad chunk size {size_text:?}")))?;
        self.fill(line_end + 2 + size + 2).await?;
        let data = self.buffer[line_end + 2..line_end + 2 + size].to_vec();
        self.buffer.drain(..line_end + 2 + size + 2);
        Ok((size > 0).then_some(data))
    }
}
