//! The live driver: one single-threaded mio loop over a device's file descriptor.
//!
//! Each turn reads the clock, lets the stack and the application work until quiet, then
//! sleeps in `epoll_wait` until a frame arrives, the earliest timer of the stack or the
//! application is due, a [`StopHandle`] fires, or SIGINT/SIGTERM arrives. With nothing to
//! do it sleeps without a timeout: idle connections cost no CPU.

use std::io;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use smoltcp::time::Duration;

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
}

impl Default for LoopOptions {
    fn default() -> Self {
        LoopOptions {
            handle_signals: true,
            shutdown_grace: Duration::from_secs(5),
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
    loop {
        let now = clock.now();
        if stop.is_stopped() && shutdown_deadline.is_none() {
            tracing::info!("stopping");
            app.shutdown(stack, now);
            shutdown_deadline = Some(now + options.shutdown_grace);
        }
        let turn = run_until_quiet(stack, device, app, now);
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
        match poll.poll(&mut events, timeout) {
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
