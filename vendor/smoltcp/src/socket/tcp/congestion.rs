use crate::time::Instant;

use super::RttEstimator;
use super::rate::RateSample;

pub(super) mod no_control;

#[cfg(feature = "socket-tcp-cubic")]
pub(super) mod cubic;

#[cfg(any(feature = "socket-tcp-cubic", feature = "socket-tcp-reno"))]
pub(super) mod hystart;

#[cfg(feature = "socket-tcp-reno")]
pub(super) mod reno;

#[cfg(feature = "socket-tcp-bbr")]
pub(super) mod bbr;

/// tapir patch: RFC 6928 initial window, min(10*MSS, max(2*MSS, 14600)) bytes.
#[allow(dead_code)] // unused when no congestion controller feature is enabled
pub(super) fn initial_window(mss: usize) -> usize {
    (10 * mss).min((2 * mss).max(14600))
}

/// tapir patch: RFC 3465 appropriate byte counting in slow start: the window grows by
/// the bytes a new ACK acknowledges, at most L = 2*SMSS, or L = 1*SMSS in a slow start
/// that follows a retransmission timeout (RFC 3465 2.3).
#[allow(dead_code)]
pub(super) fn slow_start_increase(acked: usize, mss: usize, after_rto: bool) -> usize {
    acked.min(if after_rto { mss } else { 2 * mss })
}

#[allow(unused_variables)]
pub(super) trait Controller {
    /// Returns the number of bytes that can be sent.
    fn window(&self) -> usize;

    /// Set the remote window size.
    fn set_remote_window(&mut self, remote_window: usize) {}

    fn on_ack(&mut self, now: Instant, len: usize, in_flight: usize, rtt: &RttEstimator) {}

    /// Fired on each duplicate ack received, after `on_loss` has been called.
    fn on_dup_ack(&mut self, now: Instant, len: usize, in_flight: usize) {}

    /// Fired on a retransmission timeout.
    fn on_rto(&mut self, now: Instant, in_flight: usize) {}

    /// Fired after an inferred loss via three duplicate acks.
    fn on_loss(&mut self, now: Instant, in_flight: usize) {}

    fn pre_transmit(&mut self, now: Instant) {}

    fn post_transmit(&mut self, now: Instant, len: usize) {}

    /// Set the maximum segment size. Called when the handshake makes it known, before any
    /// data is sent; the window becomes the initial window for this MSS (RFC 6928).
    fn set_mss(&mut self, mss: usize) {}

    /// tapir patch: the slow start threshold, which fast recovery reduces the window to.
    fn ssthresh(&self) -> usize {
        usize::MAX
    }

    /// tapir patch: the delivery rate sample of an ACK (every ACK the socket processes,
    /// after its loss detection), for rate-based controllers.
    fn on_rate_sample(&mut self, now: Instant, sample: &RateSample) {}

    /// tapir patch: the rate to pace data at, in bytes per second; `None` sends as fast
    /// as the window allows.
    fn pacing_rate(&self) -> Option<u64> {
        None
    }

    /// tapir patch: whether the controller sets the window during loss recovery itself
    /// (from rate samples, as BBR does); otherwise proportional rate reduction (RFC 6937)
    /// paces recovery toward `ssthresh`.
    fn controls_recovery(&self) -> bool {
        false
    }
}

#[derive(Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub(super) enum AnyController {
    None(no_control::NoControl),

    #[cfg(feature = "socket-tcp-reno")]
    Reno(reno::Reno),

    #[cfg(feature = "socket-tcp-cubic")]
    Cubic(cubic::Cubic),

    #[cfg(feature = "socket-tcp-bbr")]
    Bbr(bbr::Bbr),
}

impl AnyController {
    /// Create a new congestion controller.
    /// `AnyController::new()` selects the best congestion controller based on the features.
    ///
    /// - If `socket-tcp-cubic` feature is enabled, it will use `Cubic`.
    /// - If `socket-tcp-reno` feature is enabled, it will use `Reno`.
    /// - If both `socket-tcp-cubic` and `socket-tcp-reno` features are enabled, it will use `Cubic`.
    ///    - `Cubic` is more efficient regarding throughput.
    ///    - `Reno` is more conservative and is suitable for low-power devices.
    /// - If no congestion controller is available, it will use `NoControl`.
    ///
    /// Users can also select a congestion controller manually by [`super::Socket::set_congestion_control()`]
    /// method at run-time.
    #[allow(unreachable_code)]
    #[inline]
    pub fn new() -> Self {
        #[cfg(feature = "socket-tcp-cubic")]
        {
            return AnyController::Cubic(cubic::Cubic::new());
        }

        #[cfg(feature = "socket-tcp-reno")]
        {
            return AnyController::Reno(reno::Reno::new());
        }

        AnyController::None(no_control::NoControl)
    }

    #[inline]
    pub fn inner_mut(&mut self) -> &mut dyn Controller {
        match self {
            AnyController::None(n) => n,

            #[cfg(feature = "socket-tcp-reno")]
            AnyController::Reno(r) => r,

            #[cfg(feature = "socket-tcp-cubic")]
            AnyController::Cubic(c) => c,

            #[cfg(feature = "socket-tcp-bbr")]
            AnyController::Bbr(b) => b,
        }
    }

    #[inline]
    pub fn inner(&self) -> &dyn Controller {
        match self {
            AnyController::None(n) => n,

            #[cfg(feature = "socket-tcp-reno")]
            AnyController::Reno(r) => r,

            #[cfg(feature = "socket-tcp-cubic")]
            AnyController::Cubic(c) => c,

            #[cfg(feature = "socket-tcp-bbr")]
            AnyController::Bbr(b) => b,
        }
    }
}
