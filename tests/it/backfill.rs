//! Backfills (one pass over the inputs, one partition per date, each equal to a single run),
//! reproducibility whatever later data the input holds, and the output lock.

use crate::fixtures::FIXTURE_A;
use crate::util::{
    assert_same, killed_pid, lock_of_this_host, ok, read_partition, Workspace, ACCOUNTING_KEYS,
    DEFAULT_COLUMNS, TABLES,
};

const MONTH_31: &str = "period = \"month\"\nchurn_window_days = 31";

fn config_to(ws: &Workspace, out: &str) {
    let cfg = crate::util::config(
        &[&ws.path("tx.csv").display().to_string()],
        &ws.path(out).display().to_string(),
        DEFAULT_COLUMNS,
        MONTH_31,
        "",
    );
    ws.write("config.toml", cfg);
}

/// A workspace holding fixture A as `tx.csv`, configured to write to `out`.
fn fixture_to(out: &str) -> Workspace {
    let ws = Workspace::new();
    ws.write("tx.csv", FIXTURE_A);
    config_to(&ws, out);
    ws
}

/// Runs `backfill --config config.toml --from FROM --to TO` plus `extra` flags.
fn backfill(
    ws: &Workspace,
    from: &str,
    to: &str,
    extra: &[&str],
    envs: &[(String, String)],
) -> std::process::Output {
    let mut args = vec![
        "backfill",
        "--config",
        "config.toml",
        "--from",
        from,
        "--to",
        to,
    ];
    args.extend_from_slice(extra);
    ws.run_env(&args, envs)
}

#[test]
fn backfill_partitions_equal_single_runs() {
    let ws = fixture_to("bf");
    let o = backfill(&ws, "2024-01-01", "2024-04-30", &[], &[]);
    ok(&o);
    // Month ends of the range (the default --every is metrics.period).
    let dates = ["2024-01-31", "2024-02-29", "2024-03-31", "2024-04-30"];
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(stdout.matches("as_of 2024-").count(), 4, "{stdout}");
    config_to(&ws, "single");
    for d in dates {
        ws.run_ok(d);
        for t in TABLES {
            let a = read_partition(&ws.path(&format!("bf/{t}/as_of={d}"))).0;
            let b = read_partition(&ws.path(&format!("single/{t}/as_of={d}"))).0;
            assert_same(&a, &b, &format!("{t} as of {d}"));
        }
        let (a, b) = (ws.manifest_in("bf", d), ws.manifest_in("single", d));
        for k in ACCOUNTING_KEYS {
            assert_eq!(a[k], b[k], "manifest {k} as of {d}");
        }
    }
    // As of 2024-01-31: 15 rows read; Jan lines used: a1, b1, e1 (2 lines), f1 = 5; the two bad
    // rows are dated in January → rejected 2; the other 8 are after as_of.
    let m = ws.manifest_in("bf", "2024-01-31");
    assert_eq!(
        (
            m["rows_used"].as_u64(),
            m["rows_rejected"].as_u64(),
            m["rows_after_as_of"].as_u64()
        ),
        (Some(5), Some(2), Some(8))
    );
}

#[test]
fn later_data_does_not_change_an_earlier_as_of() {
    let ws = fixture_to("out");
    ws.run_ok("2024-02-29");
    let before: Vec<_> = TABLES
        .iter()
        .map(|t| read_partition(&ws.path(&format!("out/{t}/as_of=2024-02-29"))).0)
        .collect();
    // Later data: a refund of a's February order (nets into a2 at its time, so history from
    // March on changes), a new customer, and a bad row — all after 2024-02-29.
    let later = "a,a2,2024-03-05T10:00:00Z,-20.00,web\nz,z1,2024-05-01T10:00:00Z,5.00,app\nq,q1,2024-06-01T10:00:00Z,oops,web\n";
    ws.write("tx.csv", format!("{FIXTURE_A}{later}"));
    ws.run_ok("2024-02-29");
    for (t, b) in TABLES.iter().zip(&before) {
        let a = read_partition(&ws.path(&format!("out/{t}/as_of=2024-02-29"))).0;
        assert_same(&a, b, t);
    }
    // …while as of 2024-03-31 the refund is seen: a's revenue is 30 − 20 = 10.
    ws.run_ok("2024-03-31");
    let t = ws.table("customers", "2024-03-31");
    let a = t.find(&[("customer_id", "a")]);
    assert_eq!(t.f64("revenue", a), Some(10.0));
    // a2 is now worth 0 → not a purchase: a has one purchase left.
    assert_eq!(t.int("orders", a), Some(1));
}

