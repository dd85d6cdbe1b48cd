//! Peers that vanish mid-request, mid-response and mid-TLS-handshake, by RST or by going
//! silent, over the in-memory link: afterwards the server's `/stats` shows connections
//! and TCP sockets back to the baseline (only the `/stats` request's own connection).

mod common;

use common::http::{HttpClient, Req};
use common::{config, linked, CLIENT_IP, SERVER_IP};
use rustls::pki_types::ServerName;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{IpAddress, IpEndpoint};
use tapir::device::memlink::LinkConfig;
use tapir::runtime::sim::{Node, Sim, SimNode};
use tapir::runtime::Application;
use tapir::service::builtin::Builtin;
use tapir::service::server::StatsHandle;
use tapir::service::{Body, ConnInfo, RequestBody, Server, ServerConfig};
use tapir::stack::{Stack, TcpHandle};
use tapir::transport::certs::{self, Roots};

const HTTP: u16 = 80;
const HTTPS: u16 = 443;
/// The timeouts that find silent peers, short for the test.
const TCP_KEEPALIVE: Duration = Duration::from_secs(2);
const TCP_TIMEOUT: Duration = Duration::from_secs(5);
const STALL: std::time::Duration = std::time::Duration::from_secs(5);
const TLS_HANDSHAKE: std::time::Duration = std::time::Duration::from_secs(3);

fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    f.push(kind);
    f.push(flags);
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// h2c preface, SETTINGS, and a request on stream 1 (`end`: no body follows).
fn h2_request(method_index: u8, path: &str, end: bool) -> Vec<u8> {
    let mut block = vec![0x80 | method_index, 0x86, 0x04, path.len() as u8];
    block.extend_from_slice(path.as_bytes());
    block.extend_from_slice(&[0x01, 4]);
    block.extend_from_slice(b"test");
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(h2_frame(4, 0, 0, &[]));
    out.extend(h2_frame(1, 0x4 | u8::from(end), 1, &block));
    out
}

fn client_hello() -> Vec<u8> {
    let alpn = [b"h2".to_vec(), b"http/1.1".to_vec()];
    let config = certs::client_config(&Roots::Insecure, &alpn).expect("client config");
    let name = ServerName::try_from("localhost").expect("name");
    let mut conn = rustls::ClientConnection::new(config, name).expect("client connection");
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).expect("write_tls to a Vec");
    }
    out
}

/// How the peer goes away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Vanish {
    /// It resets the connection.
    Rst,
    /// It stops sending anything at all (cable pulled, machine gone).
    Silence,
}

/// A client that sends `bytes`, reads up to `read` bytes of the answer without reading
/// more, and is then ready to vanish.
struct Peer {
    handle: Option<TcpHandle>,
    bytes: Vec<u8>,
    sent: usize,
    read: usize,
    got: usize,
}

impl Peer {
    fn ready(&self) -> bool {
        self.sent == self.bytes.len() && self.got >= self.read
    }
}

impl Application for Peer {
    fn poll(&mut self, stack: &mut Stack, _now: Instant) -> bool {
        let Some(handle) = self.handle.as_ref() else {
            return false;
        };
        let socket = stack.socket(handle);
        let mut progress = false;
        while self.sent < self.bytes.len() && socket.can_send() {
            let n = socket.send_slice(&self.bytes[self.sent..]).unwrap_or(0);
            if n == 0 {
                break;
            }
            self.sent += n;
            progress = true;
        }
        let mut buf = [0u8; 4096];
        while self.got < self.read && socket.can_recv() {
            let want = (self.read - self.got).min(buf.len());
            let n = socket.recv_slice(&mut buf[..want]).unwrap_or(0);
            if n == 0 {
                break;
            }
            self.got += n;
            progress = true;
        }
        progress
    }

    fn is_finished(&self) -> bool {
        self.ready()
    }
}

type Handler = Box<dyn Fn(http::Request<RequestBody>, &ConnInfo) -> http::Response<Body>>;

