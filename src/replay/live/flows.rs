//! TCP flows of a capture, sans-IO: frames in, reassembled byte streams out.
//!
//! A flow is a TCP connection identified by its 4-tuple; its client is the side that sent
//! the SYN. Each direction's bytes are put back in order by sequence number, coping with
//! retransmissions, out-of-order and overlapping segments; the first hole that is never
//! filled ends that direction's stream. Frames cut by the snap length contribute the bytes
//! they hold; the rest counts as lost. Nothing here panics on bad input: frames that do not
//! parse are counted and noted.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use smoltcp::wire::{
    EthernetFrame, EthernetProtocol, IpProtocol, Ipv4Packet, Ipv6ExtHeader, Ipv6Packet, TcpPacket,
};

use crate::device::pcap_reader::CapturedFrame;

/// TCP flag bits.
const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const ACK: u8 = 0x10;

/// One TCP segment as found in a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Sender.
    pub src: SocketAddr,
    /// Receiver.
    pub dst: SocketAddr,
    /// Sequence number.
    pub seq: u32,
    /// Flags byte (FIN 0x01, SYN 0x02, RST 0x04, ACK 0x10).
    pub flags: u8,
    /// The payload bytes the frame holds.
    pub payload: Vec<u8>,
    /// Payload bytes the segment carried but the capture cut off (snap length).
    pub missing: usize,
}

/// Why a frame is not a TCP segment we can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotTcp {
    /// Not IPv4 or IPv6 (ARP, LLDP, ...), or not TCP (ICMP, UDP, ...): ignored quietly.
    Other,
    /// An IP fragment: not reassembled.
    Fragment,
    /// Too short or inconsistent headers.
    Malformed,
}

/// Parses the TCP segment in an Ethernet frame (VLAN tags skipped), with smoltcp's wire
/// types. A frame cut by the snap length must still hold the IP and TCP headers; the
/// payload bytes it lacks are counted in [`Segment::missing`].
pub fn parse_segment(frame: &[u8]) -> Result<Segment, NotTcp> {
    let ethernet = EthernetFrame::new_checked(frame).map_err(|_| NotTcp::Malformed)?;
    let mut ethertype = ethernet.ethertype();
    let mut ip = ethernet.payload();
    // 802.1Q and 802.1ad tags: 2 bytes of tag control, then the inner ethertype.
    while matches!(ethertype, EthernetProtocol::Unknown(0x8100 | 0x88a8)) {
        let inner = ip.get(2..4).ok_or(NotTcp::Malformed)?;
        ethertype = EthernetProtocol::from(u16::from_be_bytes([inner[0], inner[1]]));
        ip = ip.get(4..).ok_or(NotTcp::Malformed)?;
    }
    match ethertype {
        EthernetProtocol::Ipv4 => ipv4_segment(ip),
        EthernetProtocol::Ipv6 => ipv6_segment(ip),
        _ => Err(NotTcp::Other),
    }
}

/// The bytes of an IP packet of `declared` bytes, zero-filled past what the capture holds
/// (smoltcp checks a packet against its declared length), and how many were filled.
fn whole_packet(present: &[u8], declared: usize) -> (Cow<'_, [u8]>, usize) {
    match declared.checked_sub(present.len()) {
        None | Some(0) => (Cow::Borrowed(present), 0),
        Some(missing) => {
            let mut filled = present.to_vec();
            filled.resize(declared, 0);
            (Cow::Owned(filled), missing)
        }
    }
}

