//! Throughput of the whole stack in memory: tapir's server (built-in site) and a client on
//! a second stack, joined by the in-memory link and stepped on a virtual clock. No
//! privileges needed; `cargo bench --bench http`.
//!
//! Every iteration does a fixed, deterministic amount of work (requests, handshakes or
//! bytes) and criterion times it on the wall clock, so the figures are the CPU cost of
//! client and server together on one core. Each group also runs a baseline in the same
//! run, so that a ratio can be read:
//!
//! - `h1_keepalive` / `h2c_streams`: requests/s, against a raw TCP request/response of the
//!   same sizes over the same two smoltcp stacks (`raw_tcp` below);
//! - `h1_busy`: requests/s with 10,000 busy keep-alive connections, against the same with
//!   100 (the ratio `scripts/bench.sh --busy` reports over a TAP device);
//! - `tls_handshake`: new HTTPS connections/s, against new cleartext connections/s
//!   (same requests, no TLS);
//! - `bulk`: bytes/s of a 64 MiB `/bytes/N` over HTTP/1.1 and h2c, against the same
//!   64 MiB pushed through a raw TCP connection between the same stacks.

mod common;

use std::time::Duration as StdDuration;

use common::{answered_cleanly, roomy_link, BusyClients, Fetcher, H1Clients, Pair, SERVER_IP};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use smoltcp::socket::tcp::State;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{IpAddress, IpEndpoint};
use tapir::client::{Scheme, Version};
use tapir::device::memlink::{LinkConfig, MemDevice};
use tapir::runtime::sim::{Node, SimNode, EPOCH_MICROS};
use tapir::runtime::Application;
use tapir::stack::{Stack, TcpHandle};

/// Keep-alive connections of the HTTP/1.1 benchmark.
const H1_CONNS: usize = 64;
/// Requests per connection per iteration.
const H1_REQS: u64 = 16;
/// Concurrent h2 streams per iteration (one connection).
const H2_STREAMS: usize = 100;
/// New connections per iteration of the handshake benchmark.
const HANDSHAKES: usize = 16;
/// Bytes of the bulk download.
const BULK: u64 = 64 * 1024 * 1024;
/// The small response: `/bytes/100`.
const SMALL: u64 = 100;
/// Virtual time allowed for one iteration (never reached on a perfect link).
const LIMIT: Duration = Duration::from_secs(600);

fn check(ok: Result<Duration, String>, what: &str) {
    if let Err(e) = ok {
        panic!("{what}: {e}");
    }
}

/// HTTP/1.1 keep-alive: 64 connections, each sends 16 requests for `/bytes/100` one after
/// another (request, full response, next request).
fn h1_keepalive(c: &mut Criterion) {
    let mut group = c.benchmark_group("h1_keepalive");
    group.throughput(Throughput::Elements(H1_CONNS as u64 * H1_REQS));
    group.sample_size(20);
    group.measurement_time(StdDuration::from_secs(5));
    group.warm_up_time(StdDuration::from_secs(1));

    let mut pair = Pair::new(
        LinkConfig::default(),
        None,
        |_| {},
        |stack| H1Clients::connect(stack, H1_CONNS, &format!("/bytes/{SMALL}")),
    );
    pair.client.app.round(1);
    check(pair.drive(LIMIT, |_, c| c.app.round_done()), "h1 warm-up");
    group.bench_function("tapir_64conn_x16req", |b| {
        b.iter(|| {
            pair.client.app.round(H1_REQS);
            check(pair.drive(LIMIT, |_, c| c.app.round_done()), "h1 round");
        })
    });
    answered_cleanly(&pair.client.app.errors, pair.client.app.bad_status);

    // Baseline: the same exchanges (a 40-byte request like ours, a response as long as
    // tapir's head + body) over raw smoltcp sockets of the same two stacks, no HTTP.
    let response = small_response_len();
    let mut raw = RawPair::new(H1_CONNS, 40, response);
    raw.round(1);
    group.bench_function("baseline_raw_tcp_64conn_x16", |b| {
        b.iter(|| raw.round(H1_REQS))
    });
    group.finish();
}

