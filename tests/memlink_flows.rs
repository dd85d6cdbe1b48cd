//! Flows as tokio byte streams over the in-memory link: hyper 1.x's own server and client
//! (through hyper-util's `TokioIo`) running on tapir's TCP and TLS flows, against each other
//! and against tapir's own client and server; HTTP/2 chosen by ALPN on a TLS flow; a flow
//! kept after an HTTP exchange (an upgrade) and used as a plain byte stream with
//! half-closes; listeners that close and connects that fail.

mod common;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use common::hyper::{hyper_server, payload, LoopExec};
use common::{config, linked, CLIENT_IP, SERVER_IP};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use smoltcp::time::Duration;
use smoltcp::wire::{IpAddress, IpEndpoint};
use tapir::client::fetch::{Fetch, Job, Outcome, Sink};
use tapir::client::{Client, ClientConfig, Scheme, Target};
use tapir::device::memlink::{LinkConfig, MemDevice};
use tapir::runtime::sim::{Node, Sim, SimNode};
use tapir::runtime::Application;
use tapir::service::builtin::{Builtin, PATTERN};
use tapir::service::server::StatsHandle;
use tapir::service::{
    Body, ConnInfo, Reply, RequestBody, ResponseBody, Server, ServerConfig, Tunnel,
};
use tapir::stack::Stack;
use tapir::transport::certs::{self, Roots};
use tapir::transport::flow::{Flow, FlowConfig, FlowError, FlowHandle, Flows};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower_service::Service;

/// Serves hyper on `port` of `server`'s table (TLS with `tls`); counts accepted flows.
fn serve_hyper(
    server: &FlowHandle,
    port: u16,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> Rc<Cell<usize>> {
    let accepted = Rc::new(Cell::new(0));
    server
        .spawn(hyper_server(
            server.clone(),
            server.bind(port, tls),
            accepted.clone(),
        ))
        .unwrap();
    accepted
}

/// A server and a client stack on a link, each running an application.
struct Pair<S, C> {
    sim: Sim,
    server: Node<MemDevice, S>,
    client: Node<MemDevice, C>,
}

impl Pair<Flows, Flows> {
    /// Both sides run a flow table.
    fn flows(link: LinkConfig) -> Self {
        Pair::new(link, |_| Flows::default(), Flows::default())
    }
}

impl<S: Application, C: Application> Pair<S, C> {
    /// `server` makes the server's application on its stack (to bind ports).
    fn new(link: LinkConfig, server: impl FnOnce(&mut Stack) -> S, client: C) -> Self {
        let sim = Sim::new();
        let (mut s_stack, s_dev, c_stack, c_dev) = linked(
            link,
            config(SERVER_IP, 2, 31),
            config(CLIENT_IP, 1, 32),
            &sim,
        );
        let server = server(&mut s_stack);
        Pair {
            server: Node::new(s_stack, s_dev, server),
            client: Node::new(c_stack, c_dev, client),
            sim,
        }
    }

    /// Steps both until `done`; panics with both sides' connections if it never holds.
    fn run_until(&mut self, limit: Duration, done: impl Fn() -> bool) {
        self.run_nodes(limit, |_| done());
    }

    /// Steps both until the client application is finished.
    fn run_client(&mut self, limit: Duration) {
        self.run_nodes(limit, |nodes| nodes[1].finished());
    }

    fn run_nodes(&mut self, limit: Duration, done: impl FnMut(&mut [&mut dyn SimNode]) -> bool) {
        let result = self.sim.run_until(
            &mut [&mut self.server as &mut dyn SimNode, &mut self.client],
            limit,
            done,
        );
        if let Err(e) = result {
            panic!(
                "{e}: server {:#?}, client {:#?}",
                self.server.stack.describe_connections(),
                self.client.stack.describe_connections()
            );
        }
    }
}

fn server_uri(scheme: &str, port: u16) -> http::Uri {
    format!("{scheme}://{SERVER_IP}:{port}/").parse().unwrap()
}

/// Where a task leaves its result for the test.
type Slot<T> = Rc<RefCell<Option<T>>>;

type Results = Slot<Result<Vec<(StatusCode, Bytes)>, String>>;

/// Sends `requests` over one HTTP/1.1 connection made by hyper's client on `flow`, in order
/// (keep-alive), collecting each response.
async fn hyper_http1_exchanges(
    handle: FlowHandle,
    flow: Flow,
    requests: Vec<Request<Full<Bytes>>>,
) -> Result<Vec<(StatusCode, Bytes)>, String> {
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(flow))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    handle
        .spawn(async move {
            let _ = conn.await;
        })
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for request in requests {
        sender.ready().await.map_err(|e| format!("ready: {e}"))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("request: {e}"))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes();
        out.push((status, body));
    }
    Ok(out)
}

