//! The operation history format: client operations recorded as invoke/ok/fail/info events with
//! simulated time, and their export to Jepsen/Elle EDN and JSON.
//!
//! A [`History`] is the ordered list of [`Event`]s the simulator's clients produced. Every
//! operation appears as an `Invoke` event followed, on the same process, by exactly one completion:
//!
//! - `Ok`: the operation happened, and the completion's [`Op`] carries what it observed (read
//!   values filled in);
//! - `Fail`: the operation definitely did not happen (the server answered with a definite
//!   rejection, e.g. a conflict abort or "not leader" before anything was proposed);
//! - `Info`: unknown outcome (timeout, connection lost, node crashed mid-request): it may or may
//!   not have taken effect, now or at any later time.
//!
//! Jepsen's convention applies: a process runs one operation at a time, and after an `Info` the
//! client should continue under a fresh process id (the old process is "hung" forever). The
//! [`Recorder`] enforces the first rule and the checkers do not depend on the second.
//!
//! Use [`Recorder`] from client code (see its docs); [`History::to_edn`] / [`History::to_json`]
//! export the history so Jepsen's Elle (or `elle-cli`) can check it offline, and the checkers in
//! [`crate::checkers`] consume it directly.
//!
//! Value conventions:
//! - register ops (`Op::Read` / `Op::Write`) are independent per-key registers; every write should
//!   use a value never written before to that key (the linearizability checker relies on it to
//!   tell writes apart), and `Read { value: None }` on an `Ok` means "the key was never written";
//!   on an `Invoke` it means "not known yet".
//! - `Mop::ReadList { value }` on an `Ok` is the whole list read (`Some(vec![])` for an absent
//!   key; `None` is read as empty too, as Elle does); `Mop::RegRead { value: None }` on an `Ok`
//!   means the key was never written.
//! - list-append and rw-register micro-ops should not be mixed within one history checked by the
//!   isolation checker (Elle checks one workload at a time); bank transfers are rw-register
//!   transactions over account keys, with balances as values.
//! - keys and values must fit in an `i64` (≤ `i64::MAX`) to be exported: Elle reads Clojure
//!   longs. Export returns [`HistoryError::ValueOutOfRange`] otherwise.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Errors from recording or exporting a history.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HistoryError {
    /// `invoke` on a process that still has an operation open.
    #[error(
        "process {process} invoked a new operation while operation at event {open_index} is still \
         open (one operation at a time per process; use a fresh process id after an info)"
    )]
    ProcessBusy { process: u64, open_index: u64 },
    /// A completion for a handle that this recorder does not know (already completed, or from
    /// another recorder).
    #[error("no open operation for handle of process {process} invoked at event {invoke_index}")]
    UnknownHandle { process: u64, invoke_index: u64 },
    /// The completed op does not have the shape of the invoked one (other variant, other keys,
    /// other written values).
    #[error(
        "completion of event {invoke_index} (process {process}) does not match its invocation: \
         invoked {invoked:?}, completed {completed:?}"
    )]
    ShapeMismatch {
        process: u64,
        invoke_index: u64,
        invoked: Box<Op>,
        completed: Box<Op>,
    },
    /// Simulated time went backwards between two events.
    #[error("time went backwards at event {index}: {time_nanos} ns after {previous_nanos} ns")]
    TimeBackwards {
        index: u64,
        time_nanos: u64,
        previous_nanos: u64,
    },
    /// A structural problem found by [`History::validate`].
    #[error("malformed history at event {index}: {reason}")]
    Malformed { index: u64, reason: String },
    /// A key or value above `i64::MAX` cannot be exported to EDN/JSON for Elle.
    #[error("event {index}: {what} {value} does not fit an i64 (Elle reads Clojure longs)")]
    ValueOutOfRange {
        index: u64,
        what: &'static str,
        value: u64,
    },
}

