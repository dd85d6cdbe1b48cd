//! The virtio-net header that a TAP device opened with `IFF_VNET_HDR` puts in front of
//! every frame, and the offloads it carries (see `linux/virtio_net.h` and `linux/if_tun.h`).
//!
//! With the offloads the kernel accepted (`TUNSETOFFLOAD`), a TCP frame goes out with a
//! partial checksum (`NEEDS_CSUM`: the TCP checksum field holds the pseudo-header sum, the
//! kernel or the receiver completes it) and, when larger than the peer's MSS, with
//! `gso_type`/`gso_size` so the kernel sees one 64 KB packet and segments it itself (or
//! never: a local receiver takes it whole). Frames from the kernel may be 64 KB super-frames
//! and may carry `DATA_VALID` (checksum already verified) or `NEEDS_CSUM` (generated on
//! this host, checksum never computed); those are marked with
//! [`PacketMeta::checksum_valid`](smoltcp::phy::PacketMeta) so that the stack's ingress
//! check skips them, and every other frame is still checked in software.
//!
//! Everything here is pure byte work on a header and a frame; opening the device is in
//! [`super::tap`].

use std::io;
use std::num::NonZeroU16;

use smoltcp::phy::{Checksum, DeviceCapabilities};
use smoltcp::wire::{
    checksum, EthernetFrame, EthernetProtocol, IpAddress, IpProtocol, Ipv4Packet, Ipv6Packet,
    TcpPacket,
};

use super::{ETHERNET_HEADER_LEN, MAX_MTU};

/// Bytes of virtio-net header in front of every frame (`struct virtio_net_hdr_v1`, set
/// with `TUNSETVNETHDRSZ`; the last two bytes, `num_buffers`, are unused on a TAP).
pub const HDR_LEN: usize = 12;

/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: checksum from `csum_start` on, stored at `csum_offset`.
const F_NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_F_DATA_VALID`: the checksum was verified.
const F_DATA_VALID: u8 = 2;
/// `VIRTIO_NET_HDR_GSO_TCPV4`.
const GSO_TCPV4: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_TCPV6`.
const GSO_TCPV6: u8 = 4;
/// Offset of the checksum field in a TCP header.
const TCP_CHECKSUM_OFFSET: usize = 16;

/// The largest frame (Ethernet header included) handed to the kernel for segmentation:
/// an IP packet of 64 KiB less one byte.
pub const MAX_SUPER_FRAME: usize = ETHERNET_HEADER_LEN + MAX_MTU;

/// The largest frame the kernel may hand us: a VLAN tag, an IPv6 header and the largest
/// payload its length field holds (the kernel keeps GSO packets below 64 KiB, so this is
/// a bound with room to spare).
pub const MAX_RX_FRAME: usize = ETHERNET_HEADER_LEN + 4 + 40 + MAX_MTU;

/// Offloads in use on a TAP device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Offloads {
    /// Partial checksums both ways (`TUN_F_CSUM`).
    pub csum: bool,
    /// TCP segmentation of IPv4 packets (`TUN_F_TSO4`).
    pub tso4: bool,
    /// TCP segmentation of IPv6 packets (`TUN_F_TSO6`).
    pub tso6: bool,
}

impl Offloads {
    /// Every offload tapir uses.
    pub const ALL: Offloads = Offloads {
        csum: true,
        tso4: true,
        tso6: true,
    };
    /// Checksum offload alone.
    pub const CSUM: Offloads = Offloads {
        csum: true,
        tso4: false,
        tso6: false,
    };
    /// None: plain frames (the header is all zeroes).
    pub const NONE: Offloads = Offloads {
        csum: false,
        tso4: false,
        tso6: false,
    };

    /// The `TUNSETOFFLOAD` argument.
    pub fn tun_flags(self) -> libc::c_uint {
        let mut flags = 0;
        if self.csum {
            flags |= libc::TUN_F_CSUM;
        }
        if self.tso4 {
            flags |= libc::TUN_F_TSO4;
        }
        if self.tso6 {
            flags |= libc::TUN_F_TSO6;
        }
        flags
    }

    /// Tells smoltcp what the device does for it. With checksum offload, TCP checksums are
    /// neither computed on send (the kernel completes them) nor verified by smoltcp on
    /// receive, and neither are UDP checksums on receive (the kernel may hand over partial
    /// ones): the stack's ingress checks each frame not marked `checksum_valid`.
    pub fn apply(self, caps: &mut DeviceCapabilities) {
        if !self.csum {
            return;
        }
        caps.checksum.tcp = Checksum::None;
        caps.checksum.udp = Checksum::Tx;
        let super_frame = std::num::NonZeroUsize::new(MAX_SUPER_FRAME);
        if self.tso4 {
            caps.segmentation.tcpv4 = super_frame;
        }
        if self.tso6 {
            caps.segmentation.tcpv6 = super_frame;
        }
    }
}

