//! Importing plain redb files: fixtures written by redb itself with typed tables (signed
//! integers, strings, tuples, `Option`, fixed arrays, a multimap table, a user-defined type),
//! migrated to fjall and compared row by row and in scan order with redb's own iteration; the
//! codec checked against redb's `Key::compare` for many types; resumption from random stop
//! points (proptest); a file of the previous redb generation (redb 2.6).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use proptest::prelude::*;
use redb::{
    Database, Key, MultimapTableDefinition, ReadableDatabase, ReadableMultimapTable, ReadableTable,
    TableDefinition, TypeName, Value,
};
use zcore_backends::{FjallBackend, FjallOptions};
use zcore_compat::migrate::codec::{RedbType, TupleFormat};
use zcore_compat::migrate::{
    self, Endpoint, MigrateError, MigrateOptions, NoProgress, RunKind, Source, Target,
};
use zcore_engine::{CollectionName, Engine, EngineOptions, KeyRange, ScanRequest, StorageBackend};

type Rows = Vec<(Vec<u8>, Vec<u8>)>;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A user-defined redb type: not migratable.
#[derive(Debug)]
struct Point;

impl Value for Point {
    type SelfType<'a> = (i32, i32);
    type AsBytes<'a> = [u8; 8];
    fn fixed_width() -> Option<usize> {
        Some(8)
    }
    fn from_bytes<'a>(data: &'a [u8]) -> (i32, i32)
    where
        Self: 'a,
    {
        (
            i32::from_le_bytes(data[..4].try_into().unwrap()),
            i32::from_le_bytes(data[4..].try_into().unwrap()),
        )
    }
    fn as_bytes<'a, 'b: 'a>(value: &'a (i32, i32)) -> [u8; 8]
    where
        Self: 'b,
    {
        let mut out = [0; 8];
        out[..4].copy_from_slice(&value.0.to_le_bytes());
        out[4..].copy_from_slice(&value.1.to_le_bytes());
        out
    }
    fn type_name() -> TypeName {
        TypeName::new("myapp::Point")
    }
}

impl Key for Point {
    fn compare(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
        Self::from_bytes(a).cmp(&Self::from_bytes(b))
    }
}

const USERS: TableDefinition<'static, u64, &str> = TableDefinition::new("users");
const SIGNED: TableDefinition<'static, i32, i64> = TableDefinition::new("signed");
const NAMES: TableDefinition<'static, &str, u32> = TableDefinition::new("names");
const PAIRS: TableDefinition<'static, (&str, i16), Option<u64>> = TableDefinition::new("pairs");
const OPTS: TableDefinition<'static, Option<u32>, bool> = TableDefinition::new("opts");
const ARRAYS: TableDefinition<'static, [u8; 4], [i16; 3]> = TableDefinition::new("arrays");
const CHARS: TableDefinition<'static, char, String> = TableDefinition::new("chars");
const WIDE: TableDefinition<'static, i128, u128> = TableDefinition::new("wide");
const BLOBS: TableDefinition<'static, &[u8], Vec<u8>> = TableDefinition::new("blobs");
const NESTED: TableDefinition<'static, (u8, Option<&str>, bool), (&str, &str)> =
    TableDefinition::new("nested");
const FLOATS: TableDefinition<'static, i8, f64> = TableDefinition::new("floats");
const UNITS: TableDefinition<'static, u16, ()> = TableDefinition::new("units");
const TAGS: MultimapTableDefinition<'static, &str, i64> = MultimapTableDefinition::new("tags");
const CUSTOM: TableDefinition<'static, u32, Point> = TableDefinition::new("custom");

/// splitmix64.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn word(seed: u64) -> String {
    const PARTS: [&str; 8] = ["a", "b", "\0", "z", "é", "ab", "\u{1F600}", "a\0b"];
    (0..(seed % 4) + 1)
        .map(|i| PARTS[(mix(seed + i) % 8) as usize])
        .collect()
}

