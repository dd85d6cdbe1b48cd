//! The per-connection HTTP/1.1 client state machine (sans-IO).
//!
//! [`ClientConn`] serializes requests into an output buffer
//! ([`ClientConn::pending_output`]) and parses the responses fed to it
//! ([`ClientConn::handle_input`]) into [`ClientEvent`]s. It never touches
//! sockets, threads or clocks: time comes in as a [`Duration`] since an arbitrary,
//! caller-chosen epoch, and [`ClientConn::poll_timeout`] / [`ClientConn::handle_timeout`]
//! run its two timers, as the server engine's: the response-head timeout
//! (`response_timeout`, from sending a request, or the end of the previous response, to
//! the head of its response; expiry fails the connection with
//! [`ProtocolError::HeadTimeout`]) and the idle timeout (`idle_timeout` with nothing
//! outstanding; expiry closes the connection quietly).
//!
//! It is the client role on the connection core the server uses (`conn`): the same head
//! reader, body decoder and encoder, output buffer and errors.
//!
//! Memory is bounded by [`ClientConfig`]: the incomplete response head
//! (`max_head_size`), decoded-but-untaken body bytes (`max_body_buffer`) and,
//! for request bodies, buffered output (`max_output_buffer`, see
//! [`ClientConn::send_capacity`]). Queued events are also capped: when too many
//! are waiting, `handle_input` consumes nothing more until `poll_event` drains
//! them (backpressure, like a full body buffer).
//!
//! # Decisions
//!
//! * **Requests.** Always `HTTP/1.1`. The request-target is origin-form
//!   (`/path?query`), authority-form for `CONNECT`, or absolute-form without
//!   userinfo when [`ClientConn::set_absolute_form`] is on (forward proxies)
//!   and the URI has a scheme and authority. `host` comes first, from the URI
//!   authority (userinfo stripped; empty if there is none) unless the
//!   application supplied one. The engine owns framing: the application's
//!   `Content-Length` / `Transfer-Encoding` are dropped; `Some(n)` writes
//!   `content-length: n` (omitted for `n == 0` on methods that define no
//!   request content: GET, HEAD, DELETE, OPTIONS, TRACE, CONNECT), `None`
//!   writes `transfer-encoding: chunked`. Header names are written lowercase.
//! * **One request body at a time.** A request whose body is not complete
//!   must be finished before the next `send_request`
//!   ([`H1ClientError::RequestInProgress`]). Requests with no body or with a
//!   `Content-Length` body are complete once all declared bytes were sent
//!   (`finish_request` is then optional); chunked bodies need
//!   `finish_request`. Completed requests may be pipelined; responses are
//!   matched to requests in order.
//! * **Response framing** (RFC 9112 §6.3). Responses to HEAD, and 1xx / 204 /
//!   304 responses, have no body. A `2xx` to `CONNECT` and a `101` end the
//!   HTTP exchange: `Response` (framing `None`) and `BodyEnd` are reported,
//!   parsing stops and every byte after the head belongs to the caller (it is
//!   not consumed; see [`ClientConn::is_upgraded`]). `Transfer-Encoding` with
//!   `chunked` as the final coding is decoded; its trailer fields are reported as
//!   [`ClientEvent::Trailers`] before `BodyEnd` (the server sends them only to a request
//!   with `TE: trailers`); any other final coding, `Transfer-Encoding` in an HTTP/1.0
//!   response, or neither `Transfer-Encoding` nor `Content-Length` means the
//!   body runs until EOF. `Transfer-Encoding` overrides `Content-Length`, but
//!   the connection is then not reused. More than one `Content-Length`
//!   (field or list element, even equal ones), an invalid one, `chunked`
//!   applied twice or an empty `Transfer-Encoding` fail the connection.
//! * **Interim responses.** 1xx other than 101 are reported as
//!   [`ClientEvent::Interim`] (their header fields are discarded); the engine
//!   never holds back a request body waiting for `100 Continue`: the caller
//!   decides when to send it.
//! * **Persistence.** The connection is not reused after a response with
//!   `Connection: close`, an HTTP/1.0 response without `keep-alive`, a
//!   close-delimited body, or a request the application marked
//!   `Connection: close`. When such a response ends, reading stops; requests
//!   pipelined behind it are reported unanswered with
//!   [`ClientError::ClosedBeforeResponse`].
//! * **Strictness.** Bare LF and obsolete line folding in a response head are
//!   errors (no repair). Any protocol error emits [`ClientEvent::Failed`]
//!   (after the body bytes decoded so far), drops pending output and closes:
//!   nothing else is reported and later input is discarded. Bytes received
//!   while no request is outstanding are an error too.
//! * **EOF.** In a close-delimited body: `BodyEnd`. Before or inside a head,
//!   or inside a framed body, while a response is expected: `Failed`. With
//!   nothing outstanding: a clean close without events.

use std::collections::VecDeque;
use std::sync::Arc;

use core::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName};
use http::{Method, StatusCode};

use super::body::BodyDecoder;
use super::chunked::ChunkedDecoder;
use super::conn::{
    earliest, BodyBuffer, BodyEncoder, HeadLimits, HeadReader, HeadStep, Misframed, Output, Timer,
};
use super::head;
use super::{H1Error, ProtocolError, ResponseFraming};

/// Sequential id of a request/response exchange on one connection (starting at 0).
pub type ExchangeId = u64;

/// At most this many events are queued before `handle_input` stops consuming.
const MAX_QUEUED_EVENTS: usize = 16;

/// Limits and timeouts of an HTTP/1.1 client connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Maximum size of one response head (status line + header fields); also
    /// bounds the trailer section of a chunked body.
    pub max_head_size: usize,
    /// Maximum number of header fields in a response head.
    pub max_headers: usize,
    /// Maximum decoded response body bytes not yet taken via `poll_event`.
    pub max_body_buffer: usize,
    /// Maximum buffered request bytes (see [`ClientConn::send_capacity`]).
    pub max_output_buffer: usize,
    /// Time allowed from sending a request (or the end of the response before it) to the
    /// head of its response; `None`: no limit.
    pub response_timeout: Option<Duration>,
    /// Time a connection with nothing outstanding is kept open before it closes.
    pub idle_timeout: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            max_head_size: 64 * 1024,
            max_headers: 128,
            max_body_buffer: 64 * 1024,
            max_output_buffer: 64 * 1024,
            response_timeout: Some(Duration::from_secs(60)),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// Something the application must react to.
// `Response` is much larger than the other variants; events are short-lived
// and few (bounded by MAX_QUEUED_EVENTS), so boxing is not worth the API cost.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum ClientEvent {
    /// A final response head (1xx interim responses are reported as
    /// [`Interim`](Self::Interim), except 101). Always followed by `Body`
    /// events and `BodyEnd`, or by `Failed`.
    Response {
        /// The exchange this response answers.
        id: ExchangeId,
        /// The response head (status, version, header fields as received).
        head: http::Response<()>,
        /// How the body is framed.
        body: ResponseFraming,
    },
    /// An interim (1xx, not 101) response, e.g. `100 Continue`.
    Interim {
        /// The exchange it belongs to.
        id: ExchangeId,
        /// Its status.
        status: StatusCode,
    },
    /// Decoded response body bytes, in order.
    Body {
        /// The exchange id.
        id: ExchangeId,
        /// Body bytes.
        data: Bytes,
    },
    /// The trailer fields of a chunked response (only when it had some), just before
    /// its `BodyEnd`.
    Trailers {
        /// The exchange id.
        id: ExchangeId,
        /// The trailer fields.
        trailers: HeaderMap,
    },
    /// The response body is complete.
    BodyEnd {
        /// The exchange id.
        id: ExchangeId,
    },
    /// The response was malformed, late or the server closed early; the connection
    /// is unusable. No events follow.
    Failed {
        /// The exchange whose response was affected (`None` if none was outstanding).
        id: Option<ExchangeId>,
        /// What went wrong.
        error: ProtocolError,
    },
}

/// A request waiting for (the start of) its response.
#[derive(Debug, Clone, Copy)]
struct Awaiting {
    id: ExchangeId,
    head_req: bool,
    connect: bool,
    close: bool,
}

/// The request whose body is being sent.
#[derive(Debug, Clone, Copy)]
struct Sending {
    id: ExchangeId,
    body: BodyEncoder,
}

/// How the response body is being decoded.
#[derive(Debug)]
enum ReadState {
    /// Waiting for or accumulating a response head.
    Head,
    /// Decoding the body of response `id`.
    Body {
        id: ExchangeId,
        decoder: BodyDecoder,
        keep_alive: bool,
    },
    /// After 101 / CONNECT 2xx: the stream belongs to the caller.
    Upgraded,
    /// Failed or finished: input is consumed and dropped.
    Closed,
}

/// One HTTP/1.1 client connection (sans-IO).
///
/// Typical driving loop: `send_request` (+ `send_body` / `finish_request`
/// within [`send_capacity`](Self::send_capacity)), write
/// [`pending_output`](Self::pending_output) and report it with
/// `consume_output`, offer received bytes with `handle_input` (keep the
/// unconsumed rest and offer it again after draining `poll_event`), call
/// `handle_eof` once all received bytes were offered and the peer closed, arm a
/// timer at `poll_timeout` and call `handle_timeout`, and close the socket once
/// [`is_closed`](Self::is_closed) (after draining events).
#[derive(Debug)]
pub struct ClientConn {
    config: Arc<ClientConfig>,
    absolute_form: bool,
    next_id: ExchangeId,
    awaiting: VecDeque<Awaiting>,
    sending: Option<Sending>,
    /// No more requests: a request or response asked to close.
    closing: bool,
    read: ReadState,
    head: HeadReader,
    events: VecDeque<ClientEvent>,
    body: BodyBuffer,
    output: Output,
    /// The trailer fields the request being sent declared (`Trailer`), if it did.
    declared_trailers: Option<Vec<HeaderName>>,
    /// The response-head timer runs since then (a response is awaited, none being read).
    head_wait_since: Option<Duration>,
    /// The idle timer runs since then (nothing outstanding).
    idle_since: Option<Duration>,
}

impl ClientConn {
    /// Creates an idle connection; `now` starts its idle timer.
    pub fn new(config: Arc<ClientConfig>, now: Duration) -> Self {
        Self {
            config,
            absolute_form: false,
            next_id: 0,
            awaiting: VecDeque::new(),
            sending: None,
            closing: false,
            read: ReadState::Head,
            head: HeadReader::default(),
            events: VecDeque::new(),
            body: BodyBuffer::default(),
            output: Output::default(),
            declared_trailers: None,
            head_wait_since: None,
            idle_since: Some(now),
        }
    }

