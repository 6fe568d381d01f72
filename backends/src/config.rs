//! Backend configuration: which engine to open, where, and with which options.
//!
//! # Layers
//!
//! The effective configuration is built in four layers, each overriding the one before:
//!
//! 1. **defaults**: fjall under `./data` (store at `./data/zcore.fjall`), default options;
//! 2. **TOML file** (optional): named by the `--config` flag, else by `ZDB_CONFIG`;
//! 3. **environment**: the `ZDB_*` variables below;
//! 4. **overrides** ([`ConfigOverrides`]): the command-line flags.
//!
//! [`ConfigLoader::load`] returns the result as a [`LoadedConfig`]: the [`BackendConfig`] to
//! open plus a provenance record ([`Setting`]) saying, for every effective setting, which layer
//! ([`SettingSource`]) it came from.
//!
//! # TOML file
//!
//! ```toml
//! backend = "fjall"          # fjall | redb | memory
//! data_dir = "./data"        # root data directory; relative paths are relative to this file
//! # path = "/explicit/store/location"   # fjall directory or redb file; default
//! #                                     # <data_dir>/zcore.fjall or <data_dir>/zcore.redb
//! [fjall]
//! cache_size_bytes = 67108864
//! compression = "lz4"        # lz4 | none
//! worker_threads = 2         # 1..=64; omit for fjall's default, min(cores, 4)
//! [redb]
//! cache_size_bytes = 67108864
//! [memory]                   # no options yet
//! [encryption]               # optional: encryption at rest (docs/encryption.md)
//! key_file = "zcore.key"     # raw 32 bytes, 64 hex digits, or `<id>:<hex>` lines (a keyring)
//! key_env = "ZCORE_KEY"      # name of a variable holding hex key(s), as `<id>:<hex>,...`
//! encrypt_existing = false   # start encrypting a store that already holds plaintext values
//! ```
//!
//! Every table is optional and only the selected backend's table is used, but every table that
//! is present is checked: unknown keys anywhere are refused, with the file path, line and
//! column in the error. Relative `data_dir` and `path` values in the file are resolved against
//! the directory that contains the file.
//!
//! # Environment
//!
//! | variable | meaning |
//! |---|---|
//! | `ZDB_CONFIG` | path of the TOML file (the `--config` flag wins) |
//! | `ZDB_BACKEND` | `fjall`, `redb` or `memory` |
//! | `ZDB_DATA` | root data directory (default `./data`) |
//! | `ZDB_PATH` | explicit store location (fjall directory or redb file), instead of the one under `ZDB_DATA` |
//! | `ZDB_CACHE_SIZE` | cache size in bytes of the selected backend (`fjall.cache_size_bytes` or `redb.cache_size_bytes`); a plain integer, or with a `KiB`, `MiB` or `GiB` suffix |
//! | `ZDB_ENCRYPTION_KEY_FILE` | key file (`encryption.key_file`) |
//! | `ZDB_ENCRYPTION_KEY_ENV` | name of the variable holding hex key(s) (`encryption.key_env`) |
//! | `ZDB_ENCRYPTION_ENCRYPT_EXISTING` | `true`/`false` (`encryption.encrypt_existing`) |
//!
//! Encryption is on when a key file or a key variable is configured; both may be given (their
//! keys form one keyring, e.g. the old key in the file and the new one in the variable). The
//! configuration holds only where the keys are: they are read by
//! [`LoadedConfig::encryption_options`], and never appear in settings, errors or logs.
//!
//! A variable set to the empty string counts as unset. The memory backend has no location and
//! no cache: it ignores `data_dir`, `path` and the cache size.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize, Serializer};
use zcore_engine::crypto::{EncryptionError, EncryptionOptions, Keyring};
use zcore_engine::{BackendError, StorageBackend};

use crate::fjall::{FjallBackend, FjallCompression, FjallOptions};
use crate::memory::{MemoryBackend, MemoryOptions};
use crate::redb::{RedbBackend, RedbOptions};

/// Environment variable naming the TOML configuration file.
pub const ENV_CONFIG: &str = "ZDB_CONFIG";
/// Environment variable selecting the backend (`fjall`, `redb`, `memory`).
pub const ENV_BACKEND: &str = "ZDB_BACKEND";
/// Environment variable naming the root data directory.
pub const ENV_DATA_DIR: &str = "ZDB_DATA";
/// Environment variable naming the store location explicitly.
pub const ENV_PATH: &str = "ZDB_PATH";
/// Environment variable setting the selected backend's cache size in bytes.
pub const ENV_CACHE_SIZE: &str = "ZDB_CACHE_SIZE";

/// Environment variable naming the encryption key file.
pub const ENV_ENCRYPTION_KEY_FILE: &str = "ZDB_ENCRYPTION_KEY_FILE";
/// Environment variable naming the variable that holds the encryption key(s) in hex.
pub const ENV_ENCRYPTION_KEY_ENV: &str = "ZDB_ENCRYPTION_KEY_ENV";
/// Environment variable allowing encryption of a store that holds plaintext values.
pub const ENV_ENCRYPTION_ENCRYPT_EXISTING: &str = "ZDB_ENCRYPTION_ENCRYPT_EXISTING";

/// Every environment variable the loader reads.
pub const ENV_VARS: [&str; 8] = [
    ENV_CONFIG,
    ENV_BACKEND,
    ENV_DATA_DIR,
    ENV_PATH,
    ENV_CACHE_SIZE,
    ENV_ENCRYPTION_KEY_FILE,
    ENV_ENCRYPTION_KEY_ENV,
    ENV_ENCRYPTION_ENCRYPT_EXISTING,
];

/// Root data directory when nothing else names one.
pub const DEFAULT_DATA_DIR: &str = "./data";
/// Name of the fjall store directory inside the data directory.
pub const FJALL_STORE_NAME: &str = "zcore.fjall";
/// Name of the redb store file inside the data directory.
pub const REDB_STORE_NAME: &str = "zcore.redb";

