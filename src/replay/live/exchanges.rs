//! HTTP exchanges in reassembled byte streams, sans-IO: the requests a client stream holds
//! and the responses a server stream holds, for HTTP/1.x (httparse, Content-Length and
//! chunked framing) and HTTP/2 with prior knowledge (frames, HPACK-decoded HEADERS).
//!
//! Parsing is lenient where a capture may be incomplete — a stream that ends inside a
//! message yields that message marked incomplete — and never panics.

use bytes::BytesMut;

use super::hpack;
use crate::http::h1::ChunkedDecoder;

/// The HTTP/2 connection preface a prior-knowledge client sends first.
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Which protocol a client stream speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.0 or HTTP/1.1.
    Http1,
    /// HTTP/2 with prior knowledge (h2c).
    H2c,
    /// Nothing recognisable (or no bytes at all).
    Unknown,
}

impl Protocol {
    /// Guesses the protocol from the first bytes of the client stream.
    pub fn detect(client: &[u8]) -> Protocol {
        let n = client.len().min(H2_PREFACE.len());
        if n > 0 && client.get(..n) == H2_PREFACE.get(..n) {
            return Protocol::H2c;
        }
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(client) {
            Ok(_) if req.method.is_some() => Protocol::Http1,
            Err(httparse::Error::TooManyHeaders) => Protocol::Http1,
            _ => Protocol::Unknown,
        }
    }
}

/// A request found in a client stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestInfo {
    /// The method.
    pub method: String,
    /// The request target.
    pub path: String,
    /// Body bytes.
    pub body_len: u64,
    /// The HTTP/2 stream, if HTTP/2.
    pub stream: Option<u32>,
}

/// How a response body was delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body by the rules (HEAD, 1xx, 204, 304).
    NoBody,
    /// Content-Length (for HTTP/2: a content-length header was present).
    Length,
    /// Chunked transfer coding.
    Chunked,
    /// Until the connection closed (HTTP/1), or DATA frames without content-length (HTTP/2).
    Eof,
}

/// A response found in a server stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseInfo {
    /// The final status code.
    pub status: u16,
    /// Body bytes received.
    pub body_len: u64,
    /// How the body was delimited.
    pub framing: Framing,
    /// True when the whole response is in the stream.
    pub complete: bool,
    /// The HTTP/2 stream, if HTTP/2.
    pub stream: Option<u32>,
}

/// Requests and responses of one connection, paired in order (HTTP/1) or by stream id
/// (HTTP/2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    /// The protocol of the client stream.
    pub protocol: Protocol,
    /// The requests, in the order sent (HTTP/2: by stream id).
    pub requests: Vec<RequestInfo>,
    /// The responses; `responses[i]` answers `requests[i]` (fewer when unanswered).
    pub responses: Vec<Option<ResponseInfo>>,
    /// What could not be parsed.
    pub notes: Vec<String>,
}

/// Parses both streams of a connection. `server_closed` says the server's stream ended
/// with a FIN (so a body delimited by the close is complete).
pub fn conversation(client: &[u8], server: &[u8], server_closed: bool) -> Conversation {
    match Protocol::detect(client) {
        Protocol::H2c => h2_conversation(client, server),
        Protocol::Http1 => h1_conversation(client, server, server_closed),
        Protocol::Unknown => Conversation {
            protocol: Protocol::Unknown,
            requests: Vec::new(),
            responses: Vec::new(),
            notes: if client.is_empty() {
                Vec::new()
            } else {
                vec![
                    "the client's bytes are neither HTTP/1.x nor HTTP/2 with prior knowledge"
                        .into(),
                ]
            },
        },
    }
}

/// Where a parsed body ends.
enum BodyEnd {
    /// Complete, `consumed` bytes of input used, `len` body bytes.
    Done { consumed: usize, len: u64 },
    /// The input ends first with `len` body bytes.
    Partial { len: u64 },
    /// The framing is broken.
    Broken(String),
}

