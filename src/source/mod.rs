//! Source stage: finds the input files, reads them with polars (lazy scan, streaming engine,
//! only the mapped columns), and normalizes every row into typed transaction lines — or into a
//! reject with a reason, or counts it as after as_of. Nothing is dropped silently.

pub(crate) mod files;
pub(crate) mod normalize;
pub(crate) mod read;
pub(crate) mod records;
mod row;
pub(crate) mod spend;
pub(crate) mod spill;

pub(crate) use customer_value_core::source::*;
pub(crate) use files::{discover, InputFile};
pub(crate) use normalize::ingest;
pub(crate) use row::IngestOptions;

/// Errors reading inputs. Each names the file (and column where it applies).
#[derive(Debug, thiserror::Error)]
pub(crate) enum SourceError {
    /// A signal asked the run to stop while reading.
    #[error(transparent)]
    Stopped(#[from] crate::cancel::Stopped),
    #[error("input {path}: {message}")]
    Path { path: String, message: String },
    #[error("input file {file}: column '{column}' (input.columns.{key}) not found; columns are: {available}")]
    MissingColumn {
        file: String,
        column: String,
        key: String,
        available: String,
    },
    #[error(
        "input file {file}: column '{column}' has type {dtype}, which cannot be read as {expected}"
    )]
    ColumnType {
        file: String,
        column: String,
        dtype: String,
        expected: String,
    },
    /// Reading the file failed; `source` is the reader's or the system's error.
    #[error("input file {file}: {}", one_line(&.source.to_string()))]
    Read {
        file: String,
        #[source]
        source: Cause,
    },
    /// Streaming an HTTP(S) input to a local file failed.
    #[error("input file {file}: download failed: {source}")]
    Download {
        file: String,
        #[source]
        source: std::io::Error,
    },
    /// The copy of a file with its marked records emptied (see `records`) could not be written.
    #[error("input file {file}: writing a checked copy: {source}")]
    CheckedCopy {
        file: String,
        #[source]
        source: std::io::Error,
    },
    /// The file's header cannot be mapped unambiguously (a column named twice).
    #[error("input file {file}: {message}")]
    Header { file: String, message: String },
    #[error("input {0}")]
    Storage(#[from] crate::storage::StorageError),
    /// Writing or reading the spilled lines failed (the message names the spill file).
    #[error("spilling lines to disk (engine.spill_dir): {0}")]
    Spill(#[source] spill::SpillError),
}

/// What a read failed on: the error of polars, the system or the object store, or our own
/// message.
pub(crate) type Cause = Box<dyn std::error::Error + Send + Sync>;

/// A read error of `file` (its message is printed on one line).
pub(crate) fn read_err(file: &InputFile, e: impl Into<Cause>) -> SourceError {
    SourceError::Read {
        file: file.display.clone(),
        source: e.into(),
    }
}

/// `s` with every run of whitespace (newlines too) folded to one space.
pub(crate) fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
