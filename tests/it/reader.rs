//! Opens the outputs with DuckDB (Python package, provisioned by `tools`) to prove BI readers
//! see the documented types and the hand-computed values.

use std::process::Command;

use crate::fixtures::FIXTURE_A;
use crate::util::{Workspace, DEFAULT_COLUMNS};

#[test]
fn duckdb_reads_outputs() {
    let ws = Workspace::new();
    ws.write("tx.csv", FIXTURE_A);
    ws.config(
        &["tx.csv"],
        DEFAULT_COLUMNS,
        "period = \"month\"\nchurn_window_days = 31",
        "",
    );
    ws.run_ok("2024-04-15");
    let Some(python) = crate::tools::python() else {
        return;
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/read_outputs.py");
    let out = Command::new(&python)
        .args([script, &ws.path("out").display().to_string(), "2024-04-15"])
        .output()
        .expect("python runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "duckdb checks failed: {stderr}");
}

/// The sort order each file's metadata declares (`sorting_columns`, nulls first, ascending)
/// holds for its rows: readers may skip sorting on the strength of it.
fn assert_declared_sort_order(file: &std::path::Path) {
    use arrow::array::{Array, Date32Array, Int64Array, StringArray, TimestampMicrosecondArray};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(file).unwrap()).unwrap();
    if builder.metadata().num_row_groups() == 0 {
        return; // An empty table (e.g. no rejects) has no row group to carry the order.
    }
    let sorting = builder
        .metadata()
        .row_groups()
        .iter()
        .find_map(|rg| rg.sorting_columns().cloned())
        .unwrap_or_else(|| panic!("{}: no sorting_columns", file.display()));
    let batches: Vec<_> = builder.build().unwrap().map(Result::unwrap).collect();
    let Some(first) = batches.first() else { return };
    let batch = arrow::compute::concat_batches(&first.schema(), &batches).unwrap();
    #[derive(PartialEq, PartialOrd, Debug)]
    enum Key {
        Text(Option<String>),
        Int(Option<i64>),
    }
    let key = |row: usize| -> Vec<Key> {
        sorting
            .iter()
            .map(|s| {
                assert!(!s.descending && s.nulls_first);
                let col = batch.column(s.column_idx as usize);
                let valid = col.is_valid(row);
                let any = col.as_any();
                if let Some(a) = any.downcast_ref::<StringArray>() {
                    Key::Text(valid.then(|| a.value(row).to_string()))
                } else if let Some(a) = any.downcast_ref::<Int64Array>() {
                    Key::Int(valid.then(|| a.value(row)))
                } else if let Some(a) = any.downcast_ref::<Date32Array>() {
                    Key::Int(valid.then(|| a.value(row) as i64))
                } else if let Some(a) = any.downcast_ref::<TimestampMicrosecondArray>() {
                    Key::Int(valid.then(|| a.value(row)))
                } else {
                    panic!("sort column type {:?}", col.data_type())
                }
            })
            .collect()
    };
    for row in 1..batch.num_rows() {
        assert!(
            key(row - 1) <= key(row),
            "{}: row {row} out of the declared order: {:?} then {:?}",
            file.display(),
            key(row - 1),
            key(row)
        );
    }
}

#[test]
fn every_table_is_in_the_order_its_metadata_declares() {
    // The bundled sample (20 000 customers, hashed into 16 id shards, so customer ids are far
    // from text order internally) and fixture A (rejects, null cohorts in ltv).
    let ws = Workspace::new();
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/data/transactions.csv.gz");
    std::fs::copy(sample, ws.path("sample.csv.gz")).unwrap();
    ws.write("tx.csv", FIXTURE_A);
    for (input, columns, as_of) in [
        (
            "sample.csv.gz",
            "customer_id = \"customer_id\"\nts = \"ts\"\namount = \"amount\"\norder_id = \"order_id\"\ncost = \"cost\"\nsegments = [\"channel\", \"region\"]",
            "2024-12-31",
        ),
        ("tx.csv", DEFAULT_COLUMNS, "2024-04-15"),
    ] {
        ws.config(&[input], columns, "period = \"month\"\nchurn_window_days = 90", "");
        ws.run_ok(as_of);
        let mut checked = 0;
        for table in ["customers", "retention", "cohorts", "ltv", "rejects"] {
            let dir = ws.path(&format!("out/{table}/as_of={as_of}"));
            for f in std::fs::read_dir(&dir).unwrap() {
                let f = f.unwrap().path();
                if f.extension().is_some_and(|e| e == "parquet") {
                    assert_declared_sort_order(&f);
                    checked += 1;
                }
            }
        }
        assert!(checked >= 4, "{input}: {checked} files checked");
    }
}
