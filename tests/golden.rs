//! Golden captures: conversations recorded in deterministic mode (virtual clock, fixed
//! seeds) and checked in under `captures/golden/`. Each must replay byte-exactly: a fresh
//! server fed the client's frames answers with the very same frames at the same times.
//!
//! `scripts/golden.sh` regenerates them (TAPIR_REGENERATE_GOLDEN=1).

mod common;

use common::golden::{check, record};
use common::SERVER_IP;
use http::{Method, Request};
use smoltcp::wire::IpAddress;
use tapir::client::{ClientConfig, Scheme, Target, Version};
use tapir::device::pcap_reader::read_capture;
use tapir::replay::{replay_exact, ExactConfig};
use tapir::service::Body;

/// Records a conversation with the golden (cleartext) server setup.
fn record_http(version: Version, requests: Vec<Request<Body>>) -> Vec<u8> {
    let target = Target {
        scheme: Scheme::Http,
        host: SERVER_IP.to_string(),
        port: 80,
        addr: IpAddress::Ipv4(SERVER_IP),
    };
    let client = ClientConfig {
        version,
        ..ClientConfig::default()
    };
    record(&ExactConfig::default(), &target, client, requests)
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
    record_http(Version::Http1, requests)
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
    record_http(Version::Http2, requests)
}

#[test]
fn http1_golden_capture_replays_byte_exactly() {
    check("http1.pcap", &http1_conversation(), &ExactConfig::default());
}

#[test]
fn h2c_golden_capture_replays_byte_exactly() {
    check("h2c.pcap", &h2c_conversation(), &ExactConfig::default());
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
