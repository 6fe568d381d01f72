#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| zcore_compat::fuzz::fuzz_redb_codec(data));
