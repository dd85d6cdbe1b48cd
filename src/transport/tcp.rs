//! Plain TCP: the transport is the stack's socket itself.

use std::task::Waker;

use smoltcp::socket::tcp::{RecvError, State};

use super::{InPlace, ReadStatus, Transport, TransportError};
use crate::stack::{ConnId, Stack, TcpHandle};

/// A TCP connection used as a byte stream.
#[derive(Debug)]
pub struct TcpStream {
    handle: TcpHandle,
}

impl TcpStream {
    /// Wraps a connection taken from [`Stack::accept`] or [`Stack::connect`].
    pub fn new(handle: TcpHandle) -> Self {
        TcpStream { handle }
    }

    /// The underlying connection.
    pub fn handle(&self) -> &TcpHandle {
        &self.handle
    }

    /// Gives the connection back (for a tunnel that takes over the raw stream).
    pub fn into_handle(self) -> TcpHandle {
        self.handle
    }
}

impl Transport for TcpStream {
    fn id(&self) -> ConnId {
        self.handle.id()
    }

    fn read_with(
        &mut self,
        stack: &mut Stack,
        reader: &mut dyn FnMut(&[u8]) -> usize,
    ) -> Result<ReadStatus, TransportError> {
        let socket = stack.socket_for_reading(&self.handle);
        let mut offered = false;
        loop {
            // `recv` offers the contiguous part of the ring buffer; a wrapped buffer takes
            // two turns.
            let result = socket.recv(|data| {
                let taken = if data.is_empty() { 0 } else { reader(data) };
                (taken, (taken, data.len()))
            });
            match result {
                Ok((_, 0)) => break,
                Ok((taken, len)) => {
                    offered = true;
                    if taken < len {
                        return Ok(ReadStatus::Data);
                    }
                }
                Err(RecvError::Finished) => {
                    return Ok(if offered {
                        ReadStatus::Data
                    } else {
                        ReadStatus::Eof
                    })
                }
                Err(RecvError::InvalidState) => {
                    return if socket.state() == State::Closed && !offered {
                        Err(TransportError::Reset)
                    } else {
                        Ok(ReadStatus::Data)
                    }
                }
            }
        }
        if offered {
            Ok(ReadStatus::Data)
        } else if socket.state() == State::Closed {
            Err(TransportError::Reset)
        } else {
            Ok(ReadStatus::WouldBlock)
        }
    }

    fn write(&mut self, stack: &mut Stack, data: &[u8]) -> Result<usize, TransportError> {
        let socket = stack.socket(&self.handle);
        if socket.state() == State::Closed {
            return Err(TransportError::Reset);
        }
        if !socket.may_send() {
            return Err(TransportError::Closed);
        }
        socket.send_slice(data).map_err(|_| TransportError::Closed)
    }

    fn writes_in_place(&self) -> bool {
        true
    }

    fn write_in_place(
        &mut self,
        stack: &mut Stack,
        fill: &mut dyn FnMut(&mut [u8]) -> usize,
    ) -> Result<InPlace, TransportError> {
        let socket = stack.socket(&self.handle);
        if socket.state() == State::Closed {
            return Err(TransportError::Reset);
        }
        if !socket.may_send() {
            return Err(TransportError::Closed);
        }
        let mut written = 0;
        // `send` offers the contiguous free part of the ring buffer; a wrapped buffer
        // takes two turns.
        loop {
            let (n, offered) = socket
                .send(|space| {
                    let n = if space.is_empty() {
                        0
                    } else {
                        fill(space).min(space.len())
                    };
                    (n, (n, space.len()))
                })
                .map_err(|_| TransportError::Closed)?;
            written += n;
            if n == 0 || n < offered {
                break;
            }
        }
        let room = socket.send_capacity() - socket.send_queue();
        Ok(InPlace { written, room })
    }

    fn unsent(&self, stack: &Stack) -> usize {
        stack.socket_ref(&self.handle).send_queue()
    }

    fn register(&mut self, stack: &mut Stack, waker: &Waker, read: bool, write: bool) {
        let socket = stack.socket_for_reading(&self.handle);
        if read {
            socket.register_recv_waker(waker);
        }
        if write {
            socket.register_send_waker(waker);
        }
    }

    fn shutdown_write(&mut self, stack: &mut Stack) {
        // smoltcp's close() sends FIN after the send buffer and keeps receiving.
        stack.socket_for_reading(&self.handle).close();
    }

    fn close(self, stack: &mut Stack) {
        stack.close(self.handle);
    }

    fn abort(self, stack: &mut Stack) {
        stack.abort(self.handle);
    }
}
