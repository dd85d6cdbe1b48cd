//! Network namespaces with a TAP device, for tests that run the `tapir` binary against the
//! kernel's own TCP/IP stack.
//!
//! Every [`Netns`] is a fresh namespace made by `scripts/netns.sh` with a unique name; the
//! TAP device, tapir and the kernel-side clients all live inside it, so no traffic leaves
//! it. Dropping the guard removes the namespace (and with it the TAP device), also when the
//! test panics. All of this needs root: call [`require_root`] first and return when it says
//! the test is skipped.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// The TAP device `Netns::up` creates in every namespace.
pub const TAP: &str = "tap0";

/// The kernel side of the TAP and the stack's default addresses.
pub const KERNEL_V4: &str = "10.7.0.1";
pub const KERNEL_V6: &str = "fd00:7::1";
pub const TAPIR_V4: &str = "10.7.0.2";
pub const TAPIR_V6: &str = "fd00:7::2";

/// How long tapir may take to exit after SIGTERM before it is killed. tapir gives open
/// connections a 5 s grace period, so this is longer.
pub const TERMINATE_TIMEOUT: Duration = Duration::from_secs(10);

/// The repository root (where `scripts/netns.sh` is).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// An example Cargo built next to these tests (`cargo test` builds the examples too).
/// Fails with the command that builds it when it is missing.
pub fn example_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    // target/<profile>/deps/<test> → target/<profile>/examples/<name>
    let path = exe
        .parent()
        .and_then(Path::parent)
        .map(|profile| profile.join("examples").join(name))
        .expect("the test runs from target/<profile>/deps");
    assert!(
        path.exists(),
        "example {name} not built at {}: run `cargo build --release --example {name}`",
        path.display()
    );
    path
}

/// The `tapir` binary Cargo built for these tests.
pub fn tapir_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tapir"))
}

/// Writes a line to the real stdout and stderr, past the test harness's output capture (it
/// captures only `print!`-style macros), so the line shows even when the test passes.
fn announce(line: &str) {
    let line = format!("{line}\n");
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
    let _ = std::io::stdout().lock().write_all(line.as_bytes());
}

/// Whether `program` is on PATH.
pub fn have_tool(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            let candidate = dir.join(program);
            fs::metadata(&candidate).is_ok_and(|m| m.is_file())
        })
    })
}

/// Records a skipped test: `SKIPPED <test>: <reason>` on the real stdout and stderr, and a
/// line in the file named by `TAPIR_SKIP_LOG` (set by `scripts/test.sh`, which ends with a
/// count of the skipped tests and why).
fn skip(test: &str, reason: &str) {
    announce(&format!("SKIPPED {test}: {reason}"));
    if let Some(path) = std::env::var_os("TAPIR_SKIP_LOG") {
        if let Ok(mut file) = fs::OpenOptions::new().append(true).create(true).open(path) {
            let _ = writeln!(file, "{test}: {reason}");
        }
    }
}

/// True when this test can make namespaces and TAP devices (running as root). Otherwise
/// records the test as skipped (see [`skip`]) and returns false; the test should return at
/// once, so a run without root says what it skipped instead of passing silently. As root,
/// a missing `ip` fails the test like any other missing tool ([`require_tool`]).
pub fn require_root(test: &str) -> bool {
    if effective_uid() != Some(0) {
        skip(test, "needs root for TAP devices and network namespaces");
        return false;
    }
    require_tool("ip", "iproute2");
    true
}

/// Fails the test with an install hint when a tool a TAP test drives is missing. Only root
/// runs get here (after [`require_root`]), and `scripts/test.sh` installs every tool
/// first (`scripts/deps.sh`), so a missing tool is a broken set-up, never a skip.
pub fn require_tool(program: &str, package: &str) {
    assert!(
        have_tool(program),
        "`{program}` is not installed (or not on PATH; nginx and dnsmasq are in /usr/sbin): \
         run scripts/deps.sh as root, or apt-get install {package}"
    );
}

