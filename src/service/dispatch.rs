//! How a connection calls the application: any `tower::Service<http::Request<Incoming>>`
//! (an axum `Router`, tower-http middleware, `tower::service_fn`) or a tapir [`Handler`]
//! on the same path.
//!
//! Each connection gets its own dispatcher — a clone of the service, as hyper does — so a
//! service's readiness (`poll_ready`) is asked with that connection's waker, and a request
//! is called only once its service is ready. Futures run on the loop's thread and need not
//! be `Send`. A response body is any [`http_body::Body`], pulled frame by frame as the
//! peer takes the bytes (see [`Body::from_http`]).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use http::{Request, Response, StatusCode};

use super::{text_response, Answer, Body, ConnInfo, Handler};
use crate::conn::body::Incoming;
use crate::conn::upgrade::{Tunnel, TunnelTask};

/// The error type services may fail with (tower's and hyper's convention).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The future a dispatcher gives for one request.
pub(crate) type AnswerFuture = Pin<Box<dyn Future<Output = Answer>>>;

/// The application as one connection sees it.
pub(crate) trait Dispatch {
    /// Ready to take a request? (`Pending` wakes the connection through `cx`.)
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>>;

    /// Answers one request; called only after `poll_ready` gave `Ready(Ok)`.
    fn call(&mut self, request: Request<Incoming>, info: &ConnInfo) -> AnswerFuture;
}

/// Makes the dispatcher of each new connection.
pub(crate) type MakeDispatch = Box<dyn Fn() -> Box<dyn Dispatch>>;

/// A dispatcher maker for a tapir [`Handler`] (always ready; it gets the [`ConnInfo`] as an
/// argument).
pub(crate) fn make_handler<H: Handler + 'static>(handler: H) -> MakeDispatch {
    let handler = Rc::new(handler);
    Box::new(move || Box::new(HandlerDispatch(handler.clone())))
}

/// A dispatcher maker for a `tower::Service`, cloned for each connection.
pub(crate) fn make_service<S, B>(service: S) -> MakeDispatch
where
    S: tower::Service<Request<Incoming>, Response = Response<B>> + Clone + 'static,
    S::Error: Into<BoxError>,
    S::Future: 'static,
    B: http_body::Body + 'static,
    B::Error: Into<BoxError>,
{
    Box::new(move || Box::new(ServiceDispatch(service.clone())))
}

struct HandlerDispatch<H>(Rc<H>);

impl<H: Handler> Dispatch for HandlerDispatch<H> {
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Incoming>, info: &ConnInfo) -> AnswerFuture {
        self.0.call(request, info).into_answer()
    }
}

struct ServiceDispatch<S>(S);

impl<S, B> Dispatch for ServiceDispatch<S>
where
    S: tower::Service<Request<Incoming>, Response = Response<B>>,
    S::Error: Into<BoxError>,
    S::Future: 'static,
    B: http_body::Body + 'static,
    B::Error: Into<BoxError>,
{
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.0.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: Request<Incoming>, info: &ConnInfo) -> AnswerFuture {
        request.extensions_mut().insert(info.clone());
        let peer = info.peer_addr();
        let future = self.0.call(request);
        Box::pin(async move {
            match future.await {
                Ok(response) => {
                    let (mut parts, body) = response.into_parts();
                    let tunnel = parts.extensions.remove::<Takeover>().and_then(|t| t.take());
                    Answer {
                        response: Response::from_parts(parts, Body::from_http(body)),
                        tunnel,
                    }
                }
                Err(e) => {
                    let e: BoxError = e.into();
                    tracing::warn!("{peer}: service failed: {e}");
                    Answer::from(text_response(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal server error\n",
                    ))
                }
            }
        })
    }
}

/// Hands a connection's queued requests, in request order, to `service` as it becomes
/// ready (HTTP/1.1 pipelining and HTTP/2 streams alike): for each task that `queued` says
/// waits, polls the service's readiness and stops at the first `Pending` (its waker is the
/// connection's); `start` gets the task and the function that answers its request — the
/// service's call, or `503` when readiness failed. True when a request was handed over.
pub(crate) fn call_in_order<'a, T: 'a>(
    service: &mut dyn Dispatch,
    cx: &mut Context<'_>,
    tasks: impl IntoIterator<Item = &'a mut T>,
    queued: impl Fn(&T) -> bool,
    mut start: impl FnMut(&mut T, &mut dyn FnMut(Request<Incoming>, &ConnInfo) -> AnswerFuture),
) -> bool {
    let mut any = false;
    for task in tasks {
        if !queued(task) {
            continue;
        }
        let ready = match service.poll_ready(cx) {
            Poll::Pending => break,
            Poll::Ready(ready) => ready,
        };
        any = true;
        start(task, &mut |request, info| match &ready {
            Ok(()) => service.call(request, info),
            Err(e) => unavailable(e, info),
        });
    }
    any
}

/// The answer to a request whose service failed its readiness check.
fn unavailable(error: &BoxError, info: &ConnInfo) -> AnswerFuture {
    tracing::warn!("{}: service not ready: {error}", info.peer_addr());
    let response = text_response(StatusCode::SERVICE_UNAVAILABLE, "service unavailable\n");
    Box::pin(std::future::ready(Answer::from(response)))
}

type SendTunnelTask = Box<dyn FnOnce(Tunnel) -> Pin<Box<dyn Future<Output = ()>>> + Send>;

/// The task that takes over a connection after a switching response, for `tower::Service`s
/// (hyper-style): insert it in the response's extensions. After `101 Switching Protocols`
/// to an HTTP/1.1 `Upgrade`, or a `2xx` to `CONNECT` (HTTP/1.1 and HTTP/2), the task gets
/// the connection (or the HTTP/2 stream) as a [`Tunnel`]; with any other status it is
/// dropped. The closure must be `Send` (extensions are); the future it returns need not be.
#[derive(Clone)]
pub struct Takeover(Arc<Mutex<Option<SendTunnelTask>>>);

impl fmt::Debug for Takeover {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Takeover")
    }
}

impl Takeover {
    /// A takeover running `task` with the tunnel.
    pub fn new<F, Fut>(task: F) -> Self
    where
        F: FnOnce(Tunnel) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let task: SendTunnelTask = Box::new(move |tunnel| Box::pin(task(tunnel)));
        Takeover(Arc::new(Mutex::new(Some(task))))
    }

    /// The task, once (clones share it).
    fn take(&self) -> Option<TunnelTask> {
        let task = self.0.lock().unwrap_or_else(|e| e.into_inner()).take()?;
        Some(task)
    }
}
