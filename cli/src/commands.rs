//! The store operations of `zstore`: validated before the store is opened, then run as
//! transactions of the MVCC [`Engine`] and printed.
//!
//! User collections hold the engine's format (versioned keys, checksummed values), so every
//! data command goes through the engine; nothing here writes to the backend directly.

use std::io::{Read, Write};
use std::ops::Bound;
use std::path::Path;

use serde::Serialize;
use serde_json::json;
use zcore_backends::LoadedConfig;
use zcore_engine::backend::KeyPreview;
use zcore_engine::mvcc::{MAX_USER_KEY_LEN, MAX_USER_VALUE_LEN, UserKeyProblem};
use zcore_engine::{
    BackendKind, CollectionName, Direction, Durability, Engine, EngineOptions, Isolation, KeyRange,
    ReadTransaction, ScanRequest, TxnError, Version, WriteOptions,
};

use crate::args::{CollectionsCommand, Command, ConfigCommand, ScanArgs};
use crate::bytes::{ByteFormat, EncodedBytes, collection_name};
use crate::error::CliError;

/// Options of every write transaction: serializable, synced before the commit returns.
const WRITE_OPTIONS: WriteOptions = WriteOptions {
    isolation: Isolation::Serializable,
    durability: Durability::Synced,
};

/// Entries asked for per scan call; `scan` pages through the range with
/// [`ScanRequest::next_page`] until its limit or the end.
pub const SCAN_PAGE_SIZE: usize = 1000;

/// Where and how results are printed.
#[derive(Debug)]
pub struct Printer<W: Write> {
    out: W,
    format: ByteFormat,
    json: bool,
}

impl<W: Write> Printer<W> {
    /// A printer writing to `out`.
    pub fn new(out: W, format: ByteFormat, json: bool) -> Self {
        Self { out, format, json }
    }

    pub(crate) fn json_line(&mut self, value: &impl Serialize) -> Result<(), CliError> {
        serde_json::to_writer(&mut self.out, value)?;
        self.out.write_all(b"\n")?;
        Ok(())
    }

    pub(crate) fn text_line(&mut self, line: &str) -> Result<(), CliError> {
        self.out.write_all(line.as_bytes())?;
        self.out.write_all(b"\n")?;
        Ok(())
    }

    /// A note for the user on stderr (`zstore: {message}`), in text mode only: with `--json`
    /// everything worth knowing is in the JSON on stdout.
    pub(crate) fn note(&self, message: &str) {
        if !self.json {
            // A closed stderr is no reason to fail a command that succeeded.
            let _ = writeln!(std::io::stderr(), "zstore: {message}");
        }
    }

    /// Flushes buffered output.
    pub fn flush(&mut self) -> Result<(), CliError> {
        self.out.flush()?;
        Ok(())
    }

    /// Prints the effective configuration and where each setting came from.
    pub fn config(&mut self, loaded: &LoadedConfig) -> Result<(), CliError> {
        if self.json {
            return self.json_line(&json!({
                "valid": true,
                "config": loaded.backend,
                "settings": loaded.settings,
            }));
        }
        let name_width = loaded
            .settings
            .iter()
            .map(|s| s.name.len())
            .max()
            .unwrap_or(0);
        let value_width = loaded
            .settings
            .iter()
            .map(|s| s.value.chars().count())
            .max()
            .unwrap_or(0);
        for s in &loaded.settings {
            let line = format!(
                "{:name_width$} = {:value_width$}  ({})",
                s.name, s.value, s.source
            );
            self.text_line(&line)?;
        }
        self.text_line("configuration is valid")
    }
}

