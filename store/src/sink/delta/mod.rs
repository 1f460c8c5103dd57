//! Delta Lake commits for `[output] format = "delta"`: each table folder `{output}/{table}/` is
//! also a Delta table, its `_delta_log/` next to the `as_of=D/` folders, partitioned by the
//! date column `as_of` (not stored in the data files, as Delta partition columns never are).
//! Once the files of a date are in place, one commit per table replaces the partition
//! (replaceWhere `as_of = 'D'`): a `remove` for every file of that partition in the current
//! snapshot, an `add` for every new file, and `commitInfo` (WRITE, Overwrite, the predicate, and
//! the caller's metadata). The first commit creates the table (protocol 1/2 and `metaData`).
//!
//! The log is written with delta-rs (`deltalake-core`, no DataFusion) over the output's own
//! object store instance (a `LocalFileSystem` for local outputs): commits are put-if-absent
//! (`_delta_log/NNN.json`), so two writers cannot both take a version. A commit that loses the
//! race is rebuilt from the new snapshot and retried a few times. A commit whose files are
//! already exactly the partition's is not made again (a rerun after a crash between the commit
//! and the manifest).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use arrow::datatypes::Schema as ArrowSchema;
use deltalake_core::kernel::engine::arrow_conversion::TryFromArrow;
use deltalake_core::kernel::transaction::{
    CommitBuilder, CommitProperties, TableReference, TransactionError,
};
use deltalake_core::kernel::{
    new_metadata, Action, Add, DataType, MetadataExt, MetadataValue, Protocol, StructField,
    StructType,
};
use deltalake_core::logstore::{default_logstore, LogStoreRef, StorageConfig};
use deltalake_core::protocol::{DeltaOperation, SaveMode};
use deltalake_core::table::state::DeltaTableState;
use deltalake_core::DeltaTableError;
use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjPath;
use object_store::prefix::PrefixStore;
use object_store::ObjectStore;
use url::Url;

use super::SinkError;
use crate::schema::PARTITION_COLUMN;
use crate::storage::{block_on, redact_text, Location, Remote};

/// Attempts at a commit that keeps losing the race for the next version.
const ATTEMPTS: u32 = 5;

/// A data file to add to the partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeltaFile {
    /// Path relative to the table root: `as_of=2024-12-31/part-<run_id>.parquet`.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Rows in the file (the `numRecords` statistic).
    pub rows: u64,
    /// Last modification, milliseconds since the epoch.
    pub modified_ms: i64,
}

/// Commits the partition `as_of` of the Delta table rooted at `table_root` (a local directory or
/// an object-store prefix): removes every file of that partition, adds `files`, with
/// `app_metadata` in the commit's `commitInfo`. `schema` is the data files' Arrow schema (without
/// `as_of`); the first commit creates the table with it, a later commit with another schema
/// replaces the table's schema. Returns the table version holding the partition as asked: the
/// new commit's, or the current one when the partition already is exactly `files`.
pub fn commit_partition(
    table_root: &Location,
    schema: &ArrowSchema,
    as_of: &str,
    files: &[DeltaFile],
    app_metadata: serde_json::Map<String, serde_json::Value>,
) -> Result<i64, SinkError> {
    commit_partition_with(table_root, schema, as_of, files, app_metadata, &mut |_| {})
}

/// The files (paths relative to the table root) of partition `as_of` in the current snapshot,
/// sorted; None when there is no Delta table at `table_root`.
pub fn partition_files(
    table_root: &Location,
    as_of: &str,
) -> Result<Option<Vec<String>>, SinkError> {
    let table = DeltaTable::open(table_root)?;
    let err = table.err();
    let as_of = as_of.to_string();
    block_on(async move {
        let Some(state) = load(&table.log_store).await? else {
            return Ok(None);
        };
        let mut files: Vec<String> = partition(&state, &as_of)
            .into_iter()
            .map(|f| f.path)
            .collect();
        files.sort();
        Ok(Some(files))
    })
    .map_err(err)
}

/// The data files of a table's current snapshot, and the files it removed (its tombstones)
/// with the time they were removed, paths relative to the table root.
#[derive(Debug, Default)]
pub struct SnapshotFiles {
    pub active: HashSet<String>,
    /// Path → deletion timestamp (milliseconds since the epoch; 0 when the log has none).
    pub removed: HashMap<String, i64>,
}

