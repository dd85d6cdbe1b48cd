//! Arbitrary TCP segments into one smoltcp TCP socket, driven through an `Interface` on a
//! virtual clock, in every state.
//!
//! The first input byte picks the state the socket is brought to with a scripted peer
//! (LISTEN, SYN-SENT, SYN-RECEIVED, ESTABLISHED with or without data in flight, FIN-WAIT-1/2,
//! CLOSING, TIME-WAIT, CLOSE-WAIT, LAST-ACK) and its buffer sizes; the rest is a list of
//! steps: a segment from the peer (sequence and acknowledgment numbers near the ones the
//! socket expects, any flags and window, any options: MSS, window scale, SACK-permitted,
//! SACK blocks, timestamps, and malformed bytes), the clock moving on, or the application
//! sending, reading or closing. The invariant is that nothing panics and the socket's queues
//! stay within their buffers.

use std::collections::VecDeque;

use tapir::smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use tapir::smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use tapir::smoltcp::socket::tcp;
use tapir::smoltcp::time::{Duration, Instant};
use tapir::smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, HardwareAddress, IpAddress, IpCidr, IpProtocol, Ipv4Address, Ipv4Packet,
    Ipv4Repr, TcpPacket,
};

const LOCAL_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 1]);
const PEER_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 2]);
const LOCAL_IP: Ipv4Address = Ipv4Address::new(10, 0, 0, 1);
const PEER_IP: Ipv4Address = Ipv4Address::new(10, 0, 0, 2);
const LOCAL_PORT: u16 = 80;
const PEER_PORT: u16 = 4000;
/// The peer's initial sequence number.
const PEER_ISS: u32 = 0x1000_0000;

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;

/// Frames in, frames out.
#[derive(Default)]
struct Queue {
    rx: VecDeque<Vec<u8>>,
    tx: Vec<Vec<u8>>,
}

struct RxToken(Vec<u8>);
struct TxToken<'a>(&'a mut Vec<Vec<u8>>);

impl phy::RxToken for RxToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0; len];
        let r = f(&mut frame);
        self.0.push(frame);
        r
    }
}

impl Device for Queue {
    type RxToken<'a> = RxToken;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _: Instant) -> Option<(RxToken, TxToken<'_>)> {
        let frame = self.rx.pop_front()?;
        Some((RxToken(frame), TxToken(&mut self.tx)))
    }

    fn transmit(&mut self, _: Instant) -> Option<TxToken<'_>> {
        Some(TxToken(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = 1514;
        caps
    }
}

/// Reads the input a byte or a word at a time; zeros once it runs out.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    fn bytes(&mut self, n: usize) -> &[u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The socket, its interface, and what the peer knows of the connection.
struct Harness {
    iface: Interface,
    device: Queue,
    sockets: SocketSet<'static>,
    handle: SocketHandle,
    now: Instant,
    /// The peer's next sequence number.
    peer_nxt: u32,
    /// The highest sequence number (plus length) the socket has sent.
    local_nxt: u32,
    /// The socket's latest timestamp value, echoed by the peer.
    local_tsval: u32,
    buf: Vec<u8>,
}