/// One validated store operation.
#[derive(Debug)]
pub enum Action {
    /// `collections` / `collections list`.
    ListCollections {
        /// Include system collections (`--all`).
        all: bool,
    },
    /// `collections create NAME`.
    CreateCollection(CollectionName),
    /// `collections drop NAME`.
    DropCollection(CollectionName),
    /// `put`.
    Put {
        /// Target collection, created if missing.
        collection: CollectionName,
        /// Key.
        key: Vec<u8>,
        /// Value.
        value: Vec<u8>,
    },
    /// `get`.
    Get {
        /// Collection.
        collection: CollectionName,
        /// Key.
        key: Vec<u8>,
        /// Version to read, `None` for the latest.
        at_version: Option<Version>,
    },
    /// `delete`.
    Delete {
        /// Collection.
        collection: CollectionName,
        /// Key.
        key: Vec<u8>,
    },
    /// `scan`.
    Scan {
        /// Collection.
        collection: CollectionName,
        /// Keys to visit.
        range: KeyRange,
        /// Order.
        direction: Direction,
        /// Most entries to print, `None` for all.
        limit: Option<u64>,
        /// Version to read, `None` for the latest.
        at_version: Option<Version>,
    },
    /// `stats`.
    Stats,
    /// `gc`.
    Gc {
        /// Committed versions to keep readable.
        retain_versions: u64,
    },
}

impl Action {
    /// Validates the arguments of a store command. Returns `None` for commands that do not
    /// touch the store (`config check`).
    ///
    /// # Errors
    ///
    /// A usage error for invalid collection names, keys, values or hex.
    pub fn from_command(command: &Command, format: ByteFormat) -> Result<Option<Self>, CliError> {
        let action = match command {
            Command::Config(ConfigCommand::Check) => return Ok(None),
            Command::Collections { all, action } => match action {
                None => Self::ListCollections { all: *all },
                Some(CollectionsCommand::List { all: list_all }) => Self::ListCollections {
                    all: *all || *list_all,
                },
                Some(CollectionsCommand::Create { name }) => {
                    Self::CreateCollection(collection_name(name)?)
                }
                Some(CollectionsCommand::Drop { name }) => {
                    Self::DropCollection(collection_name(name)?)
                }
            },
            Command::Put {
                collection,
                key,
                value,
                value_file,
            } => {
                let collection = collection_name(collection)?;
                let key = format.decode("KEY", key)?;
                let value = match (value, value_file) {
                    (Some(value), _) => format.decode("VALUE", value)?,
                    (None, Some(file)) => read_value_file(file)?,
                    (None, None) => return Err(CliError::usage("put needs VALUE or --value-file")),
                };
                check_user_key(&collection, &key)?;
                check_user_value(&collection, &key, &value)?;
                Self::Put {
                    collection,
                    key,
                    value,
                }
            }
            Command::Get {
                collection,
                key,
                at_version,
            } => {
                let collection = collection_name(collection)?;
                let key = format.decode("KEY", key)?;
                check_user_key(&collection, &key)?;
                Self::Get {
                    collection,
                    key,
                    at_version: *at_version,
                }
            }
            Command::Delete { collection, key } => {
                let collection = collection_name(collection)?;
                let key = format.decode("KEY", key)?;
                check_user_key(&collection, &key)?;
                Self::Delete { collection, key }
            }
            Command::Scan(args) => Self::scan(args, format)?,
            Command::Stats => Self::Stats,
            Command::Gc { retain_versions } => Self::Gc {
                retain_versions: *retain_versions,
            },
            Command::Backup(_) => {
                return Err(CliError::usage("`backup` is run by crate::backup::run"));
            }
            Command::Serve(_) | Command::Cluster(_) => {
                return Err(CliError::usage(
                    "`serve` and `cluster` are run by crate::cluster",
                ));
            }
            Command::Migrate(_) => {
                return Err(CliError::usage("`migrate` is run by crate::migrate::run"));
            }
            #[cfg(feature = "sim")]
            Command::Sim(_) => {
                return Err(CliError::usage("`sim` is run by crate::sim::run"));
            }
            Command::Dump(_) | Command::Load(_) => {
                return Err(CliError::usage("`dump` and `load` are run by crate::dump"));
            }
            Command::Rekey(_) => {
                return Err(CliError::usage("`rekey` is run by crate::rekey::run"));
            }
            Command::Verify(_) | Command::Inspect | Command::Compact => {
                return Err(CliError::usage(
                    "`verify`, `inspect` and `compact` are run by crate::ops::run",
                ));
            }
        };
        Ok(Some(action))
    }

