//! The library API (fold partitions → partials → merge → tables): equal to the CLI's tables
//! whatever the partitioning and merge order, hand-computed on a small case, and clear errors
//! for bad lines, partials and configs. The `partitions` example is run against the CLI too.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
    UInt8Array,
};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use chrono::NaiveDate;
use customer_value::{api, ApiError, Computation, Partial, PartialBatches, Table};

use crate::input_order::{lines as tied_lines, Lcg};
use crate::util::{by_customer, ok, read_partition, Workspace, GEN_COLUMNS};

fn date(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

/// The config of the tied lines (columns as `input_order` writes them) for the CLI, and the same
/// keys for the API (which needs no paths or output).
fn tied_config(assignment: &str, input: &str, out: &str) -> String {
    crate::util::config(
        &[input],
        out,
        &crate::util::DEFAULT_COLUMNS.replace("[\"channel\"]", "[\"channel\", \"region\"]"),
        &format!("period = \"month\"\nsegment_assignment = \"{assignment}\""),
        "",
    )
}

/// The CSV lines of `input_order::lines` as normalized Arrow lines (amounts in cents).
fn arrow_lines(lines: &[String]) -> RecordBatch {
    let f: Vec<Vec<&str>> = lines.iter().map(|l| l.split(',').collect()).collect();
    let col =
        |i: usize| -> ArrayRef { Arc::new(StringArray::from_iter_values(f.iter().map(|r| r[i]))) };
    let ts: Vec<i64> = f
        .iter()
        .map(|r| {
            chrono::DateTime::parse_from_rfc3339(r[2])
                .unwrap()
                .timestamp_micros()
        })
        .collect();
    let cents: Vec<i64> = f
        .iter()
        .map(|r| {
            let (units, frac) = r[3].split_once('.').unwrap();
            let v = units.trim_start_matches('-').parse::<i64>().unwrap() * 100
                + frac.parse::<i64>().unwrap();
            if units.starts_with('-') {
                -v
            } else {
                v
            }
        })
        .collect();
    let schema = Schema::new(vec![
        Field::new("customer_id", DataType::Utf8, false),
        Field::new("order_id", DataType::Utf8, true),
        Field::new(
            "ts",
            DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("amount", DataType::Int64, false),
        Field::new("channel", DataType::Utf8, true),
        Field::new("region", DataType::Utf8, true),
    ]);
    RecordBatch::try_new(
        Arc::new(schema),
        vec![
            col(0),
            col(1),
            Arc::new(TimestampMicrosecondArray::from(ts).with_timezone("UTC")),
            Arc::new(Int64Array::from(cents)),
            col(4),
            col(5),
        ],
    )
    .unwrap()
}

/// `lines` split into `n` partitions by customer (the customer's number modulo n), each
/// partition's lines in two batches.
fn partitions(lines: &[String], n: usize) -> Vec<Vec<RecordBatch>> {
    let mut parts = vec![Vec::new(); n];
    for l in lines {
        let c: usize = l[1..5].parse().unwrap();
        parts[c * 7 % n].push(l.clone());
    }
    parts
        .into_iter()
        .map(|p| {
            let half = p.len() / 2;
            vec![arrow_lines(&p[..half]), arrow_lines(&p[half..])]
        })
        .collect()
}

/// Same column names and values (the Parquet reader's field metadata aside).
fn assert_equal(got: &RecordBatch, want: &RecordBatch, what: &str) {
    let names = |b: &RecordBatch| -> Vec<String> {
        b.schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect()
    };
    assert_eq!(names(got), names(want), "{what}: columns");
    for (i, name) in names(want).iter().enumerate() {
        assert_eq!(
            got.column(i).as_ref(),
            want.column(i).as_ref(),
            "{what}: column {name}"
        );
    }
}

/// `got` equals the CLI's non-empty partition of `table` as of 2024-11-30 under `out` (the
/// customers table in customer order).
fn assert_equals_cli(ws: &Workspace, out: &str, table: Table, got: RecordBatch, what: &str) {
    let dir = ws.path(&format!("{out}/{table}/as_of=2024-11-30"));
    let mut want = read_partition(&dir).0;
    let mut got = got;
    if table == Table::Customers {
        (want, got) = (by_customer(want), by_customer(got));
    }
    assert!(want.num_rows() > 0, "{what}: {table}");
    assert_equal(&got, &want, &format!("{what}: {table}"));
}

#[test]
fn api_tables_equal_the_cli_in_any_partitioning_and_merge_order() {
    let ws = Workspace::new();
    let lines = tied_lines();
    let header = "customer_id,order_id,ts,amount,channel,region";
    ws.write("tied.csv", format!("{header}\n{}\n", lines.join("\n")));
    let mut rng = Lcg(3);
    for assignment in ["first", "most_frequent"] {
        let out = format!("out_{assignment}");
        let cfg = tied_config(assignment, "tied.csv", &out);
        ws.write("tied.toml", &cfg);
        ok(&ws.run(&[
            "run",
            "--config",
            "tied.toml",
            "--as-of",
            "2024-11-30",
            "--no-progress",
        ]));
        let job = Computation::from_toml(&cfg, date("2024-11-30")).unwrap();
        for n in [1, 3, 8] {
            let mut shuffled = lines.clone();
            rng.shuffle(&mut shuffled);
            // Folded, sent through Arrow, and merged in a shuffled order, pairwise.
            let mut partials: Vec<Partial> = partitions(&shuffled, n)
                .iter()
                .map(|p| Partial::from_arrow(&job.fold(p).unwrap().to_arrow()).unwrap())
                .collect();
            rng.shuffle(&mut partials);
            while partials.len() > 1 {
                let a = partials.remove(0);
                let mut b = partials.remove(0);
                b.merge(a).unwrap();
                partials.push(b);
            }
            let tables = job.finish(partials.pop().unwrap()).unwrap();
            for table in [
                Table::Customers,
                Table::Retention,
                Table::Cohorts,
                Table::Ltv,
            ] {
                assert_equals_cli(
                    &ws,
                    &out,
                    table,
                    tables.get(table).clone(),
                    &format!("{assignment}, {n} partitions"),
                );
            }
        }
    }
}

#[test]
fn a_spread_run_in_two_passes_equals_the_cli_and_holds_no_rows_on_the_driver() {
    // The two passes of a Spark run (api::spread): tasks fold and take a census, the driver
    // merges partials and censuses and plans, tasks fold again and score against the plan,
    // the driver finishes every table but customers from the merged ltv sums. Predictions on,
    // fitted per channel, with a holdout backtest, so the plan carries fits.
    let ws = Workspace::new();
    let lines = tied_lines();
    let header = "customer_id,order_id,ts,amount,channel,region";
    ws.write("tied.csv", format!("{header}\n{}\n", lines.join("\n")));
    let cfg = crate::util::config(
        &["tied.csv"],
        "out",
        &crate::util::DEFAULT_COLUMNS.replace("[\"channel\"]", "[\"channel\", \"region\"]"),
        "period = \"month\"\n[predict]\nfit_by = \"channel\"\nmin_customers = 5\nholdout_days = 60",
        "",
    );
    ws.write("tied.toml", &cfg);
    ok(&ws.run(&[
        "run",
        "--config",
        "tied.toml",
        "--as-of",
        "2024-11-30",
        "--no-progress",
    ]));
    let job = Computation::from_toml(&cfg, date("2024-11-30")).unwrap();
    let mut rng = Lcg(5);
    for n in [1, 3, 8] {
        let mut shuffled = lines.clone();
        rng.shuffle(&mut shuffled);
        let parts = partitions(&shuffled, n);
        // Pass 1: each task's partial without rows (through Arrow) and census (through bytes).
        let mut merged: Option<Partial> = None;
        let mut census = api::Census::default();
        for p in &parts {
            let mut partial = job.fold(p).unwrap();
            let c = job.census(&mut partial);
            assert_eq!(partial.customers(), 0, "the census takes the rows out");
            let back = Partial::from_arrow(&partial.to_arrow()).unwrap();
            match merged.as_mut() {
                Some(m) => m.merge(back).unwrap(),
                None => merged = Some(back),
            }
            census.merge(api::Census::from_bytes(&c.to_bytes()).unwrap());
        }
        let merged = merged.unwrap();
        let plan = job.plan(&merged, &census).unwrap();
        let plan = api::Plan::from_bytes(&plan.to_bytes()).unwrap();
        // Pass 2: each task folds again and scores against the plan.
        let mut customers = Vec::new();
        let mut sums: Option<api::LtvSums> = None;
        for p in &parts {
            let scored = job.score(&plan, job.fold(p).unwrap()).unwrap();
            customers.push(scored.customers);
            let s = api::LtvSums::from_bytes(&scored.sums.to_bytes()).unwrap();
            match sums.as_mut() {
                Some(m) => m.merge(&s).unwrap(),
                None => sums = Some(s),
            }
        }
        let tables = job
            .finish_planned(merged.clone(), &plan, sums.clone().unwrap())
            .unwrap();
        assert_eq!(tables.get(Table::Customers).num_rows(), 0);
        assert_eq!(tables.customers(), plan.customers());
        let schema = customers[0].schema();
        let got_customers = arrow::compute::concat_batches(&schema, &customers).unwrap();
        for table in [
            Table::Customers,
            Table::Retention,
            Table::Cohorts,
            Table::Ltv,
            Table::Models,
        ] {
            let got = match table {
                Table::Customers => got_customers.clone(),
                t => tables.get(t).clone(),
            };
            assert_equals_cli(&ws, "out", table, got, &format!("spread, {n} partitions"));
        }
        // A partition left out of pass 2 is refused, not published short.
        if n > 1 {
            let one = job.score(&plan, job.fold(&parts[0]).unwrap()).unwrap();
            let err = job.finish_planned(merged, &plan, one.sums).unwrap_err();
            assert!(err.to_string().contains("a partition is missing"), "{err}");
        }
    }
}

/// Lines of (customer, day of 2024 at noon UTC, cents), no order ids, one `channel`.
fn small(rows: &[(&str, u32, i64, &str)]) -> RecordBatch {
    let ts: Vec<i64> = rows
        .iter()
        .map(|r| {
            NaiveDate::from_yo_opt(2024, r.1)
                .unwrap()
                .and_hms_opt(12, 0, 0)
                .unwrap()
                .and_utc()
                .timestamp_micros()
        })
        .collect();
    RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("customer_id", DataType::Utf8, false),
            Field::new(
                "ts",
                DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, None),
                false,
            ),
            Field::new("amount", DataType::Int32, false),
            Field::new("channel", DataType::Utf8, true),
        ])),
        vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(TimestampMicrosecondArray::from(ts)),
            Arc::new(arrow::array::Int32Array::from_iter_values(
                rows.iter().map(|r| r.2 as i32),
            )),
            Arc::new(StringArray::from_iter(rows.iter().map(|r| Some(r.3)))),
        ],
    )
    .unwrap()
}

