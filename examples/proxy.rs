//! A forward HTTP proxy on a TAP device (10.7.0.2 port 3128): `CONNECT` tunnels and
//! absolute-form requests to the kernel's side of the link (10.7.0.0/24) only.
//!
//! ```sh
//! scripts/netns.sh up demo
//! ip netns exec demo python3 -m http.server --bind 10.7.0.1 8000 &
//! ip netns exec demo cargo run --release --example proxy -- --tap tap0 &
//! ip netns exec demo curl -x http://10.7.0.2:3128 http://10.7.0.1:8000/
//! ```

mod common;

use std::collections::HashMap;

use tapir::client::{Client, ClientConfig};
use tapir::proxy::{Allow, Proxy, ProxyMode};
use tapir::runtime::StopHandle;
use tapir::service::ServerConfig;
use tapir::smoltcp::wire::{IpAddress, IpCidr};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = common::args("usage: proxy --tap NAME")?;
    let (mut tap, mut stack) = common::tap_stack(&args.tap)?;
    let mode = ProxyMode::Forward {
        allow: vec![Allow {
            net: IpCidr::new(IpAddress::v4(10, 7, 0, 0), 24),
            ports: None,
        }],
        hosts: HashMap::new(),
    };
    let client = Client::new(ClientConfig::default())?;
    let mut proxy = Proxy::new(mode, client, ServerConfig::default());
    proxy.bind_http(&mut stack, 3128)?;
    eprintln!("ready: forward proxy on http://10.7.0.2:3128 to 10.7.0.0/24");
    tapir::serve(&mut tap, &mut stack, &mut proxy, &StopHandle::new())?;
    Ok(())
}
