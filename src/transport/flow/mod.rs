//! Flows: TCP and TLS connections as tokio byte streams (paf's `TCP.flow` / `TLS.flow`).
//!
//! A [`Flow`] implements `tokio::io::AsyncRead + AsyncWrite` (the traits only: no tokio
//! runtime), so any protocol library written against them — hyper through hyper-util's
//! `TokioIo`, `h2`, codecs — runs over tapir. Flows come from a [`Flows`] table running on
//! the stack's loop: accepted on a bound port ([`FlowHandle::bind`], a [`FlowListener`]),
//! or opened ([`FlowHandle::connect`], or the [`Connector`], a `tower::Service<Uri>`).
//! Futures using them run on the same loop ([`FlowHandle::spawn`]).
//!
//! The table moves bytes between each connection and its flow through two bounded buffers
//! ([`FlowConfig::buffer`] each way), so a flow is `Send` and never touches the stack: a
//! read that finds nothing, or a write that finds the buffer full, is `Pending` until the
//! table moved bytes and woke it.
//!
//! Closing follows paf's `no_close` / `to_close`: nothing closes a flow behind its owner's
//! back. `poll_shutdown` is the half-close — TLS `close_notify`, then FIN, after everything
//! written — while reading goes on until the peer's end of stream; the connection is given
//! back to the stack once both directions ended. Dropping the flow is `to_close`: what was
//! written still goes out, then the connection closes. [`Flow::reset`] aborts it. A flow
//! idle for [`FlowConfig::idle_timeout`] in both directions is reset.

mod connector;
#[cfg(feature = "hyper-util")]
mod hyper;
mod table;

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::{Buf, BytesMut};
use smoltcp::wire::IpEndpoint;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pub use connector::{Connecting, Connector};
#[cfg(feature = "hyper-util")]
pub use hyper::{HyperConnecting, HyperConnector};
pub use table::{Accept, Connect, FlowConfig, FlowHandle, FlowListener, Flows, TlsConnect};

use super::tls::TlsInfo;
use crate::runtime::wake::ConnWaker;
use crate::stack::ConnId;

/// Errors of flows, listeners and connects.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FlowError {
    /// Listening on the port failed (in use, or the stack refused).
    #[error("cannot listen on port {port}: {reason}")]
    Bind {
        /// The port.
        port: u16,
        /// What the stack said.
        reason: String,
    },
    /// Opening the connection failed (refused, reset, no route, too many connections).
    #[error("cannot connect to {remote}: {reason}")]
    Connect {
        /// Where to.
        remote: String,
        /// Why.
        reason: String,
    },
    /// The connection (or its TLS handshake) did not complete in time.
    #[error("connecting to {0} timed out")]
    ConnectTimeout(String),
    /// The TLS handshake failed.
    #[error("TLS handshake with {remote} failed")]
    Tls {
        /// The peer.
        remote: String,
        /// What TLS said.
        #[source]
        reason: crate::transport::TlsFailure,
    },
    /// A URI the connector cannot use (scheme, host, port).
    #[error("bad URI '{uri}': {reason}")]
    BadUri {
        /// The URI.
        uri: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The host name could not be resolved.
    #[error("cannot resolve {host}: {reason}")]
    Resolve {
        /// The name.
        host: String,
        /// Why.
        reason: String,
    },
    /// The listener was closed, or the flow table stopped.
    #[error("the flow table stopped")]
    Stopped,
}

/// Where a flow goes and what TLS negotiated, known when the flow is handed out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowInfo {
    /// The connection's name in the stack.
    pub id: ConnId,
    /// Our address and port.
    pub local: IpEndpoint,
    /// The peer's address and port.
    pub peer: IpEndpoint,
    /// What the TLS handshake negotiated; `None` for plain TCP.
    pub tls: Option<TlsInfo>,
}

impl FlowInfo {
    /// The application protocol ALPN agreed on (`"h2"`, `"http/1.1"`), if any.
    pub fn alpn(&self) -> Option<&str> {
        self.tls.as_ref().and_then(|t| t.alpn.as_deref())
    }

    /// True when ALPN chose HTTP/2.
    pub fn is_h2(&self) -> bool {
        self.alpn() == Some("h2")
    }
}

