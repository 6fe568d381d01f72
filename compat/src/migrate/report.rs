//! The result of a run: per collection what was copied and what verification found, as text or
//! JSON.

use std::fmt::Write as _;

use serde::Serialize;

use super::{Mode, SourceKind};

/// What a run did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunKind {
    /// Copied (started or resumed) and, unless disabled, verified.
    Migrate,
    /// The target already held the finished migration; nothing was written.
    AlreadyComplete,
    /// Only verified.
    VerifyOnly,
    /// Only listed what would be migrated.
    DryRun,
}

/// One side of a verification: rows and digest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Side {
    /// Rows read.
    pub rows: u64,
    /// BLAKE3 (hex) of the length-framed rows in the order read.
    pub digest: String,
}

/// One collection of a run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CollectionReport {
    /// Target collection.
    pub collection: String,
    /// Source collection or redb table.
    pub source_name: String,
    /// Kind of source.
    pub kind: SourceKind,
    /// redb key type.
    pub key_type: Option<String>,
    /// redb value type.
    pub value_type: Option<String>,
    /// Rows in the source (exact for redb tables and dry runs of stores; otherwise the backend's
    /// estimate, which counts versions).
    pub source_rows: Option<u64>,
    /// Rows copied by this run.
    pub copied_rows: u64,
    /// Key and value bytes copied by this run.
    pub copied_bytes: u64,
    /// Verification of the source side.
    pub source: Option<Side>,
    /// Verification of the target side.
    pub target: Option<Side>,
    /// Whether both sides agree (`None`: not verified).
    pub matches: Option<bool>,
}

/// A redb table a run skipped (`--skip-unknown`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SkippedTable {
    /// The table.
    pub table: String,
    /// `table` or `multimap table`.
    pub kind: String,
    /// Stored key type name.
    pub key_type: String,
    /// Stored value type name.
    pub value_type: String,
    /// Why it was skipped.
    pub reason: String,
    /// Its length.
    pub rows: u64,
}

/// The result of [`migrate`](super::migrate), [`verify`](super::verify) or
/// [`dry_run`](super::dry_run).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// What the run did.
    pub run: RunKind,
    /// The source.
    pub source: String,
    /// The target (`None` for a dry run).
    pub target: Option<String>,
    /// The mode.
    pub mode: Mode,
    /// The source version a snapshot copy read.
    pub source_version: Option<u64>,
    /// Whether this run continued an interrupted one.
    pub resumed: bool,
    /// Batches (transactions) committed by this run.
    pub batches: u64,
    /// The collections.
    pub collections: Vec<CollectionReport>,
    /// Skipped redb tables.
    pub skipped: Vec<SkippedTable>,
    /// Whether verification ran.
    pub verified: bool,
    /// Verification ran and every collection matched, or verification did not run.
    pub ok: bool,
    /// Wall time of the run, seconds.
    pub seconds: f64,
}

impl Report {
    /// Rows copied by this run.
    #[must_use]
    pub fn copied_rows(&self) -> u64 {
        self.collections.iter().map(|c| c.copied_rows).sum()
    }

    /// Key and value bytes copied by this run.
    #[must_use]
    pub fn copied_bytes(&self) -> u64 {
        self.collections.iter().map(|c| c.copied_bytes).sum()
    }

    /// The report as aligned text.
    #[must_use]
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let what = match self.run {
            RunKind::Migrate if self.resumed => "migration (resumed)",
            RunKind::Migrate => "migration",
            RunKind::AlreadyComplete => "migration (already complete, nothing written)",
            RunKind::VerifyOnly => "verification",
            RunKind::DryRun => "dry run (nothing written)",
        };
        let _ = writeln!(s, "{what}, {} mode", self.mode);
        let _ = writeln!(s, "  from {}", self.source);
        if let Some(target) = &self.target {
            let _ = writeln!(s, "  to   {target}");
        }
        if let Some(v) = self.source_version {
            let _ = writeln!(s, "  source version {v}");
        }
        let mut rows: Vec<[String; 6]> = vec![[
            "collection".into(),
            "source".into(),
            "types".into(),
            "rows".into(),
            "copied".into(),
            "verification".into(),
        ]];
        for c in &self.collections {
            let source = match c.kind {
                SourceKind::Collection => c.source_name.clone(),
                SourceKind::Table => format!("table {:?}", c.source_name),
                SourceKind::MultimapTable => format!("multimap {:?}", c.source_name),
            };
            let types = match (&c.key_type, &c.value_type) {
                (Some(k), Some(v)) => format!("{k} -> {v}"),
                _ => "-".into(),
            };
            let verification = match (&c.source, &c.target, c.matches) {
                (Some(_), Some(dst), Some(true)) => {
                    format!("ok ({} rows, {})", dst.rows, short(&dst.digest))
                }
                (Some(src), Some(dst), _) => format!(
                    "MISMATCH: source {} rows {}, target {} rows {}",
                    src.rows,
                    short(&src.digest),
                    dst.rows,
                    short(&dst.digest)
                ),
                _ => "-".into(),
            };
            rows.push([
                c.collection.clone(),
                source,
                types,
                c.source_rows.map_or_else(|| "?".into(), |n| n.to_string()),
                c.copied_rows.to_string(),
                verification,
            ]);
        }
        let mut widths = [0usize; 6];
        for r in &rows {
            for (w, cell) in widths.iter_mut().zip(r) {
                *w = (*w).max(cell.chars().count());
            }
        }
        for r in &rows {
            let mut line = String::from(" ");
            for (i, (w, cell)) in widths.iter().zip(r).enumerate() {
                if i + 1 == r.len() {
                    let _ = write!(line, " {cell}");
                } else {
                    let _ = write!(line, " {cell:<w$}");
                }
            }
            let _ = writeln!(s, "{}", line.trim_end());
        }
        for t in &self.skipped {
            let _ = writeln!(
                s,
                "  skipped {} {:?} ({} rows): key {}, value {}: {}",
                t.kind, t.table, t.rows, t.key_type, t.value_type, t.reason
            );
        }
        if self.run != RunKind::DryRun {
            let _ = writeln!(
                s,
                "  copied {} rows, {} bytes in {} batches, {:.2} s",
                self.copied_rows(),
                self.copied_bytes(),
                self.batches,
                self.seconds
            );
        }
        let verdict = match (self.verified, self.ok) {
            (true, true) => "verified: every collection matches",
            (true, false) => "VERIFICATION FAILED: source and target differ",
            (false, _) => "not verified",
        };
        if self.run != RunKind::DryRun {
            let _ = writeln!(s, "  {verdict}");
        }
        s
    }
}

fn short(digest: &str) -> &str {
    digest.get(..16).unwrap_or(digest)
}
