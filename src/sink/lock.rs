//! One writer per output: a lock taken before publishing and released when the run ends. On
//! local disk it is the file `{output}/_lock` created exclusively; on an object store the object
//! `{output}/_lock` written with a conditional put (create only if absent). The lock names its
//! holder (run id, pid, host, start time); a lock older than `output.lock_timeout_minutes` is a
//! crashed run's and is taken over, and so is one whose holder ran on this host and is no longer
//! running (killed by a scheduler's timeout, say); `--force-unlock` removes any lock first.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::Utc;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::config::Validated;
use crate::storage::{block_on, Location, Remote};

use super::SinkError;

/// What the lock says about its holder.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Holder {
    run_id: String,
    pid: u32,
    host: String,
    started_at: String,
}

/// Where a lock is.
#[derive(Debug, Clone)]
pub enum LockAt {
    Local(PathBuf),
    Remote(Remote, object_store::path::Path),
}

impl LockAt {
    /// Removes the lock (a warning if it cannot be).
    pub(crate) fn release(&self) {
        match self {
            LockAt::Local(p) => {
                if let Err(e) = std::fs::remove_file(p) {
                    warn!(path = %p.display(), error = %e, "Could not release the output lock.");
                }
            }
            LockAt::Remote(r, key) => {
                let store = Arc::clone(&r.store);
                let k = key.clone();
                if let Err(e) = block_on(async move { store.delete(&k).await }) {
                    warn!(url = %r.url(key), error = %crate::storage::store_message(&e), "Could not release the output lock.");
                }
            }
        }
    }
}

/// Releases the lock when dropped (or when the run is stopped by a signal, see `signals`).
#[derive(Debug)]
pub struct LockGuard {
    token: u64,
}

impl LockGuard {
    fn new(at: LockAt) -> Self {
        LockGuard {
            token: crate::signals::lock_taken(at),
        }
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if let Some(at) = crate::signals::take_lock(self.token) {
            at.release();
        }
    }
}

/// This host's name as locks record it.
fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

fn holder(run_id: &str) -> Holder {
    Holder {
        run_id: run_id.to_string(),
        pid: std::process::id(),
        host: host_name(),
        started_at: Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    }
}

/// Whether the lock's holder ran on this host and no longer runs. A run killed by a scheduler
/// (an Airflow task timeout sends SIGTERM, then SIGKILL) leaves its lock behind, and without this
/// every retry would fail on it until `lock_timeout_minutes` passed. A holder on another host,
/// one whose pid answers (even if another program reuses it), or an unreadable lock is left
/// alone: those wait for the timeout or `--force-unlock`.
fn holder_is_dead_here(text: &str) -> bool {
    let Ok(h) = serde_json::from_str::<Holder>(text) else {
        return false;
    };
    let here = host_name();
    here != "unknown" && h.host == here && h.pid != std::process::id() && !process_exists(h.pid)
}

/// Whether a process with this pid exists on this host.
#[cfg(unix)]
fn process_exists(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return true;
    };
    if pid <= 0 {
        return true;
    }
    // SAFETY: signal 0 sends nothing; it only asks whether the process exists. EPERM means it
    // exists under another user.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

#[cfg(not(unix))]
fn process_exists(_pid: u32) -> bool {
    true
}

fn locked(what: &str, text: &str) -> SinkError {
    let who = serde_json::from_str::<Holder>(text)
        .map(|h| {
            format!(
                "run {} (pid {} on {}, since {})",
                h.run_id, h.pid, h.host, h.started_at
            )
        })
        .unwrap_or_else(|_| "an unreadable lock".into());
    SinkError::Locked(format!(
        "{what} is locked by {who}; wait for that run to finish, or pass --force-unlock if it died"
    ))
}

