//! End-to-end `zstore dump` / `zstore load` through the real binary: fjall → redb (jsonl) and
//! redb → fjall (binary, via stdout and stdin), refusal of a non-empty target, `--overwrite`,
//! and a truncated file that writes nothing.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

const ZDB_VARS: [&str; 8] = [
    "ZDB_CONFIG",
    "ZDB_BACKEND",
    "ZDB_DATA",
    "ZDB_PATH",
    "ZDB_CACHE_SIZE",
    "ZDB_ENCRYPTION_KEY_FILE",
    "ZDB_ENCRYPTION_KEY_ENV",
    "RUST_LOG",
];

struct Out {
    code: Option<i32>,
    stdout: Vec<u8>,
    stderr: String,
}

fn zstore(dir: &Path, args: &[&str], stdin: Option<&[u8]>) -> Out {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_zstore"));
    cmd.current_dir(dir).args(args);
    for v in ZDB_VARS {
        cmd.env_remove(v);
    }
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    Out {
        code: out.status.code(),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[track_caller]
fn ok(out: Out) -> Out {
    assert_eq!(out.code, Some(0), "stderr: {}", out.stderr);
    out
}

fn scan(dir: &Path, store: &[&str], collection: &str) -> String {
    let mut args = store.to_vec();
    args.extend(["--hex", "scan", collection]);
    String::from_utf8(ok(zstore(dir, &args, None)).stdout).unwrap()
}

#[test]
fn dump_from_fjall_loads_into_redb_and_back() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let fjall = ["--backend", "fjall", "--path", "src.fjall"];
    let redb = ["--backend", "redb", "--path", "dst.redb"];
    for (c, k, v) in [
        ("users", "6b31", "7631"),
        ("users", "6b32", "00ff0a22"),
        ("users", "00", ""),
        ("other", "ff", "0102"),
    ] {
        let mut args = fjall.to_vec();
        args.extend(["--hex", "put", c, k]);
        if v.is_empty() {
            // An empty value: through a file.
            std::fs::write(d.join("empty"), b"").unwrap();
            args.extend(["--value-file", "empty"]);
        } else {
            args.push(v);
        }
        ok(zstore(d, &args, None));
    }
    let mut args = fjall.to_vec();
    args.extend(["dump", "--output", "all.jsonl"]);
    let out = ok(zstore(d, &args, None));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("dumped 4 rows of 2 collections"), "{text}");
    let dumped = std::fs::read_to_string(d.join("all.jsonl")).unwrap();
    assert!(
        dumped.starts_with("{\"zcore_dump\":1,\"encoding\":\"hex\",\"source_backend\":\"fjall\"")
    );
    assert!(
        dumped.contains(r#"{"collection":"users","key":"6b32","value":"00ff0a22"}"#),
        "{dumped}"
    );

    let mut args = redb.to_vec();
    args.extend(["load", "all.jsonl"]);
    let out = ok(zstore(d, &args, None));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("loaded 4 rows into 2 collections"), "{text}");
    for c in ["users", "other"] {
        assert_eq!(scan(d, &fjall, c), scan(d, &redb, c), "collection {c}");
    }
    assert_eq!(scan(d, &redb, "users").lines().count(), 3);

    // A second load into the now non-empty target is refused (exit 2) and changes nothing.
    let mut args = redb.to_vec();
    args.extend(["load", "all.jsonl"]);
    let out = zstore(d, &args, None);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains("not empty") && out.stderr.contains("--overwrite"),
        "{}",
        out.stderr
    );

    // Binary through a pipe: redb dump on stdout → fjall (new store) load from stdin.
    let mut args = redb.to_vec();
    args.extend(["dump", "--format", "binary", "--collection", "users"]);
    let binary = ok(zstore(d, &args, None)).stdout;
    assert_eq!(&binary[..4], b"ZCDP");
    let fresh = ["--backend", "fjall", "--path", "fresh.fjall"];
    let mut args = fresh.to_vec();
    args.extend(["--json", "load", "-"]);
    let out = ok(zstore(d, &args, Some(&binary)));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["rows"], 3);
    assert_eq!(report["source_backend"], "redb");
    assert_eq!(scan(d, &fresh, "users"), scan(d, &fjall, "users"));

    // --overwrite replaces: change the source, reload into redb.
    let mut args = fjall.to_vec();
    args.extend(["--hex", "delete", "users", "6b31"]);
    ok(zstore(d, &args, None));
    let mut args = fjall.to_vec();
    args.extend(["dump", "--format", "binary", "--output", "v2.bin"]);
    ok(zstore(d, &args, None));
    let mut args = redb.to_vec();
    args.extend(["load", "--overwrite", "v2.bin"]);
    let text = String::from_utf8(ok(zstore(d, &args, None)).stdout).unwrap();
    assert!(text.contains("(replaced)"), "{text}");
    assert_eq!(scan(d, &redb, "users"), scan(d, &fjall, "users"));
    assert_eq!(scan(d, &redb, "users").lines().count(), 2);
}

