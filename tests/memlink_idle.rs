//! Idle keep-alive connections, in memory: 2,000 HTTP/1.1 connections (and 1,000 HTTPS
//! ones) that made one request each and then wait hold no TCP buffers (nor TLS buffers),
//! cost the server little heap, and still answer their next request (a socket without a
//! receive buffer keeps its window and gets a buffer when the request arrives).
//!
//! The server's heap is counted with `stats_alloc`'s instrumented allocator: the in-memory
//! pair of `benches/common` steps the server and the client one after the other, and the
//! allocator's counters are read around each of the server's turns.

#[path = "../benches/common/mod.rs"]
mod bench_common;

use std::alloc::System;
use std::cell::Cell;
use std::sync::Mutex;

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

/// Held while a test counts the heap.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Idle plaintext connections of the HTTP/1.1 test.
const CONNECTIONS: usize = 2000;
/// Heap the server may grow by per idle connection (it holds its socket, about 0.9 KiB,
/// its connection entry and indexes; the TCP buffers and the HTTP engine are gone).
const HEAP_PER_IDLE_CONNECTION: f64 = 3.0 * 1024.0;
/// Idle connections of the HTTPS test (as many as above: the stack's pooled buffers are
/// shared out over them the same way).
const TLS_CONNECTIONS: usize = 2000;
/// Heap the server may grow by per idle HTTPS connection: the above, plus rustls's
/// connection (about 1.1 KiB inline) and what it keeps on the heap after the handshake
/// (traffic keys, key schedule, handshake bookkeeping: about 2.2 KiB), and the TLS facts
/// of the connection's info. No TLS buffers: tapir holds ciphertext and plaintext only
/// while there are some (rustls's buffered connection kept 4 KiB for ever: about 11 KiB
/// per connection here before).
const HEAP_PER_IDLE_TLS_CONNECTION: f64 = 7.5 * 1024.0;

/// Opens `connections` keep-alive connections (HTTPS with `tls`), one request each, lets
/// them idle, checks that they hold no TCP buffers and that every one answers a second
/// request; returns the server's heap per idle connection.
fn idle_connections(connections: usize, tls: bool) -> f64 {
    let limit = Duration::from_secs(10);
    let mut pair = Pair::new(
        LinkConfig::default(),
        tls.then(bench_common::tls_server_config),
        |c| c.tcp.backlog = 128,
        |_| {
            if tls {
                H1Clients::connect_tls_later()
            } else {
                H1Clients::connect_later()
            }
        },
    );
    let heap = ServerHeap::default();
    let tag = |server: bool| heap.turn(server);
    pair.run_for(Duration::from_millis(10), tag);
    let start = heap.live.get();
    pair.open_in_batches(connections, "/bytes/100", limit, tag)
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
    assert_eq!(pair.client.app.completed, connections as u64);
    assert_eq!(pair.client.app.bad_status, 0);
    assert_eq!(pair.server.app.open_connections(), connections);
    let stats = pair.server.stack.stats();
    assert_eq!(stats.tcp_buffers_held, 0, "{stats:?}");
    // What buffers remain belong to the listening sockets (the backlog's pool).
    assert!(stats.tcp_memory <= 2 * 128 * 4096, "{stats:?}");
    let per_connection = grown as f64 / connections as f64;

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
    assert_eq!(pair.client.app.completed, 2 * connections as u64);
    assert_eq!(pair.client.app.bad_status, 0);
    assert_eq!(pair.server.app.open_connections(), connections);
    pair.run_for(Duration::from_secs(1), |_| {});
    assert_eq!(pair.server.stack.stats().tcp_buffers_held, 0);
    per_connection
}

#[test]
fn idle_keep_alive_connections_hold_no_buffers_and_answer_again() {
    // The allocator's counters are global: one measurement at a time (a failing test's
    // backtrace allocates too, so the lock is held to the end).
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let per_connection = idle_connections(CONNECTIONS, false);
    eprintln!("server heap per idle keep-alive connection: {per_connection:.0} bytes");
    assert!(
        per_connection < HEAP_PER_IDLE_CONNECTION,
        "{per_connection:.0} bytes per idle connection"
    );
}

#[test]
fn idle_tls_connections_hold_no_tls_buffers_and_answer_again() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let per_connection = idle_connections(TLS_CONNECTIONS, true);
    eprintln!("server heap per idle HTTPS keep-alive connection: {per_connection:.0} bytes");
    assert!(
        per_connection < HEAP_PER_IDLE_TLS_CONNECTION,
        "{per_connection:.0} bytes per idle HTTPS connection"
    );
}
