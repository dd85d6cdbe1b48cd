//! The `tapir` command: run the userspace stack on a TAP device.

// No unwrap() in the binary either (unit tests may: clippy.toml).
#![deny(clippy::unwrap_used)]

mod cli;
mod get;
mod link;

use std::io::IsTerminal;
use std::process::ExitCode;

/// The binary's allocator: jemalloc, with its background thread. A burst of new connections
/// takes TCP and request buffers that go back once the connections are quiet; glibc's
/// malloc keeps its heap at that high-water mark (10 KiB of RSS per idle connection after
/// opening 5,000, for 3 KiB live), jemalloc's background thread returns the freed pages
/// within seconds (its 10 s decay), so RSS follows what the connections hold.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use http::{Request, Response};
use tapir::app::echo::EchoServer;
use tapir::device::capture::Capture;
use tapir::device::tap::TapDevice;
use tapir::device::vnet::Offloads;
use tapir::device::FdDevice;
use tapir::runtime::event_loop::{self, Ended};
use tapir::runtime::{Application, StopHandle, WallClock};
use tapir::service::builtin::Builtin;
use tapir::service::files::StaticFiles;
use tapir::service::server::StatsHandle;
use tapir::service::{Body, ConnInfo, Handler, RequestBody, Server};
use tapir::stack::Stack;
use tapir::transport::certs;

use cli::NetArgs;

/// tapir: a userspace TCP/IP stack that serves on a Linux TAP device.
///
/// tapir runs its own TCP/IP stack (smoltcp) in this process. Frames go through a TAP
/// device; the kernel only sees Ethernet frames, so ports need no privilege. Make a
/// namespace with a TAP device first: `scripts/netns.sh up tapir` (see the README).
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Cli {
    /// Log filter: a level (error, warn, info, debug, trace) or a tracing filter such as
    /// `tapir=debug,smoltcp=info`.
    #[arg(long, global = true, default_value = "info", value_name = "FILTER")]
    log: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// HTTP server: a built-in test site, or static files with --root.
    ///
    /// The built-in site: `/` names the protocol and your address, `/echo` sends the
    /// request body back, `/bytes/N` sends N bytes, `/stats` shows counters as JSON. With
    /// --root the files are served and the built-in pages move under `/_tapir/`
    /// (`/_tapir/stats`, `/_tapir/echo`, `/_tapir/bytes/N`).
    Serve {
        #[command(flatten)]
        net: NetArgs,
        #[command(flatten)]
        http: cli::HttpArgs,
    },
    /// Fetch URLs through the userspace stack (HTTP/1.1 or HTTP/2, TLS with ALPN).
    ///
    /// The status line and protocol go to stderr, the body to stdout (or -o FILE).
    Get {
        #[command(flatten)]
        net: NetArgs,
        #[command(flatten)]
        get: get::GetArgs,
    },
    /// Replay a capture into a fresh in-process server.
    ///
    /// Live replay (the default): the client side of every TCP flow of FILE (any client,
    /// any server, IPv4 or IPv6, pcap or pcapng) is sent on a fresh connection of tapir's
    /// own client stack to an in-process `tapir serve` (built-in site, or --root DIR) over
    /// the in-memory link, paced by the capture's timestamps on a virtual clock (no wall
    /// time). Prints per flow the HTTP exchanges that came back; --expect compares them with
    /// the capture's responses (status always; body length for 2xx with Content-Length)
    /// and fails on a difference.
    ///
    /// With --exact, FILE must be a capture recorded in deterministic mode, like those in
    /// captures/golden/: the server's frames must come back byte for byte; the first
    /// difference is printed with both frames decoded.
    Replay(ReplayArgs),
    /// HTTP proxy on the userspace stack: forward (CONNECT tunnels and absolute-form
    /// requests to the allowed networks) or, with --upstream, reverse.
    ///
    /// Forward: `curl -x http://ADDR:3128 https://10.7.0.1/` reaches the origin through
    /// tapir's own client side; targets off the allow-list (default: the stack's own
    /// subnets) get 403. Reverse: every request goes to the --upstream origin, over HTTP/1.1
    /// keep-alive or (--upstream-http2) one HTTP/2 connection, whatever the client speaks.
    Proxy {
        #[command(flatten)]
        net: NetArgs,
        #[command(flatten)]
        proxy: cli::ProxyArgs,
    },
    /// TCP echo server: sends every byte back (RFC 862).
    Echo {
        #[command(flatten)]
        net: NetArgs,
        /// Port to listen on (on the userspace stack, so any port works without root).
        #[arg(long, default_value_t = 7)]
        port: u16,
    },
    /// Bridge two TAP devices through an impaired path (delay, jitter, loss, reordering,
    /// duplication, a rate limit), each direction on its own.
    ///
    /// For measuring TCP on a slow or lossy path without sch_netem: put the kernel's TCP or
    /// tapir behind each TAP device. Prints each direction's counters on SIGINT/SIGTERM.
    Link(link::LinkArgs),
}

