//! A listening port with a backlog: a pool of smoltcp LISTEN sockets.
//!
//! smoltcp has no accept queue: a SYN goes to the first LISTEN socket on its port, or gets a
//! RST. A [`Listener`] keeps a few sockets listening ([`LISTEN_POOL`]), moves each one that
//! takes a SYN to the half-open list, replaces it at once (the stack refills after every SYN
//! it passes), and queues it for the application once the handshake completes. Half-open
//! plus listening sockets never exceed the backlog, so a SYN flood fills the backlog and
//! further SYNs are dropped (the client retries) rather than growing memory.
//!
//! The pool is small on purpose: smoltcp walks every socket of the set for each frame in and
//! out, so a pool of `backlog` idle LISTEN sockets (1,024 of them, say) made every frame of
//! every connection several times dearer, and each one held full-size buffers.

use std::collections::VecDeque;

use smoltcp::socket::tcp::State;
use smoltcp::time::Instant;

use super::shards::Slot as SocketHandle;

/// Most LISTEN sockets kept per port. The stack replaces a LISTEN socket right after the
/// frame whose SYN took it, so a handful covers any burst; more only cost time per frame.
pub const LISTEN_POOL: usize = 4;

/// The per-port bookkeeping. The sockets themselves live in the stack's socket set.
#[derive(Debug, Default)]
pub struct Listener {
    /// Sockets in LISTEN, ready for a SYN.
    pub listening: Vec<SocketHandle>,
    /// Sockets that took a SYN, with the instant they did.
    pub half_open: Vec<(SocketHandle, Instant)>,
    /// Established connections the application has not taken yet.
    pub ready: VecDeque<SocketHandle>,
}

/// What became of a socket that left the LISTEN state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Still in the handshake.
    Waiting,
    /// The peer reset the handshake: smoltcp turned the socket back to LISTEN.
    Reset,
    /// The handshake completed (data may already have arrived).
    Established,
    /// The handshake failed (RST, or the socket closed).
    Failed,
}

/// Classifies the state of a socket that took a SYN, from the listener's point of view.
pub fn progress(state: State) -> Progress {
    match state {
        State::SynReceived | State::SynSent => Progress::Waiting,
        State::Listen => Progress::Reset,
        State::Closed | State::TimeWait => Progress::Failed,
        // Established, or already past it (peer sent data and FIN quickly).
        _ => Progress::Established,
    }
}

impl Listener {
    /// How many LISTEN sockets this listener should hold, given the backlog and how many
    /// more connections the stack may take.
    pub fn wanted(&self, backlog: usize, room: usize) -> usize {
        backlog
            .saturating_sub(self.half_open.len())
            .min(room)
            .min(LISTEN_POOL)
    }

    /// Puts the half-open socket at `i`, whose peer reset the handshake (smoltcp turned it
    /// back to LISTEN), back into the LISTEN pool.
    pub fn relisten(&mut self, i: usize) {
        let (handle, _) = self.half_open.swap_remove(i);
        self.listening.push(handle);
    }

    /// True when no socket is free for a SYN.
    pub fn is_full(&self) -> bool {
        self.listening.is_empty()
    }
}
