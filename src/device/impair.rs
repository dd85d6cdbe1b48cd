//! Path impairments: delay, jitter, loss, reordering, duplication and a rate limit, seeded,
//! on a clock the caller supplies.
//!
//! [`Line`] is the sans-IO core: one direction of a path, frames in with [`Line::offer`],
//! out with [`Line::pop_due`] once their time has come. [`Impaired`] wraps any smoltcp
//! [`Device`] with one line per direction (in the style of smoltcp's
//! `phy::FaultInjector`); `tapir link` puts two lines between two TAP devices, moving
//! frames with [`take`] and [`deliver`]. Nothing here
//! reads the wall clock, so on a virtual clock the same seed gives the same run.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use smoltcp::phy::{self, Device, DeviceCapabilities};
use smoltcp::time::{Duration, Instant};

/// Frames one direction holds at most by default (a tail drop beyond).
pub const DEFAULT_LIMIT: usize = 4096;

/// What one direction of a path does to frames. The default is a perfect, unlimited path
/// (but for [`DEFAULT_LIMIT`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Impairment {
    /// One-way delay added to every frame.
    pub delay: Duration,
    /// Random extra delay, uniform in `-jitter..=jitter` (never below zero). Frames keep
    /// their order, as on a real path; use `reorder` to reorder.
    pub jitter: Duration,
    /// Probability (0..=1) that a frame is lost.
    pub loss: f64,
    /// Probability (0..=1) that a frame is held back by `reorder_delay`, so that later
    /// frames overtake it.
    pub reorder: f64,
    /// How long a reordered frame is held back.
    pub reorder_delay: Duration,
    /// Probability (0..=1) that a frame is delivered twice.
    pub duplicate: f64,
    /// Bottleneck rate in bytes per second (0: unlimited). Frames are serialised one after
    /// the other at this rate before the delay applies.
    pub rate: u64,
    /// Bytes the bottleneck queues before it drops arriving frames, as a router does
    /// (only with a `rate`).
    pub queue_bytes: usize,
    /// Frames held at once (in the queue and on the wire); beyond, frames are dropped.
    pub limit: usize,
}

impl Default for Impairment {
    fn default() -> Self {
        Impairment {
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            loss: 0.0,
            reorder: 0.0,
            reorder_delay: Duration::from_millis(1),
            duplicate: 0.0,
            rate: 0,
            queue_bytes: 0,
            limit: DEFAULT_LIMIT,
        }
    }
}

/// Counters of one direction.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ImpairStats {
    /// Frames offered.
    pub sent: u64,
    /// Frames lost on purpose.
    pub lost: u64,
    /// Frames held back to be reordered.
    pub reordered: u64,
    /// Extra copies made.
    pub duplicated: u64,
    /// Frames dropped because the bottleneck queue or the frame limit was full.
    pub overflowed: u64,
    /// Frames handed on.
    pub delivered: u64,
}

struct Queued {
    at: Instant,
    seq: u64,
    frame: Vec<u8>,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// Spare frame buffers kept for reuse.
const SPARE_BUFFERS: usize = 64;

/// One direction of an impaired path (sans-IO: the caller gives the time).
pub struct Line {
    config: Impairment,
    rng: fastrand::Rng,
    queue: BinaryHeap<Reverse<Queued>>,
    seq: u64,
    /// When the bottleneck finishes sending what it holds, in nanoseconds.
    busy_until_ns: i64,
    /// The latest delivery time given to an in-order frame (jitter keeps order).
    last_at: Instant,
    spare: Vec<Vec<u8>>,
    stats: ImpairStats,
}

impl Line {
    /// A line with these impairments, its faults drawn from `seed`.
    pub fn new(config: Impairment, seed: u64) -> Self {
        Line {
            config,
            rng: fastrand::Rng::with_seed(seed),
            queue: BinaryHeap::new(),
            seq: 0,
            busy_until_ns: i64::MIN,
            last_at: Instant::from_micros(i64::MIN / 2),
            spare: Vec::new(),
            stats: ImpairStats::default(),
        }
    }

    /// The impairments.
    pub fn config(&self) -> &Impairment {
        &self.config
    }

