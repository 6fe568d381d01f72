//! Configuration of one node (`zstore serve --config node.toml`).
//!
//! ```toml
//! node_id = 1
//! listen = "127.0.0.1:7001"        # address to bind
//! # advertise = "10.0.0.1:7001"    # address other nodes use; default: listen
//! data_dir = "./node1"              # store under <data_dir>/zcore.fjall|zcore.redb, snapshots
//! backend = "fjall"                 # fjall | redb | memory
//!
//! # Optional: the node that bootstraps a new cluster with these voters (on one node only;
//! # ignored once the cluster is initialized).
//! [bootstrap]
//! 1 = "127.0.0.1:7001"
//! 2 = "127.0.0.1:7002"
//! 3 = "127.0.0.1:7003"
//!
//! [raft]                            # all optional
//! heartbeat_ms = 100
//! election_timeout_min_ms = 400
//! election_timeout_max_ms = 800
//! snapshot_after_logs = 10000       # build a snapshot after this many new entries
//! logs_kept_after_snapshot = 1000
//!
//! [timeouts]                        # all optional, milliseconds
//! connect_ms = 2000
//! rpc_ms = 5000
//! idle_ms = 60000
//! request_ms = 15000
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use zcore_backends::{BackendConfig, BackendName, FjallOptions, MemoryOptions, RedbOptions};

use crate::transport::Timeouts;
use crate::types::NodeId;

/// Raft timing and log compaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RaftSettings {
    /// Leader heartbeat interval.
    pub heartbeat_ms: u64,
    /// Lower bound of the randomized election timeout.
    pub election_timeout_min_ms: u64,
    /// Upper bound of the randomized election timeout.
    pub election_timeout_max_ms: u64,
    /// Build a snapshot after this many entries since the last one.
    pub snapshot_after_logs: u64,
    /// Log entries kept behind a snapshot (for followers that are only a little behind).
    pub logs_kept_after_snapshot: u64,
}

impl Default for RaftSettings {
    fn default() -> Self {
        Self {
            heartbeat_ms: 100,
            election_timeout_min_ms: 400,
            election_timeout_max_ms: 800,
            snapshot_after_logs: 10_000,
            logs_kept_after_snapshot: 1_000,
        }
    }
}

/// Timeouts in milliseconds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimeoutSettings {
    /// Connect.
    pub connect_ms: u64,
    /// One RPC round trip.
    pub rpc_ms: u64,
    /// Idle server connections are closed after this long.
    pub idle_ms: u64,
    /// A client request, retries included.
    pub request_ms: u64,
}

impl Default for TimeoutSettings {
    fn default() -> Self {
        let t = Timeouts::default();
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Self {
            connect_ms: ms(t.connect),
            rpc_ms: ms(t.rpc),
            idle_ms: ms(t.idle),
            request_ms: ms(t.request),
        }
    }
}

impl TimeoutSettings {
    /// As [`Timeouts`].
    #[must_use]
    pub fn timeouts(&self) -> Timeouts {
        Timeouts {
            connect: Duration::from_millis(self.connect_ms),
            rpc: Duration::from_millis(self.rpc_ms),
            idle: Duration::from_millis(self.idle_ms),
            request: Duration::from_millis(self.request_ms),
        }
    }
}

/// One node's configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// This node's id (unique in the cluster, not 0).
    pub node_id: NodeId,
    /// Address to listen on (`host:port`; port 0 picks a free one).
    pub listen: String,
    /// Address other nodes and clients use; default: the bound listen address.
    #[serde(default)]
    pub advertise: Option<String>,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Storage backend.
    #[serde(default)]
    pub backend: BackendName,
    /// Voters to initialize a new cluster with (node id → address), on one node only.
    #[serde(default)]
    pub bootstrap: BTreeMap<String, String>,
    /// Raft settings.
    #[serde(default)]
    pub raft: RaftSettings,
    /// Timeouts.
    #[serde(default)]
    pub timeouts: TimeoutSettings,
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML for a node configuration.
    #[error("invalid node configuration {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong (with line and column).
        message: String,
    },
    /// A value is out of range or inconsistent.
    #[error("invalid node configuration: {0}")]
    Invalid(String),
}

impl NodeConfig {
    /// A configuration with defaults for everything but the essentials.
    #[must_use]
    pub fn new(node_id: NodeId, listen: impl Into<String>, data_dir: impl Into<PathBuf>) -> Self {
        Self {
            node_id,
            listen: listen.into(),
            advertise: None,
            data_dir: data_dir.into(),
            backend: BackendName::Fjall,
            bootstrap: BTreeMap::new(),
            raft: RaftSettings::default(),
            timeouts: TimeoutSettings::default(),
        }
    }

