//! `customer-value report`: one self-contained HTML page of a published run — the cohort
//! retention heat map and survival curves, CRR, churn and new customers per period, LTV-to-date
//! curves and the ltv table's S, C, P and t, the predicted CLV and p_alive distributions with
//! the models' holdout backtest, and the run's data quality — read from the partition a
//! manifest lists (local disk or object store). With `output.report = true` every run and
//! backfill date also writes it to `{output}/_reports/as_of=D.html` after publishing.

mod charts;
mod format;
mod frame;
mod load;
mod page;
mod segments;

use std::path::Path;

use crate::config::Validated;
use crate::storage::{self, Location};

/// Folder of the reports under the output root (`_`: readers of the tables skip it).
pub(crate) const DIR: &str = "_reports";

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReportError {
    /// No manifest: nothing is published for the date (or at all).
    #[error("output {output}: no published run{}", .as_of.as_ref().map(|d| format!(" for as_of {d}")).unwrap_or_default())]
    NoRun {
        output: String,
        as_of: Option<String>,
    },
    /// The manifest lists a file that is not there.
    #[error("output: {path} (listed by the manifest of as_of {as_of}) is missing")]
    Missing { path: String, as_of: String },
    /// Reading the run or writing the page failed.
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    /// A table without a column the report draws, or with another type.
    #[error("{table} table: column {column} {message}")]
    Column {
        table: &'static str,
        column: String,
        message: String,
    },
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    #[error(transparent)]
    Sink(#[from] crate::sink::SinkError),
}

impl ReportError {
    fn io(path: &str, e: impl std::fmt::Display) -> Self {
        ReportError::Io {
            path: path.to_string(),
            message: e.to_string(),
        }
    }

    fn parquet(path: &str, e: impl std::fmt::Display) -> Self {
        ReportError::Io {
            path: path.to_string(),
            message: format!("not readable as Parquet: {e}"),
        }
    }
}

/// The report of the run published for `as_of` (default: the newest) under the configured
/// output: the date and the page.
pub(crate) fn build(cfg: &Validated, as_of: Option<&str>) -> Result<(String, String), ReportError> {
    let output = storage::open(&cfg.config.output.path, &cfg.config.storage)?;
    build_at(&output, as_of)
}

fn build_at(output: &Location, as_of: Option<&str>) -> Result<(String, String), ReportError> {
    let as_of = match as_of {
        Some(d) => d.to_string(),
        None => load::newest_as_of(output)?,
    };
    let published = load::load(output, &as_of)?;
    let html = page::render(&published)?;
    Ok((as_of, html))
}

/// Writes `html` to a local file atomically (a temporary file next to it, then a rename).
pub(crate) fn write_file(path: &Path, html: &str) -> Result<(), ReportError> {
    let err = |e: std::io::Error| ReportError::io(&path.display().to_string(), e);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(err)?;
    let mut tmp = tempfile::NamedTempFile::new_in(&dir).map_err(err)?;
    std::io::Write::write_all(&mut tmp, html.as_bytes()).map_err(err)?;
    // Readable like any file the job writes (a temporary file is created owner-only).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(err)?;
    }
    tmp.as_file().sync_all().map_err(err)?;
    tmp.persist(path).map_err(|e| err(e.error))?;
    Ok(())
}

/// After a run of `as_of` is published: its report to `{output}/_reports/as_of=D.html`.
pub(crate) fn publish(output: &Location, as_of: &str) -> Result<String, ReportError> {
    let (_, html) = build_at(output, Some(as_of))?;
    let rel = format!("{DIR}/as_of={as_of}.html");
    match output {
        Location::Local(root) => {
            let path = root.join(&rel);
            write_file(&path, &html)?;
            Ok(path.display().to_string())
        }
        Location::Remote(r) => {
            let key = r.child(&rel);
            let store = std::sync::Arc::clone(&r.store);
            let k = key.clone();
            storage::block_on(async move {
                use object_store::ObjectStoreExt;
                store
                    .put(&k, object_store::PutPayload::from(html.into_bytes()))
                    .await
            })
            .map_err(|e| ReportError::Storage(r.op_err(&key, "put (report)", e)))?;
            Ok(r.url(&key))
        }
    }
}
