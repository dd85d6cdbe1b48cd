//! Head parsing and validation (on top of `httparse`) and serialization: the rules every
//! head follows written once (line folding, httparse's verdicts, the version, field names
//! and values, persistence), then what only a request or only a response head needs.

use std::mem::MaybeUninit;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Uri, Version};

use super::chunked::is_tchar;
use super::{BodyFraming, H1Config, ProtocolError, RejectReason, ResponseFraming};

/// A request head that passed all validation.
#[derive(Debug)]
pub struct ParsedHead {
    /// The request head as an `http` type.
    pub request: http::Request<()>,
    /// How the request body is framed.
    pub framing: BodyFraming,
    /// Whether the client allows the connection to persist after this request.
    pub keep_alive: bool,
    /// Whether the client sent `Expect: 100-continue` (HTTP/1.1 only).
    pub expect_continue: bool,
    /// Whether the client accepts trailer fields (`TE: trailers`).
    pub accepts_trailers: bool,
    /// Whether the request has an `Upgrade` field.
    pub upgrade: bool,
}

/// Trims optional whitespace (SP / HTAB) at both ends.
pub(crate) fn trim_ows(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|&b| b != b' ' && b != b'\t');
    let end = v.iter().rposition(|&b| b != b' ' && b != b'\t');
    match (start, end) {
        (Some(s), Some(e)) => v.get(s..=e).unwrap_or(&[]),
        _ => &[],
    }
}

/// Iterates over the non-empty, OWS-trimmed elements of a comma list.
pub(crate) fn list_elements(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&b| b == b',')
        .map(trim_ows)
        .filter(|e| !e.is_empty())
}

/// Does `version` (bytes after the second SP of the request line) look like
/// a syntactically valid `HTTP/DIGIT.DIGIT`?
fn is_http_version_syntax(version: &[u8]) -> bool {
    matches!(version, [b'H', b'T', b'T', b'P', b'/', a, b'.', b]
        if a.is_ascii_digit() && b.is_ascii_digit())
}

/// Returns everything after the second SP of the request line of `buf`.
fn version_token(buf: &[u8]) -> &[u8] {
    let line_end = buf.iter().position(|&b| b == b'\r').unwrap_or(buf.len());
    let line = buf.get(..line_end).unwrap_or(&[]);
    line.splitn(3, |&b| b == b' ').nth(2).unwrap_or(&[])
}

/// A copy of `buf` with the version at `start` read as HTTP/1.1 when it is HTTP/1.2 or a
/// later 1.x: a recipient processes a higher minor version as the highest it speaks (RFC
/// 9110 §2.5), and httparse knows only 1.0 and 1.1, so the digit is rewritten in a copy.
fn as_http_1_1(buf: &[u8], start: usize) -> Option<Vec<u8>> {
    let version = buf.get(start..start.checked_add(8)?)?;
    if !matches!(
        version,
        [b'H', b'T', b'T', b'P', b'/', b'1', b'.', b'2'..=b'9']
    ) {
        return None;
    }
    let mut copy = buf.to_vec();
    *copy.get_mut(start + 7)? = b'1';
    Some(copy)
}

/// Rejects obsolete line folding (or whitespace before the first field line): a line
/// starting with SP / HTAB after the start line.
fn reject_obs_fold(buf: &[u8]) -> Result<(), ProtocolError> {
    if buf
        .windows(3)
        .any(|w| matches!(w, [b'\r', b'\n', b' ' | b'\t']))
    {
        return Err(ProtocolError::ObsFold);
    }
    Ok(())
}

/// httparse's verdict on a complete head as an error; `version` gives the start line's
/// version text (to tell a version we do not speak from a broken one; only looked at then).
fn parse_status<'a>(
    result: httparse::Result<usize>,
    version: impl FnOnce() -> &'a [u8],
    start_line: &'static str,
) -> Result<(), ProtocolError> {
    let error = match result {
        Ok(httparse::Status::Complete(_)) => return Ok(()),
        Ok(httparse::Status::Partial) => ProtocolError::MalformedHead("incomplete"),
        Err(httparse::Error::TooManyHeaders) => ProtocolError::TooManyHeaders,
        Err(httparse::Error::Version) if is_http_version_syntax(version()) => {
            ProtocolError::UnsupportedVersion
        }
        Err(httparse::Error::Version) => ProtocolError::MalformedHead("invalid HTTP version"),
        Err(httparse::Error::HeaderName) => ProtocolError::InvalidHeaderName,
        Err(httparse::Error::HeaderValue) => ProtocolError::InvalidHeaderValue,
        Err(httparse::Error::Token) => ProtocolError::MalformedHead("invalid token"),
        Err(httparse::Error::NewLine) => ProtocolError::MalformedHead("invalid line ending"),
        Err(httparse::Error::Status) => ProtocolError::MalformedHead(start_line),
    };
    Err(error)
}

