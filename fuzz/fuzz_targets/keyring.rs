#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| zcore_engine::fuzz::fuzz_keyring(data));
