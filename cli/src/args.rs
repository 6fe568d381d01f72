//! Command-line syntax of `zstore` (clap derive).

use std::ffi::OsString;
use std::path::PathBuf;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand};
use zcore_backends::config::parse_byte_size;
use zcore_backends::{BackendName, ConfigOverrides};

const AFTER_HELP: &str = "\
Configuration layers (each overrides the one before):
  defaults -> TOML file (--config or ZDB_CONFIG) -> environment -> flags.
  Default: the fjall backend with its store at ./data/zcore.fjall.

Environment:
  ZDB_CONFIG      TOML configuration file (--config wins)
  ZDB_BACKEND     fjall | redb | memory
  ZDB_DATA        root data directory (default ./data); the store is
                  <dir>/zcore.fjall or <dir>/zcore.redb
  ZDB_PATH        explicit store location (fjall directory or redb file)
  ZDB_CACHE_SIZE  cache size of the selected backend, bytes (or KiB/MiB/GiB)
  ZDB_ENCRYPTION_KEY_FILE  encryption key file (--key-file wins)
  ZDB_ENCRYPTION_KEY_ENV   name of a variable holding the hex key(s)
  ZDB_ENCRYPTION_ENCRYPT_EXISTING  true: start encrypting a plain store
  RUST_LOG        log filter for stderr logging (default: warn)
  Empty variables count as unset. `zstore config check` shows where each
  setting came from.

Keys and values are UTF-8 text unless --hex is given; --hex applies to every
key, value, prefix and bound, on input and on output. The memory backend
starts empty on every run and discards its data when zstore exits.

Transactions and versions:
  Every put and delete is one transaction, synced to disk before zstore
  exits; it prints the version it committed (on stderr, or as \"version\" with
  --json). `get` and `scan` read the latest version, or with --at-version V
  the store as it was at version V, as long as V is still retained: `zstore
  gc` removes versions no reader needs and raises the oldest readable
  version. `zstore stats` shows the latest and oldest readable versions.

Exit codes:
  0  success
  1  runtime error (the store cannot be opened, I/O or engine failure,
     corrupted data, a transaction conflict)
  2  usage or configuration error (bad flags, bad config, invalid collection
     name, empty or oversized key or value, invalid hex, an --at-version that
     is not committed yet or no longer retained)
  3  not found (get of a missing key; a collection that does not exist)";

/// zstore: inspect and edit a zcore-storage store from the command line.
#[derive(Debug, Parser)]
#[command(name = "zstore", version, after_help = AFTER_HELP)]
pub struct Cli {
    /// Options shared by every subcommand.
    #[command(flatten)]
    pub global: GlobalArgs,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options accepted before or after any subcommand.
#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// TOML configuration file [default: $ZDB_CONFIG, else none]
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Storage backend [default: $ZDB_BACKEND, else the file, else fjall]
    #[arg(
        long,
        global = true,
        value_name = "NAME",
        value_parser = PossibleValuesParser::new(BackendName::NAMES)
            .try_map(|name| name.parse::<BackendName>())
    )]
    pub backend: Option<BackendName>,

    /// Root data directory [default: $ZDB_DATA, else the file, else ./data]
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Explicit store location (fjall directory or redb file) instead of the one under the
    /// data directory [default: $ZDB_PATH, else the file]
    #[arg(long, global = true, value_name = "PATH")]
    pub path: Option<PathBuf>,

    /// Cache size of the selected backend in bytes (or with a KiB/MiB/GiB suffix)
    #[arg(long, global = true, value_name = "BYTES", value_parser = parse_byte_size)]
    pub cache_size: Option<u64>,

    /// Encryption key file (raw 32 bytes, 64 hex digits, or `<id>:<hex>` lines) [default:
    /// $ZDB_ENCRYPTION_KEY_FILE, else the file's [encryption] key_file]
    #[arg(long, global = true, value_name = "FILE")]
    pub key_file: Option<PathBuf>,

    /// Keys, values, prefixes and bounds are hex on input and on output
    #[arg(long, global = true)]
    pub hex: bool,

    /// Machine-readable JSON output on stdout. Byte strings are objects
    /// {"encoding": "utf8" | "hex", "data": "..."}: "utf8" when the bytes are valid UTF-8
    /// (and --hex is not given), "hex" otherwise
    #[arg(long, global = true)]
    pub json: bool,
}

