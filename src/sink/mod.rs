//! Sink stage: Parquet files (arrow-rs writer: zstd, statistics, sorting metadata, column
//! descriptions), published into `{output}/{table}/as_of=D/` by an atomic swap, and the run
//! manifest written last.

pub mod manifest;
pub mod parquet;
pub mod publish;

pub use manifest::Manifest;
pub use publish::{publish, PublishOptions, Published};

/// Errors writing outputs; each names the path.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("output {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("output {path}: {message}")]
    Parquet { path: String, message: String },
}

pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> SinkError {
    SinkError::Io {
        path: path.display().to_string(),
        source,
    }
}