#[test]
fn a_truncated_file_is_refused_with_its_location_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let src = ["--backend", "redb", "--path", "src.redb"];
    for i in 0..20 {
        let mut args = src.to_vec();
        let key = format!("k{i:02}");
        args.extend(["put", "c", &key, "value"]);
        ok(zstore(d, &args, None));
    }
    let mut args = src.to_vec();
    args.extend(["dump", "--output", "c.jsonl"]);
    ok(zstore(d, &args, None));
    let full = std::fs::read(d.join("c.jsonl")).unwrap();
    // Cut in the middle of line 15.
    let cut = full
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .nth(13)
        .map(|(i, _)| i + 10)
        .unwrap();
    std::fs::write(d.join("cut.jsonl"), &full[..cut]).unwrap();
    let dst = ["--backend", "fjall", "--path", "dst.fjall"];
    let mut args = dst.to_vec();
    args.extend(["load", "--batch-rows", "5", "cut.jsonl"]);
    let out = zstore(d, &args, None);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains("cut.jsonl") && out.stderr.contains("line 15"),
        "{}",
        out.stderr
    );
    let mut args = dst.to_vec();
    args.push("collections");
    let listed = String::from_utf8(ok(zstore(d, &args, None)).stdout).unwrap();
    assert!(listed.trim().is_empty(), "nothing was written: {listed}");
}

#[test]
fn stats_separates_store_figures_from_this_process_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let store = ["--backend", "redb", "--path", "s.redb"];
    let mut args = store.to_vec();
    args.extend(["put", "c", "k", "v"]);
    ok(zstore(d, &args, None));
    let mut args = store.to_vec();
    args.push("stats");
    let text = String::from_utf8(ok(zstore(d, &args, None)).stdout).unwrap();
    assert!(text.contains("latest_version: 1"), "{text}");
    assert!(text.contains("metrics of this process"), "{text}");
    // Every documented metric is listed; this process committed nothing.
    for (name, ..) in zcore_engine::metrics::ALL {
        assert!(
            text.contains(&format!("metric {name}")),
            "{name} missing: {text}"
        );
    }
    assert!(
        text.contains("metric zcore_commits_total: 0 (count)"),
        "{text}"
    );
    assert!(
        text.contains("detail sync_requests: 0 (this process)"),
        "{text}"
    );
    let mut args = store.to_vec();
    args.extend(["--json", "stats"]);
    let out = ok(zstore(d, &args, None));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["latest_version"], 1);
    assert!(report["process_metrics"].is_array(), "{report}");
}

/// Both disk backends report their cache: hits and misses as store details (this process's
/// reads since open) and as the labelled cache metrics.
#[test]
fn stats_report_backend_cache_hits_and_misses() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (backend, path, hits, misses) in [
        ("redb", "s.redb", "cache_read_hits", "cache_read_misses"),
        ("fjall", "s.fjall", "block_cache_hits", "block_cache_misses"),
    ] {
        let store = ["--backend", backend, "--path", path];
        for i in 0..50 {
            let mut args = store.to_vec();
            let key = format!("k{i}");
            args.extend(["put", "c", &key, "v"]);
            ok(zstore(d, &args, None));
        }
        let mut args = store.to_vec();
        args.extend(["--json", "stats"]);
        let out = ok(zstore(d, &args, None));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let detail = |name: &str| {
            report["details"]
                .as_array()
                .and_then(|details| {
                    details
                        .iter()
                        .find(|pair| pair[0] == name)
                        .and_then(|pair| pair[1].as_u64())
                })
                .unwrap_or_else(|| panic!("{backend}: no detail {name}: {report}"))
        };
        // Opening the store and reading its metadata already went through the cache.
        assert!(
            detail(hits) + detail(misses) > 0,
            "{backend}: no cache activity: {report}"
        );
        let metric = |name: &str| {
            report["process_metrics"]
                .as_array()
                .and_then(|samples| {
                    samples.iter().find(|s| {
                        s["name"] == name
                            && s["labels"][0][0] == "backend"
                            && s["labels"][0][1] == backend
                    })
                })
                .and_then(|s| s["value"].as_u64())
                .unwrap_or_else(|| panic!("{backend}: no metric {name}: {report}"))
        };
        let (metric_hits, metric_misses) = (
            metric(zcore_engine::metrics::CACHE_HITS),
            metric(zcore_engine::metrics::CACHE_MISSES),
        );
        // The metric was published from the same counters when the stats were read.
        assert_eq!(
            (metric_hits, metric_misses),
            (detail(hits), detail(misses)),
            "{backend}: {report}"
        );
    }
}

/// An encrypted store dumps with its key (the dump itself is plaintext) and loads into a plain
/// store; without the key the dump is refused.
#[test]
fn encrypted_store_dumps_with_its_key_only() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("k.key"), "3".repeat(64)).unwrap();
    let enc = [
        "--backend",
        "fjall",
        "--path",
        "enc.fjall",
        "--key-file",
        "k.key",
    ];
    let mut args = enc.to_vec();
    args.extend(["put", "c", "k", "secret"]);
    ok(zstore(d, &args, None));
    let out = zstore(
        d,
        &["--backend", "fjall", "--path", "enc.fjall", "dump"],
        None,
    );
    assert_ne!(out.code, Some(0), "dumped without the key: {}", out.stderr);
    let mut args = enc.to_vec();
    args.extend(["dump", "--output", "c.jsonl"]);
    ok(zstore(d, &args, None));
    let text = std::fs::read_to_string(d.join("c.jsonl")).unwrap();
    assert!(text.contains(r#""value":"736563726574""#), "{text}");
    let plain = ["--backend", "redb", "--path", "plain.redb"];
    let mut args = plain.to_vec();
    args.extend(["load", "c.jsonl"]);
    ok(zstore(d, &args, None));
    assert_eq!(scan(d, &plain, "c"), scan(d, &enc, "c"));
}
