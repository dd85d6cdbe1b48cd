//! The stack's sockets, kept in many small smoltcp socket sets instead of one.
//!
//! smoltcp walks every socket of the set it is given for each frame in (to find the socket
//! that accepts it) and out (to let each socket send), and to compute the next timer: a
//! stack with 10,000 connections paid 10,000 socket visits per frame. Here, shard 0 holds
//! the few sockets that are not one connection yet or not TCP (LISTEN pools, half-open
//! handshakes, DHCP, DNS); every connection, once established (or opened by us), lives in
//! one of the data shards of at most [`SHARD_SIZE`] sockets, found through our own index
//! on its 4-tuple. A received frame is read first, its TCP 4-tuple looked up, and only
//! that shard is handed to smoltcp with it, naming the connection's socket (smoltcp offers
//! the segment to it first instead of asking each socket of the shard); egress visits only
//! the sockets that received a frame, were touched by the application, or have a timer
//! due, and each data shard keeps its sockets' timers, so that no socket is visited for
//! its neighbours' traffic.
//!
//! A frame the index does not know (a SYN, a stray segment, ARP, ICMP) goes to shard 0,
//! where smoltcp answers as it always did (LISTEN sockets, RST). IPv4 fragments of a TCP
//! segment follow their datagram: the first fragment carries the ports, so its shard is
//! remembered by (source, destination, identification) and every later fragment of the
//! datagram goes there too — whichever fragment completes the reassembly (in smoltcp's one
//! interface-wide buffer) then meets the connection's socket. Fragments that come before the
//! first one only fill the buffer, wherever they are routed.
//!
//! The shards also hand out the connections' TCP buffers (see [`super::buffers`]): a
//! connection in a data shard holds them only while it moves data.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use smoltcp::iface::{Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, Device, DeviceCapabilities};
use smoltcp::socket::{tcp, AnySocket, Socket};
use smoltcp::time::Instant;

use super::buffers::{held, Activity, BufferSizes, LookQueue, Pool, Release};
use super::key::ConnMap;
use smoltcp::wire::{
    EthernetFrame, EthernetProtocol, IpAddress, IpProtocol, Ipv4Packet, Ipv6Packet, TcpPacket,
};

/// Most sockets per data shard: small enough that a shard's per-socket marks fit a word and
/// its timer (the earliest of its sockets') is a short scan, large enough that the shards
/// themselves stay few. 16 against 64: `wrk -c100` 227k against 214k req/s
/// (`bench.sh --compare`, same run: the commit before the TCP work 234k and 233k); 8 was
/// no better.
pub const SHARD_SIZE: usize = 16;

/// Where a socket lives: its shard and its handle in that shard's set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Slot {
    shard: u32,
    handle: SocketHandle,
}

impl Slot {
    /// A slot that names no socket, for unit tests of code that only carries ids.
    #[cfg(test)]
    pub(crate) fn for_tests(shard: u32) -> Slot {
        Slot {
            shard,
            handle: SocketHandle::default(),
        }
    }
}

impl std::fmt::Display for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.shard, self.handle)
    }
}

/// (local, remote) endpoints of a connection.
type Key = super::key::ConnKey;

struct Shard {
    set: SocketSet<'static>,
    len: usize,
    /// Touched since its last egress: received a frame, or the application used a socket
    /// (then it is in [`Shards::dirty`] too).
    dirty: bool,
    /// smoltcp's next timer for this shard: the earliest of [`Shard::socket_at`] in a data
    /// shard, the whole set's in shard 0.
    next_at: Option<Instant>,
    /// A data shard's sockets' timers, by handle index, as of the last time each socket
    /// was asked (a socket's timer changes only when a segment comes for it, the
    /// application uses it, or it sends; each of these marks it pending).
    socket_at: [Option<Instant>; SHARD_SIZE],
    /// The instant of this shard's live entry in [`Shards::timers`] (older entries of the
    /// shard are stale and skipped).
    queued_at: Option<Instant>,
    /// The sockets its next egress lets send and then asks the timer of, by handle index
    /// (bit `i`: the socket whose handle has index `i`); [`EVERY_SOCKET`] for all of them.
    /// The others have nothing new to send: no segment came for them, the application did
    /// not use them, and their timer is not due.
    pending: u64,
    /// The sockets that could not send for want of a neighbour (ARP/NDP) as of their last
    /// egress, by handle index: smoltcp silences them for a second, or until the
    /// neighbour is learned, which may happen in another shard's ingress (see
    /// [`Shards::egress`]).
    awaiting_neighbor: u64,
}

/// [`Shard::pending`] when every socket of the shard may send.
const EVERY_SOCKET: u64 = u64::MAX;

/// The control shard: LISTEN pools, half-open handshakes, DHCP, DNS. Its sockets are many
/// and come and go, so its timer and egress cover all of them, as smoltcp's own do.
const CONTROL: u32 = 0;

/// Marks shard `i` as touched, every socket of it to be let send: in the dirty list once.
fn touch(dirty: &mut Vec<u32>, shard: &mut Shard, i: u32) {
    shard.pending = EVERY_SOCKET;
    list_dirty(dirty, shard, i);
}

