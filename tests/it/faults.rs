//! The fault matrix of bad input, bad flags and bad configuration (see `FAULTS.md` for the whole
//! list with the other test files): each case either becomes rejects with their reasons and
//! line numbers while every other row still counts, or fails with one stderr line and the exit
//! code that tells a scheduler whether a retry can help (1 yes, 2 fix the config, 3 fix the data).
//! None may panic, lose rows silently or exit 0 with a wrong total.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Date32Array, Float64Array, StringArray, TimestampMicrosecondArray,
    TimestampMillisecondArray, UInt64Array,
};

use crate::util::{approx, Workspace, DEFAULT_COLUMNS};

const HEADER: &str = "customer_id,order_id,ts,amount,channel\n";
const AS_OF: &str = "2024-06-30";

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// A workspace reading `tx.csv` (or `tx.{ext}`) with the default mapping and `input_extra`.
fn ws_with(name: &str, content: impl AsRef<[u8]>, input_extra: &str) -> Workspace {
    let ws = Workspace::new();
    ws.write(name, content);
    ws.config(&[name], DEFAULT_COLUMNS, "", input_extra);
    ws
}

/// Sets input.max_reject_ratio in the workspace's config.
fn reject_ratio(ws: &Workspace, ratio: &str) {
    let cfg = std::fs::read_to_string(ws.path("config.toml")).unwrap();
    ws.write(
        "config.toml",
        cfg.replace(
            "max_reject_ratio = 0.5",
            &format!("max_reject_ratio = {ratio}"),
        ),
    );
}

/// Runs as of AS_OF (plus `extra` flags), expects exit `code` and one `error:` line holding
/// every needle, shorter than 500 characters; nothing published.
fn fails(ws: &Workspace, extra: &[&str], code: i32, needles: &[&str]) -> String {
    let o = ws.run_as_of(AS_OF, extra);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(code), "stderr: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "one error line: {err}");
    assert!(lines[0].chars().count() < 500, "short: {}", lines[0]);
    for n in needles {
        assert!(lines[0].contains(n), "expected {n:?} in: {}", lines[0]);
    }
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        !ws.path(&format!("out/_manifests/as_of={AS_OF}.json"))
            .exists(),
        "nothing published"
    );
    err
}

/// (source_row, reason) of every reject, in order.
fn rejects(ws: &Workspace) -> Vec<(i64, String)> {
    let t = ws.table("rejects", AS_OF);
    (0..t.rows())
        .map(|i| (t.int("source_row", i).unwrap(), t.str("reason", i).unwrap()))
        .collect()
}

/// Net revenue of all periods of the `all` retention rows.
fn total_revenue(ws: &Workspace) -> f64 {
    let t = ws.table("retention", AS_OF);
    t.filter(&[("segment_by", "all")])
        .into_iter()
        .map(|i| t.f64("revenue", i).unwrap())
        .sum()
}

fn line(i: usize, amount: &str) -> String {
    format!("c{i},o{i},2024-01-{:02},{amount},web\n", i % 28 + 1)
}

#[test]
fn a_stray_quote_is_a_reject_and_swallows_no_rows() {
    // 23 data lines of 1.00 each; line 3 opens a quote in its free-text channel that line 23
    // closes. Read as records, lines 3..23 became one row and 20.00 vanished into a segment
    // value. Now each line is a record: lines 3 and 23 (odd quotes) are rejected, the other 21
    // count: revenue 21 × 1.00 = 21.00.
    let mut csv = String::from(HEADER);
    for i in 1..=23 {
        csv.push_str(&match i {
            3 => "c3,o3,2024-01-03,1.00,\"web note\n".to_string(),
            23 => "c23,o23,2024-01-23,1.00,app\"\n".to_string(),
            _ => line(i, "1.00"),
        });
    }
    let ws = ws_with("tx.csv", &csv, "");
    ws.run_ok(AS_OF);
    let m = ws.manifest(AS_OF);
    assert_eq!(
        (m["rows_read"].as_u64(), m["rows_used"].as_u64()),
        (Some(23), Some(21))
    );
    let unbalanced = "csv: unbalanced quotes (a quoted value may not span lines unless input.csv.allow_quoted_newlines)";
    assert_eq!(
        rejects(&ws),
        vec![(3, unbalanced.to_string()), (23, unbalanced.to_string())]
    );
    assert!(approx(Some(total_revenue(&ws)), 21.0));

    // Opted in: the quote spans lines 3..23, one record of 21 lines; a bad date after it, on
    // data line 24 (the reader's 4th record), is named by its line.
    let mut multi = csv.clone();
    multi.push_str("c24,o24,24/01/2024,1.00,web\n");
    let ws = ws_with(
        "tx.csv",
        &multi,
        "[input.csv]\nallow_quoted_newlines = true\n",
    );
    ws.run_ok(AS_OF);
    let m = ws.manifest(AS_OF);
    assert_eq!(m["rows_read"], 4, "records, not lines");
    assert_eq!(
        rejects(&ws),
        vec![(24, "ts: not a valid timestamp".to_string())]
    );
    // Rows 1, 2 and the long record (c3 with 1.00): 3.00.
    assert!(approx(Some(total_revenue(&ws)), 3.0));
}

