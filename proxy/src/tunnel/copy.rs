//! One direction of a flow copied through user space, holding no buffer
//! while it waits: each read lands in a buffer on the stack and is written
//! on at once; only what the destination does not take right away is kept
//! on the heap ([`CopyLeg::spill`]) until it is written. An idle flow thus
//! costs no copy buffer at all, where it used to hold 2 × 256 KiB.
//!
//! A read that fills the whole stack buffer says the flow carries bulk
//! data: the leg reports [`Copied::Bulk`] (once what it read is written or
//! spilled), and `relay.rs` may move the flow to `splice(2)`.

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The stack buffer of one read: as large as pingora's read buffer, so a
/// read of a plain stream bypasses that buffer instead of copying twice.
pub const READ_BYTES: usize = 64 * 1024;

/// What a call to [`CopyLeg::poll_copy`] ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Copied {
    /// The source ended, everything was written, the destination's write
    /// side is shut down.
    Done,
    /// A full read: bulk data (only when the caller asked to be told).
    Bulk,
}

/// One direction of a copied flow.
#[derive(Debug, Default)]
pub struct CopyLeg {
    /// Read but not yet written; empty (and unallocated) most of the time.
    spill: Vec<u8>,
    /// How much of `spill` was written.
    written: usize,
    /// Bytes were written since the last flush.
    unflushed: bool,
    /// The source ended.
    eof: bool,
    /// The destination was shut down: this leg is done.
    done: bool,
}

impl CopyLeg {
    /// Whether this direction is over.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Whether the source ended (what was read may still be unwritten).
    pub fn source_ended(&self) -> bool {
        self.eof
    }

    /// Copies from `src` to `dst` until the source would block (`Pending`,
    /// after flushing), ends (`Done`), or — with `tell_bulk` — a read fills
    /// the buffer (`Bulk`). `read(n)` / `wrote(n)` count the bytes.
    pub fn poll_copy<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        src: &mut R,
        dst: &mut W,
        tell_bulk: bool,
        read: &mut dyn FnMut(u64),
        wrote: &mut dyn FnMut(u64),
    ) -> Poll<io::Result<Copied>>
    where
        R: AsyncRead + Unpin + ?Sized,
        W: AsyncWrite + Unpin + ?Sized,
    {
        loop {
            if self.done {
                return Poll::Ready(Ok(Copied::Done));
            }
            ready!(self.poll_write_spill(cx, dst, wrote))?;
            if self.eof {
                ready!(Pin::new(&mut *dst).poll_shutdown(cx))?;
                self.done = true;
                continue;
            }
            let mut stack = [MaybeUninit::<u8>::uninit(); READ_BYTES];
            let mut buf = ReadBuf::uninit(&mut stack);
            match Pin::new(&mut *src).poll_read(cx, &mut buf) {
                Poll::Pending => {
                    if self.unflushed {
                        ready!(Pin::new(&mut *dst).poll_flush(cx))?;
                        self.unflushed = false;
                    }
                    return Poll::Pending;
                }
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Ready(Ok(())) => {}
            }
            let filled = buf.filled();
            if filled.is_empty() {
                self.eof = true;
                continue;
            }
            read(filled.len() as u64);
            let bulk = filled.len() == READ_BYTES;
            self.write_through(cx, filled, dst, wrote)?;
            if bulk && tell_bulk {
                return Poll::Ready(Ok(Copied::Bulk));
            }
        }
    }

    /// Writes what `dst` takes of `bytes` now; keeps the rest in the spill.
    fn write_through<W: AsyncWrite + Unpin + ?Sized>(
        &mut self,
        cx: &mut Context<'_>,
        mut bytes: &[u8],
        dst: &mut W,
        wrote: &mut dyn FnMut(u64),
    ) -> io::Result<()> {
        while !bytes.is_empty() {
            match Pin::new(&mut *dst).poll_write(cx, bytes) {
                Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                Poll::Ready(Ok(n)) => {
                    wrote(n as u64);
                    self.unflushed = true;
                    bytes = &bytes[n..];
                }
                Poll::Ready(Err(error)) => return Err(error),
                Poll::Pending => {
                    self.spill.extend_from_slice(bytes);
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Writes the spill; `Ready` once it is empty (and its memory freed).
    fn poll_write_spill<W: AsyncWrite + Unpin + ?Sized>(
        &mut self,
        cx: &mut Context<'_>,
        dst: &mut W,
        wrote: &mut dyn FnMut(u64),
    ) -> Poll<io::Result<()>> {
        while self.written < self.spill.len() {
            let n = ready!(Pin::new(&mut *dst).poll_write(cx, &self.spill[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            wrote(n as u64);
            self.unflushed = true;
            self.written += n;
        }
        if !self.spill.is_empty() {
            self.spill = Vec::new();
            self.written = 0;
        }
        Poll::Ready(Ok(()))
    }

    /// Writes the spill and flushes `dst`: nothing of this leg is left in
    /// user space (before the flow moves to `splice`).
    pub fn poll_settle<W: AsyncWrite + Unpin + ?Sized>(
        &mut self,
        cx: &mut Context<'_>,
        dst: &mut W,
        wrote: &mut dyn FnMut(u64),
    ) -> Poll<io::Result<()>> {
        ready!(self.poll_write_spill(cx, dst, wrote))?;
        if self.unflushed {
            ready!(Pin::new(&mut *dst).poll_flush(cx))?;
            self.unflushed = false;
        }
        Poll::Ready(Ok(()))
    }
}
