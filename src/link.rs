//! `tapir link`: a userspace bridge between two TAP devices that impairs the path, for
//! putting the kernel's TCP and tapir's on the same delayed, lossy link (this kernel has no
//! sch_netem). Frames go through one [`Line`] per direction; the loop reads the wall clock,
//! the lines do not.

use std::time::Instant as StdInstant;

use anyhow::Context;
use clap::Args;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use smoltcp::time::{Duration, Instant};
use tapir::device::impair::{deliver, take, Impairment, Line, DEFAULT_LIMIT};
use tapir::device::tap::TapDevice;

/// Flags of `tapir link`.
#[derive(Debug, Args)]
pub struct LinkArgs {
    /// One TAP device (attached to, or created like `serve --tap` does).
    #[arg(value_name = "TAP_A")]
    pub tap_a: String,

    /// The other TAP device.
    #[arg(value_name = "TAP_B")]
    pub tap_b: String,

    /// Open TAP_A in this network namespace (a name from `ip netns`) instead of the
    /// current one.
    #[arg(long, value_name = "NAME")]
    pub netns_a: Option<String>,

    /// Open TAP_B in this network namespace.
    #[arg(long, value_name = "NAME")]
    pub netns_b: Option<String>,

    /// One-way delay of each direction (`10ms`, `1.5ms`, `250us`, `1s`); the round trip
    /// through the link is twice this.
    #[arg(long, default_value = "0ms", value_parser = parse_duration, value_name = "TIME")]
    pub delay: Duration,

    /// Random variation of the delay, uniform in ±TIME (frames keep their order).
    #[arg(long, default_value = "0ms", value_parser = parse_duration, value_name = "TIME")]
    pub jitter: Duration,

    /// Fraction of frames lost in each direction (`1%` or `0.01`).
    #[arg(long, default_value = "0", value_parser = parse_fraction, value_name = "P")]
    pub loss: f64,

    /// Fraction of frames held back by --reorder-delay, so that later ones overtake them.
    #[arg(long, default_value = "0", value_parser = parse_fraction, value_name = "P")]
    pub reorder: f64,

    /// How long a reordered frame is held back.
    #[arg(long, default_value = "1ms", value_parser = parse_duration, value_name = "TIME")]
    pub reorder_delay: Duration,

    /// Fraction of frames delivered twice.
    #[arg(long, default_value = "0", value_parser = parse_fraction, value_name = "P")]
    pub duplicate: f64,

    /// Bottleneck rate of each direction (`100mbit`, `1gbit`, `500kbit`, bits per second)
    /// [default: unlimited].
    #[arg(long, value_parser = parse_rate, value_name = "RATE")]
    pub rate: Option<u64>,

    /// Bytes the bottleneck queues before dropping, like a router's buffer (with --rate)
    /// [default: one bandwidth-delay product at the round trip, at least 64 KiB].
    #[arg(long, value_name = "BYTES")]
    pub queue: Option<usize>,

    /// Frames held per direction at once (a hard bound on memory) [default: enough for
    /// 2.5 Gbit/s of 1000-byte frames over the delay, at least 4096].
    #[arg(long, value_name = "FRAMES")]
    pub limit: Option<usize>,

    /// Seed of the faults [default: random].
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,

    /// IP MTU of both TAP devices.
    #[arg(long, default_value_t = 1500, value_name = "BYTES")]
    pub mtu: usize,
}

impl LinkArgs {
    /// The impairment of each direction.
    pub fn impairment(&self) -> Impairment {
        let hold = self.delay + self.jitter + self.reorder_delay;
        let hold_secs = hold.total_micros() as f64 / 1e6;
        // 2.5 Gbit/s: comfortably more than the fastest path this is used for.
        let capacity = self.rate.unwrap_or(312_500_000) as f64;
        let limit = self
            .limit
            .unwrap_or_else(|| ((capacity * hold_secs / 1000.0) as usize).max(DEFAULT_LIMIT));
        let rate = self.rate.unwrap_or(0);
        let bdp = (rate as f64 * 2.0 * self.delay.total_micros() as f64 / 1e6) as usize;
        Impairment {
            delay: self.delay,
            jitter: self.jitter,
            loss: self.loss,
            reorder: self.reorder,
            reorder_delay: self.reorder_delay,
            duplicate: self.duplicate,
            rate,
            queue_bytes: self.queue.unwrap_or(bdp.max(64 * 1024)),
            limit,
        }
    }
}

/// `10ms`, `1.5ms`, `250us`, `2s`, or a bare number of milliseconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, scale) = if let Some(n) = s.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1e3)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1e6)
    } else {
        (s, 1e3)
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a duration (10ms, 250us, 1s)"))?;
    let micros = value * scale;
    if !(0.0..=3.6e9).contains(&micros) {
        return Err(format!("'{s}' is out of range (0 to 1 hour)"));
    }
    Ok(Duration::from_micros(micros.round() as u64))
}

