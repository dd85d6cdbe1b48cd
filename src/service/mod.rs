//! The service API: a handler written once serves HTTP/1.1, HTTPS and HTTP/2 alike.
//!
//! The application is any `tower::Service<http::Request<Incoming>>` whose response body is
//! an `http_body::Body` ([`Server::from_service`]: an axum `Router`, tower-http layers,
//! [`service_fn`]), or tapir's own [`Handler`] on the same path ([`Server::new`]): it takes
//! an [`http::Request`] whose body is a [`RequestBody`] and gives a [`Reply`], a response
//! at once or a future that yields one later. Bodies are pulled with
//! backpressure both ways (see [`body`]). The [`Server`] is the application that accepts
//! connections on the stack's ports and runs the right protocol engine for each.

pub mod builtin;
mod dispatch;
pub mod files;
mod h1;
pub(crate) mod h2;
mod h2c;
mod h2guard;
pub mod server;
mod shared;

/// Bodies, from the connection layer (the paths `service::body::*` stay valid).
pub use crate::conn::body;
/// Tunnels, from the connection layer (the paths `service::tunnel::*` stay valid).
pub use crate::conn::upgrade as tunnel;

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use http::{Request, Response};
use smoltcp::wire::IpEndpoint;

pub use body::{Body, BodyError, BodyStream, Incoming, IncomingBody, RequestBody, ResponseBody};
pub use dispatch::{BoxError, Takeover};
pub use h2::H2Config;
pub use server::{Server, ServerConfig, ServerStats};
/// Any closure `FnMut(Request<Incoming>) -> Future<Output = Result<Response<B>, E>>` as a
/// `tower::Service` (tower's `service_fn`), for [`Server::from_service`].
pub use tower::service_fn;
pub use tunnel::{ConnectProtocol, Tunnel, TunnelError, TunnelTask};

/// The HTTP version a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// HTTP/1.0.
    Http10,
    /// HTTP/1.1.
    Http11,
    /// HTTP/2.
    Http2,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Http10 => "HTTP/1.0",
            Protocol::Http11 => "HTTP/1.1",
            Protocol::Http2 => "HTTP/2",
        })
    }
}

pub use crate::transport::tls::TlsInfo;

/// What a handler knows about the connection a request came on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnInfo {
    /// The HTTP version of this request.
    pub protocol: Protocol,
    /// The client's address and port.
    pub peer: IpEndpoint,
    /// Our address and port.
    pub local: IpEndpoint,
    /// TLS details, for HTTPS.
    pub tls: Option<TlsInfo>,
}

impl ConnInfo {
    /// The client's address and port as a `SocketAddr`, which prints IPv6 in brackets
    /// (`[fd00:7::1]:8000`; smoltcp's endpoint prints `fd00:7::1:8000`).
    pub fn peer_addr(&self) -> std::net::SocketAddr {
        self.peer.into()
    }

    /// Our address and port, printed like [`ConnInfo::peer_addr`].
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.local.into()
    }
}

/// A response now, or one that becomes ready later.
pub enum Reply {
    /// The response is ready.
    Now(Response<Body>),
    /// The response comes when the future completes (it is polled on the event loop
    /// thread and woken through its `Context`).
    Later(Pin<Box<dyn Future<Output = Response<Body>>>>),
    /// An [`Answer`] that may hand the connection to a tunnel, when the future completes.
    Switch(Pin<Box<dyn Future<Output = Answer>>>),
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::Now(r) => write!(f, "Reply::Now({})", r.status()),
            Reply::Later(_) => f.write_str("Reply::Later"),
            Reply::Switch(_) => f.write_str("Reply::Switch"),
        }
    }
}

impl Reply {
    /// A reply from a future.
    pub fn later(future: impl Future<Output = Response<Body>> + 'static) -> Self {
        Reply::Later(Box::pin(future))
    }

