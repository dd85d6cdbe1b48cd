//! Transports: byte streams over the stack's TCP connections that the HTTP layer reads and
//! writes without knowing what is underneath — plain TCP, or TLS around it (paf's
//! TCP and TLS "protocols").

pub mod any;
pub mod certs;
pub mod flow;
pub mod tcp;
pub mod tls;

use std::task::Waker;

use crate::stack::{ConnId, Stack};

/// Errors of a transport.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The peer reset the connection, or it timed out.
    #[error("connection reset")]
    Reset,
    /// Writing after our side was closed.
    #[error("connection closed for sending")]
    Closed,
    /// TLS failed (a protocol error, a bad certificate, a handshake cut short); the alert
    /// TLS calls for was queued to the peer.
    #[error("TLS: {0}")]
    Tls(String),
}

/// What a read found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadStatus {
    /// Bytes were offered to the reader (it may have taken fewer).
    Data,
    /// Nothing to read now; a registered waker fires when there is.
    WouldBlock,
    /// The peer closed its sending side and everything was read.
    Eof,
}

/// A connected byte stream on the stack.
pub trait Transport {
    /// The connection's name, for logs and maps.
    fn id(&self) -> ConnId;

    /// Offers received bytes to `reader`, which returns how many it took (it may take none:
    /// the rest stays for the next call). Loops while the reader takes everything offered.
    fn read_with(
        &mut self,
        stack: &mut Stack,
        reader: &mut dyn FnMut(&[u8]) -> usize,
    ) -> Result<ReadStatus, TransportError>;

    /// Writes as much of `data` as fits now; `Ok(0)` means full (a registered waker fires
    /// when there is room).
    fn write(&mut self, stack: &mut Stack, data: &[u8]) -> Result<usize, TransportError>;

    /// Bytes queued but not yet acknowledged by the peer (0 when everything is delivered).
    fn unsent(&self, stack: &Stack) -> usize;

    /// Arranges for `waker` to fire when the stream becomes readable or writable.
    fn register(&mut self, stack: &mut Stack, waker: &Waker, read: bool, write: bool);

    /// Ends our sending side after the queued bytes (TCP FIN; TLS `close_notify` first)
    /// while reading goes on: the half-close a tunnel needs. [`close`](Self::close) still
    /// has to give the connection back later.
    fn shutdown_write(&mut self, stack: &mut Stack);

    /// Closes gracefully (after queued bytes) and gives the connection back to the stack.
    fn close(self, stack: &mut Stack);

    /// Resets the connection.
    fn abort(self, stack: &mut Stack);

    /// Resets the connection when `reset`, else closes it gracefully.
    fn end(self, stack: &mut Stack, reset: bool)
    where
        Self: Sized,
    {
        if reset {
            self.abort(stack)
        } else {
            self.close(stack)
        }
    }
}
