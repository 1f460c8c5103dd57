//! Builds the polars lazy scan of one input file: only the mapped columns, cast to the few
//! physical types the normalizer understands, with a 1-based row number per file.

use polars::prelude::*;

use crate::config::{ColumnsConfig, InputFormat, Validated};

use super::{InputFile, SourceError};

/// Canonical column names inside a batch.
pub const ROW: &str = "__row";
pub const CID: &str = "__cid";
pub const TS: &str = "__ts";
pub const AMOUNT: &str = "__amount";
pub const ORDER: &str = "__order";
pub const COST: &str = "__cost";

/// Name of the i-th segment column inside a batch.
pub fn seg_col(i: usize) -> String {
    format!("__seg{i}")
}

/// How the `ts` column arrives in a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TsKind {
    /// Text, parsed row by row.
    Text,
    /// Int64 microseconds since the epoch, UTC (a zoned timestamp).
    UtcMicros,
    /// Int64 wall-clock microseconds (a naive timestamp, read in the configured timezone).
    LocalMicros,
    /// Int32 days since the epoch (a date).
    Days,
}

/// How a money column arrives in a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoneyKind {
    /// Text (or a decimal cast to text), parsed exactly.
    Text,
    /// Float64, rounded to the configured decimals.
    Float,
    /// Int64 whole units.
    Int,
}

/// A lazy scan plus what the normalizer needs to know about its column types.
pub struct Scan {
    pub frame: LazyFrame,
    pub ts: TsKind,
    pub amount: MoneyKind,
    pub cost: Option<MoneyKind>,
    pub has_order: bool,
}

fn read_err(file: &InputFile, e: impl std::fmt::Display) -> SourceError {
    SourceError::Read {
        file: file.path.display().to_string(),
        message: one_line(&e.to_string()),
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Opens the file lazily (reads its schema only) and checks that every mapped column exists.
pub fn scan(file: &InputFile, cfg: &Validated) -> Result<Scan, SourceError> {
    let path = PlRefPath::new(file.path.to_string_lossy().to_string());
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
                .with_encoding(CsvEncoding::LossyUtf8)
                .with_row_index(row_index)
                .with_raise_if_empty(true)
                .finish()
        }
        InputFormat::Parquet => LazyFrame::scan_parquet(
            path,
            ScanArgsParquet {
                row_index,
                ..Default::default()
            },
        ),
        InputFormat::Ndjson => {
            if file.size == 0 {
                return Err(read_err(file, "file is empty"));
            }
            LazyJsonLineReader::new(path)
                .with_row_index(row_index)
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
        file: file.path.display().to_string(),
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
    require(&c.customer_id, "customer_id")?;
    select.push(
        col(c.customer_id.as_str())
            .cast(DataType::String)
            .alias(CID),
    );

    let ts_dtype = require(&c.ts, "ts")?;
    let (ts_expr, ts_kind) = match &ts_dtype {
        DataType::String => (col(c.ts.as_str()), TsKind::Text),
        DataType::Date => (col(c.ts.as_str()).cast(DataType::Int32), TsKind::Days),
        DataType::Datetime(_, tz) => (
            col(c.ts.as_str())
                .cast(DataType::Datetime(TimeUnit::Microseconds, tz.clone()))
                .cast(DataType::Int64),
            if tz.is_some() {
                TsKind::UtcMicros
            } else {
                TsKind::LocalMicros
            },
        ),
        other => {
            return Err(SourceError::ColumnType {
                file: file.path.display().to_string(),
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
            d if d.is_integer() => (e.cast(DataType::Int64), MoneyKind::Int),
            DataType::Decimal(_, _) => (e.cast(DataType::String), MoneyKind::Text),
            DataType::Null => (e.cast(DataType::String), MoneyKind::Text),
            other => {
                return Err(SourceError::ColumnType {
                    file: file.path.display().to_string(),
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
    })
}
