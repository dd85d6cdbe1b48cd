//! Shared pieces of the in-memory benchmarks: a tapir server (built-in site) and a client
//! application on two stacks joined by the in-memory link, and a driver stepping both on a
//! virtual clock.
//!
//! The driver is the loop of `tapir::runtime::sim::Sim::run_until`, written out here so that
//! the stop condition can look at the concrete applications (open connections, answered
//! requests). Virtual time costs nothing, so a benchmark iteration measures the CPU work of
//! both stacks, TLS and HTTP — client and server together, on one core.
#![allow(dead_code)]

use std::sync::Arc;
use std::task::Context;

use http::{Request, Response};
use rustls::pki_types::ServerName;
use smoltcp::socket::tcp::{self, State};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, IpAddress, IpCidr, IpEndpoint, Ipv4Address};
use tapir::client::fetch::{ClientWork, Job, Outcome, Sink, WithClient};
use tapir::client::{Client, ClientConfig, Scheme, Target, Version};
use tapir::device::memlink::{self, LinkConfig, MemDevice};
use tapir::error::Chain;
use tapir::runtime::sim::{Node, SimNode, EPOCH_MICROS};
use tapir::runtime::wake::{ConnWaker, ReadyQueue};
use tapir::runtime::Application;
use tapir::service::builtin::Builtin;
use tapir::service::server::StatsHandle;
use tapir::service::{Body, ConnInfo, RequestBody, ResponseBody, Server, ServerConfig};
use tapir::stack::{Stack, StackConfig, TcpHandle};
use tapir::transport::certs::{self, Roots};
use tapir::transport::tcp::TcpStream;
use tapir::transport::tls::ClientTls;
use tapir::transport::{ReadStatus, Transport};

/// The server's address on the link.
pub const SERVER_IP: Ipv4Address = Ipv4Address::new(10, 7, 0, 2);
/// The client's address on the link.
pub const CLIENT_IP: Ipv4Address = Ipv4Address::new(10, 7, 0, 1);
/// Cleartext HTTP port (HTTP/1.1 and h2c).
pub const HTTP_PORT: u16 = 80;
/// HTTPS port (ALPN h2, http/1.1).
pub const HTTPS_PORT: u16 = 443;

/// The handler type of the benchmark server: the built-in site.
pub type BoxHandler = Box<dyn Fn(Request<RequestBody>, &ConnInfo) -> Response<Body>>;
/// The benchmark server.
pub type Srv = Server<BoxHandler>;

/// Every request of a benchmark got a 200 response, and no connection broke.
pub fn answered_cleanly(errors: &[String], bad_status: u64) {
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(bad_status, 0);
}

/// A link with room for every frame of `connections` connections that all send at once
/// (a dropped frame would add a retransmission timeout to what a benchmark measures).
pub fn roomy_link(connections: usize) -> LinkConfig {
    LinkConfig {
        queue_limit: LinkConfig::default().queue_limit.max(4 * connections),
        ..LinkConfig::default()
    }
}

/// A stack configuration for one end of the link.
pub fn stack_config(ip: Ipv4Address, mac_last: u8, seed: u64) -> StackConfig {
    let mut config = StackConfig::new(
        EthernetAddress([0x02, 0, 0, 0, 0, mac_last]),
        vec![IpCidr::new(IpAddress::Ipv4(ip), 24)],
    );
    config.seed = seed;
    config
}

/// A rustls server configuration with a fresh self-signed certificate, offering h2 and
/// http/1.1 by ALPN.
pub fn tls_server_config() -> Arc<rustls::ServerConfig> {
    let cert = certs::self_signed(
        &["bench.test".to_string()],
        &[std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 7, 0, 2))],
    )
    .expect("self-signed certificate");
    certs::server_config(
        cert.chain,
        cert.key,
        &[b"h2".to_vec(), b"http/1.1".to_vec()],
    )
    .expect("server TLS config")
}

/// A server node and a client node joined by a perfect in-memory link, and their clock.
pub struct Pair<C: Application> {
    /// The virtual time.
    pub now: Instant,
    /// tapir's server with the built-in site on port 80 (and 443 with `tls`).
    pub server: Node<MemDevice, Srv>,
    /// The client application on its own stack.
    pub client: Node<MemDevice, C>,
}

