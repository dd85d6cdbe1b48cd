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

use std::sync::Arc;

use common::golden::{check, golden_dir, record};
use common::SERVER_IP;
use http::{Method, Request};
use smoltcp::wire::IpAddress;
use tapir::client::{ClientConfig, Scheme, Target, Version};
use tapir::device::pcap_reader::read_capture;
use tapir::replay::{replay_exact, ExactConfig, ExactHttps};
use tapir::service::Body;
use tapir::transport::certs::{self, deterministic, CertError, Roots};

/// The server's crypto seed (its randoms, session tickets and X25519 shares).
const SERVER_CRYPTO_SEED: u64 = 0x7a91_0001;
/// The client's crypto seed.
const CLIENT_CRYPTO_SEED: u64 = 0x7a91_0002;
/// The HTTPS port.
const HTTPS_PORT: u16 = 443;

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
fn record_tls() -> Vec<u8> {
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
    // The certificate is the only root: the client checks it names 10.7.0.2.
    let tls = certs::client_config_with_provider(
        deterministic::provider(CLIENT_CRYPTO_SEED),
        &Roots::CaFile(golden_dir().join("tls-h2.crt")),
        &[b"h2".to_vec()],
        rustls::DEFAULT_VERSIONS,
    )
    .unwrap();
    let client = ClientConfig {
        version: Version::Http2,
        tls: Some(tls),
        ..ClientConfig::default()
    };
    record(&exact(), &target, client, requests)
}

#[test]
fn tls_h2_golden_capture_replays_byte_exactly() {
    let recorded = record_tls();
    assert_eq!(
        recorded,
        record_tls(),
        "two recordings in one process are identical (determinism)"
    );
    check("tls-h2.pcap", &recorded, &exact());
    let frames = read_capture(&golden_dir().join("tls-h2.pcap")).unwrap();
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
