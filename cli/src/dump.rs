//! `zstore dump` and `zstore load`: a logical, backend-neutral copy of collections at one
//! version, as JSON lines or the compact binary form ([`zcore_engine::dump`] has the formats
//! and the load semantics).

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use zcore_backends::{LoadedConfig, open_backend};
use zcore_engine::dump::{self, DumpError, DumpFormat, DumpOptions, DumpReader, LoadOptions};
use zcore_engine::{Engine, EngineOptions, Version};

use crate::bytes::collection_name;
use crate::commands::Printer;
use crate::error::CliError;

/// Encoding of a dump file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// One JSON object per line; keys and values in lower-case hex
    Jsonl,
    /// Framed postcard records with CRC32C (magic ZCDP); about half the size of jsonl
    Binary,
}

/// `zstore dump …`
#[derive(Debug, Args)]
pub struct DumpArgs {
    /// Collections to dump, in this order (repeatable); default: every user collection
    #[arg(long = "collection", value_name = "NAME")]
    pub collections: Vec<std::ffi::OsString>,
    /// Dump the store as it was at this committed version (if still retained)
    #[arg(long, value_name = "VERSION")]
    pub at_version: Option<Version>,
    /// Encoding
    #[arg(long, value_enum, default_value_t = FormatArg::Jsonl)]
    pub format: FormatArg,
    /// Write to FILE (created; refused if it exists) instead of stdout
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// `zstore load …`
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Dump file (jsonl or binary, detected), or `-` for stdin
    pub input: PathBuf,
    /// Replace the contents of target collections that already hold data (they are dropped
    /// and recreated); without it such a collection is refused and nothing is written
    #[arg(long)]
    pub overwrite: bool,
    /// Rows per batch; each batch is one transaction
    #[arg(long, value_name = "N", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub batch_rows: u64,
    /// Skip the checking pass over a file before loading (with it, a malformed or
    /// truncated file writes nothing; stdin is never pre-checked)
    #[arg(long)]
    pub no_check: bool,
}

impl From<DumpError> for CliError {
    fn from(e: DumpError) -> Self {
        match &e {
            DumpError::NotEmpty { .. } => Self::usage(e.to_string()),
            DumpError::CollectionNotFound(_) => Self::not_found(e.to_string()),
            DumpError::Engine { source, .. } => {
                use zcore_engine::TxnError;
                let kind = match &**source {
                    TxnError::VersionNotCommitted { .. } | TxnError::VersionNotRetained { .. } => {
                        crate::error::FailureKind::Usage
                    }
                    TxnError::CollectionNotFound { .. } => crate::error::FailureKind::NotFound,
                    _ => crate::error::FailureKind::Runtime,
                };
                Self {
                    kind,
                    message: e.to_string(),
                }
            }
            DumpError::Io { source, .. } if source.kind() == std::io::ErrorKind::BrokenPipe => {
                std::io::Error::from(std::io::ErrorKind::BrokenPipe).into()
            }
            _ => Self::runtime(e.to_string()),
        }
    }
}

fn bar(visible: bool, what: &'static str) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template("{msg:>9} [{elapsed_precise}] {pos} rows ({per_sec})")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    bar.set_style(style);
    bar.set_message(what);
    bar
}

async fn open_engine(loaded: &LoadedConfig) -> Result<Engine, CliError> {
    // Encrypted stores: the same key configuration as every other command.
    let encryption = loaded.encryption_options()?;
    let backend = open_backend(&loaded.backend)?;
    match Engine::open(
        Arc::clone(&backend),
        EngineOptions {
            gc_interval: None,
            encryption,
            ..EngineOptions::default()
        },
    )
    .await
    {
        Ok(engine) => Ok(engine),
        Err(e) => {
            let _ = backend.close().await;
            Err(e.into())
        }
    }
}

