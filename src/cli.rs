//! Command-line flags shared by every subcommand, and their translation into library
//! configuration.

use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;

use clap::{Args, ValueEnum};
use smoltcp::wire::{EthernetAddress, IpAddress, IpCidr};
use tapir::runtime::event_loop::{LoopOptions, DEFAULT_BUSY_POLL};
use tapir::stack::{CookiePolicy, StackConfig, TcpConfig};

/// The stack's addresses when none are given: the kernel side of `scripts/netns.sh` is
/// 10.7.0.1 and fd00:7::1.
pub const DEFAULT_ADDRESSES: [&str; 2] = ["10.7.0.2/24", "fd00:7::2/64"];

/// Network flags: which TAP device, and how the userspace stack on it is configured.
#[derive(Debug, Args, Clone)]
pub struct NetArgs {
    /// TAP interface to run on. An existing (persistent) device is attached to; a missing
    /// one is created in the current network namespace, which needs CAP_NET_ADMIN.
    #[arg(long, value_name = "NAME")]
    pub tap: String,

    /// Address of the stack with its prefix length, IPv4 or IPv6; repeat for several.
    /// [default: 10.7.0.2/24 and fd00:7::2/64; an IPv6 link-local address is always added]
    #[arg(long = "ip", value_name = "CIDR")]
    pub ip: Vec<Cidr>,

    /// Default gateway (one IPv4 and/or one IPv6; repeat for both).
    #[arg(long, value_name = "IP")]
    pub gateway: Vec<IpAddr>,

    /// MAC address of the stack [default: a random locally administered address].
    #[arg(long, value_name = "MAC")]
    pub mac: Option<Mac>,

    /// IP MTU of the link (1280 to 65535). The kernel side of the TAP is set to match.
    #[arg(long, default_value_t = 1500, value_name = "BYTES")]
    pub mtu: usize,

    /// Get an IPv4 address, router and DNS servers by DHCP (replaces the default IPv4 address).
    #[arg(long)]
    pub dhcp: bool,

    /// Record every frame, both directions, to this pcap file (Wireshark/tshark open it).
    #[arg(long, value_name = "FILE")]
    pub pcap: Option<PathBuf>,

    /// Plain frames on the TAP: no virtio-net header, no checksum or segmentation
    /// offload (every frame at most one MTU, every checksum computed in software).
    #[arg(long)]
    pub no_offload: bool,

    /// Microseconds the event loop keeps polling the TAP after its last work before it
    /// sleeps (like the kernel's SO_BUSY_POLL): saves a wake-up per request at low
    /// concurrency; an idle server does not poll. 0 turns it off.
    #[arg(long, default_value_t = DEFAULT_BUSY_POLL.as_micros() as u64, value_name = "US",
          value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    pub busy_poll: u64,

    /// Testing only: make the kernel's TUNSETOFFLOAD fail for these offloads
    /// (`tso`: TSO4 and TSO6; `csum`: every offload), to exercise the fallback.
    #[arg(long, hide = true, value_name = "tso|csum")]
    pub refuse_offload: Option<RefuseOffload>,

    /// Half-open connections per listening port; SYNs beyond are dropped until some complete.
    #[arg(long, default_value_t = 128, value_name = "N")]
    pub backlog: usize,

