//! The tunnel pump: moves bytes between a connection's transport and the connection's end
//! of a [`Tunnel`] after an HTTP exchange handed the connection over (server and client
//! sides alike), and polls the task that holds the other end. The loop is the transport's
//! byte pump ([`crate::transport::pump`]); this module is the tunnel's side of it.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use smoltcp::time::Instant;

use super::body::BodyError;
use super::upgrade::{Tunnel, TUNNEL_BUFFER, TUNNEL_IDLE_TIMEOUT};
use super::Drive;
use crate::error::Chain;
use crate::stack::Stack;
use crate::transport::pump::{pump, LocalEnd, Pumped};
use crate::transport::Transport;

/// Moves bytes between a transport and the connection's end of a tunnel, and polls the task
/// that holds the other end. Used by the server's and the client's HTTP/1.1 connections after
/// a switch, and by the client's raw tunnels.
pub(crate) struct Pump<T: Transport> {
    transport: Option<T>,
    side: TunnelSide,
    last_activity: Instant,
}

/// The tunnel's side of a [`Pump`].
struct TunnelSide {
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
    /// The task dropped its end: bytes from the peer are drained and discarded.
    discard: bool,
    /// Bytes moved in (from the peer) and out (to the peer).
    bytes_in: u64,
    bytes_out: u64,
}

impl LocalEnd for TunnelSide {
    fn before_round(&mut self, cx: &mut Context<'_>) -> bool {
        let mut progress = false;
        if let Some(task) = self.task.as_mut() {
            if task.as_mut().poll(cx).is_ready() {
                self.task = None;
                progress = true;
            }
        }
        // Bytes read before the switch go first.
        if !self.prefix.is_empty() && self.accepts(cx) {
            let n = self.prefix.len().min(self.end.room().max(1));
            let chunk = self.prefix.split_to(n);
            self.bytes_in += chunk.len() as u64;
            let _ = self.end.send(chunk);
            progress = true;
        }
        progress
    }

    fn room(&mut self, cx: &mut Context<'_>) -> usize {
        if !self.prefix.is_empty() || !self.accepts(cx) {
            0
        } else if self.discard {
            TUNNEL_BUFFER
        } else {
            self.end.room()
        }
    }

    fn receive(&mut self, data: &[u8]) {
        self.bytes_in += data.len() as u64;
        if !self.discard {
            let _ = self.end.send(Bytes::copy_from_slice(data));
        }
    }

    fn peer_closed(&mut self) {
        self.peer_eof = true;
        self.end.close();
    }

    fn peer_eof(&self) -> bool {
        self.peer_eof
    }

    fn outgoing(&mut self, cx: &mut Context<'_>) -> Result<&[u8], String> {
        if self.out.is_none() && !self.task_done {
            match self.end.poll_read(cx, TUNNEL_BUFFER) {
                Poll::Pending => {}
                Poll::Ready(Some(Ok(chunk))) => self.out = Some(chunk),
                // The task closed its side: FIN once everything is out.
                Poll::Ready(None) => self.task_done = true,
                Poll::Ready(Some(Err(e))) => return Err(e.to_string()),
            }
        }
        Ok(self.out.as_deref().unwrap_or_default())
    }

    fn sent(&mut self, n: usize) {
        self.bytes_out += n as u64;
        if let Some(chunk) = self.out.as_mut() {
            let _ = chunk.split_to(n);
            if chunk.is_empty() {
                self.out = None;
            }
        }
    }

    fn has_outgoing(&self) -> bool {
        self.out.is_some()
    }

    fn done_sending(&self) -> bool {
        self.task_done
    }

    fn write_shut(&mut self) {
        self.write_closed = true;
    }

    fn write_closed(&self) -> bool {
        self.write_closed
    }

    fn wants_read(&self) -> bool {
        !self.peer_eof
    }
}

impl TunnelSide {
    /// The tunnel takes bytes now: it has room, or its reader is gone (the socket is still
    /// drained, the bytes discarded by the pipe).
    fn accepts(&mut self, cx: &mut Context<'_>) -> bool {
        let ready = matches!(self.end.poll_ready(cx), Poll::Ready(Ok(())));
        self.discard = self.end.is_abandoned();
        ready || self.discard
    }
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
            side: TunnelSide {
                end,
                prefix,
                out: None,
                task,
                peer_eof: false,
                write_closed: false,
                task_done: false,
                discard: false,
                bytes_in: 0,
                bytes_out: 0,
            },
            last_activity: now,
        }
    }

    /// Bytes moved so far: in (from the peer) and out (to the peer).
    pub(crate) fn bytes(&self) -> (u64, u64) {
        (self.side.bytes_in, self.side.bytes_out)
    }

    /// When the idle timeout fires.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.transport
            .as_ref()
            .map(|_| self.last_activity + TUNNEL_IDLE_TIMEOUT.into())
    }

    /// Ends the tunnel now (server shutdown, client close): the task reads an error.
    pub(crate) fn close(&mut self, stack: &mut Stack, reason: &str) {
        self.side
            .end
            .fail(BodyError::Incomplete(reason.to_string()));
        self.side.task = None;
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
                self.side.end.fail(BodyError::Incomplete(reason));
                if let Some(t) = self.transport.take() {
                    t.abort(stack);
                }
            }
            None => {
                self.side.end.close();
                if let Some(t) = self.transport.take() {
                    t.close(stack);
                }
            }
        }
        self.side.task = None;
        Drive::Closed
    }

    /// Does the work that is ready.
    pub(crate) fn drive(&mut self, stack: &mut Stack, cx: &mut Context<'_>, now: Instant) -> Drive {
        let Some(transport) = self.transport.as_mut() else {
            return Drive::Closed;
        };
        if now >= self.last_activity + TUNNEL_IDLE_TIMEOUT.into() {
            tracing::debug!("tunnel idle for {TUNNEL_IDLE_TIMEOUT:?}: closing");
            return self.finish(stack, Some("tunnel idle timeout".into()));
        }
        match pump(transport, stack, &mut self.side, cx) {
            Pumped::Open { moved } => {
                if moved {
                    self.last_activity = now;
                }
                Drive::Open
            }
            Pumped::Done => self.finish(stack, None),
            Pumped::Failed(e) => self.finish(stack, Some(Chain(&e).to_string())),
            Pumped::LocalFailed(reason) => self.finish(stack, Some(reason)),
        }
    }
}
