//! The crate error: one variant per pipeline stage, each mapping to an exit code of SPEC §5.

use thiserror::Error;

/// Crate-wide result alias.
pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

/// Every failure the job can report. The message is the one line a user sees on stderr.
#[derive(Debug, Error)]
pub(crate) enum Error {
    /// The configuration (file, flags or environment) is unusable; exit code 2.
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    /// An input could not be read or does not have the mapped columns; exit code 1.
    #[error(transparent)]
    Source(#[from] crate::source::SourceError),
    /// Writing an output table or the manifest failed; exit code 1.
    #[error(transparent)]
    Sink(#[from] crate::sink::SinkError),
    /// The data failed its checks (reject ratio, nothing by as_of, stale input, sums beyond
    /// range, too much work for the as_of); exit code 3: retrying the same input cannot help.
    #[error("{0}")]
    Quality(String),
    /// A signal asked the run to stop (see `cancel`); exit code 1.
    #[error(transparent)]
    Stopped(#[from] crate::cancel::Stopped),
    /// `report` could not read the published run or write the page; exit code 1, or 2 when
    /// nothing is published for the date asked for.
    #[error(transparent)]
    Report(#[from] crate::report::ReportError),
    /// `generate` could not write its files; exit code 1.
    #[error(transparent)]
    Generate(#[from] crate::generate::GenerateError),
}

impl Error {
    /// Exit code for this error (SPEC §5): 1 = the run failed and a retry may succeed (I/O,
    /// object store, a live lock holder), 2 = usage or config error, 3 = the data failed its
    /// checks.
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_) | Error::Generate(crate::generate::GenerateError::Options(_)) => 2,
            Error::Quality(_) => 3,
            Error::Report(crate::report::ReportError::NoRun { .. }) => 2,
            // The input's columns cannot be read as mapped: the same input fails again.
            Error::Source(
                crate::source::SourceError::MissingColumn { .. }
                | crate::source::SourceError::ColumnType { .. }
                | crate::source::SourceError::Header { .. },
            ) => 3,
            _ => 1,
        }
    }
}
