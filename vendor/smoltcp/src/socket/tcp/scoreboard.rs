//! The sender's record of the data it has in flight (tapir patch, see TAPIR-PATCH.md).
//!
//! Every segment of new data sent and not yet cumulatively acknowledged has an entry,
//! in sequence order, with what SACK said of it (RFC 2018), whether it is judged lost and
//! when it was last (re)transmitted. From it come:
//!
//! - the loss marks of SACK-based loss recovery: RFC 6675's `IsLost` (more than
//!   `(DupThresh - 1) * SMSS` bytes SACKed above a segment) and RACK's time rule
//!   (RFC 8985 §6.2: a segment sent before one that was delivered is lost once
//!   `RTT + reo_wnd` has passed since it was sent), which also finds lost retransmissions;
//! - `pipe`, RFC 6675's estimate of the bytes still in the network, which the congestion
//!   window and proportional rate reduction (RFC 6937) are compared with;
//! - which segment to retransmit next (the lowest one marked lost).
//!
//! Costs: one entry (24 bytes) per segment in flight, freed as the data is acknowledged;
//! an ACK costs `O(holes + log n)` in the common case (SACKed runs are skipped through a
//! separate list of SACKed ranges, never walked segment by segment twice).

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use super::rate::{RateEstimator, RateSample, TxState};
use crate::time::{Duration, Instant};
use crate::wire::TcpSeqNumber;

/// RFC 6675's DupThresh.
const DUP_THRESH: usize = 3;

/// An entry for one transmitted segment.
#[derive(Debug, Clone, Copy)]
struct Sent {
    start: TcpSeqNumber,
    end: TcpSeqNumber,
    /// When this segment was last (re)transmitted.
    xmit: Instant,
    retransmitted: bool,
    sacked: bool,
    lost: bool,
    /// The delivery state when it was last (re)transmitted (delivery rate estimation).
    tx: TxState,
}

impl Sent {
    fn len(&self) -> usize {
        self.end - self.start
    }
}

/// RACK's record of the most recently sent segment known to be delivered (RFC 8985 §6.1).
#[derive(Debug, Clone, Copy, Default)]
struct Rack {
    xmit: Option<Instant>,
    end_seq: TcpSeqNumber,
    /// The RTT measured on that segment.
    rtt: Duration,
    min_rtt: Option<Duration>,
}

/// The sender's scoreboard: see the module documentation.
#[derive(Debug, Default)]
pub(crate) struct Scoreboard {
    segs: VecDeque<Sent>,
    /// The SACKed segments as sorted, disjoint, merged ranges.
    sacked: Vec<(TcpSeqNumber, TcpSeqNumber)>,
    out_bytes: usize,
    sacked_bytes: usize,
    lost_bytes: usize,
    /// No segment below this sequence number is marked lost.
    lost_hint: TcpSeqNumber,
    rack: Rack,
    rate: RateEstimator,
    /// The end of the highest retransmission while data at or below it is unacknowledged.
    repair_end: Option<TcpSeqNumber>,
}

/// Entries kept allocated once a scoreboard empties; a larger allocation is released.
const KEEP_CAPACITY: usize = 64;

impl Scoreboard {
    /// Whether no data is in flight.
    pub(crate) fn is_empty(&self) -> bool {
        self.segs.is_empty()
    }

    /// Bytes of data sent and not cumulatively acknowledged.
    pub(crate) fn out_bytes(&self) -> usize {
        self.out_bytes
    }

    /// Bytes SACKed above the cumulative acknowledgment.
    pub(crate) fn sacked_bytes(&self) -> usize {
        self.sacked_bytes
    }

    /// Bytes marked lost and not retransmitted since.
    pub(crate) fn lost_bytes(&self) -> usize {
        self.lost_bytes
    }

    /// RFC 6675's pipe: the bytes believed to be still in the network.
    pub(crate) fn pipe(&self) -> usize {
        self.out_bytes - self.sacked_bytes - self.lost_bytes
    }