#[test]
fn an_unclosed_quote_with_quoted_newlines_allowed_is_one_reject() {
    // The quote on line 2 never closes: the rest of the file is one broken record, rejected
    // and named by its first line; the error of the old reader quoted every row in one line.
    let mut csv = String::from(HEADER);
    csv.push_str(&line(1, "5.00"));
    csv.push_str("c2,o2,2024-01-02,1.00,\"web\n");
    for i in 3..2000 {
        csv.push_str(&line(i, "1.00"));
    }
    let ws = ws_with(
        "tx.csv",
        &csv,
        "[input.csv]\nallow_quoted_newlines = true\n",
    );
    reject_ratio(&ws, "0.6");
    ws.run_ok(AS_OF);
    assert_eq!(
        rejects(&ws),
        vec![(2, "csv: a quote opened here never closes".to_string())]
    );
    assert!(approx(Some(total_revenue(&ws)), 5.0));
}

#[test]
fn blank_lines_are_skipped_and_counted_not_rejected() {
    // 2 rows between 3 blank lines (one of spaces, one CRLF): nothing rejected, so a small
    // file is not failed by max_reject_ratio; the manifest counts the blank lines.
    let csv = format!("{HEADER}\n{}   \n{}\r\n", line(1, "2.00"), line(2, "3.00"));
    let ws = ws_with("tx.csv", csv, "");
    reject_ratio(&ws, "0.0");
    ws.run_ok(AS_OF);
    let m = ws.manifest(AS_OF);
    assert_eq!(m["rows_read"], 2);
    assert_eq!(m["rows_rejected"], 0);
    assert_eq!(m["inputs"][0]["blank_lines"], 3);
    assert!(approx(Some(total_revenue(&ws)), 5.0));
}

#[test]
fn ragged_rows_are_rejects_with_their_lines() {
    let csv = format!(
        "{HEADER}{}c2,o2,2024-01-02,1.00,web,extra\nc3,o3,2024-01-03,1.00\n{}",
        line(1, "1.00"),
        line(4, "1.00")
    );
    let ws = ws_with("tx.csv", csv, "");
    ws.run_ok(AS_OF);
    assert_eq!(
        rejects(&ws),
        vec![
            (2, "csv: more fields than the header".to_string()),
            (3, "csv: fewer fields than the header".to_string())
        ]
    );
    assert_eq!(ws.manifest(AS_OF)["rows_used"], 2);
}

#[test]
fn a_duplicated_header_is_refused_naming_the_column() {
    let ws = ws_with(
        "tx.csv",
        "customer_id,order_id,ts,amount,amount\nc1,o1,2024-01-01,1.00,2.00\n",
        "",
    );
    fails(
        &ws,
        &[],
        3,
        &["tx.csv", "'amount' twice", "columns 4 and 5"],
    );
}

#[test]
fn ndjson_lines_are_judged_one_by_one() {
    // Line 2 is cut off (not JSON), line 3 is JSON but not an object, line 4 is blank: the
    // reader failed the whole file on line 2 without a line number.
    let nd = concat!(
        "{\"customer_id\":\"a\",\"order_id\":\"1\",\"ts\":\"2024-01-02\",\"amount\":\"2.00\",\"channel\":\"web\"}\n",
        "{\"customer_id\":\"b\",\"order_id\":\"2\",\"ts\":\"2024-01-03\",\"amou\n",
        "[1, 2]\n",
        "\n",
        "{\"customer_id\":\"c\",\"order_id\":\"3\",\"ts\":\"2024-01-04\",\"amount\":\"3.00\",\"channel\":\"app\"}\n",
    );
    let ws = ws_with("tx.ndjson", nd, "");
    ws.run_ok(AS_OF);
    assert_eq!(
        rejects(&ws),
        vec![
            (2, "ndjson: not valid JSON".to_string()),
            (3, "ndjson: not a JSON object".to_string())
        ]
    );
    let m = ws.manifest(AS_OF);
    assert_eq!(
        (m["rows_read"].as_u64(), m["rows_used"].as_u64()),
        (Some(4), Some(2))
    );
    assert_eq!(m["inputs"][0]["blank_lines"], 1);
    assert!(approx(Some(total_revenue(&ws)), 5.0));
}

