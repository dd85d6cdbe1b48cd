//! HTTP/2 attacks over the in-memory link, with hand-made frames: rapid reset,
//! CONTINUATION flood, SETTINGS and PING floods, an HPACK bomb and a zero-window stall.
//! Each time the offender's connection is closed with GOAWAY and the expected error code,
//! the server holds bounded state, and a well-behaved client on another connection is
//! answered all along.

mod common;

use common::{config, linked, CLIENT_IP, SERVER_IP};
use smoltcp::socket::tcp::{CongestionControl, State};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{IpAddress, IpEndpoint};
use tapir::device::memlink::{LinkConfig, MemDevice};
use tapir::runtime::sim::{Node, Sim, SimNode};
use tapir::runtime::Application;
use tapir::service::builtin::Builtin;
use tapir::service::server::StatsHandle;
use tapir::service::{Body, ConnInfo, RequestBody, Server, ServerConfig};
use tapir::stack::{Stack, TcpHandle};

const PORT: u16 = 80;
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const PING: u8 = 6;
const GOAWAY: u8 = 7;
const WINDOW_UPDATE: u8 = 8;
const CONTINUATION: u8 = 9;

const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

const PROTOCOL_ERROR: u32 = 0x1;
const ENHANCE_YOUR_CALM: u32 = 0xb;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("small frame");
    let mut f = len.to_be_bytes()[1..].to_vec();
    f.push(kind);
    f.push(flags);
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An HPACK integer with an `n`-bit prefix whose high bits are `first`.
fn hpack_int(first: u8, n: u32, mut value: usize, out: &mut Vec<u8>) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128) as u8 | 0x80);
        value /= 128;
    }
    out.push(value as u8);
}

fn hpack_str(s: &[u8], out: &mut Vec<u8>) {
    hpack_int(0, 7, s.len(), out);
    out.extend_from_slice(s);
}

/// The header block of `GET path` (static-table names, literals without indexing).
fn get_block(path: &str) -> Vec<u8> {
    let mut b = vec![0x82, 0x86]; // :method GET, :scheme http
    hpack_int(0, 4, 4, &mut b); // :path, literal without indexing
    hpack_str(path.as_bytes(), &mut b);
    hpack_int(0, 4, 1, &mut b); // :authority
    hpack_str(b"test", &mut b);
    b
}

/// The header block of `method path` with the method as a literal (any method, also one
/// outside HPACK's static table).
fn request_block(method: &str, path: &str) -> Vec<u8> {
    let mut b = Vec::new();
    hpack_int(0, 4, 2, &mut b); // :method, literal without indexing
    hpack_str(method.as_bytes(), &mut b);
    b.push(0x86); // :scheme http
    hpack_int(0, 4, 4, &mut b); // :path
    hpack_str(path.as_bytes(), &mut b);
    hpack_int(0, 4, 1, &mut b); // :authority
    hpack_str(b"test", &mut b);
    b
}

fn client_start(settings: &[(u16, u32)]) -> Vec<u8> {
    let mut payload = Vec::new();
    for (id, value) in settings {
        payload.extend_from_slice(&id.to_be_bytes());
        payload.extend_from_slice(&value.to_be_bytes());
    }
    let mut out = PREFACE.to_vec();
    out.extend(frame(SETTINGS, 0, 0, &payload));
    out
}

/// What one raw connection does.
enum Role {
    /// Sends `bytes` as fast as the socket takes them; reads everything.
    Attacker { bytes: Vec<u8>, sent: usize },
    /// Sends one of `chunks` every `interval` (after the first, sent at once).
    Paced {
        chunks: Vec<Vec<u8>>,
        next: usize,
        interval: Duration,
        next_at: Option<Instant>,
    },
    /// Sends GET requests one after the other, answering SETTINGS and opening windows.
    Legit { wanted: usize, next_stream: u32 },
}

/// A frame received: (type, flags, stream, its first four payload bytes).
type Seen = (u8, u8, u32, Option<u32>);

struct RawConn {
    handle: Option<TcpHandle>,
    role: Role,
    out: Vec<u8>,
    inbuf: Vec<u8>,
    /// GOAWAY (last stream, error code) received.
    goaway: Option<(u32, u32)>,
    /// Complete 200 responses received (legit role).
    answered: usize,
    /// Streams the server reset (RST_STREAM received).
    resets: usize,
    /// The server closed or reset the connection.
    closed_at: Option<Instant>,
    /// Response HEADERS were seen on the current stream, with status 200.
    status_ok: bool,
    /// Every frame received.
    frames: Vec<Seen>,
    /// A paced connection reads nothing until this many chunks were sent.
    deaf_until_chunk: usize,
}

