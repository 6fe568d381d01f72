//! `zcore_engine::dump`: a dump taken from each backend and loaded into each backend reproduces
//! the same data (all 9 pairs, both formats), at the latest version and at an older one; load
//! refuses non-empty targets unless overwrite; a bad file stops the load with its location.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use zcore_backends::{FjallBackend, FjallOptions, MemoryBackend, RedbBackend, RedbOptions};
use zcore_engine::dump::{self, DumpError, DumpFormat, DumpOptions, DumpReader, LoadOptions};
use zcore_engine::{
    CollectionName, Engine, EngineOptions, KeyRange, ScanRequest, StorageBackend, Version,
};

type Model = BTreeMap<String, BTreeMap<Vec<u8>, Vec<u8>>>;

#[derive(Clone, Copy, Debug)]
enum Kind {
    Memory,
    Fjall,
    Redb,
}

const KINDS: [Kind; 3] = [Kind::Memory, Kind::Fjall, Kind::Redb];

fn backend(kind: Kind, dir: &Path, name: &str) -> Arc<dyn StorageBackend> {
    match kind {
        Kind::Memory => Arc::new(MemoryBackend::new()),
        Kind::Fjall => {
            Arc::new(FjallBackend::open(dir.join(name), &FjallOptions::default()).unwrap())
        }
        Kind::Redb => Arc::new(
            RedbBackend::open(dir.join(format!("{name}.redb")), &RedbOptions::default()).unwrap(),
        ),
    }
}

async fn engine(backend: Arc<dyn StorageBackend>) -> Engine {
    Engine::open(
        backend,
        EngineOptions {
            gc_interval: None,
            ..EngineOptions::default()
        },
    )
    .await
    .unwrap()
}

fn name(s: &str) -> CollectionName {
    CollectionName::new(s).unwrap()
}

/// Fills the source and returns (model at `old`, `old`, model at latest).
async fn fill(e: &Engine) -> (Model, Version, Model) {
    let mut model: Model = BTreeMap::new();
    for c in ["users", "blobs", "empty"] {
        e.create_collection(&name(c)).await.unwrap();
        model.insert(c.to_owned(), BTreeMap::new());
    }
    // 1,500 users in 3 transactions (several scan pages, load batches and binary frames).
    for chunk in 0..3u32 {
        let mut tx = e.begin_write();
        for i in chunk * 500..(chunk + 1) * 500 {
            let key = format!("user:{i:05}").into_bytes();
            let value = format!("{{\"n\":{i}}}").into_bytes();
            tx.put(&name("users"), key.clone(), value.clone()).unwrap();
            model.get_mut("users").unwrap().insert(key, value);
        }
        tx.commit().await.unwrap();
    }
    // Binary keys and values: every byte value, newlines, quotes, an empty value, a large one.
    let mut tx = e.begin_write();
    let mut blobs = vec![
        (vec![0u8], vec![]),
        (vec![0, 0, 0xff], b"line\nbreak \"quoted\" \\".to_vec()),
        ((0..=255u8).collect(), (0..=255u8).rev().collect()),
        (vec![0xff; 40], vec![7u8; 300_000]),
    ];
    for i in 0..50u8 {
        blobs.push((vec![0x80, i], vec![i; usize::from(i)]));
    }
    for (k, v) in &blobs {
        tx.put(&name("blobs"), k.clone(), v.clone()).unwrap();
        model.get_mut("blobs").unwrap().insert(k.clone(), v.clone());
    }
    let old = tx.commit().await.unwrap().version;
    let old_model = model.clone();
    // Later changes: overwrite, delete, insert. Only the latest live values are dumped.
    let mut tx = e.begin_write();
    for i in (0..1500u32).step_by(7) {
        let key = format!("user:{i:05}").into_bytes();
        tx.delete(&name("users"), key.clone()).unwrap();
        model.get_mut("users").unwrap().remove(&key);
    }
    for i in (3..1500u32).step_by(11) {
        let key = format!("user:{i:05}").into_bytes();
        tx.put(&name("users"), key.clone(), b"v2".to_vec()).unwrap();
        model.get_mut("users").unwrap().insert(key, b"v2".to_vec());
    }
    tx.put(&name("users"), b"zz-new".to_vec(), b"new".to_vec())
        .unwrap();
    model
        .get_mut("users")
        .unwrap()
        .insert(b"zz-new".to_vec(), b"new".to_vec());
    tx.commit().await.unwrap();
    (old_model, old, model)
}

async fn read_all(e: &Engine) -> Model {
    let read = e.begin_read();
    let mut out = Model::new();
    for c in e.collections() {
        let mut rows = BTreeMap::new();
        let mut request = Some(ScanRequest::forward(KeyRange::all(), 512));
        while let Some(req) = request.take() {
            let page = read.scan(&c, &req).await.unwrap();
            request = req.next_page(&page);
            rows.extend(page.entries);
        }
        out.insert(c.as_str().to_owned(), rows);
    }
    out
}

async fn dump_bytes(e: &Engine, format: DumpFormat, at: Option<Version>) -> Vec<u8> {
    let options = DumpOptions {
        format,
        at_version: at,
        page_size: 300,
        ..DumpOptions::default()
    };
    let (report, bytes) = dump::dump(e, Vec::new(), &options, &mut |_| {})
        .await
        .unwrap();
    assert_eq!(report.bytes, bytes.len() as u64);
    bytes
}

