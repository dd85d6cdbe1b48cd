//! The stack: a smoltcp [`Interface`] and its sockets, plus what smoltcp leaves to its user —
//! listeners with a backlog, a connection cap, closing sockets that are freed (TIME-WAIT
//! included) so nothing leaks, ingress inspection with counters, and DHCP.
//!
//! The stack is sans-IO: [`Stack::poll`] takes the current time and a device, and does
//! nothing else. Drivers (see [`crate::runtime`]) decide where frames and time come from.

mod buffers;
mod cookie;
mod ingress;
mod key;
mod listener;
mod reply;
mod shards;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::fmt;

use smoltcp::iface::{Config, Interface, PollIngressSingleResult};
use smoltcp::phy::{Device, RxToken, TxToken};
use smoltcp::socket::{dhcpv4, dns, tcp};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{
    EthernetAddress, HardwareAddress, IpAddress, IpCidr, IpEndpoint, IpListenEndpoint, IpVersion,
    Ipv4Cidr, Ipv6Address, TcpControl, TcpRepr, TcpSeqNumber, TcpTimestampRepr,
};

pub use cookie::CookiePolicy;
use cookie::Cookies;
pub use ingress::{inspect, inspect_with, Verdict, CHALLENGE_ACKS_PER_SECOND};
use ingress::{Ingress, SynGate, Tally};
use listener::{progress, Listener, Progress};
use reply::Segment;
use shards::{OneFrame, Shards, Slot as SocketHandle};

/// Frames processed per [`Stack::poll`] before the stack yields back to its driver.
const INGRESS_BUDGET: usize = 1024;
/// Frames read before the sockets get to send (ACKs, data a window update released), as
/// a NAPI budget bounds a driver's batch: a burst of 1,024 frames otherwise delayed every
/// answer by the whole batch, and the sender saw one ACK for it.
const INGRESS_BATCH: usize = 64;
/// Largest TCP buffer: a window scale of 14 (RFC 7323) reaches 1 GiB.
pub const MAX_TCP_BUFFER: usize = 1 << 30;
/// The first size a connection's buffer grows to when a transfer fills its initial one.
const FIRST_GROWTH: usize = 64 * 1024;
/// A half-open connection whose SYN-ACK could not be sent this long after its SYN (its
/// neighbour never answered ARP or NDP: smoltcp asks again after a second) is dropped, so
/// SYNs from silent addresses do not hold the backlog for the whole handshake timeout.
const UNRESOLVED_TIMEOUT: Duration = Duration::from_millis(1500);
/// Ephemeral ports for outgoing connections (RFC 6335).
const EPHEMERAL: std::ops::RangeInclusive<u16> = 49152..=65535;

/// Errors raised by the stack.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StackError {
    /// The configuration cannot work.
    #[error("invalid stack configuration: {0}")]
    Config(String),
    /// The port already has a listener.
    #[error("port {0} is already listening")]
    PortInUse(u16),
    /// Port 0 cannot be listened on or connected to.
    #[error("port 0 is not a valid port")]
    PortZero,
    /// The connection cap is reached.
    #[error("connection limit of {0} reached")]
    TooManyConnections(usize),
    /// Every ephemeral port is in use.
    #[error("no free local port for an outgoing connection")]
    NoFreePort,
    /// A DNS query could not be started or failed.
    #[error("DNS lookup of '{name}': {reason}")]
    Dns {
        /// The name looked up.
        name: String,
        /// What went wrong.
        reason: String,
    },
    /// smoltcp could not start a DNS query (too many queries, a bad name).
    #[error("DNS lookup of '{name}'")]
    DnsStart {
        /// The name looked up.
        name: String,
        /// smoltcp's reason.
        #[source]
        reason: dns::StartQueryError,
    },
    /// smoltcp refused to connect (no usable source address or route).
    #[error("cannot connect to {remote}")]
    Connect {
        /// The destination.
        remote: IpEndpoint,
        /// smoltcp's reason.
        #[source]
        reason: tcp::ConnectError,
    },
}

/// How long an incomplete IP datagram may hold smoltcp's fragment reassembly buffer.
/// smoltcp has one such buffer and keeps an incomplete datagram for 60 s by default, so a
/// single stray fragment would block every fragmented datagram for a minute; fragments
/// of one datagram arrive within milliseconds of each other.
pub const REASSEMBLY_TIMEOUT: Duration = Duration::from_secs(3);

/// TCP settings shared by every socket of a stack.
#[derive(Debug, Clone, PartialEq)]
pub struct TcpConfig {
    /// Largest receive buffer per connection, in bytes (bounds the advertised window; the
    /// window scale is chosen for it).
    pub rx_buffer: usize,
    /// Largest send buffer per connection, in bytes.
    pub tx_buffer: usize,
    /// Both buffers of a new connection start at this size (when smaller than the above)
    /// and grow with the measured bandwidth-delay product up to `rx_buffer` and
    /// `tx_buffer` (see [`Stack::socket`]); an idle connection shrinks back to it. Idle
    /// and small request/response connections stay small.
    pub initial_buffer: usize,
    /// Bytes all TCP buffers of the stack together may take: once reached, connections
    /// keep the buffers they have and stop growing.
    pub memory: usize,
    /// Half-open connections (plus the few LISTEN sockets) per listening port.
    pub backlog: usize,
    /// When SYNs are answered with SYN cookies instead of taking a backlog slot.
    pub syn_cookies: CookiePolicy,
    /// Cap on connections (half-open, established and closing) of the whole stack (an
    /// idle connection holds no TCP buffers: about 2 KiB with its HTTP state).
    pub max_connections: usize,
    /// A handshake not completed within this time is dropped.
    pub handshake_timeout: Duration,
    /// A closed connection whose FIN exchange is not over within this time is reset.
    pub close_timeout: Duration,
    /// Nagle's algorithm (off by default: request/response traffic wants low latency).
    pub nagle: bool,
    /// Delayed-ACK timer; `None` acknowledges every segment at once.
    pub ack_delay: Option<Duration>,
    /// Keep-alive probe interval of an idle connection (off by default: idle connections
    /// cost no wake-ups; application idle timeouts close them instead).
    pub keep_alive: Option<Duration>,
    /// A connection whose peer sends nothing for this long is aborted, so a peer that
    /// vanished without a FIN or RST is freed instead of retransmitted to (or waited on)
    /// forever. smoltcp counts from the peer's last segment even on an idle connection, so
    /// set `keep_alive` below it or idle connections are aborted too (off by default).
    pub timeout: Option<Duration>,
    /// Floor of the retransmission timeout computed from the measured RTT (RFC 6298);
    /// 200 ms like Linux (smoltcp's own default is RFC 6298's 1 s).
    pub min_rto: Duration,
    /// Congestion control algorithm of every connection (BBR by default, CUBIC or Reno).
    pub congestion: tcp::CongestionControl,
    /// Offer TCP timestamps (RFC 7323, on by default as in Linux): RTT samples from every
    /// ACK, retransmissions included, for the RTO and for receive-buffer autotuning.
    /// Timestamps run on the stack's clock in milliseconds plus a random offset.
    pub timestamps: bool,
}

