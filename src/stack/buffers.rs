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

use std::collections::BTreeMap;

use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::TcpSeqNumber;

/// A connection whose buffers grew past the initial size keeps them until it has been
/// idle (queues empty, nothing received or acknowledged) this long.
pub const IDLE_SHRINK: Duration = Duration::from_secs(1);
/// A connection with buffers of the initial size keeps them until it has been idle this
/// long (or two receive round trips, if longer).
pub const RELEASE_QUIET: Duration = Duration::from_millis(200);
/// How soon a connection whose buffers could not be taken back (out-of-order data held,
/// a state that keeps them) is looked at again.
pub const RELEASE_RETRY: Duration = Duration::from_millis(20);
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

/// What a connection holding buffers last did: its stream marks, since when they stand
/// still, and when they are next looked at.
#[derive(Debug, Clone, Copy)]
pub struct Activity {
    marks: (TcpSeqNumber, TcpSeqNumber),
    since: Instant,
    /// When [`Pool::release`] is next asked about the connection (a connection is looked at
    /// only when it might have become quiet, through a [`LookQueue`], not every period: with
    /// 10,000 busy connections, a walk of all of them every 20 ms cost more than the
    /// requests' copies).
    pub look_at: Instant,
}

impl Activity {
    /// The socket's activity as of `now`, next looked at after [`RELEASE_QUIET`].
    pub fn of(socket: &tcp::Socket<'_>, now: Instant) -> Self {
        Activity {
            marks: socket.stream_marks(),
            since: now,
            look_at: now + RELEASE_QUIET,
        }
    }
}

/// What [`Pool::release`] did with a connection's buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// Taken back: this many bytes.
    Freed(usize),
    /// Kept; look at the connection again at this time.
    KeptUntil(Instant),
}

/// When connections holding buffers are next looked at, in slots of [`RELEASE_RETRY`]: an
/// entry is taken in the first release at or after the end of its slot, at most one slot
/// late. A slot is a vector filled and emptied in order: a binary heap of 10,000 busy
/// connections cost about 300 ns of cache misses per pop.
pub struct LookQueue<K> {
    slots: BTreeMap<i64, Vec<(Instant, K)>>,
    /// Emptied slot vectors, for the next slots.
    spare: Vec<Vec<(Instant, K)>>,
    len: usize,
}

/// Emptied slot vectors [`LookQueue`] keeps, and the largest it keeps (entries).
const SPARE_SLOTS: usize = 4;
const SPARE_SLOT_CAPACITY: usize = 256;

impl<K> Default for LookQueue<K> {
    fn default() -> Self {
        LookQueue {
            slots: BTreeMap::new(),
            spare: Vec::new(),
            len: 0,
        }
    }
}

impl<K> LookQueue<K> {
    /// The slot that ends at or after `at`.
    fn slot(at: Instant) -> i64 {
        let width = RELEASE_RETRY.total_micros() as i64;
        -(-at.total_micros()).div_euclid(width)
    }

    /// The end of `slot`.
    fn slot_end(slot: i64) -> Instant {
        Instant::from_micros(slot * RELEASE_RETRY.total_micros() as i64)
    }

    /// Queues `key` to be looked at at `at` (or up to one slot later).
    pub fn push(&mut self, at: Instant, key: K) {
        let spare = &mut self.spare;
        self.slots
            .entry(Self::slot(at))
            .or_insert_with(|| spare.pop().unwrap_or_default())
            .push((at, key));
        self.len += 1;
    }

    /// The entries of the earliest slot when it has ended by `now`; hand the vector back
    /// with [`LookQueue::recycle`].
    pub fn take_due(&mut self, now: Instant) -> Option<Vec<(Instant, K)>> {
        let entry = self.slots.first_entry()?;
        if Self::slot_end(*entry.key()) > now {
            return None;
        }
        let due = entry.remove();
        self.len -= due.len();
        Some(due)
    }