/// `1%`, `0.5%` or a fraction `0.01`.
fn parse_fraction(s: &str) -> Result<f64, String> {
    let s = s.trim();
    let (number, scale) = match s.strip_suffix('%') {
        Some(n) => (n, 100.0),
        None => (s, 1.0),
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a probability (1%, 0.01)"))?;
    let p = value / scale;
    if !(0.0..=1.0).contains(&p) {
        return Err(format!("'{s}' is not between 0 and 100%"));
    }
    Ok(p)
}

/// `100mbit`, `1gbit`, `64kbit`, `9600bit` (bits per second) into bytes per second.
fn parse_rate(s: &str) -> Result<u64, String> {
    let lower = s.trim().to_ascii_lowercase();
    let (number, scale) = [("gbit", 1e9), ("mbit", 1e6), ("kbit", 1e3), ("bit", 1.0)]
        .iter()
        .find_map(|(unit, scale)| lower.strip_suffix(unit).map(|n| (n, *scale)))
        .ok_or_else(|| format!("'{s}' needs a unit: bit, kbit, mbit or gbit"))?;
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a rate (100mbit)"))?;
    let bytes = value * scale / 8.0;
    if !(1.0..=1e13).contains(&bytes) {
        return Err(format!("'{s}' is out of range"));
    }
    Ok(bytes as u64)
}

const TAP_A: Token = Token(0);
const TAP_B: Token = Token(1);
const SIGNALS: Token = Token(2);

/// Runs the bridge until SIGINT or SIGTERM, then prints each direction's counters.
pub fn run(args: &LinkArgs) -> anyhow::Result<()> {
    let open = |netns: &Option<String>, name: &str| match netns {
        Some(ns) => TapDevice::open_in_netns(ns, name, args.mtu),
        None => TapDevice::open(name, args.mtu),
    };
    let mut a = open(&args.netns_a, &args.tap_a)?;
    let mut b = open(&args.netns_b, &args.tap_b)?;
    let impairment = args.impairment();
    let seed = args.seed.unwrap_or_else(|| fastrand::u64(..));
    let mut ab = Line::new(impairment.clone(), seed);
    let mut ba = Line::new(impairment.clone(), seed ^ 0x5bd1_e995_5bd1_e995);

    let mut poll = Poll::new().context("creating the poller")?;
    let mut signals = Signals::new([SIGINT, SIGTERM]).context("catching signals")?;
    let registry = poll.registry();
    for (device, token) in [(&a, TAP_A), (&b, TAP_B)] {
        let fd = std::os::fd::AsRawFd::as_raw_fd(device);
        registry
            .register(&mut SourceFd(&fd), token, Interest::READABLE)
            .context("registering a TAP device")?;
    }
    registry.register(&mut signals, SIGNALS, Interest::READABLE)?;
    tracing::info!(
        "ready: link {} <-> {}: {:?}, seed {seed}",
        a.name(),
        b.name(),
        impairment
    );

    let start = StdInstant::now();
    let now = || Instant::from_micros(start.elapsed().as_micros() as i64);
    let mut events = Events::with_capacity(64);
    'run: loop {
        let due = [ab.next_due(), ba.next_due()].into_iter().flatten().min();
        // mio rounds a timeout up to the next millisecond: frames are never early.
        let timeout = due.map(|at| {
            let wait = (at - now().min(at)).total_micros();
            std::time::Duration::from_micros(wait)
        });
        match poll.poll(&mut events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e).context("waiting for frames"),
        }
        for event in events.iter() {
            if event.token() == SIGNALS && signals.pending().next().is_some() {
                break 'run;
            }
        }
        // Edge-triggered: read each device until it is empty, every time.
        let t = now();
        take(&mut a, &mut ab, t);
        take(&mut b, &mut ba, t);
        deliver(&mut ab, &mut b, t);
        deliver(&mut ba, &mut a, t);
        for device in [&mut a, &mut b] {
            if let Some(e) = device.take_failure() {
                return Err(e).with_context(|| format!("TAP {}", device.name()));
            }
        }
    }
    let label = |netns: &Option<String>, device: &TapDevice| match netns {
        Some(ns) => format!("{ns}:{}", device.name()),
        None => device.name().to_string(),
    };
    let (la, lb) = (label(&args.netns_a, &a), label(&args.netns_b, &b));
    for (name, line) in [
        (format!("{la} -> {lb}"), &ab),
        (format!("{lb} -> {la}"), &ba),
    ] {
        let s = line.stats();
        eprintln!(
            "link {name}: {} frames, {} delivered, {} lost, {} reordered, {} duplicated, \
             {} dropped by the queue",
            s.sent, s.delivered, s.lost, s.reordered, s.duplicated, s.overflowed
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10ms"), Ok(Duration::from_millis(10)));
        assert_eq!(parse_duration("1.5ms"), Ok(Duration::from_micros(1500)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_millis(7)));
        assert!(parse_duration("-1ms").is_err());
        assert!(parse_duration("fast").is_err());
    }

    #[test]
    fn fractions() {
        assert_eq!(parse_fraction("1%"), Ok(0.01));
        assert_eq!(parse_fraction("0.25"), Ok(0.25));
        assert!(parse_fraction("101%").is_err());
        assert!(parse_fraction("x").is_err());
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("100mbit"), Ok(12_500_000));
        assert_eq!(parse_rate("1Gbit"), Ok(125_000_000));
        assert_eq!(parse_rate("64kbit"), Ok(8000));
        assert!(parse_rate("100").is_err());
        assert!(parse_rate("0mbit").is_err());
    }
}