impl Default for TcpConfig {
    fn default() -> Self {
        TcpConfig {
            rx_buffer: 16 << 20,
            tx_buffer: 16 << 20,
            initial_buffer: 4 * 1024,
            memory: 256 << 20,
            backlog: 128,
            syn_cookies: CookiePolicy::Overflow,
            max_connections: 131_072,
            handshake_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(30),
            nagle: false,
            ack_delay: Some(Duration::from_millis(10)),
            keep_alive: None,
            timeout: None,
            min_rto: Duration::from_millis(200),
            congestion: tcp::CongestionControl::Bbr,
            timestamps: true,
        }
    }
}

/// How to build a stack.
#[derive(Debug, Clone, PartialEq)]
pub struct StackConfig {
    /// Our MAC address.
    pub mac: EthernetAddress,
    /// Static addresses (IPv4 and IPv6). An IPv6 link-local address is always added.
    pub addresses: Vec<IpCidr>,
    /// Default gateways (at most one per IP version).
    pub gateways: Vec<IpAddress>,
    /// Run a DHCPv4 client; its lease replaces any static IPv4 address.
    pub dhcp: bool,
    /// Seed for ISNs and ephemeral ports. Fixed seeds give reproducible runs.
    pub seed: u64,
    /// TCP settings.
    pub tcp: TcpConfig,
}

impl StackConfig {
    /// A configuration with the given MAC and addresses, and defaults for the rest.
    pub fn new(mac: EthernetAddress, addresses: Vec<IpCidr>) -> Self {
        StackConfig {
            mac,
            addresses,
            gateways: Vec::new(),
            dhcp: false,
            seed: 0,
            tcp: TcpConfig::default(),
        }
    }
}

/// Counters of a stack, all since it started.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StackStats {
    /// Frames received from the device.
    pub rx_frames: u64,
    /// Bytes received from the device.
    pub rx_bytes: u64,
    /// Frames sent to the device.
    pub tx_frames: u64,
    /// Bytes sent to the device.
    pub tx_bytes: u64,
    /// Frames dropped as truncated or inconsistent.
    pub rx_malformed: u64,
    /// Frames dropped for a bad checksum.
    pub rx_bad_checksum: u64,
    /// SYNs dropped because the listener's backlog or the connection cap was full.
    pub syn_dropped: u64,
    /// RSTs dropped because their sequence number was not the one expected (RFC 5961).
    pub rst_dropped: u64,
    /// Challenge ACKs sent (RFC 5961): for in-window RSTs that are not exact and SYNs on
    /// synchronized connections, at most [`CHALLENGE_ACKS_PER_SECOND`].
    pub challenge_acks: u64,
    /// Connections whose handshake completed on a listener (SYN cookie ones included).
    pub accepted: u64,
    /// SYN-ACKs sent with a SYN cookie.
    pub cookies_sent: u64,
    /// Connections opened from a valid SYN cookie.
    pub cookies_accepted: u64,
    /// ACKs whose SYN cookie was invalid (forged, stale, replayed) or came at the
    /// connection cap.
    pub cookies_rejected: u64,
    /// Half-open connections dropped at the handshake timeout.
    pub handshake_timeouts: u64,
    /// Half-open connections dropped early because their SYN-ACK could never be sent (the
    /// peer's address did not resolve).
    pub handshake_unresolved: u64,
    /// Half-open connections their peer reset (an RST exactly in sequence).
    pub handshake_resets: u64,
    /// Outgoing connections opened.
    pub connected: u64,
    /// Connections freed after closing.
    pub closed: u64,
    /// Closing connections reset at the close timeout.
    pub close_timeouts: u64,
    /// Connections now open (half-open, established or closing).
    pub connections: usize,
    /// Sockets in LISTEN now.
    pub listening: usize,
    /// Bytes of TCP buffers now (every socket's receive and send buffer).
    pub tcp_memory: usize,
    /// Connections holding TCP buffers now (an idle connection holds none).
    pub tcp_buffers_held: usize,
    /// The congestion control algorithm of new connections: "bbr", "cubic", "reno" or
    /// "none" ("" in a default-constructed value).
    pub congestion_control: &'static str,
}

/// The name `--tcp-cc` and `/stats` give a congestion control algorithm.
pub fn congestion_name(congestion: tcp::CongestionControl) -> &'static str {
    match congestion {
        tcp::CongestionControl::None => "none",
        tcp::CongestionControl::Reno => "reno",
        tcp::CongestionControl::Cubic => "cubic",
        tcp::CongestionControl::Bbr => "bbr",
    }
}

/// A connection owned by the application. Not `Clone`: closing it consumes the handle, so a
/// freed socket can never be touched again.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct TcpHandle(SocketHandle);

impl TcpHandle {
    /// A copyable key naming this connection (for maps and logs).
    pub fn id(&self) -> ConnId {
        ConnId(self.0)
    }
}

/// A DNS lookup in progress. Not `Clone`: its result is taken once.
pub struct DnsQuery(dns::QueryHandle, String);

impl fmt::Debug for DnsQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DnsQuery({})", self.1)
    }
}

/// The state of a [`DnsQuery`].
#[derive(Debug)]
pub enum DnsPoll {
    /// Still waiting; poll again with the query.
    Pending(DnsQuery),
    /// Finished: the addresses found, or why none were.
    Done(Result<Vec<IpAddress>, StackError>),
}

/// A copyable name for a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId(SocketHandle);

impl ConnId {
    /// An id that names no connection, for unit tests of code that only carries ids.
    #[cfg(test)]
    pub(crate) fn for_tests(n: u32) -> ConnId {
        ConnId(SocketHandle::for_tests(n))
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

struct Gate<'a> {
    listeners: &'a HashMap<u16, Listener>,
    at_cap: bool,
}

impl SynGate for Gate<'_> {
    fn is_full(&self, port: u16) -> bool {
        match self.listeners.get(&port) {
            Some(listener) => self.at_cap || listener.is_full(),
            // No listener: smoltcp answers with a RST, as it should.
            None => false,
        }
    }
}