impl<C: Application> Pair<C> {
    /// Builds the pair. `tune` adjusts both stack configurations; `make_client` builds the
    /// client application on the client stack.
    pub fn new(
        link: LinkConfig,
        tls: Option<Arc<rustls::ServerConfig>>,
        tune: impl Fn(&mut StackConfig),
        make_client: impl FnOnce(&mut Stack) -> C,
    ) -> Self {
        let now = Instant::from_micros(EPOCH_MICROS);
        let (mut s_dev, mut c_dev) = memlink::pair(link).expect("valid link");
        let mut s_config = stack_config(SERVER_IP, 2, 21);
        let mut c_config = stack_config(CLIENT_IP, 1, 22);
        tune(&mut s_config);
        tune(&mut c_config);
        let mut s_stack = Stack::new(s_config, &mut s_dev, now).expect("server stack");
        let mut c_stack = Stack::new(c_config, &mut c_dev, now).expect("client stack");
        let stats = StatsHandle::default();
        let builtin = Builtin::new(stats.clone());
        let handler: BoxHandler = Box::new(move |req, info: &ConnInfo| builtin.handle(req, info));
        let mut server = Server::with_stats(handler, ServerConfig::default(), stats);
        server
            .bind_http(&mut s_stack, HTTP_PORT)
            .expect("bind http");
        if let Some(tls) = tls {
            server
                .bind_https(&mut s_stack, HTTPS_PORT, tls)
                .expect("bind https");
        }
        let app = make_client(&mut c_stack);
        Pair {
            now,
            server: Node::new(s_stack, s_dev, server),
            client: Node::new(c_stack, c_dev, app),
        }
    }

    /// Steps both nodes until `done` holds (checked after every step) or `limit` of virtual
    /// time passes. `before` is called before each node's turn with `true` for the server
    /// (the memory benchmark uses it to attribute allocations).
    pub fn drive_tagged(
        &mut self,
        limit: Duration,
        mut before: impl FnMut(bool),
        done: impl FnMut(&Node<MemDevice, Srv>, &Node<MemDevice, C>) -> bool,
    ) -> Result<Duration, String> {
        self.drive_stepping(
            limit,
            |server, now| {
                before(true);
                let activity = server.step(now);
                before(false);
                activity
            },
            done,
        )
    }

    /// [`Pair::drive`], with the server's turns taken by `step_server` (which steps it).
    pub fn drive_stepping(
        &mut self,
        limit: Duration,
        mut step_server: impl FnMut(&mut Node<MemDevice, Srv>, Instant) -> bool,
        mut done: impl FnMut(&Node<MemDevice, Srv>, &Node<MemDevice, C>) -> bool,
    ) -> Result<Duration, String> {
        let start = self.now;
        let deadline = start + limit;
        loop {
            let mut activity = step_server(&mut self.server, self.now);
            activity |= self.client.step(self.now);
            if done(&self.server, &self.client) {
                return Ok(self.now - start);
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
            .min();
            match next {
                Some(at) if at > self.now => self.now = at,
                Some(_) => self.now += Duration::from_millis(1),
                None => return Err(format!("stalled at {}", self.now - start)),
            }
            if self.now > deadline {
                return Err(format!("not done within {limit} of virtual time"));
            }
        }
    }

    /// Steps both nodes for `period` of virtual time, whatever happens.
    pub fn run_for(&mut self, period: Duration, mut before: impl FnMut(bool)) {
        let end = self.now + period;
        loop {
            before(true);
            let mut activity = self.server.step(self.now);
            before(false);
            activity |= self.client.step(self.now);
            if activity {
                continue;
            }
            let next = [
                self.server.next_event(self.now),
                self.client.next_event(self.now),
            ]
            .into_iter()
            .flatten()
            .min();
            match next {
                Some(at) if at > end => break,
                Some(at) if at > self.now => self.now = at,
                Some(_) => self.now += Duration::from_millis(1),
                None => break,
            }
        }
        self.now = end;
    }

    /// [`Pair::drive_tagged`] without the hook.
    pub fn drive(
        &mut self,
        limit: Duration,
        done: impl FnMut(&Node<MemDevice, Srv>, &Node<MemDevice, C>) -> bool,
    ) -> Result<Duration, String> {
        self.drive_tagged(limit, |_| {}, done)
    }
}

impl Pair<H1Clients> {
    /// Opens `connections` keep-alive connections in batches of 100 (within the listen
    /// backlog, so no SYN waits for a retransmission), each making one request for `path`.
    /// `before` is the hook of [`Pair::drive_tagged`].
    pub fn open_in_batches(
        &mut self,
        connections: usize,
        path: &str,
        limit: Duration,
        mut before: impl FnMut(bool),
    ) -> Result<(), String> {
        let mut opened = 0;
        while opened < connections {
            let batch = (connections - opened).min(100);
            self.client.app.open(&mut self.client.stack, batch, path, 1);
            self.drive_tagged(limit, &mut before, |_, c| c.app.round_done())?;
            opened += batch;
        }
        Ok(())
    }
}

/// Where a streaming HTTP/1.1 response parser is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Parse {
    Head,
    Body(u64),
    ChunkSize,
    ChunkData(u64),
    ChunkEnd(u8),
    Trailer,
}

