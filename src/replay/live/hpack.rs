//! The part of HPACK (RFC 7541) a capture reader needs: decoding header blocks, with the
//! static table, the dynamic table and Huffman-coded strings. Sans-IO, bounded, never
//! panics on bad input.

use std::collections::VecDeque;
use std::sync::OnceLock;

/// An HPACK decoding error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HpackError {
    /// The block ends inside a representation.
    #[error("header block ends early")]
    Truncated,
    /// An integer does not fit.
    #[error("integer overflow")]
    Overflow,
    /// A table index points nowhere.
    #[error("bad table index {0}")]
    BadIndex(usize),
    /// A Huffman-coded string does not decode.
    #[error("bad Huffman code")]
    Huffman,
    /// A dynamic table size update above the limit.
    #[error("table size update too large")]
    TableSize,
}

/// A header field: name and value bytes.
pub type Field = (Vec<u8>, Vec<u8>);

/// Decoder state of one direction of a connection.
#[derive(Debug, Clone)]
pub struct Decoder {
    table: VecDeque<Field>,
    size: usize,
    max_size: usize,
    limit: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new()
    }
}

fn entry_size(field: &Field) -> usize {
    field.0.len() + field.1.len() + 32
}

impl Decoder {
    /// A decoder with the default 4096-byte dynamic table (and a generous upper limit, as
    /// the peer's SETTINGS are not tracked).
    pub fn new() -> Self {
        Decoder {
            table: VecDeque::new(),
            size: 0,
            max_size: 4096,
            limit: 1 << 20,
        }
    }

    fn evict(&mut self) {
        while self.size > self.max_size {
            match self.table.pop_back() {
                Some(f) => self.size -= entry_size(&f),
                None => {
                    self.size = 0;
                    break;
                }
            }
        }
    }

    fn insert(&mut self, field: Field) {
        self.size += entry_size(&field);
        self.table.push_front(field);
        self.evict();
    }

    fn get(&self, index: usize) -> Result<Field, HpackError> {
        if index == 0 {
            return Err(HpackError::BadIndex(index));
        }
        if let Some((n, v)) = STATIC.get(index - 1) {
            return Ok((n.as_bytes().to_vec(), v.as_bytes().to_vec()));
        }
        self.table
            .get(index - 1 - STATIC.len())
            .cloned()
            .ok_or(HpackError::BadIndex(index))
    }

    /// Decodes a complete header block.
    pub fn decode(&mut self, mut block: &[u8]) -> Result<Vec<Field>, HpackError> {
        let mut fields = Vec::new();
        while let Some(&first) = block.first() {
            if first & 0x80 != 0 {
                let (index, rest) = integer(block, 7)?;
                block = rest;
                fields.push(self.get(index)?);
            } else if first & 0xe0 == 0x20 {
                let (size, rest) = integer(block, 5)?;
                block = rest;
                if size > self.limit {
                    return Err(HpackError::TableSize);
                }
                self.max_size = size;
                self.evict();
            } else {
                // Literal: with incremental indexing (01), without (0000) or never (0001).
                let (prefix, index_it) = if first & 0x40 != 0 {
                    (6, true)
                } else {
                    (4, false)
                };
                let (index, rest) = integer(block, prefix)?;
                block = rest;
                let name = if index == 0 {
                    let (name, rest) = string(block)?;
                    block = rest;
                    name
                } else {
                    self.get(index)?.0
                };
                let (value, rest) = string(block)?;
                block = rest;
                let field = (name, value);
                if index_it {
                    self.insert(field.clone());
                }
                fields.push(field);
            }
        }
        Ok(fields)
    }
}

/// Decodes an integer with an `n`-bit prefix (RFC 7541 §5.1).
fn integer(block: &[u8], n: u32) -> Result<(usize, &[u8]), HpackError> {
    let (&first, mut rest) = block.split_first().ok_or(HpackError::Truncated)?;
    let max = (1usize << n) - 1;
    let mut value = usize::from(first) & max;
    if value < max {
        return Ok((value, rest));
    }
    let mut shift = 0u32;
    loop {
        let (&b, tail) = rest.split_first().ok_or(HpackError::Truncated)?;
        rest = tail;
        if shift > 28 {
            return Err(HpackError::Overflow);
        }
        value = value
            .checked_add(usize::from(b & 0x7f) << shift)
            .ok_or(HpackError::Overflow)?;
        shift += 7;
        if b & 0x80 == 0 {
            return Ok((value, rest));
        }
    }
}