impl std::fmt::Display for Offloads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = [
            (self.csum, "csum"),
            (self.tso4, "tso4"),
            (self.tso6, "tso6"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect();
        if names.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&names.join("+"))
        }
    }
}

/// Asks the kernel for `wanted` through `set_offload` (`TUNSETOFFLOAD`), then for checksum
/// offload alone, then for nothing, and returns what it accepted. Each refusal is logged.
/// TSO without checksum offload is never asked for: the kernel requires both.
pub fn negotiate(
    wanted: Offloads,
    mut set_offload: impl FnMut(libc::c_uint) -> io::Result<()>,
) -> Offloads {
    let mut tries = vec![wanted];
    if wanted.csum && wanted != Offloads::CSUM {
        tries.push(Offloads::CSUM);
    }
    for offloads in tries {
        if !offloads.csum {
            break;
        }
        match set_offload(offloads.tun_flags()) {
            Ok(()) => return offloads,
            Err(e) => tracing::warn!("TAP: the kernel refused offloads {offloads}: {e}"),
        }
    }
    if let Err(e) = set_offload(0) {
        tracing::warn!("TAP: clearing offloads failed: {e}");
    }
    Offloads::NONE
}

/// Whether a received frame's header says its transport checksum needs no check.
pub fn rx_checksum_valid(header: &[u8]) -> bool {
    header
        .first()
        .is_some_and(|flags| flags & (F_NEEDS_CSUM | F_DATA_VALID) != 0)
}

/// Where the TCP segment of an Ethernet frame is.
struct TcpAt {
    /// Offset of the TCP header in the frame.
    start: usize,
    /// Bytes of TCP header and payload.
    len: usize,
    /// Bytes of TCP header.
    header_len: usize,
    src: IpAddress,
    dst: IpAddress,
    v6: bool,
}

/// Finds the TCP segment of an unfragmented IPv4 or IPv6 (no extension headers) frame.
fn locate_tcp(frame: &[u8]) -> Option<TcpAt> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let (ip_header_len, len, src, dst, v6) = match eth.ethertype() {
        EthernetProtocol::Ipv4 => {
            let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
            if ip.next_header() != IpProtocol::Tcp || ip.more_frags() || ip.frag_offset() != 0 {
                return None;
            }
            let header_len = usize::from(ip.header_len());
            (
                header_len,
                usize::from(ip.total_len()).checked_sub(header_len)?,
                IpAddress::Ipv4(ip.src_addr()),
                IpAddress::Ipv4(ip.dst_addr()),
                false,
            )
        }
        EthernetProtocol::Ipv6 => {
            let ip = Ipv6Packet::new_checked(eth.payload()).ok()?;
            if ip.next_header() != IpProtocol::Tcp {
                return None;
            }
            (
                ip.header_len(),
                usize::from(ip.payload_len()),
                IpAddress::Ipv6(ip.src_addr()),
                IpAddress::Ipv6(ip.dst_addr()),
                true,
            )
        }
        _ => return None,
    };
    let start = ETHERNET_HEADER_LEN + ip_header_len;
    let tcp = TcpPacket::new_checked(frame.get(start..start + len)?).ok()?;
    Some(TcpAt {
        start,
        len,
        header_len: tcp.header_len().into(),
        src,
        dst,
        v6,
    })
}

/// Writes the header for an outgoing frame. With checksum offload, a TCP frame gets
/// `NEEDS_CSUM` and the pseudo-header sum in its checksum field; with `gso_size` (the
/// MSS smoltcp asked the device to segment at) and TSO for its IP version, the GSO fields
/// too. Any other frame goes out with an all-zero header, its checksums computed by smoltcp.
pub fn prepare_tx(
    header: &mut [u8],
    frame: &mut [u8],
    offloads: Offloads,
    gso_size: Option<NonZeroU16>,
) {
    header.fill(0);
    if !offloads.csum {
        return;
    }
    let Some(tcp) = locate_tcp(frame) else {
        return;
    };
    let Ok(csum_start) = u16::try_from(tcp.start) else {
        return;
    };
    let Ok(tcp_len) = u32::try_from(tcp.len) else {
        return;
    };
    let sum = checksum::pseudo_header(&tcp.src, &tcp.dst, IpProtocol::Tcp, tcp_len);
    let field = tcp.start + TCP_CHECKSUM_OFFSET;
    frame[field..field + 2].copy_from_slice(&sum.to_be_bytes());
    header[0] = F_NEEDS_CSUM;
    header[6..8].copy_from_slice(&csum_start.to_le_bytes());
    header[8..10].copy_from_slice(&(TCP_CHECKSUM_OFFSET as u16).to_le_bytes());
    let tso = if tcp.v6 { offloads.tso6 } else { offloads.tso4 };
    if let (Some(size), true) = (gso_size, tso) {
        let Ok(hdr_len) = u16::try_from(tcp.start + tcp.header_len) else {
            return;
        };
        header[1] = if tcp.v6 { GSO_TCPV6 } else { GSO_TCPV4 };
        header[2..4].copy_from_slice(&hdr_len.to_le_bytes());
        header[4..6].copy_from_slice(&size.get().to_le_bytes());
    }
}