/// Flag names recorded in [`SettingSource::Flag`] for the fields of [`ConfigOverrides`].
pub mod flags {
    /// Flag naming the TOML file.
    pub const CONFIG: &str = "--config";
    /// Flag selecting the backend.
    pub const BACKEND: &str = "--backend";
    /// Flag naming the data directory.
    pub const DATA_DIR: &str = "--data-dir";
    /// Flag naming the store location.
    pub const PATH: &str = "--path";
    /// Flag setting the cache size.
    pub const CACHE_SIZE: &str = "--cache-size";
    /// Flag naming the encryption key file.
    pub const KEY_FILE: &str = "--key-file";
}

/// The name of a backend, as written in configuration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendName {
    /// [`FjallBackend`] (the default).
    #[default]
    Fjall,
    /// [`RedbBackend`].
    Redb,
    /// [`MemoryBackend`].
    Memory,
}

impl BackendName {
    /// Every backend, in the order they are listed to users.
    pub const ALL: [Self; 3] = [Self::Fjall, Self::Redb, Self::Memory];

    /// The configuration spelling of every backend.
    pub const NAMES: [&'static str; 3] = ["fjall", "redb", "memory"];

    /// The configuration spelling (`fjall`, `redb`, `memory`).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fjall => "fjall",
            Self::Redb => "redb",
            Self::Memory => "memory",
        }
    }
}

impl fmt::Display for BackendName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A backend name that is not `fjall`, `redb` or `memory`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown backend {name:?}; expected one of fjall, redb, memory")]
pub struct UnknownBackendName {
    /// The refused name.
    pub name: String,
}

impl FromStr for BackendName {
    type Err = UnknownBackendName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|b| b.as_str() == s)
            .ok_or_else(|| UnknownBackendName { name: s.to_owned() })
    }
}

/// The schema of the TOML configuration file: every key optional, unknown keys refused.
///
/// See the [module docs](self) for an example.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Which backend to open.
    pub backend: Option<BackendName>,
    /// Root data directory; the store lives at `<data_dir>/zcore.fjall` or
    /// `<data_dir>/zcore.redb` unless `path` is set.
    pub data_dir: Option<PathBuf>,
    /// Explicit store location (fjall directory or redb file).
    pub path: Option<PathBuf>,
    /// Options of the fjall backend.
    pub fjall: Option<FjallOptions>,
    /// Options of the redb backend.
    pub redb: Option<RedbOptions>,
    /// Options of the memory backend.
    pub memory: Option<MemoryOptions>,
    /// Encryption at rest.
    pub encryption: Option<EncryptionConfig>,
}

/// Where the encryption keys come from (never the keys themselves). Encryption is on when
/// `key_file` or `key_env` is set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptionConfig {
    /// Key file: exactly 32 raw bytes, 64 hex digits, or a keyring of `<id>:<64 hex>` lines.
    #[serde(default, serialize_with = "serialize_opt_path_lossy")]
    pub key_file: Option<PathBuf>,
    /// Name of an environment variable holding 64 hex digits or `<id>:<hex>,<id>:<hex>`.
    #[serde(default)]
    pub key_env: Option<String>,
    /// Accept a store that already holds plaintext values: new writes are sealed, old values
    /// stay readable until `zstore rekey`. Without it such a store is refused.
    #[serde(default)]
    pub encrypt_existing: bool,
}

#[allow(clippy::ref_option)]
fn serialize_opt_path_lossy<S: Serializer>(p: &Option<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
    match p {
        Some(p) => s.serialize_some(&p.to_string_lossy()),
        None => s.serialize_none(),
    }
}

impl EncryptionConfig {
    /// Whether a key source is configured.
    #[must_use]
    pub fn is_enabled(&self) -> bool {
        self.key_file.is_some() || self.key_env.is_some()
    }
}

/// A parsed configuration file, with the keys it set explicitly (for provenance).
#[derive(Clone, Debug)]
struct ParsedFile {
    path: PathBuf,
    contents: ConfigFile,
    /// `table.key` (or `key` at top level) for every key present in the file.
    present: Vec<String>,
}

impl ConfigFile {
    /// Parses TOML `text`; `path` only names the file in errors.
    ///
    /// # Errors
    ///
    /// [`ConfigError::ParseFile`] for malformed TOML, unknown keys, unknown backend names and
    /// values of the wrong type, with line and column.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|source| ConfigError::ParseFile {
            path: path.to_path_buf(),
            source: Box::new(source),
        })
    }

    fn read(path: &Path) -> Result<ParsedFile, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
            path: path.to_path_buf(),
            source,
        })?;
        let contents = Self::parse(&text, path)?;
        let table: toml::Table = text.parse().map_err(|source| ConfigError::ParseFile {
            path: path.to_path_buf(),
            source: Box::new(source),
        })?;
        let mut present = Vec::new();
        for (key, value) in &table {
            match value {
                toml::Value::Table(inner) => {
                    present.extend(inner.keys().map(|k| format!("{key}.{k}")));
                }
                _ => present.push(key.clone()),
            }
        }
        Ok(ParsedFile {
            path: path.to_path_buf(),
            contents,
            present,
        })
    }
}

impl ParsedFile {
    fn has(&self, key: &str) -> bool {
        self.present.iter().any(|k| k == key)
    }

    fn source(&self) -> SettingSource {
        SettingSource::File {
            path: self.path.clone(),
        }
    }

    /// `value` resolved against the directory holding the file when it is relative.
    fn resolve(&self, value: &Path) -> PathBuf {
        match self.path.parent() {
            Some(dir) if value.is_relative() => dir.join(value),
            _ => value.to_path_buf(),
        }
    }
}

