//! Normalized lines as Arrow → the lines the orders stage groups (the library API's ingest).
//! The rules are the reader's (`source::normalize`) for values that are already typed: texts
//! trimmed, an empty order_id is no order_id, an empty segment value is `__unknown__`, lines at
//! or after the cutoff are not seen.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use super::ApiError;
use crate::config::{ColumnsConfig, Validated};
use crate::source::MONEY_ABS_LIMIT;
use crate::source::{text_hash, Dict, Ingested, ROW_ORDER_BASE, UNKNOWN_SEGMENT};
use crate::time::Zone;

const CUSTOMER_ID: &str = "customer_id";
const ORDER_ID: &str = "order_id";
const TS: &str = "ts";
const TS_LOCAL: &str = "ts_local";
const AMOUNT: &str = "amount";
const COST: &str = "cost";

fn utc() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn wall_clock() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, None)
}

/// The columns of the lines under `c`, in their preferred types (`ts_local` left out: it is
/// optional).
pub(super) fn schema(c: &ColumnsConfig) -> SchemaRef {
    let mut fields = vec![
        Field::new(CUSTOMER_ID, DataType::Utf8, false),
        Field::new(TS, utc(), false),
        Field::new(AMOUNT, DataType::Int64, false),
    ];
    if c.order_id.is_some() {
        fields.push(Field::new(ORDER_ID, DataType::Utf8, true));
    }
    if c.cost.is_some() {
        fields.push(Field::new(COST, DataType::Int64, false));
    }
    fields.extend(
        c.segments
            .iter()
            .map(|s| Field::new(s, DataType::Utf8, true)),
    );
    Arc::new(Schema::new(fields))
}

/// What a column's values may be read from.
#[derive(Clone, Copy)]
enum Kind {
    Text,
    Instant,
    WallClock,
    Integer,
}

impl Kind {
    fn target(self) -> DataType {
        match self {
            Kind::Text => DataType::Utf8,
            Kind::Instant => utc(),
            Kind::WallClock => wall_clock(),
            Kind::Integer => DataType::Int64,
        }
    }

    fn accepts(self, t: &DataType) -> bool {
        use DataType::*;
        let text = |t: &DataType| matches!(t, Utf8 | LargeUtf8 | Utf8View);
        let int = |t: &DataType| t.is_integer();
        match self {
            Kind::Text => text(t) || int(t) || matches!(t, Dictionary(_, v) if text(v)),
            Kind::Instant => matches!(t, Timestamp(_, _) | Date32 | Date64),
            Kind::WallClock => matches!(t, Timestamp(_, None)),
            Kind::Integer => int(t),
        }
    }
}

/// Column `name` of `batch` read as `kind`; None when absent and not `required`.
fn column(
    batch: &RecordBatch,
    name: &str,
    kind: Kind,
    required: bool,
) -> Result<Option<ArrayRef>, ApiError> {
    let Some(col) = batch.column_by_name(name) else {
        if !required {
            return Ok(None);
        }
        let schema = batch.schema();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        return Err(ApiError::MissingColumn {
            column: name.into(),
            available: names.join(", "),
        });
    };
    let wrong = || ApiError::ColumnType {
        column: name.into(),
        found: col.data_type().to_string(),
        expected: kind.target().to_string(),
    };
    if !kind.accepts(col.data_type()) {
        return Err(wrong());
    }
    let to = |t: &DataType| cast(col, t).map_err(|_| wrong());
    Ok(Some(match (kind, col.data_type()) {
        // Timestamps are read as their µs values: UTC instants when the type has a timezone,
        // and read as such without one.
        (Kind::Instant | Kind::WallClock, DataType::Timestamp(_, tz)) => {
            let micros = to(&DataType::Timestamp(TimeUnit::Microsecond, tz.clone()))?;
            cast(&micros, &DataType::Int64).map_err(|_| wrong())?
        }
        (Kind::Instant, _) => {
            let micros = to(&wall_clock())?;
            cast(&micros, &DataType::Int64).map_err(|_| wrong())?
        }
        // Safe casts: a value that does not fit (a u64 beyond i64) becomes null, reported where
        // it is read.
        _ => to(&kind.target())?,
    }))
}

fn ints(a: &ArrayRef) -> &Int64Array {
    a.as_any()
        .downcast_ref::<Int64Array>()
        .expect("cast to Int64")
}

