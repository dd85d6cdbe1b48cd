//! An in-memory Ethernet link joining two stacks in one process.
//!
//! Each direction is a queue ordered by delivery time, so the link can add latency and,
//! from a seeded generator, lose, duplicate and reorder frames. The same seed gives the same
//! faults, which keeps tests reproducible. Both ends live on one thread (the event loop's).

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::rc::Rc;

use smoltcp::phy::{self, DeviceCapabilities};
use smoltcp::time::{Duration, Instant};

use super::{check_mtu, ethernet_caps, DeviceError, DeviceStats};

/// How the link behaves. The default is a perfect link with a 1500-byte MTU.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkConfig {
    /// IP MTU of both ends.
    pub mtu: usize,
    /// One-way delay added to every frame.
    pub latency: Duration,
    /// Probability (0..=1) that a frame is lost.
    pub loss: f64,
    /// Probability (0..=1) that a frame is held back so that later frames overtake it.
    pub reorder: f64,
    /// How long a reordered frame is held back.
    pub reorder_delay: Duration,
    /// Probability (0..=1) that a frame is delivered twice.
    pub duplicate: f64,
    /// Frames queued per direction before the link drops at the tail.
    pub queue_limit: usize,
    /// Bytes per second each direction carries (`None`: unlimited). Frames are sent one
    /// after another, so a burst arrives spread out as on a real link, not all at once.
    pub rate: Option<u64>,
    /// Seed of the fault generator.
    pub seed: u64,
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            mtu: 1500,
            latency: Duration::ZERO,
            loss: 0.0,
            reorder: 0.0,
            reorder_delay: Duration::from_millis(1),
            duplicate: 0.0,
            queue_limit: 4096,
            rate: None,
            seed: 0,
        }
    }
}

/// Counters of the whole link.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LinkStats {
    /// Frames offered to the link.
    pub sent: u64,
    /// Frames lost on purpose.
    pub lost: u64,
    /// Frames held back to be reordered.
    pub reordered: u64,
    /// Extra copies delivered.
    pub duplicated: u64,
    /// Frames dropped because a direction's queue was full.
    pub overflowed: u64,
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

struct Link {
    config: LinkConfig,
    rng: fastrand::Rng,
    /// `queues[i]` holds the frames travelling towards end `i`.
    queues: [BinaryHeap<Reverse<Queued>>; 2],
    /// When each direction finishes sending what it was given (with a `rate`).
    busy_until: [Instant; 2],
    seq: u64,
    spare: Vec<Vec<u8>>,
    stats: LinkStats,
}

impl Link {
    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.rng.f64() < p
    }

    fn buffer(&mut self) -> Vec<u8> {
        self.spare.pop().unwrap_or_default()
    }

    fn recycle(&mut self, mut frame: Vec<u8>) {
        if self.spare.len() < 64 {
            frame.clear();
            self.spare.push(frame);
        }
    }

    fn enqueue(&mut self, towards: usize, now: Instant, frame: Vec<u8>) {
        self.stats.sent += 1;
        if self.chance(self.config.loss) {
            self.stats.lost += 1;
            self.recycle(frame);
            return;
        }
        let mut at = now + self.config.latency;
        if let Some(rate) = self.config.rate.filter(|r| *r > 0) {
            let start = self.busy_until[towards].max(now);
            let micros = (frame.len() as u64 * 1_000_000).div_ceil(rate);
            self.busy_until[towards] = start + Duration::from_micros(micros);
            at = self.busy_until[towards] + self.config.latency;
        }
        if self.chance(self.config.reorder) {
            self.stats.reordered += 1;
            at += self.config.reorder_delay;
        }
        if self.chance(self.config.duplicate) {
            self.stats.duplicated += 1;
            let copy = frame.clone();
            self.push(towards, at, copy);
        }
        self.push(towards, at, frame);
    }

    fn push(&mut self, towards: usize, at: Instant, frame: Vec<u8>) {
        if self.queues[towards].len() >= self.config.queue_limit {
            self.stats.overflowed += 1;
            self.recycle(frame);
            return;
        }
        self.seq += 1;
        let seq = self.seq;
        self.queues[towards].push(Reverse(Queued { at, seq, frame }));
    }

    fn pop_due(&mut self, towards: usize, now: Instant) -> Option<Vec<u8>> {
        let queue = &mut self.queues[towards];
        match queue.peek() {
            Some(Reverse(q)) if q.at <= now => queue.pop().map(|Reverse(q)| q.frame),
            _ => None,
        }
    }
}

/// One end of an in-memory link. Create both ends with [`pair`].
pub struct MemDevice {
    link: Rc<RefCell<Link>>,
    side: usize,
    mtu: usize,
    stats: DeviceStats,
}

/// Creates the two ends of a link.
pub fn pair(config: LinkConfig) -> Result<(MemDevice, MemDevice), DeviceError> {
    let mtu = check_mtu(config.mtu)?;
    let link = Rc::new(RefCell::new(Link {
        rng: fastrand::Rng::with_seed(config.seed),
        config,
        queues: [BinaryHeap::new(), BinaryHeap::new()],
        busy_until: [Instant::from_micros(0); 2],
        seq: 0,
        spare: Vec::new(),
        stats: LinkStats::default(),
    }));
    let end = |side| MemDevice {
        link: link.clone(),
        side,
        mtu,
        stats: DeviceStats::default(),
    };
    Ok((end(0), end(1)))
}

