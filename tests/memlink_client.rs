//! tapir's client against tapir's server over the in-memory link.

mod common;

use common::{config, linked, CLIENT_IP, SERVER_IP};
use http::{Method, Request, Response};
use sha2::{Digest, Sha256};
use smoltcp::time::Duration;
use smoltcp::wire::IpAddress;
use tapir::client::fetch::{Fetch, Job, Outcome, Sink};
use tapir::client::{Client, ClientConfig, Scheme, Target, Version};
use tapir::device::memlink::{LinkConfig, MemDevice};
use tapir::runtime::sim::{Node, Sim, SimNode};
use tapir::service::builtin::{Builtin, PATTERN};
use tapir::service::server::StatsHandle;
use tapir::service::{Body, ConnInfo, ResponseBody, Server, ServerConfig};
use tapir::stack::StackConfig;

/// Hashes a response body.
#[derive(Default)]
struct Hash {
    sha: Sha256,
    version: Option<http::Version>,
}

impl Sink for Hash {
    fn head(&mut self, response: &Response<ResponseBody>) {
        self.version = Some(response.version());
    }
    fn data(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.sha.update(data);
        Ok(())
    }
}

fn pattern_sha(n: usize) -> [u8; 32] {
    let bytes: Vec<u8> = (0..n).map(|i| PATTERN[i % PATTERN.len()]).collect();
    Sha256::digest(&bytes).into()
}

fn target(scheme: Scheme, port: u16) -> Target {
    Target {
        scheme,
        host: SERVER_IP.to_string(),
        port,
        addr: IpAddress::Ipv4(SERVER_IP),
    }
}

type BoxHandler =
    Box<dyn Fn(http::Request<tapir::service::RequestBody>, &ConnInfo) -> Response<Body>>;
type Srv = Server<BoxHandler>;

/// Runs `jobs` from a tapir client against a tapir server with the built-in site.
fn fetch(
    link: LinkConfig,
    client_config: ClientConfig,
    jobs: Vec<Job<Hash>>,
    parallel: bool,
) -> (Node<MemDevice, Fetch<Hash>>, Node<MemDevice, Srv>) {
    fetch_with(link, client_config, jobs, parallel, None, |_| {})
}

/// Like [`fetch`]; with `tls`, the server also serves HTTPS on 443 with that configuration.
fn fetch_with(
    link: LinkConfig,
    client_config: ClientConfig,
    jobs: Vec<Job<Hash>>,
    parallel: bool,
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    tune: fn(&mut StackConfig),
) -> (Node<MemDevice, Fetch<Hash>>, Node<MemDevice, Srv>) {
    let mut sim = Sim::new();
    let (mut server_config, mut client_config_stack) =
        (config(SERVER_IP, 2, 21), config(CLIENT_IP, 1, 22));
    tune(&mut server_config);
    tune(&mut client_config_stack);
    let (mut s_stack, s_dev, c_stack, c_dev) =
        linked(link, server_config, client_config_stack, &sim);
    let stats = StatsHandle::default();
    let builtin = Builtin::new(stats.clone());
    let handler: BoxHandler = Box::new(move |req, info: &ConnInfo| builtin.handle(req, info));
    let mut server = Server::with_stats(handler, ServerConfig::default(), stats);
    server.bind_http(&mut s_stack, 80).unwrap();
    if let Some(tls) = tls {
        server.bind_https(&mut s_stack, 443, tls).unwrap();
    }
    let app = Fetch::new(Client::new(client_config).unwrap(), jobs, parallel);
    let mut server = Node::new(s_stack, s_dev, server);
    let mut client = Node::new(c_stack, c_dev, app);
    sim.run_until(
        &mut [&mut server as &mut dyn SimNode, &mut client],
        Duration::from_secs(3600),
        |nodes| nodes[1].finished(),
    )
    .unwrap_or_else(|e| {
        let outcomes: Vec<_> = client.app.jobs.iter().map(|j| j.outcome.clone()).collect();
        panic!(
            "all jobs finish: {e}; outcomes {outcomes:?}; server {:?}\nserver sockets {:#?}\nclient sockets {:#?}",
            server.app.stats_handle().get(),
            server.stack.describe_connections(),
            client.stack.describe_connections()
        )
    });
    (client, server)
}

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

