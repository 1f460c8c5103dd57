//! Publishing protocol on local disk. Files are written under `{output}/_staging/{run_id}/`
//! (readers skip `_`-prefixed folders), then each table's staged partition folder is swapped
//! with the live `{table}/as_of=D` folder by an atomic `renameat2(RENAME_EXCHANGE)` (plain
//! rename when the partition is new), then the manifest is written, then the replaced folders
//! are deleted. A failure before the manifest swaps every table back, so readers see either the
//! old partition set or the new one, never a half-written folder.

use std::path::{Path, PathBuf};

use tracing::{info, warn};

use super::manifest::{FileEntry, TableEntry};
use super::parquet::{write, FileMeta};
use super::{PublishOptions, SinkError, TableData};

/// Folder under the output root where runs stage their partitions.
const STAGING: &str = "_staging";

/// Removes what runs killed outright (SIGKILL, a crash) left in `{root}/_staging/`. Called by
/// `lock::acquire` with the lock held, so no other run can be writing there; readers never look
/// there. (A run stopped by a signal removes its own, see `signals`.)
pub(crate) fn sweep_staging(root: &Path) {
    let staging = root.join(STAGING);
    let Ok(entries) = std::fs::read_dir(&staging) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        match std::fs::remove_dir_all(&path) {
            Ok(()) => {
                warn!(path = %path.display(), "Removed the staging folder of a run that did not finish.")
            }
            Err(e) => {
                warn!(path = %path.display(), error = %e, "Could not remove a leftover staging folder.")
            }
        }
    }
    let _ = std::fs::remove_dir(&staging);
}

/// A publish in progress: tables swapped in, manifest not yet written.
#[derive(Debug)]
pub struct Published {
    staging: PathBuf,
    /// Lists `staging` for removal if the run is stopped, until committed or rolled back.
    _on_stop: crate::signals::RemoveOnStop,
    /// Held from the first swap until committed or rolled back: a signal waits for it.
    critical: Option<crate::signals::Critical>,
    /// (live partition, staged folder that now holds the old one, whether an old one existed).
    swapped: Vec<(PathBuf, PathBuf, bool)>,
    pub tables: Vec<(String, TableEntry)>,
}

/// Writes all tables to staging and swaps them into place. Call [`Published::commit`] after the
/// manifest is written, or [`Published::rollback`] if it could not be.
pub fn publish(
    root: &Path,
    opts: &PublishOptions<'_>,
    tables: &[(&'static str, TableData<'_>)],
) -> Result<Published, SinkError> {
    let staging = root.join(STAGING).join(opts.run_id);
    let on_stop = crate::signals::create_staging(&staging).map_err(|e| super::io(&staging, e))?;
    let mut published = Published {
        staging: staging.clone(),
        _on_stop: on_stop,
        critical: None,
        swapped: Vec::new(),
        tables: Vec::new(),
    };
    let partition = format!("as_of={}", opts.as_of);
    let mut staged = Vec::new();
    for (name, data) in tables {
        let dir = staging.join(name).join(&partition);
        let entry = |file: String, rows: u64, bytes: u64| FileEntry {
            path: format!("{name}/{partition}/{file}"),
            rows,
            bytes,
        };
        let result = crate::signals::create_in_staging(&dir)
            .map_err(|e| super::io(&dir, e))
            .and_then(|_| match data {
                TableData::Batch(batch) => {
                    let file = super::file_name(opts.run_id, None);
                    let bytes = write(&dir.join(&file), batch, &FileMeta::for_table(name, opts))?;
                    Ok(vec![entry(file, batch.num_rows() as u64, bytes)])
                }
                TableData::Files(parts) => parts
                    .iter()
                    .enumerate()
                    .map(|(i, part)| {
                        let file = super::file_name(opts.run_id, Some(i));
                        move_file(&part.path, &dir.join(&file))?;
                        Ok(entry(file, part.rows, part.bytes))
                    })
                    .collect(),
            });
        match result {
            Ok(files) => {
                staged.push((name.to_string(), dir));
                published.tables.push((
                    name.to_string(),
                    TableEntry {
                        partition: format!("{name}/{partition}"),
                        rows: files.iter().map(|f| f.rows).sum(),
                        files,
                        run_id: None,
                    },
                ));
            }
            Err(e) => {
                published.rollback();
                return Err(e);
            }
        }
    }
    published.critical = Some(crate::signals::critical());
    for (name, dir) in staged {
        let parent = root.join(&name);
        let live = parent.join(&partition);
        let result = std::fs::create_dir_all(&parent)
            .map_err(|e| super::io(&parent, e))
            .and_then(|_| swap_in(&dir, &live));
        match result {
            Ok(existed) => published.swapped.push((live, dir, existed)),
            Err(e) => {
                published.rollback();
                return Err(e);
            }
        }
    }
    info!(tables = published.tables.len(), partition = %partition, "Swapped partitions into place.");
    Ok(published)
}

