//! Runs killed where it hurts most: inside the publish, between the swaps of a date's tables
//! and after its manifest (SIGKILL, or a second SIGTERM, which ends the process at once). The
//! test hook holds the run at each point, so every point is hit every time. The next run of
//! another date must leave every manifest's files in place and every live file listed by its
//! date's manifest. And a live lock holder is never taken over, whatever the timeout.

use std::path::Path;

use crate::util::{assert_manifests_cover_the_files, Held, Workspace};

const D1: &str = "2024-06-30";
const D2: &str = "2024-07-31";

/// A workspace with 300 generated lines (13 months from 2024-01) and its config.
fn workspace(extra_output: &str) -> Workspace {
    let ws = Workspace::new();
    ws.generate(
        "tx.csv",
        &[
            "--customers",
            "60",
            "--rows",
            "300",
            "--seed",
            "9",
            "--start",
            "2024-01-01",
            "--months",
            "13",
        ],
    );
    ws.config(&["tx.csv"], crate::util::GEN_COLUMNS, "", "");
    if !extra_output.is_empty() {
        let cfg = std::fs::read_to_string(ws.path("config.toml")).unwrap();
        ws.write("config.toml", format!("{cfg}{extra_output}\n"));
    }
    ws
}

fn run_args(as_of: &str) -> Vec<String> {
    [
        "run",
        "--config",
        "config.toml",
        "--as-of",
        as_of,
        "--no-progress",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// The run id every data file of `as_of` carries, from the manifest.
fn manifest_run(out: &Path, as_of: &str) -> Option<String> {
    let p = out.join("_manifests").join(format!("as_of={as_of}.json"));
    let bytes = std::fs::read(p).ok()?;
    let m: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    Some(m["run_id"].as_str().unwrap().to_string())
}

/// Names of the live files of `as_of` across every table.
fn live_files(out: &Path, as_of: &str) -> Vec<String> {
    let mut v = Vec::new();
    for t in ["customers", "retention", "cohorts", "ltv", "rejects"] {
        if let Ok(entries) = std::fs::read_dir(out.join(t).join(format!("as_of={as_of}"))) {
            v.extend(
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().to_string()),
            );
        }
    }
    v.sort();
    v
}

/// Publishes D1 (unless `first`), reruns D1 held at `point` and ends it with `end`, then runs
/// D2 and checks what readers see.
fn killed_inside_the_publish(point: &str, first: bool, end: impl FnOnce(Held)) {
    let ws = workspace("");
    let out = ws.path("out");
    if !first {
        ws.run_ok(D1);
    }
    let before = manifest_run(&out, D1);
    let args = run_args(D1);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    end(Held::start(&ws, &refs, &[], point));
    // The next run, of another date, first puts D1 back in order, then publishes D2.
    let o = ws.run_ok(D2);
    let log = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(!out.join("_staging").exists(), "{point}: staging removed");
    assert_manifests_cover_the_files(&out);
    let after = manifest_run(&out, D1);
    if point == "publish:manifest" {
        // Killed after its manifest: the new run is D1's, rolled forward.
        assert_ne!(after, before, "{point}");
        assert!(log.contains("Completed the publish"), "{point}: {log}");
    } else {
        // Killed before its manifest: D1 is back to the previous run (or to nothing).
        assert_eq!(after, before, "{point}");
        assert!(log.contains("Rolled back the publish"), "{point}: {log}");
    }
    let files = live_files(&out, D1);
    match &after {
        Some(run) => {
            assert_eq!(files.len(), 5, "{point}: {files:?}");
            assert!(
                files.iter().all(|f| f.contains(run.as_str())),
                "{point}: {files:?}"
            );
        }
        None => assert!(files.is_empty(), "{point}: {files:?}"),
    }
    // And the dates still rerun cleanly.
    ws.run_ok(D1);
    assert_manifests_cover_the_files(&out);
}

#[test]
fn sigkill_between_any_two_swaps_is_rolled_back_by_the_next_run() {
    for k in 0..=5 {
        killed_inside_the_publish(&format!("publish:swapped:{k}"), false, Held::kill);
    }
}

#[test]
fn sigkill_after_the_manifest_is_rolled_forward_by_the_next_run() {
    killed_inside_the_publish("publish:manifest", false, Held::kill);
}

#[test]
fn sigkill_inside_a_first_publish_leaves_no_partition() {
    for k in [1, 3] {
        killed_inside_the_publish(&format!("publish:swapped:{k}"), true, Held::kill);
    }
}

#[test]
fn sigterm_while_reading_stops_the_run_and_leaves_nothing_behind() {
    // A spilled run (3 partitions, spill folder in the workspace) held at its first batch of
    // input rows: SIGTERM there stops it at the next check, before anything is computed. The
    // spill folder and its files go with their guards; no lock was taken, nothing published.
    let ws = workspace("");
    let spill = ws.path("spill");
    std::fs::create_dir_all(&spill).unwrap();
    let cfg = std::fs::read_to_string(ws.path("config.toml")).unwrap();
    ws.write(
        "config.toml",
        format!(
            "{cfg}[engine]\npartitions = 3\nspill_dir = {:?}\n",
            spill.display().to_string()
        ),
    );
    let args = run_args(D1);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let held = Held::start(&ws, &args, &[], "read:batch");
    assert_eq!(
        std::fs::read_dir(&spill).unwrap().count(),
        1,
        "the spill folder exists while reading"
    );
    held.signal(libc::SIGTERM);
    let o = held.release();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("error: stopped by SIGTERM;"), "{err}");
    let left: Vec<_> = std::fs::read_dir(&spill).unwrap().collect();
    assert!(left.is_empty(), "spill folder removed: {left:?}");
    assert!(!ws.path("out/_lock").exists());
    assert!(!ws.path("out/_manifests").exists());
    // Nothing is left to put right: the next run goes through at once.
    ws.run_ok(D1);
}

#[test]
fn a_second_sigterm_inside_the_publish_ends_the_run_and_is_rolled_back() {
    killed_inside_the_publish("publish:swapped:2", false, |held| {
        // The first SIGTERM waits for the publish; the second ends the process at once.
        held.signal(libc::SIGTERM);
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(held.child.id() > 0);
        held.signal(libc::SIGTERM);
        let o = held.wait();
        assert!(!o.status.success(), "ended by the second signal");
    });
}

#[test]
fn a_live_holder_is_never_taken_over_whatever_the_timeout() {
    // A run holds the lock (held just after taking it) with the shortest lease, one minute;
    // it renews every 15 s. 65 s later a second run still finds it locked (exit 1: retry).
    let ws = workspace("lock_timeout_minutes = 1");
    let args = run_args(D1);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let held = Held::start(&ws, &refs, &[], "locked");
    std::thread::sleep(std::time::Duration::from_secs(65));
    let o = ws.run_as_of(D2, &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("is locked by run"), "{err}");
    // The holder goes on and publishes.
    let done = held.release();
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert!(manifest_run(&ws.path("out"), D1).is_some());
    assert!(!ws.path("out/_lock").exists());
}
