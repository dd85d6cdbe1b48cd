//! The stack against a hand-driven peer: frames are built and read here, so tests can send
//! what a real TCP never would (blind RSTs, SYNs on live connections, forged cookies).

use std::collections::VecDeque;

use smoltcp::phy::{self, DeviceCapabilities};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, IpAddress, IpCidr, Ipv4Address, TcpControl, TcpRepr, TcpSeqNumber,
    TcpTimestampRepr,
};

use super::reply::Segment;
use super::{Stack, StackConfig, TcpHandle};

/// A device whose frames the test hands in and takes out.
#[derive(Default)]
pub struct QueueDevice {
    pub rx: VecDeque<Vec<u8>>,
    pub tx: Vec<Vec<u8>>,
    /// For each transmission, how many received frames were still waiting to be read.
    pub rx_waiting_at_tx: Vec<usize>,
}

pub struct Rx(Vec<u8>);
pub struct Tx<'a>(&'a mut Vec<Vec<u8>>);

impl phy::RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = vec![0; len];
        let r = f(&mut buf);
        self.0.push(buf);
        r
    }
}

impl phy::Device for QueueDevice {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx<'a>;

    fn receive(&mut self, _: Instant) -> Option<(Rx, Tx<'_>)> {
        let frame = self.rx.pop_front()?;
        Some((Rx(frame), Tx(&mut self.tx)))
    }

    fn transmit(&mut self, _: Instant) -> Option<Tx<'_>> {
        self.rx_waiting_at_tx.push(self.rx.len());
        Some(Tx(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        crate::device::ethernet_caps(1500)
    }
}

pub const SERVER_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 2]);
pub const PEER_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 1]);
pub const SERVER_IP: Ipv4Address = Ipv4Address::new(10, 9, 0, 2);
pub const PEER_IP: Ipv4Address = Ipv4Address::new(10, 9, 0, 1);

/// A server stack listening on port 80, and its device.
pub struct Bench {
    pub stack: Stack,
    pub dev: QueueDevice,
    pub now: Instant,
}

impl Bench {
    pub fn new(tweak: impl FnOnce(&mut StackConfig)) -> Bench {
        let mut config = StackConfig::new(
            SERVER_MAC,
            vec![IpCidr::new(IpAddress::Ipv4(SERVER_IP), 24)],
        );
        config.seed = 7;
        tweak(&mut config);
        let mut dev = QueueDevice::default();
        let now = Instant::from_secs(100);
        let mut stack = Stack::new(config, &mut dev, now).expect("stack");
        stack.listen(80).expect("listen");
        let mut bench = Bench { stack, dev, now };
        // The peer introduces itself, so the server knows its MAC.
        bench.send(peer_arp_request());
        bench.dev.tx.clear();
        bench
    }

    /// Hands a frame to the stack and polls; returns the TCP segments it sent.
    pub fn send(&mut self, frame: Vec<u8>) -> Vec<TcpRepr<'static>> {
        self.dev.rx.push_back(frame);
        self.poll()
    }

    /// Polls; returns the TCP segments sent.
    pub fn poll(&mut self) -> Vec<TcpRepr<'static>> {
        self.stack.poll(self.now, &mut self.dev);
        let frames: Vec<Vec<u8>> = self.dev.tx.drain(..).collect();
        frames
            .iter()
            .filter_map(|f| {
                Segment::parse(f).map(|s| TcpRepr {
                    payload: &[],
                    ..s.tcp
                })
            })
            .collect()
    }

    pub fn advance(&mut self, by: Duration) {
        self.now += by;
    }
}

/// The peer's ARP request for the server's address: the server learns the peer's MAC
/// from it.
pub fn peer_arp_request() -> Vec<u8> {
    let mut arp = vec![0u8; 42];
    let mut eth = EthernetFrame::new_unchecked(&mut arp[..]);
    EthernetRepr {
        src_addr: PEER_MAC,
        dst_addr: EthernetAddress::BROADCAST,
        ethertype: EthernetProtocol::Arp,
    }
    .emit(&mut eth);
    ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Request,
        source_hardware_addr: PEER_MAC,
        source_protocol_addr: PEER_IP,
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: SERVER_IP,
    }
    .emit(&mut ArpPacket::new_unchecked(eth.payload_mut()));
    arp
}

