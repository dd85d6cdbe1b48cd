//! An HTTP proxy on the userspace stack: the server side takes the requests, the client side
//! of the same stack reaches the origins (across the TAP device).
//!
//! * **Forward** ([`ProxyMode::Forward`]): `CONNECT host:port` opens a bare TCP connection to
//!   the origin ([`Client::connect_tunnel`]) and, once it is up, answers `200` and splices the
//!   two streams (paf's `no_close`: the client's connection outlives the HTTP exchange);
//!   absolute-form requests (`GET http://host/path`) are forwarded with the hop-by-hop
//!   headers removed (RFC 9110 §7.6.1) and `Via` added. Only targets on the allow-list are
//!   reached (by default the stack's own subnets): anything else gets `403`, so the proxy is
//!   never an open relay.
//! * **Reverse** ([`ProxyMode::Reverse`]): every request goes to one upstream origin over the
//!   client's HTTP/1.1 keep-alive pool or one HTTP/2 connection, whatever protocol the
//!   downstream client speaks.
//!
//! The downstream connections (the server's) and the upstream ones (the client's) live in one
//! [`ConnTable`]: one ready queue, one set of timers, one turn that drives every ready or
//! due connection once, whatever its role.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::ops::RangeInclusive;
use std::rc::Rc;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use smoltcp::time::Instant;
use smoltcp::wire::{IpAddress, IpCidr};

use crate::client::{Client, ClientConn, ClientCore, ClientError, Scheme, Target};
use crate::conn::upgrade::splice;
use crate::runtime::table::{holds, ConnTable};
use crate::runtime::Application;
use crate::service::server::{ServerConn, ServerCore, StatsHandle};
use crate::service::{
    text_response, Answer, Body, ConnInfo, Handler, Reply, RequestBody, ServerConfig,
};
use crate::stack::{Stack, StackError};

/// A network (and optionally a port range) the forward proxy may reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allow {
    /// The addresses.
    pub net: IpCidr,
    /// The ports (`None`: any).
    pub ports: Option<RangeInclusive<u16>>,
}

impl Allow {
    fn permits(&self, addr: IpAddress, port: u16) -> bool {
        self.net.contains_addr(&addr) && self.ports.as_ref().is_none_or(|p| p.contains(&port))
    }
}

impl fmt::Display for Allow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.ports {
            None => write!(f, "{}", self.net),
            Some(p) if p.start() == p.end() => write!(f, "{}:{}", self.net, p.start()),
            Some(p) => write!(f, "{}:{}-{}", self.net, p.start(), p.end()),
        }
    }
}

/// What the proxy does with requests.
#[derive(Debug, Clone)]
pub enum ProxyMode {
    /// A forward proxy: `CONNECT` tunnels and absolute-form requests to allowed targets.
    Forward {
        /// Where it may connect.
        allow: Vec<Allow>,
        /// Names it can resolve (besides address literals).
        hosts: HashMap<String, IpAddress>,
    },
    /// A reverse proxy: every request goes to this origin.
    Reverse {
        /// The origin.
        upstream: Target,
    },
}

/// Why the proxy will not reach a target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A name it cannot resolve.
    #[error("cannot resolve {0}")]
    Unresolved(String),
    /// A target off the allow-list.
    #[error("{0} port {1} is not on this proxy's allow-list")]
    Denied(IpAddress, u16),
}

impl Refusal {
    /// The response the client gets: `502` for a name, `403` for a denied target.
    pub fn response(&self) -> Response<Body> {
        let status = match self {
            Refusal::Unresolved(_) => StatusCode::BAD_GATEWAY,
            Refusal::Denied(..) => StatusCode::FORBIDDEN,
        };
        text_response(status, format!("{self}\n"))
    }
}

/// The proxy's request handler.
pub struct ProxyHandler {
    mode: ProxyMode,
    client: Rc<RefCell<ClientCore>>,
}

/// A connection of the proxy: downstream (the server's) or upstream (the client's).
enum ProxyConn {
    Down(ServerConn),
    Up(ClientConn),
}

holds!(ProxyConn {
    Down(ServerConn),
    Up(ClientConn),
});

/// An HTTP proxy: a server and a client on the same stack, one application with one
/// connection table.
pub struct Proxy {
    server: ServerCore,
    client: Rc<RefCell<ClientCore>>,
    conns: ConnTable<ProxyConn>,
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("connections", &self.open_connections())
            .field("upstream_connections", &self.upstream_connections())
            .finish()
    }
}

impl Proxy {
    /// A proxy in `mode`, reaching origins with `client`. Every method is the origin's to
    /// judge, so the server in front hands all of them on (`config.methods` is cleared).
    pub fn new(mode: ProxyMode, client: Client, mut config: ServerConfig) -> Self {
        config.methods = None;
        let (client, own) = client.into_parts();
        let client = Rc::new(RefCell::new(client));
        let handler = ProxyHandler {
            mode,
            client: client.clone(),
        };
        let mut conns = ConnTable::new();
        // Connections the client holds already (none unless it ran before) move along.
        let mut own = own;
        for conn in own.drain() {
            conns.insert(ProxyConn::Up(conn));
        }
        Proxy {
            server: ServerCore::for_handler(handler, config),
            client,
            conns,
        }
    }

