//! HyStart++ (RFC 9406): leaving slow start on a rising RTT, before the losses of an
//! overshoot (tapir patch, see TAPIR-PATCH.md).
//!
//! Slow start doubles the window every round trip until a loss; at a bottleneck with a
//! buffer the last doubling overflows it and loses up to a window of segments at once.
//! HyStart++ watches the minimum RTT of each round: when it grows by more than
//! `clamp(last round's minimum / 8, 4 ms, 16 ms)`, a queue is building, and the sender
//! enters Conservative Slow Start (CSS), growing a quarter as fast. If the RTT falls back
//! below the baseline, that was a false alarm and slow start resumes; after five rounds of
//! CSS, congestion avoidance begins at the window reached.
//!
//! Rounds and RTT samples come from the delivery rate samples (`RateSample`): a round
//! ends when data sent after its start is delivered, as BBR counts them. Used for the
//! initial slow start only (RFC 9406 §4.3); a slow start after a timeout is the standard
//! one.

use crate::time::Duration;

use super::super::rate::RateSample;

/// RFC 9406 §4.3 constants.
const MIN_RTT_THRESH: Duration = Duration::from_millis(4);
const MAX_RTT_THRESH: Duration = Duration::from_millis(16);
const MIN_RTT_DIVISOR: u32 = 8;
const N_RTT_SAMPLE: u32 = 8;
const CSS_GROWTH_DIVISOR: usize = 4;
const CSS_ROUNDS: u32 = 5;

/// What a sample changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Event {
    /// The RTT rose: Conservative Slow Start begins.
    EnterCss,
    /// The RTT fell back below the CSS baseline: slow start resumes.
    ResumeSlowStart,
    /// CSS lasted `CSS_ROUNDS` rounds: congestion avoidance begins (ssthresh = cwnd).
    EndSlowStart,
}

#[derive(Debug, Clone, Copy, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub(super) struct HyStart {
    /// Whether the initial slow start is still under way (cleared for good by its end).
    done: bool,
    /// The delivered count that ends the current round.
    round_end: u64,
    last_round_min_rtt: Option<Duration>,
    current_round_min_rtt: Option<Duration>,
    rtt_sample_count: u32,
    /// In CSS: the minimum RTT that started it, and the rounds done in it.
    css_baseline: Option<Duration>,
    css_rounds: u32,
}

impl HyStart {
    /// Whether the sender is in Conservative Slow Start (`finish` clears the baseline).
    pub(super) fn in_css(&self) -> bool {
        self.css_baseline.is_some()
    }

    /// The initial slow start ended otherwise (a loss, a timeout): HyStart++ is over.
    pub(super) fn finish(&mut self) {
        self.done = true;
        self.css_baseline = None;
    }

    /// Slow start's byte count for an ACK (RFC 3465), a quarter of it in Conservative
    /// Slow Start.
    pub(super) fn increase(&self, slow_start_increase: usize) -> usize {
        if self.in_css() {
            slow_start_increase / CSS_GROWTH_DIVISOR
        } else {
            slow_start_increase
        }
    }