/// A TCP segment from the peer's port `sport` to the server's port 80.
pub fn segment(sport: u16, control: TcpControl, seq: u32, ack: Option<u32>) -> TcpRepr<'static> {
    TcpRepr {
        src_port: sport,
        dst_port: 80,
        control,
        seq_number: TcpSeqNumber(seq as i32),
        ack_number: ack.map(|a| TcpSeqNumber(a as i32)),
        window_len: 64240,
        window_scale: None,
        max_seg_size: None,
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload: &[],
    }
}

/// The frame carrying `tcp` from the peer (at `from`) to the server.
pub fn frame_from(from: Ipv4Address, tcp: &TcpRepr) -> Vec<u8> {
    // A reply to a segment the server would have sent is a segment from the peer.
    Segment {
        eth_src: SERVER_MAC,
        eth_dst: PEER_MAC,
        src: IpAddress::Ipv4(SERVER_IP),
        dst: IpAddress::Ipv4(from),
        tcp: TcpRepr {
            src_port: tcp.dst_port,
            dst_port: tcp.src_port,
            ..*tcp
        },
    }
    .reply(tcp)
}

pub fn seq(n: TcpSeqNumber) -> u32 {
    n.0 as u32
}

/// Opens a connection from the peer's port `sport` with ISN `isn`; returns it (accepted)
/// and the server's ISN.
pub fn handshake(bench: &mut Bench, sport: u16, isn: u32) -> (TcpHandle, u32) {
    let mut syn = segment(sport, TcpControl::Syn, isn, None);
    syn.window_scale = Some(7);
    syn.max_seg_size = Some(1460);
    syn.timestamp = Some(TcpTimestampRepr::new(1, 0));
    let out = bench.send(frame_from(PEER_IP, &syn));
    let synack = out
        .iter()
        .find(|t| t.control == TcpControl::Syn && t.dst_port == sport)
        .expect("SYN-ACK");
    let server_isn = seq(synack.seq_number);
    let mut ack = segment(sport, TcpControl::None, isn + 1, Some(server_isn + 1));
    ack.timestamp = Some(TcpTimestampRepr::new(
        2,
        synack.timestamp.map_or(0, |t| t.tsval),
    ));
    bench.send(frame_from(PEER_IP, &ack));
    let handle = bench.stack.accept(80).expect("accepted");
    (handle, server_isn)
}

mod challenge_ack {
    use super::*;
    use smoltcp::socket::tcp::State;