/// The HTTP version httparse read.
fn http_version(minor: Option<u8>) -> Result<Version, ProtocolError> {
    match minor {
        Some(0) => Ok(Version::HTTP_10),
        Some(1) => Ok(Version::HTTP_11),
        _ => Err(ProtocolError::UnsupportedVersion),
    }
}

/// The header fields as a map (values OWS-trimmed), each shown to `note` on the way.
fn header_map<'a>(
    headers: &[httparse::Header<'a>],
    mut note: impl FnMut(&HeaderName, &'a [u8]),
) -> Result<HeaderMap, ProtocolError> {
    let mut map = HeaderMap::with_capacity(headers.len());
    for h in headers {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| ProtocolError::InvalidHeaderName)?;
        let trimmed = trim_ows(h.value);
        let value =
            HeaderValue::from_bytes(trimmed).map_err(|_| ProtocolError::InvalidHeaderValue)?;
        note(&name, trimmed);
        map.append(name, value);
    }
    Ok(map)
}

/// The persistence tokens of a message's `Connection` fields (RFC 9112 §9.3).
#[derive(Default)]
struct Persistence {
    close: bool,
    keep_alive: bool,
}

impl Persistence {
    /// Takes note of one `Connection` field's value.
    fn note(&mut self, value: &[u8]) {
        for t in list_elements(value) {
            self.close |= t.eq_ignore_ascii_case(b"close");
            self.keep_alive |= t.eq_ignore_ascii_case(b"keep-alive");
        }
    }

    /// Whether the sender lets the connection persist after this message.
    fn persists(&self, version: Version) -> bool {
        !self.close && (version == Version::HTTP_11 || self.keep_alive)
    }
}

/// Whether the sender lets the connection persist after this message (RFC 9112 §9.3).
fn persistent(map: &HeaderMap, version: Version) -> bool {
    let mut persistence = Persistence::default();
    for v in map.get_all(header::CONNECTION) {
        persistence.note(v.as_bytes());
    }
    persistence.persists(version)
}

/// The field names a head declares in `Trailer` (RFC 9110 §6.6.2), if it has that field.
pub(super) fn declared_trailers(headers: &HeaderMap) -> Option<Vec<HeaderName>> {
    let mut fields = headers.get_all(header::TRAILER).iter().peekable();
    fields.peek()?;
    let names = fields
        .flat_map(|v| list_elements(v.as_bytes()))
        .filter_map(|name| HeaderName::from_bytes(name).ok())
        .collect();
    Some(names)
}