/// Invocation or one of the three completions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum EventKind {
    /// The client sent the request.
    Invoke,
    /// It happened; the completion's op carries the observed values.
    Ok,
    /// It definitely did not happen.
    Fail,
    /// Unknown outcome: it may or may not have happened (timeouts, crashes).
    Info,
}

impl EventKind {
    /// The Jepsen/Elle name (`invoke`, `ok`, `fail`, `info`).
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Invoke => "invoke",
            EventKind::Ok => "ok",
            EventKind::Fail => "fail",
            EventKind::Info => "info",
        }
    }
}

/// One micro-operation of a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Mop {
    /// List-append: append `value` to the list at `key` (values unique per key).
    Append { key: u64, value: u64 },
    /// List-append: read the whole list at `key` (`None` on invoke).
    ReadList { key: u64, value: Option<Vec<u64>> },
    /// rw-register: read `key` (`None` = unknown on invoke, never written on ok).
    RegRead { key: u64, value: Option<u64> },
    /// rw-register: write `value` to `key`.
    RegWrite { key: u64, value: u64 },
}

impl Mop {
    /// The key this micro-op touches.
    pub fn key(&self) -> u64 {
        match *self {
            Mop::Append { key, .. }
            | Mop::ReadList { key, .. }
            | Mop::RegRead { key, .. }
            | Mop::RegWrite { key, .. } => key,
        }
    }

    /// True for micro-ops that write (append or register write).
    pub fn is_write(&self) -> bool {
        matches!(self, Mop::Append { .. } | Mop::RegWrite { .. })
    }

    /// Same kind, same key, and (for writes) same value: what an invocation and its completion
    /// must share.
    fn same_shape(&self, other: &Mop) -> bool {
        match (self, other) {
            (Mop::Append { key: a, value: x }, Mop::Append { key: b, value: y })
            | (Mop::RegWrite { key: a, value: x }, Mop::RegWrite { key: b, value: y }) => {
                a == b && x == y
            }
            (Mop::ReadList { key: a, .. }, Mop::ReadList { key: b, .. })
            | (Mop::RegRead { key: a, .. }, Mop::RegRead { key: b, .. }) => a == b,
            _ => false,
        }
    }
}

/// A client operation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Op {
    /// Read the register `key` (`value`: `None` on invoke; on ok `None` = never written).
    Read { key: u64, value: Option<u64> },
    /// Write `value` (unique per key) to the register `key`.
    Write { key: u64, value: u64 },
    /// A transaction of micro-operations, executed atomically at the configured isolation level.
    Txn(Vec<Mop>),
}

impl Op {
    /// Same variant, keys and written values (read results may differ).
    pub fn same_shape(&self, other: &Op) -> bool {
        match (self, other) {
            (Op::Read { key: a, .. }, Op::Read { key: b, .. }) => a == b,
            (Op::Write { key: a, value: x }, Op::Write { key: b, value: y }) => a == b && x == y,
            (Op::Txn(a), Op::Txn(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(m, n)| m.same_shape(n))
            }
            _ => false,
        }
    }

    /// The op as it should be invoked: read results cleared to `None`.
    pub fn as_invocation(&self) -> Op {
        match self {
            Op::Read { key, .. } => Op::Read {
                key: *key,
                value: None,
            },
            Op::Write { key, value } => Op::Write {
                key: *key,
                value: *value,
            },
            Op::Txn(mops) => Op::Txn(
                mops.iter()
                    .map(|m| match m {
                        Mop::ReadList { key, .. } => Mop::ReadList {
                            key: *key,
                            value: None,
                        },
                        Mop::RegRead { key, .. } => Mop::RegRead {
                            key: *key,
                            value: None,
                        },
                        other => other.clone(),
                    })
                    .collect(),
            ),
        }
    }

    /// The Jepsen `:f` of this op: `read`, `write` or `txn`.
    pub fn f(&self) -> &'static str {
        match self {
            Op::Read { .. } => "read",
            Op::Write { .. } => "write",
            Op::Txn(_) => "txn",
        }
    }
}