    #[test]
    fn inexact_rst_in_window_and_syn_get_a_challenge_ack_exact_rst_resets() {
        let mut b = Bench::new(|_| {});
        let (conn, s_isn) = handshake(&mut b, 40000, 1000);
        assert_eq!(b.stack.socket_ref(&conn).state(), State::Established);

        // In the window, not exact: a challenge ACK with our numbers, the connection lives.
        let out = b.send(frame_from(
            PEER_IP,
            &segment(40000, TcpControl::Rst, 1101, None),
        ));
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].control, TcpControl::None);
        assert_eq!(seq(out[0].seq_number), s_isn + 1);
        assert_eq!(out[0].ack_number.map(seq), Some(1001));
        assert_eq!(b.stack.socket_ref(&conn).state(), State::Established);

        // Outside the window: dropped silently.
        let far = 1001u32.wrapping_add(3_000_000_000);
        let out = b.send(frame_from(
            PEER_IP,
            &segment(40000, TcpControl::Rst, far, None),
        ));
        assert!(out.is_empty(), "{out:?}");

        // A SYN on the synchronized connection.
        let out = b.send(frame_from(
            PEER_IP,
            &segment(40000, TcpControl::Syn, 77, None),
        ));
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].control, TcpControl::None);
        assert_eq!(out[0].ack_number.map(seq), Some(1001));
        assert_eq!(b.stack.socket_ref(&conn).state(), State::Established);

        let stats = b.stack.stats();
        assert_eq!((stats.challenge_acks, stats.rst_dropped), (2, 2));

        // The exact RST resets it.
        b.send(frame_from(
            PEER_IP,
            &segment(40000, TcpControl::Rst, 1001, None),
        ));
        assert_eq!(b.stack.socket_ref(&conn).state(), State::Closed);
    }

    #[test]
    fn an_rst_at_rcv_nxt_resets_while_our_ack_is_delayed() {
        let mut b = Bench::new(|_| {});
        let (conn, s_isn) = handshake(&mut b, 40000, 1000);
        let mut data = segment(40000, TcpControl::Psh, 1001, Some(s_isn + 1));
        data.payload = b"hello";
        data.timestamp = Some(TcpTimestampRepr::new(3, 0));
        let out = b.send(frame_from(PEER_IP, &data));
        assert!(out.is_empty(), "the ACK is delayed: {out:?}");
        // The peer's RST carries its SND.NXT, our RCV.NXT: ahead of the last ACK we sent.
        let out = b.send(frame_from(
            PEER_IP,
            &segment(40000, TcpControl::Rst, 1006, None),
        ));
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(b.stack.socket_ref(&conn).state(), State::Closed);
        assert_eq!(b.stack.stats().rst_dropped, 0);
    }

    #[test]
    fn a_handshake_in_progress_is_checked_against_its_syn_ack() {
        let mut b = Bench::new(|_| {});
        let mut syn = segment(40000, TcpControl::Syn, 1000, None);
        syn.window_scale = Some(7);
        let out = b.send(frame_from(PEER_IP, &syn));
        let synack = out.first().expect("SYN-ACK");
        let s_isn = seq(synack.seq_number);
        assert_eq!(b.stack.tally.handshakes(), 1);
        // In the SYN-ACK's window (not scaled: it is a SYN's), not exact.
        let inside = 1001 + u32::from(synack.window_len) - 1;
        let out = b.send(frame_from(
            PEER_IP,
            &segment(40000, TcpControl::Rst, inside, None),
        ));
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].control, TcpControl::None);
        assert_eq!(seq(out[0].seq_number), s_isn + 1);
        assert_eq!(out[0].ack_number.map(seq), Some(1001));
        // Past it: dropped silently.
        let out = b.send(frame_from(
            PEER_IP,
            &segment(40000, TcpControl::Rst, inside + 1, None),
        ));
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(b.stack.connection_count(), 1, "the handshake goes on");
        assert_eq!(b.stack.stats().rst_dropped, 2);
        // The exact RST ends it.
        b.send(frame_from(
            PEER_IP,
            &segment(40000, TcpControl::Rst, 1001, None),
        ));
        assert_eq!(b.stack.stats().rst_dropped, 2);
        assert_eq!(b.stack.connection_count(), 0);
    }

    #[test]
    fn established_connections_leave_no_record_behind() {
        let mut b = Bench::new(|_| {});
        for i in 0..20 {
            handshake(&mut b, 40000 + i, 1000 * u32::from(i));
        }
        // Their sockets answer the checks; only handshakes in progress are remembered.
        assert_eq!(b.stack.tally.handshakes(), 0);
        b.send(frame_from(
            PEER_IP,
            &segment(41000, TcpControl::Syn, 5, None),
        ));
        assert_eq!(b.stack.tally.handshakes(), 1);
    }

    #[test]
    fn challenge_acks_are_limited_stack_wide() {
        let mut b = Bench::new(|_| {});
        let (_a, _) = handshake(&mut b, 40001, 5000);
        let (_b, _) = handshake(&mut b, 40002, 9000);
        let mut sent = 0;
        for i in 0..1500u32 {
            let (port, isn) = if i % 2 == 0 {
                (40001, 5001)
            } else {
                (40002, 9001)
            };
            let rst = segment(port, TcpControl::Rst, isn + 1 + i % 100, None);
            sent += b.send(frame_from(PEER_IP, &rst)).len();
        }
        assert_eq!(sent, super::super::CHALLENGE_ACKS_PER_SECOND as usize);
        assert_eq!(b.stack.stats().rst_dropped, 1500);
        // The next second has a new budget.
        b.advance(Duration::from_secs(1));
        let rst = segment(40001, TcpControl::Rst, 5003, None);
        assert_eq!(b.send(frame_from(PEER_IP, &rst)).len(), 1);
    }
}

mod half_open {
    use super::*;

