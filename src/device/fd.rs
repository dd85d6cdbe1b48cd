//! The part every file-descriptor device shares: one frame per read or write, into and out
//! of buffers the device owns (so the hot path allocates nothing), with counters and the
//! first fatal error kept for the event loop. A TAP opened with `IFF_VNET_HDR` has a
//! virtio-net header in front of each frame ([`vnet`]); the buffers keep room for it.

use std::io;

use smoltcp::phy::{self, DeviceCapabilities};
use smoltcp::time::Instant;

use super::vnet::{self, Offloads};
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
    /// `Some` when every frame carries a virtio-net header, with the offloads in use.
    vnet: Option<Offloads>,
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
            vnet: None,
            rx_buf: vec![0; mtu + ETHERNET_HEADER_LEN],
            tx_buf: vec![0; mtu + ETHERNET_HEADER_LEN],
            stats: DeviceStats::default(),
            failure: None,
        }
    }

    /// Frames with a virtio-net header and `offloads` through `port`. With offloads, a
    /// frame either way may be a 64 KB super-frame, so both buffers hold one.
    pub fn with_vnet(port: P, mtu: usize, offloads: Offloads) -> Self {
        let plain = mtu + ETHERNET_HEADER_LEN;
        let (rx, tx) = if offloads == Offloads::NONE {
            (plain, plain)
        } else {
            (
                vnet::MAX_RX_FRAME.max(plain),
                vnet::MAX_SUPER_FRAME.max(plain),
            )
        };
        FdFrames {
            vnet: Some(offloads),
            rx_buf: vec![0; vnet::HDR_LEN + rx],
            tx_buf: vec![0; vnet::HDR_LEN + tx],
            ..FdFrames::new(port, mtu)
        }
    }

    /// The IP MTU.
    pub fn mtu(&self) -> usize {
        self.mtu
    }

    /// The offloads in use (none without a virtio-net header).
    pub fn offloads(&self) -> Offloads {
        self.vnet.unwrap_or_default()
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
                let mut meta = phy::PacketMeta::default();
                let frame = match self.vnet {
                    None => &self.rx_buf[..len],
                    Some(_) => {
                        // A read shorter than the header yields an empty frame, dropped
                        // by the stack as malformed.
                        let (header, rest) = self.rx_buf[..len].split_at(vnet::HDR_LEN.min(len));
                        meta.checksum_valid = vnet::rx_checksum_valid(header);
                        rest
                    }
                };
                self.stats.rx_frames += 1;
                self.stats.rx_bytes += frame.len() as u64;
                Some((
                    RxToken { frame, meta },
                    TxToken {
                        port: &self.port,
                        vnet: self.vnet,
                        meta: phy::PacketMeta::default(),
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
            vnet: self.vnet,
            meta: phy::PacketMeta::default(),
            buf: &mut self.tx_buf,
            stats: &mut self.stats,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = ethernet_caps(self.mtu);
        self.offloads().apply(&mut caps);
        caps
    }
}

/// A received frame, borrowed from the device's buffer.
pub struct RxToken<'a> {
    frame: &'a [u8],
    meta: phy::PacketMeta,
}

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.frame)
    }

    fn meta(&self) -> phy::PacketMeta {
        self.meta
    }
}

/// Room for one frame to send.
pub struct TxToken<'a, P> {
    port: &'a P,
    vnet: Option<Offloads>,
    meta: phy::PacketMeta,
    buf: &'a mut Vec<u8>,
    stats: &'a mut DeviceStats,
}

impl<P: FramePort> phy::TxToken for TxToken<'_, P> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let header_len = if self.vnet.is_some() {
            vnet::HDR_LEN
        } else {
            0
        };
        if self.buf.len() < header_len + len {
            self.buf.resize(header_len + len, 0);
        }
        let (header, frame) = self.buf[..header_len + len].split_at_mut(header_len);
        let result = f(frame);
        if let Some(offloads) = self.vnet {
            let gso_size = self.meta.segmentation_offload_size;
            vnet::prepare_tx(header, frame, offloads, gso_size);
        }
        match self.port.send_frame(&self.buf[..header_len + len]) {
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

    fn set_meta(&mut self, meta: phy::PacketMeta) {
        self.meta = meta;
    }
}
