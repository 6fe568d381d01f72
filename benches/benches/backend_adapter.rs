//! Adapter vs raw engine, side by side in one criterion group per workload and backend.
//!
//! For every backend (fjall, redb, memory) the same workload runs through our adapter
//! (`Arc<dyn StorageBackend>`) and directly on the raw engine, on two data sets built by the
//! same code with the same options (fjall and redb: loaded with the raw engine in a fresh
//! tempdir, settled, closed, then one copy reopened raw and the other through the adapter).
//!
//! | group | raw engine | adapter |
//! |---|---|---|
//! | `get_<backend>` | fjall `db.snapshot().get(&ks, k)`; redb read txn + `open_table` + `get` per call; `RwLock<BTreeMap>` read lock + `get` | `backend.get(&c, k)` |
//! | `scan_<backend>` | 100 entries from a random start, forward (fjall via a fresh `Snapshot`, redb via a fresh read txn) | one `scan` with limit 100 |
//! | `batch_<backend>` | 1,000 random puts: fjall `OwnedWriteBatch` + `PersistMode::Buffer`; redb write txn + `Durability::None`; `BTreeMap` inserts under the write lock | `WriteBatch` of 1,000 puts, `Durability::Buffered` |
//!
//! **How the adapter is driven.** A tokio current-thread runtime; routine `adapter` calls
//! `Runtime::block_on` once per operation (per get, per scan, per batch) — what a synchronous
//! embedder pays. Routine `adapter_in_rt` (get only) runs the whole timed loop inside one
//! `block_on`, i.e. the cost seen by async code already running on the runtime; the difference
//! between the two is the `block_on` entry cost.
//!
//! **Equal work on both sides.** Both sides use the same pre-generated key sequence, starting
//! at the same position. A get folds the value into `len + first byte` and a scan sums key and
//! value lengths on both sides; the adapter's owned `Vec`s (its API returns owned data) are
//! created and dropped inside the timed region, the raw engines' zero-copy guards/slices too.
//! A batch routine builds its batch from the same pre-generated keys/values on both sides
//! (the adapter needs owned `Vec`s, the raw engines copy from slices). Batch keys are random
//! picks from the preloaded key space, so the data set keeps its size.
//!
//! Sizes: 100,000 preloaded keys (16 B) with 100-byte incompressible values; fjall and redb
//! caches pinned at 256 MiB on both sides. `ZCORE_BENCH_QUICK=1` gives a smoke run,
//! `cargo test --benches` runs every routine once on 2,000 keys, `ZCORE_BENCH_BACKENDS=fjall,redb`
//! restricts the backends and `ZCORE_BENCH_ADAPTER_FIRST=1` measures the adapter first.
//! `cargo run -p zcore-benches --release --bin ratios` prints the ratio table afterwards.
//! The engine fixtures live in `engines.rs` (shared with `adapter_breakdown.rs`, which splits
//! the adapter's cost into its parts with interleaved rounds).

#![allow(
    clippy::expect_used,
    reason = "benchmark harness: an engine error aborts the run with its message"
)]

mod engines;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, SamplingMode, Throughput};
use tokio::runtime::Runtime;
use zcore_benches::config::{BATCH_LEN, BenchConfig, CACHE_BYTES, Mode, SCAN_LEN};
use zcore_benches::data;

use engines::{Adapter, Fixture, Inputs, RawEngine};

// -------------------------------------------------------------------------------- workloads

#[derive(Clone, Copy, PartialEq, Eq)]
enum Variant {
    Raw,
    Adapter,
    AdapterInRuntime,
}

fn variants(cfg: &BenchConfig, with_in_runtime: bool) -> Vec<Variant> {
    let mut v = if cfg.adapter_first {
        vec![Variant::Adapter, Variant::Raw]
    } else {
        vec![Variant::Raw, Variant::Adapter]
    };
    if with_in_runtime {
        v.push(Variant::AdapterInRuntime);
    }
    v
}

fn group<'a>(
    c: &'a mut Criterion,
    cfg: &BenchConfig,
    name: String,
    elements: u64,
    flat: bool,
) -> BenchmarkGroup<'a, WallTime> {
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Elements(elements));
    g.warm_up_time(cfg.warm_up);
    g.nresamples(cfg.nresamples);
    if flat {
        g.sampling_mode(SamplingMode::Flat)
            .sample_size(cfg.batch_sample_size)
            .measurement_time(cfg.batch_measurement);
    } else {
        g.sample_size(cfg.sample_size)
            .measurement_time(cfg.measurement);
    }
    g
}

/// A cyclic cursor over a power-of-two-long input list; each routine starts at 0.
struct Cursor {
    pos: usize,
    mask: usize,
}

impl Cursor {
    fn new(len: usize) -> Self {
        debug_assert!(len.is_power_of_two());
        Self {
            pos: 0,
            mask: len - 1,
        }
    }

    #[inline]
    fn next(&mut self) -> usize {
        let i = self.pos & self.mask;
        self.pos = self.pos.wrapping_add(1);
        i
    }
}