    #[test]
    fn a_syn_whose_syn_ack_cannot_leave_frees_its_slot_early() {
        let mut b = Bench::new(|_| {});
        // From an on-link address that never answers ARP: no SYN-ACK can be sent.
        let silent = Ipv4Address::new(10, 9, 0, 77);
        let out = b.send(frame_from(
            silent,
            &segment(41000, TcpControl::Syn, 1, None),
        ));
        assert!(out.is_empty(), "{out:?}");
        // From the peer, which does answer: its SYN-ACK leaves, and it keeps its slot.
        let out = b.send(frame_from(
            PEER_IP,
            &segment(41001, TcpControl::Syn, 1, None),
        ));
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(b.stack.connection_count(), 2);
        let wake = b
            .stack
            .poll_at(b.now)
            .expect("a timer for the half-open ones");
        assert!(wake <= b.now + super::super::UNRESOLVED_TIMEOUT, "{wake}");

        b.advance(Duration::from_millis(1600));
        b.poll();
        assert_eq!(b.stack.connection_count(), 1, "the unresolved one is gone");
        let stats = b.stack.stats();
        assert_eq!(
            (stats.handshake_unresolved, stats.handshake_timeouts),
            (1, 0)
        );
        // Past that check, the next timer is the handshake timeout, not a busy loop.
        let wake = b.stack.poll_at(b.now).expect("handshake timeout");
        assert!(wake > b.now, "{wake} <= {}", b.now);
    }

    /// Starts a handshake from port 41000 (ISN 1000) and completes none.
    fn half_open_from_41000() -> Bench {
        let mut b = Bench::new(|_| {});
        let out = b.send(frame_from(
            PEER_IP,
            &segment(41000, TcpControl::Syn, 1000, None),
        ));
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(b.stack.connection_count(), 1);
        b
    }

    /// Completes the handshakes the peer began with ISN 2000 from each port (with the
    /// server's ISN for it), and accepts each.
    fn complete_and_accept(b: &mut Bench, handshakes: Vec<(u16, u32)>) {
        for (sport, s_isn) in handshakes {
            b.send(frame_from(
                PEER_IP,
                &segment(sport, TcpControl::None, 2001, Some(s_isn + 1)),
            ));
            assert!(b.stack.accept(80).is_some(), "port {sport}");
        }
    }

    #[test]
    fn a_handshake_reset_by_its_peer_gives_its_slot_back_at_once() {
        let mut b = half_open_from_41000();
        // The peer's exact RST: smoltcp turns the socket back to LISTEN, and the stack
        // counts no handshake in progress any more.
        b.send(frame_from(
            PEER_IP,
            &segment(41000, TcpControl::Rst, 1001, None),
        ));
        assert_eq!(b.stack.connection_count(), 0);
        assert_eq!(b.stack.stats().handshake_resets, 1);

        // Later handshakes get their whole timeout, whichever socket takes them.
        b.advance(Duration::from_secs(9));
        let mut handshakes = Vec::new();
        for sport in 41001..41006 {
            let out = b.send(frame_from(
                PEER_IP,
                &segment(sport, TcpControl::Syn, 2000, None),
            ));
            assert_eq!(out.len(), 1, "{out:?}");
            handshakes.push((sport, seq(out[0].seq_number)));
        }
        b.advance(Duration::from_secs(2));
        b.poll();
        assert_eq!(b.stack.connection_count(), 5);
        assert_eq!(b.stack.stats().handshake_timeouts, 0);
        complete_and_accept(&mut b, handshakes);
    }

    #[test]
    fn a_syn_in_the_same_batch_as_a_reset_gets_its_own_timeout() {
        let mut b = half_open_from_41000();
        b.advance(Duration::from_secs(9));
        // The reset and new SYNs are read in one poll: the reset socket, listening again,
        // may take one of them before the stack looks at its listeners.
        b.dev.rx.push_back(frame_from(
            PEER_IP,
            &segment(41000, TcpControl::Rst, 1001, None),
        ));
        for sport in 41001..41006 {
            b.dev.rx.push_back(frame_from(
                PEER_IP,
                &segment(sport, TcpControl::Syn, 2000, None),
            ));
        }
        let out = b.poll();
        let handshakes: Vec<(u16, u32)> = out
            .iter()
            .filter(|t| t.control == TcpControl::Syn)
            .map(|t| (t.dst_port, seq(t.seq_number)))
            .collect();
        assert_eq!(handshakes.len(), 5, "{out:?}");
        assert_eq!(b.stack.stats().handshake_resets, 1);
        // Past the reset handshake's timeout, not past theirs.
        b.advance(Duration::from_secs(2));
        b.poll();
        assert_eq!(b.stack.stats().handshake_timeouts, 0);
        complete_and_accept(&mut b, handshakes);
    }
}