fn chunked_body(input: &[u8]) -> BodyEnd {
    let mut decoder = ChunkedDecoder::new(u64::MAX, 1 << 20);
    let mut sink = BytesMut::new();
    let mut consumed = 0;
    loop {
        let rest = input.get(consumed..).unwrap_or(&[]);
        match decoder.decode(rest, &mut sink, 1 << 16) {
            Ok(n) => {
                consumed += n;
                sink.clear();
                if decoder.is_done() {
                    return BodyEnd::Done {
                        consumed,
                        len: decoder.total(),
                    };
                }
                if n == 0 || consumed >= input.len() {
                    return BodyEnd::Partial {
                        len: decoder.total(),
                    };
                }
            }
            Err(e) => return BodyEnd::Broken(e.to_string()),
        }
    }
}

fn length_body(input: &[u8], len: u64) -> BodyEnd {
    let have = input.len() as u64;
    if have >= len {
        BodyEnd::Done {
            consumed: usize::try_from(len).unwrap_or(input.len()),
            len,
        }
    } else {
        BodyEnd::Partial { len: have }
    }
}

/// Framing headers of an HTTP/1 message.
fn framing_of(headers: &[httparse::Header<'_>]) -> Result<(bool, Option<u64>), String> {
    let mut chunked = false;
    let mut length = None;
    for h in headers {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            let value = String::from_utf8_lossy(h.value).to_ascii_lowercase();
            chunked = value
                .split(',')
                .next_back()
                .is_some_and(|v| v.trim() == "chunked");
        } else if h.name.eq_ignore_ascii_case("content-length") {
            let value = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    format!("bad Content-Length '{}'", String::from_utf8_lossy(h.value))
                })?;
            length = Some(value);
        }
    }
    Ok((chunked, length))
}

fn h1_requests(client: &[u8], notes: &mut Vec<String>) -> Vec<RequestInfo> {
    let mut requests = Vec::new();
    let mut at = 0;
    while at < client.len() {
        let input = client.get(at..).unwrap_or(&[]);
        let mut headers = [httparse::EMPTY_HEADER; 128];
        let mut req = httparse::Request::new(&mut headers);
        let head_len = match req.parse(input) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => {
                notes.push(format!(
                    "client stream ends inside a request head ({} bytes)",
                    input.len()
                ));
                break;
            }
            Err(e) => {
                notes.push(format!(
                    "request {}: unparsable head: {e}",
                    requests.len() + 1
                ));
                break;
            }
        };
        let method = req.method.unwrap_or("").to_string();
        let path = req.path.unwrap_or("").to_string();
        let upgrade = req
            .headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case("upgrade"));
        let body = input.get(head_len..).unwrap_or(&[]);
        let end = match framing_of(req.headers) {
            Err(e) => BodyEnd::Broken(e),
            Ok((true, _)) => chunked_body(body),
            Ok((false, Some(len))) => length_body(body, len),
            Ok((false, None)) => BodyEnd::Done {
                consumed: 0,
                len: 0,
            },
        };
        match end {
            BodyEnd::Done { consumed, len } => {
                requests.push(RequestInfo {
                    method,
                    path,
                    body_len: len,
                    stream: None,
                });
                at += head_len + consumed;
            }
            BodyEnd::Partial { len } => {
                notes.push(format!(
                    "request {} ({method} {path}): the client stream ends inside its body ({len} bytes)",
                    requests.len() + 1
                ));
                requests.push(RequestInfo {
                    method,
                    path,
                    body_len: len,
                    stream: None,
                });
                break;
            }
            BodyEnd::Broken(why) => {
                notes.push(format!(
                    "request {} ({method} {path}): {why}",
                    requests.len() + 1
                ));
                break;
            }
        }
        if upgrade {
            notes.push(format!(
                "request {}: asks for a protocol upgrade; bytes after it are not parsed",
                requests.len()
            ));
            break;
        }
    }
    requests
}

