//! The server: an [`Application`] that accepts connections on the stack's ports and runs a
//! protocol engine for each, calling one handler for every request.
//!
//! Connections live in a [`ConnTable`]. Each has a waker that the smoltcp socket (data
//! arrived, room to send), a request-body pipe or a handler's future can fire; a woken
//! connection is queued and driven on the next turn, so the work per turn follows activity,
//! not the number of open connections. Engine timers (slowloris head timeout, keep-alive
//! idle) are the table's.
//!
//! A [`Server`] alone owns its table; the server proper (`ServerCore`) takes the table as
//! an argument, so a proxy keeps its server's connections and its client's in one.

use std::sync::Arc;
use std::task::Context;

use http::Method;
use smoltcp::time::Instant;

use super::dispatch::{self, BoxError, Dispatch, MakeDispatch};
use super::h1::{H1Conn, Parked};
use super::h2::{H2Config, H2Conn};
use super::shared::Shared;
pub use super::shared::{ServerStats, StatsHandle};
use super::{ConnInfo, Handler, Protocol};
use crate::conn::body::Incoming;
use crate::conn::Drive;
use crate::http::h1::H1Config;
use crate::http::H2_PREFACE;
use crate::runtime::table::{ConnTable, Holds};
use crate::runtime::Application;
use crate::stack::{Stack, StackError};
use crate::transport::any::AnyStream;
use crate::transport::tcp::TcpStream;
use crate::transport::tls::ServerTls;
use crate::transport::{ReadStatus, Transport};

/// Settings of a server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// HTTP/1.1 limits and timeouts.
    pub h1: H1Config,
    /// HTTP/2 settings and timeouts.
    pub h2: H2Config,
    /// On cleartext ports, recognise the HTTP/2 preface (h2c with prior knowledge).
    pub h2c: bool,
    /// Time allowed for a TLS handshake.
    pub tls_handshake_timeout: std::time::Duration,
    /// Value of the `Server` header (`None`: no header).
    pub server_header: Option<String>,
    /// The request methods the handler takes. With `Some`, the server answers two kinds of
    /// request itself, before any handler runs (RFC 9110): `OPTIONS *` (about the server
    /// as a whole, §9.3.7) gets `204` with these methods and OPTIONS in `Allow`, and a
    /// method it does not recognize — neither RFC 9110's, PATCH, nor one listed here —
    /// gets `501 Not Implemented` (§9.1, §15.6.2). A handler answers `405` for a known
    /// method one of its resources does not take. `None` hands every request to the
    /// handler (a forwarding proxy passes on methods it does not know).
    pub methods: Option<Vec<Method>>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            h1: H1Config::default(),
            h2: H2Config::default(),
            h2c: true,
            tls_handshake_timeout: std::time::Duration::from_secs(10),
            server_header: Some(concat!("tapir/", env!("CARGO_PKG_VERSION")).to_string()),
            methods: Some(vec![Method::GET, Method::HEAD, Method::POST]),
        }
    }
}

/// A cleartext connection before we know whether it speaks HTTP/1.1 or HTTP/2.
struct Sniff {
    stream: Option<TcpStream>,
    seen: Vec<u8>,
    info: ConnInfo,
    since: Instant,
}

/// A TLS connection during its handshake; ALPN then picks the engine.
struct TlsHandshake {
    stream: Option<ServerTls>,
    info: ConnInfo,
    since: Instant,
}

enum Engine {
    Sniff(Sniff),
    Tls(Box<TlsHandshake>),
    H1(Box<H1Conn<AnyStream>>),
    /// An HTTP/1.1 connection waiting for its next request, without its engine.
    Parked(Parked<AnyStream>),
    H2(Box<H2Conn<AnyStream>>),
    /// Only while one engine is swapped for another.
    Gone,
}

/// What sniffing the first bytes decided.
enum Sniffed {
    /// Not enough bytes yet.
    Undecided,
    /// The peer went away first.
    Gone,
    /// HTTP/1.x (the bytes did not match the preface).
    Http1,
    /// The HTTP/2 preface.
    Http2,
    /// The start of the HTTP/2 preface (`PRI * HTTP/2.0`, which no HTTP/1.x request can
    /// be), then something else: a connection error (RFC 9113 §3.4).
    BadPreface,
}

