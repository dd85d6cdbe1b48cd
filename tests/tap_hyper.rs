//! `examples/hyper.rs` on a real TAP device: hyper 1.x's own HTTP/1.1 server over tapir's TCP
//! flows on 10.7.0.2:8080, fetched by curl from the kernel side of a namespace of its own.
//! Needs root; without it the test prints `SKIPPED ...` and returns.

mod common;

use std::time::Duration;

use common::netns::{example_bin, output_text, spawn_program_in, TAP};
use common::tap::CURL;

#[test]
fn hyper_example_answers_curl_over_tapir_flows() {
    let Some(ns) = tap_test!("hyper-example", CURL) else {
        return;
    };
    let bin = example_bin("hyper");
    let server = spawn_program_in(ns.name(), ns.dir(), &bin, &["--tap", TAP]);
    assert!(
        server.wait_for_log("ready: hyper", Duration::from_secs(20)),
        "the example did not start; log:\n{}",
        server.log()
    );

    let (body, status) = ns.curl_with_status(&["http://10.7.0.2:8080/"]);
    assert_eq!(status, "200 1.1", "GET / status and version; body:\n{body}");
    assert_eq!(body, "hello from hyper on tapir\n");

    // Two requests on one keep-alive connection: 200, then 404 for an unknown path.
    let out = ns.run(&[
        "curl",
        "-sS",
        "--max-time",
        "10",
        "-o",
        "/dev/null",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{num_connects}\n",
        "http://10.7.0.2:8080/",
        "http://10.7.0.2:8080/missing",
    ]);
    assert!(
        out.status.success(),
        "curl keep-alive:\n{}",
        output_text(&out)
    );
    let lines = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        lines.lines().collect::<Vec<_>>(),
        vec!["200 1", "404 0"],
        "statuses and new connections per request"
    );

    let log = server.stop();
    assert!(
        !log.contains("connection from"),
        "a connection failed in hyper:\n{log}"
    );
    assert!(
        log.contains("stopped: Stopped"),
        "clean stop on SIGTERM:\n{log}"
    );
}
