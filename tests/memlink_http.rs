//! The HTTP/1.1 server over the in-memory link, driven by a raw HTTP client.

mod common;

use common::http::{HttpClient, Req};
use common::{config, linked, CLIENT_IP, SERVER_IP};
use http::{Request, Response};
use sha2::{Digest, Sha256};
use smoltcp::time::Duration;
use smoltcp::wire::{IpAddress, IpEndpoint};
use tapir::device::memlink::{LinkConfig, MemDevice};
use tapir::runtime::sim::{Node, Sim, SimNode};
use tapir::runtime::Application;
use tapir::service::builtin::Builtin;
use tapir::service::files::StaticFiles;
use tapir::service::server::StatsHandle;
use tapir::service::{Body, ConnInfo, RequestBody, Server, ServerConfig};

const PORT: u16 = 80;

fn endpoint() -> IpEndpoint {
    IpEndpoint::new(IpAddress::Ipv4(SERVER_IP), PORT)
}

type Handler = Box<dyn Fn(Request<RequestBody>, &ConnInfo) -> Response<Body>>;

/// Runs `scripts` against a server with `handler` and returns the client and the server node.
fn exchange(
    link: LinkConfig,
    server_config: ServerConfig,
    make_handler: impl FnOnce(StatsHandle) -> Handler,
    scripts: Vec<Vec<Req>>,
    pipelined: bool,
    tune: impl FnOnce(&mut tapir::stack::StackConfig),
) -> (
    Node<MemDevice, HttpClient>,
    Node<MemDevice, Server<Handler>>,
    Sim,
) {
    let mut sim = Sim::new();
    let mut server_stack_config = config(SERVER_IP, 2, 11);
    tune(&mut server_stack_config);
    let (mut s_stack, s_dev, mut c_stack, c_dev) =
        linked(link, server_stack_config, config(CLIENT_IP, 1, 12), &sim);
    let stats = StatsHandle::default();
    let mut server = Server::with_stats(make_handler(stats.clone()), server_config, stats);
    server.bind_http(&mut s_stack, PORT).unwrap();
    let client = HttpClient::connect(&mut c_stack, endpoint(), scripts, pipelined);
    let mut server = Node::new(s_stack, s_dev, server);
    let mut client = Node::new(c_stack, c_dev, client);
    sim.run_until(
        &mut [&mut server as &mut dyn SimNode, &mut client],
        Duration::from_secs(600),
        |nodes| nodes[1].finished(),
    )
    .expect("client finishes");
    (client, server, sim)
}

fn builtin() -> impl FnOnce(StatsHandle) -> Handler {
    |stats| {
        let builtin = Builtin::new(stats);
        Box::new(move |req, info: &ConnInfo| builtin.handle(req, info))
    }
}