    /// When to answer SYNs with SYN cookies (no state kept until the peer's ACK proves the
    /// handshake): `overflow` when the backlog or the connection cap is full, `always`, or
    /// `never` (then SYNs beyond the backlog are dropped).
    #[arg(long, default_value = "overflow", value_name = "WHEN",
          value_parser = ["overflow", "always", "never"])]
    pub syn_cookies: String,

    /// Most connections open at once; SYNs beyond are dropped until some close. An idle
    /// keep-alive connection holds no TCP buffers (about 2 KiB in all), so the default of
    /// 131,072 idle connections takes about 256 MiB; busy ones hold buffers on top.
    #[arg(long, default_value_t = 131_072, value_name = "N")]
    pub max_connections: usize,

    /// Seconds a TCP handshake may take before the half-open connection is dropped (its
    /// backlog slot is freed; this bounds how long a SYN flood holds a listener).
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    pub handshake_timeout: u64,

    /// Largest TCP receive and send buffer per connection, in KiB (4 to 1,048,576).
    /// Buffers start at 4 KiB and grow with the measured bandwidth-delay product.
    #[arg(long, default_value_t = 16 * 1024, value_name = "KIB")]
    pub tcp_buffer: usize,

    /// Memory all TCP buffers together may take, in MiB; once reached, connections keep
    /// the buffers they have and stop growing.
    #[arg(long, default_value_t = 256, value_name = "MIB")]
    pub tcp_memory: usize,

    /// Seed for TCP sequence numbers and ports [default: random]. Fixed seeds make runs
    /// reproducible.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,

    /// Seconds of silence (no segment, not even an answer to a keep-alive probe) after
    /// which a peer counts as vanished and its connection is aborted (0: never).
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    pub tcp_timeout: u64,

    /// Seconds of idleness before a TCP keep-alive probe; must be less than --tcp-timeout
    /// (0: off, only with --tcp-timeout 0).
    #[arg(long, default_value_t = 20, value_name = "SECS")]
    pub tcp_keepalive: u64,

    /// Minimum TCP retransmission timeout in milliseconds (RFC 6298's RTO floor; Linux
    /// uses 200, RFC 6298 suggests 1000).
    #[arg(long, default_value_t = 200, value_name = "MS")]
    pub tcp_min_rto: u64,

    /// TCP congestion control algorithm (BBR by default: paced at the measured bottleneck
    /// bandwidth, random loss does not shrink its window).
    #[arg(long, value_enum, default_value_t = TcpCc::Bbr)]
    pub tcp_cc: TcpCc,

    /// Do not offer TCP timestamps (RFC 7323; offered by default, they give RTT samples
    /// for the retransmission timeout and receive-buffer autotuning).
    #[arg(long)]
    pub no_tcp_timestamps: bool,
}

/// A congestion control algorithm for `--tcp-cc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TcpCc {
    /// CUBIC (RFC 9438), as Linux, Windows and macOS use, with HyStart++ (RFC 9406) in
    /// slow start.
    Cubic,
    /// Reno / NewReno (RFC 5681), with HyStart++ (RFC 9406) in slow start.
    Reno,
    /// BBR (version 1, as Linux's tcp_bbr): paced at the measured bottleneck bandwidth,
    /// random loss does not shrink the window.
    Bbr,
}

impl NetArgs {
    /// The event loop's settings these flags describe.
    pub fn loop_options(&self) -> LoopOptions {
        LoopOptions {
            busy_poll: std::time::Duration::from_micros(self.busy_poll),
            ..LoopOptions::default()
        }
    }

