//! Fuzz harnesses of every decoder this crate runs on bytes from disk or the network, shared by
//! the proptest smoke tests (`cluster/tests/fuzz_decoders.rs`, run in CI) and the cargo-fuzz
//! targets (`fuzz/`, outside the workspace). Each `fuzz_*` function must not panic on any
//! input; where the input decodes, it checks that the decoded value re-encodes and decodes to
//! itself (a failed check is a panic, i.e. a finding).

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::config::NodeConfig;
use crate::frame::{self, Kind};
use crate::records::{
    AppliedRecord, ClientRecord, LogIdRecord, LogRecord, SnapshotMetaRecord, SnapshotPart,
    VoteRecord,
};
use crate::rpc::{RpcRequest, RpcResponse};
use crate::types::TypeConfig;

/// Every frame kind with the type stored under it.
pub const KINDS: [Kind; 9] = [
    Kind::Vote,
    Kind::LogEntry,
    Kind::LogId,
    Kind::Applied,
    Kind::Client,
    Kind::SnapshotMeta,
    Kind::SnapshotPart,
    Kind::Request,
    Kind::Response,
];

/// Runs a future that never waits on anything but in-memory reads (a `&[u8]` reader) to
/// completion without a runtime.
fn run_ready<F: Future>(f: F) -> Option<F::Output> {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    // Reading from a slice is always ready; bound the polls anyway.
    for _ in 0..1024 {
        if let Poll::Ready(out) = f.as_mut().poll(&mut cx) {
            return Some(out);
        }
    }
    None
}

/// Decodes `data` as a `kind` frame of `T`; if it decodes, re-encodes and checks equality.
fn round_trip<T>(kind: Kind, data: &[u8])
where
    T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug,
{
    if let Ok(value) = frame::decode::<T>(kind, data) {
        let again = frame::encode(kind, &value).map(|b| frame::decode::<T>(kind, &b));
        match again {
            Ok(Ok(back)) => assert_eq!(back, value, "{kind:?} round trip"),
            other => panic!("{kind:?}: a decoded value does not re-encode: {other:?}"),
        }
    }
}

/// Decodes without a round-trip check (openraft's types have no `PartialEq` on every part).
fn decode_only<T: DeserializeOwned + Serialize>(kind: Kind, data: &[u8]) {
    if let Ok(value) = frame::decode::<T>(kind, data) {
        assert!(
            frame::encode(kind, &value).is_ok(),
            "{kind:?}: a decoded value does not re-encode"
        );
    }
}

/// The persisted records: every frame kind of [`crate::records`] (votes, log entries, log
/// ids, applied state, client sessions, snapshot metadata and parts).
pub fn fuzz_records(data: &[u8]) {
    round_trip::<VoteRecord>(Kind::Vote, data);
    round_trip::<LogIdRecord>(Kind::LogId, data);
    round_trip::<AppliedRecord>(Kind::Applied, data);
    round_trip::<ClientRecord>(Kind::Client, data);
    round_trip::<SnapshotMetaRecord>(Kind::SnapshotMeta, data);
    round_trip::<SnapshotPart>(Kind::SnapshotPart, data);
}

/// A persisted Raft log entry, also converted into openraft's entry as the log store does.
pub fn fuzz_log_entry(data: &[u8]) {
    round_trip::<LogRecord>(Kind::LogEntry, data);
    if let Ok(record) = frame::decode::<LogRecord>(Kind::LogEntry, data) {
        // openraft adds voters missing from the node map (with an empty address), so the
        // first conversion may normalize; after that it must be stable.
        let entry: openraft::Entry<TypeConfig> = record.into();
        let normalized = LogRecord::from(&entry);
        let again: openraft::Entry<TypeConfig> = normalized.clone().into();
        assert_eq!(LogRecord::from(&again), normalized, "log entry conversion");
    }
}

/// RPC messages (Raft append/vote/snapshot, client requests) as one frame each, and as a
/// stream read the way the server and client read them.
pub fn fuzz_rpc(data: &[u8]) {
    decode_only::<RpcRequest>(Kind::Request, data);
    decode_only::<RpcResponse>(Kind::Response, data);
    fuzz_read_stream::<RpcRequest>(Kind::Request, data);
}

/// A stream of frames (a snapshot file, a connection): read frame after frame until the end
/// or the first error.
pub fn fuzz_stream(data: &[u8]) {
    fuzz_read_stream::<SnapshotPart>(Kind::SnapshotPart, data);
    fuzz_read_stream::<RpcResponse>(Kind::Response, data);
}

fn fuzz_read_stream<T: DeserializeOwned>(kind: Kind, data: &[u8]) {
    let mut reader = data;
    // Every frame read consumes at least a header, so this ends.
    loop {
        match run_ready(frame::read_frame::<_, T>(&mut reader, kind)) {
            Some(Ok(Some(_))) => {}
            Some(Ok(None) | Err(_)) => return,
            None => panic!("reading from a slice did not complete"),
        }
    }
}

/// Any frame header and payload, under every kind.
pub fn fuzz_frame(data: &[u8]) {
    fuzz_records(data);
    fuzz_log_entry(data);
    fuzz_rpc(data);
}

/// `data` as the payload of every frame kind, under a correct header and CRC, so the postcard
/// decoders of every record and message run on it instead of stopping at the checksum.
pub fn fuzz_payload(data: &[u8]) {
    let Ok(len) = u32::try_from(data.len()) else {
        return;
    };
    for kind in KINDS {
        let mut framed = Vec::with_capacity(frame::HEADER_LEN + data.len());
        framed.extend_from_slice(&frame::MAGIC);
        framed.push(frame::FORMAT_VERSION);
        framed.push(kind as u8);
        framed.extend_from_slice(&len.to_le_bytes());
        let crc = crc32c::crc32c_append(crc32c::crc32c(&[kind as u8]), data);
        framed.extend_from_slice(&crc.to_le_bytes());
        framed.extend_from_slice(data);
        fuzz_frame(&framed);
    }
}

/// The node configuration file (`zstore serve --config`): TOML, then validation.
pub fn fuzz_node_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = toml::from_str::<NodeConfig>(text) {
        let _ = config.validate();
        if let Ok(again) = toml::to_string(&config) {
            let back: Result<NodeConfig, _> = toml::from_str(&again);
            assert_eq!(back.ok().as_ref(), Some(&config), "config round trip");
        }
    }
}