fn ipv4_segment(ip: &[u8]) -> Result<Segment, NotTcp> {
    // The fixed header must be there before any field is read.
    if ip.len() < 20 {
        return Err(NotTcp::Malformed);
    }
    let declared = usize::from(Ipv4Packet::new_unchecked(ip).total_len());
    let (bytes, missing) = whole_packet(ip, declared);
    let packet = Ipv4Packet::new_checked(&*bytes).map_err(|_| NotTcp::Malformed)?;
    if packet.version() != 4 {
        return Err(NotTcp::Malformed);
    }
    if packet.next_header() != IpProtocol::Tcp {
        return Err(NotTcp::Other);
    }
    if packet.more_frags() || packet.frag_offset() != 0 {
        return Err(NotTcp::Fragment);
    }
    let header_len = usize::from(packet.header_len());
    let (src, dst) = (packet.src_addr(), packet.dst_addr());
    tcp_segment(
        IpAddr::V4(src),
        IpAddr::V4(dst),
        packet.payload(),
        ip.len().saturating_sub(header_len),
        missing,
    )
}

fn ipv6_segment(ip: &[u8]) -> Result<Segment, NotTcp> {
    if ip.len() < 40 {
        return Err(NotTcp::Malformed);
    }
    let declared = 40 + usize::from(Ipv6Packet::new_unchecked(ip).payload_len());
    let (bytes, missing) = whole_packet(ip, declared);
    let packet = Ipv6Packet::new_checked(&*bytes).map_err(|_| NotTcp::Malformed)?;
    if packet.version() != 6 {
        return Err(NotTcp::Malformed);
    }
    let (src, dst) = (packet.src_addr(), packet.dst_addr());
    let mut next = packet.next_header();
    let mut rest = packet.payload();
    // Skip hop-by-hop, routing and destination options headers.
    while matches!(
        next,
        IpProtocol::HopByHop | IpProtocol::Ipv6Route | IpProtocol::Ipv6Opts
    ) {
        let ext = Ipv6ExtHeader::new_checked(rest).map_err(|_| NotTcp::Malformed)?;
        next = ext.next_header();
        rest = rest
            .get(ext.payload().len() + 2..)
            .ok_or(NotTcp::Malformed)?;
    }
    match next {
        IpProtocol::Ipv6Frag => Err(NotTcp::Fragment),
        IpProtocol::Tcp => {
            let headers = declared - rest.len();
            tcp_segment(
                IpAddr::V6(src),
                IpAddr::V6(dst),
                rest,
                ip.len().saturating_sub(headers),
                missing,
            )
        }
        _ => Err(NotTcp::Other),
    }
}

/// The segment in `tcp` (the IP payload, zero-filled to its declared length), of which
/// the capture holds the first `present` bytes.
fn tcp_segment(
    src: IpAddr,
    dst: IpAddr,
    tcp: &[u8],
    present: usize,
    missing: usize,
) -> Result<Segment, NotTcp> {
    let packet = TcpPacket::new_checked(tcp).map_err(|_| NotTcp::Malformed)?;
    // A snap length that cuts into the TCP header leaves nothing to trust.
    if present < usize::from(packet.header_len()) {
        return Err(NotTcp::Malformed);
    }
    let flags = [
        (packet.fin(), FIN),
        (packet.syn(), SYN),
        (packet.rst(), RST),
        (packet.ack(), ACK),
    ]
    .into_iter()
    .filter(|(set, _)| *set)
    .fold(0, |all, (_, bit)| all | bit);
    let payload = packet.payload();
    Ok(Segment {
        src: SocketAddr::new(src, packet.src_port()),
        dst: SocketAddr::new(dst, packet.dst_port()),
        seq: packet.seq_number().0 as u32,
        flags,
        payload: payload[..payload.len().saturating_sub(missing)].to_vec(),
        missing,
    })
}

/// A hole in a stream that was never filled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    /// Stream offset where the missing bytes start.
    pub at: u64,
    /// Offset of the next bytes the capture holds.
    pub resumes: u64,
}

/// One direction of a flow, reassembled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stream {
    /// The bytes in order, up to the first hole.
    pub data: Vec<u8>,
    /// When bytes became available: `(capture time, stream length after them)`, in order.
    pub arrivals: Vec<(Duration, usize)>,
    /// The first hole that was never filled, if any (the stream ends there).
    pub gap: Option<Gap>,
    /// When the sender closed (FIN), if it did and its FIN follows all of `data`.
    pub fin: Option<Duration>,
    /// When the sender reset the connection, if it did.
    pub rst: Option<Duration>,
    /// Segments that carried only bytes already received (retransmissions).
    pub retransmitted: usize,
    /// Segments that arrived ahead of a hole and were held until it filled.
    pub out_of_order: usize,
}