#[test]
fn h2c_hundred_concurrent_requests_share_one_connection() {
    let config = ClientConfig {
        version: Version::Http2,
        ..ClientConfig::default()
    };
    let jobs = (0..100)
        .map(|i| {
            Job::new(
                target(Scheme::Http, 80),
                get(&format!("/bytes/{}", 1000 + i)),
                Hash::default(),
            )
        })
        .collect();
    let (client, server) = fetch(LinkConfig::default(), config, jobs, true);
    assert!(
        client.app.failures().is_empty(),
        "{:?}",
        client.app.failures()
    );
    for (i, job) in client.app.jobs.iter().enumerate() {
        assert_eq!(
            job.outcome,
            Some(Outcome::Done {
                status: http::StatusCode::OK,
                bytes: 1000 + i as u64
            })
        );
        assert_eq!(job.sink.version, Some(http::Version::HTTP_2));
        assert_eq!(
            <[u8; 32]>::from(job.sink.sha.clone().finalize()),
            pattern_sha(1000 + i)
        );
    }
    let stats = server.app.stats_handle().get();
    assert_eq!(stats.requests_http2, 100);
    assert_eq!(
        stats.connections_total, 1,
        "one HTTP/2 connection carried every request"
    );
}

#[test]
fn h2c_64_mib_download_through_loss_and_reordering() {
    let link = LinkConfig {
        loss: 0.02,
        reorder: 0.02,
        latency: Duration::from_micros(100),
        seed: 77,
        ..LinkConfig::default()
    };
    let config = ClientConfig {
        version: Version::Http2,
        ..ClientConfig::default()
    };
    let n = 64 * 1024 * 1024;
    let jobs = vec![Job::new(
        target(Scheme::Http, 80),
        get(&format!("/bytes/{n}")),
        Hash::default(),
    )];
    let (client, _) = fetch(link, config, jobs, false);
    assert!(
        client.app.failures().is_empty(),
        "{:?}",
        client.app.failures()
    );
    let job = &client.app.jobs[0];
    assert_eq!(
        job.outcome,
        Some(Outcome::Done {
            status: http::StatusCode::OK,
            bytes: n as u64
        })
    );
    assert_eq!(
        <[u8; 32]>::from(job.sink.sha.clone().finalize()),
        pattern_sha(n)
    );
}

#[test]
fn h2c_upload_is_echoed() {
    let config = ClientConfig {
        version: Version::Http2,
        ..ClientConfig::default()
    };
    let mut data = vec![0u8; 8 * 1024 * 1024];
    fastrand::Rng::with_seed(3).fill(&mut data);
    let request = Request::builder()
        .method(Method::POST)
        .uri("/echo")
        .body(Body::from(data.clone()))
        .unwrap();
    let jobs = vec![Job::new(target(Scheme::Http, 80), request, Hash::default())];
    let (client, _) = fetch(LinkConfig::default(), config, jobs, false);
    assert!(
        client.app.failures().is_empty(),
        "{:?}",
        client.app.failures()
    );
    assert_eq!(
        client.app.jobs[0].sink.sha.clone().finalize(),
        Sha256::digest(&data)
    );
}

/// 3 MB h2c uploads (the soak test's size, with a content-length) through loss and
/// reordering: the server's cleartext receive path (sniffed preface as prefix, ring-buffer
/// wrap, buffer growth, frame inspector) must hand h2 every byte exactly once, or h2 resets
/// the stream with "content-length overflow" and the echo differs.
#[test]
fn h2c_3_mb_uploads_through_loss_keep_every_byte_once() {
    for seed in [5, 6, 7] {
        let link = LinkConfig {
            loss: 0.02,
            reorder: 0.02,
            latency: Duration::from_micros(100),
            seed,
            ..LinkConfig::default()
        };
        let config = ClientConfig {
            version: Version::Http2,
            ..ClientConfig::default()
        };
        let mut data = vec![0u8; 3_000_000];
        fastrand::Rng::with_seed(seed).fill(&mut data);
        let request = Request::builder()
            .method(Method::POST)
            .uri("/echo")
            .header(http::header::CONTENT_LENGTH, data.len())
            .body(Body::from(data.clone()))
            .unwrap();
        let jobs = vec![Job::new(target(Scheme::Http, 80), request, Hash::default())];
        let (client, server) = fetch(link, config, jobs, false);
        assert!(
            client.app.failures().is_empty(),
            "seed {seed}: {:?}",
            client.app.failures()
        );
        assert_eq!(
            client.app.jobs[0].outcome,
            Some(Outcome::Done {
                status: http::StatusCode::OK,
                bytes: data.len() as u64
            }),
            "seed {seed}"
        );
        assert_eq!(
            client.app.jobs[0].sink.sha.clone().finalize(),
            Sha256::digest(&data),
            "seed {seed}"
        );
        let stats = server.app.stats_handle().get();
        assert!(
            stats.bytes_in >= data.len() as u64,
            "seed {seed}: {stats:?}"
        );
    }
}

