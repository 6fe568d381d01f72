//! The simulated node: opens the engine on a simulated backend, checks what recovered against
//! the model, then runs a seeded transactional workload until the harness kills it.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use zcore_engine::{
    CollectionName, Durability, Engine, EngineOptions, Isolation, TxnError, WriteOptions,
};

use super::CrashConfig;
use super::model::{Model, State, Write};
use crate::storage::{SimDisk, SimRng, open_backend};

/// User collections the workload writes.
pub(crate) const COLLECTIONS: [&str; 3] = ["accounts", "events", "index"];
const KEYS: u64 = 12;
const SEQUENCE: &[u8] = b"ids";

pub(crate) fn lock(model: &Mutex<Model>) -> MutexGuard<'_, Model> {
    model
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn now_ms() -> u128 {
    turmoil::sim_elapsed().unwrap_or_default().as_millis()
}

fn names() -> Result<Vec<CollectionName>, TxnError> {
    COLLECTIONS
        .iter()
        .map(|c| CollectionName::new(c).map_err(|e| TxnError::Backend(e.into())))
        .collect()
}

/// Every user entry at the latest version.
async fn read_state(engine: &Engine, names: &[CollectionName]) -> Result<State, TxnError> {
    let mut state = State::new();
    let existing = engine.collections();
    let read = engine.begin_read();
    for name in names {
        if !existing.contains(name) {
            continue;
        }
        for (key, value) in read.scan_prefix(name, b"").await? {
            state.insert((name.as_str().to_owned(), key), value);
        }
    }
    Ok(state)
}

/// One incarnation of the node. Never returns an error to turmoil: every finding goes to the
/// model (a panic would stop the whole simulation, which is what it is for).
pub(crate) async fn incarnation(config: CrashConfig, disk: SimDisk, model: Arc<Mutex<Model>>) {
    let dead = disk.start_incarnation();
    let incarnation = disk.incarnations();
    let label = format!("t={}ms inc={incarnation}", now_ms());
    let backend = match open_backend(config.kind, &disk, dead).await {
        Ok(b) => b,
        Err(e) => {
            let mut m = lock(&model);
            if e.is_io() && m.failed_opens < 20 {
                m.failed_opens += 1;
                m.counts.open_io_failures += 1;
                m.trace(format!("{label}: open failed (I/O, will retry): {e}"));
            } else {
                m.violation(format!("{label}: storage does not reopen: {e}"));
            }
            return;
        }
    };
    let mut rng = SimRng::derive(config.seed, 0x0000_C4A5_0000 + incarnation);
    let options = EngineOptions {
        retain_versions: 0,
        gc_interval: Some(Duration::from_millis(rng.range_inclusive(20, 400))),
        sequence_block: rng.range_inclusive(1, 8),
        disable_conflict_detection: false,
        ..EngineOptions::default()
    };
    let engine = match Engine::open(backend, options).await {
        Ok(e) => e,
        Err(e) => {
            let mut m = lock(&model);
            if config.io_faults() && m.failed_opens < 20 {
                m.failed_opens += 1;
                m.counts.open_io_failures += 1;
                m.trace(format!("{label}: engine open failed (will retry): {e}"));
            } else {
                m.violation(format!("{label}: engine does not reopen: {e}"));
            }
            return;
        }
    };
    let names = match names() {
        Ok(n) => n,
        Err(e) => {
            lock(&model).violation(format!("bad collection name: {e}"));
            return;
        }
    };
    // Recovery check before anything else touches the engine.
    match read_state(&engine, &names).await {
        Ok(state) => {
            let mut m = lock(&model);
            m.failed_opens = 0;
            m.recover(&state, &label);
        }
        Err(e) => {
            let mut m = lock(&model);
            if config.io_faults() {
                m.counts.storage_errors += 1;
                m.trace(format!("{label}: recovery read failed (I/O): {e}"));
            } else {
                m.violation(format!("{label}: recovered engine cannot be read: {e}"));
            }
            return;
        }
    }
    for name in &names {
        if let Err(e) = engine.create_collection(name).await {
            let mut m = lock(&model);
            m.counts.storage_errors += 1;
            m.trace(format!("{label}: create {name} failed: {e}"));
            return;
        }
    }
    if let Err(finding) = workload(&config, &engine, &names, &mut rng, &model).await {
        let mut m = lock(&model);
        m.counts.storage_errors += 1;
        m.trace(format!(
            "t={}ms inc={incarnation}: stopped: {finding}",
            now_ms()
        ));
        if !config.io_faults() && !finding.starts_with("storage") {
            m.violation(format!("inc={incarnation}: {finding}"));
        }
    }
    // The incarnation now idles until the harness kills it (its storage failed); dropping the
    // engine here would try to close the database on a failed disk.
    std::future::pending::<()>().await;
}

