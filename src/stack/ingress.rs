//! The stack's view of the device: counts every frame, drops malformed ones with a reason,
//! and holds back SYNs to a listening port whose backlog is full.
//!
//! It also checks the sequence number of every RST (RFC 5961, section 3.2): smoltcp closes
//! a connection on any RST whose sequence number falls inside the receive window, so a
//! blind attacker who guesses within the window could reset it. An RST is taken only when
//! its sequence number is exactly the receiver's next expected one (RCV.NXT, or the
//! acknowledgement number of the last segment we sent, which is behind it while an ACK is
//! delayed). A real peer's RST either carries that number (the RFC 793 reply to our
//! segment: SEQ = SEG.ACK) or is repeated with it when our next segment reaches a peer that
//! no longer knows the connection.
//!
//! An RST whose sequence number is wrong but inside the receive window, and a SYN on a
//! synchronized connection, get a challenge ACK (RFC 5961 sections 3.2 and 4.2): an ACK
//! carrying our current sequence and acknowledgement numbers, so a peer that really lost the
//! connection answers with an exact RST, and a blind attacker learns nothing. Challenge ACKs
//! are limited stack-wide to [`CHALLENGE_ACKS_PER_SECOND`] (Linux's default), so they
//! cannot be turned into a flood.
//!
//! The numbers come from the connection's socket (the stack looks them up when it routes
//! an RST or SYN to the socket, see [`Tally::set_synchronized`]); for a handshake in
//! progress, whose socket the routing index does not know, from the SYN-ACK the stack sent
//! (the only segment it sends then), remembered here until the handshake ends.
//!
//! smoltcp drops bad frames silently; wrapping the device lets us count them and keep
//! the decision in one place. A dropped frame is handed to smoltcp as an empty buffer,
//! which it discards without further work.

use std::cell::{Cell, RefCell};

use smoltcp::phy::{self, DeviceCapabilities};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{ArpPacket, Icmpv4Packet, Icmpv6Packet};
use smoltcp::wire::{
    EthernetFrame, EthernetProtocol, IpAddress, IpProtocol, Ipv4Packet, Ipv6Packet, TcpPacket,
    UdpPacket,
};
use smoltcp::wire::{TcpControl, TcpRepr, TcpSeqNumber, TcpTimestampRepr};

use super::reply::Segment;
use super::StackStats;

/// Most challenge ACKs the stack sends per second (Linux's `tcp_challenge_ack_limit`).
pub const CHALLENGE_ACKS_PER_SECOND: u32 = 1000;

/// What the stack should do with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Hand the frame to smoltcp.
    Pass,
    /// The frame is a TCP SYN (without ACK) to this local port.
    Syn(u16),
    /// Too short or inconsistent headers.
    Malformed,
    /// A header or payload checksum does not match.
    BadChecksum,
}

/// Classifies an Ethernet frame. Checks lengths and every checksum the stack relies on.
/// Fragments pass through: smoltcp reassembles them and checks the whole datagram.
pub fn inspect(frame: &[u8]) -> Verdict {
    inspect_with(frame, false)
}

/// [`inspect`], skipping the TCP and UDP checksums when `checksum_valid` (the device
/// verified them or vouches for them: see [`crate::device::vnet`]).
pub fn inspect_with(frame: &[u8], checksum_valid: bool) -> Verdict {
    examine(frame, checksum_valid).0
}

/// [`inspect_with`], and whether the frame is a TCP segment with RST set (unfragmented
/// IPv4, or IPv6 without extension headers): the RFC 5961 check then looks at it, without
/// parsing every frame's headers a second time to find out.
fn examine(frame: &[u8], checksum_valid: bool) -> (Verdict, bool) {
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        return (Verdict::Malformed, false);
    };
    let check = !checksum_valid;
    match eth.ethertype() {
        EthernetProtocol::Ipv4 => inspect_ipv4(eth.payload(), check),
        EthernetProtocol::Ipv6 => inspect_ipv6(eth.payload(), check),
        EthernetProtocol::Arp => match ArpPacket::new_checked(eth.payload()) {
            Ok(_) => (Verdict::Pass, false),
            Err(_) => (Verdict::Malformed, false),
        },
        // Other ethertypes are ignored by smoltcp; nothing to protect.
        _ => (Verdict::Pass, false),
    }
}

