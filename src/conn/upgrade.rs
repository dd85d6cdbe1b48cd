//! Tunnels: the byte stream of a connection after an HTTP exchange hands it over — paf's
//! `no_close` for proxies, and protocol upgrades.
//!
//! A handler answers `CONNECT host:port` with a `2xx`, or a request carrying `Upgrade:` with
//! `101 Switching Protocols`, and gives a task ([`Reply::tunnel`](crate::service::Reply::tunnel)).
//! Once the response is written, the task gets a [`Tunnel`]: what the peer sends after the
//! response (plaintext inside TLS), and a way to send bytes back, both with backpressure.
//! On HTTP/2 the same happens on one stream (RFC 9113 §8.5 `CONNECT`, RFC 8441 extended
//! `CONNECT` with a `:protocol`, see [`ConnectProtocol`]): DATA frames are the tunnel.
//!
//! The HTTP layer never closes a tunnelled connection behind the task's back. Each side closes
//! its own direction: when the task closes (or drops) its tunnel, FIN (TLS: `close_notify`)
//! follows the queued bytes while reading goes on; when the peer closes its side, the task
//! reads the end of the stream and may go on sending. The connection is closed for real once
//! both directions ended, at once when the peer resets it, and after the tunnel's idle
//! timeout. The client side ([`Client::upgrade`](crate::client::Client::upgrade),
//! [`Client::connect_tunnel`](crate::client::Client::connect_tunnel)) gives the same type.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;

use super::body::{request_body, BodyError, BodySender, BodyStream, IncomingBody};

/// Bytes a tunnel buffers in each direction before the sender has to wait.
pub const TUNNEL_BUFFER: usize = 64 * 1024;

/// How long a tunnel may carry nothing in either direction before it is closed.
pub const TUNNEL_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// The task that takes over a connection once the switching response is written.
pub type TunnelTask = Box<dyn FnOnce(Tunnel) -> Pin<Box<dyn Future<Output = ()>>>>;

/// Wraps a closure as a [`TunnelTask`].
pub(crate) fn tunnel_task<F, Fut>(task: F) -> TunnelTask
where
    F: FnOnce(Tunnel) -> Fut + 'static,
    Fut: Future<Output = ()> + 'static,
{
    Box::new(move |tunnel| Box::pin(task(tunnel)))
}

/// The `:protocol` of an HTTP/2 extended `CONNECT` (RFC 8441), e.g. `websocket`; found in
/// the request's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectProtocol(pub String);

/// Errors of a tunnel.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum TunnelError {
    /// The other end is gone (closed, reset, or dropped): nothing more can be sent.
    #[error("the tunnel is closed")]
    Closed,
}

/// One end of a bidirectional byte stream (see the [module docs](self)).
///
/// Dropping a tunnel closes its sending side after what is queued, like [`Tunnel::close`].
pub struct Tunnel {
    rx: IncomingBody,
    tx: BodySender,
    limit: usize,
    closed: bool,
}

impl fmt::Debug for Tunnel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tunnel")
            .field("queued", &self.queued())
            .field("closed", &self.closed)
            .finish()
    }
}

impl Tunnel {
    /// Two connected ends: what one sends, the other reads. Each direction buffers up to
    /// `limit` bytes before [`poll_ready`](Self::poll_ready) makes the sender wait.
    pub fn pair(limit: usize) -> (Tunnel, Tunnel) {
        let (a_tx, b_rx) = request_body(None);
        let (b_tx, a_rx) = request_body(None);
        let limit = limit.max(1);
        (
            Tunnel {
                rx: a_rx,
                tx: a_tx,
                limit,
                closed: false,
            },
            Tunnel {
                rx: b_rx,
                tx: b_tx,
                limit,
                closed: false,
            },
        )
    }

    /// An end made of an incoming body (what the peer sends) and a sender whose reader
    /// carries what this end sends.
    pub(crate) fn from_parts(rx: IncomingBody, tx: BodySender, limit: usize) -> Tunnel {
        Tunnel {
            rx,
            tx,
            limit: limit.max(1),
            closed: false,
        }
    }

