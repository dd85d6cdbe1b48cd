//! Message bodies for handlers: what a response carries and how a request body arrives.
//!
//! Everything is pulled: the connection asks a body for at most as many bytes as it can
//! send right now, so a slow reader never makes memory grow. Bodies that are not ready
//! return `Poll::Pending` and wake the connection through the `Context` when they are.

use std::collections::VecDeque;
use std::fmt;
use std::fs::File;
use std::future::Future;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::{Buf, Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Frame, SizeHint};

/// Largest chunk read from a file at once.
const FILE_CHUNK: usize = 64 * 1024;

/// Errors while producing or receiving a body.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BodyError {
    /// The body is larger than the limit the reader set.
    #[error("body larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// The peer went away or broke framing before the body ended.
    #[error("body incomplete: {0}")]
    Incomplete(String),
    /// Reading the source failed.
    #[error("reading the body failed")]
    Io(#[source] std::sync::Arc<std::io::Error>),
    /// The body's producer (a service's `http_body::Body`) failed.
    #[error("the body's source failed")]
    Source(#[source] std::sync::Arc<dyn std::error::Error + Send + Sync>),
}

/// A source of body bytes, pulled by the connection.
pub trait BodyStream {
    /// The next chunk of at most `max` bytes; `Ready(None)` at the end.
    fn poll_chunk(
        &mut self,
        cx: &mut Context<'_>,
        max: usize,
    ) -> Poll<Option<Result<Bytes, BodyError>>>;

    /// Writes the next bytes straight into `buf` (the free space of a socket's send
    /// buffer) and says how many: `Ready(Some(Ok(n)))` with `1 <= n <= buf.len()`,
    /// `Ready(None)` at the end. Bodies that make their bytes (a generator, a file read with
    /// `pread`) make them there; the default takes a chunk of at most `buf.len()` from
    /// [`poll_chunk`](Self::poll_chunk) and copies it in.
    fn poll_fill(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<Option<Result<usize, BodyError>>> {
        match self.poll_chunk(cx, buf.len()) {
            Poll::Ready(Some(Ok(chunk))) => Poll::Ready(Some(copy_chunk(&chunk, buf))),
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    /// The exact length, when known in advance (sent as Content-Length).
    fn len_hint(&self) -> Option<u64> {
        None
    }

    /// Trailers to send after the last chunk (asked once `poll_chunk` gave `Ready(None)`).
    /// HTTP/2 sends them; HTTP/1.1 sends them in the trailer section of a chunked body (a
    /// request's always, a response's when the request's `TE` lists `trailers`) and drops
    /// them otherwise.
    fn take_trailers(&mut self) -> Option<HeaderMap> {
        None
    }
}

/// Copies a chunk that [`BodyStream::poll_chunk`] gave for `buf.len()` bytes into `buf`.
fn copy_chunk(chunk: &[u8], buf: &mut [u8]) -> Result<usize, BodyError> {
    let Some(dest) = buf.get_mut(..chunk.len()) else {
        let msg = format!(
            "a body stream gave {} bytes, {} asked",
            chunk.len(),
            buf.len()
        );
        return Err(BodyError::Source(std::sync::Arc::from(Box::<
            dyn std::error::Error + Send + Sync,
        >::from(msg))));
    };
    dest.copy_from_slice(chunk);
    Ok(chunk.len())
}

enum Kind {
    Empty,
    Full(Bytes),
    /// `remaining` bytes of `file` from `offset`, read with `pread`.
    File {
        file: File,
        offset: u64,
        remaining: u64,
    },
    Stream(Box<dyn BodyStream>),
}

/// A response body: empty, bytes in memory, part of a file read in chunks, or a stream.
pub struct Body {
    kind: Kind,
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Empty => "empty".to_string(),
            Kind::Full(b) => format!("{} bytes", b.len()),
            Kind::File { remaining, .. } => format!("file, {remaining} bytes"),
            Kind::Stream(_) => "stream".to_string(),
        };
        write!(f, "Body({kind})")
    }
}

impl Default for Body {
    fn default() -> Self {
        Body::empty()
    }
}

impl Body {
    /// No body.
    pub fn empty() -> Self {
        Body { kind: Kind::Empty }
    }

    /// A body held in memory.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        if bytes.is_empty() {
            Body::empty()
        } else {
            Body {
                kind: Kind::Full(bytes),
            }
        }
    }

    /// `len` bytes of `file` from `offset`, read in chunks as the peer takes them.
    pub fn file(file: File, offset: u64, len: u64) -> Result<Self, BodyError> {
        Ok(Body {
            kind: Kind::File {
                file,
                offset,
                remaining: len,
            },
        })
    }

    /// Any [`http_body::Body`] (an axum or tower-http response body, a
    /// `http_body_util::Full`, ...): its frames are pulled as the peer takes them, its
    /// exact size hint becomes the length (Content-Length) and its trailers go out on
    /// HTTP/2. A tapir [`Body`] passed here is kept as it is.
    pub fn from_http<B>(body: B) -> Self
    where
        B: http_body::Body + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let mut slot = Some(body);
        if let Some(native) = (&mut slot as &mut dyn std::any::Any).downcast_mut::<Option<Body>>() {
            return native.take().unwrap_or_default();
        }
        slot.map_or_else(Body::empty, |body| Body::stream(HttpBody::new(body)))
    }

    /// A body produced by a stream.
    pub fn stream(stream: impl BodyStream + 'static) -> Self {
        Body {
            kind: Kind::Stream(Box::new(stream)),
        }
    }

    /// The length, when known before sending.
    pub fn len(&self) -> Option<u64> {
        match &self.kind {
            Kind::Empty => Some(0),
            Kind::Full(b) => Some(b.len() as u64),
            Kind::File { remaining, .. } => Some(*remaining),
            Kind::Stream(s) => s.len_hint(),
        }
    }

    /// True for a body known to be empty.
    pub fn is_empty(&self) -> bool {
        self.len() == Some(0)
    }
}

