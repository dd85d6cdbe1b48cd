//! What every connection engine of a server shares (counters, `Date`/`Server` stamping, the
//! method policy): below the server and its HTTP/1.1 and HTTP/2 engines, which all use it.

use std::cell::{Ref, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use http::header::{HeaderValue, ALLOW, DATE, SERVER};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use smoltcp::time::Instant;

use super::{text_response, Body, Protocol, RECOGNIZED_METHODS};
use crate::http::h1::DefaultFields;
use crate::stack::StackStats;

/// Counters of a server, for `/stats` and logs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ServerStats {
    /// Connections open now.
    pub connections_open: u64,
    /// Connections accepted since start.
    pub connections_total: u64,
    /// HTTP/1.0 and HTTP/1.1 requests.
    pub requests_http1: u64,
    /// HTTP/2 requests.
    pub requests_http2: u64,
    /// Requests rejected by a protocol engine (4xx/5xx before the handler).
    pub rejected: u64,
    /// Bytes read from connections (plaintext).
    pub bytes_in: u64,
    /// Bytes written to connections (plaintext).
    pub bytes_out: u64,
    /// Connections and HTTP/2 streams handed to tunnels since start.
    pub tunnels_total: u64,
    /// Tunnels open now.
    pub tunnels_open: u64,
    /// The stack's counters as of the last turn.
    pub stack: StackStats,
}

impl ServerStats {
    /// A connection or HTTP/2 stream became a tunnel.
    pub(crate) fn tunnel_opened(&mut self) {
        self.tunnels_total += 1;
        self.tunnels_open += 1;
    }

    /// A tunnel ended.
    pub(crate) fn tunnel_closed(&mut self) {
        self.tunnels_open = self.tunnels_open.saturating_sub(1);
    }

    pub(crate) fn note_request(&mut self, protocol: Protocol) {
        match protocol {
            Protocol::Http10 | Protocol::Http11 => self.requests_http1 += 1,
            Protocol::Http2 => self.requests_http2 += 1,
        }
    }
}

/// A shareable view of a server's counters (the built-in `/stats` handler reads it).
#[derive(Debug, Clone, Default)]
pub struct StatsHandle(pub(crate) Rc<RefCell<ServerStats>>);

impl StatsHandle {
    /// The counters now.
    pub fn get(&self) -> ServerStats {
        *self.0.borrow()
    }
}

/// State every connection of a server shares.
pub(crate) struct Shared {
    pub(crate) stats: Rc<RefCell<ServerStats>>,
    server_header: Option<HeaderValue>,
    /// The second of the last `Date` and its value.
    date: RefCell<(i64, HeaderValue)>,
    /// `Date` and `Server` as the HTTP/1.1 engine writes them, and the second of the
    /// `Date` they hold: made again when `date` moves on, whoever moved it (the engines
    /// hold them by reference count: no per-request serialising).
    h1_fields: RefCell<(i64, Arc<DefaultFields>)>,
    /// [`ServerConfig::methods`](super::ServerConfig::methods), with OPTIONS.
    methods: Option<Vec<Method>>,
    /// Those methods as an `Allow` value.
    allow: HeaderValue,
}

