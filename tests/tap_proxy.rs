//! `tapir proxy` on a TAP device, between curl / h2load and nginx, all in one namespace:
//! the clients and nginx run on the kernel side (10.7.0.1), tapir's stack is 10.7.0.2; the
//! proxy reaches nginx through its own client side, across the TAP device.
//!
//! Each test makes its own namespace and needs root (and nginx, openssl, curl; h2load for
//! the reverse test); without them it prints `SKIPPED <test>: ...` and returns.

mod common;

use std::fs;
use std::process::Output;
use std::time::Duration;

use common::netns::{output_text, Netns, TapirProcess, KERNEL_V4, TAP, TAPIR_V4};
use common::nginx::{sha256_file, start_nginx};
use common::tap::{CURL, H2LOAD, NGINX, OPENSSL};

const PROXY_PORT: &str = "3128";

fn spawn_proxy(ns: &Netns, extra: &[&str]) -> TapirProcess {
    let mut args = vec!["proxy", "--tap", TAP];
    args.extend_from_slice(extra);
    let tapir = ns.spawn_tapir(&args);
    assert!(
        tapir.wait_for_log("ready: proxy on port", Duration::from_secs(10)),
        "tapir proxy did not start; log:\n{}",
        tapir.log()
    );
    tapir
}

fn curl(ns: &Netns, args: &[&str]) -> Output {
    let mut cmd = vec!["curl", "-sS", "--max-time", "60"];
    cmd.extend_from_slice(args);
    ns.run(&cmd)
}

fn proxy_url() -> String {
    format!("http://{TAPIR_V4}:{PROXY_PORT}")
}

/// What curl's `-w` format `what` says of `url` fetched through the proxy (body dropped).
fn via_proxy(ns: &Netns, what: &str, url: &str) -> (bool, String) {
    let out = curl(
        ns,
        &["-x", &proxy_url(), "-o", "/dev/null", "-w", what, url],
    );
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn forward_proxy_carries_https_by_connect_and_http_by_forwarding() {
    let Some(ns) = tap_test!("proxyfwd", NGINX, OPENSSL, CURL) else {
        return;
    };
    let nginx = start_nginx(&ns);
    // 100 MiB of bytes that are not a repeating pattern.
    let mut data = vec![0u8; 100 * 1024 * 1024];
    fastrand::Rng::with_seed(8).fill(&mut data);
    fs::write(nginx.root.join("big.bin"), &data).unwrap();
    drop(data);
    let want = sha256_file(&nginx.root.join("big.bin"));
    let cert = nginx.cert.to_str().unwrap().to_string();
    let tapir = spawn_proxy(
        &ns,
        &["--listen", PROXY_PORT, "--resolve", "origin.test:10.7.0.1"],
    );
    let proxy = proxy_url();

    // HTTPS through a CONNECT tunnel: TLS is end to end between curl and nginx.
    let https_out = ns.dir().join("https.bin");
    let out = curl(
        &ns,
        &[
            "-x",
            &proxy,
            "--cacert",
            &cert,
            "-o",
            https_out.to_str().unwrap(),
            "-w",
            "%{http_connect} %{http_code} %{http_version}",
            &format!("https://{KERNEL_V4}/big.bin"),
        ],
    );
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200 200 2");
    assert_eq!(sha256_file(&https_out), want, "HTTPS via CONNECT");

    // Plain HTTP forwarded (absolute-form request).
    let http_out = ns.dir().join("http.bin");
    let out = curl(
        &ns,
        &[
            "-x",
            &proxy,
            "-o",
            http_out.to_str().unwrap(),
            "-D",
            "-",
            &format!("http://{KERNEL_V4}/big.bin"),
        ],
    );
    assert!(out.status.success(), "{}", output_text(&out));
    let head = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("via: 1.1 tapir"), "{head}");
    assert_eq!(sha256_file(&http_out), want, "HTTP forwarded");

    // A name the proxy resolves (curl sends CONNECT origin.test:443).
    let out = curl(
        &ns,
        &[
            "-x",
            &proxy,
            "--cacert",
            &cert,
            "https://origin.test/index.html",
        ],
    );
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "<p>hello from nginx</p>\n"
    );

    // Targets off the allow-list (the stack's own subnet) get 403, for both kinds. Nothing
    // is sent to them: the proxy refuses before connecting.
    let (_, code) = via_proxy(&ns, "%{http_code}", "http://192.0.2.1/");
    assert_eq!(code, "403");
    let (ok, code) = via_proxy(&ns, "%{http_connect}", "https://192.0.2.1/");
    assert!(!ok, "curl fails when CONNECT is refused");
    assert_eq!(code, "403");
    // An unknown name: 502 with the reason.
    let out = curl(&ns, &["-x", &proxy, "http://nowhere.test/"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("cannot resolve nowhere.test"),
        "{}",
        output_text(&out)
    );
    // A closed port on an allowed host: 502.
    let (_, code) = via_proxy(&ns, "%{http_code}", &format!("http://{KERNEL_V4}:81/"));
    assert_eq!(code, "502");

    let (status, log) = tapir.terminate();
    assert!(status.success(), "tapir proxy exit: {status:?}\n{log}");
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn forward_proxy_allow_list_flag_limits_ports() {
    let Some(ns) = tap_test!("proxyallow", NGINX, OPENSSL, CURL) else {
        return;
    };
    let nginx = start_nginx(&ns);
    let cert = nginx.cert.to_str().unwrap().to_string();
    let tapir = spawn_proxy(&ns, &["--listen", PROXY_PORT, "--allow", "10.7.0.1/32:443"]);
    let proxy = proxy_url();
    let out = curl(
        &ns,
        &[
            "-x",
            &proxy,
            "--cacert",
            &cert,
            &format!("https://{KERNEL_V4}/index.html"),
        ],
    );
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "<p>hello from nginx</p>\n"
    );
    let (_, code) = via_proxy(
        &ns,
        "%{http_code}",
        &format!("http://{KERNEL_V4}/index.html"),
    );
    assert_eq!(code, "403", "port 80 is not allowed");
    let (status, log) = tapir.terminate();
    assert!(status.success(), "{log}");
}