/// Decodes a string literal (RFC 7541 §5.2).
fn string(block: &[u8]) -> Result<(Vec<u8>, &[u8]), HpackError> {
    let huffman = block.first().ok_or(HpackError::Truncated)? & 0x80 != 0;
    let (len, rest) = integer(block, 7)?;
    let bytes = rest.get(..len).ok_or(HpackError::Truncated)?;
    let rest = rest.get(len..).ok_or(HpackError::Truncated)?;
    let value = if huffman {
        huffman_decode(bytes)?
    } else {
        bytes.to_vec()
    };
    Ok((value, rest))
}

/// The Huffman code as a binary tree: node → [child for bit 0, child for bit 1]; a child
/// is `LEAF | symbol` or the index of the next node.
const LEAF: u16 = 0x8000;

fn tree() -> &'static Vec<[u16; 2]> {
    static TREE: OnceLock<Vec<[u16; 2]>> = OnceLock::new();
    TREE.get_or_init(|| {
        let mut nodes: Vec<[u16; 2]> = vec![[0, 0]];
        for (symbol, (&code, &bits)) in ENCODE_CODES
            .iter()
            .zip(ENCODE_CODE_LENGTHS.iter())
            .enumerate()
        {
            let mut node = 0usize;
            for i in (0..u32::from(bits)).rev() {
                let bit = ((code >> i) & 1) as usize;
                if i == 0 {
                    nodes[node][bit] = LEAF | symbol as u16;
                } else {
                    let next = nodes[node][bit];
                    if next == 0 {
                        nodes.push([0, 0]);
                        let new = (nodes.len() - 1) as u16;
                        nodes[node][bit] = new;
                        node = usize::from(new);
                    } else {
                        node = usize::from(next);
                    }
                }
            }
        }
        nodes
    })
}

/// Decodes a Huffman-coded string (RFC 7541 §5.2, Appendix B).
pub fn huffman_decode(bytes: &[u8]) -> Result<Vec<u8>, HpackError> {
    let nodes = tree();
    let mut out = Vec::with_capacity(bytes.len() * 8 / 5);
    let mut node = 0usize;
    let mut depth = 0u32;
    for &byte in bytes {
        for i in (0..8).rev() {
            let bit = usize::from((byte >> i) & 1);
            let next = nodes.get(node).ok_or(HpackError::Huffman)?[bit];
            if next & LEAF != 0 {
                out.push((next & 0xff) as u8);
                node = 0;
                depth = 0;
            } else if next == 0 {
                // The EOS code (30 ones) or a code that does not exist.
                return Err(HpackError::Huffman);
            } else {
                node = usize::from(next);
                depth += 1;
            }
        }
    }
    // Padding: at most 7 bits, all ones (a prefix of EOS).
    if depth > 7 {
        return Err(HpackError::Huffman);
    }
    Ok(out)
}

/// The static table (RFC 7541 Appendix A).
const STATIC: [(&str, &str); 61] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];

