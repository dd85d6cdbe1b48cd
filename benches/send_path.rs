//! The server's CPU work per byte of a bulk HTTP/1.1 download, for instruction counts:
//! one `GET /bytes/N` over the in-memory link (tapir's built-in site, the benchmark client
//! of `benches/common`), with every turn of the server node inside [`server_turn`], so that
//! `valgrind --tool=callgrind --toggle-collect='*server_turn*'` counts the server alone
//! (stack, HTTP engine, handler, the frames it hands to the link). `scripts/callgrind.sh`
//! runs it for two sizes and prints the instructions per byte between them (setup and
//! handshake cancel out).
//!
//! `SEND_PATH_MIB=N cargo bench --bench send_path` (default 16); it prints the bytes
//! received, and fails if the download is not complete.
//!
//! `SEND_PATH_REQUESTS=N`: instead, N keep-alive `GET /bytes/100` on each of 10
//! connections (wrk -c10's pattern; `SEND_PATH_CONNECTIONS` sets another number);
//! `scripts/callgrind.sh --requests` prints the instructions per request between two
//! counts.
//!
//! `SEND_PATH_BUSY=C` with `SEND_PATH_REQUESTS=N`: N rounds in which each of C busy
//! keep-alive connections sends one `GET /bytes/100` at once (the pattern of `cargo bench
//! --bench http -- h1_busy`); `scripts/callgrind.sh --busy` compares the cache misses per
//! request at 100 and 10,000 connections.

mod common;

use common::{answered_cleanly, roomy_link, BusyClients, H1Clients, Pair, Srv};
use smoltcp::time::Duration;
use tapir::device::memlink::{LinkConfig, MemDevice};
use tapir::runtime::sim::{Node, SimNode};

/// One turn of the server node (not inlined: callgrind counts inside it): what the event
/// loop does between two sleeps, working until quiet and then asking when to wake up (the
/// stack computes its timers there, not only while it works).
#[inline(never)]
fn server_turn(server: &mut Node<MemDevice, Srv>, now: smoltcp::time::Instant) -> bool {
    let activity = server.step(now);
    server.next_event(now);
    activity
}

fn main() {
    if let Some(requests) = std::env::var("SEND_PATH_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        if let Some(connections) = std::env::var("SEND_PATH_BUSY")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            return busy_rounds(connections, requests);
        }
        return small_requests(requests);
    }
    let mib: u64 = std::env::var("SEND_PATH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16);
    let bytes = mib << 20;
    let path = format!("/bytes/{bytes}");
    let mut pair = Pair::new(
        LinkConfig::default(),
        None,
        |_| {},
        |stack| H1Clients::connect(stack, 1, &path),
    );
    pair.client.app.round(1);
    let mut turns = 0u64;
    let step = |server: &mut Node<MemDevice, Srv>, now| {
        turns += 1;
        server_turn(server, now)
    };
    pair.drive_stepping(Duration::from_secs(600), step, |_, c| c.app.round_done())
        .expect("the download finishes");
    let app = &pair.client.app;
    assert!(app.errors.is_empty(), "{:?}", app.errors);
    assert_eq!(app.body_bytes, bytes, "the whole body arrived");
    let device = pair.server.device.stats();
    println!(
        "body bytes {}, server turns {turns}, frames sent {} ({} bytes), received {}",
        app.body_bytes, device.tx_frames, device.tx_bytes, device.rx_frames
    );
}

/// `requests` keep-alive requests for 100 bytes on each of `SEND_PATH_CONNECTIONS`
/// connections (default 10).
fn small_requests(requests: u64) {
    let connections: usize = std::env::var("SEND_PATH_CONNECTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    // Every connection sends its first request at once.
    let mut pair = Pair::new(
        roomy_link(connections),
        None,
        |_| {},
        |stack| H1Clients::connect(stack, connections, "/bytes/100"),
    );
    pair.client.app.round(requests);
    pair.drive_stepping(Duration::from_secs(600), server_turn, |_, c| {
        c.app.round_done()
    })
    .expect("the requests finish");
    let app = &pair.client.app;
    assert!(app.errors.is_empty(), "{:?}", app.errors);
    assert_eq!(
        app.completed,
        requests * connections as u64,
        "every response arrived"
    );
    println!("responses {}", app.completed);
}

/// `rounds` rounds of one `GET /bytes/100` on each of `connections` busy connections.
fn busy_rounds(connections: usize, rounds: u64) {
    let mut pair = Pair::new(
        roomy_link(connections),
        None,
        |_| {},
        |stack| BusyClients::connect(stack, connections, "/bytes/100"),
    );
    for _ in 0..rounds {
        pair.client.app.round();
        pair.drive_stepping(Duration::from_secs(600), server_turn, |_, c| {
            c.app.round_done()
        })
        .expect("the round finishes");
    }
    let app = &pair.client.app;
    answered_cleanly(&app.errors, app.bad_status);
    assert_eq!(
        app.completed,
        rounds * connections as u64,
        "every response arrived"
    );
    println!("responses {}", app.completed);
}
