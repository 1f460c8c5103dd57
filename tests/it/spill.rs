//! Inputs larger than the memory limit: lines spilled to disk by customer partition give the
//! same tables as a run that holds every line in memory (the customers table then comes as one
//! file per partition, each sorted by customer_id).

use arrow::array::AsArray;

use crate::fixtures::FIXTURE_A;
use crate::util::{
    assert_same, by_customer, ok, read_file, read_partition, Workspace, ACCOUNTING_KEYS,
    DEFAULT_COLUMNS, GEN_COLUMNS, TABLES,
};

/// Writes `config.toml`: `inputs` into folder `out`, with these columns, metrics and [engine].
fn write_config(
    ws: &Workspace,
    inputs: &[&str],
    out: &str,
    columns: &str,
    metrics: &str,
    engine: &str,
) {
    let paths: Vec<String> = inputs
        .iter()
        .map(|i| ws.path(i).display().to_string())
        .collect();
    let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
    let cfg = crate::util::config(
        &paths,
        &ws.path(out).display().to_string(),
        columns,
        metrics,
        "",
    );
    ws.write("config.toml", format!("{cfg}[engine]\n{engine}\n"));
}

/// Every table of `as_of` in `a` and `b` holds the same rows, and the manifests the same
/// accounting.
fn assert_same_partition(ws: &Workspace, a: &str, b: &str, as_of: &str) {
    for t in TABLES {
        let mut x = read_partition(&ws.path(&format!("{a}/{t}/as_of={as_of}"))).0;
        let mut y = read_partition(&ws.path(&format!("{b}/{t}/as_of={as_of}"))).0;
        if t == "customers" {
            (x, y) = (by_customer(x), by_customer(y));
        }
        assert_same(&x, &y, &format!("{t} as of {as_of}"));
    }
    let (ma, mb) = (ws.manifest_in(a, as_of), ws.manifest_in(b, as_of));
    for k in ACCOUNTING_KEYS {
        assert_eq!(ma[k], mb[k], "manifest {k} as of {as_of}");
    }
}

/// Files of a customers partition; each must be in customer_id order on its own.
fn customer_files(ws: &Workspace, out: &str, as_of: &str) -> usize {
    let dir = ws.path(&format!("{out}/customers/as_of={as_of}"));
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    for f in &files {
        let t = read_file(f);
        let ids = t.column_by_name("customer_id").unwrap().as_string::<i32>();
        let ids: Vec<&str> = ids.iter().map(|v| v.unwrap()).collect();
        assert!(
            ids.is_sorted(),
            "{} is not in customer_id order",
            f.display()
        );
    }
    files.len()
}

#[test]
fn spilled_backfill_equals_the_in_memory_one() {
    // Fixture A (7 customers, bad rows, multi-line orders) in New York time, so the spill
    // carries both local and UTC times; 3 partitions, month ends January to April.
    let ws = Workspace::new();
    ws.write("tx.csv", FIXTURE_A);
    for (out, engine) in [("mem", "partitions = 1"), ("spilled", "partitions = 3")] {
        let metrics = "period = \"month\"\nchurn_window_days = 31\ntimezone = \"America/New_York\"";
        write_config(&ws, &["tx.csv"], out, DEFAULT_COLUMNS, metrics, engine);
        let o = ws.run(&[
            "backfill",
            "--config",
            "config.toml",
            "--from",
            "2024-01-01",
            "--to",
            "2024-04-30",
        ]);
        ok(&o);
    }
    for d in ["2024-01-31", "2024-02-29", "2024-03-31", "2024-04-30"] {
        assert_same_partition(&ws, "spilled", "mem", d);
        assert_eq!(customer_files(&ws, "mem", d), 1);
    }
    // By April all 7 customers exist; 3 partitions hold them, one file each.
    assert_eq!(customer_files(&ws, "spilled", "2024-04-30"), 3);
    let m = ws.manifest_in("spilled", "2024-04-30");
    assert_eq!(
        m["tables"]["customers"]["files"].as_array().unwrap().len(),
        3
    );
}

#[test]
fn spilled_backfill_in_date_batches_equals_the_in_memory_one() {
    // 12,000 generated customers over 6 months, with refunds netted into earlier orders (so
    // order values change between month ends). A spilled backfill computes its dates together,
    // as many per pass over the partitions as their RFM measures (24 bytes per customer and
    // date) fit in a quarter of the memory limit: with 1 MiB, 262,144 / (24 × 12,000) < 1, so
    // one date per pass; with the default limit, all six in one pass. Both equal the backfill
    // held in memory, date by date.
    let ws = Workspace::new();
    let o = ws.run(&[
        "generate",
        "--output",
        "g.csv",
        "--customers",
        "12000",
        "--rows",
        "40000",
        "--seed",
        "3",
        "--months",
        "6",
        "--refunds",
        "0.2",
    ]);
    ok(&o);
    let runs = [
        ("mem", "partitions = 1", None),
        ("one", "partitions = 2\nmemory_limit_mib = 1", Some(1)),
        ("all", "partitions = 3", Some(6)),
    ];
    for (out, engine, per_pass) in runs {
        write_config(
            &ws,
            &["g.csv"],
            out,
            GEN_COLUMNS,
            "period = \"month\"",
            engine,
        );
        let args = [
            "backfill",
            "--config",
            "config.toml",
            "--from",
            "2023-01-01",
            "--to",
            "2023-06-30",
        ];
        let env = [
            ("CUSTOMER_VALUE_LOG".into(), "info".into()),
            ("CUSTOMER_VALUE_LOG_FORMAT".into(), "json".into()),
        ];
        let err = ok(&ws.run_env(&args, &env));
        if let Some(n) = per_pass {
            let said = format!("\"dates_per_pass\":{n},");
            assert!(err.contains(&said), "{out}: no {said} in {err}");
        }
    }
    for d in [
        "2023-01-31",
        "2023-02-28",
        "2023-03-31",
        "2023-04-30",
        "2023-05-31",
        "2023-06-30",
    ] {
        assert_same_partition(&ws, "one", "mem", d);
        assert_same_partition(&ws, "all", "mem", d);
    }
}

