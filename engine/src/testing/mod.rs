//! Test support shipped with the engine (feature `conformance`), so that every backend crate —
//! including ones outside this workspace — runs the same contract tests.

pub mod conformance;
pub mod mvcc;