/// Reassembles one direction: segments in capture order, offsets relative to the ISN.
#[derive(Debug, Default)]
struct Reassembler {
    /// Sequence number of stream offset 0 (ISN + 1), once known.
    base: Option<u32>,
    /// Segments ahead of `stream.data.len()`: offset → bytes.
    pending: BTreeMap<u64, Vec<u8>>,
    /// Stream offset of the FIN, once seen.
    fin_offset: Option<(u64, Duration)>,
    stream: Stream,
}

impl Reassembler {
    /// The stream offset of `seq`, unwrapped around the bytes received so far (negative
    /// for bytes before the stream's start).
    fn offset(&self, base: u32, seq: u32) -> i64 {
        let next = self.stream.data.len() as u64;
        // Distance from the end of the received bytes, in 32-bit sequence space.
        let delta = seq.wrapping_sub(base).wrapping_sub(next as u32) as i32;
        i64::try_from(next).unwrap_or(i64::MAX) + i64::from(delta)
    }

    fn push(&mut self, seq: u32, flags: u8, payload: &[u8], missing: usize, time: Duration) {
        if flags & SYN != 0 {
            // SYN retransmissions carry the same ISN; a different one is a new connection
            // and is handled by the caller.
            self.base.get_or_insert(seq.wrapping_add(1));
        }
        let Some(base) = self.base else { return };
        let data_seq = if flags & SYN != 0 {
            seq.wrapping_add(1)
        } else {
            seq
        };
        if flags & RST != 0 && self.stream.rst.is_none() {
            self.stream.rst = Some(time);
        }
        let start_i = self.offset(base, data_seq);
        // Bytes before offset 0 (a retransmitted SYN with data, junk): trim them.
        let skip = usize::try_from(-start_i.min(0)).unwrap_or(usize::MAX);
        let payload = payload.get(skip..).unwrap_or(&[]);
        let start = u64::try_from(start_i.max(0)).unwrap_or(0);
        if flags & FIN != 0 && self.fin_offset.is_none() {
            let end = start + (payload.len() + missing) as u64;
            self.fin_offset = Some((end, time));
        }
        if payload.is_empty() {
            self.check_fin();
            return;
        }
        let next = self.stream.data.len() as u64;
        let end = start + payload.len() as u64;
        if end <= next {
            self.stream.retransmitted += 1;
            return;
        }
        if start > next {
            self.stream.out_of_order += 1;
            let slot = self.pending.entry(start).or_default();
            if slot.len() < payload.len() {
                *slot = payload.to_vec();
            }
            return;
        }
        let from = usize::try_from(next - start).unwrap_or(usize::MAX);
        self.stream
            .data
            .extend_from_slice(payload.get(from..).unwrap_or(&[]));
        // Held segments that now touch the end of the stream.
        while let Some((&at, _)) = self.pending.first_key_value() {
            let next = self.stream.data.len() as u64;
            if at > next {
                break;
            }
            let Some((at, bytes)) = self.pending.pop_first() else {
                break;
            };
            let from = usize::try_from(next - at).unwrap_or(usize::MAX);
            if let Some(rest) = bytes.get(from..) {
                self.stream.data.extend_from_slice(rest);
            }
        }
        self.stream.arrivals.push((time, self.stream.data.len()));
        self.check_fin();
    }

    fn check_fin(&mut self) {
        if let Some((at, time)) = self.fin_offset {
            if at == self.stream.data.len() as u64 && self.stream.fin.is_none() {
                self.stream.fin = Some(time);
            }
        }
    }

