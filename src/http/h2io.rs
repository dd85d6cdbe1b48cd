//! The byte pipe between a transport and the `h2` crate, without a tokio runtime.
//!
//! `h2` reads and writes through tokio's `AsyncRead`/`AsyncWrite` traits only. [`H2Io`]
//! implements them over two bounded buffers that the connection's driver fills from and
//! drains into the transport (smoltcp socket or TLS). When a buffer is empty (read) or full
//! (write), `h2` gets `Pending` and its waker is kept; the driver wakes it once it has moved
//! bytes. `poll_write` never returns `Ok(0)` for a non-empty buffer (h2 treats that as a
//! closed connection); backpressure is `Pending`.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::stack::Stack;
use crate::transport::{ReadStatus, Transport, TransportError};

/// What [`H2Pipes::fill_from`] moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Moved {
    /// Bytes read.
    pub bytes: usize,
    /// End of stream was reached.
    pub eof: bool,
}

impl Moved {
    /// True when anything changed.
    pub fn any(&self) -> bool {
        self.bytes > 0 || self.eof
    }
}

/// Bytes buffered each way at most.
pub const IO_BUFFER: usize = 64 * 1024;

#[derive(Debug, Default)]
struct Pipes {
    rx: BytesMut,
    rx_eof: bool,
    tx: BytesMut,
    tx_shutdown: bool,
    reader: Option<Waker>,
    writer: Option<Waker>,
}

/// The driver's end: moves bytes between the transport and `h2`.
#[derive(Debug, Clone, Default)]
pub struct H2Pipes(Rc<RefCell<Pipes>>);

/// `h2`'s end: the transport as `h2` sees it.
#[derive(Debug)]
pub struct H2Io(Rc<RefCell<Pipes>>);

impl H2Pipes {
    /// A new pipe pair: the driver keeps `self`, `h2` gets the returned [`H2Io`].
    pub fn new() -> (H2Pipes, H2Io) {
        let pipes = Rc::new(RefCell::new(Pipes::default()));
        (H2Pipes(pipes.clone()), H2Io(pipes))
    }

    /// Room for received bytes.
    pub fn rx_room(&self) -> usize {
        IO_BUFFER.saturating_sub(self.0.borrow().rx.len())
    }

    /// Adds received bytes (at most [`H2Pipes::rx_room`] are taken); returns how many.
    pub fn push_rx(&self, data: &[u8]) -> usize {
        let mut p = self.0.borrow_mut();
        let n = data.len().min(IO_BUFFER.saturating_sub(p.rx.len()));
        if n > 0 {
            p.rx.extend_from_slice(&data[..n]);
            if let Some(w) = p.reader.take() {
                w.wake();
            }
        }
        n
    }

    /// The transport reached end of stream.
    pub fn set_rx_eof(&self) {
        let mut p = self.0.borrow_mut();
        p.rx_eof = true;
        if let Some(w) = p.reader.take() {
            w.wake();
        }
    }

    /// True once end of stream was seen.
    pub fn rx_eof(&self) -> bool {
        self.0.borrow().rx_eof
    }

    /// Gives the bytes `h2` wrote to `write`, which returns how many it took.
    pub fn drain_tx(&self, write: &mut dyn FnMut(&[u8]) -> usize) -> usize {
        let mut p = self.0.borrow_mut();
        let mut total = 0;
        while !p.tx.is_empty() {
            let n = write(&p.tx);
            if n == 0 {
                break;
            }
            p.tx.advance(n);
            total += n;
        }
        if total > 0 {
            if let Some(w) = p.writer.take() {
                w.wake();
            }
        }
        total
    }

    /// Bytes `h2` wrote that are not on the transport yet.
    pub fn tx_pending(&self) -> usize {
        self.0.borrow().tx.len()
    }

    /// Reads what `transport` has into the receive buffer (as far as it has room).
    /// Returns the bytes moved and whether end of stream was reached now.
    pub fn fill_from<T: Transport>(
        &self,
        transport: &mut T,
        stack: &mut Stack,
    ) -> Result<Moved, TransportError> {
        self.fill_from_inspect(transport, stack, &mut |_| {})
    }

