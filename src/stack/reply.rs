//! TCP segments the stack sends on its own, outside smoltcp's sockets: challenge ACKs
//! (RFC 5961) and SYN cookie SYN-ACKs (RFC 4987). A reply goes back the way the segment it
//! answers came: MAC addresses, IP addresses and ports swapped, so it needs no neighbour
//! lookup and no socket.

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, IpAddress, IpProtocol,
    Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr, TcpPacket, TcpRepr,
};

/// A TCP segment received in an Ethernet frame (unfragmented IPv4, or IPv6 without
/// extension headers), with the addresses a reply needs.
pub struct Segment<'a> {
    /// The sender's MAC address (the peer, or the router it came through).
    pub eth_src: EthernetAddress,
    /// Our MAC address, as the sender used it.
    pub eth_dst: EthernetAddress,
    /// The sender's IP address.
    pub src: IpAddress,
    /// Our IP address.
    pub dst: IpAddress,
    /// The TCP header (checksums are not checked again: the ingress did).
    pub tcp: TcpRepr<'a>,
}

impl<'a> Segment<'a> {
    /// Parses `frame`; `None` when it is not such a TCP segment.
    pub fn parse(frame: &'a [u8]) -> Option<Segment<'a>> {
        let eth = EthernetFrame::new_checked(frame).ok()?;
        let (eth_src, eth_dst) = (eth.src_addr(), eth.dst_addr());
        let (src, dst, payload): (IpAddress, IpAddress, &'a [u8]) = match eth.ethertype() {
            EthernetProtocol::Ipv4 => {
                let ip =
                    Ipv4Packet::new_checked(&frame[EthernetFrame::<&[u8]>::header_len()..]).ok()?;
                if ip.next_header() != IpProtocol::Tcp || ip.more_frags() || ip.frag_offset() != 0 {
                    return None;
                }
                let (src, dst) = (ip.src_addr().into(), ip.dst_addr().into());
                let start = EthernetFrame::<&[u8]>::header_len() + usize::from(ip.header_len());
                let end = EthernetFrame::<&[u8]>::header_len() + usize::from(ip.total_len());
                (src, dst, frame.get(start..end)?)
            }
            EthernetProtocol::Ipv6 => {
                let ip =
                    Ipv6Packet::new_checked(&frame[EthernetFrame::<&[u8]>::header_len()..]).ok()?;
                if ip.next_header() != IpProtocol::Tcp {
                    return None;
                }
                let (src, dst) = (ip.src_addr().into(), ip.dst_addr().into());
                let start = EthernetFrame::<&[u8]>::header_len() + ip.header_len();
                let end = start + usize::from(ip.payload_len());
                (src, dst, frame.get(start..end)?)
            }
            _ => return None,
        };
        let packet = TcpPacket::new_checked(payload).ok()?;
        let tcp = TcpRepr::parse(&packet, &src, &dst, &ChecksumCapabilities::ignored()).ok()?;
        Some(Segment {
            eth_src,
            eth_dst,
            src,
            dst,
            tcp,
        })
    }

    /// The Ethernet frame carrying `tcp` back to the sender (ports are taken from `tcp`).
    pub fn reply(&self, tcp: &TcpRepr) -> Vec<u8> {
        let eth = EthernetRepr {
            src_addr: self.eth_dst,
            dst_addr: self.eth_src,
            ethertype: match self.src {
                IpAddress::Ipv4(_) => EthernetProtocol::Ipv4,
                IpAddress::Ipv6(_) => EthernetProtocol::Ipv6,
            },
        };
        let caps = ChecksumCapabilities::default();
        let tcp_len = tcp.buffer_len();
        let ip_len = match (self.dst, self.src) {
            (IpAddress::Ipv4(_), _) => 20,
            (IpAddress::Ipv6(_), _) => 40,
        };
        let mut frame = vec![0u8; eth.buffer_len() + ip_len + tcp_len];
        let mut out = EthernetFrame::new_unchecked(&mut frame[..]);
        eth.emit(&mut out);
        let ip_bytes = out.payload_mut();
        match (self.dst, self.src) {
            (IpAddress::Ipv4(ours), IpAddress::Ipv4(theirs)) => {
                let repr = Ipv4Repr {
                    src_addr: ours,
                    dst_addr: theirs,
                    next_header: IpProtocol::Tcp,
                    payload_len: tcp_len,
                    hop_limit: 64,
                };
                repr.emit(&mut Ipv4Packet::new_unchecked(&mut ip_bytes[..]), &caps);
            }
            (IpAddress::Ipv6(ours), IpAddress::Ipv6(theirs)) => {
                let repr = Ipv6Repr {
                    src_addr: ours,
                    dst_addr: theirs,
                    next_header: IpProtocol::Tcp,
                    payload_len: tcp_len,
                    hop_limit: 64,
                };
                repr.emit(&mut Ipv6Packet::new_unchecked(&mut ip_bytes[..]));
            }
            // A segment's two addresses are of one family.
            _ => return Vec::new(),
        }
        let mut packet = TcpPacket::new_unchecked(&mut ip_bytes[ip_len..]);
        tcp.emit(&mut packet, &self.dst, &self.src, &caps);
        frame
    }
}
