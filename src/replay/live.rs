//! Live replay: the client side of every TCP flow of a capture from the wild, replayed onto
//! fresh connections to an in-process server.
//!
//! The capture is split into flows ([`flows`]), each direction reassembled. For every flow
//! a client stack opens its own connection (its own ports and ISN: the capture's addresses
//! and sequence numbers are rewritten onto the live connection simply by using it) to a
//! server like `tapir serve` over the in-memory link, sends the captured client bytes paced
//! by the capture's timestamps (scaled by a speed, or as fast as the stack takes them),
//! half-closes when the captured client did, and reads everything the server answers. All
//! of it runs in the simulation, on the virtual clock: pacing costs no wall time.
//!
//! The HTTP exchanges of both the live answer and the capture are then parsed
//! ([`exchanges`]) and, when asked, compared. The comparison rule: the status always; the
//! body length when the captured response was a success (2xx) whose length was declared
//! (Content-Length, or content-length in HTTP/2) — chunked or close-delimited bodies and
//! error pages differ from server to server and are not compared by length.

pub mod exchanges;
pub mod flows;
pub mod hpack;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use http::{Request, Response};
use smoltcp::socket::tcp::State;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, IpAddress, IpCidr, IpEndpoint, Ipv4Address, Ipv6Address};

use crate::device::memlink::{self, LinkConfig};
use crate::device::pcap_reader::CapturedFrame;
use crate::device::FdDevice;
use crate::runtime::event_loop::{self, Ended, LoopOptions, RunError};
use crate::runtime::sim::{Node, Sim, SimNode};
use crate::runtime::Application;
use crate::runtime::{StopHandle, WallClock};
use crate::service::builtin::Builtin;
use crate::service::files::{FilesError, StaticFiles};
use crate::service::server::StatsHandle;
use crate::service::{Body, ConnInfo, RequestBody, Server, ServerConfig};
use crate::stack::{Stack, StackConfig, StackError, TcpHandle};

use exchanges::{Conversation, Framing, Protocol, RequestInfo, ResponseInfo};
use flows::Flow;

/// What the in-process server serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Site {
    /// The built-in site of `tapir serve`.
    Builtin,
    /// Static files from a directory (`tapir serve --root DIR`).
    Files(PathBuf),
}

/// How the captured client bytes are paced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// At the capture's timestamps divided by this factor (1 = as recorded).
    Speed(f64),
    /// As fast as the stack takes them; FINs follow once the server has gone quiet.
    Fast,
}

/// Settings of a live replay.
#[derive(Debug, Clone)]
pub struct LiveConfig {
    /// What the server serves.
    pub site: Site,
    /// The server's cleartext HTTP port (every flow is replayed to it).
    pub http_port: u16,
    /// Replay only flows whose server (SYN receiver) has this address.
    pub server_ip: Option<IpAddr>,
    /// Pacing.
    pub pace: Pace,
    /// The server's settings.
    pub server: ServerConfig,
    /// Virtual time without traffic after which a flow whose client bytes are all sent is
    /// considered answered.
    pub quiet: Duration,
}

impl Default for LiveConfig {
    fn default() -> Self {
        LiveConfig {
            site: Site::Builtin,
            http_port: 80,
            server_ip: None,
            pace: Pace::Speed(1.0),
            server: ServerConfig::default(),
            quiet: Duration::from_secs(2),
        }
    }
}

