//! A full in-memory connection to a Server: the h2c preface, then client bytes (split into
//! segments) → HTTP/2.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tapir_fuzz::conn::run(data, true));
