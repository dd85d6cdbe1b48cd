//! Replaying captures.
//!
//! Exact replay (regression): a capture recorded in deterministic mode — virtual clock,
//! fixed seeds, as the simulation runs — is split into what the client sent and what the
//! server answered. A fresh server stack fed the client's frames at their timestamps must
//! answer with the very same frames, byte for byte and at the same times; the first
//! difference is reported with both frames decoded.

pub mod live;

use std::fmt;
use std::sync::Arc;

use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, EthernetFrame, IpAddress, IpCidr, PrettyPrinter};

use crate::device::pcap_reader::CapturedFrame;
use crate::device::replay::{ReplayDevice, TimedFrame};
use crate::runtime::sim::{Node, Sim, SimError, SimNode};
use crate::service::builtin::Builtin;
use crate::service::server::StatsHandle;
use crate::service::{ConnInfo, Server, ServerConfig};
use crate::stack::{Stack, StackConfig, StackError};
use crate::transport::certs::CertError;

/// Builds a server TLS configuration.
pub type TlsFactory = dyn Fn() -> Result<Arc<rustls::ServerConfig>, CertError> + Send + Sync;

/// The HTTPS port of a deterministic capture's server.
#[derive(Clone)]
pub struct ExactHttps {
    /// The port (built-in site over TLS).
    pub port: u16,
    /// Builds the server's TLS configuration, afresh for each server: a deterministic
    /// provider's generator must start over from its seed for every recording and replay
    /// (see `transport::certs::deterministic`, feature `deterministic-crypto`).
    pub tls: Arc<TlsFactory>,
}

impl fmt::Debug for ExactHttps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExactHttps")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl PartialEq for ExactHttps {
    /// Same port and the very same factory.
    fn eq(&self, other: &Self) -> bool {
        self.port == other.port && Arc::ptr_eq(&self.tls, &other.tls)
    }
}

/// How the server of a deterministic capture was set up. The defaults are those of the
/// golden captures in `captures/golden/`.
#[derive(Debug, Clone, PartialEq)]
pub struct ExactConfig {
    /// The server's MAC address: frames from it are the expected answers.
    pub server_mac: EthernetAddress,
    /// The server's addresses.
    pub addresses: Vec<IpCidr>,
    /// The stack's seed.
    pub seed: u64,
    /// The cleartext HTTP port (built-in site).
    pub http_port: u16,
    /// The IP MTU of the server's link (it sets the MSS the server announces).
    pub mtu: usize,
    /// An HTTPS port too, if any (`None` for the cleartext golden captures).
    pub https: Option<ExactHttps>,
}

impl Default for ExactConfig {
    fn default() -> Self {
        ExactConfig {
            server_mac: EthernetAddress([0x02, 0, 0, 0, 0, 0x02]),
            addresses: vec![IpCidr::new(IpAddress::v4(10, 7, 0, 2), 24)],
            seed: 1,
            http_port: 80,
            mtu: 1500,
            https: None,
        }
    }
}

impl ExactConfig {
    /// The server's stack configuration.
    pub fn stack_config(&self) -> StackConfig {
        let mut config = StackConfig::new(self.server_mac, self.addresses.clone());
        config.seed = self.seed;
        config
    }

    /// The server: the built-in site on the HTTP port (and on the HTTPS port, if any, with a
    /// freshly built TLS configuration), with the default settings.
    pub fn server(&self, stack: &mut Stack) -> Result<Server<BuiltinHandler>, ReplayError> {
        let stats = StatsHandle::default();
        let handler = BuiltinHandler(Builtin::new(stats.clone()));
        let mut server = Server::with_stats(handler, ServerConfig::default(), stats);
        server.bind_http(stack, self.http_port)?;
        if let Some(https) = &self.https {
            server.bind_https(stack, https.port, (https.tls)()?)?;
        }
        Ok(server)
    }
}

/// The built-in site as a named handler type.
pub struct BuiltinHandler(Builtin);

impl crate::service::Handler for BuiltinHandler {
    fn call(
        &self,
        request: http::Request<crate::service::RequestBody>,
        info: &ConnInfo,
    ) -> crate::service::Reply {
        crate::service::Reply::Now(self.0.handle(request, info))
    }
}