/// A network namespace with TAP device [`TAP`] (kernel side 10.7.0.1/24, fd00:7::1/64) and a
/// scratch directory for logs and captures. Removed again on drop.
pub struct Netns {
    name: String,
    dir: PathBuf,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

impl Netns {
    /// Makes a namespace named after `tag`, this process and a counter, so parallel tests
    /// and concurrent test runs never collide.
    pub fn up(tag: &str) -> Netns {
        let tag: String = tag
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .take(24)
            .collect();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("tapir-{tag}-{}-{n}", std::process::id());
        let dir = std::env::temp_dir().join(format!("{name}.d"));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create the test's temp dir");
        let script = repo_root().join("scripts/netns.sh");
        let out = Command::new(&script)
            .args(["up", &name, TAP])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
        if !out.status.success() {
            let _ = fs::remove_dir_all(&dir);
            panic!(
                "netns.sh up {name} failed ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Netns { name, dir }
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A scratch directory for this namespace's files; removed on drop unless the test
    /// failed.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `ip netns exec NAME cmd...`, ready to run. `ip netns exec` execs the command, so the
    /// child's PID is the command's own.
    pub fn exec(&self, cmd: &[&str]) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).args(cmd);
        command
    }

    /// Starts the tapir binary with `args` (for example `["echo", "--tap", TAP]`) inside the
    /// namespace, its stderr (the log) going to a file in [`Netns::dir`].
    pub fn spawn_tapir(&self, args: &[&str]) -> TapirProcess {
        spawn_tapir_in(&self.name, &self.dir, args)
    }

    /// Starts the program `bin` (an example) with `args` inside the namespace, like
    /// [`Netns::spawn_tapir`].
    pub fn spawn_program(&self, bin: &Path, args: &[&str]) -> TapirProcess {
        spawn_program_in(&self.name, &self.dir, bin, args)
    }
}

/// Starts the tapir binary with `args` inside namespace `netns`, its stderr (the log) going
/// to a file in `dir`.
pub fn spawn_tapir_in(netns: &str, dir: &Path, args: &[&str]) -> TapirProcess {
    spawn_program_in(netns, dir, &tapir_bin(), args)
}

/// Starts the program `bin` (tapir, or one of its examples) with `args` inside namespace
/// `netns`, its stderr (the log) going to a file in `dir`.
pub fn spawn_program_in(netns: &str, dir: &Path, bin: &Path, args: &[&str]) -> TapirProcess {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let log = dir.join(format!("tapir-{n}.log"));
    let stderr = File::create(&log).expect("create tapir's log file");
    let mut command = Command::new("ip");
    command
        .args(["netns", "exec", netns])
        .arg(bin)
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    let child = command
        .spawn()
        .unwrap_or_else(|e| panic!("starting {} in {netns}: {e}", bin.display()));
    TapirProcess {
        pid: child.id(),
        child: Some(child),
        log,
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // netns.sh down ends whatever still runs inside (TERM, then KILL) before deleting.
        let script = repo_root().join("scripts/netns.sh");
        match Command::new(&script)
            .args(["down", &self.name])
            .stdin(Stdio::null())
            .output()
        {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!(
                "netns.sh down {} failed ({}): {}",
                self.name,
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => eprintln!("running netns.sh down {}: {e}", self.name),
        }
        if thread::panicking() {
            eprintln!("kept {} for inspection", self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// A running tapir. Killed (SIGKILL) on drop if [`TapirProcess::terminate`] was not called.
pub struct TapirProcess {
    child: Option<Child>,
    pid: u32,
    log: PathBuf,
}

impl TapirProcess {
    /// tapir's process ID.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Where its log goes.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the process is still running (not exited, not a zombie).
    pub fn is_running(&self) -> bool {
        match fs::read_to_string(format!("/proc/{}/stat", self.pid)) {
            Ok(stat) => stat_fields(&stat).is_some_and(|f| f[0] != "Z" && f[0] != "X"),
            Err(_) => false,
        }
    }

    /// Waits until the log contains `needle`; false when `timeout` passes first or tapir
    /// exits without printing it.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log().contains(needle) {
                return true;
            }
            if !self.is_running() {
                // It may have printed the line just before exiting.
                return self.log().contains(needle);
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process's resident memory (VmRSS), in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid))
            .unwrap_or_else(|e| panic!("reading /proc/{}/status: {e}", self.pid));
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }

    /// Sleeps `window` and returns the CPU time the process used meanwhile, the wall time
    /// that passed, and their ratio (the share of one core).
    pub fn cpu_over(&self, window: Duration) -> (Duration, Duration, f64) {
        let cpu_before = self.cpu_time();
        let wall = Instant::now();
        thread::sleep(window);
        let cpu = self.cpu_time().saturating_sub(cpu_before);
        let wall = wall.elapsed();
        (cpu, wall, cpu.as_secs_f64() / wall.as_secs_f64())
    }

    /// CPU time (user + system) the process has used so far, from /proc/PID/stat.
    pub fn cpu_time(&self) -> Duration {
        let stat = fs::read_to_string(format!("/proc/{}/stat", self.pid))
            .unwrap_or_else(|e| panic!("reading /proc/{}/stat: {e}", self.pid));
        let fields = stat_fields(&stat).expect("parse /proc/PID/stat");
        // Fields 14 and 15 of stat(5); `fields` starts at field 3 (state).
        let utime: u64 = fields[11].parse().expect("utime");
        let stime: u64 = fields[12].parse().expect("stime");
        // /proc/PID/stat counts in USER_HZ, which is 100 on Linux whatever the kernel's HZ.
        const USER_HZ: f64 = 100.0;
        Duration::from_secs_f64((utime + stime) as f64 / USER_HZ)
    }

    /// Stops tapir with SIGTERM, checks it exited with status 0, and returns its log.
    pub fn stop(self) -> String {
        let (status, log) = self.terminate();
        assert!(status.success(), "tapir exited with {status}; log:\n{log}");
        log
    }

    /// Waits up to `timeout` for tapir to exit on its own; returns its status, or None if
    /// it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut().expect("tapir process");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("wait for tapir") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM and waits for tapir to exit ([`TERMINATE_TIMEOUT`], then SIGKILL).
    /// Returns the exit status and the whole log.
    pub fn terminate(mut self) -> (ExitStatus, String) {
        let mut child = self.child.take().expect("tapir process");
        signal(self.pid, libc::SIGTERM);
        let deadline = Instant::now() + TERMINATE_TIMEOUT;
        let status = loop {
            match child.try_wait().expect("wait for tapir") {
                Some(status) => break status,
                None if Instant::now() >= deadline => {
                    eprintln!(
                        "tapir (pid {}) still running {TERMINATE_TIMEOUT:?} after SIGTERM; killing it",
                        self.pid
                    );
                    let _ = child.kill();
                    break child.wait().expect("wait for tapir");
                }
                None => thread::sleep(Duration::from_millis(20)),
            }
        };
        (status, self.log())
    }
}

impl Drop for TapirProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            if thread::panicking() {
                eprintln!("--- tapir log ({}) ---\n{}", self.log.display(), self.log());
            }
        }
    }
}

/// A helper process (a kernel-side client) that is killed and reaped on drop.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The effective user id of this process, from /proc (no `unsafe` outside the device
/// module, tests included).
pub fn effective_uid() -> Option<u32> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    // Uid: real effective saved filesystem
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Sends `signal` (a number, like `libc::SIGTERM`) to `pid` with kill(1).
fn signal(pid: u32, signal: libc::c_int) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid} failed");
}

/// The fields of a /proc/PID/stat line after the command name (which may hold spaces and
/// parentheses): index 0 is the state (field 3 of stat(5)).
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    (fields.len() >= 13).then_some(fields)
}