/// The buffers between a flow and its connection.
#[derive(Debug, Default)]
struct Pipe {
    /// Received, not yet read by the owner.
    rx: BytesMut,
    /// The peer ended its side (and `rx` holds the rest).
    rx_eof: bool,
    /// Written by the owner, not yet in the connection.
    tx: BytesMut,
    /// The owner asked for the half-close.
    shutdown: bool,
    /// `close_notify` and FIN are queued in the connection.
    write_closed: bool,
    /// The connection failed (reset, timed out, TLS error); every later call reports it.
    error: Option<(io::ErrorKind, String)>,
    /// The owner dropped the flow (`to_close`).
    dropped: bool,
    /// The owner asked for a reset.
    reset: bool,
    reader: Option<Waker>,
    writer: Option<Waker>,
}

#[derive(Debug)]
struct Shared {
    pipe: Mutex<Pipe>,
    /// Queues the connection for a turn of the table.
    driver: Arc<ConnWaker>,
    limit: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pipe> {
        self.pipe.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One TCP or TLS connection as a tokio byte stream (see the [module docs](self)).
pub struct Flow {
    shared: Arc<Shared>,
    info: FlowInfo,
}

impl fmt::Debug for Flow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Flow").field("info", &self.info).finish()
    }
}

fn io_error((kind, message): &(io::ErrorKind, String)) -> io::Error {
    io::Error::new(*kind, message.clone())
}

impl Flow {
    /// Where the flow goes and what TLS negotiated.
    pub fn info(&self) -> &FlowInfo {
        &self.info
    }

    /// The peer's address and port.
    pub fn peer(&self) -> IpEndpoint {
        self.info.peer
    }

    /// The application protocol ALPN agreed on, if any.
    pub fn alpn(&self) -> Option<&str> {
        self.info.alpn()
    }

    /// Resets the connection now (TCP RST); unsent bytes are dropped.
    pub fn reset(self) {
        self.shared.lock().reset = true;
        // Drop marks the flow gone and wakes the table.
    }

    /// Bytes written and not yet handed to the connection.
    pub fn unsent(&self) -> usize {
        self.shared.lock().tx.len()
    }
}

impl Drop for Flow {
    fn drop(&mut self) {
        let mut pipe = self.shared.lock();
        pipe.dropped = true;
        pipe.reader = None;
        pipe.writer = None;
        drop(pipe);
        self.shared.driver.wake_now();
    }
}