#[test]
fn second_writer_fails_fast_naming_the_holder() {
    let ws = Workspace::new();
    ws.write("tx.csv", FIXTURE_A);
    ws.config(&["tx.csv"], DEFAULT_COLUMNS, MONTH_31, "");
    let holder = r#"{"run_id":"20260101T000000000Z-deadbeef","pid":4242,"host":"scheduler-7","started_at":"2026-01-01T00:00:00Z"}"#;
    ws.write("out/_lock", holder);
    let o = ws.run_as_of("2024-04-15", &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("locked by run 20260101T000000000Z-deadbeef (pid 4242 on scheduler-7"),
        "{err}"
    );
    assert!(err.contains("--force-unlock"), "{err}");
    assert!(
        !ws.path("out/customers").exists(),
        "nothing published while locked"
    );

    // --force-unlock takes it over; the lock is released at the end.
    ok(&ws.run_as_of("2024-04-15", &["--force-unlock"]));
    assert!(!ws.path("out/_lock").exists());

    // A lock not renewed for output.lock_timeout_minutes is a dead run's, on whatever host:
    // taken over.
    ws.write("out/_lock", holder);
    let old = std::process::Command::new("touch")
        .args([
            "-d",
            "2 days ago",
            &ws.path("out/_lock").display().to_string(),
        ])
        .status()
        .unwrap();
    assert!(old.success());
    ws.run_ok("2024-04-15");
    assert!(!ws.path("out/_lock").exists());
}

#[test]
fn a_lock_left_by_a_killed_run_of_this_host_is_taken_over() {
    let ws = Workspace::new();
    ws.write("tx.csv", FIXTURE_A);
    ws.config(&["tx.csv"], DEFAULT_COLUMNS, MONTH_31, "");
    let lock = |pid: u32| lock_of_this_host("20260101T000000000Z-0000dead", pid);
    // A holder killed the way a scheduler's timeout ends a task (SIGKILL: no chance to clean
    // up): its lock is fresh, far from the timeout, and names a pid that no longer runs.
    ws.write("out/_lock", lock(killed_pid()));
    ws.write(
        "out/_staging/20260101T000000000Z-0000dead/customers/as_of=2024-04-15/part.parquet",
        "half written",
    );
    let o = ws.run_as_of("2024-04-15", &[]);
    let log = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{log}");
    assert!(log.contains("holder_dead=true"), "{log}");
    assert!(ws.path("out/_manifests/as_of=2024-04-15.json").exists());
    assert!(!ws.path("out/_lock").exists(), "released at the end");
    // What the killed run had staged is swept once the lock is held.
    assert!(
        log.contains("Removed the staging folder of a run that did not finish"),
        "{log}"
    );
    assert!(!ws.path("out/_staging").exists());
    // Text logs to a file or pipe carry no terminal colour codes.
    assert!(!log.contains('\u{1b}'), "{log}");

    // The same lock held by a process of this host that still runs (this test) stops the run.
    ws.write("out/_lock", lock(std::process::id()));
    let o = ws.run_as_of("2024-04-15", &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("locked by run 20260101T000000000Z-0000dead"),
        "{err}"
    );
}

