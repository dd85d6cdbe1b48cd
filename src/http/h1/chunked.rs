//! Strict, incremental decoder and small encoder for the HTTP/1.1 chunked
//! transfer coding (RFC 9112 §7.1).
//!
//! The decoder accepts input split at any byte position and keeps only a
//! constant amount of state. It is deliberately strict:
//!
//! * `chunk-size` is `1*HEXDIG`, at most [`MAX_SIZE_DIGITS`] digits;
//! * chunk extensions must follow `*( BWS ";" BWS name [ BWS "=" BWS value ] )`
//!   with `value` a token or quoted-string, at most [`MAX_EXT_LEN`] bytes per
//!   line;
//! * every line ends with CRLF; a bare LF (or a CR not followed by LF) is an
//!   error;
//! * chunk data is followed by exactly CRLF;
//! * trailer fields must be well-formed `name: value` lines, bounded in total size;
//!   they are validated and discarded, or kept for the reader
//!   ([`ChunkedDecoder::keep_trailers`], [`ChunkedDecoder::take_trailers`]).

use bytes::BytesMut;

/// Maximum number of hex digits accepted in a chunk-size (16 digits = 64 bits).
pub const MAX_SIZE_DIGITS: u8 = 16;

/// Maximum length in bytes of the chunk extensions of a single chunk line.
pub const MAX_EXT_LEN: usize = 4096;

/// The last-chunk plus an empty trailer section, terminating a chunked body.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// A framing error found by the [`ChunkedDecoder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChunkedError {
    /// A chunk-size line did not start with a hex digit or contained an invalid byte.
    #[error("invalid chunk size line")]
    InvalidSize,
    /// The chunk-size had more than 16 hex digits.
    #[error("chunk size has too many digits")]
    SizeTooLong,
    /// A line was terminated by a bare LF, or a CR was not followed by LF.
    #[error("chunked body line not terminated by CRLF")]
    BareLf,
    /// A chunk extension did not match the RFC 9112 grammar.
    #[error("invalid chunk extension")]
    InvalidExtension,
    /// The chunk extensions of one chunk line exceeded 4096 bytes.
    #[error("chunk extensions too long")]
    ExtensionTooLong,
    /// Chunk data was not followed by CRLF.
    #[error("chunk data not followed by CRLF")]
    MissingDataCrlf,
    /// A trailer field line was malformed.
    #[error("invalid trailer field")]
    InvalidTrailer,
    /// The trailer section exceeded its size limit.
    #[error("trailer section too large")]
    TrailerTooLarge,
    /// The decoded body would exceed the configured maximum body size.
    #[error("chunked body exceeds the maximum body size")]
    BodyTooLarge,
}

/// Decoder states. Each variant carries only fixed-size data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a chunk-size line: a hex digit is required.
    SizeStart,
    /// Reading hex digits of the chunk size.
    Size,
    /// Inside the chunk extensions; see [`Ext`].
    Ext(Ext),
    /// Saw CR at the end of the size line; LF required.
    SizeLf,
    /// Copying chunk data; `remaining` bytes left in this chunk.
    Data { remaining: u64 },
    /// After chunk data: CR required.
    DataCr,
    /// After chunk data CR: LF required.
    DataLf,
    /// At the start of a trailer line or the final empty line.
    TrailerStart,
    /// Inside a trailer field name.
    TrailerName,
    /// Inside a trailer field value.
    TrailerValue,
    /// Saw CR at the end of a trailer line; LF required.
    TrailerLf,
    /// Saw CR of the final empty line; LF required.
    FinalLf,
    /// The body is complete.
    Done,
}

/// Sub-states of the chunk extension grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ext {
    /// Whitespace after the size or after a value: `;` required (or more WS).
    WsBeforeSemi,
    /// After `;`: optional WS then a token char.
    NameStart,
    /// Inside an extension name.
    Name,
    /// Whitespace after a name: `=` or `;` required.
    WsAfterName,
    /// After `=`: optional WS then a token or quoted-string.
    ValueStart,
    /// Inside a token value.
    TokenValue,
    /// Inside a quoted-string value.
    Quoted,
    /// After a backslash inside a quoted-string.
    QuotedEscape,
    /// After the closing quote.
    AfterQuoted,
}