/// The files of the current snapshot of the table at `table_root`; None when there is no table.
/// Tombstones older than the table's `delta.deletedFileRetentionDuration` (a week by default)
/// leave the state at the next checkpoint (every 100 commits).
pub fn snapshot_files(table_root: &Location) -> Result<Option<SnapshotFiles>, SinkError> {
    let table = DeltaTable::open(table_root)?;
    let err = table.err();
    block_on(async move {
        let Some(state) = load(&table.log_store).await? else {
            return Ok(None);
        };
        let active: HashSet<String> = state
            .log_data()
            .iter()
            .map(|f| f.path().into_owned())
            .collect();
        let tombstones: Vec<_> = state
            .all_tombstones(table.log_store.as_ref())
            .try_collect()
            .await?;
        let mut removed = HashMap::new();
        for t in &tombstones {
            let at = t.deletion_timestamp().unwrap_or(0);
            let e = removed.entry(t.path().into_owned()).or_insert(at);
            *e = (*e).max(at);
        }
        Ok(Some(SnapshotFiles { active, removed }))
    })
    .map_err(err)
}

impl SnapshotFiles {
    /// The files removed from the table (its tombstones) before `before_ms` (milliseconds
    /// since the epoch) that no current file shares a path with: what a vacuum deletes.
    pub fn removed_before(&self, before_ms: i64) -> Vec<String> {
        let mut paths: Vec<String> = self
            .removed
            .iter()
            .filter(|(p, &at)| at < before_ms && !self.active.contains(*p))
            .map(|(p, _)| p.clone())
            .collect();
        paths.sort();
        paths
    }
}

/// The files removed from the table before `before_ms` that it no longer lists
/// ([`SnapshotFiles::removed_before`]). Empty when there is no table.
pub fn removed_files(table_root: &Location, before_ms: i64) -> Result<Vec<String>, SinkError> {
    Ok(snapshot_files(table_root)?
        .map(|s| s.removed_before(before_ms))
        .unwrap_or_default())
}

/// The Delta table schema: the data columns (Arrow `description` metadata becomes the Delta
/// column `comment`) and the partition column `as_of` (a date, as the Hive layout's readers
/// type it) last.
pub fn delta_schema(schema: &ArrowSchema) -> Result<StructType, String> {
    let mut fields = Vec::with_capacity(schema.fields().len() + 1);
    for f in schema.fields() {
        if f.name() == PARTITION_COLUMN {
            return Err(format!(
                "the data files may not hold the partition column {PARTITION_COLUMN}"
            ));
        }
        let plain = f.as_ref().clone().with_metadata(HashMap::new());
        let field =
            StructField::try_from_arrow(&plain).map_err(|e| format!("column {}: {e}", f.name()))?;
        let field = match f.metadata().get("description") {
            Some(doc) => field.with_metadata([("comment", MetadataValue::from(doc.as_str()))]),
            None => field,
        };
        fields.push(field);
    }
    fields.push(StructField::new(PARTITION_COLUMN, DataType::DATE, false));
    StructType::try_new(fields).map_err(|e| e.to_string())
}

/// The commit, with `between(attempt)` called after each attempt's snapshot is read and before
/// its commit is written (the tests make a concurrent commit there).
fn commit_partition_with(
    table_root: &Location,
    schema: &ArrowSchema,
    as_of: &str,
    files: &[DeltaFile],
    app_metadata: serde_json::Map<String, serde_json::Value>,
    between: &mut dyn FnMut(u32),
) -> Result<i64, SinkError> {
    let table = DeltaTable::open(table_root)?;
    let err = table.err();
    let delta = delta_schema(schema).map_err(|m| SinkError::Delta {
        path: table.display.clone(),
        message: m,
    })?;
    let app: HashMap<String, serde_json::Value> = app_metadata.into_iter().collect();
    let mut attempt = 1;
    loop {
        let plan = {
            let (ls, delta, as_of, files) = (
                Arc::clone(&table.log_store),
                delta.clone(),
                as_of.to_string(),
                files.to_vec(),
            );
            block_on(async move { plan(&ls, delta, &as_of, &files).await }).map_err(&err)?
        };
        let plan = match plan {
            Plan::Done(version) => return Ok(version),
            Plan::Commit(p) => p,
        };
        between(attempt);
        let (ls, app, as_of) = (Arc::clone(&table.log_store), app.clone(), as_of.to_string());
        match block_on(async move { commit(ls, plan, &as_of, app).await }) {
            Ok(version) => return Ok(version),
            Err(e) if attempt < ATTEMPTS && lost_race(&e) => {
                tracing::info!(table = %table.display, attempt, "Another writer committed to the Delta table first; retrying on its snapshot.");
                attempt += 1;
            }
            Err(e) => return Err(err(e)),
        }
    }
}