/// Writes the typed fixture; `n` rows per table (fewer where the key space is smaller).
fn write_fixture(path: &Path, n: u64, with_custom: bool) {
    let db = Database::create(path).unwrap();
    let tx = db.begin_write().unwrap();
    {
        let mut t = tx.open_table(USERS).unwrap();
        for i in 0..n {
            t.insert(mix(i), word(i).as_str()).unwrap();
        }
        let mut t = tx.open_table(SIGNED).unwrap();
        for i in 0..n {
            let k = (mix(i) as i32) >> (i % 20);
            t.insert(k, -(mix(k as u64) as i64)).unwrap();
        }
        t.insert(i32::MIN, i64::MAX).unwrap();
        t.insert(i32::MAX, i64::MIN).unwrap();
        t.insert(0, 0).unwrap();
        t.insert(-1, 1).unwrap();
        let mut t = tx.open_table(NAMES).unwrap();
        for i in 0..n {
            t.insert(format!("{}{i}", word(i)).as_str(), i as u32)
                .unwrap();
        }
        let mut t = tx.open_table(PAIRS).unwrap();
        for i in 0..n {
            let v = (i % 3 != 0).then(|| mix(i));
            t.insert((word(i).as_str(), (mix(i) as i16)), v).unwrap();
        }
        let mut t = tx.open_table(OPTS).unwrap();
        t.insert(None, true).unwrap();
        for i in 0..n.min(200) {
            t.insert(Some(mix(i) as u32 >> (i % 32)), i % 2 == 0)
                .unwrap();
        }
        let mut t = tx.open_table(ARRAYS).unwrap();
        for i in 0..n {
            let k = (mix(i) as u32).to_be_bytes();
            t.insert(k, [i as i16, -(i as i16), mix(i) as i16]).unwrap();
        }
        let mut t = tx.open_table(CHARS).unwrap();
        for i in 0..n.min(500) {
            let c = char::from_u32((mix(i) % 0x11_0000) as u32).unwrap_or('\u{FFFD}');
            t.insert(c, word(i)).unwrap();
        }
        let mut t = tx.open_table(WIDE).unwrap();
        for i in 0..n {
            let k = (i128::from(mix(i) as i64) << (i % 60)) ^ i128::from(i);
            t.insert(k, u128::from(mix(i)) << 64).unwrap();
        }
        let mut t = tx.open_table(BLOBS).unwrap();
        for i in 0..n {
            let k: Vec<u8> = (0..(i % 7) + 1)
                .map(|j| (mix(i + j) % 3) as u8 * 0x7F)
                .collect();
            t.insert(k.as_slice(), vec![i as u8; (i % 5) as usize])
                .unwrap();
        }
        let mut t = tx.open_table(NESTED).unwrap();
        for i in 0..n {
            let w = word(i);
            let opt = (i % 4 != 0).then_some(w.as_str());
            t.insert(
                ((mix(i) % 5) as u8, opt, i % 3 == 0),
                (w.as_str(), "tail\0"),
            )
            .unwrap();
        }
        let mut t = tx.open_table(FLOATS).unwrap();
        for i in 0..n.min(256) {
            t.insert(i as i8, (mix(i) as i64) as f64 / 7.0).unwrap();
        }
        let mut t = tx.open_table(UNITS).unwrap();
        for i in 0..n {
            t.insert(mix(i) as u16, ()).unwrap();
        }
        let mut t = tx.open_multimap_table(TAGS).unwrap();
        for i in 0..n {
            t.insert(word(i % 17).as_str(), -(mix(i) as i64) >> 3)
                .unwrap();
        }
        if with_custom {
            let mut t = tx.open_table(CUSTOM).unwrap();
            t.insert(1, (3, -4)).unwrap();
        }
    }
    tx.commit().unwrap();
}

fn raw_rows<K: Key + 'static, V: Value + 'static>(
    db: &Database,
    def: TableDefinition<'_, K, V>,
) -> Rows {
    let tx = db.begin_read().unwrap();
    let t = tx.open_table(def).unwrap();
    t.iter()
        .unwrap()
        .map(|e| {
            let (k, v) = e.unwrap();
            (
                K::as_bytes(&k.value()).as_ref().to_vec(),
                V::as_bytes(&v.value()).as_ref().to_vec(),
            )
        })
        .collect()
}

fn raw_multimap_rows<K: Key + 'static, V: Key + 'static>(
    db: &Database,
    def: MultimapTableDefinition<'_, K, V>,
) -> Rows {
    let tx = db.begin_read().unwrap();
    let t = tx.open_multimap_table(def).unwrap();
    let mut out = Vec::new();
    for e in t.iter().unwrap() {
        let (k, values) = e.unwrap();
        for v in values {
            out.push((
                K::as_bytes(&k.value()).as_ref().to_vec(),
                V::as_bytes(&v.unwrap().value()).as_ref().to_vec(),
            ));
        }
    }
    out
}

