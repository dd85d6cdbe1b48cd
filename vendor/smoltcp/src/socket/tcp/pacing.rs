//! Packet pacing (tapir patch, see TAPIR-PATCH.md).
//!
//! A congestion controller that gives a pacing rate (BBR) has its data segments spread
//! out in time: after sending `len` bytes the next segment may go `len / rate` later, as
//! Linux's earliest-departure-time pacing (`tcp_update_skb_after_send`) and the `fq`
//! queueing discipline do. A socket is polled by its owner's event loop, which wakes up
//! with some delay (a millisecond or more on a real clock); the pacer keeps up to
//! [`CREDIT`] of the time it was woken late as credit, so the average rate holds while a
//! sender that was idle gets no burst larger than that. Segmentation offload
//! super-segments are sized to about one millisecond of data ([`quantum`], Linux's
//! `tcp_tso_autosize`), so that one departure is not a long line-rate burst.

use crate::time::{Duration, Instant};

/// Lateness of a wake-up kept as credit: segments may leave back to back until the
/// schedule has caught up with up to this much of it. An event loop sleeps in whole
/// milliseconds (it wakes 1–2 ms after the pacing time) and, on a loaded machine, is
/// scheduled later still; what it could not send then goes out at once, within the
/// congestion window.
pub(crate) const CREDIT: Duration = Duration::from_millis(10);

/// The largest segmentation offload super-segment paced as one departure (Linux's
/// `GSO_LEGACY_MAX_SIZE`).
const MAX_QUANTUM: usize = 65536;

/// When the next data segment may leave.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Pacer {
    next: Option<Instant>,
}

impl Pacer {
    /// When the next segment may leave, if pacing holds it until then.
    pub(crate) fn release_at(&self, now: Instant) -> Option<Instant> {
        self.next.filter(|&t| t > now)
    }

    /// Whether pacing holds data back at `now`.
    pub(crate) fn holds(&self, now: Instant) -> bool {
        self.release_at(now).is_some()
    }

    /// `len` bytes of data left at `now`; `rate` is the pacing rate in bytes per second
    /// (`None`: no pacing).
    pub(crate) fn on_send(&mut self, now: Instant, len: usize, rate: Option<u64>) {
        let Some(rate) = rate.filter(|&r| r > 0) else {
            self.next = None;
            return;
        };
        let earliest = now - CREDIT;
        let base = self.next.map_or(now, |t| t.max(earliest));
        let micros = (len as u64 * 1_000_000).div_ceil(rate);
        self.next = Some(base + Duration::from_micros(micros));
    }

    /// Forgets the schedule (a new connection).
    pub(crate) fn clear(&mut self) {
        self.next = None;
    }
}

/// The most data one departure may carry at `rate` bytes per second: about a millisecond
/// of it, at least two segments, at most 64 KiB (Linux's `tcp_tso_autosize`).
pub(crate) fn quantum(rate: u64, mss: usize) -> usize {
    let per_ms = usize::try_from(rate / 1000).unwrap_or(usize::MAX);
    per_ms.clamp(2 * mss, MAX_QUANTUM.max(2 * mss))
}

#[cfg(test)]
mod test {
    use super::*;

    fn us(n: i64) -> Instant {
        Instant::from_micros(n)
    }

    #[test]
    fn segments_are_spaced_by_len_over_rate() {
        let mut p = Pacer::default();
        assert!(!p.holds(us(0)));
        // 1 MB/s: 1000 bytes every millisecond.
        p.on_send(us(0), 1000, Some(1_000_000));
        assert_eq!(p.release_at(us(0)), Some(us(1000)));
        assert!(p.holds(us(999)));
        assert!(!p.holds(us(1000)));
        p.on_send(us(1000), 1000, Some(1_000_000));
        assert_eq!(p.release_at(us(1000)), Some(us(2000)));
    }

    #[test]
    fn late_wake_up_is_credited_up_to_the_limit() {
        let mut p = Pacer::default();
        p.on_send(us(0), 1000, Some(1_000_000));
        // Woken 1.5 ms late: the schedule continues from 1 ms, so two more segments may
        // leave at once.
        let now = us(2500);
        p.on_send(now, 1000, Some(1_000_000));
        assert!(!p.holds(now));
        p.on_send(now, 1000, Some(1_000_000));
        assert!(p.holds(now));
        assert_eq!(p.release_at(now), Some(us(3000)));
        // After a long idle period no more than CREDIT is owed.
        let later = us(100_000);
        let mut sent = 0;
        while !p.holds(later) {
            p.on_send(later, 1000, Some(1_000_000));
            sent += 1;
        }
        assert_eq!(sent, CREDIT.total_micros() / 1000 + 1);
    }

    #[test]
    fn no_rate_no_pacing() {
        let mut p = Pacer::default();
        p.on_send(us(0), 1000, Some(1_000_000));
        p.on_send(us(0), 1000, None);
        assert!(!p.holds(us(0)));
    }

    #[test]
    fn quantum_is_a_millisecond_within_bounds() {
        assert_eq!(quantum(10_000_000, 1448), 10_000);
        assert_eq!(quantum(100_000, 1448), 2 * 1448);
        assert_eq!(quantum(10_000_000_000, 1448), 65536);
    }
}
