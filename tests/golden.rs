//! Golden captures: conversations recorded in deterministic mode (virtual clock, fixed
//! seeds) and checked in under `captures/golden/`. Each must replay byte-exactly: a fresh
//! server fed the client's frames answers with the very same frames at the same times.
//!
//! `scripts/golden.sh` regenerates them (TAPIR_REGENERATE_GOLDEN=1).

mod common;

use std::path::{Path, PathBuf};

use common::{config, CLIENT_IP, SERVER_IP};
use http::{Method, Request};
use smoltcp::time::Duration;
use smoltcp::wire::IpAddress;
use tapir::client::fetch::{Fetch, Job, Sink};
use tapir::client::{Client, ClientConfig, Scheme, Target, Version};
use tapir::device::capture::Capture;
use tapir::device::memlink::{self, LinkConfig};
use tapir::device::pcap_reader::read_capture;
use tapir::replay::{replay_exact, ExactConfig};
use tapir::runtime::sim::{Node, Sim, SimNode};
use tapir::service::{Body, ResponseBody};
use tapir::stack::Stack;

struct Discard;

impl Sink for Discard {
    fn head(&mut self, _: &http::Response<ResponseBody>) {}
    fn data(&mut self, _: &[u8]) -> std::io::Result<()> {
        Ok(())
    }
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("captures/golden")
}

/// Records a conversation between tapir's client and tapir's server (the golden server
/// setup) and returns the pcap bytes captured at the server's device.
fn record(version: Version, requests: Vec<Request<Body>>) -> Vec<u8> {
    let exact = ExactConfig::default();
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
    let target = Target {
        scheme: Scheme::Http,
        host: SERVER_IP.to_string(),
        port: 80,
        addr: IpAddress::Ipv4(SERVER_IP),
    };
    let jobs = requests
        .into_iter()
        .map(|r| Job::new(target.clone(), r, Discard))
        .collect();
    let client = Client::new(ClientConfig {
        version,
        ..ClientConfig::default()
    })
    .unwrap();
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
    // Let the last ACKs and FINs go by.
    let _ = sim.run_until(
        &mut [&mut server as &mut dyn SimNode, &mut client],
        Duration::from_millis(500),
        |_| false,
    );
    let (_, bytes) = server.device.finish().unwrap();
    bytes
}

fn http1_conversation() -> Vec<u8> {
    let requests = vec![
        Request::get("/").body(Body::empty()).unwrap(),
        Request::get("/bytes/20000").body(Body::empty()).unwrap(),
        Request::builder()
            .method(Method::POST)
            .uri("/echo")
            .body(Body::from("golden echo body"))
            .unwrap(),
        Request::head("/stats").body(Body::empty()).unwrap(),
    ];
    record(Version::Http1, requests)
}

fn h2c_conversation() -> Vec<u8> {
    let requests = vec![
        Request::get("/").body(Body::empty()).unwrap(),
        Request::get("/bytes/100000").body(Body::empty()).unwrap(),
        Request::builder()
            .method(Method::POST)
            .uri("/echo")
            .body(Body::from(vec![7u8; 30000]))
            .unwrap(),
    ];
    record(Version::Http2, requests)
}

/// Compares a fresh recording with the checked-in file (or writes it when regenerating),
/// then replays the checked-in file exactly.
fn check(name: &str, recorded: Vec<u8>) {
    let path = golden_dir().join(name);
    if std::env::var_os("TAPIR_REGENERATE_GOLDEN").is_some() {
        std::fs::create_dir_all(golden_dir()).unwrap();
        std::fs::write(&path, &recorded).unwrap();
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
    let report = replay_exact(&frames, &ExactConfig::default()).unwrap();
    assert!(report.fed > 5 && report.compared > 5, "{report:?}");
    if let Some(mismatch) = &report.mismatch {
        panic!("{name} does not replay exactly:\n{mismatch}");
    }
}

#[test]
fn http1_golden_capture_replays_byte_exactly() {
    check("http1.pcap", http1_conversation());
}

#[test]
fn h2c_golden_capture_replays_byte_exactly() {
    check("h2c.pcap", h2c_conversation());
}

#[test]
fn a_changed_server_frame_is_reported_with_both_frames() {
    let path =
        std::env::temp_dir().join(format!("tapir-golden-mutated-{}.pcap", std::process::id()));
    std::fs::write(&path, http1_conversation()).unwrap();
    let mut frames = read_capture(&path).unwrap();
    std::fs::remove_file(&path).ok();
    let server_mac = ExactConfig::default().server_mac;
    // Change one byte of the fourth frame the server sent (the checksum no longer matches
    // what the server computes).
    let index = frames
        .iter()
        .enumerate()
        .filter(|(_, f)| f.data.get(6..12) == Some(&server_mac.0[..]))
        .nth(3)
        .map(|(i, _)| i)
        .unwrap();
    let last = frames[index].data.len() - 1;
    frames[index].data[last] ^= 0xff;
    let report = replay_exact(&frames, &ExactConfig::default()).unwrap();
    let mismatch = report.mismatch.expect("the change is found");
    assert_eq!(mismatch.index, 3);
    let text = mismatch.to_string();
    assert!(
        text.contains("capture") && text.contains("replay") && text.contains("IPv4"),
        "{text}"
    );
}
