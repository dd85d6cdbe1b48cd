//! BBR congestion control, version 1 (tapir patch, see TAPIR-PATCH.md).
//!
//! As Linux's `tcp_bbr.c` and draft-cardwell-iccrg-bbr-congestion-control: the sender
//! models the path by its bottleneck bandwidth (a windowed maximum of delivery rate
//! samples over 10 round trips) and its propagation delay (the minimum RTT over 10 s),
//! paces at `pacing_gain × bandwidth` and bounds the data in flight by
//! `cwnd_gain × bandwidth × min_rtt`. Random loss does not shrink the model: a loss
//! costs one round of packet conservation during recovery, not half the window.
//!
//! States: STARTUP (gain 2/ln 2, doubling the sending rate each round until the
//! bandwidth stops growing by 25 % for three rounds), DRAIN (the queue STARTUP built
//! drains at 1/gain), PROBE_BW (pacing gain cycling 1.25, 0.75, 1 × 6, one phase per
//! min RTT) and PROBE_RTT (every 10 s without a new minimum RTT, four segments in
//! flight for 200 ms and a round, so the minimum RTT is measured without a queue).
//!
//! Windows and rates are in bytes (Linux counts segments); bandwidth in bytes per second.
//! Not implemented: the long-term bandwidth model for token-bucket policers
//! (`lt_bw`), which needs loss-rate bookkeeping over many rounds.

use crate::socket::tcp::RttEstimator;
use crate::socket::tcp::pacing;
use crate::socket::tcp::rate::RateSample;
use crate::time::{Duration, Instant};

use super::{Controller, initial_window};

/// STARTUP's gain, 2/ln(2): the smallest that doubles the delivery rate each round.
const HIGH_GAIN: f64 = 2.885;
/// DRAIN's pacing gain, the inverse of STARTUP's.
const DRAIN_GAIN: f64 = 1.0 / HIGH_GAIN;
/// The congestion window gain in PROBE_BW: room for delayed and aggregated ACKs.
const CWND_GAIN: f64 = 2.0;
/// PROBE_BW's pacing gains, one phase per min RTT.
const PACING_GAIN_CYCLE: [f64; 8] = [1.25, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0];
/// PROBE_BW starts in a random phase other than the draining one (Linux's `bbr_cycle_rand`).
const CYCLE_RAND: u32 = 7;
/// Window of the bandwidth filter, in rounds.
const BW_FILTER_ROUNDS: u64 = PACING_GAIN_CYCLE.len() as u64 + 2;
/// Window of the minimum RTT filter.
const MIN_RTT_WINDOW: Duration = Duration::from_secs(10);
/// How long PROBE_RTT holds the window at its minimum.
const PROBE_RTT_DURATION: Duration = Duration::from_millis(200);
/// The smallest congestion window, in segments.
const MIN_CWND_SEGMENTS: usize = 4;
/// STARTUP ends when the bandwidth grew less than this factor...
const FULL_BW_THRESH: f64 = 1.25;
/// ... for this many rounds in a row.
const FULL_BW_ROUNDS: u32 = 3;
/// Pace 1 % below the estimated bandwidth, so that no queue builds in PROBE_BW's 1.0 phases.
const PACING_MARGIN: f64 = 0.99;
/// Gain on the ACK aggregation estimate added to the window.
const EXTRA_ACKED_GAIN: f64 = 1.0;
/// Rounds per half of the ACK aggregation filter.
const EXTRA_ACKED_WINDOW_ROUNDS: u32 = 5;
/// The ACK aggregation allowance is at most this much data at the estimated bandwidth.
const EXTRA_ACKED_MAX: Duration = Duration::from_millis(100);
/// Segments after which an ACK aggregation epoch restarts anyway.
const ACK_EPOCH_RESET_SEGMENTS: u64 = 1 << 20;
/// The RTT assumed before one is measured, to pace the initial window.
const DEFAULT_RTT: Duration = Duration::from_millis(1);
const DEFAULT_MSS: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub(crate) enum Mode {
    Startup,
    Drain,
    ProbeBw,
    ProbeRtt,
}

/// Kathleen Nichols' windowed running maximum (Linux's `lib/win_minmax.c`): the best,
/// second best and third best samples of the window, by time, so that the maximum
/// expires in constant time and space.
#[derive(Debug, Clone, Copy, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
struct MaxFilter {
    s: [(u64, f64); 3],
}

