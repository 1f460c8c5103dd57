//! `[output] format = "delta"`: every table is also a Delta table, read by real readers (the
//! `deltalake` package and polars' `read_delta`, `tests/delta_read.py`) on local disk and on
//! moto's S3. They hold exactly the rows of the Parquet files each date's manifest lists; a
//! rerun replaces its date in one commit per table, with the run id and row accounting in the
//! commit info; a reader polling through a rerun sees the old partition or the new one, whole;
//! replaced files stay until `delta_retention_hours` has passed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use crate::servers;
use crate::util::{ok, script_json, Held, Workspace, TABLES};

fn script() -> &'static str {
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/delta_read.py")
}

/// The readers' view of every Delta table under `root` (see `tests/delta_read.py read`).
fn read(python: &Path, root: &str, options: Option<&Value>) -> Value {
    let mut cmd = Command::new(python);
    cmd.args([script(), "read", root]);
    if let Some(o) = options {
        cmd.arg(o.to_string());
    }
    script_json(&mut cmd)
}

/// Every table of every date: the deltalake and polars readers hold the manifest's rows.
fn assert_readers_agree(view: &Value, dates: &[&str]) {
    for table in TABLES {
        let t = &view[table];
        for d in dates {
            let c = &t["dates"][d];
            assert_eq!(c["same"], true, "{table} {d}: {c}");
            assert_eq!(c["delta"], c["parquet"], "{table} {d}");
        }
    }
    assert!(
        view["customers"]["dates"][dates[0]]["delta"]
            .as_u64()
            .unwrap()
            > 100,
        "{view}"
    );
    assert_eq!(view["rejects"]["dates"][dates[0]]["delta"], 1);
}

fn manifest(ws: &Workspace, as_of: &str) -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(ws.path(&format!("out/_manifests/as_of={as_of}.json"))).unwrap(),
    )
    .unwrap()
}

fn run(ws: &Workspace, config: &str, as_of: &str) {
    ok(&ws.run(&["run", "--config", config, "--as-of", as_of, "--no-progress"]));
}

fn data_files(dir: PathBuf) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    files.sort();
    files
}