#[test]
fn thousand_concurrent_keep_alive_clients_are_all_answered() {
    let scripts: Vec<Vec<Req>> = (0..1000)
        .map(|i| {
            let body = format!("hello from client {i}");
            vec![
                Req::get("/"),
                Req::get(&format!("/bytes/{}", 1000 + i)),
                Req::raw(format!(
                    "POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )),
            ]
        })
        .collect();
    let (client, server, _) = exchange(
        LinkConfig::default(),
        ServerConfig::default(),
        builtin(),
        scripts,
        false,
        |c| c.tcp.rx_buffer = 8 * 1024,
    );
    assert!(
        client.app.errors().is_empty(),
        "{:?}",
        &client.app.errors()[..3.min(client.app.errors().len())]
    );
    for (i, flow) in client.app.flows.iter().enumerate() {
        assert_eq!(flow.responses.len(), 3);
        assert!(flow.responses.iter().all(|r| r.status == 200));
        assert!(String::from_utf8_lossy(&flow.responses[0].body).contains("HTTP/1.1"));
        assert_eq!(flow.responses[1].body.len(), 1000 + i);
        assert_eq!(
            flow.responses[2].body,
            format!("hello from client {i}").into_bytes()
        );
        assert!(
            !flow.closed_by_server,
            "keep-alive: the client closed, not the server"
        );
    }
    let stats = server.app.stats_handle().get();
    assert_eq!(stats.requests_http1, 3000);
    assert_eq!(
        stats.connections_total, 1000,
        "one connection per client: keep-alive reuse"
    );
}

#[test]
fn hundred_pipelined_requests_are_answered_in_order() {
    let script: Vec<Req> = (0..100).map(|i| Req::get(&format!("/bytes/{i}"))).collect();
    let (client, _, _) = exchange(
        LinkConfig::default(),
        ServerConfig::default(),
        builtin(),
        vec![script],
        true,
        |_| {},
    );
    let flow = &client.app.flows[0];
    assert!(flow.error.is_none(), "{:?}", flow.error);
    let lengths: Vec<usize> = flow.responses.iter().map(|r| r.body.len()).collect();
    assert_eq!(lengths, (0..100).collect::<Vec<_>>());
}

#[test]
fn chunked_upload_is_echoed_through_loss() {
    let mut rng = fastrand::Rng::with_seed(5);
    let mut data = vec![0u8; 5 * 1024 * 1024];
    rng.fill(&mut data);
    let mut request = b"POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n".to_vec();
    for chunk in data.chunks(100_003) {
        request.extend_from_slice(format!("{:x};ext=1\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\nX-Trailer: yes\r\n\r\n");
    let link = LinkConfig {
        loss: 0.01,
        reorder: 0.01,
        seed: 9,
        ..LinkConfig::default()
    };
    let (client, _, _) = exchange(
        link,
        ServerConfig::default(),
        builtin(),
        vec![vec![Req::raw(request)]],
        false,
        |_| {},
    );
    let flow = &client.app.flows[0];
    assert!(flow.error.is_none(), "{:?}", flow.error);
    let resp = &flow.responses[0];
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("transfer-encoding"), Some("chunked"));
    assert_eq!(Sha256::digest(&resp.body), Sha256::digest(&data));
    assert_eq!(flow.interim, 1, "100 Continue was sent once");
}

#[test]
fn uploads_to_the_sink_are_discarded_and_the_connection_stays_open() {
    // 3 MiB, far more than the receive buffer: most of it arrives after the 204.
    let body = vec![b'u'; 3 << 20];
    let mut upload = format!(
        "POST /sink HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    upload.extend_from_slice(&body);
    let script = vec![
        Req::raw(upload.clone()),
        Req::get("/bytes/10"),
        Req::raw(upload),
        Req::get("/bytes/20"),
    ];
    let (client, server, _) = exchange(
        LinkConfig::default(),
        ServerConfig::default(),
        builtin(),
        vec![script],
        false,
        |_| {},
    );
    let flow = &client.app.flows[0];
    assert!(flow.error.is_none(), "{:?}", flow.error);
    let answers: Vec<(u16, usize)> = flow
        .responses
        .iter()
        .map(|r| (r.status, r.body.len()))
        .collect();
    assert_eq!(answers, [(204, 0), (200, 10), (204, 0), (200, 20)]);
    assert!(!flow.closed_by_server);
    let stats = server.app.stats_handle().get();
    assert_eq!(stats.connections_total, 1, "one keep-alive connection");
}

/// Runs `script` on one connection against a static file server of `dir`, then removes
/// `dir`; the responses, after checking the connection saw no error.
fn serve_files(dir: &std::path::Path, script: Vec<Req>) -> Vec<common::http::Resp> {
    let root = dir.to_path_buf();
    let make = move |_stats| -> Handler {
        let files = StaticFiles::new(&root, false).unwrap();
        Box::new(move |req: Request<RequestBody>, _: &ConnInfo| files.handle(&req))
    };
    let (client, _, _) = exchange(
        LinkConfig::default(),
        ServerConfig::default(),
        make,
        vec![script],
        false,
        |_| {},
    );
    std::fs::remove_dir_all(dir).ok();
    let flow = &client.app.flows[0];
    assert!(flow.error.is_none(), "{:?}", flow.error);
    flow.responses.clone()
}

#[test]
fn static_files_ranges_conditionals_and_traversal() {
    let dir = std::env::temp_dir().join(format!("tapir-files-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    let content: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(dir.join("data.bin"), &content).unwrap();
    std::fs::write(dir.join("page.html"), "<p>hi</p>").unwrap();
    let head = Req {
        bytes: b"HEAD /data.bin HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(),
        head: true,
    };
    let script = vec![
        Req::get("/data.bin"),
        Req::raw("GET /data.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=100-199\r\n\r\n"),
        Req::raw("GET /data.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=-10\r\n\r\n"),
        Req::raw("GET /data.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=20000-\r\n\r\n"),
        Req::raw("GET /data.bin HTTP/1.1\r\nHost: t\r\nIf-Modified-Since: Fri, 01 Jan 2100 00:00:00 GMT\r\n\r\n"),
        head,
        Req::get("/page.html"),
        Req::get("/../../etc/passwd"),
        Req::get("/%2e%2e/%2e%2e/etc/passwd"),
        Req::get("/sub/"),
        Req::get("/sub"),
        Req::get("/missing"),
        Req::raw("DELETE /data.bin HTTP/1.1\r\nHost: t\r\n\r\n"),
    ];
    let r = &serve_files(&dir, script);
    assert_eq!((r[0].status, &r[0].body), (200, &content));
    assert_eq!(
        r[0].header("content-type"),
        Some("application/octet-stream")
    );
    assert!(r[0].header("last-modified").is_some());
    assert_eq!((r[1].status, &r[1].body[..]), (206, &content[100..200]));
    assert_eq!(r[1].header("content-range"), Some("bytes 100-199/10000"));
    assert_eq!((r[2].status, &r[2].body[..]), (206, &content[9990..]));
    assert_eq!(r[3].status, 416);
    assert_eq!(r[3].header("content-range"), Some("bytes */10000"));
    assert_eq!(r[4].status, 304);
    assert_eq!(r[5].status, 200);
    assert_eq!(
        r[5].header("content-length"),
        Some("10000"),
        "HEAD has the real length"
    );
    assert_eq!(
        r[6].header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(r[7].status, 400, "dot-dot refused");
    assert_eq!(r[8].status, 400, "encoded dot-dot refused");
    assert_eq!(r[9].status, 403, "listings are off");
    assert_eq!(r[10].status, 301);
    assert_eq!(r[11].status, 404);
    assert_eq!(r[12].status, 405);
}

#[test]
fn slowloris_gets_408_at_the_head_timeout() {
    let mut server_config = ServerConfig::default();
    server_config.h1.head_timeout = std::time::Duration::from_secs(3);
    let (client, server, sim) = exchange(
        LinkConfig::default(),
        server_config,
        builtin(),
        // Half a head, never finished. The client waits for one response.
        vec![vec![Req::raw("GET / HTTP/1.1\r\nHost: te")]],
        false,
        |_| {},
    );
    let flow = &client.app.flows[0];
    assert!(flow.error.is_none(), "{:?}", flow.error);
    assert_eq!(flow.responses[0].status, 408);
    assert_eq!(flow.responses[0].header("connection"), Some("close"));
    assert!(sim.now() >= tapir::runtime::sim::Sim::new().now() + Duration::from_secs(3));
    let _ = server;
}

#[test]
fn shutdown_finishes_in_flight_requests_then_ends() {
    let mut sim = Sim::new();
    // A 50 MB/s bottleneck: the 20 MB download takes at least 400 ms whatever the
    // congestion control (BBR's took less than 100 ms on an unlimited link).
    let link = LinkConfig {
        latency: Duration::from_millis(1),
        rate: 50_000_000,
        ..LinkConfig::default()
    };
    let (mut s_stack, s_dev, mut c_stack, c_dev) = linked(
        link,
        config(SERVER_IP, 2, 13),
        config(CLIENT_IP, 1, 14),
        &sim,
    );
    let stats = StatsHandle::default();
    let builtin = Builtin::new(stats.clone());
    let handler = move |req, info: &ConnInfo| builtin.handle(req, info);
    let mut server = Server::with_stats(handler, ServerConfig::default(), stats);
    server.bind_http(&mut s_stack, PORT).unwrap();
    // One client downloads 20 MB; ten others sit idle on keep-alive after one request.
    let mut scripts = vec![vec![Req::get("/bytes/20000000")]];
    scripts.extend((0..10).map(|_| vec![Req::get("/")]));
    let client = HttpClient::connect(&mut c_stack, endpoint(), scripts, false);
    let mut server = Node::new(s_stack, s_dev, server);
    let mut client = Node::new(c_stack, c_dev, client);
    // Run until the download is under way and the idle clients have their answers.
    sim.run_until(
        &mut [&mut server as &mut dyn SimNode, &mut client],
        Duration::from_millis(100),
        |_| false,
    )
    .ok();
    assert!(
        client.app.flows[0].responses.is_empty(),
        "the download is still in flight"
    );
    assert!(client.app.flows[1..].iter().all(|f| f.responses.len() == 1));
    let now = sim.now();
    server.app.shutdown(&mut server.stack, now);
    sim.run_until(
        &mut [&mut server as &mut dyn SimNode, &mut client],
        Duration::from_secs(600),
        |nodes| nodes[0].finished() && nodes[1].finished(),
    )
    .expect("server winds down");
    let flows = &client.app.flows;
    assert!(flows[0].error.is_none(), "{:?}", flows[0].error);
    assert_eq!(
        flows[0].responses[0].body.len(),
        20_000_000,
        "the in-flight download completed"
    );
    assert!(server.app.is_finished());
}

/// A send buffer the server's write loop fills exactly in one wake-up (16 turns of its
/// 64 KiB output buffer = 1 MiB) left the response with nothing pending for the socket
/// and no write interest registered: the download stopped after exactly 1 MiB until the
/// client sent something (the "1 MiB stall"). Buffers ≥ 1 MiB were refused because of it.
#[test]
fn download_through_a_send_buffer_filled_exactly_does_not_stall() {
    let n = 4 * 1024 * 1024;
    for kib in [1024, 2048] {
        let (client, _, _) = exchange(
            LinkConfig {
                latency: Duration::from_millis(1),
                ..LinkConfig::default()
            },
            ServerConfig::default(),
            builtin(),
            vec![vec![Req::get(&format!("/bytes/{n}"))]],
            false,
            |c| {
                c.tcp.initial_buffer = kib * 1024;
                c.tcp.rx_buffer = kib * 1024;
                c.tcp.tx_buffer = kib * 1024;
            },
        );
        let flow = &client.app.flows[0];
        assert!(flow.error.is_none(), "{kib} KiB: {:?}", flow.error);
        let body = &flow.responses[0].body;
        assert_eq!(body.len(), n, "{kib} KiB buffers");
        let pattern = tapir::service::builtin::PATTERN;
        assert!(body
            .iter()
            .enumerate()
            .all(|(i, b)| *b == pattern[i % pattern.len()]));
    }
}

/// The Range edge cases of RFC 9110 §14 as a client sees them: several ranges, suffix
/// ranges, ranges beyond the end, bad syntax, If-Range and HEAD.
#[test]
fn static_file_range_edge_cases() {
    let dir = std::env::temp_dir().join(format!("tapir-ranges-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let content: Vec<u8> = (0..1000u32).map(|i| (i % 241) as u8).collect();
    std::fs::write(dir.join("f.bin"), &content).unwrap();
    let get = |headers: &str| Req::raw(format!("GET /f.bin HTTP/1.1\r\nHost: t\r\n{headers}\r\n"));
    let script = vec![
        get("Range: bytes=0-9, 20-29\r\n"),
        get("Range: bytes=0-9, 5000-6000\r\n"),
        get("Range: bytes=5000-6000, 2000-\r\n"),
        get("Range: bytes=-2000\r\n"),
        get("Range: bytes=9-3\r\n"),
        get("Range: lines=1-2\r\n"),
        get("Range: bytes=0-9\r\nIf-Range: Thu, 01 Jan 1970 00:00:00 GMT\r\n"),
        Req {
            bytes: b"HEAD /f.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=0-9\r\n\r\n".to_vec(),
            head: true,
        },
    ];
    let r = &serve_files(&dir, script);
    let whole = |i: usize, why: &str| {
        assert_eq!((r[i].status, &r[i].body), (200, &content), "{why}");
        assert_eq!(r[i].header("content-range"), None, "{why}");
    };
    whole(0, "two satisfiable ranges: the whole file (no multipart)");
    assert_eq!((r[1].status, &r[1].body[..]), (206, &content[..10]));
    assert_eq!(r[1].header("content-range"), Some("bytes 0-9/1000"));
    assert_eq!(r[2].status, 416, "no range overlaps the file");
    assert_eq!(r[2].header("content-range"), Some("bytes */1000"));
    assert_eq!(
        (r[3].status, &r[3].body),
        (206, &content),
        "suffix longer than the file"
    );
    assert_eq!(r[3].header("content-range"), Some("bytes 0-999/1000"));
    whole(4, "a reversed range is ignored");
    whole(5, "an unknown unit is ignored");
    whole(6, "If-Range with another date");
    assert_eq!(r[7].status, 200, "HEAD ignores Range");
    assert_eq!(r[7].header("content-length"), Some("1000"));
}

/// `/stats` is read at one instant: the connection asking is open and the stack has
/// counted it (it used to read `connections_open` from the previous turn, 0 for a first
/// connection, and `tcp_accepted` one behind `connections_total`).
#[test]
fn stats_are_read_at_one_instant() {
    let scripts: Vec<Vec<Req>> = (0..200).map(|_| vec![Req::get("/stats")]).collect();
    let (client, _, _) = exchange(
        LinkConfig::default(),
        ServerConfig::default(),
        builtin(),
        scripts,
        false,
        |_| {},
    );
    assert!(client.app.errors().is_empty(), "{:?}", client.app.errors());
    for flow in &client.app.flows {
        let json = String::from_utf8_lossy(&flow.responses[0].body).into_owned();
        let get = |key| common::netns::json_u64(&json, key);
        assert!(get("connections_open") >= 1, "{json}");
        assert!(get("tcp_connections") >= 1, "{json}");
        assert!(get("connections_total") <= get("tcp_accepted"), "{json}");
        let document: serde_json::Value = serde_json::from_str(&json).expect("JSON");
        assert_eq!(
            document["tcp_congestion_control"], "bbr",
            "the default: {json}"
        );
    }
}

#[test]
fn a_users_own_handler_gets_options_star_and_501_from_the_server() {
    // RFC 9110 §9.3.7 and §9.1: `OPTIONS *` is about the server, and a method the server
    // does not recognize gets 501 — whatever handler the user wrote, which never sees them.
    let run = |methods: Option<Vec<http::Method>>| {
        let calls = std::rc::Rc::new(std::cell::Cell::new(0));
        let seen = calls.clone();
        let make = move |_stats| -> Handler {
            Box::new(move |req: Request<RequestBody>, _: &ConnInfo| {
                seen.set(seen.get() + 1);
                Response::new(Body::from(format!("mine: {} {}", req.method(), req.uri())))
            })
        };
        let script = vec![
            Req::raw("OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n"),
            Req::raw("FOO / HTTP/1.1\r\nHost: t\r\n\r\n"),
            Req::raw("PROPFIND / HTTP/1.1\r\nHost: t\r\n\r\n"),
            Req::raw("PUT / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nx"),
            Req::get("/"),
        ];
        let config = ServerConfig {
            methods,
            ..ServerConfig::default()
        };
        let (client, _, _) = exchange(
            LinkConfig::default(),
            config,
            make,
            vec![script],
            false,
            |_| {},
        );
        let flow = &client.app.flows[0];
        assert!(flow.error.is_none(), "{:?}", flow.error);
        (flow.responses.clone(), calls.get())
    };
    // The default: GET, HEAD and POST, and RFC 9110's methods recognized.
    let (r, calls) = run(ServerConfig::default().methods);
    assert_eq!(r[0].status, 204);
    assert_eq!(r[0].header("allow"), Some("GET, HEAD, POST, OPTIONS"));
    assert!(r[0].header("date").is_some() && r[0].header("server").is_some());
    assert_eq!(r[1].status, 501, "FOO");
    assert_eq!(r[2].status, 501, "PROPFIND is not RFC 9110's");
    assert_eq!((r[3].status, &r[3].body[..]), (200, &b"mine: PUT /"[..]));
    assert_eq!((r[4].status, &r[4].body[..]), (200, &b"mine: GET /"[..]));
    assert_eq!(calls, 2, "only PUT and GET reached the handler");
    // A handler that takes an extension method lists it.
    let propfind = http::Method::from_bytes(b"PROPFIND").unwrap();
    let (r, calls) = run(Some(vec![http::Method::GET, propfind]));
    assert_eq!(r[0].header("allow"), Some("GET, PROPFIND, OPTIONS"));
    assert_eq!(r[1].status, 501);
    assert_eq!(&r[2].body[..], b"mine: PROPFIND /");
    assert_eq!(calls, 3);
    // `None` (a proxy): everything reaches the handler.
    let (r, calls) = run(None);
    assert_eq!(&r[0].body[..], b"mine: OPTIONS *");
    assert_eq!(&r[1].body[..], b"mine: FOO /");
    assert_eq!(calls, 5);
}

/// SHA-256 of `data`, for comparing large bodies.
fn sha256(data: &[u8]) -> Vec<u8> {
    Sha256::digest(data).to_vec()
}

/// A body of unknown length (sent chunked, or close-delimited to HTTP/1.0) handed out in
/// pieces of changing size, each already in a `Bytes`.
struct Pieces {
    data: bytes::Bytes,
    step: usize,
}

impl tapir::service::BodyStream for Pieces {
    fn poll_chunk(
        &mut self,
        _cx: &mut std::task::Context<'_>,
        max: usize,
    ) -> std::task::Poll<Option<Result<bytes::Bytes, tapir::service::BodyError>>> {
        if self.data.is_empty() {
            return std::task::Poll::Ready(None);
        }
        self.step = self.step % 40_000 + 7_919;
        let n = self.step.min(max).min(self.data.len());
        std::task::Poll::Ready(Some(Ok(self.data.split_to(n))))
    }
}

/// Bodies written straight into the send buffer arrive exactly, over a link that loses
/// and delays frames (retransmissions come from the same buffer): `/bytes/N`, a file read
/// with pread, a length file range, a streamed body sent chunked and the same body
/// close-delimited to an HTTP/1.0 client, each followed by a pipelined request that must
/// not overtake it.
#[test]
fn bodies_written_in_place_arrive_exactly_and_in_order() {
    let dir = std::env::temp_dir().join(format!("tapir-in-place-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let content: Vec<u8> = (0..(2 << 20) + 13u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(dir.join("data.bin"), &content).unwrap();
    let root = dir.clone();
    let stream_data = bytes::Bytes::from(content.clone());
    let make = move |stats| -> Handler {
        let files = StaticFiles::new(&root, false).unwrap();
        let builtin = Builtin::new(stats);
        Box::new(
            move |req: Request<RequestBody>, info: &ConnInfo| match req.uri().path() {
                "/stream" => Response::new(Body::stream(Pieces {
                    data: stream_data.clone(),
                    step: 0,
                })),
                p if p.starts_with("/bytes/") => builtin.handle(req, info),
                _ => files.handle(&req),
            },
        )
    };
    let n = 3 * 1024 * 1024 + 7;
    let scripts = vec![
        vec![
            Req::get(&format!("/bytes/{n}")),
            Req::get("/data.bin"),
            Req::raw("GET /data.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=1000-1999999\r\n\r\n"),
            Req::get("/stream"),
            Req::get("/bytes/5"),
        ],
        vec![Req::raw("GET /stream HTTP/1.0\r\n\r\n")],
    ];
    let link = LinkConfig {
        latency: Duration::from_millis(2),
        loss: 0.005,
        seed: 15,
        ..LinkConfig::default()
    };
    let (client, _, _) = exchange(link, ServerConfig::default(), make, scripts, true, |_| {});
    std::fs::remove_dir_all(&dir).ok();
    assert!(client.app.errors().is_empty(), "{:?}", client.app.errors());
    let r = &client.app.flows[0].responses;
    let pattern = tapir::service::builtin::PATTERN;
    let expected: Vec<u8> = (0..n).map(|i| pattern[i % pattern.len()]).collect();
    assert_eq!(r.len(), 5);
    assert_eq!(sha256(&r[0].body), sha256(&expected), "/bytes/{n}");
    assert_eq!(sha256(&r[1].body), sha256(&content), "the file");
    assert_eq!(r[2].status, 206);
    assert_eq!(sha256(&r[2].body), sha256(&content[1000..2_000_000]));
    assert_eq!(r[3].header("transfer-encoding"), Some("chunked"));
    assert_eq!(sha256(&r[3].body), sha256(&content), "the chunked stream");
    assert_eq!(r[4].body, &expected[..5]);
    let old = &client.app.flows[1];
    assert!(old.closed_by_server);
    assert_eq!(old.responses[0].header("content-length"), None);
    assert_eq!(
        sha256(&old.responses[0].body),
        sha256(&content),
        "close-delimited"
    );
}

/// A file that is shorter than the length its response announced (it shrank after the
/// head went out): the body is cut where the file ends, the connection closes, and the
/// pipelined request behind it gets no answer on this connection.
#[test]
fn a_file_shorter_than_announced_cuts_the_response_and_closes() {
    let dir = std::env::temp_dir().join(format!("tapir-short-file-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("short.bin");
    std::fs::write(&path, vec![b'x'; 100_000]).unwrap();
    let make = move |_stats| -> Handler {
        Box::new(move |_req: Request<RequestBody>, _: &ConnInfo| {
            let file = std::fs::File::open(&path).unwrap();
            Response::new(Body::file(file, 0, 300_000).unwrap())
        })
    };
    let scripts = vec![vec![Req::get("/short"), Req::get("/next")]];
    let (client, server, _) = exchange(
        LinkConfig::default(),
        ServerConfig::default(),
        make,
        scripts,
        true,
        |_| {},
    );
    std::fs::remove_dir_all(&dir).ok();
    let flow = &client.app.flows[0];
    assert!(flow.closed_by_server);
    assert!(flow.responses.is_empty(), "{:?}", flow.responses.len());
    let error = flow.error.as_deref().unwrap_or("");
    assert!(error.contains("ended after 0 of 2"), "{error}");
    // The head and the 100,000 bytes the file had, nothing after them.
    let out = server.app.stats_handle().get().bytes_out;
    assert!((100_000..101_000).contains(&out), "{out} bytes sent");
}
