//! TLS between two stacks over the in-memory link, on the virtual clock: echo through loss
//! and reordering on TLS 1.3 and 1.2, ALPN, bad input on a TLS port, and certificate
//! verification.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::task::Waker;

use common::wake::Flag;
use common::{config, linked, Pattern, CLIENT_IP, SERVER_IP};
use rustls::pki_types::ServerName;
use sha2::{Digest, Sha256};
use smoltcp::socket::tcp::State;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{IpAddress, IpEndpoint};
use tapir::device::memlink::{LinkConfig, MemDevice};
use tapir::error::Chain;
use tapir::runtime::sim::{Node, Sim, SimNode};
use tapir::runtime::Application;
use tapir::stack::{Stack, TcpHandle};
use tapir::transport::certs::{self, Roots, SelfSigned};
use tapir::transport::tcp::TcpStream;
use tapir::transport::tls::{ClientTls, ServerTls, TlsInfo};
use tapir::transport::{ReadStatus, Transport, TransportError};

const PORT: u16 = 443;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
const CHUNK: usize = 16 * 1024;

fn server_endpoint() -> IpEndpoint {
    IpEndpoint::new(IpAddress::Ipv4(SERVER_IP), PORT)
}

fn cert() -> SelfSigned {
    certs::self_signed(
        &["localhost".to_string()],
        &[std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 7, 0, 2))],
    )
    .expect("self-signed certificate")
}

fn alpn(list: &[&str]) -> Vec<Vec<u8>> {
    list.iter().map(|p| p.as_bytes().to_vec()).collect()
}

/// A file in the temp directory, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(tag: &str, contents: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "tapir-tls-{tag}-{}-{}.pem",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::write(&path, contents).expect("write temp file");
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

// ---------------------------------------------------------------------------------------
// The TLS echo server.

struct ServerConn {
    tls: ServerTls,
    /// Set by the stream's waker; in waker-driven mode only flagged connections are served.
    flag: Arc<Flag>,
    /// Plaintext read but not yet echoed.
    pending: Vec<u8>,
    eof: bool,
    deadline: Instant,
    info_seen: bool,
}

/// What happened to a server connection.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ServerEvent {
    Handshake(TlsInfo),
    Error(String),
    Eof,
    HandshakeTimeout,
}

/// Echoes plaintext on every TLS connection; closes on EOF, frees everything.
struct TlsEchoServer {
    port: u16,
    config: Arc<rustls::ServerConfig>,
    conns: Vec<ServerConn>,
    events: Vec<ServerEvent>,
    echoed: u64,
    /// Serve a connection only when its waker fired (or a timer is due), as the HTTP server
    /// does; otherwise every connection is served on every turn.
    waker_driven: bool,
    /// The largest send buffer a connection had.
    max_send_buffer: usize,
}

impl TlsEchoServer {
    fn bind(stack: &mut Stack, port: u16, config: Arc<rustls::ServerConfig>) -> Self {
        stack.listen(port).expect("listen");
        TlsEchoServer {
            port,
            config,
            conns: Vec::new(),
            events: Vec::new(),
            echoed: 0,
            waker_driven: false,
            max_send_buffer: 0,
        }
    }

    fn errors(&self) -> Vec<&str> {
        self.events
            .iter()
            .filter_map(|e| match e {
                ServerEvent::Error(e) => Some(e.as_str()),
                _ => None,
            })
            .collect()
    }

    fn infos(&self) -> Vec<&TlsInfo> {
        self.events
            .iter()
            .filter_map(|e| match e {
                ServerEvent::Handshake(i) => Some(i),
                _ => None,
            })
            .collect()
    }
}

enum Next {
    Keep,
    Close,
    Abort,
}

