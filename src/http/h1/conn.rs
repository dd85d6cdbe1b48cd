//! The parts of an HTTP/1.1 connection both roles share, written once (the shape of hyper's
//! `proto::h1`: one connection core, the role deciding only what a head means).
//!
//! * [`HeadReader`]: reads a message head under a size limit, scanning as bytes come
//!   (bare LF, the request-target's length, empty lines before a request line).
//! * [`BodyBuffer`]: decodes a body ([`BodyDecoder`]) into a bounded buffer of bytes not yet
//!   taken by the application, and hands them out as events.
//! * [`BodyEncoder`]: frames an outgoing body (length, chunked with trailers, until close)
//!   and checks it against the declared length.
//! * [`Output`]: the bytes waiting for the wire, with the stall timer of a peer that stopped
//!   reading.
//! * [`Timer`]: an optional instant plus a duration, the form of every engine timeout.
//!
//! The server ([`super::ServerConn`]) and the client ([`super::ClientConn`]) hold these and
//! add only their role: which head they parse and write, how requests and responses pair up.

use core::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName};

use super::body::BodyDecoder;
use super::chunked::{self, ChunkedError};
use super::head;
use super::ProtocolError;

/// What [`HeadReader::read`] found.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum HeadStep {
    /// The head is not complete yet.
    Partial,
    /// The head is complete: parse it with [`HeadReader::take`].
    Complete,
    /// The head is broken or too large.
    Failed(ProtocolError),
}

/// The limits a head is read under.
#[derive(Debug, Clone, Copy)]
pub(super) struct HeadLimits {
    /// Maximum bytes of one head.
    pub max_size: usize,
    /// Maximum length of a request-target (`None`: the head is a response's).
    pub max_uri_len: Option<usize>,
}

/// Reads one message head at a time, under [`HeadLimits`].
#[derive(Debug, Default)]
pub(super) struct HeadReader {
    buf: Vec<u8>,
    /// Scanned up to here.
    pos: usize,
    /// The first and second SP of the start line.
    sp1: Option<usize>,
    sp2: Option<usize>,
    line_done: bool,
    /// A CR of an empty line before a request line was read (LF required next).
    lead_cr: bool,
    /// When the first byte of this head came (empty lines before it included).
    started: Option<Duration>,
}

impl HeadReader {
    /// True when no byte of a head is held.
    pub(super) fn is_empty(&self) -> bool {
        self.buf.is_empty() && !self.lead_cr && self.started.is_none()
    }

    /// Bytes of the incomplete head held.
    pub(super) fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// When the first byte of the head being read came.
    pub(super) fn started(&self) -> Option<Duration> {
        self.started
    }

    /// Drops a partial head.
    pub(super) fn clear(&mut self) {
        self.buf.clear();
        self.reset_scan();
    }

    fn reset_scan(&mut self) {
        self.pos = 0;
        self.sp1 = None;
        self.sp2 = None;
        self.line_done = false;
        self.lead_cr = false;
        self.started = None;
    }

    /// Reads head bytes from `input`; returns the bytes consumed (never past the head's end)
    /// and what was found. Empty lines before a request line are skipped (RFC 9112 §2.2)
    /// when `limits.max_uri_len` is set.
    pub(super) fn read(
        &mut self,
        input: &[u8],
        limits: HeadLimits,
        now: Duration,
    ) -> (usize, HeadStep) {
        let mut i = 0usize;
        if self.buf.is_empty() && limits.max_uri_len.is_some() {
            while let Some(&b) = input.get(i) {
                if self.lead_cr {
                    if b != b'\n' {
                        let bad = ProtocolError::MalformedHead("invalid line ending");
                        return (i, HeadStep::Failed(bad));
                    }
                    self.lead_cr = false;
                } else if b == b'\r' {
                    self.lead_cr = true;
                } else {
                    break;
                }
                i += 1;
            }
            if i > 0 && self.started.is_none() {
                self.started = Some(now);
            }
            if i == input.len() {
                return (i, HeadStep::Partial);
            }
        }
        let room = limits.max_size.saturating_sub(self.buf.len());
        let avail = input.get(i..).unwrap_or(&[]);
        let take = avail.len().min(room);
        self.buf.extend_from_slice(avail.get(..take).unwrap_or(&[]));
        if self.started.is_none() {
            self.started = Some(now);
        }
        match self.scan(limits.max_uri_len) {
            Err(e) => (i + take, HeadStep::Failed(e)),
            Ok(Some(end)) => {
                let excess = self.buf.len().saturating_sub(end);
                self.buf.truncate(end);
                ((i + take).saturating_sub(excess), HeadStep::Complete)
            }
            Ok(None) if self.buf.len() >= limits.max_size => {
                (i + take, HeadStep::Failed(ProtocolError::HeadTooLarge))
            }
            Ok(None) => (i + take, HeadStep::Partial),
        }
    }