fn inspect_ipv4(packet: &[u8], check: bool) -> (Verdict, bool) {
    let Ok(ip) = Ipv4Packet::new_checked(packet) else {
        return (Verdict::Malformed, false);
    };
    if !ip.verify_checksum() {
        return (Verdict::BadChecksum, false);
    }
    if ip.more_frags() || ip.frag_offset() != 0 {
        return (Verdict::Pass, false);
    }
    let (src, dst) = (
        IpAddress::Ipv4(ip.src_addr()),
        IpAddress::Ipv4(ip.dst_addr()),
    );
    let payload = ip.payload();
    let verdict = match ip.next_header() {
        IpProtocol::Tcp => return inspect_tcp(payload, src, dst, check),
        IpProtocol::Udp => inspect_udp(payload, src, dst, check),
        IpProtocol::Icmp => match Icmpv4Packet::new_checked(payload) {
            Ok(icmp) if icmp.verify_checksum() => Verdict::Pass,
            Ok(_) => Verdict::BadChecksum,
            Err(_) => Verdict::Malformed,
        },
        _ => Verdict::Pass,
    };
    (verdict, false)
}

fn inspect_ipv6(packet: &[u8], check: bool) -> (Verdict, bool) {
    let Ok(ip) = Ipv6Packet::new_checked(packet) else {
        return (Verdict::Malformed, false);
    };
    let (src6, dst6) = (ip.src_addr(), ip.dst_addr());
    let (src, dst) = (IpAddress::Ipv6(src6), IpAddress::Ipv6(dst6));
    let payload = ip.payload();
    let verdict = match ip.next_header() {
        IpProtocol::Tcp => return inspect_tcp(payload, src, dst, check),
        IpProtocol::Udp => inspect_udp(payload, src, dst, check),
        IpProtocol::Icmpv6 => match Icmpv6Packet::new_checked(payload) {
            Ok(icmp) if icmp.verify_checksum(&src6, &dst6) => Verdict::Pass,
            Ok(_) => Verdict::BadChecksum,
            Err(_) => Verdict::Malformed,
        },
        // Extension headers: smoltcp parses them and checks the upper layer itself.
        _ => Verdict::Pass,
    };
    (verdict, false)
}

/// The verdict on a TCP segment, and whether it has RST set.
fn inspect_tcp(segment: &[u8], src: IpAddress, dst: IpAddress, check: bool) -> (Verdict, bool) {
    let Ok(tcp) = TcpPacket::new_checked(segment) else {
        return (Verdict::Malformed, false);
    };
    if check && !tcp.verify_checksum(&src, &dst) {
        return (Verdict::BadChecksum, false);
    }
    if tcp.syn() && !tcp.ack() && !tcp.rst() {
        (Verdict::Syn(tcp.dst_port()), false)
    } else {
        (Verdict::Pass, tcp.rst())
    }
}

fn inspect_udp(datagram: &[u8], src: IpAddress, dst: IpAddress, check: bool) -> Verdict {
    match UdpPacket::new_checked(datagram) {
        Ok(udp) if !check || udp.verify_checksum(&src, &dst) => Verdict::Pass,
        Ok(_) => Verdict::BadChecksum,
        Err(_) => Verdict::Malformed,
    }
}

/// Answers whether a SYN to a port must be held back (its listener has no free socket).
pub trait SynGate {
    /// True when the port has a listener whose backlog is full.
    fn is_full(&self, port: u16) -> bool;
}