// The Huffman code of RFC 7541 Appendix B (symbols 0..=255; EOS is 30 ones), as tabulated
// by the h2 crate (MIT).
const ENCODE_CODES: [u32; 256] = [
    0x1ff8, 0x7fffd8, 0xfffffe2, 0xfffffe3, 0xfffffe4, 0xfffffe5, 0xfffffe6, 0xfffffe7, 0xfffffe8,
    0xffffea, 0x3ffffffc, 0xfffffe9, 0xfffffea, 0x3ffffffd, 0xfffffeb, 0xfffffec, 0xfffffed,
    0xfffffee, 0xfffffef, 0xffffff0, 0xffffff1, 0xffffff2, 0x3ffffffe, 0xffffff3, 0xffffff4,
    0xffffff5, 0xffffff6, 0xffffff7, 0xffffff8, 0xffffff9, 0xffffffa, 0xffffffb, 0x14, 0x3f8,
    0x3f9, 0xffa, 0x1ff9, 0x15, 0xf8, 0x7fa, 0x3fa, 0x3fb, 0xf9, 0x7fb, 0xfa, 0x16, 0x17, 0x18,
    0x0, 0x1, 0x2, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f, 0x5c, 0xfb, 0x7ffc, 0x20, 0xffb,
    0x3fc, 0x1ffa, 0x21, 0x5d, 0x5e, 0x5f, 0x60, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68,
    0x69, 0x6a, 0x6b, 0x6c, 0x6d, 0x6e, 0x6f, 0x70, 0x71, 0x72, 0xfc, 0x73, 0xfd, 0x1ffb, 0x7fff0,
    0x1ffc, 0x3ffc, 0x22, 0x7ffd, 0x3, 0x23, 0x4, 0x24, 0x5, 0x25, 0x26, 0x27, 0x6, 0x74, 0x75,
    0x28, 0x29, 0x2a, 0x7, 0x2b, 0x76, 0x2c, 0x8, 0x9, 0x2d, 0x77, 0x78, 0x79, 0x7a, 0x7b, 0x7ffe,
    0x7fc, 0x3ffd, 0x1ffd, 0xffffffc, 0xfffe6, 0x3fffd2, 0xfffe7, 0xfffe8, 0x3fffd3, 0x3fffd4,
    0x3fffd5, 0x7fffd9, 0x3fffd6, 0x7fffda, 0x7fffdb, 0x7fffdc, 0x7fffdd, 0x7fffde, 0xffffeb,
    0x7fffdf, 0xffffec, 0xffffed, 0x3fffd7, 0x7fffe0, 0xffffee, 0x7fffe1, 0x7fffe2, 0x7fffe3,
    0x7fffe4, 0x1fffdc, 0x3fffd8, 0x7fffe5, 0x3fffd9, 0x7fffe6, 0x7fffe7, 0xffffef, 0x3fffda,
    0x1fffdd, 0xfffe9, 0x3fffdb, 0x3fffdc, 0x7fffe8, 0x7fffe9, 0x1fffde, 0x7fffea, 0x3fffdd,
    0x3fffde, 0xfffff0, 0x1fffdf, 0x3fffdf, 0x7fffeb, 0x7fffec, 0x1fffe0, 0x1fffe1, 0x3fffe0,
    0x1fffe2, 0x7fffed, 0x3fffe1, 0x7fffee, 0x7fffef, 0xfffea, 0x3fffe2, 0x3fffe3, 0x3fffe4,
    0x7ffff0, 0x3fffe5, 0x3fffe6, 0x7ffff1, 0x3ffffe0, 0x3ffffe1, 0xfffeb, 0x7fff1, 0x3fffe7,
    0x7ffff2, 0x3fffe8, 0x1ffffec, 0x3ffffe2, 0x3ffffe3, 0x3ffffe4, 0x7ffffde, 0x7ffffdf,
    0x3ffffe5, 0xfffff1, 0x1ffffed, 0x7fff2, 0x1fffe3, 0x3ffffe6, 0x7ffffe0, 0x7ffffe1, 0x3ffffe7,
    0x7ffffe2, 0xfffff2, 0x1fffe4, 0x1fffe5, 0x3ffffe8, 0x3ffffe9, 0xffffffd, 0x7ffffe3, 0x7ffffe4,
    0x7ffffe5, 0xfffec, 0xfffff3, 0xfffed, 0x1fffe6, 0x3fffe9, 0x1fffe7, 0x1fffe8, 0x7ffff3,
    0x3fffea, 0x3fffeb, 0x1ffffee, 0x1ffffef, 0xfffff4, 0xfffff5, 0x3ffffea, 0x7ffff4, 0x3ffffeb,
    0x7ffffe6, 0x3ffffec, 0x3ffffed, 0x7ffffe7, 0x7ffffe8, 0x7ffffe9, 0x7ffffea, 0x7ffffeb,
    0xffffffe, 0x7ffffec, 0x7ffffed, 0x7ffffee, 0x7ffffef, 0x7fffff0, 0x3ffffee,
];

