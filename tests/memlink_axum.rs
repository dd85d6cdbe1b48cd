//! An axum `Router` — routes, JSON, a path extractor, a streaming body, a tower-http layer
//! — served unchanged by tapir's server over the in-memory link, and answered to tapir's
//! own client on HTTP/1.1, h2c and h2/TLS; plus a service whose readiness holds requests
//! back (tower's concurrency limit).

mod common;

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use axum::extract::{Extension, Path};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use common::{config, linked, CLIENT_IP, SERVER_IP};
use http::header::{HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, TRANSFER_ENCODING};
use http::{Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Collected};
use serde_json::{json, Value};
use smoltcp::time::Duration;
use smoltcp::wire::IpAddress;
use tapir::client::fetch::{ClientWork, Fetch, Job, Outcome, Sink, WithClient};
use tapir::client::{Client, ClientConfig, Scheme, Target, Version};
use tapir::device::memlink::{LinkConfig, MemDevice};
use tapir::runtime::sim::{Node, Sim, SimNode};
use tapir::runtime::Application;
use tapir::service::{Body, BodyError, ConnInfo, Incoming, ResponseBody, Server, ServerConfig};
use tapir::transport::certs::{self, Roots};
use tower_http::set_header::SetResponseHeaderLayer;

/// What the client saw of one response.
#[derive(Default, Debug)]
struct Seen {
    version: Option<http::Version>,
    headers: http::HeaderMap,
    body: Vec<u8>,
}

impl Sink for Seen {
    fn head(&mut self, response: &Response<ResponseBody>) {
        self.version = Some(response.version());
        self.headers = response.headers().clone();
    }
    fn data(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.body.extend_from_slice(data);
        Ok(())
    }
}

/// A body of `left` chunks of `size` bytes that is not ready before each chunk: it wakes
/// its task and answers `Pending` first, so every chunk needs the loop's waker.
struct Trickle {
    left: usize,
    size: usize,
    yielded: bool,
}

impl http_body::Body for Trickle {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        if !self.yielded {
            self.yielded = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.yielded = false;
        self.left -= 1;
        let byte = b'a' + (self.left % 26) as u8;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![byte; self.size])))))
    }
}

/// One data frame, then trailers.
struct WithTrailers {
    data: Option<Bytes>,
    trailers: Option<http::HeaderMap>,
}

impl http_body::Body for WithTrailers {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Some(data) = self.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }
}

/// The bytes a `Trickle` of `count` chunks of `size` gives.
fn trickle_bytes(count: usize, size: usize) -> Vec<u8> {
    (0..count)
        .rev()
        .flat_map(|left| std::iter::repeat_n(b'a' + (left % 26) as u8, size))
        .collect()
}

fn router() -> Router {
    Router::new()
        .route("/hello", get(|| async { "hello" }))
        .route(
            "/users/{id}",
            get(|Path(id): Path<u64>| async move {
                Json(json!({ "id": id, "name": format!("user {id}") }))
            }),
        )
        .route(
            "/echo-json",
            post(|Json(value): Json<Value>| async move { Json(value) }),
        )
        .route(
            "/stream/{count}/{size}",
            get(|Path((count, size)): Path<(usize, usize)>| async move {
                axum::body::Body::new(Trickle {
                    left: count,
                    size,
                    yielded: false,
                })
            }),
        )
        .route(
            "/trailers",
            get(|| async {
                let mut trailers = http::HeaderMap::new();
                trailers.insert("grpc-status", HeaderValue::from_static("0"));
                trailers.insert("x-checksum", HeaderValue::from_static("1234"));
                axum::body::Body::new(WithTrailers {
                    data: Some(Bytes::from_static(b"data, then trailers")),
                    trailers: Some(trailers),
                })
            }),
        )
        .route("/echo-trailers", post(echo_trailers))
        .route(
            "/whoami",
            get(|Extension(info): Extension<ConnInfo>| async move {
                format!("{} from {}", info.protocol, info.peer_addr().ip())
            }),
        )
        .layer(SetResponseHeaderLayer::overriding(
            HeaderName::from_static("x-served-by"),
            HeaderValue::from_static("tapir"),
        ))
}

/// Reads the request body frame by frame (`http_body::Body::frame`) and answers with its
/// data and its trailer fields, sorted: `data | name=value,...`.
async fn echo_trailers(request: axum::extract::Request) -> String {
    let mut body = request.into_body();
    let mut data = Vec::new();
    let mut fields = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(frame) => frame,
            Err(e) => return format!("body error: {e}"),
        };
        match frame.into_data() {
            Ok(bytes) => data.extend_from_slice(&bytes),
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    for (name, value) in &trailers {
                        fields.push(format!(
                            "{name}={}",
                            String::from_utf8_lossy(value.as_bytes())
                        ));
                    }
                }
            }
        }
    }
    fields.sort();
    format!("{} | {}", String::from_utf8_lossy(&data), fields.join(","))
}