/// Bytes of tapir's whole HTTP/1.1 response to `GET /bytes/100` (head and body), for the
/// baselines.
fn small_response_len() -> usize {
    let mut pair = Pair::new(
        LinkConfig::default(),
        None,
        |_| {},
        |stack| H1Clients::connect(stack, 1, &format!("/bytes/{SMALL}")),
    );
    pair.client.app.round(1);
    check(pair.drive(LIMIT, |_, c| c.app.round_done()), "one request");
    assert_eq!(pair.client.app.completed, 1);
    pair.client.app.wire_bytes as usize
}

/// Keep-alive connections of the busy-scaling benchmark: few, and as many as
/// `scripts/bench.sh --busy` opens with wrk.
const BUSY_CONNS: [usize; 2] = [100, 10_000];

/// HTTP/1.1 with many busy keep-alive connections: every connection sends one request for
/// `/bytes/100` per iteration, all at once. The cost per request at 10,000 connections
/// against 100 is what the per-connection state costs once it no longer stays in the
/// caches (what `scripts/bench.sh --busy` measures over a TAP device with wrk, without the
/// kernel's share: here both sides are tapir's stacks).
fn h1_busy(c: &mut Criterion) {
    let mut group = c.benchmark_group("h1_busy");
    group.sample_size(10);
    group.measurement_time(StdDuration::from_secs(10));
    group.warm_up_time(StdDuration::from_secs(2));
    for conns in BUSY_CONNS {
        group.throughput(Throughput::Elements(conns as u64));
        let mut pair = Pair::new(
            roomy_link(conns),
            None,
            |_| {},
            |stack| BusyClients::connect(stack, conns, &format!("/bytes/{SMALL}")),
        );
        pair.client.app.round();
        check(pair.drive(LIMIT, |_, c| c.app.round_done()), "busy warm-up");
        // A round that waits for a timer (a frame dropped, a connection put aside) would
        // measure the timer, not the work per request.
        pair.client.app.round();
        let took = pair.drive(LIMIT, |_, c| c.app.round_done());
        assert!(
            took.as_ref().is_ok_and(|t| *t < Duration::from_millis(1)),
            "a round of {conns} requests took {took:?} of virtual time"
        );
        group.bench_function(format!("tapir_{conns}conn_x1req"), |b| {
            b.iter(|| {
                pair.client.app.round();
                check(pair.drive(LIMIT, |_, c| c.app.round_done()), "busy round");
            })
        });
        answered_cleanly(&pair.client.app.errors, pair.client.app.bad_status);
    }
    group.finish();
}

/// h2c: one connection, 100 concurrent streams per iteration, each `GET /bytes/100`.
fn h2c_streams(c: &mut Criterion) {
    let mut group = c.benchmark_group("h2c_streams");
    group.throughput(Throughput::Elements(H2_STREAMS as u64));
    group.sample_size(20);
    group.measurement_time(StdDuration::from_secs(5));
    group.warm_up_time(StdDuration::from_secs(1));

    let mut pair = Pair::new(
        LinkConfig::default(),
        None,
        |_| {},
        |_| Fetcher::new(Version::Http2),
    );
    pair.client.app.work.get(Scheme::Http, "bench", "/");
    check(pair.drive(LIMIT, |_, c| c.app.work.idle()), "h2 warm-up");
    let path = format!("/bytes/{SMALL}");
    group.bench_function("tapir_1conn_x100streams", |b| {
        b.iter(|| {
            for _ in 0..H2_STREAMS {
                pair.client.app.work.get(Scheme::Http, "bench", &path);
            }
            check(pair.drive(LIMIT, |_, c| c.app.work.idle()), "h2 round");
        })
    });
    assert!(
        pair.client.app.work.errors.is_empty(),
        "{:?}",
        pair.client.app.work.errors
    );
    assert_eq!(
        pair.server.app.stats_handle().get().connections_total,
        1,
        "every stream on one connection"
    );

    // Baseline: 100 request/response exchanges of the same sizes over one raw TCP
    // connection, one after another (a single raw connection has no streams).
    let mut raw = RawPair::new(1, 40, small_response_len());
    raw.round(1);
    group.bench_function("baseline_raw_tcp_1conn_x100", |b| {
        b.iter(|| raw.round(H2_STREAMS as u64))
    });
    group.finish();
}