    /// The stack configuration these flags describe.
    pub fn stack_config(&self, rng: &mut fastrand::Rng) -> anyhow::Result<StackConfig> {
        let mac = match self.mac {
            Some(Mac(mac)) => mac,
            None => tapir::device::random_mac(rng),
        };
        let addresses: Vec<IpCidr> = if self.ip.is_empty() {
            DEFAULT_ADDRESSES
                .iter()
                .map(|s| Cidr::from_str(s).map(|c| c.0))
                .collect::<Result<_, _>>()
                .map_err(anyhow::Error::msg)?
        } else {
            self.ip.iter().map(|c| c.0).collect()
        };
        let addresses = if self.dhcp {
            addresses
                .into_iter()
                .filter(|a| matches!(a, IpCidr::Ipv6(_)) || !self.ip.is_empty())
                .collect()
        } else {
            addresses
        };
        let kib = self
            .tcp_buffer
            .checked_mul(1024)
            .ok_or_else(|| anyhow::anyhow!("--tcp-buffer {} KiB is too large", self.tcp_buffer))?;
        if !(1..=60_000).contains(&self.tcp_min_rto) {
            anyhow::bail!("--tcp-min-rto must be between 1 and 60000 ms");
        }
        if self.handshake_timeout == 0 {
            anyhow::bail!("--handshake-timeout must be at least 1 second");
        }
        if self.tcp_timeout > 0 && !(1..self.tcp_timeout).contains(&self.tcp_keepalive) {
            anyhow::bail!(
                "--tcp-keepalive ({}) must be between 1 and --tcp-timeout ({}) less 1: \
                 without probes answered in time, idle connections would be aborted",
                self.tcp_keepalive,
                self.tcp_timeout
            );
        }
        for gateway in &self.gateway {
            let on_link = addresses
                .iter()
                .any(|cidr| cidr.contains_addr(&IpAddress::from(*gateway)));
            // IPv6 link-local routers are always on the link (the stack has an fe80::
            // address); an IPv4 gateway may also come with the DHCP lease's subnet.
            let link_local = matches!(gateway, IpAddr::V6(v6) if v6.is_unicast_link_local());
            let by_dhcp = self.dhcp && gateway.is_ipv4();
            if !(on_link || link_local || by_dhcp) {
                let list: Vec<String> = addresses.iter().map(|a| a.to_string()).collect();
                anyhow::bail!(
                    "--gateway {gateway} is outside every subnet of the stack ({}): \
                     it could never be reached",
                    list.join(", ")
                );
            }
        }
        let secs = |s: u64| (s > 0).then(|| tapir::smoltcp::time::Duration::from_secs(s));
        let mut config = StackConfig::new(mac, addresses);
        config.gateways = self.gateway.iter().map(|g| IpAddress::from(*g)).collect();
        config.dhcp = self.dhcp;
        config.seed = self.seed.unwrap_or_else(|| rng.u64(..));
        config.tcp = TcpConfig {
            rx_buffer: kib,
            tx_buffer: kib,
            memory: self.tcp_memory.checked_mul(1 << 20).ok_or_else(|| {
                anyhow::anyhow!("--tcp-memory {} MiB is too large", self.tcp_memory)
            })?,
            backlog: self.backlog,
            syn_cookies: match self.syn_cookies.as_str() {
                "always" => CookiePolicy::Always,
                "never" => CookiePolicy::Never,
                _ => CookiePolicy::Overflow,
            },
            max_connections: self.max_connections,
            handshake_timeout: smoltcp::time::Duration::from_secs(self.handshake_timeout),
            timeout: secs(self.tcp_timeout),
            keep_alive: secs(self.tcp_keepalive),
            min_rto: smoltcp::time::Duration::from_millis(self.tcp_min_rto),
            congestion: match self.tcp_cc {
                TcpCc::Cubic => smoltcp::socket::tcp::CongestionControl::Cubic,
                TcpCc::Reno => smoltcp::socket::tcp::CongestionControl::Reno,
                TcpCc::Bbr => smoltcp::socket::tcp::CongestionControl::Bbr,
            },
            timestamps: !self.no_tcp_timestamps,
            ..TcpConfig::default()
        };
        Ok(config)
    }
}

/// An address with a prefix length, like `10.7.0.2/24` or `fd00:7::2/64`.
#[derive(Debug, Clone, Copy)]
pub struct Cidr(pub IpCidr);

/// An address with a prefix length (any address: a network, too).
fn parse_cidr(s: &str) -> Result<(IpAddr, u8), String> {
    let (addr, len) = s
        .split_once('/')
        .ok_or_else(|| format!("'{s}' needs a prefix length, like 10.7.0.2/24"))?;
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| format!("'{addr}' is not an IPv4 or IPv6 address"))?;
    let len: u8 = len
        .parse()
        .map_err(|_| format!("'{len}' is not a prefix length"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if len > max {
        return Err(format!("prefix length {len} is more than {max}"));
    }
    Ok((addr, len))
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, len) = parse_cidr(s)?;
        if addr.is_unspecified() || addr.is_multicast() {
            return Err(format!("{addr} cannot be the stack's own address"));
        }
        Ok(Cidr(IpCidr::new(IpAddress::from(addr), len)))
    }
}

/// A MAC address like `02:00:00:aa:bb:cc`.
#[derive(Debug, Clone, Copy)]
pub struct Mac(pub EthernetAddress);