/// Errors of a live replay (problems of the capture's content are notes, not errors).
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// No flow could be replayed.
    #[error("no TCP flow with a SYN{0} in the capture")]
    NoFlows(String),
    /// The speed factor is not a positive number.
    #[error("--speed must be a positive number, not {0}")]
    BadSpeed(f64),
    /// The static files directory is unusable.
    #[error(transparent)]
    Files(#[from] FilesError),
    /// A stack could not be set up.
    #[error(transparent)]
    Stack(#[from] StackError),
    /// The link could not be set up.
    #[error(transparent)]
    Device(#[from] crate::device::DeviceError),
    /// The live event loop failed (TAP replay).
    #[error(transparent)]
    Run(#[from] RunError),
}

/// One exchange of a replayed flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeReport {
    /// The request (from the captured client bytes).
    pub request: RequestInfo,
    /// What the live server answered.
    pub got: Option<ResponseInfo>,
    /// What the capture's server answered.
    pub expected: Option<ResponseInfo>,
}

/// A difference between the live answer and the capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The flow's index.
    pub flow: usize,
    /// The exchange's number in the flow (1-based).
    pub exchange: usize,
    /// The request, as `METHOD path`.
    pub request: String,
    /// What differs: `status`, `body length` or `response`.
    pub what: &'static str,
    /// The capture's value.
    pub expected: String,
    /// The live value.
    pub got: String,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "flow {} exchange {} ({}): {} expected {}, got {}",
            self.flow, self.exchange, self.request, self.what, self.expected, self.got
        )
    }
}

/// The outcome of one flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowReport {
    /// The flow's index in the capture.
    pub index: usize,
    /// The captured client.
    pub client: SocketAddr,
    /// The captured server.
    pub server: SocketAddr,
    /// The protocol of the client bytes.
    pub protocol: Protocol,
    /// Client bytes sent on the live connection (of `to_send`).
    pub sent: usize,
    /// Client bytes the capture holds (up to its first hole).
    pub to_send: usize,
    /// Bytes the live server answered.
    pub received: usize,
    /// The exchanges, in order.
    pub exchanges: Vec<ExchangeReport>,
    /// Notes: reassembly, truncation, parse problems, connection trouble.
    pub notes: Vec<String>,
}

/// The outcome of a live replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveReport {
    /// Replayed flows.
    pub flows: Vec<FlowReport>,
    /// Notes about the capture as a whole (skipped flows, bad frames).
    pub notes: Vec<String>,
    /// Virtual time the replay took.
    pub elapsed: Duration,
}

impl LiveReport {
    /// Differences between live answers and the capture's, by the rule of the module
    /// documentation. Exchanges whose captured response is missing or incomplete are not
    /// compared.
    pub fn mismatches(&self) -> Vec<Mismatch> {
        let mut out = Vec::new();
        for flow in &self.flows {
            for (i, ex) in flow.exchanges.iter().enumerate() {
                let Some(want) = ex.expected.as_ref().filter(|r| r.complete) else {
                    continue;
                };
                let mismatch = |what, expected: String, got: String| Mismatch {
                    flow: flow.index,
                    exchange: i + 1,
                    request: format!("{} {}", ex.request.method, ex.request.path),
                    what,
                    expected,
                    got,
                };
                let Some(got) = ex.got.as_ref() else {
                    out.push(mismatch(
                        "response",
                        format!("status {}", want.status),
                        "no response".into(),
                    ));
                    continue;
                };
                if got.status != want.status {
                    out.push(mismatch(
                        "status",
                        want.status.to_string(),
                        got.status.to_string(),
                    ));
                } else if (200..300).contains(&want.status)
                    && want.framing == Framing::Length
                    && got.body_len != want.body_len
                {
                    out.push(mismatch(
                        "body length",
                        want.body_len.to_string(),
                        got.body_len.to_string(),
                    ));
                }
            }
        }
        out
    }

    /// Exchanges that were compared (the captured response is complete).
    pub fn compared(&self) -> usize {
        self.flows
            .iter()
            .flat_map(|f| &f.exchanges)
            .filter(|e| e.expected.as_ref().is_some_and(|r| r.complete))
            .count()
    }
}

fn describe(r: &Option<ResponseInfo>) -> String {
    match r {
        None => "no response".into(),
        Some(r) => format!(
            "{} {} bytes{}",
            r.status,
            r.body_len,
            if r.complete { "" } else { " (incomplete)" }
        ),
    }
}