#[test]
fn delta_tables_on_local_disk_hold_each_run_and_a_rerun_replaces_its_date_whole() {
    let ws = Workspace::new();
    let base = ws.generated_with_a_reject();
    let base = std::fs::read_to_string(base).unwrap();
    ws.write("delta.toml", format!("{base}format = \"delta\"\n"));
    let Some(python) = crate::tools::python() else {
        return;
    };
    // The first date published as Parquet; the output then becomes Delta tables, whose first
    // publish also commits the earlier date from its manifest.
    run(&ws, "config.toml", "2024-06-30");
    assert!(!ws.path("out/customers/_delta_log").exists());
    run(&ws, "delta.toml", "2024-12-31");
    let root = ws.path("out").display().to_string();
    let view = read(&python, &root, None);
    assert_readers_agree(&view, &["2024-06-30", "2024-12-31"]);
    // One commit per date and table: WRITE, replacing its as_of, with the run in its info.
    let first = manifest(&ws, "2024-06-30");
    let h = &view["customers"]["history"];
    let commits: Vec<&Value> = h.as_array().unwrap().iter().collect();
    assert_eq!(view["customers"]["version"], 1);
    let by_date = commits
        .iter()
        .find(|c| c["predicate"] == "as_of = '2024-06-30'")
        .expect("the first date's commit");
    assert_eq!(by_date["operation"], "WRITE");
    let cv = &by_date["customer_value"];
    assert_eq!(cv["run_id"], first["run_id"]);
    assert_eq!(cv["rows_read"], first["rows_read"]);
    assert_eq!(cv["rows_rejected"], 1);
    assert_eq!(cv["customers"], first["customers"]);

    // A rerun of 2024-06-30 on more input (a second file), held after its manifest and before
    // its Delta commits while a reader polls the partition.
    // Every customer of tx.csv again under another id (`x` + id), the rejected row left out.
    let tx = std::fs::read_to_string(ws.path("tx.csv")).unwrap();
    let mut lines = tx.lines();
    let header = lines.next().unwrap();
    let copies: Vec<String> = lines
        .filter(|l| !l.starts_with("c-bad"))
        .map(|l| format!("x{l}"))
        .collect();
    ws.write("more.csv", format!("{header}\n{}\n", copies.join("\n")));
    let tx_path = format!("{:?}", ws.path("tx.csv").display().to_string());
    let more_path = format!("{:?}", ws.path("more.csv").display().to_string());
    let more = base.replace(
        &format!("[{tx_path}]"),
        &format!("[{tx_path}, {more_path}]"),
    );
    assert_ne!(more, base, "the second file is in the configuration");
    ws.write("more.toml", format!("{more}format = \"delta\"\n"));
    let old_rows = view["customers"]["dates"]["2024-06-30"]["delta"]
        .as_u64()
        .unwrap();
    let old_files = data_files(ws.path("out/customers/as_of=2024-06-30"));
    let stop = ws.path("stop");
    let rerun = Held::start(
        &ws,
        &[
            "run",
            "--config",
            "more.toml",
            "--as-of",
            "2024-06-30",
            "--no-progress",
        ],
        &[],
        "publish:manifest",
    );
    let poller: Child = Command::new(&python)
        .args([
            script(),
            "poll",
            &root,
            "customers",
            "2024-06-30",
            &stop.display().to_string(),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // While held, the live folder already holds the old and the new files.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let during = data_files(ws.path("out/customers/as_of=2024-06-30"));
    assert!(
        during.len() > old_files.len(),
        "old and new files side by side"
    );
    ok(&rerun.release());
    std::thread::sleep(std::time::Duration::from_millis(1500));
    std::fs::write(&stop, "").unwrap();
    let polled: Value = serde_json::from_slice(&poller.wait_with_output().unwrap().stdout).unwrap();

    let after = read(&python, &root, None);
    assert_readers_agree(&after, &["2024-06-30", "2024-12-31"]);
    let new_rows = after["customers"]["dates"]["2024-06-30"]["delta"]
        .as_u64()
        .unwrap();
    assert_eq!(new_rows, 2 * old_rows, "every customer twice");
    // The reader saw the old partition, then the new one, never a mix, never an error.
    assert_eq!(polled["errors"], serde_json::json!([]), "{polled}");
    assert_eq!(
        polled["counts"],
        serde_json::json!([old_rows, new_rows]),
        "{polled}"
    );
    assert!(polled["reads"].as_u64().unwrap() > 10, "{polled}");
    // The rerun's commit replaced the date (remove + add): Delta lists only its files; the
    // replaced ones stay on disk for readers of the older version (168 h by default).
    let rerun_id = manifest(&ws, "2024-06-30")["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let current: Vec<String> = after["customers"]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .filter(|f| f.starts_with("as_of=2024-06-30/"))
        .collect();
    assert_eq!(
        current,
        vec![format!("as_of=2024-06-30/part-{rerun_id}.parquet")]
    );
    let on_disk = data_files(ws.path("out/customers/as_of=2024-06-30"));
    assert_eq!(on_disk.len(), 2, "{on_disk:?}");
    assert_eq!(after["customers"]["version"], 2);

    // With a retention of 0 hours the next publish deletes every file no version lists now.
    ws.write(
        "vacuum.toml",
        format!("{more}format = \"delta\"\ndelta_retention_hours = 0\n"),
    );
    run(&ws, "vacuum.toml", "2024-12-31");
    assert_eq!(
        data_files(ws.path("out/customers/as_of=2024-06-30")),
        vec![format!("part-{rerun_id}.parquet")]
    );
    let vacuumed = read(&python, &root, None);
    assert_readers_agree(&vacuumed, &["2024-06-30", "2024-12-31"]);
}

#[test]
fn delta_tables_on_s3_are_read_by_deltalake_and_polars() {
    let Some(moto) = servers::moto() else { return };
    servers::create_bucket(&moto, "cv-delta");
    let Some(python) = crate::tools::python() else {
        return;
    };
    let ws = Workspace::new();
    let base = std::fs::read_to_string(ws.generated_with_a_reject()).unwrap();
    let local_out = format!("path = {:?}", ws.path("out").display().to_string());
    let config = base.replace(&local_out, "path = \"s3://cv-delta/out\"");
    assert!(config.contains("path = \"s3://cv-delta/out\""), "{config}");
    ws.write("s3.toml", format!("{config}format = \"delta\"\n"));
    let env = vec![
        ("AWS_ENDPOINT".to_string(), moto.endpoint()),
        ("AWS_ALLOW_HTTP".into(), "true".into()),
        ("AWS_ACCESS_KEY_ID".into(), "test".into()),
        ("AWS_SECRET_ACCESS_KEY".into(), "test".into()),
        ("AWS_REGION".into(), "us-east-1".into()),
    ];
    for as_of in ["2024-06-30", "2024-12-31", "2024-06-30"] {
        ok(&ws.run_env(
            &[
                "run",
                "--config",
                "s3.toml",
                "--as-of",
                as_of,
                "--no-progress",
            ],
            &env,
        ));
    }
    let options = serde_json::json!({
        "AWS_ENDPOINT_URL": moto.endpoint(),
        "AWS_ALLOW_HTTP": "true",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": "us-east-1",
    });
    let view = read(&python, "s3://cv-delta/out", Some(&options));
    assert_readers_agree(&view, &["2024-06-30", "2024-12-31"]);
    // Three commits per table: the two dates, then the rerun replacing the first.
    assert_eq!(view["customers"]["version"], 2);
    let predicates: Vec<&Value> = view["customers"]["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| &h["predicate"])
        .collect();
    assert_eq!(
        predicates
            .iter()
            .filter(|p| **p == "as_of = '2024-06-30'")
            .count(),
        2
    );
}
