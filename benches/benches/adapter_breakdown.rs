//! Where the adapter's time goes, measured with interleaved, paired rounds (not criterion).
//!
//! ```text
//! ZCORE_BENCH_BREAKDOWN=1 cargo bench -p zcore-benches --bench adapter_breakdown
//! ```
//!
//! Without `ZCORE_BENCH_BREAKDOWN=1` (so in plain `cargo bench` and `cargo test --benches`) it
//! does nothing; it takes about one minute. Each table runs its cases round-robin — every round runs every case for a
//! fixed number of operations, in an order rotated by one each round — so slow drifts of this
//! shared 2-core VM hit all cases alike. Reported per case: the median time per operation over
//! the rounds, its inter-quartile range, and the median over rounds of
//! `baseline time / case time` (the first case is the baseline; for the engine tables that is
//! the raw engine, so the column is "throughput as a fraction of raw", like `ratios`).
//!
//! Cases, per backend and workload: the raw engine; the raw engine plus the copy into owned
//! `Vec`s that the adapter's API implies; the adapter's future polled once with a no-op waker
//! (no runtime at all: the adapter's own work); the adapter awaited inside one `block_on`; and
//! the adapter with one `block_on` per operation (what `backend_adapter` measures as
//! `adapter`). A first table measures the fixed per-call costs in isolation.

#![allow(
    clippy::expect_used,
    reason = "benchmark harness: an engine error aborts the run with its message"
)]

mod engines;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::hint::black_box;
use std::ops::Bound;
use std::pin::Pin;
use std::sync::RwLock;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use tokio::runtime::Runtime;
use zcore_benches::config::{BATCH_LEN, BenchConfig, COLLECTION, SCAN_LEN};
use zcore_benches::data::{self, Key, Value};
use zcore_engine::{BatchOp, CollectionName, WriteBatch};

use engines::{Adapter, Fixture, Inputs, RawEngine};

/// Polls a future once with a no-op waker. Every adapter call used here completes without
/// suspending (no fsync, no contended writer), so this measures the adapter's own work with no
/// executor around it.
fn poll_once<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    match f.as_mut().poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("future suspended; poll_once cannot drive it"),
    }
}

/// Environment variable that enables this target.
const BREAKDOWN_ENV: &str = "ZCORE_BENCH_BREAKDOWN";

/// A synchronous caller's fast path: poll the adapter's future once with a no-op waker and
/// enter the runtime only if it suspends (never, for gets, scans and buffered writes).
fn poll_then_block_on<F: Future>(rt: &Runtime, f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    match f.as_mut().poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => rt.block_on(f),
    }
}

type RunFn<'a> = Box<dyn FnMut(usize) -> Duration + 'a>;

/// One measured case: runs `n` operations and returns the elapsed time.
struct Case<'a> {
    name: &'static str,
    run: RunFn<'a>,
}

fn case<'a>(name: &'static str, run: impl FnMut(usize) -> Duration + 'a) -> Case<'a> {
    Case {
        name,
        run: Box::new(run),
    }
}

/// Times `n` calls of `op`.
fn timed(n: usize, mut op: impl FnMut(usize) -> usize) -> Duration {
    let start = Instant::now();
    for i in 0..n {
        black_box(op(i));
    }
    start.elapsed()
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = (sorted.len() - 1) as f64 * q;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

fn fmt_ns(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.3} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.1} ns")
    }
}

/// Runs `cases` interleaved for `rounds` rounds of `ops` operations each and prints a table.
fn measure(title: &str, ops: usize, rounds: usize, mut cases: Vec<Case<'_>>) {
    // One untimed round first: warms caches and allocator for every case.
    for c in &mut cases {
        (c.run)(ops.div_ceil(4).max(1));
    }
    let k = cases.len();
    let mut per_op: Vec<Vec<f64>> = vec![Vec::with_capacity(rounds); k];
    for round in 0..rounds {
        for j in 0..k {
            let idx = (round + j) % k;
            let t = (cases[idx].run)(ops);
            per_op[idx].push(t.as_nanos() as f64 / ops as f64);
        }
    }
    println!("\n### {title}\n");
    println!("{ops} ops per round × {rounds} interleaved rounds\n");
    println!("| case | median per op | IQR | baseline/case (median of per-round ratios) |");
    println!("|---|---|---|---|");
    for (i, c) in cases.iter().enumerate() {
        let mut s = per_op[i].clone();
        s.sort_by(f64::total_cmp);
        let mut ratios: Vec<f64> = per_op[0]
            .iter()
            .zip(&per_op[i])
            .map(|(b, x)| b / x)
            .collect();
        ratios.sort_by(f64::total_cmp);
        println!(
            "| {} | {} | {}–{} | {:.3} |",
            c.name,
            fmt_ns(quantile(&s, 0.5)),
            fmt_ns(quantile(&s, 0.25)),
            fmt_ns(quantile(&s, 0.75)),
            quantile(&ratios, 0.5)
        );
    }
}