impl FromStr for Mac {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("'{s}' is not a MAC address like 02:00:00:aa:bb:cc");
        let parts: Vec<&str> = s.split([':', '-']).collect();
        if parts.len() != 6 {
            return Err(bad());
        }
        let mut bytes = [0u8; 6];
        for (byte, part) in bytes.iter_mut().zip(&parts) {
            if part.len() != 2 {
                return Err(bad());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
        }
        let mac = EthernetAddress(bytes);
        if !mac.is_unicast() {
            return Err(format!(
                "{mac} is a multicast address; the stack needs a unicast one"
            ));
        }
        Ok(Mac(mac))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The network flags of `tapir ... --tap t0 ARGS`.
    fn net_args(args: &[&str]) -> Result<NetArgs, clap::Error> {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            net: NetArgs,
        }
        let argv = ["tapir", "--tap", "t0"].iter().chain(args);
        Ok(<Cli as clap::Parser>::try_parse_from(argv)?.net)
    }

    /// The event loop's settings `tapir ... --tap t0 ARGS` builds.
    fn loop_options_from(args: &[&str]) -> anyhow::Result<LoopOptions> {
        Ok(net_args(args)?.loop_options())
    }

    #[test]
    fn busy_poll_flag_reaches_the_event_loop() {
        let us = std::time::Duration::from_micros;
        assert_eq!(loop_options_from(&[]).unwrap().busy_poll, DEFAULT_BUSY_POLL);
        assert_eq!(
            loop_options_from(&["--busy-poll", "0"]).unwrap().busy_poll,
            us(0)
        );
        let options = loop_options_from(&["--busy-poll", "200"]).unwrap();
        assert_eq!(options.busy_poll, us(200));
        assert!(
            options.handle_signals,
            "the other settings keep their defaults"
        );
        assert!(loop_options_from(&["--busy-poll", "1000001"]).is_err());
        assert!(loop_options_from(&["--busy-poll", "-1"]).is_err());
        assert!(loop_options_from(&["--busy-poll", "fast"]).is_err());
    }

    #[test]
    fn cidrs_parse_and_reject() {
        assert!(Cidr::from_str("10.7.0.2/24").is_ok());
        assert!(Cidr::from_str("fd00:7::2/64").is_ok());
        assert!(Cidr::from_str("10.7.0.2").is_err());
        assert!(Cidr::from_str("10.7.0.2/33").is_err());
        assert!(Cidr::from_str("fd00::1/129").is_err());
        assert!(Cidr::from_str("banana/24").is_err());
        assert!(Cidr::from_str("0.0.0.0/0").is_err());
    }

    #[test]
    fn allow_entries_parse_and_reject() {
        let a = AllowArg::from_str("10.7.0.0/24:80-443").unwrap().0;
        assert_eq!(a.to_string(), "10.7.0.0/24:80-443");
        let any = AllowArg::from_str("0.0.0.0/0").unwrap().0;
        assert_eq!(any.ports, None);
        assert!(AllowArg::from_str("fd00:7::/64:443").is_ok());
        // An over-long prefix is an error, never a panic in smoltcp's constructor.
        assert!(AllowArg::from_str("10.0.0.0/40").is_err());
        assert!(AllowArg::from_str("10.0.0.0/8:443-80").is_err());
        assert!(AllowArg::from_str("10.0.0.0/8:http").is_err());
        assert!(AllowArg::from_str("10.0.0.0").is_err());
    }

    /// The stack configuration `tapir ... --tap t0 ARGS` builds.
    fn config_from(args: &[&str]) -> anyhow::Result<StackConfig> {
        net_args(args)?.stack_config(&mut fastrand::Rng::with_seed(1))
    }

    #[test]
    fn tcp_min_rto_reaches_the_stack_config() {
        let ms = smoltcp::time::Duration::from_millis;
        assert_eq!(config_from(&[]).unwrap().tcp.min_rto, ms(200));
        let config = config_from(&["--tcp-min-rto", "50"]).unwrap();
        assert_eq!(config.tcp.min_rto, ms(50));
        assert!(config_from(&["--tcp-min-rto", "0"]).is_err());
        assert!(config_from(&["--tcp-min-rto", "60001"]).is_err());
    }

