//! The byte pump: moves bytes between a connection's transport and a local end for at most
//! [`TURNS`] rounds, half-closes, and registers the transport's interest. What the local end
//! is (a flow's pipe in [`super::flow`], a tunnel end in `conn::pump` after an HTTP
//! exchange) stays with its owner behind [`LocalEnd`]; the loop is this one.

use std::task::Context;

use super::{ReadStatus, Transport, TransportError};
use crate::runtime::wake::{out_of_turns, TURNS};
use crate::stack::Stack;

/// The local side of a pumped connection.
pub(crate) trait LocalEnd {
    /// Work of the local side at the start of each round (a tunnel polls the task holding
    /// its other end); true when it moved something.
    fn before_round(&mut self, _cx: &mut Context<'_>) -> bool {
        false
    }
    /// Bytes from the peer the local end takes now (0: none this round).
    fn room(&mut self, cx: &mut Context<'_>) -> usize;
    /// Bytes read from the peer (at most [`LocalEnd::room`] in a round).
    fn receive(&mut self, data: &[u8]);
    /// The peer ended its sending side.
    fn peer_closed(&mut self);
    /// True once the peer ended its sending side.
    fn peer_eof(&self) -> bool;
    /// The bytes to send to the peer next (empty: none now), or why the local end failed.
    fn outgoing(&mut self, cx: &mut Context<'_>) -> Result<&[u8], String>;
    /// `n` bytes of [`LocalEnd::outgoing`] went out.
    fn sent(&mut self, n: usize);
    /// True while bytes taken from the local end wait to go out.
    fn has_outgoing(&self) -> bool;
    /// The local end sends nothing more: FIN (or `close_notify`) once its bytes are out.
    fn done_sending(&self) -> bool;
    /// With [`LocalEnd::done_sending`]: close the connection once its bytes are out instead
    /// of half-closing and reading on (the owner is gone: paf's `to_close`).
    fn close_when_sent(&self) -> bool {
        false
    }
    /// Our sending side was ended.
    fn write_shut(&mut self);
    /// True once our sending side was ended.
    fn write_closed(&self) -> bool;
    /// The end of a round; `progress` says whether it moved anything.
    fn after_round(&mut self, _progress: bool) {}
    /// Whether the transport should wake the driver when bytes arrive.
    fn wants_read(&self) -> bool;
}

/// How a drive of the pump ended.
#[derive(Debug)]
pub(crate) enum Pumped {
    /// Still open; `moved` says whether any round moved something.
    Open {
        /// Bytes or state moved.
        moved: bool,
    },
    /// Both directions ended, or the local end is gone with its bytes out: the owner
    /// closes the connection gracefully.
    Done,
    /// The connection failed: the owner resets it.
    Failed(TransportError),
    /// The local end failed, for the reason given: the owner resets the connection.
    LocalFailed(String),
}

/// Moves bytes between `transport` and `local` until nothing moves or the rounds run out
/// (then the driver is woken for another turn); registers `cx`'s waker with the transport
/// for what the connection waits on.
pub(crate) fn pump<T: Transport + ?Sized, L: LocalEnd>(
    transport: &mut T,
    stack: &mut Stack,
    local: &mut L,
    cx: &mut Context<'_>,
) -> Pumped {
    let mut moved = false;
    let mut progress = true;
    for _ in 0..TURNS {
        progress = local.before_round(cx);
        // Peer → local.
        if !local.peer_eof() {
            let room = local.room(cx);
            if room > 0 {
                let mut taken = 0;
                let status = transport.read_with(stack, &mut |data| {
                    let n = data.len().min(room - taken);
                    local.receive(&data[..n]);
                    taken += n;
                    n
                });
                progress |= taken > 0;
                match status {
                    Ok(ReadStatus::Eof) => {
                        local.peer_closed();
                        progress = true;
                    }
                    Ok(_) => {}
                    Err(e) => return Pumped::Failed(e),
                }
            }
        }
        // Local → peer.
        loop {
            let out = match local.outgoing(cx) {
                Ok([]) => break,
                Ok(out) => out,
                Err(reason) => return Pumped::LocalFailed(reason),
            };
            match transport.write(stack, out) {
                Ok(0) => break,
                Ok(n) => {
                    local.sent(n);
                    progress = true;
                }
                Err(e) => return Pumped::Failed(e),
            }
        }
        if local.done_sending() && !local.has_outgoing() {
            if local.close_when_sent() {
                return Pumped::Done;
            }
            if !local.write_closed() {
                transport.shutdown_write(stack);
                local.write_shut();
                progress = true;
            }
        }
        local.after_round(progress);
        // Both directions ended: the connection is done.
        if local.write_closed() && local.peer_eof() {
            return Pumped::Done;
        }
        moved |= progress;
        if !progress {
            break;
        }
    }
    if progress {
        out_of_turns(cx);
    }
    let write = local.has_outgoing() || (local.done_sending() && !local.write_closed());
    transport.register(stack, cx.waker(), local.wants_read(), write);
    Pumped::Open { moved }
}