fn serve(
    conn: &mut ServerConn,
    stack: &mut Stack,
    now: Instant,
    events: &mut Vec<ServerEvent>,
    echoed: &mut u64,
) -> (Next, bool) {
    let mut progressed = false;
    if conn.tls.is_handshaking() {
        match conn.tls.drive_handshake(stack) {
            Ok(true) => progressed = true,
            Ok(false) if now >= conn.deadline => {
                events.push(ServerEvent::HandshakeTimeout);
                return (Next::Close, true);
            }
            Ok(false) => return (Next::Keep, false),
            Err(TransportError::Reset) => {
                events.push(ServerEvent::Error("reset".into()));
                return (Next::Abort, true);
            }
            Err(e) => {
                events.push(ServerEvent::Error(Chain(&e).to_string()));
                return (Next::Close, true);
            }
        }
    }
    if !conn.info_seen {
        conn.info_seen = true;
        if let Some(info) = conn.tls.info() {
            assert_eq!(info.sni.as_deref(), conn.tls.sni());
            events.push(ServerEvent::Handshake(info));
        }
    }
    for _ in 0..64 {
        let mut moved = false;
        if !conn.pending.is_empty() {
            match conn.tls.write(stack, &conn.pending) {
                Ok(0) => {}
                Ok(n) => {
                    conn.pending.drain(..n);
                    *echoed += n as u64;
                    moved = true;
                }
                Err(e) => {
                    events.push(ServerEvent::Error(Chain(&e).to_string()));
                    return (Next::Abort, true);
                }
            }
        }
        if !conn.eof && conn.pending.len() < CHUNK {
            let pending = &mut conn.pending;
            let status = conn.tls.read_with(stack, &mut |data| {
                let n = data.len().min(CHUNK - pending.len());
                pending.extend_from_slice(&data[..n]);
                n
            });
            match status {
                Ok(ReadStatus::Data) => moved = true,
                Ok(ReadStatus::WouldBlock) => {}
                Ok(ReadStatus::Eof) => {
                    events.push(ServerEvent::Eof);
                    conn.eof = true;
                    moved = true;
                }
                Err(e) => {
                    events.push(ServerEvent::Error(Chain(&e).to_string()));
                    return (Next::Close, true);
                }
            }
        }
        progressed |= moved;
        if !moved {
            break;
        }
    }
    if conn.eof && conn.pending.is_empty() && !conn.tls.has_pending_output() {
        return (Next::Close, true);
    }
    let waker = Waker::from(conn.flag.clone());
    let read = !conn.eof && conn.pending.len() < CHUNK;
    let write = !conn.pending.is_empty();
    conn.tls.register(stack, &waker, read, write);
    (Next::Keep, progressed)
}

impl Application for TlsEchoServer {
    fn poll(&mut self, stack: &mut Stack, now: Instant) -> bool {
        let mut progressed = false;
        while let Some(handle) = stack.accept(self.port) {
            progressed = true;
            match ServerTls::accept(TcpStream::new(handle), self.config.clone()) {
                Ok(tls) => self.conns.push(ServerConn {
                    tls,
                    flag: Flag::new(true),
                    pending: Vec::new(),
                    eof: false,
                    deadline: now + HANDSHAKE_TIMEOUT,
                    info_seen: false,
                }),
                Err(e) => {
                    self.events.push(ServerEvent::Error(Chain(&e).to_string()));
                    e.into_tcp().abort(stack);
                }
            }
        }
        let mut i = 0;
        while i < self.conns.len() {
            let due = now >= self.conns[i].deadline && self.conns[i].tls.is_handshaking();
            if self.waker_driven && !self.conns[i].flag.take() && !due {
                i += 1;
                continue;
            }
            let (next, moved) = serve(
                &mut self.conns[i],
                stack,
                now,
                &mut self.events,
                &mut self.echoed,
            );
            progressed |= moved;
            let handle = self.conns[i].tls.tcp().handle();
            let send_buffer = stack.socket_ref(handle).send_capacity();
            self.max_send_buffer = self.max_send_buffer.max(send_buffer);
            match next {
                Next::Keep => i += 1,
                Next::Close => self.conns.swap_remove(i).tls.close(stack),
                Next::Abort => self.conns.swap_remove(i).tls.abort(stack),
            }
        }
        progressed
    }