impl Body {
    /// Reads the file's next bytes into `buf` (at most what remains) with `pread`; a file
    /// that ends early is an error.
    fn read_file(&mut self, buf: &mut [u8]) -> Result<usize, BodyError> {
        let Kind::File {
            file,
            offset,
            remaining,
        } = &mut self.kind
        else {
            return Ok(0);
        };
        let want = usize::try_from(*remaining)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let dest = buf.get_mut(..want).unwrap_or_default();
        match file.read_at(dest, *offset) {
            Ok(0) if want > 0 => Err(BodyError::Io(
                std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "file is shorter than announced",
                )
                .into(),
            )),
            Ok(n) => {
                *offset += n as u64;
                *remaining -= n as u64;
                Ok(n)
            }
            Err(e) => Err(BodyError::Io(e.into())),
        }
    }
}

impl From<Bytes> for Body {
    fn from(bytes: Bytes) -> Self {
        Body::full(bytes)
    }
}

impl From<&'static str> for Body {
    fn from(s: &'static str) -> Self {
        Body::full(Bytes::from_static(s.as_bytes()))
    }
}

impl From<String> for Body {
    fn from(s: String) -> Self {
        Body::full(Bytes::from(s))
    }
}

impl From<Vec<u8>> for Body {
    fn from(v: Vec<u8>) -> Self {
        Body::full(Bytes::from(v))
    }
}

impl From<IncomingBody> for Body {
    /// Sends a request body back as a response body (an echo, a proxy). The request body
    /// will be read, so a client waiting on `Expect: 100-continue` is told to send it.
    fn from(body: IncomingBody) -> Self {
        body.pipe.borrow_mut().demanded = true;
        Body::stream(body)
    }
}