#[test]
fn a_backfill_stopped_by_sigterm_releases_its_lock_and_keeps_only_whole_partitions() {
    // The bundled sample, backfilled week by week (104 dates): SIGTERM (what Airflow sends on a
    // task timeout) arrives while the first date is being published. Held in memory, and
    // spilled to 4 partitions in a spill folder of the workspace.
    for spilled in [false, true] {
        let ws = Workspace::new();
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let default = std::fs::read_to_string(root.join("config/default.toml")).unwrap();
        let input = root.join("data/transactions.csv.gz").display().to_string();
        let spill = ws.path("spill");
        std::fs::create_dir_all(&spill).unwrap();
        let mut cfg = default
            .replace(
                "paths = [\"data/transactions.csv.gz\"]",
                &format!("paths = [{input:?}]"),
            )
            .replace(
                "path = \"out\"",
                &format!("path = {:?}", ws.path("out").display().to_string()),
            )
            .replace(
                "spill_dir = \"\"",
                &format!("spill_dir = {:?}", spill.display().to_string()),
            );
        if spilled {
            cfg = cfg.replace("partitions = 0", "partitions = 4");
        }
        ws.write("config.toml", cfg);
        let lock = ws.path("out/_lock");
        // Held after the first date's manifest: SIGTERM arrives inside that publish.
        let o = ws.backfill_stopped_by_sigterm(&[], "publish:manifest");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "spilled {spilled}: {err}");
        assert!(
            err.contains("error: stopped by SIGTERM;")
                && err.contains("the output lock is released"),
            "{err}"
        );
        assert!(!lock.exists(), "lock released");
        assert!(!ws.path("out/_staging").exists(), "staging removed");
        let left: Vec<_> = std::fs::read_dir(&spill).unwrap().collect();
        assert!(left.is_empty(), "spill folder emptied: {left:?}");
        // Every date published before the signal is whole: its manifest's files all exist.
        let manifests: Vec<_> = std::fs::read_dir(ws.path("out/_manifests"))
            .map(|d| d.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default();
        assert!(!manifests.is_empty(), "the publish under way was finished");
        assert!(manifests.len() < 104, "stopped before the last date");
        for m in &manifests {
            let m: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(m).unwrap()).unwrap();
            for (table, entry) in m["tables"].as_object().unwrap() {
                for f in entry["files"].as_array().unwrap() {
                    let path = ws.path(&format!("out/{}", f["path"].as_str().unwrap()));
                    assert!(path.exists(), "{table}: {} missing", path.display());
                }
            }
        }
        // The lock is free: a rerun goes through at once.
        ws.run_ok("2024-12-31");
    }
}

#[test]
fn json_logs_of_every_date_carry_run_id_and_as_of() {
    // Dates are computed and published on different threads (a two-stage pipeline): every
    // per-date log line must still name its run and its date.
    // Without the customers table, two dates are computed at once: checked both ways.
    let ws = fixture_to("bf");
    for tables in [
        "customers,retention,cohorts,ltv,rejects",
        "retention,cohorts",
    ] {
        json_logs_carry_run_id_and_as_of(&ws, tables);
    }
}

fn json_logs_carry_run_id_and_as_of(ws: &Workspace, tables: &str) {
    let o = backfill(
        ws,
        "2024-01-01",
        "2024-03-31",
        &["--log-format", "json", "--tables", tables],
        &[("CUSTOMER_VALUE_LOG".into(), "info".into())],
    );
    ok(&o);
    let mut published = Vec::new();
    let mut per_date_lines = 0;
    for line in String::from_utf8_lossy(&o.stderr).lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("every stderr line is JSON");
        let spans = v["spans"].as_array().cloned().unwrap_or_default();
        let field = |k: &str| spans.iter().find_map(|s| s[k].as_str().map(str::to_string));
        let message = v["message"].as_str().unwrap_or("");
        let stage = v["stage"].as_str().unwrap_or("");
        if message == "Partition published." || stage == "metrics" || stage == "write" {
            per_date_lines += 1;
            assert!(field("run_id").is_some(), "no run_id: {line}");
            let as_of = field("as_of").unwrap_or_else(|| panic!("no as_of: {line}"));
            if message == "Partition published." {
                let manifest = v["manifest"].as_str().unwrap();
                assert!(manifest.contains(&format!("as_of={as_of}")), "{line}");
                published.push(as_of);
            }
        }
    }
    // 3 dates × (metrics, write, published).
    assert_eq!(per_date_lines, 9, "{tables}");
    assert_eq!(
        published,
        ["2024-01-31", "2024-02-29", "2024-03-31"],
        "{tables}"
    );
}