/// Runs `command` to completion with stdin closed and returns its output.
pub fn run(mut command: Command) -> std::process::Output {
    command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {command:?}: {e}"))
}

/// A command's stdout and stderr as one text, for assertions and failure messages.
pub fn output_text(out: &std::process::Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// How long `tapir serve` may take to print its ready lines.
pub const SERVE_START_TIMEOUT: Duration = Duration::from_secs(10);

impl Netns {
    /// Runs `cmd` inside the namespace to completion (stdin closed).
    pub fn run(&self, cmd: &[&str]) -> std::process::Output {
        run(self.exec(cmd))
    }

    /// Starts `tapir serve --tap TAP` with `extra` flags and waits until it prints
    /// `ready: HTTP on port` and `ready: HTTPS on port` (each unless `--no-http` or
    /// `--no-https` is among `extra`).
    pub fn spawn_serve(&self, extra: &[&str]) -> TapirProcess {
        let mut args = vec!["serve", "--tap", TAP];
        args.extend_from_slice(extra);
        let tapir = self.spawn_tapir(&args);
        let mut needles = Vec::new();
        if !extra.contains(&"--no-http") {
            needles.push("ready: HTTP on port");
        }
        if !extra.contains(&"--no-https") {
            needles.push("ready: HTTPS on port");
        }
        for needle in needles {
            assert!(
                tapir.wait_for_log(needle, SERVE_START_TIMEOUT),
                "tapir serve did not print '{needle}' within {SERVE_START_TIMEOUT:?}; log:\n{}",
                tapir.log()
            );
        }
        tapir
    }

    /// The built-in site's `/stats` page, fetched with curl over cleartext HTTP/1.1 from
    /// `url_base` (like `http://10.7.0.2`).
    pub fn stats(&self, url_base: &str) -> String {
        let url = format!("{url_base}/stats");
        let out = self.run(&["curl", "-sS", "--max-time", "10", &url]);
        assert!(
            out.status.success(),
            "curl {url} failed:\n{}",
            output_text(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// The number after `"key":` in a flat JSON object such as tapir's `/stats`.
pub fn json_u64(json: &str, key: &str) -> u64 {
    let quoted = format!("\"{key}\"");
    let at = json
        .find(&quoted)
        .unwrap_or_else(|| panic!("no {quoted} in:\n{json}"));
    let rest = json[at + quoted.len()..].trim_start();
    let rest = rest
        .strip_prefix(':')
        .unwrap_or_else(|| panic!("no ':' after {quoted} in:\n{json}"))
        .trim_start();
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("{quoted} is not a number in:\n{json}"))
}

/// Writes `len` bytes from a seeded generator to `path`, in chunks (no whole-file buffer).
pub fn write_random_file(path: &Path, len: u64, seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut file = std::io::BufWriter::new(
        File::create(path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display())),
    );
    let mut chunk = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        rng.fill(&mut chunk[..n]);
        file.write_all(&chunk[..n]).expect("write random data");
        left -= n as u64;
    }
    file.flush().expect("flush random data");
}

/// SHA-256 of a file, streamed, as lowercase hex.
pub fn sha256_file_hex(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    let mut file = File::open(path).unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    hex(&hasher.finalize())
}

/// SHA-256, as lowercase hex, of the first `len` bytes of the built-in `/bytes/N` pattern
/// (byte `i` is `b"tapir-bytes-0123456789\n"[i % 23]`).
pub fn sha256_pattern_hex(len: u64) -> String {
    use sha2::{Digest, Sha256};
    const PATTERN: &[u8; 23] = b"tapir-bytes-0123456789\n";
    let block: Vec<u8> = (0..PATTERN.len() * 4096)
        .map(|i| PATTERN[i % PATTERN.len()])
        .collect();
    let mut hasher = Sha256::new();
    let mut left = len;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        hasher.update(&block[..n]);
        left -= n as u64;
    }
    hex(&hasher.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The number just before ` word` in `line` (as in tapir's `... 9 accepted, 9 closed` or
/// h2load's `... 20000 succeeded, 0 failed`).
pub fn count_before(line: &str, word: &str) -> u64 {
    let at = line
        .find(&format!(" {word}"))
        .unwrap_or_else(|| panic!("no '{word}' in '{line}'"));
    line[..at]
        .rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count before '{word}' in '{line}'"))
}