    #[test]
    fn tcp_cc_reaches_the_stack_config() {
        use smoltcp::socket::tcp::CongestionControl;
        assert_eq!(
            config_from(&[]).unwrap().tcp.congestion,
            CongestionControl::Bbr
        );
        let cubic = config_from(&["--tcp-cc", "cubic"]).unwrap();
        assert_eq!(cubic.tcp.congestion, CongestionControl::Cubic);
        let reno = config_from(&["--tcp-cc", "reno"]).unwrap();
        assert_eq!(reno.tcp.congestion, CongestionControl::Reno);
        let bbr = config_from(&["--tcp-cc", "bbr"]).unwrap();
        assert_eq!(bbr.tcp.congestion, CongestionControl::Bbr);
        assert!(config_from(&["--tcp-cc", "vegas"]).is_err());
    }

    #[test]
    fn tcp_timestamps_reach_the_stack_config() {
        assert!(config_from(&[]).unwrap().tcp.timestamps);
        assert!(
            !config_from(&["--no-tcp-timestamps"])
                .unwrap()
                .tcp
                .timestamps
        );
    }

    #[test]
    fn macs_parse_and_reject() {
        assert!(Mac::from_str("02:00:00:aa:bb:cc").is_ok());
        assert!(Mac::from_str("02-00-00-AA-BB-CC").is_ok());
        assert!(Mac::from_str("01:00:5e:00:00:01").is_err(), "multicast");
        assert!(Mac::from_str("02:00:00:aa:bb").is_err());
        assert!(Mac::from_str("02:00:00:aa:bb:zz").is_err());
    }
}

/// HTTP service flags of `tapir serve`.
#[derive(Debug, Args, Clone)]
pub struct HttpArgs {
    /// Port for cleartext HTTP (HTTP/1.1, 1.0, and HTTP/2 with prior knowledge or by
    /// `Upgrade: h2c`).
    #[arg(long, default_value_t = 80, value_name = "PORT")]
    pub http: u16,

    /// Port for HTTPS (HTTP/1.1 or HTTP/2, chosen by ALPN).
    #[arg(long, default_value_t = 443, value_name = "PORT")]
    pub https: u16,

    /// Do not serve cleartext HTTP.
    #[arg(long)]
    pub no_http: bool,

    /// Do not serve HTTPS.
    #[arg(long)]
    pub no_https: bool,

    /// Certificate chain (PEM) for HTTPS [default: a self-signed certificate made at start
    /// for the stack's addresses and localhost].
    #[arg(long, value_name = "PEM", requires = "key")]
    pub cert: Option<PathBuf>,

    /// Private key (PEM: RSA, ECDSA or Ed25519) matching --cert.
    #[arg(long, value_name = "PEM", requires = "cert")]
    pub key: Option<PathBuf>,

    /// Write the self-signed certificate (PEM) here, for clients to trust (curl --cacert).
    #[arg(long, value_name = "FILE", conflicts_with = "cert")]
    pub save_cert: Option<PathBuf>,