const ENCODE_CODE_LENGTHS: [u8; 256] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28,
    28, 28, 28, 28, 28, 28, 28, 28, 6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5,
    5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, 13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
    7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, 15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6,
    6, 5, 6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, 20, 22, 20, 20, 22, 22, 22, 23, 22,
    23, 23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, 22,
    21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21, 23, 22, 23, 23, 20,
    22, 22, 22, 23, 22, 22, 23, 26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, 19,
    21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, 20, 24, 20, 21, 22, 21, 21, 23, 22,
    22, 25, 25, 24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7541_c4_requests_with_huffman() {
        let mut d = Decoder::new();
        let block = [
            0x82, 0x86, 0x84, 0x41, 0x8c, 0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab,
            0x90, 0xf4, 0xff,
        ];
        let fields = d.decode(&block).unwrap();
        assert_eq!(fields[0], (b":method".to_vec(), b"GET".to_vec()));
        assert_eq!(fields[2], (b":path".to_vec(), b"/".to_vec()));
        assert_eq!(
            fields[3],
            (b":authority".to_vec(), b"www.example.com".to_vec())
        );
        // The second request refers to the dynamic table entry.
        let block = [
            0x82, 0x86, 0x84, 0xbe, 0x58, 0x86, 0xa8, 0xeb, 0x10, 0x64, 0x9c, 0xbf,
        ];
        let fields = d.decode(&block).unwrap();
        assert_eq!(
            fields[3],
            (b":authority".to_vec(), b"www.example.com".to_vec())
        );
        assert_eq!(fields[4], (b"cache-control".to_vec(), b"no-cache".to_vec()));
    }

    fn hex(text: &str) -> Vec<u8> {
        let digits: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
        digits
            .chunks(2)
            .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
            .collect()
    }

    fn text(fields: &[Field]) -> Vec<(String, String)> {
        fields
            .iter()
            .map(|(n, v)| {
                (
                    String::from_utf8_lossy(n).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect()
    }

    /// RFC 7541 C.6: responses with Huffman coding in a 256-byte dynamic table, so entries
    /// are evicted and the indexes of the third response only work if eviction is right.
    #[test]
    fn rfc7541_c6_responses_with_eviction() {
        let mut d = Decoder::new();
        // A dynamic table size update to 256 (the example's SETTINGS), then C.6.1.
        let first = hex(
            "3fe1 01 4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 \
                         0b81 66e0 82a6 2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
        );
        let date = ("date", "Mon, 21 Oct 2013 20:13:21 GMT");
        let location = ("location", "https://www.example.com");
        let expect = |list: &[(&str, &str)]| -> Vec<(String, String)> {
            list.iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            text(&d.decode(&first).unwrap()),
            expect(&[
                (":status", "302"),
                ("cache-control", "private"),
                date,
                location
            ])
        );
        let second = hex("4883 640e ff c1 c0 bf");
        assert_eq!(
            text(&d.decode(&second).unwrap()),
            expect(&[
                (":status", "307"),
                ("cache-control", "private"),
                date,
                location
            ])
        );
        let third = hex(
            "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a \
                         839b d9ab 77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 \
                         72c1 ab27 0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07",
        );
        assert_eq!(
            text(&d.decode(&third).unwrap()),
            expect(&[
                (":status", "200"),
                ("cache-control", "private"),
                ("date", "Mon, 21 Oct 2013 20:13:22 GMT"),
                location,
                ("content-encoding", "gzip"),
                (
                    "set-cookie",
                    "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1"
                ),
            ])
        );
        // The table now holds exactly the three entries of the RFC's final state (215 bytes).
        assert_eq!(d.table.len(), 3);
        assert_eq!(d.size, 215);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut d = Decoder::new();
        assert!(d
            .decode(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])
            .is_err());
        assert!(d.decode(&[0x80]).is_err());
        assert!(d.decode(&[0x41, 0xff]).is_err());
        assert!(huffman_decode(&[0xff, 0xff, 0xff, 0xff]).is_err());
    }
}