impl MaxFilter {
    fn get(&self) -> f64 {
        self.s[0].1
    }

    /// Adds sample `v` at time `t` (in rounds) to a window of `win`; returns the maximum.
    fn update(&mut self, win: u64, t: u64, v: f64) -> f64 {
        if v >= self.s[0].1 || t.saturating_sub(self.s[2].0) > win {
            self.s = [(t, v); 3];
            return v;
        }
        if v >= self.s[1].1 {
            self.s[1] = (t, v);
            self.s[2] = (t, v);
        } else if v >= self.s[2].1 {
            self.s[2] = (t, v);
        }
        let dt = t.saturating_sub(self.s[0].0);
        if dt > win {
            // The best sample expired: the second best takes over.
            self.s[0] = self.s[1];
            self.s[1] = self.s[2];
            self.s[2] = (t, v);
            if t.saturating_sub(self.s[0].0) > win {
                self.s[0] = self.s[1];
                self.s[1] = self.s[2];
            }
        } else if self.s[1].0 == self.s[0].0 && dt > win / 4 {
            // A quarter of the window passed without a second best: take one.
            self.s[1] = (t, v);
            self.s[2] = (t, v);
        } else if self.s[2].0 == self.s[1].0 && dt > win / 2 {
            self.s[2] = (t, v);
        }
        self.s[0].1
    }
}

/// BBR's state: see the module documentation.
#[derive(Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Bbr {
    mss: usize,
    cwnd: usize,
    mode: Mode,
    /// Bottleneck bandwidth estimate, bytes per second, over rounds.
    bw: MaxFilter,
    /// Round trips counted by delivery: a round ends when a segment sent after its
    /// start is delivered.
    rounds: u64,
    next_round_delivered: u64,
    round_start: bool,
    min_rtt: Option<Duration>,
    min_rtt_stamp: Instant,
    probe_rtt_done: Option<Instant>,
    probe_rtt_round_done: bool,
    /// Sending restarted after an app-limited idle period.
    idle_restart: bool,
    /// The last sample left nothing in flight while the application had nothing to send.
    idle: bool,
    pacing_rate: f64,
    /// The RTT the initial pacing rate was computed from (the handshake's).
    init_rtt: Option<Duration>,
    pacing_gain: f64,
    cwnd_gain: f64,
    full_bw: f64,
    full_bw_count: u32,
    full_bw_reached: bool,
    cycle_index: usize,
    cycle_stamp: Instant,
    /// The window before recovery or PROBE_RTT, restored after.
    prior_cwnd: usize,
    packet_conservation: bool,
    prev_in_recovery: bool,
    /// ACK aggregation: the most data acknowledged beyond what the bandwidth explains, in
    /// two halves of a 10-round window.
    extra_acked: [usize; 2],
    extra_acked_index: usize,
    extra_acked_rounds: u32,
    ack_epoch_start: Instant,
    ack_epoch_acked: u64,
    rng: u32,
}

impl Bbr {
    pub fn new() -> Bbr {
        let cwnd = initial_window(DEFAULT_MSS);
        let mut bbr = Bbr {
            mss: DEFAULT_MSS,
            cwnd,
            mode: Mode::Startup,
            bw: MaxFilter::default(),
            rounds: 0,
            next_round_delivered: 0,
            round_start: false,
            min_rtt: None,
            min_rtt_stamp: Instant::ZERO,
            probe_rtt_done: None,
            probe_rtt_round_done: false,
            idle_restart: false,
            idle: false,
            pacing_rate: 0.0,
            init_rtt: None,
            pacing_gain: HIGH_GAIN,
            cwnd_gain: HIGH_GAIN,
            full_bw: 0.0,
            full_bw_count: 0,
            full_bw_reached: false,
            cycle_index: 0,
            cycle_stamp: Instant::ZERO,
            prior_cwnd: 0,
            packet_conservation: false,
            prev_in_recovery: false,
            extra_acked: [0; 2],
            extra_acked_index: 0,
            extra_acked_rounds: 0,
            ack_epoch_start: Instant::ZERO,
            ack_epoch_acked: 0,
            rng: 0x9e37_79b9,
        };
        bbr.init_pacing_rate(None);
        bbr
    }

    /// The state machine's current state.
    #[cfg(test)]
    pub(crate) fn mode(&self) -> Mode {
        self.mode
    }