    fn finish(mut self) -> Stream {
        let next = self.stream.data.len() as u64;
        if let Some((&at, _)) = self.pending.first_key_value() {
            self.stream.gap = Some(Gap {
                at: next,
                resumes: at,
            });
        } else if let Some((fin_at, _)) = self.fin_offset {
            if fin_at > next {
                self.stream.gap = Some(Gap {
                    at: next,
                    resumes: fin_at,
                });
            }
        }
        self.stream
    }
}

/// One TCP connection of the capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flow {
    /// Index among the capture's usable flows (0-based, in order of their SYNs).
    pub index: usize,
    /// The side that sent the SYN.
    pub client: SocketAddr,
    /// The side that answered it.
    pub server: SocketAddr,
    /// Capture time of the first SYN.
    pub start: Duration,
    /// Capture time of the flow's last segment.
    pub end: Duration,
    /// What the client sent.
    pub to_server: Stream,
    /// What the server sent.
    pub to_client: Stream,
    /// Whether the server's SYN-ACK is in the capture.
    pub syn_ack: bool,
    /// Payload bytes the snap length cut off, over both directions.
    pub snapped: usize,
}

impl Flow {
    /// True when neither side closed or reset the connection in the capture: the capture
    /// ends while it is open.
    pub fn cut_at_end(&self) -> bool {
        self.to_server.fin.is_none()
            && self.to_server.rst.is_none()
            && self.to_client.fin.is_none()
            && self.to_client.rst.is_none()
    }
}

impl fmt::Display for Flow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "flow {} {} → {}", self.index, self.client, self.server)
    }
}

/// The flows of a capture and what could not be used.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flows {
    /// Usable flows, in order of their SYNs.
    pub flows: Vec<Flow>,
    /// Human-readable notes: skipped flows, truncated frames, unparsable frames.
    pub notes: Vec<String>,
    /// Capture time of the first frame.
    pub first_frame: Option<Duration>,
}

struct Building {
    flow: Flow,
    client_isn: u32,
    up: Reassembler,
    down: Reassembler,
}

