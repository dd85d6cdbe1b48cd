//! One type for "a TCP stream, or TLS over one", so connection drivers can hold either.

use std::task::Waker;

use super::tcp::TcpStream;
use super::{ReadStatus, Transport, TransportError};
use crate::stack::{ConnId, Stack};

/// A plain or TLS stream.
#[derive(Debug)]
pub enum AnyStream {
    /// Plain TCP.
    Tcp(TcpStream),
}

impl From<TcpStream> for AnyStream {
    fn from(s: TcpStream) -> Self {
        AnyStream::Tcp(s)
    }
}

impl Transport for AnyStream {
    fn id(&self) -> ConnId {
        match self {
            AnyStream::Tcp(s) => s.id(),
        }
    }

    fn read_with(
        &mut self,
        stack: &mut Stack,
        reader: &mut dyn FnMut(&[u8]) -> usize,
    ) -> Result<ReadStatus, TransportError> {
        match self {
            AnyStream::Tcp(s) => s.read_with(stack, reader),
        }
    }

    fn write(&mut self, stack: &mut Stack, data: &[u8]) -> Result<usize, TransportError> {
        match self {
            AnyStream::Tcp(s) => s.write(stack, data),
        }
    }

    fn unsent(&self, stack: &Stack) -> usize {
        match self {
            AnyStream::Tcp(s) => s.unsent(stack),
        }
    }

    fn register(&mut self, stack: &mut Stack, waker: &Waker, read: bool, write: bool) {
        match self {
            AnyStream::Tcp(s) => s.register(stack, waker, read, write),
        }
    }

    fn close(self, stack: &mut Stack) {
        match self {
            AnyStream::Tcp(s) => s.close(stack),
        }
    }

    fn abort(self, stack: &mut Stack) {
        match self {
            AnyStream::Tcp(s) => s.abort(stack),
        }
    }
}
