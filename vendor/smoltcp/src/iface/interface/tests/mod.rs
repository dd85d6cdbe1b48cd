#[cfg(feature = "proto-ipv4")]
mod ipv4;
#[cfg(feature = "proto-ipv6")]
mod ipv6;
#[cfg(feature = "proto-sixlowpan")]
mod sixlowpan;

#[allow(unused)]
use std::vec::Vec;

use crate::tests::setup;

use rstest::*;

use super::*;

use crate::iface::Interface;
use crate::phy::ChecksumCapabilities;
#[cfg(feature = "alloc")]
use crate::phy::Loopback;
use crate::time::Instant;

#[allow(unused)]
fn fill_slice(s: &mut [u8], val: u8) {
    for x in s.iter_mut() {
        *x = val
    }
}

#[allow(unused)]
fn recv_all(device: &mut crate::tests::TestingDevice, timestamp: Instant) -> Vec<Vec<u8>> {
    let mut pkts = Vec::new();
    while let Some(pkt) = device.tx_queue.pop_front() {
        pkts.push(pkt)
    }
    pkts
}

#[derive(Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
struct MockTxToken;

impl TxToken for MockTxToken {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let mut junk = [0; 1536];
        f(&mut junk[..len])
    }
}

#[test]
#[should_panic(expected = "The hardware address does not match the medium of the interface.")]
#[cfg(all(feature = "medium-ip", feature = "medium-ethernet", feature = "alloc"))]
fn test_new_panic() {
    let mut device = Loopback::new(Medium::Ethernet);
    let config = Config::new(HardwareAddress::Ip);
    Interface::new(config, &mut device, Instant::ZERO);
}

#[cfg(feature = "socket-udp")]
#[rstest]
#[case::ip(Medium::Ip)]
#[cfg(feature = "medium-ip")]
#[case::ethernet(Medium::Ethernet)]
#[cfg(feature = "medium-ethernet")]
#[case::ieee802154(Medium::Ieee802154)]
#[cfg(feature = "medium-ieee802154")]
fn test_handle_udp_broadcast(#[case] medium: Medium) {
    use crate::socket::udp;
    use crate::wire::IpEndpoint;

    static UDP_PAYLOAD: [u8; 5] = [0x48, 0x65, 0x6c, 0x6c, 0x6f];

    let (mut iface, mut sockets, _device) = setup(medium);

    let rx_buffer = udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY], vec![0; 15]);
    let tx_buffer = udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY], vec![0; 15]);

    let udp_socket = udp::Socket::new(rx_buffer, tx_buffer);

    let mut udp_bytes = vec![0u8; 13];
    let mut packet = UdpPacket::new_unchecked(&mut udp_bytes);

    let socket_handle = sockets.add(udp_socket);

    #[cfg(feature = "proto-ipv6")]
    let src_ip = Ipv6Address::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
    #[cfg(all(not(feature = "proto-ipv6"), feature = "proto-ipv4"))]
    let src_ip = Ipv4Address::new(0x7f, 0x00, 0x00, 0x02);

    let udp_repr = UdpRepr {
        src_port: 67,
        dst_port: 68,
    };

    #[cfg(feature = "proto-ipv6")]
    let ip_repr = IpRepr::Ipv6(Ipv6Repr {
        src_addr: src_ip,
        dst_addr: IPV6_LINK_LOCAL_ALL_NODES,
        next_header: IpProtocol::Udp,
        payload_len: udp_repr.header_len() + UDP_PAYLOAD.len(),
        hop_limit: 0x40,
    });
    #[cfg(all(not(feature = "proto-ipv6"), feature = "proto-ipv4"))]
    let ip_repr = IpRepr::Ipv4(Ipv4Repr {
        src_addr: src_ip,
        dst_addr: Ipv4Address::BROADCAST,
        next_header: IpProtocol::Udp,
        payload_len: udp_repr.header_len() + UDP_PAYLOAD.len(),
        hop_limit: 0x40,
    });
    let dst_addr = ip_repr.dst_addr();

    // Bind the socket to port 68
    let socket = sockets.get_mut::<udp::Socket>(socket_handle);
    assert_eq!(socket.bind(68), Ok(()));
    assert!(!socket.can_recv());
    assert!(socket.can_send());

    udp_repr.emit(
        &mut packet,
        &ip_repr.src_addr(),
        &ip_repr.dst_addr(),
        UDP_PAYLOAD.len(),
        |buf| buf.copy_from_slice(&UDP_PAYLOAD),
        &ChecksumCapabilities::default(),
    );

    // Packet should be handled by bound UDP socket
    assert_eq!(
        iface.inner.process_udp(
            &mut sockets,
            PacketMeta::default(),
            false,
            ip_repr,
            packet.into_inner(),
        ),
        None
    );

    // Make sure the payload to the UDP packet processed by process_udp is
    // appended to the bound sockets rx_buffer
    let socket = sockets.get_mut::<udp::Socket>(socket_handle);
    assert!(socket.can_recv());
    assert_eq!(
        socket.recv(),
        Ok((
            &UDP_PAYLOAD[..],
            udp::UdpMetadata {
                local_address: Some(dst_addr),
                ..IpEndpoint::new(src_ip.into(), 67).into()
            }
        ))
    );
}