/// The server's TLS configuration (self-signed, ALPN h2 and http/1.1).
fn tls() -> std::sync::Arc<rustls::ServerConfig> {
    let made = certs::self_signed(
        &["localhost".to_string()],
        &[IpAddress::Ipv4(SERVER_IP).into()],
    )
    .expect("certificate");
    certs::server_config(
        made.chain,
        made.key,
        &[b"h2".to_vec(), b"http/1.1".to_vec()],
    )
    .expect("TLS configuration")
}

/// Serves `service` on 80 (HTTP/1.1 and h2c) and 443 (TLS, ALPN) on one end of an
/// in-memory link (stack seeds `seed` and `seed + 1`) and runs `app` on the other end until
/// it finishes; the client's node.
fn serve_and_run<S, A>(service: S, app: A, seed: u64) -> Node<MemDevice, A>
where
    S: tower::Service<Request<Incoming>, Response = Response<axum::body::Body>> + Clone + 'static,
    S::Error: Into<tapir::service::BoxError>,
    S::Future: 'static,
    A: Application,
{
    let sim = Sim::new();
    let (mut s_stack, s_dev, c_stack, c_dev) = linked(
        LinkConfig::default(),
        config(SERVER_IP, 2, seed),
        config(CLIENT_IP, 1, seed + 1),
        &sim,
    );
    let mut server = Server::from_service(service, ServerConfig::default());
    server.bind_http(&mut s_stack, 80).expect("port 80");
    server
        .bind_https(&mut s_stack, 443, tls())
        .expect("port 443");
    let mut server = Node::new(s_stack, s_dev, server);
    let mut client = Node::new(c_stack, c_dev, app);
    let mut sim = sim;
    sim.run_until(
        &mut [&mut server as &mut dyn SimNode, &mut client],
        Duration::from_secs(600),
        |nodes| nodes[1].finished(),
    )
    .expect("the client ends");
    client
}

/// Serves `service` on 80 (HTTP/1.1 and h2c) and 443 (TLS, ALPN) and runs `jobs` from
/// tapir's client until they all end.
fn fetch<S>(
    service: S,
    client: ClientConfig,
    jobs: Vec<Job<Seen>>,
    parallel: bool,
) -> Vec<Job<Seen>>
where
    S: tower::Service<Request<Incoming>, Response = Response<axum::body::Body>> + Clone + 'static,
    S::Error: Into<tapir::service::BoxError>,
    S::Future: 'static,
{
    let app = Fetch::new(Client::new(client).expect("client"), jobs, parallel);
    let mut client = serve_and_run(service, app, 61);
    assert!(
        client.app.failures().is_empty(),
        "{:?}",
        client.app.failures()
    );
    std::mem::take(&mut client.app.jobs)
}

fn target(scheme: Scheme) -> Target {
    let (host, port) = match scheme {
        Scheme::Http => (SERVER_IP.to_string(), 80),
        Scheme::Https => ("localhost".to_string(), 443),
    };
    Target {
        scheme,
        host,
        port,
        addr: IpAddress::Ipv4(SERVER_IP),
    }
}

fn job(scheme: Scheme, request: Request<Body>) -> Job<Seen> {
    Job::new(target(scheme), request, Seen::default())
}

fn status(job: &Job<Seen>) -> StatusCode {
    match &job.outcome {
        Some(Outcome::Done { status, .. }) => *status,
        other => panic!("job did not finish: {other:?}"),
    }
}

fn json_of(job: &Job<Seen>) -> Value {
    assert_eq!(
        job.sink.headers.get(CONTENT_TYPE).map(|v| v.as_bytes()),
        Some(&b"application/json"[..]),
        "{:?}",
        job.sink.headers
    );
    serde_json::from_slice(&job.sink.body).expect("JSON body")
}