/// The request line of the HTTP/2 preface: past it, the bytes can no longer be HTTP/1.x.
const PREFACE_LINE: &[u8] = b"PRI * HTTP/2.0\r\n";

/// GOAWAY, last stream 0, PROTOCOL_ERROR (RFC 9113 §6.8), for an invalid preface.
const GOAWAY_PROTOCOL_ERROR: [u8; 17] = [0, 0, 8, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

impl Sniff {
    fn poll(&mut self, stack: &mut Stack) -> Sniffed {
        let Some(stream) = self.stream.as_mut() else {
            return Sniffed::Gone;
        };
        let seen = &mut self.seen;
        let status = stream.read_with(stack, &mut |data| {
            let want = (H2_PREFACE.len() - seen.len()).min(data.len());
            seen.extend_from_slice(&data[..want]);
            want
        });
        if !H2_PREFACE.starts_with(&self.seen) {
            if self.seen.starts_with(PREFACE_LINE) {
                return Sniffed::BadPreface;
            }
            return Sniffed::Http1;
        }
        if self.seen.len() == H2_PREFACE.len() {
            return Sniffed::Http2;
        }
        match status {
            Ok(ReadStatus::Eof) | Err(_) => Sniffed::Gone,
            Ok(_) => Sniffed::Undecided,
        }
    }
}

/// A server connection: its engine and its clone of the application.
pub(crate) struct ServerConn {
    engine: Engine,
    /// This connection's clone of the application.
    service: Box<dyn Dispatch>,
}

/// What kind of service a port offers.
#[derive(Debug, Clone)]
pub enum PortKind {
    /// Cleartext HTTP/1.1 (and h2c with prior knowledge unless disabled).
    Http,
    /// TLS; the client's ALPN choice among the configuration's protocols picks HTTP/1.1 or
    /// HTTP/2 per connection.
    Https(Arc<rustls::ServerConfig>),
}

/// An HTTP server on a stack, serving `S`: a tapir [`Handler`] ([`Server::new`]) or a
/// `tower::Service` ([`Server::from_service`]).
pub struct Server<S: ?Sized> {
    core: ServerCore,
    conns: ConnTable<ServerConn>,
    served: std::marker::PhantomData<Box<S>>,
}

/// The server without a connection table: ports, settings, counters and the application,
/// driving [`ServerConn`]s in a table it is given (its own [`Server`]'s, or a proxy's shared
/// with a client).
pub(crate) struct ServerCore {
    config: ServerConfig,
    h1: Arc<H1Config>,
    ports: Vec<(u16, PortKind)>,
    /// Connections of this server open now (in a shared table, not all entries are ours).
    open: usize,
    shared: Shared,
    accepting: bool,
    make_service: MakeDispatch,
}

impl<H: Handler + 'static> Server<H> {
    /// A server answering every request with `handler`.
    pub fn new(handler: H, config: ServerConfig) -> Self {
        Server::with_stats(handler, config, StatsHandle::default())
    }

    /// Like [`Server::new`], counting into `stats` (so a handler made before the server,
    /// like the built-in `/stats`, can read the server's counters).
    pub fn with_stats(handler: H, config: ServerConfig, stats: StatsHandle) -> Self {
        Server::make(dispatch::make_handler(handler), config, stats)
    }
}

impl<S, B> Server<S>
where
    S: tower::Service<http::Request<Incoming>, Response = http::Response<B>> + Clone + 'static,
    S::Error: Into<BoxError>,
    S::Future: 'static,
    B: http_body::Body + 'static,
    B::Error: Into<BoxError>,
{
    /// A server answering every request with a `tower::Service` (an axum `Router`, a
    /// tower-http stack, [`super::service_fn`]), cloned for each connection. A request
    /// carries the [`ConnInfo`] in its extensions (and `ConnectProtocol` for an HTTP/2
    /// extended CONNECT); a response body streams as the peer takes it, its exact size
    /// hint becoming Content-Length and its trailers sent on HTTP/2; a [`super::Takeover`]
    /// in a switching response's extensions gets the connection as a tunnel. A service
    /// that fails answers `500`; one that fails its readiness, `503`.
    pub fn from_service(service: S, config: ServerConfig) -> Self {
        Server::from_service_with_stats(service, config, StatsHandle::default())
    }

    /// Like [`Server::from_service`], counting into `stats`.
    pub fn from_service_with_stats(service: S, config: ServerConfig, stats: StatsHandle) -> Self {
        Server::make(dispatch::make_service(service), config, stats)
    }
}