    fn poll_at(&self, _now: Instant) -> Option<Instant> {
        self.conns
            .iter()
            .filter(|c| c.tls.is_handshaking())
            .map(|c| c.deadline)
            .min()
    }
}

// ---------------------------------------------------------------------------------------
// The TLS echo client.

/// How one client connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Echoed,
    Failed(String),
}

struct Flow {
    tls: Option<ClientTls>,
    pattern: Pattern,
    total: usize,
    generated: usize,
    /// Generated but not yet accepted by the stream.
    chunk: Vec<u8>,
    received: usize,
    sent_hash: Sha256,
    recv_hash: Sha256,
    info: Option<TlsInfo>,
    outcome: Option<Outcome>,
}

/// TLS echo clients: each sends its own pattern, reads it back, then closes.
struct TlsEchoClient {
    flows: Vec<Flow>,
}

struct FlowSpec {
    config: Arc<rustls::ClientConfig>,
    server_name: ServerName<'static>,
    bytes: usize,
}

impl TlsEchoClient {
    fn connect(stack: &mut Stack, specs: Vec<FlowSpec>) -> Self {
        let flows = specs
            .into_iter()
            .enumerate()
            .map(|(i, spec)| {
                let tcp = TcpStream::new(stack.connect(server_endpoint()).expect("connect"));
                let tls = ClientTls::connect(tcp, spec.config, spec.server_name)
                    .expect("client TLS session");
                Flow {
                    tls: Some(tls),
                    pattern: Pattern::new(i as u64 + 100),
                    total: spec.bytes,
                    generated: 0,
                    chunk: Vec::new(),
                    received: 0,
                    sent_hash: Sha256::new(),
                    recv_hash: Sha256::new(),
                    info: None,
                    outcome: None,
                }
            })
            .collect();
        TlsEchoClient { flows }
    }
}

fn drive_flow(flow: &mut Flow, stack: &mut Stack) -> bool {
    let Some(tls) = flow.tls.as_mut() else {
        return false;
    };
    let mut progressed = false;
    let failure = 'work: {
        if tls.is_handshaking() {
            match tls.drive_handshake(stack) {
                Ok(true) => progressed = true,
                Ok(false) => return false,
                Err(e) => break 'work Some(Chain(&e).to_string()),
            }
        }
        if flow.info.is_none() {
            flow.info = tls.info();
        }
        for _ in 0..64 {
            let mut moved = false;
            if flow.chunk.is_empty() && flow.generated < flow.total {
                let n = CHUNK.min(flow.total - flow.generated);
                flow.chunk.resize(n, 0);
                flow.pattern.fill(&mut flow.chunk);
                flow.sent_hash.update(&flow.chunk);
                flow.generated += n;
            }
            if !flow.chunk.is_empty() {
                match tls.write(stack, &flow.chunk) {
                    Ok(0) => {}
                    Ok(n) => {
                        flow.chunk.drain(..n);
                        moved = true;
                    }
                    Err(e) => break 'work Some(Chain(&e).to_string()),
                }
            }
            let (hash, received) = (&mut flow.recv_hash, &mut flow.received);
            match tls.read_with(stack, &mut |data| {
                hash.update(data);
                *received += data.len();
                data.len()
            }) {
                Ok(ReadStatus::Data) => moved = true,
                Ok(ReadStatus::WouldBlock) => {}
                Ok(ReadStatus::Eof) => {
                    break 'work Some(format!(
                        "EOF after {} of {} bytes",
                        flow.received, flow.total
                    ))
                }
                Err(e) => break 'work Some(Chain(&e).to_string()),
            }
            progressed |= moved;
            if flow.received > flow.total {
                break 'work Some("more bytes came back than were sent".into());
            }
            if flow.received == flow.total && flow.generated == flow.total {
                break 'work None;
            }
            if !moved {
                return progressed;
            }
        }
        return progressed;
    };
    flow.outcome = Some(match failure {
        None => Outcome::Echoed,
        Some(e) => Outcome::Failed(e),
    });
    if let Some(tls) = flow.tls.take() {
        tls.close(stack);
    }
    true
}

