//! The live driver: one single-threaded mio loop over a device's file descriptor.
//!
//! Each turn reads the clock, lets the stack and the application work until quiet, then
//! sleeps in `epoll_wait` until a frame arrives, the earliest timer of the stack or the
//! application is due, a [`StopHandle`] fires, or SIGINT/SIGTERM arrives. With nothing to
//! do it sleeps without a timeout: idle connections cost no CPU.
//!
//! Busy polling ([`LoopOptions::busy_poll`], like the kernel's `SO_BUSY_POLL`): a loop that
//! was woken by frames and did work with them within the last `busy_poll` keeps asking
//! `epoll_wait` without a timeout instead of going to sleep, so the next frame of a
//! request/response exchange is picked up without the cost of a wake-up. Timers alone
//! (keep-alive probes, retransmissions) open no window, and a loop that has had no input
//! for longer sleeps as before: an idle server does not spin.

use std::io;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use smoltcp::time::{Duration, Instant};

use super::{run_until_quiet, Application, StopHandle, WallClock};
use crate::device::{DeviceError, FdDevice};
use crate::stack::Stack;

const DEVICE: Token = Token(0);
const WAKER: Token = Token(1);
const SIGNALS: Token = Token(2);

/// Errors that end a live run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Setting up or waiting on the poller failed.
    #[error("event loop")]
    Poll(#[from] io::Error),
    /// The device failed (for example, the TAP interface was deleted).
    #[error("device failed (was the interface deleted?)")]
    Device(#[source] io::Error),
    /// Finishing the device (flushing the capture) failed.
    #[error(transparent)]
    Finish(#[from] DeviceError),
}

/// How a live run is set up.
#[derive(Debug, Clone)]
pub struct LoopOptions {
    /// Stop on SIGINT and SIGTERM.
    pub handle_signals: bool,
    /// After a stop request, how long the application may take to wind down.
    pub shutdown_grace: Duration,
    /// How long after its last work on received frames the loop polls for more instead
    /// of sleeping (zero: never; it always sleeps when nothing is ready).
    pub busy_poll: StdDuration,
}

/// The busy-poll window of [`LoopOptions::default`].
pub const DEFAULT_BUSY_POLL: StdDuration = StdDuration::from_micros(50);

impl Default for LoopOptions {
    fn default() -> Self {
        LoopOptions {
            handle_signals: true,
            shutdown_grace: Duration::from_secs(5),
            busy_poll: DEFAULT_BUSY_POLL,
        }
    }
}

/// Why a live run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The application said it was finished.
    Finished,
    /// A stop was requested (StopHandle or signal) and the application wound down.
    Stopped,
    /// A stop was requested and the grace period ran out first.
    GraceExpired,
}

/// Runs `app` on `stack` over `device` until the application finishes or `stop` fires.
pub fn run<D, A>(
    device: &mut D,
    stack: &mut Stack,
    app: &mut A,
    stop: &StopHandle,
    options: &LoopOptions,
) -> Result<Ended, RunError>
where
    D: FdDevice,
    A: Application + ?Sized,
{
    let mut poll = Poll::new()?;
    let fd = device.as_raw_fd();
    poll.registry()
        .register(&mut SourceFd(&fd), DEVICE, Interest::READABLE)?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    stop.attach(Some(waker));
    let mut signals = if options.handle_signals {
        let mut signals = Signals::new([SIGINT, SIGTERM])?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        Some(signals)
    } else {
        None
    };

    let result = drive(
        &mut poll,
        device,
        stack,
        app,
        stop,
        options,
        signals.as_mut(),
    );
    stop.attach(None);
    let finished = device.finish();
    let ended = result?;
    finished?;
    Ok(ended)
}

fn drive<D, A>(
    poll: &mut Poll,
    device: &mut D,
    stack: &mut Stack,
    app: &mut A,
    stop: &StopHandle,
    options: &LoopOptions,
    mut signals: Option<&mut Signals>,
) -> Result<Ended, RunError>
where
    D: FdDevice,
    A: Application + ?Sized,
{
    let clock = WallClock::new();
    let mut events = Events::with_capacity(64);
    let mut shutdown_deadline = None;
    let mut busy = BusyPoll::new(options.busy_poll);
    loop {
        if stop.is_stopped() && shutdown_deadline.is_none() {
            tracing::info!("stopping");
            let now = clock.now();
            app.shutdown(stack, now);
            shutdown_deadline = Some(now + options.shutdown_grace);
        }
        // Frames that woke the loop (not a timer alone) open a busy-poll window: the next
        // frame of the exchange is likely close behind.
        let input = events.iter().any(|event| event.token() == DEVICE);
        let turn = run_until_quiet(stack, device, app, || clock.now());
        // The end of the turn: timers and the busy-poll window count from here.
        let now = clock.now();
        if turn.activity && input {
            // The window counts from the end of the work, not from the start of the turn:
            // a turn that answered many requests can outlast a short window by itself.
            busy.worked(now);
        }
        if let Some(e) = device.take_failure() {
            return Err(RunError::Device(e));
        }
        if app.is_finished() {
            return Ok(if shutdown_deadline.is_some() {
                Ended::Stopped
            } else {
                Ended::Finished
            });
        }
        if shutdown_deadline.is_some_and(|deadline| now >= deadline) {
            app.abort(stack);
            stack.flush(now, device);
            if let Some(e) = device.take_failure() {
                return Err(RunError::Device(e));
            }
            return Ok(Ended::GraceExpired);
        }

        let wake_at = [stack.poll_at(now), app.poll_at(now), shutdown_deadline]
            .into_iter()
            .flatten()
            .min()
            .or(turn.more.then_some(now));
        let timeout = wake_at.map(|at| {
            if turn.more || at <= now {
                StdDuration::ZERO
            } else {
                // Round up so we never wake a hair early and spin.
                StdDuration::from_micros((at - now).total_micros() + 999)
            }
        });
        let spin_until = match timeout {
            Some(timeout) if timeout.is_zero() => None,
            _ => busy.spin_until(clock.now(), wake_at),
        };
        let waited = match spin_until {
            // Nothing ready after the spin: the next turn finds the loop quiet and sleeps.
            Some(until) => busy_wait(poll, &mut events, &clock, until),
            None => poll.poll(&mut events, timeout),
        };
        match waited {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
        for event in events.iter() {
            if event.token() == SIGNALS {
                if let Some(signals) = signals.as_deref_mut() {
                    for signal in signals.pending() {
                        tracing::info!("received signal {signal}");
                        stop.stop();
                    }
                }
            }
        }
    }
}

/// When the loop polls instead of sleeping ([`LoopOptions::busy_poll`]): the decision alone,
/// free of clocks and syscalls.
#[derive(Debug, Clone, Copy)]
struct BusyPoll {
    window: Duration,
    last_work: Option<Instant>,
}

impl BusyPoll {
    /// Polls for `window` after the last work (zero: never).
    fn new(window: StdDuration) -> Self {
        BusyPoll {
            window: Duration::from_micros(u64::try_from(window.as_micros()).unwrap_or(u64::MAX)),
            last_work: None,
        }
    }

    /// A turn that ended at `now` did work on received frames.
    fn worked(&mut self, now: Instant) {
        self.last_work = Some(now);
    }

    /// Until when to poll rather than sleep, at `now`, when the loop must wake at `wake_at`
    /// anyway (`None`: only on input); `None` to sleep at once.
    fn spin_until(&self, now: Instant, wake_at: Option<Instant>) -> Option<Instant> {
        if self.window == Duration::ZERO {
            return None;
        }
        let until = self.last_work? + self.window;
        let until = wake_at.map_or(until, |at| until.min(at));
        (until > now).then_some(until)
    }
}

/// Asks the poller without a timeout until something is ready or `until` passes; an
/// interrupted ask ends it. No `sched_yield` between asks: under Linux's EEVDF scheduler
/// each yield pushes the task's deadline back a whole slice, and a loop that yielded
/// thousands of times would then wait behind every other task once it has work (measured:
/// req/s fell to a tenth on a loaded machine). The scheduler still preempts the spin for a
/// task woken on this core, as it would any running task.
fn busy_wait(
    poll: &mut Poll,
    events: &mut Events,
    clock: &WallClock,
    until: Instant,
) -> io::Result<()> {
    loop {
        poll.poll(events, Some(StdDuration::ZERO))?;
        if !events.is_empty() || clock.now() >= until {
            return Ok(());
        }
        std::hint::spin_loop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(micros: i64) -> Instant {
        Instant::from_micros(micros)
    }

    #[test]
    fn an_idle_loop_never_busy_polls() {
        let busy = BusyPoll::new(StdDuration::from_micros(100));
        assert_eq!(busy.spin_until(at(0), None), None);
        assert_eq!(busy.spin_until(at(1_000_000), Some(at(2_000_000))), None);
    }

    #[test]
    fn after_work_the_loop_polls_for_the_window_then_sleeps() {
        let mut busy = BusyPoll::new(StdDuration::from_micros(100));
        busy.worked(at(1_000));
        assert_eq!(busy.spin_until(at(1_010), None), Some(at(1_100)));
        assert_eq!(busy.spin_until(at(1_099), None), Some(at(1_100)));
        assert_eq!(busy.spin_until(at(1_100), None), None);
        assert_eq!(busy.spin_until(at(5_000), None), None);
        // New work opens a new window.
        busy.worked(at(5_000));
        assert_eq!(busy.spin_until(at(5_001), None), Some(at(5_100)));
    }

    #[test]
    fn busy_polling_ends_at_the_next_timer() {
        let mut busy = BusyPoll::new(StdDuration::from_micros(100));
        busy.worked(at(1_000));
        assert_eq!(busy.spin_until(at(1_010), Some(at(1_040))), Some(at(1_040)));
        assert_eq!(busy.spin_until(at(1_040), Some(at(1_040))), None);
    }

    #[test]
    fn a_zero_window_turns_busy_polling_off() {
        let mut busy = BusyPoll::new(StdDuration::ZERO);
        busy.worked(at(1_000));
        assert_eq!(busy.spin_until(at(1_000), None), None);
        assert_eq!(busy.spin_until(at(1_001), None), None);
    }
}
