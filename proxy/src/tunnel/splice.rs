//! Zero-copy relay of a plain-TCP flow: `splice(2)` from one socket into a
//! pipe and from the pipe into the other socket, so the bytes never enter
//! the edge's memory. One pipe per direction; each [`SpliceLeg`] moves a
//! pipeful in, then out, driven by tokio's readiness on the two sockets
//! (non-blocking `splice` inside `try_io`), so a kill that drops the flow's
//! task stops it between two system calls.
//!
//! The client socket belongs to pingora's stream. The workspace forbids
//! `unsafe`, so the edge does not borrow pingora's raw descriptor: it asks
//! the kernel for its own descriptor of the same socket (`pidfd_getfd` on
//! this process) and registers that one with tokio. The copy costs one
//! descriptor, the pipes four: they are taken only when a flow turns out
//! to carry bulk data (`relay.rs`), never for idle flows.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::OnceLock;
use std::task::{ready, Context, Poll};

use pingora_core::protocols::Stream;
use rustix::pipe::{fcntl_setpipe_size, pipe_with, splice, PipeFlags, SpliceFlags};
use tokio::io::Interest;
use tokio::net::TcpStream;

/// The pipe size asked for (the kernel may give less; 64 KiB is its
/// default): fewer, larger system calls for bulk flows.
pub const PIPE_BYTES: usize = 256 * 1024;

/// This process as a pidfd, opened once; `None` where the kernel (or a
/// seccomp profile) refuses it, and flows then stay on the copy path.
fn own_pidfd() -> Option<&'static OwnedFd> {
    static PIDFD: OnceLock<Option<OwnedFd>> = OnceLock::new();
    PIDFD
        .get_or_init(|| {
            let pid = rustix::process::getpid();
            rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())
                .inspect_err(|error| tracing::info!(%error, "no pidfd: TCP flows are copied, not spliced"))
                .ok()
        })
        .as_ref()
}

/// Whether `stream` is pingora's plain-TCP stream (not TLS, not a test
/// double): the only kind whose socket can be spliced.
pub fn is_plain_tcp(stream: &Stream) -> bool {
    stream
        .as_ref()
        .as_any()
        .downcast_ref::<pingora_core::protocols::l4::stream::Stream>()
        .is_some_and(|s| s.as_raw_fd() >= 0)
}

/// A descriptor of `stream`'s socket of the edge's own, registered with
/// tokio; `None` for anything but plain TCP or when the kernel refuses.
/// Reads and writes through it bypass pingora's buffers: drain and flush
/// those first.
pub fn client_socket(stream: &Stream) -> Option<TcpStream> {
    let l4 = stream.as_ref().as_any().downcast_ref::<pingora_core::protocols::l4::stream::Stream>()?;
    let fd = l4.as_raw_fd();
    if fd < 0 {
        return None;
    }
    let own = rustix::process::pidfd_getfd(own_pidfd()?, fd, rustix::process::PidfdGetfdFlags::empty())
        .inspect_err(|error| tracing::debug!(%error, "pidfd_getfd: this flow is copied"))
        .ok()?;
    let std = std::net::TcpStream::from(own);
    std.set_nonblocking(true).ok()?;
    TcpStream::from_std(std).ok()
}

/// One direction of a spliced flow.
pub struct SpliceLeg {
    /// The pipe's read end.
    out_of_pipe: OwnedFd,
    /// The pipe's write end.
    into_pipe: OwnedFd,
    /// Bytes in the pipe, not yet written to the destination.
    held: usize,
    /// Most bytes moved into the pipe at once.
    size: usize,
    /// The source reached its end (or was already done when splicing began).
    eof: bool,
    /// The destination's write side was shut down: this leg is done.
    done: bool,
}

impl SpliceLeg {
    /// A leg with its own non-blocking pipe: `eof` if its source already
    /// ended on the copy path, `done` if the destination was shut down too.
    pub fn new(eof: bool, done: bool) -> io::Result<Self> {
        let (out_of_pipe, into_pipe) = pipe_with(PipeFlags::NONBLOCK | PipeFlags::CLOEXEC)?;
        let size = fcntl_setpipe_size(&into_pipe, PIPE_BYTES).unwrap_or(64 * 1024);
        Ok(Self { out_of_pipe, into_pipe, held: 0, size, eof: eof || done, done })
    }

    /// Moves bytes from `src` to `dst` until both would block (`Pending`)
    /// or `src` ends and everything read was written (`Ready`, after
    /// shutting down `dst`'s write side). `read(n)` / `wrote(n)` count.
    pub fn poll_relay(
        &mut self,
        cx: &mut Context<'_>,
        src: &TcpStream,
        dst: &TcpStream,
        read: &mut dyn FnMut(u64),
        wrote: &mut dyn FnMut(u64),
    ) -> Poll<io::Result<()>> {
        let flags = SpliceFlags::MOVE | SpliceFlags::NONBLOCK;
        loop {
            if self.done {
                return Poll::Ready(Ok(()));
            }
            if self.held > 0 {
                // EAGAIN here is the destination's: the pipe holds bytes.
                ready!(dst.poll_write_ready(cx))?;
                let moved = dst
                    .try_io(Interest::WRITABLE, || Ok(splice(&self.out_of_pipe, None, dst, None, self.held, flags)?));
                match moved {
                    Ok(n) => {
                        self.held -= n;
                        wrote(n as u64);
                    }
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                    Err(error) => return Poll::Ready(Err(error)),
                }
            } else if self.eof {
                // Half-close: the other direction keeps going.
                rustix::net::shutdown(dst, rustix::net::Shutdown::Write).or_else(ignore_not_connected)?;
                self.done = true;
            } else {
                // Only into an empty pipe: EAGAIN is then the source's, never a full pipe's.
                ready!(src.poll_read_ready(cx))?;
                let moved =
                    src.try_io(Interest::READABLE, || Ok(splice(src, None, &self.into_pipe, None, self.size, flags)?));
                match moved {
                    Ok(0) => self.eof = true,
                    Ok(n) => {
                        self.held = n;
                        read(n as u64);
                    }
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                    Err(error) => return Poll::Ready(Err(error)),
                }
            }
        }
    }
}

/// A peer that is already gone needs no shutdown.
fn ignore_not_connected(errno: rustix::io::Errno) -> Result<(), rustix::io::Errno> {
    if errno == rustix::io::Errno::NOTCONN {
        Ok(())
    } else {
        Err(errno)
    }
}