fn post(path: &str, body: Vec<u8>) -> Request<Full<Bytes>> {
    Request::post(path)
        .header("host", SERVER_IP.to_string())
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

fn get(path: &str) -> Request<Full<Bytes>> {
    Request::get(path)
        .header("host", SERVER_IP.to_string())
        .body(Full::new(Bytes::new()))
        .unwrap()
}

fn expect_echo(response: &(StatusCode, Bytes), head: &str, body: &[u8]) {
    assert_eq!(response.0, StatusCode::OK);
    let text = &response.1;
    assert!(
        text.starts_with(head.as_bytes()),
        "response starts {:?}, expected {head:?}",
        String::from_utf8_lossy(&text[..text.len().min(80)])
    );
    assert_eq!(text.len(), head.len() + body.len(), "echoed length");
    assert!(&text[head.len()..] == body, "echoed body differs");
}

#[test]
fn hyper_server_on_flows_answers_hyper_client_on_flows() {
    // Some loss and reordering: the flows' buffers see retransmissions and backpressure.
    let link = LinkConfig {
        loss: 0.01,
        seed: 7,
        ..LinkConfig::default()
    };
    let mut pair = Pair::flows(link);
    let server = pair.server.app.handle();
    let accepted = serve_hyper(&server, 80, None);

    let client = pair.client.app.handle();
    let results: Results = Rc::default();
    let big = payload(300_000, 5);
    let requests = vec![get("/"), post("/echo", big.clone()), get("/last")];
    let (r, c) = (results.clone(), client.clone());
    let tls = certs::client_config(&Roots::Insecure, &[]).unwrap();
    let mut connector = client.connector(tls);
    client
        .spawn(async move {
            let result = match connector.call(server_uri("http", 80)).await {
                Ok(flow) => {
                    assert_eq!(flow.peer(), IpEndpoint::new(IpAddress::Ipv4(SERVER_IP), 80));
                    assert_eq!(flow.alpn(), None);
                    hyper_http1_exchanges(c, flow, requests).await
                }
                Err(e) => Err(e.to_string()),
            };
            *r.borrow_mut() = Some(result);
        })
        .unwrap();
    pair.run_until(Duration::from_secs(120), || results.borrow().is_some());
    let responses = results.borrow_mut().take().unwrap().expect("exchanges");
    assert_eq!(responses.len(), 3);
    expect_echo(&responses[0], "GET / HTTP/1.1\n", b"");
    expect_echo(&responses[1], "POST /echo HTTP/1.1\n", &big);
    expect_echo(&responses[2], "GET /last HTTP/1.1\n", b"");
    assert_eq!(accepted.get(), 1, "one keep-alive connection");
    // The client's connection task ended with the sender: the flows close (to_close) and
    // both tables give their connections back.
    pair.run_until(Duration::from_secs(60), || {
        server.flows() == 0 && client.flows() == 0
    });
}

/// Collects a response body for tapir's client.
#[derive(Default)]
struct Collect(Vec<u8>);

impl Sink for Collect {
    fn head(&mut self, _response: &Response<ResponseBody>) {}
    fn data(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }
}

#[test]
fn hyper_server_on_flows_answers_tapir_client() {
    let server_flows = Flows::default();
    let server = server_flows.handle();
    let accepted = serve_hyper(&server, 8080, None);
    let target = Target {
        scheme: Scheme::Http,
        host: SERVER_IP.to_string(),
        port: 8080,
        addr: IpAddress::Ipv4(SERVER_IP),
    };
    let big = payload(200_000, 9);
    let jobs = vec![
        Job::new(
            target.clone(),
            Request::get("/hello").body(Body::empty()).unwrap(),
            Collect::default(),
        ),
        Job::new(
            target,
            Request::post("/echo")
                .body(Body::from(big.clone()))
                .unwrap(),
            Collect::default(),
        ),
    ];
    let config = ClientConfig {
        version: tapir::client::Version::Http1,
        ..ClientConfig::default()
    };
    let fetch = Fetch::new(Client::new(config).unwrap(), jobs, false);
    let mut pair = Pair::new(LinkConfig::default(), |_| server_flows, fetch);
    pair.run_client(Duration::from_secs(120));
    let jobs = &pair.client.app.jobs;
    assert_eq!(
        jobs[0].outcome,
        Some(Outcome::Done {
            status: StatusCode::OK,
            bytes: "GET /hello HTTP/1.1\n".len() as u64
        })
    );
    assert_eq!(jobs[0].sink.0, b"GET /hello HTTP/1.1\n");
    let head = "POST /echo HTTP/1.1\n";
    assert!(matches!(
        jobs[1].outcome,
        Some(Outcome::Done {
            status: StatusCode::OK,
            ..
        })
    ));
    expect_echo(
        &(StatusCode::OK, Bytes::from(jobs[1].sink.0.clone())),
        head,
        &big,
    );
    assert_eq!(
        accepted.get(),
        1,
        "tapir's client kept its connection alive"
    );
}

/// tapir's own server: the built-in site (`/bytes/N`, `/echo`).
fn tapir_server(stack: &mut Stack) -> Server<BoxHandler> {
    let builtin = Builtin::new(StatsHandle::default());
    let handler: BoxHandler = Box::new(move |req, info: &ConnInfo| builtin.handle(req, info));
    let mut server = Server::new(handler, ServerConfig::default());
    server.bind_http(stack, 80).unwrap();
    server
}

type BoxHandler = Box<dyn Fn(Request<RequestBody>, &ConnInfo) -> Response<Body>>;

#[test]
fn tapir_server_answers_hyper_client_on_flows() {
    let client_flows = Flows::default();
    let client = client_flows.handle();
    let mut pair = Pair::new(LinkConfig::default(), tapir_server, client_flows);
    let results: Results = Rc::default();
    let big = payload(150_000, 3);
    let requests = vec![get("/bytes/100000"), post("/echo", big.clone())];
    let (r, c) = (results.clone(), client.clone());
    client
        .spawn(async move {
            let flow = c
                .connect(IpEndpoint::new(IpAddress::Ipv4(SERVER_IP), 80), None)
                .await;
            let result = match flow {
                Ok(flow) => hyper_http1_exchanges(c, flow, requests).await,
                Err(e) => Err(e.to_string()),
            };
            *r.borrow_mut() = Some(result);
        })
        .unwrap();
    pair.run_until(Duration::from_secs(120), || results.borrow().is_some());
    let responses = results.borrow_mut().take().unwrap().expect("exchanges");
    assert_eq!(responses[0].0, StatusCode::OK);
    let expected: Vec<u8> = (0..100_000).map(|i| PATTERN[i % PATTERN.len()]).collect();
    assert!(responses[0].1 == expected, "/bytes/100000 as served");
    assert_eq!(responses[1].0, StatusCode::OK);
    assert!(responses[1].1 == big, "/echo sent the body back");
    pair.run_until(Duration::from_secs(60), || client.flows() == 0);
}

/// A server certificate for `SERVER_IP` (ALPN `h2`, `http/1.1`) and client configurations
/// trusting it through a CA file, as a user would give it, one per ALPN list in `alpns`.
fn tls_configs(alpns: &[&[&[u8]]]) -> (Arc<rustls::ServerConfig>, Vec<Arc<rustls::ClientConfig>>) {
    let ip = std::net::IpAddr::from(SERVER_IP.octets());
    let generated = certs::self_signed(&["flows.test".to_string()], &[ip]).unwrap();
    // Tests run in parallel: each call its own file.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!("tapir-flows-{}-{call}.crt", std::process::id());
    let ca = std::env::temp_dir().join(name);
    std::fs::write(&ca, &generated.cert_pem).unwrap();
    let server_alpn = [b"h2".to_vec(), b"http/1.1".to_vec()];
    let server = certs::server_config(generated.chain, generated.key, &server_alpn).unwrap();
    let clients = alpns
        .iter()
        .map(|alpn| {
            let alpn: Vec<Vec<u8>> = alpn.iter().map(|p| p.to_vec()).collect();
            certs::client_config(&Roots::CaFile(ca.clone()), &alpn).unwrap()
        })
        .collect();
    let _ = std::fs::remove_file(&ca);
    (server, clients)
}

#[test]
fn tls_flow_negotiates_h2_for_hyper_http2_and_http1_when_offered_alone() {
    let mut pair = Pair::flows(LinkConfig::default());
    let server = pair.server.app.handle();
    let (server_tls, clients) = tls_configs(&[&[b"h2", b"http/1.1"], &[b"http/1.1"]]);
    let (h2_client_tls, h1_client_tls) = (clients[0].clone(), clients[1].clone());
    let accepted = serve_hyper(&server, 443, Some(server_tls));

    let client = pair.client.app.handle();
    let h2_results: Results = Rc::default();
    let h1_results: Results = Rc::default();
    let alpns: Rc<RefCell<Vec<Option<String>>>> = Rc::default();
    let big = payload(100_000, 1);
    {
        let (r, c, a, big) = (
            h2_results.clone(),
            client.clone(),
            alpns.clone(),
            big.clone(),
        );
        let mut connector = client.connector(h2_client_tls);
        client
            .spawn(async move {
                let flow = match connector.call(server_uri("https", 443)).await {
                    Ok(flow) => flow,
                    Err(e) => return *r.borrow_mut() = Some(Err(e.to_string())),
                };
                a.borrow_mut().push(flow.alpn().map(str::to_string));
                let exec = LoopExec(c.clone());
                let (mut sender, conn) =
                    match hyper::client::conn::http2::handshake(exec, TokioIo::new(flow)).await {
                        Ok(parts) => parts,
                        Err(e) => return *r.borrow_mut() = Some(Err(format!("h2 handshake: {e}"))),
                    };
                c.spawn(async move {
                    let _ = conn.await;
                })
                .unwrap();
                let mut out = Vec::new();
                for request in [get("/one"), post("/two", big), get("/three")] {
                    let response = match sender.send_request(request).await {
                        Ok(response) => response,
                        Err(e) => return *r.borrow_mut() = Some(Err(format!("request: {e}"))),
                    };
                    let status = response.status();
                    match response.into_body().collect().await {
                        Ok(body) => out.push((status, body.to_bytes())),
                        Err(e) => return *r.borrow_mut() = Some(Err(format!("body: {e}"))),
                    }
                }
                *r.borrow_mut() = Some(Ok(out));
            })
            .unwrap();
    }
    {
        let (r, c, a) = (h1_results.clone(), client.clone(), alpns.clone());
        let mut connector = client.connector(h1_client_tls);
        client
            .spawn(async move {
                let result = match connector.call(server_uri("https", 443)).await {
                    Ok(flow) => {
                        a.borrow_mut().push(flow.alpn().map(str::to_string));
                        hyper_http1_exchanges(c, flow, vec![get("/h1")]).await
                    }
                    Err(e) => Err(e.to_string()),
                };
                *r.borrow_mut() = Some(result);
            })
            .unwrap();
    }
    pair.run_until(Duration::from_secs(120), || {
        h2_results.borrow().is_some() && h1_results.borrow().is_some()
    });
    let h2 = h2_results
        .borrow_mut()
        .take()
        .unwrap()
        .expect("h2 exchanges");
    expect_echo(&h2[0], "GET /one HTTP/2.0\n", b"");
    expect_echo(&h2[1], "POST /two HTTP/2.0\n", &big);
    expect_echo(&h2[2], "GET /three HTTP/2.0\n", b"");
    let h1 = h1_results
        .borrow_mut()
        .take()
        .unwrap()
        .expect("h1 exchange");
    expect_echo(&h1[0], "GET /h1 HTTP/1.1\n", b"");
    let mut alpns = alpns.borrow().clone();
    alpns.sort();
    assert_eq!(
        alpns,
        vec![Some("h2".to_string()), Some("http/1.1".to_string())]
    );
    assert_eq!(accepted.get(), 2);
}

#[test]
fn tls_flow_with_an_untrusted_certificate_fails_the_connect() {
    let mut pair = Pair::flows(LinkConfig::default());
    let server = pair.server.app.handle();
    // Each call makes a new certificate: the client trusts another one.
    let (server_tls, _) = tls_configs(&[]);
    let (_, clients) = tls_configs(&[&[b"h2"]]);
    let other_client = clients[0].clone();
    let accepted = serve_hyper(&server, 443, Some(server_tls));
    let client = pair.client.app.handle();
    let result: Slot<Result<(), FlowError>> = Rc::default();
    let r = result.clone();
    let mut connector = client.connector(other_client);
    client
        .spawn(async move {
            let outcome = connector.call(server_uri("https", 443)).await.map(|_| ());
            *r.borrow_mut() = Some(outcome);
        })
        .unwrap();
    pair.run_until(Duration::from_secs(60), || result.borrow().is_some());
    let outcome = result.borrow_mut().take().unwrap();
    assert!(
        matches!(&outcome, Err(FlowError::Tls { reason, .. }) if reason.to_string().contains("certificate")),
        "{outcome:?}"
    );
    assert_eq!(
        accepted.get(),
        0,
        "no flow handed out for a failed handshake"
    );
    pair.run_until(Duration::from_secs(60), || {
        server.flows() == 0 && client.flows() == 0
    });
}

/// `n` letters, varied by `seed`.
fn letters(n: usize, seed: u8) -> Vec<u8> {
    payload(n, seed)
        .into_iter()
        .map(|b| b"abcdefghij"[usize::from(b) % 10])
        .collect()
}

/// hyper's client on a tapir flow asks port 80 for `Upgrade: shout`; after the `101` it
/// takes its flow back, sends `message`, half-closes, and reads to the server's end of
/// stream; what it read goes to `got`.
async fn upgrade_and_talk(c: FlowHandle, message: Vec<u8>, got: Slot<Result<Vec<u8>, String>>) {
    let flow = c
        .connect(IpEndpoint::new(IpAddress::Ipv4(SERVER_IP), 80), None)
        .await
        .expect("connected");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(flow))
        .await
        .unwrap();
    c.spawn(async move {
        let _ = conn.with_upgrades().await;
    })
    .unwrap();
    let request = Request::get("/")
        .header("host", "flows.test")
        .header("connection", "upgrade")
        .header("upgrade", "shout")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        return *got.borrow_mut() = Some(Err(format!("status {}", response.status())));
    }
    let upgraded = hyper::upgrade::on(response).await.unwrap();
    let parts = upgraded.downcast::<TokioIo<Flow>>().expect("the flow");
    let mut flow = parts.io.into_inner();
    flow.write_all(&message).await.unwrap();
    // Half-close: the server reads the end of stream, we go on reading.
    flow.shutdown().await.unwrap();
    let mut back = parts.read_buf.to_vec();
    let result = flow
        .read_to_end(&mut back)
        .await
        .map(|_| back)
        .map_err(|e| e.to_string());
    *got.borrow_mut() = Some(result);
}