#[test]
fn sample_spills_when_the_memory_limit_is_small() {
    // The bundled sample (2.2 MB gzip CSV, about 33 MB to hold in memory by the planner's
    // estimate) under a 4 MiB limit: the planner picks partitions of at most 1 MiB, so about
    // 33 of them.
    let ws = Workspace::new();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let default = std::fs::read_to_string(root.join("config/default.toml")).unwrap();
    let input = root.join("data/transactions.csv.gz").display().to_string();
    for (out, limit) in [("mem", 0), ("spilled", 4)] {
        let cfg = default
            .replace(
                "paths = [\"data/transactions.csv.gz\"]",
                &format!("paths = [{input:?}]"),
            )
            .replace(
                "path = \"out\"",
                &format!("path = {:?}", ws.path(out).display().to_string()),
            )
            .replace(
                "memory_limit_mib = 0",
                &format!("memory_limit_mib = {limit}"),
            );
        ws.write("config.toml", cfg);
        let err = ok(&ws.run_env(
            &["run", "--config", "config.toml", "--as-of", "2024-12-31"],
            &[("CUSTOMER_VALUE_LOG".into(), "info".into())],
        ));
        assert_eq!(err.contains("spilling lines to disk"), limit > 0, "{err}");
    }
    assert_same_partition(&ws, "spilled", "mem", "2024-12-31");
    let files = customer_files(&ws, "spilled", "2024-12-31");
    assert!((20..=64).contains(&files), "{files} customers files");
}

#[test]
fn an_unusable_spill_folder_fails_naming_the_key() {
    let ws = Workspace::new();
    ws.write("tx.csv", FIXTURE_A);
    let missing = ws.path("no/such/folder").display().to_string();
    let engine = format!("partitions = 2\nspill_dir = {missing:?}");
    write_config(&ws, &["tx.csv"], "out", DEFAULT_COLUMNS, "", &engine);
    let o = ws.run_as_of("2024-04-30", &[]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("engine.spill_dir") && err.contains(&missing),
        "{err}"
    );
    // Nothing was published.
    assert!(!ws.path("out/customers").exists());
}

#[test]
fn a_file_not_utf8_is_read_lossily_also_when_spilled() {
    // Two files: fixture A (15 rows, 2 rejected: amount "abc" and an empty customer_id) and a
    // second file whose row 2 has an invalid byte in its customer_id. The record check finds
    // it, the second file is decoded lossily and only that row is rejected (the first file,
    // valid UTF-8, is read strictly). In memory and spilled alike:
    // read 15 + 2 = 17, rejected 2 + 1 = 3, used 14.
    let ws = Workspace::new();
    ws.write("tx1.csv", FIXTURE_A);
    let mut second =
        b"customer_id,order_id,ts,amount,channel\ng,g1,2024-01-11T08:00:00Z,3.00,web\n".to_vec();
    second.extend_from_slice(b"h\xff,h1,2024-01-12T08:00:00Z,1.00,web\n");
    ws.write("tx2.csv", second);
    for (out, engine) in [("mem", "partitions = 1"), ("spilled", "partitions = 3")] {
        let metrics = "period = \"month\"\nchurn_window_days = 31";
        write_config(
            &ws,
            &["tx1.csv", "tx2.csv"],
            out,
            DEFAULT_COLUMNS,
            metrics,
            engine,
        );
        let o = ws.run_as_of("2024-04-30", &[]);
        let err = ok(&o);
        assert!(
            err.contains("not valid UTF-8") && err.contains("tx2.csv"),
            "{err}"
        );
        let m = ws.manifest_in(out, "2024-04-30");
        let counts = ["rows_read", "rows_rejected", "rows_used"].map(|k| m[k].as_u64());
        assert_eq!(counts, [Some(17), Some(3), Some(14)], "{out}");
        let rejects = read_partition(&ws.path(&format!("{out}/rejects/as_of=2024-04-30"))).0;
        let reason = rejects.column_by_name("reason").unwrap().as_string::<i32>();
        let row = rejects.column_by_name("source_row").unwrap();
        let row = row.as_primitive::<arrow::datatypes::Int64Type>();
        let bad: Vec<(i64, &str)> = (0..rejects.num_rows())
            .filter(|&i| reason.value(i).contains("UTF-8"))
            .map(|i| (row.value(i), reason.value(i)))
            .collect();
        assert_eq!(bad, vec![(2, "customer_id: not valid UTF-8")], "{out}");
    }
    assert_same_partition(&ws, "spilled", "mem", "2024-04-30");
}