#[test]
fn small_row_groups_hold_the_same_rows_with_statistics_and_sort_order() {
    // Columns are encoded in parallel per row group; with row_group_rows = 2 every table of
    // fixture A spans several row groups, which must read back exactly as one row group does.
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let ws = fixture_to("one");
    ws.run_ok("2024-03-31");
    config_to(&ws, "small");
    let cfg = std::fs::read_to_string(ws.path("config.toml")).unwrap() + "row_group_rows = 2\n";
    ws.write("config.toml", cfg);
    ws.run_ok("2024-03-31");
    for t in TABLES {
        let dir = |out: &str| ws.path(&format!("{out}/{t}/as_of=2024-03-31"));
        let (a, b) = (read_partition(&dir("one")), read_partition(&dir("small")));
        assert_same(&a.0, &b.0, t);
        let rows = b.rows();
        let file = std::fs::read_dir(dir("small"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "parquet"))
            .unwrap();
        let reader = SerializedFileReader::new(std::fs::File::open(&file).unwrap()).unwrap();
        let meta = reader.metadata();
        assert_eq!(meta.num_row_groups(), rows.div_ceil(2), "{t}: {rows} rows");
        for rg in meta.row_groups() {
            assert!(rg.num_rows() <= 2);
            assert!(rg.sorting_columns().is_some_and(|s| !s.is_empty()), "{t}");
            assert!(rg.column(0).statistics().is_some(), "{t}: no statistics");
        }
    }
}

#[test]
fn per_file_accounting_of_every_date_with_two_input_files() {
    // File a.csv: lines on Jan 10, Feb 10, Mar 10. File b.csv: Jan 20, a bad amount on Feb 20,
    // Mar 20. Files are read one after another, lines are attributed to files by runs.
    // As of Jan 31: a used 1 (after 2), b used 1 (after 2: the bad row is after as_of too).
    // As of Feb 29: a used 2 (after 1), b used 1, rejected 1 (after 1).
    let ws = Workspace::new();
    let head = "customer_id,order_id,ts,amount,channel\n";
    ws.write(
        "a.csv",
        format!(
            "{head}x,1,2024-01-10,1.00,web\nx,2,2024-02-10,2.00,web\ny,3,2024-03-10,3.00,app\n"
        ),
    );
    ws.write(
        "b.csv",
        format!(
            "{head}z,4,2024-01-20,4.00,web\nz,5,2024-02-20,oops,web\nz,6,2024-03-20,6.00,web\n"
        ),
    );
    let cfg = crate::util::config(
        &[
            &ws.path("a.csv").display().to_string(),
            &ws.path("b.csv").display().to_string(),
        ],
        &ws.path("bf").display().to_string(),
        DEFAULT_COLUMNS,
        MONTH_31,
        "",
    );
    ws.write("config.toml", cfg);
    ok(&backfill(&ws, "2024-01-01", "2024-02-29", &[], &[]));
    let inputs = |d: &str| -> Vec<(u64, u64, u64, u64)> {
        ws.manifest_in("bf", d)["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                let n = |k: &str| f[k].as_u64().unwrap();
                (
                    n("rows_read"),
                    n("rows_used"),
                    n("rows_rejected"),
                    n("rows_after_as_of"),
                )
            })
            .collect()
    };
    assert_eq!(inputs("2024-01-31"), vec![(3, 1, 0, 2), (3, 1, 0, 2)]);
    assert_eq!(inputs("2024-02-29"), vec![(3, 2, 0, 1), (3, 1, 1, 1)]);
}

