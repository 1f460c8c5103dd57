//! `schema --format sql|dbt` against real readers: DuckDB runs the generated statements over a
//! real output of two runs and every view returns the rows of its files, with the documented
//! types and comments; dbt (dbt-duckdb) runs the generated sources' tests, which pass on the
//! output and fail once a partition holds a duplicated file.

use std::process::Command;

use crate::util::{ok, read_partition, script_json, Workspace, TABLES};

const DATES: [&str; 2] = ["2024-06-30", "2024-12-31"];

/// Two runs of generated data with segments, refunds, multi-line orders and one rejected row.
fn published() -> Workspace {
    let ws = Workspace::new();
    ws.generated_with_a_reject();
    for d in DATES {
        ok(&ws.run_as_of(d, &[]));
    }
    ws
}

fn schema(ws: &Workspace, format: &str, dialect: &str) -> String {
    let o = ws.run(&[
        "schema",
        "--format",
        format,
        "--dialect",
        dialect,
        "--config",
        "config.toml",
    ]);
    ok(&o);
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn duckdb_views_read_every_table_of_every_run() {
    let ws = published();
    let sql = schema(&ws, "sql", "duckdb");
    ws.write("views.sql", &sql);
    let Some(python) = crate::tools::python() else {
        return;
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/query_views.py");
    let report = script_json(
        Command::new(&python)
            .arg(script)
            .arg(ws.path("out"))
            .arg(ws.path("views.sql"))
            .args(DATES),
    );
    let mut views: Vec<&str> = report["views"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    views.sort();
    let mut want = TABLES.to_vec();
    want.sort();
    assert_eq!(views, want);
    for table in TABLES {
        let t = &report["tables"][table];
        for d in DATES {
            let [by_view, by_files] = [0, 1].map(|i| t["rows"][d][i].as_u64().unwrap());
            assert_eq!(by_view, by_files, "{table} as_of={d}");
            let parquet_rows = read_partition(&ws.path(&format!("out/{table}/as_of={d}"))).rows();
            assert_eq!(by_view as usize, parquet_rows, "{table} as_of={d}");
            if table != "models" {
                assert!(by_view > 0, "{table} as_of={d} is empty");
            }
        }
        assert!(t["comment"].as_str().unwrap().contains("one row per"));
        let columns = t["columns"].as_array().unwrap();
        for c in columns {
            assert!(
                c[2].as_str().is_some_and(|s| !s.is_empty()),
                "{table}.{} has no comment",
                c[0]
            );
        }
        let last = &columns[columns.len() - 1];
        assert_eq!(
            (last[0].as_str(), last[1].as_str()),
            (Some("as_of"), Some("DATE"))
        );
    }
    let customers = &report["tables"]["customers"]["columns"];
    let ty = |name: &str| {
        customers
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c[0] == name)
            .map(|c| c[1].as_str().unwrap().to_string())
    };
    assert_eq!(ty("channel").as_deref(), Some("VARCHAR"));
    assert_eq!(ty("region").as_deref(), Some("VARCHAR"));
    assert_eq!(ty("orders").as_deref(), Some("BIGINT"));
    assert_eq!(
        ty("first_purchase_at").as_deref(),
        Some("TIMESTAMP WITH TIME ZONE")
    );
    for d in DATES {
        let t = read_partition(&ws.path(&format!("out/customers/as_of={d}")));
        let want: f64 = (0..t.rows()).filter_map(|i| t.f64("revenue", i)).sum();
        let got = report["revenue"][d].as_f64().unwrap();
        assert!(
            (got - want).abs() < 1e-6 * want.abs().max(1.0),
            "{d}: {got} vs {want}"
        );
    }
}

#[test]
fn dbt_runs_the_sources_tests_and_they_can_fail() {
    let ws = published();
    let yml = schema(&ws, "dbt", "duckdb");
    let Some(dbt) = crate::tools::dbt() else {
        return;
    };
    let project = ws.path("dbt");
    ws.write(
        "dbt/dbt_project.yml",
        "name: cv_check\nversion: \"1.0\"\nconfig-version: 2\nprofile: cv_check\n",
    );
    ws.write(
        "dbt/profiles.yml",
        format!(
            "cv_check:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n      path: {:?}\n      threads: 2\n",
            ws.path("dbt/check.duckdb")
        ),
    );
    ws.write("dbt/models/sources.yml", &yml);
    let dbt_test = || {
        Command::new(&dbt)
            .args(["test", "--profiles-dir", ".", "--project-dir", "."])
            .current_dir(&project)
            .env("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
            .output()
            .expect("dbt runs")
    };
    let out = dbt_test();
    let log = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "dbt test failed:\n{log}");
    // Every table has its grain test; every not-null column and enumeration one of its own.
    let passed = log
        .lines()
        .find_map(|l| l.split("PASS=").nth(1))
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or_else(|| panic!("no PASS= in dbt's output:\n{log}"));
    let expected = yml.matches("- not_null").count()
        + yml.matches("- accepted_values").count()
        + yml.matches("- unique").count();
    assert_eq!(passed, expected, "{log}");
    assert!(expected > 60, "{expected} tests");

    // A file copied into a partition duplicates its grain keys: the unique test must catch it.
    let dir = ws.path(&format!("out/retention/as_of={}", DATES[1]));
    let file = std::fs::read_dir(&dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::copy(&file, dir.join("part-copy.parquet")).unwrap();
    let out = dbt_test();
    let log = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        !out.status.success(),
        "dbt test passed on duplicated rows:\n{log}"
    );
    // Exactly the grain test of retention fails, with every row of the partition duplicated.
    let rows = read_partition(&dir).rows() / 2;
    assert!(log.contains(&format!("PASS={}", expected - 1)), "{log}");
    assert!(
        log.contains("Failure in test source_unique_customer_value_retention"),
        "{log}"
    );
    assert!(log.contains(&format!("Got {rows} results")), "{log}");
}