/// The number after `"name": ` in a `/stats` body.
fn stat(json: &str, name: &str) -> u64 {
    let key = format!("\"{name}\": ");
    let at = json
        .find(&key)
        .unwrap_or_else(|| panic!("{name} in {json}"))
        + key.len();
    json[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a number for {name} in {json}"))
}

/// Connects to `port`, sends `bytes`, reads `read` bytes, vanishes as told; then checks
/// that the server frees everything and reports the baseline on `/stats`. Returns the
/// virtual time the server took to free the connection after the peer vanished.
fn vanish(port: u16, bytes: Vec<u8>, read: usize, how: Vanish) -> Duration {
    let mut sim = Sim::new();
    let mut server_stack = config(SERVER_IP, 2, 51);
    server_stack.tcp.keep_alive = Some(TCP_KEEPALIVE);
    server_stack.tcp.timeout = Some(TCP_TIMEOUT);
    let (mut s_stack, s_dev, mut c_stack, c_dev) = linked(
        LinkConfig::default(),
        server_stack,
        config(CLIENT_IP, 1, 52),
        &sim,
    );
    let stats = StatsHandle::default();
    let builtin = Builtin::new(stats.clone());
    let handler: Handler = Box::new(move |req, info: &ConnInfo| builtin.handle(req, info));
    let mut server_config = ServerConfig::default();
    server_config.h2.stall_timeout = STALL;
    server_config.tls_handshake_timeout = TLS_HANDSHAKE;
    let mut server = Server::with_stats(handler, server_config, stats.clone());
    server.bind_http(&mut s_stack, HTTP).unwrap();
    let generated = certs::self_signed(&["localhost".to_string()], &[]).expect("certificate");
    let alpn = [b"h2".to_vec(), b"http/1.1".to_vec()];
    let tls = certs::server_config(generated.chain, generated.key, &alpn).expect("tls");
    server.bind_https(&mut s_stack, HTTPS, tls).unwrap();
    let baseline = s_stack.stats().connections;
    let handle = c_stack
        .connect(IpEndpoint::new(IpAddress::Ipv4(SERVER_IP), port))
        .expect("connect");
    let peer = Peer {
        handle: Some(handle),
        bytes,
        sent: 0,
        read,
        got: 0,
    };
    let mut server = Node::new(s_stack, s_dev, server);
    let mut client = Node::new(c_stack, c_dev, peer);
    sim.run_until(
        &mut [&mut server as &mut dyn SimNode, &mut client],
        Duration::from_secs(60),
        |nodes| nodes[1].finished(),
    )
    .expect("the peer gets as far as it wants");
    // Let the server take in what is on the wire (this ends at the time limit, or earlier
    // when nothing is left to happen).
    let _ = sim.run_until(
        &mut [&mut server as &mut dyn SimNode, &mut client],
        Duration::from_millis(200),
        |_| false,
    );
    assert_eq!(
        stats.get().connections_open,
        1,
        "the connection is open on the server before the peer vanishes: {:?} {:?}",
        stats.get(),
        server.stack.describe_connections()
    );
    let gone = sim.now();
    match how {
        Vanish::Rst => {
            if let Some(handle) = client.app.handle.take() {
                client.stack.abort(handle);
            }
            let s = stats.clone();
            sim.run_until(
                &mut [&mut server as &mut dyn SimNode, &mut client],
                Duration::from_secs(120),
                |_| s.get().connections_open == 0 && s.get().stack.connections == baseline,
            )
            .unwrap_or_else(|e| panic!("freed after RST: {e}; {:?}", stats.get()));
        }
        Vanish::Silence => {
            // The client node is not stepped any more: nothing comes from it.
            let s = stats.clone();
            sim.run_until(
                &mut [&mut server as &mut dyn SimNode],
                Duration::from_secs(120),
                |_| s.get().connections_open == 0 && s.get().stack.connections == baseline,
            )
            .unwrap_or_else(|e| panic!("freed after silence: {e}; {:?}", stats.get()));
        }
    }
    let took = sim.now() - gone;
    // Back from the dead: a fresh connection asks for /stats (the client stack answers
    // whatever the server sent its old connection meanwhile).
    let probe = HttpClient::connect(
        &mut client.stack,
        IpEndpoint::new(IpAddress::Ipv4(SERVER_IP), HTTP),
        vec![vec![Req::get("/stats"), Req::get("/stats")]],
        false,
    );
    let mut asker = Node::new(client.stack, client.device, probe);
    sim.run_until(
        &mut [&mut server as &mut dyn SimNode, &mut asker],
        Duration::from_secs(30),
        |nodes| nodes[1].finished(),
    )
    .expect("/stats answers");
    let flow = &asker.app.flows[0];
    assert_eq!(flow.error, None);
    // The counters are as of the turn before a request; the second one sees the first's
    // connection counted.
    let json = String::from_utf8_lossy(&flow.responses[1].body).into_owned();
    assert_eq!(stat(&json, "connections_open"), 1, "{json}");
    assert_eq!(
        stat(&json, "tcp_connections") as usize,
        baseline + 1,
        "only the /stats connection holds a socket: {json}"
    );
    took
}

const MIB: usize = 1 << 20;

fn h1_upload() -> Vec<u8> {
    let mut req = format!(
        "POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\n\r\n",
        10 * MIB
    )
    .into_bytes();
    // Less than the server's window: it all gets there although nobody reads the echo.
    req.extend(std::iter::repeat_n(b'u', 40 * 1024));
    req
}

fn h2_upload() -> Vec<u8> {
    let mut req = h2_request(3, "/echo", false); // :method POST is static index 3
    for _ in 0..3 {
        req.extend(h2_frame(0, 0, 1, &[b'u'; 16 * 1024]));
    }
    req
}

fn h1_download() -> Vec<u8> {
    b"GET /bytes/1000000000 HTTP/1.1\r\nHost: test\r\n\r\n".to_vec()
}

fn h2_download() -> Vec<u8> {
    h2_request(2, "/bytes/1000000000", true) // :method GET is static index 2
}

#[test]
fn upload_cut_by_rst_is_freed() {
    vanish(HTTP, h1_upload(), 0, Vanish::Rst);
    vanish(HTTP, h2_upload(), 0, Vanish::Rst);
}

#[test]
fn upload_cut_by_silence_is_freed_by_keepalive_or_stall_timeout() {
    // HTTP/1.1 waits for the body; TCP keep-alive probes go unanswered.
    let took = vanish(HTTP, h1_upload(), 0, Vanish::Silence);
    assert!(took < TCP_TIMEOUT * 3, "h1 freed after {took}");
    // HTTP/2: the stall timeout (or the TCP timeout) frees it.
    let took = vanish(HTTP, h2_upload(), 0, Vanish::Silence);
    assert!(took < TCP_TIMEOUT * 3, "h2 freed after {took}");
}

#[test]
fn download_abandoned_by_rst_is_freed() {
    vanish(HTTP, h1_download(), 300 * 1024, Vanish::Rst);
    vanish(HTTP, h2_download(), 32 * 1024, Vanish::Rst);
}

#[test]
fn download_abandoned_by_silence_is_freed_by_the_tcp_timeout() {
    // The reader stopped reading (its window is shut), then vanished.
    let took = vanish(HTTP, h1_download(), 300 * 1024, Vanish::Silence);
    assert!(took < TCP_TIMEOUT * 3, "h1 freed after {took}");
    // HTTP/2 without WINDOW_UPDATE: the first 64 KiB window.
    let took = vanish(HTTP, h2_download(), 32 * 1024, Vanish::Silence);
    assert!(took < TCP_TIMEOUT * 3, "h2 freed after {took}");
}

#[test]
fn tls_handshake_abandoned_is_freed() {
    // The ClientHello is answered (ServerHello .. Finished), then the client is gone.
    vanish(HTTPS, client_hello(), 1, Vanish::Rst);
    let took = vanish(HTTPS, client_hello(), 1, Vanish::Silence);
    assert!(took < TCP_TIMEOUT * 3, "freed after {took}");
    // Half a ClientHello, then silence: the TLS handshake timeout.
    let hello = client_hello();
    let took = vanish(HTTPS, hello[..hello.len() / 2].to_vec(), 0, Vanish::Silence);
    let limit: Duration = TLS_HANDSHAKE.into();
    assert!(
        took >= limit && took < TCP_TIMEOUT * 3,
        "freed after {took}"
    );
}
