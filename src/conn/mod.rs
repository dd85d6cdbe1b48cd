//! The connection layer both roles share: what the server ([`crate::service`]), the client
//! ([`crate::client`]) and the proxy put on a connection once a transport carries it.
//!
//! - [`body`]: message bodies, pulled with backpressure both ways (hyper's `body`).
//! - [`upgrade`]: tunnels — the byte stream of a connection after an exchange hands it over
//!   (CONNECT, `101 Switching Protocols`; hyper's `upgrade`).
//! - `pump`: the byte pump between a transport and a tunnel's end.
//! - `h2body`: sending a body on an HTTP/2 stream with the peer's flow control.
//!
//! It may use the layers below it (http, transport, runtime, stack), never service or
//! client.

pub mod body;
pub(crate) mod h2body;
pub(crate) mod pump;
pub mod upgrade;

/// What a drive left a connection as (every connection driver returns it: HTTP engines,
/// the byte pump).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Drive {
    /// Still open.
    Open,
    /// Closed (or reset) and handed back to the stack.
    Closed,
}
