//! Publishing protocol on local disk. Files are written under `{output}/_staging/{run_id}/`
//! (readers skip `_`-prefixed folders), then a journal naming the run, the date and the tables is
//! written there, then each table's staged partition folder is swapped with the live
//! `{table}/as_of=D` folder by an atomic `renameat2(RENAME_EXCHANGE)` (plain rename when the
//! partition is new), a retired table's partition (one the run has no rows for) is moved into
//! staging, then the manifest is written, then the replaced folders are deleted. A
//! failure before the manifest swaps every table back, so readers see either the old partition
//! set or the new one, never a half-written folder. A process killed between the first swap and
//! the manifest (SIGKILL, a second SIGTERM, a crash) leaves its journal: the next run, once it
//! holds the lock, rolls that publish back (or forward, when its manifest was written) before it
//! removes any staging folder (`recover`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::manifest::{self, FileEntry, TableEntry};
use super::parquet::{write, FileMeta};
use super::{PublishOptions, SinkError, TableData};

/// Folder under the output root where runs stage their partitions.
pub(super) const STAGING: &str = "_staging";

/// File in a run's staging folder naming what it is swapping in.
const JOURNAL: &str = "journal.json";

/// What a publish swaps in, written before its first swap.
#[derive(Debug, Serialize, Deserialize)]
struct Journal {
    run_id: String,
    as_of: String,
    /// Partition folders relative to the output root (`customers/as_of=D`); the staged one is
    /// the same path under the run's staging folder.
    partitions: Vec<String>,
    /// Partition folders the run takes out (tables it retires), moved to the same path under
    /// its staging folder.
    #[serde(default)]
    retired: Vec<String>,
}

/// Called by `lock::acquire` with the lock held, so no other run can be writing: finishes or
/// undoes the publishes that runs killed outright left half done (their journals), then removes
/// every staging folder left behind (readers never look there).
pub fn recover(root: &Path) -> Result<(), SinkError> {
    let staging = root.join(STAGING);
    let Ok(entries) = std::fs::read_dir(&staging) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let journal = path.join(JOURNAL);
        match std::fs::read(&journal) {
            Ok(bytes) => {
                let j: Journal =
                    serde_json::from_slice(&bytes).map_err(|e| SinkError::Parquet {
                        path: journal.display().to_string(),
                        message: format!(
                            "unreadable publish journal ({e}); move its folder away and rerun"
                        ),
                    })?;
                finish_interrupted(root, &path, &j)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(super::io(&journal, e)),
        }
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
    Ok(())
}

/// Whether a live partition folder holds the files of run `run_id`.
fn holds_run(dir: &Path, run_id: &str) -> bool {
    let prefix = format!("part-{run_id}");
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with(&prefix))
    })
}

/// Rolls an interrupted publish forward (its manifest was written: only the replaced folders,
/// in its staging folder, are left to delete) or back (each table it swapped in is swapped back).
fn finish_interrupted(root: &Path, staging: &Path, j: &Journal) -> Result<(), SinkError> {
    let dir = root.join(manifest::DIR);
    let current = manifest::read(&dir, &j.as_of)?;
    if current.is_some_and(|m| m.run_id == j.run_id) {
        warn!(run_id = %j.run_id, as_of = %j.as_of, "Completed the publish of a run killed after writing its manifest.");
        return Ok(());
    }
    let mut restored = 0;
    for partition in &j.partitions {
        let live = root.join(partition);
        let staged = staging.join(partition);
        if !holds_run(&live, &j.run_id) {
            continue;
        }
        let result = if staged.exists() {
            // The old partition sits in staging since the exchange: exchange it back.
            exchange(&staged, &live)
        } else {
            // There was none: take the new one out.
            std::fs::create_dir_all(staged.parent().unwrap_or(staging))
                .and_then(|_| std::fs::rename(&live, &staged))
        };
        result.map_err(|e| super::io(&live, e))?;
        restored += 1;
    }
    for partition in &j.retired {
        let (live, staged) = (root.join(partition), staging.join(partition));
        if staged.exists() && !live.exists() {
            std::fs::rename(&staged, &live).map_err(|e| super::io(&live, e))?;
            restored += 1;
        }
    }
    warn!(run_id = %j.run_id, as_of = %j.as_of, tables = restored, "Rolled back the publish of a run killed before writing its manifest: the previous partitions are live again.");
    Ok(())
}

/// A publish in progress: tables swapped in, manifest not yet written.
#[derive(Debug)]
pub struct Published {
    staging: PathBuf,
    /// (live partition, staged folder that now holds the old one, whether an old one existed).
    swapped: Vec<(PathBuf, PathBuf, bool)>,
    /// (live partition taken out, the staged folder that now holds it).
    retired: Vec<(PathBuf, PathBuf)>,
    pub tables: Vec<(String, TableEntry)>,
}