/// After `101 Switching Protocols`, the connection is the flow again (paf's `no_close`): the
/// server reads what the client sends until the client's half-close, answers in upper
/// case, then half-closes too; each side reads the other's end of stream.
#[test]
fn flow_kept_after_an_upgrade_is_a_byte_stream_with_half_closes() {
    let mut pair = Pair::flows(LinkConfig::default());
    let server = pair.server.app.handle();
    let server_got: Slot<Vec<u8>> = Rc::default();
    {
        let (h, got) = (server.clone(), server_got.clone());
        let mut listener = server.bind(80, None);
        server
            .spawn(async move {
                let flow = listener.accept().await.expect("a flow");
                let h2 = h.clone();
                let service = service_fn(move |mut request: Request<Incoming>| {
                    let (h, got) = (h2.clone(), got.clone());
                    async move {
                        let on = hyper::upgrade::on(&mut request);
                        h.spawn(async move {
                            let upgraded = on.await.expect("upgraded");
                            let parts = upgraded
                                .downcast::<TokioIo<Flow>>()
                                .expect("the flow under hyper");
                            let mut flow = parts.io.into_inner();
                            let mut data = parts.read_buf.to_vec();
                            flow.read_to_end(&mut data)
                                .await
                                .expect("read to the client's FIN");
                            *got.borrow_mut() = Some(data.clone());
                            flow.write_all(&data.to_ascii_uppercase()).await.unwrap();
                            flow.shutdown().await.expect("half-close");
                        })
                        .unwrap();
                        let response = Response::builder()
                            .status(StatusCode::SWITCHING_PROTOCOLS)
                            .header("connection", "upgrade")
                            .header("upgrade", "shout")
                            .body(Full::new(Bytes::new()))
                            .unwrap();
                        Ok::<_, hyper::Error>(response)
                    }
                });
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(flow), service)
                    .with_upgrades()
                    .await
                    .expect("served");
            })
            .unwrap();
    }
    let client = pair.client.app.handle();
    let client_got: Slot<Result<Vec<u8>, String>> = Rc::default();
    let message = letters(70_000, 42);
    client
        .spawn(upgrade_and_talk(
            client.clone(),
            message.clone(),
            client_got.clone(),
        ))
        .unwrap();
    pair.run_until(Duration::from_secs(120), || client_got.borrow().is_some());
    let back = client_got.borrow_mut().take().unwrap().expect("read back");
    assert_eq!(server_got.borrow().as_deref(), Some(&message[..]));
    assert!(back == message.to_ascii_uppercase(), "echo in upper case");
    // Both directions ended and both flows dropped: every connection went back.
    pair.run_until(Duration::from_secs(60), || {
        server.flows() == 0 && client.flows() == 0
    });
}

