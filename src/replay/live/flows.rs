//! TCP flows of a capture, sans-IO: frames in, reassembled byte streams out.
//!
//! A flow is a TCP connection identified by its 4-tuple; its client is the side that sent
//! the SYN. Each direction's bytes are put back in order by sequence number, coping with
//! retransmissions, out-of-order and overlapping segments; the first hole that is never
//! filled ends that direction's stream. Frames cut by the snap length contribute the bytes
//! they hold; the rest counts as lost. Nothing here panics on bad input: frames that do not
//! parse are counted and noted.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

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

fn be16(data: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*data.get(at)?, *data.get(at + 1)?]))
}

fn be32(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes([
        *data.get(at)?,
        *data.get(at + 1)?,
        *data.get(at + 2)?,
        *data.get(at + 3)?,
    ]))
}

/// Parses the TCP segment in an Ethernet frame (VLAN tags skipped).
pub fn parse_segment(frame: &[u8]) -> Result<Segment, NotTcp> {
    let mut at = 12;
    let mut ethertype = be16(frame, at).ok_or(NotTcp::Malformed)?;
    while ethertype == 0x8100 || ethertype == 0x88a8 {
        at += 4;
        ethertype = be16(frame, at).ok_or(NotTcp::Malformed)?;
    }
    let ip = frame.get(at + 2..).ok_or(NotTcp::Malformed)?;
    // (source, destination, TCP bytes, TCP length the IP header declares)
    let (src, dst, tcp, declared) = match ethertype {
        0x0800 => {
            let first = *ip.first().ok_or(NotTcp::Malformed)?;
            let ihl = usize::from(first & 0x0f) * 4;
            if first >> 4 != 4 || ihl < 20 {
                return Err(NotTcp::Malformed);
            }
            let total = usize::from(be16(ip, 2).ok_or(NotTcp::Malformed)?);
            let frag = be16(ip, 6).ok_or(NotTcp::Malformed)?;
            if *ip.get(9).ok_or(NotTcp::Malformed)? != 6 {
                return Err(NotTcp::Other);
            }
            if frag & 0x3fff != 0 {
                return Err(NotTcp::Fragment);
            }
            let src = Ipv4Addr::from(be32(ip, 12).ok_or(NotTcp::Malformed)?);
            let dst = Ipv4Addr::from(be32(ip, 16).ok_or(NotTcp::Malformed)?);
            if total < ihl {
                return Err(NotTcp::Malformed);
            }
            let tcp = ip.get(ihl..).ok_or(NotTcp::Malformed)?;
            (IpAddr::V4(src), IpAddr::V4(dst), tcp, total - ihl)
        }
        0x86dd => {
            if ip.first().map(|b| b >> 4) != Some(6) {
                return Err(NotTcp::Malformed);
            }
            let payload_len = usize::from(be16(ip, 4).ok_or(NotTcp::Malformed)?);
            let mut next = *ip.get(6).ok_or(NotTcp::Malformed)?;
            let addr = |from: usize| -> Result<Ipv6Addr, NotTcp> {
                let bytes: [u8; 16] = ip
                    .get(from..from + 16)
                    .and_then(|s| s.try_into().ok())
                    .ok_or(NotTcp::Malformed)?;
                Ok(Ipv6Addr::from(bytes))
            };
            let (src, dst) = (addr(8)?, addr(24)?);
            let mut off = 40;
            // Skip hop-by-hop, routing and destination options headers.
            while matches!(next, 0 | 43 | 60) {
                let len = usize::from(*ip.get(off + 1).ok_or(NotTcp::Malformed)?) * 8 + 8;
                next = *ip.get(off).ok_or(NotTcp::Malformed)?;
                off += len;
            }
            if next == 44 {
                return Err(NotTcp::Fragment);
            }
            if next != 6 {
                return Err(NotTcp::Other);
            }
            let tcp = ip.get(off..).ok_or(NotTcp::Malformed)?;
            let declared = (40 + payload_len)
                .checked_sub(off)
                .ok_or(NotTcp::Malformed)?;
            (IpAddr::V6(src), IpAddr::V6(dst), tcp, declared)
        }
        _ => return Err(NotTcp::Other),
    };
    let src_port = be16(tcp, 0).ok_or(NotTcp::Malformed)?;
    let dst_port = be16(tcp, 2).ok_or(NotTcp::Malformed)?;
    let seq = be32(tcp, 4).ok_or(NotTcp::Malformed)?;
    let data_offset = usize::from(tcp.get(12).ok_or(NotTcp::Malformed)? >> 4) * 4;
    let flags = *tcp.get(13).ok_or(NotTcp::Malformed)?;
    if data_offset < 20 || declared < data_offset {
        return Err(NotTcp::Malformed);
    }
    let payload_len = declared - data_offset;
    // Ethernet padding may follow the IP packet; the snap length may cut it short.
    let present = tcp.get(data_offset..).unwrap_or(&[]);
    let payload = present.get(..payload_len).unwrap_or(present).to_vec();
    let missing = payload_len - payload.len();
    Ok(Segment {
        src: SocketAddr::new(src, src_port),
        dst: SocketAddr::new(dst, dst_port),
        seq,
        flags,
        payload,
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
