//! Checkers, one file per property (being built).
