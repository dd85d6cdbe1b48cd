//! Delivery rate estimation (tapir patch, see TAPIR-PATCH.md).
//!
//! draft-cheng-iccrg-delivery-rate-estimation, as Linux's `tcp_rate.c` implements it: every
//! transmission takes a snapshot of the connection's delivery state ([`TxState`]); when an
//! ACK delivers segments (cumulatively or by SACK), the snapshot of the most recently sent
//! one gives the interval over which the bytes delivered since were delivered, and the
//! ratio is a [`RateSample`] for rate-based congestion control (BBR).
//!
//! Intervals are the longer of the send interval (how long the sender took to send the
//! segments acknowledged) and the ACK interval (how long the receiver took to acknowledge
//! them), so that neither ACK compression nor a burst of sends overestimates the rate.
//! Samples taken while the application did not keep the pipe full are marked app-limited.

use crate::time::{Duration, Instant};
use crate::wire::TcpSeqNumber;

/// The connection's delivery state when a segment was (re)transmitted (the draft's
/// `P.delivered`, `P.delivered_time`, `P.first_sent_time`, `P.is_app_limited`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct TxState {
    delivered: u64,
    delivered_time: Instant,
    first_sent_time: Instant,
    app_limited: bool,
}

/// One delivery rate sample, produced for every ACK that delivered data, with what else
/// a rate-based congestion controller needs to know about that ACK.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RateSample {
    /// Bytes delivered over `interval` (the draft's `rs.delivered`).
    pub delivered: u64,
    /// The sampling interval; `None` when this ACK gives no valid sample.
    pub interval: Option<Duration>,
    /// The connection's delivered count when the newest delivered segment was sent.
    pub prior_delivered: u64,
    /// The connection's delivered count after this ACK.
    pub total_delivered: u64,
    /// Bytes this ACK newly delivered, cumulatively or by SACK.
    pub acked_sacked: usize,
    /// Bytes this ACK made the sender judge lost.
    pub losses: usize,
    /// Whether the sample was taken while the application limited the sending rate.
    pub is_app_limited: bool,
    /// Whether the connection is app-limited now (until what is in flight is delivered).
    pub app_limited_now: bool,
    /// RTT of the most recently sent segment delivered by this ACK (not retransmitted).
    pub rtt: Option<Duration>,
    /// Bytes in the network before and after this ACK (RFC 6675's pipe).
    pub prior_in_flight: usize,
    pub in_flight: usize,
    /// Whether the sender is in loss recovery (fast recovery or after a timeout).
    pub in_recovery: bool,
    /// The sender's maximum segment size.
    pub mss: usize,
}

impl RateSample {
    /// The delivery rate in bytes per second, when the sample is valid.
    pub fn rate(&self) -> Option<f64> {
        let interval = self.interval?.total_micros();
        (interval > 0).then(|| self.delivered as f64 * 1e6 / interval as f64)
    }
}

/// The sample an ACK is building while the scoreboard reports what it delivered.
#[derive(Debug, Clone, Copy, Default)]
struct Building {
    /// Snapshot of the most recently sent segment delivered so far, and its send time
    /// and end.
    newest: Option<(TxState, Instant, TcpSeqNumber)>,
    send_elapsed: Duration,
    rtt: Option<Duration>,
    acked_sacked: usize,
}

/// The connection-wide state of the delivery rate estimator.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RateEstimator {
    /// Bytes delivered so far (the draft's `C.delivered`).
    delivered: u64,
    /// When `delivered` last grew.
    delivered_time: Option<Instant>,
    /// The send time of the most recently sent segment delivered so far.
    first_sent_time: Option<Instant>,
    /// While non-zero, the connection is app-limited until `delivered` passes it.
    app_limited: u64,
    building: Building,
}

impl RateEstimator {
    /// Bytes delivered so far.
    #[cfg(test)]
    pub(crate) fn delivered(&self) -> u64 {
        self.delivered
    }