    /// Uses absolute-form request-targets (`http://host/path`) for requests
    /// whose URI has a scheme and authority: for connections to a forward
    /// proxy. Off by default.
    pub fn set_absolute_form(&mut self, on: bool) {
        self.absolute_form = on;
    }

    /// Queues a request head at `now` (which starts its response-head timer if no other
    /// response is awaited) and returns its exchange id.
    ///
    /// Writes the request line, `host` (from the URI authority unless given),
    /// the application's header fields (minus `Content-Length` /
    /// `Transfer-Encoding`) and the framing: `Some(n)` → `Content-Length`
    /// (omitted for `n == 0` on methods without request content), `None` →
    /// `Transfer-Encoding: chunked`. Several complete requests may be queued
    /// (pipelining), but the body of the previous one must be finished.
    pub fn send_request(
        &mut self,
        head: http::request::Parts,
        body_len: Option<u64>,
        now: Duration,
    ) -> Result<ExchangeId, H1Error> {
        if !self.can_write() || self.closing {
            return Err(H1Error::Closed);
        }
        if let Some(s) = self.sending {
            return Err(H1Error::RequestInProgress(s.id));
        }
        let connect = head.method == Method::CONNECT;
        let target = request_target(&head.method, &head.uri, self.absolute_form)?;
        let close = head::has_close_token(&head.headers);

        let out = self.output.buf_mut();
        out.extend_from_slice(head.method.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(target.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\n");
        if !head.headers.contains_key(header::HOST) {
            let host = head.uri.authority().map_or("", host_port);
            head::write_header(out, b"host", host.as_bytes());
        }
        for (name, value) in &head.headers {
            if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING {
                continue;
            }
            head::write_header(out, name.as_str().as_bytes(), value.as_bytes());
        }
        if head.headers.contains_key(header::TE)
            && !head::has_connection_option(&head.headers, b"te")
        {
            // TE is hop-by-hop: its sender also lists it in Connection (RFC 9110 §10.1.4).
            head::write_header(out, b"connection", b"te");
        }
        let body = match body_len {
            Some(0) => {
                if method_has_content(&head.method) {
                    head::write_header(out, b"content-length", b"0");
                }
                None
            }
            Some(n) => {
                head::write_header(out, b"content-length", n.to_string().as_bytes());
                Some(BodyEncoder::Length { remaining: n })
            }
            None => {
                head::write_header(out, b"transfer-encoding", b"chunked");
                Some(BodyEncoder::Chunked { trailers: true })
            }
        };
        self.declared_trailers = head::declared_trailers(&head.headers);
        out.extend_from_slice(b"\r\n");

        let id = self.next_id;
        self.next_id += 1;
        self.sending = body.map(|body| Sending { id, body });
        if self.awaiting.is_empty() && matches!(self.read, ReadState::Head) {
            self.head_wait_since = Some(now);
        }
        self.awaiting.push_back(Awaiting {
            id,
            head_req: head.method == Method::HEAD,
            connect,
            close,
        });
        if close {
            self.closing = true;
        }
        self.update_idle(now);
        Ok(id)
    }

    /// Appends request body bytes for exchange `id` (chunk-encoded if
    /// chunked). Fails beyond the declared length or beyond
    /// [`send_capacity`](Self::send_capacity). A `Content-Length` request is
    /// complete once all declared bytes were sent.
    pub fn send_body(&mut self, id: ExchangeId, data: &[u8]) -> Result<(), H1Error> {
        if !self.can_write() {
            return Err(H1Error::Closed);
        }
        let Some(mut s) = self.sending.filter(|s| s.id == id) else {
            return Err(self.not_sending(id));
        };
        if data.is_empty() {
            return Ok(());
        }
        let capacity = self.send_capacity();
        if data.len() > capacity {
            return Err(H1Error::OutputFull {
                requested: data.len(),
                capacity,
            });
        }
        if let Err(Misframed::TooLong(excess)) = s.body.encode(self.output.buf_mut(), data) {
            return Err(H1Error::BodyTooLong { id, excess });
        }
        let complete = s.body == BodyEncoder::Length { remaining: 0 };
        self.sending = (!complete).then_some(s);
        Ok(())
    }

    /// Ends the body of request `id` (writes the last chunk if chunked).
    /// Finishing an already complete request does nothing. If fewer bytes
    /// than the declared `Content-Length` were sent, returns
    /// [`H1Error::BodyTooShort`] and the request stays open.
    pub fn finish_request(&mut self, id: ExchangeId) -> Result<(), H1Error> {
        self.finish_request_with_trailers(id, None)
    }

    /// Ends the body of request `id` like [`finish_request`](Self::finish_request), with
    /// trailer fields after the last chunk when the request is chunked (RFC 9112 §7.1.2):
    /// never the fields a trailer section must not carry ([`super::is_forbidden_trailer`]),
    /// and only the names the request head declared in `Trailer` if it has that field. A
    /// `Content-Length` request has no trailer section: its trailers are dropped.
    pub fn finish_request_with_trailers(
        &mut self,
        id: ExchangeId,
        trailers: Option<&HeaderMap>,
    ) -> Result<(), H1Error> {
        if !self.can_write() {
            return Err(H1Error::Closed);
        }
        let declared = self.declared_trailers.as_deref();
        match self.sending {
            Some(s) if s.id == id => match s.body.finish(self.output.buf_mut(), trailers, declared)
            {
                Err(Misframed::TooShort(missing)) | Err(Misframed::TooLong(missing)) => {
                    Err(H1Error::BodyTooShort { id, missing })
                }
                Ok(()) => {
                    self.sending = None;
                    Ok(())
                }
            },
            _ if id < self.next_id => Ok(()),
            _ => Err(H1Error::UnknownRequest(id)),
        }
    }

    /// How many more request-body bytes the engine accepts right now
    /// (`max_output_buffer` minus unwritten output; chunk framing adds a few
    /// bytes on top). Request heads are always accepted.
    pub fn send_capacity(&self) -> usize {
        if !self.can_write() {
            return 0;
        }
        self.config
            .max_output_buffer
            .saturating_sub(self.pending_output().len())
    }

    /// Bytes ready for the wire (still returned after an upgrade: they
    /// precede the caller's own bytes).
    pub fn pending_output(&self) -> &[u8] {
        self.output.pending()
    }

    /// Reports that `n` bytes of [`pending_output`](Self::pending_output) were written.
    pub fn consume_output(&mut self, n: usize) {
        self.output.consume(n);
    }

    /// Offers bytes received at `now`; returns how many were consumed. Fewer than
    /// offered (even 0) under backpressure (full body buffer or event queue:
    /// drain [`poll_event`](Self::poll_event) and offer the rest again), and
    /// after an upgrade (the unconsumed bytes belong to the caller). After a
    /// failure or close, input is consumed and dropped.
    pub fn handle_input(&mut self, data: &[u8], now: Duration) -> usize {
        let mut consumed = 0usize;
        loop {
            let rest = data.get(consumed..).unwrap_or(&[]);
            let n = match self.read {
                ReadState::Closed => {
                    consumed = data.len();
                    break;
                }
                ReadState::Upgraded => break,
                _ if self.events.len() >= MAX_QUEUED_EVENTS => break,
                ReadState::Head => {
                    if rest.is_empty() {
                        break;
                    }
                    if self.awaiting.is_empty() {
                        self.fail(None, ProtocolError::UnsolicitedData);
                        consumed = data.len();
                        break;
                    }
                    self.read_head(rest, now)
                }
                ReadState::Body { .. } => self.read_body(rest, now),
            };
            consumed += n;
            if n == 0 && matches!(self.read, ReadState::Head | ReadState::Body { .. }) {
                // Need more input or more room.
                break;
            }
        }
        self.flush_body();
        self.update_idle(now);
        consumed.min(data.len())
    }

    /// The server closed its sending side. Offer all received bytes first.
    /// Ends a close-delimited body (`BodyEnd`); fails if a response is still
    /// expected or incomplete; otherwise closes quietly. Ignored after an upgrade.
    pub fn handle_eof(&mut self) {
        match &self.read {
            ReadState::Closed | ReadState::Upgraded => {}
            ReadState::Head => {
                let front = self.awaiting.front().map(|a| a.id);
                match front {
                    Some(id) if self.head.buffered() > 0 => {
                        self.fail(Some(id), ProtocolError::EofInHead)
                    }
                    Some(id) => self.fail(Some(id), ProtocolError::ClosedBeforeResponse),
                    None => self.shut_down(),
                }
            }
            ReadState::Body {
                id,
                decoder: BodyDecoder::Close,
                ..
            } => {
                let id = *id;
                self.end_response(id, false, None);
            }
            ReadState::Body { id, .. } => {
                let id = *id;
                self.fail(Some(id), ProtocolError::EofInBody);
            }
        }
    }

    /// Absolute deadline of the next timer (response head or idle), if any.
    pub fn poll_timeout(&self) -> Option<Duration> {
        if !matches!(self.read, ReadState::Head | ReadState::Body { .. }) {
            return None;
        }
        earliest([self.head_timer().deadline(), self.idle_timer().deadline()])
    }

    /// Fires expired timers: a late response head fails the connection
    /// ([`ProtocolError::HeadTimeout`] for the awaited exchange); an expired idle timeout
    /// closes it quietly.
    pub fn handle_timeout(&mut self, now: Duration) {
        if !matches!(self.read, ReadState::Head | ReadState::Body { .. }) {
            return;
        }
        if self.head_timer().expired(now) {
            let front = self.awaiting.front().map(|a| a.id);
            self.fail(front, ProtocolError::HeadTimeout);
        } else if self.idle_timer().expired(now) {
            self.shut_down();
        }
    }

    /// Returns the next event, if any. Taking a `Body` event frees room in
    /// the body buffer (offer pending input again afterwards).
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        let ev = self.events.pop_front()?;
        if let ClientEvent::Body { data, .. } = &ev {
            self.body.taken(data.len());
        }
        Some(ev)
    }

    /// True when the connection can take another request: nothing broken or
    /// upgraded, no response pending, no request body unfinished, and neither
    /// side asked to close.
    pub fn is_reusable(&self) -> bool {
        matches!(self.read, ReadState::Head)
            && self.head.buffered() == 0
            && self.awaiting.is_empty()
            && self.sending.is_none()
            && !self.closing
    }

    /// True once the connection is done (failed, EOF, idle timeout, or a closing response
    /// ended): the caller should drain [`poll_event`](Self::poll_event) and close the
    /// socket.
    pub fn is_closed(&self) -> bool {
        matches!(self.read, ReadState::Closed)
    }

    /// True after a `101 Switching Protocols` response or a `2xx` response to
    /// `CONNECT`: the engine stops parsing and every byte after that response
    /// head (left unconsumed by `handle_input`) belongs to the caller, as does
    /// the connection once [`pending_output`](Self::pending_output) is written.
    pub fn is_upgraded(&self) -> bool {
        matches!(self.read, ReadState::Upgraded)
    }

    // ----- internals -----

    fn can_write(&self) -> bool {
        matches!(self.read, ReadState::Head | ReadState::Body { .. })
    }

    fn head_timer(&self) -> Timer {
        let waiting = self
            .head_wait_since
            .filter(|_| matches!(self.read, ReadState::Head) && !self.awaiting.is_empty());
        match self.config.response_timeout {
            Some(limit) => Timer::new(waiting, limit),
            None => Timer::new(None, Duration::ZERO),
        }
    }

    fn idle_timer(&self) -> Timer {
        Timer::new(self.idle_since, self.config.idle_timeout)
    }

    /// Starts the idle timer when nothing is outstanding, stops it otherwise.
    fn update_idle(&mut self, now: Duration) {
        let idle = matches!(self.read, ReadState::Head)
            && self.awaiting.is_empty()
            && self.sending.is_none()
            && self.head.buffered() == 0;
        if !idle {
            self.idle_since = None;
        } else if self.idle_since.is_none() {
            self.idle_since = Some(now);
        }
    }

    /// The error for body/finish calls on an exchange that is not sending.
    fn not_sending(&self, id: ExchangeId) -> H1Error {
        if id < self.next_id {
            H1Error::Finished(id)
        } else {
            H1Error::UnknownRequest(id)
        }
    }

    /// Reads (part of) a response head from `rest`; returns bytes consumed.
    fn read_head(&mut self, rest: &[u8], now: Duration) -> usize {
        let limits = HeadLimits {
            max_size: self.config.max_head_size,
            max_uri_len: None,
        };
        let (n, step) = self.head.read(rest, limits, now);
        match step {
            HeadStep::Partial => {}
            HeadStep::Complete => self.complete_head(now),
            HeadStep::Failed(e) => {
                let front = self.awaiting.front().map(|a| a.id);
                self.fail(front, e);
            }
        }
        n
    }

    /// Parses the complete head and emits events.
    fn complete_head(&mut self, now: Duration) {
        let Some(req) = self.awaiting.front().copied() else {
            self.fail(None, ProtocolError::UnsolicitedData);
            return;
        };
        let max_headers = self.config.max_headers;
        let parsed = self
            .head
            .take(|buf| head::parse_response_head(buf, max_headers, req.head_req, req.connect));
        let p = match parsed {
            Ok(p) => p,
            Err(e) => {
                self.fail(Some(req.id), e);
                return;
            }
        };
        let id = req.id;
        let status = p.response.status();
        if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
            self.events.push_back(ClientEvent::Interim { id, status });
            self.head_wait_since = Some(now);
            return;
        }
        self.awaiting.pop_front();
        if status == StatusCode::SWITCHING_PROTOCOLS || (req.connect && status.is_success()) {
            self.events.push_back(ClientEvent::Response {
                id,
                head: p.response,
                body: ResponseFraming::None,
            });
            self.events.push_back(ClientEvent::BodyEnd { id });
            self.read = ReadState::Upgraded;
            self.awaiting.clear();
            self.sending = None;
            self.closing = true;
            return;
        }
        let keep_alive = p.keep_alive && !req.close;
        if !keep_alive {
            self.closing = true;
        }
        self.events.push_back(ClientEvent::Response {
            id,
            head: p.response,
            body: p.framing,
        });
        let decoder = match p.framing {
            ResponseFraming::None | ResponseFraming::Length(0) => {
                self.end_response(id, keep_alive, Some(now));
                return;
            }
            ResponseFraming::Length(n) => BodyDecoder::Length(n),
            ResponseFraming::Chunked => BodyDecoder::Chunked(
                ChunkedDecoder::new(u64::MAX, self.config.max_head_size).keep_trailers(),
            ),
            ResponseFraming::CloseDelimited => BodyDecoder::Close,
        };
        self.read = ReadState::Body {
            id,
            decoder,
            keep_alive,
        };
    }