/// Flags of `tapir replay`.
#[derive(Debug, clap::Args)]
struct ReplayArgs {
    /// The capture (pcap or pcapng; Ethernet or Linux cooked).
    file: std::path::PathBuf,
    /// Byte-exact replay of a deterministic capture (default: live replay).
    #[arg(long)]
    exact: bool,
    /// Live: replay only flows to this server address [default: every flow with a SYN].
    #[arg(long, value_name = "IP", conflicts_with = "exact")]
    server_ip: Option<std::net::IpAddr>,
    /// Live: scale the capture's time by this factor (2 = twice as fast).
    #[arg(long, default_value_t = 1.0, value_name = "N", conflicts_with_all = ["fast", "exact"])]
    speed: f64,
    /// Live: send the client bytes as fast as the stack takes them.
    #[arg(long, conflicts_with = "exact")]
    fast: bool,
    /// Live: compare the answers with the capture's; exit non-zero on a difference.
    #[arg(long, conflicts_with = "exact")]
    expect: bool,
    /// Live: serve static files from this directory instead of the built-in site.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["exact", "tap"])]
    root: Option<std::path::PathBuf>,
    /// Live: replay through this TAP device (on the wall clock) to the server at --target,
    /// instead of an in-process server; the stack takes the --ip address.
    #[arg(
        long,
        value_name = "NAME",
        conflicts_with = "exact",
        requires = "target"
    )]
    tap: Option<String>,
    /// Live, with --tap: the server across the TAP device that every flow is replayed to.
    #[arg(long, value_name = "IP", requires = "tap")]
    target: Option<std::net::IpAddr>,
    /// Exact: the server's stack seed when the capture was recorded.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Exact: the server's MAC address in the capture.
    #[arg(long, default_value = "02:00:00:00:00:02")]
    mac: cli::Mac,
    /// Exact: the server's address in the capture. With --tap: the replaying stack's own.
    #[arg(long = "ip", default_value = "10.7.0.2/24")]
    ip: cli::Cidr,
    /// The server's HTTP port (live: every flow is replayed to it).
    #[arg(long, default_value_t = 80, value_name = "PORT")]
    http: u16,
    /// Exact: the IP MTU of the recorded link.
    #[arg(long, default_value_t = 1500)]
    mtu: usize,
}

fn replay(args: &ReplayArgs) -> anyhow::Result<()> {
    if !args.exact {
        return replay_live(args);
    }
    let frames = tapir::device::pcap_reader::read_capture(&args.file)?;
    let config = tapir::replay::ExactConfig {
        server_mac: args.mac.0,
        addresses: vec![args.ip.0],
        seed: args.seed,
        http_port: args.http,
        mtu: args.mtu,
        https: None,
    };
    let report = tapir::replay::replay_exact(&frames, &config)?;
    match report.mismatch {
        None => {
            println!(
                "{}: {} client frames replayed, {} server frames identical",
                args.file.display(),
                report.fed,
                report.compared
            );
            Ok(())
        }
        Some(mismatch) => {
            print!("{mismatch}");
            anyhow::bail!("{} does not replay exactly", args.file.display())
        }
    }
}

/// `1 flow`, `2 flows`.
fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("{n} {what}")
    } else {
        format!("{n} {what}s")
    }
}