/// What the SYN cookie check did with a frame.
enum CookieStep {
    /// Nothing: smoltcp gets the frame.
    Pass,
    /// A SYN answered with a cookie: the frame is consumed.
    Answered,
    /// A valid cookie opened a connection: the frame goes to it.
    Accepted,
}

/// What one [`Stack::poll`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PollOutcome {
    /// Frames moved or socket states changed: the application should look at its sockets.
    pub activity: bool,
    /// The ingress budget ran out with frames still waiting: poll again without sleeping.
    pub more: bool,
}

/// A userspace TCP/IP stack on one Ethernet interface.
pub struct Stack {
    iface: Interface,
    sockets: Shards,
    /// The frame being routed to its shard.
    frame: Vec<u8>,
    config: StackConfig,
    listeners: HashMap<u16, Listener>,
    /// Connections the application holds (accepted or connected).
    held: usize,
    /// Connections the application closed, with the instant they must be gone by.
    closing: Vec<(SocketHandle, Instant)>,
    /// Local ports of outgoing connections, by socket.
    client_ports: HashMap<SocketHandle, u16>,
    ports_in_use: HashSet<u16>,
    dhcp: Option<SocketHandle>,
    dns_servers: Vec<IpAddress>,
    dns: Option<SocketHandle>,
    tally: Tally,
    cookies: Cookies,
    /// The device's IP MTU (for the MSS of cookie SYN-ACKs).
    ip_mtu: usize,
    stats: StackStats,
    rng: fastrand::Rng,
    /// Our TCP timestamp clock is `now` in milliseconds plus this (random, so TSvals do not
    /// tell the uptime; one for the stack, so SYN cookies' TSvals fit the clock too).
    ts_offset: u32,
    now: Instant,
}

/// True when the stack sent the SYN-ACK of `socket`'s handshake.
fn sent_on(tally: &Tally, socket: &tcp::Socket) -> bool {
    ingress::TcpKey::of_socket(socket).is_some_and(|key| tally.has_sent(&key))
}

/// The IPv6 link-local address derived from a MAC (modified EUI-64, RFC 4291).
pub fn link_local(mac: EthernetAddress) -> Ipv6Address {
    let m = mac.0;
    Ipv6Address::new(
        0xfe80,
        0,
        0,
        0,
        u16::from_be_bytes([m[0] ^ 0x02, m[1]]),
        u16::from_be_bytes([m[2], 0xff]),
        u16::from_be_bytes([0xfe, m[3]]),
        u16::from_be_bytes([m[4], m[5]]),
    )
}

impl Stack {
    /// Builds a stack on `device`. The device's capabilities (MTU, checksums) are read now.
    pub fn new<D: Device>(
        config: StackConfig,
        device: &mut D,
        now: Instant,
    ) -> Result<Self, StackError> {
        if !config.mac.is_unicast() {
            return Err(StackError::Config(format!(
                "MAC {} is not unicast",
                config.mac
            )));
        }
        if config.tcp.backlog == 0 || config.tcp.max_connections == 0 {
            return Err(StackError::Config(
                "backlog and max-connections must be at least 1".into(),
            ));
        }
        if config.tcp.rx_buffer < 1024
            || config.tcp.tx_buffer < 1024
            || config.tcp.initial_buffer < 1024
        {
            return Err(StackError::Config(
                "TCP buffers must be at least 1 KiB".into(),
            ));
        }
        if config.tcp.rx_buffer.max(config.tcp.tx_buffer) > MAX_TCP_BUFFER {
            return Err(StackError::Config(format!(
                "TCP buffers must be at most {} MiB",
                MAX_TCP_BUFFER >> 20
            )));
        }
        let mut iface_config = Config::new(HardwareAddress::Ethernet(config.mac));
        iface_config.random_seed = config.seed;
        let mut iface = Interface::new(iface_config, device, now);
        iface.set_reassembly_timeout(REASSEMBLY_TIMEOUT);

        let mut addresses = config.addresses.clone();
        let ll = IpCidr::new(IpAddress::Ipv6(link_local(config.mac)), 64);
        if !addresses.contains(&ll) {
            addresses.push(ll);
        }
        let mut overflow = false;
        iface.update_ip_addrs(|addrs| {
            for cidr in &addresses {
                overflow |= addrs.push(*cidr).is_err();
            }
        });
        if overflow {
            return Err(StackError::Config(format!(
                "too many addresses ({}); the interface holds 8",
                addresses.len()
            )));
        }
        for gateway in &config.gateways {
            let added = match gateway {
                IpAddress::Ipv4(v4) => iface.routes_mut().add_default_ipv4_route(*v4).is_ok(),
                IpAddress::Ipv6(v6) => iface.routes_mut().add_default_ipv6_route(*v6).is_ok(),
            };
            if !added {
                return Err(StackError::Config(format!(
                    "cannot add a route via {gateway}"
                )));
            }
        }

        let tcp = &config.tcp;
        let sizes = buffers::BufferSizes {
            rx_initial: tcp.initial_buffer.min(tcp.rx_buffer),
            tx_initial: tcp.initial_buffer.min(tcp.tx_buffer),
            rx_max: tcp.rx_buffer,
        };
        let mut sockets = Shards::new(sizes, tcp.memory, now);
        let dhcp = config
            .dhcp
            .then(|| sockets.add_control(dhcpv4::Socket::new()));
        let mut rng = fastrand::Rng::with_seed(config.seed ^ 0x0074_6170_6972);
        Ok(Stack {
            iface,
            sockets,
            frame: Vec::new(),
            ts_offset: rng.u32(..),
            rng,
            config,
            listeners: HashMap::new(),
            held: 0,
            closing: Vec::new(),
            client_ports: HashMap::new(),
            ports_in_use: HashSet::new(),
            dhcp,
            dns_servers: Vec::new(),
            dns: None,
            tally: Tally::default(),
            cookies: Cookies::default(),
            ip_mtu: device.capabilities().ip_mtu(),
            stats: StackStats::default(),
            now,
        })
    }

    /// The configuration the stack was built with.
    pub fn config(&self) -> &StackConfig {
        &self.config
    }

    /// Current addresses (static, link-local and DHCP-assigned).
    pub fn addresses(&self) -> Vec<IpCidr> {
        self.iface.ip_addrs().to_vec()
    }

    /// DNS servers learnt from DHCP.
    pub fn dns_servers(&self) -> &[IpAddress] {
        &self.dns_servers
    }

