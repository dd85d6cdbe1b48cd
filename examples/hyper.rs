//! hyper 1.x's own HTTP/1.1 server running over tapir's TCP flows: the proof that a
//! protocol library written against tokio's `AsyncRead + AsyncWrite` runs on tapir
//! unchanged (hyper-util's `TokioIo` adapts the flow to hyper's IO traits).
//!
//! ```sh
//! cargo run --release --example hyper -- --tap tap0      # as root; then
//! curl http://10.7.0.2:8080/
//! ```
//!
//! The stack takes 10.7.0.2/24 on the TAP device (created if it does not exist; use
//! `scripts/netns.sh up NAME` for a namespace with one) and accepts on port 8080; every
//! connection is served by `hyper::server::conn::http1` in a task on tapir's loop, with no
//! tokio runtime. `GET /` answers 200, anything else 404. Ctrl-C stops it.

use std::convert::Infallible;

use anyhow::Context as _;
use bytes::Bytes;
use clap::Parser;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use smoltcp::wire::{IpAddress, IpCidr, Ipv4Address};
use tapir::device::tap::TapDevice;
use tapir::runtime::{StopHandle, WallClock};
use tapir::stack::{Stack, StackConfig};
use tapir::transport::flow::{FlowHandle, FlowListener, Flows};

/// Command line.
#[derive(Parser)]
#[command(about = "hyper's HTTP/1.1 server over tapir's TCP flows")]
struct Args {
    /// TAP device to use (attached if it exists, created otherwise).
    #[arg(long)]
    tap: String,
    /// The port to accept on.
    #[arg(long, default_value_t = 8080)]
    port: u16,
}

/// The stack's address (the README's default).
const ADDRESS: Ipv4Address = Ipv4Address::new(10, 7, 0, 2);

async fn answer(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, body) = match (request.method(), request.uri().path()) {
        (&Method::GET, "/") => (StatusCode::OK, "hello from hyper on tapir\n"),
        _ => (StatusCode::NOT_FOUND, "not found\n"),
    };
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    Ok(response)
}

/// Accepts flows and serves each with hyper in a task of its own.
async fn accept_loop(flows: FlowHandle, mut listener: FlowListener) {
    loop {
        let flow = match listener.accept().await {
            Ok(flow) => flow,
            Err(e) => {
                eprintln!("accept: {e}");
                return;
            }
        };
        let peer = flow.peer();
        let connection = async move {
            let served = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(flow), service_fn(answer))
                .await;
            if let Err(e) = served {
                eprintln!("connection from {peer}: {e}");
            }
        };
        if let Err(e) = flows.spawn(connection) {
            // The task set is full: the flow is dropped, which closes it.
            eprintln!("connection from {peer} refused: {e}");
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut device = TapDevice::open(&args.tap, 1500)
        .with_context(|| format!("opening TAP device {}", args.tap))?;
    let mut rng = fastrand::Rng::new();
    let mut config = StackConfig::new(
        tapir::device::random_mac(&mut rng),
        vec![IpCidr::new(IpAddress::Ipv4(ADDRESS), 24)],
    );
    config.seed = rng.u64(..);
    let mut stack = Stack::new(config, &mut device, WallClock::new().now())?;

    let mut flows = Flows::default();
    let handle = flows.handle();
    let listener = flows
        .bind(&mut stack, args.port, None)
        .with_context(|| format!("port {}", args.port))?;
    handle.spawn(accept_loop(handle.clone(), listener))?;
    eprintln!("ready: hyper on http://{ADDRESS}:{}/", args.port);
    let ended = tapir::serve(&mut device, &mut stack, &mut flows, &StopHandle::new())?;
    eprintln!("stopped: {ended:?}");
    Ok(())
}
