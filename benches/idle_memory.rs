//! Memory per idle keep-alive connection, in memory, no privileges:
//! `cargo bench --bench idle_memory`.
//!
//! The heap is counted by `stats_alloc`'s instrumented system allocator (the counting lives
//! in that crate: no `unsafe` here). 1,000 client connections each make one HTTP/1.1
//! request (`/bytes/100`) and then stay open and idle; the growth of the live heap of both
//! stacks (tapir's client and tapir's server), divided by 1,000, is the cost per idle
//! connection at both ends.
//!
//! Baseline, measured in the same run with the same allocator: twice as many bare smoltcp
//! TCP sockets (one per end) with the same rx and tx buffers, in a smoltcp `SocketSet` —
//! what the socket buffers alone cost. The ratio says how much tapir adds on top of the
//! TCP buffers. Both are shown for the default 64 KiB buffers and for 4 KiB buffers (where
//! tapir's own per-connection state weighs more).

mod common;

use std::alloc::System;

use common::{H1Clients, Pair};
use smoltcp::iface::SocketSet;
use smoltcp::socket::tcp;
use smoltcp::time::Duration;
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use tapir::device::memlink::LinkConfig;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Live heap bytes added since `region` started (a reallocation's difference is in
/// `bytes_allocated` or `bytes_deallocated` already: `bytes_reallocated` would count it
/// twice).
fn grown(region: &Region<'_, System>) -> i64 {
    let change = region.change();
    change.bytes_allocated as i64 - change.bytes_deallocated as i64
}

const CONNECTIONS: usize = 1000;

struct Measured {
    tapir: f64,
    baseline: f64,
    configured: usize,
}

fn measure(buffer: usize) -> Measured {
    let limit = Duration::from_secs(5);
    let mut pair = Pair::new(
        LinkConfig::default(),
        None,
        |c| {
            c.tcp.rx_buffer = buffer;
            c.tcp.tx_buffer = buffer;
            c.tcp.backlog = 128;
        },
        |_| H1Clients::connect_later(),
    );
    // Let the server settle (listeners made) before the count starts.
    let tag = |_server: bool| {};
    pair.run_for(Duration::from_millis(10), tag);
    let region = Region::new(GLOBAL);

    // In batches, so the first connections are nowhere near their idle timeout.
    pair.open_in_batches(CONNECTIONS, "/bytes/100", limit, tag)
        .expect("all answered");
    assert!(
        pair.client.app.errors.is_empty(),
        "{:?}",
        pair.client.app.errors
    );
    assert_eq!(pair.client.app.completed, CONNECTIONS as u64);
    // Idle: let delayed ACKs and any other short timers run out (well within the 60 s
    // keep-alive timeout), then count.
    pair.run_for(Duration::from_millis(500), tag);
    let open = pair.server.app.open_connections();
    assert_eq!(open, CONNECTIONS, "every connection still open and idle");
    let tapir = grown(&region) as f64 / CONNECTIONS as f64;

    // Baseline: bare smoltcp sockets with the same buffers, one per end.
    let base = Region::new(GLOBAL);
    let mut set = SocketSet::new(Vec::new());
    for _ in 0..2 * CONNECTIONS {
        let socket = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; buffer]),
            tcp::SocketBuffer::new(vec![0; buffer]),
        );
        set.add(socket);
    }
    let baseline = grown(&base) as f64 / CONNECTIONS as f64;
    drop(set);
    drop(pair);
    Measured {
        tapir,
        baseline,
        configured: 4 * buffer,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this too, quickly enough.
    println!("idle keep-alive connections: {CONNECTIONS}, heap growth per connection (client and server ends)");
    println!(
        "{:<14} {:>14} {:>22} {:>16} {:>7}",
        "tcp buffers", "tapir B/conn", "2 smoltcp sockets B", "2x(rx+tx) bytes", "ratio"
    );
    for buffer in [64 * 1024, 4 * 1024] {
        let m = measure(buffer);
        println!(
            "{:<14} {:>14.0} {:>22.0} {:>16} {:>7.3}",
            format!("{} KiB", buffer / 1024),
            m.tapir,
            m.baseline,
            m.configured,
            m.tapir / m.baseline
        );
    }
}