/// Marks shard `i` as touched for its socket `handle` only.
fn touch_socket(dirty: &mut Vec<u32>, shard: &mut Shard, i: u32, handle: SocketHandle) {
    shard.pending |= socket_bit(handle);
    list_dirty(dirty, shard, i);
}

/// Puts shard `i` in the dirty list, once.
fn list_dirty(dirty: &mut Vec<u32>, shard: &mut Shard, i: u32) {
    if !shard.dirty {
        shard.dirty = true;
        dirty.push(i);
    }
}

/// The bit of `handle` in [`Shard::pending`]: a handle past a data shard's size (only the
/// control shard has so many sockets) marks every socket.
fn socket_bit(handle: SocketHandle) -> u64 {
    if handle.index() < SHARD_SIZE {
        1 << handle.index()
    } else {
        EVERY_SOCKET
    }
}

/// The handle indices a data shard's mask names.
fn indices(mask: u64) -> impl Iterator<Item = usize> {
    let mut left = mask & ((1 << SHARD_SIZE) - 1);
    std::iter::from_fn(move || {
        let i = left.trailing_zeros() as usize;
        left &= left.checked_sub(1)?;
        Some(i)
    })
}

impl Shard {
    fn new() -> Self {
        Shard {
            set: SocketSet::new(Vec::new()),
            len: 0,
            dirty: false,
            next_at: None,
            socket_at: [None; SHARD_SIZE],
            queued_at: None,
            pending: 0,
            awaiting_neighbor: 0,
        }
    }

    /// Asks the timers of the sockets `which` names again, and whether they wait for a
    /// neighbour; the shard's timer becomes the earliest. The control shard (`i` 0) asks
    /// its whole set.
    fn retime(&mut self, iface: &mut Interface, now: Instant, i: u32, which: u64) {
        if i == CONTROL {
            self.next_at = iface.poll_at(now, &self.set);
            self.awaiting_neighbor = if self.set.awaiting_neighbor() {
                EVERY_SOCKET
            } else {
                0
            };
            return;
        }
        for index in indices(which) {
            let bit = 1 << index;
            self.awaiting_neighbor &= !bit;
            self.socket_at[index] = match self.set.handle_at(index) {
                Some(handle) => {
                    if self.set.socket_awaiting_neighbor(handle) {
                        self.awaiting_neighbor |= bit;
                    }
                    iface.poll_at_socket(now, &self.set, handle)
                }
                None => None,
            };
        }
        self.next_at = self.socket_at.iter().flatten().min().copied();
    }

    /// The sockets whose timer is due at `now` (every socket of the control shard).
    fn due(&self, i: u32, now: Instant) -> u64 {
        if i == CONTROL {
            return EVERY_SOCKET;
        }
        let mut due = 0;
        for (index, at) in self.socket_at.iter().enumerate() {
            if at.is_some_and(|at| at <= now) {
                due |= 1 << index;
            }
        }
        due
    }
}

/// Where [`Shards::route`] sends a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// The shard whose sockets must see the frame.
    pub shard: usize,
    /// The socket of the TCP connection the frame belongs to, when the frame is one
    /// whole TCP segment of a known connection.
    pub socket: Option<SocketHandle>,
    /// The frame is a TCP segment with RST set.
    pub rst: bool,
    /// The frame is a TCP segment with SYN set.
    pub syn: bool,
}

/// Every socket of a stack.
pub struct Shards {
    shards: Vec<Shard>,
    /// Shards touched since their last egress, each once.
    dirty: Vec<u32>,
    /// The control shard was sent at this instant and its timer not asked since: smoltcp
    /// asks every socket of the set, which may be thousands under a SYN flood, so it is
    /// asked before the stack sleeps ([`Shards::poll_at`]) or at an egress at a later
    /// instant, not after each of a turn's egresses.
    control_sent_at: Option<Instant>,
    /// The handles a data shard's egress lets send (kept for its allocation).
    sending: Vec<SocketHandle>,
    /// Shards by their next timer, earliest first (with stale entries: see
    /// [`Shard::queued_at`]), so that finding the shards due costs no walk of them all.
    timers: BinaryHeap<Reverse<(Instant, u32)>>,
    index: ConnMap<Key, Slot>,
    /// The shard of each IPv4 datagram being reassembled, learned from its first fragment.
    fragments: ConnMap<FragmentKey, u32>,
    keys: ConnMap<Slot, Key>,
    /// Data shards with room, so placing a connection costs no scan.
    roomy: Vec<u32>,
    /// Bytes of TCP buffers held by every socket.
    memory: usize,
    /// Bytes all TCP buffers together may take before buffers stop growing.
    budget: usize,
    /// Free buffers, and the sizes handed out.
    pool: Pool,
    /// Connections of the data shards that hold buffers, with what they last did.
    holding: ConnMap<Slot, Activity>,
    /// When each connection holding buffers is next looked at ([`Activity::look_at`]);
    /// an entry whose time is not its connection's look-at time any more is stale.
    looks: LookQueue<Slot>,
    /// The time of the last egress or release (when buffers handed out were).
    clock: Instant,
}

/// Bytes of a socket's TCP buffers (none for other sockets).
fn buffer_bytes(socket: &Socket<'_>) -> usize {
    match socket {
        Socket::Tcp(tcp) => tcp.recv_capacity() + tcp.send_capacity(),
        #[allow(unreachable_patterns)]
        _ => 0,
    }
}