async fn collection_rows(engine: &Engine, name: &str) -> Rows {
    let c = CollectionName::new(name).unwrap();
    engine.begin_read().scan_prefix(&c, b"").await.unwrap()
}

fn ty<T: Value>() -> RedbType {
    RedbType::parse(T::type_name().name(), TupleFormat::Varint).unwrap()
}

/// The target rows of a migrated table, decoded back to redb's bytes.
fn decoded<K: Value, V: Value>(rows: &Rows) -> Rows {
    let (kt, vt) = (ty::<K>(), ty::<V>());
    rows.iter()
        .map(|(k, v)| (kt.decode(k).unwrap(), vt.decode(v).unwrap()))
        .collect()
}

fn options() -> MigrateOptions {
    MigrateOptions {
        skip_unknown: true,
        batch_rows: 97,
        ..MigrateOptions::default()
    }
}

fn open_fjall(dir: &Path) -> Arc<dyn StorageBackend> {
    Arc::new(
        FjallBackend::open(
            dir,
            &FjallOptions {
                worker_threads: Some(1),
                cache_size_bytes: 8 << 20,
                ..FjallOptions::default()
            },
        )
        .unwrap(),
    )
}

async fn run(
    source: &Path,
    target: &Path,
    options: &MigrateOptions,
) -> Result<migrate::Report, MigrateError> {
    let backend = open_fjall(target);
    let t = Target {
        backend: Arc::clone(&backend),
        label: format!("fjall:{}", target.display()),
    };
    let result = migrate::migrate(
        &Source::RedbFile {
            path: source.to_path_buf(),
        },
        &t,
        options,
        &NoProgress,
    )
    .await;
    backend.close().await.unwrap();
    result
}

/// Every entry of every collection (system ones too), raw.
async fn dump(backend: &Arc<dyn StorageBackend>) -> Vec<(String, Rows)> {
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
    out
}

async fn user_dump(dir: &Path) -> Vec<(String, Rows)> {
    let backend = open_fjall(dir);
    let engine = Engine::open(Arc::clone(&backend), EngineOptions::default())
        .await
        .unwrap();
    let mut out = Vec::new();
    for c in engine.collections() {
        out.push((c.to_string(), collection_rows(&engine, c.as_str()).await));
    }
    engine.close().await.unwrap();
    out
}

