//! Tests of the history format and of every checker: each checker accepts valid histories and
//! reports hand-made violating ones; the linearizability checker is also property-tested
//! (generated linearizable histories accepted, a planted impossible read rejected) and
//! cross-checked against the `todc-utils` WGL implementation.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::Duration;

use proptest::prelude::*;
use zcore_sim::checkers::Verdict;
use zcore_sim::checkers::bank::{self, BankConfig, BankViolationKind};
use zcore_sim::checkers::convergence::{self, ConvergenceViolation, NodeSummary};
use zcore_sim::checkers::durability::{self, DurabilityViolationKind, FinalState};
use zcore_sim::checkers::isolation::{self, IsolationConfig, IsolationLevel, TxnWorkload};
use zcore_sim::checkers::linearizable::{self, LinearizabilityConfig};
use zcore_sim::checkers::raft_safety::{
    LeaderIdMode, NodeRole, RaftLogEntry, RaftLogId, RaftObservation, RaftSafetyChecker,
    RaftViolationKind, RaftVote,
};
use zcore_sim::checkers::{CheckError, Verdict::*};
use zcore_sim::history::{Event, EventKind, History, HistoryError, Mop, Op, Recorder};

// ---------------------------------------------------------------------------------------------
// Building histories by hand.

/// Builds a history from (process, kind, op) triples; time = position in µs.
fn hist(events: &[(u64, EventKind, Op)]) -> History {
    History::from_events(
        events
            .iter()
            .enumerate()
            .map(|(i, (p, k, op))| Event {
                index: i as u64,
                process: *p,
                kind: *k,
                op: op.clone(),
                time_nanos: i as u64 * 1000,
                node: None,
            })
            .collect(),
    )
}

use EventKind::{Fail, Info, Invoke, Ok as Done};

fn w(key: u64, value: u64) -> Op {
    Op::Write { key, value }
}
fn r(key: u64, value: Option<u64>) -> Op {
    Op::Read { key, value }
}
fn txn(mops: Vec<Mop>) -> Op {
    Op::Txn(mops)
}
fn app(key: u64, value: u64) -> Mop {
    Mop::Append { key, value }
}
fn rl(key: u64, value: Option<Vec<u64>>) -> Mop {
    Mop::ReadList { key, value }
}
fn rr(key: u64, value: Option<u64>) -> Mop {
    Mop::RegRead { key, value }
}
fn rw(key: u64, value: u64) -> Mop {
    Mop::RegWrite { key, value }
}

fn lin(h: &History) -> linearizable::LinearizabilityReport {
    linearizable::check(h, &LinearizabilityConfig::default()).expect("well-formed history")
}

/// The same check, forced through the WGL search instead of the zone check.
fn lin_wgl(h: &History) -> linearizable::LinearizabilityReport {
    let config = LinearizabilityConfig {
        force_wgl: true,
        ..LinearizabilityConfig::default()
    };
    linearizable::check(h, &config).expect("well-formed history")
}

// ---------------------------------------------------------------------------------------------
// History format.

#[test]
fn recorder_pairs_events_and_finishes_open_ops_as_info() {
    let ms = Duration::from_millis;
    let mut rec = Recorder::new();
    let _left_open = rec
        .invoke_on(0, Some(2), w(1, 10), ms(1))
        .expect("free process");
    let b = rec.invoke(1, r(1, Some(99)), ms(2)).expect("free process"); // read value is cleared
    assert_eq!(
        rec.invoke(0, w(1, 11), ms(3)),
        Err(HistoryError::ProcessBusy {
            process: 0,
            open_index: 0
        })
    );
    rec.set_node(&b, Some(3));
    rec.ok(b, r(1, Some(10)), ms(4)).expect("open");
    let c = rec.invoke(2, txn(vec![app(5, 1)]), ms(5)).expect("free");
    // A completion must have the invocation's shape.
    let mismatch = rec.ok(c, txn(vec![app(5, 2)]), ms(6));
    assert!(
        matches!(mismatch, Err(HistoryError::ShapeMismatch { .. })),
        "{mismatch:?}"
    );
    // A handle is consumed; a fake one for an op that is not open is rejected.
    let d = rec.invoke(3, w(2, 1), ms(7)).expect("free");
    rec.fail(d, ms(8)).expect("open");
    assert_eq!(rec.open_count(), 2); // a (process 0), and c (process 2, its bad ok was rejected)
    // Time going backwards is clamped.
    let e = rec.invoke(4, w(3, 1), ms(1)).expect("free");
    rec.info(e, ms(9)).expect("open");
    let h = rec.finish(ms(20));
    h.validate().expect("recorder output is well formed");
    assert_eq!(h.len(), 10);
    let kinds: Vec<EventKind> = h.events.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            Invoke, Invoke, Done, Invoke, Invoke, Fail, Invoke, Info, Info, Info
        ]
    );
    assert_eq!(h.events[1].op, r(1, None));
    assert_eq!(h.events[2].node, Some(3));
    assert_eq!(
        h.events[6].time_nanos, 8_000_000,
        "clamped to the previous event's time"
    );
    // Open ops finished in process order at the finish time, on their node.
    assert_eq!(
        (
            h.events[8].process,
            h.events[8].node,
            h.events[8].time_nanos
        ),
        (0, Some(2), 20_000_000)
    );
    assert_eq!(h.events[9].process, 2);
    let ops = h.operations();
    assert_eq!(ops.len(), 5);
    assert_eq!(ops[0].outcome(), Info);
    assert_eq!(ops[1].op(), &r(1, Some(10)));
}

#[test]
fn validate_rejects_malformed_histories() {
    let orphan = hist(&[(0, Done, w(1, 1))]);
    assert!(matches!(
        orphan.validate(),
        Err(HistoryError::Malformed { .. })
    ));
    let double = hist(&[(0, Invoke, w(1, 1)), (0, Invoke, w(1, 2))]);
    assert!(matches!(
        double.validate(),
        Err(HistoryError::ProcessBusy { .. })
    ));
    let shape = hist(&[(0, Invoke, w(1, 1)), (0, Done, w(1, 2))]);
    assert!(matches!(
        shape.validate(),
        Err(HistoryError::ShapeMismatch { .. })
    ));
    let mut back = hist(&[(0, Invoke, w(1, 1)), (0, Done, w(1, 1))]);
    back.events[1].time_nanos = 0;
    back.events[0].time_nanos = 5;
    assert!(matches!(
        back.validate(),
        Err(HistoryError::TimeBackwards { .. })
    ));
    // Checkers refuse malformed input with an error, not a panic.
    assert!(matches!(
        linearizable::check(&shape, &LinearizabilityConfig::default()),
        Err(CheckError::History(_))
    ));
}

fn sample_txn_history() -> History {
    hist(&[
        (0, Invoke, txn(vec![app(1, 2), rl(1, None)])),
        (1, Invoke, txn(vec![rl(1, None), app(2, 7)])),
        (0, Done, txn(vec![app(1, 2), rl(1, Some(vec![2]))])),
        (1, Fail, txn(vec![rl(1, None), app(2, 7)])),
        (2, Invoke, txn(vec![rl(2, None)])),
        (2, Info, txn(vec![rl(2, None)])),
        (3, Invoke, r(9, None)),
        (3, Done, r(9, Some(4))),
    ])
}

#[test]
fn edn_export_matches_jepsen_format() {
    let mut h = sample_txn_history();
    h.events[0].node = Some(2);
    let edn = h.to_edn().expect("values fit i64");
    let lines: Vec<&str> = edn.lines().collect();
    assert_eq!(lines.len(), 8);
    assert_eq!(
        lines[0],
        "{:index 0, :type :invoke, :f :txn, :value [[:append 1 2] [:r 1 nil]], :process 0, :time 0, :node 2}"
    );
    assert_eq!(
        lines[2],
        "{:index 2, :type :ok, :f :txn, :value [[:append 1 2] [:r 1 [2]]], :process 0, :time 2000}"
    );
    assert_eq!(
        lines[7],
        "{:index 7, :type :ok, :f :read, :value [9 4], :process 3, :time 7000}"
    );
    let json = h.to_json().expect("values fit i64");
    let first: serde_json::Value =
        serde_json::from_str(json.lines().next().expect("a line")).expect("json");
    assert_eq!(first["type"], "invoke");
    assert_eq!(first["f"], "txn");
    assert_eq!(
        first["value"],
        serde_json::json!([["append", 1, 2], ["r", 1, null]])
    );
}

/// One txn event as adya holds it, converted back to our types: (index, kind, process, time,
/// mops). adya's `nil` read becomes `ReadList { value: None }` (list-append histories).
type AdyaEvent = (u64, EventKind, Option<i64>, Option<i64>, Vec<Mop>);