/// The effective configuration of one backend: what [`open_backend`] opens.
///
/// Serialises with the same shape as the TOML file (`backend = "..."`, `path`, and the
/// backend's options table).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "backend", rename_all = "lowercase")]
pub enum BackendConfig {
    /// fjall, in directory `path`.
    Fjall {
        /// The fjall database directory.
        #[serde(serialize_with = "serialize_path_lossy")]
        path: PathBuf,
        /// Its options.
        fjall: FjallOptions,
    },
    /// redb, in file `path`.
    Redb {
        /// The redb database file.
        #[serde(serialize_with = "serialize_path_lossy")]
        path: PathBuf,
        /// Its options.
        redb: RedbOptions,
    },
    /// In process memory; nothing survives the process.
    Memory {
        /// Its options.
        memory: MemoryOptions,
    },
}

impl Default for BackendConfig {
    /// fjall at `./data/zcore.fjall` with default options.
    fn default() -> Self {
        Self::Fjall {
            path: Path::new(DEFAULT_DATA_DIR).join(FJALL_STORE_NAME),
            fjall: FjallOptions::default(),
        }
    }
}

impl BackendConfig {
    /// Which backend this opens.
    #[must_use]
    pub fn backend(&self) -> BackendName {
        match self {
            Self::Fjall { .. } => BackendName::Fjall,
            Self::Redb { .. } => BackendName::Redb,
            Self::Memory { .. } => BackendName::Memory,
        }
    }

    /// The store location, `None` for the memory backend.
    #[must_use]
    pub fn path(&self) -> Option<&Path> {
        match self {
            Self::Fjall { path, .. } | Self::Redb { path, .. } => Some(path),
            Self::Memory { .. } => None,
        }
    }
}

fn serialize_path_lossy<S: Serializer>(path: &Path, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&path.to_string_lossy())
}

/// Where an effective setting came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SettingSource {
    /// The built-in default.
    Default,
    /// The TOML file at `path`.
    File {
        /// The file.
        #[serde(serialize_with = "serialize_path_lossy")]
        path: PathBuf,
    },
    /// The environment variable `var`.
    Env {
        /// The variable name.
        var: &'static str,
    },
    /// The command-line flag `flag` (see [`flags`]).
    Flag {
        /// The flag, e.g. `--backend`.
        flag: &'static str,
    },
    /// Computed from another setting (the store path from `data_dir`).
    Derived {
        /// The setting it was computed from.
        from: &'static str,
    },
}

impl fmt::Display for SettingSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Default => f.write_str("default"),
            Self::File { path } => write!(f, "file {}", path.display()),
            Self::Env { var } => write!(f, "env {var}"),
            Self::Flag { flag } => write!(f, "flag {flag}"),
            Self::Derived { from } => write!(f, "derived from {from}"),
        }
    }
}

/// One effective setting, its value as text and where it came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Setting {
    /// Setting name as in the TOML file (`backend`, `data_dir`, `fjall.cache_size_bytes`, …);
    /// `config_file` for the file itself.
    pub name: &'static str,
    /// The effective value.
    pub value: String,
    /// Where it came from.
    pub source: SettingSource,
}

/// The result of [`ConfigLoader::load`]: the configuration and its provenance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LoadedConfig {
    /// What to open.
    pub backend: BackendConfig,
    /// Every effective setting of the selected backend, in a stable order: `config_file` (when a
    /// file was read), `backend`, `data_dir` and `path` (not for memory), then the backend's
    /// options, then the `encryption.*` settings when encryption is configured.
    pub settings: Vec<Setting>,
    /// Where the encryption keys come from (disabled by default).
    pub encryption: EncryptionConfig,
}

impl LoadedConfig {
    /// Reads the configured keys (key file, and the variable named by `key_env` from the
    /// process environment) into engine options; `None` when encryption is not configured.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Encryption`] naming the setting and where it came from, for an
    /// unreadable key file, an unset variable, or malformed key material (never shown).
    pub fn encryption_options(&self) -> Result<Option<EncryptionOptions>, ConfigError> {
        self.encryption_options_with(|name| std::env::var_os(name))
    }

    /// [`LoadedConfig::encryption_options`] with `lookup` as the environment.
    ///
    /// # Errors
    ///
    /// As [`LoadedConfig::encryption_options`].
    pub fn encryption_options_with(
        &self,
        lookup: impl Fn(&str) -> Option<OsString>,
    ) -> Result<Option<EncryptionOptions>, ConfigError> {
        let enc = &self.encryption;
        if !enc.is_enabled() {
            return Ok(None);
        }
        let origin = |name: &'static str| {
            self.setting(name)
                .map_or(SettingSource::Default, |s| s.source.clone())
        };
        let mut ring = Keyring::new();
        if let Some(path) = &enc.key_file {
            let file = Keyring::from_file(path).map_err(|source| ConfigError::Encryption {
                setting: "encryption.key_file",
                origin: origin("encryption.key_file"),
                source,
            })?;
            ring.merge(file).map_err(|source| ConfigError::Encryption {
                setting: "encryption.key_file",
                origin: origin("encryption.key_file"),
                source,
            })?;
        }
        if let Some(name) = &enc.key_env {
            let fail = |source| ConfigError::Encryption {
                setting: "encryption.key_env",
                origin: origin("encryption.key_env"),
                source,
            };
            let value = lookup(name).filter(|v| !v.is_empty()).ok_or_else(|| {
                fail(EncryptionError::KeyEnv {
                    name: name.clone(),
                    reason: "the variable is not set".to_owned(),
                })
            })?;
            let text = zeroize::Zeroizing::new(value.into_string().map_err(|_| {
                fail(EncryptionError::KeyEnv {
                    name: name.clone(),
                    reason: "the value is not valid UTF-8".to_owned(),
                })
            })?);
            let parsed = Keyring::parse(text.as_bytes(), &format!("environment variable {name}"))
                .map_err(fail)?;
            ring.merge(parsed).map_err(fail)?;
        }
        Ok(Some(EncryptionOptions {
            encrypt_existing: enc.encrypt_existing,
            ..EncryptionOptions::new(ring)
        }))
    }

    /// The setting called `name`, if it is part of this configuration.
    #[must_use]
    pub fn setting(&self, name: &str) -> Option<&Setting> {
        self.settings.iter().find(|s| s.name == name)
    }
}