/// Every route of the router over one protocol, checked as the client saw it.
fn router_over(scheme: Scheme, version: Version, want: http::Version, want_protocol: &str) {
    let posted = json!({ "name": "tapir", "layers": ["device", "stack", "transport"], "n": 7 });
    let post = Request::post("/echo-json")
        .header(CONTENT_TYPE, "application/json")
        .body(Body::from(posted.to_string()))
        .expect("request");
    let get = |path: &str| Request::get(path).body(Body::empty()).expect("request");
    let jobs = vec![
        job(scheme, get("/hello")),
        job(scheme, get("/users/42")),
        job(scheme, post),
        job(scheme, get("/stream/40/1000")),
        job(scheme, get("/whoami")),
        job(scheme, get("/no-such-route")),
    ];
    let client = ClientConfig {
        version,
        roots: Roots::Insecure,
        ..ClientConfig::default()
    };
    let jobs = fetch(router(), client, jobs, false);
    for job in &jobs {
        assert_eq!(job.sink.version, Some(want));
        assert_eq!(
            job.sink.headers.get("x-served-by").map(|v| v.as_bytes()),
            Some(&b"tapir"[..]),
            "the tower-http layer ran"
        );
    }
    assert_eq!(
        (status(&jobs[0]), &jobs[0].sink.body[..]),
        (StatusCode::OK, &b"hello"[..])
    );
    assert_eq!(
        jobs[0]
            .sink
            .headers
            .get(CONTENT_LENGTH)
            .map(|v| v.as_bytes()),
        Some(&b"5"[..])
    );
    assert_eq!(status(&jobs[1]), StatusCode::OK);
    assert_eq!(json_of(&jobs[1]), json!({ "id": 42, "name": "user 42" }));
    assert_eq!(status(&jobs[2]), StatusCode::OK);
    assert_eq!(json_of(&jobs[2]), posted);
    assert_eq!(status(&jobs[3]), StatusCode::OK);
    assert_eq!(
        jobs[3].sink.body,
        trickle_bytes(40, 1000),
        "the streamed body"
    );
    assert_eq!(
        jobs[3].sink.headers.get(CONTENT_LENGTH),
        None,
        "no length for a stream"
    );
    if want == http::Version::HTTP_11 {
        assert_eq!(
            jobs[3]
                .sink
                .headers
                .get(TRANSFER_ENCODING)
                .map(|v| v.as_bytes()),
            Some(&b"chunked"[..])
        );
    }
    assert_eq!(status(&jobs[4]), StatusCode::OK);
    let whoami = String::from_utf8_lossy(&jobs[4].sink.body).to_string();
    assert_eq!(whoami, format!("{want_protocol} from {CLIENT_IP}"));
    assert_eq!(status(&jobs[5]), StatusCode::NOT_FOUND);
}

#[test]
fn axum_router_over_http1() {
    router_over(
        Scheme::Http,
        Version::Http1,
        http::Version::HTTP_11,
        "HTTP/1.1",
    );
}

#[test]
fn axum_router_over_h2c() {
    router_over(
        Scheme::Http,
        Version::Http2,
        http::Version::HTTP_2,
        "HTTP/2",
    );
}

#[test]
fn axum_router_over_h2_tls() {
    router_over(
        Scheme::Https,
        Version::Http2,
        http::Version::HTTP_2,
        "HTTP/2",
    );
}

#[test]
fn axum_router_over_http1_tls() {
    router_over(
        Scheme::Https,
        Version::Http1,
        http::Version::HTTP_11,
        "HTTP/1.1",
    );
}

/// A service behind tower's concurrency limit of 1: while one request is in flight, the
/// service is not ready and the others wait (on HTTP/2, streams of one connection; on
/// HTTP/1.1, separate connections); each is answered once the one before it ends.
#[test]
fn readiness_holds_requests_until_the_service_is_ready() {
    for (version, parallel) in [(Version::Http2, true), (Version::Http1, true)] {
        let in_flight = Rc::new(Cell::new(0usize));
        let most = Rc::new(Cell::new(0usize));
        let (in_flight2, most2) = (in_flight.clone(), most.clone());
        let service = tower::service_fn(move |request: Request<Incoming>| {
            let (in_flight, most) = (in_flight2.clone(), most2.clone());
            in_flight.set(in_flight.get() + 1);
            most.set(most.get().max(in_flight.get()));
            async move {
                // Takes a few turns of the loop.
                for _ in 0..3 {
                    YieldOnce(false).await;
                }
                in_flight.set(in_flight.get() - 1);
                let path = request.uri().path().to_string();
                Ok::<_, std::convert::Infallible>(Response::new(axum::body::Body::from(path)))
            }
        });
        let limited = tower::ServiceBuilder::new()
            .concurrency_limit(1)
            .service(service);
        // `ConcurrencyLimit` is `Clone` and its clones share the permit.
        let jobs = (0..12)
            .map(|i| {
                job(
                    Scheme::Http,
                    Request::get(format!("/r{i}"))
                        .body(Body::empty())
                        .expect("request"),
                )
            })
            .collect();
        let client = ClientConfig {
            version,
            ..ClientConfig::default()
        };
        let jobs = fetch(limited, client, jobs, parallel);
        for (i, job) in jobs.iter().enumerate() {
            assert_eq!(status(job), StatusCode::OK);
            assert_eq!(job.sink.body, format!("/r{i}").into_bytes());
        }
        assert_eq!(most.get(), 1, "{version:?}: one request at a time");
        assert_eq!(in_flight.get(), 0);
    }
}