impl MemDevice {
    /// When the next frame for this end becomes deliverable, if any is in flight.
    pub fn next_arrival(&self) -> Option<Instant> {
        self.link.borrow().queues[self.side]
            .peek()
            .map(|Reverse(q)| q.at)
    }

    /// Frames in flight in both directions.
    pub fn in_flight(&self) -> usize {
        let link = self.link.borrow();
        link.queues[0].len() + link.queues[1].len()
    }

    /// Counters of this end.
    pub fn stats(&self) -> DeviceStats {
        self.stats
    }

    /// Counters of the link (shared by both ends).
    pub fn link_stats(&self) -> LinkStats {
        self.link.borrow().stats
    }

    /// Puts a raw frame on the wire towards this end, as if the peer had sent it, bypassing
    /// the fault generator. Tests use it to feed hand-made (and broken) frames.
    pub fn inject(&self, frame: &[u8], at: Instant) {
        self.link.borrow_mut().push(self.side, at, frame.to_vec());
    }
}

impl phy::Device for MemDevice {
    type RxToken<'a> = RxToken;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, timestamp: Instant) -> Option<(RxToken, TxToken<'_>)> {
        let frame = self.link.borrow_mut().pop_due(self.side, timestamp)?;
        self.stats.rx_frames += 1;
        self.stats.rx_bytes += frame.len() as u64;
        Some((
            RxToken {
                link: self.link.clone(),
                frame,
            },
            TxToken {
                link: &self.link,
                towards: 1 - self.side,
                now: timestamp,
                stats: &mut self.stats,
            },
        ))
    }

    fn transmit(&mut self, timestamp: Instant) -> Option<TxToken<'_>> {
        Some(TxToken {
            link: &self.link,
            towards: 1 - self.side,
            now: timestamp,
            stats: &mut self.stats,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        ethernet_caps(self.mtu)
    }
}

/// A frame taken off the link; its buffer goes back to the link's spare pool.
pub struct RxToken {
    link: Rc<RefCell<Link>>,
    frame: Vec<u8>,
}

impl phy::RxToken for RxToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        let result = f(&self.frame);
        self.link.borrow_mut().recycle(self.frame);
        result
    }
}

/// Room for one frame towards the other end.
pub struct TxToken<'a> {
    link: &'a Rc<RefCell<Link>>,
    towards: usize,
    now: Instant,
    stats: &'a mut DeviceStats,
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = self.link.borrow_mut().buffer();
        frame.resize(len, 0);
        let result = f(&mut frame);
        self.stats.tx_frames += 1;
        self.stats.tx_bytes += len as u64;
        self.link
            .borrow_mut()
            .enqueue(self.towards, self.now, frame);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::phy::{Device, RxToken as _, TxToken as _};

    fn send(dev: &mut MemDevice, now: Instant, byte: u8) {
        let tx = dev.transmit(now).expect("memlink always has room");
        tx.consume(60, |buf| buf.fill(byte));
    }

    fn recv_all(dev: &mut MemDevice, now: Instant) -> Vec<u8> {
        let mut got = Vec::new();
        while let Some((rx, _)) = dev.receive(now) {
            rx.consume(|buf| got.push(buf[0]));
        }
        got
    }

    #[test]
    fn perfect_link_delivers_in_order() {
        let (mut a, mut b) = pair(LinkConfig::default()).unwrap();
        let t = Instant::from_millis(0);
        for i in 0..10 {
            send(&mut a, t, i);
        }
        assert_eq!(recv_all(&mut b, t), (0..10).collect::<Vec<u8>>());
        assert!(recv_all(&mut a, t).is_empty());
    }

    #[test]
    fn latency_holds_frames_until_due() {
        let config = LinkConfig {
            latency: Duration::from_millis(5),
            ..LinkConfig::default()
        };
        let (mut a, mut b) = pair(config).unwrap();
        send(&mut a, Instant::from_millis(0), 1);
        assert!(recv_all(&mut b, Instant::from_millis(4)).is_empty());
        assert_eq!(b.next_arrival(), Some(Instant::from_millis(5)));
        assert_eq!(recv_all(&mut b, Instant::from_millis(5)), vec![1]);
    }

    #[test]
    fn faults_are_seeded_and_counted() {
        let config = LinkConfig {
            loss: 0.1,
            reorder: 0.1,
            duplicate: 0.1,
            seed: 7,
            ..LinkConfig::default()
        };
        let run = |config: LinkConfig| {
            let (mut a, mut b) = pair(config).unwrap();
            for i in 0..200u8 {
                send(&mut a, Instant::from_millis(0), i);
            }
            (recv_all(&mut b, Instant::from_millis(10)), a.link_stats())
        };
        let (first, stats) = run(config.clone());
        let (second, _) = run(config);
        assert_eq!(first, second, "same seed, same faults");
        assert!(stats.lost > 0 && stats.reordered > 0 && stats.duplicated > 0);
        assert_eq!(
            first.len() as u64,
            200 - stats.lost + stats.duplicated,
            "every frame is lost, delivered once, or delivered twice"
        );
        assert!(
            first.windows(2).any(|w| w[0] > w[1]),
            "some frames overtook others"
        );
    }

    #[test]
    fn full_queue_drops_at_the_tail() {
        let config = LinkConfig {
            queue_limit: 3,
            ..LinkConfig::default()
        };
        let (mut a, mut b) = pair(config).unwrap();
        for i in 0..5 {
            send(&mut a, Instant::from_millis(0), i);
        }
        assert_eq!(recv_all(&mut b, Instant::from_millis(0)), vec![0, 1, 2]);
        assert_eq!(a.link_stats().overflowed, 2);
    }
}
