//! The per-connection HTTP/1.1 server state machine.
//!
//! # Decisions
//!
//! * **Ordering.** Responses are written strictly in request order. A
//!   response for a later request is buffered (counted against
//!   `max_output_buffer`) until all earlier ones are finished.
//! * **Engine errors.** On a protocol violation the engine emits
//!   [`ServerEvent::Rejected`], stops parsing and queues an error response
//!   (`Connection: close`, small `text/plain` body) *in order*: responses to
//!   requests parsed before the bad one are still written first. If the error
//!   concerns the body of a request whose response the application already
//!   started, no error response is written: the engine lets that response
//!   (and all earlier ones) finish and then closes.
//! * **After rejection / when closing.** Input is consumed and discarded
//!   (nothing is stored), so the peer can keep sending while the response
//!   drains; [`ServerConn::wants_input`] returns false.
//! * **`Expect: 100-continue`.** [`ServerConn::send_continue`] writes
//!   `100 Continue` at most once, before the final response. If the
//!   application starts the final response without having sent `100` and
//!   before any body byte arrived, the client may or may not send the body
//!   (RFC 9110 §10.1.1), so the engine marks the response `Connection: close`,
//!   stops reading (no further `Body`/`BodyEnd` for that request) and closes
//!   after the response. If body bytes already arrived, the client is sending
//!   the body anyway and reading continues normally (keep-alive preserved).
//!   `Expect` is ignored for HTTP/1.0 and for values other than `100-continue`.
//! * **Closing responses.** When a response carries `Connection: close`
//!   (client asked, HTTP/1.0 without keep-alive, application set it, or
//!   unknown length for HTTP/1.0), the engine stops reading after that
//!   request's body; requests already parsed after it are dropped
//!   (`send_response` for them returns [`H1Error::Closed`]).
//! * **Early responses.** For ordinary requests the application may respond
//!   before reading the body; the engine keeps decoding it (Body events
//!   continue) and the connection persists.
//! * **EOF.** Between requests (or in an incomplete head): the partial head is
//!   dropped, outstanding responses are written, then the connection closes.
//!   In the middle of a request body: [`ServerEvent::Aborted`] is emitted and
//!   the connection is closed at once (pending output is dropped).
//! * **Timers.** `head_timeout` runs from the first byte of a head (leading
//!   empty lines included) to its end; `idle_timeout` runs while nothing is in
//!   progress (no partial head, no outstanding request, output drained). There
//!   is no body or write timeout here; the caller may add one.
//! * **Switching protocols.** After a `CONNECT` request, or an HTTP/1.1
//!   request carrying `Upgrade`, and its body, parsing pauses until the
//!   application answers it. A `2xx` to `CONNECT` or a `101` to an `Upgrade`
//!   request is written without framing headers and switches the connection:
//!   the engine consumes no more input (bytes after that request stay with
//!   the caller) and, once [`ServerConn::is_upgraded`] and the output is
//!   written, the stream belongs to the caller. Any other answer resumes
//!   HTTP parsing.
//! * **Responses.** Always `HTTP/1.1` status lines. 1xx via `send_response`
//!   is refused (use `send_continue`). For HEAD, 204 and 304 no body is
//!   written: `send_body` data is discarded and the declared length is not
//!   enforced; `Content-Length` is kept for HEAD/304, never sent for 204.
//! * **Request trailers.** The trailer section of a chunked request body is bounded by
//!   `max_head_size` (larger: 431) and checked field by field (malformed: 400); its fields
//!   are reported as [`ServerEvent::Trailers`] just before `BodyEnd`, without the fields a
//!   trailer section never carries (RFC 9110 §6.5.1, [`super::is_forbidden_trailer`]:
//!   they are dropped, as a recipient must not use them as header fields). No event when
//!   no field is left.
//! * **Response trailers.** [`ServerConn::finish_response_with_trailers`] sends trailer
//!   fields after the last chunk of a chunked response (RFC 9112 §7.1.2) only when the
//!   request's `TE` lists `trailers` (hyper's rule: the client said it accepts them). Fields
//!   a trailer section must not carry (framing, routing, authentication, controls, content
//!   metadata: RFC 9110 §6.5.1, [`super::is_forbidden_trailer`]) are never sent; when the
//!   response head declared its trailers in a `Trailer` field, only those names are sent.
//!   Otherwise (no `TE: trailers`, a length-framed or HTTP/1.0 response) they are dropped:
//!   the body itself is unchanged.
//! * **Shared core.** Head reading, body decoding and encoding, the output buffer and the
//!   timers are the connection core (`conn`) the client engine uses too.

use std::collections::VecDeque;
use std::sync::Arc;

use core::time::Duration;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName};
use http::{Method, StatusCode, Version};

use super::body::BodyDecoder;
use super::chunked::ChunkedDecoder;
use super::conn::{
    earliest, BodyBuffer, BodyEncoder, HeadLimits, HeadReader, HeadStep, Misframed, Output, Timer,
};
use super::head::{self, DefaultFields, FramingHeader};
use super::{AbortReason, BodyFraming, H1Config, H1Error, RejectReason};

/// Sequential id of a request on one connection (starting at 0).
pub type RequestId = u64;

const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Something the application must react to.
// `Request` is much larger than the other variants; events are short-lived
// and few (bounded by the pipeline cap), so boxing is not worth the API cost.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum ServerEvent {
    /// A complete, validated request head. `body` says how the request body is framed.
    Request {
        /// Sequential request id.
        id: RequestId,
        /// The request head.
        head: http::Request<()>,
        /// How the request body is framed.
        body: BodyFraming,
        /// The client sent `Expect: 100-continue` (HTTP/1.1 only).
        expect_continue: bool,
        /// The request has an `Upgrade` field (saves the caller a lookup to learn it).
        upgrade: bool,
    },
    /// Decoded request body bytes, in order.
    Body {
        /// Request id.
        id: RequestId,
        /// Body bytes.
        data: Bytes,
    },
    /// The trailer fields of a chunked request body (only when it had some that a
    /// trailer section may carry), just before its `BodyEnd`.
    Trailers {
        /// Request id.
        id: RequestId,
        /// The trailer fields.
        trailers: HeaderMap,
    },
    /// The request body is complete (emitted for every request, also with no body).
    BodyEnd {
        /// Request id.
        id: RequestId,
    },
    /// The engine rejected the input with an HTTP error status. It queued the
    /// error response itself (with `Connection: close`) unless the affected
    /// response had already started, stops reading, and closes after writing.
    /// No events follow.
    Rejected {
        /// Status of the error response.
        status: StatusCode,
        /// Why the input was rejected.
        reason: RejectReason,
    },
    /// The connection was aborted without a response (e.g. EOF mid-body); it
    /// is closed immediately. No events follow.
    Aborted {
        /// Why the connection was aborted.
        reason: AbortReason,
    },
}

/// What [`ServerConn::write_body_in_place`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InPlaceWrite {
    /// Bytes of the buffer used: body bytes plus their chunk framing.
    pub wire: usize,
    /// Body bytes among them.
    pub body: usize,
}

/// How the request body is being decoded.
#[derive(Debug)]
enum ReadState {
    /// Waiting for or accumulating a request head.
    Head,
    /// Decoding the body of request `id`.
    Body { id: RequestId, decoder: BodyDecoder },
    /// Reading is over: input is consumed and dropped.
    Discard,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RespState {
    NotStarted,
    Streaming(BodyEncoder),
    Finished,
}

/// How a request may switch the connection to another protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Switch {
    /// `CONNECT`: a `2xx` makes the connection a tunnel.
    Connect,
    /// `Upgrade`: a `101` hands the connection to the new protocol.
    Upgrade,
}

/// Per-request response bookkeeping.
#[derive(Debug)]
struct Slot {
    id: RequestId,
    switch: Option<Switch>,
    head_req: bool,
    version: Version,
    keep_alive: bool,
    expect_continue: bool,
    continue_sent: bool,
    body_done: bool,
    body_bytes: u64,
    engine_owned: bool,
    /// The request's `TE` lists `trailers`.
    accepts_trailers: bool,
    /// The trailer fields the response head declared (`Trailer`), if it did.
    declared_trailers: Option<Vec<HeaderName>>,
    resp: RespState,
    /// Response bytes not yet moved to the output (non-empty only while an
    /// earlier response is unfinished).
    buf: Vec<u8>,
}

/// One HTTP/1.1 server connection (sans-IO).
#[derive(Debug)]
pub struct ServerConn {
    config: Arc<H1Config>,
    now: Duration,
    read: ReadState,
    head: HeadReader,
    idle_since: Option<Duration>,
    stalled: bool,
    next_id: RequestId,
    slots: VecDeque<Slot>,
    events: VecDeque<ServerEvent>,
    body: BodyBuffer,
    /// Output ready for the wire; it stalls (a peer that stopped reading) when blocked
    /// longer than the idle timeout.
    output: Output,
    close_after: Option<RequestId>,
    write_done: bool,
    closed_now: bool,
    /// Parsing waits for the answer to this request (`CONNECT` / `Upgrade`).
    switch_wait: Option<RequestId>,
    /// A switching response was sent: the stream is the caller's.
    upgraded: bool,
    /// The fields every response head gets unless it has them, the engine's own error
    /// responses included: the caller's `Date` and `Server`
    /// ([`ServerConn::set_default_fields`]).
    defaults: Option<Arc<DefaultFields>>,
}

impl ServerConn {
    /// Sets the header fields every response head gets unless it has a field of that
    /// name, the engine's own error responses (400, 408, 413, 414, 431, 505, ...)
    /// included: `Date` (RFC 9110 §6.6.1) and `Server`. Call it again when they change
    /// (`Date` every second); the same `fields` again costs a pointer comparison.
    pub fn set_default_fields(&mut self, fields: &Arc<DefaultFields>) {
        if !self
            .defaults
            .as_ref()
            .is_some_and(|d| Arc::ptr_eq(d, fields))
        {
            self.defaults = Some(Arc::clone(fields));
        }
    }

    /// The default fields as field lines, for an error response.
    fn default_lines(&self) -> &[u8] {
        self.defaults.as_deref().map_or(&[], DefaultFields::lines)
    }

    /// When the connection is waiting for its next request with nothing in progress (no
    /// request, no buffered input or output, not closing): since when it is idle. Such a
    /// connection can be dropped and made again with [`ServerConn::new`] at that instant
    /// when the next bytes come, which keeps its idle timer; a keep-alive connection then
    /// costs no engine memory between requests.
    pub fn idle_since(&self) -> Option<Duration> {
        let idle = self.slots.is_empty()
            && self.events.is_empty()
            && self.output.pending().is_empty()
            && self.head.is_empty()
            && self.body.is_empty()
            && matches!(self.read, ReadState::Head)
            && self.switch_wait.is_none()
            && self.close_after.is_none()
            && !self.write_done
            && !self.closed_now
            && !self.upgraded;
        if idle {
            self.idle_since
        } else {
            None
        }
    }

    /// Creates a connection; `now` starts the idle timer.
    pub fn new(config: Arc<H1Config>, now: Duration) -> Self {
        Self {
            config,
            now,
            read: ReadState::Head,
            head: HeadReader::default(),
            idle_since: Some(now),
            stalled: false,
            next_id: 0,
            slots: VecDeque::new(),
            events: VecDeque::new(),
            body: BodyBuffer::default(),
            output: Output::default(),
            close_after: None,
            write_done: false,
            closed_now: false,
            switch_wait: None,
            upgraded: false,
            defaults: None,
        }
    }

    /// Offers received bytes; returns how many were consumed (maybe fewer than
    /// offered, even 0, under backpressure; the caller keeps the rest and
    /// offers them again later). When closing, input is consumed and dropped.
    pub fn handle_input(&mut self, data: &[u8], now: Duration) -> usize {
        self.now = now;
        if self.upgraded {
            // Everything after the switching request belongs to the caller.
            return 0;
        }
        if self.is_closed() {
            return data.len();
        }
        let mut consumed = 0usize;
        loop {
            let rest = data.get(consumed..).unwrap_or(&[]);
            let n = match self.read {
                ReadState::Discard => {
                    consumed = data.len();
                    break;
                }
                ReadState::Head => {
                    if rest.is_empty()
                        || self.switch_wait.is_some()
                        || self.slots.len() >= self.config.max_pipelined.max(1)
                    {
                        break;
                    }
                    self.read_head(rest)
                }
                ReadState::Body { .. } => self.read_body(rest),
            };
            consumed += n;
            if n == 0 && !matches!(self.read, ReadState::Discard) {
                // No progress possible right now (need more input or room).
                // A state change without consumption (e.g. empty body end)
                // cannot happen here: those transitions consume bytes.
                break;
            }
        }
        self.flush_body();
        self.update_idle();
        consumed.min(data.len())
    }

    /// The peer closed its sending side (EOF). Between requests (or in an
    /// incomplete head) outstanding responses are written and then the
    /// connection closes; in the middle of a body the connection is aborted.
    pub fn handle_eof(&mut self, now: Duration) {
        self.now = now;
        if self.is_closed() || self.upgraded {
            return;
        }
        match self.read {
            ReadState::Head => {
                self.stop_reading();
                self.close_after_pending();
            }
            ReadState::Body { .. } => {
                self.flush_body();
                self.stop_reading();
                self.events.push_back(ServerEvent::Aborted {
                    reason: AbortReason::EofInBody,
                });
                self.close_immediately();
            }
            ReadState::Discard => {}
        }
        self.update_idle();
    }

