//! What a request turns into (an [`Exchange`] shared between the client and the caller) and
//! the futures and handles the caller holds: [`ResponseFuture`], [`UpgradeFuture`] with its
//! [`Upgrade`], [`TunnelFuture`].

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use http::{Request, Response};

use super::{ClientError, Target};
use crate::conn::body::{Body, BodyError, BodySender, ResponseBody};
use crate::conn::upgrade::{Tunnel, TUNNEL_BUFFER};
use crate::error::Chain;

/// What a caller wants from a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// An HTTP exchange on a shared (pooled or multiplexed) connection.
    Http,
    /// An HTTP/1.1 exchange on a connection of its own that may switch to a tunnel.
    Upgrade,
    /// No HTTP at all: the connection is a tunnel as soon as it is open.
    Raw,
}

/// What a request turns into, shared between the client and the [`ResponseFuture`].
pub(crate) struct Exchange {
    pub(crate) mode: Mode,
    /// The tunnel, after a switching response (or at once in [`Mode::Raw`]).
    pub(crate) tunnel: Option<Tunnel>,
    /// An HTTP/2 `CONNECT`: what the caller sends once the stream is a tunnel (the
    /// request body's writer).
    pub(crate) stream_tunnel: Option<BodySender>,
    pub(crate) request: Option<Request<Body>>,
    pub(crate) target: Target,
    pub(crate) result: Option<Result<Response<ResponseBody>, ClientError>>,
    pub(crate) waker: Option<Waker>,
    /// Set once the response head was delivered.
    pub(crate) answered: bool,
    pub(crate) body: Option<BodySender>,
}

pub(crate) type ExchangeRef = Rc<RefCell<Exchange>>;

impl Exchange {
    pub(crate) fn respond(&mut self, result: Result<Response<ResponseBody>, ClientError>) {
        if self.answered {
            return;
        }
        self.answered = true;
        self.result = Some(result);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    /// Fails the exchange: the response, or its body if the head was already delivered.
    pub(crate) fn fail(&mut self, error: ClientError) {
        if let Some(body) = self.body.take() {
            body.fail(BodyError::Incomplete(Chain(&error).to_string()));
        }
        self.respond(Err(error));
    }
}

/// The response to a request sent with [`Client::send`](super::Client::send).
pub struct ResponseFuture {
    pub(super) exchange: ExchangeRef,
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("target", &self.exchange.borrow().target)
            .finish()
    }
}

impl ResponseFuture {
    /// The response, if it arrived (without a waker; for polling loops).
    pub fn try_take(&mut self) -> Option<Result<Response<ResponseBody>, ClientError>> {
        self.exchange.borrow_mut().result.take()
    }
}

/// The outcome of [`Client::upgrade`](super::Client::upgrade).
#[derive(Debug)]
pub struct Upgrade {
    /// The response (for a switch: the `101` or `2xx` head, with an empty body).
    pub response: Response<ResponseBody>,
    /// The connection's byte stream, when the server switched.
    pub tunnel: Option<Tunnel>,
}

/// The future of [`Client::upgrade`](super::Client::upgrade).
#[derive(Debug)]
pub struct UpgradeFuture {
    pub(super) inner: ResponseFuture,
}

impl Future for UpgradeFuture {
    type Output = Result<Upgrade, ClientError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Ready(Ok(response)) => {
                let mut ex = this.inner.exchange.borrow_mut();
                if let Some(tx) = ex.stream_tunnel.take() {
                    // HTTP/2: a 2xx makes the stream the tunnel; the response body is what
                    // the server sends.
                    if response.status().is_success() {
                        let (parts, rx) = response.into_parts();
                        let tunnel = Tunnel::from_parts(rx, tx, TUNNEL_BUFFER);
                        let response = Response::from_parts(parts, ResponseBody::empty());
                        return Poll::Ready(Ok(Upgrade {
                            response,
                            tunnel: Some(tunnel),
                        }));
                    }
                    tx.finish();
                    return Poll::Ready(Ok(Upgrade {
                        response,
                        tunnel: None,
                    }));
                }
                let tunnel = ex.tunnel.take();
                Poll::Ready(Ok(Upgrade { response, tunnel }))
            }
        }
    }
}

/// The future of [`Client::connect_tunnel`](super::Client::connect_tunnel).
#[derive(Debug)]
pub struct TunnelFuture {
    pub(super) inner: ResponseFuture,
}

impl Future for TunnelFuture {
    type Output = Result<Tunnel, ClientError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Ready(Ok(_)) => Poll::Ready(
                this.inner
                    .exchange
                    .borrow_mut()
                    .tunnel
                    .take()
                    .ok_or_else(|| ClientError::Connection("the tunnel was lost".into())),
            ),
        }
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response<ResponseBody>, ClientError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut ex = self.exchange.borrow_mut();
        match ex.result.take() {
            Some(result) => Poll::Ready(result),
            None => {
                ex.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}
