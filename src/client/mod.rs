//! The client side (paf's other half): connect through the userspace stack, optionally wrap
//! the connection in TLS, and speak HTTP/1.1 or HTTP/2 (chosen by ALPN, or h2c with prior
//! knowledge on cleartext).
//!
//! [`Client`] is an [`Application`]: it runs in the same event loop as everything else.
//! [`Client::send`] queues a request and returns a [`ResponseFuture`]; the response body
//! arrives as a [`ResponseBody`](crate::conn::body::ResponseBody) stream with backpressure. HTTP/1.1 connections are kept
//! alive and reused for later requests to the same origin; HTTP/2 requests to an origin
//! share one connection as concurrent streams.
//!
//! Connections can outlive HTTP: [`Client::upgrade`] sends a `CONNECT` (to a proxy) or an
//! `Upgrade` request on a connection of its own and, on a `2xx` / `101`, hands over the byte
//! stream as a [`Tunnel`](crate::conn::upgrade::Tunnel); [`Client::connect_tunnel`] opens a bare TCP (or TLS) connection as a
//! tunnel, which is what a proxy's `CONNECT` needs towards the origin.
//!
//! A [`Client`] alone owns its connection table; the client proper (`ClientCore`: the
//! settings and the request queue) takes the table as an argument, so a proxy keeps its
//! client's connections and its server's in one.

mod connect;
mod exchange;
pub mod fetch;
mod h1;
mod h2;
mod target;

pub(crate) use exchange::{Exchange, ExchangeRef, Mode};
pub use exchange::{ResponseFuture, TunnelFuture, Upgrade, UpgradeFuture};
pub use target::{Scheme, Target};

use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Context;
use std::time::Duration;

use http::Request;
use smoltcp::time::Instant;
use smoltcp::wire::IpEndpoint;

use crate::conn::body::{request_body, Body};
use crate::conn::Drive;
use crate::error::Chain;
use crate::runtime::table::{ConnTable, Holds};
use crate::runtime::Application;
use crate::stack::{Stack, StackError};
use crate::transport::certs::Roots;
use crate::transport::tcp::TcpStream;
use crate::transport::{TlsFailure, Transport, TransportError};

pub(crate) use self::connect::ClientConn;
use self::connect::{Engine, Handshakes};