fn texts(a: &ArrayRef) -> &StringArray {
    a.as_any()
        .downcast_ref::<StringArray>()
        .expect("cast to Utf8")
}

/// Every line of `batches` before `cutoff` (local µs), interned.
pub(super) fn ingest(
    cfg: &Validated,
    cutoff: i64,
    batches: &[RecordBatch],
) -> Result<Ingested, ApiError> {
    let c = &cfg.config.input.columns;
    let zone = Zone::new(cfg.tz);
    let mut ing = Ingested {
        has_cost: c.cost.is_some(),
        segments: c.segments.iter().map(|_| Dict::default()).collect(),
        ..Ingested::default()
    };
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    ing.lines.reserve(
        rows,
        c.segments.len(),
        !zone.is_utc(),
        c.cost.is_some(),
        c.order_id.is_some(),
    );
    let mut line_no = 0u64;
    for (b, batch) in batches.iter().enumerate() {
        let need = |name: &str, kind| {
            column(batch, name, kind, true).map(|c| c.expect("required columns are present"))
        };
        let cid = need(CUSTOMER_ID, Kind::Text)?;
        let ts = need(TS, Kind::Instant)?;
        let amount = need(AMOUNT, Kind::Integer)?;
        let local = column(batch, TS_LOCAL, Kind::WallClock, false)?;
        let order = match c.order_id {
            Some(_) => Some(need(ORDER_ID, Kind::Text)?),
            None => None,
        };
        let cost = match c.cost {
            Some(_) => Some(need(COST, Kind::Integer)?),
            None => None,
        };
        let segs = c
            .segments
            .iter()
            .map(|s| need(s, Kind::Text))
            .collect::<Result<Vec<_>, _>>()?;
        let (cid, ts, amount) = (texts(&cid), ints(&ts), ints(&amount));
        let local = local.as_ref().map(ints);
        let order = order.as_ref().map(texts);
        let cost = cost.as_ref().map(ints);
        let segs: Vec<&StringArray> = segs.iter().map(texts).collect();
        let bad = |column: &str, row: usize, problem| ApiError::Value {
            column: column.into(),
            batch: b,
            row,
            problem,
        };
        for i in 0..batch.num_rows() {
            line_no += 1;
            if ts.is_null(i) {
                return Err(bad(TS, i, "null (or beyond the range of timestamps)"));
            }
            let ts_utc = ts.value(i);
            let ts_local = match local {
                Some(l) if l.is_valid(i) => l.value(i),
                _ => zone.utc_to_local(ts_utc),
            };
            if ts_local >= cutoff {
                continue;
            }
            let id = if cid.is_valid(i) {
                cid.value(i).trim()
            } else {
                ""
            };
            if id.is_empty() {
                return Err(bad(CUSTOMER_ID, i, "null or empty"));
            }
            if amount.is_null(i) {
                return Err(bad(
                    AMOUNT,
                    i,
                    "null (or beyond the range of 64-bit integers)",
                ));
            }
            let l = &mut ing.lines;
            l.cust.push(ing.customers.intern(id));
            let oid = order
                .filter(|o| o.is_valid(i))
                .map_or("", |o| o.value(i).trim());
            l.order.push(match oid {
                "" => ROW_ORDER_BASE + line_no,
                text => text_hash(text),
            });
            if order.is_some() {
                l.order_ids.push(oid);
            }
            if !zone.is_utc() {
                l.ts_utc.push(ts_utc);
            }
            l.ts_local.push(ts_local);
            l.amount.push(amount.value(i));
            ing.money_abs += amount.value(i).unsigned_abs() as u128;
            if let Some(cost) = cost {
                if cost.is_null(i) {
                    return Err(bad(
                        COST,
                        i,
                        "null (or beyond the range of 64-bit integers)",
                    ));
                }
                l.cost.push(cost.value(i));
                ing.money_abs += cost.value(i).unsigned_abs() as u128;
            }
            if ing.money_abs > MONEY_ABS_LIMIT {
                return Err(ApiError::Overflow);
            }
            for (col, dict) in segs.iter().zip(ing.segments.iter_mut()) {
                let v = if col.is_valid(i) {
                    col.value(i).trim()
                } else {
                    ""
                };
                l.seg
                    .push(dict.intern(if v.is_empty() { UNKNOWN_SEGMENT } else { v }));
            }
        }
    }
    Ok(ing)
}