/// Explicit overrides, normally from command-line flags; they win over every other layer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigOverrides {
    /// TOML file to read (`--config`); wins over `ZDB_CONFIG`.
    pub config_file: Option<PathBuf>,
    /// Backend (`--backend`).
    pub backend: Option<BackendName>,
    /// Root data directory (`--data-dir`).
    pub data_dir: Option<PathBuf>,
    /// Store location (`--path`).
    pub path: Option<PathBuf>,
    /// Cache size in bytes of the selected backend (`--cache-size`).
    pub cache_size_bytes: Option<u64>,
    /// Encryption key file (`--key-file`).
    pub key_file: Option<PathBuf>,
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },

    /// The configuration file is not valid TOML or does not match the schema (unknown key,
    /// unknown backend, wrong type). The TOML error gives line and column.
    #[error("invalid config file {}: {source}", path.display())]
    ParseFile {
        /// The file.
        path: PathBuf,
        /// The TOML error.
        source: Box<toml::de::Error>,
    },

    /// A backend name from the environment or an override is not known.
    #[error("unknown backend {name:?} (from {origin}); expected one of fjall, redb, memory")]
    UnknownBackend {
        /// The refused name.
        name: String,
        /// Where it came from.
        origin: SettingSource,
    },

    /// A backend option is out of range (the backend's own check refused it).
    #[error("{reason} (from {origin})")]
    InvalidOption {
        /// The option (`fjall.worker_threads`, …).
        setting: &'static str,
        /// Where it came from.
        origin: SettingSource,
        /// The backend's message, naming the option and its allowed range.
        reason: String,
    },

    /// The encryption keys cannot be loaded (the key material is never shown).
    #[error("{setting} (from {origin}): {source}")]
    Encryption {
        /// `encryption.key_file` or `encryption.key_env`.
        setting: &'static str,
        /// Where the setting came from.
        origin: SettingSource,
        /// What is wrong.
        source: EncryptionError,
    },

    /// A setting has a value that cannot be parsed or is out of range.
    #[error("invalid {setting} = {value:?} (from {origin}): {reason}")]
    InvalidValue {
        /// The setting (`fjall.worker_threads`, `cache_size_bytes`, …).
        setting: &'static str,
        /// The refused value, as text.
        value: String,
        /// Where it came from.
        origin: SettingSource,
        /// What is wrong with it.
        reason: String,
    },
}

/// Builds a [`LoadedConfig`] from defaults, an optional TOML file, an environment and
/// [`ConfigOverrides`].
///
/// The environment is a snapshot taken when the loader is made, so tests can pass their own map
/// ([`ConfigLoader::from_env_map`]) instead of racing on the process environment.
#[derive(Clone, Debug, Default)]
pub struct ConfigLoader {
    env: BTreeMap<String, OsString>,
    overrides: ConfigOverrides,
}

/// A value together with where it came from.
#[derive(Clone, Debug)]
struct Sourced<T> {
    value: T,
    source: SettingSource,
}

impl<T> Sourced<T> {
    fn default(value: T) -> Self {
        Self {
            value,
            source: SettingSource::Default,
        }
    }

    fn set(&mut self, value: T, source: SettingSource) {
        self.value = value;
        self.source = source;
    }
}

impl ConfigLoader {
    /// A loader reading the `ZDB_*` variables of the process environment.
    #[must_use]
    pub fn from_process_env() -> Self {
        Self::from_env_map(
            std::env::vars_os()
                .filter_map(|(k, v)| k.into_string().ok().map(|k| (k, v)))
                .filter(|(k, _)| ENV_VARS.contains(&k.as_str())),
        )
    }