fn bench_get<R: RawEngine>(
    c: &mut Criterion,
    cfg: &BenchConfig,
    rt: &Runtime,
    backend: &str,
    raw: &R,
    adapter: &Adapter,
    inputs: &Inputs,
) {
    let keys = &inputs.get_keys;
    let mut g = group(c, cfg, format!("get_{backend}"), 1, false);
    for variant in variants(cfg, true) {
        let mut cur = Cursor::new(keys.len());
        match variant {
            Variant::Raw => g.bench_function("raw", |b| b.iter(|| raw.get(&keys[cur.next()]))),
            Variant::Adapter => g.bench_function("adapter", |b| {
                b.iter(|| rt.block_on(adapter.get(&keys[cur.next()])))
            }),
            Variant::AdapterInRuntime => g.bench_function("adapter_in_rt", |b| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let start = Instant::now();
                        for _ in 0..iters {
                            black_box(adapter.get(&keys[cur.next()]).await);
                        }
                        start.elapsed()
                    })
                });
            }),
        };
    }
    g.finish();
}

fn bench_scan<R: RawEngine>(
    c: &mut Criterion,
    cfg: &BenchConfig,
    rt: &Runtime,
    backend: &str,
    raw: &R,
    adapter: &Adapter,
    inputs: &Inputs,
) {
    let starts = &inputs.scan_starts;
    let mut g = group(c, cfg, format!("scan_{backend}"), SCAN_LEN as u64, false);
    for variant in variants(cfg, false) {
        let mut cur = Cursor::new(starts.len());
        match variant {
            Variant::Raw => g.bench_function("raw", |b| {
                b.iter(|| raw.scan(&starts[cur.next()], SCAN_LEN));
            }),
            Variant::Adapter | Variant::AdapterInRuntime => g.bench_function("adapter", |b| {
                b.iter(|| rt.block_on(adapter.scan(&starts[cur.next()], SCAN_LEN)));
            }),
        };
    }
    g.finish();
}

fn bench_batch<R: RawEngine>(
    c: &mut Criterion,
    cfg: &BenchConfig,
    rt: &Runtime,
    backend: &str,
    raw: &R,
    adapter: &Adapter,
    inputs: &Inputs,
) {
    let batches = &inputs.batches;
    let mut g = group(c, cfg, format!("batch_{backend}"), BATCH_LEN as u64, true);
    for variant in variants(cfg, false) {
        let mut cur = Cursor::new(batches.len());
        // Background work left by the previous routine must not run into this one. The raw
        // fjall database can be asked; the adapter does not expose its engine, so after an
        // adapter routine (only first with ZCORE_BENCH_ADAPTER_FIRST) we wait for fjall's
        // flush/compaction debt via a fixed pause.
        let mut settled = false;
        let mut settle = |first_was_adapter: bool| {
            if !settled {
                settled = true;
                raw.quiesce(cfg.settle_timeout);
                if first_was_adapter && cfg.mode == Mode::Full {
                    std::thread::sleep(Duration::from_secs(3));
                }
            }
        };
        match variant {
            Variant::Raw => g.bench_function("raw", |b| {
                settle(cfg.adapter_first);
                b.iter(|| raw.write_batch(&batches[cur.next()]));
            }),
            Variant::Adapter | Variant::AdapterInRuntime => g.bench_function("adapter", |b| {
                settle(false);
                b.iter(|| rt.block_on(adapter.write_batch(&batches[cur.next()])));
            }),
        };
    }
    g.finish();
}

fn run_backend<R: RawEngine>(
    c: &mut Criterion,
    cfg: &BenchConfig,
    rt: &Runtime,
    backend: &str,
    fixture: &Fixture<R>,
    inputs: &Inputs,
) {
    engines::warm(rt, cfg, backend, fixture);
    let (raw, adapter) = (&fixture.raw, &fixture.adapter);
    bench_get(c, cfg, rt, backend, raw, adapter, inputs);
    bench_scan(c, cfg, rt, backend, raw, adapter, inputs);
    bench_batch(c, cfg, rt, backend, raw, adapter, inputs);
    rt.block_on(adapter.backend.close()).expect("close adapter");
}

fn main() {
    let cfg = BenchConfig::from_env();
    let mut c = Criterion::default().configure_from_args();
    let rt = engines::runtime();
    let inputs = Inputs::new(&cfg);
    eprintln!(
        "zcore-benches backend_adapter: mode {:?}, {} keys × ({} B key, {} B value), caches {} MiB, \
         adapter driven by a current-thread tokio runtime (block_on per op; get also in-runtime)",
        cfg.mode,
        cfg.keys,
        data::KEY_LEN,
        data::VALUE_LEN,
        CACHE_BYTES >> 20
    );
    if cfg.runs("fjall") {
        let fixture = engines::fjall_fixture(&cfg);
        run_backend(&mut c, &cfg, &rt, "fjall", &fixture, &inputs);
    }
    if cfg.runs("redb") {
        let fixture = engines::redb_fixture(&cfg);
        run_backend(&mut c, &cfg, &rt, "redb", &fixture, &inputs);
    }
    if cfg.runs("memory") {
        let fixture = engines::memory_fixture(&cfg, &rt);
        run_backend(&mut c, &cfg, &rt, "memory", &fixture, &inputs);
    }
    c.final_summary();
}