/// Parses and validates a complete request head (`buf` ends with CRLFCRLF,
/// bare LFs were already rejected by the caller).
pub fn parse_request_head(buf: &[u8], config: &H1Config) -> Result<ParsedHead, RejectReason> {
    reject_obs_fold(buf)?;

    // The version is the request line's third token, at its end.
    let line_end = buf.iter().position(|&b| b == b'\r').unwrap_or(buf.len());
    if let Some(copy) = line_end
        .checked_sub(version_token(buf).len())
        .and_then(|start| as_http_1_1(buf, start))
    {
        return parse_request_head(&copy, config);
    }

    // Room for the fields of most requests on the stack; more (up to `max_headers`) in a
    // second parse (saves allocating and zeroing `max_headers` entries for every request).
    let max_headers = config.max_headers.max(1);
    let mut few = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; FEW_HEADERS];
    let mut many = Vec::new();
    let mut req = httparse::Request::new(&mut []);
    let parser = httparse::ParserConfig::default();
    let mut result = parser.parse_request_with_uninit_headers(
        &mut req,
        buf,
        &mut few[..max_headers.min(FEW_HEADERS)],
    );
    if max_headers > FEW_HEADERS && result == Err(httparse::Error::TooManyHeaders) {
        many.resize(max_headers, httparse::EMPTY_HEADER);
        req = httparse::Request::new(&mut many);
        result = parser.parse_request(&mut req, buf);
    }
    parse_status(result, || version_token(buf), "invalid request line")?;
    let version = http_version(req.version)?;
    let method_str = req.method.ok_or(RejectReason::InvalidMethod)?;
    let method =
        Method::from_bytes(method_str.as_bytes()).map_err(|_| RejectReason::InvalidMethod)?;
    let target = req.path.ok_or(RejectReason::InvalidTarget)?;
    if target.len() > config.max_uri_len {
        return Err(RejectReason::UriTooLong);
    }
    let uri = parse_target(&method, target)?;

    let mut fields = RequestFields::default();
    let map = header_map(req.headers, |name, value| fields.note(name, value))?;

    // Host (RFC 9112 §3.2).
    match fields.hosts {
        0 if version == Version::HTTP_11 => return Err(RejectReason::MissingHost),
        0 => {}
        1 if !fields.host.is_empty() && fields.host.parse_authority().is_none() => {
            return Err(RejectReason::InvalidHost);
        }
        1 => {}
        _ => return Err(RejectReason::MultipleHost),
    }

    // Framing (RFC 9112 §6).
    let content_length = match fields.content_lengths {
        0 => None,
        1 => Some(parse_content_length(fields.content_length)?),
        _ => return Err(RejectReason::DuplicateContentLength),
    };
    let framing = if fields.transfer_encoding {
        if version == Version::HTTP_10 {
            return Err(RejectReason::TransferEncodingInHttp10);
        }
        if content_length.is_some() {
            return Err(RejectReason::ContentLengthWithTransferEncoding);
        }
        // Exactly one coding, and it is `chunked` (applied once, final).
        if fields.other_codings || fields.codings != 1 {
            return Err(RejectReason::UnsupportedTransferEncoding);
        }
        BodyFraming::Chunked
    } else {
        match content_length {
            Some(n) if n > config.max_body_size => return Err(RejectReason::BodyTooLarge),
            Some(n) => BodyFraming::Length(n),
            None => BodyFraming::None,
        }
    };

    let keep_alive = fields.connection.persists(version);
    let expect_continue = version == Version::HTTP_11 && fields.expect_continue;
    let mut request = http::Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = version;
    *request.headers_mut() = map;
    Ok(ParsedHead {
        request,
        framing,
        keep_alive,
        expect_continue,
        accepts_trailers: fields.accepts_trailers,
        upgrade: fields.upgrade,
    })
}

/// Header fields of a request head httparse reads into an array on the stack.
const FEW_HEADERS: usize = 32;

/// What a request's fields say about its framing and its connection, gathered in the pass
/// that builds its map (one lookup per field name in the map would hash every name again).
#[derive(Default)]
struct RequestFields<'a> {
    /// `Host` fields, and the last one's value.
    hosts: usize,
    host: &'a [u8],
    /// `Content-Length` fields, and the last one's value.
    content_lengths: usize,
    content_length: &'a [u8],
    /// A `Transfer-Encoding` field came; its codings, and whether one is not `chunked`.
    transfer_encoding: bool,
    codings: usize,
    other_codings: bool,
    /// What `Connection` says about persistence.
    connection: Persistence,
    /// `Expect: 100-continue`.
    expect_continue: bool,
    /// `TE` lists `trailers` (RFC 9110 §10.1.4).
    accepts_trailers: bool,
    /// An `Upgrade` field came.
    upgrade: bool,
}

impl<'a> RequestFields<'a> {
    /// Takes note of one field (its value OWS-trimmed).
    fn note(&mut self, name: &HeaderName, value: &'a [u8]) {
        if name == header::HOST {
            self.hosts += 1;
            self.host = value;
        } else if name == header::CONTENT_LENGTH {
            self.content_lengths += 1;
            self.content_length = value;
        } else if name == header::TRANSFER_ENCODING {
            self.transfer_encoding = true;
            for coding in list_elements(value) {
                self.codings += 1;
                self.other_codings |= !coding.eq_ignore_ascii_case(b"chunked");
            }
        } else if name == header::CONNECTION {
            self.connection.note(value);
        } else if name == header::EXPECT {
            self.expect_continue |= value.eq_ignore_ascii_case(b"100-continue");
        } else if name == header::TE {
            self.accepts_trailers |=
                list_elements(value).any(|t| t.eq_ignore_ascii_case(b"trailers"));
        } else if name == header::UPGRADE {
            self.upgrade = true;
        }
    }
}

