//! Tunnels between tapir's client and tapir's server over the in-memory link: a
//! WebSocket-style echo after `Upgrade` / `101`, `CONNECT` tunnels on HTTP/1.1 and HTTP/2,
//! and RFC 8441 extended CONNECT on HTTP/2. Each conversation sends length-prefixed messages
//! of varied sizes both ways at once and checks every echo, byte for byte and in order.

mod common;

use std::convert::Infallible;
use std::future::Future;
use std::task::{Context, Poll};

use bytes::Bytes;
use common::{config, linked, CLIENT_IP, SERVER_IP};
use http::header::{CONNECTION, UPGRADE};
use http::{Method, Request, Response, StatusCode};
use smoltcp::time::Duration;
use smoltcp::wire::IpAddress;
use tapir::client::fetch::{ClientWork, WithClient};
use tapir::client::{Client, ClientConfig, ClientError, Scheme, Target, Upgrade, UpgradeFuture};
use tapir::device::memlink::{LinkConfig, MemDevice};
use tapir::runtime::sim::{Node, Sim, SimNode};
use tapir::runtime::Application;
use tapir::service::server::StatsHandle;
use tapir::service::{
    Body, ConnInfo, ConnectProtocol, Incoming, Reply, RequestBody, Server, ServerConfig, Takeover,
    Tunnel,
};
use tapir::transport::certs::Roots;

const PROTOCOL: &str = "tapir-echo";

/// Echoes every byte until the peer closes, then closes.
async fn echo(mut tunnel: Tunnel) {
    while let Some(Ok(chunk)) = tunnel.read().await {
        if tunnel.write_all(chunk).await.is_err() {
            return;
        }
    }
    tunnel.close();
}

fn status(code: StatusCode) -> Response<Body> {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = code;
    r
}

/// The server's handler: echo tunnels behind `Upgrade: tapir-echo` (101), extended CONNECT
/// with `:protocol tapir-echo`, and `CONNECT echo.test:7`; `CONNECT` elsewhere is refused.
fn handler(request: Request<RequestBody>, _info: &ConnInfo) -> Reply {
    match route(&request) {
        (response, true) => Reply::tunnel(response, echo),
        (response, false) => Reply::Now(response),
    }
}

/// The same server as a `tower::Service`: the echo task goes in a switching response's
/// extensions as a `Takeover`.
async fn tower_service(request: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let (mut response, tunnel) = route(&request);
    if tunnel {
        response.extensions_mut().insert(Takeover::new(echo));
    }
    Ok(response)
}

/// The server's answer to `request`, and whether an echo tunnel takes over after it.
fn route<B>(request: &Request<B>) -> (Response<Body>, bool) {
    let upgrade = request
        .headers()
        .get(UPGRADE)
        .is_some_and(|v| v.as_bytes() == PROTOCOL.as_bytes());
    let extended = request
        .extensions()
        .get::<ConnectProtocol>()
        .is_some_and(|p| p.0 == PROTOCOL);
    if request.method() == Method::CONNECT {
        let allowed = extended
            || request
                .uri()
                .authority()
                .is_some_and(|a| a.as_str() == "echo.test:7");
        if !allowed {
            return (status(StatusCode::FORBIDDEN), false);
        }
        return (status(StatusCode::OK), true);
    }
    if upgrade {
        let mut response = status(StatusCode::SWITCHING_PROTOCOLS);
        response
            .headers_mut()
            .insert(UPGRADE, PROTOCOL.parse().unwrap());
        response
            .headers_mut()
            .insert(CONNECTION, "upgrade".parse().unwrap());
        return (response, true);
    }
    (status(StatusCode::NOT_FOUND), false)
}

/// The `i`th message: a size between 1 and 1,500 bytes and bytes that depend on `i`.
fn message(i: u32) -> Vec<u8> {
    let len = 1 + (i.wrapping_mul(2_654_435_761) >> 7) as usize % 1500;
    (0..len).map(|j| (i as usize * 31 + j * 7) as u8).collect()
}

