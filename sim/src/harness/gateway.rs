//! The workload gateway: how simulated clients reach the cluster's public API over simulated
//! TCP.
//!
//! Every node host runs a small server on [`GATEWAY_PORT`] that executes one operation per
//! request through [`ClusterNode`]'s public API (`begin_read`, `begin_write_from`, `put`,
//! `commit`, ...), exactly as an application embedding a node would. Clients (turmoil clients,
//! never crashed) connect over turmoil TCP with a timeout, send one framed request and wait for
//! the answer with the operation timeout; a lost answer is recorded as `info`.
//!
//! Framing: a big-endian `u32` length, then the postcard encoding.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use zcore_cluster::{ClusterError, ClusterNode, ReadConsistency};
use zcore_engine::{CollectionName, WriteOptions};

use crate::history::{Mop, Op};

/// The gateway's port on every node host.
pub const GATEWAY_PORT: u16 = 9000;
/// Largest frame either side accepts.
const MAX_FRAME: u32 = 1 << 20;

/// Register collection.
pub const REGISTERS: &str = "reg";
/// List-append collection.
pub const LISTS: &str = "list";
/// Bank collection.
pub const BANK: &str = "bank";

/// A client request.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum GwRequest {
    /// Create the workload collections and the bank accounts (idempotent).
    Setup {
        /// Accounts `0..accounts`.
        accounts: u64,
        /// Each account's initial balance.
        initial: u64,
    },
    /// A history operation: register read/write or a transaction of micro-ops.
    Op(Op),
    /// Move `amount` from `from` to `to` if `from` has it (one serializable transaction);
    /// answers the balances read and written.
    Transfer {
        /// Source account.
        from: u64,
        /// Destination account.
        to: u64,
        /// Amount.
        amount: u64,
    },
    /// Read every account in one transaction (linearizable read point).
    BankRead {
        /// Accounts `0..accounts`.
        accounts: u64,
    },
}

/// The answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum GwResponse {
    /// Done; the op as completed (read values filled in).
    Ok(Op),
    /// Setup finished.
    SetupDone,
    /// Transfer done: balances (from, to) read, and whether money moved.
    Transferred {
        /// Balances read.
        read: (u64, u64),
        /// Whether the transfer was applied (false: insufficient funds, nothing written).
        moved: bool,
    },
    /// Balances of every account.
    Balances(Vec<u64>),
    /// Definitely not applied.
    Fail(String),
    /// Unknown outcome.
    Info(String),
}

/// Writes one frame.
///
/// # Errors
///
/// I/O errors; encoding errors as `InvalidData`.
pub async fn write_frame<W: AsyncWrite + Unpin, T: Serialize>(
    w: &mut W,
    value: &T,
) -> std::io::Result<()> {
    let bytes = postcard::to_allocvec(value).map_err(std::io::Error::other)?;
    let len = u32::try_from(bytes.len()).map_err(std::io::Error::other)?;
    w.write_all(&len.to_be_bytes()).await?;
    w.write_all(&bytes).await?;
    w.flush().await
}

/// Reads one frame; `None` at a clean end of stream.
///
/// # Errors
///
/// I/O errors, oversized or undecodable frames.
pub async fn read_frame<R: AsyncRead + Unpin, T: serde::de::DeserializeOwned>(
    r: &mut R,
) -> std::io::Result<Option<T>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len);
    if len > MAX_FRAME {
        return Err(std::io::Error::other(format!("frame of {len} bytes")));
    }
    let mut buf = vec![0u8; len as usize];
    r.read_exact(&mut buf).await?;
    postcard::from_bytes(&buf)
        .map(Some)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// Register keys as engine keys.
#[must_use]
pub fn key_bytes(key: u64) -> Vec<u8> {
    format!("k{key:06}").into_bytes()
}

fn decode_u64(bytes: &[u8]) -> Result<u64, String> {
    <[u8; 8]>::try_from(bytes)
        .map(u64::from_be_bytes)
        .map_err(|_| format!("a register value of {} bytes", bytes.len()))
}

fn decode_list(bytes: &[u8]) -> Result<Vec<u64>, String> {
    if !bytes.len().is_multiple_of(8) {
        return Err(format!("a list value of {} bytes", bytes.len()));
    }
    Ok(bytes
        .chunks_exact(8)
        .map(|c| {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            u64::from_be_bytes(b)
        })
        .collect())
}

