//! Whole Ethernet frames into a stack with listeners: the server of the golden captures
//! (built-in site on port 80, MAC 02:00:00:00:00:02, 10.7.0.2, seed 1) on a replay device,
//! on the virtual clock. Seeds made from the golden captures replay whole conversations.
//!
//! Input: `[flags]` then records `[len: u16 BE] [delay: u16 BE, in 100 µs] [frame]`. Flag
//! bit 0 repairs each frame before delivery (unicast destination MAC set to the server's,
//! IPv4 header and TCP/UDP/ICMP checksums recomputed), so mutations get past the checksum
//! checks and reach TCP and HTTP.

use tapir::device::replay::{ReplayDevice, TimedFrame};
use tapir::replay::ExactConfig;
use tapir::runtime::sim::{Node, Sim, SimNode};
use tapir::smoltcp::time::Duration;
use tapir::smoltcp::wire::{
    EthernetAddress, Icmpv4Packet, Icmpv6Packet, IpAddress, IpProtocol, Ipv4Packet, Ipv6Packet,
    TcpPacket, UdpPacket,
};
use tapir::stack::Stack;

/// At most this many frames per input.
const MAX_FRAMES: usize = 512;

/// Encodes frames (each with its delay after the previous one) as a `frames` input.
pub fn encode(flags: u8, frames: &[(std::time::Duration, Vec<u8>)]) -> Vec<u8> {
    let mut out = vec![flags];
    for (delay, frame) in frames.iter().take(MAX_FRAMES) {
        let len = u16::try_from(frame.len()).unwrap_or(u16::MAX);
        let units = u16::try_from(delay.as_micros() / 100).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&units.to_be_bytes());
        out.extend_from_slice(&frame[..usize::from(len)]);
    }
    out
}

fn checksums(src: IpAddress, dst: IpAddress, protocol: IpProtocol, payload: &mut [u8]) {
    match protocol {
        IpProtocol::Tcp => {
            if let Ok(mut tcp) = TcpPacket::new_checked(payload) {
                tcp.fill_checksum(&src, &dst);
            }
        }
        IpProtocol::Udp => {
            if let Ok(mut udp) = UdpPacket::new_checked(payload) {
                udp.fill_checksum(&src, &dst);
            }
        }
        IpProtocol::Icmp => {
            if let Ok(mut icmp) = Icmpv4Packet::new_checked(payload) {
                icmp.fill_checksum();
            }
        }
        IpProtocol::Icmpv6 => {
            if let (IpAddress::Ipv6(s), IpAddress::Ipv6(d)) = (src, dst) {
                if let Ok(mut icmp) = Icmpv6Packet::new_checked(payload) {
                    icmp.fill_checksum(&s, &d);
                }
            }
        }
        _ => {}
    }
}

/// Points a unicast frame at `mac` and recomputes its checksums.
pub fn repair(frame: &mut [u8], mac: EthernetAddress) {
    if frame.len() < 14 {
        return;
    }
    if frame[0] & 1 == 0 {
        frame[..6].copy_from_slice(&mac.0);
    }
    let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
    let ip = &mut frame[14..];
    match ethertype {
        0x0800 => {
            if let Ok(mut packet) = Ipv4Packet::new_checked(ip) {
                packet.fill_checksum();
                let (src, dst) = (packet.src_addr(), packet.dst_addr());
                let protocol = packet.next_header();
                let fragment = packet.more_frags() || packet.frag_offset() != 0;
                if !fragment {
                    checksums(src.into(), dst.into(), protocol, packet.payload_mut());
                }
            }
        }
        0x86dd => {
            if let Ok(mut packet) = Ipv6Packet::new_checked(ip) {
                let (src, dst) = (packet.src_addr(), packet.dst_addr());
                let protocol = packet.next_header();
                checksums(src.into(), dst.into(), protocol, packet.payload_mut());
            }
        }
        _ => {}
    }
}

/// The target.
pub fn run(data: &[u8]) {
    let Some((&flags, mut rest)) = data.split_first() else {
        return;
    };
    let config = ExactConfig::default();
    let mut sim = Sim::new();
    let start = sim.now();
    let mut at = start;
    let mut input = Vec::new();
    while let [l0, l1, d0, d1, tail @ ..] = rest {
        if input.len() == MAX_FRAMES {
            break;
        }
        let len = usize::from(u16::from_be_bytes([*l0, *l1])).min(tail.len());
        let (frame, tail) = tail.split_at(len);
        rest = tail;
        at += Duration::from_micros(u64::from(u16::from_be_bytes([*d0, *d1])) * 100);
        let mut frame = frame.to_vec();
        if flags & 1 != 0 {
            repair(&mut frame, config.server_mac);
        }
        // The ingress inspection on its own, too.
        let _ = tapir::stack::inspect(&frame);
        input.push(TimedFrame { at, data: frame });
    }
    let fed = input.len() as u64;
    let mut device = ReplayDevice::new(input, config.mtu).expect("valid MTU");
    // A small backlog: every LISTEN socket holds both 64 KiB buffers, and the default 128
    // of them would be most of a run's time. The seeds' conversations do not change.
    let mut stack_config = config.stack_config();
    stack_config.tcp.backlog = 4;
    let mut stack = Stack::new(stack_config, &mut device, start).expect("stack");
    let server = config.server(&mut stack).expect("server");
    let mut node = Node::new(stack, device, server);
    // Every frame, then two seconds for the answers and timers.
    let limit = (at - start) + Duration::from_secs(2);
    let _ = sim.run_until(&mut [&mut node as &mut dyn SimNode], limit, |_| false);
    assert_eq!(node.device.remaining(), 0, "every frame was delivered");
    let stats = node.stack.stats();
    assert_eq!(stats.rx_frames, fed, "every frame was counted: {stats:?}");
    assert!(
        stats.rx_malformed + stats.rx_bad_checksum <= stats.rx_frames,
        "{stats:?}"
    );
    assert!(node.app.open_connections() <= stats.connections);
}
