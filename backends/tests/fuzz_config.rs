//! Smoke fuzzing of the configuration decoders (`zcore_backends::fuzz::fuzz_config`, shared
//! with the cargo-fuzz target in `fuzz/`): arbitrary bytes and mutations of valid
//! configuration files, as file text, as a file on disk loaded through `ZDB_CONFIG`, and as
//! `ZDB_*` values. No input may panic; valid files load. Cases: `ZCORE_FUZZ_CASES` (2,000).

#![allow(clippy::expect_used, clippy::unwrap_used)]

use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};
use zcore_backends::config::{ConfigLoader, ENV_CONFIG};
use zcore_backends::fuzz;

#[global_allocator]
static ALLOC: cap::Cap<std::alloc::System> = cap::Cap::new(std::alloc::System, 1 << 30);

fn config() -> Config {
    Config {
        cases: std::env::var("ZCORE_FUZZ_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2_000),
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..Config::default()
    }
}

const FILES: [&str; 3] = [
    "backend = \"fjall\"\ndata_dir = \"/tmp/zcore-data\"\n\n[fjall]\ncache_size_bytes = 67108864\ncompression = \"lz4\"\nworker_threads = 2\n",
    "backend = \"redb\"\npath = \"store.redb\"\n\n[redb]\ncache_size_bytes = 1048576\n",
    "backend = \"memory\"\n[memory]\n",
];

proptest! {
    #![proptest_config(config())]

    #[test]
    fn config_arbitrary(data in prop::collection::vec(any::<u8>(), 0..300)) {
        fuzz::fuzz_config(&data);
    }

    #[test]
    fn config_mutated(seed in 0usize..3, ops in prop::collection::vec(any::<(u8, u32, u32)>(), 1..6)) {
        fuzz::fuzz_config(&zcore_engine::fuzz::mutate(FILES[seed].as_bytes(), &ops));
    }

    #[test]
    fn config_text_arbitrary(text in "[a-z_=\\[\\]\" .0-9\n{}#-]{0,200}") {
        fuzz::fuzz_config(text.as_bytes());
    }
}

proptest! {
    #![proptest_config(Config { cases: config().cases / 4, ..config() })]

    /// Through a real file and `ZDB_CONFIG`, as zstore loads it (fewer cases: one file write
    /// each).
    #[test]
    fn config_file_mutated(seed in 0usize..3, ops in prop::collection::vec(any::<(u8, u32, u32)>(), 1..6)) {
        let dir = tempfile::tempdir().unwrap();
        fuzz::fuzz_config_file(dir.path(), &zcore_engine::fuzz::mutate(FILES[seed].as_bytes(), &ops));
    }
}

#[test]
fn seed_files_are_valid() {
    let dir = tempfile::tempdir().unwrap();
    for (i, text) in FILES.iter().enumerate() {
        let path = dir.path().join(format!("{i}.toml"));
        std::fs::write(&path, text).unwrap();
        let loaded = ConfigLoader::from_env_map([(ENV_CONFIG, path.as_os_str())])
            .load()
            .unwrap_or_else(|e| panic!("seed {i}: {e}"));
        assert!(!loaded.settings.is_empty());
    }
}

/// Deeply nested TOML (arrays and inline tables) is an error, not a stack overflow.
#[test]
fn deeply_nested_toml_is_an_error_not_a_stack_overflow() {
    for (open, close) in [("[", "]"), ("{a=", "}")] {
        let text = format!("x = {}1{}\n", open.repeat(100_000), close.repeat(100_000));
        let result = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || {
                fuzz::fuzz_config(text.as_bytes());
                zcore_backends::config::ConfigFile::parse(&text, std::path::Path::new("x")).is_ok()
            })
            .unwrap()
            .join()
            .unwrap();
        assert!(!result);
    }
}
