//! Input rows as Arrow → lines, rejects and the row accounting: what the CLI does to the rows of
//! an input file, for rows an engine read itself (a Spark partition, a DataFrame in a
//! notebook). The columns are named as `input.columns` maps them and hold the values as the
//! files do (text, or typed); every row goes through the CLI's rules (`source::rules`), so a
//! bad row is a reject with the CLI's reason, never an error.

use arrow::array::{
    Array, ArrayRef, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
};
use std::collections::BTreeMap;

use arrow::compute::cast;
use arrow::datatypes::{DataType, TimeUnit};

use super::ApiError;
use crate::config::Validated;
use crate::source::rules::{self, EpochUnit, MoneyValue, Outcome, Row, Rules, TsValue};
use crate::source::{Dict, Ingested, Reject, ROW_ORDER_BASE, UNKNOWN_SEGMENT};
use crate::time::Zone;

/// How a ts column is read.
enum TsCol {
    Text(StringArray),
    Epoch(Int64Array, EpochUnit, bool),
    Days(Int32Array),
}

impl TsCol {
    fn value(&self, i: usize) -> Option<TsValue<'_>> {
        match self {
            TsCol::Text(a) => a.is_valid(i).then(|| TsValue::Text(a.value(i))),
            TsCol::Epoch(a, unit, utc) => a.is_valid(i).then(|| TsValue::Epoch {
                ticks: a.value(i),
                unit: *unit,
                utc: *utc,
            }),
            TsCol::Days(a) => a.is_valid(i).then(|| TsValue::Days(a.value(i))),
        }
    }
}

/// How an amount or cost column is read.
enum MoneyCol {
    Text(StringArray),
    Float(Float64Array),
    Int(Int64Array),
}

impl MoneyCol {
    fn value(&self, i: usize) -> Option<MoneyValue<'_>> {
        match self {
            MoneyCol::Text(a) => a.is_valid(i).then(|| MoneyValue::Text(a.value(i))),
            MoneyCol::Float(a) => a.is_valid(i).then(|| MoneyValue::Float(a.value(i))),
            MoneyCol::Int(a) => a.is_valid(i).then(|| MoneyValue::Int(a.value(i))),
        }
    }
}

/// Column of a row's source file, when rows name their own (see [`Rows`]).
pub const SOURCE_FILE: &str = "__source_file";
/// Column of a row's number within its source file (see [`Rows`]).
pub const SOURCE_ROW: &str = "__source_row";

/// Column of a reason the engine's reader already rejected the row for (a malformed CSV record
/// its parser flagged, named with the CLI's reason): a row with a value there is a reject with
/// that reason and no values, as the CLI rejects such a record.
pub const REJECT: &str = "__reject";

/// The mapped columns of one batch.
struct Columns {
    cid: StringArray,
    cid_float: bool,
    ts: TsCol,
    amount: MoneyCol,
    cost: Option<MoneyCol>,
    order: Option<StringArray>,
    segs: Vec<StringArray>,
    /// Each row's own source file and row, when the batch names them.
    sources: Option<(StringArray, Int64Array)>,
    /// Reasons rows were already rejected for (`REJECT`), when the batch has them.
    rejected: Option<StringArray>,
}

fn text(a: &ArrayRef) -> StringArray {
    cast(a, &DataType::Utf8)
        .expect("every type this reads casts to text")
        .as_any()
        .downcast_ref::<StringArray>()
        .expect("cast to Utf8")
        .clone()
}

