//! Sans-IO HTTP/1.1 server engine (RFC 9112 / RFC 9110).
//!
//! [`ServerConn`] is a pure state machine for one connection: the caller
//! feeds it received bytes ([`ServerConn::handle_input`]), EOF and time, and
//! gets back [`ServerEvent`]s and bytes to write ([`ServerConn::pending_output`]).
//! It never touches sockets, threads or clocks: every time value is a
//! [`Duration`] since an arbitrary, caller-chosen monotonic epoch, and
//! [`ServerConn::poll_timeout`] returns an absolute deadline on that scale.
//!
//! Memory is bounded by [`H1Config`]: the incomplete request head
//! (`max_head_size`), decoded-but-unread body bytes (`max_body_buffer`),
//! outstanding pipelined requests (`max_pipelined`) and buffered response
//! bytes (`max_output_buffer`). When a bound is reached the engine applies
//! backpressure (it consumes fewer bytes than offered) instead of failing.
//!
//! Protocol violations are answered by the engine itself with an error
//! response carrying `Connection: close` (see [`ServerEvent::Rejected`]).
//! The engine never adds `Date` or `Server`; the caller does.
//!
//! Typical driving loop: offer input with `handle_input` (keep unconsumed
//! bytes), drain `poll_event`, answer with `send_response` / `send_body` /
//! `finish_response`, write `pending_output` and report it with
//! `consume_output`, arm a timer at `poll_timeout` and call `handle_timeout`,
//! and close the socket once `is_closed` is true. See the `server` module
//! docs for the protocol decisions (Expect handling, errors while a response
//! is in flight, EOF).
//!
//! Module layout: `head` (request head parsing/validation, response head
//! serialization), `chunked` (strict chunked decoder, chunk encoder),
//! `server` (the connection state machine). Sibling modules are referenced
//! only through `super::`.

mod body;
mod chunked;
mod client;
mod head;
mod server;

use core::time::Duration;

pub use chunked::{encode_chunk, ChunkedDecoder, ChunkedError, LAST_CHUNK};
pub use client::{
    ClientConfig, ClientConn, ClientError, ClientEvent, ExchangeId, H1ClientError, ResponseFraming,
};
pub use head::{parse_request_head, ParsedHead};
pub use server::{RequestId, ServerConn, ServerEvent};

/// Limits and timeouts of an HTTP/1.1 server connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct H1Config {
    /// Maximum size of a request head (request line + header fields); larger → 431.
    pub max_head_size: usize,
    /// Maximum number of header fields; more → 431.
    pub max_headers: usize,
    /// Maximum length of the request-target; longer → 414.
    pub max_uri_len: usize,
    /// Maximum request body size (declared or decoded); larger → 413.
    pub max_body_size: u64,
    /// Time allowed from the first byte of a request head to its end; expiry → 408.
    pub head_timeout: Duration,
    /// Keep-alive idle time after which the connection is closed silently; also the
    /// longest a response's output may wait without any of it being written (a peer that
    /// stops reading) before the connection is ended.
    pub idle_timeout: Duration,
    /// Maximum requests parsed but not yet fully answered (pipelining depth).
    pub max_pipelined: usize,
    /// Maximum decoded request body bytes not yet taken by the application.
    pub max_body_buffer: usize,
    /// Maximum buffered response bytes (see [`ServerConn::send_capacity`]).
    pub max_output_buffer: usize,
}

impl Default for H1Config {
    fn default() -> Self {
        Self {
            max_head_size: 16 * 1024,
            max_headers: 100,
            max_uri_len: 8 * 1024,
            max_body_size: 64 * 1024 * 1024,
            head_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_pipelined: 16,
            max_body_buffer: 64 * 1024,
            max_output_buffer: 64 * 1024,
        }
    }
}

/// How a request body is framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body (no Content-Length and no Transfer-Encoding).
    None,
    /// `Content-Length` framed body of exactly this many bytes (may be 0).
    Length(u64),
    /// `Transfer-Encoding: chunked` body.
    Chunked,
}