    /// A loader reading `vars` as its environment.
    #[must_use]
    pub fn from_env_map<K, V>(vars: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<OsString>,
    {
        Self {
            env: vars
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            overrides: ConfigOverrides::default(),
        }
    }

    /// Sets the explicit overrides (the last layer).
    #[must_use]
    pub fn with_overrides(mut self, overrides: ConfigOverrides) -> Self {
        self.overrides = overrides;
        self
    }

    /// An environment variable, `None` when unset or empty.
    fn env_os(&self, var: &'static str) -> Option<&OsString> {
        self.env.get(var).filter(|v| !v.is_empty())
    }

    /// An environment variable that must be UTF-8.
    fn env_str(&self, var: &'static str) -> Result<Option<&str>, ConfigError> {
        self.env_os(var)
            .map(|v| {
                v.to_str().ok_or_else(|| ConfigError::InvalidValue {
                    setting: var,
                    value: v.to_string_lossy().into_owned(),
                    origin: SettingSource::Env { var },
                    reason: "the value is not valid UTF-8".to_owned(),
                })
            })
            .transpose()
    }

    /// Loads the effective configuration.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the file, variable or flag at fault. Never panics.
    pub fn load(&self) -> Result<LoadedConfig, ConfigError> {
        let overrides = &self.overrides;
        let mut settings = Vec::new();

        // 1. The file, if any.
        let file_location = if let Some(path) = &overrides.config_file {
            Some((
                path.clone(),
                SettingSource::Flag {
                    flag: flags::CONFIG,
                },
            ))
        } else {
            self.env_os(ENV_CONFIG)
                .map(|p| (PathBuf::from(p), SettingSource::Env { var: ENV_CONFIG }))
        };
        let file = match file_location {
            Some((path, source)) => {
                let parsed = ConfigFile::read(&path)?;
                settings.push(Setting {
                    name: "config_file",
                    value: path.display().to_string(),
                    source,
                });
                Some(parsed)
            }
            None => None,
        };

        // 2. backend
        let mut backend = Sourced::default(BackendName::default());
        if let Some(f) = &file
            && let Some(b) = f.contents.backend
        {
            backend.set(b, f.source());
        }
        if let Some(name) = self.env_str(ENV_BACKEND)? {
            let origin = SettingSource::Env { var: ENV_BACKEND };
            let b = name
                .parse()
                .map_err(|e: UnknownBackendName| ConfigError::UnknownBackend {
                    name: e.name,
                    origin: origin.clone(),
                })?;
            backend.set(b, origin);
        }
        if let Some(b) = overrides.backend {
            backend.set(
                b,
                SettingSource::Flag {
                    flag: flags::BACKEND,
                },
            );
        }
        settings.push(Setting {
            name: "backend",
            value: backend.value.to_string(),
            source: backend.source.clone(),
        });

        // 3. data_dir and path
        let mut data_dir = Sourced::default(PathBuf::from(DEFAULT_DATA_DIR));
        let mut path: Option<Sourced<PathBuf>> = None;
        if let Some(f) = &file {
            if let Some(d) = &f.contents.data_dir {
                data_dir.set(f.resolve(d), f.source());
            }
            if let Some(p) = &f.contents.path {
                path = Some(Sourced {
                    value: f.resolve(p),
                    source: f.source(),
                });
            }
        }
        if let Some(d) = self.env_os(ENV_DATA_DIR) {
            data_dir.set(PathBuf::from(d), SettingSource::Env { var: ENV_DATA_DIR });
        }
        if let Some(p) = self.env_os(ENV_PATH) {
            path = Some(Sourced {
                value: PathBuf::from(p),
                source: SettingSource::Env { var: ENV_PATH },
            });
        }
        if let Some(d) = &overrides.data_dir {
            data_dir.set(
                d.clone(),
                SettingSource::Flag {
                    flag: flags::DATA_DIR,
                },
            );
        }
        if let Some(p) = &overrides.path {
            path = Some(Sourced {
                value: p.clone(),
                source: SettingSource::Flag { flag: flags::PATH },
            });
        }

        // 4. cache size from env / flag (applies to the selected backend)
        let mut cache_override: Option<Sourced<u64>> = None;
        if let Some(text) = self.env_str(ENV_CACHE_SIZE)? {
            let origin = SettingSource::Env {
                var: ENV_CACHE_SIZE,
            };
            let bytes = parse_byte_size(text).map_err(|reason| ConfigError::InvalidValue {
                setting: ENV_CACHE_SIZE,
                value: text.to_owned(),
                origin: origin.clone(),
                reason,
            })?;
            cache_override = Some(Sourced {
                value: bytes,
                source: origin,
            });
        }
        if let Some(bytes) = overrides.cache_size_bytes {
            cache_override = Some(Sourced {
                value: bytes,
                source: SettingSource::Flag {
                    flag: flags::CACHE_SIZE,
                },
            });
        }

        // 5. Options. Every table present in the file is validated, used or not.
        let option_source = |key: &str| match &file {
            Some(f) if f.has(key) => f.source(),
            _ => SettingSource::Default,
        };
        let mut fjall = file
            .as_ref()
            .and_then(|f| f.contents.fjall.clone())
            .unwrap_or_default();
        let mut redb = file
            .as_ref()
            .and_then(|f| f.contents.redb.clone())
            .unwrap_or_default();
        let memory = file
            .as_ref()
            .and_then(|f| f.contents.memory.clone())
            .unwrap_or_default();
        fjall
            .validate()
            .map_err(|reason| ConfigError::InvalidOption {
                setting: "fjall.worker_threads",
                origin: option_source("fjall.worker_threads"),
                reason,
            })?;

        let store_path = |store_name: &str| {
            path.clone().unwrap_or_else(|| Sourced {
                value: data_dir.value.join(store_name),
                source: SettingSource::Derived { from: "data_dir" },
            })
        };
        let mut location_settings = |store: &Sourced<PathBuf>| {
            settings.push(Setting {
                name: "data_dir",
                value: data_dir.value.display().to_string(),
                source: data_dir.source.clone(),
            });
            settings.push(Setting {
                name: "path",
                value: store.value.display().to_string(),
                source: store.source.clone(),
            });
        };

        let config = match backend.value {
            BackendName::Fjall => {
                let store = store_path(FJALL_STORE_NAME);
                location_settings(&store);
                let mut cache_source = option_source("fjall.cache_size_bytes");
                if let Some(c) = &cache_override {
                    fjall.cache_size_bytes = c.value;
                    cache_source = c.source.clone();
                }
                settings.extend([
                    Setting {
                        name: "fjall.cache_size_bytes",
                        value: fjall.cache_size_bytes.to_string(),
                        source: cache_source,
                    },
                    Setting {
                        name: "fjall.compression",
                        value: compression_name(fjall.compression).to_owned(),
                        source: option_source("fjall.compression"),
                    },
                    Setting {
                        name: "fjall.worker_threads",
                        value: fjall
                            .worker_threads
                            .map_or_else(|| "auto".to_owned(), |n| n.to_string()),
                        source: option_source("fjall.worker_threads"),
                    },
                ]);
                BackendConfig::Fjall {
                    path: store.value,
                    fjall,
                }
            }
            BackendName::Redb => {
                let store = store_path(REDB_STORE_NAME);
                location_settings(&store);
                let mut cache_source = option_source("redb.cache_size_bytes");
                if let Some(c) = &cache_override {
                    redb.cache_size_bytes = c.value;
                    cache_source = c.source.clone();
                }
                settings.push(Setting {
                    name: "redb.cache_size_bytes",
                    value: redb.cache_size_bytes.to_string(),
                    source: cache_source,
                });
                BackendConfig::Redb {
                    path: store.value,
                    redb,
                }
            }
            BackendName::Memory => BackendConfig::Memory { memory },
        };
        let encryption = self.encryption(file.as_ref(), &mut settings)?;
        Ok(LoadedConfig {
            backend: config,
            settings,
            encryption,
        })
    }

    /// The `[encryption]` layers: file, environment, `--key-file`.
    fn encryption(
        &self,
        file: Option<&ParsedFile>,
        settings: &mut Vec<Setting>,
    ) -> Result<EncryptionConfig, ConfigError> {
        let from_file = file.and_then(|f| f.contents.encryption.clone().map(|e| (f, e)));
        let mut key_file: Option<Sourced<PathBuf>> = None;
        let mut key_env: Option<Sourced<String>> = None;
        let mut existing = Sourced::default(false);
        if let Some((f, e)) = from_file {
            if let Some(p) = &e.key_file {
                key_file = Some(Sourced {
                    value: f.resolve(p),
                    source: f.source(),
                });
            }
            if let Some(v) = e.key_env {
                key_env = Some(Sourced {
                    value: v,
                    source: f.source(),
                });
            }
            if f.has("encryption.encrypt_existing") {
                existing.set(e.encrypt_existing, f.source());
            }
        }
        if let Some(p) = self.env_os(ENV_ENCRYPTION_KEY_FILE) {
            key_file = Some(Sourced {
                value: PathBuf::from(p),
                source: SettingSource::Env {
                    var: ENV_ENCRYPTION_KEY_FILE,
                },
            });
        }
        if let Some(v) = self.env_str(ENV_ENCRYPTION_KEY_ENV)? {
            key_env = Some(Sourced {
                value: v.to_owned(),
                source: SettingSource::Env {
                    var: ENV_ENCRYPTION_KEY_ENV,
                },
            });
        }
        if let Some(v) = self.env_str(ENV_ENCRYPTION_ENCRYPT_EXISTING)? {
            let origin = SettingSource::Env {
                var: ENV_ENCRYPTION_ENCRYPT_EXISTING,
            };
            let b = match v.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => true,
                "false" | "0" | "no" => false,
                _ => {
                    return Err(ConfigError::InvalidValue {
                        setting: ENV_ENCRYPTION_ENCRYPT_EXISTING,
                        value: v.to_owned(),
                        origin,
                        reason: "expected true or false".to_owned(),
                    });
                }
            };
            existing.set(b, origin);
        }
        if let Some(p) = &self.overrides.key_file {
            key_file = Some(Sourced {
                value: p.clone(),
                source: SettingSource::Flag {
                    flag: flags::KEY_FILE,
                },
            });
        }
        if let Some(name) = &key_env
            && (name.value.is_empty() || name.value.contains('='))
        {
            return Err(ConfigError::InvalidValue {
                setting: "encryption.key_env",
                value: name.value.clone(),
                origin: name.source.clone(),
                reason: "expected the name of an environment variable".to_owned(),
            });
        }
        let config = EncryptionConfig {
            key_file: key_file.as_ref().map(|k| k.value.clone()),
            key_env: key_env.as_ref().map(|k| k.value.clone()),
            encrypt_existing: existing.value,
        };
        if config.is_enabled() {
            if let Some(k) = key_file {
                settings.push(Setting {
                    name: "encryption.key_file",
                    value: k.value.display().to_string(),
                    source: k.source,
                });
            }
            if let Some(k) = key_env {
                settings.push(Setting {
                    name: "encryption.key_env",
                    value: k.value,
                    source: k.source,
                });
            }
            settings.push(Setting {
                name: "encryption.encrypt_existing",
                value: existing.value.to_string(),
                source: existing.source,
            });
        }
        Ok(config)
    }
}

