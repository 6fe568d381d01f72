//! State shared between the harness (between steps) and the hosts and clients (inside
//! steps). turmoil runs everything on one thread, so `Rc`/`Cell`/`RefCell` suffice.

use std::cell::{Cell, RefCell};

use crate::checkers::durability::FinalState;
use crate::history::SharedRecorder;

use super::config::SimConfig;
use super::node::NodeSlot;
use super::trace::Trace;

/// Planted bugs (negative controls): the simulator must catch each.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Controls {
    /// The storage's `sync` returns without making anything durable.
    pub lying_sync: bool,
    /// `save_vote` returns before the vote is durable.
    pub lose_votes: bool,
    /// The engine skips commit validation (no write-write / read-write conflict detection).
    pub no_conflict_detection: bool,
}

impl Controls {
    /// Whether any bug is planted.
    #[must_use]
    pub fn any(&self) -> bool {
        self.lying_sync || self.lose_votes || self.no_conflict_detection
    }
}

/// Operation counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpCounts {
    /// Completed successfully.
    pub ok: u64,
    /// Definitely failed.
    pub fail: u64,
    /// Unknown outcome.
    pub info: u64,
}

/// What hosts, clients and the harness share.
#[derive(Debug)]
pub struct World {
    /// The run's configuration.
    pub cfg: SimConfig,
    /// Planted bugs.
    pub controls: Controls,
    /// The trace.
    pub trace: RefCell<Trace>,
    /// Simulated time at the start of the current step, ms.
    pub now: Cell<u64>,
    /// Nodes, by index (id = index + 1).
    pub nodes: Vec<NodeSlot>,
    /// Register and list-append history.
    pub recorder: SharedRecorder,
    /// Bank history (rw-register transactions over the accounts; balances repeat, so it is
    /// kept apart from the register / list-append history).
    pub bank: SharedRecorder,
    /// The state the probe read after the last recovery.
    pub final_state: RefCell<Option<FinalState>>,
    /// When the faults were healed (ms).
    pub healed_ms: Cell<Option<u64>>,
    /// Collections and accounts created.
    pub ready: Cell<bool>,
    /// Workload clients must stop.
    pub stop: Cell<bool>,
    /// Workload clients that have stopped.
    pub clients_done: Cell<u64>,
    /// The liveness phase has begun (faults healed).
    pub liveness: Cell<bool>,
    /// The liveness probe succeeded at this time (ms).
    pub probe_done: Cell<Option<u64>>,
    /// Operation counters.
    pub ops: Cell<OpCounts>,
}

impl World {
    /// The current step's simulated time, ms.
    #[must_use]
    pub fn now_ms(&self) -> u64 {
        self.now.get()
    }

    /// Appends a trace line at the current time.
    pub fn log(&self, who: &str, what: &str) {
        self.trace.borrow_mut().push(self.now.get(), who, what);
    }

    /// Counts one completed operation.
    pub fn count(&self, f: impl FnOnce(&mut OpCounts)) {
        let mut c = self.ops.get();
        f(&mut c);
        self.ops.set(c);
    }
}