impl RawConn {
    fn new(stack: &mut Stack, role: Role) -> Self {
        let server = IpEndpoint::new(IpAddress::Ipv4(SERVER_IP), PORT);
        let out = match &role {
            Role::Legit { .. } => client_start(&[]),
            Role::Attacker { .. } | Role::Paced { .. } => Vec::new(),
        };
        RawConn {
            handle: Some(stack.connect(server).expect("connect")),
            role,
            out,
            inbuf: Vec::new(),
            goaway: None,
            answered: 0,
            resets: 0,
            closed_at: None,
            status_ok: false,
            frames: Vec::new(),
            deaf_until_chunk: 0,
        }
    }

    fn request_next(&mut self) {
        if let Role::Legit {
            wanted,
            next_stream,
        } = &mut self.role
        {
            if self.answered < *wanted {
                let id = *next_stream;
                *next_stream += 2;
                let path = format!("/bytes/{}", 1000 + self.answered);
                self.out.extend(frame(
                    HEADERS,
                    END_STREAM | END_HEADERS,
                    id,
                    &get_block(&path),
                ));
                self.status_ok = false;
            }
        }
    }

    fn on_frame(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        let legit = matches!(self.role, Role::Legit { .. });
        let word = payload
            .get(..4)
            .map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
        self.frames.push((kind, flags, stream, word));
        match kind {
            GOAWAY if payload.len() >= 8 => {
                let last = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]);
                let code = u32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]]);
                self.goaway = Some((last & 0x7fff_ffff, code));
            }
            RST_STREAM => self.resets += 1,
            SETTINGS if flags & ACK == 0 && legit => {
                self.out.extend(frame(SETTINGS, ACK, 0, &[]));
                if self.answered == 0 && stream == 0 {
                    self.request_next();
                }
            }
            HEADERS if legit => {
                // The server's encoder sends `:status: 200` as static index 8.
                self.status_ok = payload.first() == Some(&0x88);
                if flags & END_STREAM != 0 {
                    self.end_of_response();
                }
            }
            DATA if legit => {
                if !payload.is_empty() {
                    let n = (payload.len() as u32).to_be_bytes();
                    self.out.extend(frame(WINDOW_UPDATE, 0, 0, &n));
                    self.out.extend(frame(WINDOW_UPDATE, 0, stream, &n));
                }
                if flags & END_STREAM != 0 {
                    self.end_of_response();
                }
            }
            PING if flags & ACK == 0 && legit => {
                self.out.extend(frame(PING, ACK, 0, payload));
            }
            _ => {}
        }
    }

    fn end_of_response(&mut self) {
        if self.status_ok {
            self.answered += 1;
        }
        self.request_next();
    }

    fn poll(&mut self, stack: &mut Stack, now: Instant) -> bool {
        let Some(handle) = self.handle.take() else {
            return false;
        };
        let progress = self.poll_socket(stack, &handle, now);
        self.handle = Some(handle);
        progress
    }

    fn poll_socket(&mut self, stack: &mut Stack, handle: &TcpHandle, now: Instant) -> bool {
        let mut progress = false;
        let socket = stack.socket(handle);
        if !socket.is_active() || socket.state() == State::CloseWait {
            // FIN or RST from the server (or never connected).
            if self.closed_at.is_none() && socket.state() != State::SynSent {
                self.closed_at = Some(now);
                progress = true;
            }
        }
        let deaf = matches!(&self.role, Role::Paced { next, .. } if *next < self.deaf_until_chunk);
        let mut buf = [0u8; 16384];
        while socket.can_recv() && !deaf {
            let n = socket.recv_slice(&mut buf).unwrap_or(0);
            if n == 0 {
                break;
            }
            self.inbuf.extend_from_slice(&buf[..n]);
            progress = true;
        }
        // Parse complete frames.
        let mut at = 0;
        while self.inbuf.len() - at >= 9 {
            let h = &self.inbuf[at..at + 9];
            let len = u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize;
            if self.inbuf.len() - at < 9 + len {
                break;
            }
            let (kind, flags) = (h[3], h[4]);
            let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
            let payload = self.inbuf[at + 9..at + 9 + len].to_vec();
            self.on_frame(kind, flags, stream, &payload);
            at += 9 + len;
        }
        self.inbuf.drain(..at);
        let socket = stack.socket(handle);
        if let Role::Attacker { bytes, sent } = &mut self.role {
            while *sent < bytes.len() && socket.can_send() {
                let n = socket.send_slice(&bytes[*sent..]).unwrap_or(0);
                if n == 0 {
                    break;
                }
                *sent += n;
                progress = true;
            }
        }
        if let Role::Paced {
            chunks,
            next,
            interval,
            next_at,
        } = &mut self.role
        {
            if *next < chunks.len() && next_at.is_none_or(|t| now >= t) && socket.can_send() {
                let chunk = &chunks[*next];
                if socket.send_capacity() - socket.send_queue() >= chunk.len() {
                    socket.send_slice(chunk).expect("room was checked");
                    *next += 1;
                    *next_at = Some(now + *interval);
                    progress = true;
                }
            }
        }
        while !self.out.is_empty() && socket.can_send() {
            let n = socket.send_slice(&self.out).unwrap_or(0);
            if n == 0 {
                break;
            }
            self.out.drain(..n);
            progress = true;
        }
        progress
    }
}

