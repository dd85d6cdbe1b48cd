//! The TLS golden capture: tapir's client fetching from tapir's server over HTTPS (port
//! 443, ALPN h2, TLS 1.3), recorded in deterministic mode — virtual clock, fixed stack
//! seeds and the seeded crypto provider of the `deterministic-crypto` feature
//! (`transport::certs::deterministic`) on both ends, with the fixed Ed25519 certificate and
//! key of `captures/golden/tls-h2.{crt,key}` — and checked in as
//! `captures/golden/tls-h2.pcap`. It must replay byte-exactly: a fresh server with the same
//! seeds, fed the client's frames, answers with the very same encrypted frames.
//!
//! Built only with the feature (`required-features` in Cargo.toml); `scripts/test.sh` runs
//! it with `cargo test --release --features deterministic-crypto --test golden_tls`, and
//! `scripts/golden.sh` regenerates the capture (TAPIR_REGENERATE_GOLDEN=1).

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::{config, CLIENT_IP, SERVER_IP};
use http::{Method, Request};
use smoltcp::time::Duration;
use smoltcp::wire::IpAddress;
use tapir::client::fetch::{Fetch, Job, Sink};
use tapir::client::{Client, ClientConfig, Scheme, Target, Version};
use tapir::device::capture::Capture;
use tapir::device::memlink::{self, LinkConfig};
use tapir::device::pcap_reader::read_capture;
use tapir::replay::{replay_exact, ExactConfig, ExactHttps};
use tapir::runtime::sim::{Node, Sim, SimNode};
use tapir::service::{Body, ResponseBody};
use tapir::stack::Stack;
use tapir::transport::certs::{self, deterministic, CertError, Roots};

/// The server's crypto seed (its randoms, session tickets and X25519 shares).
const SERVER_CRYPTO_SEED: u64 = 0x7a91_0001;
/// The client's crypto seed.
const CLIENT_CRYPTO_SEED: u64 = 0x7a91_0002;
/// The HTTPS port.
const HTTPS_PORT: u16 = 443;

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

/// The golden server's TLS configuration: the checked-in Ed25519 certificate, ALPN h2 then
/// http/1.1, on a seeded provider started afresh.
fn server_tls() -> Result<Arc<rustls::ServerConfig>, CertError> {
    let chain = certs::load_cert_chain(&golden_dir().join("tls-h2.crt"))?;
    let key = certs::load_private_key(&golden_dir().join("tls-h2.key"))?;
    certs::server_config_with_provider(
        deterministic::provider(SERVER_CRYPTO_SEED),
        chain,
        key,
        &[b"h2".to_vec(), b"http/1.1".to_vec()],
        rustls::DEFAULT_VERSIONS,
    )
}

/// The golden server setup plus HTTPS on port 443.
fn exact() -> ExactConfig {
    ExactConfig {
        https: Some(ExactHttps {
            port: HTTPS_PORT,
            tls: Arc::new(server_tls),
        }),
        ..ExactConfig::default()
    }
}

/// Records the conversation and returns the pcap bytes captured at the server's device.
fn record() -> Vec<u8> {
    let exact = exact();
    let mut sim = Sim::new();
    let link = LinkConfig {
        latency: Duration::from_micros(250),
        ..LinkConfig::default()
    };
    let (server_dev, mut client_dev) = memlink::pair(link).unwrap();
    let mut server_dev =
        Capture::with_writer(server_dev, Vec::new(), Path::new("golden-tls")).unwrap();
    let mut server_stack = Stack::new(exact.stack_config(), &mut server_dev, sim.now()).unwrap();
    let server = exact.server(&mut server_stack).unwrap();
    let client_stack = Stack::new(config(CLIENT_IP, 1, 2), &mut client_dev, sim.now()).unwrap();
    let target = Target {
        scheme: Scheme::Https,
        host: SERVER_IP.to_string(),
        port: HTTPS_PORT,
        addr: IpAddress::Ipv4(SERVER_IP),
    };
    let requests = vec![
        Request::get("/").body(Body::empty()).unwrap(),
        Request::get("/bytes/30000").body(Body::empty()).unwrap(),
        Request::builder()
            .method(Method::POST)
            .uri("/echo")
            .body(Body::from(vec![9u8; 5000]))
            .unwrap(),
    ];
    let jobs = requests
        .into_iter()
        .map(|r| Job::new(target.clone(), r, Discard))
        .collect();
    // The certificate is the only root: the client checks it names 10.7.0.2.
    let tls = certs::client_config_with_provider(
        deterministic::provider(CLIENT_CRYPTO_SEED),
        &Roots::CaFile(golden_dir().join("tls-h2.crt")),
        &[b"h2".to_vec()],
        rustls::DEFAULT_VERSIONS,
    )
    .unwrap();
    let client = Client::new(ClientConfig {
        version: Version::Http2,
        tls: Some(tls),
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
    // Let the last ACKs, close_notify alerts and FINs go by.
    let _ = sim.run_until(
        &mut [&mut server as &mut dyn SimNode, &mut client],
        Duration::from_millis(500),
        |_| false,
    );
    let (_, bytes) = server.device.finish().unwrap();
    bytes
}

#[test]
fn tls_h2_golden_capture_replays_byte_exactly() {
    let name = "tls-h2.pcap";
    let path = golden_dir().join(name);
    let recorded = record();
    assert_eq!(
        recorded,
        record(),
        "two recordings in one process are identical (determinism)"
    );
    if std::env::var_os("TAPIR_REGENERATE_GOLDEN").is_some() {
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
    let report = replay_exact(&frames, &exact()).unwrap();
    assert!(report.fed > 5 && report.compared > 5, "{report:?}");
    if let Some(mismatch) = &report.mismatch {
        panic!("{name} does not replay exactly:\n{mismatch}");
    }
    // Without the seeded provider the server's answer differs at its first TLS record:
    // the capture really pins the handshake.
    let unseeded = ExactConfig {
        https: Some(ExactHttps {
            port: HTTPS_PORT,
            tls: Arc::new(|| {
                certs::server_config(
                    certs::load_cert_chain(&golden_dir().join("tls-h2.crt"))?,
                    certs::load_private_key(&golden_dir().join("tls-h2.key"))?,
                    &[b"h2".to_vec(), b"http/1.1".to_vec()],
                )
            }),
        }),
        ..ExactConfig::default()
    };
    let report = replay_exact(&frames, &unseeded).unwrap();
    assert!(report.mismatch.is_some(), "{report:?}");
}