    /// Like [`H2Pipes::fill_from`]; `inspect` sees every byte taken, in order, before `h2`
    /// does (the server counts frames with it).
    pub fn fill_from_inspect<T: Transport>(
        &self,
        transport: &mut T,
        stack: &mut Stack,
        inspect: &mut dyn FnMut(&[u8]),
    ) -> Result<Moved, TransportError> {
        if self.rx_room() == 0 || self.rx_eof() {
            return Ok(Moved::default());
        }
        let mut bytes = 0;
        let status = transport.read_with(stack, &mut |data| {
            let n = self.push_rx(data);
            inspect(&data[..n]);
            bytes += n;
            n
        })?;
        let eof = status == ReadStatus::Eof;
        if eof {
            self.set_rx_eof();
        }
        Ok(Moved { bytes, eof })
    }

    /// Writes what `h2` produced to `transport` (as far as it takes it).
    pub fn flush_to<T: Transport>(
        &self,
        transport: &mut T,
        stack: &mut Stack,
    ) -> Result<usize, TransportError> {
        let mut failed = None;
        let written = self.drain_tx(&mut |data| match transport.write(stack, data) {
            Ok(n) => n,
            Err(e) => {
                failed = Some(e);
                0
            }
        });
        match failed {
            Some(e) => Err(e),
            None => Ok(written),
        }
    }

    /// True once `h2` shut down its writing side.
    pub fn tx_shutdown(&self) -> bool {
        self.0.borrow().tx_shutdown
    }
}

impl AsyncRead for H2Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut p = self.0.borrow_mut();
        if p.rx.is_empty() {
            if p.rx_eof {
                return Poll::Ready(Ok(()));
            }
            p.reader = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = buf.remaining().min(p.rx.len());
        buf.put_slice(&p.rx[..n]);
        p.rx.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for H2Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut p = self.0.borrow_mut();
        if p.tx_shutdown {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let room = IO_BUFFER.saturating_sub(p.tx.len());
        if room == 0 {
            p.writer = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = room.min(data.len());
        p.tx.extend_from_slice(&data[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The driver moves buffered bytes to the transport after every poll of h2.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.borrow_mut().tx_shutdown = true;
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    #[test]
    fn write_backpressure_is_pending_never_zero() {
        let (pipes, mut io) = H2Pipes::new();
        let mut cx = Context::from_waker(Waker::noop());
        let big = vec![7u8; IO_BUFFER + 10];
        let first = Pin::new(&mut io).poll_write(&mut cx, &big);
        assert!(matches!(first, Poll::Ready(Ok(n)) if n == IO_BUFFER));
        assert!(Pin::new(&mut io).poll_write(&mut cx, &big).is_pending());
        let mut taken = 0;
        pipes.drain_tx(&mut |d| {
            taken += d.len();
            d.len()
        });
        assert_eq!(taken, IO_BUFFER);
        assert!(matches!(
            Pin::new(&mut io).poll_write(&mut cx, &big[..10]),
            Poll::Ready(Ok(10))
        ));
    }

    #[test]
    fn read_pending_then_data_then_eof() {
        let (pipes, mut io) = H2Pipes::new();
        let mut cx = Context::from_waker(Waker::noop());
        let mut storage = [0u8; 8];
        let mut buf = ReadBuf::new(&mut storage);
        assert!(Pin::new(&mut io).poll_read(&mut cx, &mut buf).is_pending());
        assert_eq!(pipes.push_rx(b"abc"), 3);
        assert!(Pin::new(&mut io).poll_read(&mut cx, &mut buf).is_ready());
        assert_eq!(buf.filled(), b"abc");
        pipes.set_rx_eof();
        let mut storage = [0u8; 8];
        let mut buf = ReadBuf::new(&mut storage);
        assert!(Pin::new(&mut io).poll_read(&mut cx, &mut buf).is_ready());
        assert!(buf.filled().is_empty(), "EOF reads zero bytes");
    }
}