/// A response head that passed validation.
pub(super) struct ParsedResponse {
    /// The response head as an `http` type.
    pub response: http::Response<()>,
    /// How its body is framed.
    pub framing: ResponseFraming,
    /// Whether the server lets the connection persist.
    pub keep_alive: bool,
}

/// Parses and validates a complete response head (`buf` ends with CRLFCRLF, bare LFs were
/// already rejected) to a request (`HEAD`: `head_req`, `CONNECT`: `connect`) and
/// determines its framing (RFC 9112 §6.3).
pub(super) fn parse_response_head(
    buf: &[u8],
    max_headers: usize,
    head_req: bool,
    connect: bool,
) -> Result<ParsedResponse, ProtocolError> {
    reject_obs_fold(buf)?;
    // The version opens the status line, followed by SP.
    if buf.get(8) == Some(&b' ') {
        if let Some(copy) = as_http_1_1(buf, 0) {
            return parse_response_head(&copy, max_headers, head_req, connect);
        }
    }
    let mut headers = vec![httparse::EMPTY_HEADER; max_headers.max(1)];
    let mut resp = httparse::Response::new(&mut headers);
    let result = httparse::ParserConfig::default().parse_response(&mut resp, buf);
    parse_status(
        result,
        || buf.get(..8).unwrap_or(&[]),
        "invalid status line",
    )?;
    let version = http_version(resp.version)?;
    let status = resp
        .code
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or(ProtocolError::MalformedHead("invalid status code"))?;
    let map = header_map(resp.headers, |_, _| {})?;
    let mut keep_alive = persistent(&map, version);

    let no_body = head_req
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || (connect && status.is_success());
    let framing = if no_body {
        ResponseFraming::None
    } else if map.contains_key(header::TRANSFER_ENCODING) {
        // TE overrides CL, but such a message is suspicious: do not reuse.
        if map.contains_key(header::CONTENT_LENGTH) {
            keep_alive = false;
        }
        let (mut codings, mut chunked, mut last_chunked) = (0usize, 0usize, false);
        for v in map.get_all(header::TRANSFER_ENCODING) {
            for coding in list_elements(v.as_bytes()) {
                codings += 1;
                last_chunked = coding.eq_ignore_ascii_case(b"chunked");
                if last_chunked {
                    chunked += 1;
                }
            }
        }
        if codings == 0 || chunked > 1 {
            return Err(ProtocolError::InvalidTransferEncoding);
        }
        if last_chunked && version == Version::HTTP_11 {
            ResponseFraming::Chunked
        } else {
            // Other final coding, or TE in HTTP/1.0 (faulty framing): read
            // until close, ignoring any Content-Length.
            ResponseFraming::CloseDelimited
        }
    } else {
        let mut cls = map.get_all(header::CONTENT_LENGTH).iter();
        match (cls.next(), cls.next()) {
            (None, _) => ResponseFraming::CloseDelimited,
            (Some(_), Some(_)) => return Err(ProtocolError::DuplicateContentLength),
            (Some(v), None) if v.as_bytes().contains(&b',') => {
                return Err(ProtocolError::DuplicateContentLength);
            }
            (Some(v), None) => ResponseFraming::Length(parse_content_length(v.as_bytes())?),
        }
    };
    if framing == ResponseFraming::CloseDelimited {
        keep_alive = false;
    }

    let mut response = http::Response::new(());
    *response.status_mut() = status;
    *response.version_mut() = version;
    *response.headers_mut() = map;
    Ok(ParsedResponse {
        response,
        framing,
        keep_alive,
    })
}

/// Small helper trait to validate a Host value as an authority.
trait ParseAuthority {
    fn parse_authority(&self) -> Option<http::uri::Authority>;
}

impl ParseAuthority for [u8] {
    fn parse_authority(&self) -> Option<http::uri::Authority> {
        let a = http::uri::Authority::try_from(self).ok()?;
        // Host must not carry userinfo (RFC 9110 §7.2 uses uri-host [":" port]).
        if a.as_str().contains('@') {
            return None;
        }
        Some(a)
    }
}