    /// Returns the next event, if any. Taking a `Body` event frees room in
    /// the body buffer (the caller should then offer pending input again).
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        let ev = self.events.pop_front()?;
        if let ServerEvent::Body { data, .. } = &ev {
            self.body.taken(data.len());
        }
        Some(ev)
    }

    /// Writes `HTTP/1.1 100 Continue` once for an `Expect: 100-continue`
    /// request whose body is still pending and whose response has not started.
    /// Otherwise does nothing.
    pub fn send_continue(&mut self, id: RequestId) {
        if self.is_closed() || self.write_done {
            return;
        }
        let reading_it = matches!(self.read, ReadState::Body { id: cur, .. } if cur == id);
        if let Some(slot) = self.slot_mut(id) {
            if reading_it
                && slot.expect_continue
                && !slot.continue_sent
                && !slot.body_done
                && !slot.engine_owned
                && slot.resp == RespState::NotStarted
            {
                slot.buf.extend_from_slice(CONTINUE);
                slot.continue_sent = true;
            }
        }
        self.flush();
        self.update_idle();
    }

    /// Starts the response for request `id`. The engine owns framing and
    /// persistence headers: it drops the application's `Content-Length` /
    /// `Transfer-Encoding`, adds `Content-Length: n` for `Some(n)`, chunked
    /// (HTTP/1.1) or close-delimited (HTTP/1.0) for `None`, and adds
    /// `Connection: close` / `keep-alive` as needed.
    pub fn send_response(
        &mut self,
        id: RequestId,
        head: http::response::Parts,
        body_len: Option<u64>,
    ) -> Result<(), H1Error> {
        if self.is_closed() || self.write_done {
            return Err(H1Error::Closed);
        }
        let status = head.status;
        let waiting = self.switch_wait == Some(id);
        let switch = self.slot_mut(id).and_then(|s| s.switch);
        let switching = waiting
            && match switch {
                Some(Switch::Connect) => status.is_success(),
                Some(Switch::Upgrade) => status == StatusCode::SWITCHING_PROTOCOLS,
                None => false,
            };
        if status.is_informational() && !switching {
            return Err(H1Error::InformationalStatus(status));
        }
        if self.close_after.is_some_and(|c| id > c) && id < self.next_id {
            return Err(H1Error::Closed);
        }
        let close_after = self.close_after;
        if waiting && !switching {
            // Not switching after all: HTTP parsing resumes.
            self.switch_wait = None;
        }
        let index = self.slot_index(id).ok_or(H1Error::UnknownRequest(id))?;
        let slot = self
            .slots
            .get_mut(index)
            .ok_or(H1Error::UnknownRequest(id))?;
        if slot.engine_owned {
            return Err(H1Error::RequestRejected(id));
        }
        if slot.resp != RespState::NotStarted {
            return Err(H1Error::ResponseAlreadyStarted(id));
        }
        // The response on the wire writes its head straight into the output buffer (which
        // keeps its memory from one response to the next); a later one into its own.
        let out = if index == 0 && slot.buf.is_empty() {
            self.output.buf_mut()
        } else {
            &mut slot.buf
        };
        let defaults = self.defaults.as_deref();
        if switching {
            // No framing and no persistence headers: after this head the bytes are the
            // new protocol's (RFC 9110 §9.3.6, §15.2.2).
            head::write_response_head(
                out,
                status,
                &head.headers,
                defaults,
                FramingHeader::None,
                false,
                false,
            );
            slot.resp = RespState::Finished;
            self.switch_wait = None;
            self.upgraded = true;
            self.flush();
            self.update_idle();
            return Ok(());
        }
        let no_body =
            slot.head_req || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED;
        let (framing_header, framing) = if no_body {
            let h = match body_len {
                Some(n) if status != StatusCode::NO_CONTENT => FramingHeader::Length(n),
                _ => FramingHeader::None,
            };
            (h, BodyEncoder::NoBody)
        } else {
            match body_len {
                Some(n) => (
                    FramingHeader::Length(n),
                    BodyEncoder::Length { remaining: n },
                ),
                None if slot.version == Version::HTTP_11 => (
                    FramingHeader::Chunked,
                    BodyEncoder::Chunked {
                        trailers: slot.accepts_trailers,
                    },
                ),
                None => (FramingHeader::None, BodyEncoder::CloseDelimited),
            }
        };
        if matches!(framing, BodyEncoder::Chunked { trailers: true }) {
            slot.declared_trailers = head::declared_trailers(&head.headers);
        }
        let expect_close =
            slot.expect_continue && !slot.continue_sent && !slot.body_done && slot.body_bytes == 0;
        let close = !slot.keep_alive
            || head::has_close_token(&head.headers)
            || framing == BodyEncoder::CloseDelimited
            || expect_close
            || close_after == Some(id);
        let ka_token = !close && slot.version == Version::HTTP_10;
        head::write_response_head(
            out,
            status,
            &head.headers,
            defaults,
            framing_header,
            close,
            ka_token,
        );
        slot.resp = RespState::Streaming(framing);
        if close {
            self.set_close_after(id);
            let own_body = matches!(self.read, ReadState::Body { id: cur, .. } if cur == id);
            if !own_body || expect_close {
                self.stop_reading();
            }
        }
        self.flush();
        Ok(())
    }

    /// Appends body bytes for response `id` (chunk-encoded if chunked).
    /// Fails if more bytes than the declared length, or more than
    /// [`send_capacity`](Self::send_capacity).
    pub fn send_body(&mut self, id: RequestId, data: &[u8]) -> Result<(), H1Error> {
        if self.is_closed() || self.write_done {
            return Err(H1Error::Closed);
        }
        let capacity = self.send_capacity();
        let slot = self.slot_mut(id).ok_or(H1Error::UnknownRequest(id))?;
        let framing = match slot.resp {
            RespState::NotStarted if slot.engine_owned => {
                return Err(H1Error::RequestRejected(id));
            }
            RespState::NotStarted => return Err(H1Error::ResponseNotStarted(id)),
            RespState::Finished => return Err(H1Error::Finished(id)),
            RespState::Streaming(f) => f,
        };
        if framing.carries_body() && data.len() > capacity {
            return Err(H1Error::OutputFull {
                requested: data.len(),
                capacity,
            });
        }
        let mut framing = framing;
        if let Err(Misframed::TooLong(excess)) = framing.encode(&mut slot.buf, data) {
            return Err(H1Error::BodyTooLong { id, excess });
        }
        slot.resp = RespState::Streaming(framing);
        self.flush();
        self.update_idle();
        Ok(())
    }

    /// True when body bytes of response `id` may be written straight into the transport's
    /// send buffer now ([`write_body_in_place`](Self::write_body_in_place)): its head is
    /// written out (no output pending), it is the response on the wire (earlier ones are
    /// finished; later pipelined ones wait in their own buffers), and its body still takes
    /// bytes.
    pub fn can_write_in_place(&self, id: RequestId) -> bool {
        if self.closed_now || self.write_done || !self.output.pending().is_empty() {
            return false;
        }
        match self.slots.front() {
            Some(slot) if slot.id == id && slot.buf.is_empty() => match slot.resp {
                RespState::Streaming(BodyEncoder::Length { remaining }) => remaining > 0,
                RespState::Streaming(framing) => framing.carries_body(),
                RespState::NotStarted | RespState::Finished => false,
            },
            _ => false,
        }
    }

    /// Writes body bytes of response `id` in place at the start of `buf`, the free space
    /// of the transport's send buffer: `fill` gets room for body bytes (never past the
    /// declared length) and returns how many it wrote there; the engine frames them
    /// (chunk-size line and CRLF around them when chunked) and counts them like
    /// [`send_body`](Self::send_body) would. The caller then tells the transport that
    /// [`InPlaceWrite::wire`] bytes of `buf` were written. Only when
    /// [`can_write_in_place`](Self::can_write_in_place); otherwise
    /// [`H1Error::NotInPlace`]. A `buf` too small for one chunk is left untouched (0
    /// written).
    pub fn write_body_in_place(
        &mut self,
        id: RequestId,
        buf: &mut [u8],
        fill: &mut dyn FnMut(&mut [u8]) -> usize,
    ) -> Result<InPlaceWrite, H1Error> {
        if self.is_closed() || self.write_done {
            return Err(H1Error::Closed);
        }
        if !self.can_write_in_place(id) {
            return Err(H1Error::NotInPlace(id));
        }
        let Some(RespState::Streaming(mut framing)) = self.slots.front().map(|s| s.resp) else {
            return Err(H1Error::NotInPlace(id));
        };
        if !buf.is_empty() {
            self.output.room_in_place();
        }
        let Some(slot) = self.slots.front_mut() else {
            return Err(H1Error::UnknownRequest(id));
        };
        let (wire, body) = framing.encode_in_place(buf, fill);
        slot.resp = RespState::Streaming(framing);
        Ok(InPlaceWrite { wire, body })
    }

    /// Ends response `id` (writes the last chunk if chunked). If fewer bytes
    /// than the declared `Content-Length` were sent, the response is left
    /// truncated, the connection closes after it, and an error is returned.
    pub fn finish_response(&mut self, id: RequestId) -> Result<(), H1Error> {
        self.finish_response_with_trailers(id, None)
    }

    /// Ends response `id` like [`finish_response`](Self::finish_response), with trailer
    /// fields after the last chunk when the response is chunked and the request accepts
    /// them (see the module docs); otherwise the trailers are dropped.
    pub fn finish_response_with_trailers(
        &mut self,
        id: RequestId,
        trailers: Option<&HeaderMap>,
    ) -> Result<(), H1Error> {
        if self.is_closed() || self.write_done {
            return Err(H1Error::Closed);
        }
        let slot = self.slot_mut(id).ok_or(H1Error::UnknownRequest(id))?;
        let framing = match slot.resp {
            RespState::NotStarted if slot.engine_owned => {
                return Err(H1Error::RequestRejected(id));
            }
            RespState::NotStarted => return Err(H1Error::ResponseNotStarted(id)),
            RespState::Finished => return Err(H1Error::Finished(id)),
            RespState::Streaming(f) => f,
        };
        slot.resp = RespState::Finished;
        let declared = slot.declared_trailers.as_deref();
        let mut result = Ok(());
        if let Err(Misframed::TooShort(missing) | Misframed::TooLong(missing)) =
            framing.finish(&mut slot.buf, trailers, declared)
        {
            result = Err(H1Error::BodyTooShort { id, missing });
            self.set_close_after(id);
            self.stop_reading();
        }
        self.flush();
        self.update_idle();
        result
    }

    /// Aborts request `id` (e.g. handler failure): queues a `500` with
    /// `Connection: close` if its response has not started, otherwise leaves
    /// the response truncated. Either way the connection closes after it.
    pub fn abort(&mut self, id: RequestId) {
        if self.is_closed() || self.write_done {
            return;
        }
        let extra = self.defaults.clone();
        let extra = extra.as_deref().map_or(&[][..], DefaultFields::lines);
        let Some(slot) = self.slot_mut(id) else {
            return;
        };
        match slot.resp {
            RespState::NotStarted => {
                let status = StatusCode::INTERNAL_SERVER_ERROR;
                let response = head::error_response(status, "internal server error", extra);
                slot.buf.extend_from_slice(&response);
                slot.engine_owned = true;
            }
            RespState::Streaming(_) | RespState::Finished => {}
        }
        slot.resp = RespState::Finished;
        self.set_close_after(id);
        self.stop_reading();
        self.flush();
        self.update_idle();
    }

    /// How many more response-body bytes the engine accepts right now
    /// (`max_output_buffer` minus everything buffered; chunk framing adds a
    /// few bytes on top).
    pub fn send_capacity(&self) -> usize {
        if self.is_closed() || self.write_done {
            return 0;
        }
        let buffered: usize =
            self.pending_output().len() + self.slots.iter().map(|s| s.buf.len()).sum::<usize>();
        self.config.max_output_buffer.saturating_sub(buffered)
    }

    /// Bytes ready for the wire.
    pub fn pending_output(&self) -> &[u8] {
        if self.closed_now {
            return &[];
        }
        self.output.pending()
    }

    /// Reports that `n` bytes of [`pending_output`](Self::pending_output) were
    /// written. `now` restarts the idle timer if the connection becomes idle.
    pub fn consume_output(&mut self, n: usize, now: Duration) {
        self.now = now;
        self.output.consume(n);
        self.update_idle();
    }

    /// Absolute deadline of the next timer (head, idle or output stall timeout), if any.
    pub fn poll_timeout(&self) -> Option<Duration> {
        if self.closed_now || self.upgraded {
            return None;
        }
        let stall = self.output.stall_timer(self.config.idle_timeout).deadline();
        if self.is_closed() || self.write_done {
            return stall;
        }
        let other = match (&self.read, self.head.started()) {
            (ReadState::Head, Some(_)) => self.head_timer().deadline(),
            _ => self.idle_timer().deadline(),
        };
        earliest([stall, other])
    }

    /// Reports that the caller could write none of [`pending_output`](Self::pending_output),
    /// or no room was free for a body written in place (the peer's window is full or
    /// closed). Starts the output stall timer unless it runs.
    pub fn output_blocked(&mut self, now: Duration) {
        self.now = now;
        if self.closed_now {
            return;
        }
        let in_place = self
            .slots
            .front()
            .is_some_and(|slot| self.can_write_in_place(slot.id));
        if in_place {
            self.output.blocked_in_place(now);
        } else {
            self.output.blocked(now);
        }
    }

    /// True when the connection was ended because its output made no progress for the
    /// idle timeout (a peer that stopped reading, e.g. a window that stays closed): the
    /// caller should reset it rather than close it gracefully.
    pub fn is_stalled(&self) -> bool {
        self.stalled
    }

    /// Fires expired timers: an expired head timeout rejects with 408; an
    /// expired idle timeout closes the connection silently.
    pub fn handle_timeout(&mut self, now: Duration) {
        self.now = now;
        if self.upgraded {
            return;
        }
        let stalled = !self.closed_now
            && self
                .output
                .stall_timer(self.config.idle_timeout)
                .expired(now);
        if stalled {
            self.stalled = true;
            self.close_immediately();
            self.update_idle();
            return;
        }
        if self.is_closed() || self.write_done {
            return;
        }
        let head_expired = matches!(self.read, ReadState::Head) && self.head_timer().expired(now);
        if head_expired {
            self.reject_head(RejectReason::HeadTimeout);
        } else if self.is_idle() && self.idle_timer().expired(now) {
            self.close_immediately();
        }
        self.update_idle();
    }

    /// True when the engine wants more input (no backpressure, not closing).
    pub fn wants_input(&self) -> bool {
        if self.is_closed() || self.write_done || self.upgraded {
            return false;
        }
        match self.read {
            ReadState::Head => {
                self.switch_wait.is_none() && self.slots.len() < self.config.max_pipelined.max(1)
            }
            ReadState::Body { .. } => self.body.room(self.config.max_body_buffer) > 0,
            ReadState::Discard => false,
        }
    }

    /// True once a switching response (`2xx` to `CONNECT`, `101`) and everything before it
    /// was written: the connection's byte stream now belongs to the caller, starting with the
    /// input the engine did not consume.
    pub fn is_upgraded(&self) -> bool {
        self.upgraded
            && !self.is_closed()
            && self.slots.is_empty()
            && self.pending_output().is_empty()
    }

    /// True once a switching response was queued (see [`is_upgraded`](Self::is_upgraded)).
    pub fn has_switched(&self) -> bool {
        self.upgraded
    }

    /// True once everything is written and the caller should close the connection.
    pub fn is_closed(&self) -> bool {
        self.closed_now || (self.write_done && self.output.pending().is_empty())
    }

    // ----- internals -----

    fn slot_mut(&mut self, id: RequestId) -> Option<&mut Slot> {
        let idx = self.slot_index(id)?;
        self.slots.get_mut(idx)
    }

    /// Where request `id`'s slot is in `slots` (0: the response on the wire).
    fn slot_index(&self, id: RequestId) -> Option<usize> {
        let front = self.slots.front()?.id;
        usize::try_from(id.checked_sub(front)?).ok()
    }

    fn is_idle(&self) -> bool {
        !self.closed_now
            && !self.write_done
            && matches!(self.read, ReadState::Head)
            && self.head.is_empty()
            && self.slots.is_empty()
            && self.pending_output().is_empty()
    }

    fn head_timer(&self) -> Timer {
        Timer::new(self.head.started(), self.config.head_timeout)
    }

    fn idle_timer(&self) -> Timer {
        Timer::new(self.idle_since, self.config.idle_timeout)
    }

    fn update_idle(&mut self) {
        if self.is_idle() {
            if self.idle_since.is_none() {
                self.idle_since = Some(self.now);
            }
        } else {
            self.idle_since = None;
        }
    }

    /// Reads (part of) a request head from `rest`; returns bytes consumed.
    fn read_head(&mut self, rest: &[u8]) -> usize {
        let limits = HeadLimits {
            max_size: self.config.max_head_size,
            max_uri_len: Some(self.config.max_uri_len),
        };
        let (n, step) = self.head.read(rest, limits, self.now);
        match step {
            HeadStep::Partial => {}
            HeadStep::Complete => self.complete_head(),
            HeadStep::Failed(reason) => self.reject_head(reason),
        }
        n
    }

    /// Parses the complete head and emits the request.
    fn complete_head(&mut self) {
        let config = &self.config;
        let parsed = self.head.take(|buf| head::parse_request_head(buf, config));
        let p = match parsed {
            Ok(p) => p,
            Err(reason) => {
                self.reject_head(reason);
                return;
            }
        };
        let id = self.next_id;
        self.next_id += 1;
        let switch = if p.request.method() == Method::CONNECT {
            Some(Switch::Connect)
        } else if p.request.version() == Version::HTTP_11 && p.upgrade {
            Some(Switch::Upgrade)
        } else {
            None
        };
        self.slots.push_back(Slot {
            id,
            switch,
            head_req: p.request.method() == Method::HEAD,
            version: p.request.version(),
            keep_alive: p.keep_alive,
            expect_continue: p.expect_continue,
            continue_sent: false,
            body_done: false,
            body_bytes: 0,
            engine_owned: false,
            accepts_trailers: p.accepts_trailers,
            declared_trailers: None,
            resp: RespState::NotStarted,
            buf: Vec::new(),
        });
        // A `CONNECT` from an HTTP/1.0 client without keep-alive may still become a
        // tunnel; if it does not, its response closes the connection.
        if !p.keep_alive && switch != Some(Switch::Connect) {
            self.set_close_after(id);
        }
        self.events.push_back(ServerEvent::Request {
            id,
            head: p.request,
            body: p.framing,
            expect_continue: p.expect_continue,
            upgrade: p.upgrade,
        });
        match p.framing {
            BodyFraming::None | BodyFraming::Length(0) => self.end_body(id),
            BodyFraming::Length(n) => {
                self.read = ReadState::Body {
                    id,
                    decoder: BodyDecoder::Length(n),
                };
            }
            BodyFraming::Chunked => {
                self.read = ReadState::Body {
                    id,
                    decoder: BodyDecoder::Chunked(
                        ChunkedDecoder::new(self.config.max_body_size, self.config.max_head_size)
                            .keep_trailers(),
                    ),
                };
            }
        }
    }

    /// Decodes body bytes from `rest`; returns bytes consumed.
    fn read_body(&mut self, rest: &[u8]) -> usize {
        let ReadState::Body { id, decoder } = &mut self.read else {
            return 0;
        };
        let id = *id;
        let (consumed, result, produced) =
            self.body
                .decode(id, decoder, rest, self.config.max_body_buffer);
        let trailers = match result {
            Ok(true) => decoder.take_trailers(),
            _ => None,
        };
        if let Some(slot) = self.slot_mut(id) {
            slot.body_bytes += produced;
        }
        match result {
            Err(e) => {
                self.reject_body(id, RejectReason::Chunked(e));
                0
            }
            Ok(done) => {
                if done {
                    if let Some(trailers) = trailers {
                        self.flush_body();
                        self.events
                            .push_back(ServerEvent::Trailers { id, trailers });
                    }
                    self.end_body(id);
                }
                consumed
            }
        }
    }

    /// Moves decoded body bytes into a `Body` event.
    fn flush_body(&mut self) {
        if let Some((id, data)) = self.body.flush() {
            self.events.push_back(ServerEvent::Body { id, data });
        }
    }

    /// The body of request `id` is complete.
    fn end_body(&mut self, id: RequestId) {
        self.flush_body();
        self.events.push_back(ServerEvent::BodyEnd { id });
        let mut switch = None;
        if let Some(slot) = self.slot_mut(id) {
            slot.body_done = true;
            switch = slot.switch;
        }
        self.read = if self.close_after.is_some_and(|c| c <= id) || self.write_done {
            ReadState::Discard
        } else {
            if switch.is_some() {
                self.switch_wait = Some(id);
            }
            ReadState::Head
        };
    }

    /// Stops parsing: later input is consumed and dropped.
    fn stop_reading(&mut self) {
        self.flush_body();
        self.read = ReadState::Discard;
        self.head.clear();
    }

    /// Closes after response `id` (or earlier if already set).
    fn set_close_after(&mut self, id: RequestId) {
        let id = self.close_after.map_or(id, |c| c.min(id));
        self.close_after = Some(id);
        if self.slots.front().is_none_or(|f| f.id > id) {
            // Everything up to `id` is already written.
            self.write_done = true;
            self.slots.clear();
            self.stop_reading();
        }
    }

    /// Closes after all outstanding responses.
    fn close_after_pending(&mut self) {
        match self.slots.back() {
            Some(s) => {
                let id = s.id;
                self.set_close_after(id);
            }
            None => self.write_done = true,
        }
    }

    fn close_immediately(&mut self) {
        self.closed_now = true;
        self.write_done = true;
        self.slots.clear();
        self.output.discard();
        self.read = ReadState::Discard;
    }

    /// Rejects a request head (or times out): queues the error response after
    /// all earlier responses.
    fn reject_head(&mut self, reason: RejectReason) {
        let status = reason.status();
        self.stop_reading();
        let id = self.next_id;
        self.next_id += 1;
        self.slots.push_back(Slot {
            id,
            switch: None,
            head_req: false,
            version: Version::HTTP_11,
            keep_alive: false,
            expect_continue: false,
            continue_sent: false,
            body_done: true,
            body_bytes: 0,
            engine_owned: true,
            accepts_trailers: false,
            declared_trailers: None,
            resp: RespState::Finished,
            buf: head::error_response(status, &error_text(&reason), self.default_lines()),
        });
        self.set_close_after(id);
        self.events
            .push_back(ServerEvent::Rejected { status, reason });
        self.flush();
    }

    /// Rejects the body of request `id`.
    fn reject_body(&mut self, id: RequestId, reason: RejectReason) {
        let status = reason.status();
        self.stop_reading();
        let response = head::error_response(status, &error_text(&reason), self.default_lines());
        match self.slot_mut(id) {
            Some(slot) => {
                if slot.resp == RespState::NotStarted {
                    slot.buf.extend_from_slice(&response);
                    slot.resp = RespState::Finished;
                    slot.engine_owned = true;
                }
                self.set_close_after(id);
            }
            None => self.close_after_pending(),
        }
        self.events
            .push_back(ServerEvent::Rejected { status, reason });
        self.flush();
    }

    /// Moves finished responses (in order) to the output buffer.
    fn flush(&mut self) {
        while let Some(front) = self.slots.front_mut() {
            if !front.buf.is_empty() {
                self.output.append(&mut front.buf);
            }
            if front.resp != RespState::Finished {
                break;
            }
            let id = front.id;
            self.slots.pop_front();
            if self.close_after == Some(id) {
                self.write_done = true;
                self.slots.clear();
                self.stop_reading();
                break;
            }
        }
    }
}