/// What a commit has to do, computed from one snapshot.
enum Plan {
    /// The partition already is exactly the files asked for, at this version.
    Done(i64),
    Commit(Pending),
}

struct Pending {
    /// The snapshot the actions were computed from; None for a new table.
    state: Option<DeltaTableState>,
    actions: Vec<Action>,
}

/// The current snapshot; None when there is no table yet.
async fn load(ls: &LogStoreRef) -> Result<Option<DeltaTableState>, DeltaTableError> {
    if !ls.is_delta_table_location().await? {
        return Ok(None);
    }
    Ok(Some(DeltaTableState::try_new(ls.as_ref(), None).await?))
}

/// A file of the snapshot.
struct Active {
    path: String,
    remove: deltalake_core::kernel::Remove,
}

/// The files of partition `as_of` in a snapshot.
fn partition(state: &DeltaTableState, as_of: &str) -> Vec<Active> {
    state
        .log_data()
        .iter()
        .filter(|f| {
            f.partition_values_map()
                .get(PARTITION_COLUMN)
                .is_some_and(|v| v.as_deref() == Some(as_of))
        })
        .map(|f| Active {
            path: f.path().into_owned(),
            remove: f.remove_action(true),
        })
        .collect()
}

async fn plan(
    ls: &LogStoreRef,
    schema: StructType,
    as_of: &str,
    files: &[DeltaFile],
) -> Result<Plan, DeltaTableError> {
    let state = load(ls).await?;
    let mut actions = Vec::new();
    match &state {
        None => {
            // Reader 1 / writer 2: what `timestamp` (UTC), `date`, `long`, `double`, `string`
            // and `boolean` columns and partition columns need; no table features.
            let protocol: Protocol = serde_json::from_value(serde_json::json!({
                "minReaderVersion": 1,
                "minWriterVersion": 2,
            }))?;
            let metadata = new_metadata(&schema, [PARTITION_COLUMN], [("", ""); 0])?;
            actions.push(Action::Protocol(protocol));
            actions.push(Action::Metadata(metadata));
        }
        Some(s) => {
            let columns = s.metadata().partition_columns();
            if columns != [PARTITION_COLUMN] {
                return Err(DeltaTableError::Generic(format!(
                    "the Delta table is partitioned by {columns:?}, not by [\"{PARTITION_COLUMN}\"]"
                )));
            }
            if *s.schema() != schema {
                actions.push(Action::Metadata(s.metadata().clone().with_schema(&schema)?));
            }
        }
    }
    let wanted: HashSet<&str> = files.iter().map(|f| f.path.as_str()).collect();
    let current = state
        .as_ref()
        .map(|s| partition(s, as_of))
        .unwrap_or_default();
    let present: HashSet<String> = current.iter().map(|a| a.path.clone()).collect();
    let removes: Vec<Action> = current
        .into_iter()
        .filter(|a| !wanted.contains(a.path.as_str()))
        .map(|a| Action::Remove(a.remove))
        .collect();
    let adds: Vec<Action> = files
        .iter()
        .filter(|f| !present.contains(&f.path))
        .map(|f| Action::Add(add(f, as_of)))
        .collect();
    if let Some(s) = &state {
        if actions.is_empty() && removes.is_empty() && adds.is_empty() {
            return Ok(Plan::Done(version(s.version())));
        }
    }
    actions.extend(removes);
    actions.extend(adds);
    Ok(Plan::Commit(Pending { state, actions }))
}

fn add(f: &DeltaFile, as_of: &str) -> Add {
    Add {
        path: f.path.clone(),
        partition_values: HashMap::from([(PARTITION_COLUMN.to_string(), Some(as_of.to_string()))]),
        size: i64::try_from(f.size).unwrap_or(i64::MAX),
        modification_time: f.modified_ms,
        data_change: true,
        stats: Some(serde_json::json!({ "numRecords": f.rows }).to_string()),
        ..Default::default()
    }
}

