//! Encryption at rest on real fjall and redb files: key rotation, online rekey, removal of
//! the old key, wrong / missing keys refused at open before anything is written, values
//! copied to another key's slot refused, plain stores refused unless asked to encrypt them.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod backup_common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use backup_common::{Rng, open, runtime};
use zcore_engine::crypto::{
    EncryptionError, EncryptionKey, EncryptionOptions, Keyring, RekeyOptions, store_key_ids,
};
use zcore_engine::mvcc::value::{self, sealed_key_id};
use zcore_engine::{
    CollectionName, Durability, Engine, EngineOptions, KeyRange, ScanRequest, StorageBackend,
    TxnError, WriteBatch,
};

const DISK: [&str; 2] = ["fjall", "redb"];

fn key(byte: u8) -> EncryptionKey {
    EncryptionKey::from_bytes([byte; 32])
}

fn ring(ids: &[(u32, u8)]) -> Keyring {
    let mut ring = Keyring::new();
    for &(id, b) in ids {
        ring.insert(id, key(b)).unwrap();
    }
    ring
}

fn options(ring: Option<Keyring>) -> EngineOptions {
    EngineOptions {
        gc_interval: None,
        retain_versions: 1_000_000,
        encryption: ring.map(EncryptionOptions::new),
        ..EngineOptions::default()
    }
}

fn coll(name: &str) -> CollectionName {
    CollectionName::new(name).unwrap()
}

/// Every raw entry of every collection (system ones included).
type Raw = BTreeMap<(String, Vec<u8>), Vec<u8>>;

async fn raw(backend: &dyn StorageBackend) -> Raw {
    let mut out = Raw::new();
    for c in backend.list_collections().await.unwrap() {
        let mut request = Some(ScanRequest::forward(KeyRange::all(), 1024));
        while let Some(req) = request.take() {
            let page = backend.scan(&c, &req).await.unwrap();
            request = req.next_page(&page);
            for (k, v) in page.entries {
                out.insert((c.as_str().to_owned(), k), v);
            }
        }
    }
    out
}

/// Key ids of the user values, counted.
fn key_id_census(raw: &Raw) -> BTreeMap<Option<u32>, usize> {
    let mut out = BTreeMap::new();
    for ((c, _), v) in raw {
        if !c.starts_with("__") {
            *out.entry(sealed_key_id(v)).or_default() += 1;
        }
    }
    out
}

/// The model: (collection, key) → value, as written.
type Model = BTreeMap<(String, Vec<u8>), Vec<u8>>;

async fn write_batch(engine: &Engine, model: &mut Model, rng: &mut Rng, txns: usize, tag: &str) {
    for _ in 0..txns {
        let mut tx = engine.begin_write();
        for _ in 0..3 {
            let c = ["users", "orders"][rng.below(2) as usize];
            let k = format!("k{:03}", rng.below(60)).into_bytes();
            if rng.below(6) == 0 {
                tx.delete(&coll(c), k.clone()).unwrap();
                model.remove(&(c.to_owned(), k));
            } else {
                let v = format!("{tag}-secret-{}", rng.next()).into_bytes();
                tx.put(&coll(c), k.clone(), v.clone()).unwrap();
                model.insert((c.to_owned(), k), v);
            }
        }
        tx.commit().await.unwrap();
    }
}

async fn read_all(engine: &Engine) -> Model {
    let txn = engine.begin_read();
    let mut out = Model::new();
    for c in engine.collections() {
        for (k, v) in txn.scan_prefix(&c, b"").await.unwrap() {
            out.insert((c.as_str().to_owned(), k), v);
        }
    }
    out
}

fn open_err(kind: &str, dir: &std::path::Path, ring: Option<Keyring>) -> (TxnError, Raw, Raw) {
    runtime().block_on(async {
        let backend = open(kind, dir);
        let before = raw(&*backend).await;
        let err = Engine::open(Arc::clone(&backend), options(ring))
            .await
            .expect_err("open must be refused");
        let after = raw(&*backend).await;
        backend.close().await.unwrap();
        (err, before, after)
    })
}