#[test]
fn refused_connection_is_a_clear_error() {
    let config = ClientConfig {
        version: Version::Http2,
        ..ClientConfig::default()
    };
    let jobs = vec![Job::new(
        target(Scheme::Http, 81),
        get("/"),
        Hash::default(),
    )];
    let (client, _) = fetch(LinkConfig::default(), config, jobs, false);
    let failures = client.app.failures();
    assert_eq!(failures.len(), 1);
    assert!(failures[0].1.contains("refused"), "{failures:?}");
}

/// The HTTP/1.1 engine times the response head: with a 1.5 s round trip a 1 s request
/// timeout fails the request with the timeout error, a 10 s one lets it through.
#[test]
fn http1_response_head_timeout_fails_a_late_response() {
    let link = LinkConfig {
        latency: Duration::from_millis(750),
        ..LinkConfig::default()
    };
    for (limit, fails) in [(1, true), (10, false)] {
        let config = ClientConfig {
            version: Version::Http1,
            request_timeout: Some(std::time::Duration::from_secs(limit)),
            ..ClientConfig::default()
        };
        let jobs = vec![Job::new(
            target(Scheme::Http, 80),
            get("/bytes/10"),
            Hash::default(),
        )];
        let (client, _) = fetch(link.clone(), config, jobs, false);
        let failures = client.app.failures();
        if fails {
            assert_eq!(failures.len(), 1, "{failures:?}");
            assert!(failures[0].1.contains("timed out after 1s"), "{failures:?}");
        } else {
            assert!(failures.is_empty(), "{failures:?}");
            let job = &client.app.jobs[0];
            assert_eq!(job.sink.version, Some(http::Version::HTTP_11));
        }
    }
}

#[test]
fn http1_keep_alive_reuses_one_connection() {
    let jobs = (0..20)
        .map(|i| {
            Job::new(
                target(Scheme::Http, 80),
                get(&format!("/bytes/{}", 100 * i)),
                Hash::default(),
            )
        })
        .collect();
    let (client, server) = fetch(LinkConfig::default(), ClientConfig::default(), jobs, false);
    assert!(
        client.app.failures().is_empty(),
        "{:?}",
        client.app.failures()
    );
    for (i, job) in client.app.jobs.iter().enumerate() {
        assert_eq!(job.sink.version, Some(http::Version::HTTP_11));
        assert_eq!(
            <[u8; 32]>::from(job.sink.sha.clone().finalize()),
            pattern_sha(100 * i)
        );
    }
    let stats = server.app.stats_handle().get();
    assert_eq!(stats.requests_http1, 20);
    assert_eq!(
        stats.connections_total, 1,
        "twenty requests, one keep-alive connection"
    );
}

#[test]
fn http1_16_mib_download_and_4_mib_upload_through_loss() {
    let link = LinkConfig {
        loss: 0.02,
        reorder: 0.02,
        latency: Duration::from_micros(100),
        seed: 78,
        ..LinkConfig::default()
    };
    // 16 MiB keeps the test short; the 64 MiB case runs over HTTP/2 above.
    let n = 16 * 1024 * 1024;
    let (jobs, data) = download_and_upload(n, 4);
    let (client, _) = fetch(link, ClientConfig::default(), jobs, false);
    assert_download_and_upload(&client, n, &data);
}

/// Both directions of HTTP/1.1 through 1 MiB buffers, which a write loop fills exactly in
/// one wake-up (16 turns of 64 KiB): before the fix the download stopped after exactly
/// 1 MiB and so did the upload (the "1 MiB stall", tapir's client and server alike).
#[test]
fn http1_through_one_mib_buffers_does_not_stall() {
    let n = 4 * 1024 * 1024;
    let (jobs, data) = download_and_upload(n, 5);
    let link = LinkConfig {
        latency: Duration::from_millis(1),
        ..LinkConfig::default()
    };
    let (client, _) = fetch_with(link, ClientConfig::default(), jobs, false, None, |c| {
        c.tcp.initial_buffer = 1024 * 1024;
        c.tcp.rx_buffer = 1024 * 1024;
        c.tcp.tx_buffer = 1024 * 1024;
    });
    assert_download_and_upload(&client, n, &data);
}

/// A GET of `/bytes/{n}` and a POST to `/echo` of 4 MiB of seeded random bytes, on one
/// HTTP/1.1 target; returns the jobs and the uploaded bytes.
fn download_and_upload(n: usize, seed: u64) -> (Vec<Job<Hash>>, Vec<u8>) {
    let mut data = vec![0u8; 4 * 1024 * 1024];
    fastrand::Rng::with_seed(seed).fill(&mut data);
    let upload = Request::builder()
        .method(Method::POST)
        .uri("/echo")
        .body(Body::from(data.clone()))
        .unwrap();
    let jobs = vec![
        Job::new(
            target(Scheme::Http, 80),
            get(&format!("/bytes/{n}")),
            Hash::default(),
        ),
        Job::new(target(Scheme::Http, 80), upload, Hash::default()),
    ];
    (jobs, data)
}

