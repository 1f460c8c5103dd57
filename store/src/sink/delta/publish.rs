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

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use object_store::ObjectStoreExt;
use serde_json::{json, Map, Value};
use tracing::{info, warn};

use super::{commit_partition, partition_files, snapshot_files, DeltaFile, SnapshotFiles};
use crate::schema::Table;
use crate::sink::manifest::Manifest;
use crate::sink::{DeltaSettings, SinkError};
use crate::storage::{block_on, Location};

/// Commits every table's partition of the manifest's date, then per table the dates other
/// manifests publish that its log lacks (see [`heal`]) and the vacuum, both from one snapshot.
pub fn commit_date(
    output: &Location,
    settings: &DeltaSettings,
    manifest: &Manifest,
) -> Result<(), SinkError> {
    let now_ms = chrono::Utc::now().timestamp_millis();
    for table in Table::ALL {
        commit_table(output, settings, manifest, table, now_ms)?;
    }
    let dates = manifest_dates(output)?;
    let mut manifests = HashMap::new();
    for table in Table::ALL {
        let root = output.child(table.name());
        let snapshot = snapshot_files(&root)?.unwrap_or_default();
        let healed = heal(
            output,
            settings,
            table,
            &snapshot,
            &dates,
            &mut manifests,
            now_ms,
        )?;
        let before_ms = now_ms - settings.retention_hours as i64 * 3_600_000;
        vacuum(&root, &snapshot, &healed, before_ms);
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
                    path: relative(table, &f.path),
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
/// (or while the table was left out): every date in `dates` with a manifest that lists `table`
/// and no file of that date in `snapshot`. A manifest is read only for such a date (once per
/// publish: `manifests` keeps them). Returns the files it added (relative to the table root).
fn heal(
    output: &Location,
    settings: &DeltaSettings,
    table: Table,
    snapshot: &SnapshotFiles,
    dates: &[String],
    manifests: &mut HashMap<String, Option<Manifest>>,
    now_ms: i64,
) -> Result<HashSet<String>, SinkError> {
    let present: HashSet<&str> = snapshot
        .active
        .iter()
        .filter_map(|p| p.split_once('/'))
        .filter_map(|(dir, _)| dir.strip_prefix("as_of="))
        .collect();
    let mut added = HashSet::new();
    for d in dates.iter().filter(|d| !present.contains(d.as_str())) {
        if !manifests.contains_key(d) {
            manifests.insert(d.clone(), crate::sink::read_manifest(output, d)?);
        }
        let Some(Some(m)) = manifests.get(d) else {
            continue;
        };
        let Some(entry) = m.tables.get(table.name()).filter(|e| !e.files.is_empty()) else {
            continue;
        };
        commit_table(output, settings, m, table, now_ms)?;
        added.extend(entry.files.iter().map(|f| relative(table, &f.path)));
    }
    Ok(added)
}

/// A manifest's file path (relative to the output root) relative to `table`'s root.
fn relative(table: Table, path: &str) -> String {
    let prefix = format!("{}/", table.name());
    path.strip_prefix(&prefix).unwrap_or(path).to_string()
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

/// Deletes the table's data files that a commit removed before `before_ms` and `snapshot` does
/// not list ([`SnapshotFiles::removed_before`]), but for `keep` (files just committed again).
/// Only files the log says it removed: a file no commit ever listed (a Parquet-era file of a
/// date not yet committed, a dead run's upload, which its journal's recovery removes) is left
/// alone, and so is one whose removal a checkpoint no longer keeps (a removal record stays for
/// a week, `delta.deletedFileRetentionDuration`: any publish in that week deletes it). A file
/// that cannot be deleted is logged; the next publish tries again.
fn vacuum(root: &Location, snapshot: &SnapshotFiles, keep: &HashSet<String>, before_ms: i64) {
    let mut deleted = 0;
    for rel in snapshot.removed_before(before_ms) {
        if keep.contains(&rel) {
            continue;
        }
        let result = match root {
            Location::Local(dir) => std::fs::remove_file(dir.join(&rel)).map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    None
                } else {
                    Some(e.to_string())
                }
            }),
            Location::Remote(r) => {
                let store = Arc::clone(&r.store);
                let key = r.child(&rel);
                match block_on(async move { store.delete(&key).await }) {
                    Ok(()) => Ok(()),
                    Err(object_store::Error::NotFound { .. }) => Err(None),
                    Err(e) => Err(Some(crate::storage::store_message(&e))),
                }
            }
        };
        match result {
            Ok(()) => deleted += 1,
            Err(None) => {} // deleted by an earlier publish
            Err(Some(error)) => {
                warn!(table = %root.shown(), file = %rel, %error, "Could not delete a file the Delta table no longer lists.")
            }
        }
    }
    if deleted > 0 {
        info!(table = %root.shown(), files = deleted, "Deleted files the Delta table removed before the retention.");
    }
}
