//! SIGTERM, SIGINT and SIGHUP (a scheduler's timeout or "mark failed", Ctrl-C, a closed
//! terminal): the first one asks the run to stop (see `cancel`: the stages notice it, a
//! publish under way finishes, guards clean up, the lock is released, exit code 1). A second
//! one ends the process at once, leaving its lock as SIGKILL would (the lock names its pid and
//! its lease runs out, see `sink::lock`). Set up once by the binary.

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use tracing::warn;

const STOPPING: [i32; 3] = [SIGTERM, SIGINT, SIGHUP];

/// Starts the thread that turns the first stopping signal into a stop request.
pub(crate) fn install() {
    static SECOND_ENDS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let mut signals = match signal_hook::iterator::Signals::new(STOPPING) {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "Could not handle SIGTERM/SIGINT: a stopped run will leave its lock until its lease runs out.");
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
                warn!(signal = name, "Stopping: a publish under way finishes first; a second signal ends the run at once.");
                crate::cancel::request(name);
            }
        });
    // Without the thread the signals would be caught and never acted on: end at once on them
    // instead, as without a handler.
    static ALWAYS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);
    let condition = if let Err(e) = spawned {
        warn!(error = %e, "Could not handle SIGTERM/SIGINT: a stopped run will leave its lock until its lease runs out.");
        &ALWAYS
    } else {
        &SECOND_ENDS
    };
    for signal in STOPPING {
        // The shutdown goes first: it sees the flag the first signal's `register` then sets.
        let armed = signal_hook::flag::register_conditional_shutdown(signal, 1, condition)
            .and_then(|_| signal_hook::flag::register(signal, &SECOND_ENDS));
        if let Err(e) = armed {
            warn!(error = %e, "A second stopping signal will not end the run at once.");
        }
    }
}
