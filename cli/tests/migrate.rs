//! `zstore migrate` end to end: a redb file with typed tables, written by this test the way
//! another program would, imported into fjall by the real binary; then checked with `zstore
//! scan`, verified again, rerun, dry-run, and a store-to-store `--history` copy.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use redb::{Database, MultimapTableDefinition, TableDefinition, TypeName, Value};
use serde_json::Value as Json;

#[derive(Debug)]
struct Opaque;

impl Value for Opaque {
    type SelfType<'a> = &'a [u8];
    type AsBytes<'a> = &'a [u8];
    fn fixed_width() -> Option<usize> {
        None
    }
    fn from_bytes<'a>(data: &'a [u8]) -> &'a [u8]
    where
        Self: 'a,
    {
        data
    }
    fn as_bytes<'a, 'b: 'a>(value: &'a &'b [u8]) -> &'a [u8]
    where
        Self: 'b,
    {
        value
    }
    fn type_name() -> TypeName {
        TypeName::new("otherapp::Opaque")
    }
}

fn zstore(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_zstore"))
        .current_dir(dir)
        .args(args)
        .env_remove("ZDB_CONFIG")
        .env_remove("ZDB_BACKEND")
        .env_remove("ZDB_DATA")
        .env_remove("ZDB_PATH")
        .output()
        .expect("run zstore");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr,
    )
}

fn write_app_file(path: &Path) {
    let db = Database::create(path).unwrap();
    let tx = db.begin_write().unwrap();
    {
        let mut t = tx
            .open_table(TableDefinition::<i64, &str>::new("ledger"))
            .unwrap();
        for i in -50i64..50 {
            t.insert(i * 1_000_003, format!("entry {i}").as_str())
                .unwrap();
        }
        let mut t = tx
            .open_table(TableDefinition::<(&str, u32), Option<u64>>::new("index"))
            .unwrap();
        for i in 0..30u32 {
            t.insert(
                (["b", "a", "ab", "a\0"][(i % 4) as usize], i),
                (i % 2 == 0).then_some(u64::from(i)),
            )
            .unwrap();
        }
        let mut t = tx
            .open_multimap_table(MultimapTableDefinition::<&str, u8>::new("tags"))
            .unwrap();
        t.insert("x", 3).unwrap();
        t.insert("x", 1).unwrap();
        t.insert("", 9).unwrap();
        let mut t = tx
            .open_table(TableDefinition::<u32, Opaque>::new("blobs"))
            .unwrap();
        t.insert(1, b"?".as_slice()).unwrap();
    }
    tx.commit().unwrap();
}

#[test]
fn imports_a_typed_redb_file_into_fjall() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_app_file(&d.join("app.redb"));

    // A user-defined type stops the run, naming the table and its types.
    let (code, _, err) = zstore(
        d,
        &[
            "migrate",
            "--from",
            "redb-file:app.redb",
            "--to",
            "fjall:store",
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("\"blobs\"")
            && err.contains("otherapp::Opaque")
            && err.contains("--skip-unknown"),
        "{err}"
    );

    let (code, out, err) = zstore(
        d,
        &[
            "--json",
            "migrate",
            "--from",
            "redb-file:app.redb",
            "--to",
            "fjall:store",
            "--skip-unknown",
            "--batch-rows",
            "7",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let report: Json = serde_json::from_str(&out).unwrap();
    assert_eq!(report["ok"], true);
    assert_eq!(report["verified"], true);
    assert_eq!(report["skipped"][0]["table"], "blobs");
    let ledger = report["collections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["collection"] == "ledger")
        .unwrap();
    assert_eq!(ledger["key_type"], "i64");
    assert_eq!(ledger["copied_rows"], 100);
    assert_eq!(ledger["matches"], true);

    // Scan order is redb's order: negative keys first.
    let (code, out, err) = zstore(
        d,
        &[
            "--backend",
            "fjall",
            "--path",
            "store",
            "--hex",
            "scan",
            "ledger",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let keys: Vec<i64> = out
        .lines()
        .map(|l| {
            let hex = l.split('\t').next().unwrap();
            let mut b = [0u8; 8];
            for (i, byte) in b.iter_mut().enumerate() {
                *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
            }
            b[0] ^= 0x80;
            i64::from_be_bytes(b)
        })
        .collect();
    let expected: Vec<i64> = (-50i64..50).map(|i| i * 1_000_003).collect();
    assert_eq!(keys, expected);

    // Verify again; rerun; dry run.
    let (code, out, err) = zstore(
        d,
        &[
            "migrate",
            "--from",
            "redb-file:app.redb",
            "--to",
            "fjall:store",
            "--verify-only",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("verified: every collection matches"), "{out}");
    let (code, out, _) = zstore(
        d,
        &[
            "migrate",
            "--from",
            "redb-file:app.redb",
            "--to",
            "fjall:store",
            "--skip-unknown",
        ],
    );
    assert_eq!(code, 0);
    assert!(out.contains("already complete"), "{out}");
    let (code, out, _) = zstore(
        d,
        &[
            "migrate",
            "--from",
            "redb-file:app.redb",
            "--dry-run",
            "--skip-unknown",
        ],
    );
    assert_eq!(code, 0);
    assert!(
        out.contains("(&str,u32) -> Option<u64>") && out.contains("skipped table \"blobs\""),
        "{out}"
    );

    // Store to store, every version.
    let (code, _, err) = zstore(
        d,
        &[
            "migrate",
            "--from",
            "fjall:store",
            "--to",
            "redb:copy.redb",
            "--history",
            "-q",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let (code, out, _) = zstore(
        d,
        &["--backend", "redb", "--path", "copy.redb", "collections"],
    );
    assert_eq!(code, 0);
    assert_eq!(out.lines().collect::<Vec<_>>(), ["index", "ledger", "tags"]);

    // Bad arguments.
    let (code, _, err) = zstore(d, &["migrate", "--from", "rocks:x", "--to", "fjall:y"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = zstore(
        d,
        &["migrate", "--from", "fjall:missing", "--to", "fjall:y"],
    );
    assert_eq!(code, 3, "{err}");
}
