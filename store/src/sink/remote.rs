//! Publishing protocol on an object store (no renames there): a journal naming every key this
//! run will upload is written first (`_journal/<run_id>.json`), then every data file is uploaded
//! under a fresh run-scoped name (`part-<run_id>.parquet`, multipart above 8 MiB), then the
//! manifest is written with a conditional put (create if absent, else update only if its ETag is
//! unchanged), then the files it replaced are deleted, then the journal. A failure before the
//! manifest deletes what this run uploaded (best effort) and leaves the previous files and
//! manifest as they were. A run killed outright leaves its journal: the next run, once it holds
//! the lock, deletes that run's uploads (no manifest names them) or, when its manifest was
//! written, the files it replaced (`recover`), so no data file is left outside every manifest.

use std::io::Read;
use std::sync::Arc;

use object_store::path::Path as ObjPath;
use object_store::{
    ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion, WriteMultipart,
};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::storage::{block_on, Remote, StorageError};

use super::manifest::{self, FileEntry, Manifest, TableEntry};
use super::parquet::{write, FileMeta};
use super::{PublishOptions, SinkError, TableData};

/// Folder of the publish journals under the output root.
const JOURNALS: &str = "_journal";

/// What a publish uploads, written before its first upload.
#[derive(Debug, Serialize, Deserialize)]
struct Journal {
    run_id: String,
    as_of: String,
    /// Keys relative to the output root of every file the run uploads.
    files: Vec<String>,
    /// Partition prefixes relative to the output root (`customers/as_of=D`), the retired ones
    /// included: the files there that the run's manifest does not list go once it is written.
    partitions: Vec<String>,
}

fn journal_key(remote: &Remote, run_id: &str) -> ObjPath {
    remote.child(&format!("{JOURNALS}/{run_id}.json"))
}

fn delete(remote: &Remote, key: &ObjPath) -> Result<(), object_store::Error> {
    let store = Arc::clone(&remote.store);
    let k = key.clone();
    match block_on(async move { store.delete(&k).await }) {
        Err(object_store::Error::NotFound { .. }) => Ok(()),
        other => other,
    }
}

/// Called by `lock::acquire` with the lock held: finishes the publishes that runs killed
/// outright left half done, from their journals. A run whose manifest was written had only its
/// replaced files left to delete; any other run's uploads are deleted (no manifest lists them).
pub fn recover(remote: &Remote) -> Result<(), SinkError> {
    let prefix = remote.child(JOURNALS);
    for meta in remote.list(&prefix)? {
        let key = meta.location;
        let Some(bytes) = remote.get(&key)? else {
            continue;
        };
        let j: Journal = serde_json::from_slice(&bytes).map_err(|e| SinkError::Parquet {
            path: remote.url(&key),
            message: format!("unreadable publish journal ({e}); delete it and rerun"),
        })?;
        let manifest_key = remote.child(&format!(
            "{}/{}",
            manifest::DIR,
            manifest::file_name(&j.as_of)
        ));
        let current = match remote.get(&manifest_key)? {
            Some(b) => Some(manifest::parse(&b, &remote.url(&manifest_key))?),
            None => None,
        };
        match current {
            Some(m) if m.run_id == j.run_id => {
                let listed: Vec<ObjPath> = m
                    .tables
                    .values()
                    .flat_map(|t| t.files.iter().map(|f| remote.child(&f.path)))
                    .collect();
                remove_unlisted(remote, &j.partitions, &listed);
                warn!(run_id = %j.run_id, as_of = %j.as_of, "Completed the publish of a run killed after writing its manifest.");
            }
            _ => {
                for f in &j.files {
                    let k = remote.child(f);
                    delete(remote, &k)
                        .map_err(|e| SinkError::Storage(remote.op_err(&k, "delete", e)))?;
                }
                warn!(run_id = %j.run_id, as_of = %j.as_of, files = j.files.len(), "Deleted the uploads of a run killed before writing its manifest.");
            }
        }
        delete(remote, &key).map_err(|e| SinkError::Storage(remote.op_err(&key, "delete", e)))?;
    }
    // Files the tasks of a spread run staged (`sink::spread`) whose driver did not finish.
    let staged = remote.list(&remote.child(super::publish::STAGING))?;
    if !staged.is_empty() {
        for meta in &staged {
            delete(remote, &meta.location)
                .map_err(|e| SinkError::Storage(remote.op_err(&meta.location, "delete", e)))?;
        }
        warn!(
            files = staged.len(),
            "Deleted the files staged by the tasks of a run that did not finish."
        );
    }
    Ok(())
}