    /// Counters so far.
    pub fn stats(&self) -> ImpairStats {
        self.stats
    }

    /// Frames held.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// True when no frame is held.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.rng.f64() < p
    }

    /// An empty buffer, reused when one is spare.
    pub fn buffer(&mut self) -> Vec<u8> {
        self.spare.pop().unwrap_or_default()
    }

    /// Gives a buffer back for reuse.
    pub fn recycle(&mut self, mut frame: Vec<u8>) {
        if self.spare.len() < SPARE_BUFFERS {
            frame.clear();
            self.spare.push(frame);
        }
    }

    /// Takes a frame sent at `now` onto the line: it is lost, or queued (maybe twice) for
    /// delivery after the bottleneck, the delay and the jitter.
    pub fn offer(&mut self, now: Instant, frame: Vec<u8>) {
        self.stats.sent += 1;
        if self.chance(self.config.loss) {
            self.stats.lost += 1;
            self.recycle(frame);
            return;
        }
        let reordered = self.chance(self.config.reorder);
        if reordered {
            self.stats.reordered += 1;
        }
        if self.chance(self.config.duplicate) {
            self.stats.duplicated += 1;
            let mut copy = self.buffer();
            copy.extend_from_slice(&frame);
            self.schedule(now, copy, reordered);
        }
        self.schedule(now, frame, reordered);
    }

    fn schedule(&mut self, now: Instant, frame: Vec<u8>, reordered: bool) {
        let Some(departed) = self.serialise(now, frame.len()) else {
            self.stats.overflowed += 1;
            self.recycle(frame);
            return;
        };
        let mut at = departed + self.config.delay;
        let jitter = self.config.jitter.total_micros();
        if jitter > 0 {
            let j = self.rng.u64(..=2 * jitter) as i64 - jitter as i64;
            let shifted = at.total_micros() + j;
            at = Instant::from_micros(shifted.max(departed.total_micros()));
        }
        // Jitter varies the delay but keeps frames in order, as a real path does.
        at = at.max(self.last_at);
        self.last_at = at;
        if reordered {
            at += self.config.reorder_delay;
        }
        self.insert(at, frame);
    }

    /// When a frame of `len` bytes offered at `now` leaves the bottleneck, or `None` when
    /// its queue is full.
    fn serialise(&mut self, now: Instant, len: usize) -> Option<Instant> {
        let rate = self.config.rate;
        if rate == 0 {
            return Some(now);
        }
        let now_ns = now.total_micros().saturating_mul(1000);
        let start = self.busy_until_ns.max(now_ns);
        let backlog = (start - now_ns) as i128 * rate as i128 / 1_000_000_000;
        if backlog + len as i128 > self.config.queue_bytes.max(len) as i128 {
            return None;
        }
        let send_ns = (len as i128 * 1_000_000_000 / rate as i128) as i64;
        self.busy_until_ns = start + send_ns;
        // Round up: a frame is never delivered before its last bit left.
        Some(Instant::from_micros((self.busy_until_ns + 999) / 1000))
    }

    /// Queues a frame for delivery at `at` without any impairment (for hand-made frames).
    /// It still counts against the frame limit.
    pub fn insert(&mut self, at: Instant, frame: Vec<u8>) {
        if self.queue.len() >= self.config.limit {
            self.stats.overflowed += 1;
            self.recycle(frame);
            return;
        }
        self.seq += 1;
        let seq = self.seq;
        self.queue.push(Reverse(Queued { at, seq, frame }));
    }

    /// When the next frame is due, if any is held.
    pub fn next_due(&self) -> Option<Instant> {
        self.queue.peek().map(|Reverse(q)| q.at)
    }

    /// The next frame due at `now`, if any.
    pub fn pop_due(&mut self, now: Instant) -> Option<Vec<u8>> {
        match self.queue.peek() {
            Some(Reverse(q)) if q.at <= now => {
                self.stats.delivered += 1;
                self.queue.pop().map(|Reverse(q)| q.frame)
            }
            _ => None,
        }
    }
}