impl Published {
    /// Deletes the replaced partitions and the staging folder.
    pub fn commit(self) {
        if let Err(e) = std::fs::remove_dir_all(&self.staging) {
            warn!(path = %self.staging.display(), error = %e, "Could not remove the staging folder.");
        }
        remove_if_empty(self.staging.parent());
    }

    /// Puts every swapped table back as it was, then deletes the staging folder.
    pub fn rollback(mut self) {
        for (live, staged, existed) in self.swapped.drain(..).rev() {
            let result = if existed {
                exchange(&staged, &live).map(|_| ())
            } else {
                std::fs::rename(&live, &staged)
            };
            if let Err(e) = result {
                warn!(path = %live.display(), error = %e, "Could not restore the previous partition.");
            }
        }
        let _ = std::fs::remove_dir_all(&self.staging);
        remove_if_empty(self.staging.parent());
    }
}

/// Removes `_staging/` once no run uses it (fails harmlessly when another run's folder is there).
fn remove_if_empty(dir: Option<&Path>) {
    if let Some(d) = dir {
        let _ = std::fs::remove_dir(d);
    }
}

/// Moves a file written ahead into staging: a rename, or a copy when the spill folder is on
/// another filesystem.
fn move_file(from: &Path, to: &Path) -> Result<(), SinkError> {
    if std::fs::rename(from, to).is_ok() {
        return Ok(());
    }
    std::fs::copy(from, to).map_err(|e| super::io(to, e))?;
    std::fs::File::open(to)
        .and_then(|f| f.sync_all())
        .map_err(|e| super::io(to, e))?;
    let _ = std::fs::remove_file(from);
    Ok(())
}

/// Moves `staged` to `live`; if `live` exists the two are exchanged atomically (the old
/// partition ends up at `staged`). Returns whether an old partition existed.
fn swap_in(staged: &Path, live: &Path) -> Result<bool, SinkError> {
    if live.exists() {
        exchange(staged, live).map_err(|e| super::io(live, e))?;
        Ok(true)
    } else {
        std::fs::rename(staged, live).map_err(|e| super::io(live, e))?;
        Ok(false)
    }
}

/// Atomically exchanges two paths (Linux `renameat2(RENAME_EXCHANGE)`); where the filesystem
/// cannot, falls back to two renames (the partition is briefly absent, never half-written).
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        let ca = CString::new(a.as_os_str().as_bytes())?;
        let cb = CString::new(b.as_os_str().as_bytes())?;
        // SAFETY: both are valid NUL-terminated paths; AT_FDCWD makes them relative to the cwd.
        let rc = unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                ca.as_ptr(),
                libc::AT_FDCWD,
                cb.as_ptr(),
                libc::RENAME_EXCHANGE,
            )
        };
        if rc == 0 {
            return Ok(());
        }
        let err = std::io::Error::last_os_error();
        if !matches!(err.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOSYS)) {
            return Err(err);
        }
    }
    let tmp = a.with_extension("swap");
    std::fs::rename(b, &tmp)?;
    std::fs::rename(a, b)?;
    std::fs::rename(&tmp, a)
}
