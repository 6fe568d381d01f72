//! Differential property test: random operation sequences applied to every backend and to a
//! `BTreeMap` model must give identical results — values, scan pages, and errors alike.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use proptest::prelude::*;
use zcore_backends::{FjallBackend, FjallOptions, MemoryBackend, RedbBackend, RedbOptions};
use zcore_engine::{
    BackendError, CollectionName, Direction, Durability, KeyRange, ScanRequest, StorageBackend,
    WriteBatch,
};

const COLLECTIONS: [&str; 3] = ["alpha", "beta", "gamma"];

#[derive(Clone, Debug)]
enum BatchItem {
    Put(usize, Vec<u8>, Vec<u8>),
    Delete(usize, Vec<u8>),
}

#[derive(Clone, Debug)]
enum Op {
    Create(usize),
    Drop(usize),
    Write(Vec<BatchItem>, bool),
    Get(usize, Vec<u8>),
    Scan(usize, Bound<Vec<u8>>, Bound<Vec<u8>>, Direction, usize),
    Sync,
    Reopen,
}

/// What a call returned, reduced to what must agree across backends.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Ok,
    Created(bool),
    Value(Option<Vec<u8>>),
    Entries(Vec<(Vec<u8>, Vec<u8>)>),
    InvalidKey,
    NotFound(String),
    Other(String),
}

fn reduce(e: BackendError) -> Outcome {
    match e {
        BackendError::InvalidKey { .. } => Outcome::InvalidKey,
        BackendError::CollectionNotFound { collection } => {
            Outcome::NotFound(collection.to_string())
        }
        other => Outcome::Other(other.to_string()),
    }
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    // Small alphabet heavy on 0x00/0xFF so prefixes and collisions are common; may be empty.
    prop::collection::vec(
        prop_oneof![Just(0u8), Just(1), Just(0x7F), Just(0xFF), any::<u8>()],
        0..4,
    )
}

fn bound() -> impl Strategy<Value = Bound<Vec<u8>>> {
    prop_oneof![
        key().prop_map(Bound::Included),
        key().prop_map(Bound::Excluded),
        Just(Bound::Unbounded)
    ]
}

fn item() -> impl Strategy<Value = BatchItem> {
    prop_oneof![
        4 => (0..3usize, key(), prop::collection::vec(any::<u8>(), 0..8))
            .prop_map(|(c, k, v)| BatchItem::Put(c, k, v)),
        1 => (0..3usize, key()).prop_map(|(c, k)| BatchItem::Delete(c, k)),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0..3usize).prop_map(Op::Create),
        1 => (0..3usize).prop_map(Op::Drop),
        8 => (prop::collection::vec(item(), 0..6), any::<bool>()).prop_map(|(b, s)| Op::Write(b, s)),
        4 => (0..3usize, key()).prop_map(|(c, k)| Op::Get(c, k)),
        4 => (0..3usize, bound(), bound(), prop_oneof![Just(Direction::Forward), Just(Direction::Reverse)], 1..5usize)
            .prop_map(|(c, s, e, d, l)| Op::Scan(c, s, e, d, l)),
        1 => Just(Op::Sync),
        1 => Just(Op::Reopen),
    ]
}

fn name(i: usize) -> CollectionName {
    CollectionName::new(COLLECTIONS[i]).expect("valid name")
}

/// The reference: one `BTreeMap` per collection.
#[derive(Default)]
struct Model(BTreeMap<usize, BTreeMap<Vec<u8>, Vec<u8>>>);

impl Model {
    fn apply(&mut self, op: &Op) -> Outcome {
        match op {
            Op::Create(c) => Outcome::Created(
                self.0
                    .insert(*c, self.0.get(c).cloned().unwrap_or_default())
                    .is_none(),
            ),
            Op::Drop(c) => Outcome::Created(self.0.remove(c).is_some()),
            Op::Write(items, _) => {
                let keys = items.iter().map(|i| match i {
                    BatchItem::Put(_, k, _) | BatchItem::Delete(_, k) => k,
                });
                if keys.clone().any(Vec::is_empty) {
                    return Outcome::InvalidKey;
                }
                for i in items {
                    let c = match i {
                        BatchItem::Put(c, ..) | BatchItem::Delete(c, _) => c,
                    };
                    if !self.0.contains_key(c) {
                        return Outcome::NotFound(COLLECTIONS[*c].to_owned());
                    }
                }
                for i in items {
                    match i {
                        BatchItem::Put(c, k, v) => {
                            self.0.entry(*c).or_default().insert(k.clone(), v.clone());
                        }
                        BatchItem::Delete(c, k) => {
                            self.0.entry(*c).or_default().remove(k);
                        }
                    }
                }
                Outcome::Ok
            }
            Op::Get(c, k) => {
                if k.is_empty() {
                    return Outcome::InvalidKey;
                }
                match self.0.get(c) {
                    None => Outcome::NotFound(COLLECTIONS[*c].to_owned()),
                    Some(m) => Outcome::Value(m.get(k).cloned()),
                }
            }
            Op::Scan(c, s, e, d, _) => match self.0.get(c) {
                None => Outcome::NotFound(COLLECTIONS[*c].to_owned()),
                Some(m) => {
                    let range = KeyRange::new(s.clone(), e.clone());
                    let mut entries: Vec<_> = m
                        .iter()
                        .filter(|(k, _)| range.contains(k))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    if *d == Direction::Reverse {
                        entries.reverse();
                    }
                    Outcome::Entries(entries)
                }
            },
            Op::Sync | Op::Reopen => Outcome::Ok,
        }
    }
}

