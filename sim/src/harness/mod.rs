//! Seed → configuration, hosts, faults, workloads, phases, traces, replay (being built).