impl fmt::Display for FlowReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let protocol = match self.protocol {
            Protocol::Http1 => "HTTP/1.x",
            Protocol::H2c => "h2c",
            Protocol::Unknown => "not HTTP",
        };
        writeln!(
            f,
            "flow {} {} → {} ({protocol}): sent {} of {} bytes, received {} bytes",
            self.index, self.client, self.server, self.sent, self.to_send, self.received
        )?;
        for (i, ex) in self.exchanges.iter().enumerate() {
            let stream = ex
                .request
                .stream
                .map(|s| format!(" [stream {s}]"))
                .unwrap_or_default();
            writeln!(
                f,
                "  {}. {} {}{stream} → {} (capture: {})",
                i + 1,
                ex.request.method,
                ex.request.path,
                describe(&ex.got),
                describe(&ex.expected)
            )?;
        }
        for note in &self.notes {
            writeln!(f, "  note: {note}")?;
        }
        Ok(())
    }
}

/// The live server's addresses (the client stack's are .1 / ::1).
const SERVER_V4: Ipv4Address = Ipv4Address::new(10, 7, 0, 2);
const SERVER_V6: Ipv6Address = Ipv6Address::new(0xfd00, 7, 0, 0, 0, 0, 0, 2);
const CLIENT_V4: Ipv4Address = Ipv4Address::new(10, 7, 0, 1);
const CLIENT_V6: Ipv6Address = Ipv6Address::new(0xfd00, 7, 0, 0, 0, 0, 0, 1);

fn stack_config(v4: Ipv4Address, v6: Ipv6Address, mac_last: u8, seed: u64) -> StackConfig {
    let mut config = StackConfig::new(
        EthernetAddress([0x02, 0, 0, 0, 0, mac_last]),
        vec![
            IpCidr::new(IpAddress::Ipv4(v4), 24),
            IpCidr::new(IpAddress::Ipv6(v6), 64),
        ],
    );
    config.seed = seed;
    // Room for every flow of a capture at once.
    config.tcp.max_connections = 65_536;
    config
}

/// One flow on its live connection.
struct LiveFlow {
    remote: IpEndpoint,
    start: Instant,
    data: Vec<u8>,
    /// `(due, stream length)`: bytes up to the length may be sent from `due` on.
    schedule: Vec<(Instant, usize)>,
    fin_at: Option<Instant>,
    reset: bool,
    handle: Option<TcpHandle>,
    sent: usize,
    received: Vec<u8>,
    established: bool,
    half_closed: bool,
    server_closed: bool,
    last_activity: Instant,
    done: bool,
    notes: Vec<String>,
}

impl LiveFlow {
    fn available(&self, now: Instant, fast: bool) -> usize {
        if fast {
            return self.data.len();
        }
        self.schedule
            .iter()
            .take_while(|(due, _)| *due <= now)
            .map(|(_, len)| *len)
            .last()
            .unwrap_or(0)
            .min(self.data.len())
    }
}

/// The client application: every flow's connection.
struct ReplayClient {
    flows: Vec<LiveFlow>,
    fast: bool,
    quiet: Duration,
    buf: Vec<u8>,
}

impl ReplayClient {
    fn poll_flow(
        flow: &mut LiveFlow,
        stack: &mut Stack,
        now: Instant,
        fast: bool,
        quiet: Duration,
        buf: &mut [u8],
    ) -> bool {
        if flow.done || now < flow.start {
            return false;
        }
        let mut progressed = false;
        let handle = match &flow.handle {
            Some(h) => h,
            None => match stack.connect(flow.remote) {
                Ok(h) => {
                    flow.last_activity = now;
                    flow.handle = Some(h);
                    return true;
                }
                Err(e) => {
                    flow.notes
                        .push(format!("cannot connect: {}", crate::error::Chain(&e)));
                    flow.done = true;
                    return false;
                }
            },
        };
        let socket = stack.socket(handle);
        let state = socket.state();
        if state == State::Established {
            flow.established = true;
        }
        let available = flow.available(now, fast);
        while flow.sent < available && socket.can_send() {
            let Some(chunk) = flow.data.get(flow.sent..available) else {
                break;
            };
            match socket.send_slice(chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    flow.sent += n;
                    flow.last_activity = now;
                    progressed = true;
                }
            }
        }
        while socket.can_recv() {
            match socket.recv_slice(buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    flow.received.extend_from_slice(buf.get(..n).unwrap_or(&[]));
                    flow.last_activity = now;
                    progressed = true;
                }
            }
        }
        let all_sent = flow.sent >= flow.data.len();
        let quiet_now = now >= flow.last_activity + quiet;
        if all_sent && !flow.half_closed {
            if let Some(fin_at) = flow.fin_at {
                let due = if fast { quiet_now } else { now >= fin_at };
                if due && socket.may_send() {
                    socket.close();
                    flow.half_closed = true;
                    flow.last_activity = now;
                    progressed = true;
                }
            }
        }
        let remote_closed = flow.established
            && matches!(
                state,
                State::CloseWait
                    | State::LastAck
                    | State::Closing
                    | State::TimeWait
                    | State::Closed
            );
        let refused = !flow.established && state == State::Closed;
        flow.server_closed = remote_closed;
        let closed = remote_closed || refused;
        let answered = all_sent && quiet_now && (flow.half_closed || flow.fin_at.is_none());
        if (closed && socket.recv_queue() == 0) || answered {
            flow.done = true;
            if refused {
                flow.notes.push("the connection was refused".into());
            } else if !all_sent {
                flow.notes.push(format!(
                    "the server closed the connection after {} of {} client bytes",
                    flow.sent,
                    flow.data.len()
                ));
            }
            if let Some(h) = flow.handle.take() {
                if flow.reset {
                    stack.abort(h);
                } else {
                    stack.close(h);
                }
            }
            progressed = true;
        }
        progressed
    }
}