/// Both jobs of [`download_and_upload`] finished with the right bytes.
fn assert_download_and_upload(client: &Node<MemDevice, Fetch<Hash>>, n: usize, data: &[u8]) {
    assert!(
        client.app.failures().is_empty(),
        "{:?}",
        client.app.failures()
    );
    assert_eq!(
        <[u8; 32]>::from(client.app.jobs[0].sink.sha.clone().finalize()),
        pattern_sha(n)
    );
    assert_eq!(
        client.app.jobs[1].sink.sha.clone().finalize(),
        Sha256::digest(data)
    );
}

/// A self-signed certificate for the server, trusted by the client through a CA file.
fn tls_pair(alpn: &[&[u8]]) -> (std::sync::Arc<rustls::ServerConfig>, std::path::PathBuf) {
    use tapir::transport::certs;
    let made = certs::self_signed(
        &["localhost".to_string()],
        &[std::net::IpAddr::from(SERVER_IP)],
    )
    .unwrap();
    let path = std::env::temp_dir().join(format!(
        "tapir-client-ca-{}-{}.pem",
        std::process::id(),
        alpn.len()
    ));
    std::fs::write(&path, &made.cert_pem).unwrap();
    let alpn: Vec<Vec<u8>> = alpn.iter().map(|p| p.to_vec()).collect();
    (
        certs::server_config(made.chain, made.key, &alpn).unwrap(),
        path,
    )
}

fn https_target() -> Target {
    Target {
        scheme: Scheme::Https,
        host: "localhost".to_string(),
        port: 443,
        addr: IpAddress::Ipv4(SERVER_IP),
    }
}

#[test]
fn https_alpn_picks_h2_or_http1() {
    use tapir::transport::certs::Roots;
    let (tls, ca) = tls_pair(&[b"h2", b"http/1.1"]);
    for (version, want) in [
        (Version::Auto, http::Version::HTTP_2),
        (Version::Http2, http::Version::HTTP_2),
        (Version::Http1, http::Version::HTTP_11),
    ] {
        let config = ClientConfig {
            version,
            roots: Roots::CaFile(ca.clone()),
            ..ClientConfig::default()
        };
        let jobs = (0..3)
            .map(|i| {
                Job::new(
                    https_target(),
                    get(&format!("/bytes/{}", 5000 * i)),
                    Hash::default(),
                )
            })
            .collect();
        let (client, server) = fetch_with(
            LinkConfig::default(),
            config,
            jobs,
            false,
            Some(tls.clone()),
            |_| {},
        );
        assert!(
            client.app.failures().is_empty(),
            "{version:?}: {:?}",
            client.app.failures()
        );
        for (i, job) in client.app.jobs.iter().enumerate() {
            assert_eq!(job.sink.version, Some(want), "{version:?}");
            assert_eq!(
                <[u8; 32]>::from(job.sink.sha.clone().finalize()),
                pattern_sha(5000 * i)
            );
        }
        assert_eq!(
            server.app.stats_handle().get().connections_total,
            1,
            "{version:?}: one connection"
        );
    }
    std::fs::remove_file(ca).ok();
}

#[test]
fn https_without_a_common_protocol_or_trust_fails_clearly() {
    use tapir::transport::certs::Roots;
    // The server speaks only HTTP/1.1; a client that insists on h2 gets the ALPN alert.
    let (tls, ca) = tls_pair(&[b"http/1.1"]);
    let config = ClientConfig {
        version: Version::Http2,
        roots: Roots::CaFile(ca.clone()),
        ..ClientConfig::default()
    };
    let jobs = vec![Job::new(https_target(), get("/"), Hash::default())];
    let (client, _) = fetch_with(
        LinkConfig::default(),
        config,
        jobs,
        false,
        Some(tls.clone()),
        |_| {},
    );
    let failures = client.app.failures();
    assert_eq!(failures.len(), 1);
    assert!(
        failures[0].1.contains("NoApplicationProtocol"),
        "{failures:?}"
    );
    // The public roots do not trust a self-signed certificate.
    let jobs = vec![Job::new(https_target(), get("/"), Hash::default())];
    let (client, _) = fetch_with(
        LinkConfig::default(),
        ClientConfig::default(),
        jobs,
        false,
        Some(tls),
        |_| {},
    );
    let failures = client.app.failures();
    assert!(failures[0].1.contains("UnknownIssuer"), "{failures:?}");
    std::fs::remove_file(ca).ok();
}