const SMALL_CONFIG: &str = r#"
[input.columns]
customer_id = "customer_id"
ts = "ts"
amount = "amount"
segments = ["channel"]
[metrics]
period = "month"
churn_window_days = 90
"#;

#[test]
fn hand_computed_retention_from_two_partitions() {
    // c1 buys on Jan 1 (10.00) and Feb 10 (5.00), c2 on Mar 11 (20.00), as of 2024-03-31,
    // monthly, window 90 days. Active at boundary B when a purchase p has p < B ≤ p + 90 d:
    // Jan 1 noon + 90 d = Mar 31 noon covers Feb 1 and Mar 1; Feb 10 + 90 d = May 10 covers
    // Mar 1 and Apr 1; Mar 11 covers Apr 1. So (S = active at the period's start, E = at its
    // end, N = new):
    //   Jan: S 0, E 1 (c1), N 1 → CRR null (S = 0)
    //   Feb: S 1, E 1, N 0      → CRR (1 − 0) / 1 = 100
    //   Mar: S 1, E 2 (c1, c2), N 1 → CRR (2 − 1) / 1 = 100
    // Revenue 10.00, 5.00, 20.00. c2 also has a line on Apr 2, after as_of: not seen.
    let job = Computation::from_toml(SMALL_CONFIG, date("2024-03-31")).unwrap();
    let a = job
        .fold(&[small(&[("c1", 1, 1000, "web"), ("c1", 41, 500, "app")])])
        .unwrap();
    let b = job
        .fold(&[small(&[("c2", 71, 2000, "app"), ("c2", 93, 999, "app")])])
        .unwrap();
    let mut merged = b;
    merged.merge(a).unwrap();
    assert_eq!(merged.customers(), 2);
    let tables = job.finish(merged).unwrap();
    let r = crate::util::Table(tables.get(Table::Retention).clone());
    let all = r.filter(&[("segment_by", "all")]);
    assert_eq!(all.len(), 3);
    let want = [
        ("2024-01-01", 0, 1, 1, None, 10.0),
        ("2024-02-01", 1, 1, 0, Some(100.0), 5.0),
        ("2024-03-01", 1, 2, 1, Some(100.0), 20.0),
    ];
    for (&i, (start, s, e, n, crr, revenue)) in all.iter().zip(want) {
        assert_eq!(r.date("period_start", i).as_deref(), Some(start));
        assert_eq!(r.int("customers_start", i), Some(s), "{start}");
        assert_eq!(r.int("customers_end", i), Some(e), "{start}");
        assert_eq!(r.int("customers_new", i), Some(n), "{start}");
        assert_eq!(r.f64("crr", i), crr, "{start}");
        assert_eq!(r.f64("revenue", i), Some(revenue), "{start}");
    }
    // Channel by first order: c1 web, c2 app; each segment has its one customer.
    let c = crate::util::Table(tables.get(Table::Customers).clone());
    assert_eq!(
        c.str("channel", c.find(&[("customer_id", "c1")]))
            .as_deref(),
        Some("web")
    );
    assert_eq!(
        c.str("channel", c.find(&[("customer_id", "c2")]))
            .as_deref(),
        Some("app")
    );
    assert_eq!(r.filter(&[("segment", "web")]).len(), 3);
    assert_eq!(r.filter(&[("segment", "app")]).len(), 3);
    assert_eq!(tables.get(Table::Rejects).num_rows(), 0);
}