impl Application for TlsEchoClient {
    fn poll(&mut self, stack: &mut Stack, _now: Instant) -> bool {
        let mut progressed = false;
        for flow in &mut self.flows {
            progressed |= drive_flow(flow, stack);
        }
        progressed
    }

    fn is_finished(&self) -> bool {
        self.flows.iter().all(|f| f.tls.is_none())
    }
}

// ---------------------------------------------------------------------------------------
// A raw TCP client (no TLS) for bad input.

struct RawFlow {
    conn: Option<TcpHandle>,
    payload: Vec<u8>,
    sent: usize,
    fin: bool,
    received: Vec<u8>,
}

/// Sends raw bytes (optionally followed by FIN), collects whatever comes back until the
/// server closes.
struct RawClient {
    flows: Vec<RawFlow>,
}

impl RawClient {
    fn connect(stack: &mut Stack, payloads: Vec<(Vec<u8>, bool)>) -> Self {
        let flows = payloads
            .into_iter()
            .map(|(payload, fin)| RawFlow {
                conn: Some(stack.connect(server_endpoint()).expect("connect")),
                payload,
                sent: 0,
                fin,
                received: Vec::new(),
            })
            .collect();
        RawClient { flows }
    }
}

impl Application for RawClient {
    fn poll(&mut self, stack: &mut Stack, _now: Instant) -> bool {
        let mut progressed = false;
        for flow in &mut self.flows {
            let Some(conn) = flow.conn.as_ref() else {
                continue;
            };
            let socket = stack.socket(conn);
            if socket.can_send() && flow.sent < flow.payload.len() {
                let n = socket.send_slice(&flow.payload[flow.sent..]).unwrap_or(0);
                flow.sent += n;
                progressed |= n > 0;
            }
            if flow.fin && flow.sent == flow.payload.len() && socket.may_send() {
                // Half-close: FIN, but keep reading.
                socket.close();
                progressed = true;
            }
            let mut buf = [0u8; 4096];
            while socket.can_recv() {
                let n = socket.recv_slice(&mut buf).unwrap_or(0);
                if n == 0 {
                    break;
                }
                flow.received.extend_from_slice(&buf[..n]);
                progressed = true;
            }
            let over = matches!(socket.state(), State::Closed | State::TimeWait)
                || (!socket.may_recv()
                    && socket.recv_queue() == 0
                    && socket.state() != State::SynSent);
            if over {
                if let Some(conn) = flow.conn.take() {
                    stack.close(conn);
                    progressed = true;
                }
            }
        }
        progressed
    }

    fn is_finished(&self) -> bool {
        self.flows.iter().all(|f| f.conn.is_none())
    }
}

// ---------------------------------------------------------------------------------------
// Running.

type ServerNode = Node<MemDevice, TlsEchoServer>;

fn setup(
    link: LinkConfig,
    server_config: Arc<rustls::ServerConfig>,
    seed: u64,
) -> (Sim, ServerNode, Stack, MemDevice) {
    let sim = Sim::new();
    let (mut s_stack, s_dev, c_stack, c_dev) = linked(
        link,
        config(SERVER_IP, 2, seed),
        config(CLIENT_IP, 1, seed + 1),
        &sim,
    );
    let server = TlsEchoServer::bind(&mut s_stack, PORT, server_config);
    (sim, Node::new(s_stack, s_dev, server), c_stack, c_dev)
}

