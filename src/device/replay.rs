//! A device fed from a capture: received frames come from a list, each at its timestamp;
//! every frame the stack sends is kept with the time it was sent. Driven by the simulation's
//! virtual clock, a stack on this device meets exactly the input it met when the capture was
//! made, which is what byte-exact replay checks.

use std::collections::VecDeque;

use smoltcp::phy::{self, DeviceCapabilities};
use smoltcp::time::Instant;

use super::{check_mtu, ethernet_caps, DeviceError};

/// A frame with the time it crossed the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimedFrame {
    /// When.
    pub at: Instant,
    /// The Ethernet frame.
    pub data: Vec<u8>,
}

/// The replay device.
#[derive(Debug)]
pub struct ReplayDevice {
    input: VecDeque<TimedFrame>,
    output: Vec<TimedFrame>,
    mtu: usize,
}

impl ReplayDevice {
    /// A device that will deliver `input` (in order, each at its time).
    pub fn new(input: Vec<TimedFrame>, mtu: usize) -> Result<Self, DeviceError> {
        Ok(ReplayDevice {
            input: input.into(),
            output: Vec::new(),
            mtu: check_mtu(mtu)?,
        })
    }

    /// When the next input frame is due.
    pub fn next_arrival(&self) -> Option<Instant> {
        self.input.front().map(|f| f.at)
    }

    /// Input frames not delivered yet.
    pub fn remaining(&self) -> usize {
        self.input.len()
    }

    /// Frames the stack sent so far.
    pub fn output(&self) -> &[TimedFrame] {
        &self.output
    }
}

impl phy::Device for ReplayDevice {
    type RxToken<'a> = RxToken;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, timestamp: Instant) -> Option<(RxToken, TxToken<'_>)> {
        if self.input.front()?.at > timestamp {
            return None;
        }
        let frame = self.input.pop_front()?;
        Some((
            RxToken { frame: frame.data },
            TxToken {
                output: &mut self.output,
                at: timestamp,
            },
        ))
    }

    fn transmit(&mut self, timestamp: Instant) -> Option<TxToken<'_>> {
        Some(TxToken {
            output: &mut self.output,
            at: timestamp,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        ethernet_caps(self.mtu)
    }
}

/// An input frame.
pub struct RxToken {
    frame: Vec<u8>,
}

impl phy::RxToken for RxToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.frame)
    }
}

/// Room for one output frame.
pub struct TxToken<'a> {
    output: &'a mut Vec<TimedFrame>,
    at: Instant,
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut data = vec![0; len];
        let result = f(&mut data);
        self.output.push(TimedFrame { at: self.at, data });
        result
    }
}
