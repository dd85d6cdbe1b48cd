//! A full in-memory connection to a Server: client bytes (split into segments) → HTTP/1.1.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tapir_fuzz::conn::run(data, false));