/// Writes the commit; the version it took. Fails when another writer took the next version
/// first (no conflict resolution here: the caller plans again on the new snapshot).
async fn commit(
    ls: LogStoreRef,
    pending: Pending,
    as_of: &str,
    app: HashMap<String, serde_json::Value>,
) -> Result<i64, DeltaTableError> {
    let operation = DeltaOperation::Write {
        mode: SaveMode::Overwrite,
        partition_by: Some(vec![PARTITION_COLUMN.to_string()]),
        predicate: Some(format!(
            "{PARTITION_COLUMN} = '{}'",
            as_of.replace('\'', "''")
        )),
    };
    // Checkpoints every `delta.checkpointInterval` (100) commits; expired log files (30 days)
    // are cleaned up after a checkpoint, as delta-rs does by default.
    let builder = CommitBuilder::from(
        CommitProperties::default()
            .with_max_retries(0)
            .with_metadata(app),
    )
    .with_actions(pending.actions);
    let reference = pending.state.as_ref().map(|s| s as &dyn TableReference);
    let written = builder
        .build(reference, Arc::clone(&ls), operation)
        .into_prepared_commit_future()
        .await?
        .await?;
    let version = version(written.version);
    // The commit is in the log; a failed checkpoint or log cleanup does not undo it.
    if let Err(e) = written.await {
        tracing::warn!(version, error = %redact_text(&e.to_string()), "Delta commit written; its checkpoint or log cleanup failed.");
    }
    Ok(version)
}

/// Whether a commit failed because another writer took the version (retry on a new snapshot).
fn lost_race(e: &DeltaTableError) -> bool {
    matches!(
        e,
        DeltaTableError::VersionAlreadyExists(_)
            | DeltaTableError::Transaction {
                source: TransactionError::MaxCommitAttempts(_)
                    | TransactionError::VersionAlreadyExists(_)
                    | TransactionError::CommitConflict(_),
            }
    )
}

fn version(v: deltalake_core::kernel::Version) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A table root opened for delta-rs.
struct DeltaTable {
    log_store: LogStoreRef,
    /// The table root for messages.
    display: String,
}

impl DeltaTable {
    /// A log store over the output's store: for a local table a `LocalFileSystem` and a
    /// `file://` URL; for an object store the output's own store instance (rooted at its bucket
    /// or container) and a URL whose path is the table's key prefix, which is how delta-rs and
    /// the kernel address objects in that store (`url.path()` → key).
    fn open(root: &Location) -> Result<Self, SinkError> {
        let (root_store, prefixed, url, display): (
            Arc<dyn ObjectStore>,
            Arc<dyn ObjectStore>,
            Url,
            String,
        ) = match root {
            Location::Local(dir) => {
                let display = dir.display().to_string();
                let abs = std::path::absolute(dir).map_err(|e| super::io(dir, e))?;
                let url = Url::from_directory_path(&abs).map_err(|_| SinkError::Delta {
                    path: display.clone(),
                    message: "not an absolute path".into(),
                })?;
                let prefix = local_prefix(&abs, &display)?;
                let root: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new());
                let prefixed: Arc<dyn ObjectStore> =
                    Arc::new(PrefixStore::new(Arc::clone(&root), prefix));
                (root, prefixed, url, display)
            }
            Location::Remote(r) => {
                let display = r.url(&r.path);
                let url = remote_url(r).map_err(|message| SinkError::Delta {
                    path: display.clone(),
                    message,
                })?;
                let prefixed: Arc<dyn ObjectStore> = if r.path.as_ref().is_empty() {
                    Arc::clone(&r.store)
                } else {
                    Arc::new(PrefixStore::new(Arc::clone(&r.store), r.path.clone()))
                };
                (Arc::clone(&r.store), prefixed, url, display)
            }
        };
        Ok(DeltaTable {
            log_store: default_logstore(prefixed, root_store, &url, &StorageConfig::default()),
            display,
        })
    }

    /// Maps delta-rs errors to sink errors naming this table.
    fn err(&self) -> impl Fn(DeltaTableError) -> SinkError {
        let path = self.display.clone();
        move |e| SinkError::Delta {
            path: path.clone(),
            message: redact_text(&e.to_string()),
        }
    }
}

fn local_prefix(abs: &Path, display: &str) -> Result<ObjPath, SinkError> {
    ObjPath::from_absolute_path(abs).map_err(|e| SinkError::Delta {
        path: display.to_string(),
        message: e.to_string(),
    })
}

/// `scheme://host/<key prefix>/` for a table in an object store (no user info: the store is
/// already built, the URL only addresses keys in it).
fn remote_url(r: &Remote) -> Result<Url, String> {
    let base = Url::parse(&r.base).map_err(|e| format!("{}: {e}", r.base))?;
    let host = base.host_str().unwrap_or("store");
    let mut url = Url::parse(&format!("{}://{host}/", base.scheme()))
        .map_err(|e| format!("{}: {e}", r.base))?;
    {
        let mut segments = url
            .path_segments_mut()
            .map_err(|_| format!("{}: not a hierarchical URL", r.base))?;
        segments.clear();
        for part in r.path.parts() {
            segments.push(part.as_ref());
        }
        segments.push("");
    }
    Ok(url)
}

pub mod publish;

#[cfg(test)]
mod tests;