/// Splits a capture into TCP flows and reassembles both directions of each.
pub fn extract(frames: &[CapturedFrame]) -> Flows {
    let mut out = Flows {
        first_frame: frames.iter().map(|f| f.time).min(),
        ..Flows::default()
    };
    let mut building: Vec<Building> = Vec::new();
    // (client, server) → index in `building` of the latest flow with that 4-tuple.
    let mut by_tuple: HashMap<(SocketAddr, SocketAddr), usize> = HashMap::new();
    let mut skipped: HashMap<(SocketAddr, SocketAddr), usize> = HashMap::new();
    let (mut fragments, mut malformed) = (0usize, 0usize);
    for (number, frame) in frames.iter().enumerate() {
        let segment = match parse_segment(&frame.data) {
            Ok(s) => s,
            Err(NotTcp::Other) => continue,
            Err(NotTcp::Fragment) => {
                fragments += 1;
                continue;
            }
            Err(NotTcp::Malformed) => {
                malformed += 1;
                continue;
            }
        };
        if segment.missing > 0 {
            out.notes.push(format!(
                "frame {}: cut by the snap length, {} of {} payload bytes of {} → {} captured; the rest counts as lost",
                number + 1,
                segment.payload.len(),
                segment.payload.len() + segment.missing,
                segment.src,
                segment.dst
            ));
        }
        let is_syn = segment.flags & SYN != 0 && segment.flags & ACK == 0;
        let key = (segment.src, segment.dst);
        if is_syn {
            let existing = by_tuple.get(&key).copied();
            let same = existing
                .and_then(|i| building.get(i))
                .is_some_and(|b| b.client_isn == segment.seq);
            if !same {
                let index = building.len();
                building.push(Building {
                    flow: Flow {
                        index,
                        client: segment.src,
                        server: segment.dst,
                        start: frame.time,
                        end: frame.time,
                        to_server: Stream::default(),
                        to_client: Stream::default(),
                        syn_ack: false,
                        snapped: 0,
                    },
                    client_isn: segment.seq,
                    up: Reassembler::default(),
                    down: Reassembler::default(),
                });
                by_tuple.insert(key, index);
            }
        }
        let (index, upstream) = if let Some(&i) = by_tuple.get(&key) {
            (i, true)
        } else if let Some(&i) = by_tuple.get(&(segment.dst, segment.src)) {
            (i, false)
        } else {
            *skipped.entry(key).or_default() += 1;
            continue;
        };
        let Some(b) = building.get_mut(index) else {
            continue;
        };
        b.flow.end = frame.time;
        b.flow.snapped += segment.missing;
        let side = if upstream {
            &mut b.up
        } else {
            if segment.flags & SYN != 0 {
                b.flow.syn_ack = true;
            } else if b.down.base.is_none() {
                // No SYN-ACK in the capture: start the server's stream at its first segment.
                b.down.base = Some(segment.seq);
            }
            &mut b.down
        };
        side.push(
            segment.seq,
            segment.flags,
            &segment.payload,
            segment.missing,
            frame.time,
        );
    }
    // Flows seen only mid-way: one note per connection (both directions together).
    let mut seen = std::collections::HashSet::new();
    let mut skipped: Vec<_> = skipped.into_iter().collect();
    skipped.sort();
    for ((a, b), _) in skipped {
        let pair = if a < b { (a, b) } else { (b, a) };
        if seen.insert(pair) {
            out.notes.push(format!(
                "connection {} ↔ {} skipped: its SYN is not in the capture (cut at the start)",
                pair.0, pair.1
            ));
        }
    }
    if fragments > 0 {
        out.notes.push(format!(
            "{fragments} IP fragments ignored (not reassembled)"
        ));
    }
    if malformed > 0 {
        out.notes.push(format!(
            "{malformed} frames ignored: too short or malformed IP/TCP headers"
        ));
    }
    for b in building {
        let mut flow = b.flow;
        flow.to_server = b.up.finish();
        flow.to_client = b.down.finish();
        out.flows.push(flow);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(up: &mut Reassembler, seq: u32, flags: u8, data: &[u8], t: u64) {
        up.push(seq, flags, data, 0, Duration::from_millis(t));
    }

    #[test]
    fn retransmits_reorders_and_overlaps_are_reassembled() {
        let mut r = Reassembler::default();
        seg(&mut r, 1000, SYN, b"", 0);
        seg(&mut r, 1001, ACK, b"abc", 1);
        seg(&mut r, 1007, ACK, b"ghi", 2); // ahead of a hole
        seg(&mut r, 1001, ACK, b"abc", 3); // retransmission
        seg(&mut r, 1003, ACK, b"cdef", 4); // overlaps and fills the hole
        seg(&mut r, 1010, ACK | FIN, b"", 5);
        let s = r.finish();
        assert_eq!(s.data, b"abcdefghi");
        assert_eq!(s.retransmitted, 1);
        assert_eq!(s.out_of_order, 1);
        assert!(s.gap.is_none());
        assert_eq!(s.fin, Some(Duration::from_millis(5)));
        assert_eq!(s.arrivals.last(), Some(&(Duration::from_millis(4), 9)));
    }

    #[test]
    fn a_hole_ends_the_stream() {
        let mut r = Reassembler::default();
        seg(&mut r, u32::MAX - 1, SYN, b"", 0);
        seg(&mut r, u32::MAX, ACK, b"ab", 1); // wraps around
        seg(&mut r, 4, ACK, b"zz", 2);
        let s = r.finish();
        assert_eq!(s.data, b"ab");
        assert_eq!(s.gap, Some(Gap { at: 2, resumes: 5 }));
    }

    /// An Ethernet frame (with a VLAN tag if asked) holding `ip`.
    fn ethernet(ethertype: [u8; 2], vlan: bool, ip: &[u8]) -> Vec<u8> {
        let mut frame = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
        if vlan {
            frame.extend_from_slice(&[0x81, 0x00, 0x00, 0x05]);
        }
        frame.extend_from_slice(&ethertype);
        frame.extend_from_slice(ip);
        frame
    }

    /// A TCP header from port 40000 to 80, sequence number 100, PSH|ACK, then `payload`.
    fn tcp(payload: &[u8]) -> Vec<u8> {
        let mut tcp = vec![
            0x9c, 0x40, 0x00, 0x50, 0, 0, 0, 100, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0,
        ];
        tcp.extend_from_slice(payload);
        tcp
    }

    fn ipv4(flags_fragment: [u8; 2], tcp: &[u8]) -> Vec<u8> {
        let total = u16::try_from(20 + tcp.len()).unwrap().to_be_bytes();
        let mut ip = vec![0x45, 0, total[0], total[1], 0, 0];
        ip.extend_from_slice(&flags_fragment);
        ip.extend_from_slice(&[64, 6, 0, 0, 10, 7, 0, 1, 10, 7, 0, 2]);
        ip.extend_from_slice(tcp);
        ip
    }

    #[test]
    fn vlan_tagged_ipv4_cut_by_the_snap_length() {
        let frame = ethernet([0x08, 0x00], true, &ipv4([0x40, 0], &tcp(b"hello world")));
        let whole = parse_segment(&frame).unwrap();
        assert_eq!(whole.src, "10.7.0.1:40000".parse().unwrap());
        assert_eq!(whole.dst, "10.7.0.2:80".parse().unwrap());
        assert_eq!((whole.seq, whole.flags), (100, ACK));
        assert_eq!(
            (whole.payload.as_slice(), whole.missing),
            (&b"hello world"[..], 0)
        );
        // Ethernet padding after the IP packet is not payload.
        let mut padded = frame.clone();
        padded.extend_from_slice(&[0; 6]);
        assert_eq!(parse_segment(&padded), Ok(whole));
        // Cut 6 bytes short: 5 payload bytes held, 6 missing.
        let cut = parse_segment(&frame[..frame.len() - 6]).unwrap();
        assert_eq!((cut.payload.as_slice(), cut.missing), (&b"hello"[..], 6));
        // Cut inside the TCP header: nothing to trust.
        let into_header = frame.len() - 11 - 4;
        assert_eq!(parse_segment(&frame[..into_header]), Err(NotTcp::Malformed));
        // A fragment is not reassembled.
        let fragment = ethernet([0x08, 0x00], false, &ipv4([0x20, 0], &tcp(b"x")));
        assert_eq!(parse_segment(&fragment), Err(NotTcp::Fragment));
    }

    #[test]
    fn ipv6_extension_headers_are_skipped() {
        let tcp = tcp(b"hi");
        // A hop-by-hop header (8 bytes: next header TCP, PadN) before TCP.
        let hop_by_hop = [6, 0, 1, 4, 0, 0, 0, 0];
        let len = u16::try_from(hop_by_hop.len() + tcp.len())
            .unwrap()
            .to_be_bytes();
        let mut ip = vec![0x60, 0, 0, 0, len[0], len[1], 0, 64];
        ip.extend_from_slice(&[0xfd, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        ip.extend_from_slice(&[0xfd, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        ip.extend_from_slice(&hop_by_hop);
        ip.extend_from_slice(&tcp);
        let segment = parse_segment(&ethernet([0x86, 0xdd], false, &ip)).unwrap();
        assert_eq!(segment.src, "[fd00:7::1]:40000".parse().unwrap());
        assert_eq!(segment.payload, b"hi");
        // The same packet with a fragment header as the next header.
        ip[40] = 44;
        let fragment = parse_segment(&ethernet([0x86, 0xdd], false, &ip));
        assert_eq!(fragment, Err(NotTcp::Fragment));
    }

    #[test]
    fn garbage_frames_are_not_segments() {
        assert_eq!(parse_segment(&[]), Err(NotTcp::Malformed));
        assert_eq!(parse_segment(&[0; 14]), Err(NotTcp::Other));
        let mut v4 = vec![0u8; 14];
        v4[12] = 0x08;
        v4.extend_from_slice(&[0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6]);
        assert_eq!(parse_segment(&v4), Err(NotTcp::Malformed));
    }
}