/// The fixed per-call costs, measured in isolation.
fn fixed_costs(rt: &Runtime, rounds: usize) {
    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .expect("multi-thread runtime");
    let name = CollectionName::new(COLLECTION).expect("collection name");
    let lock = RwLock::new(Some(BTreeMap::from([(name.clone(), 0u64)])));
    let set = BTreeSet::from([name.clone()]);
    let k = data::key(7);
    let v = data::value(7);
    let noop = |_| black_box(1usize);
    measure(
        "fixed costs (no engine)",
        200_000,
        rounds,
        vec![
            case("empty loop", |n| timed(n, noop)),
            case("block_on(ready) on current-thread runtime", |n| {
                timed(n, |i| rt.block_on(async move { black_box(i) }))
            }),
            case("block_on(ready) on multi-thread runtime (1 worker)", |n| {
                timed(n, |i| multi.block_on(async move { black_box(i) }))
            }),
            case(
                "Box::pin(dyn Future) + poll once (async-trait call shape)",
                |n| {
                    timed(n, |i| {
                        // black_box keeps the allocation from being elided, as it cannot be
                        // behind a real `dyn StorageBackend` call.
                        let f: Pin<Box<dyn Future<Output = usize> + Send>> =
                            black_box(Box::pin(async move { black_box(i) }));
                        poll_once(f)
                    })
                },
            ),
            case("RwLock read + unlock", |n| {
                timed(n, |_| {
                    lock.read().map(|g| usize::from(g.is_some())).unwrap_or(0)
                })
            }),
            case("BTreeMap<CollectionName, _> get (1 entry)", |n| {
                timed(n, |_| {
                    lock.read()
                        .map(|g| {
                            g.as_ref()
                                .and_then(|m| m.get(&name))
                                .map_or(0, |x| *x as usize)
                        })
                        .unwrap_or(0)
                })
            }),
            case("BTreeSet<CollectionName> contains (1 entry)", |n| {
                timed(n, |_| usize::from(set.contains(black_box(&name))))
            }),
            case("limits::check_key", |n| {
                timed(n, |_| {
                    usize::from(zcore_engine::limits::check_key(&name, black_box(&k)).is_ok())
                })
            }),
            case("CollectionName clone + drop", |n| {
                timed(n, |_| black_box(name.clone()).as_str().len())
            }),
            case("16 B to_vec + drop", |n| {
                timed(n, |_| black_box(black_box(&k[..]).to_vec()).len())
            }),
            case("100 B to_vec + drop", |n| {
                timed(n, |_| black_box(black_box(&v[..]).to_vec()).len())
            }),
        ],
    );
}

/// The raw get plus the copy into an owned `Vec` the adapter's API implies.
fn fjall_get_owned(raw: &engines::RawFjall, key: &[u8]) -> usize {
    use fjall::Readable as _;
    raw.db
        .snapshot()
        .get(&raw.ks, key)
        .expect("fjall get")
        .map_or(0, |v| {
            let owned = black_box(v.to_vec());
            engines::fold_value(&owned)
        })
}

fn fjall_get_no_snapshot(raw: &engines::RawFjall, key: &[u8]) -> usize {
    raw.ks
        .get(key)
        .expect("fjall get")
        .map_or(0, |v| engines::fold_value(&v))
}

fn redb_get_owned(raw: &engines::RawRedb, key: &[u8]) -> usize {
    use redb::ReadableDatabase as _;
    let txn = raw.db.begin_read().expect("begin read");
    let table = txn.open_table(engines::REDB_TABLE).expect("open table");
    table.get(key).expect("redb get").map_or(0, |g| {
        let owned = black_box(g.value().to_vec());
        engines::fold_value(&owned)
    })
}