/// Frame counters shared by the tokens of one poll (tokens come in pairs, so they count
/// through cells rather than exclusive references).
#[derive(Debug, Default)]
pub struct Tally {
    rx_frames: Cell<u64>,
    rx_bytes: Cell<u64>,
    tx_frames: Cell<u64>,
    tx_bytes: Cell<u64>,
    rx_malformed: Cell<u64>,
    rx_bad_checksum: Cell<u64>,
    syn_dropped: Cell<u64>,
    syn_port: Cell<Option<u16>>,
    rst_dropped: Cell<u64>,
    challenge_acks: Cell<u64>,
    /// The SYN-ACKs sent on handshakes in progress (see the module's documentation).
    handshakes: RefCell<super::key::ConnMap<TcpKey, Told>>,
    /// What the connection of the frame being received has told its peer, when it is
    /// synchronized (set by the stack before it hands the frame over).
    synchronized: Cell<Option<Told>>,
    /// The time of the current poll, in microseconds.
    now: Cell<i64>,
    /// When the current second of challenge ACKs began (microseconds), and how many are
    /// left in it.
    challenge_budget: Cell<Option<(i64, u32)>>,
    /// Frames the ingress wants sent (challenge ACKs), taken by the stack after each frame.
    replies: RefCell<Vec<Vec<u8>>>,
}

/// What the stack has told the peer of a connection, as far as the RFC 5961 checks and a
/// challenge ACK need it (sequence numbers as on the wire).
#[derive(Debug, Clone, Copy)]
struct Told {
    /// RCV.NXT: an RST with this sequence number is exact.
    rcv_nxt: u32,
    /// The acknowledgement number of the last segment sent: exact too, and the receive
    /// window's left edge as the peer knows it.
    last_ack: u32,
    /// The receive window's right edge.
    window_end: u32,
    /// SND.NXT.
    snd_nxt: u32,
    /// The window field of an ACK sent now.
    window_field: u16,
    /// The timestamp option of an ACK sent now.
    timestamp: Option<TcpTimestampRepr>,
}

impl From<tcp::Synchronized> for Told {
    fn from(sync: tcp::Synchronized) -> Self {
        Told {
            rcv_nxt: sync.rcv_nxt.0 as u32,
            last_ack: sync.last_ack.0 as u32,
            window_end: sync.window_end.0 as u32,
            snd_nxt: sync.snd_nxt.0 as u32,
            window_field: sync.window_field,
            timestamp: sync.timestamp,
        }
    }
}

/// A TCP connection as seen from the stack (see [`super::key`]).
pub type TcpKey = super::key::ConnKey;

/// Most handshakes whose SYN-ACK is remembered; past this the table is cleared (RSTs on
/// the handshakes forgotten then go unchecked until their SYN-ACK is sent again). The
/// stack prunes it to the live handshakes long before (see [`Tally::prune_handshakes`]).
const MAX_HANDSHAKES: usize = 1 << 17;

fn bump(cell: &Cell<u64>, by: u64) {
    cell.set(cell.get().wrapping_add(by));
}

impl Tally {
    /// Copies the counters into `stats`.
    pub fn fill(&self, stats: &mut StackStats) {
        stats.rx_frames = self.rx_frames.get();
        stats.rx_bytes = self.rx_bytes.get();
        stats.tx_frames = self.tx_frames.get();
        stats.tx_bytes = self.tx_bytes.get();
        stats.rx_malformed = self.rx_malformed.get();
        stats.rx_bad_checksum = self.rx_bad_checksum.get();
        stats.syn_dropped = self.syn_dropped.get();
        stats.rst_dropped = self.rst_dropped.get();
        stats.challenge_acks = self.challenge_acks.get();
    }

    /// Says what the synchronized connection of the frame about to be received has told its
    /// peer (`None`: the frame belongs to no synchronized connection the stack knows, or is
    /// neither an RST nor a SYN, which the checks do not look at).
    pub fn set_synchronized(&self, synchronized: Option<tcp::Synchronized>) {
        self.synchronized.set(synchronized.map(Told::from));
    }

    /// Takes the frames the ingress wants sent.
    pub fn take_replies(&self) -> Vec<Vec<u8>> {
        std::mem::take(&mut *self.replies.borrow_mut())
    }