    /// Decodes body bytes from `rest`; returns bytes consumed.
    fn read_body(&mut self, rest: &[u8], now: Duration) -> usize {
        let ReadState::Body {
            id,
            decoder,
            keep_alive,
        } = &mut self.read
        else {
            return 0;
        };
        let (id, keep_alive) = (*id, *keep_alive);
        let (consumed, result, _) =
            self.body
                .decode(id, decoder, rest, self.config.max_body_buffer);
        match result {
            Err(e) => {
                self.fail(Some(id), ProtocolError::Chunked(e));
                0
            }
            Ok(true) => {
                if let Some(trailers) = decoder.take_trailers() {
                    self.flush_body();
                    self.events
                        .push_back(ClientEvent::Trailers { id, trailers });
                }
                self.end_response(id, keep_alive, Some(now));
                consumed
            }
            Ok(false) => consumed,
        }
    }

    /// Moves decoded body bytes into a `Body` event.
    fn flush_body(&mut self) {
        if let Some((id, data)) = self.body.flush() {
            self.events.push_back(ClientEvent::Body { id, data });
        }
    }

    /// The response to `id` is complete (at `now`, if known: the next awaited response's
    /// head timer starts then).
    fn end_response(&mut self, id: ExchangeId, keep_alive: bool, now: Option<Duration>) {
        self.flush_body();
        self.events.push_back(ClientEvent::BodyEnd { id });
        if keep_alive {
            self.read = ReadState::Head;
            self.head_wait_since = now;
        } else {
            if let Some(next) = self.awaiting.front() {
                self.events.push_back(ClientEvent::Failed {
                    id: Some(next.id),
                    error: ProtocolError::ClosedBeforeResponse,
                });
            }
            self.shut_down();
        }
    }

    /// Reports a failure and closes.
    fn fail(&mut self, id: Option<ExchangeId>, error: ProtocolError) {
        self.flush_body();
        self.events.push_back(ClientEvent::Failed { id, error });
        self.shut_down();
    }

    /// Stops everything: later input is dropped, pending output discarded.
    fn shut_down(&mut self) {
        self.read = ReadState::Closed;
        self.closing = true;
        self.awaiting.clear();
        self.sending = None;
        self.head = HeadReader::default();
        self.output.discard();
        self.head_wait_since = None;
        self.idle_since = None;
    }
}

/// `host[:port]` of an authority, without userinfo.
fn host_port(a: &http::uri::Authority) -> &str {
    let s = a.as_str();
    s.rsplit_once('@').map_or(s, |(_, h)| h)
}

/// Methods for which an empty body needs no `Content-Length: 0`.
fn method_has_content(m: &Method) -> bool {
    !matches!(
        *m,
        Method::GET
            | Method::HEAD
            | Method::DELETE
            | Method::OPTIONS
            | Method::TRACE
            | Method::CONNECT
    )
}

