//! Broken frames fed to a stack: no panic, each counted and dropped, and the stack keeps
//! serving afterwards.

mod common;

use common::{config, linked, EchoClient, CLIENT_IP, SERVER_IP};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::time::Duration;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, IpAddress, IpEndpoint,
    IpProtocol, Ipv4Packet, Ipv4Repr, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber,
};
use tapir::app::echo::EchoServer;
use tapir::device::memlink::LinkConfig;
use tapir::runtime::sim::{Node, Sim, SimNode};
use tapir::stack::CookiePolicy;
use tapir::stack::{inspect, Verdict};

const SERVER_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 2]);
const CLIENT_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 1]);

/// A well-formed Ethernet/IPv4/TCP SYN to the server's port 7.
fn syn_frame(src_port: u16) -> Vec<u8> {
    tcp_frame(src_port, TcpControl::Syn, 1000, Some(1460))
}

/// A well-formed Ethernet/IPv4/TCP segment without payload from the client's `src_port`
/// to the server's port 7.
fn tcp_frame(src_port: u16, control: TcpControl, seq: i32, mss: Option<u16>) -> Vec<u8> {
    let tcp = TcpRepr {
        src_port,
        dst_port: 7,
        control,
        seq_number: TcpSeqNumber(seq),
        ack_number: None,
        window_len: 1024,
        window_scale: None,
        max_seg_size: mss,
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload: &[],
    };
    let ip = Ipv4Repr {
        src_addr: CLIENT_IP,
        dst_addr: SERVER_IP,
        next_header: IpProtocol::Tcp,
        payload_len: tcp.header_len(),
        hop_limit: 64,
    };
    let eth = EthernetRepr {
        src_addr: CLIENT_MAC,
        dst_addr: SERVER_MAC,
        ethertype: EthernetProtocol::Ipv4,
    };
    let mut buf = vec![0u8; eth.buffer_len() + ip.buffer_len() + tcp.header_len()];
    let mut frame = EthernetFrame::new_unchecked(&mut buf);
    eth.emit(&mut frame);
    let mut packet = Ipv4Packet::new_unchecked(frame.payload_mut());
    ip.emit(&mut packet, &ChecksumCapabilities::default());
    let mut segment = TcpPacket::new_unchecked(packet.payload_mut());
    tcp.emit(
        &mut segment,
        &IpAddress::Ipv4(CLIENT_IP),
        &IpAddress::Ipv4(SERVER_IP),
        &ChecksumCapabilities::default(),
    );
    buf
}

/// Frames that must be dropped as malformed, and ones that must be dropped for checksums.
fn broken_frames() -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let good = syn_frame(40000);
    assert_eq!(inspect(&good), Verdict::Syn(7), "the template is valid");
    let mut malformed = vec![
        vec![],
        vec![0xff; 6],
        good[..13].to_vec(),          // truncated Ethernet header
        good[..14 + 10].to_vec(),     // truncated IPv4 header
        good[..14 + 20 + 8].to_vec(), // truncated TCP header
    ];
    let mut bad_ihl = good.clone();
    bad_ihl[14] = 0x4f; // header length 60 > what the packet holds for options
    bad_ihl[16..18].copy_from_slice(&30u16.to_be_bytes()); // total length < header length
    malformed.push(bad_ihl);
    let mut long_total = good.clone();
    long_total[16..18].copy_from_slice(&1400u16.to_be_bytes()); // claims more than present
    malformed.push(long_total);

    let mut checksums = Vec::new();
    let mut ip_sum = good.clone();
    ip_sum[24] ^= 0xff; // IPv4 header checksum
    checksums.push(ip_sum);
    let mut tcp_sum = good.clone();
    let last = tcp_sum.len() - 1;
    tcp_sum[last] ^= 0x01; // inside the TCP header (options), checksum now wrong
    checksums.push(tcp_sum);
    let mut tcp_field = good;
    tcp_field[14 + 20 + 16] ^= 0x55; // the TCP checksum field itself
    checksums.push(tcp_field);
    (malformed, checksums)
}