    /// ALPN protocols offered on HTTPS, in order of preference (h2, http/1.1, http/1.0).
    #[arg(
        long,
        default_value = "h2,http/1.1",
        value_name = "LIST",
        value_delimiter = ','
    )]
    pub alpn: Vec<String>,

    /// Serve static files from this directory; the built-in pages move under /_tapir/.
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,

    /// With --root: list directories that have no index.html.
    #[arg(long)]
    pub listings: bool,

    /// Largest request body accepted, in bytes (413 beyond).
    #[arg(long, default_value_t = 1 << 30, value_name = "BYTES")]
    pub max_body: u64,

    /// Largest request head (request line and headers), in bytes (431 beyond).
    #[arg(long, default_value_t = 16 * 1024, value_name = "BYTES")]
    pub max_head: usize,

    /// Most header fields in a request (431 beyond).
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub max_headers: usize,

    /// Longest request target (414 beyond).
    #[arg(long, default_value_t = 8 * 1024, value_name = "BYTES")]
    pub max_uri: usize,

    /// Seconds a client may take to send a request head (408 after; stops slowloris).
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    pub head_timeout: u64,

    /// Seconds a client may take to complete the TLS handshake on the HTTPS port.
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    pub tls_handshake_timeout: u64,

    /// Seconds an idle keep-alive connection stays open.
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    pub idle_timeout: u64,

    /// Pipelined requests read ahead per connection before reading pauses.
    #[arg(long, default_value_t = 16, value_name = "N")]
    pub max_pipelined: usize,

    /// Seconds an HTTP/2 connection may wait on its client (for request data, for window,
    /// for it to read) with nothing moving before it is closed with GOAWAY.
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    pub h2_stall_timeout: u64,
}

impl HttpArgs {
    /// The ALPN protocol identifiers, checked.
    pub fn alpn_protocols(&self) -> anyhow::Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        for name in &self.alpn {
            match name.as_str() {
                "h2" | "http/1.1" | "http/1.0" => out.push(name.as_bytes().to_vec()),
                other => {
                    anyhow::bail!("--alpn: unknown protocol '{other}' (use h2, http/1.1, http/1.0)")
                }
            }
        }
        if out.is_empty() {
            anyhow::bail!("--alpn needs at least one protocol");
        }
        Ok(out)
    }

    /// The server configuration these flags describe.
    pub fn server_config(&self) -> anyhow::Result<tapir::service::ServerConfig> {
        if self.no_http && self.no_https {
            anyhow::bail!("--no-http and --no-https together leave nothing to serve");
        }
        if !self.no_http && self.http == 0 {
            anyhow::bail!("--http 0 is not a port (1 to 65535)");
        }
        if !self.no_https && self.https == 0 {
            anyhow::bail!("--https 0 is not a port (1 to 65535)");
        }
        if !self.no_http && !self.no_https && self.http == self.https {
            anyhow::bail!("--http and --https are both {}", self.http);
        }
        if self.tls_handshake_timeout == 0 {
            anyhow::bail!("--tls-handshake-timeout must be at least 1 second");
        }
        if self.max_pipelined == 0 || self.max_headers == 0 {
            anyhow::bail!("--max-pipelined and --max-headers must be at least 1");
        }
        let mut config = tapir::service::ServerConfig::default();
        let h1 = &mut config.h1;
        h1.max_body_size = self.max_body;
        h1.max_head_size = self.max_head;
        h1.max_headers = self.max_headers;
        h1.max_uri_len = self.max_uri;
        h1.head_timeout = std::time::Duration::from_secs(self.head_timeout);
        h1.idle_timeout = std::time::Duration::from_secs(self.idle_timeout);
        h1.max_pipelined = self.max_pipelined;
        if self.h2_stall_timeout == 0 {
            anyhow::bail!("--h2-stall-timeout must be at least 1 second");
        }
        config.h2.stall_timeout = std::time::Duration::from_secs(self.h2_stall_timeout);
        config.tls_handshake_timeout = std::time::Duration::from_secs(self.tls_handshake_timeout);
        Ok(config)
    }
}

/// An allow-list entry: `CIDR`, `CIDR:PORT` or `CIDR:FIRST-LAST` (e.g. `10.7.0.0/24:443`).
#[derive(Debug, Clone)]
pub struct AllowArg(pub tapir::proxy::Allow);