    /// The next bytes the other end sent, at most `max`; `Ready(None)` once it closed its
    /// side and everything was read, an error if it failed.
    pub fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
        max: usize,
    ) -> Poll<Option<Result<Bytes, BodyError>>> {
        self.rx.poll_chunk(cx, max)
    }

    /// Reads the next bytes (at most [`TUNNEL_BUFFER`]); `None` at the end of the stream.
    pub fn read(&mut self) -> Read<'_> {
        Read { tunnel: self }
    }

    /// Ready when there is room to send; an error when the other end is gone.
    pub fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), TunnelError>> {
        if self.closed || self.tx.abandoned() {
            return Poll::Ready(Err(TunnelError::Closed));
        }
        if self.tx.buffered() < self.limit {
            return Poll::Ready(Ok(()));
        }
        self.tx.park(cx.waker());
        // The reader may have taken data between the check and the park.
        if self.tx.buffered() < self.limit {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }

    /// Bytes that can be sent before the buffer is full.
    pub fn room(&self) -> usize {
        self.limit.saturating_sub(self.tx.buffered())
    }

    /// Queues `data` (call after [`poll_ready`](Self::poll_ready) said there is room; one
    /// send may overshoot the limit).
    pub fn send(&mut self, data: Bytes) -> Result<(), TunnelError> {
        if self.closed || self.tx.abandoned() {
            return Err(TunnelError::Closed);
        }
        self.tx.push(data);
        Ok(())
    }

    /// Sends all of `data`, waiting for room.
    pub fn write_all(&mut self, data: impl Into<Bytes>) -> WriteAll<'_> {
        WriteAll {
            tunnel: self,
            data: data.into(),
        }
    }

    /// Bytes sent but not yet taken by the other end.
    pub fn queued(&self) -> usize {
        self.tx.buffered()
    }

    /// Closes the sending side: the other end reads what is queued, then the end of the
    /// stream.
    pub fn close(&mut self) {
        if !self.closed {
            self.closed = true;
            self.tx.finish();
        }
    }

    /// True when the other end's reader is gone (what is sent is discarded).
    pub(crate) fn is_abandoned(&self) -> bool {
        self.tx.abandoned()
    }

    /// Ends the sending side with an error the other end reads.
    pub(crate) fn fail(&mut self, error: BodyError) {
        self.closed = true;
        self.tx.fail(error);
    }

    /// True once the other end closed its side and everything it sent was read.
    pub fn is_read_closed(&self) -> bool {
        self.rx.is_finished()
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        self.close();
    }
}

/// A tunnel is also a tokio byte stream (the traits only): protocol libraries written for
/// `AsyncRead + AsyncWrite` run over it unchanged. Reads take what the other end sent
/// (zero bytes at its end of stream; its failure as a `ConnectionAborted` error); writes
/// queue up to the tunnel's limit and then wait; `poll_flush` is ready at once (queued bytes
/// go out as the connection takes them); `poll_shutdown` is [`Tunnel::close`], the
/// half-close.
impl tokio::io::AsyncRead for Tunnel {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let this = self.get_mut();
        match Tunnel::poll_read(this, cx, buf.remaining()) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => Poll::Ready(Ok(())),
            Poll::Ready(Some(Ok(chunk))) => {
                buf.put_slice(&chunk);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                e,
            ))),
        }
    }
}

impl tokio::io::AsyncWrite for Tunnel {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let this = self.get_mut();
        let closed = || std::io::Error::new(std::io::ErrorKind::BrokenPipe, TunnelError::Closed);
        match this.poll_ready(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(_)) => Poll::Ready(Err(closed())),
            Poll::Ready(Ok(())) => {
                let n = this.room().clamp(1, data.len());
                match this.send(Bytes::copy_from_slice(&data[..n])) {
                    Ok(()) => Poll::Ready(Ok(n)),
                    Err(_) => Poll::Ready(Err(closed())),
                }
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.get_mut().close();
        Poll::Ready(Ok(()))
    }
}

/// The future of [`Tunnel::read`].
#[derive(Debug)]
pub struct Read<'a> {
    tunnel: &'a mut Tunnel,
}

impl Future for Read<'_> {
    type Output = Option<Result<Bytes, BodyError>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        this.tunnel.poll_read(cx, TUNNEL_BUFFER)
    }
}

/// The future of [`Tunnel::write_all`].
#[derive(Debug)]
pub struct WriteAll<'a> {
    tunnel: &'a mut Tunnel,
    data: Bytes,
}

