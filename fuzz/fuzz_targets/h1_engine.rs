//! The HTTP/1.1 server engine, fed the same bytes whole and split at arbitrary points.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tapir_fuzz::h1::run(data));