impl Harness {
    fn new(rx_size: usize, tx_size: usize, seed: u64) -> Self {
        let mut device = Queue::default();
        let mut config = Config::new(HardwareAddress::Ethernet(LOCAL_MAC));
        config.random_seed = seed;
        let now = Instant::from_secs(1000);
        let mut iface = Interface::new(config, &mut device, now);
        iface.update_ip_addrs(|addrs| {
            let _ = addrs.push(IpCidr::new(IpAddress::Ipv4(LOCAL_IP), 24));
        });
        let socket = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; rx_size]),
            tcp::SocketBuffer::new(vec![0; tx_size]),
        );
        let mut sockets = SocketSet::new(Vec::new());
        let handle = sockets.add(socket);
        let mut h = Harness {
            iface,
            device,
            sockets,
            handle,
            now,
            peer_nxt: PEER_ISS,
            local_nxt: 0,
            local_tsval: 0,
            buf: vec![0; 65536],
        };
        // An ARP request from the peer fills the neighbour cache, so segments go out.
        h.device.rx.push_back(arp_request());
        h.poll();
        h
    }

    fn socket(&mut self) -> &mut tcp::Socket<'static> {
        self.sockets.get_mut::<tcp::Socket>(self.handle)
    }

    /// Polls the interface and learns the socket's numbers from what it sent.
    fn poll(&mut self) {
        self.iface
            .poll(self.now, &mut self.device, &mut self.sockets);
        for frame in self.device.tx.drain(..) {
            let Some((flags, seq, len, tsval)) = parse_tcp(&frame) else {
                continue;
            };
            let end = seq
                .wrapping_add(len as u32)
                .wrapping_add(u32::from(flags & (SYN | FIN) != 0));
            if self.local_nxt == 0 || (end.wrapping_sub(self.local_nxt) as i32) > 0 {
                self.local_nxt = end;
            }
            if let Some(tsval) = tsval {
                self.local_tsval = tsval;
            }
        }
        let socket = self.sockets.get_mut::<tcp::Socket>(self.handle);
        assert!(socket.send_queue() <= socket.send_capacity());
        assert!(socket.recv_queue() <= socket.recv_capacity());
    }

    fn advance(&mut self, millis: u64) {
        self.now += Duration::from_millis(millis);
        self.poll();
    }

    /// A segment from the peer with the numbers the socket expects.
    fn send(&mut self, flags: u8, payload: &[u8]) {
        let options = self.timestamp_option();
        let frame = segment(
            flags,
            self.peer_nxt,
            self.local_nxt,
            65535,
            &options,
            payload,
        );
        self.peer_nxt = self
            .peer_nxt
            .wrapping_add(payload.len() as u32)
            .wrapping_add(u32::from(flags & (SYN | FIN) != 0));
        self.device.rx.push_back(frame);
        self.poll();
    }

    fn timestamp_option(&self) -> Vec<u8> {
        let mut o = vec![1, 1, 8, 10];
        o.extend_from_slice(&(self.now.total_millis() as u32).to_be_bytes());
        o.extend_from_slice(&self.local_tsval.to_be_bytes());
        o
    }

    /// Brings the socket to the state `pick` names, with a scripted peer.
    fn reach(&mut self, pick: u8) {
        let remote = (IpAddress::Ipv4(PEER_IP), PEER_PORT);
        let syn_options = {
            // MSS 1460, SACK-permitted, timestamps, window scale 7.
            let mut o = vec![2, 4, 0x05, 0xb4, 4, 2];
            o.extend_from_slice(&self.timestamp_option());
            o.extend_from_slice(&[1, 3, 3, 7]);
            o
        };
        let scenario = pick % 12;
        if scenario == 0 {
            self.socket().listen(LOCAL_PORT).expect("listen");
            self.poll();
            return;
        }
        let passive = pick & 0x10 != 0;
        if passive {
            self.socket().listen(LOCAL_PORT).expect("listen");
            self.poll();
            let syn = segment(SYN, self.peer_nxt, 0, 65535, &syn_options, &[]);
            self.peer_nxt = self.peer_nxt.wrapping_add(1);
            self.device.rx.push_back(syn);
            self.poll();
            if scenario == 1 {
                return; // SYN-RECEIVED
            }
            self.send(ACK, &[]);
        } else {
            let cx = self.iface.context();
            let socket = self.sockets.get_mut::<tcp::Socket>(self.handle);
            socket.connect(cx, remote, LOCAL_PORT).expect("connect");
            self.poll();
            if scenario == 1 {
                return; // SYN-SENT
            }
            let synack = segment(
                SYN | ACK,
                self.peer_nxt,
                self.local_nxt,
                65535,
                &syn_options,
                &[],
            );
            self.peer_nxt = self.peer_nxt.wrapping_add(1);
            self.device.rx.push_back(synack);
            self.poll();
        }
        // ESTABLISHED.
        match scenario {
            2 => {}
            3 => {
                // Data in flight both ways, unacknowledged.
                let _ = self.socket().send_slice(&[7; 20_000]);
                self.poll();
                self.send(ACK | PSH, &[9; 1000]);
            }
            4 => {
                // FIN-WAIT-1 with data in flight.
                let _ = self.socket().send_slice(&[7; 5000]);
                self.socket().close();
                self.poll();
            }
            5 => {
                // FIN-WAIT-2.
                self.socket().close();
                self.poll();
                self.send(ACK, &[]);
            }
            6 => {
                // CLOSING: both FINs crossed.
                self.socket().close();
                self.poll();
                let nxt = self.local_nxt;
                self.local_nxt = nxt.wrapping_sub(1);
                self.send(FIN | ACK, &[]);
                self.local_nxt = nxt;
            }
            7 => {
                // TIME-WAIT.
                self.socket().close();
                self.poll();
                self.send(FIN | ACK, &[]);
            }
            8 => {
                // CLOSE-WAIT.
                self.send(FIN | ACK, &[]);
            }
            9 => {
                // LAST-ACK.
                self.send(FIN | ACK, &[]);
                self.socket().close();
                self.poll();
            }
            10 => {
                // A zero receive window: the peer fills the buffer.
                let room = self.socket().recv_capacity();
                let mut left = room;
                while left > 0 {
                    let n = left.min(1400);
                    self.send(ACK, &vec![5; n]);
                    left -= n;
                }
            }
            _ => {
                // Data in flight with SACK holes reported by the peer.
                let _ = self.socket().send_slice(&[7; 30_000]);
                self.advance(1);
            }
        }
    }
}

