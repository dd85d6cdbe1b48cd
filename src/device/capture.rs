//! A recorder that wraps any device and writes every frame, both directions, to a pcap file
//! (Ethernet link type, timestamps from the stack's clock: wall-clock time on a live run,
//! the virtual clock in a simulation).
//!
//! On a device with offloads ([`super::vnet`]) a TCP super-frame is recorded as the one
//! frame that crossed the device (up to 64 KB, its IP length that of the whole), with its
//! TCP checksum computed for the capture, so that Wireshark shows it as a valid segment
//! whether or not checksum validation is on.

use std::cell::RefCell;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use pcap_file::pcap::{PcapHeader, PcapPacket};
use pcap_file::{DataLink, Endianness, PcapError, TsResolution};
use smoltcp::phy::{self, DeviceCapabilities};
use smoltcp::time::Instant;

use super::DeviceError;

/// Largest frame a capture keeps whole (tcpdump's default snap length).
const SNAPLEN: u32 = 262_144;

/// Where frames are written, with the first error kept for the driver to report.
struct Sink<W: Write> {
    writer: W,
    frames: u64,
    error: Option<PcapError>,
    /// A copy of a received frame whose checksum is completed before it is recorded.
    scratch: Vec<u8>,
}

impl<W: Write> Sink<W> {
    /// Records a received frame whose TCP checksum the device left to us (it may be the
    /// kernel's partial one), with the checksum computed.
    fn record_completed(&mut self, at: Instant, frame: &[u8]) {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        scratch.extend_from_slice(frame);
        super::vnet::complete_tcp_checksum(&mut scratch);
        self.record(at, &scratch);
        self.scratch = scratch;
    }

    fn record(&mut self, at: Instant, frame: &[u8]) {
        if self.error.is_some() {
            return;
        }
        let micros = u64::try_from(at.total_micros()).unwrap_or(0);
        let ts = std::time::Duration::from_micros(micros);
        let orig_len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        let packet = PcapPacket::new(ts, orig_len, frame);
        let written = packet.write_to::<_, byteorder_slice::LittleEndian>(
            &mut self.writer,
            TsResolution::MicroSecond,
            SNAPLEN,
        );
        match written {
            Ok(_) => self.frames += 1,
            Err(e) => self.error = Some(e),
        }
    }
}

/// A device that records all traffic of the device it wraps.
pub struct Capture<D, W: Write = BufWriter<File>> {
    inner: D,
    sink: RefCell<Sink<W>>,
    path: PathBuf,
}

impl<D> Capture<D> {
    /// Wraps `inner`, creating (or truncating) the pcap file at `path`.
    pub fn create(inner: D, path: &Path) -> Result<Self, DeviceError> {
        let err = |source| DeviceError::Capture {
            path: path.display().to_string(),
            source,
        };
        let file = File::create(path).map_err(|e| err(PcapError::IoError(e)))?;
        Capture::with_writer(inner, BufWriter::new(file), path).map_err(err)
    }
}

impl<D, W: Write> Capture<D, W> {
    /// Wraps `inner`, writing the capture to `writer`; `path` only names it in messages.
    pub fn with_writer(inner: D, mut writer: W, path: &Path) -> Result<Self, PcapError> {
        let header = PcapHeader {
            snaplen: SNAPLEN,
            datalink: DataLink::ETHERNET,
            endianness: Endianness::Little,
            ts_resolution: TsResolution::MicroSecond,
            ..PcapHeader::default()
        };
        header.write_to(&mut writer)?;
        Ok(Capture {
            inner,
            sink: RefCell::new(Sink {
                writer,
                frames: 0,
                error: None,
                scratch: Vec::new(),
            }),
            path: path.to_path_buf(),
        })
    }

    /// The wrapped device.
    pub fn inner(&self) -> &D {
        &self.inner
    }

    /// The wrapped device, mutably.
    pub fn inner_mut(&mut self) -> &mut D {
        &mut self.inner
    }

    /// Frames written so far.
    pub fn frames(&self) -> u64 {
        self.sink.borrow().frames
    }

    /// Flushes buffered frames to the file. Reports the first write error seen, if any.
    pub fn flush(&mut self) -> Result<(), DeviceError> {
        let sink = self.sink.get_mut();
        let err = |source| DeviceError::Capture {
            path: self.path.display().to_string(),
            source,
        };
        if let Some(e) = sink.error.take() {
            return Err(err(e));
        }
        sink.writer.flush().map_err(|e| err(PcapError::IoError(e)))
    }

    /// Unwraps the device and returns the writer with every frame written.
    pub fn finish(mut self) -> Result<(D, W), DeviceError> {
        self.flush()?;
        Ok((self.inner, self.sink.into_inner().writer))
    }
}

impl<D: phy::Device, W: Write> Capture<D, W> {
    /// Whether the wrapped device leaves TCP checksums of sent frames to the hardware.
    fn tcp_checksum_offloaded(&self) -> bool {
        !self.inner.capabilities().checksum.tcp.tx()
    }
}

impl<D: phy::Device, W: Write> phy::Device for Capture<D, W> {
    type RxToken<'a>
        = RxToken<'a, D::RxToken<'a>, W>
    where
        Self: 'a;
    type TxToken<'a>
        = TxToken<'a, D::TxToken<'a>, W>
    where
        Self: 'a;

    fn receive(&mut self, timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let offloaded = self.tcp_checksum_offloaded();
        let (rx, tx) = self.inner.receive(timestamp)?;
        let sink = &self.sink;
        Some((
            RxToken {
                inner: rx,
                sink,
                timestamp,
            },
            TxToken {
                inner: tx,
                sink,
                timestamp,
                offloaded,
            },
        ))
    }

    fn transmit(&mut self, timestamp: Instant) -> Option<Self::TxToken<'_>> {
        let offloaded = self.tcp_checksum_offloaded();
        let tx = self.inner.transmit(timestamp)?;
        Some(TxToken {
            inner: tx,
            sink: &self.sink,
            timestamp,
            offloaded,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        self.inner.capabilities()
    }
}

/// A received frame that is recorded as the stack reads it.
pub struct RxToken<'a, T, W: Write> {
    inner: T,
    sink: &'a RefCell<Sink<W>>,
    timestamp: Instant,
}

impl<T: phy::RxToken, W: Write> phy::RxToken for RxToken<'_, T, W> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        let (sink, timestamp) = (self.sink, self.timestamp);
        let completed = self.inner.meta().checksum_valid;
        self.inner.consume(|frame| {
            if completed {
                sink.borrow_mut().record_completed(timestamp, frame);
            } else {
                sink.borrow_mut().record(timestamp, frame);
            }
            f(frame)
        })
    }

    fn meta(&self) -> phy::PacketMeta {
        self.inner.meta()
    }
}

/// A frame to send that is recorded once the stack has written it.
pub struct TxToken<'a, T, W: Write> {
    inner: T,
    sink: &'a RefCell<Sink<W>>,
    timestamp: Instant,
    /// The device computes TCP checksums: fill them in for the capture (the device
    /// overwrites the field with what it needs after the frame is recorded).
    offloaded: bool,
}

impl<T: phy::TxToken, W: Write> phy::TxToken for TxToken<'_, T, W> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let (sink, timestamp, offloaded) = (self.sink, self.timestamp, self.offloaded);
        self.inner.consume(len, |frame| {
            let result = f(frame);
            if offloaded {
                super::vnet::complete_tcp_checksum(frame);
            }
            sink.borrow_mut().record(timestamp, frame);
            result
        })
    }

    fn set_meta(&mut self, meta: phy::PacketMeta) {
        self.inner.set_meta(meta)
    }
}
