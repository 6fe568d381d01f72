//! `zstore serve` and `zstore cluster …`: run a replica, and administer a running cluster.
//!
//! `serve` runs one node from a TOML file ([`zcore_cluster::NodeConfig`]) until Ctrl-C (or
//! SIGTERM). `cluster` subcommands connect to a running node (`--addr`); membership changes
//! are forwarded by that node to the leader.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};
use zcore_cluster::rpc::{self, ClientReply, ClientRequest, WireError};
use zcore_cluster::{
    ClusterNode, ClusterStatus, NodeConfig, NodeId, Outcome, Response, TcpTransport, Timeouts,
};

use crate::error::CliError;

/// `zstore serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Node configuration (TOML: node_id, listen, data_dir, backend, [bootstrap], [raft],
    /// [timeouts])
    #[arg(value_name = "NODE_TOML")]
    pub node_config: PathBuf,
}

/// `zstore cluster …`.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// Address of a running node (host:port)
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:7001")]
    pub addr: String,

    /// Give up after this many seconds
    #[arg(long, value_name = "SECONDS", default_value_t = 15)]
    pub timeout: u64,

    /// What to do
    #[command(subcommand)]
    pub command: ClusterCommand,
}

/// The `cluster` subcommands.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Initialize a new cluster with these voters (ID=HOST:PORT, including the node at --addr)
    Init {
        /// Voters, e.g. 1=127.0.0.1:7001 2=127.0.0.1:7002 3=127.0.0.1:7003
        #[arg(required = true, value_name = "ID=HOST:PORT")]
        members: Vec<String>,
    },
    /// Add a node as a learner; returns once it has caught up
    AddLearner {
        /// Its node id
        id: NodeId,
        /// Its address
        node_addr: String,
    },
    /// Make a learner a voter
    Promote {
        /// Its node id
        id: NodeId,
    },
    /// Remove a node (voter or learner) from the cluster
    Remove {
        /// Its node id
        id: NodeId,
    },
    /// Print the node's view of the cluster: role, term, leader, log, commit and applied
    /// index, members, replication lag per follower (on the leader)
    Status,
    /// Create a user collection on every replica (idempotent)
    CreateCollection {
        /// Collection name
        name: String,
    },
    /// Write KEY=VALUE in COLLECTION as one replicated transaction (sent to the leader by
    /// the node at --addr); prints the commit version on stderr
    Put {
        /// Collection name
        collection: String,
        /// Key (UTF-8)
        key: String,
        /// Value (UTF-8)
        value: String,
    },
    /// Remove KEY from COLLECTION as one replicated transaction
    Delete {
        /// Collection name
        collection: String,
        /// Key (UTF-8)
        key: String,
    },
    /// Print the value of KEY in COLLECTION as the node at --addr sees it: linearizable
    /// (confirmed with the leader) unless --stale (exit code 3 if missing)
    Get {
        /// Collection name
        collection: String,
        /// Key (UTF-8)
        key: String,
        /// Read the node's applied state without asking the leader
        #[arg(long)]
        stale: bool,
    },
}

fn member(spec: &str) -> Result<(NodeId, String), CliError> {
    let (id, addr) = spec
        .split_once('=')
        .ok_or_else(|| CliError::usage(format!("member {spec:?} is not ID=HOST:PORT")))?;
    let id: NodeId =
        id.parse().ok().filter(|id| *id != 0).ok_or_else(|| {
            CliError::usage(format!("{id:?} is not a node id (a positive integer)"))
        })?;
    if addr.is_empty() {
        return Err(CliError::usage(format!("member {spec:?} has no address")));
    }
    Ok((id, addr.to_owned()))
}

