//! `zstore verify`, `zstore inspect` and `zstore compact`: integrity check, store report and
//! compaction of the configured store, through the MVCC engine.

use std::io::Write;
use std::sync::Arc;

use clap::Args;
use serde_json::json;
use zcore_backends::{BackendName, LoadedConfig, open_backend};
use zcore_engine::mvcc::{CompactReport, InspectReport, VerifyReport};
use zcore_engine::{Engine, EngineOptions};

use crate::args::Command;
use crate::commands::Printer;
use crate::error::CliError;

/// `zstore verify …`
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// List at most N problems (all are counted)
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub max_problems: usize,
}

async fn open_engine(loaded: &LoadedConfig) -> Result<Engine, CliError> {
    let backend = open_backend(&loaded.backend)?;
    let options = EngineOptions {
        // Nothing runs behind the command's back; `compact` sweeps explicitly.
        gc_interval: None,
        encryption: loaded.encryption_options()?,
        ..EngineOptions::default()
    };
    match Engine::open(Arc::clone(&backend), options).await {
        Ok(engine) => Ok(engine),
        Err(e) => {
            let _ = backend.close().await;
            Err(e.into())
        }
    }
}

/// Runs `verify`, `inspect` or `compact`.
///
/// # Errors
///
/// Configuration, store and engine errors; for `verify`, a runtime error (exit code 1) naming
/// the first problem when the store has any.
pub async fn run<W: Write>(
    command: &Command,
    loaded: &LoadedConfig,
    printer: &mut Printer<W>,
    json: bool,
) -> Result<(), CliError> {
    if loaded.backend.backend() == BackendName::Memory {
        printer.note("the memory backend starts empty on every run: there is nothing stored yet");
    }
    let engine = open_engine(loaded).await?;
    let result = match command {
        Command::Verify(args) => verify(&engine, args, printer, json).await,
        Command::Inspect => inspect(&engine, printer, json).await,
        Command::Compact => compact(&engine, printer, json).await,
        _ => Err(CliError::usage("not an operations command")),
    };
    let closed = engine.close().await;
    result?;
    Ok(closed?)
}

async fn verify<W: Write>(
    engine: &Engine,
    args: &VerifyArgs,
    printer: &mut Printer<W>,
    json: bool,
) -> Result<(), CliError> {
    let report = engine.verify(args.max_problems).await?;
    if json {
        printer.json_line(&json!({ "clean": report.is_clean(), "report": report }))?;
    } else {
        print_verify(&report, printer)?;
    }
    printer.flush()?;
    if report.is_clean() {
        return Ok(());
    }
    // Name a located problem when there is one (the backend's own check has no location).
    let located = report
        .problems
        .iter()
        .find(|p| !p.collection.is_empty())
        .or_else(|| report.problems.first());
    let first = located.map_or_else(
        || "the backend's own integrity check failed".to_owned(),
        |p| {
            format!(
                "for example: collection `{}`, key 0x{}, version {}: {}",
                p.collection,
                p.key,
                p.version.map_or_else(|| "?".to_owned(), |v| v.to_string()),
                p.what
            )
        },
    );
    Err(CliError::runtime(format!(
        "verify found {} problem(s) in the store; {first}",
        report.problems_total.max(1)
    )))
}

fn print_verify<W: Write>(report: &VerifyReport, printer: &mut Printer<W>) -> Result<(), CliError> {
    let backend_check = match report.backend_check {
        Some(true) => "passed",
        Some(false) => "FAILED",
        None => "none for this backend",
    };
    printer.text_line(&format!(
        "verified the store at version {}: {} stored entries in {} collections, {} sequences; \
         backend integrity check: {backend_check}",
        report.snapshot_version,
        report.entries(),
        report.collections.len(),
        report.sequences,
    ))?;
    for c in &report.collections {
        printer.text_line(&format!(
            "  {}: {} entries, {} keys, {} deletion markers, {} live keys, {} bad",
            c.name, c.entries, c.keys, c.tombstones, c.live_keys, c.bad
        ))?;
    }
    for name in &report.skipped_collections {
        printer.text_line(&format!("  {name}: skipped (not in the engine's format)"))?;
    }
    if report.problems_total == 0 {
        return printer.text_line(if report.is_clean() {
            "no problems found"
        } else {
            "problems found by the backend's own check"
        });
    }
    printer.text_line(&format!(
        "{} problem(s){}:",
        report.problems_total,
        if report.problems_total > report.problems.len() as u64 {
            format!(", the first {}", report.problems.len())
        } else {
            String::new()
        }
    ))?;
    for p in &report.problems {
        let key = if p.key.is_empty() {
            String::new()
        } else if p.key_is_stored {
            format!(" stored key 0x{}", p.key)
        } else {
            format!(" key 0x{}", p.key)
        };
        let version = p
            .version
            .map(|v| format!(" version {v}"))
            .unwrap_or_default();
        let collection = if p.collection.is_empty() {
            "store".to_owned()
        } else {
            format!("collection {}", p.collection)
        };
        printer.text_line(&format!("  {collection}{key}{version}: {}", p.what))?;
    }
    Ok(())
}

