//! HTTP/2 by `Upgrade: h2c` on a cleartext HTTP/1.1 connection (RFC 7540 §3.2; RFC 9113
//! dropped it, curl `--http2` and `nghttp -u` still use it): the server answers `101
//! Switching Protocols`, the client sends the HTTP/2 preface, and the upgraded request is
//! stream 1, answered over HTTP/2.
//!
//! The `h2` crate has no way in for a stream it did not read, so the request is handed to it
//! as the HEADERS frame the client would have sent, put into the client's byte stream right
//! after its first SETTINGS frame ([`Splice`]). Its header block uses only literals without
//! indexing, so the HPACK state of both ends stays as the client's own frames leave it.

use http::header::{CONNECTION, HOST, UPGRADE};
use http::{HeaderValue, Response, StatusCode};

use super::Body;
use crate::http::H2_PREFACE;

/// Largest header block put into one frame (the default SETTINGS_MAX_FRAME_SIZE).
const MAX_BLOCK: usize = 16_384;

/// Whether the request asks for h2c (`Upgrade: h2c`, `Connection: Upgrade, HTTP2-Settings`
/// and one `HTTP2-Settings` header); if so, the request as a HEADERS frame on stream 1 with
/// END_STREAM (only bodiless requests are upgraded).
pub(crate) fn upgrade_frame(parts: &http::request::Parts) -> Option<Vec<u8>> {
    let has_token = |name: http::header::HeaderName, token: &str| {
        parts.headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    if !has_token(UPGRADE, "h2c")
        || !has_token(CONNECTION, "upgrade")
        || !has_token(CONNECTION, "http2-settings")
        || parts.headers.get_all("http2-settings").iter().count() != 1
        || parts.method == http::Method::CONNECT
    {
        return None;
    }
    let authority = parts.headers.get(HOST)?.to_str().ok()?;
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut block = Vec::new();
    literal(&mut block, b":method", parts.method.as_str().as_bytes());
    literal(&mut block, b":scheme", b"http");
    literal(&mut block, b":authority", authority.as_bytes());
    literal(&mut block, b":path", path.as_bytes());
    // Connection-specific fields are not HTTP/2 (RFC 9113 §8.2.2); Host became :authority.
    let connection_specific = [
        "connection",
        "upgrade",
        "http2-settings",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "host",
        "te",
    ];
    for (name, value) in &parts.headers {
        if !connection_specific.contains(&name.as_str()) {
            literal(&mut block, name.as_str().as_bytes(), value.as_bytes());
        }
    }
    if block.len() > MAX_BLOCK {
        return None;
    }
    let len = u32::try_from(block.len()).ok()?.to_be_bytes();
    // HEADERS (type 1), END_STREAM | END_HEADERS, stream 1.
    let mut frame = vec![len[1], len[2], len[3], 1, 0x5, 0, 0, 0, 1];
    frame.extend_from_slice(&block);
    Some(frame)
}

/// The `101` that switches the connection to HTTP/2.
pub(crate) fn switching() -> Response<Body> {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(UPGRADE, HeaderValue::from_static("h2c"));
    response
}

/// An HPACK literal header field without indexing, new name (RFC 7541 §6.2.2), no Huffman.
fn literal(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.push(0);
    string(out, name);
    string(out, value);
}

/// An HPACK string literal (7-bit prefix length, RFC 7541 §5.1, §5.2).
fn string(out: &mut Vec<u8>, s: &[u8]) {
    let mut n = s.len();
    if n < 127 {
        out.push(n as u8);
    } else {
        out.push(127);
        n -= 127;
        while n >= 128 {
            out.push((n % 128) as u8 | 0x80);
            n /= 128;
        }
        out.push(n as u8);
    }
    out.extend_from_slice(s);
}

/// Where the upgraded request's frame goes into the client's bytes: after the preface and
/// the client's first frame (its SETTINGS, which must come first).
#[derive(Debug)]
pub(crate) struct Splice {
    /// Client bytes passed so far.
    seen: usize,
    /// The first frame's header, as far as seen.
    head: Vec<u8>,
    /// The frame to put in.
    pub(crate) frame: Vec<u8>,
}

impl Splice {
    pub(crate) fn new(frame: Vec<u8>) -> Self {
        Splice {
            seen: 0,
            head: Vec::with_capacity(9),
            frame,
        }
    }

    /// Where the frame goes, once the first frame's header is known.
    fn boundary(&self) -> Option<usize> {
        match self.head[..] {
            [a, b, c, ..] if self.head.len() == 9 => {
                Some(H2_PREFACE.len() + 9 + u32::from_be_bytes([0, a, b, c]) as usize)
            }
            _ => None,
        }
    }

    /// How many of `data` (the next client bytes) may pass before the frame.
    pub(crate) fn allow(&self, data: &[u8]) -> usize {
        match self.boundary() {
            Some(at) => (at - self.seen).min(data.len()),
            // Up to the end of the first frame's header; then we know more.
            None => (H2_PREFACE.len() + 9 - self.seen).min(data.len()),
        }
    }

    /// Notes that `data` passed.
    pub(crate) fn advance(&mut self, data: &[u8]) {
        for &byte in data {
            if self.seen >= H2_PREFACE.len() && self.head.len() < 9 {
                self.head.push(byte);
            }
            self.seen += 1;
        }
    }

    /// True when the frame goes in now.
    pub(crate) fn due(&self) -> bool {
        self.boundary() == Some(self.seen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upgrade_request_becomes_a_headers_frame() {
        let request = http::Request::get("/bytes/3?x=1")
            .header("host", "10.7.0.2")
            .header("connection", "Upgrade, HTTP2-Settings")
            .header("upgrade", "h2c")
            .header("http2-settings", "AAMAAABkAAQCAAAAAAIAAAAA")
            .header("user-agent", "curl")
            .body(())
            .unwrap();
        let (parts, ()) = request.into_parts();
        let frame = upgrade_frame(&parts).unwrap();
        assert_eq!(&frame[3..9], &[1, 0x5, 0, 0, 0, 1]);
        let len = u32::from_be_bytes([0, frame[0], frame[1], frame[2]]) as usize;
        assert_eq!(len, frame.len() - 9);
        let block = &frame[9..];
        let text = String::from_utf8_lossy(block);
        for needle in [
            ":method",
            "GET",
            ":authority",
            "10.7.0.2",
            ":path",
            "/bytes/3?x=1",
            "user-agent",
        ] {
            assert!(text.contains(needle), "{needle} in {text}");
        }
        for gone in ["http2-settings", "upgrade", "connection"] {
            assert!(!text.contains(gone), "{gone} in {text}");
        }
        // Without HTTP2-Settings in Connection: no upgrade.
        let mut parts = parts;
        parts
            .headers
            .insert(CONNECTION, HeaderValue::from_static("Upgrade"));
        assert!(upgrade_frame(&parts).is_none());
    }

    #[test]
    fn the_frame_goes_in_after_the_first_settings_frame() {
        let mut client = H2_PREFACE.to_vec();
        client.extend_from_slice(&[0, 0, 6, 4, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 100]);
        client.extend_from_slice(&[0, 0, 4, 8, 0, 0, 0, 0, 0, 0, 1, 0, 0]);
        // In any pieces, the frame goes in exactly after the SETTINGS frame (39 bytes).
        for piece in [1, 2, 7, 24, 33, 100] {
            let mut splice = Splice::new(vec![0xff]);
            let mut out = Vec::new();
            let mut rest = &client[..];
            let mut inserted = false;
            while !rest.is_empty() {
                let n = if inserted {
                    rest.len().min(piece)
                } else {
                    splice.allow(&rest[..rest.len().min(piece)])
                };
                out.extend_from_slice(&rest[..n]);
                if !inserted {
                    splice.advance(&rest[..n]);
                    if splice.due() {
                        out.extend_from_slice(&splice.frame);
                        inserted = true;
                    }
                }
                rest = &rest[n..];
            }
            assert!(inserted);
            assert_eq!(out[39], 0xff, "piece {piece}");
            assert_eq!(out.len(), client.len() + 1);
        }
    }
}
