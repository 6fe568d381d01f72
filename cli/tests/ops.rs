//! End-to-end tests of `zstore verify`, `zstore inspect` and `zstore compact` on every backend,
//! running the real binary in a temporary directory with every `ZDB_*` variable cleared. The
//! memory backend starts empty in every process, so there the verbs run on an empty store.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use serde_json::Value;
use zcore_backends::{FjallBackend, FjallOptions};
use zcore_engine::mvcc::keys::EncodedKey;
use zcore_engine::{CollectionName, Durability, StorageBackend, WriteBatch};

#[derive(Debug)]
struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Outcome {
    #[track_caller]
    fn ok(self) -> Self {
        assert_eq!(self.code, Some(0), "expected success: {self:#?}");
        self
    }

    #[track_caller]
    fn fails(self, code: i32, needles: &[&str]) -> Self {
        assert_eq!(
            self.code,
            Some(code),
            "expected exit code {code}: {self:#?}"
        );
        for n in needles {
            assert!(
                self.stderr.contains(n),
                "stderr lacks {n:?}: {}",
                self.stderr
            );
        }
        self
    }

    #[track_caller]
    fn json(&self) -> Value {
        assert_eq!(
            self.stdout.lines().count(),
            1,
            "one JSON line: {}",
            self.stdout
        );
        serde_json::from_str(&self.stdout).unwrap()
    }
}

/// Runs `zstore --backend BACKEND --data-dir data ARGS…` in `dir`.
fn zstore(dir: &Path, backend: &str, args: &[&str]) -> Outcome {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_zstore"));
    cmd.current_dir(dir);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("ZDB_") || name == "RUST_LOG" {
            cmd.env_remove(name);
        }
    }
    cmd.args(["--backend", backend, "--data-dir", "data"]);
    cmd.args(args);
    let out = cmd.output().unwrap();
    let outcome = Outcome {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(!outcome.stderr.contains("panicked"), "{outcome:#?}");
    outcome
}

/// users: alice (overwritten), bob, carol (deleted); a sequence-free store of 5 versions.
fn fill(dir: &Path, backend: &str) {
    for args in [
        &["put", "users", "alice", "first"][..],
        &["put", "users", "alice", "PAYLOAD-OF-ALICE"],
        &["put", "users", "bob", "b"],
        &["put", "users", "carol", "c"],
        &["delete", "users", "carol"],
    ] {
        zstore(dir, backend, args).ok();
    }
}

fn users(report: &Value, list: &str) -> Value {
    report[list]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "users")
        .cloned()
        .unwrap_or_else(|| panic!("no users in {report}"))
}

#[test]
fn verify_inspect_and_compact_work_on_every_disk_backend() {
    for backend in ["fjall", "redb"] {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        fill(dir, backend);

        let text = zstore(dir, backend, &["verify"]).ok();
        assert!(text.stdout.contains("no problems found"), "{text:#?}");
        assert!(
            text.stdout
                .contains("users: 5 entries, 3 keys, 1 deletion markers, 2 live keys, 0 bad"),
            "{text:#?}"
        );
        let json = zstore(dir, backend, &["--json", "verify"]).ok().json();
        assert_eq!(json["clean"], true);
        assert_eq!(users(&json["report"], "collections")["entries"], 5);
        assert_eq!(
            json["report"]["backend_check"],
            if backend == "redb" {
                Value::Bool(true)
            } else {
                Value::Null
            }
        );

        let text = zstore(dir, backend, &["inspect"]).ok();
        assert!(
            text.stdout.contains(&format!("backend: {backend}")),
            "{text:#?}"
        );
        assert!(
            text.stdout
                .contains("users: 2 live keys, 3 keys, 5 versions, 1 deletion markers"),
            "{text:#?}"
        );
        let json = zstore(dir, backend, &["--json", "inspect"]).ok().json();
        assert_eq!(json["latest_version"], 5);
        assert_eq!(json["persistent"], true);
        assert!(json["disk_bytes"].as_u64().unwrap() > 0);
        let details: Vec<String> = json["backend_details"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d[0].as_str().unwrap().to_owned())
            .collect();
        let expected = if backend == "fjall" {
            "journal_count"
        } else {
            "users.tree_height"
        };
        assert!(details.iter().any(|d| d == expected), "{details:?}");

        let json = zstore(dir, backend, &["--json", "compact"]).ok().json();
        assert_eq!(json["backend_compacted"], true, "{json}");
        // alice's first value, carol's value and deletion marker.
        assert_eq!(json["gc"]["versions_removed"], 2, "{json}");
        assert_eq!(json["gc"]["tombstones_removed"], 1, "{json}");
        let json = zstore(dir, backend, &["--json", "inspect"]).ok().json();
        let u = users(&json, "collections");
        assert_eq!(
            (u["live_keys"].clone(), u["versions"].clone()),
            (2.into(), 2.into())
        );
        let got = zstore(dir, backend, &["get", "users", "alice"]).ok();
        assert_eq!(got.stdout, "PAYLOAD-OF-ALICE\n");
        let text = zstore(dir, backend, &["compact"]).ok();
        assert!(
            text.stdout.contains("backend compaction: done"),
            "{text:#?}"
        );
        zstore(dir, backend, &["verify"]).ok();
    }
}