    /// The bottleneck bandwidth estimate, bytes per second.
    fn max_bw(&self) -> f64 {
        self.bw.get()
    }

    /// The pacing rate before any bandwidth sample: the initial window per RTT, at
    /// STARTUP's gain.
    fn init_pacing_rate(&mut self, rtt: Option<Duration>) {
        self.init_rtt = rtt;
        let rtt = rtt.unwrap_or(DEFAULT_RTT).max(Duration::from_micros(1));
        let bw = self.cwnd as f64 * 1e6 / rtt.total_micros() as f64;
        self.pacing_rate = bw * HIGH_GAIN * PACING_MARGIN;
    }

    /// `gain × bandwidth × min RTT`, in bytes; the initial window before any RTT.
    fn bdp(&self, bw: f64, gain: f64) -> usize {
        match self.min_rtt {
            None => initial_window(self.mss),
            Some(rtt) => (bw * rtt.total_micros() as f64 / 1e6 * gain).ceil() as usize,
        }
    }

    fn min_cwnd(&self) -> usize {
        MIN_CWND_SEGMENTS * self.mss
    }

    /// The window a target needs beyond the BDP: three pacing quanta in flight at the
    /// sender and receiver (Linux's `bbr_quantization_budget`), plus two segments in the
    /// probing phase so that it does probe.
    fn quantization_budget(&self, cwnd: usize) -> usize {
        let quantum = pacing::quantum(self.pacing_rate as u64, self.mss);
        let mut cwnd = cwnd.max(self.min_cwnd()) + 3 * quantum;
        if self.mode == Mode::ProbeBw && self.cycle_index == 0 {
            cwnd += 2 * self.mss;
        }
        cwnd
    }

    /// The data in flight a gain aims for.
    fn inflight(&self, bw: f64, gain: f64) -> usize {
        self.quantization_budget(self.bdp(bw, gain))
    }

    fn random_below(&mut self, n: u32) -> u32 {
        // xorshift32
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.rng = x;
        x % n
    }

    fn save_cwnd(&mut self) {
        self.prior_cwnd = if !self.prev_in_recovery && self.mode != Mode::ProbeRtt {
            self.cwnd
        } else {
            self.prior_cwnd.max(self.cwnd)
        };
    }

    fn update_bw(&mut self, rs: &RateSample) {
        self.round_start = false;
        let Some(bw) = rs.rate() else {
            return;
        };
        if rs.prior_delivered >= self.next_round_delivered {
            self.next_round_delivered = rs.total_delivered;
            self.rounds += 1;
            self.round_start = true;
            self.packet_conservation = false;
        }
        // An app-limited sample is below the path's capacity unless it beats the estimate.
        if !rs.is_app_limited || bw >= self.max_bw() {
            self.bw.update(BW_FILTER_ROUNDS, self.rounds, bw);
        }
    }

    fn update_ack_aggregation(&mut self, now: Instant, rs: &RateSample) {
        if rs.acked_sacked == 0 || rs.interval.is_none() {
            return;
        }
        if self.round_start {
            self.extra_acked_rounds = (self.extra_acked_rounds + 1).min(31);
            if self.extra_acked_rounds >= EXTRA_ACKED_WINDOW_ROUNDS {
                self.extra_acked_rounds = 0;
                self.extra_acked_index ^= 1;
                self.extra_acked[self.extra_acked_index] = 0;
            }
        }
        let epoch = (now - self.ack_epoch_start).total_micros() as f64 / 1e6;
        let mut expected = (self.max_bw() * epoch) as u64;
        if self.ack_epoch_acked <= expected
            || self.ack_epoch_acked + rs.acked_sacked as u64
                >= ACK_EPOCH_RESET_SEGMENTS * self.mss as u64
        {
            self.ack_epoch_acked = 0;
            self.ack_epoch_start = now;
            expected = 0;
        }
        self.ack_epoch_acked += rs.acked_sacked as u64;
        let extra = (self.ack_epoch_acked - expected).min(self.cwnd as u64) as usize;
        let slot = &mut self.extra_acked[self.extra_acked_index];
        *slot = (*slot).max(extra);
    }

    fn ack_aggregation_cwnd(&self) -> usize {
        if !self.full_bw_reached {
            return 0;
        }
        let max = (self.max_bw() * EXTRA_ACKED_MAX.total_micros() as f64 / 1e6) as usize;
        let extra = self.extra_acked[0].max(self.extra_acked[1]);
        ((EXTRA_ACKED_GAIN * extra as f64) as usize).min(max)
    }

