//! Fuzz harness of the configuration decoders (the TOML file, `ZDB_*` environment values,
//! byte sizes), shared by `backends/tests/fuzz_config.rs` (proptest, run in CI) and the
//! cargo-fuzz target in `fuzz/`. Must not panic on any input.

use std::path::Path;

use crate::config::{
    ConfigFile, ConfigLoader, ENV_BACKEND, ENV_CACHE_SIZE, ENV_CONFIG, ENV_PATH, parse_byte_size,
};

/// A configuration file's text (parsed as the loader parses it) and the same bytes as every
/// `ZDB_*` value the loader reads.
pub fn fuzz_config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = ConfigFile::parse(&text, Path::new("zcore.toml"));
    let _ = text.parse::<toml::Table>();
    if let Ok(size) = parse_byte_size(&text) {
        // What parses is a byte count; its decimal form parses to the same.
        assert_eq!(
            parse_byte_size(&size.to_string()),
            Ok(size),
            "byte size round trip"
        );
    }
    let value = text.replace('\0', "");
    let _ = ConfigLoader::from_env_map([
        (ENV_BACKEND, value.as_str()),
        (ENV_CACHE_SIZE, value.as_str()),
        (ENV_PATH, value.as_str()),
    ])
    .load();
}

/// A configuration file on disk, loaded through `ZDB_CONFIG` as `zstore` loads it.
pub fn fuzz_config_file(dir: &Path, data: &[u8]) {
    let path = dir.join("zcore.toml");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let _ = ConfigLoader::from_env_map([(ENV_CONFIG, path.as_os_str())]).load();
}
