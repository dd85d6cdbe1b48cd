//! The byte pump: moves bytes between a connection's transport and the connection's end of
//! a [`Tunnel`] after an HTTP exchange handed the connection over (server and client sides
//! alike), and polls the task that holds the other end.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use smoltcp::time::Instant;

use super::body::BodyError;
use super::upgrade::{Tunnel, TUNNEL_BUFFER, TUNNEL_IDLE_TIMEOUT};
use super::Drive;
use crate::error::Chain;
use crate::runtime::wake::TURNS;
use crate::stack::Stack;
use crate::transport::{ReadStatus, Transport};

/// Moves bytes between a transport and the connection's end of a tunnel, and polls the task
/// that holds the other end. Used by the server's and the client's HTTP/1.1 connections after
/// a switch, and by the client's raw tunnels.
pub(crate) struct Pump<T: Transport> {
    transport: Option<T>,
    end: Tunnel,
    /// Bytes read before the switch that belong to the tunnel.
    prefix: Bytes,
    /// Bytes taken from the tunnel, not yet written.
    out: Option<Bytes>,
    /// The task holding the user's end (server side), polled with the connection's waker.
    task: Option<Pin<Box<dyn Future<Output = ()>>>>,
    peer_eof: bool,
    /// The task closed its sending side; FIN (or `close_notify`) went out.
    write_closed: bool,
    /// The task closed its side, FIN not yet sent (queued bytes first).
    task_done: bool,
    last_activity: Instant,
    /// Bytes moved in (from the peer) and out (to the peer).
    pub(crate) bytes_in: u64,
    pub(crate) bytes_out: u64,
}

impl<T: Transport> Pump<T> {
    /// Starts pumping `transport` ↔ `end`; `prefix` holds bytes already read from the
    /// transport that belong to the tunnel.
    pub(crate) fn new(
        transport: T,
        end: Tunnel,
        prefix: Bytes,
        task: Option<Pin<Box<dyn Future<Output = ()>>>>,
        now: Instant,
    ) -> Self {
        Pump {
            transport: Some(transport),
            end,
            prefix,
            out: None,
            task,
            peer_eof: false,
            write_closed: false,
            task_done: false,
            last_activity: now,
            bytes_in: 0,
            bytes_out: 0,
        }
    }

    /// When the idle timeout fires.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.transport
            .as_ref()
            .map(|_| self.last_activity + TUNNEL_IDLE_TIMEOUT.into())
    }

    /// Ends the tunnel now (server shutdown, client close): the task reads an error.
    pub(crate) fn close(&mut self, stack: &mut Stack, reason: &str) {
        self.end.fail(BodyError::Incomplete(reason.to_string()));
        self.task = None;
        if let Some(t) = self.transport.take() {
            t.close(stack);
        }
    }

    /// Resets the connection now; the task reads an error.
    pub(crate) fn abort(&mut self, stack: &mut Stack, reason: &str) {
        self.finish(stack, Some(reason.to_string()));
    }

    fn finish(&mut self, stack: &mut Stack, reset: Option<String>) -> Drive {
        match reset {
            Some(reason) => {
                self.end.fail(BodyError::Incomplete(reason));
                if let Some(t) = self.transport.take() {
                    t.abort(stack);
                }
            }
            None => {
                self.end.close();
                if let Some(t) = self.transport.take() {
                    t.close(stack);
                }
            }
        }
        self.task = None;
        Drive::Closed
    }

    /// Does the work that is ready.
    pub(crate) fn drive(&mut self, stack: &mut Stack, cx: &mut Context<'_>, now: Instant) -> Drive {
        if self.transport.is_none() {
            return Drive::Closed;
        }
        if now >= self.last_activity + TUNNEL_IDLE_TIMEOUT.into() {
            tracing::debug!("tunnel idle for {TUNNEL_IDLE_TIMEOUT:?}: closing");
            return self.finish(stack, Some("tunnel idle timeout".into()));
        }
        let mut progress = true;
        for _ in 0..TURNS {
            progress = false;
            if let Some(task) = self.task.as_mut() {
                if task.as_mut().poll(cx).is_ready() {
                    self.task = None;
                    progress = true;
                }
            }
            // Peer → tunnel.
            if !self.peer_eof {
                let ready = matches!(self.end.poll_ready(cx), Poll::Ready(Ok(())));
                // A gone reader (the task dropped its end) still lets us drain the socket;
                // the bytes are discarded by the pipe.
                let gone = self.end.is_abandoned();
                if ready || gone {
                    if !self.prefix.is_empty() {
                        let n = self.prefix.len().min(self.end.room().max(1));
                        let chunk = self.prefix.split_to(n);
                        self.bytes_in += chunk.len() as u64;
                        let _ = self.end.send(chunk);
                        progress = true;
                    } else if let Some(transport) = self.transport.as_mut() {
                        let room = if gone { TUNNEL_BUFFER } else { self.end.room() };
                        let mut buf = BytesMut::new();
                        let status = transport.read_with(stack, &mut |data| {
                            let take = data.len().min(room - buf.len());
                            buf.extend_from_slice(&data[..take]);
                            take
                        });
                        if !buf.is_empty() {
                            progress = true;
                            self.bytes_in += buf.len() as u64;
                            if !gone {
                                let _ = self.end.send(buf.freeze());
                            }
                        }
                        match status {
                            Ok(ReadStatus::Eof) => {
                                self.peer_eof = true;
                                self.end.close();
                                progress = true;
                            }
                            Ok(_) => {}
                            Err(e) => return self.finish(stack, Some(Chain(&e).to_string())),
                        }
                    }
                }
            }
            // Tunnel → peer.
            while !self.task_done {
                if self.out.is_none() {
                    match self.end.poll_read(cx, TUNNEL_BUFFER) {
                        Poll::Pending => break,
                        Poll::Ready(Some(Ok(chunk))) => self.out = Some(chunk),
                        Poll::Ready(None) => {
                            // The task closed its side: FIN once everything is out.
                            self.task_done = true;
                            progress = true;
                            break;
                        }
                        Poll::Ready(Some(Err(e))) => {
                            return self.finish(stack, Some(e.to_string()));
                        }
                    }
                }
                let Some(transport) = self.transport.as_mut() else {
                    return Drive::Closed;
                };
                let Some(chunk) = self.out.as_mut() else {
                    break;
                };
                match transport.write(stack, chunk) {
                    Ok(0) => break,
                    Ok(n) => {
                        progress = true;
                        self.bytes_out += n as u64;
                        let _ = chunk.split_to(n);
                        if chunk.is_empty() {
                            self.out = None;
                        }
                    }
                    Err(e) => return self.finish(stack, Some(Chain(&e).to_string())),
                }
            }
            if self.task_done && self.out.is_none() && !self.write_closed {
                if let Some(t) = self.transport.as_mut() {
                    t.shutdown_write(stack);
                }
                self.write_closed = true;
                progress = true;
            }
            // Both directions ended: the connection is done.
            if self.write_closed && self.peer_eof {
                return self.finish(stack, None);
            }
            if progress {
                self.last_activity = now;
            } else {
                break;
            }
        }
        if progress {
            crate::runtime::wake::out_of_turns(cx);
        }
        if let Some(t) = self.transport.as_mut() {
            let read = !self.peer_eof;
            let write = self.out.is_some() || (self.task_done && !self.write_closed);
            t.register(stack, cx.waker(), read, write);
        }
        Drive::Open
    }
}
