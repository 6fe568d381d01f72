//! Process-kill test of the transaction layer on the disk backends.
//!
//! The test binary re-executes itself as a child (`ZCORE_KILL_CHILD` set) that commits
//! transactions in a loop and reports each acknowledged synced commit on stdout. The parent
//! SIGKILLs it at a random moment, reopens the store and checks:
//! - durability: every acknowledged synced commit is there, and the oracle resumed at or
//!   above its version;
//! - atomicity: every transaction is present whole or not at all, across three collections;
//! - sequences: values handed out before the kill are never handed out again.
//!
//! `ZCORE_KILLS` sets the kills per backend (default 300, what CI runs). Both backends run in
//! parallel, one thread each. A store directory is reused for 30 kills in a row (later rounds
//! recover a store killed many times before, and every round re-checks every commit
//! acknowledged on that store), then the loop starts over on a fresh one: fjall replays its
//! whole journal on each open, so a single store killed 300 times makes the cycles ever slower.
//! Kills land anywhere: before the child reached `READY` (during open and recovery), between
//! commits, inside a commit or a sync. `ZCORE_KILL_PROFILE=1` prints cycle timings.
//!
//! The memory backend has no kill test: nothing of it survives the process, so there is
//! nothing to recover (its crash behaviour is simulated instead, in `zcore-sim`'s crash tests,
//! with a durable image that loses unsynced writes).
//!
//! Runs without libtest (`harness = false`) and prints a libtest-style summary line.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use zcore_backends::{FjallBackend, FjallOptions, RedbBackend, RedbOptions};
use zcore_engine::{
    CollectionName, Durability, Engine, EngineOptions, StorageBackend, WriteOptions,
};

const COLLECTIONS: [&str; 3] = ["ledger_a", "ledger_b", "ledger_c"];
const KEYS_PER_COLLECTION: u8 = 3;

fn open_backend(kind: &str, dir: &Path) -> Arc<dyn StorageBackend> {
    match kind {
        "fjall" => Arc::new(
            FjallBackend::open(
                dir.join("store.fjall"),
                &FjallOptions {
                    worker_threads: Some(1),
                    cache_size_bytes: 8 << 20,
                    ..FjallOptions::default()
                },
            )
            .expect("open fjall"),
        ),
        "redb" => Arc::new(
            RedbBackend::open(
                dir.join("store.redb"),
                &RedbOptions {
                    cache_size_bytes: 8 << 20,
                },
            )
            .expect("open redb"),
        ),
        other => panic!("unknown backend {other}"),
    }
}

fn cols() -> Vec<CollectionName> {
    COLLECTIONS
        .iter()
        .map(|c| CollectionName::new(c).unwrap())
        .collect()
}

fn engine_options() -> EngineOptions {
    EngineOptions {
        gc_interval: None,
        sequence_block: 8,
        ..EngineOptions::default()
    }
}

fn key(txn: u64, i: u8) -> Vec<u8> {
    let mut k = txn.to_be_bytes().to_vec();
    k.push(i);
    k
}

/// Child: commit forever, report acknowledgements, until killed.
async fn child(kind: &str, dir: PathBuf) {
    let engine = Engine::open(open_backend(kind, &dir), engine_options())
        .await
        .expect("open engine");
    for c in cols() {
        engine.create_collection(&c).await.expect("create");
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "READY").unwrap();
    out.flush().unwrap();
    let mut n = 0u64;
    loop {
        n += 1;
        let txn = engine.next_seq(b"txn").await.expect("seq");
        writeln!(out, "SEQ {txn}").unwrap();
        // Negative control: every commit buffered, but reported as acknowledged durable.
        let lie = std::env::var_os(ACK_BUFFERED).is_some();
        let durability = if lie || n.is_multiple_of(4) {
            Durability::Buffered
        } else {
            Durability::Synced
        };
        let mut tx = engine.begin_write_with(WriteOptions {
            durability,
            ..WriteOptions::default()
        });
        for c in cols() {
            for i in 0..KEYS_PER_COLLECTION {
                tx.put(&c, key(txn, i), txn.to_be_bytes()).unwrap();
            }
            tx.put(&c, b"last".to_vec(), txn.to_be_bytes()).unwrap();
        }
        let info = tx.commit().await.expect("commit");
        if lie || durability == Durability::Synced {
            writeln!(out, "ACK {txn} {}", info.version).unwrap();
            out.flush().unwrap();
        }
        if n.is_multiple_of(25) {
            engine.collect_garbage().await.expect("gc");
        }
    }
}

