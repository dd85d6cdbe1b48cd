//! tapir ↔ tapir TCP over an impaired in-memory link, on the virtual clock:
//! `cargo bench --bench tcp_link`.
//!
//! Each case moves 4 MiB from one stack to the other across a 20 ms RTT path without loss
//! and with 1% loss in both directions, and a 50 ms path with 3% loss (seeded, so every run
//! sees the same losses), with BBR (the default) and with CUBIC. Two figures per case: the
//! throughput in simulated time (bytes / virtual seconds, printed once per case: it is what
//! the TCP algorithms achieve on that path, and it does not depend on the machine), and
//! criterion's wall-clock time of a run (the CPU cost of simulating it).

#[allow(dead_code)] // shared with the tests, which use all of it
#[path = "../tests/common/transfer.rs"]
mod transfer;
#[path = "../tests/common/wake.rs"]
mod wake;

use std::time::Duration as StdDuration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use smoltcp::socket::tcp::CongestionControl;
use smoltcp::time::Duration;
use tapir::stack::StackConfig;
use transfer::{transfer, Transfer};

const BYTES: usize = 4 * 1024 * 1024;
const SEED: u64 = 1;

/// Changes both stacks' configuration.
type Tune = fn(&mut StackConfig);

fn cubic(config: &mut StackConfig) {
    config.tcp.congestion = CongestionControl::Cubic;
}

fn tcp_link(c: &mut Criterion) {
    let mut group = c.benchmark_group("tcp_link");
    group.throughput(Throughput::Bytes(BYTES as u64));
    group.sample_size(10);
    group.measurement_time(StdDuration::from_secs(5));
    group.warm_up_time(StdDuration::from_secs(1));
    let cases: [(&str, u64, f64, Tune); 6] = [
        ("20ms_loss0", 20, 0.0, |_| {}),
        ("20ms_loss1pct", 20, 0.01, |_| {}),
        ("50ms_loss3pct", 50, 0.03, |_| {}),
        ("20ms_loss0_cubic", 20, 0.0, cubic),
        ("20ms_loss1pct_cubic", 20, 0.01, cubic),
        ("50ms_loss3pct_cubic", 50, 0.03, cubic),
    ];
    for (name, rtt_ms, loss, tune) in cases {
        let mut t = Transfer::new(Duration::from_millis(rtt_ms), loss, SEED, BYTES);
        t.tune = tune;
        let report = transfer(&t);
        assert!(report.intact, "{name}: {report:?}");
        println!(
            "tcp_link/{name}: {BYTES} bytes in {} virtual: {:.2} MB/s simulated \
             (data link: {} frames, {} lost)",
            report.duration,
            report.throughput() / 1e6,
            report.data_link.sent,
            report.data_link.lost,
        );
        group.bench_function(name, |b| {
            b.iter(|| {
                let report = transfer(&t);
                assert!(report.intact);
                report.duration
            })
        });
    }
    group.finish();
}

criterion_group!(benches, tcp_link);
criterion_main!(benches);
