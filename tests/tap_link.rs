//! `tapir link` between two namespaces (scripts/linkpath.sh): the kernel's ping and curl
//! to tapir see the configured delay, and the configured loss. Needs root; skipped
//! otherwise.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::netns::{output_text, repo_root, run, spawn_tapir_in, TapirProcess};
use common::tap::{runs, CURL, PING};

const NGINX_SIDE: &str = "10.9.0.2";
const TAPIR_SERVE: &str = "10.9.0.4";

/// The two namespaces of scripts/linkpath.sh, removed on drop.
struct LinkPath {
    name: String,
    dir: PathBuf,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

impl LinkPath {
    fn up(tag: &str) -> LinkPath {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("tl-{tag}-{}-{n}", std::process::id());
        let dir = std::env::temp_dir().join(format!("{name}.d"));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let out = run(Self::script(&["up", &name]));
        assert!(
            out.status.success(),
            "linkpath.sh up: {}",
            output_text(&out)
        );
        LinkPath { name, dir }
    }

    fn script(args: &[&str]) -> Command {
        let mut command = Command::new(repo_root().join("scripts/linkpath.sh"));
        command.args(args).stdin(Stdio::null());
        command
    }

    fn client(&self) -> String {
        format!("{}-c", self.name)
    }

    fn server(&self) -> String {
        format!("{}-s", self.name)
    }

    /// Starts `tapir link` between the two namespaces with these impairment flags.
    fn link(&self, flags: &[&str]) -> TapirProcess {
        let server = self.server();
        let mut args = vec!["link", "--netns-b", &server, "tapl", "tapl"];
        args.extend_from_slice(flags);
        let link = spawn_tapir_in(&self.client(), &self.dir, &args);
        assert!(
            link.wait_for_log("ready: link", Duration::from_secs(10)),
            "tapir link did not start:\n{}",
            link.log()
        );
        link
    }

    /// Runs `cmd` in the client namespace.
    fn in_client(&self, cmd: &[&str]) -> std::process::Output {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.client()]).args(cmd);
        run(command)
    }
}

impl Drop for LinkPath {
    fn drop(&mut self) {
        let _ = Self::script(&["down", &self.name]).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The loss percentage of ping's summary.
fn ping_loss(text: &str) -> f64 {
    let loss = text
        .split(", ")
        .find_map(|part| part.strip_suffix("% packet loss"))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no loss figure in ping's output:\n{text}"));
    loss
}

#[test]
fn ping_and_curl_see_the_configured_round_trip() {
    if !runs(fn_name!(), &[PING, CURL]) {
        return;
    }
    let path = LinkPath::up("rtt");
    let link = path.link(&["--delay", "10ms", "--seed", "1"]);
    // The first ping also resolves the address (one more round trip): not counted.
    path.in_client(&["ping", "-c", "1", "-W", "2", NGINX_SIDE]);
    let out = path.in_client(&["ping", "-c", "20", "-i", "0.05", NGINX_SIDE]);
    let text = output_text(&out);
    let loss = ping_loss(&text);
    assert_eq!(loss, 0.0, "{text}");
    let mut rtts: Vec<f64> = text
        .lines()
        .filter_map(|l| l.split("time=").nth(1))
        .filter_map(|t| t.trim_end_matches(" ms").parse().ok())
        .collect();
    rtts.sort_by(f64::total_cmp);
    // Never early; late by the timer's millisecond per direction, and by scheduling on a
    // loaded machine (load averages of 15 on 2 CPUs are common here), so only a fifth of
    // the samples need to be close.
    assert!(
        rtts[0] >= 20.0,
        "an RTT below the configured 2 x 10 ms: {rtts:?}"
    );
    let close = rtts.iter().filter(|r| **r < 25.0).count();
    assert!(
        close * 5 >= rtts.len(),
        "only {close} of {} RTTs within 20..25 ms: {rtts:?}",
        rtts.len()
    );

    // tapir's TCP behind the link: the handshake takes one round trip.
    let serve = spawn_tapir_in(
        &path.server(),
        &path.dir,
        &[
            "serve",
            "--tap",
            "taps",
            "--ip",
            &format!("{TAPIR_SERVE}/24"),
            "--no-https",
        ],
    );
    assert!(
        serve.wait_for_log("ready: HTTP on port", Duration::from_secs(10)),
        "{}",
        serve.log()
    );
    path.in_client(&["ping", "-c", "1", "-W", "2", TAPIR_SERVE]);
    let url = format!("http://{TAPIR_SERVE}/bytes/1000");
    // The fastest of a few, as scheduling on a loaded machine only ever adds.
    let connect = (0..5)
        .map(|_| {
            let out = path.in_client(&[
                "curl",
                "-sS",
                "-o",
                "/dev/null",
                "--max-time",
                "10",
                "-w",
                "%{time_connect}",
                &url,
            ]);
            assert!(out.status.success(), "curl: {}", output_text(&out));
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            text.trim().parse::<f64>().expect("a time")
        })
        .fold(f64::MAX, f64::min);
    assert!(
        (0.0195..0.025).contains(&connect),
        "fastest TCP handshake through the link took {connect} s, configured RTT 20 ms"
    );
    serve.stop();
    let log = link.stop();
    assert!(log.contains(" 0 lost"), "no loss configured:\n{log}");
}

#[test]
fn the_configured_loss_applies_in_each_direction() {
    if !runs(fn_name!(), &[PING]) {
        return;
    }
    let path = LinkPath::up("loss");
    let link = path.link(&["--loss", "20%", "--seed", "3"]);
    // Resolve the address first (ARP may itself be lost: a few tries).
    path.in_client(&["ping", "-c", "5", "-i", "0.05", "-W", "1", NGINX_SIDE]);
    let out = path.in_client(&[
        "ping", "-q", "-c", "300", "-i", "0.005", "-W", "1", NGINX_SIDE,
    ]);
    let loss = ping_loss(&output_text(&out));
    // Each echo survives both directions: 1 - 0.8² = 36% lost on average.
    assert!(
        (22.0..=50.0).contains(&loss),
        "{loss}% of pings lost, expected about 36%"
    );
    let log = link.stop();
    let lost: Vec<u64> = log
        .lines()
        .filter(|l| l.starts_with("link "))
        .filter_map(|l| {
            l.split(", ")
                .find_map(|p| p.strip_suffix(" lost"))
                .and_then(|n| n.parse().ok())
        })
        .collect();
    assert_eq!(lost.len(), 2, "one counter line per direction:\n{log}");
    assert!(
        lost.iter().all(|n| *n > 30),
        "both directions lose frames:\n{log}"
    );
}
