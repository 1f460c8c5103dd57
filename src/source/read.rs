//! Builds the polars lazy scan of one input file: only the mapped columns, cast to the few
//! physical types the normalizer understands, with a 1-based row number per file.

use polars::prelude::*;

use crate::config::{ColumnsConfig, InputFormat, Validated};

use super::{read_err, InputFile, SourceError};

/// Canonical column names inside a batch.
pub(crate) const ROW: &str = "__row";
pub(crate) const CID: &str = "__cid";
pub(crate) const TS: &str = "__ts";
pub(crate) const AMOUNT: &str = "__amount";
pub(crate) const ORDER: &str = "__order";
pub(crate) const COST: &str = "__cost";

/// Name of the i-th segment column inside a batch.
pub(crate) fn seg_col(i: usize) -> String {
    format!("__seg{i}")
}

/// How the `ts` column arrives in a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TsKind {
    /// Text, parsed row by row.
    Text,
    /// Int64 ticks of `unit` since the epoch: UTC (a zoned timestamp) when `utc`, else
    /// wall-clock (a naive timestamp, read in the configured timezone). Converted to µs row by
    /// row with checked arithmetic, so a value beyond the calendar is a reject, not a wrap.
    Epoch { utc: bool, unit: EpochUnit },
    /// Int32 days since the epoch (a date).
    Days,
}

pub(crate) use customer_value_core::source::rules::EpochUnit;

/// How a money column arrives in a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MoneyKind {
    /// Text (or a decimal cast to text), parsed exactly.
    Text,
    /// Float64, rounded to the configured decimals.
    Float,
    /// Int64 whole units.
    Int,
}

/// A lazy scan plus what the normalizer needs to know about its column types.
pub(crate) struct Scan {
    pub frame: LazyFrame,
    pub ts: TsKind,
    pub amount: MoneyKind,
    pub cost: Option<MoneyKind>,
    pub has_order: bool,
    /// The customer_id column is floating point: its NaN and infinities (cast to text as
    /// `NaN`, `inf`) are rejected, not made customers.
    pub cid_float: bool,
    /// Local copy of an HTTP(S) input, kept until the scan has run.
    pub _download: Option<tempfile::TempPath>,
    /// The file's records as checked (marked rows; the checked copy polars reads, if any).
    pub records: super::records::Records,
    /// CSV text decoded lossily (it is not valid UTF-8).
    pub lossy: bool,
}

