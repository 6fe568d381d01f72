#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| zcore_backends::fuzz::fuzz_config(data));