#[test]
fn typed_fixture_migrates_with_parity_and_order() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.redb");
    write_fixture(&file, 600, true);
    let target = dir.path().join("store.fjall");
    let rt = rt();

    // Unknown types are an error naming the table and its stored types...
    let err = rt
        .block_on(run(&file, &target, &MigrateOptions::default()))
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, MigrateError::UnknownTypes { .. })
            && msg.contains("\"custom\"")
            && msg.contains("myapp::Point")
            && msg.contains("u32"),
        "{msg}"
    );

    // ... or skipped and reported.
    let report = rt.block_on(run(&file, &target, &options())).unwrap();
    assert!(report.ok && report.verified, "{}", report.to_text());
    assert_eq!(report.skipped.len(), 1);
    assert_eq!(report.skipped[0].table, "custom");
    assert_eq!(report.skipped[0].value_type, "myapp::Point");
    assert_eq!(report.collections.len(), 13);
    assert!(report.collections.iter().all(|c| c.matches == Some(true)));

    let db = Database::open(&file).unwrap();
    rt.block_on(async {
        let backend = open_fjall(&target);
        let engine = Engine::open(Arc::clone(&backend), EngineOptions::default())
            .await
            .unwrap();
        macro_rules! same {
            ($def:expr, $k:ty, $v:ty, $name:literal) => {{
                let expected = raw_rows(&db, $def);
                let got = decoded::<$k, $v>(&collection_rows(&engine, $name).await);
                assert_eq!(got.len(), expected.len(), "{}", $name);
                assert!(got == expected, "{}: rows or order differ from redb", $name);
            }};
        }
        same!(USERS, u64, &str, "users");
        same!(SIGNED, i32, i64, "signed");
        same!(NAMES, &str, u32, "names");
        same!(PAIRS, (&str, i16), Option<u64>, "pairs");
        same!(OPTS, Option<u32>, bool, "opts");
        same!(ARRAYS, [u8; 4], [i16; 3], "arrays");
        same!(CHARS, char, String, "chars");
        same!(WIDE, i128, u128, "wide");
        same!(BLOBS, &[u8], Vec<u8>, "blobs");
        same!(NESTED, (u8, Option<&str>, bool), (&str, &str), "nested");
        same!(FLOATS, i8, f64, "floats");
        same!(UNITS, u16, (), "units");

        // The multimap table: key ‖ value composite keys, in redb's (key, value) order.
        let expected = raw_multimap_rows(&db, TAGS);
        let (kt, vt) = (ty::<&str>(), ty::<i64>());
        let got: Rows = collection_rows(&engine, "tags")
            .await
            .iter()
            .map(|(k, v)| {
                assert!(v.is_empty());
                RedbType::decode_multimap_key(&kt, &vt, k).unwrap()
            })
            .collect();
        assert_eq!(got, expected);

        // A range scan returns what redb's range returns.
        let tx = db.begin_read().unwrap();
        let t = tx.open_table(SIGNED).unwrap();
        let expected: Vec<(i32, i64)> = t
            .range(-1_000_000..7)
            .unwrap()
            .map(|e| {
                let (k, v) = e.unwrap();
                (k.value(), v.value())
            })
            .collect();
        let it = ty::<i32>();
        let range = KeyRange::half_open(
            it.encode_to_vec(&(-1_000_000i32).to_le_bytes()).unwrap(),
            it.encode_to_vec(&7i32.to_le_bytes()).unwrap(),
        );
        let c = CollectionName::new("signed").unwrap();
        let page = engine
            .begin_read()
            .scan(&c, &ScanRequest::forward(range, 100_000))
            .await
            .unwrap();
        let got: Vec<(i32, i64)> = page
            .entries
            .iter()
            .map(|(k, v)| {
                let k = it.decode(k).unwrap();
                let v = ty::<i64>().decode(v).unwrap();
                (
                    i32::from_le_bytes(k.try_into().unwrap()),
                    i64::from_le_bytes(v.try_into().unwrap()),
                )
            })
            .collect();
        assert!(!expected.is_empty());
        assert_eq!(got, expected);
        engine.close().await.unwrap();
    });

    drop(db);
    // A finished migration reruns without writing anything.
    let before = rt.block_on(async {
        let b = open_fjall(&target);
        let d = dump(&b).await;
        b.close().await.unwrap();
        d
    });
    let again = rt.block_on(run(&file, &target, &options())).unwrap();
    assert_eq!(again.run, RunKind::AlreadyComplete);
    assert!(again.ok);
    let after = rt.block_on(async {
        let b = open_fjall(&target);
        let d = dump(&b).await;
        b.close().await.unwrap();
        d
    });
    assert!(before == after, "a rerun changed the target");
}

#[test]
fn verify_only_detects_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.redb");
    write_fixture(&file, 50, false);
    let target = dir.path().join("store.fjall");
    let rt = rt();
    rt.block_on(run(&file, &target, &MigrateOptions::default()))
        .unwrap();
    let verify = |rt: &tokio::runtime::Runtime| {
        rt.block_on(async {
            let backend = open_fjall(&target);
            let t = Target {
                backend: Arc::clone(&backend),
                label: "t".into(),
            };
            let r = migrate::verify(
                &Source::RedbFile { path: file.clone() },
                &t,
                &MigrateOptions::default(),
                &NoProgress,
            )
            .await
            .unwrap();
            backend.close().await.unwrap();
            r
        })
    };
    let r = verify(&rt);
    assert_eq!(r.run, RunKind::VerifyOnly);
    assert!(r.ok && r.verified);
    rt.block_on(async {
        let backend = open_fjall(&target);
        let engine = Engine::open(Arc::clone(&backend), EngineOptions::default())
            .await
            .unwrap();
        let c = CollectionName::new("names").unwrap();
        let mut tx = engine.begin_write();
        tx.put(&c, b"zzz extra".to_vec(), b"1".to_vec()).unwrap();
        tx.commit().await.unwrap();
        engine.close().await.unwrap();
    });
    let r = verify(&rt);
    assert!(!r.ok);
    let bad: Vec<_> = r
        .collections
        .iter()
        .filter(|c| c.matches == Some(false))
        .map(|c| c.collection.as_str())
        .collect();
    assert_eq!(bad, ["names"]);
    assert!(r.to_text().contains("MISMATCH"));
}

