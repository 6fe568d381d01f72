//! Concurrent list-append transactions, recorded as a Jepsen/Elle history and checked by the
//! `adya` checker (an Elle-style cycle detector) for the isolation level the engine promises.
//! A negative control with validation switched off must be caught.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use zcore_backends::{FjallBackend, FjallOptions, MemoryBackend, RedbBackend, RedbOptions};
use zcore_engine::{
    CollectionName, Durability, Engine, EngineOptions, Isolation, StorageBackend, TxnError,
    WriteOptions,
};

const KEYS: u64 = 4;
const PROCESSES: u64 = 6;
const TXNS_PER_PROCESS: u64 = 30;

/// splitmix64, so every run issues the same operations.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn decode_list(bytes: Option<Vec<u8>>) -> Vec<u64> {
    bytes
        .map(|b| {
            b.chunks_exact(8)
                .map(|c| u64::from_be_bytes(c.try_into().unwrap()))
                .collect()
        })
        .unwrap_or_default()
}

/// Runs the workload and returns the history as JSON lines, plus (committed, aborted) counts.
async fn record(
    backend: Arc<dyn StorageBackend>,
    options: EngineOptions,
    isolation: Isolation,
) -> (String, u64, u64) {
    let engine = Engine::open(backend, options).await.unwrap();
    let c = CollectionName::new("lists").unwrap();
    engine.create_collection(&c).await.unwrap();
    let history = Arc::new(Mutex::new(Vec::<String>::new()));
    let log = |h: &Arc<Mutex<Vec<String>>>, v: Value| h.lock().unwrap().push(v.to_string());
    let mut tasks = Vec::new();
    for p in 0..PROCESSES {
        let (engine, c, history) = (engine.clone(), c.clone(), Arc::clone(&history));
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0u64, 0u64);
            for t in 0..TXNS_PER_PROCESS {
                let seed = mix(p * 1000 + t);
                let n_ops = 1 + seed % 3;
                let mut ops: Vec<(bool, u64, u64)> = Vec::new();
                for i in 0..n_ops {
                    let r = mix(seed ^ i);
                    let append = r.is_multiple_of(2);
                    // Append values are unique per history: process, txn and position.
                    ops.push((append, (r >> 8) % KEYS, p * 1_000_000 + t * 10 + i + 1));
                }
                let invoke: Vec<Value> = ops
                    .iter()
                    .map(|(a, k, v)| {
                        if *a {
                            json!(["append", k, v])
                        } else {
                            json!(["r", k, null])
                        }
                    })
                    .collect();
                log(
                    &history,
                    json!({"type": "invoke", "process": p, "value": invoke}),
                );
                let mut tx = engine.begin_write_with(WriteOptions {
                    isolation,
                    durability: Durability::Buffered,
                });
                let mut completed = Vec::new();
                for (append, k, v) in &ops {
                    let key = k.to_be_bytes();
                    let list = decode_list(tx.get(&c, &key).await.unwrap());
                    if *append {
                        let mut bytes: Vec<u8> =
                            list.iter().flat_map(|x| x.to_be_bytes()).collect();
                        bytes.extend_from_slice(&v.to_be_bytes());
                        tx.put(&c, key.to_vec(), bytes).unwrap();
                        completed.push(json!(["append", k, v]));
                    } else {
                        completed.push(json!(["r", k, list]));
                    }
                }
                tokio::task::yield_now().await;
                match tx.commit().await {
                    Ok(_) => {
                        ok += 1;
                        log(
                            &history,
                            json!({"type": "ok", "process": p, "value": completed}),
                        );
                    }
                    Err(TxnError::Conflict { .. }) => {
                        failed += 1;
                        log(
                            &history,
                            json!({"type": "fail", "process": p, "value": invoke}),
                        );
                    }
                    Err(e) => panic!("unexpected commit error: {e}"),
                }
            }
            (ok, failed)
        }));
    }
    let (mut ok, mut failed) = (0, 0);
    for t in tasks {
        let (o, f) = t.await.unwrap();
        ok += o;
        failed += f;
    }
    engine.close().await.unwrap();
    let lines = history.lock().unwrap().join("\n");
    (lines, ok, failed)
}

fn check(history: &str, model: &str) -> adya::Report {
    let h = adya::History::from_json(history).expect("parse history");
    adya::check(
        &h,
        adya::Workload::ListAppend,
        &adya::Opts {
            models: vec![model.into()],
            ..adya::Opts::default()
        },
    )
}

fn backends(dir: &std::path::Path) -> Vec<(&'static str, Arc<dyn StorageBackend>)> {
    vec![
        ("memory", Arc::new(MemoryBackend::new())),
        (
            "fjall",
            Arc::new(
                FjallBackend::open(
                    dir.join("f"),
                    &FjallOptions {
                        worker_threads: Some(1),
                        ..FjallOptions::default()
                    },
                )
                .unwrap(),
            ),
        ),
        (
            "redb",
            Arc::new(RedbBackend::open(dir.join("r.redb"), &RedbOptions::default()).unwrap()),
        ),
    ]
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn options() -> EngineOptions {
    EngineOptions {
        gc_interval: None,
        ..EngineOptions::default()
    }
}

#[test]
fn serializable_histories_pass_elle_on_every_backend() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    for (name, backend) in backends(dir.path()) {
        let (history, ok, failed) =
            rt.block_on(record(backend, options(), Isolation::Serializable));
        assert!(ok > 0, "{name}: nothing committed");
        for model in ["serializable", "strict-serializable"] {
            let report = check(&history, model);
            assert_eq!(
                report.valid,
                adya::Valid::True,
                "{name} under {model}: {:?} ({ok} ok, {failed} failed)\n{history}",
                report.anomaly_types
            );
        }
        println!(
            "{name}: {ok} committed, {failed} aborted by conflicts; serializable and strict-serializable: valid"
        );
    }
}

#[test]
fn snapshot_isolation_histories_pass_elle_as_si() {
    let rt = runtime();
    let (history, ok, _) = rt.block_on(record(
        Arc::new(MemoryBackend::new()),
        options(),
        Isolation::Snapshot,
    ));
    assert!(ok > 0);
    let report = check(&history, "snapshot-isolation");
    assert_eq!(
        report.valid,
        adya::Valid::True,
        "{:?}",
        report.anomaly_types
    );
}

#[test]
fn elle_catches_the_engine_with_validation_switched_off() {
    let rt = runtime();
    let broken = EngineOptions {
        disable_conflict_detection: true,
        ..options()
    };
    let (history, ok, failed) = rt.block_on(record(
        Arc::new(MemoryBackend::new()),
        broken,
        Isolation::Serializable,
    ));
    assert_eq!(failed, 0, "nothing is ever refused without validation");
    let report = check(&history, "serializable");
    assert_eq!(
        report.valid,
        adya::Valid::False,
        "{ok} commits, no anomaly found"
    );
    println!("negative control: adya found {:?}", report.anomaly_types);
}