    /// A switching response now — `2xx` to `CONNECT` (HTTP/1.1 and HTTP/2), `101` to an
    /// HTTP/1.1 request with `Upgrade` — whose connection (or HTTP/2 stream) `task` takes
    /// over once the response is written. Any other status is sent as a normal response
    /// and the task is dropped.
    pub fn tunnel<F, Fut>(response: Response<Body>, task: F) -> Self
    where
        F: FnOnce(Tunnel) -> Fut + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let answer = Answer::tunnel(response, task);
        Reply::Switch(Box::pin(std::future::ready(answer)))
    }

    /// An [`Answer`] (maybe with a tunnel) from a future: a proxy connects to the origin
    /// first, then answers `200` with a tunnel or `502` without.
    pub fn later_answer(future: impl Future<Output = Answer> + 'static) -> Self {
        Reply::Switch(Box::pin(future))
    }

    /// The reply as one future of an [`Answer`].
    pub(crate) fn into_answer(self) -> Pin<Box<dyn Future<Output = Answer>>> {
        match self {
            Reply::Now(response) => Box::pin(std::future::ready(Answer::from(response))),
            Reply::Later(future) => Box::pin(async move { Answer::from(future.await) }),
            Reply::Switch(future) => future,
        }
    }
}

impl From<Response<Body>> for Reply {
    fn from(response: Response<Body>) -> Self {
        Reply::Now(response)
    }
}

/// A response, and the task that takes over the connection if the response switches
/// protocols (see [`tunnel`]).
pub struct Answer {
    /// The response.
    pub response: Response<Body>,
    /// Runs with the tunnel after a switching response.
    pub tunnel: Option<TunnelTask>,
}

impl fmt::Debug for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Answer")
            .field("status", &self.response.status())
            .field("tunnel", &self.tunnel.is_some())
            .finish()
    }
}

impl Answer {
    /// A response with a tunnel task.
    pub fn tunnel<F, Fut>(response: Response<Body>, task: F) -> Self
    where
        F: FnOnce(Tunnel) -> Fut + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        Answer {
            response,
            tunnel: Some(tunnel::tunnel_task(task)),
        }
    }
}

impl From<Response<Body>> for Answer {
    fn from(response: Response<Body>) -> Self {
        Answer {
            response,
            tunnel: None,
        }
    }
}

/// Serves requests. Any `Fn(Request<RequestBody>, &ConnInfo) -> R` where `R: Into<Reply>`
/// is a handler.
pub trait Handler {
    /// Answers one request.
    fn call(&self, request: Request<RequestBody>, info: &ConnInfo) -> Reply;
}

impl<F, R> Handler for F
where
    F: Fn(Request<RequestBody>, &ConnInfo) -> R,
    R: Into<Reply>,
{
    fn call(&self, request: Request<RequestBody>, info: &ConnInfo) -> Reply {
        self(request, info).into()
    }
}

/// The methods RFC 9110 defines (§9.3), and PATCH (RFC 5789): every server recognizes them.
pub(crate) const RECOGNIZED_METHODS: [http::Method; 9] = [
    http::Method::GET,
    http::Method::HEAD,
    http::Method::POST,
    http::Method::PUT,
    http::Method::DELETE,
    http::Method::CONNECT,
    http::Method::OPTIONS,
    http::Method::TRACE,
    http::Method::PATCH,
];

/// The answer to a method a resource does not take: `405` with `Allow` for a method the
/// server recognizes (RFC 9110's and PATCH), `501` for any other (RFC 9110 §9.1, §15.6.2).
pub fn method_not_allowed(method: &http::Method, allow: &'static str) -> Response<Body> {
    if !RECOGNIZED_METHODS.contains(method) {
        return text_response(
            http::StatusCode::NOT_IMPLEMENTED,
            format!("method {method} is not implemented\n"),
        );
    }
    let mut r = text_response(
        http::StatusCode::METHOD_NOT_ALLOWED,
        format!("use {allow}\n"),
    );
    r.headers_mut()
        .insert(http::header::ALLOW, http::HeaderValue::from_static(allow));
    r
}

/// A response with `status` and `text` as a `text/plain; charset=utf-8` body.
pub fn text_response(status: http::StatusCode, text: impl Into<String>) -> Response<Body> {
    let mut response = Response::new(Body::from(text.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