#[test]
fn bad_lines_partials_and_configs_are_errors_that_name_the_problem() {
    let job = Computation::from_toml(SMALL_CONFIG, date("2024-03-31")).unwrap();
    let good = small(&[("c1", 1, 1000, "web")]);
    let without = |name: &str| {
        let i = good.schema().index_of(name).unwrap();
        let mut b = good.clone();
        b.remove_column(i);
        b
    };
    let replaced = |name: &str, col: ArrayRef| {
        let i = good.schema().index_of(name).unwrap();
        let mut fields: Vec<Field> = good
            .schema()
            .fields()
            .iter()
            .map(|f| (**f).clone())
            .collect();
        fields[i] = Field::new(name, col.data_type().clone(), true);
        let mut cols = good.columns().to_vec();
        cols[i] = col;
        RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).unwrap()
    };
    let msg = |r: Result<Partial, ApiError>| r.unwrap_err().to_string();

    let e = msg(job.fold(&[without("amount")]));
    assert!(e.contains("column 'amount' is missing"), "{e}");
    let e = msg(job.fold(&[without("channel")]));
    assert!(e.contains("column 'channel' is missing"), "{e}");
    let floats: ArrayRef = Arc::new(Float64Array::from(vec![10.0]));
    let e = msg(job.fold(&[replaced("amount", floats)]));
    assert!(e.contains("column 'amount' has type Float64"), "{e}");
    let nulls: ArrayRef = Arc::new(StringArray::from(vec![None::<&str>]));
    let e = msg(job.fold(&[replaced("customer_id", nulls)]));
    assert!(
        e.contains("column 'customer_id', batch 0 row 0: null or empty"),
        "{e}"
    );
    let huge: ArrayRef = Arc::new(Int64Array::from(vec![i64::MAX]));
    let two = arrow::compute::concat_batches(
        &replaced("amount", huge.clone()).schema(),
        &[replaced("amount", huge.clone()), replaced("amount", huge)],
    )
    .unwrap();
    let e = msg(job.fold(&[two]));
    assert!(e.contains("exceeds 2^63 - 1 minor units"), "{e}");

    // A customer in two partitions.
    let mut a = job.fold(std::slice::from_ref(&good)).unwrap();
    a.merge(job.fold(std::slice::from_ref(&good)).unwrap())
        .unwrap();
    let e = job.finish(a).unwrap_err().to_string();
    assert!(
        e.contains("customer 'c1' is in more than one partition"),
        "{e}"
    );

    // Partials of another date, or tampered with.
    let other = Computation::from_toml(SMALL_CONFIG, date("2024-04-30")).unwrap();
    let mut a = job.fold(std::slice::from_ref(&good)).unwrap();
    let e = a
        .merge(other.fold(std::slice::from_ref(&good)).unwrap())
        .unwrap_err();
    assert!(e.to_string().contains("different computations"), "{e}");
    let e = other
        .finish(job.fold(std::slice::from_ref(&good)).unwrap())
        .unwrap_err();
    assert!(e.to_string().contains("another computation"), "{e}");
    let PartialBatches {
        sums,
        customers,
        rejects,
    } = job.fold(std::slice::from_ref(&good)).unwrap().to_arrow();
    let mut cols = sums.columns().to_vec();
    cols[2] = Arc::new(UInt8Array::from(vec![99; sums.num_rows()]));
    let tampered = PartialBatches {
        sums: RecordBatch::try_new(sums.schema(), cols).unwrap(),
        customers: customers.clone(),
        rejects: rejects.clone(),
    };
    let e = Partial::from_arrow(&tampered).unwrap_err().to_string();
    assert!(e.contains("unknown measure 99"), "{e}");
    let e = Partial::from_arrow(&PartialBatches {
        sums: customers.clone(),
        customers,
        rejects,
    })
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("metadata 'customer_value.as_of' is missing"),
        "{e}"
    );

    // Configs: every problem named by its key.
    let e = Computation::from_toml(
        &SMALL_CONFIG.replace("period = \"month\"", "period = \"fortnight\""),
        date("2024-03-31"),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("metrics.period"), "{e}");
    let e = Computation::from_toml(
        &format!("{SMALL_CONFIG}[spend]\npath = \"spend.csv\"\n"),
        date("2024-03-31"),
    )
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("spend: "), "{e}");
}