    /// Takes back a vector from [`LookQueue::take_due`], emptied: while entries are queued a
    /// few small ones are kept for the next slots; the rest are freed, and all of them once
    /// the queue is empty (no connection holds buffers).
    pub fn recycle(&mut self, mut slot: Vec<(Instant, K)>) {
        if self.slots.is_empty() {
            self.spare = Vec::new();
        } else if self.spare.len() < SPARE_SLOTS && slot.capacity() <= SPARE_SLOT_CAPACITY {
            slot.clear();
            self.spare.push(slot);
        }
    }

    /// When the earliest slot ends.
    pub fn next_at(&self) -> Option<Instant> {
        self.slots.keys().next().map(|&slot| Self::slot_end(slot))
    }

    /// Entries queued (stale ones too).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Forgets every entry.
    pub fn clear(&mut self) {
        self.slots.clear();
        self.len = 0;
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
    /// buffers). `activity` is updated. Activity seen here counts from `now`: a connection
    /// looked at when it might have become quiet gives its buffers back between one and two
    /// quiet periods after its last traffic.
    pub fn release(
        &mut self,
        socket: &mut tcp::Socket<'static>,
        activity: &mut Activity,
        now: Instant,
    ) -> Release {
        use tcp::State;
        let marks = socket.stream_marks();
        let busy = marks != activity.marks || socket.recv_queue() > 0 || socket.send_queue() > 0;
        let grown = socket.recv_capacity() > self.sizes.rx_initial
            || socket.send_capacity() > self.sizes.tx_initial;
        let rtt = socket.receive_rtt().unwrap_or(Duration::ZERO);
        let quiet = if grown { IDLE_SHRINK } else { RELEASE_QUIET }.max(rtt * 2);
        if busy {
            activity.marks = marks;
            activity.since = now;
            return Release::KeptUntil(now + quiet);
        }
        if !matches!(
            socket.state(),
            State::Established | State::CloseWait | State::FinWait2
        ) {
            return Release::KeptUntil(now + RELEASE_RETRY);
        }
        if now < activity.since + quiet {
            return Release::KeptUntil(activity.since + quiet);
        }
        let before = held(socket);
        let none = || tcp::SocketBuffer::new(Vec::new());
        match socket.replace_buffers(none(), none()) {
            Ok((rx, tx)) => {
                self.give(rx);
                self.give(tx);
                Release::Freed(before)
            }
            // Refused only while out-of-order data is held: try again soon.
            Err(_) => Release::KeptUntil(now + RELEASE_RETRY),
        }
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

    #[test]
    fn look_queue_hands_out_slots_in_order_once_they_have_ended() {
        let ms = Instant::from_millis;
        let mut looks = LookQueue::default();
        looks.push(ms(1_045), 'b');
        looks.push(ms(1_001), 'a');
        looks.push(ms(1_020), 'c');
        looks.push(ms(1_300), 'd');
        assert_eq!(looks.len(), 4);
        // 1,001 and 1,020 share the slot that ends at 1,020; 1,045 ends at 1,060.
        assert_eq!(looks.next_at(), Some(ms(1_020)));
        assert!(looks.take_due(ms(1_019)).is_none());
        let due = looks.take_due(ms(1_020)).expect("due");
        assert_eq!(due, [(ms(1_001), 'a'), (ms(1_020), 'c')]);
        looks.recycle(due);
        assert!(looks.take_due(ms(1_059)).is_none());
        let due = looks.take_due(ms(2_000)).expect("due");
        assert_eq!(due, [(ms(1_045), 'b')]);
        looks.recycle(due);
        // One slot per call: 1,300 is due, 1,500 waits for the next call.
        looks.push(ms(1_500), 'e');
        assert_eq!(looks.take_due(ms(2_000)), Some(vec![(ms(1_300), 'd')]));
        assert_eq!(looks.len(), 1);
        assert_eq!(looks.next_at(), Some(ms(1_500)));
        looks.clear();
        assert_eq!((looks.len(), looks.next_at()), (0, None));
    }

    fn pool_buffer(size: usize) -> tcp::SocketBuffer<'static> {
        tcp::SocketBuffer::new(vec![0; size])
    }
}