impl<S: ?Sized> Server<S> {
    fn make(make_service: MakeDispatch, config: ServerConfig, stats: StatsHandle) -> Self {
        Server {
            core: ServerCore::new(make_service, config, stats),
            conns: ConnTable::new(),
            served: std::marker::PhantomData,
        }
    }

    /// Serves cleartext HTTP/1.1 (and h2c) on `port` of `stack`.
    pub fn bind_http(&mut self, stack: &mut Stack, port: u16) -> Result<(), StackError> {
        self.core.bind_http(stack, port)
    }

    /// Serves HTTPS on `port` of `stack` with `tls` (see
    /// [`crate::transport::certs::server_config`]). With `h2` among the configuration's ALPN
    /// protocols this is paf's ALPN service: each client's choice picks HTTP/2 or HTTP/1.1;
    /// a client offering no ALPN gets HTTP/1.1.
    pub fn bind_https(
        &mut self,
        stack: &mut Stack,
        port: u16,
        tls: Arc<rustls::ServerConfig>,
    ) -> Result<(), StackError> {
        self.core.bind_https(stack, port, tls)
    }

    /// The ports served, with their kind.
    pub fn ports(&self) -> &[(u16, PortKind)] {
        &self.core.ports
    }

    /// The server's counters, shareable with handlers.
    pub fn stats_handle(&self) -> StatsHandle {
        self.core.stats_handle()
    }

    /// The server's settings.
    pub fn config(&self) -> &ServerConfig {
        &self.core.config
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.core.open_connections()
    }
}

