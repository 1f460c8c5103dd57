//! Files a spread run's tasks write before its driver publishes them (a Spark job's customers
//! table): under `{output}/_staging/{run_id}.tasks/{table}/as_of=D/`, where readers never look,
//! each named by its task attempt, so a retried or speculative attempt never overwrites
//! another's file. The driver publishes the files of the attempts that succeeded
//! ([`TableData::InOutput`](super::TableData::InOutput)) and then deletes the folder, the
//! other attempts' files with it. A driver killed before that leaves the folder to the next
//! run, which deletes it once it holds the lock (`publish::recover`, `remote::recover`).

use std::sync::Arc;

use arrow::array::RecordBatch;
use object_store::ObjectStoreExt;

use super::parquet::{write, FileMeta};
use super::{PartFile, PublishOptions, SinkError};
use crate::schema::Table;
use crate::storage::{block_on, Location};

/// The run's task staging folder, relative to the output root.
pub fn folder(run_id: &str) -> String {
    format!("{}/{run_id}.tasks", super::publish::STAGING)
}

/// Writes `batch` as the Parquet file `name` of `table`'s partition of `opts.as_of` in the
/// run's task staging folder. Returns the file, its path relative to the output root.
pub fn stage_part(
    output: &Location,
    opts: &PublishOptions<'_>,
    table: Table,
    batch: &RecordBatch,
    name: &str,
) -> Result<PartFile, SinkError> {
    let rel = format!(
        "{}/{table}/as_of={}/{name}",
        folder(opts.run_id),
        opts.as_of
    );
    let meta = FileMeta::for_table(table, opts);
    let bytes = match output {
        Location::Local(root) => {
            let path = root.join(&rel);
            let dir = path.parent().unwrap_or(root);
            std::fs::create_dir_all(dir).map_err(|e| super::io(dir, e))?;
            write(&path, batch, &meta)?
        }
        Location::Remote(remote) => {
            let tmp = tempfile::tempdir().map_err(|e| super::io(&std::env::temp_dir(), e))?;
            let local = tmp.path().join(name);
            let bytes = write(&local, batch, &meta)?;
            super::remote::upload_file(remote, &local, &remote.child(&rel), bytes)?;
            bytes
        }
    };
    Ok(PartFile {
        path: rel.into(),
        rows: batch.num_rows() as u64,
        bytes,
    })
}

/// Deletes the run's task staging folder (after its publish, or when it failed).
pub fn discard(output: &Location, run_id: &str) -> Result<(), SinkError> {
    match output {
        Location::Local(root) => {
            let dir = root.join(folder(run_id));
            match std::fs::remove_dir_all(&dir) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(super::io(&dir, e)),
                _ => {
                    // `_staging/` itself once no publish uses it.
                    let _ = std::fs::remove_dir(root.join(super::publish::STAGING));
                    Ok(())
                }
            }
        }
        Location::Remote(remote) => {
            let prefix = remote.child(&folder(run_id));
            for meta in remote.list(&prefix)? {
                let store = Arc::clone(&remote.store);
                let key = meta.location.clone();
                match block_on(async move { store.delete(&key).await }) {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => {
                        return Err(SinkError::Storage(remote.op_err(
                            &meta.location,
                            "delete",
                            e,
                        )))
                    }
                }
            }
            Ok(())
        }
    }
}
