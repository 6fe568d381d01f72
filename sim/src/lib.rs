//! `zcore-sim`: the deterministic simulator (turmoil 0.7.2 with `unstable-fs`).
//!
//! Not built yet. This crate will run the real stack as turmoil hosts under seeded network,
//! process and disk faults, check histories (linearizability, isolation, durability,
//! convergence) and replay seeds bit-identically. It is the only crate that will depend on
//! turmoil, and it will refuse to build without `--cfg tokio_unstable`. It exports nothing today.