#[test]
fn verbs_run_on_the_empty_memory_store() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let json = zstore(dir, "memory", &["--json", "verify"]).ok().json();
    assert_eq!(json["clean"], true);
    assert_eq!(json["report"]["backend_check"], Value::Null);
    let text = zstore(dir, "memory", &["verify"]).ok();
    assert!(text.stderr.contains("starts empty"), "{text:#?}");
    let json = zstore(dir, "memory", &["--json", "inspect"]).ok().json();
    assert_eq!(json["backend"], "memory");
    assert_eq!(json["persistent"], false);
    assert_eq!(json["disk_bytes"], Value::Null);
    let json = zstore(dir, "memory", &["--json", "compact"]).ok().json();
    assert_eq!(json["backend_compacted"], false);
}

#[test]
fn verify_fails_and_names_a_flipped_byte_in_a_redb_file() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    fill(dir, "redb");
    // Flip one byte of alice's stored value inside the file, the way a bad disk would.
    let file = dir.join("data").join("zcore.redb");
    let mut bytes = std::fs::read(&file).unwrap();
    let needle = b"PAYLOAD-OF-ALICE";
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("the value is stored verbatim");
    bytes[at + 3] ^= 0x20;
    std::fs::write(&file, &bytes).unwrap();

    let out = zstore(dir, "redb", &["verify"]).fails(
        1,
        &[
            "verify found",
            "collection `users`",
            "key 0x616c696365",
            "version 2",
            "checksum",
        ],
    );
    assert!(
        out.stdout
            .contains("collection users key 0x616c696365 version 2"),
        "{out:#?}"
    );
    let json = zstore(dir, "redb", &["--json", "verify"]);
    assert_eq!(json.code, Some(1));
    let json = json.json();
    assert_eq!(json["clean"], false);
    let problems = json["report"]["problems"].as_array().unwrap();
    assert!(
        problems
            .iter()
            .any(|p| p["collection"] == "users" && p["key"] == "616c696365" && p["version"] == 2),
        "{problems:?}"
    );
    // Reads refuse the damaged value: never the flipped bytes.
    zstore(dir, "redb", &["get", "users", "alice"]).fails(1, &["corrupted", "users"]);
    zstore(dir, "redb", &["get", "users", "bob"]).ok();
}

#[test]
fn verify_fails_and_names_a_damaged_version_in_a_fjall_store() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    fill(dir, "fjall");
    // fjall compresses and checksums its blocks, so damage one stored version through the
    // backend itself: bob's value at version 3 gets a flipped payload byte.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let backend = FjallBackend::open(
            dir.join("data").join("zcore.fjall"),
            &FjallOptions::default(),
        )
        .unwrap();
        let c = CollectionName::new("users").unwrap();
        let key = EncodedKey::encode(b"bob").at(3).into_bytes();
        let mut value = backend.get(&c, &key).await.unwrap().unwrap();
        *value.last_mut().unwrap() ^= 0x01;
        let mut batch = WriteBatch::new();
        batch.put(&c, key, value);
        backend.write(batch, Durability::Synced).await.unwrap();
        backend.close().await.unwrap();
    });
    zstore(dir, "fjall", &["verify"])
        .fails(1, &["collection `users`", "key 0x626f62", "version 3"]);
    zstore(dir, "fjall", &["get", "users", "bob"]).fails(1, &["corrupted"]);
}

#[test]
fn compact_refuses_while_a_redb_savepoint_exists() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    fill(dir, "redb");
    let file = dir.join("data").join("zcore.redb");
    {
        let db = redb::Database::open(&file).unwrap();
        let txn = db.begin_write().unwrap();
        txn.persistent_savepoint().unwrap();
        txn.commit().unwrap();
    }
    zstore(dir, "redb", &["compact"]).fails(1, &["compact", "savepoint"]);
    // Nothing was lost by the refusal.
    zstore(dir, "redb", &["verify"]).ok();
    let got = zstore(dir, "redb", &["get", "users", "bob"]).ok();
    assert_eq!(got.stdout, "b\n");
}