fn encode_list(list: &[u64]) -> Vec<u8> {
    list.iter().flat_map(|v| v.to_be_bytes()).collect()
}

fn coll(name: &str) -> Result<CollectionName, String> {
    CollectionName::new(name).map_err(|e| e.to_string())
}

/// How a failed call is recorded: reads never take effect; a commit that may have been
/// proposed is unknown.
fn classify(e: &ClusterError, wrote: bool) -> GwResponse {
    match e {
        ClusterError::Conflict(_)
        | ClusterError::Rejected(_)
        | ClusterError::Unavailable { .. } => GwResponse::Fail(e.to_string()),
        _ if !wrote => GwResponse::Fail(e.to_string()),
        _ => GwResponse::Info(e.to_string()),
    }
}

/// Errors before the commit was sent never take effect.
fn before_commit(e: impl std::fmt::Display) -> GwResponse {
    GwResponse::Fail(e.to_string())
}

/// Executes one request on `node`.
pub async fn execute(node: &ClusterNode, request: GwRequest) -> GwResponse {
    match request {
        GwRequest::Setup { accounts, initial } => setup(node, accounts, initial).await,
        GwRequest::Op(Op::Read { key, .. }) => {
            let result = async {
                let reg = coll(REGISTERS)?;
                let txn = node
                    .begin_read(ReadConsistency::Linearizable)
                    .await
                    .map_err(|e| e.to_string())?;
                let value = txn
                    .get(&reg, &key_bytes(key))
                    .await
                    .map_err(|e| e.to_string())?;
                value.map(|v| decode_u64(&v)).transpose()
            };
            match result.await {
                Ok(value) => GwResponse::Ok(Op::Read { key, value }),
                Err(e) => GwResponse::Fail(e),
            }
        }
        GwRequest::Op(Op::Write { key, value }) => {
            let reg = match coll(REGISTERS) {
                Ok(c) => c,
                Err(e) => return GwResponse::Fail(e),
            };
            let mut txn = match node
                .begin_write_from(WriteOptions::default(), ReadConsistency::Stale)
                .await
            {
                Ok(t) => t,
                Err(e) => return before_commit(e),
            };
            if let Err(e) = txn.put(&reg, key_bytes(key), value.to_be_bytes().to_vec()) {
                return before_commit(e);
            }
            match node.commit(txn).await {
                Ok(_) => GwResponse::Ok(Op::Write { key, value }),
                Err(e) => classify(&e, true),
            }
        }
        GwRequest::Op(Op::Txn(mops)) => list_txn(node, mops).await,
        GwRequest::Transfer { from, to, amount } => transfer(node, from, to, amount).await,
        GwRequest::BankRead { accounts } => {
            let result = async {
                let bank = coll(BANK)?;
                let txn = node
                    .begin_read(ReadConsistency::Linearizable)
                    .await
                    .map_err(|e| e.to_string())?;
                let mut balances = Vec::new();
                for a in 0..accounts {
                    let v = txn
                        .get(&bank, &key_bytes(a))
                        .await
                        .map_err(|e| e.to_string())?;
                    balances.push(v.map(|v| decode_u64(&v)).transpose()?.unwrap_or(0));
                }
                Ok::<_, String>(balances)
            };
            match result.await {
                Ok(b) => GwResponse::Balances(b),
                Err(e) => GwResponse::Fail(e),
            }
        }
    }
}

async fn setup(node: &ClusterNode, accounts: u64, initial: u64) -> GwResponse {
    for name in [REGISTERS, LISTS, BANK] {
        if let Err(e) = node.create_collection(name).await {
            return classify(&e, true);
        }
    }
    let bank = match coll(BANK) {
        Ok(c) => c,
        Err(e) => return GwResponse::Fail(e),
    };
    let mut txn = match node.begin_write().await {
        Ok(t) => t,
        Err(e) => return before_commit(e),
    };
    let mut missing = false;
    for a in 0..accounts {
        match txn.get(&bank, &key_bytes(a)).await {
            Ok(Some(_)) => {}
            Ok(None) => missing = true,
            Err(e) => return before_commit(e),
        }
    }
    if !missing {
        return GwResponse::SetupDone;
    }
    for a in 0..accounts {
        if let Err(e) = txn.put(&bank, key_bytes(a), initial.to_be_bytes().to_vec()) {
            return before_commit(e);
        }
    }
    match node.commit(txn).await {
        Ok(_) => GwResponse::SetupDone,
        Err(e) => classify(&e, true),
    }
}

