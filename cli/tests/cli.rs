//! End-to-end tests of the `zstore` binary: every test runs the real executable in its own
//! temporary directory, with the `ZDB_*` variables cleared so the developer's environment
//! cannot leak in.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;
use tempfile::TempDir;
use zcore_backends::{
    BackendConfig, FjallBackend, FjallOptions, RedbBackend, RedbOptions, open_backend,
};
use zcore_engine::{CollectionName, Durability, Engine, EngineOptions, StorageBackend, WriteBatch};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const ZDB_VARS: [&str; 6] = [
    "ZDB_CONFIG",
    "ZDB_BACKEND",
    "ZDB_DATA",
    "ZDB_PATH",
    "ZDB_CACHE_SIZE",
    "RUST_LOG",
];

/// The outcome of one run of the binary.
#[derive(Debug)]
struct Outcome {
    code: Option<i32>,
    stdout: Vec<u8>,
    stderr: String,
}

impl Outcome {
    fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout_text()))
    }

    #[track_caller]
    fn success(self) -> Self {
        assert_eq!(self.code, Some(0), "expected success: {self:?}");
        self
    }

    /// Asserts a failure with exit code `code` whose stderr mentions every one of `needles`.
    #[track_caller]
    fn failure(self, code: i32, needles: &[&str]) -> Self {
        assert_eq!(self.code, Some(code), "expected exit code {code}: {self:?}");
        for needle in needles {
            assert!(
                self.stderr.contains(needle),
                "stderr lacks {needle:?}: {}",
                self.stderr
            );
        }
        self
    }
}

/// A scratch directory and a way to run `zstore` inside it.
struct Sandbox {
    dir: TempDir,
}

impl Sandbox {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `zstore` with the working directory set to the sandbox and no `ZDB_*` variables.
    fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_zstore"));
        cmd.current_dir(self.path());
        for var in ZDB_VARS {
            cmd.env_remove(var);
        }
        cmd
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path().join(name);
        std::fs::write(&path, text).expect("write file");
        path
    }
}

