//! Process-kill test of migration runs.
//!
//! The test binary re-executes itself as a child (`ZCORE_MIGRATE_CHILD` set) that runs one
//! migration; the parent SIGKILLs it at a random moment (while reading, writing, merging
//! metadata or verifying), then starts it again, until a child finishes. The target must then
//! hold exactly what an uninterrupted run into a fresh target holds, verification must pass,
//! and one more run must write nothing.
//!
//! Scenarios: a typed redb file into fjall and into a zcore redb store; a fjall store into a
//! redb store (latest snapshot) and with `--history`. Each round builds a new random data set.
//! `ZCORE_MIGRATE_ROUNDS` sets the rounds per scenario (default 4), `ZCORE_MIGRATE_KILLS` the
//! kills per round (default 5). Runs without libtest (`harness = false`) and prints a
//! libtest-style summary line.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redb::{Database, MultimapTableDefinition, TableDefinition};
use zcore_backends::{FjallBackend, FjallOptions, RedbBackend, RedbOptions};
use zcore_compat::migrate::{self, Endpoint, MigrateOptions, NoProgress, RunKind, Source};
use zcore_engine::{CollectionName, Engine, EngineOptions, KeyRange, ScanRequest, StorageBackend};

type Rows = Vec<(Vec<u8>, Vec<u8>)>;

const SCENARIOS: [&str; 4] = [
    "redb-file>fjall",
    "redb-file>redb",
    "fjall>redb",
    "fjall>fjall+history",
];

fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn open(kind: &str, path: &Path) -> Arc<dyn StorageBackend> {
    match kind {
        "fjall" => Arc::new(
            FjallBackend::open(
                path,
                &FjallOptions {
                    worker_threads: Some(1),
                    cache_size_bytes: 8 << 20,
                    ..FjallOptions::default()
                },
            )
            .expect("open fjall"),
        ),
        _ => Arc::new(
            RedbBackend::open(
                path,
                &RedbOptions {
                    cache_size_bytes: 8 << 20,
                },
            )
            .expect("open redb"),
        ),
    }
}

fn parse(scenario: &str) -> (&str, &str, bool) {
    let (from, rest) = scenario.split_once('>').unwrap();
    let (to, history) = match rest.split_once('+') {
        Some((to, _)) => (to, true),
        None => (rest, false),
    };
    (from, to, history)
}

fn options(history: bool) -> MigrateOptions {
    MigrateOptions {
        history,
        batch_rows: 64,
        sync_every: 4,
        ..MigrateOptions::default()
    }
}

/// Builds the source of a round.
fn build_source(from: &str, path: &Path, seed: u64, rt: &tokio::runtime::Runtime) {
    let n = 1_000 + mix(seed) % 6_000;
    if from == "redb-file" {
        let db = Database::create(path).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let mut t = tx
                .open_table(TableDefinition::<u64, &str>::new("events"))
                .unwrap();
            for i in 0..n {
                t.insert(mix(seed ^ i), format!("event {i}").as_str())
                    .unwrap();
            }
            let mut t = tx
                .open_table(TableDefinition::<(&str, i32), Option<u64>>::new("index"))
                .unwrap();
            for i in 0..n / 2 {
                let name = format!("n{}", mix(i) % 97);
                t.insert(
                    (name.as_str(), mix(seed + i) as i32),
                    (i % 3 == 0).then_some(i),
                )
                .unwrap();
            }
            let mut t = tx
                .open_multimap_table(MultimapTableDefinition::<&str, i16>::new("tags"))
                .unwrap();
            for i in 0..n / 3 {
                let tag = format!("t{}", i % 11);
                t.insert(tag.as_str(), mix(seed * 7 + i) as i16).unwrap();
            }
        }
        tx.commit().unwrap();
        return;
    }
    rt.block_on(async {
        let backend = open(from, path);
        let engine = Engine::open(
            Arc::clone(&backend),
            EngineOptions {
                gc_interval: None,
                ..EngineOptions::default()
            },
        )
        .await
        .unwrap();
        let cols: Vec<CollectionName> = ["orders", "users"]
            .iter()
            .map(|c| CollectionName::new(c).unwrap())
            .collect();
        for c in &cols {
            engine.create_collection(c).await.unwrap();
        }
        for round in 0..(n / 200) {
            let mut tx = engine.begin_write();
            for i in 0..300 {
                let k = (mix(seed + round * 1000 + i) % n).to_be_bytes().to_vec();
                let c = &cols[(i % 2) as usize];
                if i % 13 == 0 {
                    tx.delete(c, k).unwrap();
                } else {
                    tx.put(c, k, format!("r{round}.{i}").into_bytes()).unwrap();
                }
            }
            tx.commit().await.unwrap();
        }
        engine.next_seq(b"ids").await.unwrap();
        engine.close().await.unwrap();
    });
}

