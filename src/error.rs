//! The crate error: one variant per pipeline stage, each mapping to an exit code of SPEC §5.

use thiserror::Error;

/// Crate-wide result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every failure the job can report. The message is the one line a user sees on stderr.
#[derive(Debug, Error)]
pub enum Error {
    /// The configuration (file, flags or environment) is unusable; exit code 2.
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    /// An input could not be read or does not have the mapped columns; exit code 1.
    #[error(transparent)]
    Source(#[from] crate::source::SourceError),
    /// Writing an output table or the manifest failed; exit code 1.
    #[error(transparent)]
    Sink(#[from] crate::sink::SinkError),
    /// The data failed a quality gate (reject ratio, nothing to compute); exit code 1.
    #[error("{0}")]
    Quality(String),
    /// `generate` could not write its files; exit code 1.
    #[error(transparent)]
    Generate(#[from] crate::generate::GenerateError),
}

impl Error {
    /// Exit code for this error (SPEC §5: 1 = the run failed, 2 = usage or config error).
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_) => 2,
            _ => 1,
        }
    }
}