impl Future for WriteAll<'_> {
    type Output = Result<(), TunnelError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        while !this.data.is_empty() {
            match this.tunnel.poll_ready(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {
                    let n = this.tunnel.room().min(this.data.len()).max(1);
                    let chunk = this.data.split_to(n);
                    this.tunnel.send(chunk)?;
                }
            }
        }
        Poll::Ready(Ok(()))
    }
}

/// Copies bytes both ways between two tunnels until both directions ended (a proxy's
/// CONNECT: the client's tunnel and the origin's). Returns the bytes moved `a → b` and
/// `b → a`.
pub async fn splice(a: Tunnel, b: Tunnel) -> (u64, u64) {
    Splice {
        a,
        b,
        a_to_b: Direction::default(),
        b_to_a: Direction::default(),
    }
    .await
}

#[derive(Default)]
struct Direction {
    pending: Option<Bytes>,
    moved: u64,
    done: bool,
}

impl Direction {
    /// Moves what can move from `from` to `to`; true when anything moved or ended.
    fn pump(&mut self, from: &mut Tunnel, to: &mut Tunnel, cx: &mut Context<'_>) -> bool {
        let mut progress = false;
        while !self.done {
            match to.poll_ready(cx) {
                Poll::Pending => return progress,
                Poll::Ready(Err(_)) => {
                    // The receiving side is gone: stop reading from the sender, and tell it.
                    self.done = true;
                    from.close();
                    return true;
                }
                Poll::Ready(Ok(())) => {}
            }
            let chunk = match self.pending.take() {
                Some(chunk) => chunk,
                None => match from.poll_read(cx, to.room().max(1)) {
                    Poll::Pending => return progress,
                    Poll::Ready(Some(Ok(chunk))) => chunk,
                    Poll::Ready(None) => {
                        self.done = true;
                        to.close();
                        return true;
                    }
                    Poll::Ready(Some(Err(e))) => {
                        self.done = true;
                        to.fail(e);
                        return true;
                    }
                },
            };
            progress = true;
            self.moved += chunk.len() as u64;
            if to.send(chunk).is_err() {
                self.done = true;
                from.close();
            }
        }
        progress
    }
}

struct Splice {
    a: Tunnel,
    b: Tunnel,
    a_to_b: Direction,
    b_to_a: Direction,
}