/// Returns true for RFC 9110 `tchar`.
pub(crate) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn hex_val(b: u8) -> Option<u64> {
    match b {
        b'0'..=b'9' => Some(u64::from(b - b'0')),
        b'a'..=b'f' => Some(u64::from(b - b'a' + 10)),
        b'A'..=b'F' => Some(u64::from(b - b'A' + 10)),
        _ => None,
    }
}

/// Incremental strict decoder for a chunked request body.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    size: u64,
    digits: u8,
    ext_len: usize,
    total: u64,
    max_total: u64,
    trailer_len: usize,
    max_trailer: usize,
    /// The trailer section's bytes, when kept.
    trailer: Option<Vec<u8>>,
}

impl ChunkedDecoder {
    /// Creates a decoder limiting the decoded body to `max_total` bytes and
    /// the trailer section to `max_trailer` bytes.
    pub fn new(max_total: u64, max_trailer: usize) -> Self {
        Self {
            state: State::SizeStart,
            size: 0,
            digits: 0,
            ext_len: 0,
            total: 0,
            max_total,
            trailer_len: 0,
            max_trailer,
            trailer: None,
        }
    }

    /// Keeps the trailer section's fields for [`take_trailers`](Self::take_trailers)
    /// instead of discarding them.
    pub fn keep_trailers(mut self) -> Self {
        self.trailer = Some(Vec::new());
        self
    }