#[test]
fn rotate_rekey_and_drop_the_old_key() {
    for kind in DISK {
        let dir = tempfile::tempdir().unwrap();
        let mut model = Model::new();
        let mut rng = Rng(0x5eed_0001);

        // 1. A new store opened with key 1 is encrypted; every value is sealed with id 1.
        let v_before_rotation = runtime().block_on(async {
            let backend = open(kind, dir.path());
            let engine = Engine::open(Arc::clone(&backend), options(Some(ring(&[(1, 1)]))))
                .await
                .unwrap();
            for c in ["users", "orders"] {
                engine.create_collection(&coll(c)).await.unwrap();
            }
            write_batch(&engine, &mut model, &mut rng, 40, "one").await;
            assert_eq!(read_all(&engine).await, model);
            let version = engine.latest_version();
            let raw = raw(&*backend).await;
            let census = key_id_census(&raw);
            assert_eq!(
                census.keys().collect::<Vec<_>>(),
                [&Some(1)],
                "{kind}: {census:?}"
            );
            assert!(
                !raw.values()
                    .any(|v| v.windows(10).any(|w| w == b"one-secret")),
                "{kind}: plaintext on disk"
            );
            assert_eq!(store_key_ids(&*backend).await.unwrap(), [1]);
            engine.close().await.unwrap();
            version
        });
        let model_before_rotation = model.clone();

        // 2. Add key 2: new writes use it, old values stay readable.
        runtime().block_on(async {
            let backend = open(kind, dir.path());
            let engine = Engine::open(Arc::clone(&backend), options(Some(ring(&[(1, 1), (2, 2)]))))
                .await
                .unwrap();
            assert_eq!(read_all(&engine).await, model);
            write_batch(&engine, &mut model, &mut rng, 20, "two").await;
            assert_eq!(read_all(&engine).await, model);
            let census = key_id_census(&raw(&*backend).await);
            assert!(
                census[&Some(1)] > 0 && census[&Some(2)] > 0,
                "{kind}: {census:?}"
            );
            assert_eq!(census.len(), 2, "{kind}: {census:?}");
            assert_eq!(store_key_ids(&*backend).await.unwrap(), [1, 2]);
            engine.close().await.unwrap();
        });

        // 3. Key 1 cannot be dropped yet: refused at open, nothing written.
        let (err, before, after) = open_err(kind, dir.path(), Some(ring(&[(2, 2)])));
        assert!(
            matches!(
                err,
                TxnError::Encryption(EncryptionError::MissingKey { key_id: 1, .. })
            ),
            "{kind}: {err}"
        );
        assert!(err.to_string().contains("rekey"), "{err}");
        assert_eq!(before, after, "{kind}: a refused open wrote something");

        // 4. Rekey online (a writer runs alongside), with progress.
        runtime().block_on(async {
            let backend = open(kind, dir.path());
            let engine = Engine::open(Arc::clone(&backend), options(Some(ring(&[(1, 1), (2, 2)]))))
                .await
                .unwrap();
            let seen = Arc::new(Mutex::new(Vec::new()));
            let sink = Arc::clone(&seen);
            let rekey = engine.rekey(RekeyOptions {
                batch: 7,
                progress: Some(Arc::new(move |p| {
                    sink.lock().unwrap().push((p.scanned, p.rewritten));
                })),
            });
            let mut writer_model = model.clone();
            let mut writer_rng = rng.clone();
            let writer = write_batch(&engine, &mut writer_model, &mut writer_rng, 10, "during");
            let (report, ()) = tokio::join!(rekey, writer);
            let report = report.unwrap();
            model = writer_model;
            rng = writer_rng;
            assert_eq!(report.key_id, 2);
            assert_eq!(report.retired_key_ids, [1]);
            assert!(
                report.rewritten > 0 && report.already_current > 0,
                "{report:?}"
            );
            let seen = seen.lock().unwrap().clone();
            assert!(seen.len() > 2, "progress reported per batch: {seen:?}");
            assert!(seen.windows(2).all(|w| w[0].0 <= w[1].0), "{seen:?}");
            assert_eq!(read_all(&engine).await, model);
            // History survives a rekey: time travel to before the rotation.
            let old = engine.begin_read_at(v_before_rotation).unwrap();
            let mut then = Model::new();
            for c in engine.collections() {
                for (k, v) in old.scan_prefix(&c, b"").await.unwrap() {
                    then.insert((c.as_str().to_owned(), k), v);
                }
            }
            drop(old);
            assert_eq!(then, model_before_rotation, "{kind}: history after rekey");
            let census = key_id_census(&raw(&*backend).await);
            assert_eq!(
                census.keys().collect::<Vec<_>>(),
                [&Some(2)],
                "{kind}: {census:?}"
            );
            assert_eq!(store_key_ids(&*backend).await.unwrap(), [2]);
            engine.close().await.unwrap();
        });

        // 5. Key 1 removed: everything reads, verify is clean, GC works.
        runtime().block_on(async {
            let backend = open(kind, dir.path());
            let engine = Engine::open(Arc::clone(&backend), options(Some(ring(&[(2, 2)]))))
                .await
                .unwrap();
            assert_eq!(read_all(&engine).await, model);
            let report = engine.verify(10).await.unwrap();
            assert!(report.is_clean(), "{kind}: {report:?}");
            engine.collect_garbage().await.unwrap();
            assert_eq!(read_all(&engine).await, model);
            engine.close().await.unwrap();
        });

        // 6. Wrong key under the right id, and no key at all: refused at open, nothing
        //    written.
        let (err, before, after) = open_err(kind, dir.path(), Some(ring(&[(2, 9)])));
        assert!(
            matches!(
                err,
                TxnError::Encryption(EncryptionError::WrongKey { key_id: 2 })
            ),
            "{kind}: {err}"
        );
        assert_eq!(before, after);
        let (err, before, after) = open_err(kind, dir.path(), None);
        assert!(
            matches!(
                err,
                TxnError::Encryption(EncryptionError::KeyRequired { ref key_ids }) if key_ids == &[2]
            ),
            "{kind}: {err}"
        );
        assert!(err.to_string().contains("ZDB_ENCRYPTION_KEY"), "{err}");
        assert_eq!(before, after);
    }
}

