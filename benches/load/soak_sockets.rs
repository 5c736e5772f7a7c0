//! The soak harness's websockets: each opened through an edge to the echo
//! upstream and held by a task of its own, which sends a text every
//! [`ECHO_EVERY`] and expects it back within [`ECHO_WITHIN`], until the
//! harness asks it to close or the edge closes it. How it ended is the
//! task's answer.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use crate::ws_upstream::{self, Socket};

/// How often a held websocket checks the echo.
pub const ECHO_EVERY: Duration = Duration::from_secs(10);
/// How long an echo may take.
pub const ECHO_WITHIN: Duration = Duration::from_secs(5);
/// How long opening one may take.
const OPEN_WITHIN: Duration = Duration::from_secs(5);

/// How a held websocket ended.
#[derive(Debug)]
pub enum SocketEnd {
    /// The harness closed it.
    ClosedByUs,
    /// The edge (or the upstream) closed it or reset it.
    ClosedByEdge,
    /// An echo did not come back in time.
    EchoLost,
}

/// A websocket held open by its task.
pub struct HeldSocket {
    /// The session it was opened with.
    pub session: String,
    close: oneshot::Sender<()>,
    task: JoinHandle<SocketEnd>,
}

impl HeldSocket {
    /// Opens a websocket through the edge on `port` with `token` (checked
    /// with one echo) and starts holding it.
    pub async fn open(port: u16, session: &str, token: &str) -> anyhow::Result<Self> {
        let socket = tokio::time::timeout(OPEN_WITHIN, ws_upstream::open_through_edge(port, token))
            .await
            .map_err(|_| anyhow::anyhow!("not open within {OPEN_WITHIN:?}"))??;
        let (close, asked) = oneshot::channel();
        Ok(Self { session: session.to_owned(), close, task: tokio::spawn(hold(socket, asked)) })
    }

    /// Its task has ended (the socket closed).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Asks it to close and waits for that (a failure is only logged: the
    /// harness counts ends it did not ask for).
    pub async fn close(self) {
        let _ = self.close.send(());
        match tokio::time::timeout(ECHO_WITHIN, self.task).await {
            Ok(Ok(SocketEnd::ClosedByUs)) => {}
            other => eprintln!("websocket of {} did not close cleanly: {other:?}", self.session),
        }
    }

    /// How it ended, if it did within `limit` (`None`: still open, and dropped).
    pub async fn ended_within(self, limit: Duration) -> Option<SocketEnd> {
        let mut task = self.task;
        let ended = tokio::time::timeout(limit, &mut task).await.ok().and_then(Result::ok);
        task.abort();
        ended
    }
}

async fn hold(mut socket: Socket, mut asked: oneshot::Receiver<()>) -> SocketEnd {
    let mut tick = tokio::time::interval(ECHO_EVERY);
    tick.tick().await;
    let mut awaiting: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            _ = &mut asked => {
                let _ = socket.close(None).await;
                // Read until the close handshake ends (or the time is up).
                let _ = tokio::time::timeout(ECHO_WITHIN, async { while socket.next().await.is_some() {} }).await;
                return SocketEnd::ClosedByUs;
            }
            _ = tick.tick() => {
                if awaiting.is_some_and(|since| since.elapsed() > ECHO_WITHIN) {
                    return SocketEnd::EchoLost;
                }
                if socket.send(Message::text("soak")).await.is_err() {
                    return SocketEnd::ClosedByEdge;
                }
                awaiting.get_or_insert_with(tokio::time::Instant::now);
            }
            message = socket.next() => match message {
                Some(Ok(Message::Text(_))) => awaiting = None,
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Binary(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Close(_)) | Err(_)) | None => return SocketEnd::ClosedByEdge,
            }
        }
    }
}
