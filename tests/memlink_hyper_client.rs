//! hyper-util's legacy `Client` (pooled, HTTP/1.1 and HTTP/2) using tapir's connector as its
//! transport, against hyper's server on tapir's flows, over the in-memory link. Built with
//! the `hyper-util` feature (`cargo test --features hyper-util --test memlink_hyper_client`).

mod common;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use common::hyper::hyper_server;
use common::{config, linked, CLIENT_IP, SERVER_IP};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use smoltcp::time::Duration;
use tapir::device::memlink::LinkConfig;
use tapir::runtime::sim::{Node, Sim, SimNode};
use tapir::transport::certs::{self, Roots};
use tapir::transport::flow::Flows;

type Outcome = Rc<RefCell<Option<Result<Vec<(StatusCode, http::Version, Bytes)>, String>>>>;

/// Runs three requests through hyper-util's pooled client (each after the previous one)
/// against `scheme`, the client offering `alpn` over TLS; returns
/// the responses and how many connections the server accepted.
fn legacy_client(scheme: &str, alpn: &[&[u8]]) -> (Vec<(StatusCode, http::Version, Bytes)>, usize) {
    let mut sim = Sim::new();
    let (mut s_stack, s_dev, c_stack, c_dev) = linked(
        LinkConfig::default(),
        config(SERVER_IP, 2, 41),
        config(CLIENT_IP, 1, 42),
        &sim,
    );
    let ip = std::net::IpAddr::from(SERVER_IP.octets());
    let generated = certs::self_signed(&["flows.test".to_string()], &[ip]).unwrap();
    // Tests run in parallel: each call its own file.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!("tapir-legacy-{}-{call}.crt", std::process::id());
    let ca = std::env::temp_dir().join(name);
    std::fs::write(&ca, &generated.cert_pem).unwrap();
    let server_tls = certs::server_config(
        generated.chain,
        generated.key,
        &[b"h2".to_vec(), b"http/1.1".to_vec()],
    )
    .unwrap();
    let alpn: Vec<Vec<u8>> = alpn.iter().map(|p| p.to_vec()).collect();
    let client_tls = certs::client_config(&Roots::CaFile(ca.clone()), &alpn).unwrap();
    let _ = std::fs::remove_file(&ca);

    let mut server_flows = Flows::default();
    let listener = if scheme == "https" {
        server_flows
            .bind(&mut s_stack, 443, Some(server_tls))
            .unwrap()
    } else {
        server_flows.bind(&mut s_stack, 80, None).unwrap()
    };
    let server = server_flows.handle();
    let accepted = Rc::new(Cell::new(0));
    server
        .spawn(hyper_server(server.clone(), listener, accepted.clone()))
        .unwrap();

    let client_flows = Flows::default();
    let client = client_flows.handle();
    let outcome: Outcome = Rc::default();
    let connector = client.connector(Arc::clone(&client_tls)).hyper();
    let legacy: Client<_, Full<Bytes>> = Client::builder(client.send_spawner()).build(connector);
    let uri = format!("{scheme}://{SERVER_IP}/");
    {
        let o = outcome.clone();
        client
            .spawn(async move {
                let mut out = Vec::new();
                for (i, path) in ["a", "b", "c"].iter().enumerate() {
                    let request = Request::post(format!("{uri}{path}"))
                        .body(Full::new(Bytes::from(vec![b'x'; 1000 * (i + 1)])))
                        .unwrap();
                    let response = match legacy.request(request).await {
                        Ok(response) => response,
                        Err(e) => return *o.borrow_mut() = Some(Err(format!("{e:?}"))),
                    };
                    let (status, version) = (response.status(), response.version());
                    match response.into_body().collect().await {
                        Ok(body) => out.push((status, version, body.to_bytes())),
                        Err(e) => return *o.borrow_mut() = Some(Err(e.to_string())),
                    }
                }
                *o.borrow_mut() = Some(Ok(out));
            })
            .unwrap();
    }
    let mut server_node = Node::new(s_stack, s_dev, server_flows);
    let mut client_node = Node::new(c_stack, c_dev, client_flows);
    sim.run_until(
        &mut [&mut server_node as &mut dyn SimNode, &mut client_node],
        Duration::from_secs(60),
        |_| outcome.borrow().is_some(),
    )
    .expect("the client finishes");
    let responses = outcome.borrow_mut().take().unwrap().expect("responses");
    (responses, accepted.get())
}

fn check(responses: &[(StatusCode, http::Version, Bytes)], version: http::Version) {
    assert_eq!(responses.len(), 3);
    for (i, (path, (status, v, body))) in ["a", "b", "c"].iter().zip(responses).enumerate() {
        assert_eq!(*status, StatusCode::OK);
        assert_eq!(*v, version);
        let head = format!("POST /{path} {version:?}\n");
        assert!(
            body.starts_with(head.as_bytes()),
            "{:?}",
            &body[..20.min(body.len())]
        );
        assert_eq!(body.len(), head.len() + 1000 * (i + 1));
    }
}

#[test]
fn legacy_client_over_tcp_flows_reuses_one_connection() {
    let (responses, accepted) = legacy_client("http", &[]);
    check(&responses, http::Version::HTTP_11);
    assert_eq!(accepted, 1, "the pool kept the connection");
}

#[test]
fn legacy_client_speaks_h2_when_the_tls_flow_negotiated_it() {
    let (responses, accepted) = legacy_client("https", &[b"h2", b"http/1.1"]);
    check(&responses, http::Version::HTTP_2);
    assert_eq!(accepted, 1);
}

#[test]
fn legacy_client_speaks_http1_over_tls_without_h2() {
    let (responses, accepted) = legacy_client("https", &[b"http/1.1"]);
    check(&responses, http::Version::HTTP_11);
    assert_eq!(accepted, 1);
}