fn is_text(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

impl Columns {
    fn of(batch: &RecordBatch, cfg: &Validated) -> Result<Columns, ApiError> {
        let c = &cfg.config.input.columns;
        let col = |name: &str| -> Result<&ArrayRef, ApiError> {
            batch.column_by_name(name).ok_or_else(|| {
                let schema = batch.schema();
                let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                ApiError::MissingColumn {
                    column: name.into(),
                    available: names.join(", "),
                }
            })
        };
        let wrong = |name: &str, a: &ArrayRef, expected: &str| ApiError::ColumnType {
            column: name.into(),
            found: a.data_type().to_string(),
            expected: expected.into(),
        };
        // Ids and segment values are text; numbers are read as their text, as the CLI does.
        let texty = |name: &str| -> Result<StringArray, ApiError> {
            let a = col(name)?;
            let t = a.data_type();
            if is_text(t)
                || t.is_integer()
                || t.is_floating()
                || matches!(t, DataType::Null | DataType::Boolean)
                || matches!(t, DataType::Dictionary(_, v) if is_text(v))
            {
                Ok(text(a))
            } else {
                Err(wrong(name, a, "text"))
            }
        };
        let ts = {
            let a = col(&c.ts)?;
            match a.data_type() {
                t if is_text(t) || matches!(t, DataType::Null) => TsCol::Text(text(a)),
                DataType::Dictionary(_, v) if is_text(v) => TsCol::Text(text(a)),
                DataType::Date32 => TsCol::Days(
                    a.as_any()
                        .downcast_ref::<Int32Array>()
                        .cloned()
                        .unwrap_or_else(|| ints32(a)),
                ),
                DataType::Date64 => TsCol::Epoch(ints64(a), EpochUnit::Millis, false),
                DataType::Timestamp(unit, tz) => TsCol::Epoch(
                    ints64(a),
                    match unit {
                        TimeUnit::Second => EpochUnit::Seconds,
                        TimeUnit::Millisecond => EpochUnit::Millis,
                        TimeUnit::Microsecond => EpochUnit::Micros,
                        TimeUnit::Nanosecond => EpochUnit::Nanos,
                    },
                    tz.is_some(),
                ),
                _ => return Err(wrong(&c.ts, a, "a timestamp (text, date or datetime)")),
            }
        };
        let money = |name: &str| -> Result<MoneyCol, ApiError> {
            let a = col(name)?;
            Ok(match a.data_type() {
                t if is_text(t) || matches!(t, DataType::Null) => MoneyCol::Text(text(a)),
                DataType::Dictionary(_, v) if is_text(v) => MoneyCol::Text(text(a)),
                t if t.is_floating() => MoneyCol::Float(
                    cast(a, &DataType::Float64)
                        .expect("floats cast to Float64")
                        .as_any()
                        .downcast_ref::<Float64Array>()
                        .expect("Float64")
                        .clone(),
                ),
                // Exact as text: a cast to Int64 would turn values above its range into nulls.
                DataType::UInt64 => MoneyCol::Text(text(a)),
                t if t.is_integer() => MoneyCol::Int(ints64(a)),
                DataType::Decimal32(_, _)
                | DataType::Decimal64(_, _)
                | DataType::Decimal128(_, _)
                | DataType::Decimal256(_, _) => MoneyCol::Text(text(a)),
                _ => return Err(wrong(name, a, "money (text, integer, float or decimal)")),
            })
        };
        Ok(Columns {
            cid_float: col(&c.customer_id)?.data_type().is_floating(),
            cid: texty(&c.customer_id)?,
            ts,
            amount: money(&c.amount)?,
            cost: c.cost.as_deref().map(money).transpose()?,
            order: c.order_id.as_deref().map(texty).transpose()?,
            segs: c
                .segments
                .iter()
                .map(|s| texty(s))
                .collect::<Result<_, _>>()?,
            sources: match (
                batch.column_by_name(SOURCE_FILE),
                batch.column_by_name(SOURCE_ROW),
            ) {
                (None, None) => None,
                (Some(f), Some(r)) if r.data_type().is_integer() => Some((text(f), ints64(r))),
                _ => {
                    return Err(ApiError::ColumnType {
                        column: format!("{SOURCE_FILE}, {SOURCE_ROW}"),
                        found: "one of them, or a row number that is not an integer".into(),
                        expected: "both: the source file (text) and row (integer)".into(),
                    })
                }
            },
            rejected: batch.column_by_name(REJECT).map(text),
        })
    }

    fn row(&self, i: usize) -> Row<'_> {
        fn get(a: &StringArray, i: usize) -> Option<&str> {
            a.is_valid(i).then(|| a.value(i))
        }
        Row {
            ts: self.ts.value(i),
            customer_id: get(&self.cid, i),
            amount: self.amount.value(i),
            cost: self.cost.as_ref().map(|c| c.value(i)),
            order_id: self.order.as_ref().and_then(|o| get(o, i)),
            // Arrow text is valid UTF-8: U+FFFD is a real character here.
            order_replaced: false,
            segment_replaced: false,
        }
    }
}

fn ints64(a: &ArrayRef) -> Int64Array {
    cast(a, &DataType::Int64)
        .expect("integers, dates and timestamps cast to Int64")
        .as_any()
        .downcast_ref::<Int64Array>()
        .expect("Int64")
        .clone()
}

fn ints32(a: &ArrayRef) -> Int32Array {
    cast(a, &DataType::Int32)
        .expect("dates cast to Int32")
        .as_any()
        .downcast_ref::<Int32Array>()
        .expect("Int32")
        .clone()
}

