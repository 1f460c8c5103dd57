//! Sink stage: Parquet files (arrow-rs writer: zstd, statistics, sorting metadata, column
//! descriptions), published into `{output}/{table}/as_of=D/` by an atomic swap, and the run
//! manifest written last.

#[cfg(feature = "delta")]
pub mod delta;
pub mod lock;
pub mod manifest;
pub mod parquet;
pub mod publish;
pub mod remote;
pub mod spread;

use crate::schema::Table;
use std::path::PathBuf;

use arrow::array::RecordBatch;

pub use manifest::Manifest;
use manifest::TableEntry;

use crate::storage::Location;

/// Settings for one publish.
#[derive(Debug, Clone)]
pub struct PublishOptions<'a> {
    pub as_of: &'a str,
    pub run_id: &'a str,
    pub zstd_level: i32,
    pub row_group_rows: usize,
    /// With `[output] format = "delta"`: each table is also a Delta table, committed once the
    /// manifest is written; replaced files stay for its readers until the retention passes.
    pub delta: Option<DeltaSettings>,
}

/// What a publish to Delta tables needs of the configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct DeltaSettings {
    /// The segment columns (the customers table has one per column).
    pub segments: Vec<String>,
    pub retention_hours: u64,
}

impl DeltaSettings {
    /// The settings of `cfg`; None when its output format is Parquet.
    pub fn of(cfg: &customer_value_core::config::Validated) -> Option<DeltaSettings> {
        let out = &cfg.config.output;
        (out.format == customer_value_core::config::OutputFormat::Delta).then(|| DeltaSettings {
            segments: cfg.config.input.columns.segments.clone(),
            retention_hours: out.delta_retention_hours,
        })
    }
}

/// Whether this build writes Delta tables (the store's `delta` feature: the CLI has it, the
/// Python package does not).
pub const DELTA: bool = cfg!(feature = "delta");