    /// The snapshot for a segment (re)transmitted at `now`; `idle` when nothing else is
    /// in flight, which restarts both intervals (the draft's "if no packets in flight").
    pub(crate) fn on_send(&mut self, now: Instant, idle: bool) -> TxState {
        if idle || self.first_sent_time.is_none() {
            self.first_sent_time = Some(now);
            self.delivered_time = Some(now);
        }
        TxState {
            delivered: self.delivered,
            delivered_time: self.delivered_time.unwrap_or(now),
            first_sent_time: self.first_sent_time.unwrap_or(now),
            app_limited: self.app_limited != 0,
        }
    }

    /// `len` bytes of a segment sent at `xmit` (ending at `end`) were delivered at `now`.
    /// The most recently sent of the segments an ACK delivers sets the sample's interval.
    pub(crate) fn on_delivered(
        &mut self,
        tx: &TxState,
        xmit: Instant,
        end: TcpSeqNumber,
        len: usize,
        retransmitted: bool,
        now: Instant,
    ) {
        self.delivered += len as u64;
        let b = &mut self.building;
        b.acked_sacked += len;
        let newer = match b.newest {
            None => true,
            Some((_, x, e)) => xmit > x || (xmit == x && end > e),
        };
        if newer {
            b.newest = Some((*tx, xmit, end));
            b.send_elapsed = xmit - tx.first_sent_time;
            // Karn: a retransmitted segment's RTT is ambiguous.
            b.rtt = (!retransmitted).then(|| now - xmit);
            self.first_sent_time = Some(xmit);
        }
    }

    /// Bytes delivered by a cumulative ACK inside a segment (part of a repacketized
    /// retransmission): counted, without a snapshot of their own.
    pub(crate) fn on_delivered_part(&mut self, len: usize) {
        self.delivered += len as u64;
        self.building.acked_sacked += len;
    }

    /// The application has nothing more to send while `in_flight` bytes are in the
    /// network and the congestion window has room: samples are app-limited until those
    /// bytes are delivered (the draft's `C.app_limited`).
    pub(crate) fn on_app_limited(&mut self, in_flight: usize) {
        self.app_limited = self.app_limited_mark(in_flight);
    }

    /// Whether `on_app_limited(in_flight)` would change nothing (tapir: lets the sender
    /// skip the questions that decide whether to call it).
    pub(crate) fn app_limited_marked(&self, in_flight: usize) -> bool {
        self.app_limited == self.app_limited_mark(in_flight)
    }

    fn app_limited_mark(&self, in_flight: usize) -> u64 {
        (self.delivered + in_flight as u64).max(1)
    }

