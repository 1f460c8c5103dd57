//! The library API end to end, as an engine would use it: reads a Parquet input (as written by
//! `customer-value generate --format parquet`), normalizes its rows into lines, splits the
//! customers into partitions by a hash of their id, folds each partition into a partial (sent
//! through Arrow, as between processes), merges the partials in reverse order and prints the
//! retention table as CSV, the same rows a CLI run writes.
//!
//! Usage: `partitions INPUT.parquet CONFIG.toml AS_OF [PARTITIONS (default 3)]`. The config's
//! `[input.columns]` name the input's columns; amounts are read as decimals with
//! `input.amount_decimals` places.

use std::error::Error;
use std::fs::File;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::compute::{filter_record_batch, kernels::cmp::eq};
use arrow::datatypes::{Field, Schema};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use chrono::NaiveDate;
use customer_value::Config;
use customer_value::{Computation, Partial, Table};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// FNV-1a: a customer's partition from its id alone, the same in every process.
fn partition_of(id: &str, n: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    h % n
}

/// Money with `decimals` places → integer minor units (exact for values written with at most
/// that many places).
fn minor_units(col: &ArrayRef, decimals: u32) -> Result<ArrayRef, Box<dyn Error>> {
    let x = col
        .as_any()
        .downcast_ref::<Float64Array>()
        .ok_or("money columns must be Float64 in this example")?;
    let scale = 10f64.powi(decimals as i32);
    Ok(Arc::new(
        x.iter()
            .map(|v| v.map(|v| (v * scale).round() as i64))
            .collect::<Int64Array>(),
    ))
}

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        return Err("usage: partitions INPUT.parquet CONFIG.toml AS_OF [PARTITIONS]".into());
    }
    let config = Config::from_toml(&std::fs::read_to_string(&args[2])?)?;
    let as_of: NaiveDate = args[3].parse()?;
    let n: u64 = args.get(4).map_or(Ok(3), |s| s.parse())?;
    let columns = config.input.columns.clone();
    let decimals = config.input.amount_decimals;
    let job = Computation::new(config, as_of)?;

    // Normalize: the lines' columns under their API names, money in minor units.
    let mut lines: Vec<RecordBatch> = Vec::new();
    for batch in ParquetRecordBatchReaderBuilder::try_new(File::open(&args[1])?)?.build()? {
        let batch = batch?;
        let col = |name: &str| {
            batch
                .column_by_name(name)
                .cloned()
                .ok_or_else(|| format!("input has no column '{name}'"))
        };
        let mut fields = Vec::new();
        let mut cols = Vec::new();
        let mut put = |name: &str, a: ArrayRef| {
            fields.push(Field::new(name, a.data_type().clone(), true));
            cols.push(a);
        };
        put("customer_id", col(&columns.customer_id)?);
        put("ts", col(&columns.ts)?);
        put("amount", minor_units(&col(&columns.amount)?, decimals)?);
        if let Some(o) = &columns.order_id {
            put("order_id", col(o)?);
        }
        if let Some(c) = &columns.cost {
            put("cost", minor_units(&col(c)?, decimals)?);
        }
        for s in &columns.segments {
            put(s, col(s)?);
        }
        lines.push(RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)?);
    }

    // Partition by customer: each partition's lines are a filter of every batch.
    let mut partials = Vec::new();
    for p in 0..n {
        let mut mine = Vec::new();
        for batch in &lines {
            let ids = batch
                .column(0)
                .as_any()
                .downcast_ref::<StringArray>()
                .ok_or("customer_id must be a string column in this example")?;
            let part: Int64Array = ids
                .iter()
                .map(|id| id.map(|id| partition_of(id, n) as i64))
                .collect();
            let keep = eq(&part, &Int64Array::new_scalar(p as i64))?;
            mine.push(filter_record_batch(batch, &keep)?);
        }
        // Through Arrow, as a partial would travel from a worker to the driver.
        let partial = job.fold(&mine)?.to_arrow();
        partials.push(Partial::from_arrow(&partial)?);
    }
    let mut merged = partials.pop().ok_or("at least one partition")?;
    while let Some(p) = partials.pop() {
        merged.merge(p)?;
    }
    let tables = job.finish(merged)?;

    let retention = tables.get(Table::Retention);
    let schema = retention.schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    println!("{}", names.join(","));
    let opts = FormatOptions::default().with_null("");
    let formatters = retention
        .columns()
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts))
        .collect::<Result<Vec<_>, _>>()?;
    for row in 0..retention.num_rows() {
        let cells: Vec<String> = formatters
            .iter()
            .map(|f| f.value(row).to_string())
            .collect();
        println!("{}", cells.join(","));
    }
    Ok(())
}