struct Clients {
    conns: Vec<RawConn>,
}

impl Application for Clients {
    fn poll(&mut self, stack: &mut Stack, now: Instant) -> bool {
        let mut progress = false;
        for c in &mut self.conns {
            progress |= c.poll(stack, now);
        }
        progress
    }

    fn poll_at(&self, _now: Instant) -> Option<Instant> {
        self.conns
            .iter()
            .filter_map(|c| match &c.role {
                Role::Paced {
                    chunks,
                    next,
                    next_at,
                    ..
                } if *next < chunks.len() && c.closed_at.is_none() => *next_at,
                _ => None,
            })
            .min()
    }

    /// Done when the attacker was shut out and the legitimate client has its answers.
    fn is_finished(&self) -> bool {
        let attacker = &self.conns[0];
        let legit = &self.conns[1];
        let wanted = match legit.role {
            Role::Legit { wanted, .. } => wanted,
            Role::Attacker { .. } | Role::Paced { .. } => 0,
        };
        attacker.closed_at.is_some() && legit.answered >= wanted
    }
}

type Handler = Box<dyn Fn(http::Request<RequestBody>, &ConnInfo) -> http::Response<Body>>;

struct Outcome {
    attacker: RawConn,
    legit: RawConn,
    server: Node<MemDevice, Server<Handler>>,
    /// Virtual time from the start to the attacker's connection being closed.
    closed_after: Duration,
}

/// Runs `attack` (the bytes after the TCP handshake) against a server with the built-in
/// site while a legitimate client asks for `legit_requests` responses one after the other
/// on its own connection; returns once the attacker is shut out and the client answered.
fn run(attack: Vec<u8>, legit_requests: usize, server_config: ServerConfig) -> Outcome {
    run_role(
        Role::Attacker {
            bytes: attack,
            sent: 0,
        },
        legit_requests,
        server_config,
    )
}

/// Like [`run`] with any attacker role.
fn run_role(role: Role, legit_requests: usize, server_config: ServerConfig) -> Outcome {
    run_deaf(role, 0, legit_requests, server_config, None)
}

