//! Devices: where Ethernet frames come from and go to.
//!
//! Every device implements smoltcp's [`smoltcp::phy::Device`], so the same stack runs on
//! a real TAP interface ([`tap`]), an in-memory link between two stacks ([`memlink`]) and
//! any of them wrapped in a pcap recorder ([`capture`]) or in path impairments ([`impair`]). Devices compose as middleware,
//! the way smoltcp's own `phy` module does.

pub mod capture;
pub mod dgram;
pub mod fd;
pub mod impair;
pub mod memlink;
pub mod pcap_reader;
pub mod replay;
pub mod tap;
pub mod vnet;

use smoltcp::wire::EthernetAddress;

/// The largest IP MTU a device accepts (the IPv4 total-length limit).
pub const MAX_MTU: usize = 65535;
/// The smallest IP MTU a device accepts (the IPv6 minimum link MTU).
pub const MIN_MTU: usize = 1280;
/// Bytes of Ethernet header in front of every IP packet.
pub const ETHERNET_HEADER_LEN: usize = 14;

/// Errors raised by devices.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The MTU is outside what an Ethernet device of ours supports.
    #[error("MTU {0} is out of range ({MIN_MTU}..={MAX_MTU})")]
    BadMtu(usize),
    /// Opening or configuring the TAP device failed.
    #[error("TAP device {name}: {action}")]
    Tap {
        /// Interface name.
        name: String,
        /// What we were doing.
        action: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// Another process (another tapir, say) holds the TAP device.
    #[error("TAP device {name} is in use: another process (another tapir?) holds it")]
    TapBusy {
        /// Interface name.
        name: String,
    },
    /// The device failed while running (for example it was deleted).
    #[error("device failed")]
    Io(#[from] std::io::Error),
    /// Writing the capture file failed.
    #[error("capture file {path}")]
    Capture {
        /// Path of the pcap file.
        path: String,
        /// The underlying error.
        source: pcap_file::PcapError,
    },
}

/// Checks that an IP MTU is usable on an Ethernet device.
pub fn check_mtu(mtu: usize) -> Result<usize, DeviceError> {
    if (MIN_MTU..=MAX_MTU).contains(&mtu) {
        Ok(mtu)
    } else {
        Err(DeviceError::BadMtu(mtu))
    }
}

/// The capabilities of an Ethernet device with IP MTU `mtu` (smoltcp counts the Ethernet
/// header in its MTU).
pub fn ethernet_caps(mtu: usize) -> smoltcp::phy::DeviceCapabilities {
    let mut caps = smoltcp::phy::DeviceCapabilities::default();
    caps.medium = smoltcp::phy::Medium::Ethernet;
    caps.max_transmission_unit = mtu + ETHERNET_HEADER_LEN;
    caps
}

/// A random, locally administered, unicast MAC address.
pub fn random_mac(rng: &mut fastrand::Rng) -> EthernetAddress {
    let mut bytes = [0u8; 6];
    rng.fill(&mut bytes);
    // Clear the multicast bit, set the locally-administered bit.
    bytes[0] = (bytes[0] & 0xfe) | 0x02;
    EthernetAddress(bytes)
}

/// Counters every device keeps.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DeviceStats {
    /// Frames handed to the stack.
    pub rx_frames: u64,
    /// Bytes handed to the stack.
    pub rx_bytes: u64,
    /// Frames sent by the stack.
    pub tx_frames: u64,
    /// Bytes sent by the stack.
    pub tx_bytes: u64,
    /// Frames the device dropped (queue full, send error, injected loss).
    pub dropped: u64,
}

/// A device backed by a file descriptor that an event loop can wait on.
pub trait FdDevice: smoltcp::phy::Device + std::os::fd::AsRawFd {
    /// A fatal error seen while moving frames (the device was deleted, for example).
    fn take_failure(&mut self) -> Option<std::io::Error>;
    /// Called when the loop ends, to flush anything buffered.
    fn finish(&mut self) -> Result<(), DeviceError> {
        Ok(())
    }
}

impl FdDevice for tap::TapDevice {
    fn take_failure(&mut self) -> Option<std::io::Error> {
        tap::TapDevice::take_failure(self)
    }
}

impl<D: FdDevice> std::os::fd::AsRawFd for capture::Capture<D> {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.inner().as_raw_fd()
    }
}

impl<D: FdDevice> FdDevice for capture::Capture<D> {
    fn take_failure(&mut self) -> Option<std::io::Error> {
        self.inner_mut().take_failure()
    }

    fn finish(&mut self) -> Result<(), DeviceError> {
        self.inner_mut().finish()?;
        self.flush()
    }
}
