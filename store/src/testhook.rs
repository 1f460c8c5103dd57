//! A hook for the integration tests (points: `read:batch`, `locked`, `publish:swapped:<k>`,
//! `publish:uploaded:<k>`, `publish:manifest`): holds the job at a named point until a file appears, so a
//! test can signal or kill it at a known stage instead of guessing with sleeps. With
//! `CUSTOMER_VALUE_TEST_HOLD=<point>=<path>` (points hold no `=`), the job creates `<path>.reached` on reaching
//! `<point>` and waits until `<path>` exists. Unset, as outside the tests, `hold` costs one
//! cached lookup.

use std::path::PathBuf;
use std::sync::OnceLock;

/// The environment variable naming the point and the file.
pub const VAR: &str = "CUSTOMER_VALUE_TEST_HOLD";

fn setting() -> Option<&'static (String, PathBuf)> {
    static SETTING: OnceLock<Option<(String, PathBuf)>> = OnceLock::new();
    SETTING
        .get_or_init(|| {
            let spec = std::env::var(VAR).ok()?;
            let (point, path) = spec.split_once('=')?;
            Some((point.to_string(), PathBuf::from(path)))
        })
        .as_ref()
}

/// Waits at `point` if the tests asked for it.
pub fn hold(point: &str) {
    let Some((wanted, path)) = setting() else {
        return;
    };
    if wanted != point {
        return;
    }
    let mut reached = path.clone().into_os_string();
    reached.push(".reached");
    let _ = std::fs::write(&reached, point);
    while !path.exists() {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