    /// Reads and validates a TOML file. Relative `data_dir` is resolved against the file's
    /// directory.
    ///
    /// # Errors
    ///
    /// [`ConfigError`].
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config: Self = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        if config.data_dir.is_relative()
            && let Some(dir) = path.parent()
        {
            config.data_dir = dir.join(&config.data_dir);
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks ranges and consistency.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.node_id == 0 {
            return bad("node_id must not be 0".to_owned());
        }
        let r = &self.raft;
        if r.heartbeat_ms == 0 || r.election_timeout_min_ms <= r.heartbeat_ms {
            return bad(format!(
                "raft.election_timeout_min_ms ({}) must exceed raft.heartbeat_ms ({}) > 0",
                r.election_timeout_min_ms, r.heartbeat_ms
            ));
        }
        if r.election_timeout_max_ms <= r.election_timeout_min_ms {
            return bad("raft.election_timeout_max_ms must exceed the minimum".to_owned());
        }
        let t = &self.timeouts;
        if t.connect_ms == 0 || t.rpc_ms == 0 || t.idle_ms == 0 || t.request_ms == 0 {
            return bad("timeouts must be positive".to_owned());
        }
        let members = self.bootstrap_members()?;
        if !members.is_empty() && !members.contains_key(&self.node_id) {
            return bad(format!(
                "[bootstrap] does not list this node ({})",
                self.node_id
            ));
        }
        Ok(())
    }

    /// `[bootstrap]` with parsed node ids.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] for a key that is not a node id.
    pub fn bootstrap_members(&self) -> Result<BTreeMap<NodeId, String>, ConfigError> {
        self.bootstrap
            .iter()
            .map(|(k, v)| match k.parse::<NodeId>() {
                Ok(id) if id != 0 => Ok((id, v.clone())),
                _ => Err(ConfigError::Invalid(format!(
                    "[bootstrap] key {k:?} is not a node id (a positive integer)"
                ))),
            })
            .collect()
    }

    /// The backend to open.
    #[must_use]
    pub fn backend_config(&self) -> BackendConfig {
        match self.backend {
            BackendName::Fjall => BackendConfig::Fjall {
                path: self.data_dir.join(zcore_backends::config::FJALL_STORE_NAME),
                fjall: FjallOptions::default(),
            },
            BackendName::Redb => BackendConfig::Redb {
                path: self.data_dir.join(zcore_backends::config::REDB_STORE_NAME),
                redb: RedbOptions::default(),
            },
            BackendName::Memory => BackendConfig::Memory {
                memory: MemoryOptions::default(),
            },
        }
    }

    /// Where snapshot files live.
    #[must_use]
    pub fn snapshot_dir(&self) -> PathBuf {
        self.data_dir.join("snapshots")
    }

    /// openraft's configuration.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] if openraft refuses it.
    pub fn raft_config(&self) -> Result<openraft::Config, ConfigError> {
        let r = &self.raft;
        let config = openraft::Config {
            cluster_name: "zcore".to_owned(),
            heartbeat_interval: r.heartbeat_ms,
            election_timeout_min: r.election_timeout_min_ms,
            election_timeout_max: r.election_timeout_max_ms,
            install_snapshot_timeout: self.timeouts.rpc_ms,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(r.snapshot_after_logs.max(1)),
            max_in_snapshot_log_to_keep: r.logs_kept_after_snapshot,
            ..openraft::Config::default()
        };
        config
            .validate()
            .map_err(|e| ConfigError::Invalid(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_the_documented_example_and_refuses_unknown_keys() {
        let text = r#"
node_id = 1
listen = "127.0.0.1:7001"
data_dir = "./node1"
backend = "redb"
[bootstrap]
1 = "127.0.0.1:7001"
2 = "127.0.0.1:7002"
[raft]
heartbeat_ms = 50
"#;
        let c: NodeConfig = toml::from_str(text).unwrap();
        c.validate().unwrap();
        assert_eq!(c.backend, BackendName::Redb);
        assert_eq!(c.bootstrap_members().unwrap().len(), 2);
        assert_eq!(c.raft.heartbeat_ms, 50);
        assert!(c.raft_config().is_ok());
        let bad = format!("{text}\nnonsense = 1\n");
        assert!(toml::from_str::<NodeConfig>(&bad).is_err());
        let mut c2 = c.clone();
        c2.bootstrap.insert("x".into(), "a".into());
        assert!(c2.validate().is_err());
        let mut c3 = c;
        c3.node_id = 9;
        assert!(c3.validate().is_err(), "bootstrap without this node");
    }
}