impl Shards {
    /// Shard 0 only. Connections are given buffers of `sizes`, grown within `budget`
    /// bytes for all of them.
    pub fn new(sizes: BufferSizes, budget: usize, now: Instant) -> Self {
        Shards {
            shards: vec![Shard::new()],
            dirty: Vec::new(),
            control_sent_at: None,
            sending: Vec::new(),
            timers: BinaryHeap::new(),
            index: ConnMap::default(),
            fragments: ConnMap::default(),
            keys: ConnMap::default(),
            roomy: Vec::new(),
            memory: 0,
            budget,
            pool: Pool::new(sizes),
            holding: ConnMap::default(),
            looks: LookQueue::default(),
            clock: now,
        }
    }

    /// Gives a connection of a data shard that holds no buffers its buffers (see
    /// [`super::buffers`]). Returns true when it now holds them.
    pub fn provide(&mut self, slot: Slot) -> bool {
        if slot.shard == 0 {
            return false;
        }
        let room = self.budget.saturating_sub(self.memory);
        let shard = &mut self.shards[slot.shard as usize];
        touch_socket(&mut self.dirty, shard, slot.shard, slot.handle);
        let socket = shard.set.get_mut::<tcp::Socket>(slot.handle);
        match self.pool.provide(socket, room) {
            Some(bytes) => {
                self.memory += bytes;
                let activity = Activity::of(socket, self.clock);
                self.hold(slot, activity);
                true
            }
            None => false,
        }
    }

    /// Notes that a connection holds buffers, to be looked at at `activity.look_at`.
    fn hold(&mut self, slot: Slot, activity: Activity) {
        self.holding.insert(slot, activity);
        self.looks.push(activity.look_at, slot);
    }

    /// Takes their buffers back from connections whose queues are empty (grown ones only
    /// after a while without traffic), looking only at those whose time has come.
    pub fn release_idle(&mut self, now: Instant) {
        self.clock = now;
        while let Some(mut due) = self.looks.take_due(now) {
            for (at, slot) in due.drain(..) {
                let Some(activity) = self.holding.get_mut(&slot) else {
                    continue;
                };
                if activity.look_at != at {
                    continue;
                }
                let socket = self.shards[slot.shard as usize]
                    .set
                    .get_mut::<tcp::Socket>(slot.handle);
                match self.pool.release(socket, activity, now) {
                    Release::Freed(freed) => {
                        self.memory -= freed;
                        self.holding.remove(&slot);
                    }
                    // Always after `now`: in a later slot than this one.
                    Release::KeptUntil(at) => {
                        activity.look_at = at;
                        self.looks.push(at, slot);
                    }
                }
            }
            self.looks.recycle(due);
        }
        // A table sized for a burst of busy connections shrinks when most have gone quiet
        // (idle connections cost no entry here; a quarter full is the hysteresis).
        if self.holding.capacity() > 64 && self.holding.len() * 4 < self.holding.capacity() {
            self.holding.shrink_to(self.holding.len() * 2);
        }
        // Stale entries (connections closed or freed since) leave with their slot; all of
        // them at once when they outnumber the live ones.
        if self.looks.len() > 2 * self.holding.len() + 1024 {
            self.looks.clear();
            for (slot, activity) in &self.holding {
                self.looks.push(activity.look_at, *slot);
            }
        }
    }

    /// When a connection holding buffers is next looked at (`None`: none holds any).
    pub fn release_at(&self) -> Option<Instant> {
        if self.holding.is_empty() {
            return None;
        }
        self.looks.next_at()
    }

    /// Connections that hold buffers now.
    pub fn holding(&self) -> usize {
        self.holding.len()
    }

    /// The memory budget left for buffers to grow into.
    pub fn budget_left(&self) -> usize {
        self.budget.saturating_sub(self.memory)
    }

    /// Bytes of TCP buffers held by every socket.
    pub fn memory(&self) -> usize {
        self.memory
    }

    /// A socket's buffers were replaced: `before` bytes became `after`.
    pub fn resized(&mut self, before: usize, after: usize) {
        self.memory = self.memory - before + after;
    }