/// Computes the full TCP checksum of a frame in place (for a capture of offloaded frames).
/// Returns false, leaving the frame alone, when it holds no whole, unfragmented TCP segment.
pub fn complete_tcp_checksum(frame: &mut [u8]) -> bool {
    let Some(tcp) = locate_tcp(frame) else {
        return false;
    };
    let mut packet = TcpPacket::new_unchecked(&mut frame[tcp.start..tcp.start + tcp.len]);
    packet.fill_checksum(&tcp.src, &tcp.dst);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::wire::{EthernetAddress, EthernetRepr, Ipv4Address, Ipv4Repr, TcpControl};
    use smoltcp::wire::{TcpRepr, TcpSeqNumber};

    const SRC: Ipv4Address = Ipv4Address::new(10, 7, 0, 2);
    const DST: Ipv4Address = Ipv4Address::new(10, 7, 0, 1);

    /// An Ethernet/IPv4/TCP frame with `payload` and a correct checksum.
    fn tcp_frame(payload: &[u8]) -> Vec<u8> {
        let tcp = TcpRepr {
            src_port: 80,
            dst_port: 40000,
            control: TcpControl::Psh,
            seq_number: TcpSeqNumber(1),
            ack_number: Some(TcpSeqNumber(1)),
            window_len: 1000,
            window_scale: None,
            max_seg_size: None,
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamp: None,
            payload,
        };
        let ip = Ipv4Repr {
            src_addr: SRC,
            dst_addr: DST,
            next_header: IpProtocol::Tcp,
            payload_len: tcp.buffer_len(),
            hop_limit: 64,
        };
        let eth = EthernetRepr {
            src_addr: EthernetAddress([2, 0, 0, 0, 0, 1]),
            dst_addr: EthernetAddress([2, 0, 0, 0, 0, 2]),
            ethertype: EthernetProtocol::Ipv4,
        };
        let mut frame = vec![0; ETHERNET_HEADER_LEN + ip.buffer_len() + tcp.buffer_len()];
        let caps = smoltcp::phy::ChecksumCapabilities::default();
        let mut eth_frame = EthernetFrame::new_unchecked(&mut frame[..]);
        eth.emit(&mut eth_frame);
        let mut ip_packet = Ipv4Packet::new_unchecked(eth_frame.payload_mut());
        ip.emit(&mut ip_packet, &caps);
        let mut tcp_packet = TcpPacket::new_unchecked(ip_packet.payload_mut());
        tcp.emit(&mut tcp_packet, &SRC.into(), &DST.into(), &caps);
        frame
    }

    fn le16(b: &[u8]) -> u16 {
        u16::from_le_bytes([b[0], b[1]])
    }

    #[test]
    fn tcp_frame_gets_a_partial_checksum_and_gso_fields() {
        let payload = vec![7u8; 3000];
        let full = tcp_frame(&payload);
        let mut frame = full.clone();
        let mut header = [0xffu8; HDR_LEN];
        prepare_tx(
            &mut header,
            &mut frame,
            Offloads::ALL,
            NonZeroU16::new(1460),
        );
        assert_eq!(header[0], F_NEEDS_CSUM);
        assert_eq!(header[1], GSO_TCPV4);
        assert_eq!(le16(&header[2..]), 14 + 20 + 20, "hdr_len");
        assert_eq!(le16(&header[4..]), 1460, "gso_size");
        assert_eq!(le16(&header[6..]), 14 + 20, "csum_start");
        assert_eq!(le16(&header[8..]), 16, "csum_offset");
        let tcp = TcpPacket::new_checked(&frame[34..]).unwrap();
        assert!(tcp.verify_partial_checksum(&SRC.into(), &DST.into()));
        // Completing it gives back the frame smoltcp would have sent with checksums on.
        assert!(complete_tcp_checksum(&mut frame));
        assert_eq!(frame, full);
    }

    #[test]
    fn no_gso_without_tso_or_size_and_nothing_without_csum() {
        let mut frame = tcp_frame(b"hello");
        let mut header = [0u8; HDR_LEN];
        prepare_tx(
            &mut header,
            &mut frame,
            Offloads::CSUM,
            NonZeroU16::new(1460),
        );
        assert_eq!((header[0], header[1]), (F_NEEDS_CSUM, 0));
        prepare_tx(&mut header, &mut frame, Offloads::ALL, None);
        assert_eq!((header[0], header[1]), (F_NEEDS_CSUM, 0));
        let before = tcp_frame(b"hello");
        let mut frame = before.clone();
        prepare_tx(
            &mut header,
            &mut frame,
            Offloads::NONE,
            NonZeroU16::new(1460),
        );
        assert_eq!(header, [0; HDR_LEN]);
        assert_eq!(frame, before);
    }

    #[test]
    fn non_tcp_frames_get_an_empty_header() {
        let mut frame = vec![0u8; 60];
        frame[12..14].copy_from_slice(&[0x08, 0x06]); // ARP
        let before = frame.clone();
        let mut header = [1u8; HDR_LEN];
        prepare_tx(&mut header, &mut frame, Offloads::ALL, None);
        assert_eq!(header, [0; HDR_LEN]);
        assert_eq!(frame, before);
        assert!(!complete_tcp_checksum(&mut frame));
    }

    #[test]
    fn rx_flags() {
        assert!(rx_checksum_valid(&[F_DATA_VALID, 0]));
        assert!(rx_checksum_valid(&[F_NEEDS_CSUM, GSO_TCPV4]));
        assert!(!rx_checksum_valid(&[0, 0]));
        assert!(!rx_checksum_valid(&[]));
    }

    /// A fake `TUNSETOFFLOAD` that refuses any flag in `refused`, recording each call.
    fn fake(
        refused: libc::c_uint,
        calls: &mut Vec<libc::c_uint>,
    ) -> impl FnMut(libc::c_uint) -> io::Result<()> + '_ {
        move |flags| {
            calls.push(flags);
            if flags & refused != 0 {
                Err(io::Error::from_raw_os_error(libc::EINVAL))
            } else {
                Ok(())
            }
        }
    }

    #[test]
    fn negotiation_takes_everything_offered() {
        let mut calls = vec![];
        assert_eq!(negotiate(Offloads::ALL, fake(0, &mut calls)), Offloads::ALL);
        assert_eq!(calls, [Offloads::ALL.tun_flags()]);
    }

    #[test]
    fn negotiation_falls_back_to_checksums_when_tso_is_refused() {
        let mut calls = vec![];
        let got = negotiate(Offloads::ALL, fake(libc::TUN_F_TSO6, &mut calls));
        assert_eq!(got, Offloads::CSUM);
        assert_eq!(calls, [Offloads::ALL.tun_flags(), libc::TUN_F_CSUM]);
    }

    #[test]
    fn negotiation_falls_back_to_plain_frames_when_all_is_refused() {
        let mut calls = vec![];
        let got = negotiate(Offloads::ALL, fake(libc::TUN_F_CSUM, &mut calls));
        assert_eq!(got, Offloads::NONE);
        assert_eq!(calls, [Offloads::ALL.tun_flags(), libc::TUN_F_CSUM, 0]);
        let mut calls = vec![];
        assert_eq!(
            negotiate(Offloads::NONE, fake(0, &mut calls)),
            Offloads::NONE
        );
        assert_eq!(calls, [0]);
    }

    #[test]
    fn capabilities_follow_the_offloads() {
        let mut caps = crate::device::ethernet_caps(1500);
        Offloads::CSUM.apply(&mut caps);
        assert!(!caps.checksum.tcp.tx() && !caps.checksum.tcp.rx());
        assert!(caps.checksum.udp.tx() && !caps.checksum.udp.rx());
        assert!(caps.segmentation.tcpv4.is_none());
        Offloads::ALL.apply(&mut caps);
        assert_eq!(
            caps.segmentation.tcpv4.map(|n| n.get()),
            Some(MAX_SUPER_FRAME)
        );
        let mut plain = crate::device::ethernet_caps(1500);
        Offloads::NONE.apply(&mut plain);
        assert!(plain.checksum.tcp.tx() && plain.checksum.tcp.rx());
    }
}
