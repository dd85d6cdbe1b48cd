//! The chunked decoder: the same bytes decoded whole (unbounded output) and split (small
//! output budgets) must give the same body, the same end and the same error; a decoded body
//! re-encoded decodes to itself.

use bytes::BytesMut;
use tapir::http::h1::{encode_chunk, ChunkedDecoder, ChunkedError, LAST_CHUNK};

const MAX_TOTAL: u64 = 1 << 20;
const MAX_TRAILER: usize = 1024;

/// What decoding gave: body, bytes consumed, done, error.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    body: Vec<u8>,
    consumed: usize,
    done: bool,
    error: Option<ChunkedError>,
}

fn whole(input: &[u8]) -> Outcome {
    let mut decoder = ChunkedDecoder::new(MAX_TOTAL, MAX_TRAILER);
    let mut out = BytesMut::new();
    let (consumed, error) = match decoder.decode(input, &mut out, usize::MAX) {
        Ok(n) => (n, None),
        Err(e) => (0, Some(e)),
    };
    assert!(consumed <= input.len());
    // total() counts declared chunk sizes: ahead of the body inside a chunk, equal at the end.
    assert!(decoder.total() >= out.len() as u64);
    if decoder.is_done() {
        assert_eq!(decoder.total(), out.len() as u64, "total() counts the body");
    }
    Outcome {
        body: out.to_vec(),
        consumed,
        done: decoder.is_done(),
        error,
    }
}

fn split(input: &[u8], seed: u8, budget: usize) -> Outcome {
    let mut decoder = ChunkedDecoder::new(MAX_TOTAL, MAX_TRAILER);
    let mut out = BytesMut::new();
    let mut pending: Vec<u8> = Vec::new();
    let mut consumed = 0;
    for segment in crate::split(input, seed) {
        pending.extend_from_slice(segment);
        loop {
            match decoder.decode(&pending, &mut out, budget) {
                Ok(n) => {
                    assert!(n <= pending.len());
                    pending.drain(..n);
                    consumed += n;
                    if n == 0 || decoder.is_done() {
                        break;
                    }
                }
                Err(e) => {
                    return Outcome {
                        body: out.to_vec(),
                        consumed: 0,
                        done: decoder.is_done(),
                        error: Some(e),
                    }
                }
            }
        }
        if decoder.is_done() {
            break;
        }
    }
    Outcome {
        body: out.to_vec(),
        consumed,
        done: decoder.is_done(),
        error: None,
    }
}

/// The target: `[split seed] [budget] input...`.
pub fn run(data: &[u8]) {
    let [seed, budget, input @ ..] = data else {
        return;
    };
    let budget = usize::from(*budget % 32) + 1;
    let a = whole(input);
    let b = split(input, *seed, budget);
    assert_eq!(a.error, b.error, "same error whole and split");
    if a.error.is_none() {
        assert_eq!(a, b, "same body and end whole and split");
    } else {
        // The split run stops at the same byte; its body is a prefix of the same bytes.
        assert!(a.body.starts_with(&b.body) || b.body.starts_with(&a.body));
    }
    if a.done {
        let mut encoded = Vec::new();
        for chunk in a.body.chunks(usize::from(*seed) + 1) {
            encode_chunk(&mut encoded, chunk);
        }
        encoded.extend_from_slice(LAST_CHUNK);
        let again = whole(&encoded);
        assert_eq!(again.error, None);
        assert!(again.done);
        assert_eq!(again.consumed, encoded.len());
        assert_eq!(again.body, a.body, "re-encoded body decodes to itself");
    }
}