    /// Adds a socket to shard 0 (listening, connecting from a listener, DHCP, DNS).
    pub fn add_control<T: AnySocket<'static>>(&mut self, socket: T) -> Slot {
        let socket = socket.upcast();
        self.memory += buffer_bytes(&socket);
        let shard = &mut self.shards[0];
        shard.len += 1;
        touch(&mut self.dirty, shard, 0);
        Slot {
            shard: 0,
            handle: shard.set.add(socket),
        }
    }

    /// Adds a TCP socket that has its endpoints (connected, or connecting from us) to a
    /// data shard, indexed by its 4-tuple.
    pub fn add_connection(&mut self, socket: tcp::Socket<'static>) -> Slot {
        let key = Key::of_socket(&socket);
        self.memory += socket.recv_capacity() + socket.send_capacity();
        let shard = match self.roomy.last() {
            Some(&s) => s,
            None => {
                self.shards.push(Shard::new());
                let s = (self.shards.len() - 1) as u32;
                self.roomy.push(s);
                s
            }
        };
        let entry = &mut self.shards[shard as usize];
        entry.len += 1;
        if entry.len >= SHARD_SIZE {
            self.roomy.pop();
        }
        let holds = held(&socket) > 0;
        let activity = Activity::of(&socket, self.clock);
        let slot = Slot {
            shard,
            handle: entry.set.add(socket),
        };
        touch_socket(&mut self.dirty, entry, shard, slot.handle);
        if let Some(key) = key {
            self.index.insert(key, slot);
            self.keys.insert(slot, key);
        }
        if holds {
            self.hold(slot, activity);
        }
        slot
    }

    /// Moves an established socket from shard 0 to a data shard.
    pub fn promote(&mut self, slot: Slot) -> Slot {
        match self.remove(slot) {
            Socket::Tcp(socket) => self.add_connection(socket),
            // Only TCP sockets are promoted; anything else goes back where it was.
            other => self.add_control(other),
        }
    }

    /// Takes a socket out of its shard.
    pub fn remove(&mut self, slot: Slot) -> Socket<'static> {
        if let Some(key) = self.keys.remove(&slot) {
            if self.index.get(&key) == Some(&slot) {
                self.index.remove(&key);
            }
        }
        self.holding.remove(&slot);
        let shard = &mut self.shards[slot.shard as usize];
        shard.len -= 1;
        // Its timer may have been the shard's: the shard's is asked again.
        touch_socket(&mut self.dirty, shard, slot.shard, slot.handle);
        if slot.shard != 0 && shard.len == SHARD_SIZE - 1 {
            self.roomy.push(slot.shard);
        }
        let socket = shard.set.remove(slot.handle);
        self.memory -= buffer_bytes(&socket);
        socket
    }

    /// A socket, to use (its shard will be polled for output).
    pub fn get_mut<T: AnySocket<'static>>(&mut self, slot: Slot) -> &mut T {
        let shard = &mut self.shards[slot.shard as usize];
        touch_socket(&mut self.dirty, shard, slot.shard, slot.handle);
        shard.set.get_mut::<T>(slot.handle)
    }

    /// A socket, to look at.
    pub fn get<T: AnySocket<'static>>(&self, slot: Slot) -> &T {
        self.shards[slot.shard as usize].set.get::<T>(slot.handle)
    }

    /// Every socket, with its slot.
    pub fn iter(&self) -> impl Iterator<Item = (Slot, &Socket<'static>)> {
        self.shards.iter().enumerate().flat_map(|(i, shard)| {
            shard.set.iter().map(move |(handle, socket)| {
                (
                    Slot {
                        shard: i as u32,
                        handle,
                    },
                    socket,
                )
            })
        })
    }

    /// How many sockets there are.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.len).sum()
    }

    /// The shard that must see `frame`: the one holding the TCP connection it belongs
    /// to, or shard 0; and, for a TCP segment of a known connection, its socket (so smoltcp
    /// can hand the segment to it without asking each socket of the shard in turn). A
    /// connection that holds no buffers is given them when the segment carries data (or
    /// may: the first fragment of one).
    pub fn route(&mut self, frame: &[u8]) -> Route {
        let shard = match classify(frame) {
            Routing::Segment(key, segment) => match self.index.get(&key).copied() {
                Some(slot) => {
                    if segment.data {
                        self.provide(slot);
                    }
                    return Route {
                        shard: slot.shard as usize,
                        socket: Some(slot.handle),
                        rst: segment.rst,
                        syn: segment.syn,
                    };
                }
                None => {
                    return Route {
                        shard: 0,
                        socket: None,
                        rst: segment.rst,
                        syn: segment.syn,
                    }
                }
            },
            Routing::FirstFragment(id, key) => {
                let shard = match self.index.get(&key).copied() {
                    Some(slot) => {
                        self.provide(slot);
                        slot.shard
                    }
                    None => 0,
                };
                if self.fragments.len() >= MAX_FRAGMENTED_DATAGRAMS {
                    // smoltcp reassembles one datagram at a time; old entries are stale.
                    self.fragments.clear();
                }
                self.fragments.insert(id, shard);
                shard as usize
            }
            Routing::LaterFragment(id) => self.fragments.get(&id).map_or(0, |&s| s as usize),
            Routing::Other => 0,
        };
        Route {
            shard,
            socket: None,
            rst: false,
            syn: false,
        }
    }

    /// What the peer of the connection a frame was routed to has been told, when that
    /// connection is synchronized (see [`tcp::Socket::synchronized`]).
    pub fn synchronized(&self, route: &Route, now: Instant) -> Option<tcp::Synchronized> {
        let handle = route.socket?;
        let set = &self.shards.get(route.shard)?.set;
        set.get::<tcp::Socket>(handle).synchronized(now)
    }

    /// The socket set of the shard a frame was routed to, marked for output: the frame's
    /// socket only when the route names it (no other socket can take the segment: data
    /// shards hold one socket per 4-tuple), every socket otherwise.
    pub fn set_for_ingress(&mut self, route: &Route) -> &mut SocketSet<'static> {
        let shard = route.shard;
        let entry = &mut self.shards[shard];
        match route.socket {
            Some(handle) => touch_socket(&mut self.dirty, entry, shard as u32, handle),
            None => touch(&mut self.dirty, entry, shard as u32),
        }
        &mut entry.set
    }

    /// Lets every socket that was touched or has a timer due send, as smoltcp's
    /// `poll_egress` would for one set, and asks the timers of those sockets again.
    /// Returns true when a socket's state changed. Costs the sockets touched and due: not
    /// a walk of every shard, nor of every socket of a shard (with 10,000 connections a
    /// visit of a socket with nothing to send is a cache miss; `scripts/callgrind.sh
    /// --busy`: 159 -> 134 last-level misses per request). The timers are asked right
    /// after the sockets sent, while they are in the cache: asked before the stack sleeps
    /// instead, after the rest of the turn, they cost 26 misses per request more. The
    /// control shard's timer, which smoltcp computes over its whole set, is asked once per
    /// instant instead (see [`Shards::control_sent_at`]).
    pub fn egress<D: Device>(
        &mut self,
        iface: &mut Interface,
        now: Instant,
        device: &mut D,
    ) -> bool {
        let mut changed = false;
        self.clock = now;
        self.wake_neighbor_waiters(iface);
        if self.control_sent_at.is_some_and(|at| at < now) && !self.shards[0].dirty {
            self.retime_control(iface, now);
        }
        self.take_due(now);
        let mut dirty = std::mem::take(&mut self.dirty);
        for &i in &dirty {
            let shard = &mut self.shards[i as usize];
            let mut watched = Watched {
                inner: &mut *device,
                exhausted: false,
            };
            let pending = std::mem::take(&mut shard.pending);
            if i == CONTROL {
                while iface.poll_egress(now, &mut watched, &mut shard.set)
                    == smoltcp::iface::PollResult::SocketStateChanged
                {
                    changed = true;
                }
            } else {
                let set = &shard.set;
                self.sending.clear();
                self.sending
                    .extend(indices(pending).filter_map(|index| set.handle_at(index)));
                while iface.poll_egress_sockets(
                    now,
                    &mut watched,
                    &mut shard.set,
                    self.sending.iter().copied(),
                ) == smoltcp::iface::PollResult::SocketStateChanged
                {
                    changed = true;
                }
            }
            shard.dirty = false;
            if i == CONTROL && !watched.exhausted {
                self.control_sent_at = Some(now);
                continue;
            }
            // Asked now, while the sockets are in the cache (asked later, after the rest
            // of the turn, they are not); what the device did not take is due now, and the
            // next egress retries it even at this same instant.
            shard.retime(iface, now, i, pending);
            Self::schedule(&mut self.timers, shard, i);
            if i == CONTROL {
                self.control_sent_at = None;
            }
        }
        dirty.clear();
        // Nothing above touches a shard; keep the list's allocation.
        dirty.append(&mut self.dirty);
        self.dirty = dirty;
        changed
    }

    /// Asks the control shard's timer (see [`Shards::control_sent_at`]).
    fn retime_control(&mut self, iface: &mut Interface, now: Instant) {
        self.control_sent_at = None;
        let shard = &mut self.shards[CONTROL as usize];
        shard.retime(iface, now, CONTROL, EVERY_SOCKET);
        Self::schedule(&mut self.timers, shard, CONTROL);
    }

    /// Moves the shards whose timer is due to the dirty list.
    fn take_due(&mut self, now: Instant) {
        while let Some(&Reverse((at, i))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            let shard = &mut self.shards[i as usize];
            if shard.queued_at == Some(at) {
                shard.queued_at = None;
                shard.pending |= shard.due(i, now);
                list_dirty(&mut self.dirty, shard, i);
            }
        }
    }

    /// Queues shard `i`'s timer (`next_at`) unless its live entry says the same already;
    /// an earlier entry becomes stale.
    fn schedule(timers: &mut BinaryHeap<Reverse<(Instant, u32)>>, shard: &mut Shard, i: u32) {
        if shard.next_at != shard.queued_at {
            shard.queued_at = shard.next_at;
            if let Some(at) = shard.next_at {
                timers.push(Reverse((at, i)));
            }
        }
    }

    /// Marks the shards with a socket waiting for a neighbour for output when the
    /// interface learned one: ARP and NDP replies are processed with shard 0, and a
    /// silenced socket elsewhere would otherwise wait out smoltcp's full second.
    fn wake_neighbor_waiters(&mut self, iface: &mut Interface) {
        if iface.neighbor_learned() {
            for (i, shard) in self.shards.iter_mut().enumerate() {
                if shard.awaiting_neighbor != 0 {
                    shard.pending |= shard.awaiting_neighbor;
                    list_dirty(&mut self.dirty, shard, i as u32);
                }
            }
        }
    }

    /// The earliest time a shard needs a poll. The sockets touched since their shard's
    /// last egress are asked again (only those: an application that looks at every socket
    /// each turn must not make the loop spin, nor cost a walk of every shard); one with
    /// something to send is due at once, and its next egress lets it.
    pub fn poll_at(&mut self, iface: &mut Interface, now: Instant) -> Option<Instant> {
        self.wake_neighbor_waiters(iface);
        if self.control_sent_at.is_some() && !self.shards[0].dirty {
            self.retime_control(iface, now);
        }
        for i in self.dirty.drain(..) {
            let shard = &mut self.shards[i as usize];
            let pending = std::mem::take(&mut shard.pending);
            shard.retime(iface, now, i, pending);
            shard.dirty = false;
            Self::schedule(&mut self.timers, shard, i);
            if i == CONTROL {
                self.control_sent_at = None;
            }
        }
        // Stale entries are dropped from the top, and all of them once they outnumber the
        // shards (each shard has one live entry at most).
        if self.timers.len() > 2 * self.shards.len() + 1024 {
            let shards = &self.shards;
            self.timers
                .retain(|Reverse((at, i))| shards[*i as usize].queued_at == Some(*at));
        }
        while let Some(&Reverse((at, i))) = self.timers.peek() {
            if self.shards[i as usize].queued_at == Some(at) {
                return Some(at);
            }
            self.timers.pop();
        }
        None
    }
}

