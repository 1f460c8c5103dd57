//! The run manifest (SPEC §4): one JSON per as_of at `{output}/_manifests/as_of=D.json`,
//! written last and atomically; a partition is complete only when its manifest says so.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::SinkError;

/// One output file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileEntry {
    /// Path relative to the output root.
    pub path: String,
    pub rows: u64,
    pub bytes: u64,
}

/// One table's partition.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TableEntry {
    /// Partition folder relative to the output root.
    pub partition: String,
    pub rows: u64,
    pub files: Vec<FileEntry>,
    /// The earlier run that wrote this partition, when this run left the table out
    /// (`--tables`) and kept it; absent when this run wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
}

/// The manifest document.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub run_id: String,
    pub job: String,
    pub job_version: String,
    pub config_hash: String,
    pub as_of: String,
    /// `flag` (given) or `default` (yesterday in the configured timezone).
    pub as_of_source: String,
    pub status: String,
    pub started_at: String,
    pub finished_at: String,
    pub settings: serde_json::Value,
    pub inputs: Vec<crate::source::FileStats>,
    pub rows_read: u64,
    pub rows_used: u64,
    pub rows_rejected: u64,
    pub rows_after_as_of: u64,
    /// rows_rejected / (rows_read − rows_after_as_of).
    pub reject_ratio: f64,
    pub rejects_by_reason: BTreeMap<String, u64>,
    /// What the run noticed and went on with (inputs with the same content, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// UTC time of the newest transaction line on or before as_of (input freshness).
    #[serde(default)]
    pub newest_transaction_at: Option<String>,
    pub customers: u64,
    pub orders: u64,
    pub tables: BTreeMap<String, TableEntry>,
    /// Milliseconds per stage, in pipeline order.
    pub timings_ms: Vec<(String, u64)>,
}

/// Folder of the manifests under the output root.
pub const DIR: &str = "_manifests";

/// File name of the manifest of `as_of`.
pub fn file_name(as_of: &str) -> String {
    format!("as_of={as_of}.json")
}

/// Writes the manifest atomically (temporary file, fsync, rename).
pub fn write(
    dir: &Path,
    as_of: &str,
    run_id: &str,
    m: &Manifest,
) -> Result<std::path::PathBuf, SinkError> {
    std::fs::create_dir_all(dir).map_err(|e| super::io(dir, e))?;
    let target = dir.join(file_name(as_of));
    let tmp = dir.join(format!(".{}.{run_id}.tmp", file_name(as_of)));
    let text = serde_json::to_string_pretty(m).map_err(|e| SinkError::Parquet {
        path: target.display().to_string(),
        message: e.to_string(),
    })?;
    let mut f = std::fs::File::create(&tmp).map_err(|e| super::io(&tmp, e))?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.write_all(b"\n"))
        .and_then(|_| f.sync_all())
        .map_err(|e| super::io(&tmp, e))?;
    std::fs::rename(&tmp, &target).map_err(|e| super::io(&target, e))?;
    Ok(target)
}

/// Reads the manifest of `as_of` from a local output; None when there is none.
pub fn read(dir: &Path, as_of: &str) -> Result<Option<Manifest>, SinkError> {
    let path = dir.join(file_name(as_of));
    match std::fs::read(&path) {
        Ok(bytes) => parse(&bytes, &path.display().to_string()).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(super::io(&path, e)),
    }
}

/// Parses the manifest document read from `path`.
pub fn parse(bytes: &[u8], path: &str) -> Result<Manifest, SinkError> {
    serde_json::from_slice(bytes).map_err(|source| SinkError::Manifest {
        path: path.to_string(),
        source,
    })
}