    /// The time of the last poll.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Starts looking up `name` (A records, or AAAA with `ipv6`) with `servers` (or, when
    /// empty, the servers DHCP gave). Poll the result with [`Stack::dns_result`].
    pub fn resolve(
        &mut self,
        name: &str,
        servers: &[IpAddress],
        ipv6: bool,
    ) -> Result<DnsQuery, StackError> {
        let err = |reason: String| StackError::Dns {
            name: name.to_string(),
            reason,
        };
        let servers: Vec<IpAddress> = if servers.is_empty() {
            self.dns_servers.clone()
        } else {
            servers.to_vec()
        };
        if servers.is_empty() {
            return Err(err(
                "no DNS server (give one with --dns, or use --dhcp)".into()
            ));
        }
        let handle = match self.dns {
            Some(h) => h,
            None => {
                let socket = dns::Socket::new(&servers, vec![None, None, None, None]);
                let h = self.sockets.add_control(socket);
                self.dns = Some(h);
                h
            }
        };
        let socket = self.sockets.get_mut::<dns::Socket>(handle);
        socket.update_servers(&servers);
        let kind = if ipv6 {
            smoltcp::wire::DnsQueryType::Aaaa
        } else {
            smoltcp::wire::DnsQueryType::A
        };
        socket
            .start_query(self.iface.context(), name, kind)
            .map(|q| DnsQuery(q, name.to_string()))
            .map_err(|reason| StackError::DnsStart {
                name: name.to_string(),
                reason,
            })
    }

    /// The outcome of a lookup: the query back while it is pending, or its addresses.
    pub fn dns_result(&mut self, query: DnsQuery) -> DnsPoll {
        let Some(handle) = self.dns else {
            return DnsPoll::Done(Err(StackError::Dns {
                name: query.1,
                reason: "no lookup in progress".into(),
            }));
        };
        let socket = self.sockets.get_mut::<dns::Socket>(handle);
        match socket.get_query_result(query.0) {
            Ok(addrs) => DnsPoll::Done(Ok(addrs.iter().copied().collect())),
            Err(dns::GetQueryResultError::Pending) => DnsPoll::Pending(query),
            Err(dns::GetQueryResultError::Failed) => DnsPoll::Done(Err(StackError::Dns {
                name: query.1,
                reason: "no answer".into(),
            })),
        }
    }

    /// Processes received frames, runs timers and sends what the sockets have queued.
    pub fn poll<D: Device>(&mut self, now: Instant, device: &mut D) -> PollOutcome {
        self.now = now;
        let mut outcome = PollOutcome::default();
        self.iface.poll_maintenance(now);
        let mut budget = INGRESS_BUDGET;
        loop {
            if budget == 0 {
                outcome.more = true;
                break;
            }
            budget -= 1;
            let read = INGRESS_BUDGET - 1 - budget;
            if read > 0 && read % INGRESS_BATCH == 0 {
                self.egress(now, device, &mut outcome);
            }
            // Read the frame first, to hand smoltcp only the shard of its connection.
            let Some((rx, _)) = device.receive(now) else {
                break;
            };
            let frame = &mut self.frame;
            let meta = rx.meta();
            rx.consume(|data| {
                frame.clear();
                frame.extend_from_slice(data);
            });
            let mut route = self.sockets.route(&self.frame);
            if route.shard == 0 && self.config.tcp.syn_cookies != CookiePolicy::Never {
                match self.cookie_step(now, meta.checksum_valid) {
                    CookieStep::Pass => {}
                    CookieStep::Answered => {
                        self.tally.count_received(self.frame.len());
                        self.send_replies(now, device);
                        continue;
                    }
                    // The ACK (and any data on it) goes to the new connection.
                    CookieStep::Accepted => route = self.sockets.route(&self.frame),
                }
            }
            // The RFC 5961 checks of an RST or SYN need the numbers of its connection.
            self.tally.set_synchronized(if route.rst || route.syn {
                self.sockets.synchronized(&route, now)
            } else {
                None
            });
            let gate = Gate {
                listeners: &self.listeners,
                at_cap: self.connection_count() >= self.config.tcp.max_connections,
            };
            let mut one = OneFrame {
                frame: Some(&self.frame),
                meta,
                inner: &mut *device,
            };
            let mut dev = Ingress {
                inner: &mut one,
                tally: &self.tally,
                gate: &gate,
            };
            let set = self.sockets.set_for_ingress(&route);
            let result = match route.socket {
                Some(socket) => self
                    .iface
                    .poll_ingress_single_for(now, &mut dev, set, socket),
                None => self.iface.poll_ingress_single(now, &mut dev, set),
            };
            match result {
                PollIngressSingleResult::None => break,
                PollIngressSingleResult::PacketProcessed => {}
                PollIngressSingleResult::SocketStateChanged => {
                    outcome.activity = true;
                    if route.shard == 0 && route.rst {
                        self.reclaim_reset_handshake(now);
                    }
                }
            }
            if let Some(port) = self.tally.take_syn_port() {
                self.refill(port, now);
            }
            self.send_replies(now, device);
        }
        self.egress(now, device, &mut outcome);
        self.maintain(now);
        // Maintenance may have queued RSTs (aborted sockets) or opened listeners.
        self.egress(now, device, &mut outcome);
        outcome
    }

    /// Answers a SYN with a cookie, or opens a connection from an ACK's valid cookie (see
    /// [`cookie`]), for the frame in `self.frame`, which no connection holds.
    /// `checksum_valid`: the device vouched for the frame's checksums (offloads), so they are
    /// not checked here (a local sender's frames then carry only a partial checksum).
    fn cookie_step(&mut self, now: Instant, checksum_valid: bool) -> CookieStep {
        let frame = std::mem::take(&mut self.frame);
        let step = self.cookie_frame(&frame, now, checksum_valid);
        self.frame = frame;
        step
    }