/// Deletes the files under `partitions` that are not in `listed` (warnings on failure).
fn remove_unlisted(remote: &Remote, partitions: &[String], listed: &[ObjPath]) {
    for partition in partitions {
        let prefix = remote.child(partition);
        let found = match remote.list(&prefix) {
            Ok(l) => l,
            Err(e) => {
                warn!(error = %e, "Could not list a partition to remove replaced files.");
                continue;
            }
        };
        for m in found.into_iter().filter(|m| !listed.contains(&m.location)) {
            if let Err(e) = delete(remote, &m.location) {
                warn!(url = %remote.url(&m.location), error = %crate::storage::store_message(&e), "Could not delete a replaced file; the next run removes it.");
            }
        }
    }
}

/// Files above this size are sent as multipart uploads of this part size.
const PART: usize = 8 << 20;

/// Data files uploaded, manifest not yet written.
#[derive(Debug)]
pub struct Uploaded {
    remote: Remote,
    run_id: String,
    as_of: String,
    uploaded: Vec<ObjPath>,
    pub tables: Vec<(String, TableEntry)>,
    /// Partitions of tables this run retires: emptied once the manifest is written.
    retired: Vec<String>,
    /// Delta tables: replaced files stay for the readers of older versions (the Delta publish
    /// vacuums them after the retention).
    keep_replaced: bool,
}

fn storage(remote: &Remote, path: &ObjPath, op: &'static str, e: object_store::Error) -> SinkError {
    SinkError::Storage(remote.op_err(path, op, e))
}

/// Where a data file comes from: a local file, or a key of the output's store.
enum From {
    Local(std::path::PathBuf),
    Stored(ObjPath),
}

/// A file to upload: (its source, its number among a table's several files, rows, bytes).
type ToUpload = (From, Option<usize>, u64, u64);

