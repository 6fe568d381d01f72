//! Crash semantics and faults of the simulated storage backends, case by case: what survives a
//! power loss and a process restart, the negative-control `lying_sync`, the dead flag, and the
//! memory backend's seeded faults (early sync, EIO, full disk).

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use zcore_engine::{CollectionName, Durability, StorageBackend, WriteBatch};
use zcore_sim::storage::{
    DiskFaults, SimBackendKind, SimDisk, SimDiskOptions, crash_host, open_backend_now, restart_host,
};

fn col() -> CollectionName {
    CollectionName::new("c").unwrap()
}

async fn put(b: &dyn StorageBackend, key: &str, durability: Durability) -> Result<(), String> {
    let mut batch = WriteBatch::new();
    batch.put(&col(), key.as_bytes().to_vec(), b"v".to_vec());
    b.write(batch, durability).await.map_err(|e| e.to_string())
}

async fn try_keys(b: &dyn StorageBackend) -> Result<Vec<String>, String> {
    let page = b
        .scan(
            &col(),
            &zcore_engine::ScanRequest::forward(zcore_engine::KeyRange::all(), 100),
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(page
        .entries
        .into_iter()
        .map(|(k, _)| String::from_utf8_lossy(&k).into_owned())
        .collect())
}

async fn keys(b: &dyn StorageBackend) -> Vec<String> {
    try_keys(b).await.unwrap()
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

fn memory_disk(faults: DiskFaults, lying_sync: bool) -> SimDisk {
    SimDisk::new(SimDiskOptions {
        faults,
        lying_sync,
        ..SimDiskOptions::default()
    })
}

fn open_memory(disk: &SimDisk) -> Arc<dyn StorageBackend> {
    let dead = disk.start_incarnation();
    open_backend_now(SimBackendKind::Memory, disk, dead).unwrap()
}

#[test]
fn memory_power_loss_keeps_exactly_the_synced_prefix() {
    block_on(async {
        let disk = memory_disk(DiskFaults::default(), false);
        let b = open_memory(&disk);
        b.create_collection(&col()).await.unwrap();
        put(&*b, "a", Durability::Buffered).await.unwrap();
        put(&*b, "b", Durability::Synced).await.unwrap();
        put(&*b, "c", Durability::Buffered).await.unwrap();
        b.sync().await.unwrap();
        put(&*b, "d", Durability::Buffered).await.unwrap();
        disk.power_loss();
        assert!(
            put(&*b, "e", Durability::Synced).await.is_err(),
            "dead node wrote"
        );
        let b = open_memory(&disk);
        assert_eq!(keys(&*b).await, ["a", "b", "c"], "d was never synced");
    });
}

#[test]
fn memory_process_restart_keeps_unsynced_writes() {
    block_on(async {
        let disk = memory_disk(DiskFaults::default(), false);
        let b = open_memory(&disk);
        b.create_collection(&col()).await.unwrap();
        put(&*b, "a", Durability::Buffered).await.unwrap();
        disk.mark_dead();
        assert!(
            b.get(&col(), b"a").await.is_err(),
            "dead incarnation still reads"
        );
        let b = open_memory(&disk);
        assert_eq!(keys(&*b).await, ["a"]);
        // ...until the power goes.
        disk.power_loss();
        let b = open_memory(&disk);
        assert!(b.list_collections().await.unwrap().contains(&col()));
        assert!(keys(&*b).await.is_empty());
    });
}

#[test]
fn memory_lying_sync_loses_synced_writes() {
    block_on(async {
        let disk = memory_disk(DiskFaults::default(), true);
        let b = open_memory(&disk);
        b.create_collection(&col()).await.unwrap();
        put(&*b, "a", Durability::Synced).await.unwrap();
        b.sync().await.unwrap();
        disk.power_loss();
        let b = open_memory(&disk);
        assert!(b.list_collections().await.unwrap().is_empty());
    });
}

#[test]
fn memory_early_sync_makes_buffered_writes_durable() {
    block_on(async {
        let faults = DiskFaults {
            early_sync_probability: 1.0,
            ..DiskFaults::default()
        };
        let disk = memory_disk(faults, false);
        let b = open_memory(&disk);
        b.create_collection(&col()).await.unwrap();
        put(&*b, "a", Durability::Buffered).await.unwrap();
        disk.power_loss();
        let b = open_memory(&disk);
        assert_eq!(keys(&*b).await, ["a"]);
    });
}

#[test]
fn memory_io_errors_apply_nothing() {
    block_on(async {
        let disk = memory_disk(DiskFaults::default(), false);
        let b = open_memory(&disk);
        b.create_collection(&col()).await.unwrap();
        drop(b);
        // Same image, every write and sync now fails.
        let failing = SimDisk::new(SimDiskOptions {
            faults: DiskFaults {
                io_error_probability: 1.0,
                ..DiskFaults::default()
            },
            ..SimDiskOptions::default()
        });
        let b = open_memory(&failing);
        assert!(b.create_collection(&col()).await.is_err());
        assert!(b.list_collections().await.unwrap().is_empty());
        // Half the operations fail, seeded: the same seed fails the same ones.
        let first = io_error_pattern(9).await;
        assert_eq!(first, io_error_pattern(9).await);
        assert_ne!(first, io_error_pattern(10).await);
        assert!(first.contains(&true) && first.contains(&false));
    });
}

/// Which of 32 buffered writes succeed with `io_error_probability` 0.5 and fault seed `seed`;
/// checks that exactly the successful ones are visible.
async fn io_error_pattern(seed: u64) -> Vec<bool> {
    let disk = memory_disk(
        DiskFaults {
            seed,
            io_error_probability: 0.5,
            ..DiskFaults::default()
        },
        false,
    );
    let b = open_memory(&disk);
    while b.create_collection(&col()).await.is_err() {}
    let mut outcomes = Vec::new();
    for i in 0..32 {
        let r = put(&*b, &format!("k{i:02}"), Durability::Buffered).await;
        outcomes.push(r.is_ok());
    }
    let present = keys(&*b).await.len();
    assert_eq!(present, outcomes.iter().filter(|ok| **ok).count());
    outcomes
}

#[test]
fn memory_full_disk_refuses_growth() {
    block_on(async {
        let disk = memory_disk(
            DiskFaults {
                capacity_bytes: Some(64),
                ..DiskFaults::default()
            },
            false,
        );
        let b = open_memory(&disk);
        b.create_collection(&col()).await.unwrap();
        let mut batch = WriteBatch::new();
        batch.put(&col(), b"big".to_vec(), vec![0u8; 100]);
        let err = b
            .write(batch, Durability::Synced)
            .await
            .expect_err("over capacity");
        assert!(err.to_string().contains("no space"), "{err}");
        put(&*b, "small", Durability::Synced).await.unwrap();
        assert_eq!(keys(&*b).await, ["small"]);
    });
}

/// What each redb incarnation saw at start, filled by the host.
type Seen = Arc<Mutex<Vec<Result<Vec<String>, String>>>>;

/// One redb host: every incarnation records the keys it finds, then the first one writes
/// `synced` (synced) and `buffered` (buffered) and idles.
fn redb_run(
    lying_sync: bool,
    torn_writes: bool,
    kill: fn(&mut turmoil::Sim<'_>, &SimDisk),
) -> Vec<Result<Vec<String>, String>> {
    let mut builder = turmoil::Builder::new();
    builder
        .rng_seed(5)
        .epoch(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        .simulation_duration(Duration::from_secs(60));
    if torn_writes {
        // On a crash every unsynced write keeps a random prefix of its 512-byte blocks.
        builder.fs().block_size(512);
    }
    let mut sim = builder.build();
    let disk = SimDisk::new(SimDiskOptions {
        lying_sync,
        ..SimDiskOptions::default()
    });
    let seen: Seen = Arc::default();
    {
        let (disk, seen) = (disk.clone(), Arc::clone(&seen));
        sim.host("node", move || {
            let (disk, seen) = (disk.clone(), Arc::clone(&seen));
            async move {
                let dead = disk.start_incarnation();
                let b = match open_backend_now(SimBackendKind::Redb, &disk, dead) {
                    Ok(b) => b,
                    Err(e) => {
                        seen.lock().unwrap().push(Err(e.to_string()));
                        return Ok(());
                    }
                };
                let first = disk.incarnations() == 1;
                if first {
                    b.create_collection(&col()).await?;
                }
                let found = try_keys(&*b).await;
                seen.lock().unwrap().push(found);
                if first {
                    put(&*b, "synced", Durability::Synced).await?;
                    put(&*b, "buffered", Durability::Buffered).await?;
                }
                std::future::pending::<()>().await;
                Ok(())
            }
        });
    }
    for _ in 0..20 {
        sim.step().unwrap();
    }
    kill(&mut sim, &disk);
    for _ in 0..20 {
        sim.step().unwrap();
    }
    disk.mark_dead();
    drop(sim);
    seen.lock().unwrap().clone()
}

fn power_loss(sim: &mut turmoil::Sim<'_>, disk: &SimDisk) {
    crash_host(sim, "node", disk);
    sim.bounce("node");
}

fn process_restart(sim: &mut turmoil::Sim<'_>, disk: &SimDisk) {
    restart_host(sim, "node", disk);
}

#[test]
fn redb_power_loss_keeps_synced_and_drops_buffered() {
    // Also with torn writes, the synced commit survives.
    let torn = redb_run(false, true, power_loss);
    assert!(
        matches!(&torn[1], Ok(k) if k.contains(&"synced".to_owned())),
        "{torn:?}"
    );
    // No torn writes: a crash drops every unsynced write, so the outcome is exact.
    let seen = redb_run(false, false, power_loss);
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0], Ok(vec![]));
    // The buffered commit was neither synced nor written back by a Drop (the dead flag).
    assert_eq!(seen[1], Ok(vec!["synced".to_owned()]));
}

#[test]
fn redb_process_restart_keeps_synced() {
    let seen = redb_run(false, true, process_restart);
    // (torn writes only act on a crash; a restart keeps every write)
    assert_eq!(seen.len(), 2, "{seen:?}");
    let after = seen[1].clone().unwrap();
    assert!(after.contains(&"synced".to_owned()), "{after:?}");
}

#[test]
fn redb_lying_sync_loses_the_synced_commit() {
    // Without torn writes a crash drops every unsynced write, so nothing redb wrote survives:
    // the file is empty again. (With torn writes, unsynced writes may land partly or wholly,
    // so a lying sync is caught statistically, by the crash simulation's negative control.)
    let seen = redb_run(true, false, power_loss);
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_ne!(seen[1], Ok(vec!["synced".to_owned()]), "{seen:?}");
    assert!(
        matches!(&seen[1], Err(e) if e.contains("does not exist") || e.contains("corrupt"))
            || seen[1] == Ok(vec![]),
        "{seen:?}"
    );
}

// --- Run-time faults (`DiskControl`): the cluster harness's disk-fault episodes ---

async fn big_put(b: &dyn StorageBackend, key: &str, bytes: usize) -> Result<(), String> {
    let mut batch = WriteBatch::new();
    batch.put(&col(), key.as_bytes().to_vec(), vec![7u8; bytes]);
    b.write(batch, Durability::Synced)
        .await
        .map_err(|e| e.to_string())
}

#[test]
fn memory_control_io_errors_switch_on_and_off() {
    block_on(async {
        let disk = memory_disk(DiskFaults::default(), false);
        let b = open_memory(&disk);
        b.create_collection(&col()).await.unwrap();
        put(&*b, "a", Durability::Synced).await.unwrap();
        assert_eq!(disk.control().injected(), 0);
        disk.control().set_io_errors(1.0);
        assert!(disk.control().is_active());
        let err = put(&*b, "b", Durability::Buffered).await.unwrap_err();
        assert!(err.contains("EIO"), "{err}");
        assert!(b.get(&col(), b"a").await.is_err(), "reads fail too");
        assert!(try_keys(&*b).await.is_err(), "scans fail too");
        assert!(b.sync().await.is_err(), "syncs fail too");
        assert!(disk.control().injected() >= 4);
        // Off again: the same backend works, and the failed write applied nothing.
        disk.control().clear();
        assert!(!disk.control().is_active());
        assert_eq!(keys(&*b).await, ["a"]);
        put(&*b, "c", Durability::Synced).await.unwrap();
        // The switch belongs to the disk: a new incarnation sees it too.
        disk.control().set_io_errors(1.0);
        let b = open_memory(&disk);
        assert!(b.get(&col(), b"a").await.is_err());
        disk.control().clear();
        assert_eq!(keys(&*b).await, ["a", "c"]);
    });
}

#[test]
fn memory_control_full_disk_refuses_growth_beyond_the_slack() {
    block_on(async {
        let disk = memory_disk(DiskFaults::default(), false);
        let b = open_memory(&disk);
        b.create_collection(&col()).await.unwrap();
        big_put(&*b, "a", 1_000).await.unwrap();
        disk.control().set_full(100);
        // Within the slack.
        big_put(&*b, "b", 50).await.unwrap();
        let err = big_put(&*b, "c", 100).await.unwrap_err();
        assert!(err.contains("no space"), "{err}");
        assert_eq!(disk.control().injected(), 1);
        // Shrinking and deleting still work; the capacity stays where it was fixed.
        big_put(&*b, "a", 10).await.unwrap();
        big_put(&*b, "c", 100).await.unwrap();
        let mut batch = WriteBatch::new();
        batch.delete(&col(), b"c".to_vec());
        b.write(batch, Durability::Synced).await.unwrap();
        assert!(big_put(&*b, "d", 2_000).await.is_err());
        disk.control().clear();
        big_put(&*b, "d", 2_000).await.unwrap();
        assert_eq!(keys(&*b).await, ["a", "b", "d"]);
    });
}

/// A script run inside a turmoil client on a disk; returns what it saw.
type Script = fn(SimDisk) -> std::pin::Pin<Box<dyn std::future::Future<Output = Vec<String>>>>;

/// One redb client driven by `script` (inside the simulation, with the disk), then the results.
fn redb_script(script: Script) -> Vec<String> {
    let mut builder = turmoil::Builder::new();
    builder
        .rng_seed(5)
        .epoch(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        .simulation_duration(Duration::from_secs(60));
    let mut sim = builder.build();
    let disk = SimDisk::new(SimDiskOptions::default());
    let out: Arc<Mutex<Vec<String>>> = Arc::default();
    {
        let (disk, out) = (disk.clone(), Arc::clone(&out));
        sim.client("node", async move {
            let result = script(disk).await;
            *out.lock().unwrap() = result;
            Ok(())
        });
    }
    sim.run().unwrap();
    disk.mark_dead();
    drop(sim);
    out.lock().unwrap().clone()
}

fn open_redb(disk: &SimDisk) -> Arc<dyn StorageBackend> {
    let dead = disk.start_incarnation();
    open_backend_now(SimBackendKind::Redb, disk, dead).unwrap()
}

#[test]
fn redb_control_io_errors_fail_the_database_until_reopened() {
    let seen = redb_script(|disk| {
        Box::pin(async move {
            let mut seen = Vec::new();
            let b = open_redb(&disk);
            b.create_collection(&col()).await.unwrap();
            put(&*b, "a", Durability::Synced).await.unwrap();
            disk.control().set_io_errors(1.0);
            seen.push(format!("{:?}", put(&*b, "b", Durability::Synced).await));
            disk.control().clear();
            // redb latches the I/O error: this database fails until it is reopened.
            seen.push(format!("{:?}", put(&*b, "c", Durability::Synced).await));
            seen.push(format!("injected={}", disk.control().injected()));
            disk.mark_dead();
            drop(b);
            let b = open_redb(&disk);
            seen.push(format!("{:?}", try_keys(&*b).await));
            disk.mark_dead();
            seen
        })
    });
    assert!(
        seen[0].contains("Err") && seen[0].contains("EIO"),
        "{seen:?}"
    );
    assert!(seen[1].contains("Err"), "{seen:?}");
    assert_eq!(seen[2], "injected=1", "{seen:?}");
    assert_eq!(seen[3], r#"Ok(["a"])"#, "{seen:?}");
}

#[test]
fn redb_control_full_disk_refuses_to_grow_the_file() {
    let seen = redb_script(|disk| {
        Box::pin(async move {
            let mut seen = Vec::new();
            let b = open_redb(&disk);
            b.create_collection(&col()).await.unwrap();
            put(&*b, "a", Durability::Synced).await.unwrap();
            disk.control().set_full(4_096);
            // Far more than the slack: the file must grow.
            seen.push(format!("{:?}", big_put(&*b, "big", 1 << 20).await));
            seen.push(format!("injected={}", disk.control().injected()));
            disk.control().clear();
            disk.mark_dead();
            drop(b);
            let b = open_redb(&disk);
            seen.push(format!("{:?}", try_keys(&*b).await));
            seen.push(format!("{:?}", big_put(&*b, "big", 1 << 20).await));
            disk.mark_dead();
            seen
        })
    });
    assert!(
        seen[0].contains("Err") && seen[0].contains("no space"),
        "{seen:?}"
    );
    assert_eq!(seen[1], "injected=1", "{seen:?}");
    assert_eq!(seen[2], r#"Ok(["a"])"#, "{seen:?}");
    assert_eq!(seen[3], "Ok(())", "{seen:?}");
}