fn compression_name(c: FjallCompression) -> &'static str {
    match c {
        FjallCompression::None => "none",
        FjallCompression::Lz4 => "lz4",
    }
}

/// Parses a byte count: a plain integer, or an integer followed by `KiB`, `MiB` or `GiB`.
///
/// # Errors
///
/// A message saying what is wrong.
pub fn parse_byte_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (digits, unit) = [("KiB", 1u64 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30)]
        .into_iter()
        .find_map(|(suffix, unit)| text.strip_suffix(suffix).map(|d| (d.trim_end(), unit)))
        .unwrap_or((text, 1));
    let n: u64 = digits.parse().map_err(|_| {
        "expected a number of bytes, optionally followed by KiB, MiB or GiB".to_owned()
    })?;
    n.checked_mul(unit)
        .ok_or_else(|| "the size does not fit in 64 bits".to_owned())
}

/// Opens the backend `config` describes.
///
/// Persistent backends open (or create) their store synchronously; call this before serving
/// requests or from a blocking context.
///
/// # Errors
///
/// [`BackendError::Open`] when the store cannot be opened or created (bad options, locked by
/// another process, not a store of that engine).
pub fn open_backend(config: &BackendConfig) -> Result<Arc<dyn StorageBackend>, BackendError> {
    let backend: Arc<dyn StorageBackend> = match config {
        BackendConfig::Memory { memory: _ } => Arc::new(MemoryBackend::new()),
        BackendConfig::Fjall { path, fjall } => Arc::new(FjallBackend::open(path, fjall)?),
        BackendConfig::Redb { path, redb } => Arc::new(RedbBackend::open(path, redb)?),
    };
    tracing::debug!(
        backend = %config.backend(),
        path = ?config.path(),
        "opened storage backend"
    );
    Ok(backend)
}

#[cfg(test)]
mod tests {
    use super::*;
    use zcore_engine::{CollectionName, Durability, WriteBatch};

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn loader(env: &[(&str, &str)]) -> ConfigLoader {
        ConfigLoader::from_env_map(env.iter().map(|(k, v)| (*k, *v)))
    }

    fn write_file(dir: &Path, text: &str) -> Result<PathBuf, std::io::Error> {
        let path = dir.join("zstore.toml");
        std::fs::write(&path, text)?;
        Ok(path)
    }

    fn with_file(path: &Path) -> ConfigOverrides {
        ConfigOverrides {
            config_file: Some(path.to_path_buf()),
            ..ConfigOverrides::default()
        }
    }