#[test]
#[cfg(all(feature = "medium-ip", feature = "socket-tcp", feature = "proto-ipv6"))]
pub fn tcp_not_accepted() {
    let (mut iface, mut sockets, _) = setup(Medium::Ip);
    let tcp = TcpRepr {
        src_port: 4242,
        dst_port: 4243,
        control: TcpControl::Syn,
        seq_number: TcpSeqNumber(-10001),
        ack_number: None,
        window_len: 256,
        window_scale: None,
        max_seg_size: None,
        sack_permitted: false,
        sack_ranges: [None, None, None],
        timestamp: None,
        payload: &[],
    };

    let mut tcp_bytes = vec![0u8; tcp.buffer_len()];

    tcp.emit(
        &mut TcpPacket::new_unchecked(&mut tcp_bytes),
        &Ipv6Address::new(0xfe80, 0, 0, 0, 0, 0, 0, 2).into(),
        &Ipv6Address::new(0xfe80, 0, 0, 0, 0, 0, 0, 1).into(),
        &ChecksumCapabilities::default(),
    );

    assert_eq!(
        iface.inner.process_tcp(
            &mut sockets,
            false,
            IpRepr::Ipv6(Ipv6Repr {
                src_addr: Ipv6Address::new(0xfe80, 0, 0, 0, 0, 0, 0, 2),
                dst_addr: Ipv6Address::new(0xfe80, 0, 0, 0, 0, 0, 0, 1),
                next_header: IpProtocol::Tcp,
                payload_len: tcp.buffer_len(),
                hop_limit: 64,
            }),
            &tcp_bytes,
        ),
        Some(Packet::new_ipv6(
            Ipv6Repr {
                src_addr: Ipv6Address::new(0xfe80, 0, 0, 0, 0, 0, 0, 1),
                dst_addr: Ipv6Address::new(0xfe80, 0, 0, 0, 0, 0, 0, 2),
                next_header: IpProtocol::Tcp,
                payload_len: tcp.buffer_len(),
                hop_limit: 64,
            },
            IpPayload::Tcp(TcpRepr {
                src_port: 4243,
                dst_port: 4242,
                control: TcpControl::Rst,
                seq_number: TcpSeqNumber(0),
                ack_number: Some(TcpSeqNumber(-10000)),
                window_len: 0,
                window_scale: None,
                max_seg_size: None,
                sack_permitted: false,
                sack_ranges: [None, None, None],
                timestamp: None,
                payload: &[],
            })
        ))
    );
    // Unspecified destination address.
    tcp.emit(
        &mut TcpPacket::new_unchecked(&mut tcp_bytes),
        &Ipv6Address::new(0xfe80, 0, 0, 0, 0, 0, 0, 2).into(),
        &Ipv6Address::UNSPECIFIED.into(),
        &ChecksumCapabilities::default(),
    );

    assert_eq!(
        iface.inner.process_tcp(
            &mut sockets,
            false,
            IpRepr::Ipv6(Ipv6Repr {
                src_addr: Ipv6Address::new(0xfe80, 0, 0, 0, 0, 0, 0, 2),
                dst_addr: Ipv6Address::UNSPECIFIED,
                next_header: IpProtocol::Tcp,
                payload_len: tcp.buffer_len(),
                hop_limit: 64,
            }),
            &tcp_bytes,
        ),
        None,
    );
}

