//! The run trace: one line per meaningful event (`sim ms`, who, what), hashed with FNV-1a.
//!
//! Lines never contain wall-clock time, absolute `Instant`s, pointers or `HashMap` order, so
//! two runs of one seed must produce the same lines; the determinism check compares hashes and
//! prints the first divergent line.

use std::fmt::Write as _;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a over `bytes`, continuing from `hash`.
#[must_use]
pub fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash
}

/// The trace of one run.
#[derive(Clone, Debug)]
pub struct Trace {
    lines: Vec<String>,
    hash: u64,
    keep: bool,
}

impl Default for Trace {
    fn default() -> Self {
        Self::new(true)
    }
}

impl Trace {
    /// An empty trace; `keep` stores the lines (needed for diffs and files), otherwise only
    /// the hash is kept.
    #[must_use]
    pub fn new(keep: bool) -> Self {
        Self {
            lines: Vec::new(),
            hash: FNV_OFFSET,
            keep,
        }
    }

    /// Appends one line: `ms` of simulated time, who (`n2`, `c1`, `sim`), what.
    pub fn push(&mut self, ms: u64, who: &str, what: &str) {
        let mut line = String::with_capacity(16 + who.len() + what.len());
        let _ = write!(line, "{ms:>7} {who:<4} {what}");
        self.hash = fnv1a(self.hash, line.as_bytes());
        self.hash = fnv1a(self.hash, b"\n");
        if self.keep {
            self.lines.push(line);
        }
    }

    /// The hash of every line so far.
    #[must_use]
    pub fn hash(&self) -> u64 {
        self.hash
    }

    /// The stored lines.
    #[must_use]
    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    /// Number of lines pushed (kept or not) is not tracked; the stored lines' count.
    #[must_use]
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    /// Whether no line is stored.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// The whole trace as text, one line per event.
    #[must_use]
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        for l in &self.lines {
            s.push_str(l);
            s.push('\n');
        }
        s
    }
}

/// The first line where `a` and `b` differ: (line number from 1, line in a, line in b).
#[must_use]
pub fn first_divergence<'a>(
    a: &'a [String],
    b: &'a [String],
) -> Option<(usize, Option<&'a str>, Option<&'a str>)> {
    let n = a.len().max(b.len());
    (0..n).find_map(|i| {
        let x = a.get(i).map(String::as_str);
        let y = b.get(i).map(String::as_str);
        (x != y).then_some((i + 1, x, y))
    })
}
