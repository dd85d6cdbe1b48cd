//! Arbitrary TCP segments (any flags, numbers near the expected ones, any options: SACK
//! blocks, timestamps, window scale, malformed bytes) into a smoltcp socket in every state.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tapir_fuzz::tcp_segments::run(data));
