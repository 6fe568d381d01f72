//! `zcore-compat`: the seed's synchronous API and the redb-shaped table API, plus migration.
//!
//! Not built yet. This crate will hold `Store::open`, `begin_write`, `commit(&store)`,
//! `MultiPartitionTransaction`, `next_seq`, `open_table` and the redb→fjall migration runs, all
//! on top of the engine's async transaction layer. It exports nothing today.
