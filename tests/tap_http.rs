//! `tapir serve` over cleartext HTTP/1.1 on a real TAP device, with the kernel's TCP and
//! real clients (curl, wrk, a raw python3 socket) as peers: GET and HEAD, a chunked 50 MiB
//! upload, keep-alive reuse, pipelining, load without errors, busy polling that stops when
//! the load does, static files with ranges, and no connection left behind afterwards.
//!
//! Each test makes its own network namespace (see `common::netns`) and needs root; without
//! root each prints `SKIPPED <test>: ...` and returns.

mod common;

use std::fs;
use std::time::{Duration, Instant};

use common::netns::{json_u64, output_text, sha256_file_hex, write_random_file, Netns, TAPIR_V4};
use common::tap::{assert_all_closed, CURL, NGHTTP, PYTHON3, WRK};

const BASE: &str = "http://10.7.0.2";

/// Waits (up to 5 s) until `/stats` shows only the stats request's own connection open and
/// at most two TCP connections (the stats one, and one still closing), so nothing leaked.
fn assert_no_leak(ns: &Netns) {
    ns.assert_back_to_baseline(BASE, 2, Duration::from_secs(5));
}

/// Sends a HEAD and reads until the server closes (`Connection: close`); prints what came
/// after the head, which must be nothing.
const HEAD_RAW: &str = r#"
import socket, sys
host = sys.argv[1]
s = socket.create_connection((host, 80), timeout=10)
s.sendall(b"HEAD / HTTP/1.1\r\nHost: " + host.encode() + b"\r\nConnection: close\r\n\r\n")
data = b""
while True:
    b = s.recv(65536)
    if not b:
        break
    data += b
head, sep, rest = data.partition(b"\r\n\r\n")
assert sep, "no end of head in %r" % data
print(head.split(b"\r\n")[0].decode())
print("after-head-bytes", len(rest))
"#;

#[test]
fn get_and_head_of_the_index() {
    let Some(ns) = tap_test!("h1-get", CURL, PYTHON3) else {
        return;
    };
    let tapir = ns.spawn_http(&[]);
    let url = format!("{BASE}/");

    let get = ns.run(&[
        "curl",
        "-sS",
        "--max-time",
        "10",
        "-w",
        "\n%{http_code}",
        &url,
    ]);
    assert!(get.status.success(), "curl GET:\n{}", output_text(&get));
    let stdout = String::from_utf8_lossy(&get.stdout).into_owned();
    let (body, code) = stdout.rsplit_once('\n').expect("status after the body");
    assert_eq!(code, "200", "GET / status; body:\n{body}");
    assert!(
        body.contains("HTTP/1.1"),
        "GET / body names HTTP/1.1:\n{body}"
    );

    let head = ns.run(&["curl", "-sS", "--max-time", "10", "-I", &url]);
    let head_text = String::from_utf8_lossy(&head.stdout).into_owned();
    assert!(head.status.success(), "curl -I:\n{}", output_text(&head));
    assert!(
        head_text.starts_with("HTTP/1.1 200"),
        "HEAD / status:\n{head_text}"
    );
    let length: usize = head_text
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().expect("Content-Length is a number"))
        })
        .unwrap_or_else(|| panic!("no Content-Length in the HEAD response:\n{head_text}"));
    assert_eq!(length, body.len(), "HEAD Content-Length vs GET body length");

    // curl -I never reads a body, so check on the wire that none is sent.
    let raw = ns.run(&["python3", "-c", HEAD_RAW, TAPIR_V4]);
    let raw_text = output_text(&raw);
    assert!(raw.status.success(), "raw HEAD:\n{raw_text}");
    assert!(raw_text.contains("HTTP/1.1 200"), "raw HEAD:\n{raw_text}");
    assert!(
        raw_text.contains("after-head-bytes 0"),
        "HEAD response carried a body:\n{raw_text}"
    );

    assert_no_leak(&ns);
    tapir.stop();
}

