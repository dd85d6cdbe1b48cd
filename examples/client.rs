//! tapir's HTTP client on a TAP device: fetches a URL (HTTP/1.1, or HTTP/2 by ALPN over
//! TLS) and writes the body to stdout, the status to stderr.
//!
//! ```sh
//! scripts/netns.sh up demo
//! ip netns exec demo python3 -m http.server --bind 10.7.0.1 8000 &
//! ip netns exec demo cargo run --release --example client -- --tap tap0 http://10.7.0.1:8000/
//! ```

mod common;

use std::io::Write;

use http::{Request, Response};
use tapir::client::fetch::{Fetch, Job, Outcome, Sink};
use tapir::client::{Client, ClientConfig, Target};
use tapir::runtime::StopHandle;
use tapir::service::{Body, ResponseBody};

/// Writes the body to stdout as it arrives.
struct Stdout;

impl Sink for Stdout {
    fn head(&mut self, response: &Response<ResponseBody>) {
        eprintln!("{:?} {}", response.version(), response.status());
    }

    fn data(&mut self, data: &[u8]) -> std::io::Result<()> {
        std::io::stdout().write_all(data)
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let usage = "usage: client --tap NAME URL (an address literal: http://10.7.0.1:8000/)";
    let args = common::args(usage)?;
    let [url] = &args.rest[..] else {
        return Err(usage.into());
    };
    let uri = Target::parse_url(url)?;
    let addr = Target::literal_addr(&uri).ok_or("the example resolves no names: use an address")?;
    let target = Target::from_uri(&uri, addr)?;
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let request = Request::get(path).body(Body::empty())?;
    let (mut tap, mut stack) = common::tap_stack(&args.tap)?;
    let client = Client::new(ClientConfig::default())?;
    let mut fetch = Fetch::new(client, vec![Job::new(target, request, Stdout)], false);
    tapir::serve(&mut tap, &mut stack, &mut fetch, &StopHandle::new())?;
    match fetch.jobs.first().and_then(|job| job.outcome.clone()) {
        Some(Outcome::Done { .. }) => Ok(()),
        Some(Outcome::Failed(e)) => Err(e.into()),
        None => Err("stopped before the response".into()),
    }
}
