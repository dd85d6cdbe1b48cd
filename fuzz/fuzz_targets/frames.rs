//! Whole Ethernet frames (with delays) into a stack serving the built-in site on port 80.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tapir_fuzz::frames::run(data));
