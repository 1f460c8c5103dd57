//! A published date committed to the tables' Delta logs, once its manifest is written: for
//! every table, one commit replacing the partition `as_of = D` with the files the manifest
//! lists (a table the manifest does not list loses the partition), the run's id and row
//! accounting in the commit info; then every date another manifest publishes that a table's
//! log lacks (an output that was Parquet before). Then each table's files that a commit
//! removed more than `delta_retention_hours` ago are deleted (a vacuum), so readers of older
//! versions find them until then.
//!
//! Until the commits, Delta readers see the previous run of the date whole: its files stay in
//! place (the local publish links them into the new partition folder, the object-store publish
//! leaves them), and the new files are in no commit yet. A run killed between its manifest and
//! its commits leaves the Delta tables at the previous run until the date is published again.

use std::collections::HashMap;
use std::sync::Arc;

use object_store::ObjectStoreExt;
use serde_json::{json, Map, Value};
use tracing::{info, warn};

use super::{commit_partition, partition_files, snapshot_files, DeltaFile};
use crate::schema::Table;
use crate::sink::manifest::Manifest;
use crate::sink::{DeltaSettings, SinkError};
use crate::storage::{block_on, Location};

/// Commits every table's partition of the manifest's date, then the dates other manifests
/// publish that a table lacks (see [`heal`]), then vacuums each table.
pub fn commit_date(
    output: &Location,
    settings: &DeltaSettings,
    manifest: &Manifest,
) -> Result<(), SinkError> {
    let now_ms = chrono::Utc::now().timestamp_millis();
    for table in Table::ALL {
        commit_table(output, settings, manifest, table, now_ms)?;
    }
    heal(output, settings, now_ms)?;
    for table in Table::ALL {
        vacuum(
            &output.child(table.name()),
            now_ms - settings.retention_hours as i64 * 3_600_000,
        )?;
    }
    Ok(())
}

/// One table's partition of the manifest's date: its files as the manifest lists them (none:
/// the partition goes).
fn commit_table(
    output: &Location,
    settings: &DeltaSettings,
    manifest: &Manifest,
    table: Table,
    now_ms: i64,
) -> Result<(), SinkError> {
    let name = table.name();
    let root = output.child(name);
    let entry = manifest.tables.get(name);
    let files: Vec<DeltaFile> = entry
        .map(|e| {
            e.files
                .iter()
                .map(|f| DeltaFile {
                    path: f
                        .path
                        .strip_prefix(&format!("{name}/"))
                        .unwrap_or(&f.path)
                        .to_string(),
                    size: f.bytes,
                    rows: f.rows,
                    modified_ms: now_ms,
                })
                .collect()
        })
        .unwrap_or_default();
    // No table yet and nothing to put in it (models with predictions off).
    if files.is_empty() && partition_files(&root, &manifest.as_of)?.is_none() {
        return Ok(());
    }
    let version = commit_partition(
        &root,
        &table.schema(&settings.segments),
        &manifest.as_of,
        &files,
        app_metadata(manifest, entry.map_or(0, |e| e.rows)),
    )?;
    info!(table = name, as_of = %manifest.as_of, version, "Delta table committed.");
    Ok(())
}

/// Commits, from their manifests, the dates published before the output became Delta tables
/// (or while a table was left out): every date with a manifest that lists a table whose Delta
/// log has no file of that date. One listing of the manifests per publish; a manifest is read
/// only for such a date.
fn heal(output: &Location, settings: &DeltaSettings, now_ms: i64) -> Result<(), SinkError> {
    let dates = manifest_dates(output)?;
    let mut read: HashMap<String, Option<Manifest>> = HashMap::new();
    for table in Table::ALL {
        let root = output.child(table.name());
        let present: std::collections::HashSet<String> = match snapshot_files(&root)? {
            Some(s) => s
                .active
                .iter()
                .filter_map(|p| p.split_once('/'))
                .filter_map(|(dir, _)| dir.strip_prefix("as_of="))
                .map(str::to_string)
                .collect(),
            None => Default::default(),
        };
        for d in dates.iter().filter(|d| !present.contains(*d)) {
            if !read.contains_key(d) {
                read.insert(d.clone(), super::super::read_manifest(output, d)?);
            }
            let Some(Some(m)) = read.get(d) else { continue };
            if m.tables
                .get(table.name())
                .is_some_and(|e| !e.files.is_empty())
            {
                commit_table(output, settings, m, table, now_ms)?;
            }
        }
    }
    Ok(())
}

