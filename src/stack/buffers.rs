//! TCP buffers on demand. A connection holds a receive and a send buffer only while it moves
//! data: an idle keep-alive connection holds none, so it costs its socket and the
//! application's state, not two buffers. Buffers come from a small pool when a segment
//! with data arrives for a connection that holds none (see [`super::shards::Shards::route`])
//! or when the application uses its socket ([`super::Stack::socket`]), and go back to it
//! once both queues are empty and the connection has been quiet for [`RELEASE_QUIET`] (or
//! two receive round trips, if longer: a transfer pauses that long between flights, and
//! giving the buffers back restarts the receive window's autotuning), grown buffers after
//! [`IDLE_SHRINK`].
//!
//! The receive window does not shrink with the buffer: smoltcp (tapir's patch, see
//! `vendor/smoltcp/TAPIR-PATCH.md`) keeps advertising what is left of the window it
//! advertised last, and the buffer provided when data arrives is large enough for all of it
//! ([`tcp::Socket::receive_room_wanted`]), so nothing the peer may send is dropped.

use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::TcpSeqNumber;

/// A connection whose buffers grew past the initial size keeps them until it has been
/// idle (queues empty, nothing received or acknowledged) this long.
pub const IDLE_SHRINK: Duration = Duration::from_secs(1);
/// A connection with buffers of the initial size keeps them until it has been idle this
/// long (or two receive round trips, if longer).
pub const RELEASE_QUIET: Duration = Duration::from_millis(200);
/// How often connections holding buffers are looked at for buffers to give back.
pub const RELEASE_PERIOD: Duration = Duration::from_millis(20);
/// Free buffers of the initial size kept for the next connections (the rest go back to
/// the allocator): 256 × 4 KiB by default.
const POOLED: usize = 256;

/// Sizes of the buffers a connection is given.
#[derive(Debug, Clone, Copy)]
pub struct BufferSizes {
    /// Receive buffer of a connection that starts moving data.
    pub rx_initial: usize,
    /// Send buffer of a connection that starts moving data.
    pub tx_initial: usize,
    /// Largest receive buffer (the window scale is chosen for it).
    pub rx_max: usize,
}

/// What a connection holding buffers last did: its stream marks, and since when they
/// stand still.
#[derive(Debug, Clone, Copy)]
pub struct Activity {
    marks: (TcpSeqNumber, TcpSeqNumber),
    since: Instant,
}

impl Activity {
    /// The socket's activity as of `now`.
    pub fn of(socket: &tcp::Socket<'_>, now: Instant) -> Self {
        Activity {
            marks: socket.stream_marks(),
            since: now,
        }
    }
}

/// The pool of free buffers and the sizes handed out.
pub struct Pool {
    sizes: BufferSizes,
    free: Vec<tcp::SocketBuffer<'static>>,
}

/// Bytes of a socket's buffers.
pub fn held(socket: &tcp::Socket<'_>) -> usize {
    socket.recv_capacity() + socket.send_capacity()
}

impl Pool {
    /// An empty pool handing out buffers of `sizes`.
    pub fn new(sizes: BufferSizes) -> Self {
        Pool {
            sizes,
            free: Vec::new(),
        }
    }

    /// The size of pooled buffers.
    fn pooled_size(&self) -> usize {
        self.sizes.rx_initial.max(self.sizes.tx_initial)
    }

    /// A buffer of `size` bytes, from the pool when it has one of that size.
    pub fn take(&mut self, size: usize) -> tcp::SocketBuffer<'static> {
        if size == self.pooled_size() {
            if let Some(buffer) = self.free.pop() {
                return buffer;
            }
        }
        tcp::SocketBuffer::new(vec![0; size])
    }

    /// Takes a buffer back (emptied); only the pooled size is kept, up to [`POOLED`].
    pub fn give(&mut self, mut buffer: tcp::SocketBuffer<'static>) {
        if buffer.capacity() == self.pooled_size() && self.free.len() < POOLED {
            buffer.clear();
            self.free.push(buffer);
        }
    }

    /// Gives a socket that holds no buffers its buffers: the initial ones, the receive
    /// buffer larger when the window it advertised asks for more (and `room` bytes of the
    /// memory budget allow it). Returns the bytes now held, or `None` when the socket
    /// already had buffers.
    pub fn provide(&mut self, socket: &mut tcp::Socket<'static>, room: usize) -> Option<usize> {
        if held(socket) != 0 {
            return None;
        }
        let sizes = self.sizes;
        let wanted = socket.receive_room_wanted();
        let rx = if wanted > sizes.rx_initial && wanted - sizes.rx_initial <= room {
            wanted.next_power_of_two().min(sizes.rx_max).max(wanted)
        } else {
            sizes.rx_initial
        };
        let (rx, tx) = (self.take(rx), self.take(sizes.tx_initial));
        match socket.replace_buffers(rx, tx) {
            Ok(_) => Some(held(socket)),
            // Empty buffers are never refused by a socket holding none; keep them anyway.
            Err((rx, tx)) => {
                self.give(rx);
                self.give(tx);
                None
            }
        }
    }

    /// Takes a socket's buffers back when both queues are empty and nothing happened for
    /// [`RELEASE_QUIET`] (two receive round trips if longer; [`IDLE_SHRINK`] for grown
    /// buffers). `activity` is updated; returns the bytes freed, or `None` while the
    /// socket keeps its buffers.
    pub fn release(
        &mut self,
        socket: &mut tcp::Socket<'static>,
        activity: &mut Activity,
        now: Instant,
    ) -> Option<usize> {
        use tcp::State;
        let marks = socket.stream_marks();
        let busy = marks != activity.marks || socket.recv_queue() > 0 || socket.send_queue() > 0;
        if busy {
            *activity = Activity { marks, since: now };
            return None;
        }
        if !matches!(
            socket.state(),
            State::Established | State::CloseWait | State::FinWait2
        ) {
            return None;
        }
        let grown = socket.recv_capacity() > self.sizes.rx_initial
            || socket.send_capacity() > self.sizes.tx_initial;
        let rtt = socket.receive_rtt().unwrap_or(Duration::ZERO);
        let quiet = if grown { IDLE_SHRINK } else { RELEASE_QUIET };
        if now < activity.since + quiet.max(rtt * 2) {
            return None;
        }
        let before = held(socket);
        let none = || tcp::SocketBuffer::new(Vec::new());
        // Refused only while out-of-order data is held: try again later.
        let (rx, tx) = socket.replace_buffers(none(), none()).ok()?;
        self.give(rx);
        self.give(tx);
        Some(before)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_reuses_initial_buffers_only() {
        let mut pool = Pool::new(BufferSizes {
            rx_initial: 4096,
            tx_initial: 4096,
            rx_max: 1 << 20,
        });
        let mut a = pool.take(4096);
        assert_eq!(a.enqueue_slice(b"left over"), 9);
        pool.give(a);
        pool.give(pool_buffer(8192));
        assert_eq!(pool.free.len(), 1);
        let b = pool.take(4096);
        assert_eq!((b.capacity(), b.len()), (4096, 0));
        assert!(pool.free.is_empty());
    }

    fn pool_buffer(size: usize) -> tcp::SocketBuffer<'static> {
        tcp::SocketBuffer::new(vec![0; size])
    }
}
