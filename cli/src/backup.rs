//! `zstore backup create|inspect|verify|restore`: online backups of the configured store,
//! checked without restoring, restored (also as of an earlier version) into an empty store.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;

use clap::Subcommand;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use zcore_backends::{BackendName, LoadedConfig, open_backend};
use zcore_engine::backup::{self, BackupError, BackupKind, BackupOptions, Phase, Progress};
use zcore_engine::{Engine, EngineOptions, StorageBackend, Version};

use crate::commands::Printer;
use crate::error::CliError;

/// `zstore backup …`
#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Write a consistent backup of the store's latest version into DIR (new or empty) while
    /// the store stays usable: zstd-compressed chunk files and a checksummed manifest
    Create {
        /// Backup directory (created if missing; must be empty)
        dir: PathBuf,
        /// Make an incremental backup: only the changes since the backup in DIR (the chain
        /// restores to any version between its first backup and this one)
        #[arg(long, value_name = "DIR")]
        incremental_from: Option<PathBuf>,
        /// Store chunks uncompressed
        #[arg(long)]
        no_compress: bool,
        /// Also copy the retained older versions (full backups), so the backup restores to
        /// any version from the store's oldest readable version up to its latest
        #[arg(long, conflicts_with = "incremental_from")]
        history: bool,
        /// Back up the store as it was at this committed version (if still retained) instead
        /// of the latest
        #[arg(long, value_name = "VERSION")]
        at_version: Option<Version>,
    },
    /// Print a backup's manifest (version range, collections, chunks); reads no chunk
    Inspect {
        /// Backup directory
        dir: PathBuf,
    },
    /// Check a backup and its whole chain without restoring: every chunk's CRC32C and
    /// BLAKE3, the manifest digest, the links to parent backups, every entry
    Verify {
        /// Backup directory (the newest of a chain)
        dir: PathBuf,
    },
    /// Restore a backup (chain) into the configured store, which must be empty; everything is
    /// verified before the first write
    Restore {
        /// Backup directory (the newest of a chain)
        dir: PathBuf,
        /// Restore the state at this version instead of the newest
        #[arg(long, value_name = "VERSION")]
        as_of: Option<Version>,
    },
}

impl From<BackupError> for CliError {
    fn from(e: BackupError) -> Self {
        match e {
            BackupError::Refused { .. } => Self::usage(e.to_string()),
            _ => Self::runtime(e.to_string()),
        }
    }
}

/// A progress bar on stderr when it is a terminal and the output is not JSON.
fn progress_bar(json: bool) -> (ProgressBar, Progress) {
    let bar = if json || !std::io::stderr().is_terminal() {
        ProgressBar::hidden()
    } else {
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template(
            "{msg:>9} [{elapsed_precise}] {wide_bar} {pos}/{len} ({eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar
    };
    let handle = bar.clone();
    let progress = Progress::new(move |phase, done, total| {
        let msg = match phase {
            Phase::Scan => "scanning",
            Phase::Verify => "verifying",
            Phase::Restore => "restoring",
        };
        handle.set_message(msg);
        handle.set_length(total);
        handle.set_position(done);
    });
    (bar, progress)
}

async fn open_store(loaded: &LoadedConfig) -> Result<Arc<dyn StorageBackend>, CliError> {
    Ok(open_backend(&loaded.backend)?)
}

fn kind_name(kind: BackupKind) -> &'static str {
    match kind {
        BackupKind::Full { history: false } => "full",
        BackupKind::Full { history: true } => "full with history",
        BackupKind::Incremental => "incremental",
    }
}