    /// Runs `parse` on the complete head and gets ready for the next one (keeping the
    /// buffer's memory).
    pub(super) fn take<T>(&mut self, parse: impl FnOnce(&[u8]) -> T) -> T {
        let result = parse(&self.buf);
        self.clear();
        result
    }

    /// Scans the new bytes; returns the end offset of the head if found. The
    /// request-target's length is checked at each of its bytes, so the verdict on a head
    /// never depends on where the input was cut.
    fn scan(&mut self, max_uri_len: Option<usize>) -> Result<Option<usize>, ProtocolError> {
        while let Some(&b) = self.buf.get(self.pos) {
            let i = self.pos;
            self.pos += 1;
            match b {
                b'\n' => {
                    let prev = i.checked_sub(1).and_then(|p| self.buf.get(p)).copied();
                    if prev != Some(b'\r') {
                        return Err(ProtocolError::BareLf);
                    }
                    self.line_done = true;
                    if i >= 3 && self.buf.get(i - 3..=i) == Some(b"\r\n\r\n".as_slice()) {
                        return Ok(Some(i + 1));
                    }
                }
                b' ' if !self.line_done => {
                    if self.sp1.is_none() {
                        self.sp1 = Some(i);
                    } else if self.sp2.is_none() {
                        self.sp2 = Some(i);
                    }
                }
                b'\r' => {}
                _ => {
                    // A byte of the request-target: bytes sp1+1..=i so far.
                    if let (Some(max), Some(a), None, false) =
                        (max_uri_len, self.sp1, self.sp2, self.line_done)
                    {
                        if i - a > max {
                            return Err(ProtocolError::UriTooLong);
                        }
                    }
                }
            }
        }
        Ok(None)
    }
}

/// Decoded body bytes on their way to the application: gathered while input is decoded,
/// handed out as one event per input batch, and counted until the application takes them
/// (the bound on body memory).
#[derive(Debug, Default)]
pub(super) struct BodyBuffer {
    acc: BytesMut,
    acc_id: u64,
    /// Bytes handed out in events not yet taken.
    queued: usize,
}

impl BodyBuffer {
    /// Decoded bytes held (handed out but not taken, or not yet handed out).
    pub(super) fn held(&self) -> usize {
        self.queued + self.acc.len()
    }

    /// Room left under `max` for more decoded bytes.
    pub(super) fn room(&self, max: usize) -> usize {
        max.saturating_sub(self.held())
    }

    /// True when no decoded byte waits to be handed out.
    pub(super) fn is_empty(&self) -> bool {
        self.acc.is_empty()
    }

    /// Decodes body bytes of message `id` from `input` into the buffer, at most up to
    /// `max` buffered. Returns the bytes consumed, whether the body is complete, and the
    /// bytes it produced.
    pub(super) fn decode(
        &mut self,
        id: u64,
        decoder: &mut BodyDecoder,
        input: &[u8],
        max: usize,
    ) -> (usize, Result<bool, ChunkedError>, u64) {
        let room = self.room(max);
        if self.acc.is_empty() {
            self.acc_id = id;
        }
        let before = self.acc.len();
        let result = decoder.decode(input, &mut self.acc, room);
        let produced = (self.acc.len() - before) as u64;
        match result {
            Ok((consumed, done)) => (consumed, Ok(done), produced),
            Err(e) => (0, Err(e), produced),
        }
    }

    /// The gathered bytes, as (message id, bytes), counted as queued.
    pub(super) fn flush(&mut self) -> Option<(u64, Bytes)> {
        if self.acc.is_empty() {
            return None;
        }
        let data = self.acc.split().freeze();
        self.queued += data.len();
        Some((self.acc_id, data))
    }

    /// The application took `n` queued bytes.
    pub(super) fn taken(&mut self, n: usize) {
        self.queued = self.queued.saturating_sub(n);
    }
}

/// How an outgoing body is framed, with what is left to check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BodyEncoder {
    /// No body may follow (HEAD, 204, 304, a request without content): bytes are dropped.
    NoBody,
    /// `Content-Length`: this many bytes remain.
    Length {
        /// Bytes still to send.
        remaining: u64,
    },
    /// Chunked; trailer fields are sent after the last chunk when `trailers` (the peer
    /// accepts them).
    Chunked {
        /// The trailer section may carry fields.
        trailers: bool,
    },
    /// Until the connection closes (HTTP/1.0 responses of unknown length).
    CloseDelimited,
}

/// A body was framed wrongly against its declared length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Misframed {
    /// This many bytes past the declared length.
    TooLong(u64),
    /// This many bytes short of the declared length.
    TooShort(u64),
}

impl BodyEncoder {
    /// True when the body bytes go on the wire (not dropped).
    pub(super) fn carries_body(&self) -> bool {
        *self != BodyEncoder::NoBody
    }

