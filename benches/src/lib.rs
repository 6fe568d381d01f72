//! Shared helpers of the zcore-storage benchmarks.
//!
//! - [`data`]: the data shape of `../shared/research/perf-baseline.md` (16-byte keys = `u64` index
//!   big-endian ‖ 8 hash bytes, 100-byte incompressible values) and a deterministic random
//!   stream, so the raw engine and the adapter see exactly the same keys in the same order.
//! - [`config`]: run sizes for the full, quick (`ZCORE_BENCH_QUICK=1`) and test
//!   (`cargo test --benches`) modes.
//! - [`report`]: reads criterion's `estimates.json` files and prints the adapter/raw ratio per
//!   workload and backend (used by the `ratios` binary).

pub mod data {
    //! Keys, values and random index streams.

    /// Bytes per key.
    pub const KEY_LEN: usize = 16;
    /// Bytes per value.
    pub const VALUE_LEN: usize = 100;

    /// A 16-byte key.
    pub type Key = [u8; KEY_LEN];
    /// A 100-byte value.
    pub type Value = [u8; VALUE_LEN];

    /// The splitmix64 finaliser of `x + golden ratio`.
    #[must_use]
    pub fn splitmix(x: u64) -> u64 {
        let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Key number `i`: `i` big-endian (defines the order) followed by 8 hash bytes.
    #[must_use]
    pub fn key(i: u64) -> Key {
        let mut k = [0u8; KEY_LEN];
        k[..8].copy_from_slice(&i.to_be_bytes());
        k[8..].copy_from_slice(&splitmix(i).to_be_bytes());
        k
    }

    /// An incompressible 100-byte value derived from `i`.
    #[must_use]
    pub fn value(i: u64) -> Value {
        let mut v = [0u8; VALUE_LEN];
        let mut s = i ^ 0xDEAD_BEEF_CAFE_F00D;
        for chunk in v.chunks_mut(8) {
            s = splitmix(s);
            chunk.copy_from_slice(&s.to_le_bytes()[..chunk.len()]);
        }
        v
    }

    /// A deterministic pseudo-random stream (splitmix64 over a counter).
    #[derive(Clone, Debug)]
    pub struct Rng(u64);

    impl Rng {
        /// A stream starting at `seed`.
        #[must_use]
        pub fn new(seed: u64) -> Self {
            Self(seed)
        }

        /// The next 64 random bits.
        pub fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(1);
            splitmix(self.0)
        }

        /// A number in `0..n` (`n > 0`; the modulo bias is irrelevant here).
        pub fn below(&mut self, n: u64) -> u64 {
            self.next_u64() % n.max(1)
        }
    }

    /// `count` keys with random indices in `0..n` (the lookup sequence of the `get` workload).
    #[must_use]
    pub fn random_keys(n: u64, count: usize, seed: u64) -> Vec<Key> {
        let mut rng = Rng::new(seed);
        (0..count).map(|_| key(rng.below(n))).collect()
    }

    /// `count` start keys for scans of `scan_len` keys that stay inside `0..n`.
    #[must_use]
    pub fn random_scan_starts(n: u64, scan_len: u64, count: usize, seed: u64) -> Vec<Key> {
        let mut rng = Rng::new(seed);
        let span = n.saturating_sub(scan_len).max(1);
        (0..count).map(|_| key(rng.below(span))).collect()
    }

    /// `batches` write batches of `batch_len` puts each: random keys from `0..n` (so they
    /// overwrite preloaded keys and the data set keeps its size) with fresh values.
    #[must_use]
    pub fn random_batches(
        n: u64,
        batches: usize,
        batch_len: usize,
        seed: u64,
    ) -> Vec<Vec<(Key, Value)>> {
        let mut rng = Rng::new(seed);
        (0..batches)
            .map(|_| {
                (0..batch_len)
                    .map(|_| {
                        let i = rng.below(n);
                        (key(i), value(i ^ rng.next_u64()))
                    })
                    .collect()
            })
            .collect()
    }

    /// The preloaded data set in key order, `chunk` entries at a time.
    pub fn preload_chunks(n: u64, chunk: u64) -> impl Iterator<Item = Vec<(Key, Value)>> {
        let chunk = chunk.max(1);
        (0..n.div_ceil(chunk)).map(move |c| {
            (c * chunk..((c + 1) * chunk).min(n))
                .map(|i| (key(i), value(i)))
                .collect()
        })
    }
}