/// Row accounting of the rows read (SPEC §4: read = used + rejected + after as_of), and the
/// newest line's local time (for the staleness check).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Accounting {
    pub rows_read: u64,
    pub rows_used: u64,
    pub rows_after_as_of: u64,
    /// Every rejected row, with its reason and source.
    pub rejects: Vec<Reject>,
    pub newest: Option<i64>,
    /// The counts of each source (its rejects are those of `rejects` that name it).
    pub sources: BTreeMap<String, SourceCounts>,
}

/// Rows of one source: read, used and after as_of.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SourceCounts {
    pub read: u64,
    pub used: u64,
    pub after_as_of: u64,
}

impl Accounting {
    pub fn rows_rejected(&self) -> u64 {
        self.rejects.len() as u64
    }

    pub fn merge(&mut self, other: Accounting) {
        self.rows_read += other.rows_read;
        self.rows_used += other.rows_used;
        self.rows_after_as_of += other.rows_after_as_of;
        self.rejects.extend(other.rejects);
        self.newest = self.newest.max(other.newest);
        for (name, c) in other.sources {
            let s = self.sources.entry(name).or_default();
            s.read += c.read;
            s.used += c.used;
            s.after_as_of += c.after_as_of;
        }
    }
}

/// Input rows of one source (a file, a table): its rows are numbered from `first_row` on, in
/// batch order. A batch may instead name each row's source and row itself, in the columns
/// [`SOURCE_FILE`] (text) and [`SOURCE_ROW`] (integer), when its rows come from many files (a
/// partition of a Spark job).
#[derive(Debug, Clone, Copy)]
pub struct Rows<'a> {
    pub source: &'a str,
    pub first_row: u64,
    pub batches: &'a [RecordBatch],
}

