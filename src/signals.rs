//! A run stopped by SIGTERM, SIGINT or SIGHUP (a scheduler's timeout or "mark failed", Ctrl-C,
//! a closed terminal) releases its output lock and removes its staging and spill folders and
//! downloaded inputs before it exits with code 1 (SPEC §5: the run failed), so a retry neither
//! waits for the lock's timeout nor finds leftovers. A publish in progress (partitions being
//! swapped in and the manifest written; on an object store, uploaded and the manifest written)
//! finishes first: readers see the old partition set or the new one, never a mix.
//! A second signal ends the process at once. SIGKILL cannot be caught; for that the lock names
//! its pid (see `lock`).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use tracing::warn;

use crate::sink::lock::LockAt;

/// What a stopped run has to clean up. (A run holds one lock; tests in one process may hold
/// several, hence the tokens.)
struct Held {
    locks: Vec<(u64, LockAt)>,
    next_token: u64,
    /// Folders and files to remove (staging, spilled lines, downloaded inputs), by token, and
    /// whether their parent goes too once empty (`_staging/`, not the user's spill folder).
    temp: Vec<(u64, PathBuf, bool)>,
    /// Set by the signal thread: no staging folder may be created any more (one created after
    /// the cleanup would be left behind).
    stopping: bool,
}

static HELD: Mutex<Held> = Mutex::new(Held {
    locks: Vec::new(),
    next_token: 0,
    temp: Vec::new(),
    stopping: false,
});

/// Held while a publish swaps partitions in and writes its manifest; the signal thread takes
/// it (and never gives it back) before cleaning up.
static CRITICAL: Mutex<()> = Mutex::new(());

fn held() -> MutexGuard<'static, Held> {
    HELD.lock().unwrap_or_else(|e| e.into_inner())
}

/// Set by the first stopping signal; a second one then ends the process at once (a second
/// Ctrl-C while a long upload finishes), leaving its lock as SIGKILL would.
static STOP_REQUESTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Starts the thread that handles the signals (once, from `main`).
pub fn install() {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    const STOPPING: [i32; 3] = [SIGTERM, SIGINT, SIGHUP];
    let mut signals = match signal_hook::iterator::Signals::new(STOPPING) {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "Could not handle SIGTERM/SIGINT: a stopped run will leave its lock.");
            return;
        }
    };
    let spawned = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                let name = match signal {
                    SIGTERM => "SIGTERM",
                    SIGINT => "SIGINT",
                    _ => "SIGHUP",
                };
                stop(name);
            }
        });
    // Without the thread the signals above would be caught and never acted on: end at once on
    // them instead, as without a handler.
    static ALWAYS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);
    let condition = if let Err(e) = spawned {
        warn!(error = %e, "Could not handle SIGTERM/SIGINT: a stopped run will leave its lock.");
        &ALWAYS
    } else {
        &STOP_REQUESTED
    };
    for signal in STOPPING {
        // The shutdown goes first: it sees the flag the first signal's `register` then sets.
        let armed = signal_hook::flag::register_conditional_shutdown(signal, 1, condition)
            .and_then(|_| signal_hook::flag::register(signal, &STOP_REQUESTED));
        if let Err(e) = armed {
            warn!(error = %e, "A second stopping signal will not end the run at once.");
        }
    }
}

/// Called by `main` before it returns or reports an error. Once a stopping signal has arrived,
/// the signal thread is cleaning up and ends the process itself; returning first would end it
/// half-way (the lock left behind) and report the stop as some other error (a publish refused
/// to create staging folders). So this waits, at most a minute, for that thread.
pub fn wait_if_stopping() {
    if STOP_REQUESTED.load(std::sync::atomic::Ordering::SeqCst) {
        std::thread::sleep(std::time::Duration::from_secs(60));
    }
}

