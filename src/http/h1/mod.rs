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
//! `consume_output` (or, once the output is empty, write body bytes straight into the
//! transport's send buffer with `write_body_in_place`), arm a timer at `poll_timeout` and call `handle_timeout`,
//! and close the socket once `is_closed` is true. See the `server` module
//! docs for the protocol decisions (Expect handling, errors while a response
//! is in flight, EOF).
//!
//! [`ClientConn`] is the client role on the same core: it writes requests and reads
//! responses, with the same limits, body framing, errors ([`ProtocolError`], [`H1Error`])
//! and timers (a response-head timeout and an idle timeout).
//!
//! Module layout: `conn` (the connection core both roles share: head reading under limits, body decoding
//! into bounded buffers, body encoding with chunked trailers, output and timers), `head`
//! (head parsing and serialization, shared field rules plus each role's), `chunked` (strict
//! chunked decoder, chunk encoder), `body` (body decoders), `server` and `client` (the two
//! roles). Sibling modules are referenced only through `super::`.

mod body;
mod chunked;
mod client;
mod conn;
mod head;
mod server;

use core::time::Duration;

pub use super::is_forbidden_trailer;
pub use chunked::{encode_chunk, ChunkedDecoder, ChunkedError, LAST_CHUNK};
pub use client::{ClientConfig, ClientConn, ClientEvent, ExchangeId};
pub use head::{parse_request_head, DefaultFields, ParsedHead};
pub use server::{InPlaceWrite, RequestId, ServerConn, ServerEvent};

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

/// How a response body is framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFraming {
    /// No body: response to HEAD, 204, 304, or the end of HTTP after 101 /
    /// a `2xx` to `CONNECT` (see [`ClientConn::is_upgraded`]).
    None,
    /// `Content-Length` framed body of exactly this many bytes (may be 0).
    Length(u64),
    /// `Transfer-Encoding: chunked` body.
    Chunked,
    /// The body runs until the server closes the connection.
    CloseDelimited,
}

/// What was wrong with the peer's bytes (or its timing): one enum for both roles, as
/// hyper's `Parse`. The server answers most of them with an error status
/// ([`ProtocolError::status`]); the client fails the connection with them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// A line in a message head ended with a bare LF.
    #[error("bare LF line terminator in the message head")]
    BareLf,
    /// A field line started with whitespace (obsolete line folding).
    #[error("obsolete line folding in the message head")]
    ObsFold,
    /// The message head could not be parsed.
    #[error("malformed message head: {0}")]
    MalformedHead(&'static str),
    /// The request method is not a valid token.
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
    /// More than one Content-Length (field, or list element in a response).
    #[error("duplicate Content-Length")]
    DuplicateContentLength,
    /// Content-Length is not a plain decimal number.
    #[error("invalid Content-Length")]
    InvalidContentLength,
    /// Both Transfer-Encoding and Content-Length were present in a request.
    #[error("both Transfer-Encoding and Content-Length present")]
    ContentLengthWithTransferEncoding,
    /// A request's Transfer-Encoding other than exactly `chunked`.
    #[error("unsupported Transfer-Encoding")]
    UnsupportedTransferEncoding,
    /// A response's Transfer-Encoding is empty or applies `chunked` more than once.
    #[error("invalid Transfer-Encoding")]
    InvalidTransferEncoding,
    /// Transfer-Encoding in an HTTP/1.0 request.
    #[error("Transfer-Encoding in an HTTP/1.0 request")]
    TransferEncodingInHttp10,
    /// HTTP version other than 1.x.
    #[error("HTTP version not supported")]
    UnsupportedVersion,
    /// The request-target exceeded `max_uri_len`.
    #[error("request target too long")]
    UriTooLong,
    /// The message head exceeded `max_head_size`.
    #[error("message head too large")]
    HeadTooLarge,
    /// More than `max_headers` header fields.
    #[error("too many header fields")]
    TooManyHeaders,
    /// The request body exceeded `max_body_size`.
    #[error("request body too large")]
    BodyTooLarge,
    /// A head did not come in time: a request's within `head_timeout` of its first byte,
    /// a response's within the client's `response_timeout` of the request.
    #[error("timed out waiting for the message head")]
    HeadTimeout,
    /// The chunked body was malformed.
    #[error("bad chunked body")]
    Chunked(#[source] ChunkedError),
    /// Bytes arrived while no request was outstanding (client).
    #[error("data received with no request outstanding")]
    UnsolicitedData,
    /// The server closed the connection (EOF, or `Connection: close` on an earlier
    /// response) before starting the response to this request.
    #[error("server closed the connection before responding")]
    ClosedBeforeResponse,
    /// EOF in the middle of a message head.
    #[error("connection closed in the middle of a message head")]
    EofInHead,
    /// EOF in the middle of a `Content-Length` or chunked body.
    #[error("connection closed in the middle of a message body")]
    EofInBody,
}

/// Why the server engine rejected a request (see [`ServerEvent::Rejected`]).
pub type RejectReason = ProtocolError;

/// Why the server engine aborted a connection (see [`ServerEvent::Aborted`]).
pub type AbortReason = ProtocolError;

/// Why a client connection failed (see [`ClientEvent::Failed`]).
pub type ClientError = ProtocolError;

impl ProtocolError {
    /// The HTTP status a server answers with for this error.
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

/// The application used a connection's API wrongly (or too late): one enum for both roles.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum H1Error {
    /// No such request (never existed, or already answered).
    #[error("no outstanding request with id {0}")]
    UnknownRequest(u64),
    /// The connection is closing or closed (or was upgraded): nothing more can be sent.
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
    /// Body bytes after the body of message `id` was finished.
    #[error("body of message {0} already finished")]
    Finished(u64),
    /// Interim (1xx) responses are not supported by `send_response`; use `send_continue`.
    #[error("informational status {0} not supported by send_response")]
    InformationalStatus(http::StatusCode),
    /// The body of an earlier request is not finished yet.
    #[error("body of request {0} not finished")]
    RequestInProgress(u64),
    /// The URI cannot be turned into a request-target (`CONNECT` needs an authority).
    #[error("URI has no usable request target")]
    InvalidTarget,
    /// More body bytes than the declared Content-Length.
    #[error("body of message {id} exceeds declared length by {excess} bytes")]
    BodyTooLong {
        /// The message id.
        id: u64,
        /// How many bytes too many were offered.
        excess: u64,
    },
    /// Fewer body bytes than the declared Content-Length (a response is left truncated
    /// and its connection closes; a request stays open).
    #[error("body of message {id} is {missing} bytes short")]
    BodyTooShort {
        /// The message id.
        id: u64,
        /// How many bytes were missing.
        missing: u64,
    },
    /// Body bytes of response `id` cannot be written in place now: output is waiting
    /// before them, or the response is not the one on the wire (see
    /// `ServerConn::can_write_in_place`).
    #[error("response {0} cannot be written in place now")]
    NotInPlace(u64),
    /// The output buffer cannot take this many bytes now (see `send_capacity`).
    #[error("output buffer full: {requested} bytes offered, capacity {capacity}")]
    OutputFull {
        /// Bytes offered.
        requested: usize,
        /// Current capacity.
        capacity: usize,
    },
}

/// Errors of the client engine's request API.
pub type H1ClientError = H1Error;