impl GlobalArgs {
    /// The configuration overrides these flags ask for.
    pub fn overrides(&self) -> ConfigOverrides {
        ConfigOverrides {
            config_file: self.config.clone(),
            backend: self.backend,
            data_dir: self.data_dir.clone(),
            path: self.path.clone(),
            cache_size_bytes: self.cache_size,
            key_file: self.key_file.clone(),
        }
    }
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Inspect the configuration
    #[command(subcommand)]
    Config(ConfigCommand),

    /// List collections; `create` and `drop` them
    #[command(args_conflicts_with_subcommands = true)]
    Collections {
        /// Also list zcore-storage's own system collections (`__meta`, …); as `collections
        /// list --all`
        #[arg(long)]
        all: bool,

        /// Without a subcommand: list the user collections
        #[command(subcommand)]
        action: Option<CollectionsCommand>,
    },

    /// Set KEY to VALUE in COLLECTION (creates COLLECTION if it does not exist), in one
    /// transaction synced to disk before zstore exits; prints the commit version on stderr
    Put {
        /// Collection name (ASCII letters, digits, '_', '-', '.'; not starting with "__")
        collection: OsString,
        /// Key (1..=32762 bytes)
        key: OsString,
        /// Value (or use --value-file)
        #[arg(required_unless_present = "value_file", conflicts_with = "value_file")]
        value: Option<OsString>,
        /// Read the value verbatim from FILE instead (`-` for stdin; never hex-decoded). For
        /// values too large or too binary for the command line
        #[arg(long, value_name = "FILE")]
        value_file: Option<PathBuf>,
    },

    /// Print the value of KEY in COLLECTION (exit code 3 if the key or collection is missing)
    Get {
        /// Collection name
        collection: OsString,
        /// Key
        key: OsString,
        /// Read the value KEY had at committed version VERSION (time travel)
        #[arg(long, value_name = "VERSION")]
        at_version: Option<u64>,
    },

    /// Remove KEY from COLLECTION, in one transaction synced to disk before zstore exits;
    /// prints the commit version on stderr (removing an absent key succeeds and commits
    /// nothing; a missing collection is exit code 3)
    Delete {
        /// Collection name
        collection: OsString,
        /// Key
        key: OsString,
    },

    /// Print the entries of COLLECTION in key order, one `KEY<TAB>VALUE` line each
    /// (a JSON array with --json)
    Scan(ScanArgs),

    /// Print statistics: backend, disk use, versions (latest, oldest readable, oldest
    /// active), and per user collection the live keys, stored versions and deletion markers
    /// (counted by a full scan of each collection)
    Stats,

    /// Run garbage collection: remove the versions no reader can see any more (superseded
    /// values and deletion markers) and print what was removed. Versions older than the new
    /// oldest readable version can no longer be read with --at-version
    Gc {
        /// Keep the last N committed versions readable with --at-version
        #[arg(long, value_name = "N", default_value_t = 0)]
        retain_versions: u64,
    },

    /// Back up the store while it stays usable, inspect and verify backups, restore one
    /// (also as of an earlier version) into an empty store
    #[command(subcommand)]
    Backup(crate::backup::BackupCommand),

    /// Run one node of a replicated cluster from a node configuration file (TOML) until
    /// Ctrl-C; the global store flags do not apply
    Serve(crate::cluster::ServeArgs),

    /// Administer a running cluster through one of its nodes: init, add-learner, promote,
    /// remove, status
    Cluster(crate::cluster::ClusterArgs),