/// The text of an engine-made error response: the reason and its sources.
fn error_text(reason: &RejectReason) -> String {
    let mut text = reason.to_string();
    let mut source = std::error::Error::source(reason);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::super::chunked::ChunkedError;
    use super::*;
    use bytes::BytesMut;

    const SEC: Duration = Duration::from_secs(1);

    /// Small driver around a [`ServerConn`].
    struct H {
        c: ServerConn,
        now: Duration,
    }

    impl H {
        fn new() -> Self {
            Self::with(H1Config::default())
        }
        fn with(cfg: H1Config) -> Self {
            H {
                c: ServerConn::new(Arc::new(cfg), Duration::ZERO),
                now: Duration::ZERO,
            }
        }
        fn feed(&mut self, b: &[u8]) -> usize {
            self.c.handle_input(b, self.now)
        }
        fn feed_all(&mut self, b: &[u8]) {
            assert_eq!(self.feed(b), b.len(), "not all input consumed");
        }
        fn events(&mut self) -> Vec<ServerEvent> {
            std::iter::from_fn(|| self.c.poll_event()).collect()
        }
        fn out(&mut self) -> Vec<u8> {
            let v = self.c.pending_output().to_vec();
            self.c.consume_output(v.len(), self.now);
            v
        }
        fn respond(&mut self, id: RequestId, status: u16, body: &[u8]) {
            self.c
                .send_response(id, parts(status), Some(body.len() as u64))
                .unwrap();
            self.c.send_body(id, body).unwrap();
            self.c.finish_response(id).unwrap();
        }
        /// Asserts the connection is fully closed: nothing to write, no
        /// events, input swallowed without effect.
        fn assert_dead(&mut self) {
            assert!(self.c.is_closed());
            assert!(!self.c.wants_input());
            assert_eq!(self.c.poll_timeout(), None);
            // Drain what was queued before closing, then nothing new may appear.
            self.events();
            let more = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
            assert_eq!(self.feed(more), more.len());
            assert!(self.events().is_empty());
            assert!(self.c.pending_output().is_empty());
        }
    }

    fn parts(status: u16) -> http::response::Parts {
        http::Response::builder()
            .status(status)
            .body(())
            .unwrap()
            .into_parts()
            .0
    }

    #[derive(Debug)]
    struct Resp {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Resp {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        }
        fn closes(&self) -> bool {
            self.header("connection")
                .is_some_and(|v| v.split(',').any(|t| t.trim() == "close"))
        }
    }

    /// Parses one response; `no_body` for responses to HEAD.
    fn parse_resp(buf: &[u8], no_body: bool) -> (Resp, usize) {
        let mut hs = [httparse::EMPTY_HEADER; 32];
        let mut r = httparse::Response::new(&mut hs);
        let n = match r.parse(buf).unwrap() {
            httparse::Status::Complete(n) => n,
            httparse::Status::Partial => panic!("partial: {:?}", String::from_utf8_lossy(buf)),
        };
        let status = r.code.unwrap();
        let headers: Vec<(String, String)> = r
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_ascii_lowercase(),
                    String::from_utf8(h.value.to_vec()).unwrap(),
                )
            })
            .collect();
        let resp = Resp {
            status,
            headers,
            body: Vec::new(),
        };
        let rest = &buf[n..];
        let (body, used) = if no_body || status < 200 || status == 204 || status == 304 {
            (Vec::new(), 0)
        } else if let Some(cl) = resp.header("content-length") {
            let cl: usize = cl.parse().unwrap();
            (rest[..cl].to_vec(), cl)
        } else if resp.header("transfer-encoding").is_some() {
            let mut d = ChunkedDecoder::new(u64::MAX, 1 << 20);
            let mut out = BytesMut::new();
            let u = d.decode(rest, &mut out, usize::MAX).unwrap();
            assert!(d.is_done());
            (out.to_vec(), u)
        } else {
            (rest.to_vec(), rest.len())
        };
        (Resp { body, ..resp }, n + used)
    }

    fn parse_all(mut buf: &[u8]) -> Vec<Resp> {
        let mut v = Vec::new();
        while !buf.is_empty() {
            let (r, n) = parse_resp(buf, false);
            v.push(r);
            buf = &buf[n..];
        }
        v
    }

    fn get(path: &str) -> Vec<u8> {
        format!("GET {path} HTTP/1.1\r\nHost: a\r\n\r\n").into_bytes()
    }

    /// Feeds `input` and expects the engine to reject it with `status`,
    /// answer with `Connection: close` and close.
    fn expect_reject_cfg(cfg: H1Config, input: &[u8], status: u16) -> H {
        let mut h = H::with(cfg);
        let ctx = String::from_utf8_lossy(input).into_owned();
        assert_eq!(h.feed(input), input.len(), "{ctx}");
        let ev = h.events();
        match ev.last() {
            Some(ServerEvent::Rejected { status: s, reason }) => {
                assert_eq!(s.as_u16(), status, "{ctx}: {reason}");
                assert_eq!(reason.status(), *s);
                assert!(!reason.to_string().is_empty());
            }
            other => panic!("{ctx}: expected Rejected, got {other:?}"),
        }
        assert!(!h.c.wants_input());
        assert_eq!(h.c.poll_timeout(), None);
        let out = h.out();
        let resps = parse_all(&out);
        assert_eq!(resps.len(), 1, "{ctx}");
        assert_eq!(resps[0].status, status);
        assert!(resps[0].closes());
        assert_eq!(
            resps[0].header("content-type"),
            Some("text/plain; charset=utf-8")
        );
        assert!(!resps[0].body.is_empty());
        h.assert_dead();
        h
    }

    /// Engine-made responses carry the caller's `Date` and `Server` like the others
    /// (RFC 9110 §6.6.1): 400, 505, 431, 408 and the 500 of an aborted request.
    #[test]
    fn error_responses_carry_date_and_server() {
        let mut stamp = http::HeaderMap::new();
        stamp.insert("date", "Fri, 04 Dec 2026 17:00:00 GMT".parse().unwrap());
        stamp.insert("server", "tapir/test".parse().unwrap());
        let stamp = Arc::new(DefaultFields::new(&stamp));
        let check = |out: &[u8], status: u16| {
            let resps = parse_all(out);
            assert_eq!(resps[0].status, status);
            assert_eq!(
                resps[0].header("date"),
                Some("Fri, 04 Dec 2026 17:00:00 GMT")
            );
            assert_eq!(resps[0].header("server"), Some("tapir/test"));
        };
        for (input, status) in [
            (&b"GET / HTTP/1.1\r\n\r\n"[..], 400),
            (b"GET / HTTP/3.0\r\nHost: a\r\n\r\n", 505),
        ] {
            let mut h = H::new();
            h.c.set_default_fields(&stamp);
            h.feed(input);
            check(&h.out(), status);
        }
        // A head that never completes: 408.
        let mut h = H::new();
        h.c.set_default_fields(&stamp);
        h.feed(b"GET / HT");
        let due = h.c.poll_timeout().expect("head timer");
        h.c.handle_timeout(due);
        check(&h.out(), 408);
        // A handler that fails before answering: 500.
        let mut h = H::new();
        h.c.set_default_fields(&stamp);
        h.feed(&get("/"));
        let id = match h.events().first() {
            Some(ServerEvent::Request { id, .. }) => *id,
            other => panic!("{other:?}"),
        };
        h.c.abort(id);
        check(&h.out(), 500);
    }

    fn expect_reject(input: &[u8], status: u16) -> H {
        expect_reject_cfg(H1Config::default(), input, status)
    }

    fn expect_reject_req(head: &str, status: u16) {
        let _ = expect_reject(head.as_bytes(), status);
    }

    // ----- rejections -----

    #[test]
    fn reject_bare_lf() {
        expect_reject_req("GET / HTTP/1.1\nHost: a\r\n\r\n", 400);
        expect_reject_req("GET / HTTP/1.1\r\nHost: a\n\r\n", 400);
        expect_reject_req("GET / HTTP/1.1\r\nHost: a\r\n\n", 400);
        expect_reject_req("GET / HTTP/1.1\r\nHost: a\n\n", 400);
        expect_reject_req("\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400);
        expect_reject_req("\r\n\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400);
        expect_reject_req("\rXGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400);
        expect_reject_req("GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", 400);
    }

    #[test]
    fn reject_bare_lf_split_input() {
        // Bare LF detected incrementally, even byte by byte.
        let input = b"GET / HTTP/1.1\r\nHost: a\n\r\n";
        let mut h = H::new();
        for b in input.iter() {
            h.feed_all(std::slice::from_ref(b));
        }
        let ev = h.events();
        assert!(matches!(
            ev.last(),
            Some(ServerEvent::Rejected {
                reason: RejectReason::BareLf,
                ..
            })
        ));
        let r = parse_all(&h.out());
        assert_eq!(r[0].status, 400);
        h.assert_dead();
    }

    #[test]
    fn reject_obs_fold() {
        expect_reject_req("GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n c\r\n\r\n", 400);
        expect_reject_req("GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n\tc\r\n\r\n", 400);
        expect_reject_req("GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400);
    }

    #[test]
    fn reject_invalid_header_name_and_value() {
        expect_reject_req("GET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n", 400);
        expect_reject_req("GET / HTTP/1.1\r\nHost: a\r\nX(y): x\r\n\r\n", 400);
        expect_reject_req("GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400);
        expect_reject_req("GET / HTTP/1.1\r\nHost: a\r\n: x\r\n\r\n", 400);
        expect_reject_req("GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n", 400);
        expect_reject_req("GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n", 400);
        expect_reject_req("GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", 400);
    }

    #[test]
    fn reject_invalid_method_and_target() {
        expect_reject_req("G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400);
        expect_reject_req(" GET / HTTP/1.1\r\nHost: a\r\n\r\n", 400);
        expect_reject_req("GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400);
        expect_reject_req("GET foo HTTP/1.1\r\nHost: a\r\n\r\n", 400);
        expect_reject_req("GET /a\x7fb HTTP/1.1\r\nHost: a\r\n\r\n", 400);
        expect_reject_req("GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400);
        expect_reject_req("GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400);
        expect_reject_req("GET HTTP/1.1\r\nHost: a\r\n\r\n", 400);
        expect_reject_req("GET /\r\nHost: a\r\n\r\n", 400);
    }

    #[test]
    fn reject_host_problems() {
        expect_reject_req("GET / HTTP/1.1\r\n\r\n", 400);
        expect_reject_req("GET / HTTP/1.1\r\nX: y\r\n\r\n", 400);
        expect_reject_req("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400);
        expect_reject_req("GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", 400);
        expect_reject_req("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400);
        expect_reject_req("GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", 400);
    }

    #[test]
    fn reject_content_length_problems() {
        for cl in [
            "Content-Length: 5\r\nContent-Length: 5",
            "Content-Length: 5\r\nContent-Length: 6",
            "Content-Length: 5, 5",
            "Content-Length: +5",
            "Content-Length: -5",
            "Content-Length: 5 5",
            "Content-Length: 0x5",
            "Content-Length: 5a",
            "Content-Length:",
            "Content-Length: 99999999999999999999999",
        ] {
            expect_reject_req(
                &format!("POST / HTTP/1.1\r\nHost: a\r\n{cl}\r\n\r\nhello"),
                400,
            );
        }
    }

    #[test]
    fn reject_transfer_encoding_problems() {
        for te in [
            "Transfer-Encoding: chunked\r\nContent-Length: 5",
            "Content-Length: 5\r\nTransfer-Encoding: chunked",
            "Transfer-Encoding: gzip",
            "Transfer-Encoding: gzip, chunked",
            "Transfer-Encoding: chunked, gzip",
            "Transfer-Encoding: chunked, chunked",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
            "Transfer-Encoding: chunked;q=1",
            "Transfer-Encoding: identity",
            "Transfer-Encoding: xchunked",
            "Transfer-Encoding:",
            "Transfer-Encoding: ,",
        ] {
            expect_reject_req(
                &format!("POST / HTTP/1.1\r\nHost: a\r\n{te}\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
                400,
            );
        }
        expect_reject_req(
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            400,
        );
    }

    #[test]
    fn reject_versions() {
        expect_reject_req("GET / HTTP/3.1\r\nHost: a\r\n\r\n", 505);
        expect_reject_req("GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505);
        expect_reject_req("GET / HTTP/0.9\r\nHost: a\r\n\r\n", 505);
        expect_reject_req("GET / HTTP/1.x\r\nHost: a\r\n\r\n", 400);
        expect_reject_req("GET / HTTP/11\r\nHost: a\r\n\r\n", 400);
        expect_reject_req("GET / FTP/1.1\r\nHost: a\r\n\r\n", 400);
    }

    #[test]
    fn reject_uri_too_long() {
        let cfg = H1Config::default();
        // Complete head, just over the limit.
        let long = format!("/{}", "a".repeat(cfg.max_uri_len));
        expect_reject_req(&format!("GET {long} HTTP/1.1\r\nHost: a\r\n\r\n"), 414);
        // Exactly at the limit is fine.
        let ok = format!("/{}", "a".repeat(cfg.max_uri_len - 1));
        let mut h = H::new();
        h.feed_all(format!("GET {ok} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes());
        assert!(matches!(h.events()[0], ServerEvent::Request { .. }));
        // Streaming request line that never ends: 414 before the head limit.
        let mut h = H::new();
        h.feed_all(b"GET /");
        let chunk = vec![b'a'; 1000];
        let mut fed = 0;
        while !h.c.is_closed() && h.c.wants_input() {
            h.feed_all(&chunk);
            fed += chunk.len();
        }
        assert!(fed < cfg.max_head_size);
        let ev = h.events();
        assert!(matches!(
            ev.last(),
            Some(ServerEvent::Rejected {
                reason: RejectReason::UriTooLong,
                ..
            })
        ));
        let r = parse_all(&h.out());
        assert_eq!(r[0].status, 414);
        assert!(r[0].closes());
        h.assert_dead();
        // A long URI in a too-large head still gives 414.
        let cfg = H1Config {
            max_head_size: 100,
            max_uri_len: 50,
            ..H1Config::default()
        };
        let long = format!("GET /{} HTTP/1.1\r\n", "b".repeat(200));
        expect_reject_cfg(cfg, long.as_bytes(), 414);
    }

    /// Found by fuzzing (fuzz/ target h1_engine): a too-long request-target in a request
    /// line without a version was answered 414 when the line arrived in pieces but not when
    /// it arrived at once (the head then timed out: 408). The verdict must not depend on
    /// where the input is cut.
    #[test]
    fn uri_verdict_does_not_depend_on_how_input_is_cut() {
        let cfg = H1Config {
            max_uri_len: 256,
            ..H1Config::default()
        };
        let target = format!("/{}", "x".repeat(300));
        let cases = [
            // No version: one space only, the line ends.
            (format!("GET {target}\r\nHost: a\r\n"), 414),
            (format!("GET {target}\r\nHost: a\r\n\r\n"), 414),
            // A bare LF after the limit was crossed: the limit comes first either way.
            (format!("GET {target}\nHost: a\r\n\r\n"), 414),
            // A bare LF before it.
            (format!("GET /x\n{target} HTTP/1.1\r\n\r\n"), 400),
            // Exactly at the limit, no version: not a URI problem.
            (format!("GET /{}\r\nHost: a\r\n\r\n", "x".repeat(255)), 400),
        ];
        for (input, status) in cases {
            let whole = expect_reject_cfg(cfg.clone(), input.as_bytes(), status);
            drop(whole);
            let mut h = H::with(cfg.clone());
            for b in input.as_bytes() {
                if h.c.is_closed() || !h.c.wants_input() {
                    break;
                }
                h.feed(std::slice::from_ref(b));
            }
            match h.events().last() {
                Some(ServerEvent::Rejected { status: s, .. }) => {
                    assert_eq!(s.as_u16(), status, "byte by byte: {input:?}")
                }
                other => panic!("byte by byte: {input:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn reject_head_too_large() {
        let cfg = H1Config::default();
        let big = format!(
            "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
            "v".repeat(cfg.max_head_size)
        );
        expect_reject_req(&big, 431);
        // Exactly max_head_size is accepted.
        let base = "GET / HTTP/1.1\r\nHost: a\r\nX: \r\n\r\n".len();
        let exact = format!(
            "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
            "v".repeat(cfg.max_head_size - base)
        );
        assert_eq!(exact.len(), cfg.max_head_size);
        let mut h = H::new();
        h.feed_all(exact.as_bytes());
        assert!(matches!(h.events()[0], ServerEvent::Request { .. }));
        // Streaming: the head buffer never exceeds the limit.
        let mut h = H::new();
        h.feed_all(b"GET / HTTP/1.1\r\nHost: a\r\nX: ");
        let filler = vec![b'v'; 4096];
        let mut total = 0;
        while !h.c.is_closed() && h.c.wants_input() {
            total += h.feed(&filler);
            assert!(total <= cfg.max_head_size);
            assert!(h.c.head.buffered() <= cfg.max_head_size);
        }
        let r = parse_all(&h.out());
        assert_eq!(r[0].status, 431);
        h.assert_dead();
    }

    #[test]
    fn reject_too_many_headers() {
        let cfg = H1Config::default();
        let mut s = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
        for i in 0..cfg.max_headers {
            s.push_str(&format!("X-{i}: v\r\n"));
        }
        s.push_str("\r\n");
        expect_reject_req(&s, 431);
        // Exactly max_headers is fine.
        let mut s = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
        for i in 1..cfg.max_headers {
            s.push_str(&format!("X-{i}: v\r\n"));
        }
        s.push_str("\r\n");
        let mut h = H::new();
        h.feed_all(s.as_bytes());
        assert!(matches!(h.events()[0], ServerEvent::Request { .. }));
    }

    #[test]
    fn reject_body_too_large() {
        let cfg = H1Config {
            max_body_size: 10,
            ..H1Config::default()
        };
        // Declared length: rejected immediately, before any body byte.
        let h = expect_reject_cfg(
            cfg.clone(),
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n",
            413,
        );
        drop(h);
        // Exactly the limit is fine.
        let mut h = H::with(cfg.clone());
        h.feed_all(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n0123456789");
        assert!(matches!(
            h.events().last(),
            Some(ServerEvent::BodyEnd { id: 0 })
        ));
        // Chunked: rejected when the total crosses the limit.
        let mut h = H::with(cfg.clone());
        h.feed_all(
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nabcdef\r\n",
        );
        let ev = h.events();
        assert!(matches!(ev[0], ServerEvent::Request { id: 0, .. }));
        assert!(matches!(&ev[1], ServerEvent::Body { data, .. } if &data[..] == b"abcdef"));
        h.feed_all(b"5\r\n");
        match h.events().last() {
            Some(ServerEvent::Rejected { status, .. }) => assert_eq!(status.as_u16(), 413),
            other => panic!("{other:?}"),
        }
        let r = parse_all(&h.out());
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].status, 413);
        assert!(r[0].closes());
        h.assert_dead();
        assert!(matches!(
            h.c.send_response(0, parts(200), None),
            Err(H1Error::Closed)
        ));
    }

    #[test]
    fn reject_bad_chunked_bodies() {
        let head = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
        for body in [
            "5\nhello\r\n0\r\n\r\n",
            "5;a=b\nhello\r\n0\r\n\r\n",
            "5\r\nhello\n0\r\n\r\n",
            "5\r\nhelloXX0\r\n\r\n",
            "5 \r\nhello\r\n0\r\n\r\n",
            "5;\r\nhello\r\n0\r\n\r\n",
            "5;a=\"x\r\nhello\r\n0\r\n\r\n",
            "g\r\n",
            "-1\r\n",
            "11111111111111111\r\n",
            "0\r\nbad trailer\r\n\r\n",
            "0\r\n folded: x\r\n\r\n",
            "0\r\nX: y\n\r\n",
            "0\r\n\n",
        ] {
            expect_reject_req(&format!("{head}{body}"), 400);
        }
        // Oversized trailer section → 431.
        let cfg = H1Config {
            max_head_size: 200,
            ..H1Config::default()
        };
        let input = format!("{head}0\r\nX: {}\r\n\r\n", "t".repeat(300));
        expect_reject_cfg(cfg, input.as_bytes(), 431);
    }

    #[test]
    fn head_timeout_gives_408() {
        let mut h = H::new();
        h.now = 5 * SEC;
        h.feed_all(b"GET / HTTP/1.1\r\nHo");
        assert_eq!(h.c.poll_timeout(), Some(15 * SEC));
        h.now = 14 * SEC;
        h.feed_all(b"st: a\r\n");
        // The deadline does not move with more bytes (slowloris).
        assert_eq!(h.c.poll_timeout(), Some(15 * SEC));
        h.c.handle_timeout(14 * SEC);
        assert!(h.events().is_empty());
        h.c.handle_timeout(15 * SEC);
        match h.events().as_slice() {
            [ServerEvent::Rejected { status, reason }] => {
                assert_eq!(status.as_u16(), 408);
                assert_eq!(*reason, RejectReason::HeadTimeout);
            }
            other => panic!("{other:?}"),
        }
        let r = parse_all(&h.out());
        assert_eq!(r[0].status, 408);
        assert!(r[0].closes());
        h.assert_dead();
    }

    #[test]
    fn head_timeout_counts_leading_empty_lines() {
        let mut h = H::new();
        h.feed_all(b"\r\n\r\n");
        assert_eq!(h.c.poll_timeout(), Some(10 * SEC));
        h.c.handle_timeout(10 * SEC);
        let r = parse_all(&h.out());
        assert_eq!(r[0].status, 408);
        h.assert_dead();
    }

    #[test]
    fn head_timeout_after_pipelined_response_is_ordered() {
        let mut h = H::new();
        h.feed_all(&get("/1"));
        h.feed_all(b"GET /2 HT");
        h.events();
        h.c.handle_timeout(10 * SEC);
        assert!(
            h.c.pending_output().is_empty(),
            "408 must wait for response 0"
        );
        h.respond(0, 200, b"one");
        let r = parse_all(&h.out());
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].status, r[1].status), (200, 408));
        assert!(!r[0].closes());
        assert!(r[1].closes());
        h.assert_dead();
    }

    #[test]
    fn reject_after_pipelined_request_keeps_order() {
        let mut h = H::new();
        let mut input = get("/ok");
        input.extend_from_slice(b"BAD\n\r\n");
        h.feed_all(&input);
        let ev = h.events();
        assert!(matches!(ev[0], ServerEvent::Request { id: 0, .. }));
        assert!(matches!(ev[1], ServerEvent::BodyEnd { id: 0 }));
        assert!(matches!(ev[2], ServerEvent::Rejected { .. }));
        assert_eq!(ev.len(), 3);
        assert!(h.c.pending_output().is_empty());
        assert!(!h.c.is_closed());
        h.respond(0, 200, b"fine");
        let r = parse_all(&h.out());
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].status, 200);
        assert_eq!(r[0].body, b"fine");
        assert_eq!(r[1].status, 400);
        assert!(r[1].closes());
        h.assert_dead();
    }

    #[test]
    fn body_error_after_response_started_closes_without_error_response() {
        let mut h = H::new();
        h.feed_all(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n");
        h.events();
        h.c.send_response(0, parts(200), Some(2)).unwrap();
        h.feed_all(b"zz\r\n");
        assert!(matches!(
            h.events().last(),
            Some(ServerEvent::Rejected { .. })
        ));
        // The application may finish its response; then the engine closes.
        h.c.send_body(0, b"ok").unwrap();
        h.c.finish_response(0).unwrap();
        let r = parse_all(&h.out());
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].status, 200);
        assert_eq!(r[0].body, b"ok");
        h.assert_dead();
    }

    // ----- positive paths -----

    #[test]
    fn get_keep_alive_two_requests() {
        let mut h = H::new();
        assert!(h.c.wants_input());
        h.feed_all(&get("/one"));
        let ev = h.events();
        match &ev[0] {
            ServerEvent::Request {
                id,
                head,
                body,
                expect_continue,
                upgrade,
            } => {
                assert!(!upgrade);
                assert_eq!(*id, 0);
                assert_eq!(head.method(), Method::GET);
                assert_eq!(head.uri().path(), "/one");
                assert_eq!(head.version(), Version::HTTP_11);
                assert_eq!(head.headers()["host"], "a");
                assert_eq!(*body, BodyFraming::None);
                assert!(!expect_continue);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(ev[1], ServerEvent::BodyEnd { id: 0 }));
        assert_eq!(ev.len(), 2);
        assert_eq!(h.c.poll_timeout(), None);
        h.respond(0, 200, b"first");
        let r = parse_all(&h.out());
        assert_eq!(r[0].status, 200);
        assert_eq!(r[0].body, b"first");
        assert_eq!(r[0].header("content-length"), Some("5"));
        assert!(r[0].header("connection").is_none());
        assert!(!h.c.is_closed());
        assert!(h.c.wants_input());
        h.feed_all(&get("/two"));
        let ev = h.events();
        assert!(matches!(ev[0], ServerEvent::Request { id: 1, .. }));
        h.respond(1, 404, b"");
        let r = parse_all(&h.out());
        assert_eq!(r[0].status, 404);
        assert!(!h.c.is_closed());
    }

    #[test]
    fn leading_empty_lines_ignored() {
        let mut h = H::new();
        h.feed_all(b"\r\n\r\n");
        h.feed_all(b"\r");
        h.feed_all(b"\n");
        h.feed_all(&get("/x"));
        let ev = h.events();
        assert!(matches!(&ev[0], ServerEvent::Request { head, .. } if head.uri() == "/x"));
        // After a request too.
        h.respond(0, 200, b"");
        h.out();
        let mut second = b"\r\n".to_vec();
        second.extend(get("/y"));
        h.feed_all(&second);
        let ev = h.events();
        assert!(matches!(&ev[0], ServerEvent::Request { id: 1, head, .. } if head.uri() == "/y"));
    }

    #[test]
    fn pipelining_100_requests_with_backpressure() {
        let mut input = Vec::new();
        for i in 0..100 {
            input.extend(get(&format!("/{i}")));
        }
        let first16: usize = (0..16).map(|i| get(&format!("/{i}")).len()).sum();
        let mut h = H::new();
        let mut off = 0usize;
        let mut answered = 0u64;
        let mut out = Vec::new();
        let mut first = true;
        let mut rounds = 0;
        while answered < 100 {
            rounds += 1;
            assert!(rounds < 100, "no progress");
            let n = h.feed(&input[off..]);
            if first {
                // Exactly max_pipelined requests consumed, then backpressure.
                assert_eq!(n, first16);
                assert!(!h.c.wants_input());
                assert_eq!(h.feed(&input[off + n..]), 0);
                first = false;
            }
            off += n;
            let mut ids = Vec::new();
            for ev in h.events() {
                if let ServerEvent::Request { id, head, .. } = ev {
                    assert_eq!(head.uri().path(), format!("/{id}"));
                    ids.push(id);
                }
            }
            // Answer in reverse order: later responses are buffered.
            for &id in ids.iter().rev() {
                h.respond(id, 200, format!("r{id}").as_bytes());
                answered += 1;
            }
            out.extend(h.out());
        }
        assert_eq!(off, input.len());
        let r = parse_all(&out);
        assert_eq!(r.len(), 100);
        for (i, resp) in r.iter().enumerate() {
            assert_eq!(resp.body, format!("r{i}").as_bytes());
        }
        assert!(!h.c.is_closed());
        assert!(h.c.wants_input());
    }

    #[test]
    fn responses_written_in_order() {
        let mut h = H::new();
        let mut input = get("/a");
        input.extend(get("/b"));
        h.feed_all(&input);
        h.events();
        h.respond(1, 201, b"second");
        assert!(h.c.pending_output().is_empty());
        h.c.send_response(0, parts(200), None).unwrap();
        h.c.send_body(0, b"fir").unwrap();
        // Response 0 streams immediately; response 1 still waits.
        let partial = h.out();
        assert!(partial.ends_with(b"3\r\nfir\r\n"));
        h.c.send_body(0, b"st").unwrap();
        h.c.finish_response(0).unwrap();
        let mut all = partial;
        all.extend(h.out());
        let r = parse_all(&all);
        assert_eq!((r[0].status, r[1].status), (200, 201));
        assert_eq!(r[0].body, b"first");
        assert_eq!(r[1].body, b"second");
    }

    #[test]
    fn chunked_request_every_split_point() {
        let req: &[u8] = b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\
5;ext=1;q=\"a b\"\r\nhello\r\n7\r\n, world\r\n0;end\r\nX-Trailer: yes\r\n\r\n\
GET /next HTTP/1.1\r\nHost: a\r\n\r\n";
        let check = |h: &mut H| {
            let mut body = Vec::new();
            let mut seen = Vec::new();
            for ev in h.events() {
                match ev {
                    ServerEvent::Request { id, body: f, .. } => seen.push(format!("req{id}:{f:?}")),
                    ServerEvent::Body { id, data } => {
                        assert_eq!(id, 0);
                        body.extend_from_slice(&data);
                    }
                    ServerEvent::Trailers { id, trailers } => {
                        for (name, value) in &trailers {
                            seen.push(format!("trailer{id}:{name}={value:?}"));
                        }
                    }
                    ServerEvent::BodyEnd { id } => seen.push(format!("end{id}")),
                    other => panic!("{other:?}"),
                }
            }
            assert_eq!(body, b"hello, world");
            assert_eq!(
                seen,
                [
                    "req0:Chunked",
                    "trailer0:x-trailer=\"yes\"",
                    "end0",
                    "req1:None",
                    "end1"
                ]
            );
        };
        for split in 0..=req.len() {
            let mut h = H::new();
            h.feed_all(&req[..split]);
            h.feed_all(&req[split..]);
            check(&mut h);
        }
        // Byte by byte.
        let mut h = H::new();
        for b in req {
            h.feed_all(std::slice::from_ref(b));
        }
        check(&mut h);
    }

    /// The events of one chunked request whose body ends with `trailer_section`.
    fn chunked_request_events(cfg: H1Config, trailer_section: &str) -> Vec<ServerEvent> {
        let mut h = H::with(cfg);
        let req = format!(
            "POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\
             2\r\nhi\r\n0\r\n{trailer_section}\r\n"
        );
        h.feed_all(req.as_bytes());
        h.events()
    }

    #[test]
    fn request_trailers_come_before_body_end_without_forbidden_fields() {
        let section = "X-Checksum: 42\r\nContent-Length: 5\r\nHost: evil\r\n\
                       Transfer-Encoding: gzip\r\nAuthorization: secret\r\n\
                       grpc-status:  0 \r\nx-checksum: 43\r\n";
        let events = chunked_request_events(H1Config::default(), section);
        match events.as_slice() {
            [ServerEvent::Request { .. }, ServerEvent::Body { data, .. }, ServerEvent::Trailers { id: 0, trailers }, ServerEvent::BodyEnd { id: 0 }] =>
            {
                assert_eq!(&data[..], b"hi");
                let fields: Vec<_> = trailers
                    .iter()
                    .map(|(n, v)| (n.as_str(), v.to_str().unwrap()))
                    .collect();
                assert_eq!(
                    fields,
                    [
                        ("x-checksum", "42"),
                        ("x-checksum", "43"),
                        ("grpc-status", "0")
                    ]
                );
            }
            other => panic!("{other:?}"),
        }
        // Only forbidden fields, or none: no trailers event.
        for section in ["Content-Type: text/evil\r\nTrailer: x\r\n", ""] {
            let events = chunked_request_events(H1Config::default(), section);
            assert!(
                !events
                    .iter()
                    .any(|e| matches!(e, ServerEvent::Trailers { .. })),
                "{section:?}: {events:?}"
            );
            assert!(matches!(
                events.last(),
                Some(ServerEvent::BodyEnd { id: 0 })
            ));
        }
    }

    #[test]
    fn request_trailer_section_is_bounded_by_the_head_limit() {
        let cfg = H1Config {
            max_head_size: 200,
            ..H1Config::default()
        };
        // The field lines ("X: " + value + CRLF) count: 200 bytes fit.
        let fits = format!("X: {}\r\n", "t".repeat(195));
        let events = chunked_request_events(cfg.clone(), &fits);
        match events.as_slice() {
            [.., ServerEvent::Trailers { trailers, .. }, ServerEvent::BodyEnd { .. }] => {
                assert_eq!(trailers["x"].len(), 195);
            }
            other => panic!("{other:?}"),
        }
        let over = format!("X: {}\r\n", "t".repeat(196));
        let events = chunked_request_events(cfg, &over);
        match events.as_slice() {
            [ServerEvent::Request { .. }, ServerEvent::Body { .. }, ServerEvent::Rejected { status, reason }] =>
            {
                assert_eq!(*status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
                assert!(
                    matches!(reason, RejectReason::Chunked(ChunkedError::TrailerTooLarge)),
                    "{reason:?}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn content_length_body() {
        let mut h = H::new();
        h.feed_all(b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello");
        h.feed_all(b" world");
        h.feed_all(&get("/next"));
        let ev = h.events();
        assert!(matches!(
            ev[0],
            ServerEvent::Request {
                body: BodyFraming::Length(11),
                ..
            }
        ));
        let body: Vec<u8> = ev
            .iter()
            .filter_map(|e| match e {
                ServerEvent::Body { data, .. } => Some(data.to_vec()),
                _ => None,
            })
            .flatten()
            .collect();
        assert_eq!(body, b"hello world");
        assert!(matches!(ev[ev.len() - 3], ServerEvent::BodyEnd { id: 0 }));
        assert!(matches!(
            ev[ev.len() - 2],
            ServerEvent::Request { id: 1, .. }
        ));
        assert!(matches!(ev[ev.len() - 1], ServerEvent::BodyEnd { id: 1 }));
        // Content-Length: 0 → immediate BodyEnd.
        let mut h = H::new();
        h.feed_all(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n");
        let ev = h.events();
        assert!(matches!(
            ev[0],
            ServerEvent::Request {
                body: BodyFraming::Length(0),
                ..
            }
        ));
        assert!(matches!(ev[1], ServerEvent::BodyEnd { id: 0 }));
    }

    #[test]
    fn body_buffer_backpressure() {
        let cfg = H1Config {
            max_body_buffer: 10,
            ..H1Config::default()
        };
        let mut h = H::with(cfg);
        let head = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 25\r\n\r\n";
        let mut input = head.to_vec();
        input.extend_from_slice(b"0123456789abcdefghijKLMNO");
        let n = h.feed(&input);
        assert_eq!(n, head.len() + 10);
        assert!(!h.c.wants_input());
        assert_eq!(h.feed(&input[n..]), 0);
        let mut off = n;
        let mut body = Vec::new();
        let mut done = false;
        while !done {
            for ev in h.events() {
                match ev {
                    ServerEvent::Body { data, .. } => {
                        assert!(data.len() <= 10);
                        body.extend_from_slice(&data);
                    }
                    ServerEvent::BodyEnd { .. } => done = true,
                    _ => {}
                }
            }
            assert!(h.c.wants_input() || done);
            off += h.feed(&input[off..]);
        }
        assert_eq!(off, input.len());
        assert_eq!(body, b"0123456789abcdefghijKLMNO");

        // Same for a chunked body.
        let mut h = H::with(H1Config {
            max_body_buffer: 4,
            ..H1Config::default()
        });
        let input = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n0\r\n\r\n";
        let mut off = 0;
        let mut body = Vec::new();
        for _ in 0..20 {
            off += h.feed(&input[off..]);
            for ev in h.events() {
                if let ServerEvent::Body { data, .. } = ev {
                    assert!(data.len() <= 4);
                    body.extend_from_slice(&data);
                }
            }
        }
        assert_eq!(off, input.len());
        assert_eq!(body, b"0123456789");
    }

    #[test]
    fn http10_without_keep_alive_closes() {
        let mut h = H::new();
        let mut input = b"GET / HTTP/1.0\r\n\r\n".to_vec();
        input.extend_from_slice(b"GET /ignored HTTP/1.0\r\n\r\n");
        h.feed_all(&input);
        let ev = h.events();
        assert_eq!(ev.len(), 2, "second request must not be parsed");
        assert!(
            matches!(&ev[0], ServerEvent::Request { head, .. } if head.version() == Version::HTTP_10)
        );
        assert!(!h.c.wants_input());
        h.respond(0, 200, b"x");
        let out = h.out();
        assert!(out.starts_with(b"HTTP/1.1 200 OK\r\n"));
        let r = parse_all(&out);
        assert!(r[0].closes());
        h.assert_dead();
    }

    #[test]
    fn http10_keep_alive() {
        let mut h = H::new();
        h.feed_all(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
        h.events();
        h.respond(0, 200, b"x");
        let r = parse_all(&h.out());
        assert_eq!(r[0].header("connection"), Some("keep-alive"));
        assert!(!h.c.is_closed());
        h.feed_all(b"GET /2 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        assert!(matches!(h.events()[0], ServerEvent::Request { id: 1, .. }));
        // Unknown length for HTTP/1.0: close-delimited body.
        h.c.send_response(1, parts(200), None).unwrap();
        h.c.send_body(1, b"streamed").unwrap();
        h.c.finish_response(1).unwrap();
        let out = h.out();
        let r = parse_all(&out);
        assert!(r[0].closes());
        assert!(r[0].header("content-length").is_none());
        assert!(r[0].header("transfer-encoding").is_none());
        assert_eq!(r[0].body, b"streamed");
        h.assert_dead();
    }

    #[test]
    fn connection_close_with_body_reads_body_then_stops() {
        let mut h = H::new();
        let mut input =
            b"POST / HTTP/1.1\r\nHost: a\r\nConnection: close\r\nTransfer-Encoding: Chunked\r\n\r\n"
                .to_vec();
        input.extend_from_slice(b"2\r\nhi\r\n0\r\n\r\n");
        input.extend(get("/never"));
        h.feed_all(&input);
        let ev = h.events();
        assert_eq!(ev.len(), 3);
        assert!(matches!(&ev[1], ServerEvent::Body { data, .. } if &data[..] == b"hi"));
        assert!(matches!(ev[2], ServerEvent::BodyEnd { id: 0 }));
        assert!(!h.c.wants_input());
        h.c.send_response(0, parts(200), None).unwrap();
        h.c.send_body(0, b"ok").unwrap();
        h.c.finish_response(0).unwrap();
        let r = parse_all(&h.out());
        assert_eq!(r.len(), 1);
        assert!(r[0].closes());
        assert_eq!(r[0].body, b"ok");
        h.assert_dead();
    }

    #[test]
    fn connection_close_request_honoured() {
        let mut h = H::new();
        let mut input = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".to_vec();
        input.extend(get("/never"));
        h.feed_all(&input);
        let ev = h.events();
        assert_eq!(ev.len(), 2);
        h.respond(0, 200, b"bye");
        let r = parse_all(&h.out());
        assert_eq!(r.len(), 1);
        assert!(r[0].closes());
        h.assert_dead();
    }

    #[test]
    fn app_connection_close_honoured() {
        let mut h = H::new();
        let mut input = get("/a");
        input.extend(get("/b"));
        h.feed_all(&input);
        assert_eq!(h.events().len(), 4);
        let mut p = parts(200);
        p.headers.insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
        h.c.send_response(0, p, Some(0)).unwrap();
        h.c.finish_response(0).unwrap();
        assert!(matches!(
            h.c.send_response(1, parts(200), Some(0)),
            Err(H1Error::Closed)
        ));
        let r = parse_all(&h.out());
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].header("connection"), Some("close"));
        h.assert_dead();
    }

    #[test]
    fn head_request_keeps_content_length() {
        let mut h = H::new();
        h.feed_all(b"HEAD /r HTTP/1.1\r\nHost: a\r\n\r\n");
        h.events();
        h.c.send_response(0, parts(200), Some(5)).unwrap();
        h.c.send_body(0, b"hello").unwrap();
        h.c.finish_response(0).unwrap();
        let out = h.out();
        let (r, used) = parse_resp(&out, true);
        assert_eq!(used, out.len(), "no body bytes after a HEAD response");
        assert_eq!(r.header("content-length"), Some("5"));
        assert!(!h.c.is_closed());
        h.feed_all(b"HEAD /after HTTP/1.1\r\nHost: a\r\n\r\n");
        assert!(matches!(h.events()[0], ServerEvent::Request { id: 1, .. }));
        // HEAD with unknown length: no framing headers, no close.
        h.c.send_response(1, parts(200), None).unwrap();
        h.c.finish_response(1).unwrap();
        let out = h.out();
        let (r, used) = parse_resp(&out, true);
        assert_eq!(used, out.len());
        assert!(r.header("transfer-encoding").is_none());
        assert!(r.header("content-length").is_none());
        assert!(!r.closes());
        assert!(!h.c.is_closed());
        assert!(h.c.wants_input());
    }

    #[test]
    fn no_body_statuses() {
        let mut h = H::new();
        let mut input = get("/a");
        input.extend(get("/b"));
        h.feed_all(&input);
        h.events();
        h.c.send_response(0, parts(204), Some(5)).unwrap();
        h.c.send_body(0, b"dropped").unwrap();
        h.c.finish_response(0).unwrap();
        h.c.send_response(1, parts(304), Some(5)).unwrap();
        h.c.finish_response(1).unwrap();
        let out = h.out();
        let (r0, n0) = parse_resp(&out, true);
        let (r1, n1) = parse_resp(&out[n0..], true);
        assert_eq!(n0 + n1, out.len());
        assert_eq!(r0.status, 204);
        assert!(r0.header("content-length").is_none());
        assert_eq!(r1.status, 304);
        assert_eq!(r1.header("content-length"), Some("5"));
        assert!(!h.c.is_closed());
    }

    #[test]
    fn expect_continue_flow() {
        let mut h = H::new();
        h.feed_all(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-Continue\r\n\r\n",
        );
        let ev = h.events();
        assert!(matches!(
            ev[0],
            ServerEvent::Request {
                expect_continue: true,
                ..
            }
        ));
        assert!(h.c.pending_output().is_empty());
        h.c.send_continue(0);
        h.c.send_continue(0);
        assert_eq!(h.out(), CONTINUE);
        h.feed_all(b"hello");
        let ev = h.events();
        assert!(matches!(&ev[0], ServerEvent::Body { data, .. } if &data[..] == b"hello"));
        assert!(matches!(ev[1], ServerEvent::BodyEnd { id: 0 }));
        h.respond(0, 200, b"ok");
        let r = parse_all(&h.out());
        assert!(!r[0].closes());
        assert!(!h.c.is_closed());
    }

    #[test]
    fn expect_continue_rejected_by_app_closes() {
        let mut h = H::new();
        h.feed_all(
            b"PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
        );
        h.events();
        h.respond(0, 413, b"no");
        let r = parse_all(&h.out());
        assert_eq!(r[0].status, 413);
        assert!(r[0].closes());
        // The body (if the client sends it anyway) is discarded.
        h.assert_dead();
    }

    #[test]
    fn expect_continue_body_sent_anyway_keeps_alive() {
        let mut h = H::new();
        h.feed_all(
            b"PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhe",
        );
        h.events();
        h.respond(0, 200, b"early");
        h.c.send_continue(0);
        let r = parse_all(&h.out());
        assert_eq!(r.len(), 1);
        assert!(!r[0].closes());
        h.feed_all(b"llo");
        let ev = h.events();
        assert!(matches!(&ev[0], ServerEvent::Body { data, .. } if &data[..] == b"llo"));
        assert!(matches!(ev[1], ServerEvent::BodyEnd { id: 0 }));
        assert!(h.c.wants_input());
    }

    #[test]
    fn expect_ignored_for_http10() {
        let mut h = H::new();
        h.feed_all(b"POST / HTTP/1.0\r\nContent-Length: 1\r\nExpect: 100-continue\r\n\r\nx");
        assert!(matches!(
            h.events()[0],
            ServerEvent::Request {
                expect_continue: false,
                ..
            }
        ));
        h.c.send_continue(0);
        assert!(h.c.pending_output().is_empty());
    }

    #[test]
    fn options_asterisk_and_absolute_form() {
        let mut h = H::new();
        h.feed_all(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n");
        h.feed_all(b"GET http://example.com:8080/p?q HTTP/1.1\r\nHost: example.com:8080\r\n\r\n");
        let ev = h.events();
        assert!(matches!(&ev[0], ServerEvent::Request { head, .. }
            if head.method() == Method::OPTIONS && head.uri() == "*"));
        assert!(matches!(&ev[2], ServerEvent::Request { head, .. }
            if head.uri().host() == Some("example.com") && head.uri().path() == "/p"));
        h.respond(0, 200, b"");
        h.respond(1, 200, b"");
        assert_eq!(parse_all(&h.out()).len(), 2);
    }

    #[test]
    fn chunked_response_encoding_and_framing_ownership() {
        let mut h = H::new();
        h.feed_all(&get("/"));
        h.events();
        let mut p = parts(200);
        p.headers
            .insert("content-length", http::HeaderValue::from_static("99"));
        p.headers
            .insert("transfer-encoding", http::HeaderValue::from_static("gzip"));
        p.headers
            .insert("x-app", http::HeaderValue::from_static("1"));
        h.c.send_response(0, p, None).unwrap();
        h.c.send_body(0, b"hello").unwrap();
        h.c.send_body(0, b"").unwrap();
        h.c.send_body(0, b" world, long enough").unwrap();
        h.c.finish_response(0).unwrap();
        let out = h.out();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\nx-app: 1\r\ntransfer-encoding: chunked\r\n\r\n\
5\r\nhello\r\n13\r\n world, long enough\r\n0\r\n\r\n"
        );
        assert!(!h.c.is_closed());
    }

    /// Answers request 0 (already fed) with a chunked "hi" ending in `trailers`; returns
    /// what went on the wire.
    fn chunked_with_trailers(
        h: &mut H,
        head: http::response::Parts,
        trailers: &HeaderMap,
    ) -> String {
        h.events();
        h.c.send_response(0, head, None).unwrap();
        h.c.send_body(0, b"hi").unwrap();
        h.c.finish_response_with_trailers(0, Some(trailers))
            .unwrap();
        String::from_utf8(h.out()).unwrap()
    }

    fn trailer_fields() -> HeaderMap {
        let mut t = HeaderMap::new();
        t.insert("grpc-status", http::HeaderValue::from_static("0"));
        t.append("x-sum", http::HeaderValue::from_static("a"));
        t.append("x-sum", http::HeaderValue::from_static("b"));
        // Never in a trailer section (RFC 9110 §6.5.1).
        t.insert("content-length", http::HeaderValue::from_static("2"));
        t.insert("set-cookie", http::HeaderValue::from_static("s=1"));
        t.insert("host", http::HeaderValue::from_static("elsewhere"));
        t
    }

    #[test]
    fn trailers_follow_the_last_chunk_when_the_request_accepts_them() {
        let mut h = H::new();
        h.feed_all(b"GET / HTTP/1.1\r\nHost: a\r\nTE: gzip, Trailers\r\nConnection: TE\r\n\r\n");
        let wire = chunked_with_trailers(&mut h, parts(200), &trailer_fields());
        assert_eq!(
            wire,
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
2\r\nhi\r\n0\r\ngrpc-status: 0\r\nx-sum: a\r\nx-sum: b\r\n\r\n"
        );
        // The connection goes on.
        assert!(!h.c.is_closed());
        h.feed_all(&get("/next"));
        assert!(matches!(
            h.events().first(),
            Some(ServerEvent::Request { id: 1, .. })
        ));
    }

    #[test]
    fn trailers_are_dropped_unless_te_trailers_and_chunked() {
        // No TE: trailers (hyper's rule): an empty trailer section.
        let mut h = H::new();
        h.feed_all(&get("/"));
        let wire = chunked_with_trailers(&mut h, parts(200), &trailer_fields());
        assert!(wire.ends_with("2\r\nhi\r\n0\r\n\r\n"), "{wire:?}");

        // TE lists other codings only.
        let mut h = H::new();
        h.feed_all(b"GET / HTTP/1.1\r\nHost: a\r\nTE: gzip\r\n\r\n");
        let wire = chunked_with_trailers(&mut h, parts(200), &trailer_fields());
        assert!(
            wire.ends_with("0\r\n\r\n") && !wire.contains("grpc"),
            "{wire:?}"
        );

        // A length-framed response has no trailer section: the body is unchanged.
        let mut h = H::new();
        h.feed_all(b"GET / HTTP/1.1\r\nHost: a\r\nTE: trailers\r\n\r\n");
        h.events();
        h.c.send_response(0, parts(200), Some(2)).unwrap();
        h.c.send_body(0, b"hi").unwrap();
        h.c.finish_response_with_trailers(0, Some(&trailer_fields()))
            .unwrap();
        let wire = String::from_utf8(h.out()).unwrap();
        assert!(wire.ends_with("content-length: 2\r\n\r\nhi"), "{wire:?}");

        // HTTP/1.0: close-delimited, no trailers.
        let mut h = H::new();
        h.feed_all(b"GET / HTTP/1.0\r\nTE: trailers\r\n\r\n");
        let wire = chunked_with_trailers(&mut h, parts(200), &trailer_fields());
        assert!(wire.ends_with("\r\n\r\nhi"), "{wire:?}");
        assert!(h.c.is_closed());
    }

    #[test]
    fn a_declared_trailer_field_limits_the_trailers_sent() {
        let mut h = H::new();
        h.feed_all(b"GET / HTTP/1.1\r\nHost: a\r\nTE: trailers\r\n\r\n");
        let mut head = parts(200);
        head.headers.insert(
            "trailer",
            http::HeaderValue::from_static("X-Sum, content-length"),
        );
        let wire = chunked_with_trailers(&mut h, head, &trailer_fields());
        assert_eq!(
            wire,
            "HTTP/1.1 200 OK\r\ntrailer: X-Sum, content-length\r\ntransfer-encoding: chunked\r\n\r\n\
2\r\nhi\r\n0\r\nx-sum: a\r\nx-sum: b\r\n\r\n"
        );
    }

    #[test]
    fn idle_timeout_closes_silently() {
        let mut h = H::new();
        assert_eq!(h.c.poll_timeout(), Some(60 * SEC));
        h.c.handle_timeout(59 * SEC);
        assert!(!h.c.is_closed());
        h.c.handle_timeout(60 * SEC);
        assert!(h.c.pending_output().is_empty());
        assert!(h.events().is_empty());
        h.assert_dead();

        // After a request: no idle timer while outstanding; it restarts when
        // the response has been written.
        let mut h = H::new();
        h.now = 30 * SEC;
        h.feed_all(&get("/"));
        h.events();
        assert_eq!(h.c.poll_timeout(), None);
        h.now = 100 * SEC;
        h.respond(0, 200, b"x");
        assert_eq!(h.c.poll_timeout(), None);
        h.out();
        assert_eq!(h.c.poll_timeout(), Some(160 * SEC));
        h.c.handle_timeout(159 * SEC);
        assert!(!h.c.is_closed());
        h.c.handle_timeout(160 * SEC);
        assert!(h.c.pending_output().is_empty());
        h.assert_dead();
    }

    /// A response whose output makes no progress for the idle timeout (the peer stopped
    /// reading: a window that never opens) ends the connection, marked as stalled so the
    /// caller resets it; output that moves restarts the timer.
    #[test]
    fn output_stall_ends_the_connection() {
        let mut h = H::new();
        h.feed_all(&get("/"));
        h.events();
        h.c.send_response(0, parts(200), Some(100_000)).unwrap();
        h.c.send_body(0, &[b'x'; 1000]).unwrap();
        // No timer while the caller has not found the output blocked.
        assert_eq!(h.c.poll_timeout(), None);
        h.c.output_blocked(Duration::ZERO);
        assert_eq!(h.c.poll_timeout(), Some(60 * SEC));
        h.c.output_blocked(30 * SEC);
        assert_eq!(
            h.c.poll_timeout(),
            Some(60 * SEC),
            "blocking again moves nothing"
        );
        // Some output moves at 50 s, then blocks again: the timer restarts from there.
        h.c.consume_output(10, 50 * SEC);
        assert_eq!(h.c.poll_timeout(), None);
        h.c.output_blocked(50 * SEC);
        assert_eq!(h.c.poll_timeout(), Some(110 * SEC));
        h.c.handle_timeout(109 * SEC);
        assert!(!h.c.is_closed() && !h.c.is_stalled());
        h.c.handle_timeout(110 * SEC);
        assert!(h.c.is_stalled());
        assert!(h.c.is_closed());
        assert!(h.c.pending_output().is_empty());
        assert_eq!(h.c.poll_timeout(), None);
    }

    #[test]
    fn eof_handling() {
        // Between requests: pending response written, then close.
        let mut h = H::new();
        h.feed_all(&get("/"));
        h.c.handle_eof(SEC);
        assert!(!h.c.is_closed());
        h.events();
        h.respond(0, 200, b"x");
        let r = parse_all(&h.out());
        assert_eq!(r.len(), 1);
        assert!(r[0].closes());
        h.assert_dead();

        // Idle EOF: closed at once.
        let mut h = H::new();
        h.c.handle_eof(SEC);
        h.assert_dead();

        // Mid-head: no response, close.
        let mut h = H::new();
        h.feed_all(b"GET / HT");
        h.c.handle_eof(SEC);
        assert!(h.events().is_empty());
        assert!(h.c.pending_output().is_empty());
        h.assert_dead();

        // Mid-body: aborted.
        let mut h = H::new();
        h.feed_all(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhe");
        h.c.handle_eof(SEC);
        let ev = h.events();
        assert!(matches!(
            ev.last(),
            Some(ServerEvent::Aborted {
                reason: AbortReason::EofInBody
            })
        ));
        assert!(matches!(
            h.c.send_response(0, parts(200), None),
            Err(H1Error::Closed)
        ));
        h.assert_dead();
    }

    #[test]
    fn abort_queues_500_or_truncates() {
        let mut h = H::new();
        h.feed_all(&get("/"));
        h.events();
        h.c.abort(0);
        let r = parse_all(&h.out());
        assert_eq!(r[0].status, 500);
        assert!(r[0].closes());
        h.assert_dead();

        let mut h = H::new();
        h.feed_all(&get("/"));
        h.events();
        h.c.send_response(0, parts(200), Some(10)).unwrap();
        h.c.send_body(0, b"abc").unwrap();
        h.c.abort(0);
        let out = h.out();
        assert!(out.ends_with(b"\r\n\r\nabc"));
        h.assert_dead();
    }

    #[test]
    fn response_api_misuse() {
        let mut h = H::new();
        h.feed_all(&get("/"));
        h.events();
        assert!(matches!(
            h.c.send_response(0, parts(100), None),
            Err(H1Error::InformationalStatus(_))
        ));
        assert!(matches!(
            h.c.send_body(0, b"x"),
            Err(H1Error::ResponseNotStarted(0))
        ));
        assert!(matches!(
            h.c.send_response(7, parts(200), None),
            Err(H1Error::UnknownRequest(7))
        ));
        h.c.send_response(0, parts(200), Some(3)).unwrap();
        assert!(matches!(
            h.c.send_response(0, parts(200), Some(3)),
            Err(H1Error::ResponseAlreadyStarted(0))
        ));
        assert!(matches!(
            h.c.send_body(0, b"toolong"),
            Err(H1Error::BodyTooLong { id: 0, excess: 4 })
        ));
        h.c.send_body(0, b"ab").unwrap();
        assert!(matches!(
            h.c.finish_response(0),
            Err(H1Error::BodyTooShort { id: 0, missing: 1 })
        ));
        // Framing is broken: the connection closes after the truncated response.
        let out = h.out();
        assert!(out.ends_with(b"\r\n\r\nab"));
        h.assert_dead();
    }

    #[test]
    fn send_capacity_bounds_output() {
        let mut h = H::with(H1Config {
            max_output_buffer: 100,
            ..H1Config::default()
        });
        h.feed_all(&get("/"));
        h.events();
        assert_eq!(h.c.send_capacity(), 100);
        h.c.send_response(0, parts(200), Some(1000)).unwrap();
        let cap = h.c.send_capacity();
        assert!(cap < 100);
        assert!(matches!(
            h.c.send_body(0, &[b'x'; 200]),
            Err(H1Error::OutputFull { .. })
        ));
        h.c.send_body(0, &vec![b'x'; cap]).unwrap();
        assert_eq!(h.c.send_capacity(), 0);
        h.out();
        assert_eq!(h.c.send_capacity(), 100);
    }

    #[test]
    fn random_input_never_panics_and_stays_bounded() {
        let cfg = H1Config {
            max_head_size: 512,
            max_uri_len: 128,
            max_body_buffer: 64,
            max_pipelined: 4,
            ..H1Config::default()
        };
        let seeds: [&[u8]; 4] = [
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;a=\"b\"\r\nhello\r\n0\r\nT: x\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
            b"\r\nOPTIONS * HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        ];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..2000 {
            let mut input = Vec::new();
            for _ in 0..(rnd() % 4 + 1) {
                input.extend_from_slice(seeds[(rnd() % 4) as usize]);
            }
            for _ in 0..(rnd() % 4) {
                let i = (rnd() as usize) % input.len();
                input[i] = b"\r\n :;\"0aZ\x00\xff"[(rnd() % 11) as usize];
            }
            let mut h = H::with(cfg.clone());
            let mut off = 0;
            for _ in 0..50 {
                let end = (off + (rnd() as usize % 40) + 1).min(input.len());
                off += h.feed(&input[off..end]);
                assert!(h.c.head.buffered() <= cfg.max_head_size);
                assert!(h.c.body.held() <= cfg.max_body_buffer);
                assert!(h.c.slots.len() <= cfg.max_pipelined + 1);
                for ev in h.events() {
                    if let ServerEvent::Request { id, .. } = ev {
                        // Errors (e.g. Closed after a close decision) are fine here.
                        let _ = h.c.send_response(id, parts(200), Some(2));
                        let _ = h.c.send_body(id, b"ok");
                        let _ = h.c.finish_response(id);
                    }
                }
                h.out();
                if off == input.len() {
                    break;
                }
            }
            if off < input.len() {
                continue;
            }
            h.c.handle_eof(h.now);
            h.events();
            h.out();
            // Every request was answered, so EOF must lead to a close.
            assert!(h.c.is_closed(), "{:?}", String::from_utf8_lossy(&input));
        }
    }

    #[test]
    fn partial_output_consumption() {
        let mut h = H::new();
        h.feed_all(&get("/"));
        h.events();
        h.respond(0, 200, &[b'z'; 10000]);
        let all = h.c.pending_output().to_vec();
        let mut got = Vec::new();
        while !h.c.pending_output().is_empty() {
            let n = h.c.pending_output().len().min(777);
            got.extend_from_slice(&h.c.pending_output()[..n]);
            h.c.consume_output(n, h.now);
        }
        assert_eq!(got, all);
        assert_eq!(parse_all(&got)[0].body.len(), 10000);
    }

    fn request_ids(events: &[ServerEvent]) -> Vec<RequestId> {
        events
            .iter()
            .filter_map(|e| match e {
                ServerEvent::Request { id, .. } => Some(*id),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn connect_2xx_switches_and_leaves_tunnel_bytes_unconsumed() {
        let mut h = H::new();
        let head = b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n";
        let mut input = head.to_vec();
        input.extend_from_slice(b"\x16\x03\x01tls bytes GET / HTTP/1.1\r\n\r\n");
        // Only the head is consumed; parsing waits for the answer.
        assert_eq!(h.feed(&input), head.len());
        assert_eq!(request_ids(&h.events()), vec![0]);
        assert!(!h.c.wants_input());
        assert_eq!(h.feed(&input[head.len()..]), 0);
        h.c.send_response(0, parts(200), None).unwrap();
        let out = h.out();
        let (resp, used) = parse_resp(&out, true);
        assert_eq!(used, out.len());
        assert_eq!(resp.status, 200);
        assert!(resp.header("content-length").is_none());
        assert!(resp.header("transfer-encoding").is_none());
        assert!(resp.header("connection").is_none());
        assert!(h.c.is_upgraded());
        assert!(!h.c.is_closed());
        assert!(!h.c.wants_input());
        assert_eq!(h.c.poll_timeout(), None);
        // Nothing more is consumed, even at EOF or after timeouts.
        assert_eq!(h.feed(&input[head.len()..]), 0);
        h.c.handle_eof(h.now);
        h.c.handle_timeout(h.now + 3600 * SEC);
        assert!(h.c.is_upgraded());
        assert!(h.events().is_empty());
    }

    #[test]
    fn connect_refused_resumes_http() {
        let mut h = H::new();
        h.feed_all(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n");
        assert_eq!(request_ids(&h.events()), vec![0]);
        assert_eq!(h.feed(&get("/next")), 0);
        h.respond(0, 403, b"denied");
        let r = parse_all(&h.out());
        assert_eq!(r[0].status, 403);
        assert!(!r[0].closes());
        assert!(!h.c.is_upgraded());
        h.feed_all(&get("/next"));
        assert_eq!(request_ids(&h.events()), vec![1]);
    }

    #[test]
    fn upgrade_101_switches_after_earlier_pipelined_responses() {
        let mut h = H::new();
        let mut input = get("/first");
        let up = b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n";
        input.extend_from_slice(up);
        let consumed = input.len();
        input.extend_from_slice(b"frames");
        assert_eq!(h.feed(&input), consumed);
        assert_eq!(request_ids(&h.events()), vec![0, 1]);
        let mut head = parts(101);
        head.headers
            .insert(http::header::UPGRADE, "echo".parse().unwrap());
        head.headers
            .insert(http::header::CONNECTION, "upgrade".parse().unwrap());
        // The switch waits behind the first response.
        h.c.send_response(1, head, None).unwrap();
        assert!(!h.c.is_upgraded());
        h.respond(0, 200, b"one");
        let out = h.out();
        let (first, n) = parse_resp(&out, false);
        assert_eq!(first.body, b"one");
        let (second, m) = parse_resp(&out[n..], false);
        assert_eq!(n + m, out.len());
        assert_eq!(second.status, 101);
        assert_eq!(second.header("upgrade"), Some("echo"));
        assert_eq!(second.header("connection"), Some("upgrade"));
        assert!(h.c.is_upgraded());
        assert_eq!(h.feed(b"frames"), 0);
    }

    #[test]
    fn upgrade_ignored_answers_normally_and_101_is_refused_without_upgrade() {
        let mut h = H::new();
        h.feed_all(b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: echo\r\n\r\n");
        h.events();
        // A 2xx to an Upgrade request is an ordinary response.
        h.respond(0, 200, b"plain");
        assert_eq!(parse_all(&h.out())[0].body, b"plain");
        assert!(!h.c.is_upgraded());
        h.feed_all(&get("/x"));
        h.events();
        assert_eq!(
            h.c.send_response(1, parts(101), None).unwrap_err(),
            H1Error::InformationalStatus(StatusCode::SWITCHING_PROTOCOLS)
        );
        // A 2xx to a GET without Upgrade never switches.
        h.respond(1, 200, b"ok");
        assert!(!h.c.is_upgraded());
    }

    #[test]
    fn http10_connect_may_tunnel_but_closes_when_refused() {
        let mut h = H::new();
        h.feed_all(b"CONNECT 10.0.0.1:443 HTTP/1.0\r\n\r\n");
        h.events();
        h.c.send_response(0, parts(200), None).unwrap();
        h.out();
        assert!(h.c.is_upgraded());

        let mut h = H::new();
        h.feed_all(b"CONNECT 10.0.0.1:443 HTTP/1.0\r\n\r\n");
        h.events();
        h.respond(0, 502, b"no");
        let r = parse_all(&h.out());
        assert!(r[0].closes());
        assert!(h.c.is_closed());
    }

    /// Writes `data` (as much as fits) in place into a send buffer of `space` bytes;
    /// returns what the engine reported and the bytes of the buffer it used.
    fn write_in_place(
        h: &mut H,
        id: RequestId,
        space: usize,
        data: &[u8],
    ) -> (Result<InPlaceWrite, H1Error>, Vec<u8>) {
        let mut buf = vec![0u8; space];
        let result = h.c.write_body_in_place(id, &mut buf, &mut |room| {
            let n = data.len().min(room.len());
            room[..n].copy_from_slice(&data[..n]);
            n
        });
        let wire = result.as_ref().map_or(0, |w| w.wire);
        buf.truncate(wire);
        (result, buf)
    }

    /// Requests of `paths` (pipelined), a 200 with a body of `len` (chunked: `None`)
    /// started for the first; the bytes written out (its head).
    fn start_streaming(h: &mut H, paths: &[&str], len: Option<u64>) -> Vec<u8> {
        for path in paths {
            h.feed_all(&get(path));
        }
        h.events();
        h.c.send_response(0, parts(200), len).unwrap();
        h.out()
    }

    #[test]
    fn in_place_body_with_length_framing() {
        let mut h = H::new();
        h.feed_all(&get("/a"));
        h.events();
        h.c.send_response(0, parts(200), Some(10)).unwrap();
        // The head is still pending: the body may not go around it.
        assert!(!h.c.can_write_in_place(0));
        let (r, _) = write_in_place(&mut h, 0, 64, b"abc");
        assert_eq!(r, Err(H1Error::NotInPlace(0)));
        let mut wire = h.out();
        assert!(h.c.can_write_in_place(0));
        // A send buffer of 4 free bytes takes 4; then never past the declared length.
        let (r, bytes) = write_in_place(&mut h, 0, 4, b"0123456789xyz");
        assert_eq!(r, Ok(InPlaceWrite { wire: 4, body: 4 }));
        wire.extend_from_slice(&bytes);
        let (r, bytes) = write_in_place(&mut h, 0, 64, b"456789xyz");
        assert_eq!(r, Ok(InPlaceWrite { wire: 6, body: 6 }));
        wire.extend_from_slice(&bytes);
        assert!(!h.c.can_write_in_place(0), "the body is complete");
        h.c.finish_response(0).unwrap();
        assert!(
            h.c.pending_output().is_empty(),
            "nothing follows a length body"
        );
        let r = parse_all(&wire);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].body, b"0123456789");
        // Keep-alive: the next request is answered normally.
        h.feed_all(&get("/b"));
        h.events();
        h.respond(1, 200, b"next");
        assert_eq!(parse_all(&h.out())[0].body, b"next");
        assert!(!h.c.is_closed());
    }

    #[test]
    fn in_place_body_with_chunked_framing() {
        let mut h = H::new();
        let mut wire = start_streaming(&mut h, &["/a"], None);
        let mut body = Vec::new();
        for (space, part) in [
            (300, &b"hello "[..]),
            (5, b"never"),
            (7, b"w"),
            (64, b"orld"),
        ] {
            let (r, bytes) = write_in_place(&mut h, 0, space, part);
            let wrote = r.unwrap();
            if space == 5 {
                assert_eq!(wrote, InPlaceWrite::default(), "5 bytes hold no chunk");
            }
            assert_eq!(wrote.wire, bytes.len());
            body.extend_from_slice(&part[..wrote.body]);
            wire.extend_from_slice(&bytes);
        }
        assert_eq!(body, b"hello world");
        h.c.finish_response(0).unwrap();
        wire.extend_from_slice(&h.out());
        let r = parse_all(&wire);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].header("transfer-encoding"), Some("chunked"));
        assert_eq!(r[0].body, b"hello world");
        assert!(!h.c.is_closed());
    }

    #[test]
    fn in_place_body_keeps_a_pipelined_response_behind_it() {
        let mut h = H::new();
        let mut wire = start_streaming(&mut h, &["/a", "/b"], Some(6));
        // The second response is complete before the first one's body.
        h.respond(1, 200, b"second");
        assert!(!h.c.can_write_in_place(1));
        assert!(h.c.pending_output().is_empty(), "the second waits");
        assert!(h.c.can_write_in_place(0));
        let (r, bytes) = write_in_place(&mut h, 0, 64, b"first!");
        assert_eq!(r.unwrap().body, 6);
        assert!(
            h.c.pending_output().is_empty(),
            "the second waits for the first"
        );
        wire.extend_from_slice(&bytes);
        h.c.finish_response(0).unwrap();
        wire.extend_from_slice(&h.out());
        let r = parse_all(&wire);
        let bodies: Vec<&[u8]> = r.iter().map(|r| r.body.as_slice()).collect();
        assert_eq!(bodies, [&b"first!"[..], b"second"]);
    }

    #[test]
    fn in_place_body_shorter_than_declared_closes_after_it() {
        let mut h = H::new();
        let mut wire = start_streaming(&mut h, &["/file", "/next"], Some(10));
        let (r, bytes) = write_in_place(&mut h, 0, 64, b"four");
        assert_eq!(r.unwrap().body, 4);
        wire.extend_from_slice(&bytes);
        // The file ended early: the response is cut and the connection ends after it.
        assert_eq!(
            h.c.finish_response(0),
            Err(H1Error::BodyTooShort { id: 0, missing: 6 })
        );
        assert!(h.c.pending_output().is_empty());
        assert!(h.c.is_closed(), "nothing more is sent on this connection");
        assert_eq!(
            write_in_place(&mut h, 0, 64, b"more").0,
            Err(H1Error::Closed)
        );
        assert!(wire.ends_with(b"\r\n\r\nfour"));
    }

    #[test]
    fn in_place_body_after_the_peer_closes_and_when_the_peer_stops_reading() {
        let mut h = H::new();
        let mut wire = start_streaming(&mut h, &["/a"], Some(8));
        let (r, bytes) = write_in_place(&mut h, 0, 64, b"half");
        assert_eq!(r.unwrap().body, 4);
        wire.extend_from_slice(&bytes);
        // The peer half-closes midway: the response in flight is still finished, then
        // the connection closes.
        h.c.handle_eof(h.now);
        let (r, bytes) = write_in_place(&mut h, 0, 64, b"done");
        assert_eq!(r.unwrap().body, 4);
        wire.extend_from_slice(&bytes);
        h.c.finish_response(0).unwrap();
        assert!(h.c.is_closed());
        assert_eq!(parse_all(&wire)[0].body, b"halfdone");

        // A peer that stops reading: no room in place for the idle timeout ends it.
        let mut h = H::new();
        start_streaming(&mut h, &["/a"], Some(8));
        assert_eq!(h.c.poll_timeout(), None);
        h.c.output_blocked(10 * SEC);
        let stall = h.c.poll_timeout().expect("the stall timer runs");
        // Room again restarts it.
        let (r, _) = write_in_place(&mut h, 0, 64, b"ab");
        assert_eq!(r.unwrap().body, 2);
        assert_eq!(h.c.poll_timeout(), None);
        h.c.output_blocked(20 * SEC);
        assert!(h.c.poll_timeout().unwrap() > stall);
        h.c.handle_timeout(h.c.poll_timeout().unwrap());
        assert!(h.c.is_stalled());
        assert!(h.c.is_closed());
    }
}