/// Like [`run_role`]; a paced attacker reads nothing until `deaf_until_chunk` chunks went.
/// `congestion` names the server's congestion control (None: the default).
fn run_deaf(
    role: Role,
    deaf_until_chunk: usize,
    legit_requests: usize,
    server_config: ServerConfig,
    congestion: Option<CongestionControl>,
) -> Outcome {
    let mut sim = Sim::new();
    let mut server_stack = config(SERVER_IP, 2, 31);
    if let Some(congestion) = congestion {
        server_stack.tcp.congestion = congestion;
    }
    let (mut s_stack, s_dev, mut c_stack, c_dev) = linked(
        LinkConfig::default(),
        server_stack,
        config(CLIENT_IP, 1, 32),
        &sim,
    );
    let stats = StatsHandle::default();
    let builtin = Builtin::new(stats.clone());
    let handler: Handler = Box::new(move |req, info: &ConnInfo| builtin.handle(req, info));
    let mut server = Server::with_stats(handler, server_config, stats);
    server.bind_http(&mut s_stack, PORT).unwrap();
    let mut attacker = RawConn::new(&mut c_stack, role);
    attacker.deaf_until_chunk = deaf_until_chunk;
    let legit = RawConn::new(
        &mut c_stack,
        Role::Legit {
            wanted: legit_requests,
            next_stream: 1,
        },
    );
    let mut server = Node::new(s_stack, s_dev, server);
    let mut client = Node::new(
        c_stack,
        c_dev,
        Clients {
            conns: vec![attacker, legit],
        },
    );
    let start = sim.now();
    let outcome = sim.run_until(
        &mut [&mut server as &mut dyn SimNode, &mut client],
        Duration::from_secs(300),
        |nodes| nodes[1].finished(),
    );
    let legit = client.app.conns.pop().expect("legit");
    let attacker = client.app.conns.pop().expect("attacker");
    if let Err(e) = outcome {
        panic!(
            "attacker shut out and legit client answered: {e}; attacker goaway {:?} closed {:?}, \
             legit answered {} goaway {:?}; server {:?}",
            attacker.goaway,
            attacker.closed_at,
            legit.answered,
            legit.goaway,
            server.app.stats_handle().get()
        );
    }
    let closed_after = attacker.closed_at.map_or(Duration::ZERO, |t| t - start);
    Outcome {
        attacker,
        legit,
        server,
        closed_after,
    }
}

/// Sends `chunks` a second apart, then a header block on stream 0, which ends the
/// connection with GOAWAY PROTOCOL_ERROR (so the run ends); the connection reads nothing
/// until `deaf_until_chunk` chunks went. A client asks for `legit_requests` meanwhile.
fn run_then_end(chunks: Vec<Vec<u8>>, deaf_until_chunk: usize, legit_requests: usize) -> Outcome {
    run_then_end_with(chunks, deaf_until_chunk, legit_requests, None)
}

/// [`run_then_end`] with the server's congestion control named (None: the default).
fn run_then_end_with(
    chunks: Vec<Vec<u8>>,
    deaf_until_chunk: usize,
    legit_requests: usize,
    congestion: Option<CongestionControl>,
) -> Outcome {
    let mut chunks = chunks;
    chunks.push(frame(HEADERS, END_STREAM | END_HEADERS, 0, &get_block("/")));
    let role = Role::Paced {
        chunks,
        next: 0,
        interval: Duration::from_secs(1),
        next_at: None,
    };
    run_deaf(
        role,
        deaf_until_chunk,
        legit_requests,
        ServerConfig::default(),
        congestion,
    )
}

/// What every attack must end with: GOAWAY `code` to the attacker, its connection gone
/// from the server, the legitimate client answered every time without a GOAWAY.
fn assert_shut_out(o: &Outcome, code: u32, legit_requests: usize) {
    let (_, got) = o.attacker.goaway.expect("the attacker gets a GOAWAY");
    assert_eq!(got, code, "GOAWAY error code");
    assert!(
        o.attacker.closed_at.is_some(),
        "the attacker's connection is closed"
    );
    assert_eq!(
        o.legit.answered, legit_requests,
        "every legitimate request answered"
    );
    assert_eq!(
        o.legit.goaway, None,
        "the legitimate client keeps its connection"
    );
    assert_eq!(o.legit.resets, 0);
    assert_eq!(
        o.server.app.open_connections(),
        1,
        "only the legitimate connection is left on the server"
    );
}

fn legit_requests_while(attack_frames: usize) -> usize {
    // Enough to overlap the attack, few enough to keep the test quick.
    (attack_frames / 1000).clamp(20, 50)
}

#[test]
fn rapid_reset_is_shut_out_with_enhance_your_calm() {
    let mut attack = client_start(&[]);
    let pairs = 20_000u32;
    for i in 0..pairs {
        let id = 2 * i + 1;
        attack.extend(frame(
            HEADERS,
            END_STREAM | END_HEADERS,
            id,
            &get_block("/bytes/100000"),
        ));
        attack.extend(frame(RST_STREAM, 0, id, &8u32.to_be_bytes())); // CANCEL
    }
    let n = legit_requests_while(pairs as usize);
    let o = run(attack, n, ServerConfig::default());
    assert_shut_out(&o, ENHANCE_YOUR_CALM, n);
    let stats = o.server.app.stats_handle().get();
    // The handler ran for a bounded number of the attacker's streams.
    let attacker_requests = stats.requests_http2 - n as u64;
    assert!(
        attacker_requests <= 600,
        "{attacker_requests} of {pairs} reset streams reached the handler"
    );
}

