//! The store operations of `zstore`: validated before the store is opened, then run against
//! an `Arc<dyn StorageBackend>` and printed.

use std::io::{Read, Write};
use std::ops::Bound;
use std::path::Path;

use serde::Serialize;
use serde_json::json;
use zcore_backends::LoadedConfig;
use zcore_engine::limits::{check_key, check_value};
use zcore_engine::{
    CollectionName, Direction, Durability, KeyRange, ScanRequest, StorageBackend, WriteBatch,
};

use crate::args::{CollectionsCommand, Command, ConfigCommand, ScanArgs};
use crate::bytes::{ByteFormat, EncodedBytes, collection_name};
use crate::error::CliError;

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

    fn json_line(&mut self, value: &impl Serialize) -> Result<(), CliError> {
        serde_json::to_writer(&mut self.out, value)?;
        self.out.write_all(b"\n")?;
        Ok(())
    }

    fn text_line(&mut self, line: &str) -> Result<(), CliError> {
        self.out.write_all(line.as_bytes())?;
        self.out.write_all(b"\n")?;
        Ok(())
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
    ListCollections,
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
    },
    /// `stats`.
    Stats,
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
            Command::Collections { action } => match action {
                None | Some(CollectionsCommand::List) => Self::ListCollections,
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
                check_key(&collection, &key)?;
                check_value(&collection, &key, &value)?;
                Self::Put {
                    collection,
                    key,
                    value,
                }
            }
            Command::Get { collection, key } => {
                let collection = collection_name(collection)?;
                let key = format.decode("KEY", key)?;
                check_key(&collection, &key)?;
                Self::Get { collection, key }
            }
            Command::Delete { collection, key } => {
                let collection = collection_name(collection)?;
                let key = format.decode("KEY", key)?;
                check_key(&collection, &key)?;
                Self::Delete { collection, key }
            }
            Command::Scan(args) => Self::scan(args, format)?,
            Command::Stats => Self::Stats,
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
        )
    }

    /// Runs the action and prints its result. Every write is [`Durability::Synced`].
    ///
    /// # Errors
    ///
    /// The backend's error, a not-found error, or an output error.
    pub async fn run<W: Write>(
        &self,
        backend: &dyn StorageBackend,
        printer: &mut Printer<W>,
    ) -> Result<(), CliError> {
        let format = printer.format;
        match self {
            Self::ListCollections => {
                let names = backend.list_collections().await?;
                if printer.json {
                    printer.json_line(&json!({ "collections": names }))?;
                } else {
                    for name in &names {
                        printer.text_line(name.as_str())?;
                    }
                }
            }
            Self::CreateCollection(name) => {
                let created = backend.create_collection(name).await?;
                if printer.json {
                    printer.json_line(&json!({ "collection": name, "created": created }))?;
                } else if created {
                    printer.text_line(&format!("created collection `{name}`"))?;
                } else {
                    printer.text_line(&format!("collection `{name}` already exists"))?;
                }
            }
            Self::DropCollection(name) => {
                if !backend.drop_collection(name).await? {
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
                let created = backend.create_collection(collection).await?;
                let mut batch = WriteBatch::with_capacity(1);
                batch.put(collection, key.clone(), value.clone());
                backend.write(batch, Durability::Synced).await?;
                if printer.json {
                    printer.json_line(&json!({
                        "collection": collection,
                        "key": format.json(key),
                        "collection_created": created,
                    }))?;
                }
            }
            Self::Get { collection, key } => {
                let Some(value) = backend.get(collection, key).await? else {
                    return Err(CliError::not_found(format!(
                        "key {} in collection `{collection}`",
                        format.describe(key)
                    )));
                };
                if printer.json {
                    printer.json_line(&json!({
                        "collection": collection,
                        "key": format.json(key),
                        "value": format.json(&value),
                    }))?;
                } else {
                    printer.out.write_all(&format.render(&value))?;
                    printer.out.write_all(b"\n")?;
                }
            }
            Self::Delete { collection, key } => {
                let existed = backend.get(collection, key).await?.is_some();
                let mut batch = WriteBatch::with_capacity(1);
                batch.delete(collection, key.clone());
                backend.write(batch, Durability::Synced).await?;
                if printer.json {
                    printer.json_line(&json!({
                        "collection": collection,
                        "key": format.json(key),
                        "existed": existed,
                    }))?;
                }
            }
            Self::Scan {
                collection,
                range,
                direction,
                limit,
            } => scan(backend, printer, collection, range, *direction, *limit).await?,
            Self::Stats => {
                let stats = backend.stats().await?;
                if printer.json {
                    printer.json_line(&stats)?;
                } else {
                    printer.text_line(&format!("backend: {}", stats.backend))?;
                    let disk = stats
                        .disk_bytes
                        .map_or_else(|| "none (in memory)".to_owned(), |b| b.to_string());
                    printer.text_line(&format!("disk_bytes: {disk}"))?;
                    for c in &stats.collections {
                        let exact = if c.keys_exact { "exact" } else { "approximate" };
                        let disk = c
                            .disk_bytes
                            .map_or_else(|| "-".to_owned(), |b| b.to_string());
                        printer.text_line(&format!(
                            "collection {}: keys={} ({exact}) disk_bytes={disk}",
                            c.name, c.keys
                        ))?;
                    }
                    for (name, value) in &stats.details {
                        printer.text_line(&format!("detail {name}: {value}"))?;
                    }
                }
            }
        }
        printer.flush()
    }
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
    backend: &dyn StorageBackend,
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
        let page = backend.scan(collection, &request).await?;
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
