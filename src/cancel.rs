//! Stopping a run cleanly. The first SIGTERM, SIGINT or SIGHUP (see `signals`, set up by the
//! binary) only records a stop request; the stages check it between units of work (a batch of
//! input rows, a customer partition, an as_of date, before each publish) and return
//! [`Stopped`]. The main thread then unwinds, and each guard removes what its code created
//! (staging folder, spilled lines, downloaded inputs, checked copies) and releases the output
//! lock. A publish under way does not check: it finishes, so readers see the old partition set
//! or the new one, never a mix.

use std::sync::atomic::{AtomicU8, Ordering};

/// The signal that asked the run to stop (0: none yet).
static REQUESTED: AtomicU8 = AtomicU8::new(0);

const NAMES: [&str; 4] = ["", "SIGTERM", "SIGINT", "SIGHUP"];

/// Why a run stopped early: a signal asked it to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("stopped by {0}; a publish under way was finished first (its date is published); the output lock is released and nothing that was not yet published is kept")]
pub(crate) struct Stopped(pub &'static str);

/// Records a stop request for `signal` ("SIGTERM", "SIGINT" or "SIGHUP"; others count as
/// SIGTERM). The first request wins.
pub(crate) fn request(signal: &str) {
    let code = NAMES
        .iter()
        .position(|&n| n == signal)
        .filter(|&i| i > 0)
        .unwrap_or(1);
    let _ = REQUESTED.compare_exchange(0, code as u8, Ordering::SeqCst, Ordering::SeqCst);
}

/// Fails once a stop was requested.
pub(crate) fn check() -> Result<(), Stopped> {
    match REQUESTED.load(Ordering::SeqCst) {
        0 => Ok(()),
        code => Err(Stopped(NAMES[code as usize])),
    }
}
