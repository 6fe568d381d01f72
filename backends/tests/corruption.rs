//! Byte-flip corruption campaign on the disk backends (issue 8, item 3).
//!
//! One small store per backend is built once (three collections, a few hundred versions with
//! overwrites, deletion markers, a GC pass, sequences) and closed cleanly. Each trial copies its
//! files to a fresh directory, XORs one byte (file and offset seeded, every file of the store
//! alike), then runs, on a thread it can abandon, under `catch_unwind` and a timeout:
//! open backend + engine → full read (scan and point read of every key at the latest version,
//! a time-travel scan at an older version, the next value of every sequence) → `verify`.
//!
//! Each flip is classified:
//! - **detected**: open, a read or `verify` failed or reported a problem;
//! - **harmless**: everything read back exactly as written, and `verify` is clean;
//! - **silent-wrong**: data wrong or missing and no error anywhere (read *and* verify clean);
//! - **panic**: a panic escaped our API;
//! - **hang**: the trial did not finish within the timeout.
//!
//! The test prints the counts (per file kind too) and fails on any silent-wrong, panic or hang.
//! Reads that returned wrong data which `verify` then reported are counted as detected and
//! printed separately ("wrong read, caught by verify").
//!
//! `ZCORE_FLIPS` sets the flips per backend (default 1000), `ZCORE_FLIP_SEED` the seed.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use zcore_backends::{FjallBackend, FjallOptions, RedbBackend, RedbOptions};
use zcore_engine::{
    CollectionName, Engine, EngineOptions, KeyRange, ScanRequest, StorageBackend, TxnError, Version,
};

const COLLECTIONS: [&str; 3] = ["accounts", "events", "tags"];
const SEQUENCES: [&[u8]; 2] = [b"order", b"invoice"];
const TRIAL_TIMEOUT: Duration = Duration::from_secs(30);

/// Panics seen by the panic hook (inside engines too, even when caught at our boundary).
static PANICS_SEEN: AtomicU64 = AtomicU64::new(0);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Fjall,
    Redb,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::Fjall => "fjall",
            Self::Redb => "redb",
        }
    }

    fn store_path(self, dir: &Path) -> PathBuf {
        match self {
            Self::Fjall => dir.join("store.fjall"),
            Self::Redb => dir.join("store.redb"),
        }
    }

    fn open(self, dir: &Path) -> Result<Arc<dyn StorageBackend>, String> {
        let path = self.store_path(dir);
        match self {
            Self::Fjall => FjallBackend::open(
                path,
                &FjallOptions {
                    worker_threads: Some(1),
                    cache_size_bytes: 1 << 20,
                    ..FjallOptions::default()
                },
            )
            .map(|b| Arc::new(b) as Arc<dyn StorageBackend>)
            .map_err(|e| e.to_string()),
            Self::Redb => RedbBackend::open(
                path,
                &RedbOptions {
                    cache_size_bytes: 1 << 20,
                },
            )
            .map(|b| Arc::new(b) as Arc<dyn StorageBackend>)
            .map_err(|e| e.to_string()),
        }
    }
}

fn engine_options() -> EngineOptions {
    EngineOptions {
        gc_interval: None,
        retain_versions: 40,
        sequence_block: 4,
        ..EngineOptions::default()
    }
}

fn cols() -> Vec<CollectionName> {
    COLLECTIONS
        .iter()
        .map(|c| CollectionName::new(c).unwrap())
        .collect()
}