    /// The trailer fields, once the body is complete and if kept (`None` when there were
    /// none). Names are lowercased, values trimmed of surrounding whitespace.
    pub fn take_trailers(&mut self) -> Option<http::HeaderMap> {
        if self.state != State::Done {
            return None;
        }
        let section = self.trailer.take().filter(|t| !t.is_empty())?;
        let mut fields = http::HeaderMap::new();
        for line in section.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                continue;
            };
            let (name, rest) = line.split_at(colon);
            let value = super::head::trim_ows(rest.get(1..).unwrap_or(&[]));
            // The grammar was checked byte by byte; these conversions cannot fail for it.
            if let (Ok(name), Ok(value)) = (
                http::HeaderName::from_bytes(name),
                http::HeaderValue::from_bytes(value),
            ) {
                fields.append(name, value);
            }
        }
        Some(fields)
    }

    /// True once the last chunk and trailer section have been fully read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Total decoded body bytes so far (sum of declared chunk sizes read).
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Decodes from `input`, appending at most `max_data` body bytes to `out`.
    ///
    /// Returns the number of input bytes consumed. Decoding stops at the end
    /// of the body (bytes after it are not consumed), at the end of `input`,
    /// or when `max_data` body bytes were produced and more data is pending.
    pub fn decode(
        &mut self,
        input: &[u8],
        out: &mut BytesMut,
        max_data: usize,
    ) -> Result<usize, ChunkedError> {
        let mut pos = 0usize;
        let mut budget = max_data;
        while pos < input.len() {
            if let State::Data { remaining } = self.state {
                if budget == 0 {
                    break;
                }
                let avail = input.len() - pos;
                let take_u64 = remaining.min(avail as u64).min(budget as u64);
                // `take_u64` <= avail, which is a usize, so this cannot truncate.
                let take = usize::try_from(take_u64).unwrap_or(avail).min(avail);
                if let Some(chunk) = input.get(pos..pos + take) {
                    out.extend_from_slice(chunk);
                }
                pos += take;
                budget -= take;
                let left = remaining - take as u64;
                self.state = if left == 0 {
                    State::DataCr
                } else {
                    State::Data { remaining: left }
                };
                continue;
            }
            if self.state == State::Done {
                break;
            }
            let b = match input.get(pos) {
                Some(&b) => b,
                None => break,
            };
            pos += 1;
            self.step(b)?;
        }
        Ok(pos)
    }

    fn ext_byte(&mut self) -> Result<(), ChunkedError> {
        self.ext_len += 1;
        if self.ext_len > MAX_EXT_LEN {
            return Err(ChunkedError::ExtensionTooLong);
        }
        Ok(())
    }

    fn trailer_byte(&mut self, b: u8) -> Result<(), ChunkedError> {
        self.trailer_len += 1;
        if self.trailer_len > self.max_trailer {
            return Err(ChunkedError::TrailerTooLarge);
        }
        if let Some(kept) = self.trailer.as_mut() {
            kept.push(b);
        }
        Ok(())
    }

    /// Called at the CR ending a size line: nothing yet; size is applied at LF.
    fn size_line_cr(&mut self) {
        self.state = State::SizeLf;
    }

    /// Processes one non-data byte.
    fn step(&mut self, b: u8) -> Result<(), ChunkedError> {
        use ChunkedError as E;
        match self.state {
            State::SizeStart => match hex_val(b) {
                Some(v) => {
                    self.size = v;
                    self.digits = 1;
                    self.ext_len = 0;
                    self.state = State::Size;
                }
                None if b == b'\n' => return Err(E::BareLf),
                None => return Err(E::InvalidSize),
            },
            State::Size => {
                if let Some(v) = hex_val(b) {
                    if self.digits >= MAX_SIZE_DIGITS {
                        return Err(E::SizeTooLong);
                    }
                    self.digits += 1;
                    self.size = self
                        .size
                        .checked_mul(16)
                        .and_then(|s| s.checked_add(v))
                        .ok_or(E::SizeTooLong)?;
                } else {
                    match b {
                        b'\r' => self.size_line_cr(),
                        b'\n' => return Err(E::BareLf),
                        b';' => self.state = State::Ext(Ext::NameStart),
                        b if is_ws(b) => self.state = State::Ext(Ext::WsBeforeSemi),
                        _ => return Err(E::InvalidSize),
                    }
                }
            }
            State::Ext(ext) => {
                if b == b'\n' {
                    return Err(E::BareLf);
                }
                self.ext_byte()?;
                self.state = State::Ext(self.ext_step(ext, b)?);
                if b == b'\r' {
                    self.size_line_cr();
                }
            }
            State::SizeLf => {
                if b != b'\n' {
                    return Err(E::BareLf);
                }
                self.total = self.total.checked_add(self.size).ok_or(E::BodyTooLarge)?;
                if self.total > self.max_total {
                    return Err(E::BodyTooLarge);
                }
                self.state = if self.size == 0 {
                    State::TrailerStart
                } else {
                    State::Data {
                        remaining: self.size,
                    }
                };
            }
            State::Data { .. } => {
                // Handled in bulk by `decode`; unreachable in practice.
                return Err(E::InvalidSize);
            }
            State::DataCr => {
                if b != b'\r' {
                    return Err(E::MissingDataCrlf);
                }
                self.state = State::DataLf;
            }
            State::DataLf => {
                if b != b'\n' {
                    return Err(E::MissingDataCrlf);
                }
                self.state = State::SizeStart;
            }
            State::TrailerStart => {
                if b == b'\r' {
                    self.state = State::FinalLf;
                } else if b == b'\n' {
                    return Err(E::BareLf);
                } else if is_tchar(b) {
                    self.trailer_byte(b)?;
                    self.state = State::TrailerName;
                } else {
                    return Err(E::InvalidTrailer);
                }
            }
            State::TrailerName => {
                self.trailer_byte(b)?;
                if b == b':' {
                    self.state = State::TrailerValue;
                } else if b == b'\n' {
                    return Err(E::BareLf);
                } else if !is_tchar(b) {
                    return Err(E::InvalidTrailer);
                }
            }
            State::TrailerValue => {
                self.trailer_byte(b)?;
                match b {
                    b'\r' => self.state = State::TrailerLf,
                    b'\n' => return Err(E::BareLf),
                    b'\t' | b' '..=b'~' | 0x80..=0xff => {}
                    _ => return Err(E::InvalidTrailer),
                }
            }
            State::TrailerLf => {
                self.trailer_byte(b)?;
                if b != b'\n' {
                    return Err(E::BareLf);
                }
                self.state = State::TrailerStart;
            }
            State::FinalLf => {
                if b != b'\n' {
                    return Err(E::BareLf);
                }
                self.state = State::Done;
            }
            State::Done => {}
        }
        Ok(())
    }

    /// Advances the extension grammar by one byte (never LF). A CR is only
    /// accepted where the line may end; the caller then switches to `SizeLf`.
    fn ext_step(&self, ext: Ext, b: u8) -> Result<Ext, ChunkedError> {
        use ChunkedError::InvalidExtension as Bad;
        let next = match ext {
            Ext::WsBeforeSemi => match b {
                b';' => Ext::NameStart,
                b if is_ws(b) => Ext::WsBeforeSemi,
                _ => return Err(Bad),
            },
            Ext::NameStart => match b {
                b if is_ws(b) => Ext::NameStart,
                b if is_tchar(b) => Ext::Name,
                _ => return Err(Bad),
            },
            Ext::Name => match b {
                b'\r' => Ext::Name,
                b';' => Ext::NameStart,
                b'=' => Ext::ValueStart,
                b if is_ws(b) => Ext::WsAfterName,
                b if is_tchar(b) => Ext::Name,
                _ => return Err(Bad),
            },
            Ext::WsAfterName => match b {
                b';' => Ext::NameStart,
                b'=' => Ext::ValueStart,
                b if is_ws(b) => Ext::WsAfterName,
                _ => return Err(Bad),
            },
            Ext::ValueStart => match b {
                b'"' => Ext::Quoted,
                b if is_ws(b) => Ext::ValueStart,
                b if is_tchar(b) => Ext::TokenValue,
                _ => return Err(Bad),
            },
            Ext::TokenValue => match b {
                b'\r' => Ext::TokenValue,
                b';' => Ext::NameStart,
                b if is_ws(b) => Ext::WsBeforeSemi,
                b if is_tchar(b) => Ext::TokenValue,
                _ => return Err(Bad),
            },
            Ext::Quoted => match b {
                b'"' => Ext::AfterQuoted,
                b'\\' => Ext::QuotedEscape,
                b'\t' | b' ' | 0x21 | 0x23..=0x5b | 0x5d..=0x7e | 0x80..=0xff => Ext::Quoted,
                _ => return Err(Bad),
            },
            Ext::QuotedEscape => match b {
                b'\t' | b' '..=b'~' | 0x80..=0xff => Ext::Quoted,
                _ => return Err(Bad),
            },
            Ext::AfterQuoted => match b {
                b'\r' => Ext::AfterQuoted,
                b';' => Ext::NameStart,
                b if is_ws(b) => Ext::WsBeforeSemi,
                _ => return Err(Bad),
            },
        };
        Ok(next)
    }
}