/// Parses a Content-Length value: `1*DIGIT`, no sign, no list, no overflow.
pub(super) fn parse_content_length(v: &[u8]) -> Result<u64, RejectReason> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return Err(RejectReason::InvalidContentLength);
    }
    let mut n: u64 = 0;
    for &d in v {
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(d - b'0')))
            .ok_or(RejectReason::InvalidContentLength)?;
    }
    Ok(n)
}

/// Validates the request-target form for the method (RFC 9112 §3.2).
fn parse_target(method: &Method, target: &str) -> Result<Uri, RejectReason> {
    if target == "*" {
        if *method != Method::OPTIONS {
            return Err(RejectReason::InvalidTarget);
        }
        return Uri::try_from(target).map_err(|_| RejectReason::InvalidTarget);
    }
    let uri = Uri::try_from(target).map_err(|_| RejectReason::InvalidTarget)?;
    let ok = if *method == Method::CONNECT {
        // authority-form only.
        uri.scheme().is_none() && uri.authority().is_some() && !target.contains('/')
    } else if target.starts_with('/') {
        // origin-form.
        uri.scheme().is_none() && uri.authority().is_none()
    } else {
        // absolute-form.
        uri.scheme().is_some() && uri.authority().is_some()
    };
    if ok {
        Ok(uri)
    } else {
        Err(RejectReason::InvalidTarget)
    }
}

/// Appends a status line `HTTP/1.1 <code> <reason>` to `buf`.
pub fn write_status_line(buf: &mut Vec<u8>, status: StatusCode) {
    buf.extend_from_slice(b"HTTP/1.1 ");
    buf.extend_from_slice(status.as_str().as_bytes());
    buf.push(b' ');
    buf.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    buf.extend_from_slice(b"\r\n");
}

/// Appends one `name: value` header line.
pub fn write_header(buf: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    buf.extend_from_slice(name);
    buf.extend_from_slice(b": ");
    buf.extend_from_slice(value);
    buf.extend_from_slice(b"\r\n");
}

/// What the engine adds to a response head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FramingHeader {
    /// No framing header.
    None,
    /// `Content-Length: n`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// Returns true if the application's `Connection` headers contain `close`.
pub fn has_close_token(headers: &HeaderMap) -> bool {
    has_connection_option(headers, b"close")
}

/// Whether a `Connection` field lists `option` (case-insensitive).
pub(super) fn has_connection_option(headers: &HeaderMap, option: &[u8]) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .any(|v| list_elements(v.as_bytes()).any(|t| t.eq_ignore_ascii_case(option)))
}

/// Header fields the server engine adds to every response head it writes, its own error
/// responses included, unless the head has a field of that name: `Date` and `Server` (RFC
/// 9110 §6.6.1, §10.2.4). Kept serialised, so a head takes them with one copy instead of
/// map insertions and lookups; a caller makes a new one when a value changes (`Date`, once
/// a second) and shares it among its connections.
#[derive(Debug, Default)]
pub struct DefaultFields {
    names: Vec<HeaderName>,
    /// Every field as a field line (`name: value\r\n`), in order.
    lines: Vec<u8>,
}

impl DefaultFields {
    /// The fields of `fields`, in their order.
    pub fn new<'a>(fields: impl IntoIterator<Item = (&'a HeaderName, &'a HeaderValue)>) -> Self {
        let mut names = Vec::new();
        let mut lines = Vec::new();
        for (name, value) in fields {
            write_header(&mut lines, name.as_str().as_bytes(), value.as_bytes());
            names.push(name.clone());
        }
        DefaultFields { names, lines }
    }

    /// All the fields as field lines (`name: value\r\n`).
    pub fn lines(&self) -> &[u8] {
        &self.lines
    }

    /// Whether `name` is one of the fields.
    fn has(&self, name: &HeaderName) -> bool {
        self.names.contains(name)
    }

    /// Appends the fields `headers` does not have.
    fn write_missing(&self, buf: &mut Vec<u8>, headers: &HeaderMap) {
        for (name, line) in self
            .names
            .iter()
            .zip(self.lines.split_inclusive(|&b| b == b'\n'))
        {
            if !headers.contains_key(name) {
                buf.extend_from_slice(line);
            }
        }
    }
}