impl FromStr for AllowArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // The port follows the prefix length: `a.b.c.d/n:p` or `v6::/n:p`.
        let (cidr, ports) = match s.rsplit_once('/') {
            Some((addr, rest)) => match rest.split_once(':') {
                Some((len, ports)) => (format!("{addr}/{len}"), Some(ports)),
                None => (s.to_string(), None),
            },
            None => return Err(format!("'{s}' needs a prefix length, like 10.7.0.0/24")),
        };
        // A network may be 0.0.0.0/0: no check for the stack's own address here.
        let (addr, len) = parse_cidr(&cidr)?;
        let net = IpCidr::new(IpAddress::from(addr), len);
        let port = |p: &str| {
            p.parse::<u16>()
                .map_err(|_| format!("'{p}' is not a port number"))
        };
        let ports = match ports {
            None => None,
            Some(p) => match p.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (port(a)?, port(b)?);
                    if a > b {
                        return Err(format!("port range {a}-{b} is empty"));
                    }
                    Some(a..=b)
                }
                None => {
                    let p = port(p)?;
                    Some(p..=p)
                }
            },
        };
        Ok(AllowArg(tapir::proxy::Allow { net, ports }))
    }
}

/// An absolute http:// or https:// URL (the error says what is wrong with it).
fn parse_url(url: &str) -> Result<http::Uri, String> {
    tapir::client::Target::parse_url(url).map_err(|e| match e {
        tapir::client::ClientError::BadUrl { reason, .. } => reason,
        other => other.to_string(),
    })
}

/// Flags of `tapir proxy`.
#[derive(Debug, clap::Args)]
pub struct ProxyArgs {
    /// Port the proxy listens on (HTTP; CONNECT and absolute-form requests in forward mode).
    #[arg(long, default_value_t = 3128, value_name = "PORT")]
    pub listen: u16,
    /// Forward mode: targets the proxy may reach, `CIDR[:PORT[-PORT]]`, repeatable
    /// [default: the stack's own subnets, any port]. Everything else gets 403.
    #[arg(
        long = "allow",
        value_name = "CIDR[:PORTS]",
        conflicts_with = "upstream"
    )]
    pub allow: Vec<AllowArg>,
    /// Forward mode: a name the proxy resolves, `HOST:ADDR`, repeatable (address literals
    /// need none).
    #[arg(
        long = "resolve",
        value_name = "HOST:ADDR",
        conflicts_with = "upstream"
    )]
    pub resolve: Vec<String>,
    /// Reverse mode: forward every request to this origin (http:// or https://).
    #[arg(long, value_name = "URL", value_parser = parse_url)]
    pub upstream: Option<http::Uri>,
    /// Speak HTTP/2 to origins (ALPN h2 over TLS, prior knowledge on cleartext) instead of
    /// HTTP/1.1 with keep-alive.
    #[arg(long = "upstream-http2")]
    pub upstream_http2: bool,
    /// Trust the certificates of this PEM file for HTTPS origins.
    #[arg(long, value_name = "PEM", conflicts_with = "insecure")]
    pub cacert: Option<std::path::PathBuf>,
    /// Do not check the certificates of HTTPS origins (tests only).
    #[arg(long)]
    pub insecure: bool,
}

impl ProxyArgs {
    /// The `--resolve` entries as a map.
    pub fn hosts(&self) -> anyhow::Result<std::collections::HashMap<String, IpAddress>> {
        let mut hosts = std::collections::HashMap::new();
        for entry in &self.resolve {
            let (host, addr) = entry
                .split_once(':')
                .filter(|(h, _)| !h.is_empty())
                .ok_or_else(|| anyhow::anyhow!("--resolve '{entry}': expected HOST:ADDR"))?;
            let addr: IpAddr = addr
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse()
                .map_err(|_| anyhow::anyhow!("--resolve '{entry}': '{addr}' is not an address"))?;
            hosts.insert(host.to_ascii_lowercase(), IpAddress::from(addr));
        }
        Ok(hosts)
    }
}

/// Which offloads `--refuse-offload` makes the kernel refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RefuseOffload {
    /// TCP segmentation offload (IPv4 and IPv6).
    Tso,
    /// Checksum offload, and with it every offload.
    Csum,
}

impl RefuseOffload {
    /// The offloads refused.
    pub fn offloads(self) -> tapir::device::vnet::Offloads {
        use tapir::device::vnet::Offloads;
        match self {
            RefuseOffload::Tso => Offloads {
                csum: false,
                ..Offloads::ALL
            },
            RefuseOffload::Csum => Offloads::CSUM,
        }
    }
}