    fn scan(args: &ScanArgs, format: ByteFormat) -> Result<Self, CliError> {
        let collection = collection_name(&args.collection)?;
        let decode = |what, arg: &Option<std::ffi::OsString>| {
            arg.as_deref().map(|a| format.decode(what, a)).transpose()
        };
        let range = if let Some(prefix) = decode("PREFIX", &args.prefix)? {
            KeyRange::prefix(&prefix)
        } else {
            let start = decode("FROM", &args.from)?.map_or(Bound::Unbounded, Bound::Included);
            let end = match (decode("TO", &args.to)?, decode("TO", &args.to_inclusive)?) {
                (Some(to), _) => Bound::Excluded(to),
                (None, Some(to)) => Bound::Included(to),
                (None, None) => Bound::Unbounded,
            };
            KeyRange::new(start, end)
        };
        Ok(Self::Scan {
            collection,
            range,
            direction: if args.reverse {
                Direction::Reverse
            } else {
                Direction::Forward
            },
            limit: args.limit,
            at_version: args.at_version,
        })
    }

    /// Whether the action changes the store.
    pub fn writes(&self) -> bool {
        matches!(
            self,
            Self::CreateCollection(_)
                | Self::DropCollection(_)
                | Self::Put { .. }
                | Self::Delete { .. }
                | Self::Gc { .. }
        )
    }

    /// The engine options this action opens the store with: background garbage collection
    /// off (`zstore gc` runs it explicitly), so every version stays readable until then.
    pub fn engine_options(&self) -> EngineOptions {
        EngineOptions {
            gc_interval: None,
            retain_versions: match self {
                Self::Gc { retain_versions } => *retain_versions,
                _ => 0,
            },
            ..EngineOptions::default()
        }
    }

    /// Runs the action against `engine` and prints its result. Every `put` and `delete` is
    /// one serializable write transaction committed with [`Durability::Synced`].
    ///
    /// # Errors
    ///
    /// The engine's error, a not-found error, or an output error.
    pub async fn run<W: Write>(
        self,
        engine: &Engine,
        printer: &mut Printer<W>,
    ) -> Result<(), CliError> {
        let format = printer.format;
        match self {
            Self::ListCollections { all } => {
                let names = if all {
                    engine.backend().list_collections().await?
                } else {
                    engine.collections()
                };
                if printer.json {
                    printer.json_line(&json!({ "collections": names }))?;
                } else {
                    for name in &names {
                        printer.text_line(name.as_str())?;
                    }
                }
            }
            Self::CreateCollection(name) => {
                let created = engine.create_collection(&name).await?;
                if printer.json {
                    printer.json_line(&json!({ "collection": name, "created": created }))?;
                } else if created {
                    printer.text_line(&format!("created collection `{name}`"))?;
                } else {
                    printer.text_line(&format!("collection `{name}` already exists"))?;
                }
            }
            Self::DropCollection(name) => {
                if !engine.drop_collection(&name).await? {
                    return Err(CliError::not_found(format!(
                        "collection `{name}` does not exist"
                    )));
                }
                if printer.json {
                    printer.json_line(&json!({ "collection": name, "dropped": true }))?;
                } else {
                    printer.text_line(&format!("dropped collection `{name}`"))?;
                }
            }
            Self::Put {
                collection,
                key,
                value,
            } => {
                let created = engine.create_collection(&collection).await?;
                let mut txn = engine.begin_write_with(WRITE_OPTIONS);
                txn.put(&collection, key.as_slice(), value)?;
                let commit = txn.commit().await?;
                if printer.json {
                    printer.json_line(&json!({
                        "collection": collection,
                        "key": format.json(&key),
                        "collection_created": created,
                        "version": commit.version,
                    }))?;
                } else {
                    printer.note(&format!("committed version {}", commit.version));
                }
            }
            Self::Get {
                collection,
                key,
                at_version,
            } => {
                let txn = begin_read(engine, at_version)?;
                let Some(value) = txn.get(&collection, &key).await? else {
                    return Err(CliError::not_found(format!(
                        "key {} in collection `{collection}`{}",
                        format.describe(&key),
                        at_version.map_or_else(String::new, |v| format!(" at version {v}"))
                    )));
                };
                if printer.json {
                    printer.json_line(&json!({
                        "collection": collection,
                        "key": format.json(&key),
                        "value": format.json(&value),
                        "version": txn.version(),
                    }))?;
                } else {
                    printer.out.write_all(&format.render(&value))?;
                    printer.out.write_all(b"\n")?;
                }
            }
            Self::Delete { collection, key } => {
                let mut txn = engine.begin_write_with(WRITE_OPTIONS);
                // A tracked read: under serializable isolation the commit fails if the key
                // changed since, so `existed` is exact.
                let existed = txn.get(&collection, &key).await?.is_some();
                if existed {
                    txn.delete(&collection, key.as_slice())?;
                }
                // Deleting an absent key writes nothing (no deletion marker), and the commit
                // reports the version it read.
                let commit = txn.commit().await?;
                if printer.json {
                    printer.json_line(&json!({
                        "collection": collection,
                        "key": format.json(&key),
                        "existed": existed,
                        "version": commit.version,
                    }))?;
                } else if commit.wrote {
                    printer.note(&format!("committed version {}", commit.version));
                } else {
                    printer.note(&format!(
                        "key {} is absent at version {}; nothing to delete",
                        format.describe(&key),
                        commit.version
                    ));
                }
            }
            Self::Scan {
                collection,
                range,
                direction,
                limit,
                at_version,
            } => {
                let txn = begin_read(engine, at_version)?;
                scan(&txn, printer, &collection, &range, direction, limit).await?;
            }
            Self::Stats => stats(engine, printer).await?,
            Self::Gc { .. } => {
                let report = engine.collect_garbage().await?;
                if printer.json {
                    printer.json_line(&report)?;
                } else {
                    printer.text_line(&format!("watermark: {}", report.watermark))?;
                    printer.text_line(&format!("versions_scanned: {}", report.versions_scanned))?;
                    printer.text_line(&format!("versions_removed: {}", report.versions_removed))?;
                    printer.text_line(&format!(
                        "tombstones_removed: {}",
                        report.tombstones_removed
                    ))?;
                }
            }
        }
        printer.flush()
    }
}