/// The dates of the manifests under `output` (`_manifests/as_of=D.json`).
fn manifest_dates(output: &Location) -> Result<Vec<String>, SinkError> {
    let date = |name: &str| {
        name.strip_prefix("as_of=")
            .and_then(|n| n.strip_suffix(".json"))
            .map(str::to_string)
    };
    let mut dates: Vec<String> = match output {
        Location::Local(root) => {
            let dir = root.join(crate::sink::manifest::DIR);
            match std::fs::read_dir(&dir) {
                Ok(entries) => entries
                    .flatten()
                    .filter_map(|e| date(&e.file_name().to_string_lossy()))
                    .collect(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(crate::sink::io(&dir, e)),
            }
        }
        Location::Remote(r) => r
            .list(&r.child(crate::sink::manifest::DIR))?
            .iter()
            .filter_map(|m| m.location.filename().and_then(date))
            .collect(),
    };
    dates.sort();
    Ok(dates)
}

/// What the commit info says of the run (under `customer_value`).
fn app_metadata(m: &Manifest, rows: u64) -> Map<String, Value> {
    let mut map = Map::new();
    map.insert(
        "customer_value".into(),
        json!({
            "run_id": m.run_id,
            "as_of": m.as_of,
            "job_version": m.job_version,
            "config_hash": m.config_hash,
            "rows": rows,
            "rows_read": m.rows_read,
            "rows_used": m.rows_used,
            "rows_rejected": m.rows_rejected,
            "rows_after_as_of": m.rows_after_as_of,
            "customers": m.customers,
            "orders": m.orders,
        }),
    );
    map
}

/// Deletes the table's data files that a commit removed before `before_ms` and its current
/// snapshot does not list. Only files the log says it removed: a file no commit ever listed
/// (a Parquet-era file of a date not yet committed, a dead run's upload, which its journal's
/// recovery removes) is left alone, and so is one whose removal a checkpoint no longer keeps
/// (a removal record stays for a week, `delta.deletedFileRetentionDuration`: any publish in
/// that week deletes it). Returns how many were deleted.
fn vacuum(root: &Location, before_ms: i64) -> Result<usize, SinkError> {
    let Some(snapshot) = snapshot_files(root)? else {
        return Ok(0);
    };
    let gone = |rel: &str| {
        !snapshot.active.contains(rel)
            && snapshot.removed.get(rel).is_some_and(|&at| at < before_ms)
    };
    let mut deleted = 0;
    match root {
        Location::Local(dir) => {
            for rel in local_data_files(dir) {
                if gone(&rel) {
                    let path = dir.join(&rel);
                    match std::fs::remove_file(&path) {
                        Ok(()) => deleted += 1,
                        Err(e) => {
                            warn!(path = %path.display(), error = %e, "Could not delete a file the Delta table no longer lists.")
                        }
                    }
                }
            }
        }
        Location::Remote(r) => {
            for meta in r.list(&r.path)? {
                let Some(rel) = meta
                    .location
                    .as_ref()
                    .strip_prefix(r.path.as_ref())
                    .map(|p| p.trim_start_matches('/').to_string())
                else {
                    continue;
                };
                if rel.starts_with("_delta_log/") || !rel.ends_with(".parquet") {
                    continue;
                }
                if gone(&rel) {
                    let store = Arc::clone(&r.store);
                    let key = meta.location.clone();
                    match block_on(async move { store.delete(&key).await }) {
                        Ok(()) | Err(object_store::Error::NotFound { .. }) => deleted += 1,
                        Err(e) => {
                            warn!(url = %r.url(&meta.location), error = %crate::storage::store_message(&e), "Could not delete a file the Delta table no longer lists.")
                        }
                    }
                }
            }
        }
    }
    if deleted > 0 {
        info!(table = %root.shown(), files = deleted, "Deleted files the Delta table removed before the retention.");
    }
    Ok(deleted)
}

/// The Parquet files in the `as_of=…` folders of a local table, relative to the table root.
fn local_data_files(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(partitions) = std::fs::read_dir(dir) else {
        return out;
    };
    for p in partitions.flatten() {
        let name = p.file_name().to_string_lossy().to_string();
        if !name.starts_with("as_of=") {
            continue;
        }
        let Ok(files) = std::fs::read_dir(p.path()) else {
            continue;
        };
        for f in files.flatten() {
            let file = f.file_name().to_string_lossy().to_string();
            if file.ends_with(".parquet") {
                out.push(format!("{name}/{file}"));
            }
        }
    }
    out
}
