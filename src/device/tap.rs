//! A Linux TAP device (Ethernet frames, no packet-info header).
//!
//! Two ways in: plain frames through the `tun-tap` crate ([`TapDevice::open`]), or frames
//! with a virtio-net header and the offloads the kernel accepts
//! ([`TapDevice::open_with_offloads`]). `tun-tap`'s C shim cannot set `IFF_VNET_HDR`, so
//! the second opens `/dev/net/tun` itself with three ioctls (`TUNSETIFF`,
//! `TUNSETVNETHDRSZ`, `TUNSETOFFLOAD`) in its private `kernel` module.
//!
//! The file descriptor is non-blocking and exposed with [`AsRawFd`] so the event loop can
//! register it with mio. Frames move through [`FdFrames`], shared with the other fd
//! devices.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};

use smoltcp::phy::{self, DeviceCapabilities};
use smoltcp::time::Instant;
use tun_tap::{Iface, Mode};

use super::fd::{self, FdFrames, FramePort};
use super::vnet::{self, Offloads};
use super::{check_mtu, DeviceError, DeviceStats};

/// Frames the kernel may queue towards us (the TAP device's `txqueuelen`, which sizes the
/// tun driver's ring; a full ring drops what comes next). Linux's default of 1,000 is
/// 6 ms of a SYN flood at 160,000 frames/s: a userspace reader that the scheduler keeps
/// off the CPU for longer loses frames, a legitimate SYN among them (its client waits a
/// second to resend it). 32,768 covers 200 ms at that rate; the ring holds only frames we
/// have not read yet, so it costs memory only while we are behind. A device already set
/// higher is left as it is.
pub const TX_QUEUE_LEN: u32 = 32_768;

/// A TAP interface opened (or created) by name.
pub struct TapDevice {
    frames: FdFrames<TapPort>,
    name: String,
}

/// The open TAP file: through `tun-tap`, or our own with a virtio-net header.
pub enum TapPort {
    /// Plain frames.
    Plain(Iface),
    /// Frames behind a virtio-net header.
    Vnet(File),
}

impl FramePort for TapPort {
    fn recv_frame(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            TapPort::Plain(iface) => iface.recv(buf),
            TapPort::Vnet(file) => Read::read(&mut &*file, buf),
        }
    }

    fn send_frame(&self, frame: &[u8]) -> io::Result<usize> {
        match self {
            TapPort::Plain(iface) => iface.send(frame),
            TapPort::Vnet(file) => Write::write(&mut &*file, frame),
        }
    }
}

impl Drop for TapPort {
    fn drop(&mut self) {
        // A persistent device keeps the offloads we negotiated after we close it, and its
        // next user (a VM, another program) that reads plain frames would get partial
        // checksums and super-frames: leave it as a plain device.
        if let TapPort::Vnet(file) = self {
            if let Err(e) = kernel::set_offload(file.as_raw_fd(), 0) {
                tracing::debug!("TAP: clearing offloads on close failed: {e}");
            }
        }
    }
}

impl AsRawFd for TapPort {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            TapPort::Plain(iface) => iface.as_raw_fd(),
            TapPort::Vnet(file) => file.as_raw_fd(),
        }
    }
}

impl TapDevice {
    /// Attaches to the TAP interface `name`, creating it when it does not exist (creating
    /// needs CAP_NET_ADMIN; attaching to a persistent device owned by the user does not).
    /// `mtu` is the IP MTU; the kernel side is set to match when it differs and we may.
    pub fn open(name: &str, mtu: usize) -> Result<Self, DeviceError> {
        let mtu = check_mtu(mtu)?;
        check_name(name)?;
        let err = |action| tap_error(name, action);
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
        // Offloads a previous user of a persistent device negotiated stay on its kernel
        // side, which would then hand us partial checksums and super-frames: clear them.
        if let Err(e) = kernel::set_offload(iface.as_raw_fd(), 0) {
            tracing::warn!("TAP {name}: clearing offloads failed: {e}");
        }
        Ok(Self::configure(
            name,
            FdFrames::new(TapPort::Plain(iface), mtu),
        ))
    }

    /// Like [`TapDevice::open`], with a virtio-net header on every frame and as many of
    /// `wanted` offloads as the kernel accepts (each refusal is logged; without any, frames
    /// go as on the plain path). When the kernel cannot give a virtio-net header at all,
    /// falls back to [`TapDevice::open`].
    pub fn open_with_offloads(
        name: &str,
        mtu: usize,
        wanted: Offloads,
    ) -> Result<Self, DeviceError> {
        Self::open_refusing(name, mtu, wanted, Offloads::NONE)
    }

