//! The README's program: tapir's built-in server on a TAP device answering every request
//! with its method, target, protocol and the client's address (HTTP/1.1 and h2c on port
//! 80 of 10.7.0.2). `cargo run --release --example hello -- tap0` inside a namespace made
//! by `scripts/netns.sh up NAME`; tests/tap_examples.rs keeps this file and the README equal.

use http::{Request, Response};
use tapir::device::tap::TapDevice;
use tapir::runtime::{StopHandle, WallClock};
use tapir::service::{Body, ConnInfo, RequestBody, Server, ServerConfig};
use tapir::smoltcp::wire::{IpAddress, IpCidr};
use tapir::stack::{Stack, StackConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let name = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "tap0".to_string());
    let mut tap = TapDevice::open(&name, 1500)?;
    let mac = tapir::device::random_mac(&mut fastrand::Rng::new());
    let config = StackConfig::new(mac, vec![IpCidr::new(IpAddress::v4(10, 7, 0, 2), 24)]);
    let mut stack = Stack::new(config, &mut tap, WallClock::new().now())?;
    let hello = |request: Request<RequestBody>, info: &ConnInfo| {
        let text = format!(
            "{} {} over {} from {}\n",
            request.method(),
            request.uri(),
            info.protocol,
            info.peer
        );
        Response::new(Body::from(text))
    };
    let mut server = Server::new(hello, ServerConfig::default());
    server.bind_http(&mut stack, 80)?;
    let stop = StopHandle::new(); // clone it to stop the server from another thread
    tapir::serve(&mut tap, &mut stack, &mut server, &stop)?;
    Ok(())
}