#[test]
#[cfg(all(feature = "medium-ip", feature = "socket-tcp", feature = "proto-ipv4"))]
pub fn tcp_listen_drops_unspecified_src() {
    use crate::socket::tcp;

    let (mut iface, mut sockets, _) = setup(Medium::Ip);

    let tcp_socket = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; 64]),
        tcp::SocketBuffer::new(vec![0; 64]),
    );
    let handle = sockets.add(tcp_socket);
    sockets.get_mut::<tcp::Socket>(handle).listen(1234).unwrap();

    let tcp = TcpRepr {
        src_port: 65000,
        dst_port: 1234,
        control: TcpControl::Syn,
        seq_number: TcpSeqNumber(0),
        ack_number: None,
        window_len: 1024,
        window_scale: None,
        max_seg_size: Some(1460),
        sack_permitted: false,
        sack_ranges: [None, None, None],
        timestamp: None,
        payload: &[],
    };

    let mut tcp_bytes = vec![0u8; tcp.buffer_len()];
    tcp.emit(
        &mut TcpPacket::new_unchecked(&mut tcp_bytes),
        &Ipv4Address::UNSPECIFIED.into(),
        &Ipv4Address::new(127, 0, 0, 1).into(),
        &ChecksumCapabilities::default(),
    );

    let reply = iface.inner.process_tcp(
        &mut sockets,
        false,
        IpRepr::Ipv4(Ipv4Repr {
            src_addr: Ipv4Address::UNSPECIFIED,
            dst_addr: Ipv4Address::new(127, 0, 0, 1),
            next_header: IpProtocol::Tcp,
            payload_len: tcp.buffer_len(),
            hop_limit: 64,
        }),
        &tcp_bytes,
    );

    assert_eq!(reply, None);
    assert!(sockets.get_mut::<tcp::Socket>(handle).is_listening());
}

/// A SYN for port 1234 from 192.168.1.2, as an IPv4 packet.
#[cfg(all(feature = "medium-ip", feature = "socket-tcp", feature = "proto-ipv4"))]
fn tcp_syn_packet() -> Vec<u8> {
    tcp_syn_packet_from(65000)
}

/// A SYN to port 1234 from port `src_port` (tapir patch: the port chosen).
fn tcp_syn_packet_from(src_port: u16) -> Vec<u8> {
    let src_addr = Ipv4Address::new(192, 168, 1, 2);
    let dst_addr = Ipv4Address::new(192, 168, 1, 1);
    let tcp = TcpRepr {
        src_port,
        dst_port: 1234,
        control: TcpControl::Syn,
        seq_number: TcpSeqNumber(0),
        ack_number: None,
        window_len: 1024,
        window_scale: None,
        max_seg_size: Some(1460),
        sack_permitted: false,
        sack_ranges: [None, None, None],
        timestamp: None,
        payload: &[],
    };
    let ip = Ipv4Repr {
        src_addr,
        dst_addr,
        next_header: IpProtocol::Tcp,
        payload_len: tcp.buffer_len(),
        hop_limit: 64,
    };
    let mut bytes = vec![0u8; ip.buffer_len() + tcp.buffer_len()];
    let checksum = ChecksumCapabilities::default();
    let mut packet = Ipv4Packet::new_unchecked(&mut bytes[..]);
    ip.emit(&mut packet, &checksum);
    tcp.emit(
        &mut TcpPacket::new_unchecked(packet.payload_mut()),
        &src_addr.into(),
        &dst_addr.into(),
        &checksum,
    );
    bytes
}