/// A device whose every frame passes through an impaired [`Line`] per direction: `rx` for
/// frames the inner device receives, `tx` for frames the stack sends. A direction without
/// a line passes frames straight through.
///
/// Frames become due on the caller's clock; the wrapper moves them on whenever it is
/// polled ([`Impaired::poll`], or any `receive`/`transmit`). On a simulated clock prefer
/// `rx` lines: [`Impaired::next_due`] then tells when to come back.
pub struct Impaired<D> {
    inner: D,
    rx: Option<Line>,
    tx: Option<Line>,
}

/// A SplitMix64 step, to derive the seed of the second direction from the first.
fn mix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl<D: Device> Impaired<D> {
    /// Wraps `inner`; the two directions draw their faults from streams derived from `seed`.
    pub fn new(inner: D, rx: Option<Impairment>, tx: Option<Impairment>, seed: u64) -> Self {
        Impaired {
            inner,
            rx: rx.map(|c| Line::new(c, seed)),
            tx: tx.map(|c| Line::new(c, mix(seed))),
        }
    }

    /// The wrapped device.
    pub fn inner(&self) -> &D {
        &self.inner
    }

    /// The wrapped device, mutably.
    pub fn inner_mut(&mut self) -> &mut D {
        &mut self.inner
    }

    /// The receive direction's line, if impaired.
    pub fn rx_line(&mut self) -> Option<&mut Line> {
        self.rx.as_mut()
    }

    /// Counters of the receive direction (zero when not impaired).
    pub fn rx_stats(&self) -> ImpairStats {
        self.rx.as_ref().map(Line::stats).unwrap_or_default()
    }

    /// Counters of the transmit direction (zero when not impaired).
    pub fn tx_stats(&self) -> ImpairStats {
        self.tx.as_ref().map(Line::stats).unwrap_or_default()
    }

    /// When a held frame is next due, in either direction.
    pub fn next_due(&self) -> Option<Instant> {
        let rx = self.rx.as_ref().and_then(Line::next_due);
        let tx = self.tx.as_ref().and_then(Line::next_due);
        rx.into_iter().chain(tx).min()
    }

    /// Moves frames at `now`: everything the inner device has received goes onto the rx
    /// line, and sent frames now due go out through the inner device.
    pub fn poll(&mut self, now: Instant) {
        if let Some(rx) = self.rx.as_mut() {
            take(&mut self.inner, rx, now);
        }
        if let Some(tx) = self.tx.as_mut() {
            deliver(tx, &mut self.inner, now);
        }
    }
}

/// Takes every frame `from` has received onto `line`, as sent at `now`. Returns how many.
pub fn take<D: Device + ?Sized>(from: &mut D, line: &mut Line, now: Instant) -> usize {
    let mut n = 0;
    while let Some((token, _)) = from.receive(now) {
        let mut frame = line.buffer();
        phy::RxToken::consume(token, |data| frame.extend_from_slice(data));
        line.offer(now, frame);
        n += 1;
    }
    n
}

/// Sends every frame of `line` due at `now` through `to` (while it has room). Returns how
/// many.
pub fn deliver<D: Device + ?Sized>(line: &mut Line, to: &mut D, now: Instant) -> usize {
    let mut n = 0;
    while line.next_due().is_some_and(|at| at <= now) {
        let Some(token) = to.transmit(now) else {
            break;
        };
        let Some(frame) = line.pop_due(now) else {
            break;
        };
        phy::TxToken::consume(token, frame.len(), |buf| buf.copy_from_slice(&frame));
        line.recycle(frame);
        n += 1;
    }
    n
}

impl<D: Device> Device for Impaired<D> {
    type RxToken<'a>
        = RxToken<'a, D>
    where
        D: 'a;
    type TxToken<'a>
        = TxToken<'a, D>
    where
        D: 'a;

    fn receive(&mut self, now: Instant) -> Option<(RxToken<'_, D>, TxToken<'_, D>)> {
        self.poll(now);
        match (self.rx.as_mut(), self.tx.as_mut()) {
            (None, tx) => {
                let (rx, inner_tx) = self.inner.receive(now)?;
                let tx = match tx {
                    Some(line) => TxToken::Held { line, now },
                    None => TxToken::Direct(inner_tx),
                };
                Some((RxToken::Direct(rx), tx))
            }
            (Some(rx), tx) => {
                rx.next_due().filter(|at| *at <= now)?;
                // The send token first, so that a frame is never taken off without one.
                let tx = match tx {
                    Some(line) => TxToken::Held { line, now },
                    None => TxToken::Direct(self.inner.transmit(now)?),
                };
                let frame = rx.pop_due(now)?;
                Some((RxToken::Held { frame, line: rx }, tx))
            }
        }
    }