    /// Whether a repair is under way: data judged lost was retransmitted, and the
    /// cumulative acknowledgment has not yet passed the highest such retransmission (a
    /// tail loss probe of data not judged lost does not count).
    ///
    /// It outlasts fast recovery, which ends when the data outstanding at its start is
    /// acknowledged, when later segments are lost too and their retransmissions (with
    /// SACKed data above them) are still out. Linux's `lost_out`, which keeps counting a
    /// lost segment while its retransmission is in flight, is the same signal: a recovery
    /// that ends with it set starts the next one on the same ACK.
    pub(crate) fn repairing(&self) -> bool {
        self.repair_end.is_some()
    }

    /// The smallest RTT RACK has seen.
    pub(crate) fn min_rtt(&self) -> Option<Duration> {
        self.rack.min_rtt
    }

    /// The end of the highest segment sent.
    pub(crate) fn high_seq(&self) -> Option<TcpSeqNumber> {
        self.segs.back().map(|s| s.end)
    }

    /// The first and last sequence number of the highest segment sent.
    pub(crate) fn last_segment(&self) -> Option<(TcpSeqNumber, usize)> {
        self.segs.back().map(|s| (s.start, s.len()))
    }

    /// Number of segments recorded.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.segs.len()
    }

    /// Forgets everything (the connection was reset).
    pub(crate) fn clear(&mut self) {
        *self = Scoreboard::default();
    }

    /// Records a segment of new data, `[start, start + len)`, sent at `now`.
    ///
    /// Data at or below the highest recorded sequence number is a retransmission and is
    /// recorded as one.
    pub(crate) fn on_send(&mut self, start: TcpSeqNumber, len: usize, now: Instant) {
        if len == 0 {
            return;
        }
        if let Some(last) = self.segs.back()
            && start < last.end
        {
            self.on_retransmit(start, len, now);
            return;
        }
        let tx = self.rate.on_send(now, self.segs.is_empty());
        self.segs.push_back(Sent {
            start,
            end: start + len,
            xmit: now,
            retransmitted: false,
            sacked: false,
            lost: false,
            tx,
        });
        self.out_bytes += len;
    }

    /// Records the retransmission of `len` bytes from `start`, the start of a recorded
    /// segment. A shorter retransmission splits the entry; the rest keeps its marks.
    pub(crate) fn on_retransmit(&mut self, start: TcpSeqNumber, len: usize, now: Instant) {
        let mut i = self.segs.partition_point(|s| s.start < start);
        if self.segs.get(i).is_none_or(|seg| seg.start != start) {
            return;
        }
        // A retransmission may span several entries (a super-segment, see `lost_run`).
        let end = start + len;
        while let Some(seg) = self.segs.get(i).copied() {
            if seg.start >= end {
                break;
            }
            if end < seg.end {
                let rest = Sent { start: end, ..seg };
                self.segs.insert(i + 1, rest);
            }
            let tx = self.rate.on_send(now, false);
            let seg = &mut self.segs[i];
            seg.end = seg.end.min(end);
            seg.xmit = now;
            seg.tx = tx;
            seg.retransmitted = true;
            if seg.lost {
                seg.lost = false;
                self.lost_bytes -= seg.len();
                if self.repair_end.is_none_or(|e| e < seg.end) {
                    self.repair_end = Some(seg.end);
                }
                // Lost segments are retransmitted lowest first: none is left below this one.
                if self.lost_hint <= seg.start {
                    self.lost_hint = seg.end;
                }
            }
            i += 1;
        }
    }

    /// The bytes from `start` (the start of a lost segment) that the lost segments after
    /// it cover without a gap, at most `max`: what one super-segment can retransmit.
    pub(crate) fn lost_run(&self, start: TcpSeqNumber, max: usize) -> usize {
        let i = self.segs.partition_point(|s| s.start < start);
        let mut end = start;
        for seg in self.segs.range(i..) {
            if seg.start != end || !seg.lost || end - start >= max {
                break;
            }
            end = seg.end;
        }
        (end - start).min(max)
    }

    /// Processes a cumulative acknowledgment of everything below `una`. Returns the bytes
    /// it delivered that were not SACKed before.
    pub(crate) fn on_cumulative_ack(&mut self, una: TcpSeqNumber, now: Instant) -> usize {
        let mut delivered = 0;
        while let Some(front) = self.segs.front_mut() {
            if front.end <= una {
                let seg = *front;
                self.segs.pop_front();
                self.out_bytes -= seg.len();
                if seg.sacked {
                    self.sacked_bytes -= seg.len();
                } else {
                    delivered += seg.len();
                    if seg.lost {
                        self.lost_bytes -= seg.len();
                    }
                    self.rack.on_delivered(&seg, now);
                    self.delivered(&seg, now);
                }
            } else {
                if front.start < una {
                    // Part of a segment: the peer saw a repacketized retransmission.
                    let cut = una - front.start;
                    front.start = una;
                    self.out_bytes -= cut;
                    if front.sacked {
                        self.sacked_bytes -= cut;
                    } else {
                        delivered += cut;
                        if front.lost {
                            self.lost_bytes -= cut;
                        }
                        self.rate.on_delivered_part(cut);
                    }
                }
                break;
            }
        }
        self.sacked.retain_mut(|(left, right)| {
            if *right <= una {
                return false;
            }
            *left = left.max(una);
            true
        });
        if self.repair_end.is_some_and(|end| end <= una) {
            self.repair_end = None;
        }
        if self.segs.is_empty() && self.segs.capacity() > KEEP_CAPACITY {
            self.segs = VecDeque::new();
        }
        delivered
    }

    /// Processes the SACK blocks of an ACK whose cumulative acknowledgment is `una`.
    /// Returns the bytes newly SACKed. Blocks at or below `una` (D-SACK, RFC 2883) and
    /// parts of blocks beyond the data sent are ignored; an entry that a block covers in part is split at
    /// the block's edges.
    pub(crate) fn on_sack(
        &mut self,
        blocks: &[Option<(u32, u32)>],
        una: TcpSeqNumber,
        now: Instant,
    ) -> usize {
        let Some(high) = self.high_seq() else {
            return 0;
        };
        let mut newly = 0;
        for &(left, right) in blocks.iter().flatten() {
            let (left, right) = (TcpSeqNumber(left as i32), TcpSeqNumber(right as i32));
            if right <= left || right <= una || left >= high {
                continue;
            }
            let (left, right) = (left.max(una), right.min(high));
            // Mark only the parts of the block not already SACKed.
            let mut gaps = Vec::new();
            let mut cursor = left;
            for &(l, r) in &self.sacked {
                if r <= cursor {
                    continue;
                }
                if l >= right {
                    break;
                }
                if l > cursor {
                    gaps.push((cursor, l));
                }
                cursor = cursor.max(r);
            }
            if cursor < right {
                gaps.push((cursor, right));
            }
            for (gl, gr) in gaps {
                // A block may cover part of an entry (a segmentation-offload super-segment
                // that the device cut into MSS-sized frames): split it at the block's edges.
                self.split_at(gl);
                self.split_at(gr);
                let mut i = self.segs.partition_point(|s| s.start < gl);
                let mut run: Option<(TcpSeqNumber, TcpSeqNumber)> = None;
                while let Some(seg) = self.segs.get_mut(i) {
                    if seg.end > gr {
                        break;
                    }
                    if !seg.sacked {
                        seg.sacked = true;
                        let len = seg.len();
                        self.sacked_bytes += len;
                        if seg.lost {
                            seg.lost = false;
                            self.lost_bytes -= len;
                        }
                        newly += len;
                        let seg = *seg;
                        self.rack.on_delivered(&seg, now);
                        self.delivered(&seg, now);
                    }
                    let seg = self.segs[i];
                    run = Some(match run {
                        Some((l, _)) => (l, seg.end),
                        None => (seg.start, seg.end),
                    });
                    i += 1;
                }
                if let Some((l, r)) = run {
                    self.insert_sacked(l, r);
                }
            }
        }
        newly
    }

    /// Tells the delivery rate estimator that `seg` was delivered at `now`.
    fn delivered(&mut self, seg: &Sent, now: Instant) {
        self.rate.on_delivered(
            &seg.tx,
            seg.xmit,
            seg.end,
            seg.len(),
            seg.retransmitted,
            now,
        );
    }

    /// The delivery rate sample of what the ACKs processed since the last sample
    /// delivered (draft-cheng-iccrg-delivery-rate-estimation); the caller fills in what
    /// the scoreboard does not know.
    pub(crate) fn rate_sample(&mut self, now: Instant) -> RateSample {
        let mut rs = self.rate.sample(now, self.rack.min_rtt);
        rs.prior_in_flight = self.pipe();
        rs.in_flight = self.pipe();
        rs
    }

    /// The application has nothing more to send and the congestion window has room:
    /// delivery rate samples are app-limited until what is in flight now is delivered.
    pub(crate) fn on_app_limited(&mut self) {
        self.rate.on_app_limited(self.pipe());
    }

    /// Whether `on_app_limited` would change nothing now: samples are app-limited until
    /// exactly what is in flight now is delivered already.
    pub(crate) fn app_limited_marked(&self) -> bool {
        self.rate.app_limited_marked(self.pipe())
    }

    /// Splits the entry that holds `seq` strictly inside it into two with the same marks.
    fn split_at(&mut self, seq: TcpSeqNumber) {
        let i = self.segs.partition_point(|s| s.end <= seq);
        let Some(seg) = self.segs.get(i).copied() else {
            return;
        };
        if seg.start < seq && seq < seg.end {
            self.segs[i].end = seq;
            self.segs.insert(i + 1, Sent { start: seq, ..seg });
        }
    }

    fn insert_sacked(&mut self, left: TcpSeqNumber, right: TcpSeqNumber) {
        let i = self.sacked.partition_point(|&(_, r)| r < left);
        let mut j = i;
        let (mut l, mut r) = (left, right);
        while let Some(&(ol, or)) = self.sacked.get(j) {
            if ol > r {
                break;
            }
            l = l.min(ol);
            r = r.max(or);
            j += 1;
        }
        self.sacked.splice(i..j, [(l, r)]);
    }

    /// The sequence number below which unSACKed data counts as lost under RFC 6675's
    /// `IsLost`: the point with more than `(DupThresh - 1) * mss` bytes SACKed above it.
    fn dup_thresh_point(&self, mss: usize) -> Option<TcpSeqNumber> {
        let mut above = 0;
        let limit = (DUP_THRESH - 1) * mss;
        for &(l, r) in self.sacked.iter().rev() {
            let len = r - l;
            if above + len > limit {
                return Some(r - (limit - above + 1));
            }
            above += len;
        }
        None
    }

    /// Marks lost what RFC 6675's `IsLost` and RACK (RFC 8985 §6.2 step 5) find lost.
    /// `reo_wnd` is RACK's reordering window. Returns the bytes newly marked lost and,
    /// when a segment would be lost if nothing arrives for it, when to look again.
    pub(crate) fn detect_loss(
        &mut self,
        now: Instant,
        mss: usize,
        reo_wnd: Duration,
    ) -> (usize, Option<Instant>) {
        let Some(front) = self.segs.front() else {
            return (0, None);
        };
        let threshold = self.dup_thresh_point(mss.max(1));
        let rack = self.rack;
        let mut newly = 0;
        let mut timer: Option<Instant> = None;
        // Walk the holes between SACKed ranges, lowest first.
        let mut hole_start = front.start;
        let mut range = 0;
        'holes: loop {
            let next = self.sacked.get(range).copied();
            range += 1;
            let hole_end = next.map(|(l, _)| l);
            let mut i = self.segs.partition_point(|s| s.start < hole_start);
            while let Some(seg) = self.segs.get(i).copied() {
                if hole_end.is_some_and(|e| seg.start >= e) {
                    break;
                }
                i += 1;
                if seg.sacked || seg.lost {
                    continue;
                }
                // A retransmission is judged by time alone.
                let by_count = !seg.retransmitted && threshold.is_some_and(|t| seg.start < t);
                let sent_before_delivered = rack
                    .xmit
                    .is_some_and(|x| seg.xmit < x || (seg.xmit == x && seg.end <= rack.end_seq));
                if !by_count && !sent_before_delivered {
                    if !seg.retransmitted {
                        // Everything after was sent later still, and is above the
                        // IsLost point: nothing more can be lost yet.
                        break 'holes;
                    }
                    continue;
                }
                let deadline = seg.xmit + rack.rtt + reo_wnd;
                if by_count || now >= deadline {
                    self.mark_lost(i - 1);
                    newly += seg.len();
                } else {
                    timer = Some(timer.map_or(deadline, |t| t.min(deadline)));
                }
            }
            match next {
                Some((_, r)) => hole_start = r,
                None => break,
            }
        }
        (newly, timer)
    }

    fn mark_lost(&mut self, i: usize) {
        let seg = &mut self.segs[i];
        if seg.lost || seg.sacked {
            return;
        }
        seg.lost = true;
        self.lost_bytes += seg.len();
        let start = seg.start;
        if start < self.lost_hint || self.lost_bytes == self.segs[i].len() {
            self.lost_hint = start;
        }
    }

    /// Marks the lowest unacknowledged segment lost (a retransmission that does not wait
    /// for SACK: the third duplicate ACK of a peer without SACK, or a partial ACK).
    pub(crate) fn mark_first_lost(&mut self) -> usize {
        match self.segs.front() {
            Some(seg) if !seg.sacked && !seg.lost => {
                let len = seg.len();
                self.mark_lost(0);
                len
            }
            _ => 0,
        }
    }

    /// After a retransmission timeout: every segment not SACKed is lost. With
    /// `forget_sack` the SACK marks go too (the peer may have reneged, RFC 2018 §8).
    pub(crate) fn on_rto(&mut self, forget_sack: bool) {
        if forget_sack {
            self.sacked.clear();
            self.sacked_bytes = 0;
        }
        let mut lost = 0;
        for seg in self.segs.iter_mut() {
            if forget_sack {
                seg.sacked = false;
            }
            if !seg.sacked {
                seg.lost = true;
                lost += seg.len();
            }
        }
        self.lost_bytes = lost;
        if let Some(front) = self.segs.front() {
            self.lost_hint = front.start;
        }
    }

    /// The lowest segment marked lost, as its start and length.
    pub(crate) fn first_lost(&self) -> Option<(TcpSeqNumber, usize)> {
        if self.lost_bytes == 0 {
            return None;
        }
        let i = self.segs.partition_point(|s| s.start < self.lost_hint);
        self.segs
            .range(i..)
            .find(|s| s.lost)
            .map(|s| (s.start, s.len()))
    }
}