fn h1_conversation(client: &[u8], server: &[u8], server_closed: bool) -> Conversation {
    let mut notes = Vec::new();
    let requests = h1_requests(client, &mut notes);
    let mut responses = Vec::new();
    let mut at = 0;
    let mut index = 0;
    while index < requests.len() && at < server.len() {
        let input = server.get(at..).unwrap_or(&[]);
        let mut headers = [httparse::EMPTY_HEADER; 128];
        let mut res = httparse::Response::new(&mut headers);
        let head_len = match res.parse(input) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => {
                notes.push(format!(
                    "response {}: the server stream ends inside its head",
                    index + 1
                ));
                break;
            }
            Err(e) => {
                notes.push(format!("response {}: unparsable head: {e}", index + 1));
                break;
            }
        };
        let status = res.code.unwrap_or(0);
        at += head_len;
        if (100..200).contains(&status) && status != 101 {
            continue; // interim (100 Continue, 103 Early Hints)
        }
        let head = requests.get(index).is_some_and(|r| r.method == "HEAD");
        let body = server.get(at..).unwrap_or(&[]);
        let (framing, end) = if head || status == 204 || status == 304 || status == 101 {
            (
                Framing::NoBody,
                BodyEnd::Done {
                    consumed: 0,
                    len: 0,
                },
            )
        } else {
            match framing_of(res.headers) {
                Err(e) => (Framing::Length, BodyEnd::Broken(e)),
                Ok((true, _)) => (Framing::Chunked, chunked_body(body)),
                Ok((false, Some(len))) => (Framing::Length, length_body(body, len)),
                Ok((false, None)) => {
                    let len = body.len() as u64;
                    let end = if server_closed {
                        BodyEnd::Done {
                            consumed: body.len(),
                            len,
                        }
                    } else {
                        BodyEnd::Partial { len }
                    };
                    (Framing::Eof, end)
                }
            }
        };
        let stop = match end {
            BodyEnd::Done { consumed, len } => {
                responses.push(Some(ResponseInfo {
                    status,
                    body_len: len,
                    framing,
                    complete: true,
                    stream: None,
                }));
                at += consumed;
                false
            }
            BodyEnd::Partial { len } => {
                responses.push(Some(ResponseInfo {
                    status,
                    body_len: len,
                    framing,
                    complete: false,
                    stream: None,
                }));
                true
            }
            BodyEnd::Broken(why) => {
                notes.push(format!("response {}: {why}", index + 1));
                true
            }
        };
        index += 1;
        if stop || status == 101 {
            break;
        }
    }
    Conversation {
        protocol: Protocol::Http1,
        requests,
        responses,
        notes,
    }
}

/// One HTTP/2 frame.
struct Frame<'a> {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: &'a [u8],
}

const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const PUSH_PROMISE: u8 = 5;
const CONTINUATION: u8 = 9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

/// Splits `input` into complete frames; the second value is the number of trailing bytes
/// that do not form a whole frame.
fn frames(input: &[u8]) -> (Vec<Frame<'_>>, usize) {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(head) = input.get(at..at + 9) {
        let len = (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let Some(payload) = input.get(at + 9..at + 9 + len) else {
            break;
        };
        out.push(Frame {
            kind: head[3],
            flags: head[4],
            stream,
            payload,
        });
        at += 9 + len;
    }
    (out, input.len() - at)
}

/// The header block fragment of a HEADERS or PUSH_PROMISE frame (padding and priority
/// removed).
fn fragment<'a>(frame: &Frame<'a>) -> Option<&'a [u8]> {
    let mut p = frame.payload;
    let mut pad = 0usize;
    if frame.flags & PADDED != 0 {
        pad = usize::from(*p.first()?);
        p = p.get(1..)?;
    }
    if frame.kind == HEADERS && frame.flags & PRIORITY != 0 {
        p = p.get(5..)?;
    }
    if frame.kind == PUSH_PROMISE {
        p = p.get(4..)?;
    }
    p.get(..p.len().checked_sub(pad)?)
}