/// A read transaction at `at_version`, or at the latest version.
fn begin_read(engine: &Engine, at_version: Option<Version>) -> Result<ReadTransaction, CliError> {
    match at_version {
        Some(version) => Ok(engine.begin_read_at(version)?),
        None => Ok(engine.begin_read()),
    }
}

/// Refuses a key the transaction layer would refuse, before the store is opened.
fn check_user_key(collection: &CollectionName, key: &[u8]) -> Result<(), CliError> {
    let problem = if key.is_empty() {
        UserKeyProblem::Empty
    } else if key.len() > MAX_USER_KEY_LEN {
        UserKeyProblem::TooLong {
            len: key.len(),
            max: MAX_USER_KEY_LEN,
        }
    } else {
        return Ok(());
    };
    Err(TxnError::InvalidKey {
        collection: collection.clone(),
        problem,
    }
    .into())
}

/// Refuses a value the transaction layer would refuse, before the store is opened.
fn check_user_value(collection: &CollectionName, key: &[u8], value: &[u8]) -> Result<(), CliError> {
    let len = u64::try_from(value.len()).unwrap_or(u64::MAX);
    if len > MAX_USER_VALUE_LEN {
        return Err(TxnError::ValueTooLarge {
            collection: collection.clone(),
            key: KeyPreview::of(key),
            len,
            max: MAX_USER_VALUE_LEN,
        }
        .into());
    }
    Ok(())
}

/// One collection in `stats` output: the engine's version counts and the backend's figures.
#[derive(Debug, Serialize)]
struct CollectionReport {
    name: CollectionName,
    /// Keys whose newest version is a value.
    live_keys: u64,
    /// Stored versions, deletion markers included.
    versions: u64,
    /// Stored deletion markers.
    tombstones: u64,
    /// The backend's entry count (every stored version is one entry).
    backend_entries: u64,
    /// Whether `backend_entries` is exact.
    backend_entries_exact: bool,
    /// Bytes on disk, where the backend reports it per collection.
    disk_bytes: Option<u64>,
}

