//! Bulk TCP between two tapir stacks across a matrix of round-trip times and loss rates,
//! on the virtual clock: every byte arrives exactly once (length and sha256), whatever
//! the path. Throughput is measured by `benches/tcp_link.rs`, not asserted here.

mod common;

use common::transfer::{transfer, Transfer};
use smoltcp::time::Duration;

const BYTES: usize = 1024 * 1024;

fn matrix(loss: f64) {
    let mut failures = Vec::new();
    for rtt_ms in [1, 20, 100] {
        for seed in [1, 2] {
            let t = Transfer::new(Duration::from_millis(rtt_ms), loss, seed, BYTES);
            let report = transfer(&t);
            eprintln!(
                "rtt {rtt_ms} ms, loss {loss}, seed {seed}: {} in {} virtual ({:.0} KB/s), data link {:?}",
                report.received,
                report.duration,
                report.throughput() / 1e3,
                report.data_link
            );
            if !report.intact || report.error.is_some() {
                failures.push(format!("rtt {rtt_ms} ms seed {seed}: {report:?}"));
            }
            if loss > 0.0 {
                assert!(report.data_link.lost > 0, "loss was injected: {report:?}");
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn every_byte_once_without_loss() {
    matrix(0.0);
}

#[test]
fn every_byte_once_with_1_percent_loss() {
    matrix(0.01);
}

#[test]
fn every_byte_once_with_3_percent_loss() {
    matrix(0.03);
}