/// What one side's frames said about each stream.
#[derive(Debug, Default, Clone)]
struct StreamState {
    /// Header blocks in order (each a list of fields).
    headers: Vec<Vec<hpack::Field>>,
    data: u64,
    ended: bool,
    reset: bool,
}

/// Walks one side's frames: header blocks decoded, DATA counted, per stream.
fn h2_side(
    input: &[u8],
    side: &str,
    notes: &mut Vec<String>,
) -> std::collections::BTreeMap<u32, StreamState> {
    let mut streams: std::collections::BTreeMap<u32, StreamState> = Default::default();
    let mut decoder = hpack::Decoder::new();
    let (frames, rest) = frames(input);
    if rest > 0 {
        notes.push(format!(
            "{side}: the stream ends inside a frame ({rest} bytes)"
        ));
    }
    // A header block being collected: (stream, bytes, end-stream flag, is push promise).
    let mut block: Option<(u32, Vec<u8>, bool, bool)> = None;
    for frame in frames {
        match frame.kind {
            HEADERS | PUSH_PROMISE => {
                let Some(fragment) = fragment(&frame) else {
                    notes.push(format!(
                        "{side}: bad HEADERS frame on stream {}",
                        frame.stream
                    ));
                    return streams;
                };
                block = Some((
                    frame.stream,
                    fragment.to_vec(),
                    frame.kind == HEADERS && frame.flags & END_STREAM != 0,
                    frame.kind == PUSH_PROMISE,
                ));
            }
            CONTINUATION => match block.as_mut() {
                Some((_, bytes, _, _)) => bytes.extend_from_slice(frame.payload),
                None => {
                    notes.push(format!("{side}: CONTINUATION without HEADERS"));
                    return streams;
                }
            },
            DATA => {
                let s = streams.entry(frame.stream).or_default();
                let mut len = frame.payload.len();
                if frame.flags & PADDED != 0 {
                    let pad = frame.payload.first().map_or(0, |&p| usize::from(p) + 1);
                    len = len.saturating_sub(pad);
                }
                s.data += len as u64;
                if frame.flags & END_STREAM != 0 {
                    s.ended = true;
                }
            }
            RST_STREAM => streams.entry(frame.stream).or_default().reset = true,
            _ => {}
        }
        if matches!(frame.kind, HEADERS | PUSH_PROMISE | CONTINUATION)
            && frame.flags & END_HEADERS != 0
        {
            if let Some((stream, bytes, end, push)) = block.take() {
                match decoder.decode(&bytes) {
                    Ok(fields) => {
                        if !push {
                            let s = streams.entry(stream).or_default();
                            s.headers.push(fields);
                            s.ended |= end;
                        }
                    }
                    Err(e) => {
                        notes.push(format!("{side}: header block of stream {stream}: {e}"));
                        return streams;
                    }
                }
            }
        }
    }
    streams
}

fn field<'a>(fields: &'a [hpack::Field], name: &str) -> Option<&'a [u8]> {
    fields
        .iter()
        .find(|(n, _)| n.as_slice() == name.as_bytes())
        .map(|(_, v)| v.as_slice())
}

