//! Faults around a running `tapir serve` on a real TAP device: the device deleted under it,
//! a SIGTERM with uploads and downloads in flight, and an HTTP/2 flood from a raw client
//! next to a well-behaved one.
//!
//! Each test makes its own network namespace (see `common::netns`) and needs root; without
//! root each prints `SKIPPED <test>: ...` and returns.

mod common;

use std::fs;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::netns::{
    json_u64, output_text, sha256_file_hex, sha256_pattern_hex, write_random_file, ChildGuard,
    Netns, TAP, TAPIR_V4,
};
use common::tap::{CURL, PYTHON3};

const HTTP: &str = "http://10.7.0.2";
const HTTPS: &str = "https://10.7.0.2";

#[test]
fn tap_deleted_under_serve_gives_a_clear_error_and_exit() {
    let Some(ns) = tap_test!("tap-deleted", CURL) else {
        return;
    };
    let mut tapir = ns.spawn_serve(&[]);
    // A download in flight when the device goes.
    let _download = ChildGuard(
        ns.exec(&[
            "curl",
            "-sS",
            "--max-time",
            "20",
            "-o",
            "/dev/null",
            "--limit-rate",
            "5M",
            &format!("{HTTP}/bytes/1000000000"),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start curl"),
    );
    std::thread::sleep(Duration::from_millis(500));
    let cpu_before = tapir.cpu_time();
    let out = ns.run(&["ip", "link", "del", TAP]);
    assert!(out.status.success(), "ip link del:\n{}", output_text(&out));
    let deleted = Instant::now();
    // Wait until it has exited (a zombie still shows its CPU time), at most 5 s.
    while tapir.is_running() {
        assert!(
            deleted.elapsed() < Duration::from_secs(5),
            "tapir still runs {:?} after its TAP device was deleted (CPU {:?}); log:\n{}",
            deleted.elapsed(),
            tapir.cpu_time(),
            tapir.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = deleted.elapsed();
    let cpu = tapir.cpu_time().saturating_sub(cpu_before);
    let status = tapir
        .wait_exit(Duration::from_secs(5))
        .expect("tapir has exited");
    let log = tapir.log();
    assert_eq!(
        status.code(),
        Some(1),
        "a failed device is a failure exit; log:\n{log}"
    );
    assert!(
        log.contains("device failed") && log.contains("was the interface deleted?"),
        "the log says what happened:\n{log}"
    );
    assert!(!log.contains("panicked"), "log:\n{log}");
    assert!(
        cpu < Duration::from_millis(500),
        "no spinning: {cpu:?} of CPU between the deletion and the exit"
    );
    eprintln!("tapir exited {took:?} after the TAP device was deleted, using {cpu:?} of CPU");
}

/// One curl transfer started in the background, its output and exit status in files.
struct Transfer {
    name: String,
    child: ChildGuard,
    body: std::path::PathBuf,
    /// The SHA-256 and length of a whole response body.
    want: (String, u64),
    /// Whether it is small enough to finish within the shutdown grace period.
    must_finish: bool,
}

fn start_transfer(
    ns: &Netns,
    name: &str,
    args: &[&str],
    want: (String, u64),
    must_finish: bool,
) -> Transfer {
    let body = ns.dir().join(format!("{name}.body"));
    let mut cmd = vec![
        "curl",
        "-sS",
        "--max-time",
        "30",
        "-o",
        body.to_str().unwrap(),
    ];
    cmd.extend_from_slice(args);
    let child = ChildGuard(
        ns.exec(&cmd)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(ns.dir().join(format!("{name}.err"))).expect("curl's stderr"))
            .spawn()
            .expect("start curl"),
    );
    Transfer {
        name: name.to_string(),
        child,
        body,
        want,
        must_finish,
    }
}

fn file_len(path: &Path) -> u64 {
    fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

#[test]
fn sigterm_with_uploads_and_downloads_in_flight() {
    let Some(ns) = tap_test!("stop-inflight", CURL) else {
        return;
    };
    // The kernel keeps what it received before a reset readable, and a rate-limited curl
    // reads it slowly: bound its receive buffer (this machine's tcp_rmem allows 32 MiB,
    // eight seconds at 4 MiB/s) so that the end of every transfer follows the reset closely.
    let sysctl = ns.run(&["sysctl", "-qw", "net.ipv4.tcp_rmem=4096 131072 4194304"]);
    assert!(sysctl.status.success(), "{}", output_text(&sysctl));
    let (tapir, cert) = ns.spawn_https(&[]);
    let cert_s = cert.to_str().unwrap().to_string();
    // 30 MB at 10 MB/s: 3 s each, so those in flight at the stop finish in the 5 s grace.
    let small = 30_000_000u64;
    let upload = ns.dir().join("upload.bin");
    write_random_file(&upload, small, 9);
    let upload_sha = sha256_file_hex(&upload);
    let upload_arg = upload.to_str().unwrap().to_string();
    let big_upload = ns.dir().join("big-upload.bin");
    write_random_file(&big_upload, 200_000_000, 10);
    let big_upload_arg = big_upload.to_str().unwrap().to_string();
    let big_upload_sha = sha256_file_hex(&big_upload);
    let pattern = (sha256_pattern_hex(small), small);
    let small_url = format!("/bytes/{small}");
    let mut transfers = Vec::new();
    for (i, proto) in ["--http1.1", "--http2", "--http2-prior-knowledge"]
        .iter()
        .enumerate()
    {
        let base = if i == 1 { HTTPS } else { HTTP };
        transfers.push(start_transfer(
            &ns,
            &format!("download{i}"),
            &[
                proto,
                "--cacert",
                &cert_s,
                "--limit-rate",
                "10M",
                &format!("{base}{small_url}"),
            ],
            pattern.clone(),
            true,
        ));
        transfers.push(start_transfer(
            &ns,
            &format!("upload{i}"),
            &[
                proto,
                "--cacert",
                &cert_s,
                "--limit-rate",
                "10M",
                "-T",
                &upload_arg,
                &format!("{base}/echo"),
            ],
            (upload_sha.clone(), small),
            true,
        ));
    }
    // Too big to finish in the grace period: these must end with an error, not hang and
    // not look complete.
    transfers.push(start_transfer(
        &ns,
        "slow-download",
        &["--limit-rate", "4M", &format!("{HTTP}/bytes/200000000")],
        (sha256_pattern_hex(200_000_000), 200_000_000),
        false,
    ));
    transfers.push(start_transfer(
        &ns,
        "slow-upload",
        &[
            "--http2",
            "--cacert",
            &cert_s,
            "--limit-rate",
            "4M",
            "-T",
            &big_upload_arg,
            &format!("{HTTPS}/echo"),
        ],
        (big_upload_sha, 200_000_000),
        false,
    ));
    // Let every transfer get going: eight connections established on the kernel's side.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let out = ns.run(&["ss", "-Htn", "state", "established", "dst", TAPIR_V4]);
        let open = String::from_utf8_lossy(&out.stdout).lines().count();
        if open >= 8 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {open} of 8 transfers in flight:\n{}",
            output_text(&out)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let (log, took) = tapir.stop_timed();
    assert!(
        took < Duration::from_secs(7),
        "the 5 s grace period bounds the stop: {took:?}"
    );
    assert!(!log.contains("panicked"), "log:\n{log}");
    // What tapir controls: every connection still open when it gave up was reset. Within
    // moments of its exit the kernel holds none of them established (or half-closed).
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let out = ns.run(&[
            "ss",
            "-Htn",
            "state",
            "established",
            "state",
            "close-wait",
            "dst",
            TAPIR_V4,
        ]);
        let open = output_text(&out);
        if open.trim().is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "connections still open 2 s after tapir exited (no RST reached them):\n{open}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut report = Vec::new();
    for mut t in transfers {
        // Nothing may hang: the connections are reset, so every curl ends once it has read
        // what the kernel buffered before the reset (at most the 4 MiB receive buffer set
        // above: about a second at the slow transfers' 4 MiB/s).
        let deadline = Instant::now() + Duration::from_secs(10);
        let code = loop {
            if let Some(s) = t.child.0.try_wait().expect("wait for curl") {
                break s.code();
            }
            assert!(
                Instant::now() < deadline,
                "{} still runs 10 s after its connection was reset ({} bytes)",
                t.name,
                file_len(&t.body)
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let got = file_len(&t.body);
        let err = fs::read_to_string(ns.dir().join(format!("{}.err", t.name))).unwrap_or_default();
        report.push(format!(
            "{}: exit {code:?}, {got} bytes {}",
            t.name,
            err.trim()
        ));
        if code == Some(0) {
            assert_eq!(
                (sha256_file_hex(&t.body), got),
                t.want,
                "{}: a response curl took as complete is whole",
                t.name
            );
        } else {
            assert!(
                !t.must_finish,
                "{} was in flight at the stop and small enough to finish: exit {code:?} {err}",
                t.name
            );
            assert!(got < t.want.1, "{}: an error, so not all of it", t.name);
        }
    }
    eprintln!("tapir stopped in {took:?}:\n{}", report.join("\n"));
}

/// A raw HTTP/2 client (python3, over cleartext h2c) that floods PINGs and reports the
/// GOAWAY error code it gets.
const PING_FLOOD: &str = r#"
import socket, struct, sys
s = socket.create_connection(("10.7.0.2", 80), timeout=10)
def frame(kind, flags, stream, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload
s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0, b""))
flood = b"".join(frame(6, 0, 0, struct.pack(">Q", i)) for i in range(20000))
code = None
buf = b""
try:
    s.sendall(flood)
except OSError:
    pass
try:
    while True:
        data = s.recv(65536)
        if not data:
            break
        buf += data
except OSError:
    pass
while len(buf) >= 9:
    n = int.from_bytes(buf[:3], "big")
    if buf[3] == 7 and len(buf) >= 9 + 8:
        code = int.from_bytes(buf[13:17], "big")
    buf = buf[9 + n:]
print("goaway", code)
"#;

#[test]
fn h2_ping_flood_over_tap_gets_goaway_while_curl_is_served() {
    let Some(ns) = tap_test!("h2-flood", PYTHON3, CURL) else {
        return;
    };
    let tapir = ns.spawn_http(&[]);
    let script = ns.dir().join("flood.py");
    fs::write(&script, PING_FLOOD).unwrap();
    let flood = ns
        .exec(&["python3", script.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the flood");
    // Meanwhile a well-behaved client.
    let mut served = 0;
    for _ in 0..20 {
        let out = ns.run(&[
            "curl",
            "-sS",
            "--max-time",
            "5",
            "--http2-prior-knowledge",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("{HTTP}/bytes/100000"),
        ]);
        assert!(out.status.success(), "curl:\n{}", output_text(&out));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
        served += 1;
    }
    let out = flood.wait_with_output().expect("flood ends");
    let text = output_text(&out);
    assert!(
        text.contains("goaway 11"),
        "the flooder gets GOAWAY ENHANCE_YOUR_CALM (11):\n{text}"
    );
    assert_eq!(served, 20);
    let stats = ns.stats(HTTP);
    assert!(
        json_u64(&stats, "connections_open") <= 1,
        "the flooder's connection is gone:\n{stats}"
    );
    assert!(tapir.log().contains("control frame flood"));
    tapir.stop();
}