/// Why the engine rejected a request; `Display` gives a human-readable message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RejectReason {
    /// A line in the request head ended with a bare LF.
    #[error("bare LF line terminator in request head")]
    BareLf,
    /// A field line started with whitespace (obsolete line folding).
    #[error("obsolete line folding in request head")]
    ObsFold,
    /// The request head could not be parsed.
    #[error("malformed request head: {0}")]
    MalformedHead(&'static str),
    /// The method is not a valid token.
    #[error("invalid request method")]
    InvalidMethod,
    /// The request-target is invalid or not allowed for the method.
    #[error("invalid request target")]
    InvalidTarget,
    /// A header field name is invalid.
    #[error("invalid header field name")]
    InvalidHeaderName,
    /// A header field value is invalid.
    #[error("invalid header field value")]
    InvalidHeaderValue,
    /// An HTTP/1.1 request had no Host header.
    #[error("missing Host header")]
    MissingHost,
    /// More than one Host header.
    #[error("multiple Host headers")]
    MultipleHost,
    /// The Host header is not a valid authority.
    #[error("invalid Host header")]
    InvalidHost,
    /// More than one Content-Length header (or a list value).
    #[error("duplicate Content-Length")]
    DuplicateContentLength,
    /// Content-Length is not a plain decimal number.
    #[error("invalid Content-Length")]
    InvalidContentLength,
    /// Both Transfer-Encoding and Content-Length were present.
    #[error("both Transfer-Encoding and Content-Length present")]
    ContentLengthWithTransferEncoding,
    /// Transfer-Encoding other than exactly `chunked`.
    #[error("unsupported Transfer-Encoding")]
    UnsupportedTransferEncoding,
    /// Transfer-Encoding in an HTTP/1.0 request.
    #[error("Transfer-Encoding in an HTTP/1.0 request")]
    TransferEncodingInHttp10,
    /// HTTP version other than 1.0 / 1.1.
    #[error("HTTP version not supported")]
    UnsupportedVersion,
    /// The request-target exceeded `max_uri_len`.
    #[error("request target too long")]
    UriTooLong,
    /// The request head exceeded `max_head_size`.
    #[error("request head too large")]
    HeadTooLarge,
    /// More than `max_headers` header fields.
    #[error("too many header fields")]
    TooManyHeaders,
    /// The request body exceeded `max_body_size`.
    #[error("request body too large")]
    BodyTooLarge,
    /// The request head was not complete within `head_timeout`.
    #[error("timed out reading request head")]
    HeadTimeout,
    /// The chunked request body was malformed.
    #[error("bad chunked body: {0}")]
    Chunked(ChunkedError),
}

impl RejectReason {
    /// The HTTP status the engine answers with for this reason.
    pub fn status(&self) -> http::StatusCode {
        use http::StatusCode as S;
        match self {
            Self::UriTooLong => S::URI_TOO_LONG,
            Self::HeadTooLarge | Self::TooManyHeaders => S::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::BodyTooLarge | Self::Chunked(ChunkedError::BodyTooLarge) => S::PAYLOAD_TOO_LARGE,
            Self::Chunked(ChunkedError::TrailerTooLarge) => S::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::HeadTimeout => S::REQUEST_TIMEOUT,
            Self::UnsupportedVersion => S::HTTP_VERSION_NOT_SUPPORTED,
            _ => S::BAD_REQUEST,
        }
    }
}

/// Why the connection was aborted without a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AbortReason {
    /// The peer closed its sending side in the middle of a request body.
    #[error("connection closed in the middle of a request body")]
    EofInBody,
}

/// Errors returned to the application for invalid use of the response API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum H1Error {
    /// No outstanding request with this id (never existed, or already answered).
    #[error("no outstanding request with id {0}")]
    UnknownRequest(u64),
    /// The connection is closing or closed; no more responses can be written.
    #[error("connection is closed")]
    Closed,
    /// The engine already answered this request with an error response.
    #[error("request {0} was rejected by the engine")]
    RequestRejected(u64),
    /// `send_response` was called twice for the same request.
    #[error("response for request {0} already started")]
    ResponseAlreadyStarted(u64),
    /// Body or finish before `send_response`.
    #[error("response for request {0} not started")]
    ResponseNotStarted(u64),
    /// Body or finish after `finish_response`.
    #[error("response for request {0} already finished")]
    ResponseFinished(u64),
    /// Interim (1xx) responses are not supported by `send_response`; use `send_continue`.
    #[error("informational status {0} not supported by send_response")]
    InformationalStatus(http::StatusCode),
    /// More body bytes than the declared Content-Length.
    #[error("response body for request {id} exceeds declared length by {excess} bytes")]
    BodyTooLong {
        /// The request id.
        id: u64,
        /// How many bytes too many were offered.
        excess: u64,
    },
    /// Fewer body bytes than the declared Content-Length; the connection will close.
    #[error("response body for request {id} is {missing} bytes short; closing")]
    BodyTooShort {
        /// The request id.
        id: u64,
        /// How many bytes were missing.
        missing: u64,
    },
    /// The output buffer cannot take this many bytes now (see `send_capacity`).
    #[error("output buffer full: {requested} bytes offered, capacity {capacity}")]
    OutputFull {
        /// Bytes offered.
        requested: usize,
        /// Current capacity.
        capacity: usize,
    },
}