/// An ARP request from the peer for the socket's address.
fn arp_request() -> Vec<u8> {
    let arp = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Request,
        source_hardware_addr: PEER_MAC,
        source_protocol_addr: PEER_IP,
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: LOCAL_IP,
    };
    let eth = EthernetRepr {
        src_addr: PEER_MAC,
        dst_addr: EthernetAddress::BROADCAST,
        ethertype: EthernetProtocol::Arp,
    };
    let mut frame = vec![0; eth.buffer_len() + arp.buffer_len()];
    let mut e = EthernetFrame::new_unchecked(&mut frame);
    eth.emit(&mut e);
    arp.emit(&mut ArpPacket::new_unchecked(e.payload_mut()));
    frame
}

/// A TCP segment from the peer, with raw option bytes (padded to a multiple of four and
/// cut at 40), in an IPv4 packet in an Ethernet frame.
fn segment(flags: u8, seq: u32, ack: u32, window: u16, options: &[u8], payload: &[u8]) -> Vec<u8> {
    let options = &options[..options.len().min(40)];
    let header_len = 20 + options.len().div_ceil(4) * 4;
    let tcp_len = header_len + payload.len();
    let mut tcp = vec![0u8; tcp_len];
    tcp[0..2].copy_from_slice(&PEER_PORT.to_be_bytes());
    tcp[2..4].copy_from_slice(&LOCAL_PORT.to_be_bytes());
    tcp[4..8].copy_from_slice(&seq.to_be_bytes());
    tcp[8..12].copy_from_slice(&ack.to_be_bytes());
    tcp[12] = ((header_len / 4) as u8) << 4;
    tcp[13] = flags;
    tcp[14..16].copy_from_slice(&window.to_be_bytes());
    tcp[20..20 + options.len()].copy_from_slice(options);
    tcp[header_len..].copy_from_slice(payload);
    TcpPacket::new_unchecked(&mut tcp)
        .fill_checksum(&IpAddress::Ipv4(PEER_IP), &IpAddress::Ipv4(LOCAL_IP));
    let ip = Ipv4Repr {
        src_addr: PEER_IP,
        dst_addr: LOCAL_IP,
        next_header: IpProtocol::Tcp,
        payload_len: tcp_len,
        hop_limit: 64,
    };
    let eth = EthernetRepr {
        src_addr: PEER_MAC,
        dst_addr: LOCAL_MAC,
        ethertype: EthernetProtocol::Ipv4,
    };
    let mut frame = vec![0; eth.buffer_len() + ip.buffer_len() + tcp_len];
    let mut e = EthernetFrame::new_unchecked(&mut frame);
    eth.emit(&mut e);
    let mut packet = Ipv4Packet::new_unchecked(e.payload_mut());
    ip.emit(
        &mut packet,
        &tapir::smoltcp::phy::ChecksumCapabilities::default(),
    );
    packet.payload_mut().copy_from_slice(&tcp);
    frame
}

/// `(flags, seq, payload length, timestamp value)` of a TCP frame the socket sent.
fn parse_tcp(frame: &[u8]) -> Option<(u8, u32, usize, Option<u32>)> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EthernetProtocol::Ipv4 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
    let mut flags = 0;
    for (set, bit) in [
        (tcp.fin(), FIN),
        (tcp.syn(), SYN),
        (tcp.rst(), RST),
        (tcp.psh(), PSH),
        (tcp.ack(), ACK),
    ] {
        if set {
            flags |= bit;
        }
    }
    let mut tsval = None;
    let mut options = tcp.options();
    while !options.is_empty() {
        let Ok((rest, option)) = tapir::smoltcp::wire::TcpOption::parse(options) else {
            break;
        };
        if let tapir::smoltcp::wire::TcpOption::TimeStamp { tsval: v, .. } = option {
            tsval = Some(v);
        }
        options = rest;
    }
    Some((flags, tcp.seq_number().0 as u32, tcp.payload().len(), tsval))
}

