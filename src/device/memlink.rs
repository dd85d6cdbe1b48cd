//! An in-memory Ethernet link joining two stacks in one process.
//!
//! The link itself is perfect: each direction is a queue of frames. Its faults (latency,
//! loss, duplication, reordering, a bounded queue) come from an [`Impaired`] wrapper on the
//! receiving side of each end, seeded, so the same seed gives the same faults, which keeps
//! tests reproducible. Both ends live on one thread (the event loop's).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use smoltcp::phy::{self, DeviceCapabilities};
use smoltcp::time::{Duration, Instant};

use super::impair::{ImpairStats, Impaired, Impairment};
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
    /// Bottleneck rate of each direction in bytes per second (0: unlimited).
    pub rate: u64,
    /// Bytes the bottleneck queues before it drops (with a `rate`; 0: one
    /// bandwidth-delay product at the link's latency, at least 64 KiB).
    pub rate_queue: usize,
    /// Seed of the fault generator.
    pub seed: u64,
}

impl LinkConfig {
    /// The impairment of each direction.
    pub fn impairment(&self) -> Impairment {
        Impairment {
            delay: self.latency,
            loss: self.loss,
            reorder: self.reorder,
            reorder_delay: self.reorder_delay,
            duplicate: self.duplicate,
            limit: self.queue_limit,
            rate: self.rate,
            queue_bytes: match self.rate_queue {
                0 => {
                    let bdp =
                        self.rate as u128 * 2 * self.latency.total_micros() as u128 / 1_000_000;
                    bdp.max(64 * 1024) as usize
                }
                n => n,
            },
            ..Impairment::default()
        }
    }
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
            rate: 0,
            rate_queue: 0,
            seed: 0,
        }
    }
}

/// Counters of one direction of the link.
pub type LinkStats = ImpairStats;

/// `queues[i]` holds the frames travelling towards end `i`, with the time they were sent.
type Queues = Rc<RefCell<[VecDeque<(Instant, Vec<u8>)>; 2]>>;

/// One end of a perfect in-memory link.
pub struct LinkEnd {
    queues: Queues,
    side: usize,
    mtu: usize,
    stats: DeviceStats,
}

/// One end of an in-memory link with its faults. Create both ends with [`pair`].
pub type MemDevice = Impaired<LinkEnd>;

/// Creates the two ends of a link; each direction's faults come from its own stream,
/// derived from the config's seed.
pub fn pair(config: LinkConfig) -> Result<(MemDevice, MemDevice), DeviceError> {
    let mtu = check_mtu(config.mtu)?;
    let queues: Queues = Rc::new(RefCell::new([VecDeque::new(), VecDeque::new()]));
    let end = |side: usize| {
        let end = LinkEnd {
            queues: queues.clone(),
            side,
            mtu,
            stats: DeviceStats::default(),
        };
        let seed = config.seed.wrapping_add(side as u64);
        Impaired::new(end, Some(config.impairment()), None, seed)
    };
    Ok((end(0), end(1)))
}

impl LinkEnd {
    /// When the next frame for this end was sent, if any is waiting.
    pub fn next_arrival(&self) -> Option<Instant> {
        self.queues.borrow()[self.side].front().map(|(at, _)| *at)
    }
}

impl Impaired<LinkEnd> {
    /// Counters of this end's device.
    pub fn stats(&self) -> DeviceStats {
        self.inner().stats
    }

    /// Fault counters of the direction towards this end.
    pub fn link_stats(&self) -> LinkStats {
        self.rx_stats()
    }

    /// Puts a raw frame on the wire towards this end, due at `at`, as if the peer had sent
    /// it, bypassing the faults. Tests use it to feed hand-made (and broken) frames.
    pub fn inject(&mut self, frame: &[u8], at: Instant) {
        if let Some(line) = self.rx_line() {
            line.insert(at, frame.to_vec());
        }
    }
}

impl phy::Device for LinkEnd {
    type RxToken<'a> = RxToken;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, timestamp: Instant) -> Option<(RxToken, TxToken<'_>)> {
        let (_, frame) = self.queues.borrow_mut()[self.side].pop_front()?;
        self.stats.rx_frames += 1;
        self.stats.rx_bytes += frame.len() as u64;
        Some((
            RxToken { frame },
            TxToken {
                queues: &self.queues,
                towards: 1 - self.side,
                now: timestamp,
                stats: &mut self.stats,
            },
        ))
    }

    fn transmit(&mut self, timestamp: Instant) -> Option<TxToken<'_>> {
        Some(TxToken {
            queues: &self.queues,
            towards: 1 - self.side,
            now: timestamp,
            stats: &mut self.stats,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        ethernet_caps(self.mtu)
    }
}

/// A frame taken off the link.
pub struct RxToken {
    frame: Vec<u8>,
}

impl phy::RxToken for RxToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.frame)
    }
}

/// Room for one frame towards the other end.
pub struct TxToken<'a> {
    queues: &'a Queues,
    towards: usize,
    now: Instant,
    stats: &'a mut DeviceStats,
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0; len];
        let result = f(&mut frame);
        self.stats.tx_frames += 1;
        self.stats.tx_bytes += len as u64;
        self.queues.borrow_mut()[self.towards].push_back((self.now, frame));
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::phy::{Device, RxToken as _, TxToken as _};

    /// Sends a frame from `dev` at `now`; the peer takes it onto its line at once, as the
    /// simulation does.
    fn send(dev: &mut MemDevice, peer: &mut MemDevice, now: Instant, byte: u8) {
        let tx = dev.transmit(now).expect("memlink always has room");
        tx.consume(60, |buf| buf.fill(byte));
        peer.poll(now);
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
            send(&mut a, &mut b, t, i);
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
        send(&mut a, &mut b, Instant::from_millis(0), 1);
        assert!(recv_all(&mut b, Instant::from_millis(4)).is_empty());
        assert_eq!(b.next_due(), Some(Instant::from_millis(5)));
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
                send(&mut a, &mut b, Instant::from_millis(0), i);
            }
            (recv_all(&mut b, Instant::from_millis(10)), b.link_stats())
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
            send(&mut a, &mut b, Instant::from_millis(0), i);
        }
        assert_eq!(recv_all(&mut b, Instant::from_millis(0)), vec![0, 1, 2]);
        assert_eq!(b.link_stats().overflowed, 2);
        assert_eq!(
            a.link_stats(),
            LinkStats::default(),
            "nothing went the other way"
        );
    }
}