#[test]
fn paced_rapid_reset_is_shut_out_too() {
    // One HEADERS+RST_STREAM pair per TCP segment, each stream accepted before its reset:
    // h2's pending-accept limit never sees them; the control-frame budget does.
    let mut config = ServerConfig::default();
    config.h2.max_control_frames = 50;
    config.h2.control_frames_per_sec = 10;
    let mut chunks = vec![client_start(&[])];
    for i in 0..5_000u32 {
        let id = 2 * i + 1;
        let mut pair = frame(HEADERS, END_STREAM | END_HEADERS, id, &get_block("/"));
        pair.extend(frame(RST_STREAM, 0, id, &8u32.to_be_bytes()));
        chunks.push(pair);
    }
    let n = 20;
    let role = Role::Paced {
        chunks,
        next: 0,
        interval: Duration::from_millis(1),
        next_at: None,
    };
    let o = run_role(role, n, config);
    assert_shut_out(&o, ENHANCE_YOUR_CALM, n);
    let stats = o.server.app.stats_handle().get();
    // 50 at once, then 10 a second: the attacker got about 50 streams through.
    let attacker_requests = stats.requests_http2 - n as u64;
    assert!(
        attacker_requests <= 60,
        "{attacker_requests} reset streams handled"
    );
}

#[test]
fn continuation_flood_is_shut_out() {
    let mut attack = client_start(&[]);
    let frames = 50_000;
    // An open header block, then CONTINUATION frames that never end it.
    attack.extend(frame(HEADERS, END_STREAM, 1, &get_block("/")));
    for _ in 0..frames {
        attack.extend(frame(CONTINUATION, 0, 1, &[]));
    }
    let n = legit_requests_while(frames);
    let o = run(attack, n, ServerConfig::default());
    assert_shut_out(&o, ENHANCE_YOUR_CALM, n);
    let stats = o.server.app.stats_handle().get();
    assert_eq!(
        stats.requests_http2, n as u64,
        "the open block never became a request"
    );
    assert!(
        stats.bytes_in < 1 << 20,
        "the server stopped reading the flood early: {} bytes",
        stats.bytes_in
    );
}

#[test]
fn settings_flood_is_shut_out() {
    let mut attack = client_start(&[]);
    let frames = 100_000;
    for _ in 0..frames {
        attack.extend(frame(SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100])); // MAX_CONCURRENT_STREAMS
    }
    let n = legit_requests_while(frames);
    let o = run(attack, n, ServerConfig::default());
    assert_shut_out(&o, ENHANCE_YOUR_CALM, n);
    let stats = o.server.app.stats_handle().get();
    assert!(
        stats.bytes_in < 1 << 20,
        "{} bytes read of the flood",
        stats.bytes_in
    );
    assert!(
        stats.bytes_out < 1 << 20,
        "{} bytes written (SETTINGS acks)",
        stats.bytes_out
    );
}

#[test]
fn ping_flood_is_shut_out() {
    let mut attack = client_start(&[]);
    let frames = 100_000;
    for i in 0..frames as u64 {
        attack.extend(frame(PING, 0, 0, &i.to_be_bytes()));
    }
    let n = legit_requests_while(frames);
    let o = run(attack, n, ServerConfig::default());
    assert_shut_out(&o, ENHANCE_YOUR_CALM, n);
    let stats = o.server.app.stats_handle().get();
    assert!(stats.bytes_in < 1 << 20, "{} bytes read", stats.bytes_in);
    assert!(
        stats.bytes_out < 1 << 20,
        "{} bytes of PING acks",
        stats.bytes_out
    );
}

#[test]
fn hpack_bomb_is_shut_out() {
    // One 4,000-byte header goes into the dynamic table, then 4,000 one-byte references
    // to it: 16 MB of decoded headers from a 4 KB frame.
    let mut block = get_block("/");
    block.push(0x40); // literal with incremental indexing, new name
    hpack_str(b"x-bomb", &mut block);
    hpack_str(&[b'a'; 4000], &mut block);
    block.extend(std::iter::repeat_n(0xbe, 4000)); // indexed: dynamic entry 62
    let mut attack = client_start(&[]);
    attack.extend(frame(HEADERS, END_STREAM | END_HEADERS, 1, &block));
    let n = 20;
    let o = run(attack, n, ServerConfig::default());
    assert_shut_out(&o, ENHANCE_YOUR_CALM, n);
    assert_eq!(
        o.server.app.stats_handle().get().requests_http2,
        n as u64,
        "the bomb never reached the handler"
    );
}

