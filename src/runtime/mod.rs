//! Drivers: what moves frames and time through a [`Stack`] and an [`Application`].
//!
//! The stack and the protocol machines above it never read a clock or touch a file
//! descriptor. A driver does: [`event_loop`] runs one mio loop over a TAP device with the
//! wall clock; [`sim`] steps several stacks joined by in-memory links on a virtual clock
//! (fast, deterministic, unprivileged — most tests run there).

pub mod event_loop;
pub mod local;
pub mod sim;
pub mod table;
pub mod wake;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use smoltcp::time::Instant;

use crate::stack::Stack;

/// Something that runs on top of a stack: it gets a turn after every poll of the stack and
/// moves bytes between the stack's sockets and its own state machines.
pub trait Application {
    /// Does whatever work is ready. Returns true when it changed something the stack must
    /// act on (wrote data, closed or opened a connection), so the driver polls again.
    fn poll(&mut self, stack: &mut Stack, now: Instant) -> bool;

    /// When the application's own timers next need a turn (idle timeouts, deadlines).
    fn poll_at(&self, _now: Instant) -> Option<Instant> {
        None
    }

    /// A stop was requested: stop taking new work and wind down. The driver keeps polling
    /// until [`Application::is_finished`] or its shutdown deadline.
    fn shutdown(&mut self, _stack: &mut Stack, _now: Instant) {}

    /// The shutdown grace period ended with work left: reset every connection still open,
    /// so its peer gets an error at once instead of waiting on a stack that is gone. The
    /// driver sends the resets before it returns.
    fn abort(&mut self, _stack: &mut Stack) {}

    /// True when there is nothing left to do (a client got its answers, a server that was
    /// shut down has closed every connection).
    fn is_finished(&self) -> bool {
        false
    }
}

/// Moves between stack and application until neither has more to do right now.
/// `activity` says whether anything happened; `more` that work was left for the next turn
/// (the driver must not sleep).
///
/// `clock` is read before each round of stack and application work: a loaded turn can
/// take many rounds of up to a thousand frames each, and a time read once for all of them
/// would be stale by the whole turn (hundreds of milliseconds at 10,000 busy connections),
/// which fires every retransmission timer armed in it spuriously when the next turn reads
/// the clock, and measures round trips from the wrong start.
pub fn run_until_quiet<D, A>(
    stack: &mut Stack,
    device: &mut D,
    app: &mut A,
    mut clock: impl FnMut() -> Instant,
) -> crate::stack::PollOutcome
where
    D: smoltcp::phy::Device,
    A: Application + ?Sized,
{
    let mut result = crate::stack::PollOutcome::default();
    // Bounded: an application that always reports progress cannot starve the driver.
    for _ in 0..64 {
        let now = clock();
        let outcome = stack.poll(now, device);
        let progressed = app.poll(stack, now);
        if progressed {
            stack.flush(now, device);
        }
        result.activity |= outcome.activity || progressed;
        result.more = outcome.more || progressed;
        if !result.more {
            break;
        }
    }
    result
}

struct StopInner {
    stopped: AtomicBool,
    waker: Mutex<Option<Arc<mio::Waker>>>,
}

/// A stop switch for a running event loop, usable from any thread (like paf's stop).
/// Clones share the switch.
#[derive(Clone)]
pub struct StopHandle {
    inner: Arc<StopInner>,
}

impl Default for StopHandle {
    fn default() -> Self {
        StopHandle::new()
    }
}

impl std::fmt::Debug for StopHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StopHandle")
            .field("stopped", &self.is_stopped())
            .finish()
    }
}

impl StopHandle {
    /// A new switch, not yet stopped.
    pub fn new() -> Self {
        StopHandle {
            inner: Arc::new(StopInner {
                stopped: AtomicBool::new(false),
                waker: Mutex::new(None),
            }),
        }
    }

    /// Asks the loop to stop. Returns at once; the loop winds down on its own thread.
    pub fn stop(&self) {
        self.inner.stopped.store(true, Ordering::SeqCst);
        let waker = self.inner.waker.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(waker) = waker.as_ref() {
            // A failed wake means the loop is gone already; nothing to do.
            let _ = waker.wake();
        }
    }

    /// True once [`StopHandle::stop`] was called.
    pub fn is_stopped(&self) -> bool {
        self.inner.stopped.load(Ordering::SeqCst)
    }

    fn attach(&self, waker: Option<Arc<mio::Waker>>) {
        *self.inner.waker.lock().unwrap_or_else(|e| e.into_inner()) = waker;
    }
}

/// A clock for live runs: monotonic, but starting at the wall-clock time so that
/// timestamps (in captures, for instance) are real dates.
#[derive(Debug, Clone, Copy)]
pub struct WallClock {
    origin: std::time::Instant,
    origin_micros: i64,
}

impl Default for WallClock {
    fn default() -> Self {
        WallClock::new()
    }
}

impl WallClock {
    /// A clock reading the current time.
    pub fn new() -> Self {
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        WallClock {
            origin: std::time::Instant::now(),
            origin_micros: i64::try_from(since_epoch.as_micros()).unwrap_or(0),
        }
    }

    /// Now, on the stack's time scale.
    pub fn now(&self) -> Instant {
        let elapsed = i64::try_from(self.origin.elapsed().as_micros()).unwrap_or(i64::MAX / 2);
        Instant::from_micros(self.origin_micros + elapsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::StackConfig;
    use smoltcp::phy::{Loopback, Medium};
    use smoltcp::time::Duration;
    use smoltcp::wire::{EthernetAddress, IpCidr, Ipv4Address};

    /// Makes progress for `rounds` polls, noting the time of each.
    struct Rounds {
        rounds: u32,
        seen: Vec<Instant>,
    }

    impl Application for Rounds {
        fn poll(&mut self, _stack: &mut Stack, now: Instant) -> bool {
            self.seen.push(now);
            let progressed = self.rounds > 0;
            self.rounds = self.rounds.saturating_sub(1);
            progressed
        }
    }

    #[test]
    fn every_round_of_a_turn_reads_the_clock() {
        let mut device = Loopback::new(Medium::Ethernet);
        let config = StackConfig::new(
            EthernetAddress([0x02, 0, 0, 0, 0, 2]),
            vec![IpCidr::new(Ipv4Address::new(10, 9, 0, 2).into(), 24)],
        );
        let mut stack = Stack::new(config, &mut device, Instant::ZERO).expect("stack");
        let mut app = Rounds {
            rounds: 3,
            seen: Vec::new(),
        };
        // A clock that moves 100 ms per reading, as a loaded turn's rounds do.
        let mut time = Instant::ZERO;
        let clock = || {
            time += Duration::from_millis(100);
            time
        };
        let outcome = run_until_quiet(&mut stack, &mut device, &mut app, clock);
        assert!(!outcome.more);
        let ms: Vec<i64> = app.seen.iter().map(|t| t.total_millis()).collect();
        assert_eq!(ms, [100, 200, 300, 400]);
    }
}