fn memory_get_owned(raw: &engines::RawMemory, key: &[u8]) -> usize {
    let map = raw.0.read().expect("lock");
    map.get(key).cloned().map_or(0, |v| engines::fold_value(&v))
}

type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// Where a scan's entries are copied to: owned pairs (the adapter's `ScanPage` shape) or one
/// contiguous buffer plus offsets (one allocation per page instead of two per entry).
enum Sink {
    Pairs(Entries),
    Arena { bytes: Vec<u8>, ends: Vec<u32> },
}

impl Sink {
    fn new(arena: bool, n: usize) -> Self {
        if arena {
            Self::Arena {
                bytes: Vec::with_capacity(n * (data::KEY_LEN + data::VALUE_LEN)),
                ends: Vec::with_capacity(2 * n),
            }
        } else {
            Self::Pairs(Vec::with_capacity(n))
        }
    }

    #[inline]
    fn push(&mut self, k: &[u8], v: &[u8]) {
        match self {
            Self::Pairs(out) => out.push((k.to_vec(), v.to_vec())),
            Self::Arena { bytes, ends } => {
                bytes.extend_from_slice(k);
                ends.push(u32::try_from(bytes.len()).unwrap_or(u32::MAX));
                bytes.extend_from_slice(v);
                ends.push(u32::try_from(bytes.len()).unwrap_or(u32::MAX));
            }
        }
    }

    fn total(&self) -> usize {
        match self {
            Self::Pairs(out) => sum_entries(out),
            Self::Arena { bytes, ends } => bytes.len() + ends.len(),
        }
    }
}

fn sum_entries(entries: &Entries) -> usize {
    entries.iter().map(|(k, v)| k.len() + v.len()).sum()
}

fn fjall_scan_owned(raw: &engines::RawFjall, start: &[u8], n: usize, arena: bool) -> usize {
    use fjall::Readable as _;
    let mut out = Sink::new(arena, n);
    for g in raw
        .db
        .snapshot()
        .range::<&[u8], _>(&raw.ks, start..)
        .take(n)
    {
        let (k, v) = g.into_inner().expect("fjall scan");
        out.push(&k, &v);
    }
    out.total()
}

fn redb_scan_owned(raw: &engines::RawRedb, start: &[u8], n: usize, arena: bool) -> usize {
    use redb::ReadableDatabase as _;
    let txn = raw.db.begin_read().expect("begin read");
    let table = txn.open_table(engines::REDB_TABLE).expect("open table");
    let mut out = Sink::new(arena, n);
    for item in table.range::<&[u8]>(start..).expect("redb range").take(n) {
        let (k, v) = item.expect("redb scan");
        out.push(k.value(), v.value());
    }
    out.total()
}

fn memory_scan_owned(raw: &engines::RawMemory, start: &[u8], n: usize, arena: bool) -> usize {
    let map = raw.0.read().expect("lock");
    let mut out = Sink::new(arena, n);
    for (k, v) in map
        .range::<[u8], _>((Bound::Included(start), Bound::Unbounded))
        .take(n)
    {
        out.push(k, v);
    }
    out.total()
}

/// A `WriteBatch` as the adapter's caller builds it, then dropped: the caller-side cost.
fn build_write_batch(name: &CollectionName, items: &[(Key, Value)]) -> WriteBatch {
    let mut batch = WriteBatch::with_capacity(items.len());
    for (k, v) in items {
        batch.put(name, &k[..], &v[..]);
    }
    batch
}

type Collections = RwLock<BTreeMap<CollectionName, BTreeMap<Vec<u8>, Vec<u8>>>>;

/// Replays what `MemoryBackend::write` does, step by step, on a raw map.
fn memory_replica(map: &Collections, batch: WriteBatch, validate: bool, lookups: bool) -> usize {
    if validate {
        batch.validate().expect("valid batch");
    }
    let mut guard = map.write().expect("lock");
    if lookups {
        for op in batch.ops() {
            assert!(guard.contains_key(op.collection()));
        }
    }
    let n = batch.len();
    for op in batch.into_ops() {
        if let BatchOp::Put {
            collection,
            key,
            value,
        } = op
            && let Some(m) = guard.get_mut(&collection)
        {
            m.insert(key, value);
        }
    }
    n
}