#[test]
fn a_header_block_on_stream_zero_is_a_protocol_error() {
    // Not an attack, a control: the helper sees other GOAWAY codes as they are.
    let mut attack = client_start(&[]);
    attack.extend(frame(HEADERS, END_STREAM | END_HEADERS, 0, &get_block("/")));
    let o = run(attack, 5, ServerConfig::default());
    assert_shut_out(&o, PROTOCOL_ERROR, 5);
}

#[test]
fn zero_window_stall_is_bounded_and_closed_by_the_stall_timeout() {
    let mut config = ServerConfig::default();
    config.h2.stall_timeout = std::time::Duration::from_secs(5);
    // INITIAL_WINDOW_SIZE 0 and never a WINDOW_UPDATE, asking for 100 MB on 10 streams.
    let mut attack = client_start(&[(0x4, 0)]);
    attack.extend(frame(SETTINGS, ACK, 0, &[]));
    for i in 0..10u32 {
        attack.extend(frame(
            HEADERS,
            END_STREAM | END_HEADERS,
            2 * i + 1,
            &get_block("/bytes/100000000"),
        ));
    }
    let n = 30;
    let o = run(attack, n, config);
    assert_shut_out(&o, ENHANCE_YOUR_CALM, n);
    assert!(
        o.closed_after >= Duration::from_secs(5) && o.closed_after < Duration::from_secs(15),
        "closed by the 5 s stall timeout, after {}",
        o.closed_after
    );
    let stats = o.server.app.stats_handle().get();
    // Nothing of the 1 GB was produced or buffered: the legitimate responses and frame
    // overhead are all that went out.
    let legit_bytes: u64 = (0..n as u64).map(|i| 1000 + i).sum();
    assert!(
        stats.bytes_out < legit_bytes + 64 * 1024,
        "{} bytes written",
        stats.bytes_out
    );
}

#[test]
fn an_invalid_preface_on_the_cleartext_port_gets_goaway_protocol_error() {
    // `PRI * HTTP/2.0` cannot be HTTP/1.x; the rest is not the preface.
    let o = run(
        b"PRI * HTTP/2.0\r\n\r\nXY\r\n\r\n".to_vec(),
        3,
        ServerConfig::default(),
    );
    assert_shut_out(&o, PROTOCOL_ERROR, 3);
    assert_eq!(o.attacker.goaway, Some((0, PROTOCOL_ERROR)));
}

#[test]
fn a_host_other_than_the_authority_is_a_malformed_request() {
    // HEADERS on stream 1: :authority "test" with Host "other.example"; a second later a
    // header block on stream 0 ends the connection (so the run finishes).
    let mut block = get_block("/");
    hpack_int(0, 4, 38, &mut block); // host (static index 38), literal without indexing
    hpack_str(b"other.example", &mut block);
    let mut first = client_start(&[]);
    first.extend(frame(HEADERS, END_STREAM | END_HEADERS, 1, &block));
    // The same host with the default port written out is the same origin: answered.
    let mut same = get_block("/");
    hpack_int(0, 4, 38, &mut same);
    hpack_str(b"TEST:80", &mut same);
    first.extend(frame(HEADERS, END_STREAM | END_HEADERS, 3, &same));
    let o = run_then_end(vec![first], 0, 3);
    assert_eq!(o.attacker.resets, 1, "stream 1 reset, stream 3 answered");
    assert_shut_out(&o, PROTOCOL_ERROR, 3);
}