    /// [`TapDevice::open_with_offloads`] where `TUNSETOFFLOAD` fails for every flag of
    /// `refused`, as a kernel without them would: for testing the fallback.
    #[doc(hidden)]
    pub fn open_refusing(
        name: &str,
        mtu: usize,
        wanted: Offloads,
        refused: Offloads,
    ) -> Result<Self, DeviceError> {
        let mtu = check_mtu(mtu)?;
        check_name(name)?;
        if cfg!(target_endian = "big") {
            // The header is little-endian on such hosts only after TUNSETVNETLE; not done.
            tracing::warn!("TAP {name}: no offloads on a big-endian host");
            return Self::open(name, mtu);
        }
        let (file, name) = match kernel::open_vnet(name) {
            Ok(opened) => opened,
            // Another process holds the device: no other way to open it will do better.
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                return Err(DeviceError::TapBusy {
                    name: name.to_string(),
                });
            }
            Err(e) => {
                tracing::warn!("TAP {name}: no virtio-net header ({e}); plain frames");
                return Self::open(name, mtu);
            }
        };
        let fd = file.as_raw_fd();
        let offloads = vnet::negotiate(wanted, |flags| {
            if flags & refused.tun_flags() != 0 {
                return Err(io::Error::other("refused for testing"));
            }
            kernel::set_offload(fd, flags)
        });
        tracing::info!("TAP {name}: offloads {offloads}");
        let frames = FdFrames::with_vnet(TapPort::Vnet(file), mtu, offloads);
        Ok(Self::configure(name, frames))
    }

    /// Matches the kernel-side MTU to ours where we may, and warns when the link is down.
    fn configure(name: String, frames: FdFrames<TapPort>) -> Self {
        match kernel::tx_queue_len(&name) {
            Ok(current) if current < TX_QUEUE_LEN => {
                match kernel::set_tx_queue_len(&name, TX_QUEUE_LEN) {
                    Ok(()) => tracing::debug!(
                        "TAP {name}: kernel queue towards us raised from {current} to {TX_QUEUE_LEN} frames"
                    ),
                    Err(e) => tracing::warn!(
                        "TAP {name}: the kernel queues {current} frames towards us and we could \
                         not raise it to {TX_QUEUE_LEN} ({e}); frames are dropped when we fall \
                         that far behind (`ip link set {name} txqueuelen {TX_QUEUE_LEN}`)"
                    ),
                }
            }
            Ok(_) => {}
            Err(e) => tracing::debug!("TAP {name}: cannot read the kernel queue length: {e}"),
        }
        let mtu = frames.mtu();
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
        TapDevice { frames, name }
    }

    /// The offloads in use (none on the plain path).
    pub fn offloads(&self) -> Offloads {
        self.frames.offloads()
    }

    /// Like [`TapDevice::open`], inside the network namespace `netns` (a name `ip netns`
    /// made, under /var/run/netns). The device stays bound to that namespace; the calling
    /// thread returns to its own namespace before this returns. Needs CAP_SYS_ADMIN.
    pub fn open_in_netns(netns: &str, name: &str, mtu: usize) -> Result<Self, DeviceError> {
        let err = |action| tap_error(name, action);
        let own = std::fs::File::open("/proc/thread-self/ns/net")
            .map_err(err("opening the current network namespace"))?;
        let target = std::fs::File::open(std::path::Path::new("/var/run/netns").join(netns))
            .map_err(err("opening the network namespace"))?;
        kernel::set_netns(&target).map_err(err("entering the network namespace"))?;
        let opened = TapDevice::open(name, mtu);
        // Back home whatever happened; failing that, this thread would be in the wrong place.
        kernel::set_netns(&own).map_err(err("returning to the original network namespace"))?;
        opened
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

/// A [`DeviceError::Tap`] maker for `action` on TAP `name`.
fn tap_error(name: &str, action: &'static str) -> impl FnOnce(io::Error) -> DeviceError {
    let name = name.to_string();
    move |source| DeviceError::Tap {
        name,
        action,
        source,
    }
}

impl AsRawFd for TapDevice {
    fn as_raw_fd(&self) -> RawFd {
        self.frames.port().as_raw_fd()
    }
}

impl phy::Device for TapDevice {
    type RxToken<'a> = fd::RxToken<'a>;
    type TxToken<'a> = fd::TxToken<'a, TapPort>;

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

/// Checks that `name` fits in an `ifreq`.
fn check_name(name: &str) -> Result<(), DeviceError> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(tap_error(name, "checking the name")(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("interface names are 1 to {} bytes", libc::IFNAMSIZ - 1),
        )));
    }
    Ok(())
}

