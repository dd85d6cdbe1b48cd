//! One bulk TCP transfer between two tapir stacks over an impaired in-memory link, on the
//! virtual clock: for tests (and benches) of TCP under delay and loss.
//!
//! The client connects, writes `bytes` of a seeded pattern and closes; the server reads
//! everything until the FIN. The client comes back to its socket only when its send waker
//! fires, as a server's connection does, so the stack sees the writes a real application
//! makes (after an ACK made room), not one every turn. The report says whether every byte arrived exactly once (same
//! length and sha256), how long it took in virtual time, and what the link did.

use sha2::{Digest, Sha256};
use smoltcp::socket::tcp::State;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, IpAddress, IpCidr, IpEndpoint, Ipv4Address};
use std::sync::Arc;
use std::task::Waker;
use tapir::device::memlink::{self, LinkConfig, LinkStats};
use tapir::runtime::sim::{Node, Sim, SimNode};
use tapir::runtime::Application;
use tapir::stack::{Stack, StackConfig, TcpHandle};

use super::wake::Flag;

const SERVER_IP: Ipv4Address = Ipv4Address::new(10, 9, 0, 2);
const CLIENT_IP: Ipv4Address = Ipv4Address::new(10, 9, 0, 1);
const PORT: u16 = 5001;
const CHUNK: usize = 64 * 1024;

/// One transfer's path and size.
#[derive(Debug, Clone)]
pub struct Transfer {
    /// Round-trip time: half of it is added in each direction.
    pub rtt: Duration,
    /// Loss probability of each direction.
    pub loss: f64,
    /// Seed of the link's faults (and of the stacks).
    pub seed: u64,
    /// Bytes from client to server.
    pub bytes: usize,
    /// Bottleneck rate of each direction in bytes/s (0: unlimited).
    pub rate: u64,
    /// Virtual time allowed.
    pub limit: Duration,
    /// Changes both stacks' configuration (buffer sizes, congestion control...).
    pub tune: fn(&mut StackConfig),
}

impl Transfer {
    /// `bytes` over a link with this RTT and loss; no rate limit, 30 virtual minutes.
    pub fn new(rtt: Duration, loss: f64, seed: u64, bytes: usize) -> Self {
        Transfer {
            rtt,
            loss,
            seed,
            bytes,
            rate: 0,
            limit: Duration::from_secs(1800),
            tune: |_| {},
        }
    }
}

/// What a transfer did.
#[derive(Debug, Clone)]
pub struct TransferReport {
    /// Every byte arrived exactly once: same length, same sha256.
    pub intact: bool,
    /// Bytes the server read.
    pub received: usize,
    /// Virtual time from the connect to the server reading the FIN.
    pub duration: Duration,
    /// Faults of the client → server direction (data).
    pub data_link: LinkStats,
    /// Faults of the server → client direction (ACKs).
    pub ack_link: LinkStats,
    /// Frames sent by the client and by the server.
    pub frames: (u64, u64),
    /// The largest the client's send buffer grew.
    pub max_send_buffer: usize,
    /// Set when the run did not finish (time limit, stall) or a socket failed.
    pub error: Option<String>,
}

impl TransferReport {
    /// Goodput in bytes per virtual second.
    pub fn throughput(&self) -> f64 {
        self.received as f64 / (self.duration.total_micros().max(1) as f64 / 1e6)
    }
}

/// One line for a test's log: bytes, virtual time, goodput, send buffer, the data link.
impl std::fmt::Display for TransferReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} in {} virtual ({:.0} KB/s), send buffer up to {} KiB, data link {:?}",
            self.received,
            self.duration,
            self.throughput() / 1e3,
            self.max_send_buffer / 1024,
            self.data_link
        )
    }
}

fn stack_config(
    ip: Ipv4Address,
    mac_last: u8,
    seed: u64,
    tune: fn(&mut StackConfig),
) -> StackConfig {
    let mut config = StackConfig::new(
        EthernetAddress([0x02, 0, 0, 0, 9, mac_last]),
        vec![IpCidr::new(IpAddress::Ipv4(ip), 24)],
    );
    config.seed = seed;
    tune(&mut config);
    config
}

/// Writes the pattern, then closes; comes back when the send waker fires.
struct Sender {
    conn: Option<TcpHandle>,
    woken: Arc<Flag>,
    waker: Waker,
    max_send_buffer: usize,
    rng: fastrand::Rng,
    left: usize,
    hash: Sha256,
    buf: Vec<u8>,
    closed: bool,
    failure: Option<String>,
}