fn from_adya(h: &adya::History) -> Vec<AdyaEvent> {
    use adya::history::{Mop as AMop, OpType, ReadValue, Scalar};
    let n = |id| match h.show(id) {
        Scalar::Int(i) => u64::try_from(*i).expect("non-negative"),
        Scalar::Str(s) => panic!("unexpected string scalar {s}"),
    };
    h.ops
        .iter()
        .map(|o| {
            let kind = match o.kind {
                OpType::Invoke => Invoke,
                OpType::Ok => Done,
                OpType::Fail => Fail,
                OpType::Info => Info,
            };
            let mops = o
                .value
                .iter()
                .map(|m| match m {
                    AMop::Append { key, value } => app(n(*key), n(*value)),
                    AMop::Write { key, value } => rw(n(*key), n(*value)),
                    AMop::Read {
                        key,
                        value: ReadValue::Nil,
                    } => rl(n(*key), None),
                    AMop::Read {
                        key,
                        value: ReadValue::List(xs),
                    } => rl(n(*key), Some(xs.iter().map(|x| n(*x)).collect())),
                    AMop::Read {
                        key,
                        value: ReadValue::Scalar(v),
                    } => rr(n(*key), Some(n(*v))),
                })
                .collect();
            (o.index, kind, o.process, o.time, mops)
        })
        .collect()
}

#[test]
fn edn_and_json_round_trip_through_adya() {
    let h = sample_txn_history();
    let from_edn =
        adya::History::from_edn(&h.to_edn().expect("fits")).expect("adya parses our EDN");
    let from_json =
        adya::History::from_json(&h.to_json().expect("fits")).expect("adya parses our JSON");
    let built = isolation::to_adya(&h).expect("fits");
    // What should come back: our txn events (adya, like Elle's txn checkers, skips `:f :read`).
    let expected: Vec<AdyaEvent> = h
        .events
        .iter()
        .filter_map(|e| match &e.op {
            Op::Txn(m) => Some((
                e.index,
                e.kind,
                Some(e.process as i64),
                Some(e.time_nanos as i64),
                m.clone(),
            )),
            _ => None,
        })
        .collect();
    assert_eq!(expected.len(), 6);
    assert_eq!(from_adya(&from_edn), expected);
    assert_eq!(from_adya(&from_json), expected);
    assert_eq!(from_adya(&built), expected);
    assert_eq!(from_edn.pair, built.pair);
    assert_eq!(from_json.pair, built.pair);
    // For Elle itself, export the transactions alone (renumbered, still well formed).
    let txns = h.txns_only();
    txns.validate().expect("pairs kept together");
    assert_eq!(txns.len(), 6);
    assert_eq!(h.registers_only().len(), 2);
    let elle = adya::History::from_edn(&txns.to_edn().expect("fits")).expect("parses");
    assert_eq!(elle.ops.len(), 6);
    assert_eq!(elle.pair, built.pair);
    // And the verdicts agree on a real check.
    let opts = adya::Opts {
        models: vec!["serializable".into()],
        ..adya::Opts::default()
    };
    let a = adya::check(&from_edn, adya::Workload::ListAppend, &opts);
    let b = adya::check(&built, adya::Workload::ListAppend, &opts);
    assert_eq!((a.valid, a.anomaly_types), (b.valid, b.anomaly_types));
    // A rw-register history round-trips too (scalar reads).
    let reg = hist(&[
        (0, Invoke, txn(vec![rw(1, 5), rr(2, None)])),
        (0, Done, txn(vec![rw(1, 5), rr(2, Some(3))])),
    ]);
    let back = adya::History::from_edn(&reg.to_edn().expect("fits")).expect("parses");
    assert_eq!(from_adya(&back)[1].4, vec![rw(1, 5), rr(2, Some(3))]);
}

#[test]
fn json_export_reads_back() {
    let mut h = sample_txn_history();
    h.events[0].node = Some(2);
    h.events[1].node = Some(2); // completion events carry the node too (the recorder does that)
    let back = History::from_json(&h.to_json().expect("fits")).expect("reads back");
    assert_eq!(back, h);
    // As a single JSON array too.
    let array = format!(
        "[{}]",
        h.to_json().expect("fits").trim_end().replace('\n', ",")
    );
    assert_eq!(History::from_json(&array).expect("array"), h);
    // rw-register transactions: a null read is a register read when nothing is appended.
    let reg = hist(&[
        (0, Invoke, txn(vec![rr(1, None), rw(2, 5)])),
        (0, Done, txn(vec![rr(1, None), rw(2, 5)])),
    ]);
    assert_eq!(
        History::from_json(&reg.to_json().expect("fits")).expect("reads back"),
        reg
    );
    // Non-client events are skipped; malformed ones are errors, not panics.
    let nemesis = "{\"type\":\"info\",\"f\":\"start-partition\",\"process\":\"nemesis\"}\n";
    assert!(History::from_json(nemesis).expect("skipped").is_empty());
    for bad in [
        "{",
        "{\"type\":\"maybe\",\"process\":0,\"f\":\"read\",\"value\":[1,null]}",
        "{\"type\":\"ok\",\"process\":0,\"f\":\"read\",\"value\":[1]}",
        "{\"type\":\"ok\",\"process\":0,\"f\":\"write\",\"value\":[1,-3]}",
        "{\"type\":\"ok\",\"process\":0,\"f\":\"txn\",\"value\":[[\"cas\",1,2]]}",
        "{\"type\":\"ok\",\"process\":0,\"f\":\"txn\",\"value\":[[\"r\",1,[\"x\"]]]}",
    ] {
        assert!(History::from_json(bad).is_err(), "{bad}");
    }
}