impl Application for ReplayClient {
    fn poll(&mut self, stack: &mut Stack, now: Instant) -> bool {
        let mut progressed = false;
        for flow in &mut self.flows {
            progressed |= Self::poll_flow(flow, stack, now, self.fast, self.quiet, &mut self.buf);
        }
        progressed
    }

    fn poll_at(&self, now: Instant) -> Option<Instant> {
        self.flows
            .iter()
            .filter(|f| !f.done)
            .flat_map(|f| {
                let next_chunk = if self.fast {
                    None
                } else {
                    f.schedule
                        .iter()
                        .map(|(due, _)| *due)
                        .find(|due| *due > now)
                };
                let start = f.handle.is_none().then_some(f.start);
                [
                    start,
                    next_chunk,
                    f.fin_at.filter(|t| *t > now),
                    Some(f.last_activity + self.quiet),
                ]
            })
            .flatten()
            .min()
    }

    fn is_finished(&self) -> bool {
        self.flows.iter().all(|f| f.done)
    }
}

fn scaled(since: std::time::Duration, pace: Pace) -> Duration {
    let micros = since.as_micros() as f64;
    let micros = match pace {
        Pace::Speed(s) => micros / s,
        Pace::Fast => 0.0,
    };
    Duration::from_micros(micros.clamp(0.0, 1e15) as u64)
}

/// Notes about a flow's capture: holes, retransmissions, truncation, a missing end.
fn capture_notes(flow: &Flow) -> Vec<String> {
    let mut notes = Vec::new();
    if let Some(gap) = flow.to_server.gap {
        notes.push(format!(
            "client bytes {}..{} are missing from the capture (lost); replay stops after {} bytes",
            gap.at, gap.resumes, gap.at
        ));
    }
    if let Some(gap) = flow.to_client.gap {
        notes.push(format!(
            "server bytes {}..{} are missing from the capture; its responses are compared up to byte {}",
            gap.at, gap.resumes, gap.at
        ));
    }
    let (r, o) = (
        flow.to_server.retransmitted + flow.to_client.retransmitted,
        flow.to_server.out_of_order + flow.to_client.out_of_order,
    );
    if r > 0 || o > 0 {
        notes.push(format!(
            "reassembled around {r} retransmitted and {o} out-of-order segments"
        ));
    }
    if flow.snapped > 0 {
        notes.push(format!(
            "{} payload bytes were cut off by the snap length",
            flow.snapped
        ));
    }
    if !flow.syn_ack {
        notes.push("the server's SYN-ACK is not in the capture".into());
    }
    if flow.cut_at_end() {
        notes.push(
            "the capture ends while the connection is open: replayed as far as it goes".into(),
        );
    }
    if flow.to_server.rst.is_some() {
        notes.push("the client reset the connection; the replay resets it too".into());
    }
    notes
}