fn source(from: &str, path: &Path) -> Source {
    if from == "redb-file" {
        Source::RedbFile {
            path: path.to_path_buf(),
        }
    } else {
        Source::Store {
            backend: open(from, path),
            label: format!("{from}:{}", path.display()),
        }
    }
}

async fn close_source(s: &Source) {
    if let Source::Store { backend, .. } = s {
        backend.close().await.unwrap();
    }
}

/// One migration run (the child's work, and the parent's reference and final reruns).
async fn run_once(scenario: &str, src: &Path, dst: &Path) -> Result<migrate::Report, String> {
    let (from, to, history) = parse(scenario);
    let s = source(from, src);
    // Through the endpoint, as `zstore migrate --to` does: a new target is created atomically.
    let endpoint: Endpoint = format!("{to}:{}", dst.display())
        .parse()
        .map_err(|e: migrate::MigrateError| e.to_string())?;
    let t = endpoint.open_target().await.map_err(|e| e.to_string())?;
    let backend = Arc::clone(&t.backend);
    let result = migrate::migrate(&s, &t, &options(history), &NoProgress).await;
    close_source(&s).await;
    backend.close().await.map_err(|e| e.to_string())?;
    result.map_err(|e| e.to_string())
}

/// The target's content: user collections at the latest version, or (history) every backend
/// entry of them.
async fn content(scenario: &str, dst: &Path) -> Vec<(String, Rows)> {
    let (_, to, history) = parse(scenario);
    let backend = open(to, dst);
    let mut out = Vec::new();
    if history {
        for c in backend.list_collections().await.unwrap() {
            if c.is_system() {
                continue;
            }
            let mut rows = Vec::new();
            let mut request = Some(ScanRequest::forward(KeyRange::all(), 1000));
            while let Some(req) = request.take() {
                let page = backend.scan(&c, &req).await.unwrap();
                request = req.next_page(&page);
                rows.extend(page.entries);
            }
            out.push((c.to_string(), rows));
        }
    } else {
        let engine = Engine::open(Arc::clone(&backend), EngineOptions::default())
            .await
            .unwrap();
        let read = engine.begin_read();
        for c in engine.collections() {
            out.push((c.to_string(), read.scan_prefix(&c, b"").await.unwrap()));
        }
        drop(read);
        engine.close().await.unwrap();
        return out;
    }
    backend.close().await.unwrap();
    out
}

async fn raw_dump(scenario: &str, dst: &Path) -> Vec<(String, Rows)> {
    let (_, to, _) = parse(scenario);
    let backend = open(to, dst);
    let mut out = Vec::new();
    for c in backend.list_collections().await.unwrap() {
        let mut rows = Vec::new();
        let mut request = Some(ScanRequest::forward(KeyRange::all(), 1000));
        while let Some(req) = request.take() {
            let page = backend.scan(&c, &req).await.unwrap();
            request = req.next_page(&page);
            rows.extend(page.entries);
        }
        out.push((c.to_string(), rows));
    }
    backend.close().await.unwrap();
    out
}

fn target_path(scenario: &str, dir: &Path, name: &str) -> PathBuf {
    let (_, to, _) = parse(scenario);
    if to == "redb" {
        dir.join(format!("{name}.redb"))
    } else {
        dir.join(name)
    }
}

/// Runs a child; kills it after `delay` unless it finished first. Returns whether it finished.
fn child(scenario: &str, src: &Path, dst: &Path, delay: Duration) -> Result<bool, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = Command::new(exe)
        .env(
            "ZCORE_MIGRATE_CHILD",
            format!("{scenario}|{}|{}", src.display(), dst.display()),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + delay;
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return if status.success() {
                Ok(true)
            } else {
                Err(format!("child failed: {status}"))
            };
        }
        if Instant::now() >= deadline {
            child.kill().map_err(|e| e.to_string())?;
            child.wait().map_err(|e| e.to_string())?;
            return Ok(false);
        }
        std::thread::sleep(Duration::from_micros(300));
    }
}