fn h2_conversation(client: &[u8], server: &[u8]) -> Conversation {
    let mut notes = Vec::new();
    let after = client.get(H2_PREFACE.len()..).unwrap_or(&[]);
    let sent = h2_side(after, "client", &mut notes);
    let answered = h2_side(server, "server", &mut notes);
    let mut requests = Vec::new();
    let mut responses = Vec::new();
    for (&id, s) in sent
        .iter()
        .filter(|(&id, s)| id != 0 && !s.headers.is_empty())
    {
        let first = s.headers.first().map(Vec::as_slice).unwrap_or(&[]);
        let text = |name| String::from_utf8_lossy(field(first, name).unwrap_or(b"")).into_owned();
        requests.push(RequestInfo {
            method: text(":method"),
            path: text(":path"),
            body_len: s.data,
            stream: Some(id),
        });
        let response = answered.get(&id).and_then(|r| {
            // The final response head: the first whose status is not 1xx.
            let head = r.headers.iter().find(|h| {
                field(h, ":status")
                    .and_then(|v| std::str::from_utf8(v).ok())
                    .and_then(|v| v.parse::<u16>().ok())
                    .is_some_and(|st| st >= 200)
            })?;
            let status = field(head, ":status")
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|v| v.parse::<u16>().ok())
                .unwrap_or(0);
            let framing = if text(":method") == "HEAD" || status == 204 || status == 304 {
                Framing::NoBody
            } else if field(head, "content-length").is_some() {
                Framing::Length
            } else {
                Framing::Eof
            };
            Some(ResponseInfo {
                status,
                body_len: r.data,
                framing,
                complete: r.ended && !r.reset,
                stream: Some(id),
            })
        });
        responses.push(response);
    }
    Conversation {
        protocol: Protocol::H2c,
        requests,
        responses,
        notes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http1_keep_alive_with_chunked_and_head() {
        let client = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nHEAD /c HTTP/1.1\r\n\r\n";
        let server = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhiHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 405 No\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n";
        let c = conversation(client, server, false);
        assert_eq!(c.protocol, Protocol::Http1);
        assert_eq!(c.requests.len(), 3);
        assert_eq!(c.requests[1].body_len, 3);
        let r: Vec<_> = c
            .responses
            .iter()
            .flatten()
            .map(|r| (r.status, r.body_len, r.complete))
            .collect();
        assert_eq!(r, vec![(200, 2, true), (405, 1, true), (200, 0, true)]);
    }

    #[test]
    fn truncated_streams_give_partial_results() {
        let c = conversation(
            b"GET / HTTP/1.1\r\n\r\nGET /x HT",
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
            false,
        );
        assert_eq!(c.requests.len(), 1);
        assert_eq!(c.responses[0].as_ref().map(|r| r.complete), Some(false));
        assert!(!c.notes.is_empty());
    }

    #[test]
    fn h2_frames_and_garbage() {
        assert_eq!(Protocol::detect(H2_PREFACE), Protocol::H2c);
        assert_eq!(Protocol::detect(b"\x16\x03\x01"), Protocol::Unknown);
        // A GET / on stream 1 (static indexes), answered 200 with 5 bytes.
        let mut client = H2_PREFACE.to_vec();
        client.extend_from_slice(&[
            0,
            0,
            3,
            HEADERS,
            END_HEADERS | END_STREAM,
            0,
            0,
            0,
            1,
            0x82,
            0x86,
            0x84,
        ]);
        let mut server = vec![0, 0, 1, HEADERS, END_HEADERS, 0, 0, 0, 1, 0x88];
        server.extend_from_slice(&[0, 0, 5, DATA, END_STREAM, 0, 0, 0, 1]);
        server.extend_from_slice(b"hello");
        let c = conversation(&client, &server, false);
        assert_eq!(c.requests[0].path, "/");
        let r = c.responses[0].as_ref().unwrap();
        assert_eq!((r.status, r.body_len, r.complete), (200, 5, true));
        // Garbage after the preface is a note, not a panic.
        let mut junk = H2_PREFACE.to_vec();
        junk.extend_from_slice(&[0, 0, 2, HEADERS, END_HEADERS, 0, 0, 0, 1, 0xff, 0xff]);
        let c = conversation(&junk, &[1, 2, 3], false);
        assert!(c.requests.is_empty());
        assert!(!c.notes.is_empty());
    }
}
