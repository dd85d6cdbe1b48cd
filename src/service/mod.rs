//! The service API: a handler written once serves HTTP/1.1, HTTPS and HTTP/2 alike.
//!
//! A handler takes an [`http::Request`] whose body is a [`RequestBody`] and gives a
//! [`Reply`]: a response at once, or a future that yields one later. Bodies are pulled with
//! backpressure both ways (see [`body`]). The [`Server`] is the application that accepts
//! connections on the stack's ports and runs the right protocol engine for each.

pub mod body;
pub mod builtin;
pub mod files;
mod h1;
pub(crate) mod h2;
mod h2guard;
pub mod server;

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use http::{Request, Response};
use smoltcp::wire::IpEndpoint;

pub use body::{Body, BodyError, BodyStream, IncomingBody, RequestBody, ResponseBody};
pub use h2::H2Config;
pub use server::{Server, ServerConfig, ServerStats};

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

/// A response now, or one that becomes ready later.
pub enum Reply {
    /// The response is ready.
    Now(Response<Body>),
    /// The response comes when the future completes (it is polled on the event loop
    /// thread and woken through its `Context`).
    Later(Pin<Box<dyn Future<Output = Response<Body>>>>),
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::Now(r) => write!(f, "Reply::Now({})", r.status()),
            Reply::Later(_) => f.write_str("Reply::Later"),
        }
    }
}

impl Reply {
    /// A reply from a future.
    pub fn later(future: impl Future<Output = Response<Body>> + 'static) -> Self {
        Reply::Later(Box::pin(future))
    }
}

impl From<Response<Body>> for Reply {
    fn from(response: Response<Body>) -> Self {
        Reply::Now(response)
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

/// A plain-text response with the given status.
pub fn text_response(status: http::StatusCode, text: impl Into<String>) -> Response<Body> {
    let mut response = Response::new(Body::from(text.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