#[test]
fn a_value_copied_to_another_keys_slot_fails_authentication() {
    for kind in DISK {
        let dir = tempfile::tempdir().unwrap();
        runtime().block_on(async {
            let backend = open(kind, dir.path());
            let engine = Engine::open(Arc::clone(&backend), options(Some(ring(&[(1, 1)]))))
                .await
                .unwrap();
            let users = coll("users");
            engine.create_collection(&users).await.unwrap();
            let mut tx = engine.begin_write();
            tx.put(&users, b"alice".to_vec(), b"alice-balance-100".to_vec())
                .unwrap();
            tx.put(&users, b"bob".to_vec(), b"bob-balance-5".to_vec())
                .unwrap();
            tx.commit().await.unwrap();
            engine.close().await.unwrap();
            drop(engine);
            drop(backend);

            // Someone with write access to the files copies alice's sealed value over bob's,
            // once as is and once with the checksum recomputed for bob's slot.
            let backend = open(kind, dir.path());
            let all = raw(&*backend).await;
            backend.close().await.unwrap();
            drop(backend);
            let slot = |name: &[u8]| {
                all.iter()
                    .find(|((c, k), _)| c == "users" && k.starts_with(name))
                    .map(|((_, k), v)| (k.clone(), v.clone()))
                    .unwrap()
            };
            let (_, alice_value) = slot(b"alice");
            let (bob_key, _) = slot(b"bob");
            let mut forged = alice_value.clone();
            let mut crc = crc32c::crc32c(b"users");
            crc = crc32c::crc32c_append(crc, &[0]);
            crc = crc32c::crc32c_append(crc, &bob_key);
            crc = crc32c::crc32c_append(crc, &forged[..1]);
            crc = crc32c::crc32c_append(crc, &forged[value::VALUE_OVERHEAD..]);
            forged[1..5].copy_from_slice(&crc.to_le_bytes());
            for (bytes, fixed_crc) in [(alice_value, false), (forged, true)] {
                let backend = open(kind, dir.path());
                let mut batch = WriteBatch::new();
                batch.put(&users, bob_key.clone(), bytes);
                backend.write(batch, Durability::Synced).await.unwrap();
                let engine = Engine::open(Arc::clone(&backend), options(Some(ring(&[(1, 1)]))))
                    .await
                    .unwrap();
                let got = engine.begin_read().get(&users, b"bob").await;
                if fixed_crc {
                    assert!(
                        matches!(got, Err(TxnError::Decrypt { key_id: 1, version, .. }) if version > 0),
                        "{kind}: {got:?}"
                    );
                } else {
                    assert!(matches!(got, Err(TxnError::Corrupted { .. })), "{kind}: {got:?}");
                }
                let message = got.unwrap_err().to_string();
                // Names the collection, the key (hex preview of "bob") and the version.
                assert!(
                    message.contains("users") && message.contains("626f62") && message.contains("version 1"),
                    "{message}"
                );
                // alice is untouched.
                assert_eq!(
                    engine.begin_read().get(&users, b"alice").await.unwrap(),
                    Some(b"alice-balance-100".to_vec())
                );
                let report = engine.verify(10).await.unwrap();
                assert_eq!(report.problems_total, 1, "{kind}: {report:?}");
                engine.close().await.unwrap();
            }
        });
    }
}