async fn load_bytes(
    e: &Engine,
    bytes: &[u8],
    options: &LoadOptions,
) -> Result<dump::LoadReport, DumpError> {
    let reader = DumpReader::open(bytes)?;
    dump::load(e, reader, options, &mut |_| {}).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_backend_pair_round_trips_in_both_formats() {
    let dir = tempfile::tempdir().unwrap();
    let mut pairs = 0;
    for (si, source_kind) in KINDS.into_iter().enumerate() {
        let source = engine(backend(source_kind, dir.path(), &format!("src{si}"))).await;
        let (old_model, old, latest_model) = fill(&source).await;
        assert_eq!(read_all(&source).await, latest_model);
        let mut dumps = Vec::new();
        for format in [DumpFormat::Jsonl, DumpFormat::Binary] {
            dumps.push((
                format,
                None,
                dump_bytes(&source, format, None).await,
                &latest_model,
            ));
            dumps.push((
                format,
                Some(old),
                dump_bytes(&source, format, Some(old)).await,
                &old_model,
            ));
        }
        source.close().await.unwrap();
        for (ti, target_kind) in KINDS.into_iter().enumerate() {
            for (di, (format, at, bytes, expected)) in dumps.iter().enumerate() {
                let target = engine(backend(
                    target_kind,
                    dir.path(),
                    &format!("dst{si}-{ti}-{di}"),
                ))
                .await;
                let report = load_bytes(
                    &target,
                    bytes,
                    &LoadOptions {
                        batch_rows: 400,
                        ..LoadOptions::default()
                    },
                )
                .await
                .unwrap_or_else(|e| {
                    panic!("{source_kind:?} -> {target_kind:?} {format:?} {at:?}: {e}")
                });
                let rows: usize = expected.values().map(BTreeMap::len).sum();
                assert_eq!(report.rows, rows as u64);
                assert_eq!(
                    report.source_backend,
                    format!("{source_kind:?}").to_lowercase()
                );
                assert_eq!(
                    &read_all(&target).await,
                    *expected,
                    "{source_kind:?} -> {target_kind:?} {format:?} at {at:?}"
                );
                // The target dumps back to the same bytes except for header backend/version.
                let again = dump_bytes(&target, *format, None).await;
                let reread = DumpReader::open(again.as_slice()).unwrap();
                assert_eq!(reread.header().collections.len(), 3);
                target.close().await.unwrap();
                if at.is_none() {
                    pairs += 1;
                }
            }
        }
    }
    assert_eq!(pairs, 9 * 2, "9 pairs x 2 formats at the latest version");
}

#[tokio::test]
async fn load_refuses_non_empty_targets_unless_overwrite() {
    let source = engine(Arc::new(MemoryBackend::new())).await;
    let (_, _, model) = fill(&source).await;
    let bytes = dump_bytes(&source, DumpFormat::Binary, None).await;
    let target = engine(Arc::new(MemoryBackend::new())).await;
    target.create_collection(&name("blobs")).await.unwrap();
    let mut tx = target.begin_write();
    tx.put(&name("blobs"), b"stale".to_vec(), b"x".to_vec())
        .unwrap();
    tx.commit().await.unwrap();
    let err = load_bytes(&target, &bytes, &LoadOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, DumpError::NotEmpty { collection } if collection == "blobs"),
        "{err}"
    );
    // Nothing was written: "users" does not even exist yet.
    assert_eq!(target.collections(), vec![name("blobs")]);
    let report = load_bytes(
        &target,
        &bytes,
        &LoadOptions {
            overwrite: true,
            ..LoadOptions::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(report.replaced, vec!["blobs".to_owned()]);
    assert_eq!(
        read_all(&target).await,
        model,
        "no stale key survives, nothing merged"
    );
}

#[tokio::test]
async fn a_bad_file_stops_the_load_at_its_location() {
    let source = engine(Arc::new(MemoryBackend::new())).await;
    fill(&source).await;
    let text = dump_bytes(&source, DumpFormat::Jsonl, None).await;
    // Damage line 1,200 (a row of "users"): the first batches commit, the damaged one not.
    let mut lines: Vec<Vec<u8>> = text.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect();
    lines[1199] = b"{\"collection\":\"users\",\"key\":\"zz\",\"value\":\"00\"}".to_vec();
    let damaged = lines.join(&b'\n');
    assert!(dump::check(DumpReader::open(damaged.as_slice()).unwrap(), &mut |_| {}).is_err());
    let target = engine(Arc::new(MemoryBackend::new())).await;
    let err = load_bytes(
        &target,
        &damaged,
        &LoadOptions {
            batch_rows: 500,
            ..LoadOptions::default()
        },
    )
    .await
    .unwrap_err();
    let DumpError::PartiallyLoaded {
        committed_rows,
        committed_batches,
        source: cause,
    } = &err
    else {
        panic!("{err}");
    };
    assert_eq!((*committed_rows, *committed_batches), (1000, 2));
    assert!(cause.to_string().contains("line 1200"), "{err}");
    let loaded: usize = read_all(&target).await.values().map(BTreeMap::len).sum();
    assert_eq!(loaded, 1000, "exactly the committed batches");
    // Truncated binary: every cut is refused by the checking pass.
    let binary = dump_bytes(&source, DumpFormat::Binary, None).await;
    for cut in [0, 1, 15, 16, 17, binary.len() / 2, binary.len() - 1] {
        let checked = DumpReader::open(&binary[..cut]).and_then(|r| dump::check(r, &mut |_| {}));
        let err = checked.unwrap_err();
        assert!(err.is_bad_input(), "cut {cut}: {err}");
    }
}