/// Runs until the client is finished, then lets FIN/TIME-WAIT exchanges settle, and checks
/// that the server freed everything.
fn run_and_settle<A: Application>(
    sim: &mut Sim,
    server: &mut ServerNode,
    client: &mut Node<MemDevice, A>,
    limit: Duration,
) -> Duration {
    let took = sim
        .run_until(&mut [server as &mut dyn SimNode, client], limit, |nodes| {
            nodes[1].finished()
        })
        .unwrap_or_else(|e| {
            panic!(
                "client finishes: {e}\nserver sockets {:#?}\nclient sockets {:#?}",
                server.stack.describe_connections(),
                client.stack.describe_connections()
            )
        });
    sim.run_until(
        &mut [server as &mut dyn SimNode, client],
        Duration::from_secs(60),
        |_| false,
    )
    .ok();
    assert!(server.app.conns.is_empty(), "server connections left open");
    assert_eq!(
        server.stack.connection_count(),
        0,
        "server stack: {:?}",
        server.stack.stats()
    );
    took
}

fn lossy_link(seed: u64) -> LinkConfig {
    LinkConfig {
        loss: 0.01,
        reorder: 0.01,
        latency: Duration::from_micros(200),
        seed,
        ..LinkConfig::default()
    }
}

/// Echoes 4 MiB over `link` and checks everything both sides saw; returns the virtual time
/// it took and the server's largest send buffer.
fn echo_4_mib(
    version: &'static rustls::SupportedProtocolVersion,
    expected: &str,
    link: LinkConfig,
    seed: u64,
    waker_driven: bool,
) -> (Duration, usize) {
    let generated = cert();
    let server_config = certs::server_config_with_versions(
        generated.chain.clone(),
        generated.key.clone_key(),
        &alpn(&["http/1.1"]),
        &[version],
    )
    .expect("server config");
    let faults = link.loss > 0.0;
    let (mut sim, mut server, mut c_stack, c_dev) = setup(link, server_config, seed);
    server.app.waker_driven = waker_driven;
    let ca = TempFile::new("ca", &generated.cert_pem);
    let client_config =
        certs::client_config(&Roots::CaFile(ca.0.clone()), &alpn(&["http/1.1"])).expect("client");
    let total = 4 * 1024 * 1024;
    let client = TlsEchoClient::connect(
        &mut c_stack,
        vec![FlowSpec {
            config: client_config,
            server_name: ServerName::try_from("localhost").expect("name"),
            bytes: total,
        }],
    );
    let mut client = Node::new(c_stack, c_dev, client);
    let took = run_and_settle(&mut sim, &mut server, &mut client, Duration::from_secs(600));

    let flow = &client.app.flows[0];
    assert_eq!(flow.outcome, Some(Outcome::Echoed));
    assert_eq!(flow.received, total);
    assert_eq!(
        flow.sent_hash.clone().finalize(),
        flow.recv_hash.clone().finalize(),
        "sha256 of what was sent and what came back"
    );
    let info = flow.info.clone().expect("client info");
    assert_eq!(info.version, expected);
    assert!(!info.cipher.is_empty());
    if expected == "TLSv1.3" {
        assert!(info.cipher.starts_with("TLS13_"), "{info:?}");
    } else {
        assert!(info.cipher.starts_with("TLS_ECDHE_ECDSA_"), "{info:?}");
    }
    assert_eq!(info.sni.as_deref(), Some("localhost"));
    assert_eq!(info.alpn.as_deref(), Some("http/1.1"));

    assert!(server.app.errors().is_empty(), "{:?}", server.app.events);
    let infos = server.app.infos();
    assert_eq!(infos.len(), 1);
    assert_eq!(*infos[0], info, "both sides agree");
    assert!(server.app.events.contains(&ServerEvent::Eof));
    assert_eq!(server.app.echoed, total as u64);
    let link = server.device.link_stats();
    if faults {
        assert!(link.lost > 0 && link.reordered > 0, "faults: {link:?}");
    }
    eprintln!(
        "{expected}: 4 MiB echoed in {took} virtual, send buffer up to {} KiB, {info:?}, link {link:?}",
        server.app.max_send_buffer / 1024
    );
    (took, server.app.max_send_buffer)
}

#[test]
fn echo_4_mib_tls13_through_loss_and_reordering() {
    // The server serves a connection only when its waker fires.
    echo_4_mib(&rustls::version::TLS13, "TLSv1.3", lossy_link(11), 11, true);
}

