//! The engine's `StorageBackend` conformance suite (C1–C15) and MVCC suite, run on both
//! simulated backends *inside* a turmoil simulation (redb on turmoil's simulated disk, the
//! memory backend with its durable image), one `#[test]` per case and backend.
//!
//! The engine's own `backend_conformance_suite!` runs each case on a multi-threaded tokio
//! runtime; here the same case functions run as a turmoil client instead, so the backends are
//! exercised exactly where the simulator uses them.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use zcore_engine::testing::conformance::Harness;
use zcore_engine::{BackendError, StorageBackend};
use zcore_sim::storage::{DeadFlag, SimBackendKind, SimDisk, SimDiskOptions, open_backend_now};

struct SimHarness {
    kind: SimBackendKind,
    disk: SimDisk,
    dead: DeadFlag,
}

impl Harness for SimHarness {
    fn open(&self) -> Result<Arc<dyn StorageBackend>, BackendError> {
        open_backend_now(self.kind, &self.disk, self.dead.clone()).map_err(|e| {
            BackendError::engine(zcore_engine::BackendKind::Other("sim"), "open", None, e)
        })
    }
}

/// Runs one case as the only client of a fresh simulation.
fn run<F, Fut, E>(kind: SimBackendKind, case: F)
where
    F: FnOnce(Arc<dyn Harness>) -> Fut + 'static,
    Fut: Future<Output = Result<(), E>> + 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    let mut sim = turmoil::Builder::new()
        .rng_seed(7)
        .epoch(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        .simulation_duration(Duration::from_secs(24 * 3600))
        .build();
    let disk = SimDisk::new(SimDiskOptions::default());
    let dead = disk.start_incarnation();
    let harness: Arc<dyn Harness> = Arc::new(SimHarness {
        kind,
        disk: disk.clone(),
        dead,
    });
    sim.client("case", async move {
        case(harness).await?;
        Ok(())
    });
    let result = sim.run();
    // Whatever is still open must not touch the simulated disk once the Sim is gone.
    disk.mark_dead();
    if let Err(e) = result {
        panic!("{kind} case failed inside the simulation: {e}");
    }
}

macro_rules! cases {
    ($kind:expr, $module:ident; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                super::run($kind, zcore_engine::testing::$module::$case);
            }
        )*
    };
}

macro_rules! conformance {
    ($kind:expr) => {
        cases!($kind, conformance;
            c1_create_is_idempotent_and_list_is_sorted,
            c1_drop_removes_entries_and_recreate_is_empty,
            c2_collections_are_isolated,
            c3_unknown_collections_are_errors_and_change_nothing,
            c4_reads_see_acknowledged_writes,
            c5_order_is_bytewise,
            c5_bounds_of_every_kind,
            c5_empty_and_inverted_ranges,
            c5_seek_returns_the_first_entry_of_an_inclusive_range,
            c6_pages_resume_exactly,
            c6_a_page_never_shows_part_of_a_batch,
            c7_failed_batch_applies_nothing,
            c7_later_operation_in_a_batch_wins,
            c7_empty_batch_is_a_noop,
            c8_delete_semantics,
            c9_synced_batches_survive_reopen,
            c10_sync_then_reopen_keeps_buffered_batches,
            c11_collections_and_entries_survive_reopen,
            c12_close_rejects_later_calls,
            c13_key_limits,
            c13_value_and_scan_limits,
            c13_bad_input_leaves_store_openable,
            c14_stats_list_collections_with_counts,
            c15_concurrent_writers_and_readers,
            c17_compact_keeps_every_entry,
        );
    };
}

macro_rules! mvcc {
    ($kind:expr) => {
        cases!($kind, mvcc;
            read_your_own_writes_in_get_and_scans,
            snapshots_and_time_travel,
            lost_update_is_refused_under_both_levels,
            write_skew_allowed_by_si_refused_by_serializable,
            phantom_insert_into_scanned_range_is_refused,
            read_only_transactions_never_conflict,
            conflict_tracking_off_lets_anomalies_through,
            conflict_error_names_collection_key_and_versions,
            savepoints_nest_roll_back_and_release,
            multi_collection_commit_is_atomic,
            versions_and_data_survive_restart,
            sequences_are_unique_monotonic_and_durable,
            gc_never_removes_a_visible_version,
            bank_transfers_keep_the_total,
            bad_input_is_refused_with_typed_errors,
            update_heavy_workload_keeps_versions_bounded,
            background_gc_removes_superseded_versions,
            verify_is_clean_and_catches_damaged_versions,
        );
    };
}

mod redb {
    conformance!(zcore_sim::storage::SimBackendKind::Redb);
}

mod memory {
    conformance!(zcore_sim::storage::SimBackendKind::Memory);
}

mod redb_mvcc {
    mvcc!(zcore_sim::storage::SimBackendKind::Redb);
}

mod memory_mvcc {
    mvcc!(zcore_sim::storage::SimBackendKind::Memory);
}
