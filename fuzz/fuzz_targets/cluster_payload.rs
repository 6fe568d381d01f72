#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| zcore_cluster::fuzz::fuzz_payload(data));