#[test]
fn export_refuses_values_beyond_i64() {
    let h = hist(&[(0, Invoke, w(1, u64::MAX)), (0, Done, w(1, u64::MAX))]);
    assert!(matches!(
        h.to_edn(),
        Err(HistoryError::ValueOutOfRange { what: "value", .. })
    ));
    assert!(matches!(
        h.to_json(),
        Err(HistoryError::ValueOutOfRange { .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// Linearizability.

#[test]
fn linearizable_accepts_concurrent_valid_history() {
    // p0 writes 1 and 2 sequentially; p1's read overlaps the second write and may see either.
    let h = hist(&[
        (0, Invoke, w(1, 1)),
        (0, Done, w(1, 1)),
        (0, Invoke, w(1, 2)),
        (1, Invoke, r(1, None)),
        (1, Done, r(1, Some(1))),
        (2, Invoke, r(1, None)),
        (0, Done, w(1, 2)),
        (2, Done, r(1, Some(2))),
        // another key, never written, read as absent
        (1, Invoke, r(7, None)),
        (1, Done, r(7, None)),
    ]);
    let rep = lin(&h);
    assert_eq!(rep.verdict, Valid, "{rep:?}");
    assert_eq!((rep.keys_checked, rep.ops_checked), (2, 5));
}

#[test]
fn linearizable_rejects_stale_read() {
    let h = hist(&[
        (0, Invoke, w(1, 1)),
        (0, Done, w(1, 1)),
        (0, Invoke, w(1, 2)),
        (0, Done, w(1, 2)),
        (1, Invoke, r(1, None)),
        (1, Done, r(1, Some(1))), // stale: 2 was acknowledged before this read began
    ]);
    let rep = lin(&h);
    assert_eq!(rep.verdict, Invalid);
    let v = &rep.violations[0];
    assert_eq!(v.key, 1);
    let blocked = v.blocked.expect("blocked op");
    // The stuck op is the stale read (or the write it contradicts): both are in the context.
    assert!(v.context.iter().any(|o| o.invoke_index == 4), "{v:?}");
    assert!(
        blocked.invoke_index == 4 || blocked.invoke_index == 2,
        "{v:?}"
    );
    assert!(v.reason.contains("key 1"), "{}", v.reason);
}

#[test]
fn linearizable_rejects_read_of_never_written_value_and_of_failed_write() {
    let never = hist(&[
        (0, Invoke, w(1, 1)),
        (0, Done, w(1, 1)),
        (1, Invoke, r(1, None)),
        (1, Done, r(1, Some(3))),
    ]);
    let rep = lin(&never);
    assert_eq!(rep.verdict, Invalid);
    assert!(
        rep.violations[0].reason.contains("never written"),
        "{}",
        rep.violations[0].reason
    );
    // A failed write did not happen, so reading its value is impossible.
    let failed = hist(&[
        (0, Invoke, w(1, 5)),
        (0, Fail, w(1, 5)),
        (1, Invoke, r(1, None)),
        (1, Done, r(1, Some(5))),
    ]);
    assert_eq!(lin(&failed).verdict, Invalid);
    // The same with an info write: it may have happened.
    let info = hist(&[
        (0, Invoke, w(1, 5)),
        (0, Info, w(1, 5)),
        (1, Invoke, r(1, None)),
        (1, Done, r(1, Some(5))),
    ]);
    assert_eq!(lin(&info).verdict, Valid);
}

#[test]
fn linearizable_info_write_may_apply_late_but_not_flicker() {
    // An open write may take effect any time after its invocation...
    let late = hist(&[
        (0, Invoke, w(1, 1)),
        (0, Done, w(1, 1)),
        (1, Invoke, w(1, 2)), // never completes
        (2, Invoke, r(1, None)),
        (2, Done, r(1, Some(1))),
        (2, Invoke, r(1, None)),
        (2, Done, r(1, Some(2))),
    ]);
    assert_eq!(lin(&late).verdict, Valid);
    // ...but once seen, the older value cannot come back.
    let flicker = hist(&[
        (0, Invoke, w(1, 1)),
        (0, Done, w(1, 1)),
        (1, Invoke, w(1, 2)),
        (2, Invoke, r(1, None)),
        (2, Done, r(1, Some(2))),
        (2, Invoke, r(1, None)),
        (2, Done, r(1, Some(1))),
    ]);
    assert_eq!(lin(&flicker).verdict, Invalid);
    // Reading "never written" after an acknowledged write is stale too.
    let absent = hist(&[
        (0, Invoke, w(1, 1)),
        (0, Done, w(1, 1)),
        (1, Invoke, r(1, None)),
        (1, Done, r(1, None)),
    ]);
    assert_eq!(lin(&absent).verdict, Invalid);
}

#[test]
fn linearizable_reports_unknown_when_budget_runs_out() {
    // k fully concurrent writes, then reads forcing an impossible order: exponential without
    // memoization, and with a tiny budget the search must give up and say so.
    let k = 10;
    let mut ev = Vec::new();
    for p in 0..k {
        ev.push((p, Invoke, w(1, p + 1)));
    }
    for p in 0..k {
        ev.push((p, Done, w(1, p + 1)));
    }
    ev.push((100, Invoke, r(1, None)));
    ev.push((100, Done, r(1, Some(1))));
    ev.push((100, Invoke, r(1, None)));
    ev.push((100, Done, r(1, Some(2))));
    ev.push((100, Invoke, r(1, None)));
    ev.push((100, Done, r(1, Some(1))));
    let h = hist(&ev);
    let tiny = LinearizabilityConfig {
        max_steps_per_key: 50,
        force_wgl: true,
        ..LinearizabilityConfig::default()
    };
    let rep = linearizable::check(&h, &tiny).expect("well formed");
    assert_eq!(rep.verdict, Unknown, "{rep:?}");
    assert_eq!(rep.unknown[0].key, 1);
    assert!(rep.violations.is_empty());
    // The memo table's memory is bounded as well.
    let small = LinearizabilityConfig {
        max_cache_bytes_per_key: 1_000,
        force_wgl: true,
        ..LinearizabilityConfig::default()
    };
    let rep = linearizable::check(&h, &small).expect("well formed");
    assert_eq!(rep.verdict, Unknown, "{rep:?}");
    // With the default budget it is decided: not linearizable (1, 2, 1 needs two writes of 1).
    let full = lin_wgl(&h);
    assert_eq!(full.verdict, Invalid);
    // The zone check (unique values) decides it in one pass.
    let zones = lin(&h);
    assert_eq!(zones.verdict, Invalid);
    assert_eq!(zones.steps, 13);
    assert!(
        full.steps < 1_000_000,
        "memoization keeps this small: {} steps",
        full.steps
    );
}

/// todc-utils' register spec, over `Option<u64>` (None = never written).
struct TodcRegister;
#[derive(Debug, Clone, Copy)]
enum TodcOp {
    Read(Option<Option<u64>>),
    Write(u64),
}
impl todc_utils::specifications::Specification for TodcRegister {
    type State = Option<u64>;
    type Operation = TodcOp;
    fn init() -> Self::State {
        None
    }
    fn apply(op: &TodcOp, state: &Option<u64>) -> (bool, Option<u64>) {
        match op {
            TodcOp::Read(Some(v)) => (v == state, *state),
            TodcOp::Read(None) => (false, *state),
            TodcOp::Write(v) => (true, Some(*v)),
        }
    }
}

/// Runs todc-utils' WGL on one key's history (info writes respond at the end, info reads
/// dropped, failed ops dropped), as the reference verdict.
fn todc_verdict(h: &History) -> bool {
    use todc_utils::linearizability::WGLChecker;
    use todc_utils::linearizability::history::{Action, History as TH};
    let ops = h.operations();
    let mut actions: Vec<(usize, Action<TodcOp>)> = Vec::new();
    let mut tail = Vec::new();
    // Build call/response actions in event order.
    let mut by_event: Vec<(u64, usize, Action<TodcOp>)> = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        match (op.outcome(), op.op()) {
            (Fail, _) => {}
            (Info, Op::Read { .. }) => {}
            (Info, Op::Write { value, .. }) => {
                by_event.push((op.invoke.index, i, Action::Call(TodcOp::Write(*value))));
                tail.push((i, Action::Response(TodcOp::Write(*value))));
            }
            (_, Op::Write { value, .. }) => {
                by_event.push((op.invoke.index, i, Action::Call(TodcOp::Write(*value))));
                let c = op.completion.expect("ok op").index;
                by_event.push((c, i, Action::Response(TodcOp::Write(*value))));
            }
            (_, Op::Read { value, .. }) => {
                by_event.push((op.invoke.index, i, Action::Call(TodcOp::Read(None))));
                let c = op.completion.expect("ok op").index;
                by_event.push((c, i, Action::Response(TodcOp::Read(Some(*value)))));
            }
            (_, Op::Txn(_)) => {}
        }
    }
    by_event.sort_by_key(|e| e.0);
    // todc-utils wants dense process ids: one per operation, so every op is its own "thread".
    let mut ids = std::collections::BTreeMap::new();
    for (_, i, a) in by_event {
        let n = ids.len();
        let id = *ids.entry(i).or_insert(n);
        actions.push((id, a));
    }
    for (i, a) in tail {
        let n = ids.len();
        let id = *ids.entry(i).or_insert(n);
        actions.push((id, a));
    }
    if actions.is_empty() {
        return true; // todc-utils panics on an empty history
    }
    WGLChecker::<TodcRegister>::is_linearizable(TH::from_actions(actions))
}

/// A generated single-key register history: `n` ops over `p` processes, each op invoked and
/// completed at random points; values come from a real register whose ops take effect at a
/// random instant inside their interval (so the history is linearizable by construction).
#[derive(Debug, Clone)]
struct GenOp {
    process: u64,
    is_write: bool,
    invoke: u32,
    effect: u32,
    complete: u32,
    outcome: EventKind,
}

fn gen_ops(max_ops: usize) -> impl Strategy<Value = Vec<GenOp>> {
    prop::collection::vec(
        (any::<bool>(), 0u32..1000, 0u32..50, 0u32..50, 0u8..10),
        1..max_ops,
    )
    .prop_map(|raw| {
        // One process per op keeps "one op at a time per process" trivially true.
        raw.into_iter()
            .enumerate()
            .map(|(i, (is_write, start, d1, d2, o))| GenOp {
                process: i as u64,
                is_write,
                invoke: start * 3,
                effect: start * 3 + d1 * 3 + 1,
                complete: start * 3 + d1 * 3 + d2 * 3 + 2,
                outcome: match o {
                    0 => Info,
                    1 => Fail,
                    _ => Done,
                },
            })
            .collect()
    })
}

/// Materializes generated ops into a history; writes get unique values 1, 2, ... (or, with
/// `modulo`, values 1..=modulo, repeated); reads return the register's value at their effect
/// instant. Failed writes never take effect; info writes take effect (they "happened" but the
/// client never heard).
fn materialize(ops: &[GenOp], modulo: Option<u64>) -> History {
    let val = |i: usize| modulo.map_or(i as u64 + 1, |m| i as u64 % m + 1);
    let mut points: Vec<(u32, u8, usize)> = Vec::new(); // (time, 0=invoke 1=effect 2=complete, op)
    for (i, o) in ops.iter().enumerate() {
        points.push((o.invoke, 0, i));
        points.push((o.effect, 1, i));
        points.push((o.complete, 2, i));
    }
    points.sort();
    let mut reg: Option<u64> = None;
    let mut read_values = vec![None; ops.len()];
    for &(_, what, i) in &points {
        let o = &ops[i];
        if what == 1 {
            if o.is_write && o.outcome != Fail {
                reg = Some(val(i));
            } else if !o.is_write {
                read_values[i] = reg;
            }
        }
    }
    let mut events = Vec::new();
    for &(t, what, i) in &points {
        let o = &ops[i];
        let value = val(i);
        let (kind, op) = match what {
            0 => (Invoke, if o.is_write { w(1, value) } else { r(1, None) }),
            1 => continue,
            _ => (
                o.outcome,
                match (o.is_write, o.outcome) {
                    (true, _) => w(1, value),
                    (false, Done) => r(1, read_values[i]),
                    (false, _) => r(1, None),
                },
            ),
        };
        events.push(Event {
            index: 0,
            process: o.process,
            kind,
            op,
            time_nanos: u64::from(t),
            node: None,
        });
    }
    History::from_events(events)
}

fn cases() -> u32 {
    std::env::var("ZCORE_CHECKER_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
}

proptest! {
    // ZCORE_CHECKER_CASES=N runs longer campaigns (default 200 cases per property).
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    /// Sequential histories (one op at a time, any process) of a real register are linearizable;
    /// changing one read to a never-written value makes them not.
    #[test]
    fn sequential_register_histories(ops in prop::collection::vec((0u64..4, 0u64..3, any::<bool>()), 1..120), pick in any::<prop::sample::Index>()) {
        let mut regs = [None::<u64>; 3];
        let mut ev = Vec::new();
        let mut next = 1u64;
        for &(p, key, is_write) in &ops {
            if is_write {
                ev.push((p, Invoke, w(key, next)));
                ev.push((p, Done, w(key, next)));
                regs[key as usize] = Some(next);
                next += 1;
            } else {
                ev.push((p, Invoke, r(key, None)));
                ev.push((p, Done, r(key, regs[key as usize])));
            }
        }
        let h = hist(&ev);
        let rep = lin(&h);
        prop_assert_eq!(rep.verdict, Valid, "{:?}", rep);

        let reads: Vec<usize> = h.events.iter().enumerate()
            .filter(|(_, e)| e.kind == Done && matches!(e.op, Op::Read { .. }))
            .map(|(i, _)| i)
            .collect();
        if !reads.is_empty() {
            let mut bad = h.clone();
            let i = reads[pick.index(reads.len())];
            if let Op::Read { key, .. } = bad.events[i].op {
                bad.events[i].op = r(key, Some(1_000_000)); // never written
            }
            let rep = lin(&bad);
            prop_assert_eq!(rep.verdict, Invalid);
            prop_assert_eq!(rep.violations[0].blocked.map(|b| b.completion_index), Some(Some(i as u64)));
        }
    }

    /// Concurrent histories generated from a real register (effects at random instants inside
    /// each op's interval, info writes that did take effect, failed writes that did not) are
    /// linearizable, and our verdict equals todc-utils' on them.
    #[test]
    fn concurrent_register_histories_are_linearizable(ops in gen_ops(40)) {
        let h = materialize(&ops, None);
        let rep = lin(&h);
        prop_assert_eq!(rep.verdict, Valid, "{:?}\n{:?}", rep, h);
        prop_assert_eq!(lin_wgl(&h).verdict, Valid);
        prop_assert!(todc_verdict(&h));
        // Repeated values take the WGL path.
        let dup = materialize(&ops, Some(3));
        prop_assert_eq!(lin(&dup).verdict, Valid, "{:?}", dup);
        prop_assert!(todc_verdict(&dup));
    }

    /// On arbitrary (mostly non-linearizable) histories — reads return random earlier-or-later
    /// written values — our verdict equals todc-utils'.
    #[test]
    fn verdict_matches_todc_utils(ops in gen_ops(14), reads in prop::collection::vec(0u64..16, 14), dup in any::<bool>()) {
        let h = random_reads(&ops, &reads, dup);
        let ours = lin(&h).verdict;
        prop_assert_ne!(ours, Unknown);
        prop_assert_eq!(ours, lin_wgl(&h).verdict);
        prop_assert_eq!(ours == Valid, todc_verdict(&h), "{:?}", h);
    }
}

/// A generated history whose ok reads return arbitrary values (0 = never written) instead of
/// the register's; with `dup`, written values repeat (1..=3) and reads pick among 0..=4.
fn random_reads(ops: &[GenOp], reads: &[u64], dup: bool) -> History {
    let mut h = materialize(ops, dup.then_some(3));
    let mut k = 0;
    for e in &mut h.events {
        if e.kind == Done
            && let Op::Read { key, .. } = e.op
        {
            let v = reads[k % reads.len()] % if dup { 5 } else { 16 };
            e.op = r(key, (v > 0).then_some(v));
            k += 1;
        }
    }
    h
}

fn arb_mop() -> impl Strategy<Value = Mop> {
    prop_oneof![
        (0u64..3, 0u64..4).prop_map(|(k, v)| app(k, v)),
        (
            0u64..3,
            prop::option::of(prop::collection::vec(0u64..4, 0..3))
        )
            .prop_map(|(k, v)| rl(k, v)),
        (0u64..3, prop::option::of(0u64..4)).prop_map(|(k, v)| rr(k, v)),
        (0u64..3, 0u64..4).prop_map(|(k, v)| rw(k, v)),
    ]
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u64..3, prop::option::of(0u64..4)).prop_map(|(k, v)| r(k, v)),
        (0u64..3, 0u64..4).prop_map(|(k, v)| w(k, v)),
        prop::collection::vec(arb_mop(), 0..4).prop_map(txn),
    ]
}

fn arb_kind() -> impl Strategy<Value = EventKind> {
    prop_oneof![Just(Invoke), Just(Done), Just(Fail), Just(Info)]
}

fn arb_obs() -> impl Strategy<Value = RaftObservation> {
    let role = prop_oneof![
        Just(NodeRole::Leader),
        Just(NodeRole::Follower),
        Just(NodeRole::Candidate),
        Just(NodeRole::Learner),
        Just(NodeRole::Down)
    ];
    let id =
        (0u64..3, 0u64..3, 0u64..5).prop_map(|(term, node, index)| RaftLogId { term, node, index });
    (
        0u64..3,
        0u64..4,
        prop::option::of((0u64..4, prop::option::of(0u64..3), any::<bool>())),
        role,
        prop::option::of(id.clone()),
        prop::option::of(id),
        prop::collection::vec((0u64..6, 0u64..3, 0u64..3, 0u64..3), 0..5),
    )
        .prop_map(
            |(node, term, vote, state, committed, last_applied, log)| RaftObservation {
                node,
                term,
                vote: vote.map(|(term, node, committed)| RaftVote {
                    term,
                    node,
                    committed,
                }),
                leader: None,
                state,
                committed,
                last_applied,
                log: log
                    .into_iter()
                    .map(|(index, term, node, digest)| RaftLogEntry {
                        index,
                        term,
                        node,
                        digest,
                    })
                    .collect(),
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    /// No checker panics, whatever the input: arbitrary (often malformed) histories, final states
    /// and Raft observations give a report or an error.
    #[test]
    fn checkers_never_panic(
        events in prop::collection::vec((0u64..3, arb_kind(), arb_op()), 0..16),
        lists in prop::collection::btree_map(0u64..3, prop::collection::vec(0u64..4, 0..4), 0..3),
        registers in prop::collection::btree_map(0u64..3, prop::option::of(0u64..4), 0..3),
        steps in prop::collection::vec(prop::collection::vec(arb_obs(), 0..4), 0..6),
        advanced in any::<bool>(),
    ) {
        let h = hist(&events);
        let _ = linearizable::check(&h, &LinearizabilityConfig::default());
        let _ = linearizable::check(&h, &LinearizabilityConfig { force_wgl: true, ..LinearizabilityConfig::default() });
        let _ = isolation::check(&h, &IsolationConfig::new(IsolationLevel::StrictSerializable));
        let _ = bank::check(&h, &bank_cfg());
        let fin = FinalState { lists, registers, ..FinalState::default() };
        let _ = durability::check(&h, &fin);
        let _ = FinalState::from_reads(&h);
        let _ = convergence::check_progress(&h, 3_000, 9_000);
        let _ = h.to_edn();
        let _ = h.to_json();
        let _ = h.txns_only().validate();
        let mode = if advanced { LeaderIdMode::Advanced } else { LeaderIdMode::Standard };
        let mut raft = RaftSafetyChecker::new(mode);
        for (i, batch) in steps.iter().enumerate() {
            let _ = raft.observe(i as u64, batch);
        }
        // Well-formed subsets are checked for real (not just rejected).
        let mut rec = Recorder::new();
        let mut open: std::collections::BTreeMap<u64, zcore_sim::history::OpHandle> = std::collections::BTreeMap::new();
        for (i, (p, kind, op)) in events.iter().enumerate() {
            let now = Duration::from_micros(i as u64);
            match open.remove(p) {
                None => {
                    if let Ok(hd) = rec.invoke(*p, op.clone(), now) {
                        open.insert(*p, hd);
                    }
                }
                Some(hd) => {
                    let _ = match kind {
                        Done | Invoke => rec.ok(hd, op.clone(), now),
                        Fail => rec.fail(hd, now),
                        Info => rec.info(hd, now),
                    };
                }
            }
        }
        let good = rec.finish(Duration::from_secs(1));
        prop_assert!(good.validate().is_ok());
        let back = History::from_json(&good.to_json().expect("small values")).expect("reads back");
        prop_assert_eq!(back.len(), good.len());
        // Exact up to the format's one ambiguity: a `null` read may be a list or a register read.
        let norm = |h: &History| {
            let mut h = h.clone();
            for e in &mut h.events {
                if let Op::Txn(mops) = &mut e.op {
                    for m in mops.iter_mut() {
                        if let Mop::ReadList { key, value: None } = *m {
                            *m = Mop::RegRead { key, value: None };
                        }
                    }
                }
            }
            h
        };
        prop_assert_eq!(norm(&back), norm(&good));
        prop_assert!(linearizable::check(&good, &LinearizabilityConfig::default()).is_ok());
        prop_assert!(bank::check(&good, &bank_cfg()).is_ok());
        prop_assert!(durability::check(&good, &FinalState::default()).is_ok());
    }
}

/// Random histories with random read values, as in `verdict_matches_todc_utils`, but counted:
/// both verdicts must occur often (so the agreement is not vacuous), and the zone check, the
/// WGL search and todc-utils always agree — with unique values (zones) and repeated ones (WGL).
#[test]
fn verdict_agreement_with_todc_utils_covers_both_outcomes() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = (gen_ops(14), prop::collection::vec(0u64..16, 14));
    for dup in [false, true] {
        let (mut valid, mut invalid) = (0, 0);
        for _ in 0..2_000 {
            let (ops, reads) = strategy.new_tree(&mut runner).expect("generate").current();
            let h = random_reads(&ops, &reads, dup);
            let ours = lin(&h).verdict;
            assert_eq!(ours, lin_wgl(&h).verdict, "{h:?}");
            assert_eq!(ours == Valid, todc_verdict(&h), "{h:?}");
            match ours {
                Valid => valid += 1,
                Invalid => invalid += 1,
                Unknown => panic!("tiny history undecided"),
            }
        }
        println!(
            "todc-utils agreement (repeated values: {dup}): {valid} linearizable, {invalid} not, of 2000"
        );
        assert!(
            valid >= 200 && invalid >= 200,
            "{valid} valid, {invalid} invalid"
        );
    }
}

#[test]
// Wall-clock timing of the checker itself (printed, never asserted), outside any simulation.
#[allow(clippy::disallowed_methods)]
fn linearizable_large_generated_history_timing() {
    // A long concurrent history (20k ops on 2 keys, 7,500 searched per key) to show the cost
    // stays near-linear.
    let mut ev = Vec::new();
    let mut regs = [None::<u64>; 2];
    let mut next = 1;
    // Two overlapping clients per round on the same key, writes and reads interleaved.
    for round in 0..5_000u64 {
        let key = round % 2;
        let v = next;
        next += 1;
        ev.push((0, Invoke, w(key, v)));
        ev.push((1, Invoke, r(key, None)));
        // The read takes effect before the write.
        let seen = regs[key as usize];
        ev.push((1, Done, r(key, seen)));
        ev.push((0, Done, w(key, v)));
        regs[key as usize] = Some(v);
        ev.push((2, Invoke, r(key, None)));
        ev.push((2, Done, r(key, Some(v))));
        ev.push((3, Invoke, w(key, next)));
        ev.push((3, Info, w(key, next)));
        next += 1;
    }
    let h = hist(&ev);
    let start = std::time::Instant::now();
    let rep = lin(&h);
    let took = start.elapsed();
    assert_eq!(rep.verdict, Valid, "{:?}", rep.violations.first());
    println!(
        "linearizability: {} events, {} ops checked over {} keys, {} steps (max {} per key) in {:?}",
        h.len(),
        rep.ops_checked,
        rep.keys_checked,
        rep.steps,
        rep.max_key_steps,
        took
    );
}

// ---------------------------------------------------------------------------------------------
// Isolation (adya).

fn iso(h: &History, level: IsolationLevel) -> isolation::IsolationReport {
    isolation::check(h, &IsolationConfig::new(level)).expect("checkable history")
}

#[test]
fn isolation_accepts_serial_list_append() {
    let h = hist(&[
        (0, Invoke, txn(vec![app(1, 1), app(2, 1)])),
        (0, Done, txn(vec![app(1, 1), app(2, 1)])),
        (1, Invoke, txn(vec![rl(1, None), app(1, 2)])),
        (1, Done, txn(vec![rl(1, Some(vec![1])), app(1, 2)])),
        (2, Invoke, txn(vec![rl(1, None), rl(2, None)])),
        (
            2,
            Done,
            txn(vec![rl(1, Some(vec![1, 2])), rl(2, Some(vec![1]))]),
        ),
        (3, Invoke, txn(vec![app(2, 9)])),
        (3, Fail, txn(vec![app(2, 9)])),
    ]);
    let rep = iso(&h, IsolationLevel::StrictSerializable);
    assert_eq!(rep.verdict, Valid, "{rep:?}");
    assert_eq!((rep.workload, rep.txns), (Some(TxnWorkload::ListAppend), 4));
}

fn write_skew() -> History {
    // Each txn reads both keys empty and appends to a different one.
    hist(&[
        (0, Invoke, txn(vec![rl(1, None), rl(2, None), app(1, 1)])),
        (1, Invoke, txn(vec![rl(1, None), rl(2, None), app(2, 1)])),
        (
            0,
            Done,
            txn(vec![rl(1, Some(vec![])), rl(2, Some(vec![])), app(1, 1)]),
        ),
        (
            1,
            Done,
            txn(vec![rl(1, Some(vec![])), rl(2, Some(vec![])), app(2, 1)]),
        ),
        // a later read that orders both appends
        (2, Invoke, txn(vec![rl(1, None), rl(2, None)])),
        (
            2,
            Done,
            txn(vec![rl(1, Some(vec![1])), rl(2, Some(vec![1]))]),
        ),
    ])
}

#[test]
fn isolation_write_skew_is_g2_under_serializable_but_allowed_under_si() {
    let h = write_skew();
    let ser = iso(&h, IsolationLevel::Serializable);
    assert_eq!(ser.verdict, Invalid, "{ser:?}");
    assert!(ser.has("G2-item"), "{:?}", ser.anomaly_types);
    let g2 = ser
        .anomalies
        .iter()
        .find(|a| a.kind == "G2-item")
        .expect("detail");
    assert_eq!(g2.events.len(), 2, "the two transactions: {g2:?}");
    assert!(g2.events.contains(&2) && g2.events.contains(&3), "{g2:?}");
    assert!(!g2.explanation.is_empty());
    let si = iso(&h, IsolationLevel::SnapshotIsolation);
    assert_eq!(si.verdict, Valid, "{si:?}");
}

#[test]
fn isolation_reports_g1c_cycle() {
    // T0 appends x=1 and reads y=[2]; T1 appends y=2 and reads x=[1]: each read the other's write.
    let h = hist(&[
        (0, Invoke, txn(vec![app(1, 1), rl(2, None)])),
        (1, Invoke, txn(vec![app(2, 2), rl(1, None)])),
        (0, Done, txn(vec![app(1, 1), rl(2, Some(vec![2]))])),
        (1, Done, txn(vec![app(2, 2), rl(1, Some(vec![1]))])),
    ]);
    let rep = iso(&h, IsolationLevel::ReadCommitted);
    assert_eq!(rep.verdict, Invalid);
    assert!(rep.has("G1c"), "{:?}", rep.anomaly_types);
}

#[test]
fn isolation_reports_g0_g1a_and_g1b() {
    // G0: T0 and T1 both append to keys 1 and 2; a reader sees them in opposite orders.
    let g0 = hist(&[
        (0, Invoke, txn(vec![app(1, 1), app(2, 1)])),
        (1, Invoke, txn(vec![app(1, 2), app(2, 2)])),
        (0, Done, txn(vec![app(1, 1), app(2, 1)])),
        (1, Done, txn(vec![app(1, 2), app(2, 2)])),
        (2, Invoke, txn(vec![rl(1, None), rl(2, None)])),
        (
            2,
            Done,
            txn(vec![rl(1, Some(vec![1, 2])), rl(2, Some(vec![2, 1]))]),
        ),
    ]);
    let rep = iso(&g0, IsolationLevel::ReadCommitted);
    assert!(rep.has("G0"), "{:?}", rep.anomaly_types);
    // G1a: a failed append was read.
    let g1a = hist(&[
        (0, Invoke, txn(vec![app(1, 1)])),
        (0, Fail, txn(vec![app(1, 1)])),
        (1, Invoke, txn(vec![rl(1, None)])),
        (1, Done, txn(vec![rl(1, Some(vec![1]))])),
    ]);
    let rep = iso(&g1a, IsolationLevel::ReadCommitted);
    assert_eq!(rep.verdict, Invalid);
    assert!(rep.has("G1a"), "{:?}", rep.anomaly_types);
    // G1b: an intermediate state (first of two appends of one txn) was read.
    let g1b = hist(&[
        (0, Invoke, txn(vec![app(1, 1), app(1, 2)])),
        (0, Done, txn(vec![app(1, 1), app(1, 2)])),
        (1, Invoke, txn(vec![rl(1, None)])),
        (1, Done, txn(vec![rl(1, Some(vec![1]))])),
    ]);
    let rep = iso(&g1b, IsolationLevel::ReadCommitted);
    assert!(rep.has("G1b"), "{:?}", rep.anomaly_types);
}

#[test]
fn isolation_rw_register_cycle_and_input_errors() {
    let g1c = hist(&[
        (0, Invoke, txn(vec![rw(1, 1), rr(2, None)])),
        (1, Invoke, txn(vec![rw(2, 2), rr(1, None)])),
        (0, Done, txn(vec![rw(1, 1), rr(2, Some(2))])),
        (1, Done, txn(vec![rw(2, 2), rr(1, Some(1))])),
    ]);
    let rep = iso(&g1c, IsolationLevel::Serializable);
    assert_eq!(rep.workload, Some(TxnWorkload::RwRegister));
    assert_eq!(rep.verdict, Invalid);
    assert!(rep.has("G1c"), "{:?}", rep.anomaly_types);
    let ok = hist(&[
        (0, Invoke, txn(vec![rw(1, 1)])),
        (0, Done, txn(vec![rw(1, 1)])),
        (1, Invoke, txn(vec![rr(1, None), rw(2, 5)])),
        (1, Done, txn(vec![rr(1, Some(1)), rw(2, 5)])),
    ]);
    assert_eq!(iso(&ok, IsolationLevel::Serializable).verdict, Valid);

    let mixed = hist(&[
        (0, Invoke, txn(vec![app(1, 1), rw(2, 1)])),
        (0, Done, txn(vec![app(1, 1), rw(2, 1)])),
    ]);
    assert!(matches!(
        isolation::check(&mixed, &IsolationConfig::new(IsolationLevel::Serializable)),
        Err(CheckError::MixedWorkload { .. })
    ));
    let dup = hist(&[
        (0, Invoke, txn(vec![rw(1, 1)])),
        (0, Done, txn(vec![rw(1, 1)])),
        (1, Invoke, txn(vec![rw(1, 1)])),
        (1, Done, txn(vec![rw(1, 1)])),
    ]);
    assert!(matches!(
        isolation::check(&dup, &IsolationConfig::new(IsolationLevel::Serializable)),
        Err(CheckError::DuplicateWrite {
            key: 1,
            value: 1,
            first: 0,
            second: 2
        })
    ));
    let none = hist(&[(0, Invoke, w(1, 1)), (0, Done, w(1, 1))]);
    assert_eq!(iso(&none, IsolationLevel::Serializable).verdict, Unknown);
}

// ---------------------------------------------------------------------------------------------
// Bank.

fn bank_cfg() -> BankConfig {
    BankConfig {
        accounts: vec![0, 1, 2],
        total: 300,
        allow_negative: false,
    }
}

fn transfer(from: u64, fb: u64, to: u64, tb: u64, amount: u64) -> (Op, Op) {
    let inv = txn(vec![
        rr(from, None),
        rr(to, None),
        rw(from, fb - amount),
        rw(to, tb + amount),
    ]);
    let done = txn(vec![
        rr(from, Some(fb)),
        rr(to, Some(tb)),
        rw(from, fb - amount),
        rw(to, tb + amount),
    ]);
    (inv, done)
}

fn read_all(b: [u64; 3]) -> (Op, Op) {
    (
        txn(vec![rr(0, None), rr(1, None), rr(2, None)]),
        txn(vec![
            rr(0, Some(b[0])),
            rr(1, Some(b[1])),
            rr(2, Some(b[2])),
        ]),
    )
}

#[test]
fn bank_accepts_conserving_history() {
    let (t1, t1d) = transfer(0, 100, 1, 100, 30);
    let (a1, a1d) = read_all([70, 130, 100]);
    let (t2, _) = transfer(1, 130, 2, 100, 50); // unknown outcome: its reads and writes are not checked
    let (a2, a2d) = read_all([70, 130, 100]);
    let h = hist(&[
        (0, Invoke, t1),
        (0, Done, t1d),
        (1, Invoke, a1),
        (1, Done, a1d),
        (
            2,
            Invoke,
            txn(vec![rr(1, None), rr(2, None), rw(1, 0), rw(2, 0)]),
        ),
        (
            2,
            Fail,
            txn(vec![rr(1, None), rr(2, None), rw(1, 0), rw(2, 0)]),
        ),
        (3, Invoke, t2.clone()),
        (3, Info, t2),
        (1, Invoke, a2),
        (1, Done, a2d),
    ]);
    let rep = bank::check(&h, &bank_cfg()).expect("ok");
    assert_eq!(rep.verdict, Valid, "{rep:?}");
    assert_eq!((rep.full_reads, rep.transfers_checked), (2, 1));
}

#[test]
fn bank_reports_wrong_total_negative_balance_and_unconserved_transfer() {
    let (a, ad) = read_all([100, 100, 90]);
    let h = hist(&[(0, Invoke, a), (0, Done, ad)]);
    let rep = bank::check(&h, &bank_cfg()).expect("ok");
    assert_eq!(rep.verdict, Invalid);
    assert_eq!(
        rep.violations[0].kind,
        BankViolationKind::WrongTotal {
            expected: 300,
            observed: 290
        }
    );
    assert_eq!(rep.violations[0].event, 1);

    // A balance below zero (two's complement), even if the total is right.
    let neg = (-10i64) as u64;
    let (a, ad) = read_all([neg, 210, 100]);
    let h = hist(&[(0, Invoke, a), (0, Done, ad)]);
    let rep = bank::check(&h, &bank_cfg()).expect("ok");
    assert_eq!(rep.verdict, Invalid);
    assert_eq!(
        rep.violations[0].kind,
        BankViolationKind::NegativeBalance {
            account: 0,
            balance: -10
        }
    );
    let allowed = BankConfig {
        allow_negative: true,
        ..bank_cfg()
    };
    assert_eq!(bank::check(&h, &allowed).expect("ok").verdict, Valid);

    // A transfer that creates money.
    let bad = txn(vec![
        rr(0, Some(100)),
        rr(1, Some(100)),
        rw(0, 50),
        rw(1, 160),
    ]);
    let h = hist(&[(0, Invoke, bad.clone()), (0, Done, bad)]);
    let rep = bank::check(&h, &bank_cfg()).expect("ok");
    assert_eq!(
        rep.violations[0].kind,
        BankViolationKind::Unconserved {
            read_sum: 200,
            written_sum: 210
        }
    );
    // No full read: nothing to compare to.
    assert_eq!(rep.full_reads, 0);
    let (t, td) = transfer(0, 100, 1, 100, 1);
    let h = hist(&[(0, Invoke, t), (0, Done, td)]);
    assert_eq!(bank::check(&h, &bank_cfg()).expect("ok").verdict, Unknown);
}

// ---------------------------------------------------------------------------------------------
// Raft safety.

fn obs(node: u64, term: u64, state: NodeRole, log: &[(u64, u64, u64)]) -> RaftObservation {
    RaftObservation {
        node,
        term,
        vote: None,
        leader: None,
        state,
        committed: None,
        last_applied: None,
        log: log
            .iter()
            .map(|&(index, term, digest)| RaftLogEntry {
                index,
                term,
                node: 0,
                digest,
            })
            .collect(),
    }
}

fn lid(term: u64, index: u64) -> Option<RaftLogId> {
    Some(RaftLogId {
        term,
        node: 0,
        index,
    })
}

#[test]
fn raft_accepts_valid_run_with_crash_and_restart() {
    let mut c = RaftSafetyChecker::new(LeaderIdMode::Standard);
    use NodeRole::*;
    let l1 = [(1, 1, 11), (2, 1, 12)];
    let mut leader = obs(0, 1, Leader, &l1);
    leader.vote = Some(RaftVote {
        term: 1,
        node: Some(0),
        committed: true,
    });
    leader.committed = lid(1, 2);
    leader.last_applied = lid(1, 2);
    let mut f1 = obs(1, 1, Follower, &l1);
    f1.committed = lid(1, 1);
    f1.last_applied = lid(1, 1);
    f1.vote = Some(RaftVote {
        term: 1,
        node: Some(0),
        committed: true,
    });
    let f2 = obs(2, 1, Follower, &[(1, 1, 11)]);
    c.observe(1, &[leader.clone(), f1.clone(), f2])
        .expect("valid");
    // Node 1 crashes; its volatile commit/applied restart lower, which is fine after Down.
    c.observe(2, &[obs(1, 1, Down, &[])]).expect("valid");
    let mut f1b = obs(1, 1, Follower, &l1);
    f1b.committed = lid(1, 1);
    f1b.last_applied = lid(1, 1);
    c.observe(3, &[f1b])
        .expect("restart may reset volatile state");
    // Node 2 is elected in term 2 with the full committed log and appends.
    let l2 = [(1, 1, 11), (2, 1, 12), (3, 2, 13)];
    let mut n2 = obs(2, 2, Leader, &l2);
    n2.vote = Some(RaftVote {
        term: 2,
        node: Some(2),
        committed: true,
    });
    n2.committed = lid(2, 3);
    n2.last_applied = lid(2, 3);
    let mut old = obs(0, 2, Follower, &l2);
    old.vote = Some(RaftVote {
        term: 2,
        node: Some(2),
        committed: true,
    });
    old.last_applied = lid(2, 3);
    c.observe(4, &[n2, old]).expect("valid");
    assert!(c.violations().is_empty());
    assert_eq!(c.counts(), (7, 4));
    assert_eq!(c.max_committed_index(), Some(3));
    assert_eq!(c.leaders(), vec![(1, 0), (2, 2)]);
}

#[test]
fn raft_reports_two_leaders_in_one_term() {
    let mut c = RaftSafetyChecker::new(LeaderIdMode::Standard);
    c.observe(1, &[obs(0, 3, NodeRole::Leader, &[])])
        .expect("one leader");
    let v = c
        .observe(2, &[obs(1, 3, NodeRole::Leader, &[])])
        .expect_err("two leaders in term 3");
    assert_eq!(v.kind, RaftViolationKind::ElectionSafety);
    assert_eq!((v.step, v.nodes.clone()), (2, vec![0, 1]));

    // openraft's default (advanced) leader ids allow it, if each leader holds its own vote...
    let mut adv = RaftSafetyChecker::new(LeaderIdMode::Advanced);
    let mut a = obs(0, 3, NodeRole::Leader, &[]);
    a.vote = Some(RaftVote {
        term: 3,
        node: Some(0),
        committed: true,
    });
    let mut b = obs(1, 3, NodeRole::Leader, &[]);
    b.vote = Some(RaftVote {
        term: 3,
        node: Some(1),
        committed: true,
    });
    adv.observe(1, &[a, b.clone()])
        .expect("legal in advanced mode");
    // ...but not a leader whose vote names another node.
    b.vote = Some(RaftVote {
        term: 3,
        node: Some(0),
        committed: true,
    });
    let v = adv
        .observe(2, &[b])
        .expect_err("leader without its own vote");
    assert!(matches!(
        v.kind,
        RaftViolationKind::LeaderWithoutOwnVote | RaftViolationKind::VoteWentBackwards
    ));
}

#[test]
fn raft_reports_divergent_logs() {
    let mut c = RaftSafetyChecker::new(LeaderIdMode::Standard);
    c.observe(
        1,
        &[obs(0, 2, NodeRole::Follower, &[(1, 1, 11), (2, 2, 22)])],
    )
    .expect("ok");
    let v = c
        .observe(
            2,
            &[obs(1, 2, NodeRole::Follower, &[(1, 1, 11), (2, 2, 99)])],
        )
        .expect_err("same index and term, different digest");
    assert_eq!(v.kind, RaftViolationKind::LogMatching);
    assert!(v.detail.contains("index 2"), "{}", v.detail);

    // Same (index, term) and digest but a different prefix.
    let mut c = RaftSafetyChecker::new(LeaderIdMode::Standard);
    c.observe(
        1,
        &[obs(0, 3, NodeRole::Follower, &[(1, 1, 11), (2, 3, 33)])],
    )
    .expect("ok");
    let v = c
        .observe(
            2,
            &[obs(1, 3, NodeRole::Follower, &[(1, 2, 21), (2, 3, 33)])],
        )
        .expect_err("same entry, different predecessor");
    assert_eq!(v.kind, RaftViolationKind::LogMatching);

    // A log whose terms go down is malformed.
    let mut c = RaftSafetyChecker::new(LeaderIdMode::Standard);
    let v = c
        .observe(1, &[obs(0, 3, NodeRole::Follower, &[(1, 2, 1), (2, 1, 2)])])
        .expect_err("malformed");
    assert_eq!(v.kind, RaftViolationKind::MalformedLog);
}

#[test]
fn raft_reports_leader_missing_committed_entry() {
    let mut c = RaftSafetyChecker::new(LeaderIdMode::Standard);
    let mut a = obs(0, 1, NodeRole::Leader, &[(1, 1, 11), (2, 1, 12)]);
    a.committed = lid(1, 2);
    c.observe(1, &[a]).expect("ok");
    // A new leader in term 2 lacks index 2: committed entries lost.
    let v = c
        .observe(2, &[obs(1, 2, NodeRole::Leader, &[(1, 1, 11)])])
        .expect_err("incomplete leader");
    assert_eq!(v.kind, RaftViolationKind::LeaderCompleteness);
    assert!(v.detail.contains("index 2"), "{}", v.detail);
    // A stale leader of the same old term is not held to entries committed in its own term.
    let mut c = RaftSafetyChecker::new(LeaderIdMode::Advanced);
    let mut a = obs(0, 2, NodeRole::Follower, &[(1, 1, 11), (2, 1, 12)]);
    a.committed = lid(1, 2);
    c.observe(1, &[a]).expect("ok");
    c.observe(2, &[obs(1, 2, NodeRole::Leader, &[(1, 1, 11)])])
        .expect("term 2 is not above the commit's term");
}

#[test]
fn raft_reports_different_entries_applied_at_one_index() {
    let mut c = RaftSafetyChecker::new(LeaderIdMode::Standard);
    let mut a = obs(0, 2, NodeRole::Follower, &[]);
    a.last_applied = lid(1, 5);
    let mut b = obs(1, 2, NodeRole::Follower, &[]);
    b.last_applied = lid(2, 5);
    let v = c
        .observe(1, &[a, b])
        .expect_err("two entries applied at index 5");
    assert_eq!(v.kind, RaftViolationKind::StateMachineSafety);
    assert_eq!(v.nodes, vec![0, 1]);
    // Committed entries must agree too.
    let mut c = RaftSafetyChecker::new(LeaderIdMode::Standard);
    let mut a = obs(0, 2, NodeRole::Follower, &[(1, 1, 5)]);
    a.committed = lid(1, 1);
    let mut b = obs(1, 2, NodeRole::Follower, &[(1, 2, 6)]);
    b.committed = lid(2, 1);
    let v = c
        .observe(1, &[a, b])
        .expect_err("two entries committed at index 1");
    assert_eq!(v.kind, RaftViolationKind::StateMachineSafety);
}

#[test]
fn raft_reports_backwards_term_vote_and_commit() {
    use NodeRole::*;
    let mut c = RaftSafetyChecker::new(LeaderIdMode::Standard);
    c.observe(1, &[obs(0, 5, Follower, &[])]).expect("ok");
    c.observe(2, &[obs(0, 0, Down, &[])]).expect("crash");
    let v = c
        .observe(3, &[obs(0, 4, Follower, &[])])
        .expect_err("term is persisted");
    assert_eq!(v.kind, RaftViolationKind::TermWentBackwards);

    // A vote that was not persisted: votes for node 1 in term 7, crashes, votes for node 2.
    let mut c = RaftSafetyChecker::new(LeaderIdMode::Standard);
    let mut o = obs(0, 7, Follower, &[]);
    o.vote = Some(RaftVote {
        term: 7,
        node: Some(1),
        committed: false,
    });
    c.observe(1, &[o.clone()]).expect("ok");
    c.observe(2, &[obs(0, 7, Down, &[])]).expect("crash");
    o.vote = Some(RaftVote {
        term: 7,
        node: Some(2),
        committed: false,
    });
    let v = c.observe(3, &[o]).expect_err("voted twice in term 7");
    assert_eq!(v.kind, RaftViolationKind::VoteWentBackwards);
    // In advanced mode a vote may move to a greater leader id in the same term, not a smaller.
    let mut c = RaftSafetyChecker::new(LeaderIdMode::Advanced);
    let mut o = obs(0, 7, Follower, &[]);
    o.vote = Some(RaftVote {
        term: 7,
        node: Some(1),
        committed: false,
    });
    c.observe(1, &[o.clone()]).expect("ok");
    o.vote = Some(RaftVote {
        term: 7,
        node: Some(2),
        committed: false,
    });
    c.observe(2, &[o.clone()]).expect("greater leader id");
    o.vote = Some(RaftVote {
        term: 7,
        node: Some(1),
        committed: false,
    });
    assert_eq!(
        c.observe(3, &[o]).expect_err("smaller").kind,
        RaftViolationKind::VoteWentBackwards
    );

    // Commit and applied go backwards within one incarnation.
    let mut c = RaftSafetyChecker::new(LeaderIdMode::Standard);
    let mut o = obs(0, 1, Follower, &[]);
    o.committed = lid(1, 4);
    o.last_applied = lid(1, 4);
    c.observe(1, &[o.clone()]).expect("ok");
    o.committed = lid(1, 3);
    assert_eq!(
        c.observe(2, &[o.clone()]).expect_err("commit").kind,
        RaftViolationKind::CommitWentBackwards
    );
    o.committed = lid(1, 4);
    o.last_applied = lid(1, 2);
    assert_eq!(
        c.observe(3, &[o]).expect_err("applied").kind,
        RaftViolationKind::AppliedWentBackwards
    );
    assert_eq!(c.violations().len(), 2);
}

#[test]
// Wall-clock timing of the checker itself (printed, never asserted), outside any simulation.
#[allow(clippy::disallowed_methods)]
fn raft_checker_cost_on_long_run() {
    // 3 nodes, 5,000 steps, a log growing by one entry per step: the incremental checker only
    // looks at what changed.
    let mut c = RaftSafetyChecker::new(LeaderIdMode::Advanced);
    let mut log: Vec<RaftLogEntry> = Vec::new();
    let start = std::time::Instant::now();
    let mut in_checker = std::time::Duration::ZERO;
    for step in 1..=5_000u64 {
        log.push(RaftLogEntry {
            index: step,
            term: 1,
            node: 0,
            digest: step * 7,
        });
        let mk = |node: u64, state: NodeRole, upto: usize| RaftObservation {
            node,
            term: 1,
            vote: Some(RaftVote {
                term: 1,
                node: Some(0),
                committed: true,
            }),
            leader: Some(0),
            state,
            committed: Some(RaftLogId {
                term: 1,
                node: 0,
                index: upto.max(1) as u64 - 1,
            })
            .filter(|l| l.index > 0),
            last_applied: None,
            log: log[..upto].to_vec(),
        };
        let n = log.len();
        let batch = [
            mk(0, NodeRole::Leader, n),
            mk(1, NodeRole::Follower, n),
            mk(2, NodeRole::Follower, n - 1),
        ];
        let t = std::time::Instant::now();
        c.observe(step, &batch).expect("valid run");
        in_checker += t.elapsed();
    }
    assert_eq!(c.max_committed_index(), Some(4_999));
    println!(
        "raft safety: 5000 steps x 3 nodes (logs up to 5000 entries) in {:?}, of which {in_checker:?} in the checker",
        start.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// Durability.

#[test]
fn durability_accepts_complete_final_state() {
    let h = hist(&[
        (0, Invoke, txn(vec![app(1, 1), app(2, 1)])),
        (0, Done, txn(vec![app(1, 1), app(2, 1)])),
        (1, Invoke, txn(vec![app(1, 2), app(2, 2)])), // info: all or nothing
        (1, Info, txn(vec![app(1, 2), app(2, 2)])),
        (2, Invoke, txn(vec![app(1, 3)])),
        (2, Fail, txn(vec![app(1, 3)])),
        (3, Invoke, w(5, 10)),
        (3, Done, w(5, 10)),
        (3, Invoke, w(5, 11)),
        (4, Invoke, w(5, 12)),
        (3, Done, w(5, 11)),
        (4, Done, w(5, 12)), // concurrent with 11: either may be last
    ]);
    let mut fin = FinalState::default();
    fin.lists.insert(1, vec![1, 2]);
    fin.lists.insert(2, vec![1, 2]);
    fin.registers.insert(5, Some(11));
    let rep = durability::check(&h, &fin).expect("ok");
    assert_eq!(rep.verdict, Valid, "{rep:?}");
    assert_eq!(
        (rep.acked_writes_checked, rep.acked_writes_unchecked),
        (5, 0)
    );
    fin.lists.insert(1, vec![1]);
    fin.lists.insert(2, vec![1]);
    fin.registers.insert(5, Some(12));
    assert_eq!(durability::check(&h, &fin).expect("ok").verdict, Valid);
    // The final state can come from a history of final reads.
    let reads = hist(&[
        (9, Invoke, txn(vec![rl(1, None), rl(2, None)])),
        (
            9,
            Done,
            txn(vec![rl(1, Some(vec![1])), rl(2, Some(vec![1]))]),
        ),
        (9, Invoke, r(5, None)),
        (9, Done, r(5, Some(12))),
    ]);
    let from_reads = FinalState::from_reads(&reads);
    assert_eq!(from_reads.lists, fin.lists);
    assert_eq!(from_reads.registers, fin.registers);
}

#[test]
fn durability_lets_an_info_write_land_after_later_acked_writes() {
    // Write 1 timed out (info) before write 2 was even invoked, yet may have been applied last
    // (e.g. it sat in the Raft log): 1 as the final value is legal.
    let h = hist(&[
        (0, Invoke, w(5, 1)),
        (0, Info, w(5, 1)),
        (1, Invoke, w(5, 2)),
        (1, Done, w(5, 2)),
    ]);
    let mut fin = FinalState::default();
    fin.registers.insert(5, Some(1));
    assert_eq!(durability::check(&h, &fin).expect("ok").verdict, Valid);
    // Had write 1 been acknowledged before write 2 began, write 2 would be lost.
    let h = hist(&[
        (0, Invoke, w(5, 1)),
        (0, Done, w(5, 1)),
        (1, Invoke, w(5, 2)),
        (1, Done, w(5, 2)),
    ]);
    assert_eq!(durability::check(&h, &fin).expect("ok").verdict, Invalid);
}

#[test]
fn durability_reports_lost_acked_writes() {
    let h = hist(&[
        (0, Invoke, txn(vec![app(1, 1)])),
        (0, Done, txn(vec![app(1, 1)])),
        (0, Invoke, txn(vec![app(1, 2)])),
        (0, Done, txn(vec![app(1, 2)])),
        (1, Invoke, w(5, 10)),
        (1, Done, w(5, 10)),
        (1, Invoke, w(5, 11)),
        (1, Done, w(5, 11)),
    ]);
    let mut fin = FinalState::default();
    fin.lists.insert(1, vec![1]); // append 2 was acknowledged, then lost in the crash
    fin.registers.insert(5, Some(10)); // write 11 came strictly after 10: lost
    let rep = durability::check(&h, &fin).expect("ok");
    assert_eq!(rep.verdict, Invalid);
    assert_eq!(rep.violations.len(), 2, "{rep:?}");
    assert_eq!(rep.violations[0].key, 1);
    assert_eq!(rep.violations[0].value, Some(2));
    assert_eq!(rep.violations[0].invoke_event, Some(2));
    assert!(matches!(
        rep.violations[0].kind,
        DurabilityViolationKind::LostWrite { .. }
    ));
    assert_eq!(
        rep.violations[1].kind,
        DurabilityViolationKind::LostWrite {
            final_value: Some(10),
            overwritten_by_earlier: Some(4)
        }
    );
    // A key that vanished entirely.
    fin.registers.insert(5, None);
    let rep = durability::check(&h, &fin).expect("ok");
    assert_eq!(rep.violations.iter().filter(|v| v.key == 5).count(), 2);
}

#[test]
fn durability_reports_failed_phantom_duplicate_and_partial_writes() {
    let h = hist(&[
        (0, Invoke, txn(vec![app(1, 1)])),
        (0, Fail, txn(vec![app(1, 1)])),
        (1, Invoke, txn(vec![app(2, 1), app(3, 1)])),
        (1, Info, txn(vec![app(2, 1), app(3, 1)])),
        (2, Invoke, txn(vec![rw(4, 1), rw(4, 2)])),
        (2, Done, txn(vec![rw(4, 1), rw(4, 2)])),
    ]);
    let mut fin = FinalState::default();
    fin.lists.insert(1, vec![1, 7, 7]); // failed append visible, phantom 7 twice
    fin.lists.insert(2, vec![1]); // half of an info transaction
    fin.lists.insert(3, vec![]);
    fin.registers.insert(4, Some(1)); // the txn's intermediate write
    let rep = durability::check(&h, &fin).expect("ok");
    let kinds: Vec<&DurabilityViolationKind> = rep.violations.iter().map(|v| &v.kind).collect();
    assert!(
        kinds.contains(&&DurabilityViolationKind::FailedWriteVisible),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&&DurabilityViolationKind::Phantom),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&&DurabilityViolationKind::Duplicated { count: 2 }),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&&DurabilityViolationKind::IntermediateValue),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&&DurabilityViolationKind::PartialTransaction {
            present: vec![(2, 1)],
            missing: vec![(3, 1)]
        }),
        "{kinds:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Convergence.

fn summary(node: u64, role: NodeRole, leader: Option<u64>, index: u64, hash: &[u8]) -> NodeSummary {
    NodeSummary {
        node,
        role,
        term: 4,
        leader,
        applied: Some(RaftLogId {
            term: 4,
            node: 0,
            index,
        }),
        state_hash: hash.to_vec(),
    }
}

#[test]
fn convergence_accepts_agreeing_nodes_and_reports_divergence() {
    use NodeRole::*;
    let good = [
        summary(0, Leader, Some(0), 10, b"h"),
        summary(1, Follower, Some(0), 10, b"h"),
        summary(2, Follower, Some(0), 10, b"h"),
    ];
    assert_eq!(convergence::check(&good).expect("ok").verdict, Valid);
    let two = [
        summary(0, Leader, Some(0), 10, b"h"),
        summary(1, Leader, Some(1), 10, b"h"),
        summary(2, Follower, Some(0), 10, b"h"),
    ];
    let rep = convergence::check(&two).expect("ok");
    assert_eq!(
        rep.violations[0],
        ConvergenceViolation::LeaderCount {
            leaders: vec![0, 1]
        }
    );
    let diverged = [
        summary(0, Leader, Some(0), 10, b"h"),
        summary(1, Follower, Some(0), 9, b"h"),
        summary(2, Follower, Some(0), 10, b"x"),
    ];
    let rep = convergence::check(&diverged).expect("ok");
    assert_eq!(rep.verdict, Invalid);
    assert!(matches!(
        rep.violations[0],
        ConvergenceViolation::AppliedDiffers { .. }
    ));
    assert_eq!(
        rep.violations[1],
        ConvergenceViolation::StateDiffers {
            groups: vec![("68".into(), vec![0, 1]), ("78".into(), vec![2])]
        }
    );
    assert!(convergence::check(&[]).is_err());
}

#[test]
fn convergence_progress_needs_fresh_ok_write_and_read() {
    let h = hist(&[
        (0, Invoke, w(1, 1)),
        (0, Done, w(1, 1)), // before the heal (t = 1 µs)
        (1, Invoke, r(1, None)),
        (1, Done, r(1, Some(1))),
        (2, Invoke, txn(vec![app(3, 1)])),
        (2, Info, txn(vec![app(3, 1)])),
    ]);
    let rep = convergence::check_progress(&h, 2_000, 10_000).expect("ok");
    assert_eq!(rep.verdict, Invalid);
    assert_eq!(
        rep.violations.len(),
        1,
        "the read succeeded, no write did: {rep:?}"
    );
    assert_eq!(
        convergence::check_progress(&h, 0, 10_000)
            .expect("ok")
            .verdict,
        Valid
    );
    assert_eq!(
        convergence::check_progress(&h, 0, 2_000)
            .expect("ok")
            .verdict,
        Invalid,
        "read completed too late"
    );
}

#[test]
fn verdicts_combine() {
    assert_eq!(Valid.and(Unknown), Unknown);
    assert_eq!(Unknown.and(Invalid), Invalid);
    assert_eq!(Verdict::Valid.and(Valid), Valid);
}