/// Writes each table to a local temporary file and uploads it.
pub fn upload(
    remote: &Remote,
    opts: &PublishOptions<'_>,
    tables: &[(crate::schema::Table, TableData<'_>)],
    retired: &[crate::schema::Table],
) -> Result<Uploaded, SinkError> {
    let tmp = tempfile::tempdir().map_err(|e| super::io(&std::env::temp_dir(), e))?;
    let mut up = Uploaded {
        remote: remote.clone(),
        run_id: opts.run_id.to_string(),
        as_of: opts.as_of.to_string(),
        uploaded: Vec::new(),
        tables: Vec::new(),
        retired: retired
            .iter()
            .map(|name| format!("{name}/as_of={}", opts.as_of))
            .collect(),
        keep_replaced: opts.delta.is_some(),
    };
    let partition = format!("as_of={}", opts.as_of);
    let journal = Journal {
        run_id: opts.run_id.to_string(),
        as_of: opts.as_of.to_string(),
        files: tables
            .iter()
            .flat_map(|(name, data)| {
                let numbers: Vec<Option<usize>> = match data {
                    TableData::Batch(_) => vec![None],
                    TableData::Files(parts) | TableData::InOutput(parts) => {
                        (0..parts.len()).map(Some).collect()
                    }
                };
                let partition = &partition;
                numbers.into_iter().map(move |n| {
                    format!("{name}/{partition}/{}", super::file_name(opts.run_id, n))
                })
            })
            .collect(),
        // With Delta tables nothing is removed after the manifest, so recovery has nothing
        // to remove either.
        partitions: tables
            .iter()
            .map(|(name, _)| format!("{name}/{partition}"))
            .chain(up.retired.iter().cloned())
            .filter(|_| !up.keep_replaced)
            .collect(),
    };
    let jkey = journal_key(remote, opts.run_id);
    let body = serde_json::to_vec(&journal).map_err(|e| SinkError::Parquet {
        path: remote.url(&jkey),
        message: e.to_string(),
    })?;
    let store = Arc::clone(&remote.store);
    let k = jkey.clone();
    block_on(async move { store.put(&k, PutPayload::from(body)).await })
        .map_err(|e| storage(remote, &jkey, "put (journal)", e))?;
    for (name, data) in tables {
        crate::testhook::hold(&format!("publish:uploaded:{}", up.uploaded.len()));
        let files: Result<Vec<ToUpload>, SinkError> = match data {
            TableData::Batch(batch) => {
                let local = tmp.path().join(format!("{name}.parquet"));
                write(&local, batch, &FileMeta::for_table(*name, opts))
                    .map(|bytes| vec![(From::Local(local), None, batch.num_rows() as u64, bytes)])
            }
            TableData::Files(parts) => Ok(parts
                .iter()
                .enumerate()
                .map(|(i, p)| (From::Local(p.path.clone()), Some(i), p.rows, p.bytes))
                .collect()),
            TableData::InOutput(parts) => Ok(parts
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let key = remote.child(&p.path.to_string_lossy());
                    (From::Stored(key), Some(i), p.rows, p.bytes)
                })
                .collect()),
        };
        let mut entry = TableEntry {
            partition: format!("{name}/{partition}"),
            rows: 0,
            files: Vec::new(),
            run_id: None,
        };
        let result = files.and_then(|files| {
            for (from, number, rows, bytes) in files {
                let rel = format!(
                    "{name}/{partition}/{}",
                    super::file_name(opts.run_id, number)
                );
                let key = remote.child(&rel);
                match from {
                    From::Local(local) => upload_file(remote, &local, &key, bytes)?,
                    From::Stored(at) => {
                        let store = Arc::clone(&remote.store);
                        let (a, k) = (at.clone(), key.clone());
                        block_on(async move { store.copy(&a, &k).await })
                            .map_err(|e| storage(remote, &at, "copy", e))?;
                    }
                }
                up.uploaded.push(key);
                entry.rows += rows;
                entry.files.push(FileEntry {
                    path: rel,
                    rows,
                    bytes,
                });
            }
            Ok(())
        });
        if let Err(e) = result {
            up.cleanup();
            return Err(e);
        }
        up.tables.push((name.to_string(), entry));
    }
    info!(tables = up.tables.len(), output = %remote.display, "Uploaded data files.");
    Ok(up)
}

/// Uploads one local file: a single put when small, multipart (aborted on failure) when large.
pub(super) fn upload_file(
    remote: &Remote,
    local: &std::path::Path,
    key: &ObjPath,
    size: u64,
) -> Result<(), SinkError> {
    let store = Arc::clone(&remote.store);
    if size as usize <= PART {
        let data = std::fs::read(local).map_err(|e| super::io(local, e))?;
        let k = key.clone();
        return block_on(async move { store.put(&k, PutPayload::from(data)).await })
            .map(|_| ())
            .map_err(|e| storage(remote, key, "put", e));
    }
    let mut file = std::fs::File::open(local).map_err(|e| super::io(local, e))?;
    let k = key.clone();
    // WriteMultipart spawns its part uploads, so it runs inside the I/O runtime.
    let result: Result<(), Result<object_store::Error, std::io::Error>> = block_on(async move {
        let upload = store.put_multipart(&k).await.map_err(Ok)?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART);
        let mut buf = vec![0u8; PART];
        loop {
            let n = match file.read(&mut buf) {
                Ok(n) => n,
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(Err(e));
                }
            };
            if n == 0 {
                break;
            }
            // Back-pressure: at most two parts in flight.
            writer.wait_for_capacity(2).await.map_err(Ok)?;
            writer.write(&buf[..n]);
        }
        writer.finish().await.map(|_| ()).map_err(Ok)
    });
    match result {
        Ok(()) => Ok(()),
        Err(Ok(e)) => Err(storage(remote, key, "multipart upload", e)),
        Err(Err(e)) => Err(super::io(local, e)),
    }
}

