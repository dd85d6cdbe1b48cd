//! tapir's fuzz targets, as functions of the input bytes (the `fuzz_targets/` binaries are
//! one-line wrappers). Each one asserts an invariant beyond "no panic" where there is one:
//! split input decodes like whole input, the server lets go of every connection.

pub mod chunked;
pub mod conn;
pub mod frames;
pub mod h1;
pub mod pcap;
pub mod tcp_segments;

/// Cuts `data` into segments whose sizes are drawn from a generator seeded with `seed`:
/// 0 keeps it whole; otherwise the low two bits pick the size range (up to 8, 64, 1460 or
/// 16 bytes with empty segments too).
pub fn split(data: &[u8], seed: u8) -> Vec<&[u8]> {
    if seed == 0 {
        return vec![data];
    }
    let mut rng = fastrand::Rng::with_seed(u64::from(seed));
    let (min, max) = match seed & 3 {
        0 => (1, 8),
        1 => (1, 64),
        2 => (1, 1460),
        _ => (0, 16),
    };
    let mut segments = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let n = rng.usize(min..=max).min(rest.len());
        let (head, tail) = rest.split_at(n);
        segments.push(head);
        rest = tail;
    }
    segments
}