/// New connections: every request goes to a new origin name, so a new connection (TCP
/// handshake, then for HTTPS a TLS 1.3 handshake with ALPN h2, an h2 request for `/`),
/// then every connection is closed. HTTPS against cleartext h2c as the baseline.
fn tls_handshake(c: &mut Criterion) {
    let mut group = c.benchmark_group("new_connection");
    group.throughput(Throughput::Elements(HANDSHAKES as u64));
    group.sample_size(10);
    group.measurement_time(StdDuration::from_secs(5));
    group.warm_up_time(StdDuration::from_secs(1));
    let tls = common::tls_server_config();
    for (name, scheme) in [
        ("tapir_https_tls13_h2", Scheme::Https),
        ("baseline_cleartext_h2c", Scheme::Http),
    ] {
        let mut pair = Pair::new(
            LinkConfig::default(),
            Some(tls.clone()),
            |_| {},
            |_| Fetcher::new(Version::Http2),
        );
        let mut next = 0u64;
        group.bench_function(name, |b| {
            b.iter(|| {
                for _ in 0..HANDSHAKES {
                    pair.client
                        .app
                        .work
                        .get(scheme, &format!("h{next}.bench"), "/");
                    next += 1;
                }
                check(pair.drive(LIMIT, |_, c| c.app.work.idle()), "handshakes");
                let now = pair.now;
                pair.client.app.shutdown(&mut pair.client.stack, now);
                check(
                    pair.drive(LIMIT, |s, c| {
                        s.app.open_connections() == 0
                            && s.stack.connection_count() == 0
                            && c.stack.connection_count() == 0
                    }),
                    "closing",
                );
            })
        });
        assert!(
            pair.client.app.work.errors.is_empty(),
            "{:?}",
            pair.client.app.work.errors
        );
    }
    group.finish();
}

/// Bulk download of 64 MiB: HTTP/1.1 (`/bytes/N`, one keep-alive connection), h2c (one
/// stream), and the raw TCP baseline (64 MiB written into one smoltcp socket and read out
/// of the other).
fn bulk(c: &mut Criterion) {
    let mut group = c.benchmark_group("bulk_64MiB");
    group.throughput(Throughput::Bytes(BULK));
    group.sample_size(10);
    group.measurement_time(StdDuration::from_secs(8));
    group.warm_up_time(StdDuration::from_secs(1));
    let path = format!("/bytes/{BULK}");

    let mut h1 = Pair::new(
        LinkConfig::default(),
        None,
        |_| {},
        |stack| H1Clients::connect(stack, 1, &path),
    );
    group.bench_function("tapir_h1", |b| {
        b.iter(|| {
            h1.client.app.round(1);
            check(h1.drive(LIMIT, |_, c| c.app.round_done()), "h1 bulk");
        })
    });
    assert!(
        h1.client.app.errors.is_empty(),
        "{:?}",
        h1.client.app.errors
    );
    assert_eq!(h1.client.app.body_bytes % BULK, 0);

    let mut h2 = Pair::new(
        LinkConfig::default(),
        None,
        |_| {},
        |_| Fetcher::new(Version::Http2),
    );
    group.bench_function("tapir_h2c", |b| {
        b.iter(|| {
            h2.client.app.work.get(Scheme::Http, "bench", &path);
            check(h2.drive(LIMIT, |_, c| c.app.work.idle()), "h2 bulk");
        })
    });
    assert!(
        h2.client.app.work.errors.is_empty(),
        "{:?}",
        h2.client.app.work.errors
    );
    assert_eq!(h2.client.app.work.body_bytes % BULK, 0);

    let mut raw = RawPair::new(1, 40, BULK as usize);
    group.bench_function("baseline_raw_tcp", |b| b.iter(|| raw.round(1)));
    group.finish();
}

/// The baseline: the same two tapir stacks (smoltcp underneath) over the same link, with
/// an application that moves bytes straight between sockets: the client writes a
/// `request`-byte message, the server answers with `response` bytes, no parsing beyond
/// counting. This is the floor of what HTTP on this stack can cost.
struct RawPair {
    now: Instant,
    server: Node<MemDevice, RawServer>,
    client: Node<MemDevice, RawClient>,
}

struct RawServer {
    conns: Vec<(TcpHandle, usize, usize)>,
    request: usize,
    response: usize,
    buf: Vec<u8>,
}