impl Future for Splice {
    type Output = (u64, u64);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        loop {
            let moved = this.a_to_b.pump(&mut this.a, &mut this.b, cx)
                | this.b_to_a.pump(&mut this.b, &mut this.a, cx);
            if this.a_to_b.done && this.b_to_a.done {
                return Poll::Ready((this.a_to_b.moved, this.b_to_a.moved));
            }
            if !moved {
                return Poll::Pending;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::task::Wake;

    struct Noop;
    impl Wake for Noop {
        fn wake(self: Arc<Self>) {}
    }

    fn cx_waker() -> std::task::Waker {
        Arc::new(Noop).into()
    }

    #[test]
    fn pair_carries_bytes_both_ways_with_backpressure_and_close() {
        let waker = cx_waker();
        let mut cx = Context::from_waker(&waker);
        let (mut a, mut b) = Tunnel::pair(8);
        assert_eq!(a.poll_ready(&mut cx), Poll::Ready(Ok(())));
        a.send(Bytes::from_static(b"0123456789")).unwrap();
        // Over the limit: the sender waits until the reader takes data.
        assert_eq!(a.poll_ready(&mut cx), Poll::Pending);
        match b.poll_read(&mut cx, 4) {
            Poll::Ready(Some(Ok(chunk))) => assert_eq!(&chunk[..], b"0123"),
            other => panic!("{other:?}"),
        }
        assert_eq!(a.poll_ready(&mut cx), Poll::Ready(Ok(())));
        b.send(Bytes::from_static(b"back")).unwrap();
        match a.poll_read(&mut cx, 100) {
            Poll::Ready(Some(Ok(chunk))) => assert_eq!(&chunk[..], b"back"),
            other => panic!("{other:?}"),
        }
        a.close();
        match b.poll_read(&mut cx, 100) {
            Poll::Ready(Some(Ok(chunk))) => assert_eq!(&chunk[..], b"456789"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(b.poll_read(&mut cx, 100), Poll::Ready(None)));
        assert!(b.is_read_closed());
        // Dropping an end: the other can no longer send.
        drop(a);
        assert_eq!(b.send(Bytes::from_static(b"x")), Err(TunnelError::Closed));
    }

    #[test]
    fn tunnels_are_tokio_byte_streams() {
        use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
        let waker = cx_waker();
        let mut cx = Context::from_waker(&waker);
        let (mut a, mut b) = Tunnel::pair(8);
        // Writes take what fits the limit, then wait for the reader.
        assert!(matches!(
            Pin::new(&mut a).poll_write(&mut cx, b"0123456789"),
            Poll::Ready(Ok(8))
        ));
        assert!(Pin::new(&mut a).poll_write(&mut cx, b"89").is_pending());
        let mut storage = [0u8; 5];
        let mut buf = ReadBuf::new(&mut storage);
        assert!(Pin::new(&mut b).poll_read(&mut cx, &mut buf).is_ready());
        assert_eq!(buf.filled(), b"01234");
        assert!(matches!(
            Pin::new(&mut a).poll_write(&mut cx, b"89"),
            Poll::Ready(Ok(2))
        ));
        // The half-close: b reads the rest, then zero bytes; b can still send to a.
        assert!(Pin::new(&mut a).poll_shutdown(&mut cx).is_ready());
        let mut storage = [0u8; 16];
        let mut buf = ReadBuf::new(&mut storage);
        assert!(Pin::new(&mut b).poll_read(&mut cx, &mut buf).is_ready());
        assert_eq!(buf.filled(), b"567");
        let mut buf = ReadBuf::new(&mut storage);
        assert!(Pin::new(&mut b).poll_read(&mut cx, &mut buf).is_ready());
        assert_eq!(buf.filled(), b"89");
        let mut buf = ReadBuf::new(&mut storage);
        assert!(matches!(
            Pin::new(&mut b).poll_read(&mut cx, &mut buf),
            Poll::Ready(Ok(()))
        ));
        assert!(buf.filled().is_empty(), "end of stream");
        assert!(matches!(
            Pin::new(&mut b).poll_write(&mut cx, b"back"),
            Poll::Ready(Ok(4))
        ));
        let mut buf = ReadBuf::new(&mut storage);
        assert!(Pin::new(&mut a).poll_read(&mut cx, &mut buf).is_ready());
        assert_eq!(buf.filled(), b"back");
        // A gone peer: writes fail with BrokenPipe.
        drop(a);
        assert!(matches!(
            Pin::new(&mut b).poll_write(&mut cx, b"x"),
            Poll::Ready(Err(e)) if e.kind() == std::io::ErrorKind::BrokenPipe
        ));
    }

    #[test]
    fn splice_copies_until_both_sides_end() {
        let waker = cx_waker();
        let mut cx = Context::from_waker(&waker);
        let (mut client, proxy_a) = Tunnel::pair(16);
        let (proxy_b, mut origin) = Tunnel::pair(16);
        let mut splice = Box::pin(splice(proxy_a, proxy_b));
        let payload: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        let mut sent = 0;
        let mut got = Vec::new();
        let mut echoed = Vec::new();
        for _ in 0..10_000 {
            if sent < payload.len() && client.poll_ready(&mut cx).is_ready() {
                let n = client.room().min(payload.len() - sent);
                client
                    .send(Bytes::copy_from_slice(&payload[sent..sent + n]))
                    .unwrap();
                sent += n;
                if sent == payload.len() {
                    client.close();
                }
            }
            let _ = splice.as_mut().poll(&mut cx);
            while let Poll::Ready(Some(Ok(chunk))) = origin.poll_read(&mut cx, 7) {
                got.extend_from_slice(&chunk);
                origin.send(chunk).unwrap();
            }
            if origin.is_read_closed() {
                origin.close();
            }
            while let Poll::Ready(Some(Ok(chunk))) = client.poll_read(&mut cx, 1000) {
                echoed.extend_from_slice(&chunk);
            }
            if let Poll::Ready((ab, ba)) = splice.as_mut().poll(&mut cx) {
                while let Poll::Ready(Some(Ok(chunk))) = client.poll_read(&mut cx, 1000) {
                    echoed.extend_from_slice(&chunk);
                }
                assert_eq!(ab, 1000);
                assert_eq!(ba, 1000);
                assert_eq!(got, payload);
                assert_eq!(echoed, payload);
                assert!(matches!(client.poll_read(&mut cx, 1), Poll::Ready(None)));
                return;
            }
        }
        panic!("splice never finished: sent {sent}, got {}", got.len());
    }
}