impl Application for Sender {
    fn poll(&mut self, stack: &mut Stack, _now: Instant) -> bool {
        let Some(conn) = self.conn.as_ref() else {
            return false;
        };
        if !self.woken.take() {
            return false;
        }
        let socket = stack.socket(conn);
        self.max_send_buffer = self.max_send_buffer.max(socket.send_capacity());
        let mut progressed = false;
        if socket.state() == State::Closed && self.failure.is_none() && !self.closed {
            self.failure = Some(format!(
                "client socket closed with {} bytes left",
                self.left
            ));
        }
        while self.left > 0 && socket.can_send() {
            let room = socket.send_capacity() - socket.send_queue();
            let n = room.min(self.left).min(CHUNK);
            if n == 0 {
                break;
            }
            self.rng.fill(&mut self.buf[..n]);
            let sent = socket.send_slice(&self.buf[..n]).unwrap_or(0);
            self.hash.update(&self.buf[..sent]);
            self.left -= sent;
            progressed |= sent > 0;
        }
        if self.left == 0 && !self.closed {
            socket.close();
            self.closed = true;
            progressed = true;
        }
        socket.register_send_waker(&self.waker);
        progressed
    }

    fn is_finished(&self) -> bool {
        self.closed
    }
}

/// Accepts one connection and reads it to the end.
struct Receiver {
    conn: Option<TcpHandle>,
    received: usize,
    hash: Sha256,
    buf: Vec<u8>,
    done: Option<Instant>,
}

impl Application for Receiver {
    fn poll(&mut self, stack: &mut Stack, now: Instant) -> bool {
        if self.conn.is_none() {
            self.conn = stack.accept(PORT);
        }
        let Some(conn) = self.conn.as_ref() else {
            return false;
        };
        let socket = stack.socket(conn);
        let mut progressed = false;
        while socket.can_recv() {
            let n = socket.recv_slice(&mut self.buf).unwrap_or(0);
            if n == 0 {
                break;
            }
            self.hash.update(&self.buf[..n]);
            self.received += n;
            progressed = true;
        }
        if self.done.is_none() && !socket.may_recv() && socket.recv_queue() == 0 {
            self.done = Some(now);
            if let Some(conn) = self.conn.take() {
                stack.close(conn);
            }
            progressed = true;
        }
        progressed
    }

    fn is_finished(&self) -> bool {
        self.done.is_some()
    }
}

/// Runs one transfer.
pub fn transfer(t: &Transfer) -> TransferReport {
    let mut sim = Sim::new();
    let link = LinkConfig {
        latency: Duration::from_micros(t.rtt.total_micros() / 2),
        loss: t.loss,
        rate: t.rate,
        // Room for any window in flight: the link itself never drops but on purpose.
        queue_limit: 1 << 20,
        seed: t.seed,
        ..LinkConfig::default()
    };
    let (mut s_dev, mut c_dev) = memlink::pair(link).expect("valid link");
    let mut s_stack = Stack::new(
        stack_config(SERVER_IP, 2, t.seed.wrapping_mul(2), t.tune),
        &mut s_dev,
        sim.now(),
    )
    .expect("server stack");
    let mut c_stack = Stack::new(
        stack_config(CLIENT_IP, 1, t.seed.wrapping_mul(2) + 1, t.tune),
        &mut c_dev,
        sim.now(),
    )
    .expect("client stack");
    s_stack.listen(PORT).expect("listen");
    let conn = c_stack
        .connect(IpEndpoint::new(IpAddress::Ipv4(SERVER_IP), PORT))
        .expect("connect");
    // Raised: the first turn writes.
    let woken = Flag::new(true);
    let sender = Sender {
        conn: Some(conn),
        waker: Waker::from(woken.clone()),
        woken,
        max_send_buffer: 0,
        rng: fastrand::Rng::with_seed(t.seed),
        left: t.bytes,
        hash: Sha256::new(),
        buf: vec![0; CHUNK],
        closed: false,
        failure: None,
    };
    let receiver = Receiver {
        conn: None,
        received: 0,
        hash: Sha256::new(),
        buf: vec![0; CHUNK],
        done: None,
    };
    let mut server = Node::new(s_stack, s_dev, receiver);
    let mut client = Node::new(c_stack, c_dev, sender);
    let start = sim.now();
    let run = sim.run_until(
        &mut [&mut server as &mut dyn SimNode, &mut client],
        t.limit,
        |nodes| nodes[0].finished(),
    );
    let sent_hash = client.app.hash.clone().finalize();
    let recv_hash = server.app.hash.clone().finalize();
    let error = match run {
        Err(e) => Some(e.to_string()),
        Ok(_) => client.app.failure.clone(),
    };
    TransferReport {
        intact: server.app.received == t.bytes && sent_hash == recv_hash && client.app.left == 0,
        received: server.app.received,
        duration: server.app.done.map_or(sim.now() - start, |d| d - start),
        data_link: server.device.link_stats(),
        ack_link: client.device.link_stats(),
        frames: (
            client.device.stats().tx_frames,
            server.device.stats().tx_frames,
        ),
        max_send_buffer: client.app.max_send_buffer,
        error,
    }
}