    /// Listens for plain HTTP proxy requests on `port`.
    pub fn bind_http(&mut self, stack: &mut Stack, port: u16) -> Result<(), StackError> {
        self.server.bind_http(stack, port)
    }

    /// Listens for HTTPS on `port` (reverse proxies that terminate TLS).
    pub fn bind_https(
        &mut self,
        stack: &mut Stack,
        port: u16,
        tls: std::sync::Arc<rustls::ServerConfig>,
    ) -> Result<(), StackError> {
        self.server.bind_https(stack, port, tls)
    }

    /// The downstream server's counters.
    pub fn stats_handle(&self) -> StatsHandle {
        self.server.stats_handle()
    }

    /// Downstream connections (from the proxy's clients) open now.
    pub fn open_connections(&self) -> usize {
        self.server.open_connections()
    }

    /// Connections open to origins now.
    pub fn upstream_connections(&self) -> usize {
        self.conns.len() - self.server.open_connections()
    }

    /// Connections in the proxy's one table, both directions.
    pub fn table_len(&self) -> usize {
        self.conns.len()
    }

    /// One turn: new downstream connections and queued upstream requests take their
    /// connections, then every connection that is ready or whose timer is due is driven
    /// once, downstream or upstream alike.
    fn turn(&mut self, stack: &mut Stack, now: Instant) -> bool {
        let mut progress = self.server.accept(&mut self.conns, stack, now);
        progress |= self
            .client
            .borrow_mut()
            .dispatch(&mut self.conns, stack, now);
        for key in self.conns.ready(now) {
            progress |= match self.conns.get(key) {
                Some(ProxyConn::Down(_)) => self.server.drive(&mut self.conns, stack, key, now),
                Some(ProxyConn::Up(_)) => {
                    self.client
                        .borrow_mut()
                        .drive(&mut self.conns, stack, key, now)
                }
                None => false,
            };
        }
        progress |= self.client.borrow_mut().expire(&mut self.conns, now);
        progress
    }
}

impl Application for Proxy {
    fn poll(&mut self, stack: &mut Stack, now: Instant) -> bool {
        let mut progress = false;
        // A handler queues upstream requests during its connection's drive: they take
        // their connections on a next turn at once, as long as turns move something.
        for _ in 0..8 {
            let moved = self.turn(stack, now);
            progress |= moved;
            if !moved || !(self.client.borrow().has_queued() || self.conns.has_ready()) {
                break;
            }
        }
        self.server.refresh_stats(stack);
        progress
    }

    fn poll_at(&self, now: Instant) -> Option<Instant> {
        if self.client.borrow().has_queued() {
            return Some(now);
        }
        self.conns.poll_at(now)
    }

    fn shutdown(&mut self, stack: &mut Stack, now: Instant) {
        self.server.shutdown(&mut self.conns, stack, now);
        self.client.borrow_mut().shutdown(&mut self.conns, stack);
    }

    fn abort(&mut self, stack: &mut Stack) {
        self.server.abort(&mut self.conns, stack);
        self.client.borrow_mut().shutdown(&mut self.conns, stack);
    }

    fn is_finished(&self) -> bool {
        self.server.is_finished() && self.conns.is_empty() && !self.client.borrow().has_queued()
    }
}

/// Headers that belong to one connection, never forwarded (RFC 9110 §7.6.1), plus those
/// the `Connection` header names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        "connection",
        "proxy-connection",
        "keep-alive",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "proxy-authorization",
        "proxy-authenticate",
    ] {
        headers.remove(name);
    }
}

/// Adds this hop to `Via`.
fn add_via(headers: &mut HeaderMap, version: http::Version) {
    let protocol = match version {
        http::Version::HTTP_10 => "1.0",
        http::Version::HTTP_2 => "2",
        _ => "1.1",
    };
    if let Ok(value) = HeaderValue::from_str(&format!("{protocol} tapir")) {
        headers.append(header::VIA, value);
    }
}

fn upstream_error(error: &ClientError) -> Response<Body> {
    let text = crate::error::Chain(error);
    tracing::debug!("proxy: upstream failed: {text}");
    let status = match error {
        ClientError::ConnectTimeout(_) | ClientError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::BAD_GATEWAY,
    };
    text_response(status, format!("{text}\n"))
}

/// Turns an origin's response into ours: hop-by-hop headers out, `Via` in, body streamed.
fn relay_response(response: Response<crate::service::ResponseBody>) -> Response<Body> {
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    add_via(&mut parts.headers, parts.version);
    parts.version = http::Version::HTTP_11;
    Response::from_parts(parts, Body::from(body))
}