/// Pending once (after waking its task), then ready.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// A service whose response fails answers 500, and the connection goes on.
#[test]
fn a_failing_service_answers_500() {
    let service = tower::service_fn(|request: Request<Incoming>| async move {
        if request.uri().path() == "/fail" {
            return Err(std::io::Error::other("broken on purpose"));
        }
        Ok(Response::new(axum::body::Body::from("fine")))
    });
    let get = |path: &str| {
        job(
            Scheme::Http,
            Request::get(path).body(Body::empty()).expect("request"),
        )
    };
    let client = ClientConfig {
        version: Version::Http1,
        ..ClientConfig::default()
    };
    let jobs = fetch(service, client, vec![get("/fail"), get("/ok")], false);
    assert_eq!(status(&jobs[0]), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        (status(&jobs[1]), &jobs[1].sink.body[..]),
        (StatusCode::OK, &b"fine"[..])
    );
}

/// A response body being collected.
type Collecting = Pin<Box<dyn Future<Output = Result<Collected<Bytes>, BodyError>>>>;

/// Sends one request with tapir's client and collects the response body with
/// `http_body_util` (data and trailers).
struct CollectOne {
    target: Target,
    request: Option<Request<Body>>,
    response: Option<tapir::client::ResponseFuture>,
    collecting: Option<Collecting>,
    result: Option<(http::Version, Collected<Bytes>)>,
    version: Option<http::Version>,
    error: Option<String>,
}

impl ClientWork for CollectOne {
    fn advance(&mut self, client: &mut Client, cx: &mut Context<'_>) -> bool {
        if self.result.is_some() || self.error.is_some() {
            return false;
        }
        if let Some(request) = self.request.take() {
            self.response = Some(client.send(&self.target, request));
            return true;
        }
        if let Some(future) = self.response.as_mut() {
            return match Pin::new(future).poll(cx) {
                Poll::Pending => false,
                Poll::Ready(Err(e)) => {
                    self.response = None;
                    self.error = Some(e.to_string());
                    true
                }
                Poll::Ready(Ok(response)) => {
                    self.response = None;
                    self.version = Some(response.version());
                    self.collecting = Some(Box::pin(BodyExt::collect(response.into_body())));
                    true
                }
            };
        }
        if let Some(collecting) = self.collecting.as_mut() {
            return match collecting.as_mut().poll(cx) {
                Poll::Pending => false,
                Poll::Ready(result) => {
                    self.collecting = None;
                    match result {
                        Ok(collected) => {
                            self.result = Some((self.version.unwrap_or_default(), collected))
                        }
                        Err(e) => self.error = Some(e.to_string()),
                    }
                    true
                }
            };
        }
        false
    }

    fn is_done(&self, _client: &Client) -> bool {
        self.result.is_some() || self.error.is_some()
    }
}

/// Fetches `/trailers` from the router with tapir's client over `scheme` and `version`,
/// the request carrying `headers`; the response's version and collected body.
fn fetch_trailers(
    scheme: Scheme,
    version: Version,
    headers: &[(&str, &str)],
) -> (http::Version, Collected<Bytes>) {
    let client = ClientConfig {
        version,
        roots: Roots::Insecure,
        ..ClientConfig::default()
    };
    let mut request = Request::get("/trailers");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let collect = CollectOne {
        target: target(scheme),
        request: Some(request.body(Body::empty()).expect("request")),
        response: None,
        collecting: None,
        result: None,
        version: None,
        error: None,
    };
    let app = WithClient::new(Client::new(client).expect("client"), collect);
    let mut client = serve_and_run(router(), app, 63);
    assert_eq!(client.app.work.error, None);
    client.app.work.result.take().expect("a response")
}

/// The trailers `/trailers` of the router sends.
fn assert_router_trailers(trailers: &http::HeaderMap) {
    assert_eq!(
        trailers.get("grpc-status").map(|v| v.as_bytes()),
        Some(&b"0"[..])
    );
    assert_eq!(
        trailers.get("x-checksum").map(|v| v.as_bytes()),
        Some(&b"1234"[..])
    );
}

