//! Smoke fuzzing of every decoder of `zcore-cluster` that reads bytes from disk or the
//! network: the `ZCRF` frame with each persisted record (votes, log entries, log ids, applied
//! state, client sessions, snapshot metadata and parts), RPC requests and responses (one frame
//! and as a stream), and the node configuration file. Each target runs on arbitrary bytes and
//! on mutations of valid encodings (bit flips, truncations, length fields set huge, varints
//! maxed); a second variant frames the fuzzed bytes with a correct header and CRC, so the
//! postcard payload decoders are reached. Valid encodings round-trip (checked inside the
//! harness, `zcore_cluster::fuzz`, shared with the cargo-fuzz targets in `fuzz/`).
//!
//! Capped global allocator (1 GiB): an allocation sized by a length field aborts the run.
//! Cases per target: `ZCORE_FUZZ_CASES` (default 2,000).

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};

use openraft::raft::VoteRequest;
use openraft::{LogId, Vote};
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};
use zcore_cluster::frame::{self, Kind};
use zcore_cluster::fuzz;
use zcore_cluster::records::{
    AppliedRecord, ClientRecord, LogIdRecord, LogRecord, MembershipRecord, PayloadRecord,
    SnapshotMetaRecord, SnapshotPart, StoredMembershipRecord, VoteRecord,
};
use zcore_cluster::rpc::{ClientReply, ClientRequest, RpcRequest, RpcResponse};
use zcore_cluster::{Command, Outcome, Request, RequestId, Response};

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

fn membership() -> StoredMembershipRecord {
    StoredMembershipRecord {
        log_id: Some(LogIdRecord {
            term: 1,
            node_id: 1,
            index: 1,
        }),
        membership: MembershipRecord {
            configs: vec![BTreeSet::from([1, 2, 3])],
            nodes: BTreeMap::from([
                (1, "127.0.0.1:1".to_owned()),
                (2, "127.0.0.1:2".to_owned()),
                (3, "127.0.0.1:3".to_owned()),
            ]),
        },
    }
}

fn request() -> Request {
    Request {
        id: Some(RequestId {
            client: 7,
            serial: 3,
            opened: 1,
        }),
        command: Command::Batch(vec![
            Request {
                id: None,
                command: Command::CreateCollection("users".to_owned()),
            },
            Request {
                id: None,
                command: Command::DropCollection("old".to_owned()),
            },
        ]),
    }
}

/// Valid frames of every kind.
fn frames() -> Vec<Vec<u8>> {
    let log_id = LogIdRecord {
        term: 2,
        node_id: 1,
        index: 9,
    };
    let meta = SnapshotMetaRecord {
        last_log_id: Some(log_id),
        membership: membership(),
        snapshot_id: "2-1-9".to_owned(),
    };
    let response = Response {
        index: 9,
        outcome: Outcome::Committed { version: 9 },
    };
    vec![
        frame::encode(
            Kind::Vote,
            &VoteRecord {
                term: 3,
                node_id: 2,
                committed: true,
            },
        )
        .unwrap(),
        frame::encode(Kind::LogId, &log_id).unwrap(),
        frame::encode(
            Kind::LogEntry,
            &LogRecord {
                log_id,
                payload: PayloadRecord::Normal(request()),
            },
        )
        .unwrap(),
        frame::encode(
            Kind::LogEntry,
            &LogRecord {
                log_id,
                payload: PayloadRecord::Membership(membership().membership),
            },
        )
        .unwrap(),
        frame::encode(
            Kind::LogEntry,
            &LogRecord {
                log_id,
                payload: PayloadRecord::Blank,
            },
        )
        .unwrap(),
        frame::encode(
            Kind::Applied,
            &AppliedRecord {
                last_applied: Some(log_id),
                membership: membership(),
            },
        )
        .unwrap(),
        frame::encode(
            Kind::Client,
            &ClientRecord {
                client: 7,
                serial: 3,
                response: response.clone(),
            },
        )
        .unwrap(),
        frame::encode(Kind::SnapshotMeta, &meta).unwrap(),
        frame::encode(Kind::SnapshotPart, &SnapshotPart::Header { meta }).unwrap(),
        frame::encode(
            Kind::SnapshotPart,
            &SnapshotPart::Entries(vec![(b"key".to_vec(), b"value".to_vec())]),
        )
        .unwrap(),
        frame::encode(
            Kind::SnapshotPart,
            &SnapshotPart::End {
                entries: 1,
                gc_floor: 0,
            },
        )
        .unwrap(),
        frame::encode(
            Kind::Request,
            &RpcRequest::Vote(VoteRequest::new(
                Vote::new(4, 2),
                Some(LogId::new(openraft::CommittedLeaderId::new(3, 1), 8)),
            )),
        )
        .unwrap(),
        frame::encode(
            Kind::Request,
            &RpcRequest::Client(ClientRequest::Propose(request())),
        )
        .unwrap(),
        frame::encode(Kind::Request, &RpcRequest::Client(ClientRequest::Status)).unwrap(),
        frame::encode(
            Kind::Response,
            &RpcResponse::Client(Ok(ClientReply::Response(response))),
        )
        .unwrap(),
        frame::encode(
            Kind::Response,
            &RpcResponse::Client(Ok(ClientReply::ReadIndex(5))),
        )
        .unwrap(),
    ]
}