async fn transfer(node: &ClusterNode, from: u64, to: u64, amount: u64) -> GwResponse {
    let bank = match coll(BANK) {
        Ok(c) => c,
        Err(e) => return GwResponse::Fail(e),
    };
    let mut txn = match node.begin_write().await {
        Ok(t) => t,
        Err(e) => return before_commit(e),
    };
    let mut read = [0u64; 2];
    for (slot, account) in [from, to].into_iter().enumerate() {
        match txn.get(&bank, &key_bytes(account)).await {
            Ok(Some(v)) => match decode_u64(&v) {
                Ok(v) => read[slot] = v,
                Err(e) => return GwResponse::Fail(e),
            },
            Ok(None) => return GwResponse::Fail(format!("account {account} missing")),
            Err(e) => return before_commit(e),
        }
    }
    if read[0] < amount || from == to {
        return GwResponse::Transferred {
            read: (read[0], read[1]),
            moved: false,
        };
    }
    let puts = [(from, read[0] - amount), (to, read[1] + amount)];
    for (account, balance) in puts {
        if let Err(e) = txn.put(&bank, key_bytes(account), balance.to_be_bytes().to_vec()) {
            return before_commit(e);
        }
    }
    match node.commit(txn).await {
        Ok(_) => GwResponse::Transferred {
            read: (read[0], read[1]),
            moved: true,
        },
        Err(e) => classify(&e, true),
    }
}

async fn list_txn(node: &ClusterNode, mops: Vec<Mop>) -> GwResponse {
    let lists = match coll(LISTS) {
        Ok(c) => c,
        Err(e) => return GwResponse::Fail(e),
    };
    let mut txn = match node.begin_write().await {
        Ok(t) => t,
        Err(e) => return before_commit(e),
    };
    let mut done = Vec::with_capacity(mops.len());
    for mop in mops {
        match mop {
            Mop::ReadList { key, .. } => {
                let list = match txn.get(&lists, &key_bytes(key)).await {
                    Ok(v) => match v.map(|v| decode_list(&v)).transpose() {
                        Ok(l) => l.unwrap_or_default(),
                        Err(e) => return GwResponse::Fail(e),
                    },
                    Err(e) => return before_commit(e),
                };
                done.push(Mop::ReadList {
                    key,
                    value: Some(list),
                });
            }
            Mop::Append { key, value } => {
                let mut list = match txn.get(&lists, &key_bytes(key)).await {
                    Ok(v) => match v.map(|v| decode_list(&v)).transpose() {
                        Ok(l) => l.unwrap_or_default(),
                        Err(e) => return GwResponse::Fail(e),
                    },
                    Err(e) => return before_commit(e),
                };
                list.push(value);
                if let Err(e) = txn.put(&lists, key_bytes(key), encode_list(&list)) {
                    return before_commit(e);
                }
                done.push(Mop::Append { key, value });
            }
            other => return GwResponse::Fail(format!("unsupported micro-op {other:?}")),
        }
    }
    match node.commit(txn).await {
        Ok(_) => GwResponse::Ok(Op::Txn(done)),
        Err(e) => classify(&e, true),
    }
}

/// Serves gateway connections on `listener` with `node`, one request at a time per
/// connection; a connection idle for `idle` is closed (turmoil TCP never retransmits, so a
/// half-open stream would otherwise hang forever).
pub async fn serve(listener: turmoil::net::TcpListener, node: ClusterNode, idle: Duration) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let node = node.clone();
        tokio::task::spawn_local(async move {
            loop {
                let request =
                    match tokio::time::timeout(idle, read_frame::<_, GwRequest>(&mut stream)).await
                    {
                        Ok(Ok(Some(r))) => r,
                        _ => return,
                    };
                let response = execute(&node, request).await;
                if write_frame(&mut stream, &response).await.is_err() {
                    return;
                }
            }
        });
    }
}
