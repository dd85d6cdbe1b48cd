//! The examples in `examples/`: `hello` is the README's program, and `axum` serves an axum
//! `Router` on a real TAP device to curl over HTTP/1.1 and h2c (prior knowledge and
//! `Upgrade: h2c`).
//!
//! The TAP test makes its own network namespace (see `common::netns`) and needs root;
//! without root it prints `SKIPPED <test>: ...` and returns. It runs the example binary
//! Cargo built (`cargo test --release` builds the examples; so does
//! `cargo build --release --examples`).

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::netns::{output_text, repo_root, Netns, TAP};
use common::tap::{CURL, NGINX};

/// The example `name` built in the same profile as this test.
fn example_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    // target/<profile>/deps/<test> → target/<profile>/examples/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test runs from target/<profile>/deps");
    let bin = dir.join("examples").join(name);
    assert!(
        bin.exists(),
        "{} is missing: build the examples first (`cargo build --release --examples`; \
         `cargo test --release` builds them too)",
        bin.display()
    );
    bin
}

#[test]
fn hello_example_is_the_readme_program() {
    let root = repo_root();
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let example = std::fs::read_to_string(root.join("examples/hello.rs")).expect("hello.rs");
    let code: String = example
        .lines()
        .skip_while(|line| line.starts_with("//!") || line.is_empty())
        .map(|line| format!("{line}\n"))
        .collect();
    assert!(code.contains("Server::new"), "{code}");
    let block = format!("```rust,no_run\n{code}```\n");
    assert!(
        readme.contains(&block),
        "examples/hello.rs and the README's program differ; the example's code:\n{code}"
    );
}

/// `curl` inside the namespace; returns (body, "status version").
fn curl(ns: &Netns, flags: &[&str], url: &str) -> (String, String) {
    let mut args = flags.to_vec();
    args.push(url);
    ns.curl_with_status(&args)
}

#[test]
fn axum_example_answers_curl_over_http1_and_h2c() {
    let Some(ns) = tap_test!("ex-axum", CURL) else {
        return;
    };
    let bin = example_bin("axum");
    let app = ns.spawn_program(&bin, &["--tap", TAP]);
    assert!(
        app.wait_for_log("ready: axum", Duration::from_secs(20)),
        "examples/axum did not start; log:\n{}",
        app.log()
    );
    let posted = r#"{"name":"tapir","layers":["device","stack"],"n":7}"#;
    for (flags, version) in [
        (&["--http1.1"][..], "1.1"),
        (&["--http2-prior-knowledge"][..], "2"),
        (&["--http2"][..], "2"),
    ] {
        let (body, status) = curl(&ns, flags, "http://10.7.0.2/hello");
        assert_eq!((body.as_str(), status), ("hello", format!("200 {version}")));

        let (body, status) = curl(&ns, flags, "http://10.7.0.2/users/42");
        assert_eq!(status, format!("200 {version}"));
        let user: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(user["id"], 42, "{body}");

        let (body, status) = curl(&ns, flags, "http://10.7.0.2/nowhere");
        assert_eq!((body.as_str(), status), ("", format!("404 {version}")));
    }
    for (flags, version) in [
        (&["--http1.1"][..], "1.1"),
        (&["--http2-prior-knowledge"][..], "2"),
    ] {
        let mut post = flags.to_vec();
        post.extend_from_slice(&["-H", "content-type: application/json", "-d", posted]);
        let (body, status) = curl(&ns, &post, "http://10.7.0.2/echo-json");
        assert_eq!(status, format!("200 {version}"));
        let sent: serde_json::Value = serde_json::from_str(posted).expect("JSON");
        let back: serde_json::Value = serde_json::from_str(&body).expect("JSON back");
        assert_eq!(back, sent);
    }
    let log = app.stop();
    assert!(!log.contains("panicked"), "{log}");
}

/// Retries `curl` (without failing) until it succeeds or 10 s pass; the last output.
fn curl_until_up(ns: &Netns, url: &str) -> std::process::Output {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let out = ns.run(&["curl", "-sS", "--max-time", "2", url]);
        if out.status.success() || std::time::Instant::now() > deadline {
            return out;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn hello_example_answers_curl() {
    let Some(ns) = tap_test!("ex-hello", CURL) else {
        return;
    };
    let bin = example_bin("hello");
    let app = ns.spawn_program(&bin, &[TAP]);
    let out = curl_until_up(&ns, "http://10.7.0.2/some/path?x=1");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{}\nlog:\n{}",
        output_text(&out),
        app.log()
    );
    assert!(
        text.starts_with("GET /some/path?x=1 over HTTP/1.1 from 10.7.0.1:"),
        "{text}"
    );
    let (body, status) = curl(&ns, &["--http2-prior-knowledge"], "http://10.7.0.2/h2");
    assert_eq!(status, "200 2");
    // An HTTP/2 request's URI carries the scheme and authority (`:scheme`, `:authority`).
    assert!(
        body.starts_with("GET http://10.7.0.2/h2 over HTTP/2 from 10.7.0.1:"),
        "{body}"
    );
    app.stop();
}

#[test]
fn client_and_proxy_examples_reach_an_nginx_origin() {
    let Some(ns) = tap_test!("ex-client", CURL, NGINX) else {
        return;
    };
    let (client, proxy) = (example_bin("client"), example_bin("proxy"));
    let nginx = common::nginx::start_nginx(&ns);
    let content: String = (0..5000).map(|i| format!("line {i}\n")).collect();
    std::fs::write(nginx.root.join("lines.txt"), &content).expect("write the origin's file");

    // examples/client fetches it over the TAP device and prints the body.
    let bin = client.to_str().expect("UTF-8 path");
    let out = ns.run(&[bin, "--tap", TAP, "http://10.7.0.1/lines.txt"]);
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), content);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("200 OK"),
        "{}",
        output_text(&out)
    );

    // examples/proxy forwards curl's request to it, and refuses what is not allowed.
    let app = ns.spawn_program(&proxy, &["--tap", TAP]);
    assert!(
        app.wait_for_log("ready: forward proxy", Duration::from_secs(20)),
        "examples/proxy did not start; log:\n{}",
        app.log()
    );
    let via = ["-x", "http://10.7.0.2:3128"];
    let (body, status) = curl(&ns, &via, "http://10.7.0.1/lines.txt");
    assert_eq!((body == content, status.as_str()), (true, "200 1.1"));
    let (_, status) = curl(&ns, &via, "http://192.0.2.1/");
    assert_eq!(status, "403 1.1");
    app.stop();
}
