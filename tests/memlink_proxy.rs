//! tapir's proxy over the in-memory link: a reverse proxy on one stack, the origin and the
//! downstream client on the other. The proxy's downstream and upstream connections live in
//! one connection table and are driven in the same turns.

mod common;

use std::time::Duration as StdDuration;

use common::{config, linked, CLIENT_IP, SERVER_IP};
use http::{Request, Response, StatusCode};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::IpAddress;
use tapir::client::fetch::{Fetch, Job, Outcome, Sink};
use tapir::client::{Client, ClientConfig, Scheme, Target};
use tapir::device::memlink::LinkConfig;
use tapir::proxy::{Proxy, ProxyMode};
use tapir::runtime::sim::{Node, Sim, SimNode};
use tapir::runtime::Application;
use tapir::service::ServerConfig;
use tapir::service::{text_response, Body, ConnInfo, RequestBody, ResponseBody, Server};
use tapir::stack::Stack;

/// The origin's port on the client's stack.
const ORIGIN_PORT: u16 = 8080;
/// The proxy's port.
const PROXY_PORT: u16 = 80;
/// Keep-alive idle time of both the proxy's downstream and upstream connections.
const IDLE: StdDuration = StdDuration::from_secs(5);

/// Collects a response body as text.
#[derive(Default)]
struct Text(String, Option<String>);

impl Sink for Text {
    fn head(&mut self, response: &Response<ResponseBody>) {
        self.1 = response
            .headers()
            .get("via")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
    }
    fn data(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.0.push_str(&String::from_utf8_lossy(data));
        Ok(())
    }
}

/// The origin and the downstream client, on one stack.
struct OriginAndClient<H> {
    origin: Server<H>,
    fetch: Fetch<Text>,
}

impl<H> Application for OriginAndClient<H> {
    fn poll(&mut self, stack: &mut Stack, now: Instant) -> bool {
        self.origin.poll(stack, now) | self.fetch.poll(stack, now)
    }
    fn poll_at(&self, now: Instant) -> Option<Instant> {
        match (self.origin.poll_at(now), self.fetch.poll_at(now)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
    fn is_finished(&self) -> bool {
        self.fetch.is_finished()
    }
}

fn origin_handler(request: Request<RequestBody>, _: &ConnInfo) -> Response<Body> {
    text_response(StatusCode::OK, format!("origin saw {}\n", request.uri()))
}

#[test]
fn a_reverse_proxy_keeps_both_sides_in_one_table_and_times_them_out_in_one_turn() {
    let mut sim = Sim::new();
    let (mut p_stack, p_dev, mut c_stack, c_dev) = linked(
        LinkConfig::default(),
        config(SERVER_IP, 2, 31),
        config(CLIENT_IP, 1, 32),
        &sim,
    );
    let upstream = Target {
        scheme: Scheme::Http,
        host: CLIENT_IP.to_string(),
        port: ORIGIN_PORT,
        addr: IpAddress::Ipv4(CLIENT_IP),
    };
    let upstream_client = Client::new(ClientConfig {
        idle_timeout: IDLE,
        ..ClientConfig::default()
    })
    .unwrap();
    let mut server_config = ServerConfig::default();
    server_config.h1.idle_timeout = IDLE;
    let mut proxy = Proxy::new(
        ProxyMode::Reverse { upstream },
        upstream_client,
        server_config,
    );
    proxy.bind_http(&mut p_stack, PROXY_PORT).unwrap();

    let mut origin = Server::new(
        origin_handler as fn(Request<RequestBody>, &ConnInfo) -> Response<Body>,
        ServerConfig::default(),
    );
    origin.bind_http(&mut c_stack, ORIGIN_PORT).unwrap();
    let at_proxy = Target {
        scheme: Scheme::Http,
        host: SERVER_IP.to_string(),
        port: PROXY_PORT,
        addr: IpAddress::Ipv4(SERVER_IP),
    };
    let jobs = ["/one", "/two"]
        .into_iter()
        .map(|path| {
            let request = Request::get(path).body(Body::empty()).unwrap();
            Job::new(at_proxy.clone(), request, Text::default())
        })
        .collect();
    let fetch = Fetch::new(Client::new(ClientConfig::default()).unwrap(), jobs, false);

    let mut proxy_node = Node::new(p_stack, p_dev, proxy);
    let mut other = Node::new(c_stack, c_dev, OriginAndClient { origin, fetch });
    sim.run_until(
        &mut [&mut proxy_node as &mut dyn SimNode, &mut other],
        Duration::from_secs(60),
        |nodes| nodes[1].finished(),
    )
    .unwrap();

    for job in &other.app.fetch.jobs {
        assert!(
            matches!(job.outcome, Some(Outcome::Done { status, .. }) if status == StatusCode::OK),
            "{:?}",
            job.outcome
        );
    }
    let bodies: Vec<&str> = other
        .app
        .fetch
        .jobs
        .iter()
        .map(|j| j.sink.0.as_str())
        .collect();
    assert_eq!(bodies, ["origin saw /one\n", "origin saw /two\n"]);
    assert_eq!(
        other.app.fetch.jobs[0].sink.1.as_deref(),
        Some("1.1 tapir"),
        "the response came through the proxy"
    );

    // Both requests went over one kept-alive connection on each side, held in one table.
    let proxy = &mut proxy_node.app;
    assert_eq!(proxy.open_connections(), 1, "downstream connections");
    assert_eq!(proxy.upstream_connections(), 1, "upstream connections");
    assert_eq!(proxy.table_len(), 2, "one table holds both sides");
    assert_eq!(proxy.stats_handle().get().connections_open, 1);

    // Both keep-alive timers are the table's: its next turn is when the first is due, and
    // one poll once both are due closes the downstream and the upstream connection.
    let now = sim.now();
    let first = proxy.poll_at(now).expect("an idle timer is armed");
    assert!(
        first > now && first <= now + IDLE.into(),
        "next turn {first} after {now}"
    );
    let both_due = now + IDLE.into() + Duration::from_millis(1);
    proxy.poll(&mut proxy_node.stack, both_due);
    let proxy = &proxy_node.app;
    assert_eq!(
        proxy.table_len(),
        0,
        "both idle connections closed in one poll"
    );
    assert_eq!(proxy.open_connections(), 0);
    assert_eq!(proxy.upstream_connections(), 0);
    assert_eq!(proxy.poll_at(both_due), None, "no timer left");
    assert_eq!(proxy.stats_handle().get().connections_open, 0);
}