/// One event of a history.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Event {
    /// Position in the history (0, 1, 2, ...).
    pub index: u64,
    /// The logical client (Jepsen process) that issued the operation.
    pub process: u64,
    /// Invoke, or which completion.
    pub kind: EventKind,
    /// The operation; on an `Ok` completion it carries the values read.
    pub op: Op,
    /// Simulated time since the simulation started, in nanoseconds.
    pub time_nanos: u64,
    /// The node the client talked to, if known.
    pub node: Option<u64>,
}

/// An invocation and its completion, as paired by [`History::operations`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Operation<'h> {
    /// The invoke event.
    pub invoke: &'h Event,
    /// The completion event, or `None` if the history ends with the operation still open (the
    /// checkers treat that as `Info`).
    pub completion: Option<&'h Event>,
}

impl Operation<'_> {
    /// The outcome: `Ok`, `Fail` or `Info` (an open operation counts as `Info`).
    pub fn outcome(&self) -> EventKind {
        self.completion.map_or(EventKind::Info, |c| c.kind)
    }

    /// The op with observed values when it completed `Ok`, else the invoked op.
    pub fn op(&self) -> &Op {
        match self.completion {
            Some(c) if c.kind == EventKind::Ok => &c.op,
            _ => &self.invoke.op,
        }
    }
}

/// An ordered list of events (see the module docs for the conventions).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct History {
    /// Events in the order they happened; `events[i].index == i`.
    pub events: Vec<Event>,
}