/// Runs transactions until an operation fails; returns what failed.
async fn workload(
    config: &CrashConfig,
    engine: &Engine,
    names: &[CollectionName],
    rng: &mut SimRng,
    model: &Arc<Mutex<Model>>,
) -> Result<(), String> {
    loop {
        tokio::time::sleep(Duration::from_micros(rng.range_inclusive(0, 4_000))).await;
        let roll = rng.below(100);
        if roll < 72 {
            commit_one(config, engine, names, rng, model).await?;
        } else if roll < 82 {
            match engine.next_seq(SEQUENCE).await {
                Ok(v) => {
                    let mut m = lock(model);
                    m.counts.sequence_values += 1;
                    if v <= m.seq_max {
                        let max = m.seq_max;
                        m.violation(format!(
                            "sequence went backwards or repeated: {v} after {max}"
                        ));
                    }
                    m.seq_max = m.seq_max.max(v);
                }
                Err(e) => return Err(format!("storage: next_seq: {e}")),
            }
        } else if roll < 88 {
            match engine.backend().sync().await {
                Ok(()) => {
                    let mut m = lock(model);
                    m.synced();
                    m.trace(format!("t={}ms sync", now_ms()));
                }
                Err(e) => return Err(format!("storage: sync: {e}")),
            }
        } else {
            let state = read_state(engine, names)
                .await
                .map_err(|e| format!("storage: live read: {e}"))?;
            let mut m = lock(model);
            if m.settled() {
                m.counts.live_reads_checked += 1;
                if state != m.current() {
                    return Err(format!(
                        "a live read differs from the acknowledged commits ({} vs {} entries)",
                        state.len(),
                        m.current().len()
                    ));
                }
            }
        }
    }
}

async fn commit_one(
    config: &CrashConfig,
    engine: &Engine,
    names: &[CollectionName],
    rng: &mut SimRng,
    model: &Arc<Mutex<Model>>,
) -> Result<(), String> {
    let synced = rng.chance(config.synced_fraction);
    let durability = if synced {
        Durability::Synced
    } else {
        Durability::Buffered
    };
    let mut txn = engine.begin_write_with(WriteOptions {
        isolation: Isolation::Serializable,
        durability,
    });
    // A counter every transaction reads and bumps (so every commit changes the state), plus
    // 1..=5 random puts and deletes over the collections.
    let counter_collection = &names[0];
    let counter = txn
        .get(counter_collection, b"counter")
        .await
        .map_err(|e| format!("storage: read counter: {e}"))?;
    let next = counter
        .as_deref()
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(0)
        + 1;
    let mut writes: Vec<Write> = Vec::new();
    let tag = {
        let m = lock(model);
        m.trace.len()
    };
    writes.push((
        counter_collection.as_str().to_owned(),
        b"counter".to_vec(),
        Some(next.to_string().into_bytes()),
    ));
    for _ in 0..rng.range_inclusive(1, 5) {
        let c = &names[rng.below(names.len() as u64) as usize];
        let key = format!("k{:02}", rng.below(KEYS)).into_bytes();
        let value = if rng.below(5) == 0 {
            None
        } else {
            let len = rng.range_inclusive(4, config.max_value_len as u64) as usize;
            let mut v = format!("n{next}.{tag}.").into_bytes();
            v.resize(len.max(v.len()), b'x');
            Some(v)
        };
        writes.push((c.as_str().to_owned(), key, value));
    }
    for (c, key, value) in &writes {
        let name = names
            .iter()
            .find(|n| n.as_str() == c)
            .ok_or_else(|| format!("unknown collection {c}"))?;
        let r = match value {
            Some(v) => txn.put(name, key.clone(), v.clone()),
            None => txn.delete(name, key.clone()),
        };
        r.map_err(|e| format!("buffer write: {e}"))?;
    }
    let id = lock(model).begin(writes);
    match txn.commit().await {
        Ok(info) => {
            let mut m = lock(model);
            m.acked(id, synced);
            m.trace(format!(
                "t={}ms commit #{id} v{} {}",
                now_ms(),
                info.version,
                if synced { "synced" } else { "buffered" }
            ));
            Ok(())
        }
        Err(e) => {
            let mut m = lock(model);
            m.unknown(id);
            if e.is_conflict() {
                // Single writer: a conflict would be an engine bug.
                return Err(format!("unexpected conflict with a single writer: {e}"));
            }
            Err(format!("storage: commit #{id}: {e}"))
        }
    }
}