/// Errors a request can end with. Each keeps what caused it as its
/// [`source`](std::error::Error::source); [`crate::error::Chain`] shows them all.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// The URL cannot be fetched (no host, unknown scheme, ...).
    #[error("bad URL {url}: {reason}")]
    BadUrl {
        /// The URL.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The stack could not open a connection.
    #[error("cannot connect")]
    Connect(#[source] StackError),
    /// The server refused the connection (RST to our SYN).
    #[error("connection refused by {}", std::net::SocketAddr::from(*.0))]
    Refused(IpEndpoint),
    /// No answer to the handshake in time (host unreachable or silent).
    #[error("connection to {} timed out", std::net::SocketAddr::from(*.0))]
    ConnectTimeout(IpEndpoint),
    /// The TLS handshake failed (bad certificate, no common ALPN protocol, ...).
    #[error("TLS")]
    Tls(#[source] TlsFailure),
    /// The connection ended before the response was complete, for the reason given.
    #[error("connection lost: {0}")]
    Connection(String),
    /// The connection failed under a request (reset, closed, a TLS error).
    #[error("connection lost")]
    Transport(#[source] TransportError),
    /// The server's response broke the protocol, as described.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The HTTP/1.1 engine found the response broken.
    #[error("protocol error")]
    Http1(#[source] crate::http::h1::ClientError),
    /// The HTTP/1.1 engine refused the request (the connection is closed, ...).
    #[error("protocol error")]
    Http1Request(#[source] crate::http::h1::H1ClientError),
    /// HTTP/2 failed: a connection or stream error (GOAWAY, RST_STREAM, a broken frame).
    #[error("protocol error")]
    Http2(#[source] Arc<::h2::Error>),
    /// The HTTP/2 handshake failed.
    #[error("protocol error: HTTP/2 handshake")]
    Http2Handshake(#[source] Arc<::h2::Error>),
    /// The request's URI could not be turned into an HTTP/2 request target.
    #[error("protocol error: bad request URI")]
    RequestUri(#[source] Arc<http::uri::InvalidUri>),
    /// The request body could not be produced or sent.
    #[error("protocol error: request body")]
    RequestBody(#[source] Arc<dyn std::error::Error + Send + Sync>),
    /// The whole request took longer than allowed.
    #[error("request timed out after {0:?}")]
    Timeout(Duration),
}

impl ClientError {
    /// An HTTP/2 error.
    pub(crate) fn http2(error: ::h2::Error) -> Self {
        ClientError::Http2(Arc::new(error))
    }

    /// A failure of the request body (its source, or the engine refusing its bytes).
    pub(crate) fn request_body(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        ClientError::RequestBody(Arc::new(error))
    }
}

/// Which HTTP version to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Version {
    /// HTTP/2 when the server offers it by ALPN, otherwise HTTP/1.1 (cleartext: HTTP/1.1).
    #[default]
    Auto,
    /// HTTP/1.1 only.
    Http1,
    /// HTTP/2 only (ALPN `h2` over TLS; prior knowledge on cleartext).
    Http2,
}

/// Client settings.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The HTTP version to use.
    pub version: Version,
    /// Which server certificates to trust for HTTPS.
    pub roots: Roots,
    /// Time allowed for the TCP handshake.
    pub connect_timeout: Duration,
    /// Time allowed for a whole request (until the response head); `None`: no limit.
    pub request_timeout: Option<Duration>,
    /// HTTP/1.1 connections per origin at most.
    pub max_connections_per_origin: usize,
    /// How long an idle keep-alive connection is kept for reuse.
    pub idle_timeout: Duration,
    /// A ready TLS configuration to use instead of building one from `roots` (whose ALPN
    /// protocols are then used as they are, whatever `version` says); `None`: built from
    /// `roots` and `version`.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            version: Version::Auto,
            roots: Roots::WebPki,
            connect_timeout: Duration::from_secs(10),
            request_timeout: None,
            max_connections_per_origin: 6,
            idle_timeout: Duration::from_secs(60),
            tls: None,
        }
    }
}

/// An HTTP client on a stack.
pub struct Client {
    core: ClientCore,
    conns: ConnTable<ClientConn>,
}

/// The client without a connection table: settings, TLS configurations and the queue of
/// requests, driving [`ClientConn`]s in a table it is given (its own [`Client`]'s, or a
/// proxy's shared with a server).
pub(crate) struct ClientCore {
    config: ClientConfig,
    tls: Handshakes,
    queue: Vec<ExchangeRef>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("connections", &self.conns.len())
            .field("queued", &self.core.queue.len())
            .finish()
    }
}

impl Client {
    /// A client with the given settings. Fails when the trusted certificates cannot be
    /// loaded (unless `config.tls` is given).
    pub fn new(config: ClientConfig) -> Result<Self, ClientError> {
        let tls = Handshakes::new(&config)?;
        Ok(Client {
            core: ClientCore {
                config,
                tls,
                queue: Vec::new(),
            },
            conns: ConnTable::new(),
        })
    }

    /// The client proper, without its table, and the connections it holds (a proxy takes
    /// both into its own table).
    pub(crate) fn into_parts(self) -> (ClientCore, ConnTable<ClientConn>) {
        (self.core, self.conns)
    }

    /// Queues `request` for `target`. The request's URI may be a path or an absolute URL;
    /// Host (HTTP/1.1) or `:authority` (HTTP/2) come from the target.
    pub fn send(&mut self, target: &Target, request: Request<Body>) -> ResponseFuture {
        self.core.send(target, request)
    }

    /// Sends `request` over HTTP/1.1 on a connection of its own: `CONNECT host:port` (the
    /// target is then a proxy) or a request with `Upgrade` and `Connection: upgrade`. When
    /// the server answers `2xx` to `CONNECT` or `101`, the connection becomes the returned
    /// [`Tunnel`](crate::conn::upgrade::Tunnel) (see [`crate::conn::upgrade`]); any other
    /// answer comes back as a normal response and the connection closes after it.
    ///
    /// With [`Version::Http2`] the request goes on an HTTP/2 stream instead: a `CONNECT`
    /// (RFC 9113 §8.5), or with a [`ConnectProtocol`](crate::conn::upgrade::ConnectProtocol)
    /// extension an extended `CONNECT` (RFC 8441, e.g. WebSockets over HTTP/2); on a `2xx`
    /// the stream is the tunnel. The request's own body is not sent.
    pub fn upgrade(&mut self, target: &Target, request: Request<Body>) -> UpgradeFuture {
        self.core.upgrade(target, request)
    }

    /// Opens a connection to `target` that is a [`Tunnel`](crate::conn::upgrade::Tunnel)
    /// from the start: bare TCP for `http`, TLS (no ALPN) for `https`. A proxy's `CONNECT`
    /// uses this towards the origin.
    pub fn connect_tunnel(&mut self, target: &Target) -> TunnelFuture {
        self.core.connect_tunnel(target)
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.conns.len()
    }
}

impl ClientCore {
    /// Queues `request` for `target` (see [`Client::send`]). The request's URI may be a path or an absolute URL;
    /// Host (HTTP/1.1) or `:authority` (HTTP/2) come from the target.
    pub(crate) fn send(&mut self, target: &Target, request: Request<Body>) -> ResponseFuture {
        self.queue_exchange(target, Some(request), Mode::Http)
    }

    /// Sends `request` on a connection of its own, or an HTTP/2 stream (see
    /// [`Client::upgrade`]).
    pub(crate) fn upgrade(&mut self, target: &Target, request: Request<Body>) -> UpgradeFuture {
        if self.config.version == Version::Http2 {
            let (parts, _) = request.into_parts();
            let (tx, outgoing) = request_body(None);
            let request = Request::from_parts(parts, Body::stream(outgoing));
            let inner = self.queue_exchange(target, Some(request), Mode::Http);
            inner.exchange.borrow_mut().stream_tunnel = Some(tx);
            return UpgradeFuture { inner };
        }
        UpgradeFuture {
            inner: self.queue_exchange(target, Some(request), Mode::Upgrade),
        }
    }

    /// Opens a connection that is a tunnel from the start (see [`Client::connect_tunnel`]).
    pub(crate) fn connect_tunnel(&mut self, target: &Target) -> TunnelFuture {
        TunnelFuture {
            inner: self.queue_exchange(target, None, Mode::Raw),
        }
    }

    fn queue_exchange(
        &mut self,
        target: &Target,
        request: Option<Request<Body>>,
        mode: Mode,
    ) -> ResponseFuture {
        let exchange = Rc::new(RefCell::new(Exchange {
            mode,
            tunnel: None,
            stream_tunnel: None,
            request,
            target: target.clone(),
            result: None,
            waker: None,
            answered: false,
            body: None,
        }));
        self.queue.push(exchange.clone());
        ResponseFuture { exchange }
    }

    fn open<E: Holds<ClientConn>>(
        &mut self,
        table: &mut ConnTable<E>,
        stack: &mut Stack,
        target: &Target,
        now: Instant,
        dedicated: Option<ExchangeRef>,
    ) -> Result<(), ClientError> {
        let handle = stack
            .connect(target.endpoint())
            .map_err(ClientError::Connect)?;
        table.insert(E::from_conn(ClientConn {
            target: target.clone(),
            engine: Engine::Connecting(Some(TcpStream::new(handle))),
            dedicated,
            since: now,
        }));
        Ok(())
    }

    /// Hands queued requests to connections, opening connections as needed.
    pub(crate) fn dispatch<E: Holds<ClientConn>>(
        &mut self,
        table: &mut ConnTable<E>,
        stack: &mut Stack,
        now: Instant,
    ) -> bool {
        let mut progress = false;
        let queue = std::mem::take(&mut self.queue);
        for exchange in queue {
            let (target, mode) = {
                let ex = exchange.borrow();
                (ex.target.clone(), ex.mode)
            };
            if mode != Mode::Http {
                // Upgrades and bare tunnels get a connection of their own.
                if let Err(e) = self.open(table, stack, &target, now, Some(exchange.clone())) {
                    exchange.borrow_mut().fail(e);
                }
                progress = true;
                continue;
            }
            // An established HTTP/2 connection to the origin takes every request.
            let mut conns = table.role::<ClientConn>();
            let h2 = conns.iter_mut().find_map(|(key, c)| match &mut c.engine {
                Engine::H2(h2) if c.target == target && h2.accepts_streams() => Some((h2, key)),
                _ => None,
            });
            if let Some((h2, key)) = h2 {
                h2.push(exchange);
                conns.wake(key);
                progress = true;
                continue;
            }
            // An idle keep-alive HTTP/1.1 connection takes the next request.
            let h1 = conns.iter_mut().find_map(|(key, c)| match &mut c.engine {
                Engine::H1(h1) if c.target == target && c.dedicated.is_none() && h1.is_idle() => {
                    Some((h1, key))
                }
                _ => None,
            });
            if let Some((h1, key)) = h1 {
                h1.assign(exchange, now);
                conns.wake(key);
                progress = true;
                continue;
            }
            let connecting = conns.iter().any(|(_, c)| {
                c.target == target
                    && c.dedicated.is_none()
                    && matches!(c.engine, Engine::Connecting(_) | Engine::Tls(_))
            });
            let h1_count = conns
                .iter()
                .filter(|(_, c)| {
                    c.target == target && c.dedicated.is_none() && matches!(c.engine, Engine::H1(_))
                })
                .count();
            if !connecting && h1_count < self.config.max_connections_per_origin {
                if let Err(e) = self.open(table, stack, &target, now, None) {
                    exchange.borrow_mut().fail(e);
                    progress = true;
                    continue;
                }
                progress = true;
            }
            self.queue.push(exchange);
        }
        progress
    }

    fn fail_queued(&mut self, target: &Target, error: &ClientError) {
        self.queue.retain(|ex| {
            let mut ex = ex.borrow_mut();
            if &ex.target == target {
                ex.fail(error.clone());
                false
            } else {
                true
            }
        });
    }

    /// Gives connection `key` of `table` its turn. False when it is none of this client's.
    pub(crate) fn drive<E: Holds<ClientConn>>(
        &mut self,
        table: &mut ConnTable<E>,
        stack: &mut Stack,
        key: usize,
        now: Instant,
    ) -> bool {
        let mut conns = table.role::<ClientConn>();
        let Some(turn) = conns.begin(key, now) else {
            return false;
        };
        let (conn, waker) = (turn.conn, turn.waker);
        let mut cx = Context::from_waker(&waker);
        // The next timer, armed when the connection stays.
        let mut timer = None;
        let mut closed = false;
        let mut failure = self
            .tls
            .open(&self.config, stack, conn, &waker, now, &mut timer);
        if let Some(error) = failure {
            if let Engine::Connecting(Some(s)) =
                std::mem::replace(&mut conn.engine, Engine::Connecting(None))
            {
                s.abort(stack);
            }
            let target = conn.target.clone();
            if let Some(ex) = conn.dedicated.take() {
                ex.borrow_mut().fail(error);
                conns.remove(key);
                return true;
            }
            conns.remove(key);
            self.fail_queued(&target, &error);
            return true;
        }
        if let Engine::Tunnel(pump) = &mut conn.engine {
            match pump.drive(stack, &mut cx, now) {
                Drive::Open => {
                    let at = pump.deadline();
                    conns.set_timer(key, at);
                }
                Drive::Closed => {
                    conns.remove(key);
                }
            }
            return true;
        }
        // Newly ready HTTP/2 connections take the queue at once.
        if let Engine::H2(h2) = &mut conn.engine {
            if h2.idle_expired(now, self.config.idle_timeout) {
                h2.close(stack);
                conns.remove(key);
                return true;
            }
            let target = conn.target.clone();
            let mut rest = Vec::new();
            for ex in std::mem::take(&mut self.queue) {
                if ex.borrow().target == target && h2.accepts_streams() {
                    h2.push(ex);
                } else {
                    rest.push(ex);
                }
            }
            self.queue = rest;
            let result = h2.drive(stack, &mut cx, now);
            // Requests the server refused unprocessed go back to the queue for another
            // connection.
            let requeued = h2.take_requeued();
            if !requeued.is_empty() {
                self.queue.extend(requeued);
            }
            match result {
                Ok(true) => {}
                Ok(false) => closed = true,
                Err(e) => {
                    failure = Some(e);
                    closed = true;
                }
            }
            if !closed {
                timer = h2.deadline(now, self.config.idle_timeout);
            }
        }
        if let Engine::H1(h1) = &mut conn.engine {
            // A dedicated connection whose exchange ended without a switch is done.
            let spent = conn.dedicated.is_some() && h1.is_idle();
            if spent {
                h1.close(stack);
                conns.remove(key);
                return true;
            }
            let queued = self
                .queue
                .iter()
                .position(|ex| ex.borrow().target == conn.target);
            if h1.is_idle() && conn.dedicated.is_none() {
                if let Some(i) = queued {
                    let ex = self.queue.remove(i);
                    h1.assign(ex, now);
                }
            }
            match h1.drive(stack, &mut cx, now) {
                Ok(true) => {}
                Ok(false) => closed = true,
                Err(e) => {
                    tracing::debug!(
                        "HTTP/1.1 connection to {} failed: {}",
                        conn.target,
                        Chain(&e)
                    );
                    closed = true;
                }
            }
            if !closed {
                timer = h1.deadline();
            }
        }
        if closed {
            if let (Some(conn), Some(error)) = (conns.remove(key), failure) {
                self.fail_queued(&conn.target, &error);
            }
        } else {
            conns.set_timer(key, timer);
        }
        true
    }
}

impl Application for Client {
    fn poll(&mut self, stack: &mut Stack, now: Instant) -> bool {
        let mut progress = self.core.dispatch(&mut self.conns, stack, now);
        for key in self.conns.ready(now) {
            progress |= self.core.drive(&mut self.conns, stack, key, now);
        }
        progress |= self.core.expire(&mut self.conns, now);
        progress
    }

    fn poll_at(&self, now: Instant) -> Option<Instant> {
        if self.core.has_queued() {
            return Some(now);
        }
        self.conns.poll_at(now)
    }

    fn shutdown(&mut self, stack: &mut Stack, _now: Instant) {
        self.core.shutdown(&mut self.conns, stack);
    }

    fn is_finished(&self) -> bool {
        self.conns.is_empty() && !self.core.has_queued()
    }
}

impl ClientCore {
    /// Fails the HTTP/2 requests past their deadline (an HTTP/1.1 engine times its
    /// response head itself: its timer wakes the connection).
    pub(crate) fn expire<E: Holds<ClientConn>>(
        &mut self,
        table: &mut ConnTable<E>,
        now: Instant,
    ) -> bool {
        let mut progress = false;
        if let Some(limit) = self.config.request_timeout {
            for (_, conn) in table.role::<ClientConn>().iter_mut() {
                if let Engine::H2(h2) = &mut conn.engine {
                    progress |= h2.expire(now, limit);
                }
            }
        }
        progress
    }

    /// True while requests wait for a connection.
    pub(crate) fn has_queued(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Closes every connection of this client in `table`.
    pub(crate) fn shutdown<E: Holds<ClientConn>>(
        &mut self,
        table: &mut ConnTable<E>,
        stack: &mut Stack,
    ) {
        for conn in table.role::<ClientConn>().drain() {
            match conn.engine {
                Engine::Connecting(Some(s)) => s.abort(stack),
                Engine::Tls(Some(t)) => t.abort(stack),
                Engine::Connecting(None) | Engine::Tls(None) => {}
                Engine::H1(mut h1) => h1.close(stack),
                Engine::H2(mut h2) => h2.close(stack),
                Engine::Tunnel(mut pump) => pump.close(stack, "client shut down"),
            }
        }
    }
}
