//! `zstore` on an encrypted store: keys from a file, `--key-file` or a variable, rotation,
//! `zstore rekey`, refusals of missing, wrong and malformed keys, and encrypted backups.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

const K1: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const K2: &str = "2222222222222222222222222222222222222222222222222222222222222222";
const K9: &str = "9999999999999999999999999999999999999999999999999999999999999999";

#[derive(Debug)]
struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn zstore(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Out {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_zstore"));
    cmd.current_dir(dir).args(["--backend", "fjall"]);
    if !args.contains(&"--path") {
        cmd.args(["--path", "store"]);
    }
    cmd.args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("ZDB_") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    Out {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[track_caller]
fn ok(out: Out) -> Out {
    assert_eq!(out.code, Some(0), "{out:?}");
    out
}

#[track_caller]
fn fails(out: &Out, code: i32, needles: &[&str]) {
    assert_eq!(out.code, Some(code), "{out:?}");
    for n in needles {
        assert!(out.stderr.contains(n), "stderr lacks {n:?}: {}", out.stderr);
    }
    for secret in [K1, K2, K9] {
        assert!(
            !out.stderr.contains(secret) && !out.stdout.contains(secret),
            "key leaked: {out:?}"
        );
    }
}

#[test]
fn rotate_rekey_and_refusals() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::write(d.join("k1"), format!("{K1}\n")).unwrap();
    std::fs::write(d.join("k12"), format!("# old and new\n1:{K1}\n2:{K2}\n")).unwrap();
    std::fs::write(d.join("k2"), format!("2:{K2}\n")).unwrap();
    std::fs::write(d.join("k9"), format!("1:{K1}\n2:{K9}\n")).unwrap();
    std::fs::write(d.join("short"), &K1[..60]).unwrap();

    ok(zstore(
        d,
        &[],
        &["--key-file", "k1", "put", "users", "alice", "secret-alice"],
    ));
    let plain = ok(zstore(
        d,
        &[],
        &["--key-file", "k1", "get", "users", "alice"],
    ));
    assert_eq!(plain.stdout.trim(), "secret-alice");

    fails(
        &zstore(d, &[], &["get", "users", "alice"]),
        1,
        &["encrypted", "no encryption key"],
    );
    fails(
        &zstore(d, &[], &["--key-file", "short", "get", "users", "alice"]),
        2,
        &["encryption.key_file", "expected 64 hex digits"],
    );

    // Rotate: key 2 added (via the environment), new writes use it, old values read.
    let env12 = [("ZDB_ENCRYPTION_KEY_FILE", "k12")];
    ok(zstore(d, &env12, &["put", "users", "bob", "secret-bob"]));
    assert_eq!(
        ok(zstore(d, &env12, &["get", "users", "alice"]))
            .stdout
            .trim(),
        "secret-alice"
    );

    // Key 1 cannot be dropped before a rekey; a wrong key 2 is refused.
    fails(
        &zstore(d, &[], &["--key-file", "k2", "get", "users", "bob"]),
        1,
        &["key id 1", "rekey"],
    );
    fails(
        &zstore(d, &[], &["--key-file", "k9", "get", "users", "bob"]),
        1,
        &["wrong encryption key"],
    );

    fails(
        &zstore(d, &[], &["rekey"]),
        2,
        &["rekey needs the store's keys"],
    );
    let report = ok(zstore(d, &env12, &["--json", "rekey", "--batch", "1"]));
    let json: serde_json::Value = serde_json::from_str(report.stdout.trim()).unwrap();
    assert_eq!(json["rekey"]["key_id"], 2);
    assert_eq!(json["rekey"]["retired_key_ids"], serde_json::json!([1]));
    assert_eq!(json["rekey"]["rewritten"], 1, "{json}");

    // Key 1 gone: everything reads; the key can also come from a variable named by
    // ZDB_ENCRYPTION_KEY_ENV.
    let k2_hex = format!("2:{K2}");
    let env2 = [
        ("ZDB_ENCRYPTION_KEY_ENV", "MY_ZCORE_KEY"),
        ("MY_ZCORE_KEY", k2_hex.as_str()),
    ];
    assert_eq!(
        ok(zstore(d, &env2, &["get", "users", "alice"]))
            .stdout
            .trim(),
        "secret-alice"
    );
    assert_eq!(
        ok(zstore(d, &env2, &["get", "users", "bob"])).stdout.trim(),
        "secret-bob"
    );
    let check = ok(zstore(d, &env2, &["config", "check"]));
    assert!(check.stdout.contains("encryption.key_env"), "{check:?}");
    assert!(!check.stdout.contains(K2), "{check:?}");

    // Encrypted backups: need the key to verify and restore.
    ok(zstore(d, &env2, &["backup", "create", "bk"]));
    fails(
        &zstore(d, &[], &["backup", "verify", "bk"]),
        2,
        &["encrypted with key id 2"],
    );
    ok(zstore(d, &env2, &["backup", "verify", "bk"]));
    let restore =
        |env: &[(&str, &str)]| zstore(d, env, &["--path", "restored", "backup", "restore", "bk"]);
    fails(&restore(&[]), 2, &["encrypted with key id 2"]);
    ok(restore(&env2));
    let got = ok(zstore(
        d,
        &env2,
        &["--path", "restored", "get", "users", "bob"],
    ));
    assert_eq!(got.stdout.trim(), "secret-bob");
    // Nothing readable on disk.
    for entry in walk(&d.join("store"))
        .into_iter()
        .chain(walk(&d.join("bk")))
    {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !bytes.windows(7).any(|w| w == b"secret-"),
            "plaintext in {}",
            entry.display()
        );
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
