//! A pollable link over a Unix datagram socket pair: each datagram is one Ethernet frame.
//!
//! Like the in-memory link it joins two stacks without privileges, but each end has a file
//! descriptor, so each can run under its own live event loop (on its own thread, or in
//! another process). Tests use it to exercise the mio driver without a TAP device.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixDatagram;

use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

use super::{check_mtu, DeviceError, DeviceStats, FdDevice, ETHERNET_HEADER_LEN};

/// One end of a datagram link.
pub struct DgramDevice {
    socket: UnixDatagram,
    mtu: usize,
    rx_buf: Vec<u8>,
    tx_buf: Vec<u8>,
    stats: DeviceStats,
    failure: Option<io::Error>,
}

/// Creates both ends of a datagram link with the given IP MTU.
pub fn pair(mtu: usize) -> Result<(DgramDevice, DgramDevice), DeviceError> {
    let mtu = check_mtu(mtu)?;
    let (a, b) = UnixDatagram::pair()?;
    let end = |socket: UnixDatagram| -> Result<DgramDevice, DeviceError> {
        socket.set_nonblocking(true)?;
        Ok(DgramDevice {
            socket,
            mtu,
            rx_buf: vec![0; mtu + ETHERNET_HEADER_LEN],
            tx_buf: vec![0; mtu + ETHERNET_HEADER_LEN],
            stats: DeviceStats::default(),
            failure: None,
        })
    };
    Ok((end(a)?, end(b)?))
}

impl DgramDevice {
    /// Counters of this end.
    pub fn stats(&self) -> DeviceStats {
        self.stats
    }
}

impl AsRawFd for DgramDevice {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

impl FdDevice for DgramDevice {
    fn take_failure(&mut self) -> Option<io::Error> {
        self.failure.take()
    }
}

impl phy::Device for DgramDevice {
    type RxToken<'a> = RxToken<'a>;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _timestamp: Instant) -> Option<(RxToken<'_>, TxToken<'_>)> {
        match self.socket.recv(&mut self.rx_buf) {
            Ok(len) => {
                self.stats.rx_frames += 1;
                self.stats.rx_bytes += len as u64;
                Some((
                    RxToken {
                        frame: &self.rx_buf[..len],
                    },
                    TxToken {
                        socket: &self.socket,
                        buf: &mut self.tx_buf,
                        stats: &mut self.stats,
                    },
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => None,
            Err(e) => {
                self.failure.get_or_insert(e);
                None
            }
        }
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<TxToken<'_>> {
        Some(TxToken {
            socket: &self.socket,
            buf: &mut self.tx_buf,
            stats: &mut self.stats,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = self.mtu + ETHERNET_HEADER_LEN;
        caps
    }
}

/// A received frame, borrowed from the device's buffer.
pub struct RxToken<'a> {
    frame: &'a [u8],
}

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.frame)
    }
}

/// Room for one frame to send.
pub struct TxToken<'a> {
    socket: &'a UnixDatagram,
    buf: &'a mut Vec<u8>,
    stats: &'a mut DeviceStats,
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        if self.buf.len() < len {
            self.buf.resize(len, 0);
        }
        let result = f(&mut self.buf[..len]);
        match self.socket.send(&self.buf[..len]) {
            Ok(_) => {
                self.stats.tx_frames += 1;
                self.stats.tx_bytes += len as u64;
            }
            // The peer's queue is full (or the peer is gone): the frame is lost, as on a wire.
            Err(_) => self.stats.dropped += 1,
        }
        result
    }
}
