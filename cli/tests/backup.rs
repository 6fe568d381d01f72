//! End-to-end tests of `zstore backup …`, running the real binary in a temporary directory
//! with the `ZDB_*` variables cleared.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const ZDB_VARS: [&str; 6] = [
    "ZDB_CONFIG",
    "ZDB_BACKEND",
    "ZDB_DATA",
    "ZDB_PATH",
    "ZDB_CACHE_SIZE",
    "RUST_LOG",
];

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

/// Runs `zstore --backend BACKEND --data-dir DATA ARGS…` in `dir`.
fn zstore(dir: &Path, backend: &str, data: &str, args: &[&str]) -> Outcome {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_zstore"));
    cmd.current_dir(dir);
    for v in ZDB_VARS {
        cmd.env_remove(v);
    }
    cmd.args(["--backend", backend, "--data-dir", data]);
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

fn chunk_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("chunk-")
        })
        .collect();
    v.sort();
    v
}

#[test]
fn create_inspect_verify_and_restore_a_chain_across_backends() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let src = |args: &[&str]| zstore(dir, "fjall", "src", args);
    for i in 0..20 {
        src(&["put", "users", &format!("u{i:02}"), &format!("first {i}")]).ok();
    }
    let full = src(&["--json", "backup", "create", "full"]).ok().json();
    let v1 = full["version"].as_u64().unwrap();
    assert_eq!(
        full["kind"],
        serde_json::json!({"full": {"history": false}})
    );
    assert_eq!(full["source_backend"], "fjall");
    assert_eq!(full["collections"][0]["name"], "users");
    assert_eq!(full["collections"][0]["live_keys"], 20);
    assert!(
        full["digest"].as_str().unwrap().len() == 64,
        "digests are hex in JSON"
    );

    src(&["put", "users", "u03", "second"]).ok();
    src(&["delete", "users", "u04"]).ok();
    src(&["put", "orders", "o1", "x"]).ok();
    let text = src(&["backup", "create", "incr", "--incremental-from", "full"]).ok();
    assert!(
        text.stdout.contains("incremental backup of version"),
        "{}",
        text.stdout
    );
    assert!(
        text.stderr.is_empty(),
        "no progress bar without a terminal: {}",
        text.stderr
    );

    let inspect = src(&["backup", "inspect", "incr"]).ok();
    assert!(
        inspect.stdout.contains("kind        incremental"),
        "{}",
        inspect.stdout
    );
    assert!(inspect.stdout.contains(&format!("versions    {v1}..=")));
    let inspect = src(&["--json", "backup", "inspect", "incr"]).ok().json();
    assert_eq!(inspect["parent"]["digest"], full["digest"]);
    let head = inspect["version"].as_u64().unwrap();

    let verify = src(&["backup", "verify", "incr"]).ok();
    assert!(
        verify.stdout.starts_with("ok: 2 backups"),
        "{}",
        verify.stdout
    );
    assert!(
        verify
            .stdout
            .contains(&format!("restorable versions {v1}..={head}"))
    );
    let verify = src(&["--json", "backup", "verify", "incr"]).ok().json();
    assert_eq!(verify["ok"], true);

    // Into redb, at the head.
    let dst = |args: &[&str]| zstore(dir, "redb", "dst", args);
    let restored = dst(&["--json", "backup", "restore", "incr"]).ok().json();
    assert_eq!(restored["as_of"], head);
    assert_eq!(restored["latest_version"], head);
    assert_eq!(dst(&["get", "users", "u03"]).ok().stdout, "second\n");
    dst(&["get", "users", "u04"]).fails(3, &[]);
    assert_eq!(dst(&["get", "orders", "o1"]).ok().stdout, "x\n");

    // Into memory-free fjall, as of the full backup's version.
    let old = |args: &[&str]| zstore(dir, "fjall", "old", args);
    let text = old(&["backup", "restore", "incr", "--as-of", &v1.to_string()]).ok();
    assert!(
        text.stdout.starts_with(&format!("restored version {v1}")),
        "{}",
        text.stdout
    );
    assert_eq!(old(&["get", "users", "u03"]).ok().stdout, "first 3\n");
    assert_eq!(old(&["get", "users", "u04"]).ok().stdout, "first 4\n");
    old(&["get", "orders", "o1"]).fails(3, &[]);
    // New writes on a restored store continue above the restored version.
    old(&["put", "users", "new", "v"]).ok();

    // A non-empty target is refused and left alone.
    dst(&["backup", "restore", "full"])
        .fails(2, &["target empty", "restore only into an empty store"]);
    assert_eq!(dst(&["get", "users", "u03"]).ok().stdout, "second\n");
    // As-of outside the chain.
    zstore(
        dir,
        "redb",
        "dst2",
        &["backup", "restore", "incr", "--as-of", "1"],
    )
    .fails(2, &["as-of version in range"]);
    // A backup goes into a new or empty directory.
    src(&["backup", "create", "full"]).fails(2, &["directory"]);
}

#[test]
fn damaged_backups_are_reported_with_the_file_and_the_check() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    for i in 0..50 {
        zstore(
            dir,
            "redb",
            "src",
            &["put", "c", &format!("k{i}"), &"v".repeat(i)],
        )
        .ok();
    }
    let meta = zstore(
        dir,
        "redb",
        "src",
        &["--json", "backup", "create", "b", "--no-compress"],
    )
    .ok()
    .json();
    assert!(
        meta["chunks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["compression"] == "none")
    );
    let chunk = chunk_files(&dir.join("b")).remove(0);
    let mut bytes = std::fs::read(&chunk).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    std::fs::write(&chunk, bytes).unwrap();
    let name = chunk.file_name().unwrap().to_str().unwrap().to_owned();
    zstore(dir, "redb", "x", &["backup", "verify", "b"]).fails(1, &[&name, "chunk crc32c"]);
    zstore(dir, "fjall", "t", &["backup", "restore", "b"]).fails(1, &[&name, "chunk crc32c"]);
    // Nothing was written: the target store is still empty.
    let listed = zstore(dir, "fjall", "t", &["--json", "collections"])
        .ok()
        .json();
    assert_eq!(listed["collections"], serde_json::json!([]));

    std::fs::write(dir.join("b").join("manifest"), b"ZCBK garbage").unwrap();
    zstore(dir, "redb", "x", &["backup", "inspect", "b"]).fails(1, &["manifest", "frame"]);
    zstore(dir, "redb", "x", &["backup", "verify", "missing"]).fails(2, &["missing", "directory"]);
}