#[test]
fn a_plain_store_is_refused_unless_asked_to_encrypt_it() {
    for kind in DISK {
        let dir = tempfile::tempdir().unwrap();
        let users = coll("users");
        runtime().block_on(async {
            let backend = open(kind, dir.path());
            let engine = Engine::open(Arc::clone(&backend), options(None))
                .await
                .unwrap();
            engine.create_collection(&users).await.unwrap();
            let mut tx = engine.begin_write();
            tx.put(&users, b"old".to_vec(), b"plain".to_vec()).unwrap();
            tx.commit().await.unwrap();
            engine.close().await.unwrap();
        });
        let (err, before, after) = open_err(kind, dir.path(), Some(ring(&[(1, 1)])));
        assert!(
            matches!(err, TxnError::Encryption(EncryptionError::NotEncrypted)),
            "{kind}: {err}"
        );
        assert!(err.to_string().contains("encrypt_existing"), "{err}");
        assert_eq!(before, after);

        let adopt = |ids: &[(u32, u8)]| EngineOptions {
            encryption: Some(EncryptionOptions {
                encrypt_existing: true,
                ..EncryptionOptions::new(ring(ids))
            }),
            ..options(None)
        };
        runtime().block_on(async {
            let backend = open(kind, dir.path());
            let engine = Engine::open(Arc::clone(&backend), adopt(&[(1, 1)]))
                .await
                .unwrap();
            let mut tx = engine.begin_write();
            tx.put(&users, b"new".to_vec(), b"sealed".to_vec()).unwrap();
            tx.commit().await.unwrap();
            let txn = engine.begin_read();
            assert_eq!(txn.get(&users, b"old").await.unwrap(), Some(b"plain".to_vec()));
            assert_eq!(txn.get(&users, b"new").await.unwrap(), Some(b"sealed".to_vec()));
            drop(txn);
            let census = key_id_census(&raw(&*backend).await);
            assert_eq!(census[&None], 1, "{kind}: {census:?}");
            assert_eq!(census[&Some(1)], 1, "{kind}: {census:?}");
            let report = engine.rekey(RekeyOptions::default()).await.unwrap();
            assert_eq!((report.rewritten, report.already_current), (1, 1));
            let census = key_id_census(&raw(&*backend).await);
            assert_eq!(census.keys().collect::<Vec<_>>(), [&Some(1)], "{kind}: {census:?}");
            engine.close().await.unwrap();
            drop(engine);
            drop(backend);
            let backend = open(kind, dir.path());

            // After a complete rekey a plaintext value (valid checksum) planted in the
            // files is refused, never returned as data.
            let vk = raw(&*backend)
                .await
                .into_keys()
                .find(|(c, k)| c == "users" && k.starts_with(b"old"))
                .unwrap()
                .1;
            let mut batch = WriteBatch::new();
            batch.put(&users, vk.clone(), value::encode("users", &vk, Some(b"planted")));
            backend.write(batch, Durability::Synced).await.unwrap();
            let engine = Engine::open(Arc::clone(&backend), options(Some(ring(&[(1, 1)]))))
                .await
                .unwrap();
            let got = engine.begin_read().get(&users, b"old").await;
            assert!(
                matches!(&got, Err(TxnError::Corrupted { reason, .. }) if reason.contains("plaintext")),
                "{kind}: {got:?}"
            );
            engine.close().await.unwrap();
        });
    }
}