/// Appends `data` to `buf` as one chunk (`hex-size CRLF data CRLF`).
/// Empty data writes nothing (an empty chunk would end the body).
pub fn encode_chunk(buf: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    push_hex(buf, data.len() as u64);
    buf.extend_from_slice(b"\r\n");
    buf.extend_from_slice(data);
    buf.extend_from_slice(b"\r\n");
}

/// Frames one chunk in place at the start of `buf` (free space of a send buffer): `fill`
/// gets the room for the chunk's data, after space for its chunk-size line, and returns how
/// many bytes it wrote there; the chunk-size line goes before them and CRLF after. The
/// chunk-size keeps the width reserved for the room (leading zeros, which `1*HEXDIG`
/// allows, RFC 9112 §7.1), so the data never moves. Returns the bytes of `buf` used;
/// nothing is written (0) when `buf` cannot hold a one-byte chunk or `fill` wrote nothing.
pub fn encode_chunk_in_place(buf: &mut [u8], fill: &mut dyn FnMut(&mut [u8]) -> usize) -> usize {
    // The widest chunk-size line `buf` could need, then the data that fits around it.
    let width = hex_width(buf.len() as u64);
    let Some(room) = buf.len().checked_sub(width + 4).filter(|&r| r > 0) else {
        return 0;
    };
    let start = width + 2;
    let Some(data) = buf.get_mut(start..start + room) else {
        return 0;
    };
    let n = fill(data).min(room);
    if n == 0 {
        return 0;
    }
    let mut v = n as u64;
    for digit in buf[..width].iter_mut().rev() {
        *digit = HEX_DIGITS[(v & 0xf) as usize];
        v >>= 4;
    }
    buf[width..start].copy_from_slice(b"\r\n");
    buf[start + n..start + n + 2].copy_from_slice(b"\r\n");
    start + n + 2
}