/// Serializes a response head. The application's framing headers
/// (`Content-Length`, `Transfer-Encoding`) are dropped; its `Connection`
/// tokens other than `close`/`keep-alive` are kept, and the engine's
/// persistence token (`close`, or `keep-alive` if `keep_alive_token`) is added. The
/// `defaults` the head lacks follow its own fields. One pass over the head's fields: the
/// `Connection` tokens and the defaults are found on the way.
pub fn write_response_head(
    buf: &mut Vec<u8>,
    status: StatusCode,
    headers: &HeaderMap,
    defaults: Option<&DefaultFields>,
    framing: FramingHeader,
    close: bool,
    keep_alive_token: bool,
) {
    // Most heads fit (saves growing the buffer step by step).
    buf.reserve(HEAD_RESERVE + defaults.map_or(0, |d| d.lines.len()));
    write_status_line(buf, status);
    let mut conn_tokens: Vec<&[u8]> = Vec::new();
    let mut overridden = false;
    for (name, value) in headers {
        if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING {
            continue;
        }
        if name == header::CONNECTION {
            for t in list_elements(value.as_bytes()) {
                if !t.eq_ignore_ascii_case(b"close")
                    && !t.eq_ignore_ascii_case(b"keep-alive")
                    && t.iter().all(|&b| is_tchar(b))
                {
                    conn_tokens.push(t);
                }
            }
            continue;
        }
        overridden |= defaults.is_some_and(|d| d.has(name));
        write_header(buf, name.as_str().as_bytes(), value.as_bytes());
    }
    match defaults {
        Some(d) if overridden => d.write_missing(buf, headers),
        Some(d) => buf.extend_from_slice(&d.lines),
        None => {}
    }
    if close {
        conn_tokens.push(b"close");
    } else if keep_alive_token {
        conn_tokens.push(b"keep-alive");
    }
    if !conn_tokens.is_empty() {
        buf.extend_from_slice(b"connection: ");
        for (i, t) in conn_tokens.iter().enumerate() {
            if i > 0 {
                buf.extend_from_slice(b", ");
            }
            buf.extend_from_slice(t);
        }
        buf.extend_from_slice(b"\r\n");
    }
    match framing {
        FramingHeader::None => {}
        FramingHeader::Length(n) => {
            let mut digits = [0; 20];
            write_header(buf, b"content-length", decimal(n, &mut digits));
        }
        FramingHeader::Chunked => write_header(buf, b"transfer-encoding", b"chunked"),
    }
    buf.extend_from_slice(b"\r\n");
}

/// Bytes reserved for a response head besides its default fields.
const HEAD_RESERVE: usize = 256;

/// `n` in decimal, written at the end of `digits` (20: a `u64`'s most; no allocation,
/// unlike `to_string`).
fn decimal(mut n: u64, digits: &mut [u8; 20]) -> &[u8] {
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &digits[start..]
}