pub mod config {
    //! How big and how long each run is.

    use std::time::Duration;

    /// Environment variable that selects the quick mode.
    pub const QUICK_ENV: &str = "ZCORE_BENCH_QUICK";
    /// Environment variable restricting the run to some backends (comma-separated).
    pub const BACKENDS_ENV: &str = "ZCORE_BENCH_BACKENDS";
    /// Environment variable that measures the adapter before the raw engine in every group.
    pub const ADAPTER_FIRST_ENV: &str = "ZCORE_BENCH_ADAPTER_FIRST";

    /// Keys per scan.
    pub const SCAN_LEN: usize = 100;
    /// Puts per write batch.
    pub const BATCH_LEN: usize = 1_000;
    /// Block/page cache of fjall and redb, the same for raw and adapter.
    pub const CACHE_BYTES: u64 = 256 * 1024 * 1024;
    /// Name of the one collection / keyspace / table.
    pub const COLLECTION: &str = "bench";

    /// Which kind of run this is.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Mode {
        /// `cargo bench`: the numbers to report.
        Full,
        /// `ZCORE_BENCH_QUICK=1 cargo bench`: tiny samples, a smoke run.
        Quick,
        /// `cargo test --benches` (or `cargo bench -- --test`): criterion runs each routine
        /// once, so only the data set size matters.
        Test,
    }

    /// Sizes and times of one run.
    #[derive(Clone, Debug)]
    pub struct BenchConfig {
        /// The mode the sizes come from.
        pub mode: Mode,
        /// Preloaded keys.
        pub keys: u64,
        /// Length of the `get` key sequence (a power of two).
        pub get_sequence: usize,
        /// Number of distinct scan start keys (a power of two).
        pub scan_sequence: usize,
        /// Number of distinct pre-generated write batches (a power of two).
        pub batch_pool: usize,
        /// criterion warm-up time per routine.
        pub warm_up: Duration,
        /// criterion measurement time per `get` / `scan` routine.
        pub measurement: Duration,
        /// criterion samples per `get` / `scan` routine.
        pub sample_size: usize,
        /// criterion measurement time per `batch` routine (flat sampling).
        pub batch_measurement: Duration,
        /// criterion samples per `batch` routine.
        pub batch_sample_size: usize,
        /// criterion bootstrap resamples (its default of 100,000 makes the HTML plots take
        /// ~5 s per routine on this 2-core machine).
        pub nresamples: usize,
        /// Longest wait for fjall's background flushes/compactions to go quiet.
        pub settle_timeout: Duration,
        /// Backends to run (`None` = all).
        pub backends: Option<Vec<String>>,
        /// Measure the adapter before the raw engine (to check for order effects).
        pub adapter_first: bool,
    }

    fn env_flag(name: &str) -> bool {
        std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0")
    }

    impl BenchConfig {
        /// The mode from the command line criterion gets and from the environment: test mode
        /// when `--bench` is missing (how `cargo test --benches` runs a bench target) or
        /// `--test` is given, quick mode when [`QUICK_ENV`] is set, full otherwise.
        #[must_use]
        pub fn detect_mode() -> Mode {
            let args: Vec<String> = std::env::args().collect();
            let bench = args.iter().any(|a| a == "--bench");
            let test = args.iter().any(|a| a == "--test");
            if !bench || test {
                Mode::Test
            } else if env_flag(QUICK_ENV) {
                Mode::Quick
            } else {
                Mode::Full
            }
        }

        /// The configuration for `mode`, with the backend filter and order from the
        /// environment.
        #[must_use]
        pub fn for_mode(mode: Mode) -> Self {
            let backends = std::env::var(BACKENDS_ENV).ok().map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_ascii_lowercase())
                    .filter(|s| !s.is_empty())
                    .collect()
            });
            let adapter_first = env_flag(ADAPTER_FIRST_ENV);
            let ms = Duration::from_millis;
            match mode {
                Mode::Full => Self {
                    mode,
                    keys: 100_000,
                    get_sequence: 1 << 16,
                    scan_sequence: 1 << 14,
                    batch_pool: 32,
                    warm_up: ms(1_000),
                    measurement: ms(5_000),
                    sample_size: 50,
                    batch_measurement: ms(6_000),
                    batch_sample_size: 20,
                    nresamples: 10_000,
                    settle_timeout: ms(60_000),
                    backends,
                    adapter_first,
                },
                Mode::Quick => Self {
                    mode,
                    keys: 20_000,
                    get_sequence: 1 << 12,
                    scan_sequence: 1 << 10,
                    batch_pool: 8,
                    warm_up: ms(200),
                    measurement: ms(800),
                    sample_size: 10,
                    batch_measurement: ms(800),
                    batch_sample_size: 10,
                    nresamples: 2_000,
                    settle_timeout: ms(10_000),
                    backends,
                    adapter_first,
                },
                Mode::Test => Self {
                    mode,
                    keys: 2_000,
                    get_sequence: 1 << 8,
                    scan_sequence: 1 << 6,
                    batch_pool: 2,
                    warm_up: ms(10),
                    measurement: ms(10),
                    sample_size: 10,
                    batch_measurement: ms(10),
                    batch_sample_size: 10,
                    nresamples: 1_000,
                    settle_timeout: ms(5_000),
                    backends,
                    adapter_first,
                },
            }
        }

        /// [`Self::for_mode`] of [`Self::detect_mode`].
        #[must_use]
        pub fn from_env() -> Self {
            Self::for_mode(Self::detect_mode())
        }

        /// Whether `backend` is selected.
        #[must_use]
        pub fn runs(&self, backend: &str) -> bool {
            self.backends
                .as_ref()
                .is_none_or(|list| list.iter().any(|b| b == backend))
        }
    }
}

