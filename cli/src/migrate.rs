//! `zstore migrate`: copy a store into another (any two backends), or import a plain redb
//! file, with verification, resume and progress. The work is done by
//! [`zcore_compat::migrate`]; this module parses the flags, draws progress and prints the
//! report.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use zcore_backends::config::parse_byte_size;
use zcore_compat::migrate::{
    self, Endpoint, MigrateError, MigrateOptions, Phase, Progress, Report,
};

use crate::error::CliError;

const AFTER_HELP: &str = "\
Endpoints:
  fjall:DIR        a zcore store on fjall
  redb:FILE        a zcore store on redb
  memory:          an empty in-memory store (for tests)
  redb-file:FILE   (source only) a plain redb file written by another program:
                   every table becomes a collection; keys and values of redb's
                   built-in types are re-encoded so that byte order is redb's
                   order (integers big-endian, signed with the sign bit flipped,
                   tuples and Options self-delimiting); a multimap table
                   becomes key||value keys with empty values

The global --backend/--path/--data-dir flags do not apply: --from and --to name
the stores. The target is created if missing.

Every batch is written atomically together with how far the copy got (in the
target's __migrate collection): an interrupted run resumes when started again
with the same arguments; a finished one writes nothing and verifies again.
After copying, every collection is read on both sides and compared (rows and an
order-sensitive BLAKE3 digest); any difference exits with code 1.

Exit codes: 0 copied and verified; 1 runtime error or verification mismatch;
2 usage error (bad endpoint, unknown types without --skip-unknown, invalid
table names); 3 the source does not exist or nothing to verify.";

/// `zstore migrate …`
#[derive(Debug, Args)]
#[command(after_help = AFTER_HELP)]
pub struct MigrateArgs {
    /// Source: fjall:DIR, redb:FILE, memory: or redb-file:FILE
    #[arg(long, value_name = "KIND:PATH")]
    pub from: String,

    /// Target: fjall:DIR, redb:FILE or memory:
    #[arg(long, value_name = "KIND:PATH", required_unless_present = "dry_run")]
    pub to: Option<String>,

    /// Copy every retained version (store sources; the target must hold no user data)
    /// instead of the latest snapshot
    #[arg(long)]
    pub history: bool,

    /// Only compare source and target of an earlier run (writes nothing)
    #[arg(long, conflicts_with = "dry_run")]
    pub verify_only: bool,

    /// Only list what would be migrated: collections or tables, types, row counts
    #[arg(long)]
    pub dry_run: bool,

    /// Skip (and report) redb tables of user-defined types instead of failing
    #[arg(long)]
    pub skip_unknown: bool,

    /// Migrate redb table TABLE into collection COLLECTION (repeatable); for table names that
    /// are not valid collection names
    #[arg(long, value_name = "TABLE=COLLECTION")]
    pub rename: Vec<String>,

    /// Most rows per batch (each written atomically with its checkpoint)
    #[arg(long, value_name = "N", default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub batch_rows: u64,

    /// About the most bytes per batch (or with a KiB/MiB/GiB suffix)
    #[arg(long, value_name = "BYTES", default_value = "4MiB", value_parser = parse_byte_size)]
    pub batch_bytes: u64,

    /// Do not verify after copying
    #[arg(long, conflicts_with = "verify_only")]
    pub no_verify: bool,

    /// No progress bar
    #[arg(long, short)]
    pub quiet: bool,
}

impl From<MigrateError> for CliError {
    fn from(e: MigrateError) -> Self {
        let message = e.to_string();
        match e {
            MigrateError::InvalidEndpoint { .. }
            | MigrateError::InvalidRename { .. }
            | MigrateError::InvalidTableName { .. }
            | MigrateError::DuplicateCollection { .. }
            | MigrateError::UnknownTypes { .. }
            | MigrateError::SameStore { .. }
            | MigrateError::DifferentMigration { .. }
            | MigrateError::TargetNotEmpty { .. } => CliError::usage(message),
            MigrateError::SourceMissing { .. } | MigrateError::NothingToVerify { .. } => {
                CliError::not_found(message)
            }
            _ => CliError::runtime(message),
        }
    }
}

/// An indicatif bar on stderr: rows, bytes, rows/s, ETA.
struct Bar {
    bar: ProgressBar,
    bytes: AtomicU64,
}

impl Bar {
    fn new(visible: bool) -> Self {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        if !visible {
            bar.set_draw_target(ProgressDrawTarget::hidden());
        }
        Self {
            bar,
            bytes: AtomicU64::new(0),
        }
    }
}

impl Progress for Bar {
    fn start(&self, phase: Phase, rows: Option<u64>, _bytes: Option<u64>) {
        let verb = match phase {
            Phase::Copy => "copy",
            Phase::Verify => "verify",
        };
        let template = format!(
            "{verb:>6} [{{elapsed_precise}}] {{wide_bar}} {{human_pos}}/{{human_len}} rows, {{msg}}, {{per_sec:0}}, ETA {{eta}}"
        );
        if let Ok(style) = ProgressStyle::with_template(&template) {
            self.bar.set_style(style);
        }
        self.bytes.store(0, Ordering::Relaxed);
        self.bar.reset();
        self.bar.set_length(rows.unwrap_or(0));
        self.bar.set_message("0 B");
    }

    fn advance(&self, _collection: &str, rows: u64, bytes: u64) {
        let total = self.bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.bar.inc(rows);
        if self.bar.position() > self.bar.length().unwrap_or(0) {
            self.bar.set_length(self.bar.position());
        }
        self.bar
            .set_message(indicatif::HumanBytes(total).to_string());
    }

    fn finish(&self, _phase: Phase) {
        self.bar.finish_and_clear();
    }
}

fn options(args: &MigrateArgs) -> Result<MigrateOptions, CliError> {
    let mut renames = std::collections::BTreeMap::new();
    for spec in &args.rename {
        let Some((from, to)) = spec.split_once('=') else {
            return Err(MigrateError::InvalidRename {
                spec: spec.clone(),
                reason: "expected TABLE=COLLECTION".to_owned(),
            }
            .into());
        };
        renames.insert(from.to_owned(), to.to_owned());
    }
    Ok(MigrateOptions {
        history: args.history,
        skip_unknown: args.skip_unknown,
        renames,
        batch_rows: usize::try_from(args.batch_rows).unwrap_or(usize::MAX),
        batch_bytes: usize::try_from(args.batch_bytes).unwrap_or(usize::MAX),
        verify: !args.no_verify,
        ..MigrateOptions::default()
    })
}

fn print(report: &Report, json: bool) -> Result<(), CliError> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if json {
        serde_json::to_writer(&mut out, report)?;
        out.write_all(b"\n")?;
    } else {
        out.write_all(report.to_text().as_bytes())?;
    }
    out.flush()?;
    Ok(())
}