async fn inspect<W: Write>(
    engine: &Engine,
    printer: &mut Printer<W>,
    json: bool,
) -> Result<(), CliError> {
    let report = engine.inspect().await?;
    if json {
        return printer.json_line(&report);
    }
    print_inspect(&report, printer)
}

fn opt(n: Option<u64>) -> String {
    n.map_or_else(|| "none".to_owned(), |n| n.to_string())
}

fn print_inspect<W: Write>(r: &InspectReport, printer: &mut Printer<W>) -> Result<(), CliError> {
    printer.text_line(&format!(
        "backend: {}{}, disk bytes: {}",
        r.backend,
        if r.persistent { "" } else { " (in memory)" },
        opt(r.disk_bytes)
    ))?;
    printer.text_line(&format!(
        "versions: latest {}, oldest readable {} (GC watermark), durable GC floor {}, version \
         lease {}",
        r.latest_version,
        r.oldest_readable_version,
        opt(r.durable_gc_floor),
        opt(r.version_lease)
    ))?;
    printer.text_line(&format!(
        "retention: {} versions; background GC: {}; GC in backend compactions: {}",
        r.retain_versions,
        r.gc_interval_secs
            .map_or_else(|| "off".to_owned(), |s| format!("every {s} s")),
        if r.backend_collects_garbage {
            "yes"
        } else {
            "no"
        }
    ))?;
    printer.text_line(&format!(
        "collections ({}, counted at version {}):",
        r.collections.len(),
        r.version
    ))?;
    for c in &r.collections {
        printer.text_line(&format!(
            "  {}: {} live keys, {} keys, {} versions, {} deletion markers, {} stored bytes, \
             backend entries {}{}, disk bytes {}",
            c.name,
            c.live_keys,
            c.keys,
            c.versions,
            c.tombstones,
            c.stored_bytes,
            if c.backend_keys_exact { "" } else { "~" },
            c.backend_keys,
            opt(c.disk_bytes)
        ))?;
    }
    printer.text_line(&format!(
        "system collections ({}):",
        r.system_collections.len()
    ))?;
    for c in &r.system_collections {
        printer.text_line(&format!(
            "  {}: {} entries, {} stored bytes",
            c.name, c.entries, c.stored_bytes
        ))?;
    }
    printer.text_line(&format!("sequences ({}):", r.sequences.len()))?;
    for s in &r.sequences {
        printer.text_line(&format!(
            "  {} (0x{}): leased through {}",
            s.name, s.name_hex, s.leased_through
        ))?;
    }
    printer.text_line("backend details:")?;
    for (name, value) in &r.backend_details {
        printer.text_line(&format!("  {name} = {value}"))?;
    }
    Ok(())
}

async fn compact<W: Write>(
    engine: &Engine,
    printer: &mut Printer<W>,
    json: bool,
) -> Result<(), CliError> {
    let report: CompactReport = engine.compact().await?;
    if json {
        return printer.json_line(&report);
    }
    printer.text_line(&format!(
        "garbage collection: {} versions scanned, {} superseded versions and {} deletion \
         markers removed (watermark {})",
        report.gc.versions_scanned,
        report.gc.versions_removed,
        report.gc.tombstones_removed,
        report.gc.watermark
    ))?;
    printer.text_line(&format!(
        "backend compaction: {}; disk bytes {} -> {}",
        if report.backend_compacted {
            "done"
        } else {
            "none (this backend has none)"
        },
        opt(report.disk_bytes_before),
        opt(report.disk_bytes_after)
    ))
}