#[test]
fn broken_frames_are_counted_and_dropped_and_the_stack_keeps_serving() {
    let mut sim = Sim::new();
    let (mut s_stack, mut s_dev, mut c_stack, c_dev) = linked(
        LinkConfig::default(),
        config(SERVER_IP, 2, 5),
        config(CLIENT_IP, 1, 6),
        &sim,
    );
    let echo = EchoServer::bind(&mut s_stack, 7).unwrap();
    let (malformed, checksums) = broken_frames();
    for frame in malformed.iter().chain(&checksums) {
        s_dev.inject(frame, sim.now());
    }
    // Random garbage behind a valid Ethernet header with the IPv4 and IPv6 ethertypes.
    let mut rng = fastrand::Rng::with_seed(99);
    let mut garbage_ip = 0;
    for i in 0..2000 {
        let len = rng.usize(0..200);
        let mut frame = vec![0u8; 14 + len];
        frame[..6].copy_from_slice(&SERVER_MAC.0);
        frame[6..12].copy_from_slice(&CLIENT_MAC.0);
        frame[12..14].copy_from_slice(if i % 2 == 0 {
            &[0x08, 0x00]
        } else {
            &[0x86, 0xdd]
        });
        rng.fill(&mut frame[14..]);
        if inspect(&frame) != Verdict::Pass {
            garbage_ip += 1;
        }
        s_dev.inject(&frame, sim.now());
    }
    let mut server = Node::new(s_stack, s_dev, echo);
    let client = EchoClient::connect(
        &mut c_stack,
        IpEndpoint::new(IpAddress::Ipv4(SERVER_IP), 7),
        3,
        100_000,
    );
    let mut client = Node::new(c_stack, c_dev, client);
    sim.run_until(
        &mut [&mut server as &mut dyn SimNode, &mut client],
        Duration::from_secs(120),
        |nodes| nodes[1].finished(),
    )
    .expect("echo still works after the garbage");
    assert!(client.app.failures.is_empty(), "{:?}", client.app.failures);
    for (sent, sent_hash, received, recv_hash) in client.app.results() {
        assert_eq!((sent, received), (100_000, 100_000));
        assert_eq!(sent_hash, recv_hash);
    }
    let stats = server.stack.stats();
    assert!(stats.rx_malformed >= malformed.len() as u64, "{stats:?}");
    assert!(stats.rx_bad_checksum >= checksums.len() as u64, "{stats:?}");
    assert_eq!(
        stats.rx_malformed + stats.rx_bad_checksum,
        malformed.len() as u64 + checksums.len() as u64 + garbage_ip,
        "every broken frame is counted exactly once: {stats:?}"
    );
    assert_eq!(stats.accepted, 3, "no garbage frame became a connection");
}

#[test]
fn syn_flood_fills_the_backlog_and_the_server_recovers() {
    // Without SYN cookies the flood holds the backlog until its half-open sockets are
    // freed. The flood's SYNs carry the client's address, so the SYN-ACKs reach the
    // client's stack, which knows no such connections and resets each: the slots come
    // back at once, not at the handshake timeout.
    let stats = syn_flood_then_two_clients(CookiePolicy::Never);
    assert!(stats.syn_dropped >= 200 - 16, "{stats:?}");
    assert_eq!(
        (
            stats.handshake_resets,
            stats.handshake_timeouts + stats.handshake_unresolved
        ),
        (16, 0),
        "{stats:?}"
    );
    assert_eq!(stats.accepted, 2);
}

#[test]
fn syn_flood_past_the_backlog_is_answered_with_cookies() {
    // With the default policy, SYNs past the full backlog get cookies: none is dropped and
    // the real clients' handshakes complete from the cookie their ACK returns.
    let stats = syn_flood_then_two_clients(CookiePolicy::Overflow);
    assert_eq!(stats.syn_dropped, 0, "{stats:?}");
    assert!(stats.cookies_sent >= 200 - 16, "{stats:?}");
    assert_eq!(stats.cookies_rejected, 0, "{stats:?}");
    assert_eq!(stats.accepted, 2);
}

/// 200 SYNs from ports nobody answers for (the handshakes never complete) against a
/// backlog of 16, then two real clients echo 10,000 bytes each.
fn syn_flood_then_two_clients(cookies: CookiePolicy) -> tapir::stack::StackStats {
    let mut sim = Sim::new();
    let mut server_config = config(SERVER_IP, 2, 7);
    server_config.tcp.backlog = 16;
    server_config.tcp.handshake_timeout = Duration::from_secs(3);
    server_config.tcp.syn_cookies = cookies;
    let (mut s_stack, mut s_dev, mut c_stack, c_dev) = linked(
        LinkConfig::default(),
        server_config,
        config(CLIENT_IP, 1, 8),
        &sim,
    );
    let echo = EchoServer::bind(&mut s_stack, 7).unwrap();
    for port in 0..200u16 {
        s_dev.inject(&syn_frame(20000 + port), sim.now());
    }
    let mut server = Node::new(s_stack, s_dev, echo);
    let client = EchoClient::connect(
        &mut c_stack,
        IpEndpoint::new(IpAddress::Ipv4(SERVER_IP), 7),
        2,
        10_000,
    );
    let mut client = Node::new(c_stack, c_dev, client);
    sim.run_until(
        &mut [&mut server as &mut dyn SimNode, &mut client],
        Duration::from_secs(120),
        |nodes| nodes[1].finished(),
    )
    .expect("the real clients get through");
    assert!(client.app.failures.is_empty(), "{:?}", client.app.failures);
    server.stack.stats()
}