/// splitmix64.
fn next_random(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

type Data = BTreeMap<String, BTreeMap<Vec<u8>, Vec<u8>>>;

/// What the store must contain.
#[derive(Clone, Debug)]
struct Model {
    latest: Data,
    /// A version above the GC floor and the store as of it.
    old_version: Version,
    old: Data,
    last_version: Version,
    /// Largest value handed out per sequence.
    sequences: BTreeMap<Vec<u8>, u64>,
}

async fn build(kind: Kind, dir: &Path) -> Model {
    let engine = Engine::open(kind.open(dir).unwrap(), engine_options())
        .await
        .unwrap();
    for c in cols() {
        engine.create_collection(&c).await.unwrap();
    }
    let mut data: Data = COLLECTIONS
        .iter()
        .map(|c| ((*c).to_owned(), BTreeMap::new()))
        .collect();
    let mut sequences = BTreeMap::new();
    let mut rng = 7u64;
    let mut old = None;
    for round in 0u64..120 {
        let mut tx = engine.begin_write();
        for _ in 0..3 {
            let c = &cols()[(next_random(&mut rng) % 3) as usize];
            let key = format!("key-{:03}", next_random(&mut rng) % 40).into_bytes();
            let map = data.get_mut(c.as_str()).unwrap();
            if next_random(&mut rng).is_multiple_of(5) {
                tx.delete(c, key.clone()).unwrap();
                map.remove(&key);
            } else {
                let len = 8 + (next_random(&mut rng) % 120) as usize;
                let value: Vec<u8> = (0..len).map(|i| (round as u8) ^ (i as u8)).collect();
                tx.put(c, key.clone(), value.clone()).unwrap();
                map.insert(key, value);
            }
        }
        let info = tx.commit().await.unwrap();
        if round % 10 == 3 {
            let name = SEQUENCES[(round / 10 % 2) as usize];
            let v = engine.next_seq(name).await.unwrap();
            sequences.insert(name.to_vec(), v);
        }
        if round == 60 {
            engine.collect_garbage().await.unwrap();
        }
        if round == 100 {
            old = Some((info.version, data.clone()));
        }
    }
    engine.collect_garbage().await.unwrap();
    let last_version = engine.latest_version();
    let (old_version, old) = old.unwrap();
    let report = engine.verify(10).await.unwrap();
    assert!(report.is_clean(), "{report:?}");
    engine.close().await.unwrap();
    Model {
        latest: data,
        old_version,
        old,
        last_version,
        sequences,
    }
}

/// How one trial ended, when it ended.
#[derive(Debug)]
enum Outcome {
    Detected(&'static str, String),
    /// Reads returned wrong data without an error, verify reported a problem.
    WrongReadCaughtByVerify(String),
    Harmless,
    SilentWrong(String),
}

async fn read_all(engine: &Engine, model: &Model) -> Result<Option<String>, TxnError> {
    let mut wrong = None;
    let listed: Vec<String> = engine.collections().iter().map(|c| c.to_string()).collect();
    if listed != COLLECTIONS {
        wrong.get_or_insert(format!("collections {listed:?}"));
    }
    if engine.latest_version() < model.last_version {
        wrong.get_or_insert(format!(
            "latest version {} below {}",
            engine.latest_version(),
            model.last_version
        ));
    }
    for (at, expected) in [(None, &model.latest), (Some(model.old_version), &model.old)] {
        let r = match at {
            None => engine.begin_read(),
            Some(v) => engine.begin_read_at(v)?,
        };
        for (c, rows) in expected {
            let name = CollectionName::new(c).unwrap();
            let mut got = BTreeMap::new();
            let mut request = Some(ScanRequest::forward(KeyRange::all(), 64));
            while let Some(req) = request.take() {
                let page = r.scan(&name, &req).await?;
                request = req.next_page(&page);
                got.extend(page.entries);
            }
            if &got != rows {
                wrong.get_or_insert(format!("scan of {c} at {at:?} differs"));
            }
            for (k, v) in rows {
                if r.get(&name, k).await?.as_ref() != Some(v) {
                    wrong
                        .get_or_insert(format!("get {c}/{} at {at:?}", String::from_utf8_lossy(k)));
                }
            }
        }
    }
    for (name, last) in &model.sequences {
        let next = engine.next_seq(name).await?;
        if next <= *last {
            wrong.get_or_insert(format!(
                "sequence {} handed out {next} again (last {last})",
                String::from_utf8_lossy(name)
            ));
        }
    }
    Ok(wrong)
}

async fn trial(kind: Kind, dir: &Path, model: &Model) -> Outcome {
    let backend = match kind.open(dir) {
        Ok(b) => b,
        Err(e) => return Outcome::Detected("open", e),
    };
    let engine = match Engine::open(Arc::clone(&backend), engine_options()).await {
        Ok(e) => e,
        Err(e) => {
            let _ = backend.close().await;
            return Outcome::Detected("open", e.to_string());
        }
    };
    drop(backend);
    let outcome = match read_all(&engine, model).await {
        Err(e) => Outcome::Detected("read", e.to_string()),
        Ok(wrong) => match engine.verify(4).await {
            Err(e) => match wrong {
                None => Outcome::Detected("verify", e.to_string()),
                Some(what) => Outcome::WrongReadCaughtByVerify(format!("{what}; verify: {e}")),
            },
            Ok(report) if !report.is_clean() => match wrong {
                None => Outcome::Detected("verify", format!("{:?}", report.problems)),
                Some(what) => Outcome::WrongReadCaughtByVerify(format!(
                    "{what}; verify: backend check {:?}, {:?}",
                    report.backend_check, report.problems
                )),
            },
            Ok(_) => match wrong {
                None => Outcome::Harmless,
                Some(what) => Outcome::SilentWrong(what),
            },
        },
    };
    let _ = engine.close().await;
    outcome
}

fn files_of(root: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        if dir.is_file() {
            let len = std::fs::metadata(&dir).unwrap().len();
            out.push((dir, len));
            continue;
        }
        for entry in std::fs::read_dir(&dir).unwrap() {
            stack.push(entry.unwrap().path());
        }
    }
    out.retain(|(p, len)| *len > 0 && p.file_name().is_some_and(|n| n != "lock"));
    out.sort();
    out
}

fn copy_tree(from: &Path, to: &Path) {
    if from.is_file() {
        std::fs::copy(from, to).unwrap();
        return;
    }
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        copy_tree(&entry.path(), &to.join(entry.file_name()));
    }
}