/// An IPv4 datagram being reassembled: (source, destination, identification).
type FragmentKey = (IpAddress, IpAddress, u16);

/// Datagrams whose first fragment's shard is remembered at most.
const MAX_FRAGMENTED_DATAGRAMS: usize = 64;

/// What decides a frame's shard.
enum Routing {
    /// An unfragmented TCP segment of this connection.
    Segment(Key, SegmentFlags),
    /// The first fragment of a TCP segment of this connection.
    FirstFragment(FragmentKey, Key),
    /// A later fragment of a datagram.
    LaterFragment(FragmentKey),
    /// Anything else.
    Other,
}

fn classify(frame: &[u8]) -> Routing {
    if let Some((key, flags)) = tcp_key(frame) {
        return Routing::Segment(key, flags);
    }
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        return Routing::Other;
    };
    if eth.ethertype() != EthernetProtocol::Ipv4 {
        return Routing::Other;
    }
    let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else {
        return Routing::Other;
    };
    if !ip.more_frags() && ip.frag_offset() == 0 {
        return Routing::Other;
    }
    let id = (ip.src_addr().into(), ip.dst_addr().into(), ip.ident());
    if ip.frag_offset() != 0 {
        return Routing::LaterFragment(id);
    }
    if ip.next_header() != IpProtocol::Tcp {
        return Routing::Other;
    }
    // The first fragment holds the TCP header (at least its ports).
    let payload = ip.payload();
    match (payload.get(0..2), payload.get(2..4)) {
        (Some(sp), Some(dp)) => {
            let src_port = u16::from_be_bytes([sp[0], sp[1]]);
            let dst_port = u16::from_be_bytes([dp[0], dp[1]]);
            let key = Key::new(
                ip.dst_addr().into(),
                dst_port,
                ip.src_addr().into(),
                src_port,
            );
            Routing::FirstFragment(id, key)
        }
        _ => Routing::Other,
    }
}