#[test]
fn listeners_bind_once_close_and_refused_connects_fail() {
    let mut pair = Pair::flows(LinkConfig::default());
    let server = pair.server.app.handle();
    let client = pair.client.app.handle();
    let first = server.bind(9000, None);
    let mut second = server.bind(9000, None);
    let second_result: Slot<Result<Flow, FlowError>> = Rc::default();
    {
        let r = second_result.clone();
        server
            .spawn(async move {
                *r.borrow_mut() = Some(second.accept().await);
            })
            .unwrap();
    }
    pair.run_until(Duration::from_secs(5), || second_result.borrow().is_some());
    assert!(matches!(
        second_result.borrow_mut().take(),
        Some(Err(FlowError::Bind { port: 9000, .. }))
    ));

    // Connected while bound (the flow waits in the listener), refused once it is closed.
    let endpoint = IpEndpoint::new(IpAddress::Ipv4(SERVER_IP), 9000);
    let outcomes: Rc<RefCell<Vec<Result<(), FlowError>>>> = Rc::default();
    let connect_once = |outcomes: &Rc<RefCell<Vec<Result<(), FlowError>>>>| {
        let (c, o) = (client.clone(), outcomes.clone());
        client
            .spawn(async move {
                let result = c.connect(endpoint, None).await.map(drop);
                o.borrow_mut().push(result);
            })
            .unwrap();
    };
    connect_once(&outcomes);
    pair.run_until(Duration::from_secs(30), || outcomes.borrow().len() == 1);
    first.close();
    connect_once(&outcomes);
    pair.run_until(Duration::from_secs(30), || outcomes.borrow().len() == 2);
    let outcomes = outcomes.borrow();
    assert!(outcomes[0].is_ok(), "{:?}", outcomes[0]);
    assert!(
        matches!(&outcomes[1], Err(FlowError::Connect { .. })),
        "{:?}",
        outcomes[1]
    );
}