pub mod report {
    //! The adapter/raw ratio table from criterion's output directory.
    //!
    //! Layout read: `<criterion dir>/<workload>_<backend>/<variant>/new/{estimates,benchmark}.json`,
    //! where `<variant>` is `raw` or starts with `adapter`.

    use std::fmt::Write as _;
    use std::path::{Path, PathBuf};

    /// The goal of the issue: adapter throughput at least this fraction of raw.
    pub const GOAL: f64 = 0.9;

    /// A criterion median estimate, in nanoseconds per iteration.
    #[derive(Clone, Copy, Debug, PartialEq)]
    pub struct Median {
        /// Point estimate.
        pub ns: f64,
        /// Lower bound of the confidence interval.
        pub lo_ns: f64,
        /// Upper bound of the confidence interval.
        pub hi_ns: f64,
    }

    /// One measured routine.
    #[derive(Clone, Debug, PartialEq)]
    pub struct Measurement {
        /// Workload (`get`, `scan`, `batch`).
        pub workload: String,
        /// Backend (`fjall`, `redb`, `memory`).
        pub backend: String,
        /// `raw`, `adapter`, `adapter_in_rt`, ...
        pub variant: String,
        /// Median time per iteration.
        pub median: Median,
        /// Mean time per iteration (criterion's `mean` estimate), if recorded.
        pub mean_ns: Option<f64>,
        /// Elements per iteration (criterion `Throughput::Elements`), if recorded.
        pub elements: Option<u64>,
    }

    /// One line of the table: an adapter variant against raw.
    #[derive(Clone, Debug, PartialEq)]
    pub struct Row {
        /// Workload.
        pub workload: String,
        /// Backend.
        pub backend: String,
        /// Adapter variant.
        pub variant: String,
        /// Raw median.
        pub raw: Median,
        /// Adapter median.
        pub adapter: Median,
        /// Raw and adapter mean times per iteration, if both were recorded.
        pub means_ns: Option<(f64, f64)>,
        /// Elements per iteration.
        pub elements: Option<u64>,
    }

    impl Row {
        /// `raw_time / adapter_time`: adapter throughput as a fraction of raw.
        #[must_use]
        pub fn ratio(&self) -> f64 {
            self.raw.ns / self.adapter.ns
        }

        /// `raw_mean / adapter_mean`, the ratio of total throughputs (counts rare slow
        /// iterations such as fjall's memtable flushes, which the median ignores).
        #[must_use]
        pub fn mean_ratio(&self) -> Option<f64> {
            self.means_ns.map(|(raw, adapter)| raw / adapter)
        }