#[test]
fn reverse_proxy_under_h2load_to_nginx_over_http1_and_h2() {
    let Some(ns) = tap_test!("proxyrev", NGINX, OPENSSL, CURL, H2LOAD) else {
        return;
    };
    let nginx = start_nginx(&ns);
    fs::write(nginx.root.join("small.txt"), "x".repeat(1000)).unwrap();
    let cert = nginx.cert.to_str().unwrap().to_string();
    for (label, extra) in [
        (
            "HTTP/1.1 keep-alive upstream",
            vec!["--upstream", "http://10.7.0.1/"],
        ),
        (
            "HTTP/2 over TLS upstream",
            vec![
                "--upstream",
                "https://10.7.0.1/",
                "--upstream-http2",
                "--cacert",
                cert.as_str(),
            ],
        ),
    ] {
        let mut args = vec!["--listen", "80"];
        args.extend_from_slice(&extra);
        let tapir = spawn_proxy(&ns, &args);
        // Clients speaking HTTP/1.1 and h2c (prior knowledge) both reach nginx.
        let out = curl(&ns, &[&format!("http://{TAPIR_V4}/index.html")]);
        assert!(out.status.success(), "{label}: {}", output_text(&out));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "<p>hello from nginx</p>\n"
        );
        let out = ns.run(&[
            "h2load",
            "-n",
            "4000",
            "-c",
            "16",
            "-m",
            "10",
            &format!("http://{TAPIR_V4}/small.txt"),
        ]);
        let text = output_text(&out);
        assert!(out.status.success(), "{label}: {text}");
        assert!(
            text.contains("4000 succeeded, 0 failed, 0 errored"),
            "{label}: {text}"
        );
        assert!(text.contains("status codes: 4000 2xx"), "{label}: {text}");
        let (status, log) = tapir.terminate();
        assert!(status.success(), "{label}: {log}");
        assert!(!log.contains("panicked"), "{log}");
    }
    // Upstream reuse: far fewer connections reached nginx than requests were made.
    let log = fs::read_to_string(ns.dir().join("nginx/logs/access.log")).unwrap_or_default();
    let requests = log.lines().count();
    let ports: std::collections::HashSet<&str> =
        log.lines().filter_map(|l| l.split(' ').next()).collect();
    assert!(requests >= 8000, "{requests} requests in nginx's log");
    assert!(
        ports.len() <= 16,
        "{} upstream connections for {requests} requests",
        ports.len()
    );
}
