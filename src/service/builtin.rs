//! The default handler of `tapir serve`: a small page, an echo, a byte source for
//! benchmarks and the server's counters.
//!
//! - `/`: an HTML page naming the protocol and the connection's peer.
//! - `/echo`: the request body, streamed back as it arrives.
//! - `/sink` (POST): `204 No Content`; the body is read and thrown away (for upload tests).
//! - `/bytes/N`: N bytes, generated as they are sent (for throughput tests).
//! - `/stats`: counters as JSON.

use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};

use super::shared::{ServerStats, StatsHandle};
use super::{
    method_not_allowed, text_response, Body, BodyError, BodyStream, ConnInfo, RequestBody,
};

/// What `/bytes/N` repeats: byte `i` of every response is `PATTERN[i % PATTERN.len()]`.
pub const PATTERN: &[u8; 23] = b"tapir-bytes-0123456789\n";
/// The block `/bytes/N` cuts its chunks from: a whole number of patterns, about 64 KiB.
const BLOCK: usize = PATTERN.len() * 2849;

/// Largest N `/bytes/N` serves (1 TiB): a guard against typos, not a memory bound —
/// the bytes are generated as the client reads them.
pub const MAX_BYTES: u64 = 1 << 40;

/// The built-in handler.
#[derive(Debug, Clone)]
pub struct Builtin {
    stats: StatsHandle,
    block: Bytes,
}

impl Builtin {
    /// A handler reporting the counters behind `stats` at `/stats`.
    pub fn new(stats: StatsHandle) -> Self {
        // One pattern more than a block, so a chunk may start anywhere in the pattern.
        let block: Vec<u8> = (0..BLOCK + PATTERN.len())
            .map(|i| PATTERN[i % PATTERN.len()])
            .collect();
        Builtin {
            stats,
            block: Bytes::from(block),
        }
    }

    /// The methods the built-in pages take, for [`ServerConfig::methods`](super::ServerConfig)
    /// (the server answers `OPTIONS *` with them).
    pub const METHODS: [Method; 3] = [Method::GET, Method::HEAD, Method::POST];

    /// Answers one request.
    pub fn handle(&self, request: Request<RequestBody>, info: &ConnInfo) -> Response<Body> {
        if request.uri().path() == "/echo" {
            return echo(request);
        }
        let path = request.uri().path();
        let method = request.method();
        let read_only = method == Method::GET || method == Method::HEAD;
        match path {
            "/" if read_only => html(index_page(info)),
            // The body is dropped: the connection reads and discards what still arrives,
            // and the connection stays open for the next request.
            "/sink" if method == Method::POST => empty(StatusCode::NO_CONTENT),
            "/stats" if read_only => json(stats_json(&self.stats.get())),
            p if p.starts_with("/bytes/") && read_only => match p["/bytes/".len()..].parse::<u64>()
            {
                Ok(n) if n <= MAX_BYTES => {
                    let mut response = Response::new(Body::stream(Repeat {
                        block: self.block.clone(),
                        offset: 0,
                        remaining: n,
                    }));
                    response.headers_mut().insert(
                        CONTENT_TYPE,
                        HeaderValue::from_static("application/octet-stream"),
                    );
                    response
                }
                _ => text_response(
                    StatusCode::BAD_REQUEST,
                    format!("/bytes/N takes a byte count from 0 to {MAX_BYTES}\n"),
                ),
            },
            "/" | "/stats" => method_not_allowed(method, "GET, HEAD"),
            "/sink" => method_not_allowed(method, "POST"),
            p if p.starts_with("/bytes/") => method_not_allowed(method, "GET, HEAD"),
            _ => text_response(StatusCode::NOT_FOUND, format!("no such page: {path}\n")),
        }
    }
}