fn replay_live(args: &ReplayArgs) -> anyhow::Result<()> {
    use tapir::replay::live::{self, LiveConfig, Pace, Site};
    let frames = tapir::device::pcap_reader::read_capture(&args.file)?;
    let config = LiveConfig {
        site: match &args.root {
            Some(root) => Site::Files(root.clone()),
            None => Site::Builtin,
        },
        http_port: args.http,
        server_ip: args.server_ip,
        pace: if args.fast {
            Pace::Fast
        } else {
            Pace::Speed(args.speed)
        },
        ..LiveConfig::default()
    };
    let report = match (&args.tap, args.target) {
        (Some(tap), Some(target)) => {
            let mut device = TapDevice::open(tap, 1500)?;
            let mut rng = fastrand::Rng::new();
            let mut stack_config = tapir::stack::StackConfig::new(
                tapir::device::random_mac(&mut rng),
                vec![args.ip.0],
            );
            stack_config.seed = rng.u64(..);
            let mut stack = Stack::new(stack_config, &mut device, WallClock::new().now())?;
            live::replay_live_on(&mut device, &mut stack, &frames, &config, target)?
        }
        _ => live::replay_live(&frames, &config)?,
    };
    for note in &report.notes {
        println!("note: {note}");
    }
    for flow in &report.flows {
        print!("{flow}");
    }
    let exchanges: usize = report.flows.iter().map(|f| f.exchanges.len()).sum();
    println!(
        "{}: {} replayed, {}, in {}",
        args.file.display(),
        plural(report.flows.len(), "flow"),
        plural(exchanges, "exchange"),
        report.elapsed
    );
    if args.expect {
        let mismatches = report.mismatches();
        if !mismatches.is_empty() {
            for m in &mismatches {
                println!("MISMATCH {m}");
            }
            if args.root.is_none() && args.tap.is_none() {
                println!(
                    "hint: the built-in site answered; if the capture's server served files, \
                     replay with --root DIR holding the same files (captures/real/site for \
                     the captures in captures/real)"
                );
            }
            anyhow::bail!(
                "exchanges that differ from the capture: {} of {}",
                mismatches.len(),
                report.compared()
            );
        }
        println!(
            "expect: {} compared, all match the capture",
            plural(report.compared(), "exchange")
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = init_logging(&cli.log) {
        eprintln!("tapir: {e:#}");
        return ExitCode::from(2);
    }
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tapir: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(filter: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .with_context(|| format!("bad --log filter '{filter}'"))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    Ok(())
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Replay(args) => replay(&args),
        Command::Link(args) => link::run(&args),
        Command::Serve { net, http } => {
            // Every flag is checked (and files read) before the TAP device is touched.
            let plan = ServePlan::new(&http)?;
            live(&net, |stack| serve(stack, plan)).map(|_| ())
        }
        Command::Get { net, get } => {
            let app = get::Get::new(get)?;
            let app = live(&net, |_| Ok(app))?;
            if app.failures.is_empty() {
                Ok(())
            } else {
                for failure in &app.failures {
                    eprintln!("tapir get: {failure}");
                }
                anyhow::bail!("{} of the requests failed", app.failures.len())
            }
        }
        Command::Proxy { net, proxy } => {
            let plan = ProxyPlan::new(&proxy)?;
            live(&net, |stack| start_proxy(stack, plan)).map(|_| ())
        }
        Command::Echo { net, port } => live(&net, |stack| {
            let app = EchoServer::bind(stack, port)?;
            tracing::info!("ready: echo on port {port}");
            Ok(app)
        })
        .map(|_| ()),
    }
}

/// `tapir proxy`'s flags, checked, with everything that does not need the stack made.
struct ProxyPlan {
    client: tapir::client::Client,
    upstream: Option<tapir::client::Target>,
    allow: Vec<tapir::proxy::Allow>,
    hosts: std::collections::HashMap<String, tapir::smoltcp::wire::IpAddress>,
    listen: u16,
}

impl ProxyPlan {
    fn new(args: &cli::ProxyArgs) -> anyhow::Result<Self> {
        use tapir::client::{Client, ClientConfig, Target, Version};
        if args.listen == 0 {
            anyhow::bail!("--listen 0 is not a port");
        }
        let roots = if args.insecure {
            certs::Roots::Insecure
        } else if let Some(ca) = &args.cacert {
            certs::Roots::CaFile(ca.clone())
        } else {
            certs::Roots::WebPki
        };
        let client = Client::new(ClientConfig {
            version: if args.upstream_http2 {
                Version::Http2
            } else {
                Version::Http1
            },
            roots,
            ..ClientConfig::default()
        })?;
        let upstream = match &args.upstream {
            Some(url) => {
                let addr = Target::literal_addr(url).ok_or_else(|| {
                    anyhow::anyhow!("--upstream {url}: the host must be an address")
                })?;
                Some(Target::from_uri(url, addr)?)
            }
            None => None,
        };
        Ok(ProxyPlan {
            client,
            upstream,
            allow: args.allow.iter().map(|a| a.0.clone()).collect(),
            hosts: args.hosts()?,
            listen: args.listen,
        })
    }
}

/// The proxy `tapir proxy` runs.
fn start_proxy(stack: &mut Stack, plan: ProxyPlan) -> anyhow::Result<tapir::proxy::Proxy> {
    use tapir::proxy::{Allow, Proxy, ProxyMode};
    let mode = match plan.upstream {
        Some(upstream) => {
            tracing::info!("reverse proxy to {upstream}");
            ProxyMode::Reverse { upstream }
        }
        None => {
            let allow: Vec<Allow> = if plan.allow.is_empty() {
                stack
                    .addresses()
                    .iter()
                    .map(|cidr| Allow {
                        net: *cidr,
                        ports: None,
                    })
                    .collect()
            } else {
                plan.allow
            };
            let list: Vec<String> = allow.iter().map(|a| a.to_string()).collect();
            tracing::info!("forward proxy; allowed targets: {}", list.join(", "));
            ProxyMode::Forward {
                allow,
                hosts: plan.hosts,
            }
        }
    };
    let mut proxy = Proxy::new(mode, plan.client, tapir::service::ServerConfig::default());
    proxy.bind_http(stack, plan.listen)?;
    tracing::info!("ready: proxy on port {}", plan.listen);
    Ok(proxy)
}

/// What `tapir serve` answers with.
enum Site {
    /// Static files; the built-in pages under [`BUILTIN_PREFIX`].
    Files(StaticFiles, Builtin),
    Builtin(Builtin),
}

/// With `--root`, the built-in pages (`/echo`, `/bytes/N`, `/stats`, `/`) are served under
/// this prefix, next to the files.
const BUILTIN_PREFIX: &str = "/_tapir";

impl Site {
    fn handle(&self, mut request: Request<RequestBody>, info: &ConnInfo) -> Response<Body> {
        match self {
            Site::Builtin(builtin) => builtin.handle(request, info),
            Site::Files(files, builtin) => {
                let path = request.uri().path();
                let Some(rest) = path.strip_prefix(BUILTIN_PREFIX) else {
                    return files.handle(&request);
                };
                if !(rest.is_empty() || rest.starts_with('/')) {
                    return files.handle(&request);
                }
                let inner = match request.uri().query() {
                    Some(q) => format!("/{}?{q}", rest.trim_start_matches('/')),
                    None => format!("/{}", rest.trim_start_matches('/')),
                };
                match inner.parse() {
                    Ok(uri) => {
                        *request.uri_mut() = uri;
                        builtin.handle(request, info)
                    }
                    Err(_) => files.handle(&request),
                }
            }
        }
    }
}

/// How HTTPS gets its certificate.
enum TlsPlan {
    /// `--no-https`.
    Off,
    /// `--cert` and `--key`, loaded and checked.
    Given(std::sync::Arc<rustls::ServerConfig>),
    /// A self-signed certificate for the stack's addresses, made once they are known.
    SelfSigned {
        alpn: Vec<Vec<u8>>,
        save: Option<std::path::PathBuf>,
    },
}

/// `tapir serve`'s flags, checked, with everything that does not need the stack made.
struct ServePlan {
    config: tapir::service::ServerConfig,
    site: Site,
    stats: StatsHandle,
    tls: TlsPlan,
    http: Option<u16>,
    https: u16,
    alpn: String,
}

impl ServePlan {
    fn new(http: &cli::HttpArgs) -> anyhow::Result<Self> {
        let mut config = http.server_config()?;
        let alpn = http.alpn_protocols()?;
        let stats = StatsHandle::default();
        let builtin = Builtin::new(stats.clone());
        let site = match &http.root {
            Some(root) => Site::Files(StaticFiles::new(root, http.listings)?, builtin),
            None => Site::Builtin(builtin),
        };
        // What `OPTIONS *` lists; files take fewer (GET, HEAD), the built-ins beside them more.
        config.methods = Some(Builtin::METHODS.to_vec());
        let tls = if http.no_https {
            TlsPlan::Off
        } else {
            match (&http.cert, &http.key) {
                (Some(cert), Some(key)) => {
                    // Their errors name the file.
                    let chain = certs::load_cert_chain(cert)?;
                    let private = certs::load_private_key(key)?;
                    log_fingerprint(&chain);
                    TlsPlan::Given(certs::server_config(chain, private, &alpn).with_context(
                        || format!("--cert {} with --key {}", cert.display(), key.display()),
                    )?)
                }
                _ => {
                    if let Some(path) = &http.save_cert {
                        let dir = match path.parent() {
                            Some(d) if !d.as_os_str().is_empty() => d,
                            _ => std::path::Path::new("."),
                        };
                        if !dir.is_dir() {
                            anyhow::bail!(
                                "--save-cert {}: no directory {}",
                                path.display(),
                                dir.display()
                            );
                        }
                    }
                    TlsPlan::SelfSigned {
                        alpn,
                        save: http.save_cert.clone(),
                    }
                }
            }
        };
        Ok(ServePlan {
            config,
            site,
            stats,
            tls,
            http: (!http.no_http).then_some(http.http),
            https: http.https,
            alpn: http.alpn.join(","),
        })
    }
}

/// The server `tapir serve` runs: static files or the built-in site.
fn serve(stack: &mut Stack, plan: ServePlan) -> anyhow::Result<Server<impl Handler>> {
    let ServePlan {
        config,
        site,
        stats,
        tls,
        http,
        https,
        alpn,
    } = plan;
    match &site {
        Site::Files(files, _) => tracing::info!(
            "serving files from {}, built-in pages under {BUILTIN_PREFIX}/",
            files.root().display()
        ),
        Site::Builtin(_) => {}
    }
    let handler = move |request: Request<RequestBody>, info: &ConnInfo| -> Response<Body> {
        site.handle(request, info)
    };
    // Certificates are ready before any port opens, so a bad --cert never shows as ready.
    let tls = match tls {
        TlsPlan::Off => None,
        TlsPlan::Given(config) => Some(config),
        TlsPlan::SelfSigned { alpn, save } => Some(self_signed(stack, &alpn, save.as_deref())?),
    };
    let mut server = Server::with_stats(handler, config, stats);
    if let Some(port) = http {
        server.bind_http(stack, port)?;
        tracing::info!("ready: HTTP on port {port}");
    }
    if let Some(tls) = tls {
        server.bind_https(stack, https, tls)?;
        tracing::info!("ready: HTTPS on port {https} (ALPN {alpn})");
    }
    Ok(server)
}

fn log_fingerprint(chain: &[rustls_pki_types::CertificateDer<'static>]) {
    if let Some(leaf) = chain.first() {
        tracing::info!(
            "TLS certificate SHA-256 fingerprint {}",
            certs::fingerprint_sha256(leaf)
        );
    }
}

/// A self-signed certificate for the stack's addresses and localhost, saved to `save`.
fn self_signed(
    stack: &Stack,
    alpn: &[Vec<u8>],
    save: Option<&std::path::Path>,
) -> anyhow::Result<std::sync::Arc<rustls::ServerConfig>> {
    let ips: Vec<std::net::IpAddr> = stack
        .addresses()
        .iter()
        .map(|cidr| std::net::IpAddr::from(cidr.address()))
        .collect();
    let generated = certs::self_signed(&["localhost".to_string()], &ips)?;
    if let Some(path) = save {
        std::fs::write(path, &generated.cert_pem)
            .with_context(|| format!("writing --save-cert {}", path.display()))?;
        tracing::info!("self-signed certificate saved to {}", path.display());
    }
    log_fingerprint(&generated.chain);
    Ok(certs::server_config(generated.chain, generated.key, alpn)?)
}

/// Opens the TAP device (with a capture if asked), builds the stack and runs `make_app`'s
/// application on it until it finishes or a stop signal arrives.
fn live<A, F>(net: &NetArgs, make_app: F) -> anyhow::Result<A>
where
    A: Application,
    F: FnOnce(&mut Stack) -> anyhow::Result<A>,
{
    // The stack's flags are checked before the TAP device is opened (or created).
    let mut rng = fastrand::Rng::new();
    let config = net.stack_config(&mut rng)?;
    if let Some(path) = &net.pcap {
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
        if dir.is_some_and(|d| !d.is_dir()) {
            anyhow::bail!("--pcap {}: no such directory", path.display());
        }
    }
    let tap = if net.no_offload {
        TapDevice::open(&net.tap, net.mtu)?
    } else {
        let refused = net.refuse_offload.map(|r| r.offloads()).unwrap_or_default();
        TapDevice::open_refusing(&net.tap, net.mtu, Offloads::ALL, refused)?
    };
    match &net.pcap {
        None => live_on(tap, net, config, make_app).map(|(_, app)| app),
        Some(path) => {
            let capture = Capture::create(tap, path)?;
            let (capture, app) = live_on(capture, net, config, make_app)?;
            tracing::info!(
                "pcap: wrote {} frames to {}",
                capture.frames(),
                path.display()
            );
            Ok(app)
        }
    }
}

fn live_on<D, A, F>(
    mut device: D,
    net: &NetArgs,
    config: tapir::stack::StackConfig,
    make_app: F,
) -> anyhow::Result<(D, A)>
where
    D: FdDevice,
    A: Application,
    F: FnOnce(&mut Stack) -> anyhow::Result<A>,
{
    // A stop signal that arrives while the device, stack and application are being set up
    // (before the event loop listens for signals) is kept, not fatal, and honoured at once.
    let early_stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, early_stop.clone())
            .context("installing the signal handlers")?;
    }
    let clock = WallClock::new();
    let mut stack = Stack::new(config, &mut device, clock.now())?;
    let addresses: Vec<String> = stack.addresses().iter().map(|a| a.to_string()).collect();
    tracing::info!(
        "stack up on {}: MAC {}, MTU {}, addresses {}",
        net.tap,
        stack.config().mac,
        net.mtu,
        addresses.join(", ")
    );
    let mut app = make_app(&mut stack)?;
    let stop = StopHandle::new();
    if early_stop.load(std::sync::atomic::Ordering::SeqCst) {
        tracing::info!("stop signal received during start-up");
        stop.stop();
    }
    let ended = event_loop::run(
        &mut device,
        &mut stack,
        &mut app,
        &stop,
        &net.loop_options(),
    );
    let stats = stack.stats();
    let result = ended;
    let ended = match &result {
        Ok(ended) => format!("{ended:?}"),
        Err(e) => format!("error: {}", tapir::error::Chain(e)),
    };
    tracing::info!(
        "stopped ({ended}): {} frames in, {} out, {} malformed, {} bad checksum, {} SYNs dropped, {} accepted, {} closed",
        stats.rx_frames,
        stats.tx_frames,
        stats.rx_malformed,
        stats.rx_bad_checksum,
        stats.syn_dropped,
        stats.accepted,
        stats.closed
    );
    match result {
        Ok(Ended::GraceExpired) => {
            tracing::warn!("connections were still open when the shutdown grace period ended")
        }
        Ok(_) => {}
        Err(e) => return Err(e.into()),
    }
    Ok((device, app))
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::wire::{IpAddress, IpEndpoint};
    use tapir::service::Protocol;

    /// The status and declared length of `site`'s answer to `GET target`.
    fn get(site: &Site, target: &str) -> (u16, Option<u64>) {
        let info = ConnInfo {
            protocol: Protocol::Http11,
            peer: IpEndpoint::new(IpAddress::v4(10, 7, 0, 1), 40000),
            local: IpEndpoint::new(IpAddress::v4(10, 7, 0, 2), 80),
            tls: None,
        };
        let request = Request::builder()
            .uri(target)
            .body(RequestBody::empty())
            .expect("a valid request");
        let response = site.handle(request, &info);
        (response.status().as_u16(), response.body().len())
    }

    #[test]
    fn files_and_the_built_in_pages_live_together_under_a_prefix() {
        let root = std::env::temp_dir().join(format!("tapir-site-{}", std::process::id()));
        std::fs::create_dir_all(&root).expect("temp dir");
        std::fs::write(root.join("hello.txt"), "from a file").expect("write a file");
        std::fs::write(root.join("_tapirx"), "a file").expect("write a file");
        let files = StaticFiles::new(&root, false).expect("the site's root");
        let site = Site::Files(files, Builtin::new(StatsHandle::default()));
        assert_eq!(get(&site, "/hello.txt"), (200, Some(11)));
        // The built-in pages under /_tapir/, queries kept.
        assert_eq!(get(&site, "/_tapir/bytes/30"), (200, Some(30)));
        assert_eq!(get(&site, "/_tapir/bytes/5?x=1"), (200, Some(5)));
        assert_eq!(get(&site, "/_tapir/stats").0, 200);
        assert_eq!(get(&site, "/_tapir").0, 200);
        assert_eq!(get(&site, "/_tapir/").0, 200);
        // The prefix is a directory name only: a file that starts with it is a file.
        assert_eq!(get(&site, "/_tapirx"), (200, Some(6)));
        // Outside the prefix, the built-in paths are files (missing here).
        assert_eq!(get(&site, "/stats").0, 404);
        assert_eq!(get(&site, "/bytes/30").0, 404);
        // Without --root the built-in site is at /.
        let builtin = Site::Builtin(Builtin::new(StatsHandle::default()));
        assert_eq!(get(&builtin, "/bytes/30"), (200, Some(30)));
        let _ = std::fs::remove_dir_all(&root);
    }
}