/// Writes all tables to staging and swaps them into place. Call [`Published::commit`] after the
/// manifest is written, or [`Published::rollback`] if it could not be.
pub fn publish(
    root: &Path,
    opts: &PublishOptions<'_>,
    tables: &[(crate::schema::Table, TableData<'_>)],
    retired: &[crate::schema::Table],
) -> Result<Published, SinkError> {
    let staging = root.join(STAGING).join(opts.run_id);
    std::fs::create_dir_all(&staging).map_err(|e| super::io(&staging, e))?;
    let mut published = Published {
        staging: staging.clone(),
        swapped: Vec::new(),
        retired: Vec::new(),
        tables: Vec::new(),
    };
    let partition = format!("as_of={}", opts.as_of);
    let mut staged = Vec::new();
    for (name, data) in tables {
        let dir = staging.join(name.name()).join(&partition);
        let entry = |file: String, rows: u64, bytes: u64| FileEntry {
            path: format!("{name}/{partition}/{file}"),
            rows,
            bytes,
        };
        let result = std::fs::create_dir_all(&dir)
            .map_err(|e| super::io(&dir, e))
            .and_then(|_| match data {
                TableData::Batch(batch) => {
                    let file = super::file_name(opts.run_id, None);
                    let bytes = write(&dir.join(&file), batch, &FileMeta::for_table(*name, opts))?;
                    Ok(vec![entry(file, batch.num_rows() as u64, bytes)])
                }
                TableData::Files(parts) | TableData::InOutput(parts) => parts
                    .iter()
                    .enumerate()
                    .map(|(i, part)| {
                        let file = super::file_name(opts.run_id, Some(i));
                        let from = match data {
                            TableData::InOutput(_) => root.join(&part.path),
                            _ => part.path.clone(),
                        };
                        move_file(&from, &dir.join(&file))?;
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
    let journal = Journal {
        run_id: opts.run_id.to_string(),
        as_of: opts.as_of.to_string(),
        partitions: staged
            .iter()
            .map(|(name, _)| format!("{name}/{partition}"))
            .collect(),
        retired: retired
            .iter()
            .map(|name| format!("{name}/{partition}"))
            .collect(),
    };
    if let Err(e) = write_journal(&staging, &journal) {
        published.rollback();
        return Err(e);
    }
    for (name, dir) in staged {
        crate::testhook::hold(&format!("publish:swapped:{}", published.swapped.len()));
        let parent = root.join(&name);
        let live = parent.join(&partition);
        // Delta tables: the previous run's files stay in the live folder for the readers of
        // the table's current version (the commit after the manifest removes them from it).
        let linked = match opts.delta {
            Some(_) => link_previous(&live, &dir),
            None => Ok(()),
        };
        let result = linked
            .and_then(|_| std::fs::create_dir_all(&parent).map_err(|e| super::io(&parent, e)))
            .and_then(|_| swap_in(&dir, &live));
        match result {
            Ok(existed) => published.swapped.push((live, dir, existed)),
            Err(e) => {
                published.rollback();
                return Err(e);
            }
        }
    }
    for rel in &journal.retired {
        let (live, staged) = (root.join(rel), staging.join(rel));
        // A Delta table keeps the files until its commit removes them (and the vacuum).
        if !live.exists() || opts.delta.is_some() {
            continue;
        }
        let result = std::fs::create_dir_all(staged.parent().unwrap_or(&staging))
            .and_then(|_| std::fs::rename(&live, &staged))
            .map_err(|e| super::io(&live, e));
        match result {
            Ok(()) => published.retired.push((live, staged)),
            Err(e) => {
                published.rollback();
                return Err(e);
            }
        }
    }
    crate::testhook::hold(&format!("publish:swapped:{}", published.swapped.len()));
    info!(tables = published.tables.len(), retired = published.retired.len(), partition = %partition, "Swapped partitions into place.");
    Ok(published)
}

/// Hard-links (or copies) every file of the live partition `live` into the staged one, so the
/// swap leaves them in place.
fn link_previous(live: &Path, staged: &Path) -> Result<(), SinkError> {
    let entries = match std::fs::read_dir(live) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(super::io(live, e)),
    };
    for e in entries {
        let e = e.map_err(|err| super::io(live, err))?;
        let to = staged.join(e.file_name());
        if to.exists() {
            continue;
        }
        std::fs::hard_link(e.path(), &to)
            .or_else(|_| std::fs::copy(e.path(), &to).map(|_| ()))
            .map_err(|err| super::io(&to, err))?;
    }
    Ok(())
}

/// Writes the journal durably (temporary file, fsync, rename) before the first swap.
fn write_journal(staging: &Path, journal: &Journal) -> Result<(), SinkError> {
    use std::io::Write;
    let path = staging.join(JOURNAL);
    let tmp = staging.join(format!("{JOURNAL}.tmp"));
    let text = serde_json::to_vec(journal).map_err(|e| SinkError::Parquet {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(&text).and_then(|_| f.sync_all()))
        .and_then(|_| std::fs::rename(&tmp, &path))
        .map_err(|e| super::io(&path, e))
}

impl Published {
    /// Deletes the replaced partitions and the staging folder.
    pub fn commit(self) {
        if let Err(e) = std::fs::remove_dir_all(&self.staging) {
            warn!(path = %self.staging.display(), error = %e, "Could not remove the staging folder.");
        }
        remove_if_empty(self.staging.parent());
    }

    /// Puts every swapped or retired table back as it was, then deletes the staging folder.
    pub fn rollback(mut self) {
        for (live, staged) in self.retired.drain(..) {
            if let Err(e) = std::fs::rename(&staged, &live) {
                warn!(path = %live.display(), error = %e, "Could not restore the previous partition.");
            }
        }
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