impl Uploaded {
    /// Writes the manifest conditionally, then deletes the replaced files. Returns the manifest URL.
    pub fn finish(self, manifest: &Manifest) -> Result<String, SinkError> {
        let key = self.remote.child(&format!(
            "{}/{}",
            manifest::DIR,
            manifest::file_name(&self.as_of)
        ));
        let url = self.remote.url(&key);
        let body = match serde_json::to_vec_pretty(manifest) {
            Ok(b) => b,
            Err(e) => {
                self.cleanup();
                return Err(SinkError::Parquet {
                    path: url,
                    message: e.to_string(),
                });
            }
        };
        if let Err(e) = self.put_manifest(&key, body) {
            self.cleanup();
            return Err(e);
        }
        info!(manifest = %url, "Manifest written.");
        crate::testhook::hold("publish:manifest");
        self.remove_replaced();
        self.remove_journal();
        Ok(url)
    }

    /// Deletes this run's journal once its publish is finished or undone (a failure leaves it
    /// for the next run to act on, which does the same).
    fn remove_journal(&self) {
        let key = journal_key(&self.remote, &self.run_id);
        if let Err(e) = delete(&self.remote, &key) {
            warn!(url = %self.remote.url(&key), error = %crate::storage::store_message(&e), "Could not delete the publish journal; the next run does.");
        }
    }

    fn put_manifest(&self, key: &ObjPath, body: Vec<u8>) -> Result<(), SinkError> {
        let store = Arc::clone(&self.remote.store);
        let k = key.clone();
        let mode = match block_on(async move { store.head(&k).await }) {
            Ok(meta) => PutMode::Update(UpdateVersion {
                e_tag: meta.e_tag,
                version: meta.version,
            }),
            Err(object_store::Error::NotFound { .. }) => PutMode::Create,
            Err(e) => return Err(storage(&self.remote, key, "head", e)),
        };
        let put = |mode: PutMode, body: Vec<u8>| {
            let store = Arc::clone(&self.remote.store);
            let k = key.clone();
            block_on(async move {
                store
                    .put_opts(
                        &k,
                        PutPayload::from(body),
                        PutOptions {
                            mode,
                            ..Default::default()
                        },
                    )
                    .await
            })
        };
        match put(mode, body.clone()) {
            Ok(_) => Ok(()),
            Err(object_store::Error::NotImplemented { .. })
            | Err(object_store::Error::NotSupported { .. }) => {
                warn!(manifest = %self.remote.url(key), "Store has no conditional put; overwriting the manifest.");
                put(PutMode::Overwrite, body)
                    .map(|_| ())
                    .map_err(|e| storage(&self.remote, key, "put", e))
            }
            Err(object_store::Error::Precondition { .. })
            | Err(object_store::Error::AlreadyExists { .. }) => Err(SinkError::Storage(StorageError::Op {
                url: self.remote.url(key),
                op: "conditional put",
                message: "the manifest was changed by another run while this one was publishing; rerun".into(),
            })),
            Err(e) => Err(storage(&self.remote, key, "put", e)),
        }
    }

    /// Deletes the files of each partition that the new manifest does not list, and the files
    /// of the retired partitions.
    fn remove_replaced(&self) {
        if self.keep_replaced {
            return;
        }
        let partitions: Vec<String> = self
            .tables
            .iter()
            .map(|(_, e)| e.partition.clone())
            .chain(self.retired.iter().cloned())
            .collect();
        remove_unlisted(&self.remote, &partitions, &self.uploaded);
    }

    /// Deletes this run's uploads and journal: the run does not publish after all.
    pub fn abandon(self) {
        self.cleanup();
    }

    /// Deletes this run's uploads (best effort) after a failure, then its journal.
    fn cleanup(&self) {
        let mut left = false;
        for key in &self.uploaded {
            if let Err(e) = delete(&self.remote, key) {
                left = true;
                warn!(url = %self.remote.url(key), error = %crate::storage::store_message(&e), "Could not delete an uploaded file of the failed run; it is not in any manifest.");
            }
        }
        if !left {
            self.remove_journal();
        }
    }
}