/// The whole `stats` output.
#[derive(Debug, Serialize)]
struct StatsReport {
    backend: BackendKind,
    disk_bytes: Option<u64>,
    latest_version: Version,
    oldest_readable_version: Version,
    oldest_active_version: Option<Version>,
    active_transactions: usize,
    tracked_commits: usize,
    collections: Vec<CollectionReport>,
    details: Vec<(String, u64)>,
    /// Metrics recorded by this zstore process only (see [`process_metrics`]).
    process_metrics: zcore_engine::metrics::Snapshot,
}

/// The in-process recorder `zstore` installs at start, so every command's metrics
/// ([`zcore_engine::metrics`]) can be shown; they count this process only.
pub fn process_metrics() -> &'static zcore_engine::metrics::SnapshotRecorder {
    static RECORDER: std::sync::LazyLock<zcore_engine::metrics::SnapshotRecorder> =
        std::sync::LazyLock::new(zcore_engine::metrics::SnapshotRecorder::new);
    &RECORDER
}

/// Installs [`process_metrics`] as the global metrics recorder (once; later calls do nothing).
pub fn install_process_metrics() {
    if metrics::set_global_recorder(process_metrics()).is_ok() {
        zcore_engine::metrics::describe();
    }
}

/// Backend details that are counters of this process (since the store was opened).
const PROCESS_DETAILS: [&str; 7] = [
    "sync_requests",
    "engine_syncs",
    "block_cache_hits",
    "block_cache_misses",
    "cache_read_hits",
    "cache_read_misses",
    "cache_evictions",
];

async fn stats<W: Write>(engine: &Engine, printer: &mut Printer<W>) -> Result<(), CliError> {
    let stats = engine.stats().await?;
    let backend = stats.backend;
    let mut collections = Vec::new();
    for c in backend
        .collections
        .into_iter()
        .filter(|c| !c.name.is_system())
    {
        let counts = engine.version_counts(&c.name).await?;
        collections.push(CollectionReport {
            name: c.name,
            live_keys: counts.live_keys,
            versions: counts.versions,
            tombstones: counts.tombstones,
            backend_entries: c.keys,
            backend_entries_exact: c.keys_exact,
            disk_bytes: c.disk_bytes,
        });
    }
    let report = StatsReport {
        backend: backend.backend,
        disk_bytes: backend.disk_bytes,
        latest_version: stats.latest_version,
        oldest_readable_version: stats.oldest_readable_version,
        oldest_active_version: stats.oldest_active_version,
        active_transactions: stats.active_transactions,
        tracked_commits: stats.tracked_commits,
        collections,
        details: backend.details,
        process_metrics: process_metrics().snapshot(),
    };
    if printer.json {
        return printer.json_line(&report);
    }
    let or_dash = |n: Option<u64>| n.map_or_else(|| "-".to_owned(), |n| n.to_string());
    printer.text_line(&format!("backend: {}", report.backend))?;
    let disk = report
        .disk_bytes
        .map_or_else(|| "none (in memory)".to_owned(), |b| b.to_string());
    printer.text_line(&format!("disk_bytes: {disk}"))?;
    printer.text_line(&format!("latest_version: {}", report.latest_version))?;
    printer.text_line(&format!(
        "oldest_readable_version: {}",
        report.oldest_readable_version
    ))?;
    printer.text_line(&format!(
        "oldest_active_version: {}",
        report
            .oldest_active_version
            .map_or_else(|| "none".to_owned(), |v| v.to_string())
    ))?;
    printer.text_line(&format!(
        "active_transactions: {}",
        report.active_transactions
    ))?;
    printer.text_line(&format!("tracked_commits: {}", report.tracked_commits))?;
    for c in &report.collections {
        let exact = if c.backend_entries_exact {
            "exact"
        } else {
            "approximate"
        };
        printer.text_line(&format!(
            "collection {}: live_keys={} versions={} tombstones={} backend_entries={} ({exact}) \
             disk_bytes={}",
            c.name,
            c.live_keys,
            c.versions,
            c.tombstones,
            c.backend_entries,
            or_dash(c.disk_bytes)
        ))?;
    }
    for (name, value) in &report.details {
        let scope = if PROCESS_DETAILS.contains(&name.as_str()) {
            " (this process)"
        } else {
            ""
        };
        printer.text_line(&format!("detail {name}: {value}{scope}"))?;
    }
    // Everything above is read from the store; what follows was counted by this zstore
    // process, which only opened the store and scanned it, so most figures are zero.
    printer.text_line(
        "metrics of this process (zcore_engine::metrics; zstore stats itself only opens \
         and scans the store, so commit, GC and sync figures are usually 0 here; a long-running \
         application exports them with its own recorder):",
    )?;
    let snapshot = &report.process_metrics;
    for &(name, kind, unit, _) in zcore_engine::metrics::ALL {
        let samples: Vec<_> = snapshot.iter().filter(|s| s.name == name).collect();
        if samples.is_empty() {
            let zero = match kind {
                zcore_engine::metrics::Kind::Histogram => "count=0".to_owned(),
                _ => "0".to_owned(),
            };
            printer.text_line(&format!("metric {name}: {zero} ({})", unit.as_str()))?;
        }
        for s in samples {
            let labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let labels = if labels.is_empty() {
                String::new()
            } else {
                format!("{{{}}}", labels.join(","))
            };
            let value = match &s.value {
                zcore_engine::metrics::Value::Counter { value } => value.to_string(),
                zcore_engine::metrics::Value::Gauge { value } => value.to_string(),
                zcore_engine::metrics::Value::Histogram {
                    count,
                    sum,
                    min,
                    max,
                } => format!("count={count} sum={sum} min={min} max={max}"),
            };
            printer.text_line(&format!(
                "metric {name}{labels}: {value} ({})",
                unit.as_str()
            ))?;
        }
    }
    Ok(())
}