fn run(mut cmd: Command) -> Outcome {
    let output = cmd.output().expect("run zstore");
    let outcome = Outcome {
        code: output.status.code(),
        stdout: output.stdout,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    assert!(
        !outcome.stderr.contains("panicked"),
        "zstore panicked: {outcome:?}"
    );
    outcome
}

/// How a test picks the backend.
#[derive(Clone, Copy, Debug)]
enum Selection {
    /// `--backend NAME --data-dir DIR`.
    Flag,
    /// `ZDB_BACKEND` and `ZDB_DATA`.
    Env,
    /// A TOML file passed with `--config`.
    File,
}

/// A sandbox where every command runs against one backend chosen one way.
struct Store {
    sandbox: Sandbox,
    backend: &'static str,
    selection: Selection,
    config_file: Option<PathBuf>,
}

impl Store {
    fn new(backend: &'static str, selection: Selection) -> Self {
        let sandbox = Sandbox::new();
        let config_file = matches!(selection, Selection::File).then(|| {
            sandbox.write(
                "zstore.toml",
                &format!("backend = \"{backend}\"\ndata_dir = \"store-data\"\n"),
            )
        });
        Self {
            sandbox,
            backend,
            selection,
            config_file,
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.sandbox.path().join("store-data")
    }

    fn command(&self) -> Command {
        let mut cmd = self.sandbox.command();
        match self.selection {
            Selection::Flag => {
                cmd.arg("--backend")
                    .arg(self.backend)
                    .arg("--data-dir")
                    .arg(self.data_dir());
            }
            Selection::Env => {
                cmd.env("ZDB_BACKEND", self.backend)
                    .env("ZDB_DATA", self.data_dir());
            }
            Selection::File => {
                cmd.arg("--config")
                    .arg(self.config_file.as_ref().expect("config file"));
            }
        }
        cmd
    }

    fn run<I, S>(&self, args: I) -> Outcome
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.command();
        cmd.args(args);
        run(cmd)
    }

    /// The name `config check` shows as the source of `backend`.
    fn expected_backend_source(&self) -> String {
        match self.selection {
            Selection::Flag => "flag --backend".to_owned(),
            Selection::Env => "env ZDB_BACKEND".to_owned(),
            Selection::File => format!(
                "file {}",
                self.config_file.as_ref().expect("config file").display()
            ),
        }
    }
}

fn lines(outcome: &Outcome) -> Vec<String> {
    outcome.stdout_text().lines().map(str::to_owned).collect()
}

/// put/get/delete/scan/collections/stats/config check against a persistent backend.
fn exercise_persistent(backend: &'static str, selection: Selection) {
    let store = Store::new(backend, selection);

    // Writes; each is its own process, so every later read proves persistence. Each is one
    // transaction and reports its commit version on stderr.
    for (version, (k, v)) in [
        ("apple", "1"),
        ("apricot", "2"),
        ("banana", "3"),
        ("cherry", "4"),
        ("date", "5"),
    ]
    .into_iter()
    .enumerate()
    {
        let out = store.run(["put", "fruit", k, v]).success();
        assert!(
            out.stdout.is_empty(),
            "put prints nothing on stdout: {out:?}"
        );
        assert_eq!(
            out.stderr,
            format!("zstore: committed version {}\n", version + 1)
        );
    }
    let expected_store = store.data_dir().join(format!("zcore.{backend}"));
    assert!(
        expected_store.exists(),
        "{} missing",
        expected_store.display()
    );

    assert_eq!(
        store.run(["get", "fruit", "banana"]).success().stdout,
        b"3\n"
    );
    store
        .run(["get", "fruit", "kiwi"])
        .failure(3, &["not found", "\"kiwi\"", "`fruit`"]);

    // Overwrite, then delete (twice: deleting an absent key succeeds).
    store.run(["put", "fruit", "date", "55"]).success();
    assert_eq!(
        store.run(["get", "fruit", "date"]).success().stdout,
        b"55\n"
    );
    let deleted = store.run(["delete", "fruit", "date"]).success();
    assert_eq!(deleted.stderr, "zstore: committed version 7\n");
    // Deleting an absent key succeeds and commits nothing.
    let again = store
        .run(["--json", "delete", "fruit", "date"])
        .success()
        .json();
    assert_eq!(again["existed"], false);
    assert_eq!(again["version"], 7);
    store
        .run(["get", "fruit", "date"])
        .failure(3, &["not found"]);

    // Scans.
    let all = ["apple\t1", "apricot\t2", "banana\t3", "cherry\t4"];
    assert_eq!(lines(&store.run(["scan", "fruit"]).success()), all);
    let mut reversed = all;
    reversed.reverse();
    assert_eq!(
        lines(&store.run(["scan", "fruit", "--reverse"]).success()),
        reversed
    );
    assert_eq!(
        lines(&store.run(["scan", "fruit", "--prefix", "ap"]).success()),
        ["apple\t1", "apricot\t2"]
    );
    assert_eq!(
        lines(
            &store
                .run(["scan", "fruit", "--from", "apricot", "--to", "cherry"])
                .success()
        ),
        ["apricot\t2", "banana\t3"]
    );
    assert_eq!(
        lines(
            &store
                .run([
                    "scan",
                    "fruit",
                    "--from",
                    "apricot",
                    "--to-inclusive",
                    "cherry"
                ])
                .success()
        ),
        ["apricot\t2", "banana\t3", "cherry\t4"]
    );
    assert_eq!(
        lines(&store.run(["scan", "fruit", "--limit", "2"]).success()),
        ["apple\t1", "apricot\t2"]
    );
    assert_eq!(
        lines(
            &store
                .run([
                    "scan",
                    "fruit",
                    "--reverse",
                    "--limit",
                    "2",
                    "--prefix",
                    "a"
                ])
                .success()
        ),
        ["apricot\t2", "apple\t1"]
    );
    assert!(
        store
            .run(["scan", "fruit", "--from", "z"])
            .success()
            .stdout
            .is_empty()
    );

    // JSON.
    let got = store
        .run(["--json", "get", "fruit", "apple"])
        .success()
        .json();
    assert_eq!(got["collection"], "fruit");
    assert_eq!(got["key"]["encoding"], "utf8");
    assert_eq!(got["key"]["data"], "apple");
    assert_eq!(got["value"]["data"], "1");
    assert_eq!(got["version"], 7, "get reports the version it read");
    let scanned = store
        .run(["scan", "fruit", "--json", "--reverse"])
        .success()
        .json();
    let keys: Vec<_> = scanned
        .as_array()
        .expect("array")
        .iter()
        .map(|e| e["key"]["data"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(keys, ["cherry", "banana", "apricot", "apple"]);
    let empty = store
        .run(["scan", "fruit", "--json", "--prefix", "zz"])
        .success()
        .json();
    assert_eq!(empty, serde_json::json!([]));

    // Hex, both directions.
    let put = store
        .run(["--hex", "--json", "put", "bin", "00ff", "deadbeef"])
        .success()
        .json();
    assert_eq!(put["collection_created"], true);
    assert_eq!(put["version"], 8);
    assert_eq!(
        store.run(["--hex", "get", "bin", "00ff"]).success().stdout,
        b"deadbeef\n"
    );
    assert_eq!(
        lines(&store.run(["scan", "bin", "--hex"]).success()),
        ["00ff\tdeadbeef"]
    );
    let binary = store
        .run(["--json", "get", "bin", "--hex", "00ff"])
        .success()
        .json();
    assert_eq!(binary["key"]["encoding"], "hex");
    assert_eq!(binary["value"]["data"], "deadbeef");
    // Without --hex, JSON falls back to hex only for bytes that are not UTF-8.
    let mixed = store.run(["--json", "scan", "bin"]).success().json();
    assert_eq!(mixed[0]["key"]["encoding"], "hex");
    assert_eq!(mixed[0]["key"]["data"], "00ff");
    assert_eq!(
        store
            .run(["--hex", "get", "fruit", "6170706c65"])
            .success()
            .stdout,
        b"31\n"
    );

    // Collections.
    assert_eq!(
        lines(&store.run(["collections"]).success()),
        ["bin", "fruit"]
    );
    let created = store
        .run(["collections", "create", "empty", "--json"])
        .success()
        .json();
    assert_eq!(created["created"], true);
    assert_eq!(
        store
            .run(["collections", "create", "empty"])
            .success()
            .stdout_text(),
        "collection `empty` already exists\n"
    );
    let listed = store
        .run(["--json", "collections", "list"])
        .success()
        .json();
    assert_eq!(
        listed["collections"],
        serde_json::json!(["bin", "empty", "fruit"])
    );
    store.run(["collections", "drop", "bin"]).success();
    store
        .run(["collections", "drop", "bin"])
        .failure(3, &["`bin` does not exist"]);
    store
        .run(["get", "bin", "x"])
        .failure(3, &["collection `bin` does not exist"]);

    // Stats.
    let stats = store.run(["stats"]).success().stdout_text();
    assert!(stats.contains(&format!("backend: {backend}")), "{stats}");
    assert!(stats.contains("latest_version: 8\n"), "{stats}");
    assert!(stats.contains("oldest_readable_version: 0\n"), "{stats}");
    assert!(stats.contains("oldest_active_version: none\n"), "{stats}");
    assert!(stats.contains("active_transactions: 0\n"), "{stats}");
    // fruit: five puts, one overwrite, one delete.
    assert!(
        stats.contains("collection fruit: live_keys=4 versions=7 tombstones=1 backend_entries="),
        "{stats}"
    );
    let stats = store.run(["stats", "--json"]).success().json();
    assert_eq!(stats["backend"], backend);
    assert_eq!(stats["latest_version"], 8);
    assert_eq!(stats["oldest_readable_version"], 0);
    assert_eq!(stats["oldest_active_version"], Value::Null);
    assert_eq!(stats["active_transactions"], 0);
    let fruit = &stats["collections"][1];
    assert_eq!(
        (
            &fruit["live_keys"],
            &fruit["versions"],
            &fruit["tombstones"]
        ),
        (&Value::from(4), &Value::from(7), &Value::from(1)),
        "{stats}"
    );
    let names: Vec<_> = stats["collections"]
        .as_array()
        .expect("collections")
        .iter()
        .map(|c| c["name"].clone())
        .collect();
    assert_eq!(names, [Value::from("empty"), Value::from("fruit")]);
    assert!(stats["disk_bytes"].as_u64().is_some_and(|b| b > 0));

    // Provenance.
    let check = store.run(["config", "check"]).success().stdout_text();
    assert!(
        check.contains(&format!("({})", store.expected_backend_source())),
        "{check}"
    );
    assert!(check.contains("derived from data_dir"), "{check}");
    assert!(check.contains("configuration is valid"), "{check}");
    let check = store.run(["config", "check", "--json"]).success().json();
    assert_eq!(check["valid"], true);
    assert_eq!(check["config"]["backend"], backend);
    assert_eq!(
        check["config"]["path"],
        expected_store.to_string_lossy().as_ref()
    );
}

#[test]
fn fjall_by_flag() {
    exercise_persistent("fjall", Selection::Flag);
}

#[test]
fn fjall_by_env() {
    exercise_persistent("fjall", Selection::Env);
}

#[test]
fn fjall_by_config_file() {
    exercise_persistent("fjall", Selection::File);
}

#[test]
fn redb_by_flag() {
    exercise_persistent("redb", Selection::Flag);
}

#[test]
fn redb_by_env() {
    exercise_persistent("redb", Selection::Env);
}

#[test]
fn redb_by_config_file() {
    exercise_persistent("redb", Selection::File);
}

/// The memory backend starts empty in every process: a put succeeds (with a warning), and the
/// next invocation does not see it.
fn exercise_memory(selection: Selection) {
    let store = Store::new("memory", selection);
    let put = store.run(["put", "c", "k", "v"]).success();
    assert!(
        put.stderr.contains("memory backend discards its data"),
        "{put:?}"
    );
    store.run(["get", "c", "k"]).failure(
        3,
        &[
            "collection `c` does not exist",
            "memory backend starts empty",
        ],
    );
    store.run(["scan", "c"]).failure(3, &["does not exist"]);
    assert!(store.run(["collections"]).success().stdout.is_empty());
    let created = store
        .run(["--json", "collections", "create", "c"])
        .success()
        .json();
    assert_eq!(created["created"], true);
    assert!(
        store
            .run(["stats"])
            .success()
            .stdout_text()
            .contains("backend: memory")
    );
    // Input checks still apply, before anything is opened.
    store
        .run(["put", "c", "", "v"])
        .failure(2, &["the key is empty"]);
    let check = store.run(["config", "check"]).success().stdout_text();
    let backend_line = check
        .lines()
        .find(|l| l.starts_with("backend "))
        .unwrap_or_default();
    assert!(backend_line.contains("= memory "), "{check}");
    assert!(
        backend_line.ends_with(&format!("({})", store.expected_backend_source())),
        "{check}"
    );
    assert!(!check.contains("data_dir"), "{check}");
    assert!(!store.data_dir().exists(), "memory must not create files");
}

#[test]
fn memory_by_flag() {
    exercise_memory(Selection::Flag);
}

#[test]
fn memory_by_env() {
    exercise_memory(Selection::Env);
}

#[test]
fn memory_by_config_file() {
    exercise_memory(Selection::File);
}

#[test]
fn default_store_is_fjall_under_data() {
    let sandbox = Sandbox::new();
    let mut put = sandbox.command();
    put.args(["put", "users", "alice", "1"]);
    run(put).success();
    assert!(sandbox.path().join("data/zcore.fjall").is_dir());
    let mut get = sandbox.command();
    get.args(["get", "users", "alice"]);
    assert_eq!(run(get).success().stdout, b"1\n");
}

#[test]
fn help_for_every_subcommand() {
    let sandbox = Sandbox::new();
    let cases: &[(&[&str], &str)] = &[
        (&["--help"], "Exit codes"),
        (&["help"], "Usage: zstore"),
        (&["config", "--help"], "check"),
        (&["config", "check", "--help"], "where it came from"),
        (&["collections", "--help"], "create"),
        (
            &["collections", "list", "--help"],
            "List the user collections",
        ),
        (&["collections", "list", "--help"], "--all"),
        (&["collections", "create", "--help"], "already exists"),
        (&["collections", "drop", "--help"], "does not exist"),
        (
            &["put", "--help"],
            "creates COLLECTION if it does not exist",
        ),
        (&["get", "--help"], "exit code 3"),
        (&["get", "--help"], "--at-version <VERSION>"),
        (&["scan", "--help"], "--at-version <VERSION>"),
        (&["put", "--help"], "commit version"),
        (&["gc", "--help"], "--retain-versions <N>"),
        (&["--help"], "no longer retained"),
        (&["delete", "--help"], "absent key succeeds"),
        (&["scan", "--help"], "--to-inclusive"),
        (&["stats", "--help"], "statistics"),
    ];
    for (args, needle) in cases {
        let mut cmd = sandbox.command();
        cmd.args(*args);
        let out = run(cmd).success();
        assert!(
            out.stdout_text().contains(needle),
            "{args:?} help lacks {needle:?}: {}",
            out.stdout_text()
        );
    }
    let mut cmd = sandbox.command();
    cmd.arg("--version");
    assert!(run(cmd).success().stdout_text().starts_with("zstore "));
    // No subcommand is a usage error.
    run(sandbox.command()).failure(2, &["Usage"]);
    assert!(!sandbox.path().join("data").exists());
}

fn fjall_store() -> Store {
    Store::new("fjall", Selection::Flag)
}

#[test]
fn empty_key_is_refused() {
    let store = fjall_store();
    for args in [
        &["put", "c", "", "v"][..],
        &["get", "c", ""],
        &["delete", "c", ""],
        &["--hex", "put", "c", "", "00"],
    ] {
        store
            .run(args)
            .failure(2, &["key refused in collection `c`: the key is empty"]);
    }
    // Refused before the store is touched: nothing was created.
    assert!(!store.data_dir().exists());
}

#[test]
fn oversized_key_is_refused() {
    let store = fjall_store();
    // The transaction layer's largest key (32,762 bytes: its versioned encoding must fit the
    // backend's 65,535 even if every byte is 0x00) is accepted, as hex.
    let max_hex = "00".repeat(32_762);
    store.run(["--hex", "put", "c", &max_hex, "01"]).success();
    assert_eq!(
        store.run(["--hex", "get", "c", &max_hex]).success().stdout,
        b"01\n"
    );
    let too_long_hex = "00".repeat(32_763);
    store.run(["--hex", "put", "c", &too_long_hex, "01"]).failure(
        2,
        &["key refused in collection `c`: the key is 32763 bytes long; transactions accept at most 32762"],
    );
    // 65,536 bytes as text (Linux caps one argument at 131,071 bytes).
    let too_long = "a".repeat(65_536);
    store.run(["put", "c", &too_long, "v"]).failure(
        2,
        &["key refused in collection `c`: the key is 65536 bytes long"],
    );
    store
        .run(["get", "c", &too_long])
        .failure(2, &["65536 bytes long"]);
    store
        .run(["delete", "c", &too_long])
        .failure(2, &["65536 bytes long"]);
}

#[test]
fn invalid_collection_names_are_refused() {
    let store = fjall_store();
    store
        .run(["put", "__x", "k", "v"])
        .failure(2, &["invalid collection name \"__x\"", "reserved"]);
    store
        .run(["get", "a/b", "k"])
        .failure(2, &["invalid collection name \"a/b\"", "'/'"]);
    store
        .run(["collections", "create", ""])
        .failure(2, &["the name is empty"]);
    store
        .run(["scan", "-dash"])
        .failure(2, &["unexpected argument"]);
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let non_utf8 = OsStr::from_bytes(b"ab\xffcd");
        let mut cmd = store.command();
        cmd.arg("put").arg(non_utf8).arg("k").arg("v");
        run(cmd).failure(2, &["invalid collection name", "at byte 2 is not allowed"]);
        let mut cmd = store.command();
        cmd.args(["collections", "drop"]).arg(non_utf8);
        run(cmd).failure(2, &["invalid collection name"]);
        // A non-UTF-8 key in text mode points at --hex.
        let mut cmd = store.command();
        cmd.args(["put", "c"]).arg(non_utf8).arg("v");
        run(cmd).failure(2, &["KEY is not valid UTF-8", "--hex"]);
    }
    assert!(!store.data_dir().exists());
}

#[test]
fn unknown_collection_and_missing_key() {
    let store = fjall_store();
    store
        .run(["get", "nope", "k"])
        .failure(3, &["not found: collection `nope` does not exist"]);
    store
        .run(["delete", "nope", "k"])
        .failure(3, &["collection `nope` does not exist"]);
    let out = store
        .run(["scan", "nope", "--json"])
        .failure(3, &["collection `nope` does not exist"]);
    assert!(out.stdout.is_empty(), "{out:?}");
    store.run(["collections", "create", "yes"]).success();
    let out = store
        .run(["--hex", "get", "yes", "ff00"])
        .failure(3, &["not found: key 0xff00 in collection `yes`"]);
    assert!(out.stdout.is_empty());
}

#[test]
fn invalid_hex_is_a_usage_error() {
    let store = fjall_store();
    store
        .run(["--hex", "put", "c", "abc", "00"])
        .failure(2, &["KEY \"abc\" is not valid hex"]);
    store
        .run(["--hex", "put", "c", "00", "zz"])
        .failure(2, &["VALUE \"zz\" is not valid hex"]);
    store
        .run(["--hex", "scan", "c", "--prefix", "g"])
        .failure(2, &["PREFIX \"g\" is not valid hex"]);
}

#[test]
fn bad_scan_arguments_are_usage_errors() {
    let store = fjall_store();
    store
        .run(["scan", "c", "--limit", "0"])
        .failure(2, &["--limit"]);
    store
        .run(["scan", "c", "--prefix", "a", "--from", "b"])
        .failure(2, &["cannot be used with"]);
    store
        .run(["scan", "c", "--to", "a", "--to-inclusive", "b"])
        .failure(2, &["cannot be used with"]);
}

#[test]
fn malformed_config_file() {
    let sandbox = Sandbox::new();
    let file = sandbox.write("bad.toml", "backend = \"fjall\n[fjall\n");
    let mut cmd = sandbox.command();
    cmd.arg("--config").arg(&file).args(["config", "check"]);
    run(cmd).failure(
        2,
        &[
            &format!("invalid config file {}", file.display()),
            "TOML parse error at line 2, column 7",
            "unclosed table",
        ],
    );
}

#[test]
fn unknown_config_field() {
    let sandbox = Sandbox::new();
    let file = sandbox.write(
        "zstore.toml",
        "backend = \"fjall\"\n[fjall]\ncache_size = 1024\n",
    );
    let mut cmd = sandbox.command();
    cmd.arg("--config").arg(&file).args(["put", "c", "k", "v"]);
    run(cmd).failure(
        2,
        &[
            &file.display().to_string(),
            "line 3",
            "unknown field `cache_size`",
            "cache_size_bytes",
        ],
    );
    let top_level = sandbox.write("top.toml", "backend = \"redb\"\ndatadir = \"x\"\n");
    let mut cmd = sandbox.command();
    cmd.env("ZDB_CONFIG", &top_level).args(["stats"]);
    run(cmd).failure(2, &["unknown field `datadir`", "top.toml"]);
    assert!(!sandbox.path().join("data").exists());
}

#[test]
fn missing_config_file() {
    let sandbox = Sandbox::new();
    let mut cmd = sandbox.command();
    cmd.args(["--config", "nope.toml", "stats"]);
    run(cmd).failure(2, &["cannot read config file nope.toml"]);
}

#[test]
fn unknown_backend() {
    let sandbox = Sandbox::new();
    let mut cmd = sandbox.command();
    cmd.args(["--backend", "sled", "stats"]);
    run(cmd).failure(2, &["invalid value 'sled'", "fjall, redb, memory"]);

    let mut cmd = sandbox.command();
    cmd.env("ZDB_BACKEND", "sled").args(["stats"]);
    run(cmd).failure(
        2,
        &[
            "unknown backend \"sled\" (from env ZDB_BACKEND)",
            "fjall, redb, memory",
        ],
    );

    let file = sandbox.write("zstore.toml", "backend = \"sled\"\n");
    let mut cmd = sandbox.command();
    cmd.arg("--config").arg(&file).args(["config", "check"]);
    run(cmd).failure(2, &["unknown variant `sled`", "zstore.toml"]);
}

#[test]
fn invalid_option_values() {
    let sandbox = Sandbox::new();
    let file = sandbox.write("zstore.toml", "[fjall]\nworker_threads = 0\n");
    let mut cmd = sandbox.command();
    cmd.arg("--config").arg(&file).args(["config", "check"]);
    run(cmd).failure(
        2,
        &[
            "fjall.worker_threads = 0 is out of range 1..=64",
            &format!("(from file {})", file.display()),
        ],
    );
    let mut cmd = sandbox.command();
    cmd.env("ZDB_CACHE_SIZE", "huge").args(["config", "check"]);
    run(cmd).failure(2, &["ZDB_CACHE_SIZE", "\"huge\""]);
    let mut cmd = sandbox.command();
    cmd.args(["--cache-size", "lots", "config", "check"]);
    run(cmd).failure(2, &["invalid value 'lots' for '--cache-size <BYTES>'"]);
}

#[test]
fn config_check_shows_every_layer() {
    let sandbox = Sandbox::new();
    let file = sandbox.write(
        "zstore.toml",
        "backend = \"redb\"\ndata_dir = \"from-file\"\n[redb]\ncache_size_bytes = 4096\n",
    );
    let mut cmd = sandbox.command();
    cmd.env("ZDB_CONFIG", &file)
        .env("ZDB_DATA", "/from/env")
        .env("ZDB_CACHE_SIZE", "1MiB")
        .args(["--path", "/from/flag.redb", "config", "check", "--json"]);
    let check = run(cmd).success().json();
    let settings = check["settings"].as_array().expect("settings");
    let find = |name: &str| {
        settings
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("no setting {name}: {check}"))
            .clone()
    };
    let config_file = find("config_file");
    assert_eq!(config_file["source"]["kind"], "env");
    assert_eq!(config_file["source"]["var"], "ZDB_CONFIG");
    let backend = find("backend");
    assert_eq!(backend["value"], "redb");
    assert_eq!(backend["source"]["kind"], "file");
    assert_eq!(backend["source"]["path"], file.to_string_lossy().as_ref());
    assert_eq!(find("data_dir")["source"]["var"], "ZDB_DATA");
    assert_eq!(find("path")["value"], "/from/flag.redb");
    assert_eq!(find("path")["source"]["flag"], "--path");
    assert_eq!(find("redb.cache_size_bytes")["value"], "1048576");
    assert_eq!(
        find("redb.cache_size_bytes")["source"]["var"],
        "ZDB_CACHE_SIZE"
    );
    assert_eq!(check["config"]["redb"]["cache_size_bytes"], 1_048_576);

    // Flags beat the environment; text output names each source.
    let mut cmd = sandbox.command();
    cmd.env("ZDB_BACKEND", "redb").args([
        "--backend",
        "fjall",
        "--cache-size",
        "2MiB",
        "config",
        "check",
    ]);
    let text = run(cmd).success().stdout_text();
    assert!(text.contains("(flag --backend)"), "{text}");
    assert!(text.contains("fjall.cache_size_bytes = 2097152"), "{text}");
    assert!(text.contains("(flag --cache-size)"), "{text}");
    assert!(text.contains("./data/zcore.fjall"), "{text}");
    // config check does not open (or create) the store.
    assert!(!sandbox.path().join("data").exists());
}

#[test]
fn value_file_and_stdin() -> TestResult {
    let store = fjall_store();
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let file = store.sandbox.path().join("value.bin");
    std::fs::write(&file, &big)?;
    let mut cmd = store.command();
    cmd.args(["put", "blobs", "big", "--value-file"]).arg(&file);
    run(cmd).success();
    let got = store.run(["--hex", "get", "blobs", "626967"]).success();
    assert_eq!(got.stdout_text().trim_end(), hex_encode(&big));

    let mut cmd = store.command();
    cmd.args(["put", "blobs", "piped", "--value-file", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    child
        .stdin
        .take()
        .ok_or("no stdin")?
        .write_all(b"from stdin")?;
    let status = child.wait()?;
    assert!(status.success());
    assert_eq!(
        store.run(["get", "blobs", "piped"]).success().stdout,
        b"from stdin\n"
    );
    store
        .run(["put", "blobs", "k", "v", "--value-file", "x"])
        .failure(2, &["cannot be used with"]);
    store.run(["put", "blobs", "k"]).failure(2, &["required"]);
    Ok(())
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn runtime() -> Result<tokio::runtime::Runtime, std::io::Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

fn engine_options() -> EngineOptions {
    EngineOptions {
        gc_interval: None,
        ..EngineOptions::default()
    }
}

/// Fills a fjall store through the library's engine (one transaction), so scans cross many
/// pages.
fn fill_store(path: &Path, entries: u32, value_len: usize) -> TestResult {
    runtime()?.block_on(async {
        let backend = open_backend(&BackendConfig::Fjall {
            path: path.to_path_buf(),
            fjall: FjallOptions::default(),
        })?;
        let engine = Engine::open(backend, engine_options()).await?;
        let big = CollectionName::new("big")?;
        engine.create_collection(&big).await?;
        let mut txn = engine.begin_write();
        for i in 0..entries {
            txn.put(&big, format!("k{i:05}"), vec![b'v'; value_len])?;
        }
        txn.commit().await?;
        engine.close().await?;
        Ok(())
    })
}

#[test]
fn scan_pages_through_large_ranges() -> TestResult {
    let store = fjall_store();
    fill_store(&store.data_dir().join("zcore.fjall"), 2_500, 1)?;
    let all = lines(&store.run(["scan", "big"]).success());
    assert_eq!(all.len(), 2_500);
    assert_eq!(all[0], "k00000\tv");
    assert_eq!(all[2_499], "k02499\tv");
    assert!(all.windows(2).all(|w| w[0] < w[1]));

    let limited = lines(&store.run(["scan", "big", "--limit", "1500"]).success());
    assert_eq!(limited.len(), 1_500);
    assert_eq!(limited[1_499], "k01499\tv");

    let reverse = lines(
        &store
            .run(["scan", "big", "--reverse", "--limit", "1001"])
            .success(),
    );
    assert_eq!(reverse.len(), 1_001);
    assert_eq!(reverse[0], "k02499\tv");
    assert_eq!(reverse[1_000], "k01499\tv");

    let json = store
        .run([
            "scan", "big", "--json", "--from", "k01000", "--to", "k02100",
        ])
        .success()
        .json();
    assert_eq!(json.as_array().map(Vec::len), Some(1_100));
    Ok(())
}

#[test]
fn closed_stdout_is_not_an_error() -> TestResult {
    let store = fjall_store();
    fill_store(&store.data_dir().join("zcore.fjall"), 3_000, 200)?;
    let mut cmd = store.command();
    cmd.args(["scan", "big"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    let mut stdout = child.stdout.take().ok_or("no stdout")?;
    let mut first = [0u8; 16];
    stdout.read_exact(&mut first)?;
    drop(stdout);
    let output = child.wait_with_output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    // The store was closed cleanly and opens again.
    assert_eq!(
        store.run(["get", "big", "k00000"]).success().stdout,
        b"v".repeat(200)
            .into_iter()
            .chain([b'\n'])
            .collect::<Vec<_>>()
    );
    Ok(())
}

#[test]
fn rust_log_debug_shows_fjall_records() {
    let store = fjall_store();
    let mut cmd = store.command();
    cmd.env("RUST_LOG", "debug").args(["put", "c", "k", "v"]);
    let out = run(cmd).success();
    assert!(out.stderr.contains("fjall::"), "{}", out.stderr);
    assert!(out.stderr.contains("DEBUG"), "{}", out.stderr);
    // The default filter is `warn`: a normal run logs nothing.
    let quiet = store.run(["get", "c", "k"]).success();
    assert!(quiet.stderr.is_empty(), "{}", quiet.stderr);
}

#[test]
fn store_locked_by_another_process_is_a_runtime_error() -> TestResult {
    let store = fjall_store();
    store.run(["put", "c", "k", "v"]).success();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let holder = open_backend(&BackendConfig::Fjall {
        path: store.data_dir().join("zcore.fjall"),
        fjall: FjallOptions::default(),
    })?;
    let out = store.run(["get", "c", "k"]);
    runtime.block_on(holder.close())?;
    out.failure(1, &["cannot open fjall store at"]);
    Ok(())
}

/// The commit version a `--json put` or `--json delete` reported.
fn version_of(outcome: Outcome) -> u64 {
    let json = outcome.success().json();
    json["version"]
        .as_u64()
        .unwrap_or_else(|| panic!("no version in {json}"))
}

/// Every put is a new version; `--at-version` reads old ones, across invocations.
fn exercise_time_travel(backend: &'static str) {
    let store = Store::new(backend, Selection::Flag);
    let v1 = version_of(store.run(["--json", "put", "c", "k", "first"]));
    let v2 = version_of(store.run(["--json", "put", "c", "k", "second"]));
    assert!(v2 > v1, "{v1} {v2}");
    store.run(["put", "c", "other", "x"]).success();
    let v_del = version_of(store.run(["--json", "delete", "c", "k"]));

    store.run(["get", "c", "k"]).failure(3, &["not found"]);
    let at = |v: u64| v.to_string();
    assert_eq!(
        store
            .run(["get", "c", "k", "--at-version", &at(v1)])
            .success()
            .stdout,
        b"first\n"
    );
    let json = store
        .run(["--json", "get", "c", "k", "--at-version", &at(v2)])
        .success()
        .json();
    assert_eq!(json["value"]["data"], "second");
    assert_eq!(json["version"], v2);
    store
        .run(["get", "c", "k", "--at-version", &at(v_del)])
        .failure(3, &[&format!("at version {v_del}")]);
    // Before the first commit the collection is empty.
    store
        .run(["get", "c", "k", "--at-version", "0"])
        .failure(3, &["not found"]);
    // Scans travel too.
    assert_eq!(
        lines(&store.run(["scan", "c", "--at-version", &at(v1)]).success()),
        ["k\tfirst"]
    );
    assert_eq!(
        lines(&store.run(["scan", "c", "--reverse"]).success()),
        ["other\tx"]
    );
    assert_eq!(
        lines(
            &store
                .run(["scan", "c", "--reverse", "--at-version", &at(v_del - 1)])
                .success()
        ),
        ["other\tx", "k\tsecond"]
    );

    // Versions that were never committed are refused, with the latest one named.
    let beyond = at(v_del + 1);
    for args in [
        &["get", "c", "k", "--at-version", &beyond][..],
        &["scan", "c", "--at-version", &beyond],
    ] {
        let out = store.run(args).failure(
            2,
            &[&format!(
                "version {beyond} has not been committed yet (the latest version is {v_del})"
            )],
        );
        assert!(out.stdout.is_empty(), "{out:?}");
    }
    store
        .run(["get", "c", "k", "--at-version=-1"])
        .failure(2, &["invalid value '-1' for '--at-version <VERSION>'"]);
}

#[test]
fn time_travel_fjall() {
    exercise_time_travel("fjall");
}

#[test]
fn time_travel_redb() {
    exercise_time_travel("redb");
}

#[test]
fn at_version_on_the_memory_backend() {
    let store = Store::new("memory", Selection::Flag);
    store.run(["get", "c", "k", "--at-version", "1"]).failure(
        2,
        &["version 1 has not been committed yet (the latest version is 0)"],
    );
}

fn collection_stats(stats: &Value, name: &str) -> (u64, u64, u64) {
    let c = stats["collections"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no collection {name}: {stats}"));
    let n = |field: &str| c[field].as_u64().unwrap_or_else(|| panic!("{field}: {c}"));
    (n("live_keys"), n("versions"), n("tombstones"))
}

#[test]
fn gc_removes_superseded_versions() {
    let store = fjall_store();
    let first = version_of(store.run(["--json", "put", "c", "a", "1"]));
    for v in ["2", "3", "4"] {
        store.run(["put", "c", "a", v]).success();
    }
    store.run(["put", "c", "b", "1"]).success();
    store.run(["put", "c", "gone", "1"]).success();
    let latest = version_of(store.run(["--json", "delete", "c", "gone"]));

    let before = store.run(["stats", "--json"]).success().json();
    assert_eq!(collection_stats(&before, "c"), (2, 7, 1), "{before}");

    let report = store.run(["gc", "--json"]).success().json();
    assert_eq!(report["watermark"], latest);
    assert_eq!(report["versions_scanned"], 7);
    // a: three superseded values; gone: its value under the deletion marker.
    assert_eq!(report["versions_removed"], 4);
    assert_eq!(report["tombstones_removed"], 1);

    let after = store.run(["stats", "--json"]).success().json();
    assert_eq!(collection_stats(&after, "c"), (2, 2, 0), "{after}");
    assert_eq!(after["oldest_readable_version"], latest);
    // The latest data is intact; what GC removed can no longer be read.
    assert_eq!(store.run(["get", "c", "a"]).success().stdout, b"4\n");
    store
        .run(["get", "c", "a", "--at-version", &first.to_string()])
        .failure(
            2,
            &[&format!(
                "version {first} is no longer retained; garbage collection removed what it \
                 needs (the oldest readable version is {latest})"
            )],
        );
    // A second pass finds nothing to do; text output.
    let text = store.run(["gc"]).success().stdout_text();
    assert_eq!(
        text,
        format!(
            "watermark: {latest}\nversions_scanned: 2\nversions_removed: 0\n\
             tombstones_removed: 0\n"
        )
    );
}

#[test]
fn gc_can_retain_recent_versions() {
    let store = fjall_store();
    for v in ["1", "2", "3", "4", "5"] {
        store.run(["put", "c", "k", v]).success();
    }
    let report = store
        .run(["gc", "--json", "--retain-versions", "2"])
        .success()
        .json();
    assert_eq!(report["watermark"], 3);
    assert_eq!(report["versions_removed"], 2);
    assert_eq!(
        store
            .run(["get", "c", "k", "--at-version", "3"])
            .success()
            .stdout,
        b"3\n"
    );
    store
        .run(["get", "c", "k", "--at-version", "2"])
        .failure(2, &["no longer retained", "oldest readable version is 3"]);
}

#[test]
fn collections_all_shows_system_collections() {
    let store = fjall_store();
    store.run(["put", "users", "k", "v"]).success();
    assert_eq!(lines(&store.run(["collections"]).success()), ["users"]);
    assert_eq!(
        lines(&store.run(["collections", "--all"]).success()),
        ["__meta", "users"]
    );
    let listed = store
        .run(["--json", "collections", "list", "--all"])
        .success()
        .json();
    assert_eq!(
        listed["collections"],
        serde_json::json!(["__meta", "users"])
    );
    // System collections stay out of stats.
    let stats = store.run(["stats", "--json"]).success().json();
    assert_eq!(stats["collections"].as_array().map(Vec::len), Some(1));
    // --all belongs to the listing only.
    store
        .run(["collections", "--all", "create", "x"])
        .failure(2, &["cannot be used with"]);
}

/// A store written by the CLI is read by the library's engine: the CLI writes the engine's
/// format (versioned keys, checksummed values), not raw backend entries.
#[test]
fn cli_writes_the_engines_format() -> TestResult {
    let store = fjall_store();
    store.run(["put", "c", "k", "old"]).success();
    let latest = version_of(store.run(["--json", "put", "c", "k", "new"]));
    store.run(["put", "c", "k2", "v2"]).success();
    let path = store.data_dir().join("zcore.fjall");
    runtime()?.block_on(async {
        let backend: std::sync::Arc<dyn StorageBackend> =
            std::sync::Arc::new(FjallBackend::open(&path, &FjallOptions::default())?);
        let engine = Engine::open(std::sync::Arc::clone(&backend), engine_options()).await?;
        let c = CollectionName::new("c")?;
        assert_eq!(engine.latest_version(), latest + 1);
        assert_eq!(engine.collections(), std::slice::from_ref(&c));
        let read = engine.begin_read();
        assert_eq!(read.get(&c, b"k").await?, Some(b"new".to_vec()));
        assert_eq!(
            read.scan_prefix(&c, b"").await?,
            [
                (b"k".to_vec(), b"new".to_vec()),
                (b"k2".to_vec(), b"v2".to_vec())
            ]
        );
        let old = engine.begin_read_at(latest - 1)?;
        assert_eq!(old.get(&c, b"k").await?, Some(b"old".to_vec()));
        // The raw backend holds versioned keys only.
        assert_eq!(backend.get(&c, b"k").await?, None);
        drop((read, old));
        engine.close().await?;
        Ok(())
    })
}

/// Data written to the backend directly (not through the engine) is not in the engine's
/// format: zstore reports it as corrupted (exit code 1) instead of printing garbage.
#[test]
fn raw_backend_data_is_reported_not_returned() -> TestResult {
    let store = Store::new("redb", Selection::Flag);
    let path = store.data_dir().join("zcore.redb");
    std::fs::create_dir_all(store.data_dir())?;
    runtime()?.block_on(async {
        let backend = RedbBackend::open(&path, &RedbOptions::default())?;
        let raw = CollectionName::new("raw")?;
        backend.create_collection(&raw).await?;
        let mut batch = WriteBatch::new();
        batch.put(&raw, b"k".to_vec(), b"v".to_vec());
        backend.write(batch, Durability::Synced).await?;
        backend.close().await?;
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    let out = store
        .run(["scan", "raw"])
        .failure(1, &["corrupted data in collection `raw`"]);
    assert!(out.stdout.is_empty(), "{out:?}");
    store
        .run(["stats"])
        .failure(1, &["corrupted data in collection `raw`"]);
    Ok(())
}