/// How an [`H1Conn`] reaches the server.
enum Link {
    /// Plain TCP: the client reads and writes the socket.
    Tcp(TcpHandle),
    /// HTTPS through tapir's TLS client transport; `partial` bytes of the request are out.
    Tls {
        stream: Box<ClientTls>,
        partial: usize,
    },
}

/// One keep-alive HTTP/1.1 connection of [`H1Clients`].
struct H1Conn {
    handle: Option<Link>,
    /// Requests still to send in this round.
    to_send: u64,
    /// A request is out and its response not complete.
    waiting: bool,
    parser: ResponseParser,
}

/// A streaming HTTP/1.1 response parser (Content-Length or chunked bodies, counted, not
/// kept).
struct ResponseParser {
    state: Parse,
    line: Vec<u8>,
    /// The status of the last response head.
    status: u16,
}

impl ResponseParser {
    fn new() -> Self {
        ResponseParser {
            state: Parse::Head,
            line: Vec::new(),
            status: 0,
        }
    }

    /// Feeds received bytes; returns the number of responses completed and body bytes seen.
    fn feed(&mut self, mut data: &[u8]) -> Result<(u64, u64), String> {
        let mut done = 0;
        let mut body = 0;
        while !data.is_empty() {
            match self.state {
                Parse::Head => {
                    let old = self.line.len();
                    self.line.extend_from_slice(data);
                    let from = old.saturating_sub(3);
                    let Some(pos) = find(&self.line[from..], b"\r\n\r\n") else {
                        if self.line.len() > 64 * 1024 {
                            return Err("response head over 64 KiB".into());
                        }
                        break;
                    };
                    let end = from + pos + 4;
                    data = &data[end - old..];
                    let mut headers = [httparse::EMPTY_HEADER; 32];
                    let mut response = httparse::Response::new(&mut headers);
                    match response.parse(&self.line[..end]) {
                        Ok(httparse::Status::Complete(_)) => {}
                        other => return Err(format!("bad response head: {other:?}")),
                    }
                    self.status = response.code.unwrap_or(0);
                    let mut length = None;
                    let mut chunked = false;
                    for h in response.headers.iter() {
                        if h.name.eq_ignore_ascii_case("content-length") {
                            length = std::str::from_utf8(h.value)
                                .ok()
                                .and_then(|v| v.trim().parse::<u64>().ok());
                        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                            chunked = h.value.eq_ignore_ascii_case(b"chunked");
                        }
                    }
                    self.line.clear();
                    self.state = match (length, chunked) {
                        (_, true) => Parse::ChunkSize,
                        (Some(0), false) => {
                            done += 1;
                            Parse::Head
                        }
                        (Some(n), false) => Parse::Body(n),
                        (None, false) => return Err("response without a length".into()),
                    };
                }
                Parse::Body(n) | Parse::ChunkData(n) => {
                    let k = (data.len() as u64).min(n);
                    body += k;
                    data = &data[k as usize..];
                    let left = n - k;
                    self.state = match (self.state, left) {
                        (Parse::Body(_), 0) => {
                            done += 1;
                            Parse::Head
                        }
                        (Parse::Body(_), _) => Parse::Body(left),
                        (_, 0) => Parse::ChunkEnd(2),
                        (_, _) => Parse::ChunkData(left),
                    };
                }
                Parse::ChunkEnd(k) => {
                    let skip = (k as usize).min(data.len());
                    data = &data[skip..];
                    self.state = if skip == k as usize {
                        Parse::ChunkSize
                    } else {
                        Parse::ChunkEnd(k - skip as u8)
                    };
                }
                Parse::ChunkSize | Parse::Trailer => {
                    let Some(pos) = find(data, b"\n") else {
                        self.line.extend_from_slice(data);
                        break;
                    };
                    self.line.extend_from_slice(&data[..pos + 1]);
                    data = &data[pos + 1..];
                    let text = String::from_utf8_lossy(&self.line);
                    let text = text.trim();
                    if self.state == Parse::Trailer {
                        if text.is_empty() {
                            done += 1;
                            self.state = Parse::Head;
                        }
                    } else {
                        let size = text.split(';').next().unwrap_or("").trim();
                        let size = u64::from_str_radix(size, 16)
                            .map_err(|_| format!("bad chunk size line {text:?}"))?;
                        self.state = if size == 0 {
                            Parse::Trailer
                        } else {
                            Parse::ChunkData(size)
                        };
                    }
                    self.line.clear();
                }
            }
        }
        Ok((done, body))
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A minimal keep-alive HTTP/1.1 client on raw stack sockets (tapir's client speaks HTTP/2
/// only): each connection sends one request, reads the whole response, sends the next.
/// Responses are parsed (Content-Length or chunked) and their bodies counted, not kept.
pub struct H1Clients {
    conns: Vec<H1Conn>,
    request: Vec<u8>,
    /// Responses completed since the start.
    pub completed: u64,
    /// Body bytes received since the start.
    pub body_bytes: u64,
    /// Bytes received since the start (heads, framing and bodies).
    pub wire_bytes: u64,
    /// Responses whose status was not 200.
    pub bad_status: u64,
    /// Broken connections and parse errors.
    pub errors: Vec<String>,
    /// The TLS client configuration of connections opened later (HTTPS), if any.
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl H1Clients {
    /// Opens `connections` connections to the server's HTTP port; each will ask for `path`.
    pub fn connect(stack: &mut Stack, connections: usize, path: &str) -> Self {
        H1Clients::connect_with(stack, connections, path, None)
    }

    /// Like [`H1Clients::connect`], over TLS to the HTTPS port when `tls` is given (the
    /// client offers no ALPN, so the server speaks HTTP/1.1).
    fn connect_with(
        stack: &mut Stack,
        connections: usize,
        path: &str,
        tls: Option<&Arc<rustls::ClientConfig>>,
    ) -> Self {
        let port = if tls.is_some() { HTTPS_PORT } else { HTTP_PORT };
        let server = IpEndpoint::new(IpAddress::Ipv4(SERVER_IP), port);
        let conns = (0..connections)
            .map(|_| H1Conn {
                handle: Some({
                    let handle = stack.connect(server).expect("connect");
                    match tls {
                        None => Link::Tcp(handle),
                        Some(config) => {
                            let name = ServerName::try_from("bench.test").expect("name");
                            let stream =
                                ClientTls::connect(TcpStream::new(handle), config.clone(), name)
                                    .expect("TLS client");
                            Link::Tls {
                                stream: Box::new(stream),
                                partial: 0,
                            }
                        }
                    }
                }),
                to_send: 0,
                waiting: false,
                parser: ResponseParser::new(),
            })
            .collect();
        H1Clients {
            conns,
            request: format!("GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n").into_bytes(),
            completed: 0,
            body_bytes: 0,
            wire_bytes: 0,
            bad_status: 0,
            errors: Vec::new(),
            tls: tls.cloned(),
        }
    }

    /// No connections yet: [`H1Clients::open`] adds them.
    pub fn connect_later() -> Self {
        H1Clients::connect_with_later(None)
    }

    /// No connections yet: [`H1Clients::open`] adds HTTPS connections (TLS 1.3 and 1.2,
    /// any certificate accepted, no ALPN).
    pub fn connect_tls_later() -> Self {
        let config = certs::client_config(&Roots::Insecure, &[]).expect("client TLS config");
        H1Clients::connect_with_later(Some(config))
    }

    fn connect_with_later(tls: Option<Arc<rustls::ClientConfig>>) -> Self {
        H1Clients {
            conns: Vec::new(),
            request: Vec::new(),
            completed: 0,
            body_bytes: 0,
            wire_bytes: 0,
            bad_status: 0,
            errors: Vec::new(),
            tls,
        }
    }

    /// Opens `connections` more connections, each to send `requests` requests for `path`
    /// (every connection asks for the `path` given last).
    pub fn open(&mut self, stack: &mut Stack, connections: usize, path: &str, requests: u64) {
        let tls = self.tls.clone();
        let mut more = H1Clients::connect_with(stack, connections, path, tls.as_ref());
        more.round(requests);
        self.conns.extend(more.conns);
        self.request = more.request;
    }

    /// Starts a round: every connection sends `requests` more requests, one at a time.
    pub fn round(&mut self, requests: u64) {
        for c in &mut self.conns {
            c.to_send += requests;
        }
    }

    /// True when every request of the round has its response.
    pub fn round_done(&self) -> bool {
        !self.errors.is_empty() || self.conns.iter().all(|c| c.to_send == 0 && !c.waiting)
    }

    /// Closes every connection.
    pub fn close_all(&mut self, stack: &mut Stack) {
        for c in &mut self.conns {
            match c.handle.take() {
                Some(Link::Tcp(h)) => stack.close(h),
                Some(Link::Tls { stream, .. }) => stream.close(stack),
                None => {}
            }
        }
    }
}

impl H1Clients {
    /// Counts a turn's received bytes: `fed` is what [`ResponseParser::feed`] said.
    fn count(
        &mut self,
        waiting: &mut bool,
        status: u16,
        received: usize,
        fed: Result<(u64, u64), String>,
    ) -> bool {
        match fed {
            Ok((done, bytes)) => {
                self.wire_bytes += received as u64;
                self.body_bytes += bytes;
                if done > 0 {
                    if status != 200 {
                        self.bad_status += done;
                    }
                    self.completed += done;
                    *waiting = false;
                }
                true
            }
            Err(e) => {
                self.errors.push(e);
                false
            }
        }
    }
}

impl Application for H1Clients {
    fn poll(&mut self, stack: &mut Stack, _now: Instant) -> bool {
        let mut progress = false;
        let mut conns = std::mem::take(&mut self.conns);
        for c in &mut conns {
            let sending = !c.waiting && c.to_send > 0;
            match c.handle.as_mut() {
                None => {}
                Some(Link::Tcp(handle)) => {
                    // An idle connection is only looked at (it keeps no buffers); one with
                    // a request to send gets them.
                    let socket = if sending {
                        stack.socket(handle)
                    } else {
                        stack.socket_for_reading(handle)
                    };
                    if matches!(socket.state(), State::Closed | State::CloseWait) && c.to_send > 0 {
                        self.errors
                            .push(format!("connection closed: {}", socket.state()));
                        c.to_send = 0;
                        c.waiting = false;
                        continue;
                    }
                    while socket.can_recv() {
                        let parser = &mut c.parser;
                        let result = socket.recv(|buf| (buf.len(), (buf.len(), parser.feed(buf))));
                        match result {
                            Ok((n, fed)) => {
                                let status = c.parser.status;
                                if !self.count(&mut c.waiting, status, n, fed) {
                                    break;
                                }
                                progress = true;
                            }
                            Err(e) => {
                                self.errors.push(format!("recv: {e}"));
                                break;
                            }
                        }
                    }
                    if sending && send_whole(socket, &self.request) {
                        c.to_send -= 1;
                        c.waiting = true;
                        progress = true;
                    }
                }
                Some(Link::Tls { stream, partial }) => {
                    let parser = &mut c.parser;
                    let mut received = 0;
                    let mut fed: Result<(u64, u64), String> = Ok((0, 0));
                    let read = stream.read_with(stack, &mut |buf| {
                        received += buf.len();
                        let more = parser.feed(buf);
                        fed = match (&fed, more) {
                            (Ok((d0, b0)), Ok((d1, b1))) => Ok((d0 + d1, b0 + b1)),
                            (Err(e), _) => Err(e.clone()),
                            (_, Err(e)) => Err(e),
                        };
                        buf.len()
                    });
                    if received > 0 {
                        progress = true;
                        let status = c.parser.status;
                        self.count(&mut c.waiting, status, received, fed);
                    }
                    match read {
                        Ok(ReadStatus::Eof) if c.to_send > 0 || c.waiting => {
                            self.errors.push("connection closed".to_string());
                            c.to_send = 0;
                            c.waiting = false;
                            continue;
                        }
                        Err(e) => {
                            self.errors.push(format!("TLS read: {}", Chain(&e)));
                            c.to_send = 0;
                            c.waiting = false;
                            continue;
                        }
                        _ => {}
                    }
                    if sending {
                        match stream.write(stack, &self.request[*partial..]) {
                            Ok(n) => {
                                *partial += n;
                                if *partial == self.request.len() {
                                    *partial = 0;
                                    c.to_send -= 1;
                                    c.waiting = true;
                                    progress = true;
                                }
                            }
                            Err(e) => {
                                self.errors.push(format!("TLS write: {}", Chain(&e)));
                                c.to_send = 0;
                            }
                        }
                    } else if stream.is_handshaking() {
                        if let Err(e) = stream.drive_handshake(stack) {
                            self.errors.push(format!("TLS handshake: {}", Chain(&e)));
                        }
                    }
                }
            }
        }
        self.conns = conns;
        progress
    }

    fn is_finished(&self) -> bool {
        self.round_done()
    }
}

/// Sends all of `request` on `socket` when it can take it whole; true when sent.
fn send_whole(socket: &mut tcp::Socket<'static>, request: &[u8]) -> bool {
    if !socket.may_send() || socket.send_capacity() - socket.send_queue() < request.len() {
        return false;
    }
    let n = socket.send_slice(request).expect("send");
    debug_assert_eq!(n, request.len());
    true
}

/// Keep-alive HTTP/1.1 clients on raw stack sockets, like [`H1Clients`] (TCP only), that
/// look only at the connections their sockets woke (and at every one when a round starts):
/// the client's work per request does not grow with the number of connections, so what
/// grows in a benchmark with many of them is the server's.
pub struct BusyClients {
    conns: Vec<BusyConn>,
    ready: Arc<ReadyQueue>,
    request: Vec<u8>,
    /// Requests of the round not answered yet.
    outstanding: u64,
    /// Responses completed since the start.
    pub completed: u64,
    /// Responses whose status was not 200.
    pub bad_status: u64,
    /// Broken connections and parse errors.
    pub errors: Vec<String>,
}

struct BusyConn {
    handle: TcpHandle,
    waker: Arc<ConnWaker>,
    to_send: u64,
    waiting: bool,
    parser: ResponseParser,
}

impl BusyClients {
    /// Opens `connections` connections to the server's HTTP port; each will ask for `path`.
    pub fn connect(stack: &mut Stack, connections: usize, path: &str) -> Self {
        let server = IpEndpoint::new(IpAddress::Ipv4(SERVER_IP), HTTP_PORT);
        let ready = ReadyQueue::new();
        let conns = (0..connections)
            .map(|key| BusyConn {
                handle: stack.connect(server).expect("connect"),
                waker: ConnWaker::new(key, &ready),
                to_send: 0,
                waiting: false,
                parser: ResponseParser::new(),
            })
            .collect();
        BusyClients {
            conns,
            ready,
            request: format!("GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n").into_bytes(),
            outstanding: 0,
            completed: 0,
            bad_status: 0,
            errors: Vec::new(),
        }
    }

    /// Starts a round: every connection sends one more request.
    pub fn round(&mut self) {
        for c in &mut self.conns {
            c.to_send += 1;
            c.waker.wake_now();
        }
        self.outstanding += self.conns.len() as u64;
    }

    /// True when every request of the round has its response.
    pub fn round_done(&self) -> bool {
        self.outstanding == 0 || !self.errors.is_empty()
    }

    /// Reads what connection `c` received and sends its next request; registers its wakers.
    fn visit(&mut self, stack: &mut Stack, c: usize) -> bool {
        let mut progress = false;
        let conn = &mut self.conns[c];
        conn.waker.clear();
        let sending = !conn.waiting && conn.to_send > 0;
        let socket = if sending {
            stack.socket(&conn.handle)
        } else {
            stack.socket_for_reading(&conn.handle)
        };
        if matches!(socket.state(), State::Closed | State::CloseWait) && conn.to_send > 0 {
            self.errors
                .push(format!("connection closed: {}", socket.state()));
            return false;
        }
        while socket.can_recv() {
            let parser = &mut conn.parser;
            match socket.recv(|buf| (buf.len(), parser.feed(buf))) {
                Ok(Ok((done, _))) if done > 0 => {
                    if conn.parser.status != 200 {
                        self.bad_status += done;
                    }
                    self.completed += done;
                    self.outstanding -= done;
                    conn.waiting = false;
                    progress = true;
                }
                Ok(Ok(_)) => progress = true,
                Ok(Err(e)) => {
                    self.errors.push(e);
                    return false;
                }
                Err(e) => {
                    self.errors.push(format!("recv: {e}"));
                    return false;
                }
            }
        }
        if !conn.waiting && conn.to_send > 0 && send_whole(socket, &self.request) {
            conn.to_send -= 1;
            conn.waiting = true;
            progress = true;
        }
        let waker = conn.waker.waker();
        socket.register_recv_waker(&waker);
        if conn.to_send > 0 {
            socket.register_send_waker(&waker);
        }
        progress
    }
}

impl Application for BusyClients {
    fn poll(&mut self, stack: &mut Stack, _now: Instant) -> bool {
        let mut progress = false;
        for key in self.ready.drain() {
            if key < self.conns.len() {
                progress |= self.visit(stack, key);
            }
        }
        progress
    }

    fn is_finished(&self) -> bool {
        self.round_done()
    }
}

/// Counts a response's body bytes (the body is read to the end and dropped).
#[derive(Default)]
pub struct Count;

impl Sink for Count {
    fn head(&mut self, _response: &Response<ResponseBody>) {}
    fn data(&mut self, _data: &[u8]) -> std::io::Result<()> {
        Ok(())
    }
}

/// Requests in flight on tapir's own client ([`Client`], in [`WithClient`]): responses
/// are read to the end and counted.
#[derive(Default)]
pub struct Fetcher {
    inflight: Vec<Job<Count>>,
    /// Responses completed since the start.
    pub completed: u64,
    /// Body bytes received since the start.
    pub body_bytes: u64,
    /// Failed requests.
    pub errors: Vec<String>,
}

impl Fetcher {
    /// A fetcher on a client of `version` trusting any certificate.
    pub fn new(version: Version) -> WithClient<Self> {
        let config = ClientConfig {
            version,
            roots: Roots::Insecure,
            max_connections_per_origin: 1,
            ..ClientConfig::default()
        };
        WithClient::new(Client::new(config).expect("client"), Fetcher::default())
    }

    /// Sends `GET path` to the server under the name `host` (a new name is a new origin,
    /// so a new connection) on the next turn.
    pub fn get(&mut self, scheme: Scheme, host: &str, path: &str) {
        let target = Target {
            scheme,
            host: host.to_string(),
            port: match scheme {
                Scheme::Http => HTTP_PORT,
                Scheme::Https => HTTPS_PORT,
            },
            addr: IpAddress::Ipv4(SERVER_IP),
        };
        let request = Request::get(path).body(Body::empty()).expect("request");
        self.inflight.push(Job::new(target, request, Count));
    }

    /// True when no request is in flight.
    pub fn idle(&self) -> bool {
        self.inflight.is_empty()
    }
}

impl ClientWork for Fetcher {
    fn start(&mut self, client: &mut Client) -> bool {
        let mut started = false;
        for job in &mut self.inflight {
            started |= job.start(client);
        }
        started
    }

    fn advance(&mut self, _client: &mut Client, cx: &mut Context<'_>) -> bool {
        let mut progress = false;
        for job in &mut self.inflight {
            progress |= job.advance(cx);
        }
        let (completed, body_bytes, errors) =
            (&mut self.completed, &mut self.body_bytes, &mut self.errors);
        self.inflight.retain(|job| match &job.outcome {
            None => true,
            Some(Outcome::Done { bytes, .. }) => {
                *completed += 1;
                *body_bytes += bytes;
                false
            }
            Some(Outcome::Failed(error)) => {
                errors.push(error.clone());
                false
            }
        });
        progress
    }

    fn is_done(&self, _client: &Client) -> bool {
        self.idle()
    }
}