    /// The rate sample of an ACK received in slow start.
    pub(super) fn on_sample(&mut self, rs: &RateSample) -> Option<Event> {
        if self.done {
            return None;
        }
        if rs.prior_delivered >= self.round_end {
            // A new round (RFC 9406 §4.3: at windowEnd).
            self.round_end = rs.total_delivered;
            self.last_round_min_rtt = self.current_round_min_rtt;
            self.current_round_min_rtt = None;
            self.rtt_sample_count = 0;
            if self.css_baseline.is_some() {
                self.css_rounds += 1;
                if self.css_rounds >= CSS_ROUNDS {
                    self.finish();
                    return Some(Event::EndSlowStart);
                }
            }
        }
        let rtt = rs.rtt?;
        let current = self.current_round_min_rtt.map_or(rtt, |m| m.min(rtt));
        self.current_round_min_rtt = Some(current);
        self.rtt_sample_count += 1;
        if self.rtt_sample_count < N_RTT_SAMPLE {
            return None;
        }
        match self.css_baseline {
            None => {
                let last = self.last_round_min_rtt?;
                let thresh = (last / MIN_RTT_DIVISOR).clamp(MIN_RTT_THRESH, MAX_RTT_THRESH);
                if current < last + thresh {
                    return None;
                }
                self.css_baseline = Some(current);
                self.css_rounds = 0;
                Some(Event::EnterCss)
            }
            Some(baseline) if current < baseline => {
                self.css_baseline = None;
                Some(Event::ResumeSlowStart)
            }
            Some(_) => None,
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    const SEG: u64 = 1000;

    /// Feeds one round of `acks` ACKs of a segment each, with these RTTs in turn, to
    /// `hs` (the round's data sent after the last round's was delivered).
    fn round(hs: &mut HyStart, delivered: &mut u64, acks: u64, rtt_ms: u64) -> Vec<Event> {
        let start = *delivered;
        let mut events = Vec::new();
        for _ in 0..acks {
            *delivered += SEG;
            let rs = RateSample {
                prior_delivered: start,
                total_delivered: *delivered,
                acked_sacked: SEG as usize,
                rtt: Some(Duration::from_millis(rtt_ms)),
                ..RateSample::default()
            };
            events.extend(hs.on_sample(&rs));
        }
        events
    }

    #[test]
    fn a_steady_rtt_stays_in_slow_start() {
        let mut hs = HyStart::default();
        let mut delivered = 0;
        for n in [10, 20, 40, 80, 160] {
            assert_eq!(round(&mut hs, &mut delivered, n, 20), []);
        }
        assert!(!hs.in_css());
    }

    #[test]
    fn a_rising_rtt_enters_css_then_congestion_avoidance() {
        let mut hs = HyStart::default();
        let mut delivered = 0;
        assert_eq!(round(&mut hs, &mut delivered, 20, 20), []);
        // 20 ms + clamp(20/8, 4, 16) = 24 ms: 23 ms is not enough, 24 ms is.
        assert_eq!(round(&mut hs, &mut delivered, 40, 23), []);
        assert_eq!(round(&mut hs, &mut delivered, 80, 27), [Event::EnterCss]);
        assert!(hs.in_css());
        // Only after N_RTT_SAMPLE samples: the first seven of a round decide nothing.
        for _ in 0..4 {
            assert_eq!(round(&mut hs, &mut delivered, 80, 27), []);
        }
        // The fifth round of CSS starts: congestion avoidance.
        assert_eq!(round(&mut hs, &mut delivered, 1, 27), [Event::EndSlowStart]);
        assert!(!hs.in_css());
        assert_eq!(round(&mut hs, &mut delivered, 80, 50), []);
    }

    #[test]
    fn an_rtt_back_below_the_baseline_resumes_slow_start() {
        let mut hs = HyStart::default();
        let mut delivered = 0;
        round(&mut hs, &mut delivered, 20, 20);
        assert_eq!(round(&mut hs, &mut delivered, 40, 30), [Event::EnterCss]);
        assert_eq!(
            round(&mut hs, &mut delivered, 40, 21),
            [Event::ResumeSlowStart]
        );
        assert!(!hs.in_css());
    }

    #[test]
    fn the_threshold_is_clamped() {
        // 200 ms / 8 = 25 ms, clamped to 16 ms: 216 ms enters CSS.
        let mut hs = HyStart::default();
        let mut delivered = 0;
        round(&mut hs, &mut delivered, 20, 200);
        assert_eq!(round(&mut hs, &mut delivered, 20, 215), []);
        assert_eq!(round(&mut hs, &mut delivered, 20, 231), [Event::EnterCss]);
        // 1 ms / 8 is below 4 ms: 4 ms more is needed.
        let mut hs = HyStart::default();
        let mut delivered = 0;
        round(&mut hs, &mut delivered, 20, 1);
        assert_eq!(round(&mut hs, &mut delivered, 20, 4), []);
        assert_eq!(round(&mut hs, &mut delivered, 20, 8), [Event::EnterCss]);
    }

    #[test]
    fn finished_does_nothing() {
        let mut hs = HyStart::default();
        hs.finish();
        let mut delivered = 0;
        round(&mut hs, &mut delivered, 20, 20);
        assert_eq!(round(&mut hs, &mut delivered, 40, 80), []);
    }
}