/// Runs `zstore migrate`.
pub async fn run(args: &MigrateArgs, json: bool) -> Result<(), CliError> {
    let options = options(args)?;
    let from: Endpoint = args.from.parse()?;
    let bar = Bar::new(!args.quiet && !json && std::io::stderr().is_terminal());
    if args.dry_run {
        let source = from.open_source()?;
        let report = migrate::dry_run(&source, &options).await;
        close_source(&source).await;
        return print(&report?, json);
    }
    let to: Endpoint = args
        .to
        .as_deref()
        .ok_or_else(|| CliError::usage("--to is required"))?
        .parse()?;
    if from.same_location(&to) {
        return Err(CliError::usage(format!(
            "--from and --to name the same location ({})",
            to.label()
        )));
    }
    if args.verify_only
        && let Some(path) = to.path()
        && !path.exists()
    {
        return Err(CliError::not_found(format!(
            "target {} does not exist",
            to.label()
        )));
    }
    let source = from.open_source()?;
    let target = match to.open_target().await {
        Ok(t) => t,
        Err(e) => {
            close_source(&source).await;
            return Err(e.into());
        }
    };
    let result = if args.verify_only {
        migrate::verify(&source, &target, &options, &bar).await
    } else {
        migrate::migrate(&source, &target, &options, &bar).await
    };
    bar.bar.finish_and_clear();
    close_source(&source).await;
    let closed = target.backend.close().await;
    let report = result?;
    closed?;
    print(&report, json)?;
    if report.ok {
        Ok(())
    } else {
        let bad: Vec<&str> = report
            .collections
            .iter()
            .filter(|c| c.matches == Some(false))
            .map(|c| c.collection.as_str())
            .collect();
        Err(CliError::runtime(format!(
            "verification failed: source and target differ in {}",
            bad.join(", ")
        )))
    }
}

async fn close_source(source: &migrate::Source) {
    if let migrate::Source::Store { backend, .. } = source {
        // Nothing was written to the source; a failing close changes nothing for the result.
        let _ = backend.close().await;
    }
}