impl AsyncRead for Flow {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut pipe = self.shared.lock();
        if !pipe.rx.is_empty() {
            if buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            let was_full = pipe.rx.len() >= self.shared.limit;
            let n = buf.remaining().min(pipe.rx.len());
            buf.put_slice(&pipe.rx[..n]);
            pipe.rx.advance(n);
            drop(pipe);
            if was_full {
                // The table stopped reading for lack of room.
                self.shared.driver.wake_now();
            }
            return Poll::Ready(Ok(()));
        }
        if let Some(error) = &pipe.error {
            return Poll::Ready(Err(io_error(error)));
        }
        if pipe.rx_eof {
            return Poll::Ready(Ok(()));
        }
        pipe.reader = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl AsyncWrite for Flow {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut pipe = self.shared.lock();
        if let Some(error) = &pipe.error {
            return Poll::Ready(Err(io_error(error)));
        }
        if pipe.shutdown {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "write after shutdown",
            )));
        }
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let room = self.shared.limit.saturating_sub(pipe.tx.len());
        if room == 0 {
            pipe.writer = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = room.min(data.len());
        pipe.tx.extend_from_slice(&data[..n]);
        drop(pipe);
        self.shared.driver.wake_now();
        Poll::Ready(Ok(n))
    }

    /// Ready once everything written is in the connection's send buffer (not yet
    /// acknowledged by the peer: TCP has no such promise either).
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut pipe = self.shared.lock();
        if let Some(error) = &pipe.error {
            return Poll::Ready(Err(io_error(error)));
        }
        if pipe.tx.is_empty() {
            return Poll::Ready(Ok(()));
        }
        pipe.writer = Some(cx.waker().clone());
        Poll::Pending
    }

    /// The half-close: ready once `close_notify` (TLS) and FIN follow everything written.
    /// Reading goes on.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut pipe = self.shared.lock();
        if pipe.write_closed {
            return Poll::Ready(Ok(()));
        }
        if let Some(error) = &pipe.error {
            return Poll::Ready(Err(io_error(error)));
        }
        let first = !pipe.shutdown;
        pipe.shutdown = true;
        pipe.writer = Some(cx.waker().clone());
        drop(pipe);
        if first {
            self.shared.driver.wake_now();
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::wake::ReadyQueue;
    use smoltcp::wire::IpAddress;

    fn flow(limit: usize) -> (Flow, Arc<Shared>, Arc<ReadyQueue>) {
        let queue = ReadyQueue::new();
        let shared = Arc::new(Shared {
            pipe: Mutex::default(),
            driver: ConnWaker::new(5, &queue),
            limit,
        });
        let endpoint = IpEndpoint::new(IpAddress::v4(10, 0, 0, 1), 80);
        let info = FlowInfo {
            id: ConnId::for_tests(5),
            local: endpoint,
            peer: endpoint,
            tls: None,
        };
        (
            Flow {
                shared: shared.clone(),
                info,
            },
            shared,
            queue,
        )
    }

    #[test]
    fn writes_wait_for_room_reads_wait_for_data_and_eof_reads_zero() {
        let (mut flow, shared, queue) = flow(8);
        let mut cx = Context::from_waker(Waker::noop());
        let pinned = Pin::new(&mut flow);
        assert!(matches!(
            pinned.poll_write(&mut cx, b"0123456789"),
            Poll::Ready(Ok(8))
        ));
        assert_eq!(queue.drain(), vec![5], "a write queues the connection");
        assert!(Pin::new(&mut flow).poll_write(&mut cx, b"x").is_pending());
        assert!(Pin::new(&mut flow).poll_flush(&mut cx).is_pending());
        shared.lock().tx.clear();
        assert!(Pin::new(&mut flow).poll_flush(&mut cx).is_ready());

        let mut storage = [0u8; 4];
        let mut buf = ReadBuf::new(&mut storage);
        assert!(Pin::new(&mut flow)
            .poll_read(&mut cx, &mut buf)
            .is_pending());
        shared.lock().rx.extend_from_slice(b"abcdefgh");
        shared.lock().rx_eof = true;
        assert!(Pin::new(&mut flow).poll_read(&mut cx, &mut buf).is_ready());
        assert_eq!(buf.filled(), b"abcd");
        let mut storage = [0u8; 8];
        let mut buf = ReadBuf::new(&mut storage);
        assert!(Pin::new(&mut flow).poll_read(&mut cx, &mut buf).is_ready());
        assert_eq!(buf.filled(), b"efgh");
        let mut buf = ReadBuf::new(&mut storage);
        assert!(matches!(
            Pin::new(&mut flow).poll_read(&mut cx, &mut buf),
            Poll::Ready(Ok(()))
        ));
        assert!(buf.filled().is_empty(), "end of stream reads zero bytes");
    }

    #[test]
    fn shutdown_waits_for_the_fin_then_writes_fail_and_errors_stick() {
        let (mut flow, shared, _queue) = flow(8);
        let mut cx = Context::from_waker(Waker::noop());
        assert!(Pin::new(&mut flow).poll_shutdown(&mut cx).is_pending());
        assert!(shared.lock().shutdown);
        assert!(matches!(
            Pin::new(&mut flow).poll_write(&mut cx, b"late"),
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::BrokenPipe
        ));
        shared.lock().write_closed = true;
        assert!(Pin::new(&mut flow).poll_shutdown(&mut cx).is_ready());
        shared.lock().error = Some((io::ErrorKind::ConnectionReset, "reset".into()));
        let mut storage = [0u8; 4];
        let mut buf = ReadBuf::new(&mut storage);
        assert!(matches!(
            Pin::new(&mut flow).poll_read(&mut cx, &mut buf),
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::ConnectionReset
        ));
        drop(flow);
        assert!(shared.lock().dropped);
    }
}