    fn cookie_frame(&mut self, frame: &[u8], now: Instant, checksum_valid: bool) -> CookieStep {
        if !matches!(
            inspect_with(frame, checksum_valid),
            Verdict::Pass | Verdict::Syn(_)
        ) {
            return CookieStep::Pass;
        }
        let Some(seg) = Segment::parse(frame) else {
            return CookieStep::Pass;
        };
        let tcp = &seg.tcp;
        let Some(listener) = self.listeners.get(&tcp.dst_port) else {
            return CookieStep::Pass;
        };
        if !self.iface.has_ip_addr(seg.dst) {
            return CookieStep::Pass;
        }
        let policy = self.config.tcp.syn_cookies;
        let (local, remote) = (
            IpEndpoint::new(seg.dst, tcp.dst_port),
            IpEndpoint::new(seg.src, tcp.src_port),
        );
        let at_cap = self.connection_count() >= self.config.tcp.max_connections;
        match (tcp.control, tcp.ack_number) {
            (TcpControl::Syn, None) => {
                if policy == CookiePolicy::Overflow && !listener.is_full() && !at_cap {
                    return CookieStep::Pass;
                }
                let syn = cookie::Syn {
                    local,
                    remote,
                    isn: tcp.seq_number.0 as u32,
                    mss: tcp.max_seg_size,
                    window_scale: tcp.window_scale,
                    sack_permitted: tcp.sack_permitted,
                    tsval: tcp.timestamp.map(|t| t.tsval),
                };
                let answer = self.cookies.make(&syn, now, self.tsval(now));
                let our_mss = self.our_mss(seg.dst);
                let synack = TcpRepr {
                    src_port: tcp.dst_port,
                    dst_port: tcp.src_port,
                    control: TcpControl::Syn,
                    seq_number: TcpSeqNumber(answer.iss as i32),
                    ack_number: Some(tcp.seq_number + 1),
                    window_len: self.syn_ack_window(),
                    window_scale: answer.window_scale.map(|_| self.window_shift()),
                    max_seg_size: Some(our_mss),
                    sack_permitted: answer.sack_permitted,
                    sack_ranges: [None; 3],
                    timestamp: answer
                        .tsval
                        .zip(syn.tsval)
                        .map(|(ours, theirs)| TcpTimestampRepr::new(ours, theirs)),
                    payload: &[],
                };
                self.tally.push_reply(seg.reply(&synack));
                self.stats.cookies_sent += 1;
                CookieStep::Answered
            }
            (TcpControl::None | TcpControl::Psh | TcpControl::Fin, Some(ack_number)) => {
                if policy == CookiePolicy::Overflow && !self.cookies.recently_sent(now) {
                    return CookieStep::Pass;
                }
                let sockets = &self.sockets;
                let handshaking = listener.half_open.iter().any(|(h, _)| {
                    let s = sockets.get::<tcp::Socket>(*h);
                    s.local_endpoint() == Some(local) && s.remote_endpoint() == Some(remote)
                });
                if handshaking {
                    return CookieStep::Pass;
                }
                let ack = cookie::Ack {
                    local,
                    remote,
                    seq: tcp.seq_number.0 as u32,
                    ack: ack_number.0 as u32,
                    tsecr: tcp.timestamp.map(|t| t.tsecr),
                };
                let granted = match self.cookies.check(&ack, now) {
                    Ok(granted) if !at_cap => granted,
                    _ => {
                        self.stats.cookies_rejected += 1;
                        return CookieStep::Pass;
                    }
                };
                let mut socket = self.new_socket();
                // The cookie's SYN-ACK carried timestamps whatever the configuration.
                socket.set_timestamp_clock(Some(self.ts_offset));
                let handshake = tcp::CookieHandshake {
                    local,
                    remote,
                    iss: TcpSeqNumber(granted.iss as i32),
                    irs: TcpSeqNumber(granted.irs as i32),
                    mss: granted.mss.min(self.our_mss(local.addr)),
                    window_scale: granted.window_scale,
                    local_window_shift: self.window_shift(),
                    syn_ack_window: self.syn_ack_window(),
                    window: tcp.window_len,
                    sack_permitted: granted.sack_permitted,
                    timestamp: tcp.timestamp.map(|t| t.tsval),
                    tsval_generator: None,
                    now,
                };
                if socket.accept_cookie(&handshake).is_err() {
                    self.stats.cookies_rejected += 1;
                    return CookieStep::Pass;
                }
                let handle = self.sockets.add_connection(socket);
                if let Some(listener) = self.listeners.get_mut(&local.port) {
                    listener.ready.push_back(handle);
                }
                self.stats.accepted += 1;
                self.stats.cookies_accepted += 1;
                CookieStep::Accepted
            }
            _ => CookieStep::Pass,
        }
    }

    /// Our TCP timestamp clock at `now` (see `ts_offset`).
    fn tsval(&self, now: Instant) -> u32 {
        (now.total_millis() as u32).wrapping_add(self.ts_offset)
    }

    /// The MSS our MTU allows for a connection on local address `addr`.
    fn our_mss(&self, addr: IpAddress) -> u16 {
        let headers = if addr.version() == IpVersion::Ipv4 {
            40
        } else {
            60
        };
        self.ip_mtu
            .saturating_sub(headers)
            .min(usize::from(u16::MAX)) as u16
    }

    /// The window field of a SYN-ACK: a new socket's receive buffer, unscaled.
    fn syn_ack_window(&self) -> u16 {
        let tcp = &self.config.tcp;
        tcp.initial_buffer
            .min(tcp.rx_buffer)
            .min(usize::from(u16::MAX)) as u16
    }

    /// The window scale a new socket announces (smoltcp's rule, for the full buffer).
    fn window_shift(&self) -> u8 {
        let tcp = &self.config.tcp;
        let capacity = tcp.rx_buffer.max(tcp.initial_buffer).min(1 << 30);
        (usize::BITS - capacity.leading_zeros()).saturating_sub(16) as u8
    }

    /// Sends the segments the ingress answered on its own (challenge ACKs).
    fn send_replies<D: Device>(&mut self, now: Instant, device: &mut D) {
        for frame in self.tally.take_replies() {
            let Some(tx) = device.transmit(now) else {
                // The device is full: these are best-effort answers, like any lost frame.
                break;
            };
            self.tally.count_sent(frame.len());
            tx.consume(frame.len(), |buf| buf.copy_from_slice(&frame));
        }
    }

    /// Sends whatever the sockets have queued, without reading the device.
    pub fn flush<D: Device>(&mut self, now: Instant, device: &mut D) -> bool {
        let mut outcome = PollOutcome::default();
        self.now = now;
        self.egress(now, device, &mut outcome);
        outcome.activity
    }

    fn egress<D: Device>(&mut self, now: Instant, device: &mut D, outcome: &mut PollOutcome) {
        let gate = Gate {
            listeners: &self.listeners,
            at_cap: false,
        };
        let mut dev = Ingress {
            inner: device,
            tally: &self.tally,
            gate: &gate,
        };
        if self.sockets.egress(&mut self.iface, now, &mut dev) {
            outcome.activity = true;
        }
    }