    fn advance_cycle_phase(&mut self, now: Instant) {
        self.cycle_index = (self.cycle_index + 1) % PACING_GAIN_CYCLE.len();
        self.cycle_stamp = now;
    }

    fn is_next_cycle_phase(&self, now: Instant, rs: &RateSample) -> bool {
        let full_length = self.min_rtt.is_none_or(|m| now - self.cycle_stamp > m);
        let inflight = rs.prior_in_flight;
        if self.pacing_gain > 1.0 {
            // Probing: until the bandwidth is probed with a full queue's worth, or loss.
            full_length
                && (rs.losses > 0 || inflight >= self.inflight(self.max_bw(), self.pacing_gain))
        } else if self.pacing_gain < 1.0 {
            // Draining: until the queue probing built is gone.
            full_length || inflight <= self.inflight(self.max_bw(), 1.0)
        } else {
            full_length
        }
    }

    fn update_cycle_phase(&mut self, now: Instant, rs: &RateSample) {
        if self.mode == Mode::ProbeBw && self.is_next_cycle_phase(now, rs) {
            self.advance_cycle_phase(now);
        }
    }

    fn check_full_bw_reached(&mut self, rs: &RateSample) {
        if self.full_bw_reached || !self.round_start || rs.is_app_limited {
            return;
        }
        if self.max_bw() >= self.full_bw * FULL_BW_THRESH {
            self.full_bw = self.max_bw();
            self.full_bw_count = 0;
            return;
        }
        self.full_bw_count += 1;
        self.full_bw_reached = self.full_bw_count >= FULL_BW_ROUNDS;
    }

    fn reset_probe_bw_mode(&mut self, now: Instant) {
        self.mode = Mode::ProbeBw;
        let skip = self.random_below(CYCLE_RAND) as usize;
        self.cycle_index = PACING_GAIN_CYCLE.len() - 1 - skip;
        self.advance_cycle_phase(now);
    }

    fn reset_mode(&mut self, now: Instant) {
        if self.full_bw_reached {
            self.reset_probe_bw_mode(now);
        } else {
            self.mode = Mode::Startup;
        }
    }

    fn check_drain(&mut self, now: Instant, rs: &RateSample) {
        if self.mode == Mode::Startup && self.full_bw_reached {
            self.mode = Mode::Drain;
        }
        if self.mode == Mode::Drain && rs.in_flight <= self.inflight(self.max_bw(), 1.0) {
            self.reset_probe_bw_mode(now);
        }
    }

    fn check_probe_rtt_done(&mut self, now: Instant) {
        if self.probe_rtt_done.is_some_and(|done| now > done) {
            // The minimum RTT was just measured: the filter starts a new window.
            self.min_rtt_stamp = now;
            self.cwnd = self.cwnd.max(self.prior_cwnd);
            self.reset_mode(now);
        }
    }

    fn update_min_rtt(&mut self, now: Instant, rs: &RateSample) {
        let expired = self.min_rtt.is_some() && now > self.min_rtt_stamp + MIN_RTT_WINDOW;
        if let Some(rtt) = rs.rtt
            && (self.min_rtt.is_none_or(|m| rtt < m) || expired)
        {
            self.min_rtt = Some(rtt);
            self.min_rtt_stamp = now;
        }
        if expired && !self.idle_restart && self.mode != Mode::ProbeRtt {
            self.mode = Mode::ProbeRtt;
            self.save_cwnd();
            self.probe_rtt_done = None;
        }
        if self.mode == Mode::ProbeRtt {
            if self.probe_rtt_done.is_none() && rs.in_flight <= self.min_cwnd() {
                self.probe_rtt_done = Some(now + PROBE_RTT_DURATION);
                self.probe_rtt_round_done = false;
                self.next_round_delivered = rs.total_delivered;
            } else if self.probe_rtt_done.is_some() {
                if self.round_start {
                    self.probe_rtt_round_done = true;
                }
                if self.probe_rtt_round_done {
                    self.check_probe_rtt_done(now);
                }
            }
        }
        if rs.delivered > 0 {
            self.idle_restart = false;
        }
    }