#[test]
fn echo_4_mib_tls12_through_loss_and_reordering() {
    echo_4_mib(
        &rustls::version::TLS12,
        "TLSv1.2",
        lossy_link(21),
        21,
        false,
    );
}

#[test]
fn a_tls_server_woken_by_its_waker_grows_its_send_buffer() {
    // TLS sizes each record to the socket's room, so the socket never sees a write it could
    // not take: unless told, it never marks its send buffer as limiting, and the buffer
    // stayed at its first 4 KiB: 4 MiB echoed at 20 ms RTT took 26 s, against 5.2 s once
    // the buffer grows (the echo client's own pace limits it then).
    let link = LinkConfig {
        latency: Duration::from_millis(10),
        queue_limit: 1 << 20,
        seed: 31,
        ..LinkConfig::default()
    };
    let (took, max_send_buffer) = echo_4_mib(&rustls::version::TLS13, "TLSv1.3", link, 31, true);
    assert!(
        max_send_buffer >= 256 * 1024,
        "send buffer up to {max_send_buffer} bytes, 4 MiB in {took}"
    );
    assert!(took < Duration::from_secs(10), "4 MiB in {took}");
}

#[test]
fn alpn_follows_server_preference() {
    let generated = cert();
    let server_config = certs::server_config(
        generated.chain.clone(),
        generated.key.clone_key(),
        &alpn(&["h2", "http/1.1"]),
    )
    .expect("server config");
    let (mut sim, mut server, mut c_stack, c_dev) = setup(LinkConfig::default(), server_config, 31);
    let offers: [&[&str]; 4] = [&["http/1.1", "h2"], &["http/1.1"], &[], &["foo"]];
    let specs = offers
        .iter()
        .map(|offer| FlowSpec {
            config: certs::client_config(&Roots::Insecure, &alpn(offer)).expect("client"),
            server_name: ServerName::try_from("localhost").expect("name"),
            bytes: 1000,
        })
        .collect();
    let client = TlsEchoClient::connect(&mut c_stack, specs);
    let mut client = Node::new(c_stack, c_dev, client);
    run_and_settle(&mut sim, &mut server, &mut client, Duration::from_secs(60));

    let flows = &client.app.flows;
    let agreed: Vec<Option<String>> = flows[..3]
        .iter()
        .map(|f| {
            assert_eq!(f.outcome, Some(Outcome::Echoed), "{:?}", f.info);
            f.info.as_ref().expect("info").alpn.clone()
        })
        .collect();
    assert_eq!(
        agreed,
        vec![Some("h2".to_string()), Some("http/1.1".to_string()), None]
    );
    match &flows[3].outcome {
        Some(Outcome::Failed(e)) => assert!(
            e.contains("NoApplicationProtocol") || e.contains("no_application_protocol"),
            "{e}"
        ),
        other => panic!("client offering only foo: {other:?}"),
    }
    assert!(flows[3].info.is_none());
    let errors = server.app.errors();
    assert_eq!(errors.len(), 1, "{:?}", server.app.events);
    assert!(
        errors[0].contains("doesn't support any known protocol"),
        "{errors:?}"
    );
}

/// A real ClientHello, as rustls writes it.
fn client_hello() -> Vec<u8> {
    let config = certs::client_config(&Roots::Insecure, &alpn(&["http/1.1"])).expect("client");
    let mut conn =
        rustls::ClientConnection::new(config, ServerName::try_from("localhost").expect("name"))
            .expect("client connection");
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).expect("write_tls to a Vec");
    }
    assert_eq!(out[0], 0x16, "handshake record");
    out
}