    /// When the stack next needs a poll even if no frame arrives (`None`: only on input).
    pub fn poll_at(&mut self, now: Instant) -> Option<Instant> {
        let mut at = self.sockets.poll_at(&mut self.iface, now);
        let mut earliest = |t: Instant| at = Some(at.map_or(t, |a| a.min(t)));
        let handshake = self.config.tcp.handshake_timeout;
        for listener in self.listeners.values() {
            for (_, since) in &listener.half_open {
                earliest(*since + handshake);
                // The check for a SYN-ACK that never left (past it, only the timeout).
                let unresolved = *since + UNRESOLVED_TIMEOUT;
                if unresolved > now {
                    earliest(unresolved);
                }
            }
        }
        for (_, deadline) in &self.closing {
            earliest(*deadline);
        }
        if let Some(release) = self.sockets.release_at() {
            earliest(release);
        }
        at
    }

    /// Connections counted against the cap: half-open, waiting to be accepted, held by the
    /// application, and closing.
    pub fn connection_count(&self) -> usize {
        let pending: usize = self
            .listeners
            .values()
            .map(|l| l.half_open.len() + l.ready.len())
            .sum();
        pending + self.held + self.closing.len()
    }

    /// One line per connected TCP socket (state, queues, endpoints), for diagnostics.
    pub fn describe_connections(&self) -> Vec<String> {
        self.sockets
            .iter()
            .filter_map(|(handle, socket)| match socket {
                smoltcp::socket::Socket::Tcp(tcp) if tcp.state() != tcp::State::Listen => {
                    Some(format!(
                    "{handle}: {} {:?} -> {:?} send_queue={}/{} recv_queue={}/{} can_send={} can_recv={}",
                    tcp.state(),
                    tcp.local_endpoint(),
                    tcp.remote_endpoint(),
                    tcp.send_queue(),
                    tcp.send_capacity(),
                    tcp.recv_queue(),
                    tcp.recv_capacity(),
                    tcp.can_send(),
                    tcp.can_recv()
                ))
                }
                _ => None,
            })
            .collect()
    }

    /// Every socket in the set: listening, connected, closing, and the DHCP socket.
    pub fn socket_count(&self) -> usize {
        self.sockets.len()
    }

    /// Counters, with the current connection and listening-socket counts.
    pub fn stats(&self) -> StackStats {
        let mut stats = self.stats;
        self.tally.fill(&mut stats);
        stats.connections = self.connection_count();
        stats.listening = self.listeners.values().map(|l| l.listening.len()).sum();
        stats.tcp_memory = self.sockets.memory();
        stats.tcp_buffers_held = self.sockets.holding();
        stats.congestion_control = congestion_name(self.config.tcp.congestion);
        stats
    }

    /// Starts accepting connections on `port` (every local address), with up to `backlog`
    /// handshakes in progress.
    pub fn listen(&mut self, port: u16) -> Result<(), StackError> {
        if port == 0 {
            return Err(StackError::PortZero);
        }
        if self.listeners.contains_key(&port) {
            return Err(StackError::PortInUse(port));
        }
        self.listeners.insert(port, Listener::default());
        self.refill(port, self.now);
        Ok(())
    }

    /// Stops listening on `port`. Connections already accepted are not affected; half-open
    /// and not-yet-accepted ones are reset.
    pub fn unlisten(&mut self, port: u16) {
        let Some(listener) = self.listeners.remove(&port) else {
            return;
        };
        for handle in listener.listening {
            self.sockets.remove(handle);
        }
        let now = self.now;
        for handle in listener
            .half_open
            .into_iter()
            .map(|(h, _)| h)
            .chain(listener.ready)
        {
            self.sockets.get_mut::<tcp::Socket>(handle).abort();
            self.closing.push((handle, now));
        }
    }

    /// Takes the next established connection on `port`, if any.
    pub fn accept(&mut self, port: u16) -> Option<TcpHandle> {
        let handle = self.listeners.get_mut(&port)?.ready.pop_front()?;
        self.held += 1;
        Some(TcpHandle(handle))
    }

    /// Opens a connection to `remote` from an ephemeral port. The handshake proceeds as the
    /// stack is polled; watch the socket's state.
    pub fn connect(&mut self, remote: IpEndpoint) -> Result<TcpHandle, StackError> {
        if remote.port == 0 {
            return Err(StackError::PortZero);
        }
        let cap = self.config.tcp.max_connections;
        if self.connection_count() >= cap {
            return Err(StackError::TooManyConnections(cap));
        }
        let port = self.ephemeral_port()?;
        let mut socket = self.new_socket();
        // A connection we open is about to receive a response: its SYN offers a 64 KiB
        // receive window (Linux's initial window), not the initial buffer's 4 KiB, which
        // held a response's first round trips to 3 segments and then 32 KiB. Only while
        // the buffers of all connections take less than half of the memory budget: the
        // initial buffers of the connections still to come must fit too.
        let rx = FIRST_GROWTH.min(self.config.tcp.rx_buffer);
        let grow = rx.saturating_sub(socket.recv_capacity());
        if grow > 0 && self.sockets.memory() + grow <= self.config.tcp.memory / 2 {
            let buffers = (
                tcp::SocketBuffer::new(vec![0; rx]),
                tcp::SocketBuffer::new(vec![0; socket.send_capacity()]),
            );
            // Empty buffers, at least as large: never refused.
            let _ = socket.replace_buffers(buffers.0, buffers.1);
        }
        socket
            .connect(self.iface.context(), remote, port)
            .map_err(|reason| StackError::Connect { remote, reason })?;
        let handle = self.sockets.add_connection(socket);
        self.ports_in_use.insert(port);
        self.client_ports.insert(handle, port);
        self.held += 1;
        self.stats.connected += 1;
        Ok(TcpHandle(handle))
    }