    /// Queues a frame the stack wants sent (see [`Tally::take_replies`]).
    pub fn push_reply(&self, frame: Vec<u8>) {
        self.replies.borrow_mut().push(frame);
    }

    /// Counts a frame the stack consumed without handing it to smoltcp.
    pub fn count_received(&self, len: usize) {
        bump(&self.rx_frames, 1);
        bump(&self.rx_bytes, len as u64);
    }

    /// Counts a frame the stack sent outside smoltcp.
    pub fn count_sent(&self, len: usize) {
        bump(&self.tx_frames, 1);
        bump(&self.tx_bytes, len as u64);
    }

    /// How many handshakes have a remembered SYN-ACK.
    pub fn handshakes(&self) -> usize {
        self.handshakes.borrow().len()
    }

    /// True when the stack sent the SYN-ACK of the handshake `key`.
    pub fn has_sent(&self, key: &TcpKey) -> bool {
        self.handshakes.borrow().contains_key(key)
    }

    /// Forgets the handshake `key` (it completed or was given up).
    pub fn forget(&self, key: &TcpKey) {
        self.handshakes.borrow_mut().remove(key);
    }

    /// Forgets the handshakes for which `live` is false.
    pub fn prune_handshakes(&self, live: impl Fn(&TcpKey) -> bool) {
        self.handshakes.borrow_mut().retain(|key, _| live(key));
    }

    /// Remembers a SYN-ACK the stack sends; forgets the handshake when the segment is an
    /// RST. Other segments cost a look at their flags.
    fn note_sent(&self, frame: &[u8]) {
        let Some((src, dst, segment)) = tcp_in_frame(frame) else {
            return;
        };
        let Ok(tcp) = TcpPacket::new_checked(segment) else {
            return;
        };
        let syn_ack = tcp.syn() && tcp.ack();
        if !(syn_ack || tcp.rst()) {
            return;
        }
        let Some((key, info)) = segment_info(segment, src, dst, false) else {
            return;
        };
        let mut map = self.handshakes.borrow_mut();
        if info.rst {
            map.remove(&key);
            return;
        }
        let Some(ack) = info.ack else {
            return;
        };
        if map.len() >= MAX_HANDSHAKES && !map.contains_key(&key) {
            map.clear();
        }
        // A SYN's window field is not scaled; an ACK answering for the handshake carries
        // it scaled by the shift the SYN-ACK announced.
        let shift = info.window_scale.unwrap_or(0).min(14);
        map.insert(
            key,
            Told {
                rcv_nxt: ack,
                last_ack: ack,
                window_end: ack.wrapping_add(u32::from(info.window)),
                snd_nxt: info.seq.wrapping_add(info.seq_len),
                window_field: info.window >> shift,
                timestamp: info.timestamp,
            },
        );
    }

    /// What RFC 5961 asks of a received RST that passed inspection.
    fn check_rst(&self, frame: &[u8]) -> RstCheck {
        let Some((key, tcp)) = tcp_segment(frame, true) else {
            return RstCheck::Pass;
        };
        if !tcp.rst {
            return RstCheck::Pass;
        }
        let told = match self.synchronized.get() {
            Some(told) => told,
            None => match self.handshakes.borrow().get(&key) {
                Some(told) => *told,
                None => return RstCheck::Pass,
            },
        };
        if tcp.seq == told.rcv_nxt || tcp.seq == told.last_ack {
            return RstCheck::Pass;
        }
        let window = told.window_end.wrapping_sub(told.last_ack);
        if tcp.seq.wrapping_sub(told.last_ack) < window {
            RstCheck::Challenge(told)
        } else {
            RstCheck::Drop
        }
    }