struct Outcome {
    kills: u64,
    rows: u64,
}

fn round(
    scenario: &str,
    seed: u64,
    max_kills: u64,
    rt: &tokio::runtime::Runtime,
) -> Result<Outcome, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (from, _, _) = parse(scenario);
    let src = if from == "redb-file" {
        dir.path().join("source.redb")
    } else if from == "redb" {
        dir.path().join("source.zcore.redb")
    } else {
        dir.path().join("source.fjall")
    };
    build_source(from, &src, seed, rt);
    // The reference: one uninterrupted run into a fresh target, timed.
    let reference = target_path(scenario, dir.path(), "reference");
    let started = Instant::now();
    let report = rt.block_on(run_once(scenario, &src, &reference))?;
    let took = started.elapsed();
    if !report.ok {
        return Err(format!(
            "reference run failed verification:\n{}",
            report.to_text()
        ));
    }
    let expected = rt.block_on(content(scenario, &reference));
    let rows = report.copied_rows();

    let target = target_path(scenario, dir.path(), "target");
    let mut kills = 0;
    let mut state = mix(seed ^ 0xD1CE);
    loop {
        state = mix(state);
        let finished = if kills >= max_kills {
            child(scenario, &src, &target, Duration::from_secs(600))?
        } else {
            // Child start-up takes a few ms; spread the kill over the whole run.
            let window = took.as_micros() as u64 + 10_000;
            let delay = Duration::from_micros(1_000 + state % window);
            child(scenario, &src, &target, delay)?
        };
        if finished {
            break;
        }
        kills += 1;
    }
    let got = rt.block_on(content(scenario, &target));
    if got != expected {
        return Err(format!(
            "seed {seed}: after {kills} kills the target differs from an uninterrupted run"
        ));
    }
    // One more run: verifies, writes nothing.
    let before = rt.block_on(raw_dump(scenario, &target));
    let again = rt.block_on(run_once(scenario, &src, &target))?;
    if again.run != RunKind::AlreadyComplete || !again.ok {
        return Err(format!(
            "seed {seed}: rerun after completion: {}",
            again.to_text()
        ));
    }
    if rt.block_on(raw_dump(scenario, &target)) != before {
        return Err(format!(
            "seed {seed}: rerunning a finished migration changed the target"
        ));
    }
    Ok(Outcome { kills, rows })
}

fn main() {
    if let Ok(spec) = std::env::var("ZCORE_MIGRATE_CHILD") {
        let mut parts = spec.splitn(3, '|');
        let (scenario, src, dst) = (
            parts.next().unwrap(),
            PathBuf::from(parts.next().unwrap()),
            PathBuf::from(parts.next().unwrap()),
        );
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        match rt.block_on(run_once(scenario, &src, &dst)) {
            Ok(r) if r.ok => std::process::exit(0),
            Ok(r) => {
                eprintln!("{}", r.to_text());
                std::process::exit(1)
            }
            Err(e) => {
                eprintln!("migrate child: {e}");
                std::process::exit(1)
            }
        }
    }
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if !args.is_empty() && !args.iter().any(|a| "migrate_kill".contains(a.as_str())) {
        println!("0 passed; 0 failed; 4 skipped");
        return;
    }
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let rounds = env("ZCORE_MIGRATE_ROUNDS", 4);
    let max_kills = env("ZCORE_MIGRATE_KILLS", 5);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (mut passed, mut failed) = (0, 0);
    for (s, scenario) in SCENARIOS.iter().enumerate() {
        let started = Instant::now();
        let mut kills = 0;
        let mut rows = 0;
        let mut error = None;
        for r in 0..rounds {
            match round(scenario, 1 + s as u64 * 1000 + r, max_kills, &rt) {
                Ok(o) => {
                    kills += o.kills;
                    rows += o.rows;
                }
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
        match error {
            None => {
                passed += 1;
                println!(
                    "migrate kill {scenario}: {rounds} data sets ({rows} rows), {kills} SIGKILLs, every run resumed to the uninterrupted result, reruns wrote nothing ({:.1}s)",
                    started.elapsed().as_secs_f64()
                );
            }
            Some(e) => {
                failed += 1;
                println!("migrate kill {scenario} FAILED: {e}");
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    if failed > 0 {
        std::process::exit(1);
    }
}