/// splitmix64: deterministic kill timing choices per round.
fn next_random(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

struct Round {
    acked: Vec<(u64, u64)>,
    seqs: Vec<u64>,
    /// Whether the child reported `READY` before it was killed (else it died while opening
    /// and recovering the store).
    ready: bool,
}

fn run_child_and_kill(
    kind: &str,
    dir: &Path,
    wait_acks: u64,
    extra_micros: u64,
    ack_buffered: bool,
) -> Round {
    let exe = std::env::current_exe().expect("current exe");
    let mut command = Command::new(exe);
    if ack_buffered {
        command.env(ACK_BUFFERED, "1");
    }
    let mut child = command
        .env("ZCORE_KILL_CHILD", format!("{kind}:{}", dir.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("child stdout");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut round = Round {
        acked: Vec::new(),
        seqs: Vec::new(),
        ready: false,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let record = |line: &str, round: &mut Round| {
        let mut parts = line.split_whitespace();
        match (parts.next(), parts.next(), parts.next()) {
            (Some("ACK"), Some(t), Some(v)) => {
                round.acked.push((t.parse().unwrap(), v.parse().unwrap()))
            }
            (Some("SEQ"), Some(s), None) => round.seqs.push(s.parse().unwrap()),
            (Some("READY"), None, None) => round.ready = true,
            _ => {}
        }
    };
    while (round.acked.len() as u64) < wait_acks && Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_secs(5)) {
            Ok(line) => record(&line, &mut round),
            Err(_) => break,
        }
    }
    std::thread::sleep(Duration::from_micros(extra_micros));
    child.kill().expect("SIGKILL child");
    child.wait().expect("reap child");
    reader.join().expect("reader thread");
    // Lines written before the kill: acknowledgements the parent may not have read yet count.
    while let Ok(line) = rx.try_recv() {
        record(&line, &mut round);
    }
    round
}

async fn verify(
    kind: &str,
    dir: &Path,
    acked: &[(u64, u64)],
    seqs_seen: &BTreeSet<u64>,
) -> Result<u64, String> {
    let engine = Engine::open(open_backend(kind, dir), engine_options())
        .await
        .map_err(|e| e.to_string())?;
    let latest = engine.latest_version();
    if let Some(max_acked) = acked.iter().map(|(_, v)| *v).max()
        && latest < max_acked
    {
        return Err(format!(
            "oracle resumed at {latest}, below acknowledged version {max_acked}"
        ));
    }
    let r = engine.begin_read();
    let cols = cols();
    // Keys seen per transaction, over all collections: a transaction is whole when it has
    // every key in every collection.
    let mut keys_of: BTreeMap<u64, usize> = BTreeMap::new();
    let mut lasts = Vec::new();
    for c in &cols {
        let rows = match r.scan_prefix(c, b"").await {
            Ok(rows) => rows,
            Err(zcore_engine::TxnError::CollectionNotFound { .. }) => Vec::new(),
            Err(e) => return Err(e.to_string()),
        };
        for (k, v) in rows {
            if k == b"last" {
                lasts.push(v);
                continue;
            }
            if k.len() != 9 || k[8] >= KEYS_PER_COLLECTION {
                return Err(format!("{c}: unexpected key {k:?}"));
            }
            let txn = u64::from_be_bytes(k[..8].try_into().unwrap());
            if v != txn.to_be_bytes() {
                return Err(format!("{c}: key of txn {txn} holds another txn's value"));
            }
            *keys_of.entry(txn).or_default() += 1;
        }
    }
    // Atomicity: each present transaction is complete in every collection.
    let whole = cols.len() * usize::from(KEYS_PER_COLLECTION);
    if let Some((txn, n)) = keys_of.iter().find(|(_, n)| **n != whole) {
        return Err(format!(
            "partial transaction {txn}: {n} of its {whole} keys are on disk"
        ));
    }
    let present: BTreeSet<u64> = keys_of.into_keys().collect();
    if lasts.windows(2).any(|w| w[0] != w[1]) {
        return Err(format!("`last` differs across collections: {lasts:?}"));
    }
    // Durability of every acknowledged synced commit.
    for (txn, _) in acked {
        if !present.contains(txn) {
            return Err(format!("acknowledged synced transaction {txn} is missing"));
        }
    }
    drop(r);
    // Sequences never hand out a value again.
    let next = engine.next_seq(b"txn").await.map_err(|e| e.to_string())?;
    if seqs_seen.contains(&next) || seqs_seen.last().is_some_and(|m| next <= *m) {
        return Err(format!(
            "sequence reissued {next} (max seen {:?})",
            seqs_seen.last()
        ));
    }
    engine.close().await.map_err(|e| e.to_string())?;
    Ok(present.len() as u64)
}

/// What one backend's kill loop did.
struct Totals {
    kills: u64,
    /// Kills that landed before the child finished opening (during open and recovery).
    kills_during_open: u64,
    /// Distinct acknowledged synced commits.
    acked: u64,
    /// Acknowledged commits checked, summed over rounds (each round re-checks all earlier ones).
    acked_checks: u64,
    /// Transactions on disk after the last round of the last store (each checked whole).
    present: u64,
    seqs: u64,
    /// Stores used (a fresh one every `KILLS_PER_STORE` kills).
    stores: u64,
}

/// Kills per store directory before the loop starts over with a fresh one.
const KILLS_PER_STORE: u64 = 30;

/// Set in a child: acknowledge buffered commits as if they were durable (negative control).
const ACK_BUFFERED: &str = "ZCORE_KILL_ACK_BUFFERED";

fn parent(kind: &str, kills: u64, ack_buffered: bool) -> Result<Totals, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let mut dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut acked: Vec<(u64, u64)> = Vec::new();
    let mut seqs: BTreeSet<u64> = BTreeSet::new();
    let mut rng = 0x5EED_u64 ^ kind.len() as u64;
    let mut totals = Totals {
        kills: 0,
        kills_during_open: 0,
        acked: 0,
        acked_checks: 0,
        present: 0,
        seqs: 0,
        stores: 1,
    };
    for round in 0..kills {
        if round > 0 && round % KILLS_PER_STORE == 0 {
            // A fresh store: fjall replays its whole journal on every open, so one store
            // killed hundreds of times makes each cycle slower than the last.
            totals.acked += acked.len() as u64;
            totals.seqs += seqs.len() as u64;
            acked.clear();
            seqs.clear();
            dir = tempfile::tempdir().map_err(|e| e.to_string())?;
            totals.stores += 1;
        }
        // Mostly kill after a few acknowledgements and a short random delay; one round in
        // eight kills right after spawning, usually while the child opens the store.
        let wait = if next_random(&mut rng).is_multiple_of(8) {
            0
        } else {
            next_random(&mut rng) % 8
        };
        let extra = next_random(&mut rng) % 2000;
        let t0 = Instant::now();
        let r = run_child_and_kill(kind, dir.path(), wait, extra, ack_buffered);
        let child_secs = t0.elapsed().as_secs_f64();
        totals.kills += 1;
        if !r.ready {
            totals.kills_during_open += 1;
        }
        acked.extend(r.acked);
        seqs.extend(r.seqs);
        totals.present = rt
            .block_on(verify(kind, dir.path(), &acked, &seqs))
            .map_err(|e| {
                format!("{kind} round {round} (waited for {wait} acks + {extra} µs): {e}")
            })?;
        totals.acked_checks += acked.len() as u64;
        if std::env::var_os("ZCORE_KILL_PROFILE").is_some() && round % 10 == 0 {
            eprintln!(
                "{kind} round {round}: child {child_secs:.3}s, verify {:.3}s",
                t0.elapsed().as_secs_f64() - child_secs
            );
        }
        // The next round's sequence values must also exceed the one `verify` consumed.
        if let Some(max) = seqs.last().copied() {
            seqs.insert(max + 1);
        }
    }
    totals.acked += acked.len() as u64;
    totals.seqs += seqs.len() as u64;
    Ok(totals)
}

fn main() {
    if let Ok(spec) = std::env::var("ZCORE_KILL_CHILD") {
        let (kind, dir) = spec.split_once(':').expect("kind:dir");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(child(kind, PathBuf::from(dir)));
        return;
    }
    // `cargo test -- <filter>` passes arguments; only run when unfiltered or asked for.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if !args.is_empty() && !args.iter().any(|a| "kill".contains(a.as_str())) {
        println!("0 passed; 0 failed; 2 skipped");
        return;
    }
    let kills: u64 = std::env::var("ZCORE_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let started = Instant::now();
    // One thread per backend: most of a cycle is waiting (process start, fsync), so the two
    // loops overlap well on two cores.
    let results: Vec<(&str, Result<Totals, String>, f64)> = std::thread::scope(|scope| {
        let handles: Vec<_> = ["fjall", "redb"]
            .into_iter()
            .map(|kind| {
                scope.spawn(move || {
                    let t = Instant::now();
                    let r = parent(kind, kills, false);
                    (kind, r, t.elapsed().as_secs_f64())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("kill loop thread"))
            .collect()
    });
    let (mut passed, mut failed) = (0, 0);
    for (kind, result, secs) in results {
        match result {
            Ok(t) => {
                passed += 1;
                println!(
                    "kill test {kind}: {} SIGKILLs ({} during open/recovery) on {} stores, {} \
                     acknowledged synced commits ({} checks across rounds), lost 0, atomicity \
                     violations 0, sequence reissues 0 ({} values); {} transactions in the last \
                     store, none partial ({secs:.1}s)",
                    t.kills,
                    t.kills_during_open,
                    t.stores,
                    t.acked,
                    t.acked_checks,
                    t.seqs,
                    t.present
                );
            }
            Err(e) => {
                failed += 1;
                println!("kill test {kind} FAILED: {e}");
            }
        }
    }
    // Negative control: redb keeps buffered commits in process memory, so a child that
    // acknowledges them as durable loses acknowledged commits at a kill. The checker must say
    // so within a bounded number of kills.
    const CONTROL_KILLS: u64 = 30;
    match parent("redb", CONTROL_KILLS, true) {
        Err(e) if e.contains("is missing") => {
            passed += 1;
            println!(
                "kill test negative control (buffered commits acknowledged as durable): caught: {e}"
            );
        }
        Err(e) => {
            failed += 1;
            println!("kill test negative control FAILED with an unexpected error: {e}");
        }
        Ok(t) => {
            failed += 1;
            println!(
                "kill test negative control FAILED: {} kills with buffered commits acknowledged as durable went unnoticed",
                t.kills
            );
        }
    }
    println!(
        "kill test memory: not run (nothing survives the process; simulated in zcore-sim's crash tests)"
    );
    println!(
        "{passed} passed, {failed} failed ({:.1}s)",
        started.elapsed().as_secs_f64()
    );
    if failed > 0 {
        std::process::exit(1);
    }
}