#[test]
fn memory_backend_round_trip_and_gc() {
    runtime().block_on(async {
        let backend = open("memory", std::path::Path::new("."));
        let engine = Engine::open(
            Arc::clone(&backend),
            EngineOptions {
                retain_versions: 0,
                ..options(Some(ring(&[(4, 4)])))
            },
        )
        .await
        .unwrap();
        let users = coll("users");
        engine.create_collection(&users).await.unwrap();
        for round in 0..5u8 {
            let mut tx = engine.begin_write();
            tx.put(&users, b"k".to_vec(), vec![round; 100]).unwrap();
            if round == 4 {
                tx.delete(&users, b"gone".to_vec()).unwrap();
            } else {
                tx.put(&users, b"gone".to_vec(), b"x".to_vec()).unwrap();
            }
            tx.commit().await.unwrap();
        }
        let report = engine.collect_garbage().await.unwrap();
        assert_eq!(report.versions_removed, 8, "{report:?}");
        assert_eq!(report.tombstones_removed, 1, "{report:?}");
        let counts = engine.version_counts(&users).await.unwrap();
        assert_eq!((counts.live_keys, counts.versions), (1, 1));
        assert_eq!(
            engine.begin_read().get(&users, b"k").await.unwrap(),
            Some(vec![4u8; 100])
        );
        assert!(engine.verify(10).await.unwrap().is_clean());
    });
}

mod config {
    use std::ffi::OsString;
    use std::path::Path;

    use zcore_backends::config::{
        ConfigError, ConfigLoader, ConfigOverrides, ENV_ENCRYPTION_ENCRYPT_EXISTING,
        ENV_ENCRYPTION_KEY_ENV, ENV_ENCRYPTION_KEY_FILE, SettingSource,
    };

    const HEX_A: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    const HEX_B: &str = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";

    fn no_env(_: &str) -> Option<OsString> {
        None
    }