impl Rack {
    /// RFC 8985 §6.2 steps 1–2: a segment was delivered (cumulatively or by SACK).
    fn on_delivered(&mut self, seg: &Sent, now: Instant) {
        let rtt = now - seg.xmit;
        // A retransmitted segment acknowledged sooner than the minimum RTT after its
        // retransmission was delivered by its original transmission: ambiguous, skip.
        if seg.retransmitted && self.min_rtt.is_some_and(|m| rtt < m) {
            return;
        }
        if !seg.retransmitted {
            self.min_rtt = Some(self.min_rtt.map_or(rtt, |m| m.min(rtt)));
        }
        let newer = match self.xmit {
            None => true,
            Some(x) => seg.xmit > x || (seg.xmit == x && seg.end > self.end_seq),
        };
        if newer {
            self.xmit = Some(seg.xmit);
            self.end_seq = seg.end;
            self.rtt = rtt;
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    const MSS: usize = 1000;

    fn seq(n: usize) -> TcpSeqNumber {
        TcpSeqNumber(1000) + n
    }

    fn ms(n: i64) -> Instant {
        Instant::from_millis(n)
    }

    /// `n` segments of MSS bytes sent 1 ms apart from t=0.
    fn board(n: usize) -> Scoreboard {
        let mut sb = Scoreboard::default();
        for i in 0..n {
            sb.on_send(seq(i * MSS), MSS, ms(i as i64));
        }
        sb
    }

    fn block(from: usize, to: usize) -> Option<(u32, u32)> {
        Some((seq(from * MSS).0 as u32, seq(to * MSS).0 as u32))
    }

    #[test]
    fn cumulative_ack_removes_and_counts() {
        let mut sb = board(4);
        assert_eq!(sb.pipe(), 4 * MSS);
        assert_eq!(sb.on_cumulative_ack(seq(2 * MSS), ms(50)), 2 * MSS);
        assert_eq!(sb.out_bytes(), 2 * MSS);
        assert_eq!(sb.len(), 2);
        // A partial ACK inside a segment trims it.
        assert_eq!(sb.on_cumulative_ack(seq(2 * MSS + 10), ms(51)), 10);
        assert_eq!(sb.out_bytes(), 2 * MSS - 10);
    }

    #[test]
    fn sack_marks_whole_segments_once() {
        let mut sb = board(10);
        let una = seq(0);
        assert_eq!(sb.on_sack(&[block(2, 5), None, None], una, ms(20)), 3 * MSS);
        // The same block again delivers nothing new.
        assert_eq!(sb.on_sack(&[block(2, 5), None, None], una, ms(21)), 0);
        // An overlapping, larger block only counts its new part.
        assert_eq!(sb.on_sack(&[block(1, 6), None, None], una, ms(22)), 2 * MSS);
        assert_eq!(sb.sacked_bytes(), 5 * MSS);
        assert_eq!(sb.sacked, [(seq(MSS), seq(6 * MSS))]);
        // A block covering half a segment splits it and marks that half.
        let half = Some((seq(7 * MSS).0 as u32, (seq(7 * MSS) + 500).0 as u32));
        assert_eq!(sb.on_sack(&[half, None, None], una, ms(23)), 500);
        assert_eq!(sb.len(), 11);
        // D-SACK below una and blocks beyond what was sent are ignored.
        assert_eq!(sb.on_sack(&[block(20, 30), None, None], una, ms(24)), 0);
        assert_eq!(sb.pipe(), 5 * MSS - 500);
    }

    #[test]
    fn cumulative_ack_over_sacked_data_delivers_only_the_rest() {
        let mut sb = board(5);
        sb.on_sack(&[block(1, 3), None, None], seq(0), ms(20));
        assert_eq!(sb.on_cumulative_ack(seq(4 * MSS), ms(25)), 2 * MSS);
        assert_eq!(sb.sacked_bytes(), 0);
        assert!(sb.sacked.is_empty());
        assert_eq!(sb.pipe(), MSS);
    }

    #[test]
    fn dup_thresh_marks_a_hole_with_three_segments_sacked_above() {
        let mut sb = board(10);
        // Segment 0 lost; 1 and 2 SACKed: not enough.
        sb.on_sack(&[block(1, 3), None, None], seq(0), ms(20));
        let (lost, _) = sb.detect_loss(ms(20), MSS, Duration::from_millis(1000));
        assert_eq!(lost, 0);
        sb.on_sack(&[block(1, 4), None, None], seq(0), ms(21));
        let (lost, _) = sb.detect_loss(ms(21), MSS, Duration::from_millis(1000));
        assert_eq!(lost, MSS);
        assert_eq!(sb.first_lost(), Some((seq(0), MSS)));
        assert_eq!(sb.pipe(), 10 * MSS - 3 * MSS - MSS);
        // Retransmitted: no longer lost, in flight again.
        sb.on_retransmit(seq(0), MSS, ms(22));
        assert_eq!(sb.first_lost(), None);
        assert_eq!(sb.pipe(), 10 * MSS - 3 * MSS);
    }

    #[test]
    fn rack_marks_by_time_and_arms_a_timer() {
        let mut sb = board(3);
        // Segment 2 (sent at 2 ms) delivered at 22 ms: RTT 20 ms. Segments 0 and 1 were
        // sent before it; with reo_wnd 5 ms they are lost from 20 + 5 ms after sending.
        sb.on_sack(&[block(2, 3), None, None], seq(0), ms(22));
        let reo = Duration::from_millis(5);
        let (lost, timer) = sb.detect_loss(ms(22), MSS, reo);
        assert_eq!(lost, 0);
        assert_eq!(timer, Some(ms(25)));
        let (lost, timer) = sb.detect_loss(ms(25), MSS, reo);
        assert_eq!(lost, MSS);
        assert_eq!(timer, Some(ms(26)));
        let (lost, timer) = sb.detect_loss(ms(26), MSS, reo);
        assert_eq!(lost, MSS);
        assert_eq!(timer, None);
        assert_eq!(sb.first_lost(), Some((seq(0), MSS)));
    }

    #[test]
    fn rack_finds_a_lost_retransmission() {
        let mut sb = board(6);
        sb.on_sack(&[block(1, 4), None, None], seq(0), ms(25));
        sb.detect_loss(ms(25), MSS, Duration::ZERO);
        assert_eq!(sb.first_lost(), Some((seq(0), MSS)));
        sb.on_retransmit(seq(0), MSS, ms(25));
        // New data sent after the retransmission is delivered; the retransmission is not.
        sb.on_send(seq(6 * MSS), MSS, ms(26));
        sb.on_sack(&[block(6, 7), block(1, 4), None], seq(0), ms(46));
        let (lost, _) = sb.detect_loss(ms(60), MSS, Duration::ZERO);
        // Segments 4 and 5 (sent before 6) and the retransmission of 0 are lost.
        assert_eq!(lost, 3 * MSS);
        assert_eq!(sb.first_lost(), Some((seq(0), MSS)));
    }

    #[test]
    fn repair_lasts_until_the_highest_retransmission_is_acked() {
        let mut sb = board(8);
        // A probe of data not judged lost is no repair.
        sb.on_retransmit(seq(7 * MSS), MSS, ms(20));
        assert!(!sb.repairing());
        // Segments 0 and 4 are lost and retransmitted.
        sb.on_sack(&[block(5, 8), block(1, 4), None], seq(0), ms(25));
        sb.detect_loss(ms(25), MSS, Duration::ZERO);
        assert_eq!(sb.lost_bytes(), 2 * MSS);
        sb.on_retransmit(seq(0), MSS, ms(25));
        sb.on_retransmit(seq(4 * MSS), MSS, ms(25));
        assert!(sb.repairing());
        // Segment 0 arrives; segment 4's retransmission is still out.
        sb.on_cumulative_ack(seq(4 * MSS), ms(45));
        assert!(sb.repairing());
        sb.on_cumulative_ack(seq(8 * MSS), ms(46));
        assert!(!sb.repairing());
    }

    #[test]
    fn in_order_acks_mark_nothing() {
        let mut sb = board(100);
        for i in 1..=100 {
            sb.on_cumulative_ack(seq(i * MSS), ms(20 + i as i64));
            assert_eq!(
                sb.detect_loss(ms(20 + i as i64), MSS, Duration::ZERO),
                (0, None)
            );
        }
        assert!(sb.is_empty());
    }

    #[test]
    fn rto_marks_everything_not_sacked() {
        let mut sb = board(5);
        sb.on_sack(&[block(3, 4), None, None], seq(0), ms(20));
        sb.on_rto(false);
        assert_eq!(sb.lost_bytes(), 4 * MSS);
        assert_eq!(sb.pipe(), 0);
        assert_eq!(sb.first_lost(), Some((seq(0), MSS)));
        sb.on_rto(true);
        assert_eq!(sb.lost_bytes(), 5 * MSS);
        assert_eq!(sb.sacked_bytes(), 0);
    }

    #[test]
    fn short_retransmission_splits_the_entry() {
        let mut sb = board(2);
        sb.on_rto(false);
        sb.on_retransmit(seq(0), 400, ms(30));
        assert_eq!(sb.first_lost(), Some((seq(400), 600)));
        assert_eq!(sb.lost_bytes(), 600 + MSS);
        assert_eq!(sb.len(), 3);
    }

    #[test]
    fn sack_splits_a_super_segment() {
        // One 10-segment super-segment (segmentation offload); the receiver SACKs the
        // frames after a lost third one.
        let mut sb = Scoreboard::default();
        sb.on_send(seq(0), 10 * MSS, ms(0));
        assert_eq!(
            sb.on_sack(&[block(3, 10), None, None], seq(0), ms(20)),
            7 * MSS
        );
        assert_eq!(sb.on_cumulative_ack(seq(2 * MSS), ms(20)), 2 * MSS);
        let (lost, _) = sb.detect_loss(ms(20), MSS, Duration::ZERO);
        assert_eq!(lost, MSS);
        assert_eq!(sb.first_lost(), Some((seq(2 * MSS), MSS)));
        assert_eq!(sb.pipe(), 0);
    }

    #[test]
    fn sequence_numbers_wrap() {
        let mut sb = Scoreboard::default();
        let base = TcpSeqNumber(i32::MAX - 1500);
        for i in 0..4 {
            sb.on_send(base + i * MSS, MSS, ms(i as i64));
        }
        let b = |from: usize, to: usize| {
            Some(((base + from * MSS).0 as u32, (base + to * MSS).0 as u32))
        };
        assert_eq!(sb.on_sack(&[b(1, 4), None, None], base, ms(20)), 3 * MSS);
        assert_eq!(sb.detect_loss(ms(20), MSS, Duration::ZERO).0, MSS);
        assert_eq!(sb.on_cumulative_ack(base + 4 * MSS, ms(30)), MSS);
        assert!(sb.is_empty());
    }
}