/// Runs `zstore dump`.
///
/// # Errors
///
/// Configuration, store, engine and I/O errors.
pub async fn run_dump<W: Write>(
    args: &DumpArgs,
    loaded: &LoadedConfig,
    printer: &mut Printer<W>,
    json: bool,
) -> Result<(), CliError> {
    let collections = if args.collections.is_empty() {
        None
    } else {
        Some(
            args.collections
                .iter()
                .map(|c| collection_name(c))
                .collect::<Result<Vec<_>, _>>()?,
        )
    };
    let options = DumpOptions {
        format: match args.format {
            FormatArg::Jsonl => DumpFormat::Jsonl,
            FormatArg::Binary => DumpFormat::Binary,
        },
        collections,
        at_version: args.at_version,
        page_size: 1024,
    };
    let out: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(BufWriter::new(File::create_new(path).map_err(|e| {
            CliError::usage(format!("cannot create {}: {e}", path.display()))
        })?)),
        None => {
            if options.format == DumpFormat::Binary && std::io::stdout().is_terminal() {
                return Err(CliError::usage(
                    "refusing to write a binary dump to a terminal; use --output FILE or redirect stdout",
                ));
            }
            Box::new(BufWriter::new(std::io::stdout().lock()))
        }
    };
    let engine = open_engine(loaded).await?;
    let progress = bar(!json && std::io::stderr().is_terminal(), "dumping");
    let handle = progress.clone();
    let result = dump::dump(&engine, out, &options, &mut |rows| {
        handle.set_position(rows)
    })
    .await;
    progress.finish_and_clear();
    let closed = engine.close().await;
    let (report, mut out) = result?;
    out.flush()?;
    drop(out);
    closed?;
    if args.output.is_none() {
        // stdout holds the dump: the summary goes to stderr.
        if !json {
            let _ = writeln!(
                std::io::stderr(),
                "zstore: dumped {} rows of {} collections at version {} ({} bytes, {})",
                report.rows,
                report.collections.len(),
                report.version,
                report.bytes,
                report.format.name()
            );
        }
        return Ok(());
    }
    if json {
        printer.json_line(&report)?;
    } else {
        printer.text_line(&format!(
            "dumped {} rows of {} collections at version {} from {} ({} bytes, {})",
            report.rows,
            report.collections.len(),
            report.version,
            report.source_backend,
            report.bytes,
            report.format.name()
        ))?;
        for (name, rows) in &report.collections {
            printer.text_line(&format!("  {name}: {rows} rows"))?;
        }
    }
    Ok(())
}

fn open_input(path: &Path) -> Result<Box<dyn BufRead>, CliError> {
    if path == Path::new("-") {
        return Ok(Box::new(BufReader::with_capacity(
            1 << 16,
            std::io::stdin().lock(),
        )));
    }
    let file = File::open(path)
        .map_err(|e| CliError::usage(format!("cannot open {}: {e}", path.display())))?;
    Ok(Box::new(BufReader::with_capacity(1 << 16, file)))
}

fn input_error(path: &Path, e: DumpError) -> CliError {
    let mut err = CliError::from(e);
    err.message = format!("{}: {}", path.display(), err.message);
    err
}

/// Runs `zstore load`.
///
/// # Errors
///
/// Configuration, store, engine, I/O and dump-format errors (with line or byte offset).
pub async fn run_load<W: Write>(
    args: &LoadArgs,
    loaded: &LoadedConfig,
    printer: &mut Printer<W>,
    json: bool,
) -> Result<(), CliError> {
    let path = args.input.as_path();
    let show = !json && std::io::stderr().is_terminal();
    let stdin = path == Path::new("-");
    if !stdin && !args.no_check {
        // First pass: the whole file must be well-formed before anything is written.
        let reader = DumpReader::open(open_input(path)?).map_err(|e| input_error(path, e))?;
        let progress = bar(show, "checking");
        let handle = progress.clone();
        let checked = dump::check(reader, &mut |rows| handle.set_position(rows));
        progress.finish_and_clear();
        checked.map_err(|e| input_error(path, e))?;
    }
    let reader = DumpReader::open(open_input(path)?).map_err(|e| input_error(path, e))?;
    let options = LoadOptions {
        overwrite: args.overwrite,
        batch_rows: usize::try_from(args.batch_rows).unwrap_or(1000),
        ..LoadOptions::default()
    };
    let engine = open_engine(loaded).await?;
    let progress = bar(show, "loading");
    let handle = progress.clone();
    let result = dump::load(&engine, reader, &options, &mut |rows| {
        handle.set_position(rows)
    })
    .await;
    progress.finish_and_clear();
    let closed = engine.close().await;
    let report = result.map_err(|e| input_error(path, e))?;
    closed?;
    if json {
        printer.json_line(&report)?;
    } else {
        printer.text_line(&format!(
            "loaded {} rows into {} collections in {} batches (dump of {} at version {}, {})",
            report.rows,
            report.collections.len(),
            report.batches,
            report.source_backend,
            report.source_version,
            report.format.name()
        ))?;
        for (name, rows) in &report.collections {
            let replaced = if report.replaced.contains(name) {
                " (replaced)"
            } else {
                ""
            };
            printer.text_line(&format!("  {name}: {rows} rows{replaced}"))?;
        }
    }
    Ok(())
}
