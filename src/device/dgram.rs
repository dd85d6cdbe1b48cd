//! A pollable link over a Unix datagram socket pair: each datagram is one Ethernet frame.
//!
//! Like the in-memory link it joins two stacks without privileges, but each end has a file
//! descriptor, so each can run under its own live event loop (on its own thread, or in
//! another process). Tests use it to exercise the mio driver without a TAP device.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixDatagram;

use smoltcp::phy::{self, DeviceCapabilities};
use smoltcp::time::Instant;

use super::fd::{self, FdFrames, FramePort};
use super::{check_mtu, DeviceError, DeviceStats, FdDevice};

impl FramePort for UnixDatagram {
    fn recv_frame(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.recv(buf)
    }

    fn send_frame(&self, frame: &[u8]) -> io::Result<usize> {
        self.send(frame)
    }
}

/// One end of a datagram link.
pub struct DgramDevice {
    frames: FdFrames<UnixDatagram>,
}

/// Creates both ends of a datagram link with the given IP MTU.
pub fn pair(mtu: usize) -> Result<(DgramDevice, DgramDevice), DeviceError> {
    let mtu = check_mtu(mtu)?;
    let (a, b) = UnixDatagram::pair()?;
    let end = |socket: UnixDatagram| -> Result<DgramDevice, DeviceError> {
        socket.set_nonblocking(true)?;
        Ok(DgramDevice {
            frames: FdFrames::new(socket, mtu),
        })
    };
    Ok((end(a)?, end(b)?))
}

impl DgramDevice {
    /// Counters of this end.
    pub fn stats(&self) -> DeviceStats {
        self.frames.stats()
    }
}

impl AsRawFd for DgramDevice {
    fn as_raw_fd(&self) -> RawFd {
        self.frames.port().as_raw_fd()
    }
}

impl FdDevice for DgramDevice {
    fn take_failure(&mut self) -> Option<io::Error> {
        self.frames.take_failure()
    }
}

impl phy::Device for DgramDevice {
    type RxToken<'a> = fd::RxToken<'a>;
    type TxToken<'a> = fd::TxToken<'a, UnixDatagram>;

    fn receive(&mut self, timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        self.frames.receive(timestamp)
    }

    fn transmit(&mut self, timestamp: Instant) -> Option<Self::TxToken<'_>> {
        self.frames.transmit(timestamp)
    }

    fn capabilities(&self) -> DeviceCapabilities {
        self.frames.capabilities()
    }
}