/// What routing needs to know of a TCP segment besides its connection.
#[derive(Debug, Clone, Copy)]
struct SegmentFlags {
    /// It carries data.
    data: bool,
    /// RST is set.
    rst: bool,
    /// SYN is set.
    syn: bool,
}

/// (local, remote) of a TCP segment in an Ethernet frame, if it is one (unfragmented),
/// and its flags.
fn tcp_key(frame: &[u8]) -> Option<(Key, SegmentFlags)> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let (src, dst, proto, payload): (IpAddress, IpAddress, IpProtocol, &[u8]) =
        match eth.ethertype() {
            EthernetProtocol::Ipv4 => {
                let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
                if ip.more_frags() || ip.frag_offset() != 0 {
                    return None;
                }
                (
                    ip.src_addr().into(),
                    ip.dst_addr().into(),
                    ip.next_header(),
                    ip.payload(),
                )
            }
            EthernetProtocol::Ipv6 => {
                let ip = Ipv6Packet::new_checked(eth.payload()).ok()?;
                (
                    ip.src_addr().into(),
                    ip.dst_addr().into(),
                    ip.next_header(),
                    ip.payload(),
                )
            }
            _ => return None,
        };
    if proto != IpProtocol::Tcp {
        return None;
    }
    let tcp = TcpPacket::new_checked(payload).ok()?;
    let key = Key::new(dst, tcp.dst_port(), src, tcp.src_port());
    let flags = SegmentFlags {
        data: !tcp.payload().is_empty(),
        rst: tcp.rst(),
        syn: tcp.syn(),
    };
    Some((key, flags))
}

/// A device whose sends are watched: `exhausted` once it had no room for a frame.
struct Watched<'a, D> {
    inner: &'a mut D,
    exhausted: bool,
}

impl<D: Device> Device for Watched<'_, D> {
    type RxToken<'b>
        = D::RxToken<'b>
    where
        Self: 'b;
    type TxToken<'b>
        = D::TxToken<'b>
    where
        Self: 'b;

    fn receive(&mut self, timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        self.inner.receive(timestamp)
    }

    fn transmit(&mut self, timestamp: Instant) -> Option<Self::TxToken<'_>> {
        let token = self.inner.transmit(timestamp);
        self.exhausted |= token.is_none();
        token
    }

    fn capabilities(&self) -> DeviceCapabilities {
        self.inner.capabilities()
    }
}