#[test]
fn the_same_input_reached_twice_is_read_once() {
    // One file listed as itself, through its folder, a glob and a `..` path: 2.50 once.
    let ws = Workspace::new();
    ws.write("in/tx.csv", format!("{HEADER}{}", line(1, "2.50")));
    ws.write("in/sub/notes.md", "not an input");
    let d = ws.path("in").display().to_string();
    let inputs = [
        format!("{d}/tx.csv"),
        d.clone(),
        format!("{d}/*.csv"),
        format!("{d}/sub/../tx.csv"),
    ];
    let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
    let out = ws.path("out").display().to_string();
    ws.write(
        "config.toml",
        crate::util::config(&refs, &out, DEFAULT_COLUMNS, "", ""),
    );
    ws.run_ok(AS_OF);
    let m = ws.manifest(AS_OF);
    assert_eq!(m["rows_read"], 1);
    assert_eq!(m["inputs"].as_array().unwrap().len(), 1);
    assert!(approx(Some(total_revenue(&ws)), 2.5));

    // A copy under another name is read (it may be meant), with a warning in the manifest.
    ws.write("in/copy.csv", format!("{HEADER}{}", line(1, "2.50")));
    ws.run_ok(AS_OF);
    let m = ws.manifest(AS_OF);
    let warnings = m["warnings"].as_array().expect("warnings");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let w = warnings[0].as_str().unwrap();
    assert!(
        w.contains("copy.csv") && w.contains("tx.csv") && w.contains("sha256"),
        "{w}"
    );
}

#[test]
fn money_beyond_exact_sums_fails_naming_the_row() {
    // 100 lines of 1e15 = 1e17 cents each: the 93rd brings the sum of |amounts| to
    // 93e17 = 9.3e18 > i64::MAX = 9.22e18 cents (92e17 is still below); the old sums wrapped
    // to a negative total and the run succeeded.
    let mut csv = String::from(HEADER);
    for i in 1..=100 {
        csv.push_str(&line(i, "1000000000000000"));
    }
    let ws = ws_with("tx.csv", csv, "");
    fails(&ws, &[], 3, &["tx.csv", "row 93", "minor units"]);

    // One line beyond i64 cents is a reject of its own (the per-line bound).
    let csv = format!(
        "{HEADER}{}{}",
        line(1, "1.00"),
        line(2, "100000000000000000")
    );
    let ws = ws_with("tx.csv", csv, "");
    ws.run_ok(AS_OF);
    assert_eq!(rejects(&ws), vec![(2, "amount: out of range".to_string())]);
}

fn strs(v: &[&str]) -> ArrayRef {
    Arc::new(StringArray::from(v.to_vec()))
}

