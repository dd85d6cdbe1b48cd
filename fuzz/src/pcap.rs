//! The capture reader of `tapir replay`: bytes → frames (pcap or pcapng) → TCP flows,
//! each direction reassembled → HTTP/1.1 and HTTP/2 exchanges of each flow.

use tapir::device::pcap_reader::read_capture_bytes;
use tapir::replay::live::{exchanges, flows};

/// The target.
pub fn run(data: &[u8]) {
    let Ok(frames) = read_capture_bytes(data, "fuzz") else {
        return;
    };
    for frame in &frames {
        let _ = flows::parse_segment(&frame.data);
    }
    let extracted = flows::extract(&frames);
    for flow in &extracted.flows {
        let closed = flow.to_client.fin.is_some();
        let c = exchanges::conversation(&flow.to_server.data, &flow.to_client.data, closed);
        assert!(c.responses.len() <= c.requests.len(), "{c:?}");
        // Each direction is as large as the bytes of the capture at most.
        assert!(flow.to_server.data.len() + flow.to_client.data.len() <= data.len());
    }
}