impl ProxyHandler {
    /// Where `host:port` is, if we may go there.
    fn resolve(
        &self,
        host: &str,
        port: u16,
        allow: &[Allow],
        hosts: &HashMap<String, IpAddress>,
    ) -> Result<IpAddress, Refusal> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let addr = match bare.parse::<std::net::IpAddr>() {
            Ok(ip) => IpAddress::from(ip),
            Err(_) => match hosts.get(&bare.to_ascii_lowercase()) {
                Some(addr) => *addr,
                None => return Err(Refusal::Unresolved(bare.to_string())),
            },
        };
        if allow.iter().any(|a| a.permits(addr, port)) {
            Ok(addr)
        } else {
            tracing::info!(
                target: "tapir::access",
                "proxy: denied {}",
                std::net::SocketAddr::new(addr.into(), port)
            );
            Err(Refusal::Denied(addr, port))
        }
    }

    fn connect(
        &self,
        request: &Request<RequestBody>,
        allow: &[Allow],
        hosts: &HashMap<String, IpAddress>,
    ) -> Reply {
        let Some(authority) = request.uri().authority() else {
            return Reply::Now(text_response(
                StatusCode::BAD_REQUEST,
                "CONNECT needs host:port\n",
            ));
        };
        let Some(port) = authority.port_u16() else {
            return Reply::Now(text_response(
                StatusCode::BAD_REQUEST,
                "CONNECT needs a port\n",
            ));
        };
        let host = authority.host().to_string();
        let addr = match self.resolve(&host, port, allow, hosts) {
            Ok(addr) => addr,
            Err(refusal) => return Reply::Now(refusal.response()),
        };
        let target = Target {
            scheme: Scheme::Http,
            host,
            port,
            addr,
        };
        let origin = self.client.borrow_mut().connect_tunnel(&target);
        Reply::later_answer(async move {
            match origin.await {
                Ok(origin) => {
                    let response = Response::new(Body::empty());
                    Answer::tunnel(response, move |client| async move {
                        let (up, down) = splice(client, origin).await;
                        tracing::debug!("tunnel to {target} done: {up} bytes up, {down} down");
                    })
                }
                Err(e) => Answer::from(upstream_error(&e)),
            }
        })
    }

    fn forward(&self, request: Request<RequestBody>, target: Target) -> Reply {
        let (mut parts, body) = request.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        add_via(&mut parts.headers, parts.version);
        // The client side sets Host (HTTP/1.1) or :authority (HTTP/2) from the target.
        parts.headers.remove(header::HOST);
        if let Some(path) = parts.uri.path_and_query() {
            if let Ok(uri) = path.as_str().parse::<Uri>() {
                parts.uri = uri;
            }
        }
        parts.version = http::Version::HTTP_11;
        let request = Request::from_parts(parts, Body::from(body));
        let response = self.client.borrow_mut().send(&target, request);
        Reply::later(async move {
            match response.await {
                Ok(response) => relay_response(response),
                Err(e) => upstream_error(&e),
            }
        })
    }
}

impl Handler for ProxyHandler {
    fn call(&self, request: Request<RequestBody>, info: &ConnInfo) -> Reply {
        match &self.mode {
            ProxyMode::Forward { allow, hosts } => {
                if request.method() == Method::CONNECT {
                    return self.connect(&request, allow, hosts);
                }
                if request.uri().scheme().is_none() {
                    return Reply::Now(text_response(
                        StatusCode::BAD_REQUEST,
                        "this is a proxy: send an absolute URL (GET http://host/path) or CONNECT\n",
                    ));
                }
                // The origin's scheme, host and port as the client side reads any URL; its
                // address once the allow-list agrees.
                let unresolved = IpAddress::Ipv4(smoltcp::wire::Ipv4Address::UNSPECIFIED);
                let mut target = match Target::from_uri(request.uri(), unresolved) {
                    Ok(target) => target,
                    Err(e) => {
                        return Reply::Now(text_response(StatusCode::BAD_REQUEST, format!("{e}\n")))
                    }
                };
                target.addr = match self.resolve(&target.host, target.port, allow, hosts) {
                    Ok(addr) => addr,
                    Err(refusal) => return Reply::Now(refusal.response()),
                };
                self.forward(request, target)
            }
            ProxyMode::Reverse { upstream } => {
                let mut request = request;
                let forwarded = info.peer.addr.to_string();
                if let Ok(value) = HeaderValue::from_str(&forwarded) {
                    request.headers_mut().append("x-forwarded-for", value);
                }
                self.forward(request, upstream.clone())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_are_removed_with_those_connection_names() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("x-secret, close"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("proxy-connection", HeaderValue::from_static("keep-alive"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        h.insert("accept", HeaderValue::from_static("*/*"));
        strip_hop_by_hop(&mut h);
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, vec!["accept"]);
        add_via(&mut h, http::Version::HTTP_11);
        assert_eq!(h.get("via").unwrap(), "1.1 tapir");
    }

    #[test]
    fn allow_list_checks_network_and_ports() {
        let allow = Allow {
            net: IpCidr::new(IpAddress::v4(10, 7, 0, 0), 24),
            ports: Some(80..=443),
        };
        assert!(allow.permits(IpAddress::v4(10, 7, 0, 1), 443));
        assert!(!allow.permits(IpAddress::v4(10, 7, 0, 1), 22));
        assert!(!allow.permits(IpAddress::v4(10, 8, 0, 1), 80));
        assert_eq!(allow.to_string(), "10.7.0.0/24:80-443");
    }
}
