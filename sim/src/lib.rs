//! `zcore-sim`: the deterministic simulator (turmoil 0.7.2 with `unstable-fs`).
//!
//! Runs the real stack (cluster + MVCC engine) as turmoil hosts under seeded network, process
//! and disk faults, records client histories and checks them (Raft safety, per-key
//! linearizability, transactional isolation, durability, convergence), and replays every seed
//! bit-identically. It is the only crate that depends on turmoil.
//!
//! Module map (one owner each while the simulator is being built):
//! - [`storage`]: storage backends on turmoil's simulated disk (redb through redb's file
//!   backend trait, the memory backend with a durable image), with a "dead" flag for crashes.
//! - [`crash`]: single-node crash-recovery simulation of the engine.
//! - [`history`]: the operation history format (invoke/ok/fail/info) and its export.
//! - [`checkers`]: one file per checked property.
//! - [`harness`]: seed → configuration, hosts, faults, workloads, phases, traces, replay.

// turmoil is deterministic from its seed only when tokio is built with its unstable cfg: without
// it an unbiased `select!` and `watch` wake order come from an OS-seeded generator, and a panic
// in a spawned task is swallowed instead of stopping the simulation (DESIGN.md §6). The
// workspace's `.cargo/config.toml` sets it; a `RUSTFLAGS` environment variable overrides that.
#[cfg(not(tokio_unstable))]
compile_error!(
    "zcore-sim must be built with `--cfg tokio_unstable` (the workspace's .cargo/config.toml sets \
     it; a RUSTFLAGS environment variable replaces that setting — add `--cfg tokio_unstable` to it)"
);

pub mod checkers;
pub mod crash;
pub mod harness;
pub mod history;
pub mod storage;