/// Runs a `zstore backup` subcommand.
///
/// # Errors
///
/// Configuration, store and backup errors.
pub async fn run<W: Write>(
    command: &BackupCommand,
    loaded: &LoadedConfig,
    printer: &mut Printer<W>,
    json: bool,
) -> Result<(), CliError> {
    match command {
        BackupCommand::Create {
            dir,
            incremental_from,
            no_compress,
            history,
            at_version,
        } => {
            let backend = open_store(loaded).await?;
            // No background GC while the backup runs (it would respect the backup's
            // snapshots anyway).
            let engine = match Engine::open(
                Arc::clone(&backend),
                EngineOptions {
                    gc_interval: None,
                    encryption: loaded.encryption_options()?,
                    ..EngineOptions::default()
                },
            )
            .await
            {
                Ok(engine) => engine,
                Err(e) => {
                    let _ = backend.close().await;
                    return Err(e.into());
                }
            };
            drop(backend);
            let (bar, progress) = progress_bar(json);
            let result = engine
                .create_backup(
                    dir,
                    &BackupOptions {
                        compress: !no_compress,
                        incremental_from: incremental_from.clone(),
                        include_history: *history,
                        at_version: *at_version,
                        progress,
                        ..BackupOptions::default()
                    },
                )
                .await;
            bar.finish_and_clear();
            let closed = engine.close().await;
            let meta = result?;
            closed?;
            if json {
                printer.json_line(&meta)?;
            } else {
                printer.text_line(&format!(
                    "{} backup of version {} written to {}",
                    kind_name(meta.kind),
                    meta.version,
                    meta.dir.display()
                ))?;
                printer.text_line(&format!(
                    "{} collections, {} versions, {} bytes of data in {} chunks, {} bytes on disk (compression {:.2}:1)",
                    meta.collections.len(),
                    meta.entries,
                    meta.raw_bytes,
                    meta.chunks.len(),
                    meta.stored_bytes,
                    meta.compression_ratio()
                ))?;
                printer.text_line(&format!("manifest digest {}", meta.digest))?;
            }
        }
        BackupCommand::Inspect { dir } => {
            let meta = backup::read_metadata(dir)?;
            if json {
                printer.json_line(&meta)?;
            } else {
                printer.text_line(&format!("backup      {}", meta.dir.display()))?;
                printer.text_line(&format!("kind        {}", kind_name(meta.kind)))?;
                printer.text_line(&format!("format      {}", meta.format_version))?;
                printer.text_line(&format!(
                    "created     {} ms since the Unix epoch",
                    meta.created_at_ms
                ))?;
                printer.text_line(&format!("source      {}", meta.source_backend))?;
                printer.text_line(&format!(
                    "versions    {}..={}",
                    meta.base_version, meta.head_version
                ))?;
                if let Some(p) = &meta.parent {
                    printer.text_line(&format!(
                        "parent      {} (directory {:?}, head {})",
                        p.digest, p.dir_name, p.head_version
                    ))?;
                }
                printer.text_line(&format!("digest      {}", meta.digest))?;
                printer.text_line(&format!(
                    "chunks      {} ({} bytes, {:.2}:1)",
                    meta.chunks.len(),
                    meta.stored_bytes,
                    meta.compression_ratio()
                ))?;
                for c in &meta.collections {
                    printer.text_line(&format!(
                        "collection  {}\tlive keys {}\tversions {}\ttombstones {}\tbytes {}",
                        c.name, c.live_keys, c.entries, c.tombstones, c.bytes
                    ))?;
                }
                for s in &meta.sequences {
                    printer.text_line(&format!(
                        "sequence    {:?}\tleased up to {}",
                        s.name, s.limit
                    ))?;
                }
            }
        }
        BackupCommand::Verify { dir } => {
            let (bar, progress) = progress_bar(json);
            // An encrypted backup is verified with the configured keyring (if any).
            let keyring = loaded.encryption_options()?.map(|e| e.keyring);
            let result = backup::verify_with_keyring(dir, keyring, progress).await;
            bar.finish_and_clear();
            let report = result?;
            if json {
                printer.json_line(&json!({ "ok": true, "report": report }))?;
            } else {
                printer.text_line(&format!(
                    "ok: {} backups, {} chunks, {} versions, {} bytes checked; restorable versions {}..={}",
                    report.backups.len(),
                    report.chunks_checked,
                    report.entries_checked,
                    report.bytes_checked,
                    report.restorable_from,
                    report.restorable_to
                ))?;
                for f in &report.unreferenced_files {
                    printer.note(&format!(
                        "warning: {} is not part of the backup (ignored)",
                        f.display()
                    ));
                }
            }
        }
        BackupCommand::Restore { dir, as_of } => {
            let backend = open_store(loaded).await?;
            if loaded.backend.backend() == BackendName::Memory {
                printer.note(
                    "warning: the memory backend discards the restored data when zstore exits",
                );
            }
            let (bar, progress) = progress_bar(json);
            let result = backup::restore_with(
                dir,
                Arc::clone(&backend),
                &backup::RestoreOptions {
                    as_of: *as_of,
                    progress,
                    encryption: loaded.encryption_options()?,
                    ..backup::RestoreOptions::default()
                },
            )
            .await;
            bar.finish_and_clear();
            let report = match result {
                Ok(report) => report,
                Err(e) => {
                    let _ = backend.close().await;
                    return Err(e.into());
                }
            };
            // Prove the target opens and serves the restored version.
            let engine = match Engine::open(
                Arc::clone(&backend),
                EngineOptions {
                    gc_interval: None,
                    encryption: loaded.encryption_options()?,
                    ..EngineOptions::default()
                },
            )
            .await
            {
                Ok(engine) => engine,
                Err(e) => {
                    let _ = backend.close().await;
                    return Err(e.into());
                }
            };
            drop(backend);
            let latest = engine.stats().await.map(|s| s.latest_version);
            engine.close().await?;
            let latest = latest?;
            if json {
                printer.json_line(&json!({
                    "restored": true,
                    "as_of": report.as_of,
                    "latest_version": latest,
                    "restorable_from": report.restorable_from,
                    "collections": report.collections,
                    "entries_written": report.entries_written,
                    "backups_used": report.backups_used,
                }))?;
            } else {
                printer.text_line(&format!(
                    "restored version {} ({} collections, {} versions from {} backups); time travel down to version {}",
                    report.as_of,
                    report.collections,
                    report.entries_written,
                    report.backups_used.len(),
                    report.restorable_from
                ))?;
            }
        }
    }
    Ok(())
}