    fn file(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn toml_env_and_flag_layers() {
        let dir = tempfile::tempdir().unwrap();
        file(dir.path(), "k1.key", &format!("1:{HEX_A}\n"));
        let toml = file(
            dir.path(),
            "zstore.toml",
            "backend = \"memory\"\n[encryption]\nkey_file = \"k1.key\"\nkey_env = \"MY_KEYS\"\n",
        );
        let loaded = ConfigLoader::from_env_map::<&str, &str>([])
            .with_overrides(ConfigOverrides {
                config_file: Some(toml.clone()),
                ..ConfigOverrides::default()
            })
            .load()
            .unwrap();
        assert_eq!(loaded.encryption.key_file, Some(dir.path().join("k1.key")));
        let setting = loaded.setting("encryption.key_file").unwrap();
        assert_eq!(setting.source, SettingSource::File { path: toml.clone() });
        assert_eq!(
            loaded.setting("encryption.key_env").unwrap().value,
            "MY_KEYS"
        );
        // Settings carry locations, never key material.
        let shown = format!("{loaded:?}");
        assert!(!shown.contains(HEX_A) && !shown.contains(HEX_B), "{shown}");
        let opts = loaded
            .encryption_options_with(|name| {
                (name == "MY_KEYS").then(|| format!("2:{HEX_B}").into())
            })
            .unwrap()
            .unwrap();
        assert_eq!(opts.keyring.ids(), [1, 2]);
        assert!(!opts.encrypt_existing);
        // The variable unset: a clear error naming it.
        let err = loaded.encryption_options_with(no_env).unwrap_err();
        assert!(matches!(err, ConfigError::Encryption { .. }), "{err}");
        assert!(
            err.to_string().contains("MY_KEYS") && err.to_string().contains("not set"),
            "{err}"
        );

        // Environment beats the file, the flag beats the environment.
        file(dir.path(), "k2.key", HEX_B);
        file(
            dir.path(),
            "k3.key",
            &[3u8; 32].iter().map(|b| *b as char).collect::<String>(),
        );
        let env = [
            (
                ENV_ENCRYPTION_KEY_FILE,
                dir.path().join("k2.key").into_os_string(),
            ),
            (ENV_ENCRYPTION_ENCRYPT_EXISTING, OsString::from("true")),
        ];
        let loaded = ConfigLoader::from_env_map(env.clone())
            .with_overrides(ConfigOverrides {
                config_file: Some(toml.clone()),
                ..ConfigOverrides::default()
            })
            .load()
            .unwrap();
        assert_eq!(loaded.encryption.key_file, Some(dir.path().join("k2.key")));
        assert!(loaded.encryption.encrypt_existing);
        let loaded = ConfigLoader::from_env_map(env)
            .with_overrides(ConfigOverrides {
                config_file: Some(toml),
                key_file: Some(dir.path().join("k3.key")),
                ..ConfigOverrides::default()
            })
            .load()
            .unwrap();
        assert_eq!(
            loaded.setting("encryption.key_file").unwrap().source,
            SettingSource::Flag { flag: "--key-file" }
        );
        let opts = loaded
            .encryption_options_with(|_| Some(format!("7:{HEX_A}").into()))
            .unwrap()
            .unwrap();
        assert_eq!(opts.keyring.ids(), [1, 7], "raw 32-byte file is id 1");
    }

    #[test]
    fn malformed_keys_and_settings_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let short = HEX_A[..62].to_owned();
        let bad = file(dir.path(), "bad.key", &short);
        let loaded = ConfigLoader::from_env_map([(ENV_ENCRYPTION_KEY_FILE, bad.as_os_str())])
            .load()
            .unwrap();
        let err = loaded
            .encryption_options_with(no_env)
            .unwrap_err()
            .to_string();
        assert!(err.contains("encryption.key_file"), "{err}");
        assert!(err.contains("ZDB_ENCRYPTION_KEY_FILE"), "{err}");
        assert!(
            err.contains("expected 64 hex digits") && err.contains("62"),
            "{err}"
        );
        assert!(!err.contains(&short), "key material in an error: {err}");

        let missing = dir.path().join("nope.key");
        let loaded = ConfigLoader::from_env_map([(ENV_ENCRYPTION_KEY_FILE, missing.as_os_str())])
            .load()
            .unwrap();
        let err = loaded
            .encryption_options_with(no_env)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("cannot read encryption key file") && err.contains("nope.key"),
            "{err}"
        );

        let loaded = ConfigLoader::from_env_map([(ENV_ENCRYPTION_KEY_ENV, "K")])
            .load()
            .unwrap();
        let err = loaded
            .encryption_options_with(|_| Some("1:xyz".into()))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("environment variable K") && err.contains("found 3 characters"),
            "{err}"
        );

        let err = ConfigLoader::from_env_map([(ENV_ENCRYPTION_ENCRYPT_EXISTING, "maybe")])
            .load()
            .unwrap_err()
            .to_string();
        assert!(err.contains("expected true or false"), "{err}");

        let toml = file(dir.path(), "c.toml", "[encryption]\nkey = \"abc\"\n");
        let err = ConfigLoader::from_env_map::<&str, &str>([])
            .with_overrides(ConfigOverrides {
                config_file: Some(toml),
                ..ConfigOverrides::default()
            })
            .load()
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `key`"), "{err}");

        // Not configured: no encryption.
        let loaded = ConfigLoader::from_env_map::<&str, &str>([]).load().unwrap();
        assert!(loaded.encryption_options_with(no_env).unwrap().is_none());
        assert!(loaded.setting("encryption.key_file").is_none());
    }
}

mod backups {
    use std::sync::Arc;

    use super::backup_common::{Rng, open, runtime};
    use super::{Model, coll, options, read_all, ring, write_batch};
    use zcore_engine::backup::{self, Check, RestoreOptions};
    use zcore_engine::crypto::{EncryptionError, EncryptionOptions, Keyring};
    use zcore_engine::{BackupOptions, Engine, TxnError};

    fn restore_opts(ring: Option<Keyring>) -> RestoreOptions {
        RestoreOptions {
            encryption: ring.map(EncryptionOptions::new),
            ..RestoreOptions::default()
        }
    }