        /// The ratio's range from the two medians' confidence intervals.
        #[must_use]
        pub fn ratio_range(&self) -> (f64, f64) {
            (
                self.raw.lo_ns / self.adapter.hi_ns,
                self.raw.hi_ns / self.adapter.lo_ns,
            )
        }
    }

    fn median_of(estimates: &serde_json::Value) -> Option<Median> {
        let m = estimates.get("median")?;
        let ci = m.get("confidence_interval")?;
        Some(Median {
            ns: m.get("point_estimate")?.as_f64()?,
            lo_ns: ci.get("lower_bound")?.as_f64()?,
            hi_ns: ci.get("upper_bound")?.as_f64()?,
        })
    }

    fn mean_of(estimates: &serde_json::Value) -> Option<f64> {
        estimates.get("mean")?.get("point_estimate")?.as_f64()
    }

    fn elements_of(benchmark: &serde_json::Value) -> Option<u64> {
        benchmark.get("throughput")?.get("Elements")?.as_u64()
    }

    fn read_json(path: &Path) -> Option<serde_json::Value> {
        let text = std::fs::read_to_string(path).ok()?;
        serde_json::from_str(&text).ok()
    }

    fn subdirs(dir: &Path) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.is_dir())
                    .collect()
            })
            .unwrap_or_default();
        dirs.sort();
        dirs
    }

    /// Every `<workload>_<backend>/<variant>` measurement under `criterion_dir`.
    #[must_use]
    pub fn load(criterion_dir: &Path) -> Vec<Measurement> {
        let mut out = Vec::new();
        for group in subdirs(criterion_dir) {
            let Some(name) = group.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some((workload, backend)) = name.split_once('_') else {
                continue;
            };
            for routine in subdirs(&group) {
                let Some(variant) = routine.file_name().and_then(|n| n.to_str()) else {
                    continue;
                };
                let new = routine.join("new");
                let Some(estimates) = read_json(&new.join("estimates.json")) else {
                    continue;
                };
                let Some(median) = median_of(&estimates) else {
                    continue;
                };
                let mean_ns = mean_of(&estimates);
                let elements = read_json(&new.join("benchmark.json"))
                    .as_ref()
                    .and_then(elements_of);
                out.push(Measurement {
                    workload: workload.to_owned(),
                    backend: backend.to_owned(),
                    variant: variant.to_owned(),
                    median,
                    mean_ns,
                    elements,
                });
            }
        }
        out
    }

    fn order(workload: &str) -> usize {
        ["get", "scan", "batch"]
            .iter()
            .position(|w| *w == workload)
            .unwrap_or(usize::MAX)
    }

    fn backend_order(backend: &str) -> usize {
        ["fjall", "redb", "memory"]
            .iter()
            .position(|b| *b == backend)
            .unwrap_or(usize::MAX)
    }

    /// Pairs every adapter variant with the raw routine of the same group.
    #[must_use]
    pub fn rows(measurements: &[Measurement]) -> Vec<Row> {
        let mut rows: Vec<Row> = measurements
            .iter()
            .filter(|m| m.variant.starts_with("adapter"))
            .filter_map(|a| {
                let raw = measurements.iter().find(|m| {
                    m.variant == "raw" && m.workload == a.workload && m.backend == a.backend
                })?;
                Some(Row {
                    workload: a.workload.clone(),
                    backend: a.backend.clone(),
                    variant: a.variant.clone(),
                    raw: raw.median,
                    adapter: a.median,
                    means_ns: raw.mean_ns.zip(a.mean_ns),
                    elements: a.elements.or(raw.elements),
                })
            })
            .collect();
        rows.sort_by(|x, y| {
            (order(&x.workload), backend_order(&x.backend), &x.variant).cmp(&(
                order(&y.workload),
                backend_order(&y.backend),
                &y.variant,
            ))
        });
        rows
    }

    /// A time per iteration in the most readable unit.
    #[must_use]
    pub fn fmt_time(ns: f64) -> String {
        if ns >= 1e6 {
            format!("{:.3} ms", ns / 1e6)
        } else if ns >= 1e3 {
            format!("{:.2} µs", ns / 1e3)
        } else {
            format!("{ns:.1} ns")
        }
    }

    /// Elements per second in k/M.
    #[must_use]
    pub fn fmt_rate(per_s: f64) -> String {
        if per_s >= 1e6 {
            format!("{:.2}M/s", per_s / 1e6)
        } else {
            format!("{:.0}k/s", per_s / 1e3)
        }
    }

    fn time_and_rate(m: &Median, elements: Option<u64>) -> String {
        match elements {
            Some(n) => format!("{} ({})", fmt_time(m.ns), fmt_rate(n as f64 * 1e9 / m.ns)),
            None => fmt_time(m.ns),
        }
    }

    /// The rows as a markdown table.
    #[must_use]
    pub fn render(rows: &[Row]) -> String {
        let mut s = String::from(
            "| workload | backend | variant | raw median | adapter median | ratio raw/adapter (medians) | ratio range (CIs) | ratio of means | ≥ 0.9 |\n\
             |---|---|---|---|---|---|---|---|---|\n",
        );
        for r in rows {
            let (lo, hi) = r.ratio_range();
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | **{:.3}** | {:.2}–{:.2} | {} | {} |",
                r.workload,
                r.backend,
                r.variant,
                time_and_rate(&r.raw, r.elements),
                time_and_rate(&r.adapter, r.elements),
                r.ratio(),
                lo,
                hi,
                r.mean_ratio()
                    .map_or_else(|| "–".to_owned(), |m| format!("{m:.3}")),
                if r.ratio() >= GOAL { "yes" } else { "no" },
            );
        }
        s
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::data::*;
    use super::report::*;

    #[test]
    fn keys_sort_by_index() {
        let keys: Vec<Key> = (0..1_000u64).map(|i| key(i * 7_919)).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn values_are_distinct_and_sized() {
        assert_ne!(value(1), value(2));
        assert_eq!(value(3).len(), VALUE_LEN);
    }

    #[test]
    fn streams_are_deterministic_and_in_range() {
        assert_eq!(random_keys(100, 50, 7), random_keys(100, 50, 7));
        let starts = random_scan_starts(1_000, 100, 500, 1);
        assert!(
            starts.iter().all(|k| u64::from_be_bytes([
                k[0], k[1], k[2], k[3], k[4], k[5], k[6], k[7]
            ]) < 900)
        );
        let batches = random_batches(10, 3, 4, 9);
        assert_eq!(batches.len(), 3);
        assert!(batches.iter().all(|b| b.len() == 4));
    }

    #[test]
    fn preload_covers_every_key_once() {
        let all: Vec<(Key, Value)> = preload_chunks(2_501, 1_000).flatten().collect();
        assert_eq!(all.len(), 2_501);
        assert_eq!(all[2_500].0, key(2_500));
    }

    #[test]
    fn report_reads_criterion_layout() {
        let dir = std::env::temp_dir().join(format!("zcore-benches-report-{}", std::process::id()));
        let write = |group: &str, variant: &str, median: f64| {
            let new = dir.join(group).join(variant).join("new");
            std::fs::create_dir_all(&new).unwrap();
            let est = format!(
                r#"{{"mean":{{"point_estimate":{median}}},"median":{{"point_estimate":{median},"confidence_interval":{{"lower_bound":{},"upper_bound":{}}}}}}}"#,
                median * 0.9,
                median * 1.1
            );
            std::fs::write(new.join("estimates.json"), est).unwrap();
            std::fs::write(
                new.join("benchmark.json"),
                r#"{"throughput":{"Elements":1000}}"#,
            )
            .unwrap();
        };
        write("batch_redb", "raw", 800.0);
        write("batch_redb", "adapter", 1_000.0);
        write("get_fjall", "raw", 90.0);
        write("get_fjall", "adapter", 100.0);
        let rows = rows(&load(&dir));
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].workload, "get");
        assert!((rows[0].ratio() - 0.9).abs() < 1e-9);
        assert!((rows[1].ratio() - 0.8).abs() < 1e-9);
        assert_eq!(rows[1].elements, Some(1_000));
        assert!(rows[1].mean_ratio().is_some_and(|m| (m - 0.8).abs() < 1e-9));
        assert!(render(&rows).contains("| batch | redb | adapter |"));
    }
}