#[test]
fn out_of_range_instants_are_rejects_not_wrapped_dates() {
    // Dates: 2024-01-01 (day 19723), i32::MAX days (year ~5.9 million: the old µs product
    // wrapped to a 2023 purchase), and day −40000 (1860).
    let ws = Workspace::with_parquet(vec![
        ("customer_id", strs(&["a", "b", "c"])),
        ("order_id", strs(&["1", "2", "3"])),
        (
            "ts",
            Arc::new(Date32Array::from(vec![19_723, i32::MAX, -40_000])),
        ),
        ("amount", strs(&["1.00", "2.00", "3.00"])),
        ("channel", strs(&["web", "web", "web"])),
    ]);
    reject_ratio(&ws, "0.9");
    ws.run_ok(AS_OF);
    assert_eq!(
        rejects(&ws),
        vec![
            (2, "ts: out of range".to_string()),
            (3, "ts: before 1900-01-01".to_string())
        ]
    );
    // Millisecond timestamps: 2024-01-01T00:00Z, i64::MAX / 2 ms (overflows as µs) and
    // year ~50,000 in µs.
    let ms_2024 = 19_723i64 * 86_400_000;
    let ws = Workspace::with_parquet(vec![
        ("customer_id", strs(&["a", "b"])),
        ("order_id", strs(&["1", "2"])),
        (
            "ts",
            Arc::new(
                TimestampMillisecondArray::from(vec![ms_2024, i64::MAX / 2]).with_timezone("UTC"),
            ),
        ),
        ("amount", strs(&["1.00", "2.00"])),
        ("channel", strs(&["web", "web"])),
    ]);
    ws.run_ok(AS_OF);
    assert_eq!(rejects(&ws), vec![(2, "ts: out of range".to_string())]);
    let year_50000_us = 1_515_000_000_000_000_000i64;
    let ws = Workspace::with_parquet(vec![
        ("customer_id", strs(&["a", "b"])),
        ("order_id", strs(&["1", "2"])),
        (
            "ts",
            Arc::new(TimestampMicrosecondArray::from(vec![
                ms_2024 * 1000,
                year_50000_us,
            ])),
        ),
        ("amount", strs(&["1.00", "2.00"])),
        ("channel", strs(&["web", "web"])),
    ]);
    ws.run_ok(AS_OF);
    assert_eq!(rejects(&ws), vec![(2, "ts: out of range".to_string())]);
}

#[test]
fn reasons_say_what_is_wrong_with_numbers() {
    // A uint64 amount above i64 (was "amount: missing": the cast made it null) and float
    // customer ids NaN and infinity (were customers "NaN" and "inf").
    let ws = Workspace::with_parquet(vec![
        (
            "customer_id",
            Arc::new(Float64Array::from(vec![1.0, f64::NAN, f64::INFINITY, 2.0])),
        ),
        ("order_id", strs(&["1", "2", "3", "4"])),
        (
            "ts",
            strs(&["2024-01-02", "2024-01-02", "2024-01-02", "2024-01-02"]),
        ),
        (
            "amount",
            Arc::new(UInt64Array::from(vec![3, 4, 5, u64::MAX])),
        ),
        ("channel", strs(&["web", "web", "web", "web"])),
    ]);
    reject_ratio(&ws, "0.9");
    ws.run_ok(AS_OF);
    assert_eq!(
        rejects(&ws),
        vec![
            (2, "customer_id: not a finite number".to_string()),
            (3, "customer_id: not a finite number".to_string()),
            (4, "amount: out of range".to_string())
        ]
    );
    assert_eq!(ws.table("customers", AS_OF).rows(), 1);
}