    #[test]
    fn encrypted_backups_seal_chunks_and_restore_only_with_the_key() {
        for kind in super::DISK {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path().join("full");
            let incr = tmp.path().join("incr");
            runtime().block_on(async {
                let backend = open(kind, &tmp.path().join("src"));
                let engine =
                    Engine::open(Arc::clone(&backend), options(Some(ring(&[(1, 1), (2, 2)]))))
                        .await
                        .unwrap();
                for c in ["users", "orders"] {
                    engine.create_collection(&coll(c)).await.unwrap();
                }
                let mut model = Model::new();
                let mut rng = Rng(0xbac0);
                write_batch(&engine, &mut model, &mut rng, 30, "bk").await;
                let meta = engine
                    .create_backup(&dir, &BackupOptions::default())
                    .await
                    .unwrap();
                let enc = meta
                    .encryption
                    .expect("an encrypted store makes encrypted backups");
                assert_eq!(enc.key_id, 2);
                write_batch(&engine, &mut model, &mut rng, 10, "bk").await;
                let meta2 = engine
                    .create_backup(
                        &incr,
                        &BackupOptions {
                            incremental_from: Some(dir.clone()),
                            ..BackupOptions::default()
                        },
                    )
                    .await
                    .unwrap();
                assert_eq!(meta2.encryption.map(|e| e.key_id), Some(2));
                let expected = read_all(&engine).await;
                engine.close().await.unwrap();

                // No plaintext in any backup file; the manifest stays readable without a key.
                for d in [&dir, &incr] {
                    for f in std::fs::read_dir(d).unwrap() {
                        let bytes = std::fs::read(f.unwrap().path()).unwrap();
                        assert!(
                            !bytes.windows(9).any(|w| w == b"bk-secret"),
                            "{kind}: plaintext"
                        );
                    }
                    let m = backup::read_metadata(d).unwrap();
                    assert_eq!(m.encryption.map(|e| e.key_id), Some(2));
                }

                // Verify: without the key refused clearly, with it every chunk authenticates.
                let err = backup::verify(&incr).await.unwrap_err();
                assert_eq!(err.check(), Check::EncryptionKey, "{err}");
                let report = backup::verify_with_keyring(
                    &incr,
                    Some(Arc::new(ring(&[(2, 2)]))),
                    backup::Progress::none(),
                )
                .await
                .unwrap();
                assert!(report.entries_checked > 0);

                // Restore: no key, a missing key id, a wrong key — refused before any write.
                for (bad, needle) in [
                    (None, "give the keyring"),
                    (Some(ring(&[(1, 1)])), "lacks"),
                    (Some(ring(&[(2, 9)])), "wrong key"),
                ] {
                    let target = open("memory", tmp.path());
                    let err = backup::restore_with(&incr, Arc::clone(&target), &restore_opts(bad))
                        .await
                        .unwrap_err();
                    assert_eq!(err.check(), Check::EncryptionKey, "{kind}: {err}");
                    assert!(err.to_string().contains(needle), "{err}");
                    assert!(super::backup_common::is_empty(&*target).await);
                    assert!(target.list_collections().await.unwrap().is_empty());
                }

                // The right keyring restores; the target is an encrypted store.
                let target = open(kind, &tmp.path().join("dst"));
                backup::restore_with(
                    &incr,
                    Arc::clone(&target),
                    &restore_opts(Some(ring(&[(2, 2)]))),
                )
                .await
                .unwrap();
                let census = super::key_id_census(&super::raw(&*target).await);
                assert_eq!(
                    census.keys().collect::<Vec<_>>(),
                    [&Some(2)],
                    "{kind}: {census:?}"
                );
                let err = Engine::open(Arc::clone(&target), options(None))
                    .await
                    .unwrap_err();
                assert!(
                    matches!(
                        err,
                        TxnError::Encryption(EncryptionError::KeyRequired { .. })
                    ),
                    "{err}"
                );
                let restored = Engine::open(Arc::clone(&target), options(Some(ring(&[(2, 2)]))))
                    .await
                    .unwrap();
                assert_eq!(read_all(&restored).await, expected, "{kind}");
                assert!(restored.verify(10).await.unwrap().is_clean());
                restored.close().await.unwrap();
            });
        }
    }
}