struct RawClient {
    conns: Vec<(TcpHandle, u64, usize, bool)>,
    request: Vec<u8>,
    response: usize,
}

impl Application for RawServer {
    fn poll(&mut self, stack: &mut Stack, _now: Instant) -> bool {
        let mut progress = false;
        while let Some(h) = stack.accept(80) {
            self.conns.push((h, 0, 0));
            progress = true;
        }
        for (h, got, owed) in &mut self.conns {
            let socket = stack.socket(h);
            while socket.can_recv() {
                let n = socket.recv(|b| (b.len(), b.len())).unwrap_or(0);
                if n == 0 {
                    break;
                }
                *got += n;
                progress = true;
            }
            while *got >= self.request {
                *got -= self.request;
                *owed += self.response;
            }
            while *owed > 0 && socket.can_send() {
                let n = (*owed).min(self.buf.len());
                let sent = socket.send_slice(&self.buf[..n]).unwrap_or(0);
                if sent == 0 {
                    break;
                }
                *owed -= sent;
                progress = true;
            }
        }
        progress
    }
}

impl Application for RawClient {
    fn poll(&mut self, stack: &mut Stack, _now: Instant) -> bool {
        let mut progress = false;
        for (h, to_send, got, waiting) in &mut self.conns {
            let socket = stack.socket(h);
            while socket.can_recv() {
                let n = socket.recv(|b| (b.len(), b.len())).unwrap_or(0);
                if n == 0 {
                    break;
                }
                *got += n;
                progress = true;
            }
            if *waiting && *got >= self.response {
                *got -= self.response;
                *waiting = false;
            }
            if !*waiting && *to_send > 0 && socket.state() == State::Established {
                let room = socket.send_capacity() - socket.send_queue();
                if room >= self.request.len() {
                    socket.send_slice(&self.request).expect("send");
                    *to_send -= 1;
                    *waiting = true;
                    progress = true;
                }
            }
        }
        progress
    }

    fn is_finished(&self) -> bool {
        self.conns.iter().all(|c| c.1 == 0 && !c.3)
    }
}

impl RawPair {
    fn new(connections: usize, request: usize, response: usize) -> Self {
        let now = Instant::from_micros(EPOCH_MICROS);
        let (mut s_dev, mut c_dev) =
            tapir::device::memlink::pair(LinkConfig::default()).expect("link");
        let mut s_stack = Stack::new(common::stack_config(SERVER_IP, 2, 21), &mut s_dev, now)
            .expect("server stack");
        let mut c_stack = Stack::new(
            common::stack_config(common::CLIENT_IP, 1, 22),
            &mut c_dev,
            now,
        )
        .expect("client stack");
        s_stack.listen(80).expect("listen");
        let remote = IpEndpoint::new(IpAddress::Ipv4(SERVER_IP), 80);
        let conns = (0..connections)
            .map(|_| (c_stack.connect(remote).expect("connect"), 0, 0, false))
            .collect();
        RawPair {
            now,
            server: Node::new(
                s_stack,
                s_dev,
                RawServer {
                    conns: Vec::new(),
                    request,
                    response,
                    buf: vec![b'x'; 64 * 1024],
                },
            ),
            client: Node::new(
                c_stack,
                c_dev,
                RawClient {
                    conns,
                    request: vec![b'x'; request],
                    response,
                },
            ),
        }
    }

    /// Every connection does `exchanges` request/response exchanges, one after another.
    fn round(&mut self, exchanges: u64) {
        for c in &mut self.client.app.conns {
            c.1 += exchanges;
        }
        loop {
            let mut activity = self.server.step(self.now);
            activity |= self.client.step(self.now);
            if self.client.finished() {
                return;
            }
            if activity {
                continue;
            }
            let next = [
                self.server.next_event(self.now),
                self.client.next_event(self.now),
            ]
            .into_iter()
            .flatten()
            .min()
            .expect("raw baseline stalled");
            self.now = if next > self.now {
                next
            } else {
                self.now + Duration::from_millis(1)
            };
        }
    }
}

criterion_group!(
    benches,
    h1_keepalive,
    h1_busy,
    h2c_streams,
    tls_handshake,
    bulk
);
criterion_main!(benches);