/// An optional extra get case: name and function.
type ExtraGet<'a, R> = Option<(&'static str, &'a dyn Fn(&R, &[u8]) -> usize)>;

#[allow(
    clippy::too_many_arguments,
    reason = "one call per backend; the engine-specific pieces are passed in"
)]
fn engine_tables<R: RawEngine>(
    rt: &Runtime,
    backend: &str,
    fixture: &Fixture<R>,
    inputs: &Inputs,
    rounds: usize,
    get_owned: impl Fn(&R, &[u8]) -> usize,
    scan_owned: impl Fn(&R, &[u8], usize, bool) -> usize,
    extra_get: ExtraGet<'_, R>,
) {
    let (raw, adapter): (&R, &Adapter) = (&fixture.raw, &fixture.adapter);
    let keys = &inputs.get_keys;
    let mask = keys.len() - 1;
    let mut get_cases = vec![
        case("raw", |n| timed(n, |i| raw.get(&keys[i & mask]))),
        case("raw + value.to_vec()", |n| {
            timed(n, |i| get_owned(raw, &keys[i & mask]))
        }),
        case("adapter, polled once (no runtime)", |n| {
            timed(n, |i| poll_once(adapter.get(&keys[i & mask])))
        }),
        case("adapter, awaited inside one block_on", |n| {
            rt.block_on(async {
                let start = Instant::now();
                for i in 0..n {
                    black_box(adapter.get(&keys[i & mask]).await);
                }
                start.elapsed()
            })
        }),
        case("adapter, block_on per get", |n| {
            timed(n, |i| rt.block_on(adapter.get(&keys[i & mask])))
        }),
        case(
            "backend.get future polled first, block_on only if pending",
            |n| {
                timed(n, |i| {
                    poll_then_block_on(
                        rt,
                        adapter.backend.get(&adapter.collection, &keys[i & mask]),
                    )
                    .expect("get")
                    .map_or(0, |v| engines::fold_value(&v))
                })
            },
        ),
    ];
    if let Some((name, f)) = extra_get {
        get_cases.push(case(name, move |n| timed(n, |i| f(raw, &keys[i & mask]))));
    }
    measure(&format!("get — {backend}"), 20_000, rounds, get_cases);

    let starts = &inputs.scan_starts;
    let smask = starts.len() - 1;
    measure(
        &format!("scan of {SCAN_LEN} — {backend}"),
        500,
        rounds,
        vec![
            case("raw", |n| {
                timed(n, |i| raw.scan(&starts[i & smask], SCAN_LEN))
            }),
            case("raw + copy into Vec<(Vec<u8>, Vec<u8>)>", |n| {
                timed(n, |i| scan_owned(raw, &starts[i & smask], SCAN_LEN, false))
            }),
            case(
                "raw + copy into one buffer + offsets (2 allocations)",
                |n| timed(n, |i| scan_owned(raw, &starts[i & smask], SCAN_LEN, true)),
            ),
            case("adapter, polled once (no runtime)", |n| {
                timed(n, |i| poll_once(adapter.scan(&starts[i & smask], SCAN_LEN)))
            }),
            case("adapter, block_on per scan", |n| {
                timed(n, |i| {
                    rt.block_on(adapter.scan(&starts[i & smask], SCAN_LEN))
                })
            }),
        ],
    );

    // Nothing has written since the data set was settled; make sure of it anyway.
    raw.quiesce(Duration::from_secs(30));
    let batches = &inputs.batches;
    let bmask = batches.len() - 1;
    let name = adapter.collection.clone();
    measure(
        &format!("batch of {BATCH_LEN} puts — {backend}"),
        10,
        rounds,
        vec![
            case("raw", |n| {
                timed(n, |i| {
                    raw.write_batch(&batches[i & bmask]);
                    BATCH_LEN
                })
            }),
            case("caller builds + drops a WriteBatch only (no engine)", |n| {
                timed(n, |i| build_write_batch(&name, &batches[i & bmask]).len())
            }),
            case("adapter, polled once (no runtime)", |n| {
                timed(n, |i| {
                    poll_once(adapter.write_batch(&batches[i & bmask]));
                    BATCH_LEN
                })
            }),
            case("adapter, block_on per batch", |n| {
                timed(n, |i| {
                    rt.block_on(adapter.write_batch(&batches[i & bmask]));
                    BATCH_LEN
                })
            }),
        ],
    );
}

