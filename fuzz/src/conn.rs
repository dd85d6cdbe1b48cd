//! A full in-memory connection: a client stack whose TCP socket writes the fuzz input (cut
//! into segments, each sent once the previous one is acknowledged, then a FIN) to a real
//! [`Server`] with the built-in site, over the in-memory link on the virtual clock.
//!
//! Invariant beyond "no panic": once the client has closed (or reset, after reading 1 MiB)
//! and time has passed, the server holds no connection and its stack no socket.

use std::collections::VecDeque;

use http::Request;
use tapir::device::memlink::{self, LinkConfig};
use tapir::runtime::sim::{Node, Sim, SimNode};
use tapir::runtime::Application;
use tapir::service::builtin::Builtin;
use tapir::service::server::StatsHandle;
use tapir::service::{ConnInfo, RequestBody, Server, ServerConfig};
use tapir::smoltcp::socket::tcp::State;
use tapir::smoltcp::time::{Duration, Instant};
use tapir::smoltcp::wire::{EthernetAddress, IpAddress, IpCidr, IpEndpoint, Ipv4Address};
use tapir::stack::{Stack, StackConfig, TcpHandle};

/// The HTTP/2 connection preface.
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// The client resets the connection after reading this much.
const READ_CAP: usize = 1 << 20;

const SERVER_IP: Ipv4Address = Ipv4Address::new(10, 7, 0, 2);
const CLIENT_IP: Ipv4Address = Ipv4Address::new(10, 7, 0, 1);

fn stack_config(ip: Ipv4Address, mac_last: u8, seed: u64) -> StackConfig {
    let mut config = StackConfig::new(
        EthernetAddress([0x02, 0, 0, 0, 0, mac_last]),
        vec![IpCidr::new(IpAddress::Ipv4(ip), 24)],
    );
    config.seed = seed;
    // A LISTEN socket holds both buffers: the default backlog of 128 would allocate 16 MiB
    // per run, which is most of a run's time. One connection needs two.
    config.tcp.backlog = 2;
    config
}

/// The client: writes its segments one at a time (until the server closes its side), then
/// closes; reads everything.
struct Client {
    conn: Option<TcpHandle>,
    segments: VecDeque<Vec<u8>>,
    received: usize,
    fin_sent: bool,
    buf: Vec<u8>,
}

impl Application for Client {
    fn poll(&mut self, stack: &mut Stack, _now: Instant) -> bool {
        let Some(conn) = self.conn.as_ref() else {
            return false;
        };
        let mut progressed = false;
        let socket = stack.socket(conn);
        while socket.can_recv() {
            let n = socket.recv_slice(&mut self.buf).unwrap_or(0);
            if n == 0 {
                break;
            }
            self.received += n;
            progressed = true;
        }
        if self.received > READ_CAP {
            if let Some(conn) = self.conn.take() {
                stack.abort(conn);
            }
            return true;
        }
        if socket.state() == State::CloseWait && !self.segments.is_empty() {
            // The server has closed its side: the rest of the input would only be
            // acknowledged and dropped, one round trip per segment.
            self.segments.clear();
        }
        if socket.may_send() && socket.send_queue() == 0 {
            if let Some(mut segment) = self.segments.pop_front() {
                let n = socket.send_slice(&segment).unwrap_or(0);
                if n < segment.len() {
                    segment.drain(..n);
                    self.segments.push_front(segment);
                }
                progressed = true;
            } else if !self.fin_sent {
                socket.close();
                self.fin_sent = true;
                progressed = true;
            }
        }
        if matches!(socket.state(), State::Closed | State::TimeWait) {
            if let Some(conn) = self.conn.take() {
                stack.close(conn);
            }
            progressed = true;
        }
        progressed
    }

    fn is_finished(&self) -> bool {
        self.conn.is_none()
    }
}

/// `TAPIR_FUZZ_DEBUG=1`: print what each run did.
fn debug() -> bool {
    static DEBUG: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *DEBUG.get_or_init(|| std::env::var_os("TAPIR_FUZZ_DEBUG").is_some())
}

/// The target: `[split seed] client bytes...`, sent after the h2c preface when `h2c`.
pub fn run(data: &[u8], h2c: bool) {
    let Some((&seed, input)) = data.split_first() else {
        return;
    };
    let mut bytes = Vec::with_capacity(input.len() + H2_PREFACE.len());
    if h2c {
        bytes.extend_from_slice(H2_PREFACE);
    }
    bytes.extend_from_slice(input);
    let segments = crate::split(&bytes, seed)
        .into_iter()
        .filter(|s| !s.is_empty())
        .map(<[u8]>::to_vec)
        .collect();

    let mut sim = Sim::new();
    let (mut s_dev, mut c_dev) = memlink::pair(LinkConfig::default()).expect("link");
    let mut s_stack =
        Stack::new(stack_config(SERVER_IP, 2, 1), &mut s_dev, sim.now()).expect("stack");
    let mut c_stack =
        Stack::new(stack_config(CLIENT_IP, 1, 2), &mut c_dev, sim.now()).expect("stack");
    let stats = StatsHandle::default();
    let builtin = Builtin::new(stats.clone());
    let handler =
        move |request: Request<RequestBody>, info: &ConnInfo| builtin.handle(request, info);
    let mut server = Server::with_stats(handler, ServerConfig::default(), stats.clone());
    server.bind_http(&mut s_stack, 80).expect("bind");
    let conn = c_stack
        .connect(IpEndpoint::new(IpAddress::Ipv4(SERVER_IP), 80))
        .expect("connect");
    let client = Client {
        conn: Some(conn),
        segments,
        received: 0,
        fin_sent: false,
        buf: vec![0; 64 * 1024],
    };
    let mut server = Node::new(s_stack, s_dev, server);
    let mut client = Node::new(c_stack, c_dev, client);
    let result = sim.run_until(
        &mut [&mut server as &mut dyn SimNode, &mut client],
        Duration::from_secs(900),
        |nodes| {
            let s = stats.get();
            nodes[1].finished() && s.connections_open == 0 && s.stack.connections == 0
        },
    );
    if debug() {
        eprintln!(
            "conn: {result:?}, {} steps, {} bytes received, server stats {:?}",
            sim.steps,
            client.app.received,
            stats.get()
        );
    }
    assert!(
        result.is_ok()
            && server.app.open_connections() == 0
            && server.stack.connection_count() == 0,
        "the server let go of the connection: {result:?}, client finished: {}, \
         server connections: {}, sockets: {:?}, client sockets: {:?}, received {}",
        client.app.is_finished(),
        server.app.open_connections(),
        server.stack.describe_connections(),
        client.stack.describe_connections(),
        client.app.received,
    );
}
