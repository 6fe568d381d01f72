//! What the end-to-end value checksum costs (issue: integrity, item 1).
//!
//! The engine verifies a CRC32C over collection ‖ versioned key ‖ header ‖ payload on every
//! read and computes it on every write (`zcore_engine::mvcc::value`). There is no switch to
//! turn it off (a store without it would be a different format), so its cost is measured
//! here as compute time on the exact data shape of the `mvcc` bench (collection `bench`,
//! 16-byte keys, 100-byte values), to be set against that bench's per-operation times from
//! the same session:
//!
//! | group | routine | what |
//! |---|---|---|
//! | `checksum_value` | `crc` | the CRC32C alone, field by field (five `crc32c` calls, as the format defines it and `value.rs` computed it before) |
//! | | `crc_gathered` | the CRC32C alone, as `value::checksum` computes it now (short fields gathered in one aligned stack buffer: two calls) |
//! | | `encode` | `value::encode` (header, CRC, copy into a new `Vec`) |
//! | | `encode_no_crc` | the same allocation and copies without the CRC |
//! | | `decode` | `value::decode_owned` of a stored value (copy of the input included) |
//! | | `decode_no_crc` | the same copy and header strip without the CRC |
//!
//! Share of an MVCC get ≈ `crc / txnget_<b>/adapter`; of a 100-entry scan ≈
//! `100 × crc / txnscan_<b>/adapter`; of a one-key write ≈ `crc / txnwrite_<b>/adapter`.

#![allow(
    clippy::expect_used,
    reason = "benchmark harness: an engine error aborts the run"
)]

use std::hint::black_box;
use std::time::Duration;

use criterion::Criterion;
use zcore_benches::config::{BenchConfig, COLLECTION, Mode};
use zcore_benches::data;
use zcore_engine::mvcc::keys::EncodedKey;
use zcore_engine::mvcc::value::{self, VALUE_OVERHEAD};

fn crc_only(collection: &str, versioned_key: &[u8], header: u8, payload: &[u8]) -> u32 {
    let mut crc = crc32c::crc32c(collection.as_bytes());
    crc = crc32c::crc32c_append(crc, &[0]);
    crc = crc32c::crc32c_append(crc, versioned_key);
    crc = crc32c::crc32c_append(crc, &[header]);
    crc32c::crc32c_append(crc, payload)
}

fn main() {
    let cfg = BenchConfig::from_env();
    let mut c = Criterion::default()
        .warm_up_time(cfg.warm_up)
        .measurement_time(cfg.measurement)
        .sample_size(cfg.sample_size)
        .nresamples(cfg.nresamples)
        .configure_from_args();
    if cfg.mode == Mode::Test {
        c = c.measurement_time(Duration::from_millis(10));
    }
    let key = data::key(42);
    let payload = data::value(42);
    let vk = EncodedKey::encode(&key).at(1_000_000);
    let vk = vk.as_bytes().to_vec();
    let stored = value::encode(COLLECTION, &vk, Some(&payload));
    assert!(value::decode(COLLECTION, &vk, &stored).is_ok());
    assert_eq!(
        value::checksum(COLLECTION, &vk, 0x10, &payload),
        crc_only(COLLECTION, &vk, 0x10, &payload)
    );

    let mut g = c.benchmark_group("checksum_value");
    g.bench_function("crc", |b| {
        b.iter(|| {
            crc_only(
                black_box(COLLECTION),
                black_box(&vk),
                0x10,
                black_box(&payload),
            )
        });
    });
    g.bench_function("crc_gathered", |b| {
        b.iter(|| {
            value::checksum(
                black_box(COLLECTION),
                black_box(&vk),
                0x10,
                black_box(&payload),
            )
        });
    });
    g.bench_function("encode", |b| {
        b.iter(|| {
            value::encode(
                black_box(COLLECTION),
                black_box(&vk),
                Some(black_box(&payload)),
            )
        });
    });
    g.bench_function("encode_no_crc", |b| {
        b.iter(|| {
            let payload = black_box(&payload);
            let mut out = Vec::with_capacity(VALUE_OVERHEAD + payload.len());
            out.push(0x10);
            out.extend_from_slice(&[0; 4]);
            out.extend_from_slice(payload);
            out
        });
    });
    g.bench_function("decode", |b| {
        b.iter(|| {
            value::decode_owned(
                black_box(COLLECTION),
                black_box(&vk),
                black_box(&stored).clone(),
            )
            .expect("decodes")
        });
    });
    g.bench_function("decode_no_crc", |b| {
        b.iter(|| {
            let mut v = black_box(&stored).clone();
            v.drain(..VALUE_OVERHEAD);
            v
        });
    });
    g.finish();
    c.final_summary();
}