/// A device that yields one frame already read from `inner` (so it could be routed), and
/// sends through `inner`.
pub struct OneFrame<'a, D> {
    /// The frame, until smoltcp takes it.
    pub frame: Option<&'a [u8]>,
    /// What the device said about the frame.
    pub meta: phy::PacketMeta,
    /// The real device.
    pub inner: &'a mut D,
}

impl<D: Device> Device for OneFrame<'_, D> {
    type RxToken<'b>
        = FrameToken<'b>
    where
        Self: 'b;
    type TxToken<'b>
        = D::TxToken<'b>
    where
        Self: 'b;

    fn receive(&mut self, timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let frame = self.frame.take()?;
        let tx = self.inner.transmit(timestamp)?;
        Some((FrameToken(frame, self.meta), tx))
    }

    fn transmit(&mut self, timestamp: Instant) -> Option<Self::TxToken<'_>> {
        self.inner.transmit(timestamp)
    }

    fn capabilities(&self) -> DeviceCapabilities {
        self.inner.capabilities()
    }
}

/// The frame of a [`OneFrame`].
pub struct FrameToken<'a>(&'a [u8], phy::PacketMeta);

impl phy::RxToken for FrameToken<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.0)
    }

    fn meta(&self) -> phy::PacketMeta {
        self.1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shards(count: usize) -> Shards {
        let sizes = BufferSizes {
            rx_initial: 4096,
            tx_initial: 4096,
            rx_max: 1 << 20,
        };
        let mut shards = Shards::new(sizes, 1 << 20, Instant::from_millis(0));
        for _ in 1..count {
            shards.shards.push(Shard::new());
        }
        shards
    }

    fn set_timer(shards: &mut Shards, i: usize, at: Option<i64>) {
        shards.shards[i].next_at = at.map(Instant::from_millis);
        Shards::schedule(&mut shards.timers, &mut shards.shards[i], i as u32);
    }

    #[test]
    fn only_shards_whose_timer_is_due_are_taken_once_each() {
        let mut s = shards(5);
        set_timer(&mut s, 1, Some(10));
        set_timer(&mut s, 2, Some(20));
        set_timer(&mut s, 3, Some(30));
        set_timer(&mut s, 4, Some(15));
        // Shard 2's timer moved later and shard 4's went away: their entries are stale.
        set_timer(&mut s, 2, Some(40));
        set_timer(&mut s, 4, None);
        // The same time again queues nothing new.
        set_timer(&mut s, 3, Some(30));
        assert_eq!(s.timers.len(), 5);
        s.take_due(Instant::from_millis(25));
        assert_eq!(s.dirty, [1]);
        s.take_due(Instant::from_millis(35));
        assert_eq!(s.dirty, [1, 3]);
        s.take_due(Instant::from_millis(40));
        assert_eq!(s.dirty, [1, 3, 2]);
        assert!(s.timers.is_empty());
        // A shard touched again before its egress is listed once.
        let shard = &mut s.shards[3];
        touch(&mut s.dirty, shard, 3);
        assert_eq!(s.dirty, [1, 3, 2]);
    }

    #[test]
    fn a_segment_of_a_known_connection_is_routed_to_its_socket() {
        use super::super::tests::{frame_from, segment, PEER_IP, SERVER_IP, SERVER_MAC};
        use smoltcp::iface::Config;
        use smoltcp::phy::{Loopback, Medium};
        use smoltcp::wire::{IpCidr, TcpControl};
        let mut device = Loopback::new(Medium::Ethernet);
        let config = Config::new(SERVER_MAC.into());
        let mut iface = Interface::new(config, &mut device, Instant::from_millis(0));
        iface.update_ip_addrs(|addrs| {
            addrs.push(IpCidr::new(SERVER_IP.into(), 24)).unwrap();
        });
        let mut s = shards(1);
        let buffer = || tcp::SocketBuffer::new(vec![0; 1024]);
        let mut socket = tcp::Socket::new(buffer(), buffer());
        socket
            .connect(iface.context(), (PEER_IP, 40_000), (SERVER_IP, 80))
            .unwrap();
        let slot = s.add_connection(socket);
        let from_peer = |sport| frame_from(PEER_IP, &segment(sport, TcpControl::None, 1, Some(1)));

        let route = s.route(&from_peer(40_000));
        assert_eq!(route.shard, slot.shard as usize);
        assert_eq!(route.socket, Some(slot.handle));
        assert_ne!(route.shard, 0, "connections live in data shards");
        // Another connection's segment (here, another remote port) goes to shard 0, to
        // no socket in particular.
        assert_eq!(
            s.route(&from_peer(40_001)),
            Route {
                shard: 0,
                socket: None,
                rst: false,
                syn: false,
            }
        );
        // An RST is marked for the RFC 5961 checks, known connection or not.
        let rst = |sport| frame_from(PEER_IP, &segment(sport, TcpControl::Rst, 1, Some(1)));
        assert!(s.route(&rst(40_000)).rst);
        assert!(s.route(&rst(40_001)).rst);
    }

    #[test]
    fn handle_indices_of_a_mask() {
        assert_eq!(indices(0).count(), 0);
        assert_eq!(indices(0b1010_0001).collect::<Vec<_>>(), [0, 5, 7]);
        // Every socket of a data shard, and nothing past its size.
        assert_eq!(
            indices(EVERY_SOCKET).collect::<Vec<_>>(),
            (0..SHARD_SIZE).collect::<Vec<_>>()
        );
    }

    use smoltcp::phy::Loopback;

    /// An interface on a loopback device that already knows the peer's hardware address
    /// (the peer asked for ours), and the stack's shards, at `t0`.
    fn peer_known(t0: Instant) -> (Loopback, Interface, Shards) {
        use super::super::tests::{peer_arp_request, SERVER_IP, SERVER_MAC};
        use smoltcp::iface::Config;
        use smoltcp::phy::{Medium, TxToken};
        use smoltcp::wire::IpCidr;
        let mut device = Loopback::new(Medium::Ethernet);
        let mut iface = Interface::new(Config::new(SERVER_MAC.into()), &mut device, t0);
        iface.update_ip_addrs(|addrs| {
            addrs.push(IpCidr::new(SERVER_IP.into(), 24)).unwrap();
        });
        let mut s = shards(1);
        let arp = peer_arp_request();
        let tx = device.transmit(t0).unwrap();
        tx.consume(arp.len(), |buf| buf.copy_from_slice(&arp));
        let control = Route {
            shard: 0,
            socket: None,
            rst: false,
            syn: false,
        };
        iface.poll_ingress_single(t0, &mut device, s.set_for_ingress(&control));
        s.egress(&mut iface, t0, &mut device);
        while device.receive(t0).is_some() {}
        (device, iface, s)
    }

    /// A socket connecting from `port` to the peer.
    fn connecting(iface: &mut Interface, port: u16) -> tcp::Socket<'static> {
        use super::super::tests::{PEER_IP, SERVER_IP};
        let buffer = || tcp::SocketBuffer::new(vec![0; 1024]);
        let mut socket = tcp::Socket::new(buffer(), buffer());
        socket
            .connect(iface.context(), (PEER_IP, 80), (SERVER_IP, port))
            .unwrap();
        socket
    }

    /// The source ports of the SYNs sent.
    fn syns_sent(device: &mut Loopback, now: Instant) -> Vec<u16> {
        use smoltcp::phy::RxToken;
        let mut ports = Vec::new();
        while let Some((rx, _)) = device.receive(now) {
            rx.consume(|frame| {
                let eth = EthernetFrame::new_checked(frame).unwrap();
                let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
                let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
                assert!(tcp.syn());
                ports.push(tcp.src_port());
            });
        }
        ports
    }

    #[test]
    fn each_socket_keeps_its_timer_and_only_the_due_one_is_sent() {
        let t0 = Instant::from_millis(10_000);
        let (mut device, mut iface, mut s) = peer_known(t0);
        let a = s.add_connection(connecting(&mut iface, 40_001));
        s.egress(&mut iface, t0, &mut device);
        assert_eq!(syns_sent(&mut device, t0), [40_001]);
        let t1 = t0 + smoltcp::time::Duration::from_millis(300);
        let b = s.add_connection(connecting(&mut iface, 40_002));
        assert_eq!(a.shard, b.shard);
        s.egress(&mut iface, t1, &mut device);
        assert_eq!(syns_sent(&mut device, t1), [40_002]);

        // The shard's timer is its earliest socket's: the first SYN's retransmission,
        // which goes out alone.
        let a_due = s.poll_at(&mut iface, t1).unwrap();
        assert!(a_due > t1);
        s.egress(&mut iface, a_due, &mut device);
        assert_eq!(syns_sent(&mut device, a_due), [40_001]);
        // Then the second's, as much later as it was sent later.
        let b_due = s.poll_at(&mut iface, a_due).unwrap();
        assert_eq!(b_due - a_due, t1 - t0);
        s.egress(&mut iface, b_due, &mut device);
        assert_eq!(syns_sent(&mut device, b_due), [40_002]);
    }

    #[test]
    fn the_control_shards_timer_is_asked_once_per_instant() {
        let t0 = Instant::from_millis(10_000);
        let (mut device, mut iface, mut s) = peer_known(t0);
        s.add_control(connecting(&mut iface, 40_003));
        s.egress(&mut iface, t0, &mut device);
        assert_eq!(syns_sent(&mut device, t0), [40_003]);
        // Not asked after the egress (smoltcp would ask every socket of the set) ...
        assert_eq!(s.control_sent_at, Some(t0));
        // ... but before the stack sleeps: the SYN's retransmission.
        let due = s.poll_at(&mut iface, t0).unwrap();
        assert!(due > t0);
        assert_eq!(s.control_sent_at, None);
        // A driver that does not ask before sleeping: the next egress, at a later instant,
        // asks it, and the retransmission is not missed.
        s.add_control(connecting(&mut iface, 40_004));
        s.egress(&mut iface, t0, &mut device);
        assert_eq!(syns_sent(&mut device, t0), [40_004]);
        let later = t0 + smoltcp::time::Duration::from_millis(1);
        s.egress(&mut iface, later, &mut device);
        assert_eq!(s.control_sent_at, None);
        assert_eq!(s.shards[0].next_at, Some(due));
        // Both SYNs left at t0: both are retransmitted then.
        s.egress(&mut iface, due, &mut device);
        assert_eq!(syns_sent(&mut device, due), [40_003, 40_004]);
    }
}