#[test]
fn bad_input_on_a_tls_port_is_answered_and_freed() {
    let generated = cert();
    let server_config = certs::server_config(
        generated.chain.clone(),
        generated.key.clone_key(),
        &alpn(&["http/1.1"]),
    )
    .expect("server config");
    let (mut sim, mut server, mut c_stack, c_dev) = setup(LinkConfig::default(), server_config, 41);
    server.app.waker_driven = true;
    let mut garbage = vec![0u8; 600];
    fastrand::Rng::with_seed(7).fill(&mut garbage);
    // Random, but not starting like a TLS record, so that it is garbage from the first byte.
    garbage[0] = 0xab;
    let hello = client_hello();
    let half = hello[..hello.len() / 2].to_vec();
    let client = RawClient::connect(
        &mut c_stack,
        vec![
            (garbage, false),
            (b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(), false),
            (half.clone(), false),
            (half, true),
        ],
    );
    let mut client = Node::new(c_stack, c_dev, client);
    run_and_settle(&mut sim, &mut server, &mut client, Duration::from_secs(60));

    let flows = &client.app.flows;
    for (name, flow) in ["garbage", "GET"].iter().zip(&flows[..2]) {
        assert!(
            flow.received.first() == Some(&0x15),
            "{name}: expected an alert record, got {:02x?}",
            &flow.received[..flow.received.len().min(16)]
        );
    }
    // The truncated hellos get nothing but a close (the silent one after the timeout).
    for flow in &flows[2..] {
        assert!(
            flow.received.is_empty() || flow.received[0] == 0x15,
            "{:02x?}",
            flow.received
        );
    }
    let events = &server.app.events;
    assert!(
        events.contains(&ServerEvent::HandshakeTimeout),
        "silent client timed out: {events:?}"
    );
    let errors = server.app.errors();
    assert!(errors.len() >= 3, "{events:?}");
    assert!(
        errors
            .iter()
            .any(|e| e.contains("during the TLS handshake")),
        "truncated hello + FIN: {events:?}"
    );
    assert!(server.app.infos().is_empty());
    eprintln!("server events: {events:?}");
}

#[test]
fn client_verifies_the_server_certificate() {
    let generated = cert();
    let server_config = certs::server_config(
        generated.chain.clone(),
        generated.key.clone_key(),
        &alpn(&["http/1.1"]),
    )
    .expect("server config");
    let (mut sim, mut server, mut c_stack, c_dev) = setup(LinkConfig::default(), server_config, 51);
    let right = TempFile::new("right", &generated.cert_pem);
    let other = cert();
    let wrong = TempFile::new("wrong", &other.cert_pem);
    let trusting = certs::client_config(&Roots::CaFile(right.0.clone()), &[]).expect("client");
    let distrusting = certs::client_config(&Roots::CaFile(wrong.0.clone()), &[]).expect("client");
    let specs = vec![
        FlowSpec {
            config: trusting.clone(),
            server_name: ServerName::try_from("localhost").expect("name"),
            bytes: 5000,
        },
        // The certificate's IP SAN.
        FlowSpec {
            config: trusting,
            server_name: ServerName::try_from("10.7.0.2").expect("ip"),
            bytes: 5000,
        },
        FlowSpec {
            config: distrusting,
            server_name: ServerName::try_from("localhost").expect("name"),
            bytes: 5000,
        },
    ];
    let client = TlsEchoClient::connect(&mut c_stack, specs);
    let mut client = Node::new(c_stack, c_dev, client);
    run_and_settle(&mut sim, &mut server, &mut client, Duration::from_secs(60));

    let flows = &client.app.flows;
    assert_eq!(flows[0].outcome, Some(Outcome::Echoed));
    assert_eq!(flows[1].outcome, Some(Outcome::Echoed));
    // No SNI for an IP address.
    assert_eq!(flows[1].info.as_ref().and_then(|i| i.sni.clone()), None);
    match &flows[2].outcome {
        Some(Outcome::Failed(e)) => assert!(e.contains("invalid peer certificate"), "{e}"),
        other => panic!("untrusted certificate accepted: {other:?}"),
    }
    let errors = server.app.errors();
    assert_eq!(errors.len(), 1, "{:?}", server.app.events);
    assert!(errors[0].contains("alert"), "{errors:?}");
    eprintln!("client: {:?}; server: {errors:?}", flows[2].outcome);
}