#[test]
#[cfg(all(feature = "medium-ip", feature = "socket-tcp", feature = "proto-ipv4"))]
fn retransmitted_syn_goes_to_its_half_open_socket_not_to_another_listener() {
    use crate::socket::tcp;

    // tapir patch: two sockets listen on one port; the second took a SYN (it came to it
    // first: a hint here, a refilled pool's order in an application). The SYN's
    // retransmission (its SYN-ACK was lost) must reach that half-open socket, not the
    // listener earlier in the set, which would answer with a second ISN.
    let listening = |sockets: &mut SocketSet<'_>| {
        let mut socket = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; 64]),
            tcp::SocketBuffer::new(vec![0; 64]),
        );
        socket.listen(1234).unwrap();
        sockets.add(socket)
    };
    let state = |sockets: &SocketSet<'_>, handle| sockets.get::<tcp::Socket>(handle).state();
    let (mut iface, mut sockets, mut device) = setup(Medium::Ip);
    let first = listening(&mut sockets);
    let second = listening(&mut sockets);
    device.rx_queue.push_back(tcp_syn_packet());
    iface.poll_ingress_single_for(Instant::ZERO, &mut device, &mut sockets, second);
    assert_eq!(state(&sockets, second), tcp::State::SynReceived);

    device.rx_queue.push_back(tcp_syn_packet());
    iface.poll_ingress_single(Instant::from_millis(1000), &mut device, &mut sockets);
    assert_eq!(state(&sockets, first), tcp::State::Listen);
    assert_eq!(state(&sockets, second), tcp::State::SynReceived);

    // A SYN of another connection still goes to the free listener.
    let other = tcp_syn_packet_from(4321);
    device.rx_queue.push_back(other);
    iface.poll_ingress_single(Instant::from_millis(1000), &mut device, &mut sockets);
    assert_eq!(state(&sockets, first), tcp::State::SynReceived);
}

#[test]
#[cfg(all(feature = "medium-ip", feature = "socket-tcp", feature = "proto-ipv4"))]
fn tcp_segment_goes_to_the_hinted_socket_first() {
    use crate::socket::tcp;

    // Two sockets listen on the same port: without a hint the first one in the set takes
    // a SYN; with one the socket named takes it. A hint that names no socket, or a socket
    // that does not accept the segment, leaves the choice to the walk of the set.
    let listening = |sockets: &mut SocketSet<'_>| {
        let mut socket = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; 64]),
            tcp::SocketBuffer::new(vec![0; 64]),
        );
        socket.listen(1234).unwrap();
        sockets.add(socket)
    };
    let state = |sockets: &SocketSet<'_>, handle| sockets.get::<tcp::Socket>(handle).state();
    let (mut iface, mut sockets, mut device) = setup(Medium::Ip);
    let first = listening(&mut sockets);
    let second = listening(&mut sockets);

    device.rx_queue.push_back(tcp_syn_packet());
    iface.poll_ingress_single_for(Instant::ZERO, &mut device, &mut sockets, second);
    assert_eq!(state(&sockets, first), tcp::State::Listen);
    assert_eq!(state(&sockets, second), tcp::State::SynReceived);

    // A hint naming a closed socket, or a removed one, falls back to the walk of the
    // set, which finds `first` before `second` (the second SYN is the first one's
    // retransmission, for `first`, now in SYN-RECEIVED).
    let (mut iface, mut sockets, mut device) = setup(Medium::Ip);
    let first = listening(&mut sockets);
    let second = listening(&mut sockets);
    let mut closed = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; 64]),
        tcp::SocketBuffer::new(vec![0; 64]),
    );
    closed.abort();
    let closed = sockets.add(closed);
    let gone = sockets.add(tcp::Socket::new(
        tcp::SocketBuffer::new(vec![]),
        tcp::SocketBuffer::new(vec![]),
    ));
    sockets.remove(gone);
    for hint in [closed, gone] {
        device.rx_queue.push_back(tcp_syn_packet());
        iface.poll_ingress_single_for(Instant::ZERO, &mut device, &mut sockets, hint);
        assert_eq!(state(&sockets, first), tcp::State::SynReceived);
        assert_eq!(state(&sockets, second), tcp::State::Listen);
    }
    // Without a hint, as before.
    let (mut iface, mut sockets, mut device) = setup(Medium::Ip);
    let first = listening(&mut sockets);
    let second = listening(&mut sockets);
    device.rx_queue.push_back(tcp_syn_packet());
    iface.poll_ingress_single(Instant::ZERO, &mut device, &mut sockets);
    assert_eq!(state(&sockets, first), tcp::State::SynReceived);
    assert_eq!(state(&sockets, second), tcp::State::Listen);
}