/// Replays the client side of every flow of `frames` against a fresh server and reports
/// what came back (and what the capture's server had answered).
/// The flows of a capture that will be replayed (after `--server-ip`), with notes.
fn select(frames: &[CapturedFrame], config: &LiveConfig) -> Result<flows::Flows, LiveError> {
    if let Pace::Speed(s) = config.pace {
        if !(s.is_finite() && s > 0.0) {
            return Err(LiveError::BadSpeed(s));
        }
    }
    let mut extracted = flows::extract(frames);
    if let Some(ip) = config.server_ip {
        let before = extracted.flows.len();
        extracted.flows.retain(|f| f.server.ip() == ip);
        if extracted.flows.len() < before {
            extracted.notes.push(format!(
                "{} flows to other servers than {ip} left out",
                before - extracted.flows.len()
            ));
        }
    }
    if extracted.flows.is_empty() {
        let to = config
            .server_ip
            .map(|ip| format!(" to {ip}"))
            .unwrap_or_default();
        let mut why = to;
        if let Some(note) = extracted.notes.first() {
            why.push_str(&format!(" ({note})"));
        }
        return Err(LiveError::NoFlows(why));
    }
    Ok(extracted)
}

/// The client side of every flow, scheduled from `t0` with the flow's server at `remote`.
fn live_flows(
    extracted: &flows::Flows,
    t0: Instant,
    pace: Pace,
    remote: impl Fn(&Flow) -> IpEndpoint,
) -> Vec<LiveFlow> {
    let capture_start = extracted
        .flows
        .iter()
        .map(|f| f.start)
        .min()
        .unwrap_or_default();
    extracted
        .flows
        .iter()
        .map(|flow| {
            let at = |t: std::time::Duration| t0 + scaled(t.saturating_sub(capture_start), pace);
            LiveFlow {
                remote: remote(flow),
                start: at(flow.start),
                data: flow.to_server.data.clone(),
                schedule: flow
                    .to_server
                    .arrivals
                    .iter()
                    .map(|(t, len)| (at(*t), *len))
                    .collect(),
                fin_at: flow.to_server.fin.or(flow.to_server.rst).map(at),
                reset: flow.to_server.rst.is_some() && flow.to_server.fin.is_none(),
                handle: None,
                sent: 0,
                received: Vec::new(),
                established: false,
                half_closed: false,
                server_closed: false,
                last_activity: t0,
                done: false,
                notes: Vec::new(),
            }
        })
        .collect()
}

/// How long the capture lasts once paced.
fn paced_span(extracted: &flows::Flows, pace: Pace) -> Duration {
    let first = extracted
        .flows
        .iter()
        .map(|f| f.start)
        .min()
        .unwrap_or_default();
    let last = extracted
        .flows
        .iter()
        .map(|f| f.end)
        .max()
        .unwrap_or_default();
    scaled(last.saturating_sub(first), pace)
}

/// Replays every flow of `frames` against an in-process server on the in-memory link
/// (virtual clock: pacing costs no wall time).
pub fn replay_live(frames: &[CapturedFrame], config: &LiveConfig) -> Result<LiveReport, LiveError> {
    let mut extracted = select(frames, config)?;
    let files = match &config.site {
        Site::Files(root) => Some(StaticFiles::new(root, false)?),
        Site::Builtin => None,
    };
    let mut sim = Sim::new();
    let t0 = sim.now();
    let (mut s_dev, mut c_dev) = memlink::pair(LinkConfig::default())?;
    let mut s_stack = Stack::new(stack_config(SERVER_V4, SERVER_V6, 2, 1), &mut s_dev, t0)?;
    let c_stack = Stack::new(stack_config(CLIENT_V4, CLIENT_V6, 1, 2), &mut c_dev, t0)?;
    let stats = StatsHandle::default();
    let builtin = Builtin::new(stats.clone());
    let handler = move |request: Request<RequestBody>, info: &ConnInfo| -> Response<Body> {
        match &files {
            Some(files) => files.handle(&request),
            None => builtin.handle(request, info),
        }
    };
    let mut server = Server::with_stats(handler, config.server.clone(), stats);
    server.bind_http(&mut s_stack, config.http_port)?;
    let port = config.http_port;
    let live = live_flows(&extracted, t0, config.pace, |flow| {
        let ip = match flow.server.ip() {
            IpAddr::V4(_) => IpAddress::Ipv4(SERVER_V4),
            IpAddr::V6(_) => IpAddress::Ipv6(SERVER_V6),
        };
        IpEndpoint::new(ip, port)
    });
    let client = ReplayClient {
        flows: live,
        fast: config.pace == Pace::Fast,
        quiet: config.quiet,
        buf: vec![0; 64 * 1024],
    };
    let mut server = Node::new(s_stack, s_dev, server);
    let mut client = Node::new(c_stack, c_dev, client);
    let limit = paced_span(&extracted, config.pace) + Duration::from_secs(600);
    let run = sim.run_until(
        &mut [&mut server as &mut dyn SimNode, &mut client],
        limit,
        |nodes| nodes.get(1).is_some_and(|n| n.finished()),
    );
    let elapsed = sim.now() - t0;
    if let Err(e) = run {
        extracted.notes.push(format!(
            "the replay did not finish: {}",
            crate::error::Chain(&e)
        ));
    }
    Ok(report(extracted, client.app.flows, elapsed))
}