/// Errors of a replay.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The capture holds nothing to replay.
    #[error("the capture has no frame to or from {0}")]
    Empty(EthernetAddress),
    /// No frame of the capture comes from the server, so there is nothing to compare.
    #[error(
        "no frame of the capture comes from the server's MAC {0}: nothing to compare \
         (--exact replays captures recorded in deterministic mode, like captures/golden/; \
         --mac names the server; for other captures use live replay, without --exact)"
    )]
    NoServerFrames(EthernetAddress),
    /// The server could not be set up.
    #[error(transparent)]
    Stack(#[from] StackError),
    /// A device could not be set up.
    #[error(transparent)]
    Device(#[from] crate::device::DeviceError),
    /// The server's TLS configuration could not be built.
    #[error(transparent)]
    Tls(#[from] CertError),
}

/// The first difference between what the server sent and what the capture holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// Index among the server's frames.
    pub index: usize,
    /// The frame in the capture, if any.
    pub expected: Option<TimedFrame>,
    /// The frame the server sent now, if any.
    pub actual: Option<TimedFrame>,
}

/// A one-line decoded summary of an Ethernet frame.
pub fn summary(frame: &[u8]) -> String {
    let printed = format!("{}", PrettyPrinter::<EthernetFrame<&[u8]>>::new("", &frame));
    printed.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "first difference at server frame #{}", self.index)?;
        let show = |f: &mut fmt::Formatter<'_>, label: &str, frame: &Option<TimedFrame>| match frame
        {
            Some(t) => writeln!(
                f,
                "  {label} at {}: {} ({} bytes)",
                t.at,
                summary(&t.data),
                t.data.len()
            ),
            None => writeln!(f, "  {label}: nothing"),
        };
        show(f, "capture", &self.expected)?;
        show(f, "replay ", &self.actual)
    }
}

/// The outcome of an exact replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExactReport {
    /// Client frames fed to the server.
    pub fed: usize,
    /// Server frames compared.
    pub compared: usize,
    /// The first difference, if any.
    pub mismatch: Option<Mismatch>,
}

fn instant(time: std::time::Duration) -> Instant {
    Instant::from_micros(i64::try_from(time.as_micros()).unwrap_or(i64::MAX))
}

/// Replays `frames` (a capture taken at the server's device) into a fresh server set up by
/// `config`, and compares what it sends with the server's frames in the capture.
pub fn replay_exact(
    frames: &[CapturedFrame],
    config: &ExactConfig,
) -> Result<ExactReport, ReplayError> {
    let mac = config.server_mac;
    let from_server = |f: &CapturedFrame| f.data.get(6..12) == Some(&mac.0[..]);
    let (expected, input): (Vec<&CapturedFrame>, Vec<&CapturedFrame>) =
        frames.iter().partition(|f| from_server(f));
    let Some(last) = frames.iter().map(|f| f.time).max() else {
        return Err(ReplayError::Empty(mac));
    };
    if expected.is_empty() && input.is_empty() {
        return Err(ReplayError::Empty(mac));
    }
    if expected.is_empty() {
        return Err(ReplayError::NoServerFrames(mac));
    }
    let input: Vec<TimedFrame> = input
        .iter()
        .map(|f| TimedFrame {
            at: instant(f.time),
            data: f.data.clone(),
        })
        .collect();
    let fed = input.len();
    let mut sim = Sim::new();
    let mut device = ReplayDevice::new(input, config.mtu)?;
    let mut stack = Stack::new(config.stack_config(), &mut device, sim.now())?;
    let server = config.server(&mut stack)?;
    let mut node = Node::new(stack, device, server);
    let end = instant(last);
    let limit = if end > sim.now() {
        end - sim.now()
    } else {
        Duration::ZERO
    };
    match sim.run_until(&mut [&mut node as &mut dyn SimNode], limit, |_| false) {
        Ok(_) | Err(SimError::TimeLimit(_)) | Err(SimError::Stalled(_)) => {}
    }
    let actual: Vec<&TimedFrame> = node
        .device
        .output()
        .iter()
        .filter(|f| f.at <= end)
        .collect();
    let mut mismatch = None;
    for index in 0..expected.len().max(actual.len()) {
        let want = expected.get(index).map(|f| TimedFrame {
            at: instant(f.time),
            data: f.data.clone(),
        });
        let got = actual.get(index).map(|f| (*f).clone());
        if want != got {
            mismatch = Some(Mismatch {
                index,
                expected: want,
                actual: got,
            });
            break;
        }
    }
    Ok(ExactReport {
        fed,
        compared: expected.len(),
        mismatch,
    })
}
