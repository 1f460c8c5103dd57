//! A floor under a backfill's time: reads Parquet files (the customers snapshots a backfill
//! wrote) into memory, then writes them again with the job's own writer and settings, and prints
//! the wall and CPU seconds of the writes alone: time no backfill writing those tables can beat,
//! whatever its fold costs. Used by `benches/backfill.sh`.
//!
//! Usage: `encode_floor OUT_DIR FILE...` (each file is written to `OUT_DIR/floor.parquet`, then
//! removed); prints `wall_s cpu_s rows`.

use std::error::Error;
use std::fs::File;
use std::path::PathBuf;
use std::time::Instant;

use arrow::array::{RecordBatch, RecordBatchReader};
use arrow::compute::concat_batches;
use customer_value::bench::write_as_customers;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// User plus system CPU seconds of this process so far.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the zeroed struct it is given; RUSAGE_SELF is always valid.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

fn read(path: &str) -> Result<RecordBatch, Box<dyn Error>> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path)?)?
        .with_batch_size(1 << 20)
        .build()?;
    let schema = reader.schema();
    let batches = reader.collect::<Result<Vec<_>, _>>()?;
    Ok(concat_batches(&schema, &batches)?)
}

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let out: PathBuf = args
        .next()
        .ok_or("usage: encode_floor OUT_DIR FILE...")?
        .into();
    let tables = args.map(|p| read(&p)).collect::<Result<Vec<_>, _>>()?;
    if tables.is_empty() {
        return Err("usage: encode_floor OUT_DIR FILE... (no file given)".into());
    }
    let rows: usize = tables.iter().map(RecordBatch::num_rows).sum();
    let target = out.join("floor.parquet");
    let (start, cpu) = (Instant::now(), cpu_seconds());
    for table in &tables {
        write_as_customers(&target, table)?;
    }
    let (wall, cpu) = (start.elapsed().as_secs_f64(), cpu_seconds() - cpu);
    std::fs::remove_file(&target)?;
    println!("{wall:.2} {cpu:.2} {rows}");
    Ok(())
}