/// The lines of every source's rows before `cutoff` (local µs), interned, with the rejects
/// and the accounting.
pub(super) fn ingest(
    cfg: &Validated,
    cutoff: i64,
    sources: &[Rows<'_>],
) -> Result<(Ingested, Accounting), ApiError> {
    let c = &cfg.config.input.columns;
    let zone = Zone::new(cfg.tz);
    let mut ing = Ingested {
        has_cost: c.cost.is_some(),
        segments: c.segments.iter().map(|_| Dict::default()).collect(),
        ..Ingested::default()
    };
    let mut acc = Accounting::default();
    let rows: usize = sources
        .iter()
        .flat_map(|s| s.batches)
        .map(RecordBatch::num_rows)
        .sum();
    ing.lines.reserve(
        rows,
        c.segments.len(),
        !zone.is_utc(),
        c.cost.is_some(),
        c.order_id.is_some(),
    );
    // The current source's counts, added to `acc.sources` when the source changes.
    let mut last: Option<(String, SourceCounts)> = None;
    for &Rows {
        source,
        first_row,
        batches,
    } in sources
    {
        let mut row_no = first_row;
        for batch in batches {
            let cols = Columns::of(batch, cfg)?;
            let rules = Rules {
                cutoff_local: cutoff,
                zone,
                decimals: cfg.config.input.amount_decimals,
                ts_format: &cfg.config.input.ts_format,
                lossy: false,
                cid_float: cols.cid_float,
            };
            for i in 0..batch.num_rows() {
                let row = cols.row(i);
                let this_row = row_no;
                row_no += 1;
                acc.rows_read += 1;
                let (file, row_in_file) = match &cols.sources {
                    Some((f, r)) => (
                        if f.is_valid(i) { f.value(i) } else { source },
                        if r.is_valid(i) {
                            r.value(i) as u64
                        } else {
                            this_row
                        },
                    ),
                    None => (source, this_row),
                };
                if last.as_ref().is_none_or(|(name, _)| name.as_str() != file) {
                    if let Some((name, c)) = last.take() {
                        add(&mut acc.sources, name, c);
                    }
                    last = Some((file.to_string(), SourceCounts::default()));
                }
                let counts = &mut last.as_mut().expect("set above").1;
                counts.read += 1;
                if let Some(reason) = cols
                    .rejected
                    .as_ref()
                    .filter(|a| a.is_valid(i))
                    .map(|a| a.value(i))
                {
                    acc.rejects.push(Reject {
                        file: file.to_string(),
                        row: row_in_file,
                        reason: reason.to_string(),
                        customer_id: None,
                        ts: None,
                        amount: None,
                        ts_local: None,
                    });
                    continue;
                }
                let used = match rules::classify(&row, &rules) {
                    Outcome::Used(u) => u,
                    Outcome::After | Outcome::Blank => {
                        acc.rows_after_as_of += 1;
                        counts.after_as_of += 1;
                        continue;
                    }
                    Outcome::Rejected(reason, ts_local) => {
                        acc.rejects.push(Reject {
                            file: file.to_string(),
                            row: row_in_file,
                            reason: reason.to_string(),
                            customer_id: row.customer_id.map(str::to_string),
                            ts: row.ts.map(|t| t.raw()),
                            amount: row.amount.map(|a| a.raw()),
                            ts_local,
                        });
                        continue;
                    }
                };
                acc.rows_used += 1;
                counts.used += 1;
                acc.newest = acc.newest.max(Some(used.ts_local));
                ing.money_abs +=
                    used.amount.unsigned_abs() as u128 + used.cost.unsigned_abs() as u128;
                if ing.money_abs > crate::source::MONEY_ABS_LIMIT && ing.money_overflow_at.is_none()
                {
                    ing.money_overflow_at = Some((source.to_string(), this_row));
                }
                let l = &mut ing.lines;
                l.cust.push(
                    ing.customers
                        .intern(rules::trim(row.customer_id.unwrap_or(""))),
                );
                let line = l.order.len() as u64;
                l.order
                    .push(used.order_hash.unwrap_or(ROW_ORDER_BASE + line));
                if cols.order.is_some() {
                    l.order_ids.push(rules::trim(row.order_id.unwrap_or("")));
                }
                if !zone.is_utc() {
                    l.ts_utc.push(used.ts_utc);
                }
                l.ts_local.push(used.ts_local);
                l.amount.push(used.amount);
                if cols.cost.is_some() {
                    l.cost.push(used.cost);
                }
                for (col, dict) in cols.segs.iter().zip(ing.segments.iter_mut()) {
                    let v = if col.is_valid(i) {
                        rules::trim(col.value(i))
                    } else {
                        ""
                    };
                    l.seg
                        .push(dict.intern(if v.is_empty() { UNKNOWN_SEGMENT } else { v }));
                }
            }
        }
    }
    if let Some((name, c)) = last.take() {
        add(&mut acc.sources, name, c);
    }
    Ok((ing, acc))
}

fn add(sources: &mut BTreeMap<String, SourceCounts>, name: String, c: SourceCounts) {
    let s = sources.entry(name).or_default();
    s.read += c.read;
    s.used += c.used;
    s.after_as_of += c.after_as_of;
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{RecordBatch, StringArray};

    use super::*;
    use crate::api::Computation;

    #[test]
    fn a_row_its_reader_rejected_is_a_reject_with_that_reason_and_no_values() {
        let toml = "[input]\n[input.columns]\ncustomer_id = \"c\"\nts = \"t\"\namount = \"a\"\n";
        let as_of = chrono::NaiveDate::from_ymd_opt(2024, 1, 31).unwrap();
        let c = Computation::from_toml(toml, as_of).unwrap();
        let text = |v: [Option<&str>; 3]| Arc::new(StringArray::from(v.to_vec())) as ArrayRef;
        // Row 1 is fine; row 2 has values but its reader flagged it (a record with fewer fields);
        // row 3 is not a number. By hand: read 3, used 1, rejected 2 (rows 2 and 3).
        let batch = RecordBatch::try_from_iter([
            ("c", text([Some("x"), Some("y"), Some("z")])),
            (
                "t",
                text([Some("2024-01-02"), Some("2024-01-03"), Some("2024-01-04")]),
            ),
            ("a", text([Some("1.00"), Some("2.00"), Some("abc")])),
            (
                REJECT,
                text([None, Some("csv: fewer fields than the header"), None]),
            ),
        ])
        .unwrap();
        let partial = c
            .fold_rows(&[Rows {
                source: "f.csv",
                first_row: 1,
                batches: &[batch],
            }])
            .unwrap();
        let acc = &partial.accounting;
        assert_eq!(
            (acc.rows_read, acc.rows_used, acc.rows_rejected()),
            (3, 1, 2)
        );
        let r = &acc.rejects[0];
        assert_eq!((r.file.as_str(), r.row), ("f.csv", 2));
        assert_eq!(r.reason, "csv: fewer fields than the header");
        assert_eq!((&r.customer_id, &r.ts, &r.amount), (&None, &None, &None));
        assert_eq!(acc.rejects[1].row, 3);
        assert_eq!(acc.rejects[1].reason, "amount: not a number");
    }
}