    fn update_gains(&mut self) {
        (self.pacing_gain, self.cwnd_gain) = match self.mode {
            Mode::Startup => (HIGH_GAIN, HIGH_GAIN),
            Mode::Drain => (DRAIN_GAIN, HIGH_GAIN),
            Mode::ProbeBw => (PACING_GAIN_CYCLE[self.cycle_index], CWND_GAIN),
            Mode::ProbeRtt => (1.0, 1.0),
        };
    }

    fn set_pacing_rate(&mut self, bw: f64, gain: f64) {
        if self.init_rtt.is_none() && self.min_rtt.is_some() {
            self.init_pacing_rate(self.min_rtt);
        }
        let rate = bw * gain * PACING_MARGIN;
        if self.full_bw_reached || rate > self.pacing_rate {
            self.pacing_rate = rate;
        }
    }

    /// Loss recovery: one round of packet conservation on entry (send what is
    /// delivered), the window reduced by what is lost, and the window before recovery
    /// restored on exit. Returns the window and whether conservation sets it.
    fn recover_or_restore(&mut self, rs: &RateSample) -> (usize, bool) {
        let mut cwnd = self.cwnd;
        if rs.losses > 0 {
            cwnd = cwnd.saturating_sub(rs.losses).max(self.mss);
        }
        if rs.in_recovery && !self.prev_in_recovery {
            self.packet_conservation = true;
            self.next_round_delivered = rs.total_delivered;
            cwnd = rs.in_flight + rs.acked_sacked;
        } else if self.prev_in_recovery && !rs.in_recovery {
            cwnd = cwnd.max(self.prior_cwnd);
            self.packet_conservation = false;
        }
        self.prev_in_recovery = rs.in_recovery;
        if self.packet_conservation {
            (cwnd.max(rs.in_flight + rs.acked_sacked), true)
        } else {
            (cwnd, false)
        }
    }

    fn set_cwnd(&mut self, rs: &RateSample, bw: f64) {
        let acked = rs.acked_sacked;
        if acked > 0 {
            let (mut cwnd, conserving) = self.recover_or_restore(rs);
            if !conserving {
                let target = self.quantization_budget(
                    self.bdp(bw, self.cwnd_gain) + self.ack_aggregation_cwnd(),
                );
                if self.full_bw_reached {
                    cwnd = (cwnd + acked).min(target);
                } else if cwnd < target || rs.total_delivered < initial_window(self.mss) as u64 {
                    cwnd += acked;
                }
                cwnd = cwnd.max(self.min_cwnd());
            }
            self.cwnd = cwnd;
        }
        if self.mode == Mode::ProbeRtt {
            self.cwnd = self.cwnd.min(self.min_cwnd());
        }
    }
}

impl Default for Bbr {
    fn default() -> Self {
        Self::new()
    }
}

impl Controller for Bbr {
    fn window(&self) -> usize {
        self.cwnd
    }

    fn on_ack(&mut self, _now: Instant, _len: usize, _in_flight: usize, rtt: &RttEstimator) {
        // The handshake's RTT paces the initial window (Linux's bbr_init).
        if self.init_rtt.is_none()
            && let Some(srtt) = rtt.srtt()
        {
            self.init_pacing_rate(Some(Duration::from_millis(srtt.max(1) as u64)));
        }
    }

    fn on_rate_sample(&mut self, now: Instant, rs: &RateSample) {
        self.update_bw(rs);
        self.update_ack_aggregation(now, rs);
        self.update_cycle_phase(now, rs);
        self.check_full_bw_reached(rs);
        self.check_drain(now, rs);
        self.update_min_rtt(now, rs);
        self.update_gains();
        let bw = self.max_bw();
        self.set_pacing_rate(bw, self.pacing_gain);
        self.set_cwnd(rs, bw);
        self.idle = rs.in_flight == 0 && rs.app_limited_now;
    }

    fn on_loss(&mut self, _now: Instant, _in_flight: usize) {
        // Entering fast recovery: the window is kept for when it ends.
        self.save_cwnd();
    }

    fn on_rto(&mut self, _now: Instant, _in_flight: usize) {
        // The loss window (RFC 5681) as Linux's tcp_enter_loss, and the bandwidth
        // plateau test starts over; the window before is restored once recovered.
        self.save_cwnd();
        self.prev_in_recovery = true;
        self.packet_conservation = false;
        self.full_bw = 0.0;
        self.round_start = true;
        self.cwnd = self.mss;
    }

