//! HTTP protocol engines, sans-IO: bytes and time in, events and bytes out.
//!
//! - [`h1`]: the HTTP/1.1 connection core and its two roles, server and client (httparse
//!   for heads, our own strict chunked codec).
//! - [`h2io`]: the byte pipe that lets the `h2` crate run on our transports without a
//!   tokio runtime.

pub mod h1;
pub mod h2io;

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

/// Time on the engines' scale (a `Duration` since the stack clock's zero; they only compare
/// instants).
pub(crate) fn engine_time(now: smoltcp::time::Instant) -> core::time::Duration {
    core::time::Duration::from_micros(u64::try_from(now.total_micros()).unwrap_or(0))
}

/// Back from the engines' scale to the stack clock.
pub(crate) fn stack_time(t: core::time::Duration) -> smoltcp::time::Instant {
    smoltcp::time::Instant::from_micros(i64::try_from(t.as_micros()).unwrap_or(i64::MAX))
}
