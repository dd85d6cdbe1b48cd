//! Shared by the examples: `--tap NAME` from the command line and a stack on that TAP
//! device with `tapir serve`'s default addresses (10.7.0.2/24 and fd00:7::2/64; the
//! kernel's side of a `scripts/netns.sh` namespace is 10.7.0.1 and fd00:7::1).

#![allow(dead_code)] // not every example uses every piece

use std::error::Error;

use tapir::device::tap::TapDevice;
use tapir::runtime::WallClock;
use tapir::smoltcp::wire::{IpAddress, IpCidr};
use tapir::stack::{Stack, StackConfig};

/// The command line: the value of `--tap` and the other arguments, in order.
pub struct Args {
    /// The TAP device's name.
    pub tap: String,
    /// Everything else.
    pub rest: Vec<String>,
}

/// Reads `--tap NAME` (required) and the other arguments; `usage` is shown on a mistake.
pub fn args(usage: &str) -> Result<Args, Box<dyn Error>> {
    let mut tap = None;
    let mut rest = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--tap" => tap = Some(args.next().ok_or(format!("--tap needs a name\n{usage}"))?),
            "-h" | "--help" => return Err(usage.into()),
            _ => rest.push(arg),
        }
    }
    let tap = tap.ok_or(format!("missing --tap NAME\n{usage}"))?;
    Ok(Args { tap, rest })
}

/// Opens the TAP device `name` and makes a stack on it at 10.7.0.2/24 and fd00:7::2/64.
pub fn tap_stack(name: &str) -> Result<(TapDevice, Stack), Box<dyn Error>> {
    let mut tap = TapDevice::open(name, 1500)?;
    let mac = tapir::device::random_mac(&mut fastrand::Rng::new());
    let addresses = vec![
        IpCidr::new(IpAddress::v4(10, 7, 0, 2), 24),
        IpCidr::new(IpAddress::v6(0xfd00, 7, 0, 0, 0, 0, 0, 2), 64),
    ];
    let stack = Stack::new(
        StackConfig::new(mac, addresses),
        &mut tap,
        WallClock::new().now(),
    )?;
    Ok((tap, stack))
}
