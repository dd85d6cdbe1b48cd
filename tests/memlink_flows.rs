//! Flows as tokio byte streams over the in-memory link: hyper 1.x's own server and client
//! (through hyper-util's `TokioIo`) running on tapir's TCP and TLS flows, against each other
//! and against tapir's own client and server; HTTP/2 chosen by ALPN on a TLS flow; a flow
//! kept after an HTTP exchange (an upgrade) and used as a plain byte stream with
//! half-closes; listeners that close and connects that fail.

mod common;

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
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
use tapir::service::{Body, ConnInfo, RequestBody, ResponseBody, Server, ServerConfig};
use tapir::stack::Stack;
use tapir::transport::certs::{self, Roots};
use tapir::transport::flow::{Flow, FlowConfig, FlowError, FlowHandle, FlowListener, Flows};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower_service::Service;

/// hyper's executor: spawns on the flow table's loop (no runtime).
#[derive(Clone)]
struct LoopExec(FlowHandle);

impl<F> hyper::rt::Executor<F> for LoopExec
where
    F: Future + 'static,
{
    fn execute(&self, future: F) {
        self.0
            .spawn(async move {
                future.await;
            })
            .expect("room for the task");
    }
}

/// A deterministic body of `n` bytes.
fn payload(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect()
}

/// hyper's handler: `<method> <path> <version>\n` then the request body, echoed.
async fn answer(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let head = format!(
        "{} {} {:?}\n",
        request.method(),
        request.uri().path(),
        request.version()
    );
    let body = request.into_body().collect().await?.to_bytes();
    let mut out = head.into_bytes();
    out.extend_from_slice(&body);
    Ok(Response::new(Full::new(Bytes::from(out))))
}

/// Accepts flows on `listener` and serves each with hyper: HTTP/2 when ALPN chose it, else
/// HTTP/1.1 (with upgrades, handed to `upgraded`).
async fn hyper_server(handle: FlowHandle, mut listener: FlowListener, accepted: Rc<Cell<usize>>) {
    while let Ok(flow) = listener.accept().await {
        accepted.set(accepted.get() + 1);
        let exec = LoopExec(handle.clone());
        let h2 = flow.info().is_h2();
        let io = TokioIo::new(flow);
        let task = async move {
            let result = if h2 {
                hyper::server::conn::http2::Builder::new(exec)
                    .serve_connection(io, service_fn(answer))
                    .await
            } else {
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service_fn(answer))
                    .await
            };
            if let Err(e) = result {
                panic!("hyper server connection failed: {e}");
            }
        };
        handle.spawn(task).expect("room for the task");
    }
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

type Results = Rc<RefCell<Option<Result<Vec<(StatusCode, Bytes)>, String>>>>;

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
    let accepted = Rc::new(Cell::new(0));
    server
        .spawn(hyper_server(
            server.clone(),
            server.bind(80, None),
            accepted.clone(),
        ))
        .unwrap();

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
    let accepted = Rc::new(Cell::new(0));
    server
        .spawn(hyper_server(
            server.clone(),
            server.bind(8080, None),
            accepted.clone(),
        ))
        .unwrap();
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
