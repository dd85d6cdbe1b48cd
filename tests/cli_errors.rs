//! What the `tapir` binary says when a command is wrong: the exit status and the exact
//! error line on stderr. Flags are checked before the TAP device is touched, so these need
//! no device; as root each runs in a network namespace of its own (`unshare --net`), so a
//! regression that created a device would create it there. The last tests need a TAP
//! device in a namespace (root).

mod common;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::netns::{effective_uid, have_tool, ChildGuard, KERNEL_V4, KERNEL_V6, TAP};
use common::tap::PYTHON3;

/// Runs `tapir ARGS` (in a throwaway network namespace when root).
fn tapir(args: &[&str]) -> Output {
    let bin = env!("CARGO_BIN_EXE_tapir");
    let mut command = if effective_uid() == Some(0) && have_tool("unshare") {
        let mut c = Command::new("unshare");
        c.args(["--net", bin]);
        c
    } else {
        Command::new(bin)
    };
    command
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .expect("run tapir")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts exit status 1 and that stderr is exactly `tapir: MESSAGE` (no log line before
/// it: nothing was set up, no device was created).
fn fails_with(args: &[&str], message: &str) {
    let out = tapir(args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
    assert_eq!(err, format!("tapir: {message}\n"), "{args:?}");
}

/// The flags every device command needs, with a TAP name nobody uses.
const TAP_FLAG: [&str; 2] = ["--tap", "tapir-cli-x"];

fn with_tap<'a>(command: &'a str, rest: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![command];
    args.extend_from_slice(&TAP_FLAG);
    args.extend_from_slice(rest);
    args
}

#[test]
fn get_rejects_bad_urls_with_the_reason() {
    for (url, reason) in [
        ("http://10.7.0.1:99999/", "port 99999 is not 1 to 65535"),
        ("http://10.7.0.1:0/", "port 0 is not 1 to 65535"),
        ("http:///", "no host after 'http://'"),
        ("http://", "no host after 'http://'"),
        (
            "10.7.0.1:8000/x",
            "no scheme: write http://10.7.0.1:8000/x or https://10.7.0.1:8000/x",
        ),
        ("ftp://10.7.0.1/", "unsupported scheme 'ftp'"),
    ] {
        fails_with(
            &with_tap("get", &[url]),
            &format!("bad URL '{url}': {reason}"),
        );
    }
}

#[test]
fn proxy_rejects_a_bad_upstream_url() {
    let out = tapir(&with_tap("proxy", &["--upstream", "http:///"]));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out)
            .contains("invalid value 'http:///' for '--upstream <URL>': no host after 'http://'"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn serve_checks_every_flag_before_the_device() {
    let dir = std::env::temp_dir().join(format!("tapir-cli-{}", std::process::id()));
    let missing = dir.join("missing");
    let missing_file = format!("{}/x.pem", missing.display());
    for (extra, message) in [
        (
            vec!["--http", "443", "--https", "443"],
            "--http and --https are both 443".to_string(),
        ),
        (
            vec!["--http", "0"],
            "--http 0 is not a port (1 to 65535)".into(),
        ),
        (
            vec![
                "--cert",
                "/nonexistent/c.pem",
                "--key",
                "/nonexistent/k.pem",
            ],
            "/nonexistent/c.pem: file not found".into(),
        ),
        (
            vec!["--root", "/nonexistent/site"],
            "--root /nonexistent/site: No such file or directory (os error 2)".into(),
        ),
        (
            vec!["--save-cert", &missing_file],
            format!(
                "--save-cert {missing_file}: no directory {}",
                missing.display()
            ),
        ),
        (
            vec!["--gateway", "192.168.9.1"],
            "--gateway 192.168.9.1 is outside every subnet of the stack \
             (10.7.0.2/24, fd00:7::2/64): it could never be reached"
                .into(),
        ),
        (
            vec!["--pcap", "/nonexistent/x.pcap"],
            "--pcap /nonexistent/x.pcap: no such directory".into(),
        ),
        (
            vec!["--tcp-keepalive", "100"],
            "--tcp-keepalive (100) must be between 1 and --tcp-timeout (60) less 1: \
             without probes answered in time, idle connections would be aborted"
                .into(),
        ),
    ] {
        fails_with(&with_tap("serve", &extra), &message);
    }
}

#[test]
fn a_gateway_on_a_subnet_or_link_local_is_accepted() {
    // These get past the flag checks: the error is about the device, not the gateway.
    for gateway in ["10.7.0.1", "fd00:7::1", "fe80::1"] {
        let long = "x".repeat(16);
        let out = tapir(&["serve", "--tap", &long, "--gateway", gateway]);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            stderr(&out).contains("interface names are 1 to 15 bytes"),
            "--gateway {gateway}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn errors_are_not_doubled() {
    fails_with(
        &["replay", "/nonexistent/x.pcap"],
        "/nonexistent/x.pcap: No such file or directory (os error 2)",
    );
    let long = "x".repeat(16);
    fails_with(
        &["echo", "--tap", &long],
        &format!("TAP device {long}: checking the name: interface names are 1 to 15 bytes"),
    );
}

#[test]
fn replay_of_a_directory_says_so() {
    let dir = common::netns::repo_root().join("captures");
    fails_with(
        &["replay", dir.to_str().unwrap()],
        &format!("{}: Is a directory (os error 21)", dir.display()),
    );
}

#[test]
fn replay_exact_fails_when_nothing_was_compared() {
    let capture = common::netns::repo_root().join("captures/real/curl-get-nginx.pcap");
    fails_with(
        &["replay", "--exact", capture.to_str().unwrap()],
        "no frame of the capture comes from the server's MAC 02-00-00-00-00-02: nothing to \
         compare (--exact replays captures recorded in deterministic mode, like \
         captures/golden/; --mac names the server; for other captures use live replay, \
         without --exact)",
    );
    // A golden capture still replays.
    let golden = common::netns::repo_root().join("captures/golden/http1.pcap");
    let out = tapir(&["replay", "--exact", golden.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Every server frame of the capture compared (how many depends on the capture).
    let text = stdout(&out);
    let identical: usize = text
        .split(" client frames replayed, ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        identical > 0 && text.contains(" server frames identical"),
        "{text}"
    );
}

#[test]
fn replay_expect_hints_at_root_and_counts_in_words() {
    let capture = common::netns::repo_root().join("captures/real/curl-get-nginx.pcap");
    let out = tapir(&["replay", "--expect", "--fast", capture.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains(": 1 flow replayed, 1 exchange, in "),
        "{text}"
    );
    assert!(
        text.contains("MISMATCH flow 0 exchange 1 (GET /): body length expected 446, got"),
        "{text}"
    );
    assert!(
        text.contains("hint: the built-in site answered; if the capture's server served files, replay with --root DIR"),
        "{text}"
    );
    assert_eq!(
        stderr(&out)
            .lines()
            .filter(|l| l.starts_with("tapir: "))
            .collect::<Vec<_>>(),
        ["tapir: exchanges that differ from the capture: 1 of 1"]
    );
    // With the files the capture's server had, it matches, and no hint is printed.
    let site = common::netns::repo_root().join("captures/real/site");
    let out = tapir(&[
        "replay",
        "--expect",
        "--fast",
        "--root",
        site.to_str().unwrap(),
        capture.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(!stdout(&out).contains("hint:"), "{}", stdout(&out));
}

#[test]
fn replay_prints_ipv6_endpoints_in_brackets() {
    let capture = common::netns::repo_root().join("captures/real/curl-ipv6-nginx.pcapng");
    let out = tapir(&["replay", "--fast", capture.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("flow 0 [fd00:"), "{text}");
    // The access log (stderr) names the client the same way.
    assert!(stderr(&out).contains(" [fd00:7::1]:"), "{}", stderr(&out));
}

/// A second tapir on a TAP device another tapir holds: says so, once.
#[test]
fn a_busy_tap_device_is_named_as_such() {
    let Some(ns) = tap_test!("cli-busy") else {
        return;
    };
    let first = ns.spawn_tapir(&["echo", "--tap", TAP]);
    assert!(
        first.wait_for_log("ready: echo on port 7", Duration::from_secs(10)),
        "{}",
        first.log()
    );
    let bin = common::netns::tapir_bin();
    let out = ns
        .exec(&[bin.to_str().unwrap(), "serve", "--tap", TAP])
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .expect("run tapir");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "tapir: TAP device tap0 is in use: another process (another tapir?) holds it\n"
    );
    let (status, log) = first.terminate();
    assert!(status.success(), "{log}");
}

/// `get --http2` against an HTTP/1-only server, and errors naming IPv6 peers.
#[test]
fn get_http2_against_an_http1_server_says_so() {
    let Some(ns) = tap_test!("cli-h1only", PYTHON3) else {
        return;
    };
    // python's server answers an HTTP/2 preface with a bare HTML error page; an HTTP/1
    // status line is checked in the client's unit tests.
    let _server = ChildGuard(
        ns.exec(&["python3", "-m", "http.server", "--bind", "::", "8000"])
            .current_dir(ns.dir())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start python3 -m http.server"),
    );
    let get = |args: &[&str]| {
        let bin = common::netns::tapir_bin();
        let mut cmd = vec![bin.to_str().unwrap(), "get", "--tap", TAP, "--log", "warn"];
        cmd.extend_from_slice(args);
        let cmd: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
        let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
        ns.exec(&cmd)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .output()
            .expect("run tapir get")
    };
    // Wait for the server: a plain HTTP/1 get succeeds.
    let url = format!("http://{KERNEL_V4}:8000/");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let out = get(&[&url]);
        if out.status.success() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "python's server never answered: {}",
            stderr(&out)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = get(&["--http2", &url]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!(
            "tapir get: {url}: protocol error: the server does not speak HTTP/2: its first bytes \
             are not an HTTP/2 SETTINGS frame\n"
        )),
        "{}",
        stderr(&out)
    );
    assert!(
        !stderr(&out).contains("frame with invalid size"),
        "{}",
        stderr(&out)
    );
    // Refused on IPv6: the address is in brackets.
    let out = get(&[&format!("http://[{KERNEL_V6}]:81/")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!("connection refused by [{KERNEL_V6}]:81")),
        "{}",
        stderr(&out)
    );
}
