//! The tapir binary on a real TAP device, with the kernel as the peer: ping over IPv4 and
//! IPv6, TCP echo, pcap capture, idle CPU with open connections, and clean shutdown.
//!
//! Each test makes its own network namespace (see `common::netns`) and needs root; without
//! root each prints `SKIPPED <test>: ...` and returns.

mod common;

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::netns::{ChildGuard, Netns, TapirProcess, TAP, TAPIR_V4, TAPIR_V6};
use common::tap::{runs, stopped_line, CURL, DNSMASQ, PING, PYTHON3, SOCAT, TSHARK};
use sha2::{Digest, Sha256};

const READY: &str = "ready: echo on port 7";
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to HOST PORT, sends the file SRC while receiving (a thread sends, then shuts
/// down the write half), reads until EOF and writes what came back to DST.
const ECHO_CLIENT: &str = r#"
import socket, sys, threading
host, port, src, dst = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
data = open(src, "rb").read()
s = socket.create_connection((host, port), timeout=30)
def send():
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
t = threading.Thread(target=send)
t.start()
chunks = []
while True:
    b = s.recv(65536)
    if not b:
        break
    chunks.append(b)
t.join()
s.close()
open(dst, "wb").write(b"".join(chunks))
print("echoed", sum(map(len, chunks)), "of", len(data))
"#;

/// Opens N connections to HOST PORT and prints `open N`; then waits for a line on stdin,
/// checks every connection still echoes one byte and prints `echoed N`.
const IDLE_CLIENTS: &str = r#"
import socket, sys
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
socks = [socket.create_connection((host, port), timeout=10) for _ in range(n)]
print("open", len(socks), flush=True)
sys.stdin.readline()
ok = 0
for s in socks:
    s.sendall(b"x")
    if s.recv(1) == b"x":
        ok += 1
print("echoed", ok, flush=True)
"#;

/// Starts `tapir echo` on the namespace's TAP (with `extra` flags) and waits until it is
/// listening.
fn start_echo(ns: &Netns, extra: &[&str]) -> TapirProcess {
    let mut args = vec!["echo", "--tap", TAP];
    args.extend_from_slice(extra);
    let tapir = ns.spawn_tapir(&args);
    assert!(
        tapir.wait_for_log(READY, START_TIMEOUT),
        "tapir did not print '{READY}' within {START_TIMEOUT:?}; log:\n{}",
        tapir.log()
    );
    tapir
}

fn run(mut command: Command) -> Output {
    let out = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {command:?}: {e}"));
    out
}

fn text(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn sha256_file(path: &Path) -> [u8; 32] {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    Sha256::digest(&bytes).into()
}

/// Sends `len` random bytes through tapir's echo at `host` and checks they come back
/// unchanged.
fn echo_random_bytes(ns: &Netns, host: &str, len: usize, seed: u64) {
    let mut data = vec![0u8; len];
    fastrand::Rng::with_seed(seed).fill(&mut data);
    let sent = ns.dir().join(format!("sent-{seed}.bin"));
    let back = ns.dir().join(format!("back-{seed}.bin"));
    fs::write(&sent, &data).expect("write the bytes to send");
    let started = Instant::now();
    let out = run(ns.exec(&[
        "python3",
        "-c",
        ECHO_CLIENT,
        host,
        "7",
        sent.to_str().unwrap(),
        back.to_str().unwrap(),
    ]));
    assert!(
        out.status.success(),
        "echo client to {host} failed:\n{}",
        text(&out)
    );
    let back_len = fs::metadata(&back).map(|m| m.len()).unwrap_or(0);
    assert_eq!(back_len, len as u64, "bytes echoed back from {host}");
    assert_eq!(
        sha256_file(&sent),
        sha256_file(&back),
        "sha256 of the bytes sent and echoed back by {host}"
    );
    eprintln!("{len} bytes echoed by {host} in {:?}", started.elapsed());
}

fn ping(ns: &Netns, v6: bool, host: &str) {
    let mut args = vec!["ping"];
    if v6 {
        args.push("-6");
    }
    args.extend_from_slice(&["-c", "3", "-W", "2", host]);
    let out = run(ns.exec(&args));
    let output = text(&out);
    assert!(out.status.success(), "{args:?} failed:\n{output}");
    assert!(output.contains("3 received"), "{args:?}:\n{output}");
}

/// The count in tapir's `pcap: wrote N frames to FILE` line.
fn logged_frames(log: &str) -> u64 {
    let line = log
        .lines()
        .find(|l| l.contains("pcap: wrote "))
        .unwrap_or_else(|| panic!("no 'pcap: wrote' line in the log:\n{log}"));
    let rest = &line[line.find("pcap: wrote ").unwrap() + "pcap: wrote ".len()..];
    rest.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no frame count in '{line}'"))
}

/// Frames tshark finds in `pcap` that match `filter` (all frames when None).
fn tshark_count(pcap: &Path, filter: Option<&str>) -> u64 {
    let mut command = Command::new("tshark");
    command.args(["-n", "-r"]).arg(pcap);
    if let Some(filter) = filter {
        command.args(["-Y", filter]);
    }
    command.args(["-T", "fields", "-e", "frame.number"]);
    let out = run(command);
    assert!(
        out.status.success(),
        "tshark -r {} failed:\n{}",
        pcap.display(),
        text(&out)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count() as u64
}

#[test]
fn kernel_pings_tapir_over_ipv4_and_ipv6() {
    let Some(ns) = tap_test!("ping", PING) else {
        return;
    };
    let tapir = start_echo(&ns, &[]);
    ping(&ns, false, TAPIR_V4);
    ping(&ns, true, TAPIR_V6);
    tapir.stop();
}

#[test]
fn kernel_tcp_client_echoes_one_mib_over_ipv4_and_ipv6() {
    let Some(ns) = tap_test!("echo", PYTHON3) else {
        return;
    };
    let tapir = start_echo(&ns, &[]);
    echo_random_bytes(&ns, TAPIR_V4, 1 << 20, 1);
    echo_random_bytes(&ns, TAPIR_V6, 1 << 20, 2);
    let log = tapir.stop();
    assert!(log.contains("2 accepted"), "log:\n{log}");
}

#[test]
fn pcap_holds_exactly_the_frames_tapir_counted() {
    let Some(ns) = tap_test!("pcap", PYTHON3, TSHARK) else {
        return;
    };
    let pcap = ns.dir().join("echo.pcap");
    // Plain frames, one MSS each, so the frame counts below are predictable (captures with
    // offloads: tests/tap_offload.rs).
    let tapir = start_echo(&ns, &["--pcap", pcap.to_str().unwrap(), "--no-offload"]);
    echo_random_bytes(&ns, TAPIR_V4, 1 << 20, 3);
    let log = tapir.stop();
    let logged = logged_frames(&log);
    assert!(
        logged > 1400,
        "1 MiB each way is hundreds of frames; tapir logged {logged}"
    );
    let total = tshark_count(&pcap, None);
    assert_eq!(
        total, logged,
        "frames tshark reads vs tapir's 'pcap: wrote' count"
    );
    let to_echo = tshark_count(&pcap, Some("tcp.dstport == 7"));
    let from_echo = tshark_count(&pcap, Some("tcp.srcport == 7"));
    assert!(
        to_echo > 700 && from_echo > 700,
        "tshark decodes the TCP echo: {to_echo} frames to port 7, {from_echo} from it"
    );
    let syns = tshark_count(
        &pcap,
        Some("tcp.dstport == 7 && tcp.flags.syn == 1 && tcp.flags.ack == 0"),
    );
    assert_eq!(syns, 1, "one connection, one SYN");
    let malformed = tshark_count(&pcap, Some("_ws.malformed || _ws.expert.severity == error"));
    assert_eq!(malformed, 0, "tshark finds no malformed frames");
    eprintln!("pcap: {total} frames, {to_echo} to port 7, {from_echo} from it");
}

#[test]
fn hundred_idle_connections_cost_under_one_percent_cpu() {
    let Some(ns) = tap_test!("idle", PYTHON3) else {
        return;
    };
    let tapir = start_echo(&ns, &[]);
    let mut clients = ns.exec(&["python3", "-c", IDLE_CLIENTS, TAPIR_V4, "7", "100"]);
    let mut clients = ChildGuard(
        clients
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the idle clients"),
    );
    let mut lines = BufReader::new(clients.0.stdout.take().unwrap()).lines();
    let first = lines.next().expect("a line from the clients").unwrap();
    assert_eq!(first, "open 100", "the clients connected");

    // Let the handshakes' last ACKs and any delayed work settle, then measure.
    std::thread::sleep(Duration::from_millis(500));
    let (cpu, wall, share) = tapir.cpu_over(Duration::from_secs(5));
    eprintln!(
        "tapir used {cpu:?} CPU in {wall:?} with 100 idle connections ({:.2}%)",
        share * 100.0
    );
    assert!(
        share < 0.01,
        "tapir used {cpu:?} of CPU in {wall:?} with 100 idle connections: {:.2}% of a core, want < 1%",
        share * 100.0
    );

    // The idle connections still work.
    let mut stdin = clients.0.stdin.take().unwrap();
    writeln!(stdin).unwrap();
    drop(stdin);
    let second = lines
        .next()
        .expect("a second line from the clients")
        .unwrap();
    assert_eq!(second, "echoed 100", "every idle connection still echoes");
    let status = clients.0.wait().unwrap();
    assert!(status.success(), "idle clients exited with {status}");
    drop(clients);

    let log = tapir.stop();
    assert!(log.contains("100 accepted"), "log:\n{log}");
}

/// Idle keep-alive connections opened in a burst cost what they hold once they are quiet.
/// Opening them takes TCP and request buffers that go back when each connection goes
/// quiet; the binary's allocator (jemalloc, whose background thread returns freed pages)
/// then hands the burst's pages back, so RSS per connection falls to the few KiB each
/// holds. With glibc's malloc the burst's high-water mark stayed: about 10 KiB per
/// connection, for 3 KiB live.
#[test]
fn idle_connections_opened_in_a_burst_cost_under_4_kib_of_rss_each_once_quiet() {
    const CONNECTIONS: u64 = 4000;
    const MAX_KIB_PER_CONNECTION: f64 = 4.0;
    let Some(ns) = tap_test!("idle-rss", PYTHON3, CURL) else {
        return;
    };
    let tapir = ns.spawn_http(&["--idle-timeout", "600"]);
    let before = tapir.rss_kib();
    let ready = ns.dir().join("idle-ready.json");
    let ready_arg = ready.to_str().expect("a UTF-8 temp path");
    let helper = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/bench_helper.py");
    let count = CONNECTIONS.to_string();
    let _clients = ChildGuard(
        ns.exec(&[
            "python3", helper, "idle", TAPIR_V4, "80", &count, ready_arg, "0", "", "120",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("start the idle clients"),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready.exists() {
        assert!(
            Instant::now() < deadline,
            "the idle clients never got ready"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let report = fs::read_to_string(&ready).expect("the idle clients' report");
    assert_eq!(
        common::netns::json_u64(&report, "open"),
        CONNECTIONS,
        "every connection made its request and stays open: {report}"
    );
    let at_ready = tapir.rss_kib();
    let per_connection = |rss: u64| rss.saturating_sub(before) as f64 / CONNECTIONS as f64;
    // jemalloc returns dirty pages over its 10 s decay.
    let deadline = Instant::now() + Duration::from_secs(30);
    let settled = loop {
        let rss = tapir.rss_kib();
        if per_connection(rss) <= MAX_KIB_PER_CONNECTION || Instant::now() >= deadline {
            break rss;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    eprintln!(
        "RSS {before} KiB before, {at_ready} KiB once {CONNECTIONS} connections were open \
         ({:.1} KiB each), {settled} KiB quiet ({:.1} KiB each)",
        per_connection(at_ready),
        per_connection(settled)
    );
    assert!(
        per_connection(settled) <= MAX_KIB_PER_CONNECTION,
        "{:.1} KiB of RSS per idle connection 30 s after the burst ({before} -> {settled} KiB)",
        per_connection(settled)
    );
    let stats = ns.run(&["curl", "-sS", "--max-time", "5", "http://10.7.0.2/stats"]);
    assert_eq!(
        common::netns::json_u64(&String::from_utf8_lossy(&stats.stdout), "connections_open"),
        CONNECTIONS + 1,
        "the idle connections (and /stats's own) are open"
    );
}

#[test]
fn sigterm_stops_tapir_cleanly() {
    let Some(ns) = tap_test!("sigterm") else {
        return;
    };
    let tapir = start_echo(&ns, &[]);
    let (log, took) = tapir.stop_timed();
    assert!(
        took < Duration::from_secs(3),
        "tapir took {took:?} to stop with no connections open"
    );
    assert!(log.contains("received signal 15"), "log:\n{log}");
    stopped_line(&log);
}

#[test]
fn demo_script_runs_once_and_cleans_up() {
    if !runs(fn_name!(), &[PING, SOCAT]) {
        return;
    }
    // TAPIR_BIN: the binary Cargo built for the tests, so the script does not run cargo.
    let out = run({
        let mut command = Command::new(common::netns::repo_root().join("scripts/demo.sh"));
        command
            .arg("--once")
            .env("TAPIR_BIN", common::netns::tapir_bin());
        command
    });
    let output = text(&out);
    assert!(out.status.success(), "demo.sh --once failed:\n{output}");
    for needle in [
        "3 received",
        "demonstration complete",
        "stopped (",
        "pcap: wrote",
    ] {
        assert!(output.contains(needle), "no '{needle}' in:\n{output}");
    }
    assert_eq!(
        output.matches("got back: hello tapir").count(),
        2,
        "{output}"
    );
    // netns.sh's hints are about running `tapir echo` by hand; the demo runs tapir itself.
    assert!(!output.contains("tapir echo"), "{output}");
    let ns = output
        .split_whitespace()
        .find(|w| w.starts_with("tapir-demo-"))
        .unwrap_or_else(|| panic!("no namespace name in:\n{output}"));
    let list = run({
        let mut command = Command::new("ip");
        command.args(["netns", "list"]);
        command
    });
    assert!(
        !String::from_utf8_lossy(&list.stdout)
            .split_whitespace()
            .any(|w| w == ns),
        "demo.sh left namespace {ns} behind"
    );
}

#[test]
fn dhcp_gives_tapir_an_address_the_kernel_reaches() {
    let Some(ns) = tap_test!("dhcp", DNSMASQ) else {
        return;
    };
    // A DHCP server on the kernel side of the TAP (DNS off).
    let dnsmasq = ns
        .exec(&[
            "dnsmasq",
            "--no-daemon",
            "--port=0",
            "--user=root",
            &format!("--interface={TAP}"),
            "--bind-interfaces",
            "--dhcp-range=10.7.0.100,10.7.0.150,255.255.255.0,1h",
            "--dhcp-option=option:router,10.7.0.1",
            &format!("--dhcp-leasefile={}", ns.dir().join("leases").display()),
            &format!("--pid-file={}", ns.dir().join("dnsmasq.pid").display()),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start dnsmasq");
    let _dnsmasq = ChildGuard(dnsmasq);
    let tapir = start_echo(&ns, &["--dhcp"]);
    assert!(
        tapir.wait_for_log("DHCP: address 10.7.0.1", Duration::from_secs(20)),
        "no DHCP lease; log:\n{}",
        tapir.log()
    );
    let log = tapir.log();
    let address = log
        .lines()
        .find_map(|l| l.split("DHCP: address ").nth(1))
        .and_then(|rest| rest.split('/').next())
        .expect("the leased address in the log")
        .to_string();
    assert!(log.contains("router 10.7.0.1"), "{log}");
    // dnsmasq puts tapir's MAC in the kernel's ARP table, so the kernel never asks for it
    // and tapir learns the kernel's MAC only from its own ARP request: smoltcp drops the
    // first echo reply while it asks. One ping warms that up; then all must answer.
    let _ = run(ns.exec(&["ping", "-c", "1", "-W", "1", &address]));
    ping(&ns, false, &address);
    echo_random_bytes(&ns, &address, 64 * 1024, 9);
    // The IPv6 default address stays: DHCP replaces only the IPv4 address.
    ping(&ns, true, TAPIR_V6);
}