/// RFC 5961: an RST whose sequence number is inside the receive window but not exactly the
/// next expected one must not close the connection (smoltcp alone closes it). Blind RSTs
/// spread over the whole sequence space, some of which land in the window, leave an echo
/// in progress intact.
#[test]
fn blind_rsts_in_the_window_do_not_reset_a_connection() {
    let mut sim = Sim::new();
    let (mut s_stack, s_dev, mut c_stack, c_dev) = linked(
        LinkConfig {
            // Room for all the injected RSTs at once.
            queue_limit: 300_000,
            ..LinkConfig::default()
        },
        config(SERVER_IP, 2, 11),
        config(CLIENT_IP, 1, 12),
        &sim,
    );
    let echo = EchoServer::bind(&mut s_stack, 7).unwrap();
    let client = EchoClient::connect(
        &mut c_stack,
        IpEndpoint::new(IpAddress::Ipv4(SERVER_IP), 7),
        1,
        4_000_000,
    );
    // The client's ephemeral port, from the diagnostics line of its one connection.
    let line = c_stack
        .describe_connections()
        .pop()
        .expect("one connection");
    let port: u16 = line
        .split(" -> ")
        .next()
        .and_then(|l| l.rsplit("port: ").next())
        .and_then(|p| p.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no local port in {line}"));
    let mut server = Node::new(s_stack, s_dev, echo);
    let mut client = Node::new(c_stack, c_dev, client);
    // Let the echo get going (a few steps: the in-memory link moves it at once).
    let mut steps = 0;
    let _ = sim.run_until(
        &mut [&mut server as &mut dyn SimNode, &mut client],
        Duration::from_secs(1),
        |_| {
            steps += 1;
            steps > 20
        },
    );
    assert!(!client.finished(), "the echo must still be running");
    // One RST every 16 KiB of sequence space: several fall inside a 64 KiB window.
    for k in 0..(1u64 << 32) / 16384 {
        let seq = (k * 16384 + 7777) as u32 as i32;
        server
            .device
            .inject(&tcp_frame(port, TcpControl::Rst, seq, None), sim.now());
    }
    sim.run_until(
        &mut [&mut server as &mut dyn SimNode, &mut client],
        Duration::from_secs(120),
        |nodes| nodes[1].finished(),
    )
    .expect("the echo finishes");
    assert!(client.app.failures.is_empty(), "{:?}", client.app.failures);
    let (sent, sent_hash, received, recv_hash) = client.app.results()[0];
    assert_eq!((sent, received), (4_000_000, 4_000_000));
    assert_eq!(sent_hash, recv_hash);
    let stats = server.stack.stats();
    assert_eq!(stats.rst_dropped, (1u64 << 32) / 16384, "{stats:?}");
}

#[test]
fn unusable_stack_settings_are_clear_errors() {
    use tapir::device::memlink;
    let (mut dev, _peer) = memlink::pair(LinkConfig::default()).unwrap();
    let now = Sim::new().now();
    let mut too_big = config(SERVER_IP, 2, 1);
    too_big.tcp.tx_buffer = (1 << 30) + 1;
    let err = tapir::stack::Stack::new(too_big, &mut dev, now)
        .err()
        .expect("refused");
    assert!(err.to_string().contains("at most 1024 MiB"), "{err}");
    let mut no_backlog = config(SERVER_IP, 2, 1);
    no_backlog.tcp.backlog = 0;
    assert!(tapir::stack::Stack::new(no_backlog, &mut dev, now).is_err());
    let mut multicast = config(SERVER_IP, 2, 1);
    multicast.mac = EthernetAddress([0x01, 0, 0x5e, 0, 0, 1]);
    assert!(tapir::stack::Stack::new(multicast, &mut dev, now).is_err());
}