#[test]
fn names_keys_and_foreign_files_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    // A table name that is not a collection name, then renamed.
    let file = dir.path().join("names.redb");
    {
        let db = Database::create(&file).unwrap();
        let tx = db.begin_write().unwrap();
        tx.open_table(TableDefinition::<u8, u8>::new("my table"))
            .unwrap()
            .insert(1, 2)
            .unwrap();
        tx.commit().unwrap();
    }
    let target = dir.path().join("t1");
    let err = rt
        .block_on(run(&file, &target, &MigrateOptions::default()))
        .unwrap_err();
    assert!(
        matches!(err, MigrateError::InvalidTableName { .. })
            && err.to_string().contains("--rename 'my table=NEW_NAME'"),
        "{err}"
    );
    let mut renamed = MigrateOptions::default();
    renamed.renames.insert("my table".into(), "my_table".into());
    let r = rt.block_on(run(&file, &target, &renamed)).unwrap();
    assert_eq!(r.collections[0].collection, "my_table");
    assert!(r.ok);

    // An empty string key cannot be stored.
    let file = dir.path().join("empty.redb");
    {
        let db = Database::create(&file).unwrap();
        let tx = db.begin_write().unwrap();
        tx.open_table(NAMES).unwrap().insert("", 1).unwrap();
        tx.commit().unwrap();
    }
    let err = rt
        .block_on(run(
            &file,
            &dir.path().join("t2"),
            &MigrateOptions::default(),
        ))
        .unwrap_err();
    assert!(
        matches!(err, MigrateError::UnstorableKey { .. }) && err.to_string().contains("\"names\""),
        "{err}"
    );

    // A zcore redb store given as a plain redb file.
    let store = dir.path().join("zcore.redb");
    rt.block_on(async {
        let b: Arc<dyn StorageBackend> = Arc::new(
            zcore_backends::RedbBackend::open(&store, &zcore_backends::RedbOptions::default())
                .unwrap(),
        );
        let e = Engine::open(Arc::clone(&b), EngineOptions::default())
            .await
            .unwrap();
        e.close().await.unwrap();
    });
    let err = rt
        .block_on(run(
            &store,
            &dir.path().join("t3"),
            &MigrateOptions::default(),
        ))
        .unwrap_err();
    assert!(err.to_string().contains("--from redb:"), "{err}");

    // Endpoint parsing.
    assert!("redb-file:".parse::<Endpoint>().is_err());
    assert!(
        "redb-file:/nope.redb"
            .parse::<Endpoint>()
            .unwrap()
            .open_source()
            .is_err()
    );
}

#[test]
fn dry_run_lists_tables_types_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.redb");
    write_fixture(&file, 30, true);
    let r = rt()
        .block_on(migrate::dry_run(
            &Source::RedbFile { path: file.clone() },
            &options(),
        ))
        .unwrap();
    assert_eq!(r.run, RunKind::DryRun);
    let pairs = r
        .collections
        .iter()
        .find(|c| c.collection == "pairs")
        .unwrap();
    assert_eq!(pairs.key_type.as_deref(), Some("(&str,i16)"));
    assert_eq!(pairs.value_type.as_deref(), Some("Option<u64>"));
    let users = r
        .collections
        .iter()
        .find(|c| c.collection == "users")
        .unwrap();
    assert_eq!(users.source_rows, Some(30));
    let tags = r
        .collections
        .iter()
        .find(|c| c.collection == "tags")
        .unwrap();
    assert_eq!(tags.source_rows, Some(30));
    assert_eq!(r.skipped.len(), 1);
    let text = r.to_text();
    assert!(
        text.contains("dry run") && text.contains("multimap \"tags\""),
        "{text}"
    );
    assert!(!dir.path().join("store.fjall").exists());
}