/// How a conversation ended.
#[derive(Debug, Default)]
struct Outcome {
    response: Option<StatusCode>,
    upgrade_header: Option<String>,
    tunnel: bool,
    echoed: u32,
    error: Option<String>,
    closed_by_server: bool,
}

/// A client application that sends `count` framed messages through a tunnel while reading
/// their echoes, then closes and waits for the server to close.
struct Talk {
    target: Target,
    request: Option<Request<Body>>,
    future: Option<UpgradeFuture>,
    tunnel: Option<Tunnel>,
    count: u32,
    sent: u32,
    inbox: Vec<u8>,
    outcome: Outcome,
    done: bool,
}

impl Talk {
    /// The conversation on `client`, as the client node's application.
    fn new(client: Client, target: Target, request: Request<Body>, count: u32) -> WithClient<Self> {
        let talk = Talk {
            target,
            request: Some(request),
            future: None,
            tunnel: None,
            count,
            sent: 0,
            inbox: Vec::new(),
            outcome: Outcome::default(),
            done: false,
        };
        WithClient::new(client, talk)
    }

    fn fail(&mut self, error: String) {
        self.outcome.error = Some(error);
        self.done = true;
        self.tunnel = None;
    }

    /// One step of the conversation; true when anything moved.
    fn step(&mut self, client: &mut Client, cx: &mut Context<'_>) -> bool {
        if let Some(request) = self.request.take() {
            self.future = Some(client.upgrade(&self.target, request));
            return true;
        }
        if let Some(future) = self.future.as_mut() {
            match std::pin::Pin::new(future).poll(cx) {
                Poll::Pending => return false,
                Poll::Ready(result) => {
                    self.future = None;
                    match result {
                        Ok(Upgrade { response, tunnel }) => {
                            self.outcome.response = Some(response.status());
                            self.outcome.upgrade_header = response
                                .headers()
                                .get(UPGRADE)
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_string);
                            self.outcome.tunnel = tunnel.is_some();
                            match tunnel {
                                Some(t) => self.tunnel = Some(t),
                                None => self.done = true,
                            }
                        }
                        Err(e) => self.fail(format!("upgrade failed: {e}")),
                    }
                    return true;
                }
            }
        }
        let Some(tunnel) = self.tunnel.as_mut() else {
            return false;
        };
        let mut progress = false;
        // Send while there is room (the tunnel's backpressure paces us).
        while self.sent < self.count {
            match tunnel.poll_ready(cx) {
                Poll::Pending => break,
                Poll::Ready(Err(e)) => {
                    let e = format!("send: {e}");
                    self.fail(e);
                    return true;
                }
                Poll::Ready(Ok(())) => {}
            }
            let body = message(self.sent);
            let mut frame = (body.len() as u32).to_be_bytes().to_vec();
            frame.extend_from_slice(&body);
            if tunnel.send(Bytes::from(frame)).is_err() {
                self.fail("send refused".into());
                return true;
            }
            self.sent += 1;
            progress = true;
            if self.sent == self.count {
                tunnel.close();
            }
        }
        // Read echoes and check them in order.
        loop {
            match tunnel.poll_read(cx, 64 * 1024) {
                Poll::Pending => break,
                Poll::Ready(Some(Ok(chunk))) => {
                    progress = true;
                    self.inbox.extend_from_slice(&chunk);
                    while self.inbox.len() >= 4 {
                        let len = u32::from_be_bytes([
                            self.inbox[0],
                            self.inbox[1],
                            self.inbox[2],
                            self.inbox[3],
                        ]) as usize;
                        if self.inbox.len() < 4 + len {
                            break;
                        }
                        let expected = message(self.outcome.echoed);
                        if self.inbox[4..4 + len] != expected[..] {
                            let e = format!("message {} came back wrong", self.outcome.echoed);
                            self.fail(e);
                            return true;
                        }
                        self.inbox.drain(..4 + len);
                        self.outcome.echoed += 1;
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    self.fail(format!("read: {e}"));
                    return true;
                }
                Poll::Ready(None) => {
                    self.outcome.closed_by_server = true;
                    self.done = true;
                    self.tunnel = None;
                    return true;
                }
            }
        }
        progress
    }
}