/// The memory adapter's write, replayed step by step on maps built like the raw one.
fn memory_write_steps(cfg: &BenchConfig, inputs: &Inputs, rounds: usize) {
    let name = CollectionName::new(COLLECTION).expect("collection name");
    let new_map = || {
        let inner = engines::RawMemory::load(cfg.keys)
            .0
            .into_inner()
            .expect("lock");
        RwLock::new(BTreeMap::from([(name.clone(), inner)]))
    };
    let (a, b, c, d) = (new_map(), new_map(), new_map(), new_map());
    let raw = engines::RawMemory::load(cfg.keys);
    let batches = &inputs.batches;
    let bmask = batches.len() - 1;
    measure(
        "memory batch: the adapter's write replayed step by step",
        10,
        rounds,
        vec![
            case("raw: lock, insert(k.to_vec(), v.to_vec()) per put", |n| {
                timed(n, |i| {
                    raw.write_batch(&batches[i & bmask]);
                    BATCH_LEN
                })
            }),
            case("raw, owned pairs built first, then inserted", |n| {
                timed(n, |i| {
                    let owned: Entries = batches[i & bmask]
                        .iter()
                        .map(|(k, v)| (k.to_vec(), v.to_vec()))
                        .collect();
                    let mut map = raw.0.write().expect("lock");
                    for (k, v) in owned {
                        map.insert(k, v);
                    }
                    BATCH_LEN
                })
            }),
            case("WriteBatch built, applied (no validate, no lookups)", |n| {
                timed(n, |i| {
                    memory_replica(
                        &a,
                        build_write_batch(&name, &batches[i & bmask]),
                        false,
                        false,
                    )
                })
            }),
            case("+ validate", |n| {
                timed(n, |i| {
                    memory_replica(
                        &b,
                        build_write_batch(&name, &batches[i & bmask]),
                        true,
                        false,
                    )
                })
            }),
            case("+ validate + per-op collection check (= adapter)", |n| {
                timed(n, |i| {
                    memory_replica(
                        &c,
                        build_write_batch(&name, &batches[i & bmask]),
                        true,
                        true,
                    )
                })
            }),
            case("same, second map (control)", |n| {
                timed(n, |i| {
                    memory_replica(
                        &d,
                        build_write_batch(&name, &batches[i & bmask]),
                        true,
                        true,
                    )
                })
            }),
        ],
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let enabled = std::env::var(BREAKDOWN_ENV).is_ok_and(|v| !v.is_empty() && v != "0");
    if !enabled || !args.iter().any(|a| a == "--bench") {
        eprintln!("adapter_breakdown: skipped (set {BREAKDOWN_ENV}=1 and run it with cargo bench)");
        return;
    }
    let cfg = BenchConfig::from_env();
    let rounds = if cfg.mode == zcore_benches::config::Mode::Full {
        25
    } else {
        5
    };
    let rt = engines::runtime();
    let inputs = Inputs::new(&cfg);
    println!(
        "# adapter breakdown ({:?} mode, {} keys, current-thread runtime)",
        cfg.mode, cfg.keys
    );
    fixed_costs(&rt, rounds);
    if cfg.runs("fjall") {
        let f = engines::fjall_fixture(&cfg);
        engines::warm(&rt, &cfg, "fjall", &f);
        engine_tables(
            &rt,
            "fjall",
            &f,
            &inputs,
            rounds,
            fjall_get_owned,
            fjall_scan_owned,
            Some(("raw keyspace.get (no snapshot)", &fjall_get_no_snapshot)),
        );
    }
    if cfg.runs("redb") {
        let f = engines::redb_fixture(&cfg);
        engines::warm(&rt, &cfg, "redb", &f);
        engine_tables(
            &rt,
            "redb",
            &f,
            &inputs,
            rounds,
            redb_get_owned,
            redb_scan_owned,
            None,
        );
    }
    if cfg.runs("memory") {
        let f = engines::memory_fixture(&cfg, &rt);
        engines::warm(&rt, &cfg, "memory", &f);
        engine_tables(
            &rt,
            "memory",
            &f,
            &inputs,
            rounds,
            memory_get_owned,
            memory_scan_owned,
            None,
        );
        memory_write_steps(&cfg, &inputs, rounds);
    }
}