    /// The socket of a connection, to read, write and query.
    ///
    /// An idle connection holds no buffers (see `buffers`): here it is given its initial
    /// ones ([`TcpConfig::initial_buffer`]) again. Each time the application comes back to
    /// a connection its buffers grow as Linux sizes its buffers: the receive buffer to what
    /// the measured reads per round trip ask for
    /// ([`tcp::Socket::receive_space_wanted`], about twice the bandwidth-delay product),
    /// the send buffer to twice the congestion window when its room held a write back since
    /// the application last came — the first step of either to 64 KiB — up to
    /// [`TcpConfig::rx_buffer`] and [`TcpConfig::tx_buffer`] and within
    /// [`TcpConfig::memory`]. The contents are kept. Buffers go back once the queues are
    /// empty; grown ones after a second without traffic (see [`Stack::poll`]).
    pub fn socket(&mut self, handle: &TcpHandle) -> &mut tcp::Socket<'static> {
        if !self.sockets.provide(handle.0) {
            self.grow(handle.0);
        }
        self.sockets.get_mut::<tcp::Socket>(handle.0)
    }

    /// The socket of a connection, to read, register wakers or close: its buffers grow as
    /// with [`Stack::socket`], but a connection that holds none (idle) is not given any —
    /// reading needs none (arriving data brings its buffer), so an idle connection an
    /// application looks at stays without buffers. Writing needs [`Stack::socket`].
    pub fn socket_for_reading(&mut self, handle: &TcpHandle) -> &mut tcp::Socket<'static> {
        self.grow(handle.0);
        self.sockets.get_mut::<tcp::Socket>(handle.0)
    }

    /// Grows a connection's buffers to what its measurements ask for, if the memory budget
    /// allows.
    fn grow(&mut self, slot: SocketHandle) {
        let config = &self.config.tcp;
        let socket = self.sockets.get_mut::<tcp::Socket>(slot);
        let (rx_cap, tx_cap) = (socket.recv_capacity(), socket.send_capacity());
        if rx_cap == 0 || tx_cap == 0 {
            // Holds no buffers (in the handshake shard, or provided on demand).
            return;
        }
        let mut rx = socket.receive_space_wanted().next_power_of_two();
        if 2 * socket.recv_queue() >= rx_cap {
            rx = rx.max(FIRST_GROWTH);
        }
        let mut tx = 0;
        // Whether the buffer's room held a write back since the application last came, not
        // how full it is now: one woken by its send waker comes after an ACK emptied it,
        // and after a repaired loss one cumulative ACK empties a whole window, so the
        // buffer would look empty at every visit and never grow.
        if socket.take_send_buffer_limited() {
            tx = FIRST_GROWTH.max(2 * socket.congestion_window().min(MAX_TCP_BUFFER));
            tx = tx.next_power_of_two();
        }
        let rx = rx.min(config.rx_buffer).max(rx_cap);
        let tx = tx.min(config.tx_buffer).max(tx_cap);
        let added = (rx - rx_cap) + (tx - tx_cap);
        if added == 0 || added > self.sockets.budget_left() {
            return;
        }
        let socket = self.sockets.get_mut::<tcp::Socket>(slot);
        let buffers = (
            tcp::SocketBuffer::new(vec![0; rx]),
            tcp::SocketBuffer::new(vec![0; tx]),
        );
        // New buffers hold at least what the old ones do: never refused.
        if socket.replace_buffers(buffers.0, buffers.1).is_ok() {
            let cwnd = socket.congestion_window();
            self.sockets.resized(rx_cap + tx_cap, rx + tx);
            tracing::trace!(
                "{slot}: buffers grown: receive {rx_cap} -> {rx}, send {tx_cap} -> {tx}, cwnd {cwnd}"
            );
        }
    }

    /// The socket of a connection, read-only.
    pub fn socket_ref(&self, handle: &TcpHandle) -> &tcp::Socket<'static> {
        self.sockets.get::<tcp::Socket>(handle.0)
    }

    /// Closes our side gracefully (FIN after the queued data). The stack frees the socket
    /// once the exchange is over, or resets it after the close timeout.
    pub fn close(&mut self, handle: TcpHandle) {
        self.sockets.get_mut::<tcp::Socket>(handle.0).close();
        self.release(handle, self.config.tcp.close_timeout);
    }

    /// Resets the connection and frees the socket.
    pub fn abort(&mut self, handle: TcpHandle) {
        self.sockets.get_mut::<tcp::Socket>(handle.0).abort();
        self.release(handle, Duration::ZERO);
    }

    fn release(&mut self, handle: TcpHandle, linger: Duration) {
        self.held = self.held.saturating_sub(1);
        self.closing.push((handle.0, self.now + linger));
    }

    fn new_socket(&self) -> tcp::Socket<'static> {
        let tcp = &self.config.tcp;
        let rx = tcp::SocketBuffer::new(vec![0; tcp.initial_buffer.min(tcp.rx_buffer)]);
        let tx = tcp::SocketBuffer::new(vec![0; tcp.initial_buffer.min(tcp.tx_buffer)]);
        let mut socket = tcp::Socket::new(rx, tx);
        // The window scale (chosen at the handshake) must suit the grown buffer.
        socket.set_window_capacity(tcp.rx_buffer);
        socket.set_nagle_enabled(tcp.nagle);
        socket.set_ack_delay(tcp.ack_delay);
        // One ACK per receive batch while holes are open, as Linux (tcp_comp_sack_nr).
        socket.set_sack_compression(true);
        socket.set_keep_alive(tcp.keep_alive);
        socket.set_timeout(tcp.timeout);
        socket.set_min_rto(tcp.min_rto);
        socket.set_congestion_control(tcp.congestion);
        if tcp.timestamps {
            socket.set_timestamp_clock(Some(self.ts_offset));
        }
        socket
    }

    fn ephemeral_port(&mut self) -> Result<u16, StackError> {
        let span = u32::from(EPHEMERAL.end() - EPHEMERAL.start()) + 1;
        let start = self.rng.u32(0..span);
        (0..span)
            .map(|i| EPHEMERAL.start() + ((start + i) % span) as u16)
            .find(|p| !self.ports_in_use.contains(p))
            .ok_or(StackError::NoFreePort)
    }

    /// Moves sockets of `port` that took a SYN to the half-open list and tops the pool up.
    /// Called for each listener on every poll: without allocating, and with one lookup
    /// while the pool is full.
    fn refill(&mut self, port: u16, now: Instant) {
        let Some(listener) = self.listeners.get_mut(&port) else {
            return;
        };
        let sockets = &self.sockets;
        let mut i = 0;
        while i < listener.listening.len() {
            let handle = listener.listening[i];
            if sockets.get::<tcp::Socket>(handle).state() == tcp::State::Listen {
                i += 1;
            } else {
                listener.listening.swap_remove(i);
                listener.half_open.push((handle, now));
            }
        }
        let wanted = listener.wanted(self.config.tcp.backlog, usize::MAX);
        if listener.listening.len() == wanted {
            return;
        }
        let Some(mut listener) = self.listeners.remove(&port) else {
            return;
        };
        while listener.listening.len() < wanted {
            let mut socket = self.new_socket();
            if socket
                .listen(IpListenEndpoint { addr: None, port })
                .is_err()
            {
                break;
            }
            listener.listening.push(self.sockets.add_control(socket));
        }
        while listener.listening.len() > wanted {
            if let Some(handle) = listener.listening.pop() {
                self.sockets.remove(handle);
            }
        }
        self.listeners.insert(port, listener);
    }

    /// After the RST in `self.frame` changed a handshake socket's state (smoltcp turns a
    /// reset handshake's socket back to LISTEN), puts the socket back into its port's
    /// LISTEN pool at once: a SYN it takes later in the same batch then starts a handshake
    /// of its own, with its own timeout, rather than one counted from the reset one's SYN.
    fn reclaim_reset_handshake(&mut self, now: Instant) {
        let Some(port) = Segment::parse(&self.frame).map(|seg| seg.tcp.dst_port) else {
            return;
        };
        let Some(listener) = self.listeners.get_mut(&port) else {
            return;
        };
        let sockets = &self.sockets;
        let mut i = 0;
        while i < listener.half_open.len() {
            let (handle, _) = listener.half_open[i];
            if progress(sockets.get::<tcp::Socket>(handle).state()) == Progress::Reset {
                listener.relisten(i);
                self.stats.handshake_resets += 1;
            } else {
                i += 1;
            }
        }
        self.refill(port, now);
    }

    /// Promotes completed handshakes, expires stale ones, frees closed sockets, handles DHCP.
    fn maintain(&mut self, now: Instant) {
        // The RST check's handshakes: forget those that are gone once the table has grown
        // well past the live ones (amortised: at most once per doubling).
        let half_open: usize = self.listeners.values().map(|l| l.half_open.len()).sum();
        if self.tally.handshakes() > 2 * half_open + 1024 {
            let sockets = &self.sockets;
            let live: HashSet<ingress::TcpKey> = self
                .listeners
                .values()
                .flat_map(|listener| listener.half_open.iter())
                .filter_map(|&(handle, _)| {
                    ingress::TcpKey::of_socket(sockets.get::<tcp::Socket>(handle))
                })
                .collect();
            self.tally.prune_handshakes(|key| live.contains(key));
        }
        // Only listeners with handshakes in progress: a pool of LISTEN sockets changes only
        // when a SYN takes one, and the stack refills it right after that frame (see
        // `poll`), or when a handshake leaves the half-open list here. (Collecting no port
        // allocates nothing; walking every pool on every poll cost a lookup and a look at
        // each LISTEN socket twice per turn.)
        let ports: Vec<u16> = self
            .listeners
            .iter()
            .filter(|(_, listener)| !listener.half_open.is_empty())
            .map(|(port, _)| *port)
            .collect();
        let handshake = self.config.tcp.handshake_timeout;
        for port in ports {
            let Some(listener) = self.listeners.get_mut(&port) else {
                continue;
            };
            let mut i = 0;
            while i < listener.half_open.len() {
                let (handle, since) = listener.half_open[i];
                // Looked at, not used: the shard is not marked for output.
                let socket = self.sockets.get::<tcp::Socket>(handle);
                let progress = progress(socket.state());
                if progress != Progress::Waiting {
                    // An established socket's own numbers answer for the connection from now
                    // on; a failed one's tuple is gone (pruned later, see above).
                    if let Some(key) = ingress::TcpKey::of_socket(socket) {
                        self.tally.forget(&key);
                    }
                }
                match progress {
                    Progress::Established => {
                        listener.half_open.swap_remove(i);
                        // From the handshake shard to a data shard of its own.
                        let handle = self.sockets.promote(handle);
                        listener.ready.push_back(handle);
                        self.stats.accepted += 1;
                    }
                    Progress::Failed => {
                        listener.half_open.swap_remove(i);
                        self.sockets.remove(handle);
                    }
                    Progress::Reset => {
                        // Trimmed by the refill below.
                        listener.relisten(i);
                        self.stats.handshake_resets += 1;
                    }
                    Progress::Waiting if now >= since + handshake => {
                        listener.half_open.swap_remove(i);
                        self.sockets.remove(handle);
                        self.stats.handshake_timeouts += 1;
                    }
                    Progress::Waiting
                        if now >= since + UNRESOLVED_TIMEOUT && !sent_on(&self.tally, socket) =>
                    {
                        listener.half_open.swap_remove(i);
                        self.sockets.remove(handle);
                        self.stats.handshake_unresolved += 1;
                    }
                    Progress::Waiting => i += 1,
                }
            }
            self.refill(port, now);
        }

        let mut i = 0;
        while i < self.closing.len() {
            let (handle, deadline) = self.closing[i];
            let socket = self.sockets.get_mut::<tcp::Socket>(handle);
            match socket.state() {
                tcp::State::Closed | tcp::State::TimeWait => {
                    self.closing.swap_remove(i);
                    self.sockets.remove(handle);
                    if let Some(port) = self.client_ports.remove(&handle) {
                        self.ports_in_use.remove(&port);
                    }
                    self.stats.closed += 1;
                }
                _ if now >= deadline => {
                    // Reset now; the socket is freed on the next pass, after the RST went out.
                    socket.abort();
                    self.closing[i].1 = now + Duration::from_secs(3600);
                    self.stats.close_timeouts += 1;
                    i += 1;
                }
                _ => i += 1,
            }
        }

        self.sockets.release_idle(now);
        self.poll_dhcp();
    }

    fn poll_dhcp(&mut self) {
        let Some(handle) = self.dhcp else {
            return;
        };
        let event = self.sockets.get_mut::<dhcpv4::Socket>(handle).poll();
        match event {
            None => {}
            Some(dhcpv4::Event::Configured(lease)) => {
                let address = lease.address;
                let router = lease.router;
                self.dns_servers = lease
                    .dns_servers
                    .iter()
                    .map(|a| IpAddress::Ipv4(*a))
                    .collect();
                tracing::info!(
                    "DHCP: address {address}, router {}, DNS {:?}",
                    router.map_or("none".to_string(), |r| r.to_string()),
                    self.dns_servers
                );
                self.set_dhcp_address(Some(address));
                self.iface.routes_mut().remove_default_ipv4_route();
                if let Some(router) = router {
                    // At most one default IPv4 route exists and we just removed it.
                    let _ = self.iface.routes_mut().add_default_ipv4_route(router);
                }
            }
            Some(dhcpv4::Event::Deconfigured) => {
                tracing::warn!("DHCP: lease lost");
                self.set_dhcp_address(None);
                self.iface.routes_mut().remove_default_ipv4_route();
                self.dns_servers.clear();
            }
        }
    }

    fn set_dhcp_address(&mut self, address: Option<Ipv4Cidr>) {
        self.iface.update_ip_addrs(|addrs| {
            addrs.retain(|cidr| !matches!(cidr, IpCidr::Ipv4(_)));
            if let Some(address) = address {
                // Removing every IPv4 address made room for this one.
                let _ = addrs.push(IpCidr::Ipv4(address));
            }
        });
    }
}