async fn apply(
    backend: &mut Arc<dyn StorageBackend>,
    reopen: &dyn Fn() -> Result<Arc<dyn StorageBackend>, BackendError>,
    op: &Op,
) -> Outcome {
    let result: Result<Outcome, BackendError> = async {
        Ok(match op {
            Op::Create(c) => Outcome::Created(backend.create_collection(&name(*c)).await?),
            Op::Drop(c) => Outcome::Created(backend.drop_collection(&name(*c)).await?),
            Op::Write(items, synced) => {
                let mut batch = WriteBatch::new();
                for i in items {
                    match i {
                        BatchItem::Put(c, k, v) => batch.put(&name(*c), k.clone(), v.clone()),
                        BatchItem::Delete(c, k) => batch.delete(&name(*c), k.clone()),
                    }
                }
                let durability = if *synced {
                    Durability::Synced
                } else {
                    Durability::Buffered
                };
                backend.write(batch, durability).await?;
                Outcome::Ok
            }
            Op::Get(c, k) => Outcome::Value(backend.get(&name(*c), k).await?),
            Op::Scan(c, s, e, d, limit) => {
                let mut request = Some(ScanRequest {
                    range: KeyRange::new(s.clone(), e.clone()),
                    direction: *d,
                    limit: *limit,
                });
                let mut entries = Vec::new();
                while let Some(req) = request {
                    let page = backend.scan(&name(*c), &req).await?;
                    request = req.next_page(&page);
                    entries.extend(page.entries);
                }
                Outcome::Entries(entries)
            }
            Op::Sync => {
                backend.sync().await?;
                Outcome::Ok
            }
            Op::Reopen => {
                if backend.is_persistent() {
                    backend.close().await?;
                    *backend = reopen()?;
                }
                Outcome::Ok
            }
        })
    }
    .await;
    result.unwrap_or_else(reduce)
}

type Opener<'a> = dyn Fn() -> Result<Arc<dyn StorageBackend>, BackendError> + 'a;

fn check(ops: &[Op]) -> Result<(), TestCaseError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
    let fjall_path = dir.path().join("store.fjall");
    let redb_path = dir.path().join("store.redb");
    let fjall_options = FjallOptions {
        cache_size_bytes: 4 << 20,
        worker_threads: Some(1),
        ..FjallOptions::default()
    };
    let redb_options = RedbOptions {
        cache_size_bytes: 4 << 20,
    };
    let openers: Vec<(&str, Box<Opener<'_>>)> = vec![
        (
            "memory",
            Box::new(|| Ok(Arc::new(MemoryBackend::new()) as Arc<dyn StorageBackend>)),
        ),
        (
            "fjall",
            Box::new(|| {
                Ok(Arc::new(FjallBackend::open(&fjall_path, &fjall_options)?)
                    as Arc<dyn StorageBackend>)
            }),
        ),
        (
            "redb",
            Box::new(|| {
                Ok(Arc::new(RedbBackend::open(&redb_path, &redb_options)?)
                    as Arc<dyn StorageBackend>)
            }),
        ),
    ];
    runtime.block_on(async {
        for (backend_name, open) in &openers {
            let mut model = Model::default();
            let mut backend = open().map_err(|e| TestCaseError::fail(e.to_string()))?;
            for (step, op) in ops.iter().enumerate() {
                let expected = model.apply(op);
                let actual = apply(&mut backend, open.as_ref(), op).await;
                prop_assert_eq!(
                    &actual,
                    &expected,
                    "{} diverged at step {}: {:?}",
                    backend_name,
                    step,
                    op
                );
            }
            backend
                .close()
                .await
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
        }
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn backends_agree_with_the_model(ops in prop::collection::vec(op(), 1..40)) {
        check(&ops)?;
    }
}