impl Shared {
    /// The state for a server sending `server_header` and taking `methods` (see
    /// [`ServerConfig::methods`](super::ServerConfig::methods)), counting into `stats`.
    pub(crate) fn new(
        server_header: Option<&str>,
        methods: Option<Vec<Method>>,
        stats: StatsHandle,
    ) -> Self {
        let server_header = server_header.and_then(|s| HeaderValue::from_str(s).ok());
        let methods = methods.map(|mut methods| {
            if !methods.contains(&Method::OPTIONS) {
                methods.push(Method::OPTIONS);
            }
            methods
        });
        let allow = methods.as_deref().unwrap_or_default();
        let allow = allow
            .iter()
            .map(Method::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        // Method names are tokens, so always a valid header value.
        let allow = HeaderValue::from_str(&allow).unwrap_or(HeaderValue::from_static("OPTIONS"));
        Shared {
            stats: stats.0,
            server_header,
            date: RefCell::new((i64::MIN, HeaderValue::from_static(""))),
            h1_fields: RefCell::new((i64::MIN, Arc::default())),
            methods,
            allow,
        }
    }

    /// The server's own answer to `request` when it needs no handler: `OPTIONS *` and
    /// methods it does not recognize (see [`ServerConfig::methods`](super::ServerConfig::methods)).
    pub(crate) fn answer_itself<B>(&self, request: &Request<B>) -> Option<Response<Body>> {
        let methods = self.methods.as_ref()?;
        let method = request.method();
        if !RECOGNIZED_METHODS.contains(method) && !methods.contains(method) {
            return Some(text_response(
                StatusCode::NOT_IMPLEMENTED,
                format!("method {method} is not implemented\n"),
            ));
        }
        // `*` is the whole target in HTTP/1.1 and the `:path` in HTTP/2 (RFC 9113 §8.3.1).
        if method == Method::OPTIONS && request.uri().path() == "*" {
            let mut response = Response::new(Body::empty());
            *response.status_mut() = StatusCode::NO_CONTENT;
            response.headers_mut().insert(ALLOW, self.allow.clone());
            return Some(response);
        }
        None
    }

    /// Adds `Date` (from the stack's clock, so simulations are reproducible) and `Server`.
    pub(crate) fn stamp(&self, headers: &mut HeaderMap, now: Instant) {
        self.refresh_date(now);
        let date = self.date.borrow();
        if !headers.contains_key(DATE) {
            headers.insert(DATE, date.1.clone());
        }
        if let Some(server) = &self.server_header {
            if !headers.contains_key(SERVER) {
                headers.insert(SERVER, server.clone());
            }
        }
    }

    /// `Date` and `Server` of `now` for the HTTP/1.1 engine
    /// ([`ServerConn::set_default_fields`](crate::http::h1::ServerConn::set_default_fields)):
    /// the same value all through a second.
    pub(crate) fn h1_fields(&self, now: Instant) -> Ref<'_, Arc<DefaultFields>> {
        self.refresh_date(now);
        let date = self.date.borrow();
        if self.h1_fields.borrow().0 != date.0 {
            let server = self.server_header.as_ref().map(|s| (&SERVER, s));
            let fields = std::iter::once((&DATE, &date.1)).chain(server);
            *self.h1_fields.borrow_mut() = (date.0, Arc::new(DefaultFields::new(fields)));
        }
        Ref::map(self.h1_fields.borrow(), |(_, fields)| fields)
    }

    /// Makes `Date` the one of `now` if the second changed.
    fn refresh_date(&self, now: Instant) {
        let secs = now.secs();
        let mut date = self.date.borrow_mut();
        if date.0 == secs {
            return;
        }
        let when = std::time::UNIX_EPOCH
            + std::time::Duration::from_secs(u64::try_from(secs).unwrap_or(0));
        if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(when)) {
            *date = (secs, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The HTTP/1.1 fields carry the `Date` of their second, also when an HTTP/2 response
    /// (`stamp`) moved the date on first.
    #[test]
    fn h1_fields_follow_the_date_whoever_moved_it() {
        let shared = Shared::new(Some("tapir/t"), None, StatsHandle::default());
        let lines = |now| String::from_utf8(shared.h1_fields(now).lines().to_vec()).unwrap();
        let first = Instant::from_secs(1_000_000);
        let mut h2 = HeaderMap::new();
        shared.stamp(&mut h2, first);
        let date = h2[DATE].to_str().unwrap().to_owned();
        assert_eq!(lines(first), format!("date: {date}\r\nserver: tapir/t\r\n"));
        let next = first + smoltcp::time::Duration::from_secs(1);
        let mut h2 = HeaderMap::new();
        shared.stamp(&mut h2, next);
        let date = h2[DATE].to_str().unwrap().to_owned();
        assert!(lines(next).starts_with(&format!("date: {date}\r\n")));
    }
}