#[test]
fn tables_flag_with_an_unreadable_previous_manifest_warns_and_lists_what_it_wrote() {
    // The previous manifest of 2024-01-31 is damaged. A run of two tables still succeeds: it
    // says so on stderr, naming the manifest; the new manifest lists only the two tables it
    // wrote (nothing it cannot vouch for); the other tables' partitions stay on disk as they were.
    let ws = fixture_to("bf");
    ws.run_ok("2024-01-31");
    let customers_before = read_partition(&ws.path("bf/customers/as_of=2024-01-31")).0;
    ws.write("bf/_manifests/as_of=2024-01-31.json", "{ not json");
    let o = ws.run_as_of("2024-01-31", &["--tables", "retention,cohorts"]);
    ok(&o);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("Could not read the previous manifest")
            && err.contains("as_of=2024-01-31.json"),
        "{err}"
    );
    let m = ws.manifest_in("bf", "2024-01-31");
    let listed: Vec<&String> = m["tables"].as_object().unwrap().keys().collect();
    assert_eq!(listed, ["cohorts", "retention"]);
    let customers_after = read_partition(&ws.path("bf/customers/as_of=2024-01-31")).0;
    assert_same(
        &customers_after,
        &customers_before,
        "untouched customers partition",
    );
}

#[test]
fn tables_flag_writes_those_and_keeps_the_others_listed() {
    let ws = fixture_to("bf");
    ws.run_ok("2024-01-31");
    let first = ws.manifest_in("bf", "2024-01-31");
    let r1 = first["run_id"].as_str().unwrap().to_string();
    let customers_before = read_partition(&ws.path("bf/customers/as_of=2024-01-31")).0;

    let o = backfill(
        &ws,
        "2024-01-01",
        "2024-02-29",
        &["--tables", "retention,cohorts"],
        &[],
    );
    ok(&o);
    let m = ws.manifest_in("bf", "2024-01-31");
    assert_ne!(m["run_id"], first["run_id"]);
    // Written by the backfill: no run_id of their own, new files.
    for t in ["retention", "cohorts"] {
        assert!(m["tables"][t].get("run_id").is_none(), "{t}: {m}");
        assert_ne!(m["tables"][t]["files"], first["tables"][t]["files"], "{t}");
    }
    // Left out: the first run's partitions, still listed and marked with its run.
    for t in ["customers", "ltv", "rejects"] {
        let mut kept = m["tables"][t].clone();
        assert_eq!(kept["run_id"].as_str(), Some(r1.as_str()), "{t}: {m}");
        kept.as_object_mut().unwrap().remove("run_id");
        assert_eq!(kept, first["tables"][t], "{t}");
    }
    let customers_after = read_partition(&ws.path("bf/customers/as_of=2024-01-31")).0;
    assert_same(
        &customers_after,
        &customers_before,
        "kept customers partition",
    );
    // Customers as of 2024-01-31 counted even though the table was not written: a, b, e, f
    // have lines before February (x's and the empty id's rows are rejected).
    assert_eq!(m["customers"], 4);

    // 2024-02-29 had no earlier manifest: only the two tables exist; d joins (a refund order on
    // 02-10), c only in March → a, b, d, e, f = 5 customers.
    let m = ws.manifest_in("bf", "2024-02-29");
    let listed: Vec<&String> = m["tables"].as_object().unwrap().keys().collect();
    assert_eq!(listed, ["cohorts", "retention"]);
    assert_eq!(m["customers"], 5);
    assert!(!ws.path("bf/customers/as_of=2024-02-29").exists());
    // …and the tables written equal a full single run's.
    config_to(&ws, "single");
    ws.run_ok("2024-02-29");
    for t in ["retention", "cohorts"] {
        let a = read_partition(&ws.path(&format!("bf/{t}/as_of=2024-02-29"))).0;
        let b = read_partition(&ws.path(&format!("single/{t}/as_of=2024-02-29"))).0;
        assert_same(&a, &b, t);
    }

    // A full rerun of 2024-01-31 writes and lists all five again.
    config_to(&ws, "bf");
    ws.run_ok("2024-01-31");
    let m = ws.manifest_in("bf", "2024-01-31");
    for t in TABLES {
        assert!(m["tables"][t].get("run_id").is_none(), "{t}: {m}");
    }

    // An unknown table is a usage error naming the flag.
    let o = ws.run_as_of("2024-01-31", &["--tables", "customer"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("--tables"), "{err}");
}