impl BodyStream for Body {
    fn poll_chunk(
        &mut self,
        cx: &mut Context<'_>,
        max: usize,
    ) -> Poll<Option<Result<Bytes, BodyError>>> {
        let max = max.max(1);
        match &mut self.kind {
            Kind::Empty => Poll::Ready(None),
            Kind::Full(bytes) => {
                let chunk = bytes.split_to(max.min(bytes.len()));
                if bytes.is_empty() {
                    self.kind = Kind::Empty;
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Kind::File { remaining, .. } => {
                if *remaining == 0 {
                    return Poll::Ready(None);
                }
                let want = (*remaining).min(max.min(FILE_CHUNK) as u64) as usize;
                let mut buf = BytesMut::zeroed(want);
                Poll::Ready(Some(self.read_file(&mut buf).map(|n| {
                    buf.truncate(n);
                    buf.freeze()
                })))
            }
            Kind::Stream(stream) => stream.poll_chunk(cx, max),
        }
    }

    fn poll_fill(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<Option<Result<usize, BodyError>>> {
        match &mut self.kind {
            Kind::Empty => Poll::Ready(None),
            Kind::Full(bytes) => {
                let chunk = bytes.split_to(buf.len().min(bytes.len()));
                if bytes.is_empty() {
                    self.kind = Kind::Empty;
                }
                Poll::Ready(Some(copy_chunk(&chunk, buf)))
            }
            Kind::File { remaining: 0, .. } => Poll::Ready(None),
            Kind::File { .. } => Poll::Ready(Some(self.read_file(buf))),
            Kind::Stream(stream) => stream.poll_fill(cx, buf),
        }
    }

    fn len_hint(&self) -> Option<u64> {
        self.len()
    }

    fn take_trailers(&mut self) -> Option<HeaderMap> {
        match &mut self.kind {
            Kind::Stream(stream) => stream.take_trailers(),
            _ => None,
        }
    }
}

/// The next http_body frame of a [`BodyStream`]: its chunks as they come, then its trailers.
fn poll_frame(
    stream: &mut impl BodyStream,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
    match stream.poll_chunk(cx, usize::MAX) {
        Poll::Ready(Some(chunk)) => Poll::Ready(Some(chunk.map(Frame::data))),
        Poll::Ready(None) => Poll::Ready(stream.take_trailers().map(|t| Ok(Frame::trailers(t)))),
        Poll::Pending => Poll::Pending,
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        poll_frame(self.get_mut(), cx)
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.kind, Kind::Empty)
    }

    fn size_hint(&self) -> SizeHint {
        match self.len() {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

/// An [`http_body::Body`] pulled as a [`BodyStream`]: a frame larger than the room the
/// connection has is handed out in parts.
struct HttpBody<B> {
    body: Pin<Box<B>>,
    /// The rest of the last data frame.
    pending: Bytes,
    trailers: Option<HeaderMap>,
    ended: bool,
}

impl<B> HttpBody<B> {
    fn new(body: B) -> Self {
        HttpBody {
            body: Box::pin(body),
            pending: Bytes::new(),
            trailers: None,
            ended: false,
        }
    }
}

impl<B> BodyStream for HttpBody<B>
where
    B: http_body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn poll_chunk(
        &mut self,
        cx: &mut Context<'_>,
        max: usize,
    ) -> Poll<Option<Result<Bytes, BodyError>>> {
        let max = max.max(1);
        loop {
            if !self.pending.is_empty() {
                let n = max.min(self.pending.len());
                return Poll::Ready(Some(Ok(self.pending.split_to(n))));
            }
            if self.ended {
                return Poll::Ready(None);
            }
            match self.body.as_mut().poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => self.ended = true,
                Poll::Ready(Some(Err(e))) => {
                    self.ended = true;
                    return Poll::Ready(Some(Err(BodyError::Source(std::sync::Arc::from(
                        e.into(),
                    )))));
                }
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(mut data) => self.pending = data.copy_to_bytes(data.remaining()),
                    Err(frame) => {
                        // Trailers end the body (http_body's contract).
                        if let Ok(trailers) = frame.into_trailers() {
                            self.trailers = Some(trailers);
                            self.ended = true;
                        }
                    }
                },
            }
        }
    }

    fn len_hint(&self) -> Option<u64> {
        if self.ended {
            return Some(self.pending.len() as u64);
        }
        let rest = self.body.size_hint().exact()?;
        Some(rest + self.pending.len() as u64)
    }

    fn take_trailers(&mut self) -> Option<HeaderMap> {
        self.trailers.take()
    }
}

/// The shared state between the connection (writer) and the handler (reader) of a
/// request body.
#[derive(Debug, Default)]
struct Pipe {
    chunks: VecDeque<Bytes>,
    buffered: usize,
    ended: bool,
    error: Option<BodyError>,
    reader: Option<Waker>,
    /// The writer, parked while the pipe is full.
    writer: Option<Waker>,
    /// The reader asked for data at least once (sends `100 Continue` when expected).
    demanded: bool,
    /// The reader was dropped: later data is discarded.
    abandoned: bool,
    len: Option<u64>,
    /// Bytes the reader took so far.
    read: u64,
    /// Trailers that came after the body (HTTP/2), until the reader takes them.
    trailers: Option<HeaderMap>,
}

/// The pipe behind a mutex, so that an incoming body is `Send` (axum and most tower
/// services want `Send` request bodies); only the loop's thread uses it in practice, so
/// the lock is never contended.
#[derive(Debug, Default)]
struct PipeCell(Mutex<Pipe>);

impl PipeCell {
    fn borrow_mut(&self) -> MutexGuard<'_, Pipe> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn borrow(&self) -> MutexGuard<'_, Pipe> {
        self.borrow_mut()
    }
}

/// A body as it arrives from the peer: a request body on a server, a response body on a
/// client. Read it as a stream ([`BodyStream`]), collect it ([`IncomingBody::collect`]) or
/// hand it straight to a response ([`Body::from`]).
#[derive(Debug, Clone)]
pub struct IncomingBody {
    pipe: Arc<PipeCell>,
}

/// A request body, as a handler receives it.
pub type RequestBody = IncomingBody;
/// The body of a request a [`tower::Service`] receives (`http::Request<Incoming>`): an
/// [`http_body::Body`] with `Bytes` frames.
pub type Incoming = IncomingBody;
/// A response body, as a client receives it.
pub type ResponseBody = IncomingBody;

/// The connection's end of an incoming body.
#[derive(Debug)]
pub(crate) struct BodySender {
    pipe: Arc<PipeCell>,
}

/// Creates a request body and the sender the connection fills it through.
/// `len` is the declared length, if any.
pub(crate) fn request_body(len: Option<u64>) -> (BodySender, IncomingBody) {
    let pipe = Arc::new(PipeCell(Mutex::new(Pipe {
        len,
        ..Pipe::default()
    })));
    (BodySender { pipe: pipe.clone() }, IncomingBody { pipe })
}

impl BodySender {
    /// Adds received bytes.
    pub(crate) fn push(&self, data: Bytes) {
        let mut pipe = self.pipe.borrow_mut();
        if pipe.abandoned || data.is_empty() {
            return;
        }
        pipe.buffered += data.len();
        pipe.chunks.push_back(data);
        if let Some(w) = pipe.reader.take() {
            w.wake();
        }
    }

    /// The body is complete.
    pub(crate) fn finish(&self) {
        let mut pipe = self.pipe.borrow_mut();
        pipe.ended = true;
        if let Some(w) = pipe.reader.take() {
            w.wake();
        }
    }

    /// The body is complete, with trailers after it.
    pub(crate) fn finish_with_trailers(&self, trailers: HeaderMap) {
        self.pipe.borrow_mut().trailers = Some(trailers);
        self.finish();
    }

    /// The body will never complete.
    pub(crate) fn fail(&self, error: BodyError) {
        let mut pipe = self.pipe.borrow_mut();
        if !pipe.ended {
            pipe.error = Some(error);
            pipe.ended = true;
        }
        if let Some(w) = pipe.reader.take() {
            w.wake();
        }
    }

    /// Bytes received but not read yet (the connection stops reading the socket above a
    /// bound, which is the backpressure towards the client).
    pub(crate) fn buffered(&self) -> usize {
        let pipe = self.pipe.borrow();
        if pipe.abandoned {
            0
        } else {
            pipe.buffered
        }
    }

    /// Parks the writer until the reader takes data (call when the pipe is full).
    pub(crate) fn park(&self, waker: &Waker) {
        self.pipe.borrow_mut().writer = Some(waker.clone());
    }

    /// True once the reader was dropped (whatever is pushed now is thrown away).
    pub(crate) fn abandoned(&self) -> bool {
        self.pipe.borrow().abandoned
    }

    /// True once the handler tried to read (or dropped the body).
    pub(crate) fn demanded(&self) -> bool {
        let pipe = self.pipe.borrow();
        pipe.demanded || pipe.abandoned
    }
}

impl Drop for IncomingBody {
    fn drop(&mut self) {
        // The sender holds one reference; when the last handler-side clone goes, the
        // body is abandoned and whatever still arrives is thrown away.
        if Arc::strong_count(&self.pipe) == 2 {
            let mut pipe = self.pipe.borrow_mut();
            pipe.abandoned = true;
            pipe.chunks.clear();
            pipe.buffered = 0;
        }
    }
}

impl IncomingBody {
    /// An empty, complete body (for requests made by hand, in tests).
    pub fn empty() -> Self {
        let (sender, body) = request_body(Some(0));
        sender.finish();
        body
    }

    /// A complete body holding `bytes`.
    pub fn from_bytes(bytes: impl Into<Bytes>) -> Self {
        let bytes: Bytes = bytes.into();
        let (sender, body) = request_body(Some(bytes.len() as u64));
        sender.push(bytes);
        sender.finish();
        body
    }

    /// True once the body ended (or failed) and every byte was read.
    pub fn is_finished(&self) -> bool {
        let pipe = self.pipe.borrow();
        pipe.ended && pipe.chunks.is_empty()
    }

    /// The declared length (Content-Length), if the request had one.
    pub fn declared_len(&self) -> Option<u64> {
        self.pipe.borrow().len
    }

    /// Reads the whole body into memory, failing with [`BodyError::TooLarge`] beyond `limit`.
    pub fn collect(self, limit: u64) -> Collect {
        Collect {
            body: self,
            limit,
            buf: BytesMut::new(),
        }
    }
}

impl BodyStream for IncomingBody {
    fn poll_chunk(
        &mut self,
        cx: &mut Context<'_>,
        max: usize,
    ) -> Poll<Option<Result<Bytes, BodyError>>> {
        let mut pipe = self.pipe.borrow_mut();
        pipe.demanded = true;
        if let Some(front) = pipe.chunks.front_mut() {
            let chunk = if front.len() > max.max(1) {
                front.split_to(max.max(1))
            } else {
                pipe.chunks.pop_front().unwrap_or_default()
            };
            pipe.buffered -= chunk.len();
            pipe.read += chunk.len() as u64;
            if let Some(w) = pipe.writer.take() {
                w.wake();
            }
            return Poll::Ready(Some(Ok(chunk)));
        }
        if let Some(e) = pipe.error.clone() {
            return Poll::Ready(Some(Err(e)));
        }
        if pipe.ended {
            return Poll::Ready(None);
        }
        pipe.reader = Some(cx.waker().clone());
        Poll::Pending
    }

    fn len_hint(&self) -> Option<u64> {
        self.pipe.borrow().len
    }

    fn take_trailers(&mut self) -> Option<HeaderMap> {
        self.pipe.borrow_mut().trailers.take()
    }
}

impl http_body::Body for IncomingBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        poll_frame(self.get_mut(), cx)
    }

    fn is_end_stream(&self) -> bool {
        self.is_finished() && self.pipe.borrow().trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        let pipe = self.pipe.borrow();
        match pipe.len {
            Some(len) => SizeHint::with_exact(len.saturating_sub(pipe.read)),
            None => SizeHint::default(),
        }
    }
}

/// The future of [`IncomingBody::collect`].
#[derive(Debug)]
pub struct Collect {
    body: IncomingBody,
    limit: u64,
    buf: BytesMut,
}

impl Future for Collect {
    type Output = Result<Bytes, BodyError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Some(len) = this.body.declared_len() {
            if len > this.limit {
                return Poll::Ready(Err(BodyError::TooLarge { limit: this.limit }));
            }
        }
        loop {
            match this.body.poll_chunk(cx, usize::MAX) {
                Poll::Ready(Some(Ok(chunk))) => {
                    if (this.buf.len() + chunk.len()) as u64 > this.limit {
                        return Poll::Ready(Err(BodyError::TooLarge { limit: this.limit }));
                    }
                    this.buf.extend_from_slice(&chunk);
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
                Poll::Ready(None) => {
                    return Poll::Ready(Ok(std::mem::take(&mut this.buf).freeze()))
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
