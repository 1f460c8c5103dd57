//! Reads one published partition for the report: the manifest of the date (the newest one when
//! no date is given), then exactly the files it lists — so the report shows one complete run,
//! never a partition being swapped — from local disk or an object store. The customers table is
//! read with only the columns the report draws (its distributions and segments), which keeps a
//! report over millions of customers fast.

use std::collections::BTreeMap;

use arrow::array::RecordBatch;
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;

use super::ReportError;
use crate::schema::{self, Table};
use crate::sink;
use crate::sink::manifest::{self, Manifest};
use crate::storage::Location;

/// A published run: its manifest and the rows of every table it lists.
pub(crate) struct Published {
    pub(crate) manifest: Manifest,
    pub(crate) tables: BTreeMap<Table, RecordBatch>,
}

/// Customers columns the report uses; the segment columns (those the schema does not document)
/// are read too.
const CUSTOMER_COLUMNS: [&str; 2] = ["p_alive", "predicted_clv"];

/// The newest as_of with a manifest under `output`.
pub(crate) fn newest_as_of(output: &Location) -> Result<String, ReportError> {
    let names: Vec<String> = match output {
        Location::Local(root) => {
            let dir = root.join(manifest::DIR);
            match std::fs::read_dir(&dir) {
                Ok(entries) => entries
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(ReportError::io(&dir.display().to_string(), e)),
            }
        }
        Location::Remote(r) => r
            .list(&r.child(manifest::DIR))?
            .into_iter()
            .filter_map(|m| m.location.filename().map(str::to_string))
            .collect(),
    };
    names
        .iter()
        .filter_map(|n| n.strip_prefix("as_of=")?.strip_suffix(".json"))
        .filter(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").is_ok())
        .max()
        .map(str::to_string)
        .ok_or_else(|| ReportError::NoRun {
            output: display(output),
            as_of: None,
        })
}

fn display(output: &Location) -> String {
    match output {
        Location::Local(p) => p.display().to_string(),
        Location::Remote(r) => r.display.clone(),
    }
}

/// Reads `rel` (relative to the output root); None when it does not exist.
fn read(output: &Location, rel: &str) -> Result<Option<Vec<u8>>, ReportError> {
    match output {
        Location::Local(root) => {
            let path = root.join(rel);
            match std::fs::read(&path) {
                Ok(b) => Ok(Some(b)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(ReportError::io(&path.display().to_string(), e)),
            }
        }
        Location::Remote(r) => Ok(r.get(&r.child(rel))?),
    }
}

/// The published run of `as_of` under `output`.
pub(crate) fn load(output: &Location, as_of: &str) -> Result<Published, ReportError> {
    let manifest = sink::read_manifest(output, as_of)?.ok_or_else(|| ReportError::NoRun {
        output: display(output),
        as_of: Some(as_of.to_string()),
    })?;
    let mut tables = BTreeMap::new();
    for (name, entry) in &manifest.tables {
        let Some(table) = Table::from_name(name) else {
            continue; // A table of a newer version: nothing to draw from it.
        };
        let mut batches = Vec::new();
        for file in &entry.files {
            let bytes = read(output, &file.path)?.ok_or_else(|| ReportError::Missing {
                path: file.path.clone(),
                as_of: as_of.to_string(),
            })?;
            batches.extend(parquet_rows(table, &file.path, Bytes::from(bytes))?);
        }
        if let Some(first) = batches.first() {
            let batch = arrow::compute::concat_batches(&first.schema(), &batches)
                .map_err(|e| ReportError::parquet(&entry.partition, e))?;
            tables.insert(table, batch);
        }
    }
    Ok(Published { manifest, tables })
}

fn parquet_rows(table: Table, path: &str, bytes: Bytes) -> Result<Vec<RecordBatch>, ReportError> {
    let mut builder = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .map_err(|e| ReportError::parquet(path, e))?;
    if table == Table::Customers {
        let documented: Vec<&str> = schema::CUSTOMERS.iter().map(|c| c.name).collect();
        let fields = builder.schema().fields().clone();
        let keep: Vec<usize> = fields
            .iter()
            .enumerate()
            .filter(|(_, f)| {
                CUSTOMER_COLUMNS.contains(&f.name().as_str())
                    || !documented.contains(&f.name().as_str())
            })
            .map(|(i, _)| i)
            .collect();
        let mask = ProjectionMask::roots(builder.parquet_schema(), keep);
        builder = builder.with_projection(mask);
    }
    builder
        .build()
        .map_err(|e| ReportError::parquet(path, e))?
        .map(|b| b.map_err(|e| ReportError::parquet(path, e)))
        .collect()
}
