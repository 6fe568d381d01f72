//! The cluster simulation harness: seed → configuration, node hosts running the real stack
//! on turmoil's network and disk, seeded faults, workload clients, safety and liveness
//! phases, traces and replay.
//!
//! Entry points: [`run_seed`] runs one seed; [`determinism::run_twice`] runs it twice and
//! compares the traces; [`sweep`] runs many seeds on several threads.

pub mod checks;
pub mod config;
pub mod determinism;
pub mod faults;
pub mod gateway;
pub mod node;
pub mod rng;
pub mod run;
pub mod store;
pub mod sweep;
pub mod trace;
pub mod transport;
pub mod workload;
pub mod world;

pub use checks::Violation;
pub use config::SimConfig;
pub use run::{RunOptions, RunReport, run_seed};
pub use world::Controls;