/// One table's data for a partition.
#[derive(Debug, Clone, Copy)]
pub enum TableData<'a> {
    /// Rows to write as one file.
    Batch(&'a RecordBatch),
    /// Parquet files already written (a spilled run's customers table, one per customer
    /// partition); they are moved or uploaded as they are.
    Files(&'a [PartFile]),
    /// Parquet files already in the output's own store, `path` relative to the output root
    /// (a spread run's tasks wrote them under `_staging/`): moved (local disk) or copied
    /// within the store (object store) as they are.
    InOutput(&'a [PartFile]),
}

/// A data file written ahead of publishing.
#[derive(Debug, Clone)]
pub struct PartFile {
    pub path: PathBuf,
    pub rows: u64,
    pub bytes: u64,
}

/// Name of a partition's data file: `part-<run_id>.parquet`, or with its number when the
/// table has several.
pub fn file_name(run_id: &str, number: Option<usize>) -> String {
    match number {
        None => format!("part-{run_id}.parquet"),
        Some(i) => format!("part-{run_id}-{i:05}.parquet"),
    }
}

/// Tables written but not yet committed by a manifest.
#[derive(Debug)]
pub struct Staged {
    kind: StagedIn,
    output: Location,
    delta: Option<DeltaSettings>,
}

#[derive(Debug)]
enum StagedIn {
    Local(PathBuf, publish::Published),
    Remote(remote::Uploaded),
}

/// Writes every table to the output (local: staged and swapped in; object store: uploaded under
/// run-scoped names), and takes out the partition of this date of each `retired` table (one this
/// run has no rows for and does not keep, e.g. `models` after predictions were turned off), so
/// no reader sees a table the manifest does not list. Nothing is complete until
/// [`Staged::finish`] writes the manifest.
pub fn stage(
    output: &Location,
    opts: &PublishOptions<'_>,
    tables: &[(Table, TableData<'_>)],
    retired: &[Table],
) -> Result<Staged, SinkError> {
    if opts.delta.is_some() && !DELTA {
        return Err(SinkError::Delta {
            path: output.shown(),
            message: "output.format = \"delta\": this build writes Parquet only (the Python \
                      package; the customer-value CLI writes Delta tables)"
                .into(),
        });
    }
    let kind = match output {
        Location::Local(root) => {
            StagedIn::Local(root.clone(), publish::publish(root, opts, tables, retired)?)
        }
        Location::Remote(r) => StagedIn::Remote(remote::upload(r, opts, tables, retired)?),
    };
    Ok(Staged {
        kind,
        output: output.clone(),
        delta: opts.delta.clone(),
    })
}

/// The manifest of `as_of` under `output` (local or object store); None when there is none.
pub fn read_manifest(output: &Location, as_of: &str) -> Result<Option<Manifest>, SinkError> {
    match output {
        Location::Local(root) => manifest::read(&root.join(manifest::DIR), as_of),
        Location::Remote(r) => {
            let key = r.child(&format!("{}/{}", manifest::DIR, manifest::file_name(as_of)));
            match r.get(&key)? {
                Some(bytes) => manifest::parse(&bytes, &r.url(&key)).map(Some),
                None => Ok(None),
            }
        }
    }
}

/// The partitions of `as_of` that a run leaving some tables out keeps: the entries of the
/// previous manifest of that date for the tables where `left_out` holds, each marked with the
/// run that wrote it. None without a previous manifest; an unreadable one is logged and kept
/// nothing from (its files stay, unlisted).
pub fn kept_tables(
    output: &Location,
    as_of: &str,
    left_out: impl Fn(&str) -> bool,
) -> Vec<(String, TableEntry)> {
    match read_manifest(output, as_of) {
        Ok(Some(m)) => m
            .tables
            .into_iter()
            .filter(|(name, _)| left_out(name))
            .map(|(name, mut entry)| {
                entry.run_id.get_or_insert_with(|| m.run_id.clone());
                (name, entry)
            })
            .collect(),
        Ok(None) => Vec::new(),
        Err(e) => {
            tracing::warn!(manifest = %e, "Could not read the previous manifest of this date; the tables left out are not listed in the new one.");
            Vec::new()
        }
    }
}

impl Staged {
    /// (table, partition entry) of what was written.
    pub fn tables(&self) -> &[(String, TableEntry)] {
        match &self.kind {
            StagedIn::Local(_, p) => &p.tables,
            StagedIn::Remote(u) => &u.tables,
        }
    }

    /// Puts back what was staged, without a manifest (the run may not publish after all).
    pub fn abandon(self) {
        match self.kind {
            StagedIn::Local(_, published) => published.rollback(),
            StagedIn::Remote(u) => u.abandon(),
        }
    }

    /// Writes the manifest and commits; on failure restores the previous state. With Delta
    /// tables, then commits each table's partition (see `delta::publish`).
    pub fn finish(
        self,
        as_of: &str,
        run_id: &str,
        manifest: &Manifest,
    ) -> Result<String, SinkError> {
        let written = match self.kind {
            StagedIn::Local(root, published) => {
                match manifest::write(&root.join(manifest::DIR), as_of, run_id, manifest) {
                    Ok(p) => {
                        crate::testhook::hold("publish:manifest");
                        published.commit();
                        p.display().to_string()
                    }
                    Err(e) => {
                        published.rollback();
                        return Err(e);
                    }
                }
            }
            StagedIn::Remote(u) => u.finish(manifest)?,
        };
        #[cfg(feature = "delta")]
        if let Some(settings) = &self.delta {
            delta::publish::commit_date(&self.output, settings, manifest)?;
        }
        #[cfg(not(feature = "delta"))]
        let _ = (&self.output, &self.delta);
        Ok(written)
    }
}

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
    /// A manifest that is not one (not JSON, or missing fields).
    #[error("output {path}: not a manifest: {source}")]
    Manifest {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("output {0}")]
    Storage(#[from] crate::storage::StorageError),
    #[error("output {0}")]
    Locked(String),
    /// A Delta Lake commit or snapshot read that failed.
    #[error("output {path}: Delta log: {message}")]
    Delta { path: String, message: String },
}

pub fn io(path: &std::path::Path, source: std::io::Error) -> SinkError {
    SinkError::Io {
        path: path.display().to_string(),
        source,
    }
}
