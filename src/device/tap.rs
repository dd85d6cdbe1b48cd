//! A Linux TAP device (Ethernet frames, no packet-info header) through the `tun-tap` crate.
//!
//! The file descriptor is non-blocking and exposed with [`AsRawFd`] so the event loop can
//! register it with mio. Frames move through [`FdFrames`], shared with the other fd
//! devices.

use std::io;
use std::os::fd::{AsRawFd, RawFd};

use smoltcp::phy::{self, DeviceCapabilities};
use smoltcp::time::Instant;
use tun_tap::{Iface, Mode};

use super::fd::{self, FdFrames, FramePort};
use super::{check_mtu, DeviceError, DeviceStats};

/// A TAP interface opened (or created) by name.
pub struct TapDevice {
    frames: FdFrames<Iface>,
    name: String,
}

impl FramePort for Iface {
    fn recv_frame(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.recv(buf)
    }

    fn send_frame(&self, frame: &[u8]) -> io::Result<usize> {
        self.send(frame)
    }
}

impl TapDevice {
    /// Attaches to the TAP interface `name`, creating it when it does not exist (creating
    /// needs CAP_NET_ADMIN; attaching to a persistent device owned by the user does not).
    /// `mtu` is the IP MTU; the kernel side is set to match when it differs and we may.
    pub fn open(name: &str, mtu: usize) -> Result<Self, DeviceError> {
        let mtu = check_mtu(mtu)?;
        let err = |action: &'static str| {
            let name = name.to_string();
            move |source| DeviceError::Tap {
                name,
                action,
                source,
            }
        };
        if name.is_empty() || name.len() >= libc::IFNAMSIZ {
            return Err(err("checking the name")(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("interface names are 1 to {} bytes", libc::IFNAMSIZ - 1),
            )));
        }
        let iface = Iface::without_packet_info(name, Mode::Tap).map_err(|e| {
            if e.raw_os_error() == Some(libc::EBUSY) {
                DeviceError::TapBusy {
                    name: name.to_string(),
                }
            } else {
                err("opening")(e)
            }
        })?;
        iface
            .set_non_blocking()
            .map_err(err("making it non-blocking"))?;
        let name = iface.name().to_string();
        match kernel::mtu(&name) {
            Ok(current) if current != mtu => {
                if let Err(e) = kernel::set_mtu(&name, mtu) {
                    tracing::warn!(
                        "TAP {name}: kernel-side MTU is {current}, could not set it to {mtu}: {e}"
                    );
                }
            }
            Ok(_) => {}
            Err(e) => tracing::debug!("TAP {name}: cannot read the kernel-side MTU: {e}"),
        }
        if let Ok(false) = kernel::is_up(&name) {
            tracing::warn!("TAP {name} is down: bring it up with `ip link set {name} up`");
        }
        Ok(TapDevice {
            frames: FdFrames::new(iface, mtu),
            name,
        })
    }

    /// The interface name the kernel gave us.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Counters of frames and bytes moved.
    pub fn stats(&self) -> DeviceStats {
        self.frames.stats()
    }

    /// A fatal error seen while reading or writing (the device was deleted, for example).
    /// The event loop checks this after every poll and stops cleanly.
    pub fn take_failure(&mut self) -> Option<io::Error> {
        self.frames.take_failure()
    }
}

impl AsRawFd for TapDevice {
    fn as_raw_fd(&self) -> RawFd {
        self.frames.port().as_raw_fd()
    }
}

impl phy::Device for TapDevice {
    type RxToken<'a> = fd::RxToken<'a>;
    type TxToken<'a> = fd::TxToken<'a, Iface>;

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

/// Kernel-side interface settings through the classic `ifreq` ioctls.
mod kernel {
    use std::io;

    /// A datagram socket to carry interface ioctls, closed on drop.
    struct CtlSocket(libc::c_int);

    impl CtlSocket {
        fn new() -> io::Result<Self> {
            // SAFETY: socket(2) takes no pointers; a negative result is checked below.
            let fd =
                unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
            if fd < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(CtlSocket(fd))
            }
        }
    }

    impl Drop for CtlSocket {
        fn drop(&mut self) {
            // SAFETY: self.0 is a descriptor we opened and nobody else closes.
            unsafe { libc::close(self.0) };
        }
    }

    fn request(name: &str) -> libc::ifreq {
        // SAFETY: ifreq is a plain C struct (arrays and a union of integers); all-zero is valid.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        // The caller checked that the name fits in IFNAMSIZ - 1 bytes, leaving the NUL.
        for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
            *dst = src as libc::c_char;
        }
        req
    }

    fn ioctl(op: libc::Ioctl, req: &mut libc::ifreq) -> io::Result<()> {
        let sock = CtlSocket::new()?;
        // SAFETY: `req` is a valid, initialised ifreq that lives across the call, which is
        // what SIOCGIFMTU / SIOCSIFMTU / SIOCGIFFLAGS expect.
        let rc = unsafe { libc::ioctl(sock.0, op, req as *mut libc::ifreq) };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    pub(super) fn mtu(name: &str) -> io::Result<usize> {
        let mut req = request(name);
        ioctl(libc::SIOCGIFMTU, &mut req)?;
        // SAFETY: SIOCGIFMTU filled the `ifru_mtu` member of the union.
        let mtu = unsafe { req.ifr_ifru.ifru_mtu };
        usize::try_from(mtu).map_err(|_| io::Error::other("negative MTU"))
    }

    pub(super) fn set_mtu(name: &str, mtu: usize) -> io::Result<()> {
        let mut req = request(name);
        req.ifr_ifru.ifru_mtu =
            libc::c_int::try_from(mtu).map_err(|_| io::Error::other("MTU too large"))?;
        ioctl(libc::SIOCSIFMTU, &mut req)
    }

    pub(super) fn is_up(name: &str) -> io::Result<bool> {
        let mut req = request(name);
        ioctl(libc::SIOCGIFFLAGS, &mut req)?;
        // SAFETY: SIOCGIFFLAGS filled the `ifru_flags` member of the union.
        let flags = unsafe { req.ifr_ifru.ifru_flags };
        Ok(flags & libc::IFF_UP as libc::c_short != 0)
    }
}