/// Several frames back to back (a snapshot file, a connection).
fn streams() -> Vec<Vec<u8>> {
    let f = frames();
    vec![f[8..11].concat(), f[14..].concat(), f[11..14].concat()]
}

const NODE_CONFIG: &str = r#"
node_id = 1
listen = "127.0.0.1:7001"
data_dir = "data"
backend = "redb"
[bootstrap]
1 = "127.0.0.1:7001"
2 = "127.0.0.1:7002"
[raft]
heartbeat_ms = 100
"#;

/// Frames `payload` as `kind` with a correct header and CRC.
fn framed(kind: Kind, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(frame::HEADER_LEN + payload.len());
    out.extend_from_slice(&frame::MAGIC);
    out.push(frame::FORMAT_VERSION);
    out.push(kind as u8);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&[kind as u8]), payload);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// The fuzzed bytes as the payload of every kind, correctly framed.
fn payload_target(data: &[u8]) {
    fuzz::fuzz_payload(data);
}

fn mutations() -> impl Strategy<Value = (usize, Vec<(u8, u32, u32)>)> {
    (
        any::<usize>(),
        prop::collection::vec(any::<(u8, u32, u32)>(), 1..6),
    )
}

fn pick(seeds: &[Vec<u8>], i: usize) -> &[u8] {
    &seeds[i % seeds.len()]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn frame_arbitrary(data in prop::collection::vec(any::<u8>(), 0..600)) {
        fuzz::fuzz_frame(&data);
    }

    #[test]
    fn frame_mutated((seed, ops) in mutations()) {
        fuzz::fuzz_frame(&zcore_engine::fuzz::mutate(pick(&frames(), seed), &ops));
    }

    #[test]
    fn payload_arbitrary(data in prop::collection::vec(any::<u8>(), 0..600)) {
        payload_target(&data);
    }

    #[test]
    fn payload_mutated((seed, ops) in mutations()) {
        let seeds: Vec<Vec<u8>> = frames().into_iter().map(|f| f[frame::HEADER_LEN..].to_vec()).collect();
        payload_target(&zcore_engine::fuzz::mutate(pick(&seeds, seed), &ops));
    }

    #[test]
    fn stream_arbitrary(data in prop::collection::vec(any::<u8>(), 0..600)) {
        fuzz::fuzz_stream(&data);
        fuzz::fuzz_rpc(&data);
    }

    #[test]
    fn stream_mutated((seed, ops) in mutations()) {
        let input = zcore_engine::fuzz::mutate(pick(&streams(), seed), &ops);
        fuzz::fuzz_stream(&input);
        fuzz::fuzz_rpc(&input);
    }

    #[test]
    fn node_config_arbitrary(data in prop::collection::vec(any::<u8>(), 0..300)) {
        fuzz::fuzz_node_config(&data);
    }

    #[test]
    fn node_config_mutated(ops in prop::collection::vec(any::<(u8, u32, u32)>(), 1..6)) {
        fuzz::fuzz_node_config(&zcore_engine::fuzz::mutate(NODE_CONFIG.as_bytes(), &ops));
    }

    /// Valid records round-trip through the frame.
    #[test]
    fn valid_records_round_trip(term in any::<u64>(), node_id in any::<u64>(), index in any::<u64>(), committed in any::<bool>(),
                                key in prop::collection::vec(any::<u8>(), 0..50)) {
        let vote = VoteRecord { term, node_id, committed };
        prop_assert_eq!(frame::decode::<VoteRecord>(Kind::Vote, &frame::encode(Kind::Vote, &vote).unwrap()).unwrap(), vote);
        let id = LogIdRecord { term, node_id, index };
        let entry = LogRecord { log_id: id, payload: PayloadRecord::Normal(Request { id: None, command: Command::CreateCollection(String::from_utf8_lossy(&key).into_owned()) }) };
        let bytes = frame::encode(Kind::LogEntry, &entry).unwrap();
        prop_assert_eq!(frame::decode::<LogRecord>(Kind::LogEntry, &bytes).unwrap(), entry);
        fuzz::fuzz_log_entry(&bytes);
        let part = SnapshotPart::Entries(vec![(key.clone(), key)]);
        let bytes = frame::encode(Kind::SnapshotPart, &part).unwrap();
        prop_assert_eq!(frame::decode::<SnapshotPart>(Kind::SnapshotPart, &bytes).unwrap(), part);
    }
}