/// Kernel-side interface settings through the classic `ifreq` ioctls, and the TUN ioctls
/// that open a TAP with a virtio-net header.
mod kernel {
    use std::fs::{File, OpenOptions};
    use std::io;
    use std::os::fd::{AsRawFd, RawFd};
    use std::os::unix::fs::OpenOptionsExt;

    use super::vnet;

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
        // what SIOCGIFMTU / SIOCSIFMTU / SIOCGIFFLAGS / SIOC[GS]IFTXQLEN expect.
        let rc = unsafe { libc::ioctl(sock.0, op, req as *mut libc::ifreq) };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    fn check(rc: libc::c_int) -> io::Result<()> {
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Opens (or creates) TAP `name` with `IFF_VNET_HDR`, non-blocking, with a header of
    /// [`vnet::HDR_LEN`] bytes; returns the file and the name the kernel gave it.
    pub(super) fn open_vnet(name: &str) -> io::Result<(File, String)> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open("/dev/net/tun")?;
        let mut req = request(name);
        req.ifr_ifru.ifru_flags =
            (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as libc::c_short;
        // SAFETY: TUNSETIFF reads and writes back the ifreq through the pointer; `req` is a
        // valid, initialised ifreq that outlives the call, and `file` is an open tun fd.
        check(unsafe {
            libc::ioctl(
                file.as_raw_fd(),
                libc::TUNSETIFF,
                &mut req as *mut libc::ifreq,
            )
        })?;
        let name: Vec<u8> = req
            .ifr_name
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        let name = String::from_utf8_lossy(&name).into_owned();
        let size = vnet::HDR_LEN as libc::c_int;
        // SAFETY: TUNSETVNETHDRSZ reads one int through the pointer; `size` outlives the call.
        check(unsafe {
            libc::ioctl(
                file.as_raw_fd(),
                libc::TUNSETVNETHDRSZ,
                &size as *const libc::c_int,
            )
        })?;
        Ok((file, name))
    }

    /// `TUNSETOFFLOAD`: the offloads (`TUN_F_*`) the kernel may use on this TAP.
    pub(super) fn set_offload(fd: RawFd, flags: libc::c_uint) -> io::Result<()> {
        // SAFETY: TUNSETOFFLOAD takes its argument by value (an unsigned long), not through
        // a pointer; `fd` is the open tun fd of the caller.
        check(unsafe { libc::ioctl(fd, libc::TUNSETOFFLOAD, libc::c_ulong::from(flags)) })
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

    /// The interface's `txqueuelen` (for a TAP device, the frames queued towards its reader).
    pub(super) fn tx_queue_len(name: &str) -> io::Result<u32> {
        let mut req = request(name);
        ioctl(libc::SIOCGIFTXQLEN, &mut req)?;
        // SAFETY: SIOCGIFTXQLEN filled the union's int member (`ifr_qlen` in C, which libc
        // names `ifru_metric`, one of the int views of the same member).
        let len = unsafe { req.ifr_ifru.ifru_metric };
        u32::try_from(len).map_err(|_| io::Error::other("negative queue length"))
    }

    pub(super) fn set_tx_queue_len(name: &str, len: u32) -> io::Result<()> {
        let mut req = request(name);
        req.ifr_ifru.ifru_metric =
            libc::c_int::try_from(len).map_err(|_| io::Error::other("queue length too large"))?;
        ioctl(libc::SIOCSIFTXQLEN, &mut req)
    }

    /// Moves the calling thread into the network namespace `ns` (an open nsfs file).
    pub(super) fn set_netns(ns: &std::fs::File) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        // SAFETY: setns(2) takes a descriptor, valid while `ns` is borrowed, and a flag; no
        // pointers. A negative result is checked below.
        let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    pub(super) fn is_up(name: &str) -> io::Result<bool> {
        let mut req = request(name);
        ioctl(libc::SIOCGIFFLAGS, &mut req)?;
        // SAFETY: SIOCGIFFLAGS filled the `ifru_flags` member of the union.
        let flags = unsafe { req.ifr_ifru.ifru_flags };
        Ok(flags & libc::IFF_UP as libc::c_short != 0)
    }
}