#[test]
fn stopped_runs_resume_to_the_same_content() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.redb");
    write_fixture(&file, 300, false);
    let rt = rt();
    let reference = dir.path().join("reference");
    rt.block_on(run(&file, &reference, &options())).unwrap();
    let expected = rt.block_on(user_dump(&reference));
    for stop in [1u64, 2, 7, 13, 30] {
        let target = dir.path().join(format!("stopped-{stop}"));
        let mut stopping = options();
        stopping.stop_after_batches = Some(stop);
        let mut runs = 0;
        loop {
            runs += 1;
            match rt.block_on(run(&file, &target, &stopping)) {
                Err(MigrateError::Stopped { .. }) => continue,
                Ok(report) => {
                    assert!(report.ok, "{}", report.to_text());
                    assert_eq!(report.resumed, runs > 1);
                    break;
                }
                Err(e) => panic!("stop {stop}: {e}"),
            }
        }
        assert!(runs > 1, "stop {stop} never stopped");
        assert!(rt.block_on(user_dump(&target)) == expected, "stop {stop}");
    }
}

/// The codec against redb's own `Key::compare` and `as_bytes`: encoding keeps the order and
/// decoding gives redb's bytes back.
fn check_codec<K: Key + 'static>(values: &[K::SelfType<'_>]) {
    let t = ty::<K>();
    let mut raw: Vec<Vec<u8>> = values
        .iter()
        .map(|v| K::as_bytes(v).as_ref().to_vec())
        .collect();
    raw.sort_by(|a, b| K::compare(a, b));
    raw.dedup_by(|a, b| K::compare(a, b).is_eq());
    let encoded: Vec<Vec<u8>> = raw.iter().map(|r| t.encode_to_vec(r).unwrap()).collect();
    for (r, e) in raw.iter().zip(&encoded) {
        assert_eq!(&t.decode(e).unwrap(), r, "{t}: round trip");
    }
    for w in encoded.windows(2) {
        assert!(w[0] < w[1], "{t}: order differs from redb's compare");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn codec_keeps_redb_order(
        ints in prop::collection::vec(any::<i64>(), 1..40),
        words in prop::collection::vec(".{0,6}", 1..40),
        bytes in prop::collection::vec(prop::collection::vec(prop_oneof![Just(0u8), Just(1), Just(0xFF), any::<u8>()], 0..6), 1..40),
    ) {
        check_codec::<u64>(&ints.iter().map(|&i| i as u64).collect::<Vec<_>>());
        check_codec::<i64>(&ints);
        check_codec::<i8>(&ints.iter().map(|&i| i as i8).collect::<Vec<_>>());
        check_codec::<i128>(&ints.iter().map(|&i| i128::from(i) << 40).collect::<Vec<_>>());
        check_codec::<u16>(&ints.iter().map(|&i| i as u16).collect::<Vec<_>>());
        check_codec::<char>(&ints.iter().filter_map(|&i| char::from_u32((i as u32) % 0x11_0000)).collect::<Vec<_>>());
        check_codec::<bool>(&[true, false]);
        check_codec::<&str>(&words.iter().map(String::as_str).collect::<Vec<_>>());
        check_codec::<&[u8]>(&bytes.iter().map(Vec::as_slice).collect::<Vec<_>>());
        let pairs: Vec<(&str, i16)> = words.iter().zip(&ints).map(|(w, &i)| (w.as_str(), i as i16)).collect();
        check_codec::<(&str, i16)>(&pairs);
        let triples: Vec<(u8, Option<&str>, bool)> = words.iter().zip(&ints)
            .map(|(w, &i)| ((i % 3) as u8, (i % 2 == 0).then_some(w.as_str()), i > 0)).collect();
        check_codec::<(u8, Option<&str>, bool)>(&triples);
        let nested: Vec<((&[u8], u8), &str)> = bytes.iter().zip(&words).zip(&ints)
            .map(|((b, w), &i)| ((b.as_slice(), i as u8), w.as_str())).collect();
        check_codec::<((&[u8], u8), &str)>(&nested);
        let options: Vec<Option<i32>> = ints.iter().map(|&i| (i % 5 != 0).then_some(i as i32)).collect();
        check_codec::<Option<i32>>(&options);
        let arrays: Vec<[i16; 3]> = ints.windows(3).map(|w| [w[0] as i16, w[1] as i16, w[2] as i16]).collect();
        if !arrays.is_empty() {
            check_codec::<[i16; 3]>(&arrays);
        }
        let str_arrays: Vec<[&str; 2]> = words.windows(2).map(|w| [w[0].as_str(), w[1].as_str()]).collect();
        if !str_arrays.is_empty() {
            check_codec::<[&str; 2]>(&str_arrays);
        }
        let fixed: Vec<&[u8; 2]> = vec![&[0, 0], &[0, 1], &[255, 0]];
        check_codec::<&[u8; 2]>(&fixed);
        let unit_pairs: Vec<(u32, (), Option<()>)> = ints.iter().map(|&i| (i as u32, (), (i % 2 == 0).then_some(()))).collect();
        check_codec::<(u32, (), Option<()>)>(&unit_pairs);
        // Values only: round trip.
        let vt = ty::<Vec<&str>>();
        let v: Vec<&str> = words.iter().map(String::as_str).collect();
        let raw = <Vec<&str>>::as_bytes(&v);
        prop_assert_eq!(vt.decode(&vt.encode_to_vec(&raw).unwrap()).unwrap(), raw);
        let ft = ty::<f64>();
        for &i in &ints {
            let raw = (i as f64 / 3.0).to_le_bytes();
            prop_assert_eq!(ft.decode(&ft.encode_to_vec(&raw).unwrap()).unwrap(), raw.to_vec());
        }
    }
}

/// A random dataset for one proptest case: rows of (i32 key, string value) and multimap rows.
fn write_random(path: &Path, signed: &[(i32, String)], tags: &[(String, u8)]) {
    let db = Database::create(path).unwrap();
    let tx = db.begin_write().unwrap();
    {
        let mut t = tx
            .open_table(TableDefinition::<i32, &str>::new("signed"))
            .unwrap();
        for (k, v) in signed {
            t.insert(*k, v.as_str()).unwrap();
        }
        let mut t = tx
            .open_table(TableDefinition::<(&str, i32), u8>::new("pairs"))
            .unwrap();
        for (k, v) in signed {
            t.insert((v.as_str(), *k), 1).unwrap();
        }
        let mut t = tx
            .open_multimap_table(MultimapTableDefinition::<&str, u8>::new("tags"))
            .unwrap();
        for (k, v) in tags {
            t.insert(k.as_str(), *v).unwrap();
        }
    }
    tx.commit().unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn random_datasets_resume_from_random_stops(
        signed in prop::collection::vec((any::<i32>(), ".{1,5}"), 0..300),
        tags in prop::collection::vec(("[a-c]{1,3}", any::<u8>()), 0..200),
        stops in prop::collection::vec(1u64..12, 1..5),
        batch_rows in 1usize..50,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("random.redb");
        write_random(&file, &signed, &tags);
        let rt = rt();
        let mut opts = MigrateOptions { batch_rows, ..MigrateOptions::default() };
        let reference = dir.path().join("reference");
        rt.block_on(run(&file, &reference, &opts)).unwrap();
        let expected = rt.block_on(user_dump(&reference));
        let target = dir.path().join("target");
        let mut done = false;
        for stop in stops {
            opts.stop_after_batches = Some(stop);
            match rt.block_on(run(&file, &target, &opts)) {
                Err(MigrateError::Stopped { .. }) => {}
                Ok(r) => { prop_assert!(r.ok); done = true; break; }
                Err(e) => prop_assert!(false, "{}", e),
            }
        }
        if !done {
            opts.stop_after_batches = None;
            let r = rt.block_on(run(&file, &target, &opts)).unwrap();
            prop_assert!(r.ok);
        }
        prop_assert!(rt.block_on(user_dump(&target)) == expected);
    }
}

// ------------------------------------------------------------------- the previous redb generation

/// redb 2.6 wrote file format v2 by default: redb 4 cannot open it, and neither can we; the
/// error says how to upgrade.
#[test]
fn redb2_file_format_v2_is_refused_with_the_upgrade_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("old.redb");
    {
        let db = redb2::Database::create(&file).unwrap();
        let tx = db.begin_write().unwrap();
        tx.open_table(redb2::TableDefinition::<u64, &str>::new("t"))
            .unwrap()
            .insert(1, "one")
            .unwrap();
        tx.commit().unwrap();
    }
    let err = rt()
        .block_on(run(
            &file,
            &dir.path().join("t"),
            &MigrateOptions::default(),
        ))
        .unwrap_err();
    assert!(
        matches!(err, MigrateError::RedbFormatTooOld { version: 2, .. })
            && err.to_string().contains("upgrade()"),
        "{err}"
    );
}

