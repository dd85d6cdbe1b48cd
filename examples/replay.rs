//! Replaying a capture in a test: a conversation recorded in deterministic mode (virtual
//! clock, fixed seeds) is fed to a fresh server, which must answer with the very same
//! frames at the same times — a regression test for the whole stack, without a network.
//!
//! ```sh
//! cargo run --release --example replay -- captures/golden/http1.pcap
//! cargo test --release --example replay      # the same, as a test
//! ```

use std::path::Path;

use tapir::device::pcap_reader::read_capture;
use tapir::replay::{replay_exact, ExactConfig, ExactReport};

/// Replays the capture at `path` against tapir's built-in site (the golden setup).
fn replay(path: &Path) -> Result<ExactReport, Box<dyn std::error::Error>> {
    let frames = read_capture(path)?;
    Ok(replay_exact(&frames, &ExactConfig::default())?)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: replay CAPTURE (e.g. captures/golden/http1.pcap)")?;
    let report = replay(Path::new(&path))?;
    println!(
        "{} client frames fed, {} server frames compared",
        report.fed, report.compared
    );
    match report.mismatch {
        None => Ok(()),
        Some(mismatch) => Err(mismatch.to_string().into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_golden_http1_capture_replays_byte_exactly() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("captures/golden/http1.pcap");
        let report = replay(&path).expect("the capture replays");
        assert!(report.compared > 10, "{report:?}");
        assert_eq!(report.mismatch, None);
    }
}