#[test]
fn dates_beyond_the_calendar_are_usage_errors_not_panics() {
    let ws = ws_with("tx.csv", format!("{HEADER}{}", line(1, "1.00")), "");
    for (args, env, needle) in [
        (vec!["--as-of=+262142-12-31"], vec![], "as_of"),
        (vec!["--as-of", "10000-01-01"], vec![], "as_of"),
        (vec!["--as-of", "1899-12-31"], vec![], "out of range"),
        (
            vec![],
            vec![(
                "CUSTOMER_VALUE_AS_OF".to_string(),
                "+262142-12-31".to_string(),
            )],
            "as_of",
        ),
    ] {
        let mut a = vec!["run", "--config", "config.toml"];
        a.extend(args.iter().copied());
        let o = ws.run_env(&a, &env);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle) && !err.contains("panicked"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    for args in [
        vec![
            "backfill",
            "--config",
            "config.toml",
            "--from",
            "2024-01-01",
            "--to=+262142-12-31",
        ],
        vec!["generate", "--output", "g.csv", "--months", "4000000"],
        vec![
            "generate",
            "--output",
            "g.csv",
            "--start",
            "9999-06-01",
            "--months",
            "12",
        ],
        vec!["generate", "--output", "g.csv", "--start", "+200000-01-01"],
        vec!["generate", "--output", "g.csv", "--refunds", "7"],
    ] {
        let o = ws.run(&args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            !err.contains("panicked") && err.starts_with("error:"),
            "{err}"
        );
        assert!(!ws.path("g.csv").exists());
    }
}

#[test]
fn a_far_future_as_of_is_refused_before_it_can_exhaust_memory() {
    // 20,000 lines over 2023–2024 in weekly periods, as of 9999-12-31: ~416,000 weeks per
    // cohort row set (the run was OOM-killed at 22 GB, leaving its lock). Refused, exit 3.
    let ws = Workspace::new();
    ws.generate("tx.csv", &["--customers", "2000", "--rows", "20000"]);
    ws.config(
        &["tx.csv"],
        crate::util::GEN_COLUMNS,
        "period = \"week\"\nchurn_window_days = 30",
        "",
    );
    let o = ws.run_as_of("9999-12-31", &[]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(
        err.contains("cohorts table would hold") && err.contains("--as-of"),
        "{err}"
    );
    assert!(!ws.path("out/_lock").exists(), "no lock left");
}

#[test]
fn stale_input_fails_with_exit_3_and_warns_when_the_check_is_off() {
    // The newest transaction is 2024-01-28; as_of 2024-06-30 is 154 days later.
    let csv = format!("{HEADER}{}{}", line(1, "1.00"), line(27, "1.00"));
    let ws = ws_with("tx.csv", &csv, "max_staleness_days = 7\n");
    fails(
        &ws,
        &[],
        3,
        &[
            "stale input",
            "2024-01-28",
            "154 days",
            "max_staleness_days = 7",
        ],
    );
    // Within the limit: as_of 2024-02-03 is 6 days later; the manifest records the newest.
    let o = ws.run_as_of("2024-02-03", &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        ws.manifest("2024-02-03")["newest_transaction_at"],
        "2024-01-28T00:00:00Z"
    );
    // Off (0): the run goes through and the log says the last periods may mislead.
    let ws = ws_with("tx.csv", &csv, "");
    let o = ws.run_ok(AS_OF);
    assert!(stderr(&o).contains("more than one period after the newest transaction"));
}

#[test]
fn validate_predicts_the_run() {
    // Every amount in a comma-decimal format: validate used to pass, the run failed.
    let mut csv = String::from(HEADER);
    for i in 1..=5 {
        csv.push_str(&format!("c{i},o{i},2024-01-0{i},\"12,50\",web\n"));
    }
    let ws = ws_with("tx.csv", &csv, "");
    let o = ws.run(&["validate", "--config", "config.toml", "--as-of", AS_OF]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(
        err.contains("5 of 5 rows") && err.contains("amount: not a number ×5"),
        "{err}"
    );
    assert!(!ws.path("out").exists(), "validate writes nothing");
    let run = ws.run_as_of(AS_OF, &[]);
    assert_eq!(run.status.code(), Some(3));

    // A good file: the counts the run would see.
    let ws = ws_with(
        "tx.csv",
        format!("{HEADER}{}{}", line(1, "1.00"), line(2, "x")),
        "",
    );
    let o = ws.run(&["validate", "--config", "config.toml", "--as-of", AS_OF]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(out.contains("2 rows, 1 used, 1 rejected"), "{out}");
    assert!(out.contains("rejected ×1: amount: not a number"), "{out}");
}

#[test]
fn config_problems_are_all_reported_also_with_an_unknown_enum_value() {
    let ws = ws_with(
        "tx.csv",
        format!("{HEADER}{}", line(1, "1.00")),
        "format = \"xlsx\"\n",
    );
    let cfg = std::fs::read_to_string(ws.path("config.toml")).unwrap();
    ws.write(
        "config.toml",
        cfg.replace(
            "[metrics]\n",
            "[metrics]\nperiod = \"fortnight\"\ntimezone = \"Nowhere/City\"\nsegment_assignment = \"best\"\n",
        ) + "lock_timeout_minutes = 0\n",
    );
    fails(
        &ws,
        &[],
        2,
        &[
            "input.format",
            "metrics.period: \"fortnight\" is not one of week, month, quarter, year",
            "metrics.timezone",
            "metrics.segment_assignment",
            "output.lock_timeout_minutes: 0",
        ],
    );
}

#[test]
fn a_file_name_that_is_not_utf8_is_named_as_such() {
    use std::os::unix::ffi::OsStrExt;
    let ws = Workspace::new();
    std::fs::create_dir_all(ws.path("in")).unwrap();
    let name = std::ffi::OsStr::from_bytes(b"tx-\xff.csv");
    std::fs::write(
        ws.path("in").join(name),
        format!("{HEADER}{}", line(1, "1.00")),
    )
    .unwrap();
    ws.config(&["in"], DEFAULT_COLUMNS, "", "");
    let err = fails(&ws, &[], 1, &["not valid UTF-8", "rename"]);
    assert!(!err.contains("No such file"), "{err}");
}