/// redb 2.6 files upgraded to (or created in) format v3 open in redb 4 — but their variable-width
/// tuples use redb 2's `u32` length layout, which redb 4 itself refuses to open as tuples. The
/// stored classification tells the layouts apart, so they migrate with parity too.
#[test]
fn redb2_tables_with_old_tuple_layout_migrate_with_parity() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("old.redb");
    type K<'a> = (&'a str, u32);
    type V<'a> = (u8, &'a str, Option<i16>);
    let k_def: redb2::TableDefinition<'_, K<'_>, V<'_>> = redb2::TableDefinition::new("legacy");
    let i_def: redb2::TableDefinition<'_, i64, Option<&str>> = redb2::TableDefinition::new("ints");
    let mut expected: Rows = Vec::new();
    let mut expected_ints: Rows = Vec::new();
    {
        let mut builder = redb2::Builder::new();
        builder.create_with_file_format_v3(true);
        let db = builder.create(&file).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let mut t = tx.open_table(k_def).unwrap();
            for i in 0..200u64 {
                let w = word(i);
                t.insert(
                    (w.as_str(), mix(i) as u32),
                    (i as u8, "x\0y", (i % 2 == 0).then_some(i as i16)),
                )
                .unwrap();
            }
            let mut t = tx.open_table(i_def).unwrap();
            for i in 0..100u64 {
                let w = word(i);
                t.insert(mix(i) as i64, (i % 3 != 0).then_some(w.as_str()))
                    .unwrap();
            }
        }
        tx.commit().unwrap();
        let tx = db.begin_read().unwrap();
        use redb2::ReadableTable as _;
        let t = tx.open_table(k_def).unwrap();
        for e in t.iter().unwrap() {
            let (k, v) = e.unwrap();
            expected.push((
                <K<'_> as redb2::Value>::as_bytes(&k.value()).to_vec(),
                <V<'_> as redb2::Value>::as_bytes(&v.value()).to_vec(),
            ));
        }
        let t = tx.open_table(i_def).unwrap();
        for e in t.iter().unwrap() {
            let (k, v) = e.unwrap();
            expected_ints.push((
                <i64 as redb2::Value>::as_bytes(&k.value()).to_vec(),
                <Option<&str> as redb2::Value>::as_bytes(&v.value()).to_vec(),
            ));
        }
    }
    // redb 4 itself cannot open the legacy tuple table with the same Rust types.
    {
        let db = Database::open(&file).unwrap();
        let tx = db.begin_read().unwrap();
        assert!(
            tx.open_table(TableDefinition::<K<'_>, V<'_>>::new("legacy"))
                .is_err()
        );
    }
    let target = dir.path().join("store.fjall");
    let rt = rt();
    let report = rt
        .block_on(run(&file, &target, &MigrateOptions::default()))
        .unwrap();
    assert!(report.ok, "{}", report.to_text());
    let legacy = report
        .collections
        .iter()
        .find(|c| c.collection == "legacy")
        .unwrap();
    assert_eq!(legacy.key_type.as_deref(), Some("(&str,u32)"));
    rt.block_on(async {
        let backend = open_fjall(&target);
        let engine = Engine::open(Arc::clone(&backend), EngineOptions::default())
            .await
            .unwrap();
        let kt = RedbType::parse("(&str,u32)", TupleFormat::LegacyU32).unwrap();
        let vt = RedbType::parse("(u8,&str,Option<i16>)", TupleFormat::LegacyU32).unwrap();
        let got: Rows = collection_rows(&engine, "legacy")
            .await
            .iter()
            .map(|(k, v)| (kt.decode(k).unwrap(), vt.decode(v).unwrap()))
            .collect();
        assert_eq!(got.len(), 200);
        assert!(
            got == expected,
            "legacy tuples: rows or order differ from redb 2"
        );
        let got = decoded::<i64, Option<&str>>(&collection_rows(&engine, "ints").await);
        assert!(got == expected_ints);
        engine.close().await.unwrap();
    });
}