#[test]
fn seeds_decode() {
    let f = frames();
    assert!(frame::decode::<VoteRecord>(Kind::Vote, &f[0]).is_ok());
    assert!(frame::decode::<LogRecord>(Kind::LogEntry, &f[2]).is_ok());
    assert!(frame::decode::<RpcRequest>(Kind::Request, &f[11]).is_ok());
    assert!(frame::decode::<RpcResponse>(Kind::Response, &f[14]).is_ok());
    for s in f.iter().chain(&streams()) {
        fuzz::fuzz_frame(s);
        fuzz::fuzz_stream(s);
    }
    let config: zcore_cluster::NodeConfig = toml::from_str(NODE_CONFIG).unwrap();
    config.validate().unwrap();
    fuzz::fuzz_node_config(NODE_CONFIG.as_bytes());
}

/// A frame announcing the largest payload allowed, with only a few bytes behind it: the
/// stream reader must fail on truncation without reserving 64 MiB first, and one announcing
/// more is refused from the header alone.
#[test]
fn announced_lengths_do_not_decide_allocations() {
    let mut f = frames()[0].clone();
    f[6..10].copy_from_slice(&frame::MAX_PAYLOAD.to_le_bytes());
    fuzz::fuzz_stream(&f);
    fuzz::fuzz_rpc(&f);
    f[6..10].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        frame::decode::<VoteRecord>(Kind::Vote, &f),
        Err(frame::FrameError::TooLarge(_))
    ));
}

/// Requests nest (a batch holds requests); a log entry of deeply nested batches must be a
/// decode error, not a stack overflow.
#[test]
fn deeply_nested_batches_are_an_error_not_a_stack_overflow() {
    let depth = 100_000;
    let mut payload = vec![2u8, 1, 9, 1]; // log id (term 2, node 1, index 9), Normal
    for _ in 0..depth {
        payload.extend_from_slice(&[0x00, 0x03, 0x01]); // id None, Batch, one request
    }
    payload.extend_from_slice(&[0x00, 0x01, 0x01, b'c']); // id None, CreateCollection("c")
    let bytes = framed(Kind::LogEntry, &payload);
    let decoded = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || frame::decode::<LogRecord>(Kind::LogEntry, &bytes).is_ok())
        .unwrap()
        .join()
        .unwrap();
    assert!(!decoded, "a 100,000-deep batch must not decode");
}
