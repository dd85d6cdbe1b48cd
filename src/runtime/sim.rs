//! The simulation driver: several stacks joined by in-memory links, on a virtual clock.
//!
//! Each step lets every node work until quiet at the current virtual time, then jumps the
//! clock to the earliest pending event (a frame arriving, a stack or application timer).
//! Retransmission timeouts of seconds cost nothing, and the same seeds give the same run.

use smoltcp::phy::Device;
use smoltcp::time::{Duration, Instant};

use super::{run_until_quiet, Application};
use crate::device::impair::Impaired;
use crate::device::memlink::LinkEnd;
use crate::stack::Stack;

/// A device whose future arrivals are known (so the clock can jump to them).
pub trait Scheduled: Device {
    /// When the next frame becomes deliverable, if any is in flight. `now` is the current
    /// time: a device may first move what is due (an impairment takes frames onto its line).
    fn next_arrival(&mut self, now: Instant) -> Option<Instant>;
}

impl Scheduled for LinkEnd {
    fn next_arrival(&mut self, _now: Instant) -> Option<Instant> {
        LinkEnd::next_arrival(self)
    }
}

impl<D: Scheduled> Scheduled for Impaired<D> {
    fn next_arrival(&mut self, now: Instant) -> Option<Instant> {
        self.poll(now);
        [self.next_due(), self.inner_mut().next_arrival(now)]
            .into_iter()
            .flatten()
            .min()
    }
}

impl Scheduled for crate::device::replay::ReplayDevice {
    fn next_arrival(&mut self, _now: Instant) -> Option<Instant> {
        crate::device::replay::ReplayDevice::next_arrival(self)
    }
}

impl<D: Scheduled, W: std::io::Write> Scheduled for crate::device::capture::Capture<D, W> {
    fn next_arrival(&mut self, now: Instant) -> Option<Instant> {
        self.inner_mut().next_arrival(now)
    }
}

/// A stack with its device and application.
pub struct Node<D, A> {
    /// The stack.
    pub stack: Stack,
    /// Its device.
    pub device: D,
    /// What runs on it.
    pub app: A,
}

impl<D: Scheduled, A: Application> Node<D, A> {
    /// Builds a node.
    pub fn new(stack: Stack, device: D, app: A) -> Self {
        Node { stack, device, app }
    }
}

/// What the simulation needs of a node, whatever its device and application types.
pub trait SimNode {
    /// Works until quiet at `now`; true if anything happened.
    fn step(&mut self, now: Instant) -> bool;
    /// The earliest future event of this node.
    fn next_event(&mut self, now: Instant) -> Option<Instant>;
    /// True when the node's application is finished.
    fn finished(&self) -> bool;
}

impl<D: Scheduled, A: Application> SimNode for Node<D, A> {
    fn step(&mut self, now: Instant) -> bool {
        let outcome = run_until_quiet(&mut self.stack, &mut self.device, &mut self.app, || now);
        outcome.activity || outcome.more
    }

    fn next_event(&mut self, now: Instant) -> Option<Instant> {
        [
            self.stack.poll_at(now),
            self.app.poll_at(now),
            self.device.next_arrival(now),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn finished(&self) -> bool {
        self.app.is_finished()
    }
}

/// Errors of a simulation run.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The virtual time limit passed before the goal was reached.
    #[error("simulation did not finish within {0} of virtual time")]
    TimeLimit(Duration),
    /// Nothing is scheduled anywhere and the goal is not reached: the run is stuck.
    #[error("simulation stalled at {0}: no pending event and the goal is not reached")]
    Stalled(Instant),
}

/// A virtual clock and the loop that steps nodes on it.
#[derive(Debug, Clone, Copy)]
pub struct Sim {
    now: Instant,
    /// Steps taken so far.
    pub steps: u64,
}

impl Default for Sim {
    fn default() -> Self {
        Sim::new()
    }
}

/// The virtual epoch: 2024-01-01T00:00:00Z, so captures made in simulation have a date.
pub const EPOCH_MICROS: i64 = 1_704_067_200_000_000;

impl Sim {
    /// A clock at [`EPOCH_MICROS`].
    pub fn new() -> Self {
        Sim {
            now: Instant::from_micros_const(EPOCH_MICROS),
            steps: 0,
        }
    }

    /// The current virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Steps `nodes` until `done` holds (checked after every step) or `limit` of virtual time
    /// passes. Returns the virtual time the run took.
    pub fn run_until(
        &mut self,
        nodes: &mut [&mut dyn SimNode],
        limit: Duration,
        mut done: impl FnMut(&mut [&mut dyn SimNode]) -> bool,
    ) -> Result<Duration, SimError> {
        let start = self.now;
        let deadline = start + limit;
        loop {
            let mut activity = false;
            for node in nodes.iter_mut() {
                activity |= node.step(self.now);
            }
            self.steps += 1;
            if done(nodes) {
                return Ok(self.now - start);
            }
            if activity {
                continue;
            }
            let next = nodes
                .iter_mut()
                .filter_map(|n| n.next_event(self.now))
                .min();
            match next {
                Some(at) if at > self.now => self.now = at,
                // Due now but nothing moved: step the clock a little to avoid spinning.
                Some(_) => self.now += Duration::from_millis(1),
                None => return Err(SimError::Stalled(self.now)),
            }
            if self.now > deadline {
                return Err(SimError::TimeLimit(limit));
            }
        }
    }

    /// Steps until every node's application is finished.
    pub fn run(
        &mut self,
        nodes: &mut [&mut dyn SimNode],
        limit: Duration,
    ) -> Result<Duration, SimError> {
        self.run_until(nodes, limit, |nodes| nodes.iter().all(|n| n.finished()))
    }
}