#[test]
#[cfg(all(feature = "medium-ip", feature = "socket-tcp", feature = "proto-ipv4"))]
fn egress_and_timer_of_the_named_sockets_only() {
    use crate::socket::tcp;
    use crate::wire::{IpAddress, Ipv4Packet, TcpPacket};

    // tapir patch: `poll_egress_sockets` lets only the sockets it is given send, and
    // `poll_at_socket` gives one socket's share of `poll_at`.
    let (mut iface, mut sockets, mut device) = setup(Medium::Ip);
    let t0 = Instant::from_millis(1_000);
    let mut connecting = |port: u16| {
        let mut socket = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; 64]),
            tcp::SocketBuffer::new(vec![0; 64]),
        );
        socket
            .connect(iface.context(), (IpAddress::v4(192, 168, 1, 2), 80), port)
            .unwrap();
        socket
    };
    let (a, b) = (connecting(49_001), connecting(49_002));
    let a = sockets.add(a);
    let b = sockets.add(b);
    assert_eq!(sockets.handle_at(a.index()), Some(a));
    assert_eq!(sockets.handle_at(b.index()), Some(b));
    // Both SYNs are due: each socket's time, and the set's, is now.
    assert_eq!(iface.poll_at_socket(t0, &sockets, a), Some(Instant::ZERO));
    assert_eq!(iface.poll_at_socket(t0, &sockets, b), Some(Instant::ZERO));

    // Only `b` may send: one SYN, from its port; `a`'s stays due.
    iface.poll_egress_sockets(t0, &mut device, &mut sockets, [b]);
    let sent = recv_all(&mut device, t0);
    assert_eq!(sent.len(), 1);
    let ip = Ipv4Packet::new_checked(&sent[0][..]).unwrap();
    let syn = TcpPacket::new_checked(ip.payload()).unwrap();
    assert!(syn.syn());
    assert_eq!(syn.src_port(), 49_002);
    assert_eq!(iface.poll_at_socket(t0, &sockets, a), Some(Instant::ZERO));
    let retransmit = iface.poll_at_socket(t0, &sockets, b);
    assert!(retransmit.is_some_and(|at| at > t0));
    assert_eq!(iface.poll_at(t0, &sockets), Some(Instant::ZERO));

    // Nothing named, nothing sent; then `a` sends, and the set's time is the earliest of
    // its sockets'.
    iface.poll_egress_sockets(t0, &mut device, &mut sockets, []);
    assert!(recv_all(&mut device, t0).is_empty());
    iface.poll_egress_sockets(t0, &mut device, &mut sockets, [a]);
    assert_eq!(recv_all(&mut device, t0).len(), 1);
    let times = [a, b].map(|h| iface.poll_at_socket(t0, &sockets, h).unwrap());
    assert_eq!(iface.poll_at(t0, &sockets), times.into_iter().min());

    // A handle that names no socket any more: no time, skipped by the egress.
    sockets.remove(a);
    assert_eq!(sockets.handle_at(a.index()), None);
    assert_eq!(iface.poll_at_socket(t0, &sockets, a), None);
    iface.poll_egress_sockets(t0, &mut device, &mut sockets, [a]);
    assert!(recv_all(&mut device, t0).is_empty());
}
