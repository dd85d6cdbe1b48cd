//! One type for "a TCP stream, or TLS over one", so connection drivers can hold either.

use std::task::Waker;

use super::tcp::TcpStream;
use super::tls::{ClientTls, ServerTls};
use super::{InPlace, ReadStatus, Transport, TransportError};
use crate::stack::{ConnId, Stack};

/// A plain or TLS stream.
#[derive(Debug)]
pub enum AnyStream {
    /// Plain TCP.
    Tcp(TcpStream),
    /// TLS, server side.
    ServerTls(Box<ServerTls>),
    /// TLS, client side.
    ClientTls(Box<ClientTls>),
}

impl From<TcpStream> for AnyStream {
    fn from(s: TcpStream) -> Self {
        AnyStream::Tcp(s)
    }
}

impl From<ServerTls> for AnyStream {
    fn from(s: ServerTls) -> Self {
        AnyStream::ServerTls(Box::new(s))
    }
}

impl From<ClientTls> for AnyStream {
    fn from(s: ClientTls) -> Self {
        AnyStream::ClientTls(Box::new(s))
    }
}

/// Calls the same method on whichever stream it is.
macro_rules! each {
    ($self:expr, $s:ident => $call:expr) => {
        match $self {
            AnyStream::Tcp($s) => $call,
            AnyStream::ServerTls($s) => $call,
            AnyStream::ClientTls($s) => $call,
        }
    };
}

impl Transport for AnyStream {
    fn id(&self) -> ConnId {
        each!(self, s => s.id())
    }

    fn read_with(
        &mut self,
        stack: &mut Stack,
        reader: &mut dyn FnMut(&[u8]) -> usize,
    ) -> Result<ReadStatus, TransportError> {
        each!(self, s => s.read_with(stack, reader))
    }

    fn write(&mut self, stack: &mut Stack, data: &[u8]) -> Result<usize, TransportError> {
        each!(self, s => s.write(stack, data))
    }

    fn writes_in_place(&self) -> bool {
        each!(self, s => s.writes_in_place())
    }

    fn write_in_place(
        &mut self,
        stack: &mut Stack,
        fill: &mut dyn FnMut(&mut [u8]) -> usize,
    ) -> Result<InPlace, TransportError> {
        each!(self, s => s.write_in_place(stack, fill))
    }

    fn unsent(&self, stack: &Stack) -> usize {
        each!(self, s => s.unsent(stack))
    }

    fn register(&mut self, stack: &mut Stack, waker: &Waker, read: bool, write: bool) {
        each!(self, s => s.register(stack, waker, read, write))
    }

    fn shutdown_write(&mut self, stack: &mut Stack) {
        each!(self, s => s.shutdown_write(stack))
    }

    fn close(self, stack: &mut Stack) {
        each!(self, s => s.close(stack))
    }

    fn abort(self, stack: &mut Stack) {
        each!(self, s => s.abort(stack))
    }
}
