//! Shared pieces of the integration tests: stacks joined by an in-memory link, and client
//! applications that drive them.
#![allow(dead_code)]

pub mod golden;
pub mod http;
pub mod hyper;
pub mod netns;
pub mod nginx;
pub mod tap;
pub mod transfer;
pub mod wake;

use sha2::{Digest, Sha256};
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, IpAddress, IpCidr, IpEndpoint, Ipv4Address};
use tapir::device::memlink::{self, LinkConfig, MemDevice};
use tapir::runtime::sim::Sim;
use tapir::runtime::Application;
use tapir::stack::{Stack, StackConfig, TcpHandle};

/// The server's address on test links.
pub const SERVER_IP: Ipv4Address = Ipv4Address::new(10, 7, 0, 2);
/// The client's address on test links.
pub const CLIENT_IP: Ipv4Address = Ipv4Address::new(10, 7, 0, 1);

/// A stack configuration for one end of a test link.
pub fn config(ip: Ipv4Address, mac_last: u8, seed: u64) -> StackConfig {
    let mut config = StackConfig::new(
        EthernetAddress([0x02, 0, 0, 0, 0, mac_last]),
        vec![IpCidr::new(IpAddress::Ipv4(ip), 24)],
    );
    config.seed = seed;
    config
}

/// Server and client stacks joined by a link: `(server stack, server device, client stack, client device)`.
pub fn linked(
    link: LinkConfig,
    server: StackConfig,
    client: StackConfig,
    sim: &Sim,
) -> (Stack, MemDevice, Stack, MemDevice) {
    let (mut server_dev, mut client_dev) = memlink::pair(link).expect("valid link");
    let server_stack = Stack::new(server, &mut server_dev, sim.now()).expect("server stack");
    let client_stack = Stack::new(client, &mut client_dev, sim.now()).expect("client stack");
    (server_stack, server_dev, client_stack, client_dev)
}

/// A deterministic byte stream: the same seed always gives the same bytes.
pub struct Pattern {
    rng: fastrand::Rng,
}

impl Pattern {
    pub fn new(seed: u64) -> Self {
        Pattern {
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        self.rng.fill(buf);
    }
}

/// One echo client connection: sends `total` bytes, reads them back, hashes both.
struct EchoFlow {
    conn: Option<TcpHandle>,
    pattern: Pattern,
    to_send: usize,
    received: usize,
    total: usize,
    sent_hash: Sha256,
    recv_hash: Sha256,
    half_closed: bool,
    done: bool,
}

/// Echo clients: each connection sends its own pattern and checks what comes back.
pub struct EchoClient {
    flows: Vec<EchoFlow>,
    buf: Vec<u8>,
    pub failures: Vec<String>,
}

/// The result of one flow: (bytes sent, sha256 sent, bytes received, sha256 received).
pub type FlowResult = (usize, [u8; 32], usize, [u8; 32]);

impl EchoClient {
    /// Opens `connections` connections to `server`, each to echo `bytes` bytes.
    pub fn connect(
        stack: &mut Stack,
        server: IpEndpoint,
        connections: usize,
        bytes: usize,
    ) -> Self {
        let flows = (0..connections)
            .map(|i| EchoFlow {
                conn: Some(stack.connect(server).expect("connect")),
                pattern: Pattern::new(i as u64 + 1),
                to_send: bytes,
                received: 0,
                total: bytes,
                sent_hash: Sha256::new(),
                recv_hash: Sha256::new(),
                half_closed: false,
                done: false,
            })
            .collect();
        EchoClient {
            flows,
            buf: vec![0; 16 * 1024],
            failures: Vec::new(),
        }
    }

    pub fn results(&self) -> Vec<FlowResult> {
        self.flows
            .iter()
            .map(|f| {
                (
                    f.total - f.to_send,
                    f.sent_hash.clone().finalize().into(),
                    f.received,
                    f.recv_hash.clone().finalize().into(),
                )
            })
            .collect()
    }

    pub fn completed(&self) -> usize {
        self.flows.iter().filter(|f| f.done).count()
    }
}

impl Application for EchoClient {
    fn poll(&mut self, stack: &mut Stack, _now: Instant) -> bool {
        let mut progressed = false;
        for flow in &mut self.flows {
            let Some(conn) = flow.conn.as_ref() else {
                continue;
            };
            let socket = stack.socket(conn);
            if socket.state() == smoltcp::socket::tcp::State::Closed && !flow.done {
                self.failures.push(format!(
                    "connection closed after {} of {} bytes echoed",
                    flow.received, flow.total
                ));
                flow.done = true;
            }
            while flow.to_send > 0 && socket.can_send() {
                let room = socket.send_capacity() - socket.send_queue();
                let n = room.min(flow.to_send).min(self.buf.len());
                if n == 0 {
                    break;
                }
                flow.pattern.fill(&mut self.buf[..n]);
                let sent = socket.send_slice(&self.buf[..n]).expect("send");
                assert_eq!(sent, n);
                flow.sent_hash.update(&self.buf[..n]);
                flow.to_send -= n;
                progressed = true;
            }
            if flow.to_send == 0 && !flow.half_closed && socket.may_send() {
                socket.close();
                flow.half_closed = true;
                progressed = true;
            }
            while socket.can_recv() {
                let n = socket.recv_slice(&mut self.buf).unwrap_or(0);
                if n == 0 {
                    break;
                }
                flow.recv_hash.update(&self.buf[..n]);
                flow.received += n;
                progressed = true;
            }
            let finished = !socket.may_recv() && socket.recv_queue() == 0 && flow.half_closed;
            if finished || flow.done {
                flow.done = true;
                if let Some(conn) = flow.conn.take() {
                    stack.close(conn);
                    progressed = true;
                }
            }
        }
        progressed
    }

    fn is_finished(&self) -> bool {
        self.flows.iter().all(|f| f.done && f.conn.is_none())
    }
}