    /// Appends `data` to `buf` as this body's next bytes.
    pub(super) fn encode(&mut self, buf: &mut Vec<u8>, data: &[u8]) -> Result<(), Misframed> {
        match self {
            BodyEncoder::NoBody => {}
            BodyEncoder::Length { remaining } => {
                let len = data.len() as u64;
                if len > *remaining {
                    return Err(Misframed::TooLong(len - *remaining));
                }
                buf.extend_from_slice(data);
                *remaining -= len;
            }
            BodyEncoder::Chunked { .. } => chunked::encode_chunk(buf, data),
            BodyEncoder::CloseDelimited => buf.extend_from_slice(data),
        }
        Ok(())
    }

    /// Writes this body's next bytes in place at the start of `buf` (a send buffer's free
    /// space): `fill` writes data into the room it gets (never past a declared length) and
    /// returns how many bytes; chunk framing goes around them. Returns (bytes of `buf`
    /// used, body bytes written).
    pub(super) fn encode_in_place(
        &mut self,
        buf: &mut [u8],
        fill: &mut dyn FnMut(&mut [u8]) -> usize,
    ) -> (usize, usize) {
        match self {
            BodyEncoder::NoBody => (0, 0),
            BodyEncoder::Length { remaining } => {
                let room = buf
                    .len()
                    .min(usize::try_from(*remaining).unwrap_or(usize::MAX));
                let n = buf.get_mut(..room).map_or(0, &mut *fill).min(room);
                *remaining -= n as u64;
                (n, n)
            }
            BodyEncoder::Chunked { .. } => {
                let mut data = 0;
                let used = chunked::encode_chunk_in_place(buf, &mut |room| {
                    data = fill(room).min(room.len());
                    data
                });
                (used, if used == 0 { 0 } else { data })
            }
            BodyEncoder::CloseDelimited => {
                let n = fill(buf).min(buf.len());
                (n, n)
            }
        }
    }

    /// Ends the body: the last chunk with its trailer section if chunked (the `trailers`
    /// fields allowed there, see [`write_trailers`]: when the head declared its trailer
    /// fields in `Trailer`, `declared`, only those); a length body must be complete.
    pub(super) fn finish(
        &self,
        buf: &mut Vec<u8>,
        trailers: Option<&HeaderMap>,
        declared: Option<&[HeaderName]>,
    ) -> Result<(), Misframed> {
        match *self {
            BodyEncoder::Chunked { trailers: allowed } => {
                buf.extend_from_slice(b"0\r\n");
                if let (true, Some(fields)) = (allowed, trailers) {
                    write_trailers(buf, fields, declared);
                }
                buf.extend_from_slice(b"\r\n");
                Ok(())
            }
            BodyEncoder::Length { remaining } if remaining > 0 => {
                Err(Misframed::TooShort(remaining))
            }
            _ => Ok(()),
        }
    }
}

/// Writes the permitted fields of `trailers` as field lines: never the forbidden ones
/// ([`crate::http::is_forbidden_trailer`]), and only the `declared` names if given.
fn write_trailers(buf: &mut Vec<u8>, trailers: &HeaderMap, declared: Option<&[HeaderName]>) {
    for (name, value) in trailers {
        let permitted = declared.is_none_or(|names| names.contains(name));
        if permitted && !crate::http::is_forbidden_trailer(name) {
            head::write_header(buf, name.as_str().as_bytes(), value.as_bytes());
        }
    }
}

/// Bytes waiting for the wire, and since when they wait without any being written.
#[derive(Debug, Default)]
pub(super) struct Output {
    buf: Vec<u8>,
    pos: usize,
    /// Output was blocked (no room for any of it) since then, none written since.
    blocked_since: Option<Duration>,
    /// The blocked output is a body written in place (nothing pending here).
    in_place: bool,
}

impl Output {
    /// The bytes not yet written.
    pub(super) fn pending(&self) -> &[u8] {
        self.buf.get(self.pos..).unwrap_or(&[])
    }

