//! The fixture of the TAP tests: the preamble every one of them starts with (root or a
//! recorded skip, the tools it drives, a fresh namespace), starting `tapir serve`, curl
//! runs, and reading tapir's last log line. Each test then asserts what it is about.
//!
//! ```ignore
//! let Some(ns) = tap_test!("h1-get", CURL, PYTHON3) else {
//!     return;
//! };
//! let tapir = ns.spawn_http(&[]);
//! ```

use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use super::netns::{
    count_before, json_u64, output_text, require_root, require_tool, Netns, TapirProcess,
};

/// A program a TAP test drives, and the Debian package that installs it (the hint given
/// when it is missing; `scripts/deps.sh` installs them all).
#[derive(Clone, Copy, Debug)]
pub struct Tool {
    pub program: &'static str,
    pub package: &'static str,
}

pub const CURL: Tool = Tool {
    program: "curl",
    package: "curl",
};
pub const PYTHON3: Tool = Tool {
    program: "python3",
    package: "python3",
};
pub const OPENSSL: Tool = Tool {
    program: "openssl",
    package: "openssl",
};
pub const PING: Tool = Tool {
    program: "ping",
    package: "iputils-ping",
};
pub const TSHARK: Tool = Tool {
    program: "tshark",
    package: "tshark",
};
pub const NGHTTP: Tool = Tool {
    program: "nghttp",
    package: "nghttp2-client",
};
pub const H2LOAD: Tool = Tool {
    program: "h2load",
    package: "nghttp2-client",
};
pub const WRK: Tool = Tool {
    program: "wrk",
    package: "wrk",
};
pub const SOCAT: Tool = Tool {
    program: "socat",
    package: "socat",
};
pub const NGINX: Tool = Tool {
    program: "nginx",
    package: "nginx-light",
};
pub const DNSMASQ: Tool = Tool {
    program: "dnsmasq",
    package: "dnsmasq-base",
};

/// The name of the function this expands in (a test's name, for its skip record).
#[macro_export]
macro_rules! fn_name {
    () => {{
        fn here() {}
        let path = std::any::type_name_of_val(&here);
        let path = path.strip_suffix("::here").unwrap_or(path);
        path.rsplit("::").next().unwrap_or(path)
    }};
}

/// The preamble of a TAP test, in the test function itself:
/// `let Some(ns) = tap_test!("tag", CURL, PYTHON3) else { return; };` records the test
/// (by its function's name) as skipped and gives `None` without root; as root it fails
/// with the install hint when a tool is missing, and otherwise gives a fresh namespace
/// tagged `tag` (see [`begin`]).
#[macro_export]
macro_rules! tap_test {
    ($tag:expr $(, $tool:expr)* $(,)?) => {
        $crate::common::tap::begin($crate::fn_name!(), $tag, &[$($tool),*])
    };
}

/// Whether test `test` runs (see [`require_root`]), and then that every tool in `tools` is
/// installed ([`require_tool`]).
pub fn runs(test: &str, tools: &[Tool]) -> bool {
    if !require_root(test) {
        return false;
    }
    for tool in tools {
        require_tool(tool.program, tool.package);
    }
    true
}

/// [`runs`], then a namespace tagged `tag` ([`Netns::up`]); `None` when the test is skipped.
pub fn begin(test: &str, tag: &str, tools: &[Tool]) -> Option<Netns> {
    runs(test, tools).then(|| Netns::up(tag))
}

/// tapir's last words: the `stopped (...): N frames in, M out, ... A accepted, C closed`
/// line of `log`.
pub fn stopped_line(log: &str) -> &str {
    log.lines()
        .find(|l| l.contains("stopped ("))
        .unwrap_or_else(|| panic!("no 'stopped (' line in the log:\n{log}"))
}

/// Asserts tapir's last line says every connection it accepted was closed.
pub fn assert_all_closed(log: &str) {
    let line = stopped_line(log);
    assert_eq!(
        count_before(line, "accepted"),
        count_before(line, "closed"),
        "connections accepted vs closed: {line}"
    );
}

impl Netns {
    /// Starts `tapir serve` on HTTP only (port 80) with `extra` flags.
    pub fn spawn_http(&self, extra: &[&str]) -> TapirProcess {
        let mut args = vec!["--no-https"];
        args.extend_from_slice(extra);
        self.spawn_serve(&args)
    }

    /// Starts `tapir serve` on HTTP (80) and HTTPS (443) with `extra` flags and its
    /// self-signed certificate saved where clients can trust it; returns tapir and the
    /// certificate's path.
    pub fn spawn_https(&self, extra: &[&str]) -> (TapirProcess, PathBuf) {
        let cert = self.dir().join("cert.pem");
        let cert_arg = cert.to_str().expect("a UTF-8 temp path").to_string();
        let mut args = vec!["--save-cert", &cert_arg];
        args.extend_from_slice(extra);
        let tapir = self.spawn_serve(&args);
        assert!(cert.exists(), "--save-cert wrote no {}", cert.display());
        (tapir, cert)
    }

    /// Runs `curl -sS --max-time 10 ARGS` in the namespace; asserts it succeeds and returns
    /// what it wrote to stdout.
    pub fn curl(&self, args: &[&str]) -> String {
        let mut cmd = vec!["curl", "-sS", "--max-time", "10"];
        cmd.extend_from_slice(args);
        let out = self.run(&cmd);
        assert!(out.status.success(), "{cmd:?}:\n{}", output_text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// [`Netns::curl`] with `-w '\n%{http_code} %{http_version}'`: returns the body and
    /// "code version" (like "200 2").
    pub fn curl_with_status(&self, args: &[&str]) -> (String, String) {
        let mut cmd = vec!["-w", "\n%{http_code} %{http_version}"];
        cmd.extend_from_slice(args);
        let stdout = self.curl(&cmd);
        let (body, status) = stdout.rsplit_once('\n').expect("curl's -w line");
        (body.to_string(), status.to_string())
    }

    /// Downloads `url` into `to` with curl (60 s at most); asserts a 200.
    pub fn curl_download(&self, url: &str, to: &Path) {
        let to = to.to_str().expect("a UTF-8 temp path");
        let code = self.curl(&["--max-time", "60", "-o", to, "-w", "%{http_code}", url]);
        assert_eq!(code, "200", "status of {url}");
    }

    /// Waits up to `within` until `/stats` (at `url_base`) shows only the stats request's
    /// own connection open and at most `tcp` TCP connections (it, and ones still closing),
    /// so nothing leaked; returns the stats.
    pub fn assert_back_to_baseline(&self, url_base: &str, tcp: u64, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let stats = self.stats(url_base);
            let open = json_u64(&stats, "connections_open");
            if open <= 1 && json_u64(&stats, "tcp_connections") <= tcp {
                return stats;
            }
            assert!(
                Instant::now() < deadline,
                "connections still open {within:?} after the clients finished (want \
                 connections_open <= 1, tcp_connections <= {tcp}):\n{stats}"
            );
            thread::sleep(Duration::from_millis(200));
        }
    }
}

impl TapirProcess {
    /// Stops tapir with SIGTERM and asserts it exited with status 0; returns its log and
    /// how long it took to exit.
    pub fn stop_timed(self) -> (String, Duration) {
        let pid = self.pid();
        let started = Instant::now();
        let (status, log) = self.terminate();
        let took = started.elapsed();
        assert!(
            status.success(),
            "tapir (pid {pid}) exited with {status} after SIGTERM; log:\n{log}"
        );
        (log, took)
    }
}