#[test]
fn a_window_update_past_the_maximum_resets_the_stream_even_as_its_response_ends() {
    // RFC 9113 §6.9.1: a WINDOW_UPDATE that takes a stream's window above 2^31-1 gets
    // RST_STREAM FLOW_CONTROL_ERROR. Sent in the same write as the request, it is received
    // before any response frame leaves, so the server must never end the stream with its
    // response instead — whatever the response's size (empty, one DATA frame, larger than
    // the 64 KiB window) or a HEAD whose HEADERS carry END_STREAM.
    const FLOW_CONTROL_ERROR: u32 = 0x3;
    for (method, path) in [
        (0x82, "/bytes/0"),
        (0x82, "/bytes/10"),
        (0x82, "/bytes/70000"),
        (0x82, "/"),
        (0x83, "/bytes/10"), // :method POST, answered 405 with a body
    ] {
        let mut block = get_block(path);
        block[0] = method;
        let mut first = client_start(&[]);
        first.extend(frame(SETTINGS, ACK, 0, &[]));
        first.extend(frame(HEADERS, END_STREAM | END_HEADERS, 1, &block));
        first.extend(frame(WINDOW_UPDATE, 0, 1, &0x7fff_ffffu32.to_be_bytes()));
        let o = run_then_end(vec![first], 0, 2);
        let on_stream_1: Vec<_> = o.attacker.frames.iter().filter(|f| f.2 == 1).collect();
        assert!(
            on_stream_1
                .iter()
                .any(|&&(kind, _, _, code)| kind == RST_STREAM && code == Some(FLOW_CONTROL_ERROR)),
            "{path}: RST_STREAM FLOW_CONTROL_ERROR on stream 1; got {on_stream_1:?}"
        );
        assert!(
            !on_stream_1
                .iter()
                .any(|&&(kind, flags, _, _)| kind != RST_STREAM && flags & END_STREAM != 0),
            "{path}: the response never ends the stream; got {on_stream_1:?}"
        );
        assert_shut_out(&o, PROTOCOL_ERROR, 2);
    }
}

#[test]
fn a_window_update_past_the_maximum_resets_a_response_still_queued() {
    // The client reads nothing while tapir writes /bytes/N: tapir's socket, its pipe to h2
    // and h2's queue fill. Then it sends a WINDOW_UPDATE that takes stream 1's window past
    // 2^31-1, and a PING right behind it. Until its END_STREAM has left, the stream is open
    // (RFC 9113 §5.1) and the overflow must reset it (§6.9.1); once END_STREAM has left,
    // the update is ignored. The PING tells which: its ACK is written when the server
    // reads it, right after the update, so an END_STREAM that comes after the ACK was not
    // sent when the update was read, and must never come. The sizes put the end of the
    // body at every place: in the socket, in the pipe, in the last DATA frame h2 is
    // writing, and queued in h2. They were found for CUBIC's send-buffer growth, so the
    // server runs CUBIC (with BBR, the default, the end of these bodies is always in the
    // socket already).
    const FLOW_CONTROL_ERROR: u32 = 0x3;
    let mut wrong = Vec::new();
    let (mut resets, mut ignored) = (0, 0);
    for n in (150_000..260_000).step_by(211) {
        let mut first = client_start(&[(0x4, 0x7000_0000)]); // INITIAL_WINDOW_SIZE
        first.extend(frame(SETTINGS, ACK, 0, &[]));
        first.extend(frame(WINDOW_UPDATE, 0, 0, &0x7000_0000u32.to_be_bytes()));
        let path = format!("/bytes/{n}");
        first.extend(frame(
            HEADERS,
            END_STREAM | END_HEADERS,
            1,
            &get_block(&path),
        ));
        let mut overflow = frame(WINDOW_UPDATE, 0, 1, &0x7fff_ffffu32.to_be_bytes());
        overflow.extend(frame(PING, 0, 0, b"overflow"));
        let o = run_then_end_with(vec![first, overflow], 2, 2, Some(CongestionControl::Cubic));
        let frames = &o.attacker.frames;
        let position = |wanted: &dyn Fn(&Seen) -> bool| frames.iter().position(wanted);
        let ping_ack = position(&|f| f.0 == PING && f.1 & ACK != 0);
        let reset = position(&|f| f.0 == RST_STREAM && f.2 == 1);
        let end_stream = position(&|f| f.0 != RST_STREAM && f.2 == 1 && f.1 & END_STREAM != 0);
        let ping_ack = ping_ack.expect("the PING is answered");
        match (reset, end_stream) {
            (Some(r), None) if frames[r].3 == Some(FLOW_CONTROL_ERROR) => resets += 1,
            (None, Some(end)) if end < ping_ack => ignored += 1,
            _ => wrong.push((n, reset, end_stream, ping_ack)),
        }
        assert_shut_out(&o, PROTOCOL_ERROR, 2);
    }
    assert!(
        wrong.is_empty(),
        "(size, RST_STREAM at, END_STREAM at, PING ACK at): the overflow neither reset the \
         stream nor came after its END_STREAM: {wrong:?}"
    );
    // Both cases were exercised.
    assert!(
        resets > 0 && ignored > 0,
        "{resets} reset, {ignored} ignored"
    );
}