/// Option bytes drawn from the input: well-formed options with plausible values, and
/// malformed ones.
fn options(input: &mut Input, h: &Harness) -> Vec<u8> {
    let mut o = Vec::new();
    for _ in 0..(input.u8() % 6) {
        match input.u8() % 10 {
            0 => o.push(1),
            1 => o.push(0),
            2 => o.extend_from_slice(&[2, 4, input.u8(), input.u8()]),
            3 => o.extend_from_slice(&[3, 3, input.u8()]),
            4 => o.extend_from_slice(&[4, 2]),
            5 | 6 => {
                // SACK blocks near the data the socket has sent.
                let blocks = 1 + input.u8() % 4;
                o.extend_from_slice(&[5, 2 + 8 * blocks]);
                for _ in 0..blocks {
                    let left = h.local_nxt.wrapping_sub(u32::from(input.u16()));
                    let right = left.wrapping_add(u32::from(input.u16()));
                    o.extend_from_slice(&left.to_be_bytes());
                    o.extend_from_slice(&right.to_be_bytes());
                }
            }
            7 => {
                o.extend_from_slice(&[8, 10]);
                o.extend_from_slice(&input.u32().to_be_bytes());
                let echo = if input.u8() & 1 == 0 {
                    h.local_tsval
                } else {
                    input.u32()
                };
                o.extend_from_slice(&echo.to_be_bytes());
            }
            _ => {
                // Any kind, any length byte, any content.
                let kind = input.u8();
                let len = input.u8();
                o.push(kind);
                o.push(len);
                let n = usize::from(input.u8() % 12);
                o.extend_from_slice(input.bytes(n));
            }
        }
    }
    o
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let mut input = Input(data);
    let pick = input.u8();
    let sizes = input.u8();
    let rx_size = [1024, 8192, 65535, 262_144][usize::from(sizes & 3)];
    let tx_size = [1024, 8192, 65535, 262_144][usize::from((sizes >> 2) & 3)];
    let mut h = Harness::new(rx_size, tx_size, u64::from(sizes));
    {
        let socket = h.socket();
        socket.set_nagle_enabled(sizes & 0x10 != 0);
        if sizes & 0x20 != 0 {
            socket.set_ack_delay(None);
        }
        if sizes & 0x40 != 0 {
            socket.set_keep_alive(Some(Duration::from_millis(500)));
            socket.set_timeout(Some(Duration::from_secs(3)));
        }
        // tapir turns SACK compression on for every socket; half the inputs fuzz it.
        socket.set_sack_compression(sizes & 0x80 != 0);
    }
    h.reach(pick);

    let mut steps = 0;
    while !input.is_empty() && steps < 256 {
        steps += 1;
        match input.u8() % 8 {
            0..=3 => {
                let flags = input.u8() & 0x3f;
                let seq = h
                    .peer_nxt
                    .wrapping_add(i32::from(input.u16() as i16) as u32);
                let ack = match input.u8() % 4 {
                    0 => input.u32(),
                    _ => h.local_nxt.wrapping_sub(u32::from(input.u16() % 4096)),
                };
                let window = input.u16();
                let opts = options(&mut input, &h);
                let len = usize::from(input.u16() % 1500);
                let payload = vec![0x42; len];
                let frame = segment(flags, seq, ack, window, &opts, &payload);
                if flags & (SYN | FIN) == 0 && seq == h.peer_nxt {
                    h.peer_nxt = h.peer_nxt.wrapping_add(len as u32);
                }
                h.device.rx.push_back(frame);
                h.poll();
            }
            4 => {
                let ms = [0, 1, 10, 200, 1000, 5000][usize::from(input.u8() % 6)];
                h.advance(ms);
            }
            5 => {
                let n = usize::from(input.u16());
                let _ = h.socket().send_slice(&vec![3; n]);
                h.poll();
            }
            6 => {
                let mut buf = std::mem::take(&mut h.buf);
                let _ = h.socket().recv_slice(&mut buf);
                h.buf = buf;
                h.poll();
            }
            _ => {
                match input.u8() % 4 {
                    0 => h.socket().close(),
                    1 => h.socket().abort(),
                    _ => {}
                }
                h.poll();
            }
        }
    }
    // Let every timer fire: retransmissions, keep-alives, TIME-WAIT.
    for _ in 0..8 {
        h.advance(2000);
    }
}
