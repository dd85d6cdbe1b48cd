//! HTTP protocol engines, sans-IO: bytes and time in, events and bytes out.
//!
//! - [`h1`]: the HTTP/1.1 server connection (httparse for heads, our own strict chunked
//!   codec).

pub mod h1;