    /// Queues a challenge ACK answering `frame`, within the stack-wide limit.
    fn challenge(&self, frame: &[u8], told: Told) {
        let now = self.now.get();
        let (since, left) = match self.challenge_budget.get() {
            Some((since, left)) if now - since < 1_000_000 => (since, left),
            _ => (now, CHALLENGE_ACKS_PER_SECOND),
        };
        if left == 0 {
            return;
        }
        let Some(segment) = Segment::parse(frame) else {
            return;
        };
        self.challenge_budget.set(Some((since, left - 1)));
        let ack = TcpRepr {
            src_port: segment.tcp.dst_port,
            dst_port: segment.tcp.src_port,
            control: TcpControl::None,
            seq_number: TcpSeqNumber(told.snd_nxt as i32),
            ack_number: Some(TcpSeqNumber(told.rcv_nxt as i32)),
            window_len: told.window_field,
            window_scale: None,
            max_seg_size: None,
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamp: told.timestamp,
            payload: &[],
        };
        self.replies.borrow_mut().push(segment.reply(&ack));
        bump(&self.challenge_acks, 1);
    }

    /// The port of the last SYN passed to a listener since the previous call, if any.
    pub fn take_syn_port(&self) -> Option<u16> {
        self.syn_port.take()
    }
}

/// What RFC 5961 asks of a received segment.
enum RstCheck {
    /// Not an RST, an exact one, or one on a connection we never sent on.
    Pass,
    /// An RST in the window but not exact: drop it, answer with a challenge ACK.
    Challenge(Told),
    /// An RST outside the window: drop it silently.
    Drop,
}

/// The fields of a TCP segment the RFC 5961 checks need.
struct SegmentInfo {
    seq: u32,
    /// Sequence space it takes (payload, SYN and FIN).
    seq_len: u32,
    ack: Option<u32>,
    rst: bool,
    window: u16,
    /// The window scale option (SYN segments only).
    window_scale: Option<u8>,
    timestamp: Option<TcpTimestampRepr>,
}

/// The connection and header fields of a TCP segment in an Ethernet frame (unfragmented
/// IPv4 or IPv6 without extension headers); `incoming` says which end is local.
fn tcp_segment(frame: &[u8], incoming: bool) -> Option<(TcpKey, SegmentInfo)> {
    let (src, dst, segment) = tcp_in_frame(frame)?;
    segment_info(segment, src, dst, incoming)
}

/// Source, destination and TCP segment of an Ethernet frame carrying one (unfragmented
/// IPv4 or IPv6 without extension headers).
fn tcp_in_frame(frame: &[u8]) -> Option<(IpAddress, IpAddress, &[u8])> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    match eth.ethertype() {
        EthernetProtocol::Ipv4 => {
            let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
            if ip.next_header() != IpProtocol::Tcp || ip.more_frags() || ip.frag_offset() != 0 {
                return None;
            }
            Some((ip.src_addr().into(), ip.dst_addr().into(), ip.payload()))
        }
        EthernetProtocol::Ipv6 => {
            let ip = Ipv6Packet::new_checked(eth.payload()).ok()?;
            if ip.next_header() != IpProtocol::Tcp {
                return None;
            }
            Some((ip.src_addr().into(), ip.dst_addr().into(), ip.payload()))
        }
        _ => None,
    }
}

fn segment_info(
    segment: &[u8],
    src: IpAddress,
    dst: IpAddress,
    incoming: bool,
) -> Option<(TcpKey, SegmentInfo)> {
    let tcp = TcpPacket::new_checked(segment).ok()?;
    let key = if incoming {
        TcpKey::new(dst, tcp.dst_port(), src, tcp.src_port())
    } else {
        TcpKey::new(src, tcp.src_port(), dst, tcp.dst_port())
    };
    let (window_scale, timestamp) = scan_options(tcp.options());
    let info = SegmentInfo {
        seq: tcp.seq_number().0 as u32,
        seq_len: (tcp.payload().len() + usize::from(tcp.syn()) + usize::from(tcp.fin())) as u32,
        ack: tcp.ack().then(|| tcp.ack_number().0 as u32),
        rst: tcp.rst(),
        window: tcp.window_len(),
        window_scale,
        timestamp,
    };
    Some((key, info))
}