fn echo(request: Request<RequestBody>) -> Response<Body> {
    let content_type = request.headers().get(CONTENT_TYPE).cloned();
    let mut response = Response::new(Body::from(request.into_body()));
    response.headers_mut().insert(
        CONTENT_TYPE,
        content_type.unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    response
}

fn empty(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = status;
    r
}

fn html(page: String) -> Response<Body> {
    let mut r = Response::new(Body::from(page));
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

fn json(text: String) -> Response<Body> {
    let mut r = Response::new(Body::from(text));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn index_page(info: &ConnInfo) -> String {
    let tls = match &info.tls {
        Some(tls) => format!(
            "<p>TLS: {} with {}{}</p>\n",
            tls.version,
            tls.cipher,
            tls.sni
                .as_deref()
                .map(|s| format!(", server name {}", escape(s)))
                .unwrap_or_default()
        ),
        None => String::new(),
    };
    format!(
        "<!doctype html>\n<html><head><title>tapir</title></head><body>\n\
         <h1>tapir</h1>\n<p>A userspace TCP/IP stack answered you over {protocol}.</p>\n\
         <p>You are {peer}; this is {local}.</p>\n{tls}\
         <ul><li><a href=\"/stats\">/stats</a></li><li>/echo (POST a body)</li>\
         <li><a href=\"/bytes/1048576\">/bytes/N</a></li></ul>\n</body></html>\n",
        protocol = info.protocol,
        peer = info.peer_addr(),
        local = info.local_addr(),
    )
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The `/stats` document: the counters under the names it shows, in the order it shows
/// them.
#[derive(Debug, serde::Serialize)]
struct StatsDocument {
    connections_open: u64,
    connections_total: u64,
    requests_http1: u64,
    requests_http2: u64,
    requests_rejected: u64,
    bytes_in: u64,
    bytes_out: u64,
    tunnels_total: u64,
    tunnels_open: u64,
    tcp_connections: usize,
    tcp_listening: usize,
    tcp_accepted: u64,
    tcp_closed: u64,
    tcp_memory: usize,
    tcp_congestion_control: &'static str,
    frames_in: u64,
    frames_out: u64,
    drops_malformed: u64,
    drops_bad_checksum: u64,
    drops_syn_backlog: u64,
    drops_rst_seq: u64,
    challenge_acks: u64,
    syn_cookies_sent: u64,
    syn_cookies_accepted: u64,
    syn_cookies_rejected: u64,
    handshake_timeouts: u64,
    handshake_unresolved: u64,
    handshake_resets: u64,
    close_timeouts: u64,
}

/// The counters as a JSON object (pretty-printed, one counter a line).
pub fn stats_json(s: &ServerStats) -> String {
    let document = StatsDocument {
        connections_open: s.connections_open,
        connections_total: s.connections_total,
        requests_http1: s.requests_http1,
        requests_http2: s.requests_http2,
        requests_rejected: s.rejected,
        bytes_in: s.bytes_in,
        bytes_out: s.bytes_out,
        tunnels_total: s.tunnels_total,
        tunnels_open: s.tunnels_open,
        tcp_connections: s.stack.connections,
        tcp_listening: s.stack.listening,
        tcp_accepted: s.stack.accepted,
        tcp_closed: s.stack.closed,
        tcp_memory: s.stack.tcp_memory,
        tcp_congestion_control: s.stack.congestion_control,
        frames_in: s.stack.rx_frames,
        frames_out: s.stack.tx_frames,
        drops_malformed: s.stack.rx_malformed,
        drops_bad_checksum: s.stack.rx_bad_checksum,
        drops_syn_backlog: s.stack.syn_dropped,
        drops_rst_seq: s.stack.rst_dropped,
        challenge_acks: s.stack.challenge_acks,
        syn_cookies_sent: s.stack.cookies_sent,
        syn_cookies_accepted: s.stack.cookies_accepted,
        syn_cookies_rejected: s.stack.cookies_rejected,
        handshake_timeouts: s.stack.handshake_timeouts,
        handshake_unresolved: s.stack.handshake_unresolved,
        handshake_resets: s.stack.handshake_resets,
        close_timeouts: s.stack.close_timeouts,
    };
    // Serializing a struct of integers cannot fail; an empty object would say so anyway.
    let mut json = serde_json::to_string_pretty(&document).unwrap_or_else(|_| "{}".into());
    json.push('\n');
    json
}

/// `remaining` bytes of the repeating pattern, cut from a block without copying.
struct Repeat {
    block: Bytes,
    /// Where in the pattern the next byte is.
    offset: usize,
    remaining: u64,
}

impl BodyStream for Repeat {
    fn poll_chunk(
        &mut self,
        _cx: &mut Context<'_>,
        max: usize,
    ) -> Poll<Option<Result<Bytes, BodyError>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let n = (self.remaining.min(max.max(1) as u64) as usize).min(BLOCK);
        let chunk = self.block.slice(self.offset..self.offset + n);
        self.offset = (self.offset + n) % PATTERN.len();
        self.remaining -= n as u64;
        Poll::Ready(Some(Ok(chunk)))
    }

    /// Copies the pattern straight into `buf` from the block, up to a block at a time.
    fn poll_fill(
        &mut self,
        _cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<Option<Result<usize, BodyError>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let n = self.remaining.min(buf.len() as u64) as usize;
        let mut done = 0;
        while done < n {
            let part = (n - done).min(BLOCK);
            let (Some(dest), Some(src)) = (
                buf.get_mut(done..done + part),
                self.block.get(self.offset..self.offset + part),
            ) else {
                break;
            };
            dest.copy_from_slice(src);
            self.offset = (self.offset + part) % PATTERN.len();
            done += part;
        }
        self.remaining -= done as u64;
        Poll::Ready(Some(Ok(done)))
    }

    fn len_hint(&self) -> Option<u64> {
        Some(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::Protocol;
    use smoltcp::wire::{IpAddress, IpEndpoint};

    fn answer(method: &str, target: &str) -> Response<Body> {
        let info = ConnInfo {
            protocol: Protocol::Http11,
            peer: IpEndpoint::new(IpAddress::v4(10, 7, 0, 1), 40000),
            local: IpEndpoint::new(IpAddress::v4(10, 7, 0, 2), 80),
            tls: None,
        };
        let request = Request::builder()
            .method(method)
            .uri(target)
            .body(RequestBody::empty())
            .unwrap();
        Builtin::new(StatsHandle::default()).handle(request, &info)
    }

    fn allow(r: &Response<Body>) -> Option<&str> {
        r.headers().get(http::header::ALLOW)?.to_str().ok()
    }

    #[test]
    fn unknown_methods_get_501_known_ones_405() {
        let r = answer("FOO", "/");
        assert_eq!(r.status(), StatusCode::NOT_IMPLEMENTED);
        assert_eq!(allow(&r), None);
        for method in ["PUT", "DELETE", "PATCH", "POST"] {
            let r = answer(method, "/stats");
            assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED, "{method}");
            assert_eq!(allow(&r), Some("GET, HEAD"));
        }
        assert_eq!(
            answer("BREW", "/bytes/1").status(),
            StatusCode::NOT_IMPLEMENTED
        );
        assert_eq!(answer("GET", "/nothing").status(), StatusCode::NOT_FOUND);
        let r = answer("GET", "/sink");
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(allow(&r), Some("POST"));
        assert_eq!(answer("POST", "/sink").status(), StatusCode::NO_CONTENT);
    }

    #[test]
    fn stats_are_a_json_object_of_counters() {
        let mut stats = ServerStats {
            connections_open: 3,
            rejected: 7,
            ..ServerStats::default()
        };
        stats.stack.tcp_memory = 65536;
        stats.stack.congestion_control = "bbr";
        let json: serde_json::Value = serde_json::from_str(&stats_json(&stats)).unwrap();
        let object = json.as_object().unwrap();
        assert_eq!(object.len(), 29);
        assert_eq!(json["tcp_congestion_control"], "bbr");
        assert_eq!(json["connections_open"], 3);
        assert_eq!(json["requests_rejected"], 7);
        assert_eq!(json["tcp_memory"], 65536);
        assert_eq!(json["close_timeouts"], 0);
        assert_eq!(json["handshake_resets"], 0);
    }

    #[test]
    fn ipv6_peers_are_shown_in_brackets() {
        let info = ConnInfo {
            protocol: Protocol::Http2,
            peer: IpEndpoint::new(IpAddress::v6(0xfd00, 7, 0, 0, 0, 0, 0, 1), 8000),
            local: IpEndpoint::new(IpAddress::v6(0xfd00, 7, 0, 0, 0, 0, 0, 2), 80),
            tls: None,
        };
        let page = index_page(&info);
        assert!(
            page.contains("You are [fd00:7::1]:8000; this is [fd00:7::2]:80."),
            "{page}"
        );
    }
}