impl History {
    /// Builds a history from events, renumbering `index` to the position.
    pub fn from_events(mut events: Vec<Event>) -> History {
        for (i, e) in events.iter_mut().enumerate() {
            e.index = i as u64;
        }
        History { events }
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// True when there are no events.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// The events whose op satisfies `keep` (an invocation and its completion share the op's
    /// variant and keys, so filtering on those keeps pairs together), renumbered from 0.
    pub fn filter(&self, keep: impl Fn(&Op) -> bool) -> History {
        History::from_events(
            self.events
                .iter()
                .filter(|e| keep(&e.op))
                .cloned()
                .collect(),
        )
    }

    /// Only the transactions (what Elle's list-append / rw-register checkers read).
    pub fn txns_only(&self) -> History {
        self.filter(|op| matches!(op, Op::Txn(_)))
    }

    /// Only the register reads and writes (for a linearizability checker such as Knossos).
    pub fn registers_only(&self) -> History {
        self.filter(|op| !matches!(op, Op::Txn(_)))
    }

    /// Checks structure: indices are positions, time never goes backwards, each process
    /// alternates invoke → completion, and completions match their invocation's shape.
    pub fn validate(&self) -> Result<(), HistoryError> {
        let mut open: BTreeMap<u64, usize> = BTreeMap::new();
        let mut previous = 0u64;
        for (i, e) in self.events.iter().enumerate() {
            if e.index != i as u64 {
                return Err(HistoryError::Malformed {
                    index: e.index,
                    reason: format!("index {} at position {i}", e.index),
                });
            }
            if e.time_nanos < previous {
                return Err(HistoryError::TimeBackwards {
                    index: e.index,
                    time_nanos: e.time_nanos,
                    previous_nanos: previous,
                });
            }
            previous = e.time_nanos;
            match e.kind {
                EventKind::Invoke => {
                    if let Some(&j) = open.get(&e.process) {
                        return Err(HistoryError::ProcessBusy {
                            process: e.process,
                            open_index: j as u64,
                        });
                    }
                    open.insert(e.process, i);
                }
                _ => {
                    let Some(j) = open.remove(&e.process) else {
                        return Err(HistoryError::Malformed {
                            index: e.index,
                            reason: format!(
                                "{} completion on process {} without an open invocation",
                                e.kind.name(),
                                e.process
                            ),
                        });
                    };
                    let inv = &self.events[j];
                    if !inv.op.same_shape(&e.op) {
                        return Err(HistoryError::ShapeMismatch {
                            process: e.process,
                            invoke_index: inv.index,
                            invoked: Box::new(inv.op.clone()),
                            completed: Box::new(e.op.clone()),
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// Pairs each invocation with the next completion on the same process, in invocation order.
    /// Completions without an invocation are skipped (see [`History::validate`]).
    pub fn operations(&self) -> Vec<Operation<'_>> {
        let mut out: Vec<Operation<'_>> = Vec::new();
        let mut open: BTreeMap<u64, usize> = BTreeMap::new();
        for e in &self.events {
            if e.kind == EventKind::Invoke {
                open.insert(e.process, out.len());
                out.push(Operation {
                    invoke: e,
                    completion: None,
                });
            } else if let Some(k) = open.remove(&e.process) {
                out[k].completion = Some(e);
            }
        }
        out
    }

    /// Jepsen/Elle EDN, one op map per line, e.g.
    /// `{:index 0, :type :invoke, :f :txn, :value [[:append 1 2] [:r 1 nil]], :process 0, :time 123}`.
    /// Register ops are written like `jepsen.independent` tuples: `{:f :read, :value [key value]}`.
    pub fn to_edn(&self) -> Result<String, HistoryError> {
        let mut out = String::new();
        for e in &self.events {
            let value = edn_value(e)?;
            let _ = write!(
                out,
                "{{:index {}, :type :{}, :f :{}, :value {value}, :process {}, :time {}",
                e.index,
                e.kind.name(),
                e.op.f(),
                fit(e, "process", e.process)?,
                fit(e, "time", e.time_nanos)?,
            );
            if let Some(n) = e.node {
                let _ = write!(out, ", :node {}", fit(e, "node", n)?);
            }
            out.push_str("}\n");
        }
        Ok(out)
    }

    /// Elle's JSON shape, one object per line (what `elle-cli` and `adya` read), e.g.
    /// `{"f":"txn","index":0,"process":0,"time":123,"type":"invoke","value":[["append",1,2],["r",1,null]]}`.
    pub fn to_json(&self) -> Result<String, HistoryError> {
        let mut out = String::new();
        for e in &self.events {
            let v = self.event_json(e)?;
            out.push_str(&v.to_string());
            out.push('\n');
        }
        Ok(out)
    }

    /// One event as a JSON object (Elle's shape).
    pub fn event_json(&self, e: &Event) -> Result<serde_json::Value, HistoryError> {
        use serde_json::{Value as J, json};
        let int =
            |what: &'static str, v: u64| -> Result<J, HistoryError> { Ok(json!(fit(e, what, v)?)) };
        let opt = |what: &'static str, v: Option<u64>| -> Result<J, HistoryError> {
            v.map_or(Ok(J::Null), |v| int(what, v))
        };
        let value = match &e.op {
            Op::Read { key, value } => J::Array(vec![int("key", *key)?, opt("value", *value)?]),
            Op::Write { key, value } => J::Array(vec![int("key", *key)?, int("value", *value)?]),
            Op::Txn(mops) => {
                let mut arr = Vec::with_capacity(mops.len());
                for m in mops {
                    arr.push(match m {
                        Mop::Append { key, value } => {
                            json!(["append", int("key", *key)?, int("value", *value)?])
                        }
                        Mop::RegWrite { key, value } => {
                            json!(["w", int("key", *key)?, int("value", *value)?])
                        }
                        Mop::RegRead { key, value } => {
                            json!(["r", int("key", *key)?, opt("value", *value)?])
                        }
                        Mop::ReadList { key, value } => {
                            let v = match value {
                                None => J::Null,
                                Some(xs) => {
                                    let mut l = Vec::with_capacity(xs.len());
                                    for x in xs {
                                        l.push(int("value", *x)?);
                                    }
                                    J::Array(l)
                                }
                            };
                            json!(["r", int("key", *key)?, v])
                        }
                    });
                }
                J::Array(arr)
            }
        };
        let mut obj = serde_json::Map::new();
        obj.insert("index".into(), int("index", e.index)?);
        obj.insert("type".into(), J::String(e.kind.name().into()));
        obj.insert("f".into(), J::String(e.op.f().into()));
        obj.insert("value".into(), value);
        obj.insert("process".into(), int("process", e.process)?);
        obj.insert("time".into(), int("time", e.time_nanos)?);
        if let Some(n) = e.node {
            obj.insert("node".into(), int("node", n)?);
        }
        Ok(J::Object(obj))
    }
}

impl History {
    /// Reads back a history written by [`History::to_json`] (one object per line, or one JSON
    /// array), e.g. a saved failing run, so it can be checked again offline.
    ///
    /// `:f :read` / `:f :write` objects become register ops, `:f :txn` transactions. A
    /// transaction read `["r", k, [..]]` is a list read and `["r", k, v]` a register read; a
    /// `null` read is a list read if the key is appended to or read as a list anywhere in the
    /// history, else a register read (the format cannot tell them apart, like Elle's; a key used
    /// both ways may come back with the other kind of read). Other objects (e.g. nemesis events)
    /// are skipped. Indices are renumbered by position.
    pub fn from_json(text: &str) -> Result<History, HistoryError> {
        use serde_json::Value as J;
        let bad = |line: usize, reason: String| HistoryError::Malformed {
            index: line as u64,
            reason,
        };
        let trimmed = text.trim_start();
        let values: Vec<(usize, J)> = if trimmed.starts_with('[') {
            let all: Vec<J> = serde_json::from_str(trimmed).map_err(|e| bad(0, e.to_string()))?;
            all.into_iter().enumerate().collect()
        } else {
            let mut out = Vec::new();
            for (i, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                out.push((
                    i,
                    serde_json::from_str(line).map_err(|e| bad(i, e.to_string()))?,
                ));
            }
            out
        };
        // Keys with list evidence (an append, or a read that returned a list).
        let mut list_keys: std::collections::BTreeSet<u64> = std::collections::BTreeSet::new();
        for (_, v) in &values {
            if v.get("f").and_then(J::as_str) != Some("txn") {
                continue;
            }
            for m in v.get("value").and_then(J::as_array).into_iter().flatten() {
                let listy = matches!(
                    (m.get(0).and_then(J::as_str), m.get(2)),
                    (Some("append"), _) | (Some("r"), Some(J::Array(_)))
                );
                if listy && let Some(k) = m.get(1).and_then(J::as_u64) {
                    list_keys.insert(k);
                }
            }
        }
        let num = |line: usize, v: &J, what: &str| -> Result<u64, HistoryError> {
            v.as_u64()
                .ok_or_else(|| bad(line, format!("{what} is not a non-negative integer: {v}")))
        };
        let opt = |line: usize, v: &J, what: &str| -> Result<Option<u64>, HistoryError> {
            if v.is_null() {
                Ok(None)
            } else {
                num(line, v, what).map(Some)
            }
        };
        let mut events = Vec::with_capacity(values.len());
        for (line, v) in values {
            let kind = match v.get("type").and_then(J::as_str) {
                Some("invoke") => EventKind::Invoke,
                Some("ok") => EventKind::Ok,
                Some("fail") => EventKind::Fail,
                Some("info") => EventKind::Info,
                other => return Err(bad(line, format!("bad type {other:?}"))),
            };
            let Some(process) = v.get("process").and_then(J::as_u64) else {
                continue; // nemesis or other non-client events
            };
            let value = v.get("value").unwrap_or(&J::Null);
            let pair = |what: &str| -> Result<(u64, &J), HistoryError> {
                match value.as_array().map(Vec::as_slice) {
                    Some([k, x]) => Ok((num(line, k, "key")?, x)),
                    _ => Err(bad(
                        line,
                        format!("{what} value is not [key value]: {value}"),
                    )),
                }
            };
            let op = match v.get("f").and_then(J::as_str) {
                Some("read") => {
                    let (key, x) = pair("read")?;
                    Op::Read {
                        key,
                        value: opt(line, x, "value")?,
                    }
                }
                Some("write") => {
                    let (key, x) = pair("write")?;
                    Op::Write {
                        key,
                        value: num(line, x, "value")?,
                    }
                }
                Some("txn") => {
                    let mops = value
                        .as_array()
                        .ok_or_else(|| bad(line, "txn value is not a list".into()))?;
                    let mut out = Vec::with_capacity(mops.len());
                    for m in mops {
                        let Some([f, k, x]) = m.as_array().map(Vec::as_slice) else {
                            return Err(bad(line, format!("micro-op is not [f k v]: {m}")));
                        };
                        let key = num(line, k, "key")?;
                        out.push(match (f.as_str(), x) {
                            (Some("append"), x) => Mop::Append {
                                key,
                                value: num(line, x, "value")?,
                            },
                            (Some("w"), x) => Mop::RegWrite {
                                key,
                                value: num(line, x, "value")?,
                            },
                            (Some("r"), J::Array(xs)) => Mop::ReadList {
                                key,
                                value: Some(
                                    xs.iter()
                                        .map(|x| num(line, x, "element"))
                                        .collect::<Result<_, _>>()?,
                                ),
                            },
                            (Some("r"), J::Null) if list_keys.contains(&key) => {
                                Mop::ReadList { key, value: None }
                            }
                            (Some("r"), x) => Mop::RegRead {
                                key,
                                value: opt(line, x, "value")?,
                            },
                            _ => return Err(bad(line, format!("unknown micro-op {m}"))),
                        });
                    }
                    Op::Txn(out)
                }
                _ => continue,
            };
            let time_nanos = match v.get("time") {
                None | Some(J::Null) => 0,
                Some(t) => num(line, t, "time")?,
            };
            let node = match v.get("node") {
                None => None,
                Some(n) => opt(line, n, "node")?,
            };
            events.push(Event {
                index: 0,
                process,
                kind,
                op,
                time_nanos,
                node,
            });
        }
        Ok(History::from_events(events))
    }
}

fn fit(e: &Event, what: &'static str, v: u64) -> Result<i64, HistoryError> {
    i64::try_from(v).map_err(|_| HistoryError::ValueOutOfRange {
        index: e.index,
        what,
        value: v,
    })
}

fn edn_value(e: &Event) -> Result<String, HistoryError> {
    let opt = |v: Option<u64>| -> Result<String, HistoryError> {
        v.map_or(Ok("nil".to_string()), |v| {
            Ok(fit(e, "value", v)?.to_string())
        })
    };
    Ok(match &e.op {
        Op::Read { key, value } => format!("[{} {}]", fit(e, "key", *key)?, opt(*value)?),
        Op::Write { key, value } => {
            format!("[{} {}]", fit(e, "key", *key)?, fit(e, "value", *value)?)
        }
        Op::Txn(mops) => {
            let mut s = String::from("[");
            for (i, m) in mops.iter().enumerate() {
                if i > 0 {
                    s.push(' ');
                }
                match m {
                    Mop::Append { key, value } => {
                        let _ = write!(
                            s,
                            "[:append {} {}]",
                            fit(e, "key", *key)?,
                            fit(e, "value", *value)?
                        );
                    }
                    Mop::RegWrite { key, value } => {
                        let _ = write!(
                            s,
                            "[:w {} {}]",
                            fit(e, "key", *key)?,
                            fit(e, "value", *value)?
                        );
                    }
                    Mop::RegRead { key, value } => {
                        let _ = write!(s, "[:r {} {}]", fit(e, "key", *key)?, opt(*value)?);
                    }
                    Mop::ReadList { key, value } => {
                        let v = match value {
                            None => "nil".to_string(),
                            Some(xs) => {
                                let mut l = String::from("[");
                                for (j, x) in xs.iter().enumerate() {
                                    if j > 0 {
                                        l.push(' ');
                                    }
                                    let _ = write!(l, "{}", fit(e, "value", *x)?);
                                }
                                l.push(']');
                                l
                            }
                        };
                        let _ = write!(s, "[:r {} {v}]", fit(e, "key", *key)?);
                    }
                }
            }
            s.push(']');
            s
        }
    })
}

/// A handle to an open operation, returned by [`Recorder::invoke`] and consumed by exactly one
/// of [`Recorder::ok`], [`Recorder::fail`] or [`Recorder::info`]. Not `Clone`, so an operation
/// cannot be completed twice by accident.
#[derive(Debug, PartialEq, Eq)]
pub struct OpHandle {
    process: u64,
    invoke_index: u64,
}

impl OpHandle {
    /// The process that invoked the operation.
    pub fn process(&self) -> u64 {
        self.process
    }

    /// The index of the invoke event.
    pub fn invoke_index(&self) -> u64 {
        self.invoke_index
    }
}

/// Records a history as client code runs.
///
/// ```
/// use std::time::Duration;
/// use zcore_sim::history::{Op, Recorder};
///
/// let mut rec = Recorder::new();
/// let h = rec.invoke(0, Op::Write { key: 1, value: 10 }, Duration::from_millis(1)).unwrap();
/// rec.ok(h, Op::Write { key: 1, value: 10 }, Duration::from_millis(3)).unwrap();
/// let r = rec.invoke(1, Op::Read { key: 1, value: None }, Duration::from_millis(4)).unwrap();
/// rec.ok(r, Op::Read { key: 1, value: Some(10) }, Duration::from_millis(5)).unwrap();
/// let history = rec.finish(Duration::from_millis(6));
/// assert_eq!(history.len(), 4);
/// ```
///
/// Times are simulated time since the start of the simulation (`turmoil::elapsed()`); a time
/// earlier than the previous event's is recorded as the previous time (clamped), so the history
/// stays ordered. Inside turmoil all hosts run on one thread; use [`SharedRecorder`] to share one
/// recorder between client tasks.
#[derive(Debug, Default)]
pub struct Recorder {
    events: Vec<Event>,
    /// process → (invoke index, node to stamp on the completion)
    open: BTreeMap<u64, (u64, Option<u64>)>,
    last_time: u64,
}

impl Recorder {
    /// An empty recorder.
    pub fn new() -> Recorder {
        Recorder::default()
    }

    fn now(&mut self, now: Duration) -> u64 {
        let t = u64::try_from(now.as_nanos())
            .unwrap_or(u64::MAX)
            .max(self.last_time);
        self.last_time = t;
        t
    }

    fn push(
        &mut self,
        process: u64,
        kind: EventKind,
        op: Op,
        now: Duration,
        node: Option<u64>,
    ) -> u64 {
        let time_nanos = self.now(now);
        let index = self.events.len() as u64;
        self.events.push(Event {
            index,
            process,
            kind,
            op,
            time_nanos,
            node,
        });
        index
    }

    /// Records an invocation by `process` (node unknown). Read values in `op` are cleared.
    pub fn invoke(
        &mut self,
        process: u64,
        op: Op,
        now: Duration,
    ) -> Result<OpHandle, HistoryError> {
        self.invoke_on(process, None, op, now)
    }

    /// Records an invocation by `process` sent to `node`.
    pub fn invoke_on(
        &mut self,
        process: u64,
        node: Option<u64>,
        op: Op,
        now: Duration,
    ) -> Result<OpHandle, HistoryError> {
        if let Some(&(open_index, _)) = self.open.get(&process) {
            return Err(HistoryError::ProcessBusy {
                process,
                open_index,
            });
        }
        let index = self.push(process, EventKind::Invoke, op.as_invocation(), now, node);
        self.open.insert(process, (index, node));
        Ok(OpHandle {
            process,
            invoke_index: index,
        })
    }

    /// Sets the node recorded on the completion (e.g. after a redirect to the leader).
    pub fn set_node(&mut self, handle: &OpHandle, node: Option<u64>) {
        if let Some(entry) = self.open.get_mut(&handle.process)
            && entry.0 == handle.invoke_index
        {
            entry.1 = node;
        }
    }

    fn close(&mut self, handle: &OpHandle) -> Result<(Op, Option<u64>), HistoryError> {
        let unknown = || HistoryError::UnknownHandle {
            process: handle.process,
            invoke_index: handle.invoke_index,
        };
        match self.open.get(&handle.process) {
            Some(&(i, node)) if i == handle.invoke_index => {
                let op = self
                    .events
                    .get(i as usize)
                    .map(|e| e.op.clone())
                    .ok_or_else(unknown)?;
                self.open.remove(&handle.process);
                Ok((op, node))
            }
            _ => Err(unknown()),
        }
    }

    /// Records a successful completion; `completed` carries the values read and must have the
    /// invoked op's shape (same variant, keys and written values).
    pub fn ok(
        &mut self,
        handle: OpHandle,
        completed: Op,
        now: Duration,
    ) -> Result<(), HistoryError> {
        let invoked = match self.open.get(&handle.process) {
            Some(&(i, _)) if i == handle.invoke_index => self.events.get(i as usize).map(|e| &e.op),
            _ => None,
        };
        if let Some(invoked) = invoked
            && !invoked.same_shape(&completed)
        {
            return Err(HistoryError::ShapeMismatch {
                process: handle.process,
                invoke_index: handle.invoke_index,
                invoked: Box::new(invoked.clone()),
                completed: Box::new(completed),
            });
        }
        let (_, node) = self.close(&handle)?;
        self.push(handle.process, EventKind::Ok, completed, now, node);
        Ok(())
    }

    /// Records a definite failure: the operation did not take effect.
    pub fn fail(&mut self, handle: OpHandle, now: Duration) -> Result<(), HistoryError> {
        let (op, node) = self.close(&handle)?;
        self.push(handle.process, EventKind::Fail, op, now, node);
        Ok(())
    }

    /// Records an unknown outcome: the operation may or may not have taken effect.
    pub fn info(&mut self, handle: OpHandle, now: Duration) -> Result<(), HistoryError> {
        let (op, node) = self.close(&handle)?;
        self.push(handle.process, EventKind::Info, op, now, node);
        Ok(())
    }

    /// Number of operations still open.
    pub fn open_count(&self) -> usize {
        self.open.len()
    }

    /// The events recorded so far.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// Ends recording: every operation still open gets an `Info` completion at `now` (in process
    /// order), and the history is returned.
    pub fn finish(mut self, now: Duration) -> History {
        let open = std::mem::take(&mut self.open);
        for (process, (i, node)) in open {
            if let Some(op) = self.events.get(i as usize).map(|e| e.op.clone()) {
                self.push(process, EventKind::Info, op, now, node);
            }
        }
        History {
            events: self.events,
        }
    }
}

/// A [`Recorder`] shared between client tasks (`Clone` gives another handle to the same one).
/// A poisoned lock (a client task panicked while recording) is recovered, not propagated.
#[derive(Debug, Clone, Default)]
pub struct SharedRecorder(Arc<Mutex<Recorder>>);

impl SharedRecorder {
    /// A new, empty shared recorder.
    pub fn new() -> SharedRecorder {
        SharedRecorder::default()
    }

    /// Locks the recorder for one call, e.g. `rec.lock().invoke(p, op, now)`.
    pub fn lock(&self) -> MutexGuard<'_, Recorder> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes the recorded events out (leaving an empty recorder) and finishes them at `now`.
    pub fn finish(&self, now: Duration) -> History {
        std::mem::take(&mut *self.lock()).finish(now)
    }
}