/// The window scale and timestamp options of a TCP header's options, read as smoltcp's
/// `TcpOption::parse` would (the scan stops where it finds an option malformed). By hand
/// because this runs for every frame sent, and the parser decodes every option into its
/// enum (SACK blocks included) to find these two.
fn scan_options(mut options: &[u8]) -> (Option<u8>, Option<TcpTimestampRepr>) {
    let (mut window_scale, mut timestamp) = (None, None);
    while let Some(&kind) = options.first() {
        match kind {
            // End of the list.
            0 => break,
            // No-operation (padding).
            1 => {
                options = &options[1..];
                continue;
            }
            _ => {}
        }
        let Some(len) = options.get(1).map(|&len| usize::from(len)) else {
            break;
        };
        let well_formed = match kind {
            2 => len == 4,
            3 => len == 3,
            4 => len == 2,
            5 => len >= 10 && (len - 2) % 8 == 0,
            _ => len >= 2,
        };
        let Some(data) = options.get(2..len).filter(|_| well_formed) else {
            break;
        };
        match (kind, data) {
            (3, &[shift]) => window_scale = Some(shift),
            (8, &[a, b, c, d, e, f, g, h]) => {
                timestamp = Some(TcpTimestampRepr::new(
                    u32::from_be_bytes([a, b, c, d]),
                    u32::from_be_bytes([e, f, g, h]),
                ))
            }
            _ => {}
        }
        options = &options[len..];
    }
    (window_scale, timestamp)
}

/// The device as the stack sees it: the real device plus inspection and counting.
pub struct Ingress<'a, D, G> {
    /// The wrapped device.
    pub inner: &'a mut D,
    /// Counters to update.
    pub tally: &'a Tally,
    /// Which listening ports are full.
    pub gate: &'a G,
}

impl<D: phy::Device, G: SynGate> phy::Device for Ingress<'_, D, G> {
    type RxToken<'b>
        = RxToken<'b, D::RxToken<'b>, G>
    where
        Self: 'b;
    type TxToken<'b>
        = TxToken<'b, D::TxToken<'b>>
    where
        Self: 'b;

    fn receive(&mut self, timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        self.tally.now.set(timestamp.total_micros());
        let (rx, tx) = self.inner.receive(timestamp)?;
        Some((
            RxToken {
                inner: rx,
                gate: self.gate,
                tally: self.tally,
            },
            TxToken {
                inner: tx,
                tally: self.tally,
            },
        ))
    }

    fn transmit(&mut self, timestamp: Instant) -> Option<Self::TxToken<'_>> {
        let tx = self.inner.transmit(timestamp)?;
        Some(TxToken {
            inner: tx,
            tally: self.tally,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        self.inner.capabilities()
    }
}

/// A received frame, inspected when the stack consumes it.
pub struct RxToken<'a, T, G> {
    inner: T,
    gate: &'a G,
    tally: &'a Tally,
}

impl<T: phy::RxToken, G: SynGate> phy::RxToken for RxToken<'_, T, G> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        let (gate, tally) = (self.gate, self.tally);
        let checksum_valid = self.inner.meta().checksum_valid;
        self.inner.consume(|frame| {
            bump(&tally.rx_frames, 1);
            bump(&tally.rx_bytes, frame.len() as u64);
            let (verdict, rst) = examine(frame, checksum_valid);
            if let Verdict::Syn(_) = verdict {
                if let Some(told) = tally.synchronized.get() {
                    // RFC 5961 4.2: a SYN on a synchronized connection.
                    tally.challenge(frame, told);
                    return f(&[]);
                }
            }
            match verdict {
                Verdict::Pass if !rst => f(frame),
                Verdict::Pass => match tally.check_rst(frame) {
                    RstCheck::Pass => f(frame),
                    RstCheck::Challenge(told) => {
                        bump(&tally.rst_dropped, 1);
                        tally.challenge(frame, told);
                        f(&[])
                    }
                    RstCheck::Drop => {
                        bump(&tally.rst_dropped, 1);
                        f(&[])
                    }
                },
                Verdict::Syn(port) if gate.is_full(port) => {
                    bump(&tally.syn_dropped, 1);
                    f(&[])
                }
                Verdict::Syn(port) => {
                    tally.syn_port.set(Some(port));
                    f(frame)
                }
                Verdict::Malformed => {
                    bump(&tally.rx_malformed, 1);
                    f(&[])
                }
                Verdict::BadChecksum => {
                    bump(&tally.rx_bad_checksum, 1);
                    f(&[])
                }
            }
        })
    }

    fn meta(&self) -> phy::PacketMeta {
        self.inner.meta()
    }
}

