//! Bad input and bad configuration: each gives a clear stderr line and the documented exit code,
//! or a reject with a reason; nothing is published by a failed run.

use std::sync::Arc;

use arrow::array::{BooleanArray, StringArray};

use crate::util::{Workspace, DEFAULT_COLUMNS};

const HEADER: &str = "customer_id,order_id,ts,amount,channel\n";

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

fn run_fails(ws: &Workspace, code: i32, needles: &[&str]) -> String {
    let o = ws.run_as_of("2024-06-30", &[]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(code), "stderr: {err}");
    for n in needles {
        assert!(err.contains(n), "expected {n:?} in stderr: {err}");
    }
    let error_lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(error_lines.len(), 1, "one error line: {err}");
    err
}

fn ws_with(content: impl AsRef<[u8]>) -> Workspace {
    let ws = Workspace::new();
    ws.write("tx.csv", content);
    ws.config(&["tx.csv"], DEFAULT_COLUMNS, "", "");
    ws
}

#[test]
fn missing_column_names_file_and_column() {
    let ws = ws_with("customer_id,order_id,when,amount,channel\na,1,2024-01-01,1.00,web\n");
    run_fails(&ws, 3, &["tx.csv", "'ts'", "input.columns.ts", "when"]);
    let o = ws.run(&["validate", "--config", "config.toml"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(stderr(&o).contains("'ts'"));
    assert!(
        !ws.path("out").exists(),
        "validate and failed runs write nothing"
    );
}

#[test]
fn wrong_column_type_in_parquet() {
    let ws = Workspace::with_parquet(vec![
        ("customer_id", Arc::new(StringArray::from(vec!["a"]))),
        ("order_id", Arc::new(StringArray::from(vec!["1"]))),
        ("ts", Arc::new(StringArray::from(vec!["2024-01-01"]))),
        ("amount", Arc::new(BooleanArray::from(vec![true]))),
        ("channel", Arc::new(StringArray::from(vec!["web"]))),
    ]);
    run_fails(&ws, 3, &["tx.parquet", "'amount'", "bool"]);
}

#[test]
fn row_level_problems_become_rejects() {
    // 9 good rows and 6 bad ones; max_reject_ratio 0.5 in the test config lets the run pass.
    let mut csv = String::from(HEADER);
    for i in 0..9 {
        csv.push_str(&format!(
            "g{i},o{i},2024-01-0{}T10:00:00Z,1.00,web\n",
            i + 1
        ));
    }
    csv.push_str("b1,x1,31/01/2024,1.00,web\n"); // row 10
    csv.push_str("b2,x2,2024-01-05,NaN,web\n"); // row 11
    csv.push_str("b3,x3,2024-01-05,inf,web\n"); // row 12
    csv.push_str("  ,x4,2024-01-05,1.00,web\n"); // row 13
    csv.push_str("b5,x5,,1.00,web\n"); // row 14
    let mut bytes = csv.into_bytes();
    bytes.extend_from_slice(b"b\xff6,x6,2024-01-05,1.00,web\n"); // row 15
    let ws = ws_with(bytes);
    ws.run_ok("2024-06-30");
    let t = ws.table("rejects", "2024-06-30");
    let reasons: Vec<(i64, String)> = (0..t.rows())
        .map(|i| (t.int("source_row", i).unwrap(), t.str("reason", i).unwrap()))
        .collect();
    assert_eq!(
        reasons,
        vec![
            (10, "ts: not a valid timestamp".to_string()),
            (11, "amount: not finite (NaN or infinity)".to_string()),
            (12, "amount: not finite (NaN or infinity)".to_string()),
            (13, "customer_id: missing or empty".to_string()),
            (14, "ts: missing".to_string()),
            (15, "customer_id: not valid UTF-8".to_string()),
        ]
    );
    let m = ws.manifest("2024-06-30");
    assert_eq!(m["rows_read"], 15);
    assert_eq!(m["rows_used"], 9);
    assert_eq!(m["rows_rejected"], 6);
}

#[test]
fn replacement_character_in_parquet_is_data() {
    // Only CSV text is decoded lossily (invalid bytes become U+FFFD and the row is rejected,
    // see above). A Parquet string is valid UTF-8, so a U+FFFD in it is a real character.
    let ws = Workspace::with_parquet(vec![
        (
            "customer_id",
            Arc::new(StringArray::from(vec!["a\u{FFFD}", "b"])),
        ),
        (
            "order_id",
            Arc::new(StringArray::from(vec!["1", "2\u{FFFD}"])),
        ),
        (
            "ts",
            Arc::new(StringArray::from(vec!["2024-01-01", "2024-01-02"])),
        ),
        ("amount", Arc::new(StringArray::from(vec!["1.50", "2.25"]))),
        (
            "channel",
            Arc::new(StringArray::from(vec!["web", "\u{FFFD}"])),
        ),
    ]);
    ws.run_ok("2024-06-30");
    let m = ws.manifest("2024-06-30");
    assert_eq!(
        (m["rows_used"].as_u64(), m["rows_rejected"].as_u64()),
        (Some(2), Some(0))
    );
    let t = ws.table("customers", "2024-06-30");
    assert_eq!(t.rows(), 2);
    let a = t.find(&[("customer_id", "a\u{FFFD}")]);
    assert_eq!(t.str("channel", a).as_deref(), Some("web"));
    let b = t.find(&[("customer_id", "b")]);
    assert_eq!(t.str("channel", b).as_deref(), Some("\u{FFFD}"));
}

#[test]
fn bom_and_crlf_are_read() {
    // A UTF-8 BOM before the header and CRLF line ends: the first column is still
    // `customer_id`, and values carry no '\r'.
    let ws = ws_with("\u{feff}customer_id,order_id,ts,amount,channel\r\na,1,2024-01-02,1.50,web\r\nb,2,2024-01-03,2.50,app\r\n");
    ws.run_ok("2024-06-30");
    let t = ws.table("customers", "2024-06-30");
    assert_eq!(t.rows(), 2);
    let b = t.find(&[("customer_id", "b")]);
    assert_eq!(t.str("channel", b).as_deref(), Some("app"));
    assert_eq!(ws.manifest("2024-06-30")["rows_rejected"], 0);
}

#[test]
fn empty_file_is_an_error_header_only_is_zero_rows() {
    let ws = ws_with("");
    run_fails(&ws, 1, &["tx.csv", "empty"]);

    let ws = Workspace::new();
    ws.write("a.csv", HEADER);
    ws.write("b.csv", format!("{HEADER}a,1,2024-01-02,1.00,web\n"));
    ws.config(&["a.csv", "b.csv"], DEFAULT_COLUMNS, "", "");
    ws.run_ok("2024-06-30");
    let m = ws.manifest("2024-06-30");
    assert_eq!(m["inputs"][0]["rows_read"], 0);
    assert_eq!(m["rows_read"], 1);
}

#[test]
fn unreadable_path_and_as_of_before_data() {
    let ws = Workspace::new();
    ws.config(&["nope.csv"], DEFAULT_COLUMNS, "", "");
    run_fails(&ws, 1, &["nope.csv"]);

    let ws = ws_with(format!("{HEADER}a,1,2024-07-02,1.00,web\n"));
    let err = run_fails(
        &ws,
        3,
        &["no usable transactions", "2024-06-30", "1 after as_of"],
    );
    assert!(!err.contains("panicked"));
}

#[test]
fn too_many_rejects_fail_and_keep_the_previous_partition() {
    let ws = ws_with(format!(
        "{HEADER}a,1,2024-01-02,1.00,web\nb,2,2024-01-02,x,web\n"
    ));
    ws.config(&["tx.csv"], DEFAULT_COLUMNS, "", "");
    ws.run_ok("2024-06-30"); // 1 of 2 rejected = 0.5, not above 0.5
    let before = std::fs::read(ws.path("out/_manifests/as_of=2024-06-30.json")).unwrap();
    let files_before: Vec<_> = std::fs::read_dir(ws.path("out/customers/as_of=2024-06-30"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    ws.write(
        "tx.csv",
        format!("{HEADER}a,1,2024-01-02,1.00,web\nb,2,2024-01-02,x,web\nc,3,2024-01-02,y,web\n"),
    );
    run_fails(
        &ws,
        3,
        &["2 of 3 rows", "max_reject_ratio", "amount: not a number"],
    );
    assert_eq!(
        std::fs::read(ws.path("out/_manifests/as_of=2024-06-30.json")).unwrap(),
        before
    );
    let files_after: Vec<_> = std::fs::read_dir(ws.path("out/customers/as_of=2024-06-30"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(files_before, files_after);
}

#[test]
fn output_not_writable() {
    // The output path runs through a regular file, so no folder can be created there (this
    // also holds for root, who ignores permission bits).
    let ws = ws_with(format!("{HEADER}a,1,2024-01-02,1.00,web\n"));
    ws.write("blocker", "not a folder");
    let o = ws.run_as_of("2024-06-30", &["--output", "blocker/out"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("blocker/out"), "{err}");
}

#[test]
fn config_errors_exit_2_naming_the_key() {
    let ws = ws_with(format!("{HEADER}a,1,2024-01-02,1.00,web\n"));
    let cfg = std::fs::read_to_string(ws.path("config.toml")).unwrap();
    ws.write(
        "config.toml",
        cfg.replace("[metrics]\n", "[metrics]\nchurn_window = 5\n"),
    );
    let err = run_fails(&ws, 2, &["churn_window"]);
    assert!(err.contains("config.toml"));

    ws.write(
        "config.toml",
        cfg.replace("[metrics]\n", "[metrics]\nperiod = \"quarter\"\nchurn_window_days = 60\ntimezone = \"Nowhere/City\"\n"),
    );
    run_fails(
        &ws,
        2,
        &["metrics.churn_window_days: 60", "92", "metrics.timezone"],
    );

    ws.write("config.toml", cfg.clone());
    let o = ws.run_as_of("2024-13-01", &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("as_of"));
}

#[test]
fn config_and_as_of_problems_reported_together() {
    let ws = ws_with(format!("{HEADER}a,1,2024-01-02,1.00,web\n"));
    let cfg = std::fs::read_to_string(ws.path("config.toml")).unwrap();
    ws.write(
        "config.toml",
        cfg.replace("[metrics]\n", "[metrics]\ntimezone = \"Nowhere/City\"\n"),
    );
    let o = ws.run_as_of("31.12.2024", &[]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("metrics.timezone") && err.contains("as_of: '31.12.2024'"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn boolean_env_twins_accept_1_and_true() {
    // Schedulers set flags through the environment as 1/true/yes.
    let ws = ws_with(format!("{HEADER}a,1,2024-01-02,1.00,web\n"));
    for v in ["1", "true", "yes"] {
        let o = ws.run_env(
            &["run", "--config", "config.toml", "--as-of", "2024-06-30"],
            &[
                ("CUSTOMER_VALUE_NO_PROGRESS".into(), v.into()),
                ("CUSTOMER_VALUE_FORCE_UNLOCK".into(), v.into()),
            ],
        );
        assert!(o.status.success(), "{v}: {}", stderr(&o));
    }
}

#[test]
fn ancient_timestamps_are_rejected_not_stretched_over_centuries() {
    // "0024" instead of "2024": rejected, so the tables still start in 2024.
    let ws = ws_with(format!(
        "{HEADER}a,1,2024-01-02,1.00,web\nb,2,0024-01-02,1.00,web\nc,3,2024-02-02,1.00,web\n"
    ));
    ws.run_ok("2024-06-30");
    let r = ws.table("rejects", "2024-06-30");
    assert_eq!(r.str("reason", 0).as_deref(), Some("ts: before 1900-01-01"));
    let t = ws.table("retention", "2024-06-30");
    let all = t.filter(&[("segment", "__all__")]);
    assert_eq!(all.len(), 6, "Jan..Jun 2024");
}
