//! The capture reader of `tapir replay`: pcap/pcapng bytes → frames → flows → exchanges.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tapir_fuzz::pcap::run(data));