fn is_http(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

/// Streams an object to a temporary file (same file name suffix, so the format and
/// compression are still recognized).
fn download(file: &InputFile, cfg: &Validated) -> Result<tempfile::TempPath, SourceError> {
    use futures::StreamExt;
    use object_store::ObjectStoreExt;
    use std::io::Write;

    let crate::storage::Location::Remote(remote) =
        crate::storage::open(&file.path, &cfg.config.storage)?
    else {
        return Err(read_err(file, "not a remote location"));
    };
    let name = file.path.rsplit('/').next().unwrap_or("download");
    let tmp = tempfile::Builder::new()
        .prefix("customer-value-")
        .suffix(&format!("-{name}"))
        .tempfile()
        .map_err(|e| read_err(file, e))?;
    let (mut out, path) = tmp.into_parts();
    let store = std::sync::Arc::clone(&remote.store);
    let key = remote.path.clone();
    // Store errors keep their short form (see `store_message`); the stop request is checked
    // again below.
    let store_err =
        |e: object_store::Error| std::io::Error::other(crate::storage::store_message(&e));
    let result: std::io::Result<()> = crate::storage::block_on(async move {
        let mut stream = store.get(&key).await.map_err(store_err)?.into_stream();
        while let Some(chunk) = stream.next().await {
            if crate::cancel::check().is_err() {
                return Err(std::io::ErrorKind::Interrupted.into());
            }
            out.write_all(&chunk.map_err(store_err)?)?;
        }
        out.flush()
    });
    crate::cancel::check()?;
    result.map_err(|e| SourceError::Download {
        file: file.display.clone(),
        source: e,
    })?;
    Ok(path)
}

/// polars' cloud options for one object URL: the `[storage]` options and retry settings (the
/// builders also read the environment, as ours do).
fn cloud_options(
    url: &str,
    storage: &crate::config::StorageConfig,
) -> PolarsResult<polars::io::cloud::CloudOptions> {
    let mut opts = polars::io::cloud::CloudOptions::from_untyped_config(
        CloudScheme::from_path(url),
        storage.options.iter().map(|(k, v)| (k.as_str(), v.clone())),
    )?;
    opts.retry_config = polars::io::cloud::CloudRetryConfig {
        max_retries: Some(storage.retries),
        retry_timeout: Some(std::time::Duration::from_secs(storage.retry_timeout_secs)),
        ..Default::default()
    };
    Ok(opts)
}

/// Opens the file lazily (reads its schema only) and checks that every mapped column exists.
///
/// CSV text is read as strict UTF-8 unless the record check found bytes that are not UTF-8:
/// polars then checks each chunk at once, where lossy decoding checks field by field (0.65 s
/// more for a 10M-row CSV). Read lossily, invalid bytes become U+FFFD and such rows are
/// rejected.
pub(crate) fn scan(file: &InputFile, cfg: &Validated) -> Result<Scan, SourceError> {
    // Plain HTTP servers often answer no Range requests, which polars' reader needs: fetch the
    // object once, streaming it to a temporary file, and read that.
    let download = if file.remote && is_http(&file.path) {
        Some(download(file, cfg)?)
    } else {
        None
    };
    let local_copy = download.as_ref().map(|p| p.display().to_string());
    let remote = file.remote && local_copy.is_none();
    let source = local_copy.unwrap_or_else(|| file.path.clone());
    // Records checked on the raw bytes first; polars reads the checked copy when some were
    // marked (see `records`).
    let started = std::time::Instant::now();
    let records = if file.size > 0 {
        super::records::check(file, &source, remote, cfg)?
    } else {
        super::records::Records::default()
    };
    if !matches!(file.format, InputFormat::Parquet) {
        tracing::info!(
            file = %file.display,
            records = records.records,
            marked = records.marks.len(),
            copied = records.copy.is_some(),
            ms = started.elapsed().as_millis() as u64,
            "Checked the records."
        );
    }
    let lossy = records.not_utf8;
    if lossy {
        tracing::warn!(file = %file.display, "Input file is not valid UTF-8: its invalid bytes are replaced (those rows are rejected).");
    }
    let checked = records.copy.as_ref().map(|c| c.display().to_string());
    let remote = remote && checked.is_none();
    let path = PlRefPath::new(checked.unwrap_or(source));
    let cloud = if remote {
        Some(cloud_options(&file.path, &cfg.config.storage).map_err(|e| read_err(file, e))?)
    } else {
        None
    };
    let row_index = Some(RowIndex {
        name: ROW.into(),
        offset: 1,
    });
    let frame = match file.format {
        InputFormat::Csv | InputFormat::Auto => {
            if file.size == 0 {
                return Err(read_err(file, "file is empty (no header line)"));
            }
            LazyCsvReader::new(path)
                .with_has_header(cfg.config.input.csv.has_header)
                .with_separator(cfg.delimiter)
                .with_quote_char(cfg.quote)
                // Every column as text: money and timestamps are parsed exactly by us.
                .with_infer_schema_length(Some(0))
                .with_encoding(if lossy {
                    CsvEncoding::LossyUtf8
                } else {
                    CsvEncoding::Utf8
                })
                .with_row_index(row_index)
                .with_raise_if_empty(true)
                .with_cloud_options(cloud)
                .finish()
        }
        InputFormat::Parquet => LazyFrame::scan_parquet(
            path,
            ScanArgsParquet {
                row_index,
                cloud_options: cloud,
                ..Default::default()
            },
        ),
        InputFormat::Ndjson => {
            if file.size == 0 {
                return Err(read_err(file, "file is empty"));
            }
            LazyJsonLineReader::new(path)
                .with_row_index(row_index)
                .with_cloud_options(cloud)
                .finish()
        }
    }
    .map_err(|e| read_err(file, e))?;
    let mut frame = frame;
    let schema = frame.collect_schema().map_err(|e| read_err(file, e))?;

    // Hive partition values become text columns unless the file has a column of that name.
    let hive: Vec<Expr> = file
        .hive
        .iter()
        .filter(|(k, _)| schema.get(k.as_str()).is_none())
        .map(|(k, v)| lit(v.clone()).alias(k.as_str()))
        .collect();
    let mut names: Vec<String> = schema.iter_names().map(|n| n.to_string()).collect();
    names.extend(file.hive.iter().map(|(k, _)| k.clone()));
    let frame = if hive.is_empty() {
        frame
    } else {
        frame.with_columns(hive)
    };
    let dtype_of = |name: &str| -> Option<DataType> {
        schema.get(name).cloned().or_else(|| {
            file.hive
                .iter()
                .any(|(k, _)| k == name)
                .then_some(DataType::String)
        })
    };

    let c: &ColumnsConfig = &cfg.config.input.columns;
    let missing = |column: &str, key: &str| SourceError::MissingColumn {
        file: file.display.clone(),
        column: column.to_string(),
        key: key.to_string(),
        available: names
            .iter()
            .filter(|n| n.as_str() != ROW)
            .cloned()
            .collect::<Vec<_>>()
            .join(", "),
    };
    let require = |column: &str, key: &str| dtype_of(column).ok_or_else(|| missing(column, key));

    let mut select = vec![col(ROW)];
    let cid_float = require(&c.customer_id, "customer_id")?.is_float();
    select.push(
        col(c.customer_id.as_str())
            .cast(DataType::String)
            .alias(CID),
    );

    let ts_dtype = require(&c.ts, "ts")?;
    let (ts_expr, ts_kind) = match &ts_dtype {
        DataType::String => (col(c.ts.as_str()), TsKind::Text),
        DataType::Date => (col(c.ts.as_str()).cast(DataType::Int32), TsKind::Days),
        DataType::Datetime(unit, tz) => (
            // The ticks as stored: a cast to another unit would overflow silently.
            col(c.ts.as_str()).cast(DataType::Int64),
            TsKind::Epoch {
                utc: tz.is_some(),
                unit: match unit {
                    TimeUnit::Nanoseconds => EpochUnit::Nanos,
                    TimeUnit::Microseconds => EpochUnit::Micros,
                    TimeUnit::Milliseconds => EpochUnit::Millis,
                },
            },
        ),
        other => {
            return Err(SourceError::ColumnType {
                file: file.display.clone(),
                column: c.ts.clone(),
                dtype: other.to_string(),
                expected: "a timestamp (text, date or datetime)".into(),
            })
        }
    };
    select.push(ts_expr.alias(TS));

    let money = |column: &str, key: &str| -> Result<(Expr, MoneyKind), SourceError> {
        let dtype = require(column, key)?;
        let e = col(column);
        Ok(match dtype {
            DataType::String => (e, MoneyKind::Text),
            DataType::Float32 | DataType::Float64 => (e.cast(DataType::Float64), MoneyKind::Float),
            // Exact as text: a cast to Int64 turns values above its range into nulls.
            DataType::UInt64 => (e.cast(DataType::String), MoneyKind::Text),
            d if d.is_integer() => (e.cast(DataType::Int64), MoneyKind::Int),
            DataType::Decimal(_, _) => (e.cast(DataType::String), MoneyKind::Text),
            DataType::Null => (e.cast(DataType::String), MoneyKind::Text),
            other => {
                return Err(SourceError::ColumnType {
                    file: file.display.clone(),
                    column: column.to_string(),
                    dtype: other.to_string(),
                    expected: "money (text, integer, float or decimal)".into(),
                })
            }
        })
    };
    let (amount_expr, amount_kind) = money(&c.amount, "amount")?;
    select.push(amount_expr.alias(AMOUNT));

    let has_order = if let Some(o) = &c.order_id {
        require(o, "order_id")?;
        select.push(col(o.as_str()).cast(DataType::String).alias(ORDER));
        true
    } else {
        false
    };
    let cost_kind = if let Some(cost) = &c.cost {
        let (e, k) = money(cost, "cost")?;
        select.push(e.alias(COST));
        Some(k)
    } else {
        None
    };
    for (i, s) in c.segments.iter().enumerate() {
        require(s, "segments")?;
        select.push(
            col(s.as_str())
                .cast(DataType::String)
                .alias(seg_col(i).as_str()),
        );
    }
    Ok(Scan {
        frame: frame.select(select),
        ts: ts_kind,
        amount: amount_kind,
        cost: cost_kind,
        has_order,
        cid_float,
        _download: download,
        records,
        lossy,
    })
}