/// A response body's trailers reach the client on HTTP/2 (h2c and h2/TLS) and are dropped
/// on HTTP/1.1 when the request does not accept them, where the body still arrives whole.
#[test]
fn response_trailers_reach_the_client_on_http2() {
    for (scheme, version, want) in [
        (Scheme::Http, Version::Http2, http::Version::HTTP_2),
        (Scheme::Https, Version::Http2, http::Version::HTTP_2),
        (Scheme::Http, Version::Http1, http::Version::HTTP_11),
    ] {
        let (got_version, collected) = fetch_trailers(scheme, version, &[]);
        assert_eq!(got_version, want);
        let trailers = collected.trailers().cloned();
        assert_eq!(&collected.to_bytes()[..], b"data, then trailers");
        if want == http::Version::HTTP_2 {
            assert_router_trailers(&trailers.expect("trailers on HTTP/2"));
        } else {
            assert_eq!(trailers, None);
        }
    }
}

/// Over HTTP/1.1 (cleartext and TLS) a tower service's trailers go in the chunked
/// response's trailer section when the request says `TE: trailers`, and tapir's client
/// gives them to the reader as the body's trailers frame.
#[test]
fn response_trailers_reach_the_client_on_http1_with_te_trailers() {
    for scheme in [Scheme::Http, Scheme::Https] {
        let te = [("te", "trailers"), ("connection", "TE")];
        let (got_version, collected) = fetch_trailers(scheme, Version::Http1, &te);
        assert_eq!(got_version, http::Version::HTTP_11, "{scheme:?}");
        let trailers = collected.trailers().cloned().expect("trailers on HTTP/1.1");
        assert_eq!(&collected.to_bytes()[..], b"data, then trailers");
        assert_router_trailers(&trailers);
        assert_eq!(trailers.len(), 2, "{trailers:?}");
    }
}

/// tapir's client sends a request body's trailers (a chunked trailer section on HTTP/1.1,
/// a trailing HEADERS frame on HTTP/2) and an axum handler reading `into_body()` frame by
/// frame gets them as the trailers frame, on HTTP/1.1 (cleartext and TLS), h2c and h2/TLS;
/// a field a trailer section never carries (`content-type`) does not reach it.
#[test]
fn request_trailers_reach_an_axum_handler_as_a_trailers_frame() {
    for (scheme, version) in [
        (Scheme::Http, Version::Http1),
        (Scheme::Https, Version::Http1),
        (Scheme::Http, Version::Http2),
        (Scheme::Https, Version::Http2),
    ] {
        let body = |data: &'static str| {
            let mut trailers = http::HeaderMap::new();
            trailers.insert("x-checksum", HeaderValue::from_static("1234"));
            trailers.insert("grpc-status", HeaderValue::from_static("0"));
            trailers.insert(CONTENT_TYPE, HeaderValue::from_static("text/evil"));
            Body::from_http(WithTrailers {
                data: Some(Bytes::from_static(data.as_bytes())),
                trailers: Some(trailers),
            })
        };
        let post = |data| {
            job(
                scheme,
                Request::post("/echo-trailers")
                    .body(body(data))
                    .expect("request"),
            )
        };
        // Two on one connection: the first request's trailer section ends its body exactly.
        let jobs = vec![post("first upload"), post("second upload")];
        let client = ClientConfig {
            version,
            roots: Roots::Insecure,
            ..ClientConfig::default()
        };
        let jobs = fetch(router(), client, jobs, false);
        for (job, data) in jobs.iter().zip(["first upload", "second upload"]) {
            assert_eq!(status(job), StatusCode::OK, "{scheme:?} {version:?}");
            assert_eq!(
                String::from_utf8_lossy(&job.sink.body),
                format!("{data} | grpc-status=0,x-checksum=1234"),
                "{scheme:?} {version:?}"
            );
        }
    }
}

/// A request's `TE` reaches HTTP/2 as `te: trailers` when it lists `trailers`, and is left
/// out otherwise (HTTP/2 carries no other TE, RFC 9113 §8.2.2): the request is sent either
/// way, and the response trailers arrive.
#[test]
fn te_is_reduced_to_trailers_on_http2() {
    for te in ["gzip, trailers", "gzip"] {
        let headers = [("te", te), ("connection", "TE")];
        let (got_version, collected) = fetch_trailers(Scheme::Http, Version::Http2, &headers);
        assert_eq!(got_version, http::Version::HTTP_2, "{te}");
        let trailers = collected.trailers().cloned().expect("trailers on HTTP/2");
        assert_eq!(&collected.to_bytes()[..], b"data, then trailers");
        assert_router_trailers(&trailers);
    }
}
