//! The chunked decoder, whole against split input and small output budgets.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tapir_fuzz::chunked::run(data));
