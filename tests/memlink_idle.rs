//! Idle keep-alive connections, in memory: 2,000 HTTP/1.1 connections that made one
//! request each and then wait hold no TCP buffers, cost the server little heap, and still
//! answer their next request (a socket without a receive buffer keeps its window and gets
//! a buffer when the request arrives).
//!
//! The server's heap is counted with `stats_alloc`'s instrumented allocator: the in-memory
//! pair of `benches/common` steps the server and the client one after the other, and the
//! allocator's counters are read around each of the server's turns.

#[path = "../benches/common/mod.rs"]
mod bench_common;

use std::alloc::System;
use std::cell::Cell;

use bench_common::{H1Clients, Pair};
use smoltcp::time::Duration;
use stats_alloc::{Stats, StatsAlloc, INSTRUMENTED_SYSTEM};
use tapir::device::memlink::LinkConfig;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Live heap bytes in the allocator's counters (a reallocation's difference is in
/// `bytes_allocated` or `bytes_deallocated` already).
fn live(stats: &Stats) -> i64 {
    stats.bytes_allocated as i64 - stats.bytes_deallocated as i64
}

/// The server's heap: what its turns allocated and did not free.
#[derive(Default)]
struct ServerHeap {
    at_turn: Cell<i64>,
    live: Cell<i64>,
}

impl ServerHeap {
    /// The pair's hook: called with `true` before the server's turn, `false` after it.
    fn turn(&self, server: bool) {
        let now = live(&GLOBAL.stats());
        if server {
            self.at_turn.set(now);
        } else {
            self.live.set(self.live.get() + now - self.at_turn.get());
        }
    }
}

const CONNECTIONS: usize = 2000;
/// Heap the server may grow by per idle connection (it holds its socket, about 0.9 KiB,
/// its connection entry and indexes; the TCP buffers and the HTTP engine are gone).
const HEAP_PER_IDLE_CONNECTION: f64 = 3.0 * 1024.0;

#[test]
fn idle_keep_alive_connections_hold_no_buffers_and_answer_again() {
    let limit = Duration::from_secs(10);
    let mut pair = Pair::new(
        LinkConfig::default(),
        None,
        |c| c.tcp.backlog = 128,
        |_| H1Clients::connect_later(),
    );
    let heap = ServerHeap::default();
    let tag = |server: bool| heap.turn(server);
    pair.run_for(Duration::from_millis(10), tag);
    let start = heap.live.get();
    pair.open_in_batches(CONNECTIONS, "/bytes/100", limit, tag)
        .expect("every request answered");
    // Idle for two seconds (the keep-alive timeout is 60 s): delayed ACKs and buffer
    // releases are done.
    pair.run_for(Duration::from_secs(2), tag);
    let grown = heap.live.get() - start;
    assert!(
        pair.client.app.errors.is_empty(),
        "{:?}",
        pair.client.app.errors
    );
    assert_eq!(pair.client.app.completed, CONNECTIONS as u64);
    assert_eq!(pair.client.app.bad_status, 0);
    assert_eq!(pair.server.app.open_connections(), CONNECTIONS);
    let stats = pair.server.stack.stats();
    assert_eq!(stats.tcp_buffers_held, 0, "{stats:?}");
    // What buffers remain belong to the listening sockets (the backlog's pool).
    assert!(stats.tcp_memory <= 2 * 128 * 4096, "{stats:?}");
    let per_connection = grown as f64 / CONNECTIONS as f64;
    eprintln!("server heap per idle keep-alive connection: {per_connection:.0} bytes");
    assert!(
        per_connection < HEAP_PER_IDLE_CONNECTION,
        "{per_connection:.0} bytes per idle connection"
    );

    // The next request on every idle connection: its socket has no buffer, still
    // advertises its window, and gets a buffer when the request arrives.
    pair.client.app.round(1);
    pair.drive(limit, |_, c| c.app.round_done())
        .expect("every second request answered");
    assert!(
        pair.client.app.errors.is_empty(),
        "{:?}",
        pair.client.app.errors
    );
    assert_eq!(pair.client.app.completed, 2 * CONNECTIONS as u64);
    assert_eq!(pair.client.app.bad_status, 0);
    assert_eq!(pair.server.app.open_connections(), CONNECTIONS);
    pair.run_for(Duration::from_secs(1), |_| {});
    assert_eq!(pair.server.stack.stats().tcp_buffers_held, 0);
}
