//! customer-value: transaction exports in, customer-value tables (customers, retention, cohorts,
//! ltv, rejects, models) and a run manifest out. This crate is the command-line job: it finds
//! and reads the inputs (source: polars, object stores), runs the computation of
//! `customer-value-core` (config, orders, metrics, compute) and publishes the tables (sink).
//!
//! The public surface is the core's engine-agnostic [`api`], re-exported: fold Arrow lines of
//! one customer partition into a [`Partial`], merge partials, finish the tables. Everything
//! else is private to the crate.

#![warn(unreachable_pub)]

mod cancel;
mod cli;
mod error;
mod export;
mod generate;
mod job;
mod progress;
mod report;
mod signals;
mod source;
#[cfg(test)]
mod tests;

pub use customer_value_core::api;
use customer_value_core::{compute, config, metrics, orders, schema, time};
pub use customer_value_core::{
    ApiError, Computation, Config, ConfigError, Partial, PartialBatches, Table, Tables,
};
use customer_value_store::{sink, storage, testhook};
use error::{Error, Result};

/// The `customer-value` binary's entry point (`src/main.rs` adds only the allocator).
#[doc(hidden)]
pub use cli::main as cli_main;

/// What the criterion benches and `examples/encode_floor.rs` measure that the API does not
/// expose: the field parsers and the job's Parquet writer. Not part of the API.
#[doc(hidden)]
pub mod bench {
    use std::path::Path;

    use arrow::array::RecordBatch;

    pub use crate::source::parse::{parse_money, parse_ts_iso};

    /// Writes `batch` to `target` as a run writes its customers table: the configuration's
    /// default compression and row-group size, the job's file metadata.
    pub fn write_as_customers(
        target: &Path,
        batch: &RecordBatch,
    ) -> Result<(), Box<dyn std::error::Error>> {
        let output = crate::config::OutputConfig::default();
        let opts = crate::sink::PublishOptions {
            as_of: "2025-12-31",
            run_id: "encode-floor",
            zstd_level: output.zstd_level,
            row_group_rows: output.row_group_rows,
            delta: None,
        };
        let meta =
            crate::sink::parquet::FileMeta::for_table(crate::schema::Table::Customers, &opts);
        crate::sink::parquet::write(target, batch, &meta)?;
        Ok(())
    }
}