/// Waits for a publish in progress, removes the staging folders, releases the lock and exits.
fn stop(signal: &str) -> ! {
    let _critical = CRITICAL.lock().unwrap_or_else(|e| e.into_inner());
    let (locks, temp) = {
        let mut h = held();
        h.stopping = true;
        (std::mem::take(&mut h.locks), std::mem::take(&mut h.temp))
    };
    for (_, path, empty_parent) in &temp {
        let _ = std::fs::remove_dir_all(path).or_else(|_| std::fs::remove_file(path));
        if let Some(parent) = path.parent().filter(|_| *empty_parent) {
            let _ = std::fs::remove_dir(parent);
        }
    }
    let released = !locks.is_empty();
    for (_, at) in &locks {
        at.release();
    }
    eprintln!(
        "error: stopped by {signal}; a publish under way was finished first (its date is published); {}nothing that was not yet published is kept",
        if released {
            "the output lock is released and "
        } else {
            ""
        }
    );
    std::process::exit(1);
}

fn next_token(h: &mut Held) -> u64 {
    h.next_token += 1;
    h.next_token
}

/// Records a lock this run holds; returns its token.
pub(crate) fn lock_taken(at: LockAt) -> u64 {
    let mut h = held();
    let token = next_token(&mut h);
    h.locks.push((token, at));
    token
}

/// Takes the lock of `token` out of the record, so that it is released once: by its guard or
/// by the signal thread, whichever comes first.
pub(crate) fn take_lock(token: u64) -> Option<LockAt> {
    let mut h = held();
    let i = h.locks.iter().position(|(t, _)| *t == token)?;
    Some(h.locks.swap_remove(i).1)
}

fn stopping() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::Interrupted, "the run is being stopped")
}

/// Creates a run's staging folder, listed for removal (with `_staging/` once empty) if the run
/// is stopped while the guard lives; refused once a stop has begun.
pub(crate) fn create_staging(dir: &Path) -> std::io::Result<RemoveOnStop> {
    let mut h = held();
    if h.stopping {
        return Err(stopping());
    }
    std::fs::create_dir_all(dir)?;
    Ok(list(&mut h, dir, true))
}

/// Creates a folder inside a listed staging folder, unless the run is being stopped.
pub(crate) fn create_in_staging(dir: &Path) -> std::io::Result<()> {
    let h = held();
    if h.stopping {
        return Err(stopping());
    }
    std::fs::create_dir_all(dir)
}

/// Keeps a signal from stopping the run until dropped.
pub(crate) struct Critical {
    _held: MutexGuard<'static, ()>,
}

impl std::fmt::Debug for Critical {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Critical")
    }
}

/// Enters a section a signal must not cut short.
pub(crate) fn critical() -> Critical {
    Critical {
        _held: CRITICAL.lock().unwrap_or_else(|e| e.into_inner()),
    }
}

/// Keeps a temporary folder or file listed for removal if the run is stopped, until dropped
/// (its owner removes it otherwise).
#[derive(Debug)]
pub struct RemoveOnStop(u64);

/// Lists `path` (a folder or a file) for removal if the run is stopped.
pub fn remove_on_stop(path: &Path) -> RemoveOnStop {
    list(&mut held(), path, false)
}

fn list(h: &mut Held, path: &Path, empty_parent: bool) -> RemoveOnStop {
    let token = next_token(h);
    h.temp.push((token, path.to_path_buf(), empty_parent));
    RemoveOnStop(token)
}

impl Drop for RemoveOnStop {
    fn drop(&mut self) {
        held().temp.retain(|(t, _, _)| *t != self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(path: &Path) -> bool {
        held().temp.iter().any(|(_, p, _)| p == path)
    }

    #[test]
    fn temporary_paths_are_listed_while_their_guard_lives() {
        let (a, b) = (Path::new("/tmp/cv-test-a"), Path::new("/tmp/cv-test-b"));
        let guard_a = remove_on_stop(a);
        let guard_b = remove_on_stop(b);
        assert!(listed(a) && listed(b));
        drop(guard_a);
        assert!(!listed(a) && listed(b));
        drop(guard_b);
        assert!(!listed(b));
    }
}