    #[test]
    fn defaults_are_fjall_under_data() -> TestResult {
        let loaded = loader(&[]).load()?;
        assert_eq!(loaded.backend, BackendConfig::default());
        assert_eq!(loaded.backend.path(), Some(Path::new("./data/zcore.fjall")));
        for s in &loaded.settings {
            let expected = if s.name == "path" {
                SettingSource::Derived { from: "data_dir" }
            } else {
                SettingSource::Default
            };
            assert_eq!(s.source, expected, "{}", s.name);
        }
        let names: Vec<_> = loaded.settings.iter().map(|s| s.name).collect();
        assert_eq!(
            names,
            [
                "backend",
                "data_dir",
                "path",
                "fjall.cache_size_bytes",
                "fjall.compression",
                "fjall.worker_threads"
            ]
        );
        Ok(())
    }

    #[test]
    fn parses_a_fjall_file_with_provenance() -> TestResult {
        let dir = tempfile::tempdir()?;
        let file = write_file(
            dir.path(),
            "backend = \"fjall\"\ndata_dir = \"store\"\n[fjall]\ncompression = \"none\"\nworker_threads = 2\n",
        )?;
        let loaded = loader(&[]).with_overrides(with_file(&file)).load()?;
        assert_eq!(
            loaded.backend,
            BackendConfig::Fjall {
                path: dir.path().join("store").join(FJALL_STORE_NAME),
                fjall: FjallOptions {
                    compression: FjallCompression::None,
                    worker_threads: Some(2),
                    ..FjallOptions::default()
                },
            }
        );
        let from_file = SettingSource::File { path: file.clone() };
        let source = |name| loaded.setting(name).map(|s| s.source.clone());
        assert_eq!(source("backend"), Some(from_file.clone()));
        assert_eq!(source("data_dir"), Some(from_file.clone()));
        assert_eq!(source("fjall.compression"), Some(from_file.clone()));
        assert_eq!(source("fjall.worker_threads"), Some(from_file.clone()));
        assert_eq!(
            source("fjall.cache_size_bytes"),
            Some(SettingSource::Default)
        );
        assert_eq!(
            source("config_file"),
            Some(SettingSource::Flag {
                flag: flags::CONFIG
            })
        );
        Ok(())
    }

    #[test]
    fn parses_a_redb_file() -> TestResult {
        let dir = tempfile::tempdir()?;
        let file = write_file(
            dir.path(),
            "backend = \"redb\"\npath = \"/abs/store.redb\"\n[redb]\ncache_size_bytes = 1024\n",
        )?;
        let loaded = loader(&[]).with_overrides(with_file(&file)).load()?;
        assert_eq!(
            loaded.backend,
            BackendConfig::Redb {
                path: PathBuf::from("/abs/store.redb"),
                redb: RedbOptions {
                    cache_size_bytes: 1024
                },
            }
        );
        assert_eq!(
            loaded.setting("redb.cache_size_bytes").map(|s| &s.value),
            Some(&"1024".to_owned())
        );
        Ok(())
    }

    #[test]
    fn parses_a_memory_file() -> TestResult {
        let dir = tempfile::tempdir()?;
        let file = write_file(dir.path(), "backend = \"memory\"\n[memory]\n")?;
        let loaded = loader(&[]).with_overrides(with_file(&file)).load()?;
        assert_eq!(
            loaded.backend,
            BackendConfig::Memory {
                memory: MemoryOptions {}
            }
        );
        assert!(loaded.setting("path").is_none());
        Ok(())
    }

    #[test]
    fn config_file_from_env() -> TestResult {
        let dir = tempfile::tempdir()?;
        let file = write_file(dir.path(), "backend = \"memory\"\n")?;
        let file_text = file.to_string_lossy().into_owned();
        let loaded = loader(&[(ENV_CONFIG, &file_text)]).load()?;
        assert_eq!(loaded.backend.backend(), BackendName::Memory);
        assert_eq!(
            loaded.setting("config_file").map(|s| &s.source),
            Some(&SettingSource::Env { var: ENV_CONFIG })
        );
        Ok(())
    }