/// Runs `zstore serve` until interrupted.
pub async fn serve(args: &ServeArgs) -> Result<(), CliError> {
    let config = NodeConfig::load(&args.node_config).map_err(|e| CliError::usage(e.to_string()))?;
    let id = config.node_id;
    let node = ClusterNode::start(config, Arc::new(TcpTransport))
        .await
        .map_err(|e| CliError::runtime(format!("node {id}: {e}")))?;
    let _ = writeln!(
        std::io::stderr(),
        "zstore: node {id} serving on {} (Ctrl-C to stop)",
        node.addr()
    );
    shutdown_signal().await;
    let _ = writeln!(std::io::stderr(), "zstore: node {id} stopping");
    node.shutdown()
        .await
        .map_err(|e| CliError::runtime(format!("node {id}: {e}")))
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Runs one `zstore cluster` subcommand; prints the result (JSON with `json`).
pub async fn run(args: &ClusterArgs, json: bool) -> Result<(), CliError> {
    let request = match &args.command {
        ClusterCommand::Init { members } => {
            let members = members
                .iter()
                .map(|m| member(m))
                .collect::<Result<BTreeMap<_, _>, _>>()?;
            ClientRequest::Initialize { members }
        }
        ClusterCommand::AddLearner { id, node_addr } => ClientRequest::AddLearner {
            id: *id,
            addr: node_addr.clone(),
        },
        ClusterCommand::Promote { id } => ClientRequest::Promote { id: *id },
        ClusterCommand::Remove { id } => ClientRequest::Remove { id: *id },
        ClusterCommand::Status => ClientRequest::Status,
        ClusterCommand::CreateCollection { name } => {
            ClientRequest::CreateCollection { name: name.clone() }
        }
        ClusterCommand::Put {
            collection,
            key,
            value,
        } => ClientRequest::Put {
            collection: collection.clone(),
            key: key.clone().into_bytes(),
            value: Some(value.clone().into_bytes()),
        },
        ClusterCommand::Delete { collection, key } => ClientRequest::Put {
            collection: collection.clone(),
            key: key.clone().into_bytes(),
            value: None,
        },
        ClusterCommand::Get {
            collection,
            key,
            stale,
        } => ClientRequest::Get {
            collection: collection.clone(),
            key: key.clone().into_bytes(),
            stale: *stale,
        },
    };
    let timeout = Duration::from_secs(args.timeout.max(1));
    let timeouts = Timeouts {
        request: timeout,
        ..Timeouts::default()
    };
    let deadline = tokio::time::Instant::now() + timeout;
    let mut addr = args.addr.clone();
    // Follow "not the leader" answers to the leader, a bounded number of times.
    for _ in 0..5 {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let reply = rpc::call_client(&TcpTransport, &addr, request.clone(), &timeouts, left)
            .await
            .map_err(|e| CliError::runtime(e.to_string()))?;
        match reply {
            Ok(ClientReply::Status(status)) => return print_status(&status, json),
            Ok(ClientReply::Response(response)) => return print_response(&response, json),
            Ok(ClientReply::Value { version, value }) => {
                return print_value(&args.command, version, value.as_deref(), json);
            }
            Ok(_) => {
                if json {
                    println!("{{\"ok\":true}}");
                } else {
                    let _ = writeln!(std::io::stderr(), "zstore: done");
                }
                return Ok(());
            }
            Err(WireError::NotLeader {
                leader: Some((_, leader)),
            }) if leader != addr => addr = leader,
            Err(WireError::Invalid(m)) => return Err(CliError::usage(m)),
            // As a local `get` of an unknown collection: exit 3.
            Err(WireError::NotFound(m)) => return Err(CliError::not_found(m)),
            Err(e) => return Err(CliError::runtime(e.to_string())),
        }
    }
    Err(CliError::runtime(
        "the leader kept changing; try again".to_owned(),
    ))
}

fn print_response(response: &Response, json: bool) -> Result<(), CliError> {
    match &response.outcome {
        Outcome::Committed { version } => {
            if json {
                println!("{{\"version\":{version}}}");
            } else {
                let _ = writeln!(std::io::stderr(), "zstore: committed at version {version}");
            }
            Ok(())
        }
        Outcome::Conflict { message } => Err(CliError::runtime(format!("conflict: {message}"))),
        Outcome::Rejected { message } => Err(CliError::usage(message.clone())),
        Outcome::Stale | Outcome::Batch(_) => Err(CliError::runtime(format!(
            "unexpected outcome {:?}",
            response.outcome
        ))),
    }
}

fn print_value(
    command: &ClusterCommand,
    version: u64,
    value: Option<&[u8]>,
    json: bool,
) -> Result<(), CliError> {
    let Some(value) = value else {
        let what = match command {
            ClusterCommand::Get {
                collection, key, ..
            } => format!("key {key:?} in collection `{collection}`"),
            _ => "the key".to_owned(),
        };
        return Err(CliError::not_found(format!(
            "{what} (at version {version})"
        )));
    };
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer(
            &mut out,
            &serde_json::json!({
                "version": version,
                "value": String::from_utf8_lossy(value),
            }),
        )?;
        writeln!(out)?;
    } else {
        out.write_all(value)?;
        writeln!(out)?;
    }
    Ok(())
}

fn print_status(status: &ClusterStatus, json: bool) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer(&mut out, status)?;
        writeln!(out)?;
        return Ok(());
    }
    let opt = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
    writeln!(out, "node       {}", status.id)?;
    writeln!(out, "role       {}", status.role)?;
    writeln!(out, "term       {}", status.term)?;
    writeln!(out, "leader     {}", opt(status.leader))?;
    writeln!(out, "last log   {}", opt(status.last_log_index))?;
    writeln!(out, "committed  {}", opt(status.committed_index))?;
    writeln!(out, "applied    {}", opt(status.applied_index))?;
    writeln!(out, "snapshot   {}", opt(status.snapshot_index))?;
    for (id, addr) in &status.nodes {
        let role = if status.voters.contains(id) {
            "voter"
        } else {
            "learner"
        };
        let lag = status
            .replication
            .get(id)
            .map(|r| format!("  matched {} lag {}", opt(r.matched), r.lag))
            .unwrap_or_default();
        writeln!(out, "member     {id} {addr} {role}{lag}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_specs() {
        assert!(matches!(member("1=127.0.0.1:7001"), Ok((1, a)) if a == "127.0.0.1:7001"));
        assert!(member("0=x").is_err());
        assert!(member("x=y").is_err());
        assert!(member("1=").is_err());
        assert!(member("1").is_err());
    }
}
