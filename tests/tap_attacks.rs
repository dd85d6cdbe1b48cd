//! Attacks on `tapir serve` over a real TAP device, each while a legitimate client (curl)
//! keeps asking: slowloris, a SYN flood from random source ports, hostile TLS clients
//! (oversized record headers, half-open handshakes, renegotiation), and malformed or
//! hostile TCP/IP input sent as raw frames with scapy (bad checksums, impossible flags,
//! overlapping and out-of-window segments, RST/SYN injection, fragments, IP options, a
//! tiny MSS, a window closed forever, ARP spoofing of tapir's own address). After each
//! attack `/stats` must show the connections back at their baseline.
//!
//! The attack programs are Python scripts in `tests/attacks/` run inside the test's
//! namespace; the scapy ones send frames on the kernel side of the TAP device (to tapir
//! only) from addresses of their own. Each test makes its own namespace and needs root;
//! without root each prints `SKIPPED <test>: ...` and returns.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::netns::{
    json_u64, output_text, sha256_file_hex, sha256_pattern_hex, ChildGuard, Netns, TapirProcess,
    TAPIR_V4,
};
use common::tap::{CURL, OPENSSL, PING, PYTHON3};

const HTTP: &str = "http://10.7.0.2";

/// The directory of the attack scripts.
fn attacks_dir() -> PathBuf {
    common::netns::repo_root().join("tests/attacks")
}

/// A Python 3 that has scapy: `python3` on PATH, else the system one (`apt-get install
/// python3-scapy` installs it for /usr/bin/python3).
fn scapy_python() -> &'static str {
    static PYTHON: OnceLock<String> = OnceLock::new();
    PYTHON.get_or_init(|| {
        for candidate in ["python3", "/usr/bin/python3"] {
            let ok = Command::new(candidate)
                .args(["-c", "import scapy.all"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return candidate.to_string();
            }
        }
        panic!("no python3 with scapy: apt-get install python3-scapy")
    })
}

/// Runs `tests/attacks/tcpip.py SCENARIO ARGS...` inside the namespace; asserts it exits 0
/// and returns its output.
fn scapy(ns: &Netns, scenario: &str, args: &[&str]) -> String {
    let script = attacks_dir().join("tcpip.py");
    let mut cmd = vec![scapy_python(), script.to_str().unwrap(), scenario];
    cmd.extend_from_slice(args);
    let out = ns.run(&cmd);
    let text = output_text(&out);
    eprintln!("{scenario}:\n{text}");
    assert!(out.status.success(), "scenario {scenario} failed:\n{text}");
    text
}

/// The value of a `fact NAME VALUE` line printed by an attack script.
fn fact<'a>(output: &'a str, name: &str) -> &'a str {
    let prefix = format!("fact {name} ");
    output
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no fact '{name}' in:\n{output}"))
        .trim()
}

/// What the legitimate client saw: the time of each answered request, and the failures.
#[derive(Debug, Default)]
struct Legit {
    latencies: Vec<Duration>,
    failures: Vec<String>,
}

impl Legit {
    fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted.get(i).copied().unwrap_or_default()
    }

    fn max(&self) -> Duration {
        self.latencies.iter().copied().max().unwrap_or_default()
    }

    /// Asserts at least `min` requests were answered and none failed.
    fn assert_all_answered(&self, min: usize, during: &str) {
        assert!(
            self.failures.is_empty(),
            "{} of {} legitimate requests failed during {during}:\n{}",
            self.failures.len(),
            self.failures.len() + self.latencies.len(),
            self.failures.join("\n")
        );
        assert!(
            self.latencies.len() >= min,
            "only {} legitimate requests ran during {during}",
            self.latencies.len()
        );
        eprintln!(
            "legitimate client during {during}: {} answered, p50 {:?}, max {:?}",
            self.latencies.len(),
            self.percentile(0.5),
            self.max()
        );
    }
}

/// One curl request (`extra` flags, then `url`); its time when it got a 200.
fn curl_once(ns: &Netns, url: &str, extra: &[&str]) -> Result<Duration, String> {
    let mut cmd = vec![
        "curl",
        "-sS",
        "-o",
        "/dev/null",
        "--max-time",
        "10",
        "-w",
        "%{http_code} %{time_total}",
    ];
    cmd.extend_from_slice(extra);
    cmd.push(url);
    let out = ns.run(&cmd);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    match stdout.split_once(' ') {
        Some(("200", secs)) if out.status.success() => secs
            .trim()
            .parse::<f64>()
            .map(Duration::from_secs_f64)
            .map_err(|e| format!("{stdout}: {e}")),
        _ => Err(output_text(&out)),
    }
}