    /// The buffer to append to.
    pub(super) fn buf_mut(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// Appends `more` (taking its allocation when nothing waits).
    pub(super) fn append(&mut self, more: &mut Vec<u8>) {
        if self.buf.is_empty() {
            std::mem::swap(&mut self.buf, more);
            self.pos = 0;
        } else {
            self.buf.append(more);
        }
    }

    /// `n` bytes were written.
    pub(super) fn consume(&mut self, n: usize) {
        self.pos = self.pos.saturating_add(n).min(self.buf.len());
        if n > 0 {
            self.blocked_since = None;
            self.in_place = false;
        }
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
            self.blocked_since = None;
        } else if self.pos >= 4096 && self.pos * 2 >= self.buf.len() {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
    }

    /// Drops everything (and the memory).
    pub(super) fn discard(&mut self) {
        self.buf = Vec::new();
        self.pos = 0;
        self.blocked_since = None;
        self.in_place = false;
    }

    /// A body written in place found no room in the transport at `now`.
    pub(super) fn blocked_in_place(&mut self, now: Duration) {
        if self.blocked_since.is_none() {
            self.blocked_since = Some(now);
        }
        self.in_place = true;
    }

    /// The transport had room for a body written in place: not blocked.
    pub(super) fn room_in_place(&mut self) {
        if self.in_place {
            self.blocked_since = None;
            self.in_place = false;
        }
    }

    /// None of the pending bytes could be written at `now`.
    pub(super) fn blocked(&mut self, now: Duration) {
        if self.blocked_since.is_none() && !self.pending().is_empty() {
            self.blocked_since = Some(now);
        }
    }

    /// The stall timer: since when pending output waits with none written.
    pub(super) fn stall_timer(&self, limit: Duration) -> Timer {
        Timer::new(
            self.blocked_since
                .filter(|_| self.in_place || !self.pending().is_empty()),
            limit,
        )
    }
}

/// A timeout: running since an instant (or not running), firing `limit` later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Timer {
    since: Option<Duration>,
    limit: Duration,
}

impl Timer {
    /// A timer running since `since` (not running: `None`).
    pub(super) fn new(since: Option<Duration>, limit: Duration) -> Self {
        Timer { since, limit }
    }

    /// When it fires, if running.
    pub(super) fn deadline(&self) -> Option<Duration> {
        self.since.map(|t| t.saturating_add(self.limit))
    }

    /// True when running and due at `now`.
    pub(super) fn expired(&self, now: Duration) -> bool {
        self.deadline().is_some_and(|at| now >= at)
    }
}

/// The earliest of some deadlines.
pub(super) fn earliest(deadlines: impl IntoIterator<Item = Option<Duration>>) -> Option<Duration> {
    deadlines.into_iter().flatten().min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header;

    #[test]
    fn trailers_drop_forbidden_fields() {
        let mut fields = HeaderMap::new();
        fields.insert("grpc-status", "0".parse().unwrap());
        fields.insert(header::CONTENT_LENGTH, "5".parse().unwrap());
        fields.insert(header::SET_COOKIE, "a=b".parse().unwrap());
        fields.insert(header::TRANSFER_ENCODING, "chunked".parse().unwrap());
        fields.insert("x-checksum", "abc".parse().unwrap());
        let mut buf = Vec::new();
        let enc = BodyEncoder::Chunked { trailers: true };
        enc.finish(&mut buf, Some(&fields), None).unwrap();
        assert_eq!(buf, b"0\r\ngrpc-status: 0\r\nx-checksum: abc\r\n\r\n");

        // The head declared its trailers: only those names.
        let mut buf = Vec::new();
        let declared = [
            HeaderName::from_static("x-checksum"),
            header::CONTENT_LENGTH,
        ];
        enc.finish(&mut buf, Some(&fields), Some(&declared))
            .unwrap();
        assert_eq!(buf, b"0\r\nx-checksum: abc\r\n\r\n");

        // Not accepted by the peer: an empty trailer section.
        let mut buf = Vec::new();
        let enc = BodyEncoder::Chunked { trailers: false };
        enc.finish(&mut buf, Some(&fields), None).unwrap();
        assert_eq!(buf, chunked::LAST_CHUNK);
    }

    #[test]
    fn length_bodies_are_checked() {
        let mut enc = BodyEncoder::Length { remaining: 3 };
        let mut buf = Vec::new();
        assert_eq!(enc.encode(&mut buf, b"abcd"), Err(Misframed::TooLong(1)));
        enc.encode(&mut buf, b"ab").unwrap();
        assert_eq!(
            enc.finish(&mut buf, None, None),
            Err(Misframed::TooShort(1))
        );
        enc.encode(&mut buf, b"c").unwrap();
        assert_eq!(enc.finish(&mut buf, None, None), Ok(()));
        assert_eq!(buf, b"abc");
    }

    #[test]
    fn head_reader_stops_at_the_end_of_the_head() {
        let mut r = HeadReader::default();
        let limits = HeadLimits {
            max_size: 64,
            max_uri_len: None,
        };
        let input = b"HTTP/1.1 200 OK\r\n\r\nbody";
        let (n, step) = r.read(input, limits, Duration::ZERO);
        assert_eq!((n, step), (19, HeadStep::Complete));
        assert_eq!(r.take(|h| h.len()), 19);
        assert!(r.is_empty());
        let (_, step) = r.read(b"HTTP/1.1 200 OK\n", limits, Duration::ZERO);
        assert_eq!(step, HeadStep::Failed(ProtocolError::BareLf));
    }
}
