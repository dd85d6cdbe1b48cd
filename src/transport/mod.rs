//! Transports: byte streams over the stack's TCP connections that the HTTP layer reads and
//! writes without knowing what is underneath — plain TCP, or TLS around it (paf's
//! TCP and TLS "protocols").

pub mod any;
pub mod certs;
pub mod flow;
pub mod origin;
pub(crate) mod pump;
pub mod tcp;
pub mod tls;

use std::sync::Arc;
use std::task::Waker;

use crate::stack::{ConnId, Stack};

/// Errors of a transport.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TransportError {
    /// The peer reset the connection, or it timed out.
    #[error("connection reset")]
    Reset,
    /// Writing after our side was closed.
    #[error("connection closed for sending")]
    Closed,
    /// TLS failed (a protocol error, a bad certificate, a handshake cut short); the alert
    /// TLS calls for was queued to the peer.
    #[error("TLS")]
    Tls(#[from] TlsFailure),
}

/// Why a TLS session failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TlsFailure {
    /// rustls refused what the peer sent or what was asked of it (a protocol error, a bad
    /// certificate, no common protocol).
    #[error(transparent)]
    Rustls(#[from] rustls::Error),
    /// Reading or writing TLS records failed.
    #[error(transparent)]
    Io(Arc<std::io::Error>),
    /// The peer closed the connection during the handshake.
    #[error("peer closed the connection during the TLS handshake")]
    ClosedInHandshake,
    /// The handshake did not finish in time.
    #[error("handshake timed out")]
    HandshakeTimeout,
    /// The client's TLS configuration could not be built (its trust roots).
    #[error(transparent)]
    Config(Arc<certs::CertError>),
    /// HTTP/2 was required but the server did not choose it by ALPN.
    #[error("the server did not agree to HTTP/2 (ALPN)")]
    NoHttp2,
    /// The host name cannot be a TLS server name.
    #[error("'{0}' is not a valid TLS server name")]
    ServerName(String),
}

impl From<std::io::Error> for TlsFailure {
    fn from(error: std::io::Error) -> Self {
        TlsFailure::Io(Arc::new(error))
    }
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

/// What [`Transport::write_in_place`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InPlace {
    /// Bytes the filler wrote into the send buffer.
    pub written: usize,
    /// Free space left in the send buffer afterwards.
    pub room: usize,
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

    /// True when [`write_in_place`](Self::write_in_place) hands out the send buffer's own
    /// free space (plain TCP); false when bytes must pass through the transport (TLS
    /// encrypts them): use [`write`](Self::write).
    fn writes_in_place(&self) -> bool {
        false
    }

    /// Lets `fill` write straight into the free space of the send buffer, saving the copy
    /// [`write`](Self::write) makes: it gets contiguous free bytes and returns how many it
    /// wrote; when it fills them all and the buffer wraps, it is offered the rest. Writes
    /// nothing on a transport that does not [`writes_in_place`](Self::writes_in_place).
    fn write_in_place(
        &mut self,
        _stack: &mut Stack,
        _fill: &mut dyn FnMut(&mut [u8]) -> usize,
    ) -> Result<InPlace, TransportError> {
        Ok(InPlace::default())
    }

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