/// Takes the output lock for `run_id`.
pub fn acquire(
    output: &Location,
    run_id: &str,
    cfg: &Validated,
    force: bool,
) -> Result<LockGuard, SinkError> {
    let timeout = chrono::Duration::minutes(cfg.config.output.lock_timeout_minutes as i64);
    let me = serde_json::to_string(&holder(run_id)).unwrap_or_default();
    match output {
        Location::Local(root) => {
            std::fs::create_dir_all(root).map_err(|e| super::io(root, e))?;
            let path = root.join("_lock");
            for attempt in 0..2 {
                match std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&path)
                {
                    Ok(mut f) => {
                        // Not fsynced: exclusion comes from the exclusive create, and the file
                        // matters only while this process lives (after a crash it is stale
                        // either way). The fsync waited for the file system's journal, which
                        // can take other processes' dirty data along: with a 4 GB write running
                        // alongside, orders stage → lock took 0.08–2.15 s with it and
                        // 0.07–0.21 s without (three runs each); in one benchmark run after
                        // DuckDB's and Polars' writes that gap was 1.0 s.
                        f.write_all(me.as_bytes())
                            .map_err(|e| super::io(&path, e))?;
                        info!(lock = %path.display(), "Output locked.");
                        let guard = LockGuard::new(LockAt::Local(path));
                        super::publish::sweep_staging(root);
                        return Ok(guard);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt == 0 => {
                        let text = std::fs::read_to_string(&path).unwrap_or_default();
                        let age = std::fs::metadata(&path)
                            .and_then(|m| m.modified())
                            .ok()
                            .and_then(|t| t.elapsed().ok())
                            .and_then(|d| chrono::Duration::from_std(d).ok())
                            .unwrap_or_default();
                        let dead = holder_is_dead_here(&text);
                        if force || age > timeout || dead {
                            warn!(lock = %path.display(), holder = %text, forced = force, holder_dead = dead, "Removing a stale or forced output lock.");
                            std::fs::remove_file(&path).map_err(|e| super::io(&path, e))?;
                            continue;
                        }
                        return Err(locked(&root.display().to_string(), &text));
                    }
                    Err(e) => return Err(super::io(&path, e)),
                }
            }
            Err(locked(&root.display().to_string(), ""))
        }
        Location::Remote(r) => {
            let key = r.child("_lock");
            for attempt in 0..2 {
                let store = Arc::clone(&r.store);
                let k = key.clone();
                let body = me.clone().into_bytes();
                let put = block_on(async move {
                    store
                        .put_opts(
                            &k,
                            PutPayload::from(body),
                            PutOptions {
                                mode: PutMode::Create,
                                ..Default::default()
                            },
                        )
                        .await
                });
                match put {
                    Ok(_) => {
                        info!(lock = %r.url(&key), "Output locked.");
                        return Ok(LockGuard::new(LockAt::Remote(r.clone(), key)));
                    }
                    Err(object_store::Error::AlreadyExists { .. })
                    | Err(object_store::Error::Precondition { .. })
                        if attempt == 0 =>
                    {
                        let store = Arc::clone(&r.store);
                        let k = key.clone();
                        let got = block_on(async move {
                            let g = store.get(&k).await?;
                            let modified = g.meta.last_modified;
                            let bytes = g.bytes().await?;
                            Ok::<_, object_store::Error>((modified, bytes))
                        });
                        let (modified, text) = match got {
                            Ok((m, b)) => (m, String::from_utf8_lossy(&b).to_string()),
                            // Released in between: try again.
                            Err(object_store::Error::NotFound { .. }) => continue,
                            Err(e) => return Err(SinkError::Storage(r.op_err(&key, "get", e))),
                        };
                        let dead = holder_is_dead_here(&text);
                        if force || Utc::now() - modified > timeout || dead {
                            warn!(lock = %r.url(&key), holder = %text, forced = force, holder_dead = dead, "Removing a stale or forced output lock.");
                            let store = Arc::clone(&r.store);
                            let k = key.clone();
                            block_on(async move { store.delete(&k).await })
                                .map_err(|e| SinkError::Storage(r.op_err(&key, "delete", e)))?;
                            continue;
                        }
                        return Err(locked(&r.display, &text));
                    }
                    Err(e) => return Err(SinkError::Storage(r.op_err(&key, "put (lock)", e))),
                }
            }
            Err(locked(&r.display, ""))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock_text(pid: u32, host: &str) -> String {
        serde_json::to_string(&Holder {
            run_id: "r".into(),
            pid,
            host: host.into(),
            started_at: "2026-01-01T00:00:00Z".into(),
        })
        .unwrap()
    }

    #[test]
    fn only_a_holder_of_this_host_that_no_longer_runs_is_dead() {
        let here = host_name();
        if here == "unknown" {
            // CI machines have one; elsewhere say so rather than pass quietly.
            assert!(std::env::var_os("CI").is_none(), "no /etc/hostname in CI");
            eprintln!("SKIP: this machine has no /etc/hostname; no holder can be judged dead");
            return;
        }
        // No process has pid 2^31 − 2: pids stop at pid_max, at most 2^22 on Linux.
        let gone = i32::MAX as u32 - 1;
        assert!(holder_is_dead_here(&lock_text(gone, &here)));
        // Alive: this test's own process, and pid 1.
        assert!(!holder_is_dead_here(&lock_text(std::process::id(), &here)));
        assert!(!holder_is_dead_here(&lock_text(1, &here)));
        // Another host's pids say nothing about this one's.
        assert!(!holder_is_dead_here(&lock_text(gone, "another-host")));
        // Unreadable: left for the timeout or --force-unlock.
        assert!(!holder_is_dead_here("not json"));
        assert!(!holder_is_dead_here(""));
    }
}