/// Builds a complete engine-generated error response with a text body and
/// `Connection: close`; `extra` holds further header lines (`name: value\r\n`).
pub fn error_response(status: StatusCode, message: &str, extra: &[u8]) -> Vec<u8> {
    let body = format!("{message}\n");
    let mut buf = Vec::with_capacity(128 + extra.len() + body.len());
    write_status_line(&mut buf, status);
    buf.extend_from_slice(extra);
    write_header(&mut buf, b"content-type", b"text/plain; charset=utf-8");
    write_header(
        &mut buf,
        b"content-length",
        body.len().to_string().as_bytes(),
    );
    write_header(&mut buf, b"connection", b"close");
    buf.extend_from_slice(b"\r\n");
    buf.extend_from_slice(body.as_bytes());
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<ParsedHead, RejectReason> {
        parse_request_head(s.as_bytes(), &H1Config::default())
    }

    #[test]
    fn basic() {
        let p = parse("GET /a?b HTTP/1.1\r\nHost: x\r\nConnection: Close\r\n\r\n").unwrap();
        assert_eq!(p.request.method(), Method::GET);
        assert_eq!(p.request.uri().path(), "/a");
        assert!(!p.keep_alive);
        assert_eq!(p.framing, BodyFraming::None);
    }

    #[test]
    fn targets() {
        assert!(parse("OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n").is_ok());
        assert_eq!(
            parse("GET * HTTP/1.1\r\nHost: x\r\n\r\n").unwrap_err(),
            RejectReason::InvalidTarget
        );
        assert!(parse("GET http://e.com/x HTTP/1.1\r\nHost: e.com\r\n\r\n").is_ok());
        assert!(parse("CONNECT e.com:443 HTTP/1.1\r\nHost: e.com:443\r\n\r\n").is_ok());
        assert_eq!(
            parse("GET e.com:443 HTTP/1.1\r\nHost: x\r\n\r\n").unwrap_err(),
            RejectReason::InvalidTarget
        );
    }

    #[test]
    fn version_errors() {
        // A higher minor version is handled as HTTP/1.1 (RFC 9110 §2.5).
        for v in ["1.2", "1.9"] {
            let head = parse(&format!("GET / HTTP/{v}\r\nHost: x\r\n\r\n")).unwrap();
            assert_eq!(head.request.version(), Version::HTTP_11);
        }
        assert_eq!(
            parse("GET / HTTP/1.2\r\n\r\n").unwrap_err(),
            RejectReason::MissingHost,
            "as HTTP/1.1, Host is required"
        );
        assert_eq!(
            parse("GET / HTTP/3.0\r\nHost: x\r\n\r\n").unwrap_err(),
            RejectReason::UnsupportedVersion
        );
        assert_eq!(
            parse("GET / HTTP/2.0\r\nHost: x\r\n\r\n").unwrap_err(),
            RejectReason::UnsupportedVersion
        );
        assert!(matches!(
            parse("GET / HTTX/1.1\r\nHost: x\r\n\r\n").unwrap_err(),
            RejectReason::MalformedHead(_)
        ));
    }

    #[test]
    fn response_head() {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("99"));
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-foo"),
        );
        h.insert("x-a", HeaderValue::from_static("b"));
        let mut buf = Vec::new();
        write_response_head(
            &mut buf,
            StatusCode::OK,
            &h,
            None,
            FramingHeader::Length(3),
            true,
            false,
        );
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "HTTP/1.1 200 OK\r\nx-a: b\r\nconnection: x-foo, close\r\ncontent-length: 3\r\n\r\n"
        );
    }

    /// The default fields follow the head's own, once each; a field the head has wins.
    #[test]
    fn response_head_default_fields() {
        let mut stamp = HeaderMap::new();
        stamp.insert(header::DATE, HeaderValue::from_static("D1"));
        stamp.insert(header::SERVER, HeaderValue::from_static("tapir/t"));
        let defaults = DefaultFields::new(&stamp);
        let head = |h: &HeaderMap| {
            let mut buf = Vec::new();
            write_response_head(
                &mut buf,
                StatusCode::OK,
                h,
                Some(&defaults),
                FramingHeader::Length(1234567890),
                false,
                false,
            );
            String::from_utf8(buf).unwrap()
        };
        let mut h = HeaderMap::new();
        h.insert("x-a", HeaderValue::from_static("b"));
        assert_eq!(
            head(&h),
            "HTTP/1.1 200 OK\r\nx-a: b\r\ndate: D1\r\nserver: tapir/t\r\n\
             content-length: 1234567890\r\n\r\n"
        );
        h.insert(header::SERVER, HeaderValue::from_static("mine"));
        assert_eq!(
            head(&h),
            "HTTP/1.1 200 OK\r\nx-a: b\r\nserver: mine\r\ndate: D1\r\n\
             content-length: 1234567890\r\n\r\n"
        );
        let mut digits = [0; 20];
        assert_eq!(decimal(0, &mut digits), b"0");
        assert_eq!(
            decimal(u64::MAX, &mut digits),
            u64::MAX.to_string().as_bytes()
        );
    }

    /// More fields than fit on the stack are read in a second parse, up to `max_headers`.
    #[test]
    fn many_fields() {
        let head = |n: usize| {
            let mut s = String::from("GET / HTTP/1.1\r\nHost: x\r\n");
            for i in 1..n {
                s.push_str(&format!("x-f{i}: {i}\r\n"));
            }
            s.push_str("Upgrade: foo\r\nTE: trailers\r\n\r\n");
            s
        };
        let p = parse(&head(FEW_HEADERS + 10)).unwrap();
        assert_eq!(p.request.headers().len(), FEW_HEADERS + 12);
        assert_eq!(p.request.headers()["x-f40"], "40");
        assert!(p.upgrade && p.accepts_trailers && p.keep_alive);
        assert!(parse(&head(FEW_HEADERS - 2)).is_ok());
        assert_eq!(
            parse(&head(H1Config::default().max_headers)).unwrap_err(),
            RejectReason::TooManyHeaders
        );
    }
}