#[test]
fn a_window_update_past_the_maximum_resets_an_empty_end_of_stream_still_queued() {
    // The same rule as above for a response whose END_STREAM carries no data: HEADERS with
    // END_STREAM (HEAD, an empty body, 204). Stream 1 asks for a large body and the client
    // reads nothing: tapir's socket, its pipe to h2 and h2's queue fill. A second later
    // stream 3's request is answered at once, and its only frame waits in h2's queue behind
    // stream 1's data. Another second later a WINDOW_UPDATE takes stream 3's window past
    // 2^31-1 (a PING right behind it): stream 3 is still open for the client (RFC 9113
    // §5.1), so it must be reset with FLOW_CONTROL_ERROR (§6.9.1) and its queued end must
    // never be sent. h2 0.4.20 ignored the update (vendor/h2/TAPIR-PATCH.md).
    const FLOW_CONTROL_ERROR: u32 = 0x3;
    for (method, path, what) in [
        ("HEAD", "/bytes/10", "HEAD"),
        ("GET", "/bytes/0", "an empty body"),
        ("OPTIONS", "*", "204 to OPTIONS *"),
    ] {
        let mut first = client_start(&[(0x4, 0x7000_0000)]); // INITIAL_WINDOW_SIZE
        first.extend(frame(SETTINGS, ACK, 0, &[]));
        first.extend(frame(WINDOW_UPDATE, 0, 0, &0x7000_0000u32.to_be_bytes()));
        first.extend(frame(
            HEADERS,
            END_STREAM | END_HEADERS,
            1,
            &get_block("/bytes/4000000"),
        ));
        let second = frame(
            HEADERS,
            END_STREAM | END_HEADERS,
            3,
            &request_block(method, path),
        );
        let mut overflow = frame(WINDOW_UPDATE, 0, 3, &0x7fff_ffffu32.to_be_bytes());
        overflow.extend(frame(PING, 0, 0, b"overflow"));
        let o = run_then_end(vec![first, second, overflow], 3, 2);
        let frames = &o.attacker.frames;
        let on = |stream: u32| -> Vec<&Seen> { frames.iter().filter(|f| f.2 == stream).collect() };
        assert!(
            frames.iter().any(|f| f.0 == PING && f.1 & ACK != 0),
            "{what}: the PING is answered"
        );
        assert_eq!(
            on(3),
            [&(RST_STREAM, 0, 3, Some(FLOW_CONTROL_ERROR))],
            "{what}: stream 3 is reset with FLOW_CONTROL_ERROR and its queued end never sent"
        );
        assert!(
            on(1).iter().any(|f| f.0 == DATA) && !on(1).iter().any(|f| f.0 == RST_STREAM),
            "{what}: stream 1 goes on (DATA, no reset)"
        );
        assert_shut_out(&o, PROTOCOL_ERROR, 2);
    }
}

#[test]
fn options_star_over_http2_is_answered_by_the_server() {
    // `:method OPTIONS`, `:path *` (RFC 9113 §8.3.1): 204 from the server, not the site's
    // 404 for a page named `*`; `FOO /nothing`: 501 from the server, not the site's 404.
    let mut first = client_start(&[]);
    first.extend(frame(SETTINGS, ACK, 0, &[]));
    first.extend(frame(
        HEADERS,
        END_STREAM | END_HEADERS,
        1,
        &request_block("OPTIONS", "*"),
    ));
    first.extend(frame(
        HEADERS,
        END_STREAM | END_HEADERS,
        3,
        &request_block("FOO", "/nothing"),
    ));
    let o = run_then_end(vec![first], 0, 2);
    let status = |stream: u32| {
        o.attacker
            .frames
            .iter()
            .find(|f| f.0 == HEADERS && f.2 == stream)
            .and_then(|f| f.3)
            .map(|word| word >> 24)
    };
    assert_eq!(
        status(1),
        Some(0x89),
        "stream 1: :status 204 (static index 9)"
    );
    // 404 is static index 13; 501 is not in the static table: a literal `:status`
    // (incremental indexing, name index 8).
    assert_eq!(
        status(3),
        Some(0x48),
        "stream 3: a literal :status (501), not 404"
    );
    assert_shut_out(&o, PROTOCOL_ERROR, 2);
}