/// Hex digits of `n` (at least one).
fn hex_width(n: u64) -> usize {
    (((64 - n.leading_zeros()) as usize).div_ceil(4)).max(1)
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Appends the lowercase hex representation of `n` to `buf`.
fn push_hex(buf: &mut Vec<u8>, n: u64) {
    let mut tmp = [0u8; 16];
    let mut i = tmp.len();
    let mut v = n;
    loop {
        i -= 1;
        tmp[i] = HEX_DIGITS[(v & 0xf) as usize];
        v >>= 4;
        if v == 0 {
            break;
        }
    }
    buf.extend_from_slice(&tmp[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8]) -> Result<(Vec<u8>, usize, bool), ChunkedError> {
        let mut d = ChunkedDecoder::new(1 << 20, 1024);
        let mut out = BytesMut::new();
        let n = d.decode(input, &mut out, usize::MAX)?;
        Ok((out.to_vec(), n, d.is_done()))
    }

    #[test]
    fn simple_body() {
        let (data, n, done) = decode_all(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nNEXT").unwrap();
        assert_eq!(data, b"hello world");
        assert_eq!(n, 26);
        assert!(done);
    }

    #[test]
    fn extensions_and_trailers() {
        let input = b"5;a=b;c;d=\"q\\\"x\" ; e = f\r\nhello\r\n0;last\r\nX-T: 1\r\nY:\r\n\r\n";
        let (data, n, done) = decode_all(input).unwrap();
        assert_eq!(data, b"hello");
        assert_eq!(n, input.len());
        assert!(done);
    }

    #[test]
    fn every_split_point() {
        let input: &[u8] = b"3;x=\"y z\"\r\nabc\r\nA\r\n0123456789\r\n0\r\nT: v\r\n\r\n";
        for split in 0..=input.len() {
            let mut d = ChunkedDecoder::new(1000, 100);
            let mut out = BytesMut::new();
            let (a, b) = input.split_at(split);
            let n1 = d.decode(a, &mut out, usize::MAX).unwrap();
            assert_eq!(n1, a.len());
            let n2 = d.decode(b, &mut out, usize::MAX).unwrap();
            assert_eq!(n2, b.len());
            assert!(d.is_done());
            assert_eq!(&out[..], b"abc0123456789");
        }
    }

    #[test]
    fn data_budget_limits_output() {
        let mut d = ChunkedDecoder::new(1000, 100);
        let mut out = BytesMut::new();
        let input = b"a\r\n0123456789\r\n0\r\n\r\n";
        let n = d.decode(input, &mut out, 4).unwrap();
        assert_eq!(n, 7);
        assert_eq!(&out[..], b"0123");
        let n2 = d.decode(&input[n..], &mut out, 100).unwrap();
        assert_eq!(n + n2, input.len());
        assert!(d.is_done());
    }

    #[test]
    fn rejections() {
        let cases: &[(&[u8], ChunkedError)] = &[
            (b"5\nhello\r\n", ChunkedError::BareLf),
            (b"\n", ChunkedError::BareLf),
            (b"5;a=b\nhello", ChunkedError::BareLf),
            (b"5\rhello", ChunkedError::BareLf),
            (b"x\r\n", ChunkedError::InvalidSize),
            (b"\r\n", ChunkedError::InvalidSize),
            (b"-5\r\n", ChunkedError::InvalidSize),
            (b"0x5\r\n", ChunkedError::InvalidSize),
            (b"11111111111111111\r\n", ChunkedError::SizeTooLong),
            (b"5 \r\n", ChunkedError::InvalidExtension),
            (b"5;\r\n", ChunkedError::InvalidExtension),
            (b"5;a=\r\n", ChunkedError::InvalidExtension),
            (b"5;a=\"x\r\n", ChunkedError::InvalidExtension),
            (b"5;a@b\r\n", ChunkedError::InvalidExtension),
            (b"5\r\nhelloX\r\n", ChunkedError::MissingDataCrlf),
            (b"5\r\nhello\n", ChunkedError::MissingDataCrlf),
            (b"0\r\nbad header\r\n\r\n", ChunkedError::InvalidTrailer),
            (b"0\r\n folded\r\n\r\n", ChunkedError::InvalidTrailer),
            (b"0\r\nA: b\n\r\n", ChunkedError::BareLf),
            (b"0\r\n\n", ChunkedError::BareLf),
            (b"0\r\n\rX", ChunkedError::BareLf),
        ];
        for (input, want) in cases {
            assert_eq!(
                decode_all(input).map(|_| ()),
                Err(*want),
                "input {:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn limits() {
        let mut d = ChunkedDecoder::new(10, 100);
        let mut out = BytesMut::new();
        assert_eq!(
            d.decode(b"5\r\nhello\r\n6\r\n", &mut out, usize::MAX),
            Err(ChunkedError::BodyTooLarge)
        );
        let mut d = ChunkedDecoder::new(10, 8);
        assert_eq!(
            d.decode(b"0\r\nAbcdef: ghij\r\n\r\n", &mut out, usize::MAX),
            Err(ChunkedError::TrailerTooLarge)
        );
        let mut d = ChunkedDecoder::new(10, 8);
        let mut long = b"1;".to_vec();
        long.extend(std::iter::repeat_n(b'a', MAX_EXT_LEN + 1));
        assert_eq!(
            d.decode(&long, &mut out, usize::MAX),
            Err(ChunkedError::ExtensionTooLong)
        );
        // Exactly 16 digits is fine.
        let mut d = ChunkedDecoder::new(u64::MAX, 8);
        assert!(d.decode(b"000000000000000f\r\n", &mut out, 0).is_ok());
    }

    #[test]
    fn encoder() {
        let mut buf = Vec::new();
        encode_chunk(&mut buf, b"hello world, this is 26 b!");
        encode_chunk(&mut buf, b"");
        buf.extend_from_slice(LAST_CHUNK);
        assert_eq!(buf, b"1a\r\nhello world, this is 26 b!\r\n0\r\n\r\n");
        let mut d = ChunkedDecoder::new(100, 100);
        let mut out = BytesMut::new();
        assert_eq!(d.decode(&buf, &mut out, 100), Ok(buf.len()));
        assert!(d.is_done());
    }

    #[test]
    fn chunks_framed_in_place_decode_like_appended_ones() {
        // Room for 300 bytes: a 3-digit chunk-size is reserved; a short fill keeps it.
        for (space, wrote) in [(300usize, 296usize), (300, 26), (300, 1), (7, 1), (6, 0)] {
            let mut buf = vec![b'x'; space];
            let used = encode_chunk_in_place(&mut buf, &mut |room| {
                let n = wrote.min(room.len());
                room[..n].fill(b'a');
                n
            });
            if wrote == 0 {
                assert_eq!(used, 0, "nothing filled, nothing framed");
                continue;
            }
            let n = wrote.min(space - hex_width(space as u64) - 4);
            let mut wire = buf[..used].to_vec();
            wire.extend_from_slice(LAST_CHUNK);
            let mut d = ChunkedDecoder::new(1 << 20, 100);
            let mut out = BytesMut::new();
            assert_eq!(d.decode(&wire, &mut out, 1 << 20), Ok(wire.len()));
            assert!(d.is_done());
            assert_eq!(&out[..], vec![b'a'; n].as_slice(), "space {space}");
        }
        let mut called = false;
        let used = encode_chunk_in_place(&mut [0u8; 5], &mut |_| {
            called = true;
            1
        });
        assert_eq!((used, called), (0, false), "5 bytes hold no chunk");
        assert_eq!(hex_width(0), 1);
        assert_eq!(hex_width(0xfff), 3);
        assert_eq!(hex_width(0x1000), 4);
    }
}
