//! Recording and checking golden captures: a conversation between tapir's client and
//! tapir's server over the in-memory link in deterministic mode, captured at the server's
//! device, compared with its checked-in file and replayed exactly.

use std::path::{Path, PathBuf};

use http::Request;
use smoltcp::time::Duration;
use tapir::client::fetch::{Fetch, Job, Sink};
use tapir::client::{Client, ClientConfig, Target};
use tapir::device::capture::Capture;
use tapir::device::memlink::{self, LinkConfig};
use tapir::device::pcap_reader::read_capture;
use tapir::replay::{replay_exact, ExactConfig};
use tapir::runtime::sim::{Node, Sim, SimNode};
use tapir::service::{Body, ResponseBody};
use tapir::stack::Stack;

use super::{config, CLIENT_IP};

/// A sink that drops response bodies.
pub struct Discard;

impl Sink for Discard {
    fn head(&mut self, _: &http::Response<ResponseBody>) {}
    fn data(&mut self, _: &[u8]) -> std::io::Result<()> {
        Ok(())
    }
}

/// Where the golden captures live.
pub fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("captures/golden")
}

/// Records `requests` sent by a client with `client` settings to the server `exact` sets up,
/// at `target`, and returns the pcap bytes captured at the server's device.
pub fn record(
    exact: &ExactConfig,
    target: &Target,
    client: ClientConfig,
    requests: Vec<Request<Body>>,
) -> Vec<u8> {
    let mut sim = Sim::new();
    let link = LinkConfig {
        latency: Duration::from_micros(250),
        ..LinkConfig::default()
    };
    let (server_dev, mut client_dev) = memlink::pair(link).unwrap();
    let mut server_dev = Capture::with_writer(server_dev, Vec::new(), Path::new("golden")).unwrap();
    let mut server_stack = Stack::new(exact.stack_config(), &mut server_dev, sim.now()).unwrap();
    let server = exact.server(&mut server_stack).unwrap();
    let client_stack = Stack::new(config(CLIENT_IP, 1, 2), &mut client_dev, sim.now()).unwrap();
    let jobs = requests
        .into_iter()
        .map(|r| Job::new(target.clone(), r, Discard))
        .collect();
    let client = Client::new(client).unwrap();
    let mut server = Node::new(server_stack, server_dev, server);
    let mut client = Node::new(client_stack, client_dev, Fetch::new(client, jobs, false));
    sim.run_until(
        &mut [&mut server as &mut dyn SimNode, &mut client],
        Duration::from_secs(60),
        |nodes| nodes[1].finished(),
    )
    .expect("the conversation completes");
    assert!(
        client.app.failures().is_empty(),
        "{:?}",
        client.app.failures()
    );
    // Let the last ACKs, alerts and FINs go by.
    let _ = sim.run_until(
        &mut [&mut server as &mut dyn SimNode, &mut client],
        Duration::from_millis(500),
        |_| false,
    );
    let (_, bytes) = server.device.finish().unwrap();
    bytes
}

/// Compares a fresh recording with the checked-in file `name` (or writes it when
/// TAPIR_REGENERATE_GOLDEN is set), then replays the checked-in file exactly into the
/// server `exact` sets up.
pub fn check(name: &str, recorded: &[u8], exact: &ExactConfig) {
    let path = golden_dir().join(name);
    if std::env::var_os("TAPIR_REGENERATE_GOLDEN").is_some() {
        std::fs::create_dir_all(golden_dir()).unwrap();
        std::fs::write(&path, recorded).unwrap();
        eprintln!("wrote {}", path.display());
    }
    let stored = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/golden.sh)", path.display()));
    assert!(stored.len() < 1 << 20, "golden captures stay small");
    assert_eq!(
        recorded, stored,
        "recording {name} again gives the same bytes (determinism); regenerate with scripts/golden.sh after intended changes"
    );
    let frames = read_capture(&path).unwrap();
    let report = replay_exact(&frames, exact).unwrap();
    assert!(report.fed > 5 && report.compared > 5, "{report:?}");
    if let Some(mismatch) = &report.mismatch {
        panic!("{name} does not replay exactly:\n{mismatch}");
    }
}
