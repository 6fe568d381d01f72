//! `zstore`: the command-line tool of zcore-storage.
//!
//! Opens the store the configuration names (see `zstore --help` and
//! [`zcore_backends::config`]) and the MVCC [`zcore_engine::Engine`] on it, runs one command
//! through the engine, closes the engine (and with it the store) and exits with a code that
//! says what happened (0 success, 1 runtime error, 2 usage or configuration error, 3 not found).
//! Every write is one transaction, synced before zstore exits.

mod args;
mod backup;
mod bytes;
mod cluster;
mod commands;
mod dump;
mod error;
mod migrate;
mod ops;
mod rekey;
#[cfg(feature = "sim")]
mod sim;

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;
use zcore_backends::{BackendName, ConfigLoader, open_backend};
use zcore_engine::Engine;

use crate::args::Cli;
use crate::bytes::ByteFormat;
use crate::commands::{Action, Printer};
use crate::error::{CliError, FailureKind};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout with code 0; usage errors to stderr with code 2.
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    // The simulator's nodes log every injected fault as a warning: keep them quiet (and off
    // the hot path); its own report is on stdout.
    #[cfg(feature = "sim")]
    let simulating = matches!(cli.command, args::Command::Sim(_));
    #[cfg(not(feature = "sim"))]
    let simulating = false;
    if !simulating {
        init_logging();
    }
    commands::install_process_metrics();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if e.kind != FailureKind::OutputClosed {
                let _ = writeln!(std::io::stderr(), "{e}");
            }
            e.kind.exit_code()
        }
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default `warn`). The subscriber also installs the
/// `log` → `tracing` bridge, so fjall's and redb's `log` records show up too.
fn init_logging() {
    let filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::WARN.into())
        .from_env_lossy();
    // Fails only if a subscriber is already installed; logging is then left as it is.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

async fn run(cli: Cli) -> Result<(), CliError> {
    // The simulator prints from its own thread: dispatch it before stdout is locked below.
    #[cfg(feature = "sim")]
    if let args::Command::Sim(a) = &cli.command {
        return sim::run(a);
    }
    let format = ByteFormat::from_hex_flag(cli.global.hex);
    let mut printer = Printer::new(
        std::io::BufWriter::new(std::io::stdout().lock()),
        format,
        cli.global.json,
    );
    // Cluster commands have their own configuration and open no local store here.
    match &cli.command {
        args::Command::Serve(serve) => return cluster::serve(serve).await,
        args::Command::Cluster(command) => return cluster::run(command, cli.global.json).await,
        args::Command::Migrate(m) => return migrate::run(m, cli.global.json).await,
        _ => {}
    }
    let loaded = ConfigLoader::from_process_env()
        .with_overrides(cli.global.overrides())
        .load()?;
    tracing::debug!(config = ?loaded.backend, "configuration loaded");

    match &cli.command {
        args::Command::Dump(a) => {
            let result = dump::run_dump(a, &loaded, &mut printer, cli.global.json).await;
            return result.and_then(|()| printer.flush());
        }
        args::Command::Load(a) => {
            let result = dump::run_load(a, &loaded, &mut printer, cli.global.json).await;
            return result.and_then(|()| printer.flush());
        }
        _ => {}
    }
    if let args::Command::Verify(_) | args::Command::Inspect | args::Command::Compact = &cli.command
    {
        let result = ops::run(&cli.command, &loaded, &mut printer, cli.global.json).await;
        return result.and_then(|()| printer.flush());
    }
    if let args::Command::Rekey(a) = &cli.command {
        let result = rekey::run(a, &loaded, &mut printer, cli.global.json).await;
        return result.and_then(|()| printer.flush());
    }
    if let args::Command::Backup(command) = &cli.command {
        let result = backup::run(command, &loaded, &mut printer, cli.global.json).await;
        return result.and_then(|()| printer.flush());
    }
    // Every argument is validated before the store is opened.
    let Some(action) = Action::from_command(&cli.command, format)? else {
        printer.config(&loaded)?;
        return printer.flush();
    };

    let backend = open_backend(&loaded.backend)?;
    let in_memory = loaded.backend.backend() == BackendName::Memory;
    if in_memory && action.writes() {
        let _ = writeln!(
            std::io::stderr(),
            "zstore: warning: the memory backend discards its data when zstore exits; \
             use --backend fjall or --backend redb to keep it"
        );
    }
    let options = zcore_engine::EngineOptions {
        encryption: loaded.encryption_options()?,
        ..action.engine_options()
    };
    let engine = match Engine::open(std::sync::Arc::clone(&backend), options).await {
        Ok(engine) => engine,
        Err(e) => {
            // The engine never took charge of the backend: close it here. The open error is
            // the one worth reporting.
            let _ = backend.close().await;
            return Err(e.into());
        }
    };
    drop(backend);
    let result = action.run(&engine, &mut printer).await;
    let closed = engine.close().await;
    match result {
        Err(mut e) if in_memory && e.kind == FailureKind::NotFound => {
            e.message
                .push_str(" (the memory backend starts empty on every run)");
            Err(e)
        }
        Err(e) => Err(e),
        Ok(()) => Ok(closed?),
    }
}