/// Reads a value verbatim from `path`, or from stdin for `-`.
fn read_value_file(path: &Path) -> Result<Vec<u8>, CliError> {
    let result = if path == Path::new("-") {
        let mut value = Vec::new();
        std::io::stdin()
            .lock()
            .read_to_end(&mut value)
            .map(|_| value)
    } else {
        std::fs::read(path)
    };
    result.map_err(|e| CliError::usage(format!("cannot read --value-file {}: {e}", path.display())))
}

/// One scan entry in JSON output.
#[derive(Serialize)]
struct JsonEntry<'a> {
    key: EncodedBytes<'a>,
    value: EncodedBytes<'a>,
}

async fn scan<W: Write>(
    txn: &ReadTransaction,
    printer: &mut Printer<W>,
    collection: &CollectionName,
    range: &KeyRange,
    direction: Direction,
    limit: Option<u64>,
) -> Result<(), CliError> {
    let page_size = |remaining: Option<u64>| {
        remaining.map_or(SCAN_PAGE_SIZE, |r| {
            usize::try_from(r).map_or(SCAN_PAGE_SIZE, |r| r.min(SCAN_PAGE_SIZE))
        })
    };
    let format = printer.format;
    let mut remaining = limit;
    let mut request = ScanRequest {
        range: range.clone(),
        direction,
        limit: page_size(remaining),
    };
    let mut printed = 0u64;
    let mut started = false;
    loop {
        let page = txn.scan(collection, &request).await?;
        // The JSON array opens only once the first page was read, so a scan that fails at
        // once (unknown collection) prints nothing on stdout.
        if printer.json && !started {
            printer.out.write_all(b"[")?;
            started = true;
        }
        for (key, value) in &page.entries {
            if remaining == Some(0) {
                break;
            }
            if printer.json {
                printer
                    .out
                    .write_all(if printed == 0 { b"\n" } else { b",\n" })?;
                serde_json::to_writer(
                    &mut printer.out,
                    &JsonEntry {
                        key: format.json(key),
                        value: format.json(value),
                    },
                )?;
            } else {
                printer.out.write_all(&format.render(key))?;
                printer.out.write_all(b"\t")?;
                printer.out.write_all(&format.render(value))?;
                printer.out.write_all(b"\n")?;
            }
            printed += 1;
            remaining = remaining.map(|r| r.saturating_sub(1));
        }
        if remaining == Some(0) {
            break;
        }
        match request.next_page(&page) {
            Some(mut next) => {
                next.limit = page_size(remaining);
                request = next;
            }
            None => break,
        }
    }
    if printer.json {
        printer
            .out
            .write_all(if printed == 0 { b"]\n" } else { b"\n]\n" })?;
    }
    Ok(())
}