/// Room for a frame to send, counted when sent.
pub struct TxToken<'a, T> {
    inner: T,
    tally: &'a Tally,
}

impl<T: phy::TxToken> phy::TxToken for TxToken<'_, T> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        bump(&self.tally.tx_frames, 1);
        bump(&self.tally.tx_bytes, len as u64);
        let tally = self.tally;
        self.inner.consume(len, |buf| {
            let r = f(buf);
            tally.note_sent(buf);
            r
        })
    }

    fn set_meta(&mut self, meta: phy::PacketMeta) {
        self.inner.set_meta(meta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::wire::TcpOption;

    /// What smoltcp's option parser finds, the way the scan used to ask it.
    fn parsed_options(mut options: &[u8]) -> (Option<u8>, Option<TcpTimestampRepr>) {
        let (mut window_scale, mut timestamp) = (None, None);
        while !options.is_empty() {
            let Ok((rest, option)) = TcpOption::parse(options) else {
                break;
            };
            match option {
                TcpOption::EndOfList => break,
                TcpOption::WindowScale(shift) => window_scale = Some(shift),
                TcpOption::TimeStamp { tsval, tsecr } => {
                    timestamp = Some(TcpTimestampRepr::new(tsval, tsecr))
                }
                _ => {}
            }
            options = rest;
        }
        (window_scale, timestamp)
    }

    #[test]
    fn option_scan_reads_what_smoltcp_parses() {
        // Real option lists: a SYN's, an established segment's, one with SACK blocks.
        let syn = [
            2, 4, 5, 180, 4, 2, 8, 10, 0, 0, 0, 7, 0, 0, 0, 0, 1, 3, 3, 7,
        ];
        assert_eq!(
            scan_options(&syn),
            (Some(7), Some(TcpTimestampRepr::new(7, 0)))
        );
        let data = [1, 1, 8, 10, 1, 2, 3, 4, 5, 6, 7, 8];
        assert_eq!(
            scan_options(&data),
            (None, Some(TcpTimestampRepr::new(0x0102_0304, 0x0506_0708)))
        );
        let mut sack = vec![1, 1, 5, 18];
        sack.extend_from_slice(&[9; 16]);
        sack.extend_from_slice(&[3, 3, 2]);
        assert_eq!(scan_options(&sack), (Some(2), None));
        // Random bytes, biased to option kinds and lengths, malformed ones included.
        let mut rng = fastrand::Rng::with_seed(5961);
        for _ in 0..200_000 {
            let len = rng.usize(0..=40);
            let options: Vec<u8> = (0..len)
                .map(|_| match rng.u8(0..4) {
                    0 => rng.u8(0..=9),
                    1 => rng.u8(0..=20),
                    _ => rng.u8(..),
                })
                .collect();
            assert_eq!(
                scan_options(&options),
                parsed_options(&options),
                "{options:?}"
            );
        }
    }

    #[test]
    fn garbage_is_malformed() {
        assert_eq!(inspect(&[]), Verdict::Malformed);
        assert_eq!(inspect(&[0xff; 5]), Verdict::Malformed);
        // An IPv4 ethertype with a truncated header.
        let mut frame = vec![0u8; 20];
        frame[12] = 0x08;
        assert_eq!(inspect(&frame), Verdict::Malformed);
    }
}