/// The request-target for `uri` (RFC 9112 §3.2).
fn request_target(method: &Method, uri: &http::Uri, absolute: bool) -> Result<String, H1Error> {
    if *method == Method::CONNECT {
        let a = uri.authority().ok_or(H1Error::InvalidTarget)?;
        return Ok(host_port(a).to_owned());
    }
    let path = match uri.path() {
        "" => "/",
        p => p,
    };
    let mut target = String::with_capacity(path.len() + 64);
    if let (true, Some(scheme), Some(a)) = (absolute, uri.scheme_str(), uri.authority()) {
        target.push_str(scheme);
        target.push_str("://");
        target.push_str(host_port(a));
    }
    target.push_str(path);
    if let Some(q) = uri.query() {
        target.push('?');
        target.push_str(q);
    }
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    use core::time::Duration;
    /// The engine time of these tests.
    const T0: Duration = Duration::ZERO;

    use super::super::chunked::ChunkedError;
    use super::super::{ClientError, H1Config, ServerConn, ServerEvent};
    use bytes::BytesMut;
    use http::Version;

    fn conn() -> ClientConn {
        ClientConn::new(Arc::new(ClientConfig::default()), T0)
    }

    fn conn_with(f: impl FnOnce(&mut ClientConfig)) -> ClientConn {
        let mut cfg = ClientConfig::default();
        f(&mut cfg);
        ClientConn::new(Arc::new(cfg), T0)
    }

    fn req(method: &str, uri: &str) -> http::request::Parts {
        http::Request::builder()
            .method(method)
            .uri(uri)
            .body(())
            .unwrap()
            .into_parts()
            .0
    }

    fn req_h(method: &str, uri: &str, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut b = http::Request::builder().method(method).uri(uri);
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn out(c: &mut ClientConn) -> Vec<u8> {
        let v = c.pending_output().to_vec();
        c.consume_output(v.len());
        v
    }

    fn out_str(c: &mut ClientConn) -> String {
        String::from_utf8(out(c)).unwrap()
    }

    /// Simplified events; consecutive `Body` events of one exchange are merged.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum E {
        Resp(u64, u16, ResponseFraming),
        Interim(u64, u16),
        Body(u64, Vec<u8>),
        End(u64),
        Fail(Option<u64>, ClientError),
        Trailers(u64, Vec<(String, String)>),
    }

    fn summarize(evs: Vec<ClientEvent>) -> Vec<E> {
        let mut v: Vec<E> = Vec::new();
        for ev in evs {
            let e = match ev {
                ClientEvent::Response { id, head, body } => {
                    E::Resp(id, head.status().as_u16(), body)
                }
                ClientEvent::Interim { id, status } => E::Interim(id, status.as_u16()),
                ClientEvent::Body { id, data } => {
                    if let Some(E::Body(last, buf)) = v.last_mut() {
                        if *last == id {
                            buf.extend_from_slice(&data);
                            continue;
                        }
                    }
                    E::Body(id, data.to_vec())
                }
                ClientEvent::BodyEnd { id } => E::End(id),
                ClientEvent::Trailers { id, trailers } => E::Trailers(
                    id,
                    trailers
                        .iter()
                        .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
                        .collect(),
                ),
                ClientEvent::Failed { id, error } => E::Fail(id, error),
            };
            v.push(e);
        }
        v
    }

    fn drain(c: &mut ClientConn) -> Vec<ClientEvent> {
        std::iter::from_fn(|| c.poll_event()).collect()
    }

    fn events(c: &mut ClientConn) -> Vec<E> {
        summarize(drain(c))
    }

    fn feed_all(c: &mut ClientConn, b: &[u8]) {
        assert_eq!(c.handle_input(b, T0), b.len(), "not all input consumed");
    }

    /// A connection with one outstanding GET (output drained).
    fn with_get() -> ClientConn {
        let mut c = conn();
        c.send_request(req("GET", "http://h/"), Some(0), T0)
            .unwrap();
        out(&mut c);
        c
    }

    /// Sends one GET, feeds `resp` and returns the events.
    fn get_with_response(resp: &[u8]) -> (ClientConn, Vec<E>) {
        let mut c = with_get();
        feed_all(&mut c, resp);
        let ev = events(&mut c);
        (c, ev)
    }

    #[test]
    fn a_higher_minor_version_is_read_as_http_1_1() {
        // RFC 9110 §2.5: a recipient processes HTTP/1.2 as the highest 1.x it speaks.
        let (c, ev) = get_with_response(b"HTTP/1.2 200 OK\r\nContent-Length: 2\r\n\r\nhi");
        assert_eq!(
            ev,
            vec![
                E::Resp(0, 200, ResponseFraming::Length(2)),
                E::Body(0, b"hi".to_vec()),
                E::End(0)
            ]
        );
        assert!(c.is_reusable());
    }

    /// Feeds `resp` to a GET and expects `Failed { id: 0, error }`.
    fn expect_fail(resp: &str, error: ClientError) {
        let (c, ev) = get_with_response(resp.as_bytes());
        assert_eq!(
            ev.last(),
            Some(&E::Fail(Some(0), error)),
            "{resp:?}: {ev:?}"
        );
        assert!(
            !ev.iter().any(|e| matches!(e, E::Resp(..))),
            "{resp:?}: {ev:?}"
        );
        assert!(c.is_closed());
        assert!(!c.is_reusable());
        assert!(!error.to_string().is_empty());
    }

    // ----- request serialization -----

    #[test]
    fn get_with_host_from_uri() {
        let mut c = conn();
        let id = c
            .send_request(req("GET", "http://example.com/path?q=1"), Some(0), T0)
            .unwrap();
        assert_eq!(id, 0);
        assert_eq!(
            out_str(&mut c),
            "GET /path?q=1 HTTP/1.1\r\nhost: example.com\r\n\r\n"
        );
        // Complete at once: finishing is a no-op.
        c.finish_request(id).unwrap();

        // Port kept, userinfo stripped, empty path becomes "/".
        let mut c = conn();
        c.send_request(req("GET", "http://u:p@example.com:8080?x=y"), Some(0), T0)
            .unwrap();
        assert_eq!(
            out_str(&mut c),
            "GET /?x=y HTTP/1.1\r\nhost: example.com:8080\r\n\r\n"
        );

        // Application Host wins; headers kept in order; framing headers dropped.
        let mut c = conn();
        let h = [
            ("Host", "other.example"),
            ("Accept", "*/*"),
            ("Content-Length", "99"),
            ("Transfer-Encoding", "gzip"),
            ("X-A", "1"),
        ];
        c.send_request(req_h("HEAD", "http://example.com/a", &h), Some(0), T0)
            .unwrap();
        assert_eq!(
            out_str(&mut c),
            "HEAD /a HTTP/1.1\r\nhost: other.example\r\naccept: */*\r\nx-a: 1\r\n\r\n"
        );

        // No authority and no Host: empty Host (RFC 9112 §3.2).
        let mut c = conn();
        c.send_request(req("GET", "/rel"), Some(0), T0).unwrap();
        assert_eq!(out_str(&mut c), "GET /rel HTTP/1.1\r\nhost: \r\n\r\n");
    }

    #[test]
    fn post_with_content_length() {
        let mut c = conn();
        let h = [("Content-Type", "text/plain")];
        let id = c
            .send_request(req_h("POST", "http://h/up", &h), Some(11), T0)
            .unwrap();
        assert!(!c.is_reusable());
        c.send_body(id, b"hello").unwrap();
        assert_eq!(
            c.finish_request(id),
            Err(H1Error::BodyTooShort { id, missing: 6 })
        );
        assert_eq!(
            c.send_body(id, b" world!"),
            Err(H1Error::BodyTooLong { id, excess: 1 })
        );
        c.send_body(id, b" world").unwrap();
        // Complete once all declared bytes were sent.
        assert_eq!(c.send_body(id, b"x"), Err(H1Error::Finished(id)));
        c.finish_request(id).unwrap();
        assert_eq!(
            out_str(&mut c),
            "POST /up HTTP/1.1\r\nhost: h\r\ncontent-type: text/plain\r\n\
             content-length: 11\r\n\r\nhello world"
        );

        // Empty POST body still declares its length; empty GET does not.
        let mut c = conn();
        c.send_request(req("POST", "http://h/"), Some(0), T0)
            .unwrap();
        assert_eq!(
            out_str(&mut c),
            "POST / HTTP/1.1\r\nhost: h\r\ncontent-length: 0\r\n\r\n"
        );
    }

    #[test]
    fn chunked_upload_bytes() {
        let mut c = conn();
        let id = c.send_request(req("PUT", "http://h/f"), None, T0).unwrap();
        c.send_body(id, b"hello").unwrap();
        c.send_body(id, b"").unwrap();
        c.send_body(id, b", chunked world!!").unwrap();
        // Next request must wait for the body to finish.
        assert_eq!(
            c.send_request(req("GET", "http://h/"), Some(0), T0),
            Err(H1Error::RequestInProgress(id))
        );
        c.finish_request(id).unwrap();
        assert_eq!(
            out_str(&mut c),
            "PUT /f HTTP/1.1\r\nhost: h\r\ntransfer-encoding: chunked\r\n\r\n\
             5\r\nhello\r\n11\r\n, chunked world!!\r\n0\r\n\r\n"
        );
        // Finishing twice does nothing; body after finish is refused.
        c.finish_request(id).unwrap();
        assert_eq!(c.send_body(id, b"x"), Err(H1Error::Finished(id)));
        assert_eq!(c.send_request(req("GET", "http://h/"), Some(0), T0), Ok(1));
    }

    #[test]
    fn request_trailers_follow_the_last_chunk() {
        let mut trailers = HeaderMap::new();
        trailers.insert("x-checksum", "42".parse().unwrap());
        trailers.insert("grpc-status", "0".parse().unwrap());
        trailers.insert(header::CONTENT_LENGTH, "5".parse().unwrap());
        trailers.insert(header::HOST, "evil".parse().unwrap());
        let mut c = conn();
        let id = c.send_request(req("PUT", "http://h/f"), None, T0).unwrap();
        c.send_body(id, b"hello").unwrap();
        c.finish_request_with_trailers(id, Some(&trailers)).unwrap();
        assert_eq!(
            out_str(&mut c),
            "PUT /f HTTP/1.1\r\nhost: h\r\ntransfer-encoding: chunked\r\n\r\n\
             5\r\nhello\r\n0\r\nx-checksum: 42\r\ngrpc-status: 0\r\n\r\n"
        );
        // Declared in `Trailer`: only those names.
        let declared = req_h("PUT", "http://h/f", &[("trailer", "X-Checksum")]);
        let id = c.send_request(declared, None, T0).unwrap();
        c.finish_request_with_trailers(id, Some(&trailers)).unwrap();
        assert_eq!(
            out_str(&mut c),
            "PUT /f HTTP/1.1\r\nhost: h\r\ntrailer: X-Checksum\r\n\
             transfer-encoding: chunked\r\n\r\n0\r\nx-checksum: 42\r\n\r\n"
        );
        // A length body has no trailer section.
        let id = c
            .send_request(req("PUT", "http://h/f"), Some(2), T0)
            .unwrap();
        c.send_body(id, b"hi").unwrap();
        c.finish_request_with_trailers(id, Some(&trailers)).unwrap();
        assert_eq!(
            out_str(&mut c),
            "PUT /f HTTP/1.1\r\nhost: h\r\ncontent-length: 2\r\n\r\nhi"
        );
    }

    #[test]
    fn te_is_listed_in_connection() {
        let mut c = conn();
        let te = req_h("GET", "http://h/", &[("te", "trailers")]);
        c.send_request(te, Some(0), T0).unwrap();
        assert_eq!(
            out_str(&mut c),
            "GET / HTTP/1.1\r\nhost: h\r\nte: trailers\r\nconnection: te\r\n\r\n"
        );
        // Already listed: not twice.
        let mut c = conn();
        let te = req_h(
            "GET",
            "http://h/",
            &[("te", "trailers"), ("connection", "keep-alive, TE")],
        );
        c.send_request(te, Some(0), T0).unwrap();
        assert_eq!(
            out_str(&mut c),
            "GET / HTTP/1.1\r\nhost: h\r\nte: trailers\r\nconnection: keep-alive, TE\r\n\r\n"
        );
    }

    #[test]
    fn absolute_and_authority_form() {
        let mut c = conn();
        c.set_absolute_form(true);
        c.send_request(req("GET", "http://u@example.com:8080/a/b?c=d"), Some(0), T0)
            .unwrap();
        assert_eq!(
            out_str(&mut c),
            "GET http://example.com:8080/a/b?c=d HTTP/1.1\r\nhost: example.com:8080\r\n\r\n"
        );
        // A relative URI falls back to origin-form.
        c.send_request(req("GET", "/x"), Some(0), T0).unwrap();
        assert_eq!(out_str(&mut c), "GET /x HTTP/1.1\r\nhost: \r\n\r\n");

        let mut c = conn();
        c.send_request(req("CONNECT", "example.com:443"), Some(0), T0)
            .unwrap();
        assert_eq!(
            out_str(&mut c),
            "CONNECT example.com:443 HTTP/1.1\r\nhost: example.com:443\r\n\r\n"
        );
        let mut c = conn();
        assert_eq!(
            c.send_request(req("CONNECT", "/nope"), Some(0), T0),
            Err(H1Error::InvalidTarget)
        );
        assert!(c.pending_output().is_empty());
    }

    #[test]
    fn request_api_misuse() {
        let mut c = conn_with(|cfg| cfg.max_output_buffer = 10);
        assert_eq!(c.send_body(0, b"x"), Err(H1Error::UnknownRequest(0)));
        assert_eq!(c.finish_request(0), Err(H1Error::UnknownRequest(0)));
        let id = c.send_request(req("POST", "http://h/"), None, T0).unwrap();
        // The head alone exceeds the output limit: no capacity for body bytes.
        assert_eq!(c.send_capacity(), 0);
        assert_eq!(
            c.send_body(id, b"x"),
            Err(H1Error::OutputFull {
                requested: 1,
                capacity: 0
            })
        );
        out(&mut c);
        assert_eq!(c.send_capacity(), 10);
        c.send_body(id, b"0123456789").unwrap();
        assert_eq!(c.send_capacity(), 0);
        c.finish_request(id).unwrap();
        assert_eq!(c.send_body(id, b"x"), Err(H1Error::Finished(id)));
        // A request asking to close is the last one.
        let mut c = conn();
        let h = [("Connection", "close")];
        c.send_request(req_h("GET", "http://h/", &h), Some(0), T0)
            .unwrap();
        assert!(!c.is_reusable());
        assert_eq!(
            c.send_request(req("GET", "http://h/"), Some(0), T0),
            Err(H1Error::Closed)
        );
        out(&mut c);
        feed_all(&mut c, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(
            events(&mut c),
            vec![E::Resp(0, 200, ResponseFraming::Length(0)), E::End(0)]
        );
        assert!(c.is_closed());
        assert_eq!(c.send_capacity(), 0);
        assert_eq!(c.finish_request(0), Err(H1Error::Closed));
    }

    // ----- response parsing -----

    #[test]
    fn content_length_body() {
        let (c, ev) = get_with_response(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello",
        );
        assert_eq!(
            ev,
            vec![
                E::Resp(0, 200, ResponseFraming::Length(5)),
                E::Body(0, b"hello".to_vec()),
                E::End(0)
            ]
        );
        assert!(c.is_reusable());
        assert!(!c.is_closed());

        // Head fields come through as received.
        let mut c = with_get();
        feed_all(
            &mut c,
            b"HTTP/1.1 404 Not Found\r\nX-A:  b c \r\nContent-Length: 0\r\n\r\n",
        );
        match c.poll_event() {
            Some(ClientEvent::Response { id: 0, head, body }) => {
                assert_eq!(head.status(), StatusCode::NOT_FOUND);
                assert_eq!(head.version(), Version::HTTP_11);
                assert_eq!(head.headers()["x-a"], "b c");
                assert_eq!(body, ResponseFraming::Length(0));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn chunked_body_every_split_point() {
        let input: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
            5;ext=\"a b\"\r\nhello\r\nb\r\n, chunked!!\r\n0\r\nX-Trailer: t\r\n\r\n";
        let want = vec![
            E::Resp(0, 200, ResponseFraming::Chunked),
            E::Body(0, b"hello, chunked!!".to_vec()),
            // The trailer section is surfaced, whatever the split.
            E::Trailers(0, vec![("x-trailer".into(), "t".into())]),
            E::End(0),
        ];
        for split in 0..=input.len() {
            let mut c = with_get();
            let (a, b) = input.split_at(split);
            feed_all(&mut c, a);
            feed_all(&mut c, b);
            assert_eq!(events(&mut c), want, "split at {split}");
            assert!(c.is_reusable(), "split at {split}");
        }
        // Byte by byte, draining as a caller would.
        let mut c = with_get();
        let mut evs = Vec::new();
        for b in input {
            feed_all(&mut c, std::slice::from_ref(b));
            evs.extend(drain(&mut c));
        }
        assert_eq!(summarize(evs), want);
        // Without draining, the event queue cap stops consumption.
        let mut c = with_get();
        let mut pos = 0;
        while pos < input.len() && c.handle_input(&input[pos..=pos], T0) == 1 {
            pos += 1;
        }
        assert!(pos < input.len());
        assert_eq!(c.events.len(), MAX_QUEUED_EVENTS);
        while pos < input.len() {
            drain(&mut c);
            pos += c.handle_input(&input[pos..], T0);
        }
        assert!(c.is_reusable());
    }

    #[test]
    fn close_delimited_body() {
        let mut c = with_get();
        feed_all(&mut c, b"HTTP/1.1 200 OK\r\n\r\nsome ");
        assert!(!c.is_reusable());
        feed_all(&mut c, b"bytes");
        assert_eq!(
            c.send_request(req("GET", "http://h/"), Some(0), T0),
            Err(H1Error::Closed)
        );
        assert!(!c.is_closed());
        c.handle_eof();
        assert_eq!(
            events(&mut c),
            vec![
                E::Resp(0, 200, ResponseFraming::CloseDelimited),
                E::Body(0, b"some bytes".to_vec()),
                E::End(0)
            ]
        );
        assert!(c.is_closed());
        assert!(!c.is_reusable());
        // Later input is swallowed without events.
        assert_eq!(c.handle_input(b"junk", T0), 4);
        assert!(drain(&mut c).is_empty());
    }

    #[test]
    fn transfer_encoding_variants() {
        // TE overrides CL, but the connection is not reused.
        let (c, ev) = get_with_response(
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n\
              3\r\nabc\r\n0\r\n\r\n",
        );
        assert_eq!(
            ev,
            vec![
                E::Resp(0, 200, ResponseFraming::Chunked),
                E::Body(0, b"abc".to_vec()),
                E::End(0)
            ]
        );
        assert!(c.is_closed());
        // Final coding not chunked: read until close.
        let (c, ev) = get_with_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\nxyz",
        );
        assert_eq!(
            ev,
            vec![
                E::Resp(0, 200, ResponseFraming::CloseDelimited),
                E::Body(0, b"xyz".to_vec())
            ]
        );
        assert!(!c.is_reusable());
        // "gzip, chunked": chunked final.
        let (c, ev) = get_with_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, CHUNKED\r\n\r\n1\r\nz\r\n0\r\n\r\n",
        );
        assert_eq!(ev[0], E::Resp(0, 200, ResponseFraming::Chunked));
        assert!(c.is_reusable());
        // HTTP/1.0 with TE: faulty framing, read until close.
        let (_, ev) = get_with_response(
            b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n",
        );
        assert_eq!(ev, vec![E::Resp(0, 200, ResponseFraming::CloseDelimited)]);
        expect_fail(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
            ClientError::InvalidTransferEncoding,
        );
        expect_fail(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: ,\r\n\r\n",
            ClientError::InvalidTransferEncoding,
        );
    }

    #[test]
    fn head_response_has_no_body() {
        let mut c = conn();
        c.send_request(req("HEAD", "http://h/"), Some(0), T0)
            .unwrap();
        c.send_request(req("GET", "http://h/"), Some(0), T0)
            .unwrap();
        feed_all(
            &mut c,
            b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n\
              HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        );
        assert_eq!(
            events(&mut c),
            vec![
                E::Resp(0, 200, ResponseFraming::None),
                E::End(0),
                E::Resp(1, 200, ResponseFraming::Length(2)),
                E::Body(1, b"ok".to_vec()),
                E::End(1)
            ]
        );
        assert!(c.is_reusable());
    }

    #[test]
    fn no_body_statuses() {
        for (status, head) in [
            (204, "HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n"),
            (
                304,
                "HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n",
            ),
            (
                304,
                "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
            ),
        ] {
            let mut c = conn();
            c.send_request(req("GET", "http://h/"), Some(0), T0)
                .unwrap();
            c.send_request(req("GET", "http://h/"), Some(0), T0)
                .unwrap();
            let mut input = head.as_bytes().to_vec();
            input.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
            feed_all(&mut c, &input);
            assert_eq!(
                events(&mut c),
                vec![
                    E::Resp(0, status, ResponseFraming::None),
                    E::End(0),
                    E::Resp(1, 200, ResponseFraming::Length(0)),
                    E::End(1)
                ],
                "{head:?}"
            );
            assert!(c.is_reusable());
        }
    }

    #[test]
    fn continue_then_final_response() {
        let mut c = conn();
        let h = [("Expect", "100-continue")];
        let id = c
            .send_request(req_h("POST", "http://h/", &h), Some(4), T0)
            .unwrap();
        assert_eq!(
            out_str(&mut c),
            "POST / HTTP/1.1\r\nhost: h\r\nexpect: 100-continue\r\ncontent-length: 4\r\n\r\n"
        );
        feed_all(&mut c, b"HTTP/1.1 100 Continue\r\n\r\n");
        assert_eq!(events(&mut c), vec![E::Interim(id, 100)]);
        assert!(!c.is_reusable());
        c.send_body(id, b"data").unwrap();
        assert_eq!(out(&mut c), b"data");
        feed_all(
            &mut c,
            b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n\
              HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
        );
        assert_eq!(
            events(&mut c),
            vec![
                E::Interim(id, 103),
                E::Resp(id, 201, ResponseFraming::Length(0)),
                E::End(id)
            ]
        );
        assert!(c.is_reusable());
    }

    #[test]
    fn final_response_instead_of_continue() {
        // The server refuses before the body was sent: the request is not
        // finished, so the connection cannot be reused until it is.
        let mut c = conn();
        let h = [("Expect", "100-continue")];
        let id = c
            .send_request(req_h("PUT", "http://h/", &h), Some(4), T0)
            .unwrap();
        feed_all(
            &mut c,
            b"HTTP/1.1 417 Expectation Failed\r\nContent-Length: 0\r\n\r\n",
        );
        assert_eq!(
            events(&mut c),
            vec![E::Resp(id, 417, ResponseFraming::Length(0)), E::End(id)]
        );
        assert!(!c.is_reusable());
        c.send_body(id, b"data").unwrap();
        assert!(c.is_reusable());
    }

    #[test]
    fn switching_protocols_hands_over_the_stream() {
        let mut c = conn();
        let h = [("Connection", "upgrade"), ("Upgrade", "websocket")];
        let id = c
            .send_request(req_h("GET", "http://h/ws", &h), Some(0), T0)
            .unwrap();
        out(&mut c);
        let head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n";
        let mut input = head.to_vec();
        input.extend_from_slice(b"\x81\x05hello");
        assert_eq!(c.handle_input(&input, T0), head.len());
        assert_eq!(
            events(&mut c),
            vec![E::Resp(id, 101, ResponseFraming::None), E::End(id)]
        );
        assert!(c.is_upgraded());
        assert!(!c.is_reusable());
        assert!(!c.is_closed());
        assert_eq!(c.handle_input(b"\x81\x05hello", T0), 0);
        c.handle_eof();
        assert!(drain(&mut c).is_empty());
        assert_eq!(
            c.send_request(req("GET", "http://h/"), Some(0), T0),
            Err(H1Error::Closed)
        );

        // A 2xx to CONNECT opens a tunnel; its framing headers are ignored.
        let mut c = conn();
        c.send_request(req("CONNECT", "example.com:443"), Some(0), T0)
            .unwrap();
        let head = b"HTTP/1.1 200 Connection Established\r\nContent-Length: 10\r\n\r\n";
        let mut input = head.to_vec();
        input.extend_from_slice(b"\x16\x03\x01");
        assert_eq!(c.handle_input(&input, T0), head.len());
        assert_eq!(
            events(&mut c),
            vec![E::Resp(0, 200, ResponseFraming::None), E::End(0)]
        );
        assert!(c.is_upgraded());

        // A non-2xx to CONNECT is an ordinary response.
        let mut c = conn();
        c.send_request(req("CONNECT", "example.com:443"), Some(0), T0)
            .unwrap();
        feed_all(
            &mut c,
            b"HTTP/1.1 407 Proxy Auth\r\nContent-Length: 2\r\n\r\nno",
        );
        assert_eq!(
            events(&mut c),
            vec![
                E::Resp(0, 407, ResponseFraming::Length(2)),
                E::Body(0, b"no".to_vec()),
                E::End(0)
            ]
        );
        assert!(!c.is_upgraded());
        assert!(c.is_reusable());
    }

    #[test]
    fn keep_alive_reuse_across_two_exchanges() {
        let mut c = conn();
        assert!(c.is_reusable());
        for (i, body) in [b"first".as_slice(), b"second".as_slice()]
            .iter()
            .enumerate()
        {
            let id = c
                .send_request(req("GET", "http://h/"), Some(0), T0)
                .unwrap();
            assert_eq!(id, i as u64);
            assert!(!c.is_reusable());
            assert_eq!(out_str(&mut c), "GET / HTTP/1.1\r\nhost: h\r\n\r\n");
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{}",
                body.len(),
                String::from_utf8_lossy(body)
            );
            feed_all(&mut c, resp.as_bytes());
            assert_eq!(
                events(&mut c),
                vec![
                    E::Resp(id, 200, ResponseFraming::Length(body.len() as u64)),
                    E::Body(id, body.to_vec()),
                    E::End(id)
                ]
            );
            assert!(c.is_reusable());
        }
    }

    #[test]
    fn pipelined_responses_in_one_buffer() {
        let mut c = conn();
        let a = c
            .send_request(req("GET", "http://h/a"), Some(0), T0)
            .unwrap();
        let b = c
            .send_request(req("GET", "http://h/b"), Some(0), T0)
            .unwrap();
        assert_eq!(
            out_str(&mut c),
            "GET /a HTTP/1.1\r\nhost: h\r\n\r\nGET /b HTTP/1.1\r\nhost: h\r\n\r\n"
        );
        feed_all(
            &mut c,
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nA\r\n0\r\n\r\n\
              HTTP/1.1 404 Not Found\r\nContent-Length: 1\r\n\r\nB",
        );
        assert_eq!(
            events(&mut c),
            vec![
                E::Resp(a, 200, ResponseFraming::Chunked),
                E::Body(a, b"A".to_vec()),
                E::End(a),
                E::Resp(b, 404, ResponseFraming::Length(1)),
                E::Body(b, b"B".to_vec()),
                E::End(b)
            ]
        );
        assert!(c.is_reusable());
    }

    #[test]
    fn connection_close_response() {
        let mut c = conn();
        c.send_request(req("GET", "http://h/"), Some(0), T0)
            .unwrap();
        c.send_request(req("GET", "http://h/2"), Some(0), T0)
            .unwrap();
        feed_all(
            &mut c,
            b"HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\nContent-Length: 3\r\n\r\nab",
        );
        // Known to close as soon as the head is in.
        assert_eq!(
            c.send_request(req("GET", "http://h/"), Some(0), T0),
            Err(H1Error::Closed)
        );
        assert!(!c.is_closed());
        feed_all(&mut c, b"cHTTP/1.1 200 OK\r\n");
        assert_eq!(
            events(&mut c),
            vec![
                E::Resp(0, 200, ResponseFraming::Length(3)),
                E::Body(0, b"abc".to_vec()),
                E::End(0),
                E::Fail(Some(1), ClientError::ClosedBeforeResponse)
            ]
        );
        assert!(c.is_closed());
        assert!(!c.is_reusable());
        assert!(c.pending_output().is_empty());
    }

    #[test]
    fn http10_responses() {
        let (c, ev) = get_with_response(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi");
        assert_eq!(
            ev,
            vec![
                E::Resp(0, 200, ResponseFraming::Length(2)),
                E::Body(0, b"hi".to_vec()),
                E::End(0)
            ]
        );
        assert!(c.is_closed());
        assert!(!c.is_reusable());

        let (c, _) = get_with_response(
            b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\nhi",
        );
        assert!(c.is_reusable());

        let mut c = with_get();
        feed_all(&mut c, b"HTTP/1.0 200 OK\r\n\r\nuntil close");
        c.handle_eof();
        match c.poll_event() {
            Some(ClientEvent::Response { head, body, .. }) => {
                assert_eq!(head.version(), Version::HTTP_10);
                assert_eq!(body, ResponseFraming::CloseDelimited);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            events(&mut c),
            vec![E::Body(0, b"until close".to_vec()), E::End(0)]
        );
    }

    #[test]
    fn malformed_heads_fail() {
        use super::super::ClientError as C;
        let cases: &[(&str, ClientError)] = &[
            (
                "HTTP/1.1 2x0 OK\r\n\r\n",
                C::MalformedHead("invalid status line"),
            ),
            (
                "HTTP/1.1 20 OK\r\n\r\n",
                C::MalformedHead("invalid status line"),
            ),
            (
                "HTTP/1.1 099 OK\r\n\r\n",
                C::MalformedHead("invalid status code"),
            ),
            (
                "HTTX/1.1 200 OK\r\n\r\n",
                C::MalformedHead("invalid HTTP version"),
            ),
            ("HTTP/2.0 200 OK\r\n\r\n", C::UnsupportedVersion),
            ("HTTP/3.0 200 OK\r\n\r\n", C::UnsupportedVersion),
            ("garbage\r\n\r\n", C::MalformedHead("invalid HTTP version")),
            ("HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n", C::BareLf),
            ("HTTP/1.1 200 OK\r\nContent-Length: 0\n\r\n", C::BareLf),
            ("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\n", C::BareLf),
            ("HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n", C::ObsFold),
            (
                "HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
                C::InvalidHeaderName,
            ),
            (
                "HTTP/1.1 200 OK\r\nX: a\x01b\r\n\r\n",
                C::InvalidHeaderValue,
            ),
            ("HTTP/1.1 200 OK\r\nNoColon\r\n\r\n", C::InvalidHeaderName),
            (
                "HTTP/1.1 200 OK\r\nX: a\rY: b\r\n\r\n",
                C::InvalidHeaderValue,
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n",
                C::InvalidContentLength,
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
                C::InvalidContentLength,
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
                C::InvalidContentLength,
            ),
        ];
        for (resp, err) in cases {
            expect_fail(resp, *err);
        }
    }

    #[test]
    fn conflicting_content_length_fails() {
        for cl in [
            "Content-Length: 5\r\nContent-Length: 6",
            "Content-Length: 5\r\nContent-Length: 5",
            "Content-Length: 5, 5",
            "Content-Length: 5,6",
        ] {
            expect_fail(
                &format!("HTTP/1.1 200 OK\r\n{cl}\r\n\r\nhello"),
                ClientError::DuplicateContentLength,
            );
        }
    }

    #[test]
    fn head_limits() {
        let mut c = conn_with(|cfg| cfg.max_head_size = 64);
        c.send_request(req("GET", "http://h/"), Some(0), T0)
            .unwrap();
        let long = format!("HTTP/1.1 200 OK\r\nX: {}\r\n\r\n", "a".repeat(100));
        assert_eq!(c.handle_input(long.as_bytes(), T0), long.len());
        assert_eq!(
            events(&mut c),
            vec![E::Fail(Some(0), ClientError::HeadTooLarge)]
        );
        assert!(c.is_closed());

        let mut c = conn_with(|cfg| cfg.max_headers = 2);
        c.send_request(req("GET", "http://h/"), Some(0), T0)
            .unwrap();
        feed_all(&mut c, b"HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n");
        assert_eq!(
            events(&mut c),
            vec![E::Fail(Some(0), ClientError::TooManyHeaders)]
        );
    }

    #[test]
    fn bad_chunked_body_fails_after_decoded_bytes() {
        let (c, ev) = get_with_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n",
        );
        assert_eq!(
            ev,
            vec![
                E::Resp(0, 200, ResponseFraming::Chunked),
                E::Body(0, b"abc".to_vec()),
                E::Fail(Some(0), ClientError::Chunked(ChunkedError::MissingDataCrlf))
            ]
        );
        assert!(c.is_closed());
    }

    #[test]
    fn eof_handling() {
        // Mid-body (Content-Length).
        let mut c = with_get();
        feed_all(&mut c, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc");
        c.handle_eof();
        assert_eq!(
            events(&mut c),
            vec![
                E::Resp(0, 200, ResponseFraming::Length(10)),
                E::Body(0, b"abc".to_vec()),
                E::Fail(Some(0), ClientError::EofInBody)
            ]
        );
        assert!(c.is_closed());
        // Mid-body (chunked, also between chunks).
        let mut c = with_get();
        feed_all(
            &mut c,
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
        );
        c.handle_eof();
        assert_eq!(
            events(&mut c).last(),
            Some(&E::Fail(Some(0), ClientError::EofInBody))
        );
        // Mid-head.
        let mut c = with_get();
        feed_all(&mut c, b"HTTP/1.1 200 OK\r\nContent-");
        c.handle_eof();
        assert_eq!(
            events(&mut c),
            vec![E::Fail(Some(0), ClientError::EofInHead)]
        );
        // Before any response byte (e.g. a stale keep-alive connection).
        let mut c = with_get();
        c.handle_eof();
        assert_eq!(
            events(&mut c),
            vec![E::Fail(Some(0), ClientError::ClosedBeforeResponse)]
        );
        assert!(c.is_closed());
        // Idle: a clean close.
        let mut c = conn();
        c.handle_eof();
        assert!(drain(&mut c).is_empty());
        assert!(c.is_closed());
        assert!(!c.is_reusable());
        assert_eq!(
            c.send_request(req("GET", "http://h/"), Some(0), T0),
            Err(H1Error::Closed)
        );
        // Twice is harmless.
        c.handle_eof();
        assert!(drain(&mut c).is_empty());
    }

    #[test]
    fn unsolicited_data_fails() {
        let mut c = conn();
        feed_all(&mut c, b"HTTP/1.1 408 Request Timeout\r\n\r\n");
        assert_eq!(
            events(&mut c),
            vec![E::Fail(None, ClientError::UnsolicitedData)]
        );
        assert!(c.is_closed());
        // Excess bytes after a complete response.
        let (c, ev) = get_with_response(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxy");
        assert_eq!(
            ev.last(),
            Some(&E::Fail(None, ClientError::UnsolicitedData))
        );
        assert!(c.is_closed());
    }

    #[test]
    fn body_backpressure() {
        let mut c = conn_with(|cfg| cfg.max_body_buffer = 8);
        c.send_request(req("GET", "http://h/"), Some(0), T0)
            .unwrap();
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n";
        let body = b"0123456789abcdefghij";
        let mut input = head.to_vec();
        input.extend_from_slice(body);
        let mut pos = c.handle_input(&input, T0);
        assert_eq!(pos, head.len() + 8);
        // Still full: nothing more is taken.
        assert_eq!(c.handle_input(&input[pos..], T0), 0);
        let mut got = Vec::new();
        let mut ended = false;
        let mut rounds = 0;
        loop {
            for ev in drain(&mut c) {
                match ev {
                    ClientEvent::Body { data, .. } => {
                        assert!(data.len() <= 8);
                        got.extend_from_slice(&data);
                    }
                    ClientEvent::BodyEnd { .. } => ended = true,
                    ClientEvent::Response { .. } => {}
                    other => panic!("{other:?}"),
                }
            }
            if ended {
                break;
            }
            rounds += 1;
            assert!(rounds < 10);
            pos += c.handle_input(&input[pos..], T0);
        }
        assert_eq!(pos, input.len());
        assert_eq!(got, body);
        assert!(c.is_reusable());

        // Chunked and close-delimited bodies obey the same bound.
        for resp in [
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n14\r\n0123456789abcdefghij\r\n0\r\n\r\n"
                .as_slice(),
            b"HTTP/1.1 200 OK\r\n\r\n0123456789abcdefghij".as_slice(),
        ] {
            let mut c = conn_with(|cfg| cfg.max_body_buffer = 8);
            c.send_request(req("GET", "http://h/"), Some(0), T0).unwrap();
            let mut pos = 0;
            let mut got = Vec::new();
            for _ in 0..10 {
                pos += c.handle_input(&resp[pos..], T0);
                assert!(c.body.held() <= 8);
                for ev in drain(&mut c) {
                    if let ClientEvent::Body { data, .. } = ev {
                        got.extend_from_slice(&data);
                    }
                }
            }
            assert_eq!(pos, resp.len());
            assert_eq!(got, body);
        }
    }

    #[test]
    fn event_queue_backpressure() {
        let mut c = with_get();
        let one = b"HTTP/1.1 100 Continue\r\n\r\n";
        let mut input = one.repeat(40);
        input.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        let n = c.handle_input(&input, T0);
        assert_eq!(n, MAX_QUEUED_EVENTS * one.len());
        let mut pos = n;
        let mut interims = drain(&mut c).len();
        while pos < input.len() {
            let n = c.handle_input(&input[pos..], T0);
            assert!(n > 0);
            assert!(c.events.len() <= MAX_QUEUED_EVENTS + 2);
            pos += n;
            interims += drain(&mut c)
                .iter()
                .filter(|e| matches!(e, ClientEvent::Interim { .. }))
                .count();
        }
        assert_eq!(interims, 40);
        assert!(c.is_reusable());
    }

    #[test]
    fn partial_output_consumption() {
        let mut c = conn();
        let id = c.send_request(req("POST", "http://h/"), None, T0).unwrap();
        let data = vec![b'x'; 20_000];
        let mut written = Vec::new();
        for _ in 0..3 {
            c.send_body(id, &data).unwrap();
            let n = c.pending_output().len() / 3;
            written.extend_from_slice(&c.pending_output()[..n]);
            c.consume_output(n);
        }
        c.finish_request(id).unwrap();
        written.extend(out(&mut c));
        let head_end = written.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let mut d = ChunkedDecoder::new(u64::MAX, 100);
        let mut body = BytesMut::new();
        let n = d
            .decode(&written[head_end..], &mut body, usize::MAX)
            .unwrap();
        assert_eq!(head_end + n, written.len());
        assert!(d.is_done());
        assert_eq!(body.len(), 60_000);
        // Over-consumption is clamped.
        c.consume_output(usize::MAX);
        assert!(c.pending_output().is_empty());
    }

    #[test]
    fn random_input_never_panics_and_stays_bounded() {
        let seeds: &[&[u8]] = &[
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nT: x\r\n\r\n",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 204 No Content\r\n\r\n",
            b"HTTP/1.1 101 Switching Protocols\r\n\r\nrest",
            b"HTTP/1.1 200 OK\r\n\r\nclose delimited",
        ];
        let mut rng = fastrand::Rng::with_seed(0x7a91);
        for _ in 0..3000 {
            let mut input = seeds[rng.usize(..seeds.len())].to_vec();
            input.extend_from_slice(seeds[rng.usize(..seeds.len())]);
            for _ in 0..rng.usize(0..4) {
                let i = rng.usize(..input.len());
                match rng.u8(0..3) {
                    0 => input[i] = rng.u8(..),
                    1 => {
                        input.remove(i);
                    }
                    _ => input.insert(i, *b"\r\n: 0a;,".get(rng.usize(..8)).unwrap()),
                }
            }
            let mut c = conn_with(|cfg| {
                cfg.max_head_size = 48;
                cfg.max_body_buffer = 4;
                cfg.max_headers = 4;
            });
            let method = if rng.bool() { "GET" } else { "HEAD" };
            c.send_request(req(method, "http://h/"), Some(0), T0)
                .unwrap();
            c.send_request(req("GET", "http://h/"), Some(0), T0)
                .unwrap();
            let mut pos = 0;
            let mut failed = 0;
            for _ in 0..200 {
                let end = (pos + rng.usize(1..8)).min(input.len());
                pos += c.handle_input(&input[pos..end], T0);
                assert!(c.head.buffered() <= 48);
                assert!(c.body.held() <= 4);
                for ev in drain(&mut c) {
                    assert_eq!(failed, 0, "event after Failed");
                    if matches!(ev, ClientEvent::Failed { .. }) {
                        failed += 1;
                    }
                }
                if pos == input.len() || c.is_upgraded() {
                    break;
                }
            }
            c.handle_eof();
            for ev in drain(&mut c) {
                assert_eq!(failed, 0, "event after Failed");
                if matches!(ev, ClientEvent::Failed { .. }) {
                    failed += 1;
                }
            }
            assert!(c.is_closed() || c.is_upgraded());
        }
    }

    // ----- round trip with the server engine -----

    /// Per-request state of the echoing server application.
    #[derive(Default)]
    struct Echo {
        pending: Vec<u8>,
        body_done: bool,
        finished: bool,
    }

    #[test]
    fn round_trip_with_server_engine() {
        let now = Duration::ZERO;
        let mut srv = ServerConn::new(Arc::new(H1Config::default()), now);
        let mut cli = conn();

        let small: Vec<u8> = (0..3000u32).map(|i| (i * 7 + 3) as u8).collect();
        let mut rng = fastrand::Rng::with_seed(42);
        let big: Vec<u8> = (0..1 << 20).map(|_| rng.u8(..)).collect();

        let get = cli
            .send_request(req("GET", "http://example.com/get"), Some(0), T0)
            .unwrap();
        let post = cli
            .send_request(
                req_h("POST", "http://example.com/post", &[("X-Kind", "cl")]),
                Some(small.len() as u64),
                T0,
            )
            .unwrap();
        cli.send_body(post, &small).unwrap();
        let up = cli
            .send_request(req("POST", "http://example.com/chunked"), None, T0)
            .unwrap();
        assert_eq!((get, post, up), (0, 1, 2));

        let mut up_off = 0usize;
        let mut up_done = false;
        let mut c2s: Vec<u8> = Vec::new();
        let mut s2c: Vec<u8> = Vec::new();
        let mut echo: Vec<Echo> = (0..3).map(|_| Echo::default()).collect();
        let mut seen_requests = Vec::new();
        let mut bodies: Vec<Vec<u8>> = vec![Vec::new(); 3];
        let mut ended = [false; 3];
        let mut heads = Vec::new();

        for round in 0.. {
            assert!(round < 100_000, "no progress");
            // Client uploads within its send capacity, in odd-sized pieces.
            while up_off < big.len() && cli.send_capacity() > 0 {
                let n = cli.send_capacity().min(10_007).min(big.len() - up_off);
                cli.send_body(up, &big[up_off..up_off + n]).unwrap();
                up_off += n;
            }
            if up_off == big.len() && !up_done {
                cli.finish_request(up).unwrap();
                up_done = true;
            }
            // Client -> wire -> server (the wire moves at most 1500 bytes a round).
            c2s.extend_from_slice(cli.pending_output());
            cli.consume_output(cli.pending_output().len());
            let take = c2s.len().min(1500);
            let n = srv.handle_input(&c2s[..take], now);
            c2s.drain(..n);

            // Server application: echo every body with a chunked response.
            while let Some(ev) = srv.poll_event() {
                match ev {
                    ServerEvent::Request { id, head, .. } => {
                        seen_requests.push(head);
                        let parts = http::Response::builder()
                            .status(200)
                            .header("x-echo", id.to_string())
                            .body(())
                            .unwrap()
                            .into_parts()
                            .0;
                        srv.send_response(id, parts, None).unwrap();
                    }
                    ServerEvent::Body { id, data } => {
                        echo[id as usize].pending.extend_from_slice(&data);
                    }
                    ServerEvent::BodyEnd { id } => echo[id as usize].body_done = true,
                    other => panic!("server: {other:?}"),
                }
            }
            for (id, e) in echo.iter_mut().enumerate() {
                let id = id as u64;
                while !e.pending.is_empty() && srv.send_capacity() > 0 {
                    let n = srv.send_capacity().min(e.pending.len()).min(8192);
                    srv.send_body(id, &e.pending[..n]).unwrap();
                    e.pending.drain(..n);
                }
                if e.body_done && e.pending.is_empty() && !e.finished {
                    srv.finish_response(id).unwrap();
                    e.finished = true;
                }
            }

            // Server -> wire -> client.
            s2c.extend_from_slice(srv.pending_output());
            srv.consume_output(srv.pending_output().len(), now);
            let take = s2c.len().min(1500);
            let n = cli.handle_input(&s2c[..take], T0);
            s2c.drain(..n);
            while let Some(ev) = cli.poll_event() {
                match ev {
                    ClientEvent::Response { id, head, body } => {
                        assert_eq!(body, ResponseFraming::Chunked);
                        heads.push((id, head));
                    }
                    ClientEvent::Body { id, data } => bodies[id as usize].extend_from_slice(&data),
                    ClientEvent::BodyEnd { id } => ended[id as usize] = true,
                    other => panic!("client: {other:?}"),
                }
            }
            if ended.iter().all(|&e| e) {
                break;
            }
        }

        // What the server saw.
        assert_eq!(seen_requests.len(), 3);
        let methods: Vec<_> = seen_requests.iter().map(|r| r.method().as_str()).collect();
        assert_eq!(methods, ["GET", "POST", "POST"]);
        let paths: Vec<_> = seen_requests.iter().map(|r| r.uri().path()).collect();
        assert_eq!(paths, ["/get", "/post", "/chunked"]);
        for r in &seen_requests {
            assert_eq!(r.headers()["host"], "example.com");
        }
        assert!(!seen_requests[0].headers().contains_key("content-length"));
        assert_eq!(
            seen_requests[1].headers()["content-length"],
            small.len().to_string().as_str()
        );
        assert_eq!(seen_requests[1].headers()["x-kind"], "cl");
        assert_eq!(seen_requests[2].headers()["transfer-encoding"], "chunked");

        // What the client received.
        let ids: Vec<_> = heads.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, [0, 1, 2]);
        for (id, h) in &heads {
            assert_eq!(h.status(), StatusCode::OK);
            assert_eq!(h.headers()["x-echo"], id.to_string().as_str());
        }
        assert!(bodies[0].is_empty());
        assert_eq!(bodies[1], small);
        assert!(bodies[2] == big, "1 MiB echo differs");
        assert!(cli.is_reusable());
        assert!(!srv.is_closed());
        assert!(c2s.is_empty() && s2c.is_empty());
    }

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn response_head_timeout_fails_the_awaited_exchange() {
        let mut c = conn_with(|cfg| cfg.response_timeout = Some(5 * SEC));
        // Idle: only the idle timer runs.
        assert_eq!(c.poll_timeout(), Some(60 * SEC));
        let id = c
            .send_request(req("GET", "http://h/"), Some(0), 10 * SEC)
            .unwrap();
        out(&mut c);
        assert_eq!(c.poll_timeout(), Some(15 * SEC));
        // Part of the head does not stop the timer.
        assert_eq!(c.handle_input(b"HTTP/1.1 200", 12 * SEC), 12);
        c.handle_timeout(14 * SEC);
        assert!(events(&mut c).is_empty());
        c.handle_timeout(15 * SEC);
        assert_eq!(
            events(&mut c),
            vec![E::Fail(Some(id), ProtocolError::HeadTimeout)]
        );
        assert!(c.is_closed());
        assert_eq!(c.poll_timeout(), None);
        assert_eq!(
            c.send_request(req("GET", "/"), Some(0), 16 * SEC),
            Err(H1Error::Closed)
        );
    }

    #[test]
    fn response_head_timer_stops_at_the_head_and_restarts_for_the_next() {
        let mut c = conn_with(|cfg| cfg.response_timeout = Some(5 * SEC));
        c.send_request(req("GET", "http://h/a"), Some(0), T0)
            .unwrap();
        c.send_request(req("GET", "http://h/b"), Some(0), SEC)
            .unwrap();
        out(&mut c);
        assert_eq!(c.poll_timeout(), Some(5 * SEC));
        // A slow body is not a late head.
        feed_all_at(
            &mut c,
            b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab",
            4 * SEC,
        );
        assert_eq!(c.poll_timeout(), None);
        c.handle_timeout(100 * SEC);
        assert!(!c.is_closed());
        // The first response ends at 120 s: the second's head is due 5 s later.
        feed_all_at(&mut c, b"cd", 120 * SEC);
        assert_eq!(c.poll_timeout(), Some(125 * SEC));
        feed_all_at(&mut c, b"HTTP/1.1 204 No Content\r\n\r\n", 124 * SEC);
        let ev = events(&mut c);
        assert_eq!(ev.last(), Some(&E::End(1)), "{ev:?}");
        // Idle now: the idle timer from the end of the last response.
        assert_eq!(c.poll_timeout(), Some(184 * SEC));
        assert!(c.is_reusable());
    }

    #[test]
    fn interim_responses_restart_the_head_timer() {
        let mut c = conn_with(|cfg| cfg.response_timeout = Some(5 * SEC));
        c.send_request(req("POST", "http://h/"), Some(1), T0)
            .unwrap();
        feed_all_at(&mut c, b"HTTP/1.1 100 Continue\r\n\r\n", 4 * SEC);
        assert_eq!(c.poll_timeout(), Some(9 * SEC));
    }

    #[test]
    fn no_response_timeout_when_none() {
        let mut c = conn_with(|cfg| {
            cfg.response_timeout = None;
            cfg.idle_timeout = 7 * SEC;
        });
        c.send_request(req("GET", "http://h/"), Some(0), T0)
            .unwrap();
        assert_eq!(c.poll_timeout(), None);
        c.handle_timeout(1000 * SEC);
        assert!(!c.is_closed());
        assert!(events(&mut c).is_empty());
    }

    #[test]
    fn idle_timeout_closes_quietly() {
        let mut c = conn_with(|cfg| cfg.idle_timeout = 7 * SEC);
        assert_eq!(c.poll_timeout(), Some(7 * SEC));
        c.handle_timeout(6 * SEC);
        assert!(!c.is_closed());
        // A request stops the idle timer; the end of its response starts it again.
        c.send_request(req("GET", "http://h/"), Some(0), 6 * SEC)
            .unwrap();
        out(&mut c);
        c.handle_timeout(20 * SEC);
        assert!(!c.is_closed());
        feed_all_at(&mut c, b"HTTP/1.1 204 No Content\r\n\r\n", 21 * SEC);
        events(&mut c);
        assert_eq!(c.poll_timeout(), Some(28 * SEC));
        c.handle_timeout(27 * SEC);
        assert!(!c.is_closed());
        c.handle_timeout(28 * SEC);
        assert!(c.is_closed());
        assert!(events(&mut c).is_empty(), "an idle close is quiet");
        assert_eq!(c.poll_timeout(), None);
    }

    fn feed_all_at(c: &mut ClientConn, b: &[u8], now: Duration) {
        assert_eq!(c.handle_input(b, now), b.len(), "not all input consumed");
    }

    #[test]
    fn trailers_from_the_server_engine_reach_the_client() {
        let mut srv = ServerConn::new(Arc::new(H1Config::default()), T0);
        let mut cli = conn();
        let mut te = req("GET", "http://example.com/t");
        te.headers.insert(header::TE, "trailers".parse().unwrap());
        te.headers.insert(header::CONNECTION, "TE".parse().unwrap());
        let id = cli.send_request(te, Some(0), T0).unwrap();
        let wire = out(&mut cli);
        assert_eq!(srv.handle_input(&wire, T0), wire.len());
        let mut sid = None;
        while let Some(ev) = srv.poll_event() {
            if let ServerEvent::Request { id, .. } = ev {
                sid = Some(id);
            }
        }
        let sid = sid.unwrap();
        let head = http::Response::builder()
            .status(200)
            .body(())
            .unwrap()
            .into_parts()
            .0;
        srv.send_response(sid, head, None).unwrap();
        srv.send_body(sid, b"payload").unwrap();
        let mut trailers = HeaderMap::new();
        trailers.insert("x-checksum", "42".parse().unwrap());
        trailers.insert(header::CONTENT_TYPE, "text/evil".parse().unwrap());
        srv.finish_response_with_trailers(sid, Some(&trailers))
            .unwrap();
        let wire = srv.pending_output().to_vec();
        srv.consume_output(wire.len(), T0);
        feed_all(&mut cli, &wire);
        assert_eq!(
            events(&mut cli),
            vec![
                E::Resp(id, 200, ResponseFraming::Chunked),
                E::Body(id, b"payload".to_vec()),
                E::Trailers(id, vec![("x-checksum".into(), "42".into())]),
                E::End(id),
            ]
        );
        assert!(cli.is_reusable());
    }

    #[test]
    fn request_trailers_reach_the_server_engine() {
        let mut srv = ServerConn::new(Arc::new(H1Config::default()), T0);
        let mut cli = conn();
        let id = cli
            .send_request(req("POST", "http://example.com/up"), None, T0)
            .unwrap();
        cli.send_body(id, b"payload").unwrap();
        let mut trailers = HeaderMap::new();
        trailers.insert("x-checksum", "42".parse().unwrap());
        cli.finish_request_with_trailers(id, Some(&trailers))
            .unwrap();
        let wire = out(&mut cli);
        assert_eq!(srv.handle_input(&wire, T0), wire.len());
        let mut seen = Vec::new();
        while let Some(ev) = srv.poll_event() {
            match ev {
                ServerEvent::Request { id, .. } => seen.push(format!("req{id}")),
                ServerEvent::Body { data, .. } => {
                    seen.push(String::from_utf8_lossy(&data).into_owned())
                }
                ServerEvent::Trailers { trailers, .. } => seen.push(format!("{trailers:?}")),
                ServerEvent::BodyEnd { id } => seen.push(format!("end{id}")),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(
            seen,
            ["req0", "payload", "{\"x-checksum\": \"42\"}", "end0"]
        );
    }
}