/// Replays every flow of `frames` through a live device (a TAP interface) from `stack`, to
/// the server at `target` (its port: `config.http_port`), on the wall clock. `config.site`
/// is unused: the server is whatever answers at `target`.
pub fn replay_live_on<D: FdDevice>(
    device: &mut D,
    stack: &mut Stack,
    frames: &[CapturedFrame],
    config: &LiveConfig,
    target: IpAddr,
) -> Result<LiveReport, LiveError> {
    let mut extracted = select(frames, config)?;
    let clock = WallClock::new();
    let t0 = clock.now();
    let remote = IpEndpoint::new(IpAddress::from(target), config.http_port);
    let live = live_flows(&extracted, t0, config.pace, |_| remote);
    let mut client = ReplayClient {
        flows: live,
        fast: config.pace == Pace::Fast,
        quiet: config.quiet,
        buf: vec![0; 64 * 1024],
    };
    let options = LoopOptions {
        handle_signals: true,
        ..LoopOptions::default()
    };
    let ended = event_loop::run(device, stack, &mut client, &StopHandle::new(), &options)?;
    if ended != Ended::Finished {
        extracted
            .notes
            .push(format!("the replay was stopped ({ended:?})"));
    }
    let elapsed = clock.now() - t0;
    Ok(report(extracted, client.flows, elapsed))
}

/// Compares what came back on each flow with what the capture holds.
fn report(extracted: flows::Flows, live_flows: Vec<LiveFlow>, elapsed: Duration) -> LiveReport {
    let mut reports = Vec::new();
    for (flow, live) in extracted.flows.iter().zip(live_flows) {
        let mut notes = capture_notes(flow);
        notes.extend(live.notes.iter().cloned());
        if !live.done {
            notes.push("still open when the replay ended".into());
        }
        let sent = live.data.get(..live.sent).unwrap_or(&[]);
        let got: Conversation = exchanges::conversation(sent, &live.received, live.server_closed);
        let captured = exchanges::conversation(
            &flow.to_server.data,
            &flow.to_client.data,
            flow.to_client.fin.is_some(),
        );
        notes.extend(captured.notes.iter().map(|n| format!("capture: {n}")));
        notes.extend(got.notes.iter().map(|n| format!("live: {n}")));
        let exchanges = captured
            .requests
            .iter()
            .enumerate()
            .map(|(i, request)| ExchangeReport {
                request: request.clone(),
                got: got.responses.get(i).cloned().flatten(),
                expected: captured.responses.get(i).cloned().flatten(),
            })
            .collect();
        reports.push(FlowReport {
            index: flow.index,
            client: flow.client,
            server: flow.server,
            protocol: captured.protocol,
            sent: live.sent,
            to_send: live.data.len(),
            received: live.received.len(),
            exchanges,
            notes,
        });
    }
    LiveReport {
        flows: reports,
        notes: extracted.notes,
        elapsed,
    }
}