/// The built `partitions` example (cargo builds examples with the tests).
fn example() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().join("examples");
    dir.join(format!("partitions{}", std::env::consts::EXE_SUFFIX))
}

#[test]
fn the_partitions_example_prints_the_cli_retention_table() {
    let ws = Workspace::new();
    ws.generate(
        "tx.parquet",
        &["--customers", "2000", "--rows", "20000", "--seed", "9"],
    );
    let cfg = crate::util::config(&["tx.parquet"], "out", GEN_COLUMNS, "", "");
    ws.write("gen.toml", &cfg);
    ok(&ws.run(&[
        "run",
        "--config",
        "gen.toml",
        "--as-of",
        "2024-06-30",
        "--no-progress",
    ]));
    let o = Command::new(example())
        .args(["tx.parquet", "gen.toml", "2024-06-30", "3"])
        .current_dir(ws.dir.path())
        .output()
        .unwrap_or_else(|e| panic!("{}: {e} (built by cargo test)", example().display()));
    ok(&o);
    let printed = String::from_utf8(o.stdout).unwrap();

    // The CLI's retention table in the example's format.
    let want = read_partition(&ws.path("out/retention/as_of=2024-06-30")).0;
    let schema = want.schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let opts = FormatOptions::default().with_null("");
    let fmts: Vec<ArrayFormatter> = want
        .columns()
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts).unwrap())
        .collect();
    let mut expected = names.join(",") + "\n";
    for row in 0..want.num_rows() {
        let cells: Vec<String> = fmts.iter().map(|f| f.value(row).to_string()).collect();
        expected += &(cells.join(",") + "\n");
    }
    assert!(want.num_rows() > 50, "{} rows", want.num_rows());
    assert_eq!(printed, expected);
}