    fn post_transmit(&mut self, now: Instant, _len: usize) {
        if !self.idle {
            return;
        }
        // Sending again after an app-limited idle period: no queue is there to drain.
        self.idle = false;
        self.idle_restart = true;
        self.ack_epoch_start = now;
        self.ack_epoch_acked = 0;
        match self.mode {
            Mode::ProbeBw => self.set_pacing_rate(self.max_bw(), 1.0),
            Mode::ProbeRtt => self.check_probe_rtt_done(now),
            _ => {}
        }
    }

    fn set_mss(&mut self, mss: usize) {
        self.mss = mss;
        self.cwnd = initial_window(mss);
        self.init_pacing_rate(self.init_rtt);
    }

    fn pacing_rate(&self) -> Option<u64> {
        Some((self.pacing_rate as u64).max(1))
    }

    fn controls_recovery(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod test {
    use alloc::collections::VecDeque;
    use alloc::vec::Vec;

    use super::*;
    use crate::socket::tcp::pacing::Pacer;
    use crate::socket::tcp::rate::{RateEstimator, TxState};
    use crate::wire::TcpSeqNumber;

    const MSS: usize = 1448;

    #[test]
    fn max_filter_keeps_the_window_maximum() {
        let mut f = MaxFilter::default();
        assert_eq!(f.update(10, 1, 5.0), 5.0);
        assert_eq!(f.update(10, 2, 3.0), 5.0);
        assert_eq!(f.update(10, 4, 4.0), 5.0);
        assert_eq!(f.update(10, 8, 2.0), 5.0);
        // The best sample (round 1) expires after 10 rounds: the best of the later ones.
        assert_eq!(f.update(10, 12, 1.0), 4.0);
        assert_eq!(f.update(10, 13, 9.0), 9.0);
        // Long silence: the new sample alone.
        assert_eq!(f.update(10, 40, 1.0), 1.0);
    }

    /// One bottleneck of `rate` bytes/s with a FIFO queue, `rtt` of propagation delay and
    /// random loss `loss` (seeded); ACKs every segment. Lost segments are found when the
    /// next segment's ACK arrives (as SACK would) and not retransmitted (the window
    /// dynamics are the point). Calls `observe` after every ACK with the bytes delivered.
    fn simulate<C: Controller>(
        cc: &mut C,
        rate: f64,
        rtt: Duration,
        loss: f64,
        secs: u64,
        mut observe: impl FnMut(Instant, &C, u64),
    ) {
        struct Sent {
            end: usize,
            tx: TxState,
            xmit: Instant,
            ack_at: Option<Instant>,
        }
        let start = Instant::from_secs(1);
        let end = start + Duration::from_secs(secs);
        let rtte = RttEstimator::default();
        let serialization = Duration::from_micros((MSS as f64 * 1e6 / rate) as u64);
        let (mut now, mut free_at) = (start, start);
        let mut estimator = RateEstimator::default();
        let mut pacer = Pacer::default();
        let mut flight: VecDeque<Sent> = VecDeque::new();
        let (mut in_flight, mut next_seq, mut delivered) = (0, 0, 0u64);
        let mut recovery_point: Option<usize> = None;
        let mut rng: u32 = 0x1234_5678;
        cc.set_mss(MSS);
        loop {
            let next_ack = flight.iter().find_map(|s| s.ack_at);
            let send_at =
                (in_flight + MSS <= cc.window()).then(|| pacer.release_at(now).unwrap_or(now));
            now = match (next_ack, send_at) {
                (Some(a), Some(s)) => a.min(s),
                (Some(a), None) => a,
                (None, Some(s)) => s,
                (None, None) => panic!("stalled"),
            };
            if now > end {
                return;
            }
            if next_ack != Some(now) {
                rng ^= rng << 13;
                rng ^= rng >> 17;
                rng ^= rng << 5;
                let lost = (rng as f64 / u32::MAX as f64) < loss;
                free_at = free_at.max(now) + serialization;
                let tx = estimator.on_send(now, flight.is_empty());
                next_seq += MSS;
                let ack_at = (!lost).then_some(free_at + rtt);
                flight.push_back(Sent {
                    end: next_seq,
                    tx,
                    xmit: now,
                    ack_at,
                });
                in_flight += MSS;
                pacer.on_send(now, MSS, cc.pacing_rate());
                cc.post_transmit(now, MSS);
                continue;
            }
            let prior_in_flight = in_flight;
            let mut losses = 0;
            let mut acked_end = 0;
            while let Some(s) = flight.pop_front() {
                in_flight -= MSS;
                if s.ack_at.is_none() {
                    losses += MSS;
                    continue;
                }
                let end_seq = TcpSeqNumber(s.end as i32);
                estimator.on_delivered(&s.tx, s.xmit, end_seq, MSS, false, now);
                delivered += MSS as u64;
                acked_end = s.end;
                break;
            }
            if losses > 0 && recovery_point.is_none() {
                recovery_point = Some(next_seq);
                cc.on_loss(now, in_flight);
            } else if recovery_point.is_some_and(|p| acked_end >= p) {
                recovery_point = None;
                cc.on_ack(now, MSS, in_flight, &rtte);
            } else if recovery_point.is_none() {
                cc.on_ack(now, MSS, in_flight, &rtte);
            }
            let mut rs = estimator.sample(now, Some(rtt));
            rs.prior_in_flight = prior_in_flight;
            rs.in_flight = in_flight;
            rs.losses = losses;
            rs.in_recovery = recovery_point.is_some();
            rs.mss = MSS;
            cc.on_rate_sample(now, &rs);
            observe(now, cc, delivered);
        }
    }

    const RATE: f64 = 10e6;
    const RTT: Duration = Duration::from_millis(20);
    /// 10 MB/s × 20 ms.
    const BDP: usize = 200_000;

    #[test]
    fn startup_drain_probe_bw_find_the_bottleneck() {
        let mut bbr = Bbr::new();
        let mut modes = Vec::new();
        let mut at_2s = 0;
        let mut delivered = 0;
        simulate(&mut bbr, RATE, RTT, 0.0, 4, |now, bbr, d| {
            if modes.last() != Some(&bbr.mode()) {
                modes.push(bbr.mode());
            }
            if now <= Instant::from_secs(3) {
                at_2s = d;
            }
            delivered = d;
        });
        assert_eq!(modes, [Mode::Startup, Mode::Drain, Mode::ProbeBw]);
        let bw = bbr.max_bw();
        assert!((bw - RATE).abs() < RATE * 0.02, "bandwidth {bw}");
        // cwnd_gain × BDP plus the quantization budget (three 1 ms pacing quanta, 30 kB,
        // and two segments in the probing phase) and a little ACK aggregation.
        assert!(bbr.window() >= 2 * BDP, "cwnd {}", bbr.window());
        assert!(
            bbr.window() <= 2 * BDP + 30_000 + 8 * MSS,
            "cwnd {}",
            bbr.window()
        );
        // The bottleneck is kept busy: the last 2 s deliver at its rate.
        let rate = (delivered - at_2s) as f64 / 2.0;
        assert!(rate > RATE * 0.98, "delivery rate {rate}");
    }

    /// Average window and delivery rate over the last 2 s of 6 s at 1 % random loss.
    fn under_random_loss<C: Controller>(cc: &mut C) -> (f64, f64) {
        let (mut sum, mut n, mut d0, mut d1) = (0.0, 0.0, 0, 0);
        simulate(cc, RATE, RTT, 0.01, 6, |now, cc, d| {
            if now > Instant::from_secs(5) {
                sum += cc.window() as f64;
                n += 1.0;
            } else {
                d0 = d;
            }
            d1 = d;
        });
        (sum / n, (d1 - d0) as f64 / 2.0)
    }

    #[test]
    fn random_loss_does_not_shrink_the_window() {
        let (cwnd, rate) = under_random_loss(&mut Bbr::new());
        // Losses cost one round of conservation each, not half the window: the window
        // stays above the BDP (the pipe stays full).
        assert!(cwnd > 1.2 * BDP as f64, "bbr cwnd {cwnd}");
        assert!(rate > 0.9 * RATE, "bbr delivery rate {rate}");
    }

    #[cfg(feature = "socket-tcp-cubic")]
    #[test]
    fn random_loss_shrinks_cubic_not_bbr() {
        let (bbr_cwnd, bbr_rate) = under_random_loss(&mut Bbr::new());
        let (cubic_cwnd, cubic_rate) = under_random_loss(&mut super::super::cubic::Cubic::new());
        assert!(cubic_cwnd < 0.5 * BDP as f64, "cubic cwnd {cubic_cwnd}");
        assert!(bbr_cwnd > 3.0 * cubic_cwnd, "{bbr_cwnd} vs {cubic_cwnd}");
        assert!(bbr_rate > 2.0 * cubic_rate, "{bbr_rate} vs {cubic_rate}");
    }

    #[test]
    fn probe_rtt_every_ten_seconds() {
        let mut bbr = Bbr::new();
        let mut probe: Option<(Instant, Instant)> = None;
        let mut max_cwnd_in_probe = 0;
        let mut after = Vec::new();
        simulate(&mut bbr, RATE, RTT, 0.0, 12, |now, bbr, _| {
            if bbr.mode() == Mode::ProbeRtt {
                let (start, _) = probe.unwrap_or((now, now));
                probe = Some((start, now));
                max_cwnd_in_probe = max_cwnd_in_probe.max(bbr.window());
            } else if probe.is_some() && after.last() != Some(&bbr.mode()) {
                after.push(bbr.mode());
            }
        });
        let (start, end) = probe.expect("no PROBE_RTT in 12 s");
        // 10 s after the minimum RTT was first measured (one RTT after the start).
        assert!(start >= Instant::from_secs(11), "{start}");
        assert!(
            start <= Instant::from_secs(11) + Duration::from_millis(100),
            "{start}"
        );
        assert_eq!(max_cwnd_in_probe, MIN_CWND_SEGMENTS * MSS);
        // 200 ms at the minimum window once the queue drained, and a round.
        let held = end - start;
        assert!(held >= PROBE_RTT_DURATION, "{held}");
        assert!(held <= PROBE_RTT_DURATION + RTT * 4, "{held}");
        assert_eq!(after, [Mode::ProbeBw]);
    }

    #[test]
    fn recovery_conserves_packets_then_restores_the_window() {
        let mut bbr = Bbr::new();
        simulate(&mut bbr, RATE, RTT, 0.0, 2, |_, _, _| {});
        let before = bbr.window();
        let now = Instant::from_secs(3);
        bbr.on_loss(now, before);
        let mut rs = RateSample {
            acked_sacked: MSS,
            losses: MSS,
            in_flight: 50 * MSS,
            prior_in_flight: 52 * MSS,
            in_recovery: true,
            mss: MSS,
            ..RateSample::default()
        };
        bbr.on_rate_sample(now, &rs);
        // Packet conservation: what is in flight plus what this ACK delivered.
        assert_eq!(bbr.window(), 51 * MSS);
        rs.losses = 0;
        rs.in_flight = 51 * MSS;
        bbr.on_rate_sample(now, &rs);
        assert_eq!(bbr.window(), 52 * MSS);
        // Recovery over: the window before it is back.
        rs.in_recovery = false;
        bbr.on_rate_sample(now, &rs);
        assert!(bbr.window() >= before, "{} < {before}", bbr.window());
    }

    #[test]
    fn rto_restarts_from_one_segment_and_restores_after() {
        let mut bbr = Bbr::new();
        simulate(&mut bbr, RATE, RTT, 0.0, 2, |_, _, _| {});
        let before = bbr.window();
        bbr.on_rto(Instant::from_secs(3), before);
        assert_eq!(bbr.window(), MSS);
        let rs = RateSample {
            acked_sacked: MSS,
            in_recovery: false,
            mss: MSS,
            ..RateSample::default()
        };
        bbr.on_rate_sample(Instant::from_secs(3), &rs);
        assert!(bbr.window() >= before);
    }

    #[test]
    fn pacing_rate_follows_the_bandwidth() {
        let mut bbr = Bbr::new();
        bbr.set_mss(MSS);
        // Before any sample: the initial window per (default) RTT at STARTUP's gain.
        let initial = bbr.pacing_rate().unwrap() as f64;
        let expected = (10 * MSS) as f64 / 1e-3 * HIGH_GAIN * PACING_MARGIN;
        assert!((initial - expected).abs() < 1.0, "{initial} vs {expected}");
        simulate(&mut bbr, RATE, RTT, 0.0, 3, |_, _, _| {});
        let rate = bbr.pacing_rate().unwrap() as f64;
        let gain = PACING_GAIN_CYCLE[bbr.cycle_index];
        let want = bbr.max_bw() * gain * PACING_MARGIN;
        assert!((rate - want).abs() <= 1.0, "{rate} vs {want}");
    }
}