impl ServerCore {
    /// A server without a table answering every request with `handler` (a proxy's).
    pub(crate) fn for_handler<H: Handler + 'static>(handler: H, config: ServerConfig) -> Self {
        ServerCore::new(
            dispatch::make_handler(handler),
            config,
            StatsHandle::default(),
        )
    }

    /// A server serving the applications `make_service` makes (one per connection).
    fn new(make_service: MakeDispatch, config: ServerConfig, stats: StatsHandle) -> Self {
        let shared = Shared::new(
            config.server_header.as_deref(),
            config.methods.clone(),
            stats,
        );
        ServerCore {
            h1: Arc::new(config.h1.clone()),
            config,
            ports: Vec::new(),
            open: 0,
            shared,
            accepting: true,
            make_service,
        }
    }

    /// Serves cleartext HTTP/1.1 (and h2c) on `port` of `stack`.
    pub(crate) fn bind_http(&mut self, stack: &mut Stack, port: u16) -> Result<(), StackError> {
        stack.listen(port)?;
        self.ports.push((port, PortKind::Http));
        Ok(())
    }

    /// Serves HTTPS on `port` of `stack` with `tls` (see
    /// [`crate::transport::certs::server_config`]). With `h2` among the configuration's ALPN
    /// protocols this is paf's ALPN service: each client's choice picks HTTP/2 or HTTP/1.1;
    /// a client offering no ALPN gets HTTP/1.1.
    pub(crate) fn bind_https(
        &mut self,
        stack: &mut Stack,
        port: u16,
        tls: Arc<rustls::ServerConfig>,
    ) -> Result<(), StackError> {
        stack.listen(port)?;
        self.ports.push((port, PortKind::Https(tls)));
        Ok(())
    }

    /// The server's counters, shareable with handlers.
    pub(crate) fn stats_handle(&self) -> StatsHandle {
        StatsHandle(self.shared.stats.clone())
    }

    /// Connections of this server open now.
    pub(crate) fn open_connections(&self) -> usize {
        self.open
    }

    /// Takes the connections waiting on the ports into `table`.
    pub(crate) fn accept<E: Holds<ServerConn>>(
        &mut self,
        table: &mut ConnTable<E>,
        stack: &mut Stack,
        now: Instant,
    ) -> bool {
        if !self.accepting {
            return false;
        }
        let mut any = false;
        for (port, kind) in &self.ports {
            let port = *port;
            while let Some(handle) = stack.accept(port) {
                any = true;
                let socket = stack.socket_ref(&handle);
                let (Some(peer), Some(local)) = (socket.remote_endpoint(), socket.local_endpoint())
                else {
                    stack.abort(handle);
                    continue;
                };
                let info = ConnInfo {
                    protocol: Protocol::Http11,
                    peer,
                    local,
                    tls: None,
                };
                let stream = TcpStream::new(handle);
                let engine = match kind {
                    PortKind::Http if self.config.h2c => Engine::Sniff(Sniff {
                        stream: Some(stream),
                        seen: Vec::new(),
                        info,
                        since: now,
                    }),
                    PortKind::Http => Engine::H1(Box::new(H1Conn::new(
                        AnyStream::from(stream),
                        self.h1.clone(),
                        info,
                        &[],
                        now,
                    ))),
                    PortKind::Https(tls) => match ServerTls::accept(stream, tls.clone()) {
                        Ok(tls) => Engine::Tls(Box::new(TlsHandshake {
                            stream: Some(tls),
                            info,
                            since: now,
                        })),
                        Err(e) => {
                            tracing::warn!("TLS setup failed: {}", e.error());
                            e.into_tcp().abort(stack);
                            continue;
                        }
                    },
                };
                table.insert(E::from_conn(ServerConn {
                    engine,
                    service: (self.make_service)(),
                }));
                self.open += 1;
                let mut stats = self.shared.stats.borrow_mut();
                stats.connections_total += 1;
            }
        }
        any
    }

    /// Brings the counters that are copies (open connections, the stack's) up to now.
    pub(crate) fn refresh_stats(&self, stack: &Stack) {
        let mut stats = self.shared.stats.borrow_mut();
        stats.connections_open = self.open as u64;
        stats.stack = stack.stats();
    }

    /// Connection `key` leaves the table (and the count).
    fn forget<E: Holds<ServerConn>>(
        &mut self,
        table: &mut ConnTable<E>,
        key: usize,
    ) -> Option<ServerConn> {
        let conn = table.role::<ServerConn>().remove(key);
        if conn.is_some() {
            self.open -= 1;
        }
        conn
    }

    /// Gives connection `key` of `table` its turn. False when it is none of this server's.
    pub(crate) fn drive<E: Holds<ServerConn>>(
        &mut self,
        table: &mut ConnTable<E>,
        stack: &mut Stack,
        key: usize,
        now: Instant,
    ) -> bool {
        // `/stats` (run by a handler below) reads the counters of this very instant: the
        // connection being driven is open and was counted by the stack when accepted.
        self.refresh_stats(stack);
        let mut conns = table.role::<ServerConn>();
        let Some(turn) = conns.begin(key, now) else {
            return false;
        };
        let (conn, waker, timer_due) = (turn.conn, turn.waker, turn.timer_due);
        let mut cx = Context::from_waker(&waker);
        if let Engine::Sniff(sniff) = &mut conn.engine {
            let head_timeout = self.config.h1.head_timeout;
            let next = match sniff.poll(stack) {
                Sniffed::Undecided if now < sniff.since + head_timeout.into() => None,
                Sniffed::Undecided | Sniffed::Gone => {
                    if let Some(stream) = sniff.stream.take() {
                        stream.close(stack);
                    }
                    self.forget(table, key);
                    return true;
                }
                Sniffed::BadPreface => {
                    if let Some(mut stream) = sniff.stream.take() {
                        tracing::debug!("{}: invalid HTTP/2 preface", sniff.info.peer_addr());
                        // A fresh socket has room for 17 bytes; if not, closing is enough.
                        let _ = stream.write(stack, &GOAWAY_PROTOCOL_ERROR);
                        stream.close(stack);
                    }
                    self.shared.stats.borrow_mut().rejected += 1;
                    self.forget(table, key);
                    return true;
                }
                Sniffed::Http1 => sniff.stream.take().map(|s| {
                    let mut h1 = H1Conn::new(
                        AnyStream::from(s),
                        self.h1.clone(),
                        sniff.info.clone(),
                        &sniff.seen,
                        now,
                    );
                    // This port takes HTTP/2 too: `Upgrade: h2c` is honoured.
                    h1.allow_h2c_upgrade();
                    Engine::H1(Box::new(h1))
                }),
                Sniffed::Http2 => sniff.stream.take().map(|s| {
                    Engine::H2(Box::new(H2Conn::new(
                        AnyStream::from(s),
                        &self.config.h2,
                        sniff.info.clone(),
                        &sniff.seen,
                        now,
                    )))
                }),
            };
            if let Some(engine) = next {
                conn.engine = engine;
            }
        }
        if let Engine::Tls(hs) = &mut conn.engine {
            let expired = now >= hs.since + self.config.tls_handshake_timeout.into();
            let result = match hs.stream.as_mut() {
                Some(tls) => tls.drive_handshake(stack),
                None => Ok(false),
            };
            match result {
                Ok(true) => {
                    if let Some(tls) = hs.stream.take() {
                        let mut info = hs.info.clone();
                        info.tls = tls.info();
                        let h2 = tls.alpn_protocol() == Some(b"h2");
                        let stream = AnyStream::from(tls);
                        conn.engine = if h2 {
                            Engine::H2(Box::new(H2Conn::new(
                                stream,
                                &self.config.h2,
                                info,
                                &[],
                                now,
                            )))
                        } else {
                            Engine::H1(Box::new(H1Conn::new(
                                stream,
                                self.h1.clone(),
                                info,
                                &[],
                                now,
                            )))
                        };
                    }
                }
                Ok(false) if !expired => {}
                Ok(false) | Err(_) => {
                    match &result {
                        Err(e) => {
                            tracing::info!(
                                "{}: TLS handshake failed: {}",
                                hs.info.peer_addr(),
                                crate::error::Chain(e)
                            )
                        }
                        _ => tracing::info!("{}: TLS handshake timed out", hs.info.peer_addr()),
                    }
                    self.shared.stats.borrow_mut().rejected += 1;
                    if let Some(tls) = hs.stream.take() {
                        // A graceful close lets the alert rustls queued reach the client.
                        tls.close(stack);
                    }
                    self.forget(table, key);
                    return true;
                }
            }
        }
        if let Engine::Parked(_) = conn.engine {
            // The next request, or the idle timeout: the connection gets its engine back.
            if let Engine::Parked(parked) = std::mem::replace(&mut conn.engine, Engine::Gone) {
                conn.engine = Engine::H1(Box::new(parked.resume(self.h1.clone())));
            }
        }
        let (drive, deadline) = match &mut conn.engine {
            Engine::Parked(_) | Engine::Gone => (Drive::Closed, None),
            Engine::Tls(hs) => {
                if let Some(tls) = hs.stream.as_mut() {
                    tls.register(stack, &waker, true, tls.has_pending_output());
                }
                (
                    Drive::Open,
                    Some(hs.since + self.config.tls_handshake_timeout.into()),
                )
            }
            Engine::Sniff(sniff) => {
                if let Some(stream) = sniff.stream.as_mut() {
                    stream.register(stack, &waker, true, false);
                }
                (
                    Drive::Open,
                    Some(sniff.since + self.config.h1.head_timeout.into()),
                )
            }
            Engine::H1(h1) => {
                if timer_due {
                    h1.on_timeout(now, &self.shared);
                }
                let drive = h1.drive(stack, &mut cx, now, &mut *conn.service, &self.shared);
                (drive, h1.deadline())
            }
            Engine::H2(h2) => {
                if timer_due {
                    h2.on_timeout(now);
                }
                let drive = h2.drive(stack, &mut cx, now, &mut *conn.service, &self.shared);
                (drive, h2.deadline())
            }
        };
        // After `101` to `Upgrade: h2c`, the connection speaks HTTP/2.
        let upgraded = match &mut conn.engine {
            Engine::H1(h1) => h1.take_h2c(),
            _ => None,
        };
        if let Some((stream, prefix, frame, info)) = upgraded {
            conn.engine = Engine::H2(Box::new(H2Conn::new_upgraded(
                stream,
                &self.config.h2,
                info,
                &prefix,
                frame,
                now,
            )));
            waker.wake_by_ref();
            return true;
        }
        match drive {
            Drive::Closed => {
                self.forget(table, key);
            }
            Drive::Open => {
                let mut deadline = deadline;
                if let Engine::H1(_) = conn.engine {
                    // Idle a while between requests, a connection holds only its stream (see
                    // `Parked`); until then its timer wakes it when it is time to park.
                    if let Engine::H1(h1) = std::mem::replace(&mut conn.engine, Engine::Gone) {
                        conn.engine = match h1.park(now) {
                            Ok(parked) => Engine::Parked(parked),
                            Err(h1) => {
                                deadline = [deadline, h1.park_at()].into_iter().flatten().min();
                                Engine::H1(h1)
                            }
                        };
                    }
                }
                table.set_timer(key, deadline);
            }
        }
        true
    }
}