/// tapir's server keeps the connection after `101` (a `Tunnel`, used through tokio's IO
/// traits: read to the end, answer in upper case, half-close); hyper's client on a tapir
/// flow asks for the upgrade and gets its flow back.
#[test]
fn tapir_tunnel_and_hyper_upgraded_flow_talk_as_tokio_streams() {
    fn shout(request: Request<RequestBody>, _info: &ConnInfo) -> Reply {
        if request.headers().get("upgrade").is_none() {
            return Reply::Now(Response::new(Body::from("ask for Upgrade\n")));
        }
        let response = Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("connection", "upgrade")
            .header("upgrade", "shout")
            .body(Body::empty())
            .unwrap();
        Reply::tunnel(response, |mut tunnel: Tunnel| async move {
            let mut data = Vec::new();
            tunnel
                .read_to_end(&mut data)
                .await
                .expect("read to the client's FIN");
            // Tunnel's own `write_all` takes `Bytes`; this is tokio's.
            AsyncWriteExt::write_all(&mut tunnel, &data.to_ascii_uppercase())
                .await
                .expect("write back");
            tunnel.shutdown().await.expect("half-close");
        })
    }
    let client_flows = Flows::default();
    let client = client_flows.handle();
    let mut pair = Pair::new(
        LinkConfig::default(),
        |stack| {
            let mut server = Server::new(shout, ServerConfig::default());
            server.bind_http(stack, 80).unwrap();
            server
        },
        client_flows,
    );
    let message = letters(90_000, 8);
    let got: Slot<Result<Vec<u8>, String>> = Rc::default();
    client
        .spawn(upgrade_and_talk(
            client.clone(),
            message.clone(),
            got.clone(),
        ))
        .unwrap();
    pair.run_until(Duration::from_secs(120), || got.borrow().is_some());
    let back = got.borrow_mut().take().unwrap().expect("read back");
    assert!(
        back == message.to_ascii_uppercase(),
        "the tunnel answered in upper case"
    );
    pair.run_until(Duration::from_secs(60), || client.flows() == 0);
}