mod syn_cookies {
    use super::*;
    use crate::stack::CookiePolicy;
    use smoltcp::socket::tcp::State;

    fn syn_with_options(sport: u16, isn: u32) -> TcpRepr<'static> {
        let mut syn = segment(sport, TcpControl::Syn, isn, None);
        syn.window_scale = Some(7);
        syn.max_seg_size = Some(1400);
        syn.sack_permitted = true;
        syn.timestamp = Some(TcpTimestampRepr::new(1000, 0));
        syn
    }

    #[test]
    fn a_full_backlog_answers_with_cookies_and_a_valid_ack_opens_the_connection() {
        let mut b = Bench::new(|c| c.tcp.backlog = 1);
        // The one slot: a SYN whose handshake is never completed.
        let out = b.send(frame_from(
            PEER_IP,
            &segment(42000, TcpControl::Syn, 5, None),
        ));
        assert_eq!(out.len(), 1);
        assert_eq!(b.stack.stats().cookies_sent, 0);

        // Full: the next SYN gets a cookie SYN-ACK, and no state.
        let before = b.stack.connection_count();
        let out = b.send(frame_from(PEER_IP, &syn_with_options(42001, 7000)));
        assert_eq!(out.len(), 1, "{out:?}");
        let synack = out[0];
        assert_eq!(synack.control, TcpControl::Syn);
        assert_eq!(synack.ack_number.map(seq), Some(7001));
        assert_eq!(synack.max_seg_size, Some(1460));
        assert!(synack.sack_permitted);
        assert!(synack.window_scale.is_some());
        let ts = synack.timestamp.expect("timestamps, carrying the options");
        assert_eq!(ts.tsecr, 1000);
        assert_eq!(b.stack.connection_count(), before);
        assert_eq!(b.stack.stats().cookies_sent, 1);

        let iss = seq(synack.seq_number);
        let mut ack = segment(42001, TcpControl::None, 7001, Some(iss + 1));
        ack.timestamp = Some(TcpTimestampRepr::new(1001, ts.tsval));

        // Forged: another cookie value, or option bits changed in the echoed TSval.
        let mut forged = ack;
        forged.ack_number = Some(TcpSeqNumber(iss.wrapping_add(1 + (1 << 8)) as i32));
        let out = b.send(frame_from(PEER_IP, &forged));
        assert!(out.iter().all(|t| t.control == TcpControl::Rst), "{out:?}");
        let mut forged = ack;
        forged.timestamp = Some(TcpTimestampRepr::new(1001, ts.tsval ^ 0x10));
        b.send(frame_from(PEER_IP, &forged));
        assert_eq!(b.stack.stats().cookies_rejected, 2);
        assert!(b.stack.accept(80).is_none());

        // The real ACK, with the request on it.
        ack.payload = b"hello";
        b.send(frame_from(PEER_IP, &ack));
        let conn = b.stack.accept(80).expect("a connection from the cookie");
        let stats = b.stack.stats();
        assert_eq!((stats.cookies_accepted, stats.accepted), (1, 1));
        let socket = b.stack.socket(&conn);
        assert_eq!(socket.state(), State::Established);
        let mut got = [0u8; 5];
        assert_eq!(socket.recv_slice(&mut got), Ok(5));
        assert_eq!(&got, b"hello");
        socket.send_slice(b"world").unwrap();
        let out = b.poll();
        let data = out
            .iter()
            .find(|t| t.seq_number == TcpSeqNumber((iss + 1) as i32));
        assert!(data.is_some(), "our data follows the cookie ISN: {out:?}");
        assert!(data.and_then(|t| t.timestamp).is_some(), "timestamps go on");

        // After the connection is gone, the same ACK is a replay.
        b.stack.abort(conn);
        b.poll();
        b.send(frame_from(PEER_IP, &ack));
        assert!(b.stack.accept(80).is_none());
        assert_eq!(b.stack.stats().cookies_rejected, 3);
    }

    #[test]
    fn never_drops_and_always_answers_every_syn() {
        let mut b = Bench::new(|c| {
            c.tcp.backlog = 1;
            c.tcp.syn_cookies = CookiePolicy::Never;
        });
        b.send(frame_from(
            PEER_IP,
            &segment(42000, TcpControl::Syn, 5, None),
        ));
        let out = b.send(frame_from(PEER_IP, &syn_with_options(42001, 9)));
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(b.stack.stats().syn_dropped, 1);

        let mut b = Bench::new(|c| c.tcp.syn_cookies = CookiePolicy::Always);
        let out = b.send(frame_from(PEER_IP, &syn_with_options(42001, 9)));
        assert_eq!(out.len(), 1);
        assert_eq!(b.stack.stats().cookies_sent, 1);
        assert_eq!(b.stack.connection_count(), 0);
    }
}