impl ClientWork for Talk {
    fn advance(&mut self, client: &mut Client, cx: &mut Context<'_>) -> bool {
        !self.done && self.step(client, cx)
    }

    fn is_done(&self, client: &Client) -> bool {
        self.done && client.is_finished()
    }
}

type BoxHandler = Box<dyn Fn(Request<RequestBody>, &ConnInfo) -> Reply>;

/// A file removed again when dropped (also when the test panics).
struct TempFile(std::path::PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A TLS configuration for the server and a CA file the client trusts it with.
fn tls_pair(alpn: &[&[u8]]) -> (std::sync::Arc<rustls::ServerConfig>, TempFile) {
    use tapir::transport::certs;
    let made = certs::self_signed(
        &["localhost".to_string()],
        &[std::net::IpAddr::from(SERVER_IP)],
    )
    .unwrap();
    let path = std::env::temp_dir().join(format!("tapir-tunnel-ca-{}.pem", std::process::id()));
    std::fs::write(&path, &made.cert_pem).unwrap();
    let alpn: Vec<Vec<u8>> = alpn.iter().map(|p| p.to_vec()).collect();
    (
        certs::server_config(made.chain, made.key, &alpn).unwrap(),
        TempFile(path),
    )
}

/// Runs one conversation; returns its outcome and the server's counters at the end.
fn talk(
    link: LinkConfig,
    client_config: ClientConfig,
    target: Target,
    request: Request<Body>,
    count: u32,
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
) -> (Outcome, tapir::service::ServerStats, usize) {
    let stats = StatsHandle::default();
    let handler: BoxHandler = Box::new(handler);
    let server = Server::with_stats(handler, ServerConfig::default(), stats.clone());
    talk_to(
        server,
        stats,
        link,
        client_config,
        target,
        request,
        count,
        tls,
    )
}

/// Like [`talk`], with `server` counting into `stats`.
#[allow(clippy::too_many_arguments)]
fn talk_to<S: ?Sized>(
    mut server: Server<S>,
    stats: StatsHandle,
    link: LinkConfig,
    client_config: ClientConfig,
    target: Target,
    request: Request<Body>,
    count: u32,
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
) -> (Outcome, tapir::service::ServerStats, usize) {
    let mut sim = Sim::new();
    let (mut s_stack, s_dev, c_stack, c_dev) = linked(
        link,
        config(SERVER_IP, 2, 31),
        config(CLIENT_IP, 1, 32),
        &sim,
    );
    server.bind_http(&mut s_stack, 80).unwrap();
    if let Some(tls) = tls {
        server.bind_https(&mut s_stack, 443, tls).unwrap();
    }
    let app = Talk::new(Client::new(client_config).unwrap(), target, request, count);
    let mut server: Node<MemDevice, Server<S>> = Node::new(s_stack, s_dev, server);
    let mut client = Node::new(c_stack, c_dev, app);
    sim.run_until(
        &mut [&mut server as &mut dyn SimNode, &mut client],
        Duration::from_secs(600),
        |nodes| nodes[1].finished(),
    )
    .unwrap_or_else(|e| {
        panic!(
            "conversation ends: {e}; outcome {:?}; sent {}; server {:?}",
            client.app.work.outcome,
            client.app.work.sent,
            stats.get()
        )
    });
    // Let the server see the last FIN and free the connection.
    let _ = sim.run_until(
        &mut [&mut server as &mut dyn SimNode, &mut client],
        Duration::from_secs(5),
        |_| false,
    );
    let sockets = server.stack.describe_connections().len();
    let outcome = std::mem::take(&mut client.app.work.outcome);
    (outcome, stats.get(), sockets)
}

fn target(scheme: Scheme, host: &str, port: u16) -> Target {
    Target {
        scheme,
        host: host.to_string(),
        port,
        addr: IpAddress::Ipv4(SERVER_IP),
    }
}

fn upgrade_request() -> Request<Body> {
    Request::get("/echo")
        .header(UPGRADE, PROTOCOL)
        .header(CONNECTION, "upgrade")
        .body(Body::empty())
        .unwrap()
}

fn connect_request(authority: &str) -> Request<Body> {
    Request::builder()
        .method(Method::CONNECT)
        .uri(authority)
        .body(Body::empty())
        .unwrap()
}

/// Asserts a whole conversation: switched, every message echoed, closed cleanly, and the
/// server back to no connection and no tunnel.
fn assert_echoed(
    outcome: &Outcome,
    stats: &tapir::service::ServerStats,
    sockets: usize,
    count: u32,
    status: StatusCode,
) {
    assert_eq!(outcome.error, None, "{outcome:?}");
    assert_eq!(outcome.response, Some(status), "{outcome:?}");
    assert!(outcome.tunnel, "{outcome:?}");
    assert_eq!(outcome.echoed, count, "{outcome:?}");
    assert!(outcome.closed_by_server, "{outcome:?}");
    assert_eq!(stats.tunnels_total, 1, "{stats:?}");
    assert_eq!(stats.tunnels_open, 0, "{stats:?}");
    assert_eq!(stats.connections_open, 0, "{stats:?}");
    assert_eq!(sockets, 0, "server sockets left: {stats:?}");
}

#[test]
fn upgrade_echo_ten_thousand_messages_over_http1() {
    let (outcome, stats, sockets) = talk(
        LinkConfig::default(),
        ClientConfig::default(),
        target(Scheme::Http, &SERVER_IP.to_string(), 80),
        upgrade_request(),
        10_000,
        None,
    );
    assert_eq!(outcome.upgrade_header.as_deref(), Some(PROTOCOL));
    assert_echoed(
        &outcome,
        &stats,
        sockets,
        10_000,
        StatusCode::SWITCHING_PROTOCOLS,
    );
    // Every message went both ways through the server's counters.
    let payload: u64 = (0..10_000).map(|i| 4 + message(i).len() as u64).sum();
    assert!(stats.bytes_in >= payload, "{stats:?}");
    assert!(stats.bytes_out >= payload, "{stats:?}");
}

#[test]
fn upgrade_echo_through_loss_and_reordering() {
    let link = LinkConfig {
        loss: 0.01,
        reorder: 0.01,
        seed: 7,
        ..LinkConfig::default()
    };
    let (outcome, stats, sockets) = talk(
        link,
        ClientConfig::default(),
        target(Scheme::Http, &SERVER_IP.to_string(), 80),
        upgrade_request(),
        2_000,
        None,
    );
    assert_echoed(
        &outcome,
        &stats,
        sockets,
        2_000,
        StatusCode::SWITCHING_PROTOCOLS,
    );
}

#[test]
fn upgrade_echo_inside_tls() {
    // The server prefers h2, but an upgrade asks for http/1.1 only.
    let (tls, ca) = tls_pair(&[b"h2", b"http/1.1"]);
    let config = ClientConfig {
        roots: Roots::CaFile(ca.0.clone()),
        ..ClientConfig::default()
    };
    let (outcome, stats, sockets) = talk(
        LinkConfig::default(),
        config,
        target(Scheme::Https, "localhost", 443),
        upgrade_request(),
        1_000,
        Some(tls),
    );
    assert_echoed(
        &outcome,
        &stats,
        sockets,
        1_000,
        StatusCode::SWITCHING_PROTOCOLS,
    );
    // The CA file is gone with its guard: nothing is left behind in /tmp.
    let path = ca.0.clone();
    drop(ca);
    assert!(!path.exists(), "{} left behind", path.display());
}

#[test]
fn connect_tunnel_over_http1_and_refusal() {
    let (outcome, stats, sockets) = talk(
        LinkConfig::default(),
        ClientConfig::default(),
        target(Scheme::Http, &SERVER_IP.to_string(), 80),
        connect_request("echo.test:7"),
        1_000,
        None,
    );
    assert_echoed(&outcome, &stats, sockets, 1_000, StatusCode::OK);

    // A refused CONNECT is an ordinary response: no tunnel, the connection closes.
    let (outcome, stats, sockets) = talk(
        LinkConfig::default(),
        ClientConfig::default(),
        target(Scheme::Http, &SERVER_IP.to_string(), 80),
        connect_request("elsewhere.test:22"),
        1,
        None,
    );
    assert_eq!(outcome.error, None);
    assert_eq!(outcome.response, Some(StatusCode::FORBIDDEN));
    assert!(!outcome.tunnel);
    assert_eq!(stats.tunnels_total, 0);
    assert_eq!(stats.connections_open, 0, "{stats:?}");
    assert_eq!(sockets, 0);
}

#[test]
fn h2c_connect_and_extended_connect_tunnels() {
    let h2 = ClientConfig {
        version: tapir::client::Version::Http2,
        ..ClientConfig::default()
    };
    // RFC 9113 §8.5 CONNECT on a stream.
    let (outcome, stats, sockets) = talk(
        LinkConfig::default(),
        h2.clone(),
        target(Scheme::Http, &SERVER_IP.to_string(), 80),
        connect_request("echo.test:7"),
        2_000,
        None,
    );
    assert_eq!(outcome.error, None, "{outcome:?}");
    assert_eq!(outcome.echoed, 2_000, "{outcome:?}");
    assert!(outcome.closed_by_server);
    assert_eq!(stats.tunnels_total, 1, "{stats:?}");
    assert_eq!(stats.tunnels_open, 0, "{stats:?}");
    assert_eq!(stats.requests_http2, 1, "{stats:?}");
    let _ = sockets;

    // RFC 8441 extended CONNECT (WebSockets over HTTP/2 work this way).
    let mut request = Request::builder()
        .method(Method::CONNECT)
        .uri("/echo")
        .body(Body::empty())
        .unwrap();
    request
        .extensions_mut()
        .insert(ConnectProtocol(PROTOCOL.to_string()));
    let (outcome, stats, _) = talk(
        LinkConfig::default(),
        h2,
        target(Scheme::Http, &SERVER_IP.to_string(), 80),
        request,
        2_000,
        None,
    );
    assert_eq!(outcome.error, None, "{outcome:?}");
    assert_eq!(outcome.response, Some(StatusCode::OK));
    assert_eq!(outcome.echoed, 2_000, "{outcome:?}");
    assert!(outcome.closed_by_server);
    assert_eq!(stats.tunnels_total, 1, "{stats:?}");
    assert_eq!(stats.tunnels_open, 0, "{stats:?}");
}

#[test]
fn upgrade_to_a_refused_port_is_a_clear_error() {
    let mut sim = Sim::new();
    let (s_stack, s_dev, c_stack, c_dev) = linked(
        LinkConfig::default(),
        config(SERVER_IP, 2, 41),
        config(CLIENT_IP, 1, 42),
        &sim,
    );
    let handler: BoxHandler = Box::new(handler);
    let server = Server::new(handler, ServerConfig::default());
    let app = Talk::new(
        Client::new(ClientConfig::default()).unwrap(),
        target(Scheme::Http, &SERVER_IP.to_string(), 81),
        upgrade_request(),
        1,
    );
    let mut server: Node<MemDevice, Server<BoxHandler>> = Node::new(s_stack, s_dev, server);
    let mut client = Node::new(c_stack, c_dev, app);
    sim.run_until(
        &mut [&mut server as &mut dyn SimNode, &mut client],
        Duration::from_secs(60),
        |nodes| nodes[1].finished(),
    )
    .unwrap();
    let error = client.app.work.outcome.error.clone().unwrap_or_default();
    let expected = ClientError::Refused(smoltcp::wire::IpEndpoint::new(
        IpAddress::Ipv4(SERVER_IP),
        81,
    ));
    assert!(error.contains(&expected.to_string()), "{error}");
}

#[test]
fn server_shutdown_ends_open_tunnels_and_frees_everything() {
    let mut sim = Sim::new();
    let (mut s_stack, s_dev, c_stack, c_dev) = linked(
        LinkConfig::default(),
        config(SERVER_IP, 2, 51),
        config(CLIENT_IP, 1, 52),
        &sim,
    );
    let stats = StatsHandle::default();
    let handler: BoxHandler = Box::new(handler);
    let mut server = Server::with_stats(handler, ServerConfig::default(), stats.clone());
    server.bind_http(&mut s_stack, 80).unwrap();
    // Far more messages than get through before the stop.
    let app = Talk::new(
        Client::new(ClientConfig::default()).unwrap(),
        target(Scheme::Http, &SERVER_IP.to_string(), 80),
        upgrade_request(),
        1_000_000,
    );
    let mut server: Node<MemDevice, Server<BoxHandler>> = Node::new(s_stack, s_dev, server);
    let mut client = Node::new(c_stack, c_dev, app);
    let mut nodes = [&mut server as &mut dyn SimNode, &mut client];
    sim.run_until(&mut nodes, Duration::from_secs(60), |_| {
        stats.get().tunnels_open == 1 && stats.get().bytes_out > 1_000_000
    })
    .expect("the tunnel carries data");
    let now = sim.now();
    server.app.shutdown(&mut server.stack, now);
    let mut nodes = [&mut server as &mut dyn SimNode, &mut client];
    sim.run_until(&mut nodes, Duration::from_secs(60), |nodes| {
        nodes[0].finished() && nodes[1].finished()
    })
    .expect("the server finishes and the client sees the end");
    let outcome = &client.app.work.outcome;
    assert!(outcome.tunnel);
    assert!(outcome.echoed > 100, "{outcome:?}");
    assert!(outcome.echoed < 1_000_000, "{outcome:?}");
    assert!(outcome.closed_by_server, "{outcome:?}");
    let s = stats.get();
    assert_eq!((s.tunnels_total, s.tunnels_open), (1, 0), "{s:?}");
    assert_eq!(s.connections_open, 0, "{s:?}");
    assert_eq!(client.app.client.open_connections(), 0);
}

/// A `tower::Service` hands connections and HTTP/2 streams to tunnels with a `Takeover`
/// in its switching response: `Upgrade` on HTTP/1.1, `CONNECT` on HTTP/1.1 and h2c.
#[test]
fn tower_service_takeover_after_upgrade_and_connect() {
    let h2 = ClientConfig {
        version: tapir::client::Version::Http2,
        ..ClientConfig::default()
    };
    for (client_config, request, want) in [
        (
            ClientConfig::default(),
            upgrade_request(),
            StatusCode::SWITCHING_PROTOCOLS,
        ),
        (
            ClientConfig::default(),
            connect_request("echo.test:7"),
            StatusCode::OK,
        ),
        (h2, connect_request("echo.test:7"), StatusCode::OK),
    ] {
        let stats = StatsHandle::default();
        let service = tower::service_fn(tower_service);
        let server =
            Server::from_service_with_stats(service, ServerConfig::default(), stats.clone());
        let (outcome, stats, sockets) = talk_to(
            server,
            stats,
            LinkConfig::default(),
            client_config,
            target(Scheme::Http, &SERVER_IP.to_string(), 80),
            request,
            2_000,
            None,
        );
        assert_echoed(&outcome, &stats, sockets, 2_000, want);
    }
    // Refused: no tunnel, the task is dropped.
    let service = tower::service_fn(tower_service);
    let stats = StatsHandle::default();
    let server = Server::from_service_with_stats(service, ServerConfig::default(), stats.clone());
    let (outcome, stats, _) = talk_to(
        server,
        stats,
        LinkConfig::default(),
        ClientConfig::default(),
        target(Scheme::Http, &SERVER_IP.to_string(), 80),
        connect_request("elsewhere.test:7"),
        1,
        None,
    );
    assert_eq!(outcome.response, Some(StatusCode::FORBIDDEN), "{outcome:?}");
    assert!(!outcome.tunnel, "{outcome:?}");
    assert_eq!(stats.tunnels_total, 0, "{stats:?}");
}