/// Runs `attack` while a thread fetches `url` with curl every 50 ms; returns the attack's
/// result and what the curl loop saw.
fn with_legit_client<T>(
    ns: &Netns,
    url: &str,
    extra: &[&str],
    attack: impl FnOnce() -> T,
) -> (T, Legit) {
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let legit = scope.spawn(|| {
            let mut legit = Legit::default();
            while !done.load(Ordering::Relaxed) {
                match curl_once(ns, url, extra) {
                    Ok(t) => legit.latencies.push(t),
                    Err(e) => legit.failures.push(e),
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            legit
        });
        // Stops the curl loop also when the attack panics (or the scope would wait forever).
        struct Stop<'a>(&'a AtomicBool);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let stop = Stop(&done);
        let result = attack();
        drop(stop);
        (result, legit.join().expect("legitimate client thread"))
    })
}

/// Starts a Python attack script that prints `open N` once its connections are up; returns
/// the running script (stdout piped) after that line.
fn spawn_script(
    ns: &Netns,
    args: &[&str],
) -> (
    ChildGuard,
    std::io::Lines<BufReader<std::process::ChildStdout>>,
) {
    let mut child = ChildGuard(
        ns.exec(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {args:?}: {e}")),
    );
    let mut lines = BufReader::new(child.0.stdout.take().expect("piped stdout")).lines();
    let first = lines
        .next()
        .and_then(Result::ok)
        .unwrap_or_else(|| panic!("{args:?} printed nothing"));
    assert!(first.starts_with("open "), "{args:?}: {first}");
    (child, lines)
}

fn script(name: &str) -> String {
    attacks_dir().join(name).to_str().unwrap().to_string()
}

#[test]
fn slowloris_thousand_connections_are_cut_at_the_head_timeout() {
    let Some(ns) = tap_test!("atk-slowloris", CURL, PYTHON3) else {
        return;
    };
    let tapir = ns.spawn_http(&["--head-timeout", "2"]);
    let url = format!("{HTTP}/");
    // Baseline latency, same test, no attack.
    let baseline: Vec<Duration> = (0..20)
        .map(|_| curl_once(&ns, &url, &[]).expect("baseline curl"))
        .collect();
    let base = Legit {
        latencies: baseline,
        failures: Vec::new(),
    };
    let (line, legit) = with_legit_client(&ns, &url, &[], || {
        let slow = script("slowloris.py");
        let (mut child, mut lines) =
            spawn_script(&ns, &["python3", &slow, TAPIR_V4, "80", "1000", "1", "15"]);
        let line = lines
            .next()
            .and_then(Result::ok)
            .expect("the slowloris result line");
        let status = child.0.wait().expect("wait for slowloris");
        assert!(status.success(), "slowloris exited with {status}: {line}");
        line
    });
    eprintln!("slowloris: {line}");
    assert!(
        line.starts_with("cut 1000 of 1000,"),
        "not every slow connection was cut: {line}"
    );
    let last = fact_num(&line, "last ");
    let first = fact_num(&line, "first ");
    // Cut at the head timeout (2 s): with a 408 once the head has begun, silently when
    // not a byte arrived (the protocol sniffer's limit is the same timeout). The upper
    // bound leaves room for a loaded machine, where the script itself lags.
    assert!(
        first >= 1.9 && last <= 8.0,
        "slow connections cut between {first} s and {last} s after they opened; head timeout 2 s: {line}"
    );
    assert!(
        fact_num(&line, "408 ") >= 1.0,
        "408s for started heads: {line}"
    );
    legit.assert_all_answered(10, "slowloris");
    let (p50, max, base_p50, base_max) = (
        legit.percentile(0.5),
        legit.max(),
        base.percentile(0.5),
        base.max(),
    );
    eprintln!(
        "curl baseline p50 {base_p50:?} max {base_max:?}; under slowloris p50 {p50:?} max {max:?}"
    );
    assert!(
        p50 <= base_p50 * 5 + Duration::from_millis(50)
            && max <= base_max * 10 + Duration::from_secs(1),
        "curl latency under slowloris p50 {p50:?} max {max:?} vs baseline p50 {base_p50:?} max {base_max:?}"
    );
    let stats = ns.assert_back_to_baseline(HTTP, 2, Duration::from_secs(5));
    let n408 = fact_num(&line, "408 ") as u64;
    assert!(
        json_u64(&stats, "requests_rejected") >= n408,
        "{n408} 408s seen:\n{stats}"
    );
    tapir.stop();
}

/// The number after `key` in a line like `cut 1000 of 1000, first 2.02 s, last 2.96 s`.
fn fact_num(line: &str, key: &str) -> f64 {
    let at = line
        .find(key)
        .unwrap_or_else(|| panic!("no '{key}' in {line}"));
    line[at + key.len()..]
        .split([' ', ','])
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number after '{key}' in {line}"))
}

#[test]
fn syn_flood_from_random_ports_fills_the_backlog_and_tapir_recovers() {
    let Some(ns) = tap_test!("atk-synflood", CURL) else {
        return;
    };
    let _one = ONE_FLOOD.lock().unwrap_or_else(|e| e.into_inner());
    // Without SYN cookies: this test is about the backlog itself (see
    // `silent_syn_flood_is_answered_with_cookies_while_curl_connects` for the default).
    let (tapir, cert) = ns.spawn_https(&[
        "--syn-cookies",
        "never",
        "--backlog",
        "32",
        "--handshake-timeout",
        "2",
    ]);
    let before = ns.stats(HTTP);
    // The flood hits port 80; HTTPS (its own listener pool) keeps answering meanwhile.
    let https = "https://10.7.0.2/";
    let cacert = ["--cacert", cert.to_str().unwrap()];
    let (out, legit) = with_legit_client(&ns, https, &cacert, || {
        scapy(
            &ns,
            "synflood",
            &["3", "10.7.0.99", &FLOOD_RATE.to_string()],
        )
    });
    let sent: u64 = fact(&out, "syns_sent").parse().unwrap();
    legit.assert_all_answered(5, "the SYN flood on port 80");
    // Port 80 answers again as soon as the flood's half-open sockets time out.
    let stopped = Instant::now();
    let took = curl_once(&ns, &format!("{HTTP}/"), &[]).expect("curl on port 80 after the flood");
    let recovered = stopped.elapsed();
    eprintln!("port 80 answered {recovered:?} after the flood ({took:?} for the request)");
    assert!(
        recovered <= Duration::from_secs(4),
        "port 80 took {recovered:?} to answer after the flood (handshake timeout 2 s)"
    );
    let stats = ns.assert_back_to_baseline(HTTP, 2, Duration::from_secs(5));
    let dropped = json_u64(&stats, "drops_syn_backlog") - json_u64(&before, "drops_syn_backlog");
    // Half-open entries end at the handshake timeout, or earlier when their SYN-ACK could
    // never be sent (10.7.0.99 answers no ARP).
    let timeouts =
        json_u64(&stats, "handshake_timeouts") + json_u64(&stats, "handshake_unresolved");
    eprintln!(
        "{sent} SYNs sent; {dropped} dropped at the full backlog; {timeouts} half-open timed out"
    );
    // SYNs that the kernel drops at the TAP queue while tapir is behind (a loaded machine)
    // never reach tapir; of those that do, most must meet the full backlog.
    assert!(
        dropped >= sent / 4,
        "{sent} SYNs sent, only {dropped} dropped:\n{stats}"
    );
    assert!(
        timeouts >= 32,
        "the backlog (32) filled and timed out:\n{stats}"
    );
    assert_eq!(
        json_u64(&stats, "tcp_accepted"),
        json_u64(&stats, "connections_total"),
        "every accepted TCP connection is one the server took: no flood SYN got through:\n{stats}"
    );
    tapir.stop();
}

/// One curl: its connect time (curl's `time_connect`, kernel side) when it got a 200.
fn curl_connect(ns: &Netns, url: &str, connects: &mut Vec<Duration>, failures: &mut Vec<String>) {
    let out = ns.run(&[
        "curl",
        "-sS",
        "-o",
        "/dev/null",
        "--max-time",
        "5",
        "-w",
        "%{http_code} %{time_connect}",
        url,
    ]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    match text.split_once(' ') {
        Some(("200", t)) if out.status.success() => match t.trim().parse::<f64>() {
            Ok(secs) => connects.push(Duration::from_secs_f64(secs)),
            Err(e) => failures.push(format!("{text}: {e}")),
        },
        _ => failures.push(output_text(&out)),
    }
}

/// The 99th percentile (of 50 samples: the largest but none).
fn p99(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[((samples.len() - 1) as f64 * 0.99).round() as usize]
}

/// A SYN flood from silent sources (on-link addresses that never answer ARP, off-link
/// ones) at [`FLOOD_RATE`] for 10 s: the backlog fills at once and the stack answers with SYN
/// cookies, keeping no state, while 50 curls connect one after another, each within 50 ms.
/// With the default flags (TAP offloads on).
#[test]
fn silent_syn_flood_is_answered_with_cookies_while_curl_connects() {
    let Some(ns) = tap_test!("atk-silent", CURL) else {
        return;
    };
    silent_syn_flood(ns, &[]);
}

/// The same with plain frames (`--no-offload`).
#[test]
fn silent_syn_flood_without_offloads() {
    let Some(ns) = tap_test!("atk-silent", CURL) else {
        return;
    };
    silent_syn_flood(ns, &["--no-offload"]);
}

/// SYNs per second of the silent flood: hundreds of times what any backlog holds, so every
/// SYN past the first thousand is answered with a cookie, and a small share of one core for
/// tapir (about 1.7 µs per SYN read and answered).
const FLOOD_RATE: u32 = 50_000;

/// One flood at a time: two at once on a 2-core machine measure the machine, not tapir.
static ONE_FLOOD: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn silent_syn_flood(ns: Netns, flags: &[&str]) {
    let _one = ONE_FLOOD.lock().unwrap_or_else(|e| e.into_inner());
    let tapir = ns.spawn_http(flags);
    // The kernel's queue towards tapir holds 1,000 frames by default, a few ms of this
    // flood: on a shared 2-core machine tapir is off the CPU for longer than that now and
    // then, and the kernel drops frames (a legitimate SYN among them, which curl resends a
    // second later) before tapir sees them. tapir raises it on the device it opens.
    let link = output_text(&ns.run(&["ip", "link", "show", "tap0"]));
    let qlen: u32 = link
        .split_once(" qlen ")
        .and_then(|(_, rest)| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no qlen in: {link}"));
    assert!(
        qlen >= tapir::device::tap::TX_QUEUE_LEN,
        "tapir raised tap0's queue: {link}"
    );
    let url = format!("{HTTP}/");
    // Same run, no flood: what a connect costs on this machine now.
    let mut base = Vec::new();
    let mut failures = Vec::new();
    for _ in 0..50 {
        curl_connect(&ns, &url, &mut base, &mut failures);
    }
    assert!(failures.is_empty(), "curl before the flood: {failures:?}");
    let base_p99 = p99(&mut base);
    let before = ns.stats(HTTP);
    let rss_before = tapir.rss_kib();
    let flood = script("tcpip.py");
    // At most FLOOD_RATE SYNs a second. Unbounded, a fast sender on a shared 2-core machine
    // takes a core while tapir's share of the other one varies with the tests running
    // beside it: once tapir falls behind, the TAP queue (32,768 frames) fills and every
    // frame, curl's SYN included, waits behind up to a queue's worth of flood. That measures
    // the scheduler, not whether tapir answers a flood it has the CPU for.
    let rate = FLOOD_RATE.to_string();
    let (mut child, lines) = spawn_script(
        &ns,
        &[scapy_python(), &flood, "silentflood", "10", rate.as_str()],
    );
    std::thread::sleep(Duration::from_millis(300));
    let mut connects = Vec::new();
    let mut rss_during = 0;
    for _ in 0..50 {
        curl_connect(&ns, &url, &mut connects, &mut failures);
        rss_during = rss_during.max(tapir.rss_kib());
        std::thread::sleep(Duration::from_millis(120));
    }
    let during = ns.stats(HTTP);
    let out: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.0.wait().expect("wait for the flood");
    let out = out.join("\n");
    assert!(status.success(), "flood script failed:\n{out}");
    let sent: u64 = fact(&out, "syns_sent").parse().unwrap();
    // What the assertions below judge, in each of their messages (CI shows only those).
    let flood_figures = format!(
        "{sent} SYNs sent, {} per second; tapir read {} frames, used {:?} CPU",
        fact(&out, "rate"),
        json_u64(&during, "frames_in") - json_u64(&before, "frames_in"),
        tapir.cpu_time()
    );
    eprintln!("{flood_figures}");
    eprintln!(
        "{}",
        output_text(&ns.run(&["ip", "-s", "link", "show", "tap0"]))
    );
    assert!(
        failures.is_empty(),
        "{} of 50 curls failed under the flood ({flood_figures}):\n{}",
        failures.len(),
        failures.join("\n")
    );
    let p99 = p99(&mut connects);
    let connect_figures = format!(
        "curl time_connect under the flood: p50 {:?}, p99 {p99:?}; same run without: p99 {base_p99:?}",
        connects[connects.len() / 2],
    );
    eprintln!("{connect_figures}");
    // No connect waited for a SYN retransmission (1 s): the failure this test is about.
    // The target is 50 ms at the 99th percentile; tapir itself uses under a tenth of a core
    // for this flood, so what a connect costs beyond that is the machine's scheduling: the
    // bound grows with the same run's connect time without the flood (under 1 ms on an idle
    // machine, tens of ms when builds share its two cores).
    let bound = Duration::from_millis(50) + base_p99 * 10;
    assert!(
        p99 < bound.min(Duration::from_millis(900)),
        "p99 connect time {p99:?} (bound {bound:?}); {flood_figures}; {connect_figures}: {connects:?}"
    );
    // Cookies keep no state: memory stays flat (a half-open socket per SYN would be about
    // 10 KiB each, gigabytes for this flood).
    eprintln!("RSS before {rss_before} KiB, during {rss_during} KiB");
    assert!(
        rss_during < rss_before + 16 * 1024,
        "RSS grew from {rss_before} to {rss_during} KiB ({flood_figures})"
    );
    let delta = |stats: &str, key: &str| json_u64(stats, key) - json_u64(&before, key);
    let cookies = delta(&during, "syn_cookies_sent");
    eprintln!(
        "cookies sent {cookies}, accepted {}, rejected {}; backlog drops {}, unresolved half-open {}",
        delta(&during, "syn_cookies_accepted"),
        delta(&during, "syn_cookies_rejected"),
        delta(&during, "drops_syn_backlog"),
        delta(&during, "handshake_unresolved")
    );
    // Every SYN that reached tapir past the full backlog got a cookie. (How many of the SYNs
    // sent reach it depends on the machine: when tapir is behind, the kernel drops frames at
    // the TAP queue before tapir sees them.)
    let read = json_u64(&during, "frames_in") - json_u64(&before, "frames_in");
    assert!(
        cookies >= read / 2,
        "{sent} SYNs sent, {read} frames read, {cookies} cookies:\n{during}"
    );
    assert_eq!(
        delta(&during, "drops_syn_backlog"),
        0,
        "no SYN dropped:\n{during}"
    );
    assert_eq!(delta(&during, "syn_cookies_rejected"), 0, "{during}");
    assert_eq!(
        json_u64(&during, "tcp_accepted"),
        json_u64(&during, "connections_total"),
        "every accepted connection is one the server took (no flood SYN made one):\n{during}"
    );
    // The flood is over: nothing left behind (the half-open entries of the first SYNs,
    // which could never be answered, are gone after 1.5 s).
    ns.assert_back_to_baseline(HTTP, 2, Duration::from_secs(5));
    tapir.stop();
}

/// Starts tapir with HTTPS and short timeouts; returns it and the certificate's path.
fn start_tls(ns: &Netns) -> (TapirProcess, PathBuf) {
    ns.spawn_https(&["--tls-handshake-timeout", "2"])
}

#[test]
fn tls_oversized_records_and_half_open_handshakes_are_cut_while_curl_is_served() {
    let Some(ns) = tap_test!("atk-tls", CURL, PYTHON3) else {
        return;
    };
    let (tapir, cert) = start_tls(&ns);
    let rss_before = tapir.rss_kib();
    let cacert = ["--cacert", cert.to_str().unwrap()];
    let (lines, legit) = with_legit_client(&ns, "https://10.7.0.2/", &cacert, || {
        let tls = script("tls.py");
        let (mut child, lines) = spawn_script(&ns, &["python3", &tls, TAPIR_V4, "100", "8"]);
        let rss_during = tapir.rss_kib();
        let lines: Vec<String> = lines.map_while(Result::ok).collect();
        let status = child.0.wait().expect("wait for tls.py");
        assert!(status.success(), "tls.py exited with {status}: {lines:?}");
        (lines, rss_during)
    });
    let (lines, rss_during) = lines;
    let result = |kind: &str| -> &str {
        lines
            .iter()
            .find_map(|l| l.strip_prefix(&format!("{kind}: ")))
            .unwrap_or_else(|| panic!("no '{kind}' line in {lines:?}"))
    };
    eprintln!("{}", lines.join("\n"));
    // An 18 KB record is more than TLS allows: refused at once with an alert.
    for kind in ["header", "full"] {
        let line = result(kind);
        assert!(line.starts_with("cut 100 of 100"), "{kind}: {line}");
        assert!(
            fact_num(line, "last ") < 1.5,
            "{kind} is refused at once: {line}"
        );
        assert!(line.ends_with("alerts 100"), "{kind} gets an alert: {line}");
    }
    // A legal 16 KB header then silence, and a ClientHello then silence: cut at the TLS
    // handshake timeout (2 s).
    for kind in ["header16k", "hello"] {
        let line = result(kind);
        assert!(line.starts_with("cut 100 of 100"), "{kind}: {line}");
        let last = fact_num(line, "last ");
        assert!(
            (1.5..=4.0).contains(&last),
            "{kind} cut after {last} s: {line}"
        );
    }
    legit.assert_all_answered(10, "hostile TLS clients");
    let grew = rss_during.saturating_sub(rss_before);
    eprintln!(
        "RSS {rss_before} KiB before, {rss_during} KiB with 400 hostile TLS connections open"
    );
    // 400 connections with 64 KiB socket buffers each way; nothing beyond that per record.
    assert!(grew < 400 * 160, "RSS grew by {grew} KiB");
    ns.assert_back_to_baseline(HTTP, 2, Duration::from_secs(5));
    tapir.stop();
}

#[test]
fn tls_renegotiation_is_refused_and_tapir_goes_on() {
    let Some(ns) = tap_test!("atk-reneg", OPENSSL, CURL) else {
        return;
    };
    let (tapir, cert) = start_tls(&ns);
    let cacert = ["--cacert", cert.to_str().unwrap()];
    let (outputs, legit) = with_legit_client(&ns, "https://10.7.0.2/", &cacert, || {
        (0..5)
            .map(|_| {
                // `R` asks s_client to renegotiate (TLS 1.2); then a request on the same
                // connection.
                let mut child = ChildGuard(
                    ns.exec(&[
                        "openssl",
                        "s_client",
                        "-tls1_2",
                        "-connect",
                        "10.7.0.2:443",
                        "-CAfile",
                        cert.to_str().unwrap(),
                    ])
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("start openssl s_client"),
                );
                let mut stdin = child.0.stdin.take().unwrap();
                use std::io::Write;
                std::thread::sleep(Duration::from_millis(300));
                let _ = stdin.write_all(b"R\n");
                std::thread::sleep(Duration::from_millis(300));
                let _ = stdin.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
                std::thread::sleep(Duration::from_millis(300));
                drop(stdin);
                let out = child.0.wait_with_output_guarded();
                output_text(&out)
            })
            .collect::<Vec<_>>()
    });
    for out in &outputs {
        assert!(
            out.contains("RENEGOTIATING"),
            "s_client did not try:\n{out}"
        );
        assert!(
            out.contains("no renegotiation"),
            "tapir did not refuse with a no_renegotiation alert:\n{out}"
        );
    }
    eprintln!("s_client:\n{}", outputs[0]);
    legit.assert_all_answered(5, "renegotiation attempts");
    ns.assert_back_to_baseline(HTTP, 2, Duration::from_secs(5));
    tapir.stop();
}

/// `wait_with_output` for a guarded child (the guard then has nothing left to kill).
trait WaitGuarded {
    fn wait_with_output_guarded(&mut self) -> std::process::Output;
}

impl WaitGuarded for std::process::Child {
    fn wait_with_output_guarded(&mut self) -> std::process::Output {
        use std::io::Read;
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        if let Some(mut s) = self.stdout.take() {
            let _ = s.read_to_end(&mut stdout);
        }
        if let Some(mut s) = self.stderr.take() {
            let _ = s.read_to_end(&mut stderr);
        }
        let status = self.wait().expect("wait for the child");
        std::process::Output {
            status,
            stdout,
            stderr,
        }
    }
}

#[test]
fn bad_checksums_and_impossible_flags_make_no_connection() {
    let Some(ns) = tap_test!("atk-flags", CURL) else {
        return;
    };
    let tapir = ns.spawn_http(&[]);
    let (out, legit) =
        with_legit_client(&ns, &format!("{HTTP}/"), &[], || scapy(&ns, "flags", &[]));
    assert!(fact(&out, "bad_checksum_drops").parse::<u64>().unwrap() >= 40);
    legit.assert_all_answered(3, "bad checksums and flag combinations");
    ns.assert_back_to_baseline(HTTP, 2, Duration::from_secs(5));
    tapir.stop();
}

#[test]
fn overlapping_and_out_of_window_segments_keep_the_stream_intact() {
    let Some(ns) = tap_test!("atk-overlap", CURL) else {
        return;
    };
    let tapir = ns.spawn_http(&[]);
    let (out, legit) =
        with_legit_client(&ns, &format!("{HTTP}/"), &[], || scapy(&ns, "overlap", &[]));
    assert_eq!(fact(&out, "exact_echo_bytes"), "3000");
    assert_eq!(fact(&out, "inorder_overlap"), "A".repeat(20));
    // Conflicting out-of-order copies: which one smoltcp keeps depends on arrival; the
    // script checked every byte is one that was sent for its position.
    assert_eq!(fact(&out, "ooo_overlap").len(), 20);
    legit.assert_all_answered(3, "overlapping segments");
    ns.assert_back_to_baseline(HTTP, 2, Duration::from_secs(5));
    tapir.stop();
}

#[test]
fn rst_and_syn_injection_with_wrong_sequence_numbers_do_not_kill_a_download() {
    let Some(ns) = tap_test!("atk-inject", CURL) else {
        return;
    };
    // Plain frames: scapy reads tapir's segments off tap0, where a TSO super-frame would
    // show whole (the kernel cuts it only when it forwards it).
    let tapir = ns.spawn_http(&["--no-offload"]);
    let len: u64 = 4_000_000;
    let file = ns.dir().join("download.bin");
    // A slow download (several seconds, so it is still running when scapy, slow to start on
    // a loaded machine, begins to watch; 1.8 MB took only 2.3 s once tapir's TCP got its
    // initial window of 10 segments) by the kernel's TCP, the victim of the injection. Small
    // receive buffers (this namespace only) make curl's rate limit reach tapir.
    let sysctl = ns.run(&["sysctl", "-w", "net.ipv4.tcp_rmem=4096 16384 32768"]);
    assert!(sysctl.status.success(), "{}", output_text(&sysctl));
    let mut curl = ChildGuard(
        ns.exec(&[
            "curl",
            "-sS",
            "--limit-rate",
            "300k",
            "-o",
            file.to_str().unwrap(),
            &format!("{HTTP}/bytes/{len}"),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start curl"),
    );
    let out = scapy(&ns, "inject", &[]);
    let injected: u64 = fact(&out, "injected").parse().unwrap();
    let done = curl.0.wait_with_output_guarded();
    assert!(
        done.status.success(),
        "the download died under {injected} injected RST/SYN segments:\n{}",
        output_text(&done)
    );
    assert_eq!(
        sha256_file_hex(&file),
        sha256_pattern_hex(len),
        "downloaded bytes"
    );
    let stats = ns.assert_back_to_baseline(HTTP, 2, Duration::from_secs(5));
    // The in-window RSTs reached tapir and were refused for their sequence number.
    let refused = json_u64(&stats, "drops_rst_seq");
    eprintln!("{injected} segments injected, {refused} RSTs refused (RFC 5961)");
    assert!(
        refused >= 10,
        "only {refused} injected RSTs were refused:\n{stats}"
    );
    // In-window RSTs and SYNs on the live connection got challenge ACKs (RFC 5961 3.2,
    // 4.2); the kernel, the real peer, ignored them and the download went on.
    let challenges = json_u64(&stats, "challenge_acks");
    eprintln!("{challenges} challenge ACKs sent");
    assert!(
        challenges >= 10,
        "only {challenges} challenge ACKs for {injected} injected segments:\n{stats}"
    );
    tapir.stop();
}

#[test]
fn ip_fragments_and_options_are_reassembled_or_dropped_harmlessly() {
    let Some(ns) = tap_test!("atk-frag", CURL, PING) else {
        return;
    };
    // Short handshake timeout: the SYNs behind malformed IP options are answered and
    // then left half-open by the script.
    let tapir = ns.spawn_http(&["--handshake-timeout", "2"]);
    let (outs, legit) = with_legit_client(&ns, &format!("{HTTP}/"), &[], || {
        (scapy(&ns, "fragments", &[]), scapy(&ns, "ipoptions", &[]))
    });
    let (frags, options) = outs;
    assert_eq!(fact(&options, "options_served"), "2000");
    assert!(
        fact(&frags, "fragmented_request_reverse")
            .parse::<u64>()
            .unwrap()
            > 2
    );
    // Junk fragments hold smoltcp's one reassembly buffer until the reassembly timeout
    // (3 s); then fragmented requests are answered again.
    let after: f64 = fact(&frags, "fragmented_after_junk_s").parse().unwrap();
    assert!(
        after <= 5.0,
        "fragmented requests blocked for {after} s after the junk"
    );
    // The kernel fragments a big ping; tapir reassembles it and answers.
    let ping = ns.run(&["ping", "-c", "2", "-W", "2", "-s", "4000", TAPIR_V4]);
    assert!(
        output_text(&ping).contains("2 received"),
        "{}",
        output_text(&ping)
    );
    legit.assert_all_answered(3, "fragments and IP options");
    ns.assert_back_to_baseline(HTTP, 2, Duration::from_secs(5));
    tapir.stop();
}

#[test]
fn tiny_mss_download_completes() {
    let Some(ns) = tap_test!("atk-mss", CURL) else {
        return;
    };
    // Plain frames: scapy reads tapir's segments off tap0, where a TSO super-frame would
    // show whole (the kernel cuts it only when it forwards it).
    let tapir = ns.spawn_http(&["--no-offload"]);
    let (out, legit) = with_legit_client(&ns, &format!("{HTTP}/"), &[], || {
        scapy(&ns, "tinymss", &["30000"])
    });
    assert!(fact(&out, "largest_segment").parse::<u64>().unwrap() <= 64);
    assert!(fact(&out, "segments").parse::<u64>().unwrap() >= 30000 / 64);
    legit.assert_all_answered(3, "a tiny-MSS download");
    // The kernel's own TCP with MSS 64 on its route: a real download completes intact.
    let route = ns.run(&[
        "ip",
        "route",
        "replace",
        "10.7.0.0/24",
        "dev",
        "tap0",
        "advmss",
        "64",
    ]);
    assert!(route.status.success(), "{}", output_text(&route));
    let before = json_u64(&ns.stats(HTTP), "frames_out");
    let len: u64 = 200_000;
    let file = ns.dir().join("mss.bin");
    let dl = ns.run(&[
        "curl",
        "-sS",
        "--max-time",
        "30",
        "-o",
        file.to_str().unwrap(),
        &format!("{HTTP}/bytes/{len}"),
    ]);
    assert!(dl.status.success(), "{}", output_text(&dl));
    assert_eq!(sha256_file_hex(&file), sha256_pattern_hex(len));
    let frames = json_u64(&ns.stats(HTTP), "frames_out") - before;
    eprintln!("{len} bytes with advmss 64 took {frames} frames from tapir");
    // Linux never advertises less than TCP_MIN_MSS (88 bytes), whatever the route's advmss,
    // so the kernel's SYN carries MSS 88: at most 88 bytes per segment, far below 1460.
    assert!(
        frames >= len / 88,
        "{frames} frames for {len} bytes: the peer's MSS of 88 not in effect"
    );
    ns.assert_back_to_baseline(HTTP, 2, Duration::from_secs(5));
    tapir.stop();
}

/// A client that requests a large body and then keeps its window closed for `seconds`
/// (answering every probe): tapir must not spin meanwhile, and the legitimate client is
/// served. Returns the script's output and tapir for further checks.
fn zero_window(ns: &Netns, seconds: &str) -> (String, TapirProcess) {
    let tapir = ns.spawn_http(&["--idle-timeout", "3"]);
    let script = attacks_dir().join("tcpip.py");
    let mut child = ChildGuard(
        ns.exec(&[
            scapy_python(),
            script.to_str().unwrap(),
            "zerowindow",
            seconds,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the zero-window client"),
    );
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    let first = lines.next().and_then(Result::ok).unwrap_or_default();
    assert_eq!(first, "zero-window", "the client closed its window");
    let cpu_before = tapir.cpu_time();
    let wall = Instant::now();
    let (_, legit) = with_legit_client(ns, &format!("{HTTP}/"), &[], || {
        std::thread::sleep(Duration::from_secs(2));
    });
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.0.wait().expect("wait for the zero-window client");
    let out = rest.join("\n");
    eprintln!("zero window:\n{out}");
    assert!(status.success(), "{out}");
    let cpu = tapir.cpu_time() - cpu_before;
    let wall = wall.elapsed();
    eprintln!("tapir used {cpu:?} CPU in {wall:?} with a zero-window client (and curl)");
    assert!(
        cpu.as_secs_f64() < 0.2 * wall.as_secs_f64(),
        "tapir used {cpu:?} CPU in {wall:?}: spinning on a closed window?"
    );
    legit.assert_all_answered(3, "a zero-window client");
    let probes: u64 = fact(&out, "segments_during_zero_window").parse().unwrap();
    assert!(probes >= 1, "tapir probes the closed window:\n{out}");
    (out, tapir)
}

/// The response stays blocked behind the closed window; after the idle timeout (3 s) of
/// no progress tapir resets the connection and frees its socket.
#[test]
fn zero_window_forever_costs_no_cpu_and_is_reset_at_the_idle_timeout() {
    let Some(ns) = tap_test!("atk-zerowin", CURL) else {
        return;
    };
    let (out, tapir) = zero_window(&ns, "6");
    assert_eq!(
        fact(&out, "ended_by"),
        "reset",
        "tapir kept a connection whose window stayed closed for 6 s (idle timeout 3 s)"
    );
    ns.assert_back_to_baseline(HTTP, 2, Duration::from_secs(5));
    tapir.stop();
}

#[test]
fn arp_spoofing_of_tapirs_own_address_changes_nothing() {
    let Some(ns) = tap_test!("atk-arp", CURL) else {
        return;
    };
    let tapir = ns.spawn_http(&[]);
    let (out, legit) = with_legit_client(&ns, &format!("{HTTP}/"), &[], || {
        scapy(&ns, "arpspoof", &["200"])
    });
    assert_eq!(fact(&out, "spoof_frames"), "600");
    legit.assert_all_answered(3, "ARP spoofing");
    ns.assert_back_to_baseline(HTTP, 2, Duration::from_secs(5));
    tapir.stop();
}
