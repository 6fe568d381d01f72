//! `zstore rekey`: reseal every stored version with the newest configured key, online.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::json;
use zcore_backends::{LoadedConfig, open_backend};
use zcore_engine::crypto::{RekeyOptions, RekeyProgress};
use zcore_engine::{Engine, EngineOptions};

use crate::commands::Printer;
use crate::error::CliError;

/// `zstore rekey` arguments.
#[derive(Debug, Args)]
pub struct RekeyArgs {
    /// Stored versions read (and at most rewritten) per batch
    #[arg(long, value_name = "N", default_value_t = 1024,
          value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub batch: u64,
}

/// Runs `zstore rekey`.
///
/// # Errors
///
/// Configuration errors (no keys configured, malformed keys), open errors (wrong or missing
/// key), and any version that does not open with the keyring.
pub async fn run<W: Write>(
    args: &RekeyArgs,
    loaded: &LoadedConfig,
    printer: &mut Printer<W>,
    json: bool,
) -> Result<(), CliError> {
    let Some(encryption) = loaded.encryption_options()? else {
        return Err(CliError::usage(
            "rekey needs the store's keys: configure [encryption] key_file or key_env \
             (ZDB_ENCRYPTION_KEY_FILE, ZDB_ENCRYPTION_KEY_ENV or --key-file); the newest key id \
             seals everything",
        ));
    };
    let backend = open_backend(&loaded.backend)?;
    let engine = match Engine::open(
        Arc::clone(&backend),
        EngineOptions {
            gc_interval: None,
            encryption: Some(encryption),
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
    let last = std::sync::Mutex::new(Instant::now());
    let progress = move |p: &RekeyProgress| {
        let mut last = last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.elapsed() >= Duration::from_millis(500) {
            *last = Instant::now();
            let line = if json {
                json!({ "progress": p }).to_string()
            } else {
                format!(
                    "rekey: collection {} ({}/{}): {} versions read, {} resealed",
                    p.collection,
                    p.collections_done + 1,
                    p.collections_total,
                    p.scanned,
                    p.rewritten
                )
            };
            let _ = writeln!(std::io::stderr(), "{line}");
        }
    };
    let result = engine
        .rekey(RekeyOptions {
            batch: usize::try_from(args.batch).unwrap_or(1024),
            progress: Some(Arc::new(progress)),
        })
        .await;
    let closed = engine.close().await;
    let report = result?;
    closed?;
    if json {
        printer.json_line(&json!({ "rekey": report }))?;
    } else {
        printer.text_line(&format!(
            "resealed {} of {} stored versions in {} collections with key id {} ({} already \
             used it)",
            report.rewritten,
            report.scanned,
            report.collections,
            report.key_id,
            report.already_current
        ))?;
        if report.retired_key_ids.is_empty() {
            printer.text_line("no key id retired")?;
        } else {
            printer.text_line(&format!(
                "key ids {:?} are no longer used by the store and can be removed from the keyring",
                report.retired_key_ids
            ))?;
        }
    }
    Ok(())
}