#[test]
fn chunked_upload_of_50_mib_echoes_back() {
    let Some(ns) = tap_test!("h1-chunked", CURL) else {
        return;
    };
    let tapir = ns.spawn_http(&[]);
    let src = ns.dir().join("upload.bin");
    let dst = ns.dir().join("echoed.bin");
    write_random_file(&src, 50 << 20, 11);
    let upload = format!("@{}", src.display());
    let started = Instant::now();
    let out = ns.run(&[
        "curl",
        "-sS",
        "--max-time",
        "60",
        "-H",
        "Transfer-Encoding: chunked",
        "-H",
        "Content-Type: application/octet-stream",
        "--data-binary",
        &upload,
        "-o",
        dst.to_str().unwrap(),
        "-w",
        "%{http_code}",
        &format!("{BASE}/echo"),
    ]);
    assert!(out.status.success(), "curl upload:\n{}", output_text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
    assert_eq!(
        fs::metadata(&dst).map(|m| m.len()).unwrap_or(0),
        50 << 20,
        "bytes echoed back"
    );
    assert_eq!(
        sha256_file_hex(&src),
        sha256_file_hex(&dst),
        "sha256 of the upload and the echo"
    );
    eprintln!("50 MiB chunked upload echoed in {:?}", started.elapsed());
    assert_no_leak(&ns);
    tapir.stop();
}

#[test]
fn keep_alive_reuses_one_connection() {
    let Some(ns) = tap_test!("h1-keepalive", CURL) else {
        return;
    };
    let tapir = ns.spawn_http(&[]);
    let before = json_u64(&ns.stats(BASE), "connections_total");
    let urls = [
        format!("{BASE}/"),
        format!("{BASE}/stats"),
        format!("{BASE}/bytes/100000"),
        format!("{BASE}/"),
    ];
    let mut args = vec!["curl", "-v", "-sS", "--max-time", "20", "-o", "/dev/null"];
    for url in &urls[1..] {
        args.push(url);
        args.extend_from_slice(&["-o", "/dev/null"]);
    }
    args.insert(5, &urls[0]);
    let out = ns.run(&args);
    let text = output_text(&out);
    assert!(out.status.success(), "curl {args:?}:\n{text}");
    let reused = text.matches("Re-using existing connection").count();
    assert_eq!(
        reused,
        urls.len() - 1,
        "every URL after the first reuses the connection:\n{text}"
    );
    let after = json_u64(&ns.stats(BASE), "connections_total");
    // `after` also counts the second stats request's own connection.
    assert_eq!(
        after - before,
        2,
        "connections accepted for one curl run of {} URLs (plus the stats request): before {before}, after {after}",
        urls.len()
    );
    assert_no_leak(&ns);
    tapir.stop();
}

/// Sends N GET /bytes/i requests (i = 0..N, the last with `Connection: close`) in one
/// send, then reads the responses and checks they come in order, whole, with the right
/// bytes, followed by the server closing.
const PIPELINE: &str = r#"
import socket, sys
host, n = sys.argv[1], int(sys.argv[2])
PATTERN = b"tapir-bytes-0123456789\n"
reqs = []
for i in range(n):
    close = b"Connection: close\r\n" if i == n - 1 else b""
    reqs.append(b"GET /bytes/%d HTTP/1.1\r\nHost: %s\r\n%s\r\n" % (i, host.encode(), close))
s = socket.create_connection((host, 80), timeout=20)
payload = b"".join(reqs)
sent = s.send(payload)
assert sent == len(payload), "one send wrote %d of %d bytes" % (sent, len(payload))
buf = b""
eof = False
def fill():
    global buf, eof
    b = s.recv(65536)
    if not b:
        eof = True
    buf += b
for i in range(n):
    while b"\r\n\r\n" not in buf:
        assert not eof, "EOF before response %d; have %r" % (i, buf[:200])
        fill()
    head, _, buf = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0].startswith(b"HTTP/1.1 200"), "response %d: %r" % (i, lines[0])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        headers[k.strip().lower()] = v.strip()
    assert b"content-length" in headers, "response %d has no Content-Length: %r" % (i, head)
    length = int(headers[b"content-length"])
    assert length == i, "response %d has Content-Length %d (out of order?)" % (i, length)
    while len(buf) < length:
        assert not eof, "EOF inside body %d" % i
        fill()
    body, buf = buf[:length], buf[length:]
    want = (PATTERN * (length // len(PATTERN) + 1))[:length]
    assert body == want, "body %d differs" % i
while not eof:
    fill()
assert buf == b"", "%d bytes after the last response" % len(buf)
print("pipelined", n, "responses in order")
"#;

#[test]
fn hundred_pipelined_requests_answer_in_order() {
    let Some(ns) = tap_test!("h1-pipeline", PYTHON3) else {
        return;
    };
    let tapir = ns.spawn_http(&[]);
    let out = ns.run(&["python3", "-c", PIPELINE, TAPIR_V4, "100"]);
    let text = output_text(&out);
    assert!(out.status.success(), "pipelining client failed:\n{text}");
    assert!(text.contains("pipelined 100 responses in order"), "{text}");
    assert_no_leak(&ns);
    tapir.stop();
}

#[test]
fn wrk_load_has_no_errors() {
    let Some(ns) = tap_test!("h1-wrk", WRK) else {
        return;
    };
    let tapir = ns.spawn_http(&[]);
    let out = ns.run(&["wrk", "-t1", "-c16", "-d5s", &format!("{BASE}/")]);
    let text = output_text(&out);
    assert!(out.status.success(), "wrk failed:\n{text}");
    eprintln!("{text}");
    if let Some(line) = text.lines().find(|l| l.contains("Socket errors")) {
        let counts: Vec<u64> = line
            .split(|c: char| !c.is_ascii_digit())
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().unwrap())
            .collect();
        assert!(
            counts.iter().all(|&n| n == 0),
            "wrk saw socket errors:\n{text}"
        );
    }
    assert!(
        !text.contains("Non-2xx"),
        "wrk saw non-2xx responses:\n{text}"
    );
    let requests: u64 = text
        .lines()
        .find(|l| l.contains(" requests in "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no 'N requests in' line:\n{text}"));
    assert!(requests > 0, "wrk made no requests:\n{text}");
    assert_no_leak(&ns);
    tapir.stop();
}

/// Busy polling (`--busy-poll`) keeps the loop polling only right after it served frames:
/// once the requests stop, the server sleeps in epoll_wait again and uses next to no CPU.
/// The window is long (10 ms) so that a loop that never stopped polling would burn most
/// of a core in the measured seconds, while the few stray frames of an idle link (the
/// kernel's neighbour probes) each open a window of only 10 ms.
#[test]
fn busy_polling_server_sleeps_when_requests_stop() {
    let Some(ns) = tap_test!("h1-busy-poll", WRK, CURL) else {
        return;
    };
    let tapir = ns.spawn_http(&["--busy-poll", "10000"]);
    let out = ns.run(&["wrk", "-t1", "-c1", "-d1s", &format!("{BASE}/bytes/100")]);
    let text = output_text(&out);
    assert!(out.status.success(), "wrk failed:\n{text}");
    assert!(
        text.contains(" requests in "),
        "wrk made no requests:\n{text}"
    );

    // wrk has closed its connection; let the close settle, then measure.
    std::thread::sleep(Duration::from_millis(500));
    let (cpu, wall, share) = tapir.cpu_over(Duration::from_secs(3));
    eprintln!(
        "idle after wrk: {cpu:?} CPU in {wall:?} ({:.2}% of a core)",
        share * 100.0
    );
    assert!(
        share < 0.05,
        "tapir used {cpu:?} of CPU in {wall:?} after the requests stopped: {:.2}% of a core, \
         want < 5% (busy polling did not stop)",
        share * 100.0
    );
    // Asleep, it still answers.
    assert!(ns.curl(&[&format!("{BASE}/")]).contains("HTTP/1.1"));
    assert_no_leak(&ns);
    tapir.stop();
}

#[test]
fn static_file_of_200_mib_and_a_range() {
    let Some(ns) = tap_test!("h1-files", CURL) else {
        return;
    };
    let root = ns.dir().join("www");
    fs::create_dir_all(&root).unwrap();
    let file = root.join("big.bin");
    write_random_file(&file, 200 << 20, 12);
    let tapir = ns.spawn_http(&["--root", root.to_str().unwrap()]);
    let url = format!("{BASE}/big.bin");

    let got = ns.dir().join("got.bin");
    let started = Instant::now();
    ns.curl_download(&url, &got);
    assert_eq!(
        fs::metadata(&got).unwrap().len(),
        200 << 20,
        "bytes downloaded"
    );
    assert_eq!(
        sha256_file_hex(&file),
        sha256_file_hex(&got),
        "sha256 of the file and the download"
    );
    eprintln!("200 MiB static file downloaded in {:?}", started.elapsed());
    fs::remove_file(&got).unwrap();

    let part = ns.dir().join("part.bin");
    let out = ns.run(&[
        "curl",
        "-sS",
        "--max-time",
        "10",
        "-r",
        "1000-1999",
        "-o",
        part.to_str().unwrap(),
        "-w",
        "%{http_code}",
        &url,
    ]);
    assert!(out.status.success(), "curl -r:\n{}", output_text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "206", "range status");
    let part = fs::read(&part).unwrap();
    let whole = {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = fs::File::open(&file).unwrap();
        f.seek(SeekFrom::Start(1000)).unwrap();
        let mut buf = vec![0u8; 1000];
        f.read_exact(&mut buf).unwrap();
        buf
    };
    assert_eq!(part.len(), 1000, "range length");
    assert!(
        part == whole,
        "range bytes 1000-1999 differ from the file's"
    );
    fs::remove_file(&file).unwrap();

    // The built-in pages live next to the files, under /_tapir/.
    let fetch = |args: &[&str]| ns.curl(args);
    assert_eq!(
        fetch(&[&format!("{BASE}/_tapir/bytes/30")]).as_bytes(),
        &tapir::service::builtin::PATTERN.repeat(2)[..30]
    );
    assert_eq!(
        fetch(&[
            "--data-binary",
            "next to the files",
            &format!("{BASE}/_tapir/echo")
        ]),
        "next to the files"
    );
    let stats = fetch(&[&format!("{BASE}/_tapir/stats")]);
    assert!(json_u64(&stats, "connections_open") >= 1, "{stats}");
    assert!(fetch(&[&format!("{BASE}/_tapir/")]).contains("over HTTP/1.1"));
    // A file of that name is still a file; the prefix is only the directory.
    fs::write(root.join("_tapirx"), "a file").unwrap();
    assert_eq!(fetch(&[&format!("{BASE}/_tapirx")]), "a file");
    assert_all_closed(&tapir.stop());
}

#[test]
fn nothing_leaks_after_mixed_clients() {
    let Some(ns) = tap_test!("h1-leak", CURL, PYTHON3) else {
        return;
    };
    let tapir = ns.spawn_http(&[]);
    // Clients that finish normally, one that pipelines, and one that hangs up mid-response.
    for _ in 0..5 {
        let out = ns.run(&["curl", "-sS", "-o", "/dev/null", &format!("{BASE}/")]);
        assert!(out.status.success(), "{}", output_text(&out));
    }
    let out = ns.run(&["python3", "-c", PIPELINE, TAPIR_V4, "20"]);
    assert!(out.status.success(), "{}", output_text(&out));
    let out = ns.run(&[
        "curl",
        "-sS",
        "--max-filesize",
        "1",
        "-o",
        "/dev/null",
        "--max-time",
        "1",
        &format!("{BASE}/bytes/100000000"),
    ]);
    assert!(!out.status.success(), "curl should abort the download");
    let started = Instant::now();
    assert_no_leak(&ns);
    eprintln!(
        "no connections left {:?} after the clients",
        started.elapsed()
    );
    tapir.stop();
}

/// h2c by `Upgrade: h2c` (RFC 7540 §3.2) with curl `--http2` and `nghttp -u`, and the
/// HTTP details real clients see: OPTIONS *, 501 for an unknown method, Date and Server on
/// a response made by the parser.
#[test]
fn h2c_upgrade_and_http_details_with_curl_and_nghttp() {
    let Some(ns) = tap_test!("h2c-upgrade", CURL, NGHTTP) else {
        return;
    };
    let tapir = ns.spawn_http(&[]);
    let curl = |args: &[&str]| ns.curl(args);
    // Two requests on one upgraded connection: the first is stream 1, the second stream 3.
    let out = curl(&[
        "--http2",
        "-w",
        " %{http_version}\n",
        &format!("{BASE}/bytes/23"),
        &format!("{BASE}/"),
    ]);
    assert!(out.starts_with("tapir-bytes-0123456789\n 2\n"), "{out}");
    assert!(
        out.contains("over HTTP/2") && out.ends_with(" 2\n"),
        "{out}"
    );
    // A request with a body is not upgraded (answered over HTTP/1.1, as RFC 7540 allows).
    let out = curl(&[
        "--http2",
        "--data-binary",
        "with a body",
        "-w",
        " %{http_version}",
        &format!("{BASE}/echo"),
    ]);
    assert_eq!(out, "with a body 1.1");
    let out = ns.run(&["nghttp", "-u", "-v", &format!("{BASE}/bytes/5")]);
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("HTTP Upgrade success"), "{text}");
    assert!(text.contains("tapir"), "{text}");
    assert!(text.contains(":status: 200"), "{text}");

    // OPTIONS * and an unknown method.
    let out = curl(&[
        "-i",
        "-X",
        "OPTIONS",
        "--request-target",
        "*",
        &format!("{BASE}/"),
    ]);
    assert!(out.starts_with("HTTP/1.1 204"), "{out}");
    assert!(out.contains("allow: GET, HEAD, POST, OPTIONS"), "{out}");
    let out = curl(&["-i", "-X", "FOO", &format!("{BASE}/")]);
    assert!(out.starts_with("HTTP/1.1 501"), "{out}");
    // No Host in HTTP/1.1: the parser's 400 has Date and Server like every response.
    let out = curl(&["-i", "-H", "Host:", &format!("{BASE}/")]);
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    assert!(out.contains("\r\ndate: "), "{out}");
    assert!(out.contains("\r\nserver: tapir/"), "{out}");
    assert_all_closed(&tapir.stop());
}

/// The HTTP details of issue 17 that curl and nghttp cannot send, from a raw socket on
/// the kernel's TCP: `GET / HTTP/1.2` (answered as HTTP/1.1, RFC 9110 §2.5), an invalid
/// HTTP/2 preface on the cleartext port (GOAWAY PROTOCOL_ERROR once it can no longer be
/// HTTP/1.x), a `host` other than `:authority` (RST_STREAM PROTOCOL_ERROR, RFC 9113
/// §8.3.1; the other stream is answered) and a WINDOW_UPDATE past 2^31-1 (RST_STREAM
/// FLOW_CONTROL_ERROR, §6.9.1). Prints one `name: result` line each.
const RAW_DETAILS: &str = r#"
import socket, struct, sys
host = sys.argv[1]
def conn():
    return socket.create_connection((host, 80), timeout=10)
def read_all(s):
    data = b""
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            data += b
    except socket.timeout:
        pass
    return data
def frame(kind, flags, stream, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload
def frames(data):
    out = []
    while len(data) >= 9:
        n = int.from_bytes(data[:3], "big")
        out.append((data[3], data[4], int.from_bytes(data[5:9], "big") & 0x7fffffff, data[9:9 + n]))
        data = data[9 + n:]
    return out
def lit(index, value):
    # literal header field without indexing, indexed name (4-bit prefix)
    b = bytes([index]) if index < 15 else bytes([15, index - 15])
    return b + bytes([len(value)]) + value
def get(path, extra=b""):
    return b"\x82\x86" + lit(4, path) + lit(1, b"test") + extra
def h2(*frames_after):
    s = conn()
    s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0, b"") + b"".join(frames_after))
    s.settimeout(3)
    return frames(read_all(s))
def resets(fs, stream):
    return [int.from_bytes(p[:4], "big") for (k, f, st, p) in fs if k == 3 and st == stream]

s = conn()
s.sendall(b"GET / HTTP/1.2\r\nHost: " + host.encode() + b"\r\nConnection: close\r\n\r\n")
print("http/1.2:", read_all(s).split(b"\r\n")[0].decode())

s = conn()
s.sendall(b"PRI * HTTP/2.0\r\n\r\nXY\r\n\r\n")
fs = frames(read_all(s))
print("bad preface:", [(k, int.from_bytes(p[4:8], "big")) for (k, f, st, p) in fs if k == 7])

fs = h2(frame(1, 5, 1, get(b"/", lit(38, b"other.example"))), frame(1, 5, 3, get(b"/bytes/3")))
print("host vs authority: stream 1 reset", resets(fs, 1), "stream 3 data",
      b"".join(p for (k, f, st, p) in fs if k == 0 and st == 3))

fs = h2(frame(1, 5, 1, get(b"/bytes/0")), frame(8, 0, 1, struct.pack(">I", 0x7fffffff)))
print("window overflow: stream 1 reset", resets(fs, 1),
      "end", [k for (k, f, st, p) in fs if st == 1 and k != 3 and f & 1])
"#;

#[test]
fn http_details_on_the_wire_with_a_raw_client() {
    let Some(ns) = tap_test!("h1-raw-details", PYTHON3) else {
        return;
    };
    let tapir = ns.spawn_http(&[]);
    let out = ns.run(&["python3", "-c", RAW_DETAILS, TAPIR_V4]);
    let text = output_text(&out);
    assert!(out.status.success(), "raw client:\n{text}");
    for line in [
        "http/1.2: HTTP/1.1 200 OK",
        // GOAWAY (type 7) with PROTOCOL_ERROR (1).
        "bad preface: [(7, 1)]",
        // RST_STREAM PROTOCOL_ERROR (1) on stream 1; stream 3's body.
        "host vs authority: stream 1 reset [1] stream 3 data b'tap'",
        // RST_STREAM FLOW_CONTROL_ERROR (3), and the response never ends the stream.
        "window overflow: stream 1 reset [3] end []",
    ] {
        assert!(text.contains(line), "no '{line}' in:\n{text}");
    }
    assert_all_closed(&tapir.stop());
}