    /// Copy a store into another (any two backends; latest snapshot or --history), or import
    /// a plain redb file (redb-file:FILE); verified, resumable; the global store flags do not
    /// apply
    Migrate(crate::migrate::MigrateArgs),

    /// Write every live key of some or all collections at one version as a logical dump:
    /// JSON lines (keys and values in hex) or the compact binary form, to stdout or a file
    Dump(crate::dump::DumpArgs),

    /// Load a dump (either form) into the configured store in batches; refuses collections
    /// that already hold data unless --overwrite
    Load(crate::dump::LoadArgs),

    /// Encrypted stores: reseal every stored version with the newest configured key, online
    /// and in batches, then record that older key ids are no longer used (they can then be
    /// removed from the key file)
    Rekey(crate::rekey::RekeyArgs),

    /// Check the whole store online at one snapshot: every stored version's checksum and key
    /// structure, the metadata and sequence records, and the backend's own integrity check
    /// (redb); prints counts and the first problems with collection, key (hex) and version.
    /// Exit code 1 if anything is wrong
    Verify(crate::ops::VerifyArgs),

    /// Deterministic cluster simulator: run one seed, sweep seed ranges, reproduce a failing
    /// seed against its stored trace (Raft + engine on turmoil under seeded faults)
    #[cfg(feature = "sim")]
    Sim(crate::sim::SimArgs),

    /// Print collections (live keys, keys, versions, deletion markers, sizes), the versions
    /// and GC watermark, retention, sequence heads and the backend's own figures
    Inspect,

    /// Remove every version no reader needs (a GC sweep), then run the backend's compaction
    /// (fjall major compaction, redb compact); refused while a transaction or savepoint
    /// pins versions (exit code 1)
    Compact,
}

/// `zstore config …`
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check the configuration and print every effective setting with where it came from
    /// (exit code 2 if the configuration is invalid). Does not open the store
    Check,
}

/// `zstore collections …`
#[derive(Debug, Subcommand)]
pub enum CollectionsCommand {
    /// List the user collections in name order (the default)
    List {
        /// Also list zcore-storage's own system collections (`__meta`, …)
        #[arg(long)]
        all: bool,
    },
    /// Create a collection (succeeds if it already exists)
    Create {
        /// Collection name
        name: OsString,
    },
    /// Drop a collection and all its entries (exit code 3 if it does not exist)
    Drop {
        /// Collection name
        name: OsString,
    },
}

/// `zstore scan …`
#[derive(Debug, Args)]
pub struct ScanArgs {
    /// Collection name
    pub collection: OsString,

    /// Only keys starting with PREFIX
    #[arg(long, value_name = "PREFIX", conflicts_with_all = ["from", "to", "to_inclusive"])]
    pub prefix: Option<OsString>,

    /// Only keys >= FROM
    #[arg(long, value_name = "FROM")]
    pub from: Option<OsString>,

    /// Only keys < TO (half-open range)
    #[arg(long, value_name = "TO", conflicts_with = "to_inclusive")]
    pub to: Option<OsString>,

    /// Only keys <= TO (inclusive range)
    #[arg(long, value_name = "TO")]
    pub to_inclusive: Option<OsString>,

    /// Stop after N entries
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,

    /// Descending key order
    #[arg(long)]
    pub reverse: bool,

    /// Scan the store as it was at committed version VERSION (time travel)
    #[arg(long, value_name = "VERSION")]
    pub at_version: Option<u64>,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn documented_key_limit_is_the_engines() {
        assert_eq!(zcore_engine::mvcc::MAX_USER_KEY_LEN, 32_762);
        let help = Cli::command()
            .find_subcommand_mut("put")
            .map(|c| c.render_help().to_string())
            .unwrap_or_default();
        assert!(help.contains("1..=32762 bytes"), "{help}");
    }
}