/// A TLS client made of rustls and a raw socket, to misbehave on purpose: it sends its
/// message and then a bare FIN, without close_notify.
struct TruncatingClient {
    conn: Option<TcpHandle>,
    tls: rustls::ClientConnection,
    out: Vec<u8>,
    message_sent: bool,
    fin_sent: bool,
    plaintext: Vec<u8>,
    clean_close: bool,
}

impl Application for TruncatingClient {
    fn poll(&mut self, stack: &mut Stack, _now: Instant) -> bool {
        let Some(handle) = self.conn.as_ref() else {
            return false;
        };
        let mut progressed = false;
        let socket = stack.socket(handle);
        let mut buf = [0u8; 4096];
        while socket.can_recv() {
            let n = socket.recv_slice(&mut buf).unwrap_or(0);
            if n == 0 {
                break;
            }
            progressed = true;
            let mut data = &buf[..n];
            while !data.is_empty() {
                self.tls.read_tls(&mut data).expect("read_tls");
                let state = self.tls.process_new_packets().expect("TLS from the server");
                self.clean_close |= state.peer_has_closed();
            }
        }
        let mut plain = [0u8; 4096];
        while let Ok(n) = std::io::Read::read(&mut self.tls.reader(), &mut plain) {
            if n == 0 {
                break;
            }
            self.plaintext.extend_from_slice(&plain[..n]);
        }
        if !self.tls.is_handshaking() && !self.message_sent {
            std::io::Write::write_all(&mut self.tls.writer(), b"hello").expect("write");
            self.message_sent = true;
        }
        while self.tls.wants_write() {
            self.tls
                .write_tls(&mut self.out)
                .expect("write_tls to a Vec");
        }
        if socket.can_send() && !self.out.is_empty() {
            let n = socket.send_slice(&self.out).unwrap_or(0);
            self.out.drain(..n);
            progressed |= n > 0;
        }
        if self.message_sent && self.out.is_empty() && !self.fin_sent {
            socket.close();
            self.fin_sent = true;
            progressed = true;
        }
        if matches!(socket.state(), State::Closed | State::TimeWait)
            || (self.fin_sent && !socket.may_recv() && socket.recv_queue() == 0)
        {
            if let Some(handle) = self.conn.take() {
                stack.close(handle);
            }
            progressed = true;
        }
        progressed
    }

    fn is_finished(&self) -> bool {
        self.conn.is_none()
    }
}

#[test]
fn fin_without_close_notify_reads_as_eof() {
    let generated = cert();
    let server_config = certs::server_config(
        generated.chain.clone(),
        generated.key.clone_key(),
        &alpn(&["http/1.1"]),
    )
    .expect("server config");
    let (mut sim, mut server, mut c_stack, c_dev) = setup(LinkConfig::default(), server_config, 61);
    let config = certs::client_config(&Roots::Insecure, &[]).expect("client");
    let tls = rustls::ClientConnection::new(config, ServerName::try_from("localhost").expect("n"))
        .expect("client connection");
    let client = TruncatingClient {
        conn: Some(c_stack.connect(server_endpoint()).expect("connect")),
        tls,
        out: Vec::new(),
        message_sent: false,
        fin_sent: false,
        plaintext: Vec::new(),
        clean_close: false,
    };
    let mut client = Node::new(c_stack, c_dev, client);
    run_and_settle(&mut sim, &mut server, &mut client, Duration::from_secs(60));

    assert_eq!(
        client.app.plaintext, b"hello",
        "echoed before the server closed"
    );
    assert!(client.app.clean_close, "the server sent close_notify");
    let events = &server.app.events;
    assert!(server.app.errors().is_empty(), "{events:?}");
    assert_eq!(server.app.infos().len(), 1, "{events:?}");
    assert!(events.contains(&ServerEvent::Eof), "{events:?}");
}
