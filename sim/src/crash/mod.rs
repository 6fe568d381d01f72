//! Single-node crash-recovery simulation of the engine (being built).
