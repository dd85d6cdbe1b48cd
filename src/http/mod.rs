//! HTTP protocol engines, sans-IO: bytes and time in, events and bytes out.
//!
//! - [`h1`]: the HTTP/1.1 connection core and its two roles, server and client (httparse
//!   for heads, our own strict chunked codec).
//! - [`h2io`]: the byte pipe that lets the `h2` crate run on our transports without a
//!   tokio runtime.

pub mod h1;
pub mod h2io;

use http::header::{self, HeaderMap, HeaderName};

/// The HTTP/2 connection preface a client sends first (RFC 9113 §3.4).
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Headers that are specific to one HTTP/1.1 connection and must not appear in HTTP/2
/// (RFC 9113 §8.2.2).
pub const CONNECTION_HEADERS: [&str; 5] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
];

/// Fields a trailer section never carries (RFC 9110 §6.5.1): message framing, routing,
/// request modifiers, authentication, response control and content metadata the recipient
/// needs before the content. The same list as hyper's.
pub fn is_forbidden_trailer(name: &HeaderName) -> bool {
    matches!(
        *name,
        header::AUTHORIZATION
            | header::CACHE_CONTROL
            | header::CONTENT_ENCODING
            | header::CONTENT_LENGTH
            | header::CONTENT_RANGE
            | header::CONTENT_TYPE
            | header::HOST
            | header::MAX_FORWARDS
            | header::SET_COOKIE
            | header::TRAILER
            | header::TRANSFER_ENCODING
            | header::TE
            | header::CONNECTION
            | header::PROXY_AUTHORIZATION
            | header::PROXY_AUTHENTICATE
            | header::WWW_AUTHENTICATE
            | header::EXPECT
            | header::RANGE
            | header::IF_MATCH
            | header::IF_NONE_MATCH
            | header::IF_MODIFIED_SINCE
            | header::IF_UNMODIFIED_SINCE
            | header::IF_RANGE
            | header::AGE
            | header::EXPIRES
            | header::DATE
            | header::LOCATION
            | header::RETRY_AFTER
            | header::VARY
            | header::WARNING
            | header::UPGRADE
    ) || name.as_str() == "keep-alive"
        || name.as_str() == "proxy-connection"
}

/// The fields of a received trailer section (HTTP/1.1 or HTTP/2) a recipient may use:
/// `fields` without the ones a trailer section never carries ([`is_forbidden_trailer`]);
/// `None` when none is left.
pub fn permitted_trailers(mut fields: HeaderMap) -> Option<HeaderMap> {
    let forbidden: Vec<HeaderName> = fields
        .keys()
        .filter(|name| is_forbidden_trailer(name))
        .cloned()
        .collect();
    for name in forbidden {
        fields.remove(name);
    }
    (!fields.is_empty()).then_some(fields)
}

/// Time on the engines' scale (a `Duration` since the stack clock's zero; they only compare
/// instants).
pub(crate) fn engine_time(now: smoltcp::time::Instant) -> core::time::Duration {
    core::time::Duration::from_micros(u64::try_from(now.total_micros()).unwrap_or(0))
}

/// Back from the engines' scale to the stack clock.
pub(crate) fn stack_time(t: core::time::Duration) -> smoltcp::time::Instant {
    smoltcp::time::Instant::from_micros(i64::try_from(t.as_micros()).unwrap_or(i64::MAX))
}