    fn transmit(&mut self, now: Instant) -> Option<TxToken<'_, D>> {
        self.poll(now);
        match self.tx.as_mut() {
            Some(line) => Some(TxToken::Held { line, now }),
            None => self.inner.transmit(now).map(TxToken::Direct),
        }
    }

    fn capabilities(&self) -> DeviceCapabilities {
        self.inner.capabilities()
    }
}

/// A received frame: straight from the inner device, or held by the rx line.
pub enum RxToken<'a, D: Device + 'a> {
    /// Not impaired.
    Direct(D::RxToken<'a>),
    /// Taken off the rx line (its buffer goes back to the line).
    Held {
        /// The frame.
        frame: Vec<u8>,
        /// The line it came from.
        line: &'a mut Line,
    },
}

impl<'a, D: Device + 'a> phy::RxToken for RxToken<'a, D> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        match self {
            RxToken::Direct(token) => token.consume(f),
            RxToken::Held { frame, line } => {
                let result = f(&frame);
                line.recycle(frame);
                result
            }
        }
    }

    fn meta(&self) -> phy::PacketMeta {
        match self {
            RxToken::Direct(token) => token.meta(),
            RxToken::Held { .. } => phy::PacketMeta::default(),
        }
    }
}

/// Room for a frame to send: straight into the inner device, or onto the tx line.
pub enum TxToken<'a, D: Device + 'a> {
    /// Not impaired.
    Direct(D::TxToken<'a>),
    /// Onto the tx line, sent at `now`.
    Held {
        /// The line.
        line: &'a mut Line,
        /// When the frame is sent.
        now: Instant,
    },
}

impl<'a, D: Device + 'a> phy::TxToken for TxToken<'a, D> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        match self {
            TxToken::Direct(token) => token.consume(len, f),
            TxToken::Held { line, now } => {
                let mut frame = line.buffer();
                frame.resize(len, 0);
                let result = f(&mut frame);
                line.offer(now, frame);
                result
            }
        }
    }

    fn set_meta(&mut self, meta: phy::PacketMeta) {
        if let TxToken::Direct(token) = self {
            token.set_meta(meta);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: i64) -> Instant {
        Instant::from_millis(n)
    }

    /// Offers `n` frames of `len` bytes at `at`, the first byte numbering them.
    fn offer_n(line: &mut Line, at: Instant, n: u8, len: usize) {
        for i in 0..n {
            let mut frame = vec![0; len];
            frame[0] = i;
            line.offer(at, frame);
        }
    }

    /// Every frame due at `now`, by number.
    fn drain(line: &mut Line, now: Instant) -> Vec<u8> {
        std::iter::from_fn(|| line.pop_due(now).map(|f| f[0])).collect()
    }

    /// `(number, delivery time)` of every frame, stepping the clock 100 µs at a time.
    fn timeline(line: &mut Line, until: Instant) -> Vec<(u8, Instant)> {
        let mut out = Vec::new();
        let mut now = ms(0);
        while now <= until {
            while let Some(frame) = line.pop_due(now) {
                out.push((frame[0], now));
            }
            now += Duration::from_micros(100);
        }
        out
    }

    #[test]
    fn perfect_line_delivers_at_once_in_order() {
        let mut line = Line::new(Impairment::default(), 1);
        offer_n(&mut line, ms(0), 10, 60);
        assert_eq!(drain(&mut line, ms(0)), (0..10).collect::<Vec<_>>());
        assert!(line.is_empty());
    }

    #[test]
    fn delay_holds_every_frame() {
        let config = Impairment {
            delay: Duration::from_millis(10),
            ..Impairment::default()
        };
        let mut line = Line::new(config, 1);
        offer_n(&mut line, ms(3), 2, 60);
        assert!(drain(&mut line, ms(12)).is_empty());
        assert_eq!(line.next_due(), Some(ms(13)));
        assert_eq!(drain(&mut line, ms(13)), vec![0, 1]);
    }

    #[test]
    fn jitter_varies_the_delay_within_bounds_and_keeps_order() {
        let config = Impairment {
            delay: Duration::from_millis(10),
            jitter: Duration::from_millis(2),
            ..Impairment::default()
        };
        let mut line = Line::new(config, 3);
        for i in 0..100u8 {
            line.offer(ms(i as i64), vec![i]);
        }
        let got = timeline(&mut line, ms(200));
        let numbers: Vec<u8> = got.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            numbers,
            (0..100).collect::<Vec<_>>(),
            "jitter never reorders"
        );
        let delays: Vec<i64> = got
            .iter()
            .map(|(n, at)| (*at - ms(*n as i64)).total_micros() as i64)
            .collect();
        assert!(
            delays.iter().all(|d| (8_000..=12_100).contains(d)),
            "{delays:?}"
        );
        let distinct: std::collections::BTreeSet<_> = delays.iter().collect();
        assert!(distinct.len() > 10, "the delay varies: {distinct:?}");
    }

    #[test]
    fn loss_drops_about_the_configured_fraction_and_is_seeded() {
        let config = Impairment {
            loss: 0.1,
            limit: 10_000,
            ..Impairment::default()
        };
        let run = |seed| {
            let mut line = Line::new(config.clone(), seed);
            for i in 0..5000u32 {
                line.offer(ms(0), i.to_le_bytes().to_vec());
            }
            let got: Vec<Vec<u8>> = std::iter::from_fn(|| line.pop_due(ms(0))).collect();
            (got, line.stats())
        };
        let (first, stats) = run(9);
        assert_eq!(run(9).0, first, "same seed, same losses");
        assert_ne!(run(10).0, first, "another seed, other losses");
        assert_eq!(first.len() as u64, 5000 - stats.lost);
        assert!((400..600).contains(&stats.lost), "{stats:?}");
    }

    #[test]
    fn reordered_frames_are_overtaken() {
        let config = Impairment {
            delay: Duration::from_millis(5),
            reorder: 0.2,
            reorder_delay: Duration::from_millis(3),
            ..Impairment::default()
        };
        let mut line = Line::new(config, 4);
        for i in 0..100u8 {
            line.offer(ms(i as i64 / 10), vec![i]);
        }
        let got: Vec<u8> = timeline(&mut line, ms(50))
            .iter()
            .map(|(n, _)| *n)
            .collect();
        let mut sorted = got.clone();
        sorted.sort();
        assert_eq!(
            sorted,
            (0..100).collect::<Vec<_>>(),
            "each frame exactly once"
        );
        assert!(got.windows(2).any(|w| w[0] > w[1]), "some frames overtaken");
        assert!(line.stats().reordered > 5, "{:?}", line.stats());
    }

    #[test]
    fn duplicated_frames_arrive_twice() {
        let config = Impairment {
            duplicate: 0.25,
            ..Impairment::default()
        };
        let mut line = Line::new(config, 5);
        offer_n(&mut line, ms(0), 200, 60);
        let got = drain(&mut line, ms(0));
        let stats = line.stats();
        assert!(stats.duplicated > 20, "{stats:?}");
        assert_eq!(got.len() as u64, 200 + stats.duplicated);
        let twice = (0..200u8)
            .filter(|n| got.iter().filter(|g| *g == n).count() == 2)
            .count();
        assert_eq!(twice as u64, stats.duplicated);
    }

    #[test]
    fn rate_limit_serialises_frames() {
        // 1000 bytes at 1 MB/s: one frame per millisecond.
        let config = Impairment {
            rate: 1_000_000,
            queue_bytes: 100_000,
            delay: Duration::from_millis(2),
            ..Impairment::default()
        };
        let mut line = Line::new(config, 6);
        offer_n(&mut line, ms(0), 10, 1000);
        let got = timeline(&mut line, ms(20));
        let expected: Vec<(u8, Instant)> = (0..10u8).map(|i| (i, ms(3 + i as i64))).collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn rate_limit_queue_drops_on_overflow_and_drains() {
        // Room for 5 frames of 1000 bytes; the bottleneck sends one per millisecond.
        let config = Impairment {
            rate: 1_000_000,
            queue_bytes: 5000,
            ..Impairment::default()
        };
        let mut line = Line::new(config, 7);
        offer_n(&mut line, ms(0), 8, 1000);
        assert_eq!(line.stats().overflowed, 3);
        assert_eq!(line.len(), 5);
        // Three milliseconds later three have left: room for three more.
        offer_n(&mut line, ms(3), 4, 1000);
        assert_eq!(line.stats().overflowed, 4);
        let delivered = timeline(&mut line, ms(20)).len();
        assert_eq!(delivered, 8);
    }

    #[test]
    fn frame_limit_drops_at_the_tail() {
        let config = Impairment {
            delay: Duration::from_millis(1),
            limit: 3,
            ..Impairment::default()
        };
        let mut line = Line::new(config, 8);
        offer_n(&mut line, ms(0), 5, 60);
        assert_eq!(drain(&mut line, ms(1)), vec![0, 1, 2]);
        assert_eq!(line.stats().overflowed, 2);
    }

    #[test]
    fn take_and_deliver_bridge_two_devices_through_a_line() {
        use crate::device::memlink::{pair, LinkConfig};
        use smoltcp::phy::TxToken as _;
        // host_a <-> bridge_a ... line ... bridge_b <-> host_b
        let (mut host_a, mut bridge_a) = pair(LinkConfig::default()).unwrap();
        let (mut bridge_b, mut host_b) = pair(LinkConfig::default()).unwrap();
        let config = Impairment {
            delay: Duration::from_millis(4),
            ..Impairment::default()
        };
        let mut line = Line::new(config, 1);
        for i in 0..3u8 {
            host_a.transmit(ms(0)).unwrap().consume(60, |f| f[0] = i);
        }
        bridge_a.poll(ms(0));
        assert_eq!(take(&mut bridge_a, &mut line, ms(0)), 3);
        assert_eq!(deliver(&mut line, &mut bridge_b, ms(3)), 0);
        assert_eq!(deliver(&mut line, &mut bridge_b, ms(4)), 3);
        host_b.poll(ms(4));
        let got: Vec<u8> = std::iter::from_fn(|| {
            host_b
                .receive(ms(4))
                .map(|(rx, _)| phy::RxToken::consume(rx, |f| f[0]))
        })
        .collect();
        assert_eq!(got, vec![0, 1, 2]);
    }

    #[test]
    fn wrapper_impairs_each_direction_on_its_own() {
        use crate::device::memlink::{pair, LinkConfig};
        use smoltcp::phy::{RxToken as _, TxToken as _};
        let (a, b) = pair(LinkConfig::default()).unwrap();
        let rx = Impairment {
            delay: Duration::from_millis(7),
            ..Impairment::default()
        };
        let tx = Impairment {
            delay: Duration::from_millis(2),
            ..Impairment::default()
        };
        let mut a = Impaired::new(a, Some(rx), Some(tx), 1);
        let mut b = b;
        // a sends at 0: the tx line holds it 2 ms.
        a.transmit(ms(0)).unwrap().consume(60, |f| f[0] = 1);
        b.poll(ms(0));
        assert!(b.receive(ms(1)).is_none());
        a.poll(ms(2));
        b.poll(ms(2));
        let (rx, _) = b.receive(ms(2)).expect("due after the tx delay");
        assert_eq!(rx.consume(|f| f[0]), 1);
        // b sends at 10: a's rx line holds it 7 ms.
        b.transmit(ms(10)).unwrap().consume(60, |f| f[0] = 2);
        a.poll(ms(10));
        assert_eq!(a.next_due(), Some(ms(17)));
        assert!(a.receive(ms(16)).is_none());
        let (rx, _) = a.receive(ms(17)).expect("due after the rx delay");
        assert_eq!(rx.consume(|f| f[0]), 2);
        assert_eq!((a.tx_stats().delivered, a.rx_stats().delivered), (1, 1));
    }
}