    /// Ends the ACK: the rate sample of everything delivered since the last one. The
    /// caller fills in the fields about the sender (losses, in flight, recovery, MSS).
    /// An interval shorter than `min_rtt` is not a valid sample (it would overestimate:
    /// the draft's "unlikely" case of a stretched ACK of data sent in a burst).
    pub(crate) fn sample(&mut self, now: Instant, min_rtt: Option<Duration>) -> RateSample {
        let b = core::mem::take(&mut self.building);
        if b.acked_sacked > 0 {
            self.delivered_time = Some(now);
        }
        if self.app_limited != 0 && self.delivered > self.app_limited {
            self.app_limited = 0;
        }
        let mut rs = RateSample {
            total_delivered: self.delivered,
            acked_sacked: b.acked_sacked,
            rtt: b.rtt,
            app_limited_now: self.app_limited != 0,
            ..RateSample::default()
        };
        let Some((tx, _, _)) = b.newest else {
            return rs;
        };
        rs.prior_delivered = tx.delivered;
        rs.is_app_limited = tx.app_limited;
        rs.delivered = self.delivered - tx.delivered;
        let ack_elapsed = now - tx.delivered_time;
        let interval = b.send_elapsed.max(ack_elapsed);
        if min_rtt.is_none_or(|m| interval >= m) && interval > Duration::ZERO {
            rs.interval = Some(interval);
        }
        rs
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn ms(n: i64) -> Instant {
        Instant::from_millis(n)
    }

    const MSS: usize = 1000;

    #[test]
    fn paced_flow_measures_its_sending_rate() {
        // One segment per ms, ACKed one RTT (20 ms) later: 1 MB/s.
        let mut rate = RateEstimator::default();
        let mut sent = Vec::new();
        for i in 0..80 {
            sent.push(rate.on_send(ms(i), i == 0));
            if i >= 20 {
                let k = (i - 20) as usize;
                let end = TcpSeqNumber(((k + 1) * MSS) as i32);
                rate.on_delivered(&sent[k], ms(k as i64), end, MSS, false, ms(i));
                let rs = rate.sample(ms(i), Some(Duration::from_millis(20)));
                assert_eq!(rs.acked_sacked, MSS);
                assert_eq!(rs.rtt, Some(Duration::from_millis(20)));
                // The first round's samples span the start-up (nothing delivered yet when
                // they were sent); from the second round on, exactly the sending rate.
                if k > 20 {
                    let r = rs.rate().unwrap();
                    assert!((r - 1e6).abs() < 1.0, "rate {r} at {i}");
                }
            }
        }
        assert_eq!(rate.delivered(), 60 * MSS as u64);
    }

    #[test]
    fn stretched_ack_of_a_burst_is_not_faster_than_the_sends() {
        // Ten segments sent over 10 ms, all ACKed at once at 30 ms: the send interval
        // (9 ms) is shorter than the ACK interval (30 ms from the start): 10 kB in 30 ms.
        let mut rate = RateEstimator::default();
        let sent: Vec<_> = (0..10).map(|i| rate.on_send(ms(i), i == 0)).collect();
        for (k, tx) in sent.iter().enumerate() {
            let end = TcpSeqNumber(((k + 1) * MSS) as i32);
            rate.on_delivered(tx, ms(k as i64), end, MSS, false, ms(30));
        }
        let rs = rate.sample(ms(30), None);
        assert_eq!(rs.delivered, 10 * MSS as u64);
        assert_eq!(rs.interval, Some(Duration::from_millis(30)));
        // The newest segment (sent at 9 ms) gives the RTT.
        assert_eq!(rs.rtt, Some(Duration::from_millis(21)));
    }

    #[test]
    fn interval_below_min_rtt_is_invalid() {
        let mut rate = RateEstimator::default();
        let tx = rate.on_send(ms(0), true);
        rate.on_delivered(&tx, ms(0), TcpSeqNumber(1000), MSS, false, ms(5));
        let rs = rate.sample(ms(5), Some(Duration::from_millis(10)));
        assert_eq!(rs.interval, None);
        assert_eq!(rs.rate(), None);
        assert_eq!(rs.acked_sacked, MSS);
    }

    #[test]
    fn app_limited_marks_samples_until_in_flight_data_is_delivered() {
        let mut rate = RateEstimator::default();
        let a = rate.on_send(ms(0), true);
        rate.on_app_limited(MSS);
        let b = rate.on_send(ms(1), false);
        rate.on_delivered(&a, ms(0), TcpSeqNumber(1000), MSS, false, ms(20));
        let rs = rate.sample(ms(20), None);
        assert!(!rs.is_app_limited);
        assert!(rs.app_limited_now);
        rate.on_delivered(&b, ms(1), TcpSeqNumber(2000), MSS, false, ms(21));
        let rs = rate.sample(ms(21), None);
        assert!(rs.is_app_limited);
        // Everything in flight when the application ran dry is delivered.
        assert!(!rs.app_limited_now);
        let c = rate.on_send(ms(22), true);
        rate.on_delivered(&c, ms(22), TcpSeqNumber(3000), MSS, false, ms(42));
        assert!(!rate.sample(ms(42), None).is_app_limited);
    }

    #[test]
    fn retransmission_gives_no_rtt() {
        let mut rate = RateEstimator::default();
        let tx = rate.on_send(ms(0), true);
        rate.on_delivered(&tx, ms(0), TcpSeqNumber(1000), MSS, true, ms(30));
        assert_eq!(rate.sample(ms(30), None).rtt, None);
    }
}