/// Which part of the store a file is, for the per-kind counts.
fn file_kind(kind: Kind, relative: &Path, offset: u64) -> String {
    match kind {
        Kind::Redb => {
            if offset < 4096 {
                "header page (commit slots)".to_owned()
            } else {
                "pages".to_owned()
            }
        }
        Kind::Fjall => {
            let text = relative.to_string_lossy();
            if text.ends_with(".jnl") {
                "journal".to_owned()
            } else if text.contains("tables") {
                "tables".to_owned()
            } else {
                "metadata (version, manifests)".to_owned()
            }
        }
    }
}

/// A file, every offset of it in one kind, and those of them holding a non-zero byte.
type FlipTarget = (PathBuf, Vec<u64>, Vec<u64>);

#[derive(Default, Debug)]
struct Counts {
    /// The first error message per detecting stage, to show what callers see.
    examples: BTreeMap<&'static str, String>,
    detected: BTreeMap<&'static str, u64>,
    wrong_read_caught: Vec<String>,
    harmless: u64,
    silent: Vec<String>,
    panics: Vec<String>,
    hangs: Vec<String>,
    per_kind: BTreeMap<String, [u64; 5]>,
}

fn campaign(kind: Kind) {
    let flips: u64 = std::env::var("ZCORE_FLIPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let seed: u64 = std::env::var("ZCORE_FLIP_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5EED_F11B);
    install_quiet_panic_hook();

    let base = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let model = Arc::new(runtime.block_on(build(kind, base.path())));
    drop(runtime);
    let store = kind.store_path(base.path());
    let files = files_of(&store);
    let total: u64 = files.iter().map(|(_, l)| l).sum();
    if std::env::var_os("ZCORE_FLIP_VERBOSE").is_some() {
        for (f, len) in &files {
            println!("  {} {len}", f.display());
        }
    }
    println!(
        "{}: store of {} files, {total} bytes, last version {}",
        kind.name(),
        files.len(),
        model.last_version
    );

    // Flips are spread evenly over the kinds of file (journal, tables, metadata; redb: the
    // header page and the other pages), then over the files of a kind; half of the offsets are
    // uniform over the file, half uniform over its non-zero bytes (so that unused, zeroed
    // space does not make most flips trivially harmless).
    let mut by_kind: BTreeMap<String, Vec<FlipTarget>> = BTreeMap::new();
    for (file, len) in &files {
        let relative = file.strip_prefix(&store).unwrap_or(file).to_path_buf();
        let bytes = std::fs::read(file).unwrap();
        let mut regions: BTreeMap<String, (Vec<u64>, Vec<u64>)> = BTreeMap::new();
        for offset in 0..*len {
            let region = regions
                .entry(file_kind(kind, &relative, offset))
                .or_default();
            region.0.push(offset);
            if bytes[offset as usize] != 0 {
                region.1.push(offset);
            }
        }
        for (name, (all, nonzero)) in regions {
            by_kind
                .entry(name)
                .or_default()
                .push((file.clone(), all, nonzero));
        }
    }
    let kinds: Vec<String> = by_kind.keys().cloned().collect();
    println!("{}: file kinds {kinds:?}", kind.name());

    // Control: an unflipped copy must read back exactly and verify clean.
    {
        let control = tempfile::tempdir().unwrap();
        copy_tree(&store, &kind.store_path(control.path()));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let outcome = runtime.block_on(trial(kind, control.path(), &model));
        assert!(
            matches!(outcome, Outcome::Harmless),
            "{}: the unflipped store does not read back: {outcome:?}",
            kind.name()
        );
    }

    let mut rng = seed ^ (kind as u64);
    let mut counts = Counts::default();
    let panics_before = PANICS_SEEN.load(Ordering::Relaxed);
    for i in 0..flips {
        let group = &by_kind[&kinds[(next_random(&mut rng) % kinds.len() as u64) as usize]];
        let (file, all, nonzero) = &group[(next_random(&mut rng) % group.len() as u64) as usize];
        let pool = if next_random(&mut rng).is_multiple_of(2) && !nonzero.is_empty() {
            nonzero
        } else {
            all
        };
        let offset = pool[(next_random(&mut rng) % pool.len() as u64) as usize];
        let mask = (next_random(&mut rng) % 255 + 1) as u8;
        let relative = file.strip_prefix(&store).unwrap_or(file).to_path_buf();
        let trial_dir = tempfile::tempdir().unwrap();
        let target = kind.store_path(trial_dir.path());
        copy_tree(&store, &target);
        let flipped = if relative.as_os_str().is_empty() {
            target.clone()
        } else {
            target.join(&relative)
        };
        let mut bytes = std::fs::read(&flipped).unwrap();
        bytes[offset as usize] ^= mask;
        std::fs::write(&flipped, &bytes).unwrap();
        let label = format!(
            "flip {i}: {} offset {offset} ^ {mask:#04x}",
            relative.display()
        );
        let file_kind = file_kind(kind, &relative, offset);
        if std::env::var_os("ZCORE_FLIP_TRACE").is_some() {
            eprintln!("{}: {label}", kind.name());
        }

        let (tx, rx) = std::sync::mpsc::channel();
        let model = Arc::clone(&model);
        let dir = trial_dir.path().to_path_buf();
        let spawned = std::thread::Builder::new()
            .name(format!("flip-trial-{i}"))
            .spawn(move || {
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    runtime.block_on(trial(kind, &dir, &model))
                }));
                let _ = tx.send(result);
            });
        spawned.expect("spawn trial thread");
        let slot = match rx.recv_timeout(TRIAL_TIMEOUT) {
            Err(_) => {
                counts.hangs.push(label);
                // The thread still uses the directory: leave it behind.
                std::mem::forget(trial_dir);
                3
            }
            Ok(Err(_)) => {
                counts.panics.push(label);
                4
            }
            Ok(Ok(Outcome::Detected(stage, message))) => {
                counts
                    .examples
                    .entry(stage)
                    .or_insert_with(|| format!("{label}: {message}"));
                *counts.detected.entry(stage).or_default() += 1;
                0
            }
            Ok(Ok(Outcome::WrongReadCaughtByVerify(what))) => {
                counts.wrong_read_caught.push(format!("{label}: {what}"));
                *counts.detected.entry("verify").or_default() += 1;
                0
            }
            Ok(Ok(Outcome::Harmless)) => {
                counts.harmless += 1;
                1
            }
            Ok(Ok(Outcome::SilentWrong(what))) => {
                counts.silent.push(format!("{label}: {what}"));
                2
            }
        };
        counts.per_kind.entry(file_kind).or_default()[slot] += 1;
    }
    let engine_panics = PANICS_SEEN.load(Ordering::Relaxed) - panics_before;
    let detected: u64 = counts.detected.values().sum();
    println!(
        "{}: {flips} flips (seed {seed:#x}): detected {detected} {:?}, harmless {}, \
         silent-wrong {}, panic {}, hang {}; wrong read caught by verify {}; \
         engine-internal panics caught at our boundary {engine_panics}",
        kind.name(),
        counts.detected,
        counts.harmless,
        counts.silent.len(),
        counts.panics.len(),
        counts.hangs.len(),
        counts.wrong_read_caught.len(),
    );
    for line in &counts.wrong_read_caught {
        let short: String = line.chars().take(400).collect();
        println!("{}:   wrong read, caught by verify: {short}", kind.name());
    }
    for (file_kind, [d, h, s, hang, p]) in &counts.per_kind {
        println!(
            "{}:   {file_kind:<28} flips {:>4}: detected {d}, harmless {h}, silent-wrong {s}, \
             hang {hang}, panic {p}",
            kind.name(),
            d + h + s + hang + p
        );
    }
    for (stage, example) in &counts.examples {
        let short: String = example.chars().take(300).collect();
        println!("{}:   e.g. detected at {stage}: {short}", kind.name());
    }
    for line in counts
        .silent
        .iter()
        .chain(&counts.panics)
        .chain(&counts.hangs)
        .take(20)
    {
        println!("{}:   {line}", kind.name());
    }
    assert!(
        counts.silent.is_empty() && counts.panics.is_empty() && counts.hangs.is_empty(),
        "{}: silent-wrong {:?}, panics {:?}, hangs {:?}",
        kind.name(),
        counts.silent,
        counts.panics,
        counts.hangs
    );
    assert!(
        detected > 0,
        "a campaign that detects nothing flipped nothing"
    );
}

fn install_quiet_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS_SEEN.fetch_add(1, Ordering::Relaxed);
            // The test's own thread (named after the test) reports its failures as usual.
            let test_thread = std::thread::current()
                .name()
                .is_some_and(|n| n.contains("byte_flips"));
            if test_thread || std::env::var_os("ZCORE_FLIP_VERBOSE").is_some() {
                default(info);
            }
        }));
    });
}

#[test]
fn fjall_byte_flips_are_detected_or_harmless() {
    campaign(Kind::Fjall);
}

#[test]
fn redb_byte_flips_are_detected_or_harmless() {
    campaign(Kind::Redb);
}
