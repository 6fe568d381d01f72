//! `zcore-cluster`: Raft replication of the transaction engine on openraft 0.9.25.
//!
//! Not built yet. This crate will hold the Raft log store and state machine on any
//! `StorageBackend`, the openraft `AsyncRuntime` with an injectable RNG, the TCP transport
//! behind a small trait (so the simulator can substitute turmoil's network), and the
//! replicated store API behind `zstore serve` / `zstore cluster`. It exports nothing today:
//! nothing here pretends to replicate.
