//! Publishing protocol on an object store (no renames there): every data file is uploaded under a
//! fresh run-scoped name (`part-<run_id>.parquet`, multipart above 8 MiB), then the manifest is
//! written with a conditional put (create if absent, else update only if its ETag is unchanged),
//! then the files it replaced are deleted. A failure before the manifest deletes what this run
//! uploaded (best effort) and leaves the previous files and manifest as they were.

use std::io::Read;
use std::sync::Arc;

use object_store::path::Path as ObjPath;
use object_store::{
    ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion, WriteMultipart,
};
use tracing::{info, warn};

use crate::storage::{block_on, Remote, StorageError};

use super::manifest::{self, FileEntry, Manifest, TableEntry};
use super::parquet::{write, FileMeta};
use super::{PublishOptions, SinkError, TableData};

/// Files above this size are sent as multipart uploads of this part size.
const PART: usize = 8 << 20;

/// Data files uploaded, manifest not yet written.
#[derive(Debug)]
pub struct Uploaded {
    remote: Remote,
    as_of: String,
    uploaded: Vec<ObjPath>,
    pub tables: Vec<(String, TableEntry)>,
    /// Held from the first upload until the manifest is written and the replaced files are
    /// deleted (or this run's uploads are): a signal waits for it, so a stopped run leaves no
    /// files of its own beside the published ones.
    _critical: crate::signals::Critical,
}

fn storage(remote: &Remote, path: &ObjPath, op: &'static str, e: object_store::Error) -> SinkError {
    SinkError::Storage(remote.op_err(path, op, e))
}

/// A local file to upload: (path, its number among a table's several files, rows, bytes).
type ToUpload = (std::path::PathBuf, Option<usize>, u64, u64);

/// Writes each table to a local temporary file and uploads it.
pub fn upload(
    remote: &Remote,
    opts: &PublishOptions<'_>,
    tables: &[(&'static str, TableData<'_>)],
) -> Result<Uploaded, SinkError> {
    let tmp = tempfile::tempdir().map_err(|e| super::io(&std::env::temp_dir(), e))?;
    let mut up = Uploaded {
        remote: remote.clone(),
        as_of: opts.as_of.to_string(),
        uploaded: Vec::new(),
        tables: Vec::new(),
        _critical: crate::signals::critical(),
    };
    let partition = format!("as_of={}", opts.as_of);
    for (name, data) in tables {
        let files: Result<Vec<ToUpload>, SinkError> = match data {
            TableData::Batch(batch) => {
                let local = tmp.path().join(format!("{name}.parquet"));
                write(&local, batch, &FileMeta::for_table(name, opts))
                    .map(|bytes| vec![(local, None, batch.num_rows() as u64, bytes)])
            }
            TableData::Files(parts) => Ok(parts
                .iter()
                .enumerate()
                .map(|(i, p)| (p.path.clone(), Some(i), p.rows, p.bytes))
                .collect()),
        };
        let mut entry = TableEntry {
            partition: format!("{name}/{partition}"),
            rows: 0,
            files: Vec::new(),
            run_id: None,
        };
        let result = files.and_then(|files| {
            for (local, number, rows, bytes) in files {
                let rel = format!(
                    "{name}/{partition}/{}",
                    super::file_name(opts.run_id, number)
                );
                let key = remote.child(&rel);
                upload_file(remote, &local, &key, bytes)?;
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
fn upload_file(
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
        self.remove_replaced();
        Ok(url)
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

    /// Deletes the files of each partition that the new manifest does not list.
    fn remove_replaced(&self) {
        for (_, entry) in &self.tables {
            let prefix = self.remote.child(&entry.partition);
            let listed = match self.remote.list(&prefix) {
                Ok(l) => l,
                Err(e) => {
                    warn!(error = %e, "Could not list a partition to remove replaced files.");
                    continue;
                }
            };
            for m in listed
                .into_iter()
                .filter(|m| !self.uploaded.contains(&m.location))
            {
                let store = Arc::clone(&self.remote.store);
                let loc = m.location.clone();
                if let Err(e) = block_on(async move { store.delete(&loc).await }) {
                    warn!(url = %self.remote.url(&m.location), error = %crate::storage::store_message(&e), "Could not delete a replaced file; the next run removes it.");
                }
            }
        }
    }

    /// Deletes this run's uploads (best effort) after a failure.
    fn cleanup(&self) {
        for key in &self.uploaded {
            let store = Arc::clone(&self.remote.store);
            let k = key.clone();
            if let Err(e) = block_on(async move { store.delete(&k).await }) {
                warn!(url = %self.remote.url(key), error = %crate::storage::store_message(&e), "Could not delete an uploaded file of the failed run; it is not in any manifest.");
            }
        }
    }
}