    fn load_error(text: &str) -> Result<(PathBuf, String), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let file = write_file(dir.path(), text)?;
        match loader(&[]).with_overrides(with_file(&file)).load() {
            Ok(loaded) => Err(format!("expected an error, loaded {loaded:?}").into()),
            Err(e) => Ok((file, e.to_string())),
        }
    }

    #[test]
    fn unknown_fields_are_refused_with_name_and_file() -> TestResult {
        for (text, field) in [
            ("backend = \"fjall\"\nbogus = 1\n", "bogus"),
            ("[fjall]\ncache_size = 5\n", "cache_size"),
            ("[redb]\ncompression = \"lz4\"\n", "compression"),
            ("[memory]\nsize = 1\n", "size"),
            ("[sled]\nx = 1\n", "sled"),
        ] {
            let (file, message) = load_error(text)?;
            assert!(message.contains(&format!("`{field}`")), "{message}");
            assert!(message.contains(&file.display().to_string()), "{message}");
            assert!(message.contains("line"), "{message}");
        }
        Ok(())
    }

    #[test]
    fn malformed_toml_is_an_error() -> TestResult {
        let (file, message) = load_error("backend = \"fjall\n[fjall\n")?;
        assert!(message.contains(&file.display().to_string()), "{message}");
        assert!(message.contains("line"), "{message}");
        Ok(())
    }

    #[test]
    fn missing_file_is_an_error() {
        let result = loader(&[])
            .with_overrides(with_file(Path::new("/nonexistent/zstore.toml")))
            .load();
        assert!(
            matches!(result, Err(ConfigError::ReadFile { .. })),
            "{result:?}"
        );
    }

    #[test]
    fn bad_backend_name_is_refused() -> TestResult {
        let (_, message) = load_error("backend = \"sled\"\n")?;
        assert!(message.contains("sled"), "{message}");
        assert!(message.contains("fjall"), "{message}");

        let err = loader(&[(ENV_BACKEND, "rocksdb")]).load().err();
        let message = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("\"rocksdb\""), "{message}");
        assert!(message.contains("env ZDB_BACKEND"), "{message}");
        assert!("Redb".parse::<BackendName>().is_err());
        Ok(())
    }

    #[test]
    fn zero_worker_threads_is_refused() -> TestResult {
        let (file, message) = load_error("backend = \"redb\"\n[fjall]\nworker_threads = 0\n")?;
        assert!(message.contains("fjall.worker_threads"), "{message}");
        assert!(message.contains("1..=64"), "{message}");
        assert!(message.contains(&file.display().to_string()), "{message}");
        Ok(())
    }

    #[test]
    fn env_overrides_file() -> TestResult {
        let dir = tempfile::tempdir()?;
        let file = write_file(
            dir.path(),
            "backend = \"fjall\"\ndata_dir = \"/from/file\"\n[redb]\ncache_size_bytes = 1\n",
        )?;
        let loaded = loader(&[
            (ENV_BACKEND, "redb"),
            (ENV_DATA_DIR, "/from/env"),
            (ENV_CACHE_SIZE, "2MiB"),
        ])
        .with_overrides(with_file(&file))
        .load()?;
        assert_eq!(
            loaded.backend,
            BackendConfig::Redb {
                path: PathBuf::from("/from/env/zcore.redb"),
                redb: RedbOptions {
                    cache_size_bytes: 2 << 20
                },
            }
        );
        let source = |name| loaded.setting(name).map(|s| s.source.clone());
        assert_eq!(
            source("backend"),
            Some(SettingSource::Env { var: ENV_BACKEND })
        );
        assert_eq!(
            source("data_dir"),
            Some(SettingSource::Env { var: ENV_DATA_DIR })
        );
        assert_eq!(
            source("redb.cache_size_bytes"),
            Some(SettingSource::Env {
                var: ENV_CACHE_SIZE
            })
        );
        Ok(())
    }

    #[test]
    fn flags_override_env() -> TestResult {
        let loaded = loader(&[
            (ENV_BACKEND, "redb"),
            (ENV_DATA_DIR, "/from/env"),
            (ENV_PATH, "/env/path"),
            (ENV_CACHE_SIZE, "7"),
        ])
        .with_overrides(ConfigOverrides {
            backend: Some(BackendName::Fjall),
            path: Some(PathBuf::from("/flag/path")),
            cache_size_bytes: Some(9),
            ..ConfigOverrides::default()
        })
        .load()?;
        assert_eq!(
            loaded.backend,
            BackendConfig::Fjall {
                path: PathBuf::from("/flag/path"),
                fjall: FjallOptions {
                    cache_size_bytes: 9,
                    ..FjallOptions::default()
                },
            }
        );
        let source = |name| loaded.setting(name).map(|s| s.source.clone());
        assert_eq!(
            source("backend"),
            Some(SettingSource::Flag {
                flag: flags::BACKEND
            })
        );
        assert_eq!(
            source("path"),
            Some(SettingSource::Flag { flag: flags::PATH })
        );
        assert_eq!(
            source("data_dir"),
            Some(SettingSource::Env { var: ENV_DATA_DIR })
        );
        Ok(())
    }

    #[test]
    fn empty_env_values_count_as_unset() -> TestResult {
        let loaded = loader(&[(ENV_BACKEND, ""), (ENV_DATA_DIR, "")]).load()?;
        assert_eq!(loaded.backend, BackendConfig::default());
        Ok(())
    }

    #[test]
    fn bad_cache_size_is_refused() {
        let err = loader(&[(ENV_CACHE_SIZE, "lots")]).load().err();
        let message = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("ZDB_CACHE_SIZE"), "{message}");
        assert_eq!(parse_byte_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_byte_size("10"), Ok(10));
        assert!(parse_byte_size("99999999999999GiB").is_err());
        assert!(parse_byte_size("-1").is_err());
    }

    #[test]
    fn config_serialises_in_the_file_shape() -> TestResult {
        let text = toml::to_string(&BackendConfig::default())?;
        let back = ConfigFile::parse(&text, Path::new("roundtrip.toml"))?;
        assert_eq!(back.backend, Some(BackendName::Fjall));
        assert_eq!(back.path, Some(PathBuf::from("./data/zcore.fjall")));
        assert_eq!(back.fjall, Some(FjallOptions::default()));
        Ok(())
    }

    async fn put_get_close(config: &BackendConfig) -> TestResult {
        let backend = open_backend(config)?;
        assert_eq!(backend.kind().name(), config.backend().as_str());
        let users = CollectionName::new("users")?;
        backend.create_collection(&users).await?;
        let mut batch = WriteBatch::new();
        batch.put(&users, b"k".to_vec(), b"v".to_vec());
        backend.write(batch, Durability::Synced).await?;
        assert_eq!(backend.get(&users, b"k").await?, Some(b"v".to_vec()));
        backend.close().await?;
        Ok(())
    }

    #[tokio::test]
    async fn open_backend_opens_each_backend() -> TestResult {
        let dir = tempfile::tempdir()?;
        let data = dir.path().to_string_lossy().into_owned();
        for name in BackendName::NAMES {
            let loaded = loader(&[(ENV_BACKEND, name), (ENV_DATA_DIR, &data)]).load()?;
            put_get_close(&loaded.backend).await?;
            if let Some(path) = loaded.backend.path() {
                assert!(path.starts_with(dir.path()));
                assert!(path.exists(), "{}", path.display());
                // Persistent: reopening shows the entry.
                let again = open_backend(&loaded.backend)?;
                let users = CollectionName::new("users")?;
                assert_eq!(again.get(&users, b"k").await?, Some(b"v".to_vec()));
                again.close().await?;
            }
        }
        Ok(())
    }

    #[test]
    fn open_backend_reports_open_errors() -> TestResult {
        let dir = tempfile::tempdir()?;
        let not_a_db = dir.path().join("plain.txt");
        std::fs::write(&not_a_db, b"hello, not redb")?;
        let result = open_backend(&BackendConfig::Redb {
            path: not_a_db,
            redb: RedbOptions::default(),
        });
        assert!(matches!(result, Err(BackendError::Open { .. })));
        Ok(())
    }
}