/// A flow that carries nothing for the idle timeout is reset: its owner reads `TimedOut`,
/// the peer reads a reset, and the connection is given back.
#[test]
fn idle_flows_are_reset_after_the_idle_timeout() {
    let server_flows = Flows::new(FlowConfig {
        idle_timeout: std::time::Duration::from_secs(5),
        ..FlowConfig::default()
    });
    let mut pair = Pair::new(LinkConfig::default(), |_| server_flows, Flows::default());
    let server = pair.server.app.handle();
    let client = pair.client.app.handle();
    let server_read: Slot<std::io::ErrorKind> = Rc::default();
    let client_read: Slot<std::io::ErrorKind> = Rc::default();
    {
        let (r, mut listener) = (server_read.clone(), server.bind(7000, None));
        server
            .spawn(async move {
                let mut flow = listener.accept().await.expect("a flow");
                let mut buf = [0u8; 16];
                let kind = match flow.read(&mut buf).await {
                    Ok(n) => panic!("read {n} bytes from a silent peer"),
                    Err(e) => e.kind(),
                };
                *r.borrow_mut() = Some(kind);
            })
            .unwrap();
    }
    {
        let (r, c) = (client_read.clone(), client.clone());
        client
            .spawn(async move {
                let endpoint = IpEndpoint::new(IpAddress::Ipv4(SERVER_IP), 7000);
                let mut flow = c.connect(endpoint, None).await.expect("connected");
                let mut buf = [0u8; 16];
                let kind = match flow.read(&mut buf).await {
                    Ok(n) => panic!("read {n} bytes, expected a reset"),
                    Err(e) => e.kind(),
                };
                *r.borrow_mut() = Some(kind);
            })
            .unwrap();
    }
    let start = pair.sim.now();
    pair.run_until(Duration::from_secs(60), || {
        server_read.borrow().is_some() && client_read.borrow().is_some()
    });
    let took = pair.sim.now() - start;
    assert!(
        took >= Duration::from_secs(5) && took < Duration::from_secs(7),
        "reset after {took}"
    );
    assert_eq!(*server_read.borrow(), Some(std::io::ErrorKind::TimedOut));
    assert_eq!(
        *client_read.borrow(),
        Some(std::io::ErrorKind::ConnectionReset)
    );
    pair.run_until(Duration::from_secs(60), || {
        server.flows() == 0 && client.flows() == 0
    });
}
