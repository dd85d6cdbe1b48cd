//! The part every file-descriptor device shares: one frame per read or write, into and out
//! of buffers the device owns (so the hot path allocates nothing), with counters and the
//! first fatal error kept for the event loop.

use std::io;

use smoltcp::phy::{self, DeviceCapabilities};
use smoltcp::time::Instant;

use super::{ethernet_caps, DeviceStats, ETHERNET_HEADER_LEN};

/// Something that moves whole Ethernet frames: a TAP fd, a datagram socket.
pub trait FramePort {
    /// Reads one frame into `buf`; `WouldBlock` when none is waiting.
    fn recv_frame(&self, buf: &mut [u8]) -> io::Result<usize>;
    /// Writes one frame.
    fn send_frame(&self, frame: &[u8]) -> io::Result<usize>;
}

/// Errors on a frame fd that mean "try later", not "the device is gone".
fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    ) || e.raw_os_error() == Some(libc::ENOBUFS)
}

/// A smoltcp device over a [`FramePort`].
pub struct FdFrames<P> {
    port: P,
    mtu: usize,
    rx_buf: Vec<u8>,
    tx_buf: Vec<u8>,
    stats: DeviceStats,
    failure: Option<io::Error>,
}

impl<P: FramePort> FdFrames<P> {
    /// Frames of at most `mtu` bytes of IP (plus the Ethernet header) through `port`.
    pub fn new(port: P, mtu: usize) -> Self {
        FdFrames {
            port,
            mtu,
            rx_buf: vec![0; mtu + ETHERNET_HEADER_LEN],
            tx_buf: vec![0; mtu + ETHERNET_HEADER_LEN],
            stats: DeviceStats::default(),
            failure: None,
        }
    }

    /// The port.
    pub fn port(&self) -> &P {
        &self.port
    }

    /// Counters of frames and bytes moved.
    pub fn stats(&self) -> DeviceStats {
        self.stats
    }

    /// The first fatal error seen, if any (taken).
    pub fn take_failure(&mut self) -> Option<io::Error> {
        self.failure.take()
    }
}

impl<P: FramePort> phy::Device for FdFrames<P> {
    type RxToken<'a>
        = RxToken<'a>
    where
        P: 'a;
    type TxToken<'a>
        = TxToken<'a, P>
    where
        P: 'a;

    fn receive(&mut self, _timestamp: Instant) -> Option<(RxToken<'_>, TxToken<'_, P>)> {
        match self.port.recv_frame(&mut self.rx_buf) {
            Ok(len) => {
                self.stats.rx_frames += 1;
                self.stats.rx_bytes += len as u64;
                Some((
                    RxToken {
                        frame: &self.rx_buf[..len],
                    },
                    TxToken {
                        port: &self.port,
                        buf: &mut self.tx_buf,
                        stats: &mut self.stats,
                    },
                ))
            }
            Err(e) if is_transient(&e) => None,
            Err(e) => {
                self.failure.get_or_insert(e);
                None
            }
        }
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<TxToken<'_, P>> {
        if self.failure.is_some() {
            return None;
        }
        Some(TxToken {
            port: &self.port,
            buf: &mut self.tx_buf,
            stats: &mut self.stats,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        ethernet_caps(self.mtu)
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
pub struct TxToken<'a, P> {
    port: &'a P,
    buf: &'a mut Vec<u8>,
    stats: &'a mut DeviceStats,
}

impl<P: FramePort> phy::TxToken for TxToken<'_, P> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        if self.buf.len() < len {
            self.buf.resize(len, 0);
        }
        let frame = &mut self.buf[..len];
        let result = f(frame);
        match self.port.send_frame(frame) {
            Ok(_) => {
                self.stats.tx_frames += 1;
                self.stats.tx_bytes += len as u64;
            }
            // A full queue or a vanished device: the frame is lost, as on a wire; TCP
            // recovers, and a vanished device shows on the next receive.
            Err(_) => self.stats.dropped += 1,
        }
        result
    }
}