mod ingress_batch {
    use super::*;

    static DATA: [u8; 100] = [7; 100];

    #[test]
    fn acks_leave_between_batches_of_a_long_burst() {
        let mut b = Bench::new(|c| {
            c.tcp.ack_delay = None;
            c.tcp.initial_buffer = 1 << 20;
        });
        let (_conn, s_isn) = handshake(&mut b, 40000, 1000);
        b.dev.rx_waiting_at_tx.clear();
        let burst = 300;
        for i in 0..burst {
            let mut data = segment(40000, TcpControl::None, 1001 + 100 * i, Some(s_isn + 1));
            data.payload = &DATA;
            b.dev.rx.push_back(frame_from(PEER_IP, &data));
        }
        let out = b.poll();
        // The ACKs of the first batch left while the rest of the burst waited, after at
        // most one batch was read; the last ACK covers everything.
        let first = *b.dev.rx_waiting_at_tx.first().expect("an ACK");
        assert!(
            first >= burst as usize - super::super::INGRESS_BATCH,
            "{:?}",
            b.dev.rx_waiting_at_tx
        );
        assert!(out.len() >= burst as usize / super::super::INGRESS_BATCH);
        assert_eq!(
            out.last().and_then(|t| t.ack_number).map(seq),
            Some(1001 + 100 * burst)
        );
    }
}

mod buffer_release {
    use super::super::buffers::{RELEASE_QUIET, RELEASE_RETRY};
    use super::*;

    static REQUEST: [u8; 100] = [7; 100];

    /// The peer sends 100 bytes at `seq` and the application reads them.
    fn request(b: &mut Bench, conn: &TcpHandle, seq: &mut u32, server_next: u32) {
        let mut data = segment(40000, TcpControl::None, *seq, Some(server_next));
        data.payload = &REQUEST;
        b.send(frame_from(PEER_IP, &data));
        *seq += REQUEST.len() as u32;
        let mut read = [0; 200];
        let n = b
            .stack
            .socket_for_reading(conn)
            .recv_slice(&mut read)
            .expect("readable");
        assert_eq!(n, REQUEST.len());
    }

    #[test]
    fn a_busy_connection_keeps_its_buffers_and_a_quiet_one_gives_them_back() {
        let mut b = Bench::new(|_| {});
        let (conn, s_isn) = handshake(&mut b, 40000, 1000);
        let mut seq = 1001;
        let held = |b: &Bench| b.stack.stats().tcp_buffers_held;
        // A request every 100 ms for two seconds: the connection is never quiet for
        // RELEASE_QUIET, and keeps its buffers.
        for _ in 0..20 {
            request(&mut b, &conn, &mut seq, s_isn + 1);
            assert_eq!(held(&b), 1);
            for _ in 0..10 {
                b.advance(Duration::from_millis(10));
                b.poll();
                assert_eq!(held(&b), 1, "a busy connection lost its buffers");
            }
        }
        // Quiet from here: given back after one quiet period, and at most two (activity
        // counts from when it is seen) and a slot of the look queue each.
        let last = b.now;
        while held(&b) == 1 {
            assert!(
                b.now - last <= (RELEASE_QUIET + RELEASE_RETRY) * 2,
                "buffers kept too long"
            );
            b.advance(Duration::from_millis(5));
            b.poll();
        }
        assert!(
            b.now - last >= RELEASE_QUIET,
            "buffers taken back too early"
        );
        // The next request gets buffers again.
        request(&mut b, &conn, &mut seq, s_isn + 1);
        assert_eq!(held(&b), 1);
    }
}
