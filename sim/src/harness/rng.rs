//! Every random stream of a run derives from the one run seed by SplitMix64 with its own
//! stream constant, so adding draws to one stream never shifts another.

use rand::SeedableRng;
use rand::rngs::StdRng;

/// SplitMix64's finalizer: a good 64-bit mix.
#[must_use]
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The seed of stream `stream` (and sub-stream `sub`) of run `seed`.
#[must_use]
pub fn derive(seed: u64, stream: Stream, sub: u64) -> u64 {
    mix(mix(seed ^ (stream as u64).wrapping_mul(0xA076_1D64_78BD_642F)) ^ sub)
}

/// A seeded generator for stream `stream` / `sub` of run `seed`.
#[must_use]
pub fn rng(seed: u64, stream: Stream, sub: u64) -> StdRng {
    StdRng::seed_from_u64(derive(seed, stream, sub))
}

/// The independent random streams of one run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum Stream {
    /// The derived configuration.
    Config = 1,
    /// turmoil's world rng (latency, loss, fs faults, host runtime seeds).
    Turmoil = 2,
    /// The fault schedule (drawn between steps by the harness).
    Faults = 3,
    /// Workload clients (sub = client index).
    Workload = 4,
    /// openraft's rng on a node (sub = node id << 32 | incarnation).
    Raft = 5,
    /// BUGGIFY fault points in product code.
    Buggify = 6,
}