impl<S: ?Sized> Application for Server<S> {
    fn poll(&mut self, stack: &mut Stack, now: Instant) -> bool {
        let mut any = self.core.accept(&mut self.conns, stack, now);
        for key in self.conns.ready(now) {
            any |= self.core.drive(&mut self.conns, stack, key, now);
        }
        self.core.refresh_stats(stack);
        any
    }

    fn poll_at(&self, now: Instant) -> Option<Instant> {
        self.conns.poll_at(now)
    }

    fn shutdown(&mut self, stack: &mut Stack, now: Instant) {
        self.core.shutdown(&mut self.conns, stack, now);
    }

    fn abort(&mut self, stack: &mut Stack) {
        self.core.abort(&mut self.conns, stack);
    }

    fn is_finished(&self) -> bool {
        self.core.is_finished()
    }
}

impl ServerCore {
    /// Stops accepting: idle connections close now, busy ones after their requests.
    pub(crate) fn shutdown<E: Holds<ServerConn>>(
        &mut self,
        table: &mut ConnTable<E>,
        stack: &mut Stack,
        now: Instant,
    ) {
        self.accepting = false;
        for (port, _) in &self.ports {
            stack.unlisten(*port);
        }
        // Idle keep-alive connections close now; busy ones finish their requests first.
        // HTTP/2 connections get GOAWAY and end when their streams are done.
        let mut conns = table.role::<ServerConn>();
        conns.wake_all();
        let idle: Vec<usize> = conns
            .iter_mut()
            .filter_map(|(k, c)| match &mut c.engine {
                Engine::Sniff(_) | Engine::Tls(_) | Engine::Parked(_) | Engine::Gone => Some(k),
                Engine::H1(h1) => h1.is_idle().then_some(k),
                Engine::H2(h2) => {
                    h2.shutdown(now);
                    None
                }
            })
            .collect();
        for key in idle {
            let Some(conn) = self.forget(table, key) else {
                continue;
            };
            match conn.engine {
                Engine::Sniff(mut sniff) => {
                    if let Some(stream) = sniff.stream.take() {
                        stream.close(stack);
                    }
                }
                Engine::Tls(mut hs) => {
                    if let Some(tls) = hs.stream.take() {
                        tls.abort(stack);
                    }
                }
                Engine::H1(mut h1) => h1.close(stack, &self.shared),
                Engine::Parked(parked) => parked.close(stack),
                Engine::H2(mut h2) => h2.abort(stack),
                Engine::Gone => {}
            }
        }
    }

    /// Resets every connection still open.
    pub(crate) fn abort<E: Holds<ServerConn>>(
        &mut self,
        table: &mut ConnTable<E>,
        stack: &mut Stack,
    ) {
        if self.open > 0 {
            tracing::info!("resetting {} connections still open", self.open);
        }
        self.open = 0;
        for conn in table.role::<ServerConn>().drain() {
            match conn.engine {
                Engine::Sniff(mut sniff) => {
                    if let Some(stream) = sniff.stream.take() {
                        stream.abort(stack);
                    }
                }
                Engine::Tls(mut hs) => {
                    if let Some(tls) = hs.stream.take() {
                        tls.abort(stack);
                    }
                }
                Engine::H1(mut h1) => h1.abort(stack, &self.shared),
                Engine::Parked(parked) => parked.abort(stack),
                Engine::H2(mut h2) => h2.abort(stack),
                Engine::Gone => {}
            }
        }
        self.shared.stats.borrow_mut().connections_open = 0;
    }

    /// True once shut down with every connection closed.
    pub(crate) fn is_finished(&self) -> bool {
        !self.accepting && self.open == 0
    }
}
