//! The Arrow form of a [`Partial`]: two record batches, so partials cross process boundaries
//! (a Spark shuffle, a file) and are checked when they come back.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, BooleanBuilder, Date32Array, Float64Array, Float64Builder,
    Int64Array, Int64Builder, RecordBatch, StringArray, UInt8Array,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use chrono::NaiveDate;

use super::partial::{first_index, Head, Key, Partial, MEASURES};
use super::{Accounting, ApiError};
use crate::metrics::fold::Holdout;
use crate::metrics::CustomerRow;
use crate::source::Reject;
use crate::source::MONEY_ABS_LIMIT;
use crate::time::{date_to_days, days_to_date, Period};

/// A [`Partial`] as Arrow: its sums, its customer rows and its rejected rows (with the row
/// accounting in the metadata of `rejects`).
#[derive(Debug, Clone)]
pub struct PartialBatches {
    pub sums: RecordBatch,
    pub customers: RecordBatch,
    pub rejects: RecordBatch,
}

const META_AS_OF: &str = "customer_value.as_of";
const META_PERIOD: &str = "customer_value.period";
const META_DIMS: &str = "customer_value.segments";
const META_MONEY: &str = "customer_value.money_abs";
const META_EARLIEST: &str = "customer_value.earliest_local_us";
const META_ROWS: &str = "customer_value.rows";

/// The row accounting as the metadata of the rejects batch carries it (JSON).
#[derive(serde::Serialize, serde::Deserialize)]
struct Counts {
    rows_read: u64,
    rows_used: u64,
    rows_after_as_of: u64,
    newest: Option<i64>,
    #[serde(default)]
    sources: std::collections::BTreeMap<String, super::SourceCounts>,
}

impl Partial {
    /// The partial as two Arrow batches: `sums` (one row per non-zero sum: segment_by,
    /// segment, measure, period_start, cohort_offset, value) and `customers` (one row per
    /// customer before RFM scoring). The as_of date, period, segment columns and earliest order
    /// travel in the schema metadata of `sums`.
    pub fn to_arrow(&self) -> PartialBatches {
        let keys: Vec<(&Key, &i64)> = self.sums.iter().collect();
        let strs = |f: &dyn Fn(&Key) -> &str| -> ArrayRef {
            Arc::new(StringArray::from_iter_values(
                keys.iter().map(|(k, _)| f(k)),
            ))
        };
        let mut meta = HashMap::new();
        meta.insert(META_AS_OF.to_string(), self.head.as_of.to_string());
        meta.insert(META_PERIOD.to_string(), self.head.period.to_string());
        meta.insert(
            META_DIMS.to_string(),
            serde_json::to_string(&self.head.dims).unwrap_or_default(),
        );
        meta.insert(META_MONEY.to_string(), self.money_abs.to_string());
        if let Some(e) = self.earliest {
            meta.insert(META_EARLIEST.to_string(), e.to_string());
        }
        let sums = RecordBatch::try_new(
            Arc::new(sums_schema().as_ref().clone().with_metadata(meta)),
            vec![
                strs(&|k| &k.slot.0),
                strs(&|k| &k.slot.1),
                Arc::new(UInt8Array::from_iter_values(
                    keys.iter().map(|(k, _)| k.measure as u8),
                )),
                Arc::new(Date32Array::from_iter(keys.iter().map(|(k, _)| k.period))),
                Arc::new(Int64Array::from_iter(keys.iter().map(|(k, _)| k.offset))),
                Arc::new(Int64Array::from_iter_values(keys.iter().map(|(_, &v)| v))),
            ],
        )
        .expect("sums columns match their schema");
        PartialBatches {
            sums,
            customers: self.rows_batch(),
            rejects: self.rejects_batch(),
        }
    }

    /// The rejected rows (source, row, reason, raw values, local time when readable); the
    /// counts (read, used, after as_of, newest line) as JSON in the metadata.
    fn rejects_batch(&self) -> RecordBatch {
        let a = &self.accounting;
        let r = &a.rejects;
        let strs = |f: &dyn Fn(&Reject) -> Option<&str>| -> ArrayRef {
            Arc::new(StringArray::from(r.iter().map(f).collect::<Vec<_>>()))
        };
        let counts = serde_json::to_string(&Counts {
            rows_read: a.rows_read,
            rows_used: a.rows_used,
            rows_after_as_of: a.rows_after_as_of,
            newest: a.newest,
            sources: a.sources.clone(),
        })
        .expect("counts serialize");
        let meta = HashMap::from([(META_ROWS.to_string(), counts)]);
        RecordBatch::try_new(
            Arc::new(rejects_schema().as_ref().clone().with_metadata(meta)),
            vec![
                strs(&|x| Some(&x.file)),
                Arc::new(Int64Array::from_iter_values(r.iter().map(|x| x.row as i64))),
                strs(&|x| Some(&x.reason)),
                strs(&|x| x.customer_id.as_deref()),
                strs(&|x| x.ts.as_deref()),
                strs(&|x| x.amount.as_deref()),
                Arc::new(Int64Array::from_iter(r.iter().map(|x| x.ts_local))),
            ],
        )
        .expect("rejects columns match their schema")
    }

    fn accounting_of(batch: &RecordBatch) -> Result<Accounting, ApiError> {
        let bad = |why: &str| ApiError::Partial(format!("rejects batch: {why}"));
        check_schema("rejects", batch, &rejects_schema())?;
        let counts: Counts = batch
            .schema()
            .metadata()
            .get(META_ROWS)
            .and_then(|s| serde_json::from_str(s).ok())
            .ok_or_else(|| bad(&format!("metadata '{META_ROWS}' is missing or malformed")))?;
        let text = |i: usize| column::<StringArray>(batch, i);
        let (file, reason, cid, ts, amount) = (text(0), text(2), text(3), text(4), text(5));
        let (row, local) = (
            column::<Int64Array>(batch, 1),
            column::<Int64Array>(batch, 6),
        );
        let opt = |a: &StringArray, i: usize| a.is_valid(i).then(|| a.value(i).to_string());
        let mut rejects = Vec::with_capacity(batch.num_rows());
        for i in 0..batch.num_rows() {
            rejects.push(Reject {
                file: opt(file, i).ok_or_else(|| bad("a null source_file"))?,
                row: u64::try_from(row.value(i)).map_err(|_| bad("a negative source_row"))?,
                reason: opt(reason, i).ok_or_else(|| bad("a null reason"))?,
                customer_id: opt(cid, i),
                ts: opt(ts, i),
                amount: opt(amount, i),
                ts_local: local.is_valid(i).then(|| local.value(i)),
            });
        }
        let Counts {
            rows_read,
            rows_used,
            rows_after_as_of,
            newest,
            sources,
        } = counts;
        if rows_used + rows_after_as_of + rejects.len() as u64 != rows_read {
            return Err(bad("rows read ≠ used + rejected + after as_of"));
        }
        Ok(Accounting {
            rows_read,
            rows_used,
            rows_after_as_of,
            rejects,
            newest,
            sources,
        })
    }

    fn rows_batch(&self) -> RecordBatch {
        let rows = &self.rows;
        let first = self.first_index();
        let ints = |f: &dyn Fn(&CustomerRow) -> Option<i64>| -> ArrayRef {
            let mut b = Int64Builder::with_capacity(rows.len());
            for r in rows {
                b.append_option(f(r));
            }
            Arc::new(b.finish())
        };
        let mut cols: Vec<ArrayRef> = vec![Arc::new(StringArray::from_iter_values(
            rows.iter()
                .map(|r| self.customer_ids[r.cust as usize].as_str()),
        ))];
        for (d, values) in self.values.iter().enumerate() {
            cols.push(Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| values[r.segs[d] as usize].as_str()),
            )));
        }
        let cohort_start =
            |r: &CustomerRow| r.cohort.map(|c| self.head.period.start(first + c as i64));
        cols.push(Arc::new(Date32Array::from_iter(
            rows.iter().map(|r| cohort_start(r).map(date_to_days)),
        )));
        cols.extend([
            ints(&|r| r.first_utc),
            ints(&|r| r.last_utc),
            ints(&|r| Some(r.purchases)),
            ints(&|r| Some(r.revenue)),
            ints(&|r| Some(r.refunds)),
            ints(&|r| Some(r.cost)),
            ints(&|r| r.lifespan_months),
            ints(&|r| r.days_since_last),
        ]);
        let mut active = BooleanBuilder::with_capacity(rows.len());
        for r in rows {
            active.append_option(r.active);
        }
        cols.push(Arc::new(active.finish()));
        cols.extend([
            ints(&|r| r.churned_at_utc),
            ints(&|r| r.frequency),
            ints(&|r| r.recency),
            ints(&|r| r.t),
        ]);
        let mut monetary = Float64Builder::with_capacity(rows.len());
        for r in rows {
            monetary.append_option(r.monetary);
        }
        cols.push(Arc::new(monetary.finish()));
        let h = |r: &CustomerRow, f: fn(&Holdout) -> i64| r.holdout.as_deref().map(f);
        cols.extend([
            ints(&|r| h(r, |h| h.frequency)),
            ints(&|r| h(r, |h| h.recency)),
            ints(&|r| h(r, |h| h.t)),
            ints(&|r| h(r, |h| h.actual)),
        ]);
        RecordBatch::try_new(rows_schema(&self.head.dims), cols)
            .expect("partial customer columns match their schema")
    }

    /// Reads a partial back from the batches of [`to_arrow`](Partial::to_arrow) (for example
    /// after they crossed a process boundary as Arrow IPC). Malformed batches are errors.
    pub fn from_arrow(batches: &PartialBatches) -> Result<Partial, ApiError> {
        let (sums, customers) = (&batches.sums, &batches.customers);
        let bad = |why: String| ApiError::Partial(why);
        let meta = sums.schema().metadata().clone();
        let get = |k: &str| {
            meta.get(k)
                .ok_or_else(|| bad(format!("sums batch: metadata '{k}' is missing")))
        };
        let as_of: NaiveDate = get(META_AS_OF)?
            .parse()
            .map_err(|e| bad(format!("sums batch: metadata '{META_AS_OF}': {e}")))?;
        let period: Period =
            serde_json::from_value(serde_json::Value::String(get(META_PERIOD)?.clone()))
                .map_err(|e| bad(format!("sums batch: metadata '{META_PERIOD}': {e}")))?;
        let dims: Vec<String> = serde_json::from_str(get(META_DIMS)?)
            .map_err(|e| bad(format!("sums batch: metadata '{META_DIMS}': {e}")))?;
        let earliest = match meta.get(META_EARLIEST) {
            None => None,
            Some(e) => Some(
                e.parse::<i64>()
                    .map_err(|e| bad(format!("sums batch: metadata '{META_EARLIEST}': {e}")))?,
            ),
        };
        let money_abs: u128 = get(META_MONEY)?
            .parse()
            .ok()
            .filter(|&m| m <= MONEY_ABS_LIMIT)
            .ok_or_else(|| {
                bad(format!(
                    "sums batch: metadata '{META_MONEY}' is not a sum in range"
                ))
            })?;
        let head = Head {
            as_of,
            period,
            dims,
        };
        check_schema("sums", sums, &sums_schema())?;
        check_schema("customers", customers, &rows_schema(&head.dims))?;

        let by = column::<StringArray>(sums, 0);
        let seg = column::<StringArray>(sums, 1);
        let measure = column::<UInt8Array>(sums, 2);
        let period_col = column::<Date32Array>(sums, 3);
        let offset = column::<Int64Array>(sums, 4);
        let value = column::<Int64Array>(sums, 5);
        let mut out = BTreeMap::new();
        for i in 0..sums.num_rows() {
            let m = *MEASURES.get(measure.value(i) as usize).ok_or_else(|| {
                bad(format!(
                    "sums batch row {i}: unknown measure {}",
                    measure.value(i)
                ))
            })?;
            let key = Key {
                slot: (by.value(i).to_string(), seg.value(i).to_string()),
                measure: m,
                period: period_col.is_valid(i).then(|| period_col.value(i)),
                offset: offset.is_valid(i).then(|| offset.value(i)),
            };
            *out.entry(key).or_insert(0) += value.value(i);
        }

        let n = customers.num_rows();
        let ids = column::<StringArray>(customers, 0);
        let n_dims = head.dims.len();
        let mut values: Vec<Vec<String>> = vec![Vec::new(); n_dims];
        let mut value_at: Vec<HashMap<&str, u32>> = vec![HashMap::new(); n_dims];
        let seg_cols: Vec<&StringArray> = (0..n_dims)
            .map(|d| column::<StringArray>(customers, 1 + d))
            .collect();
        let c = 1 + n_dims;
        let cohort = column::<Date32Array>(customers, c);
        let int = |k: usize| column::<Int64Array>(customers, c + 1 + k);
        let (first_utc, last_utc, purchases, revenue, refunds, cost, lifespan, days) = (
            int(0),
            int(1),
            int(2),
            int(3),
            int(4),
            int(5),
            int(6),
            int(7),
        );
        let active = column::<BooleanArray>(customers, c + 9);
        let (churned, frequency, recency, t) = (
            column::<Int64Array>(customers, c + 10),
            column::<Int64Array>(customers, c + 11),
            column::<Int64Array>(customers, c + 12),
            column::<Int64Array>(customers, c + 13),
        );
        let monetary = column::<Float64Array>(customers, c + 14);
        let holdout: [&Int64Array; 4] =
            std::array::from_fn(|k| column::<Int64Array>(customers, c + 15 + k));
        let opt = |a: &Int64Array, i: usize| a.is_valid(i).then(|| a.value(i));
        let first = first_index(&head, earliest);
        let mut rows = Vec::with_capacity(n);
        let mut customer_ids = Vec::with_capacity(n);
        for i in 0..n {
            if ids.is_null(i) || seg_cols.iter().any(|s| s.is_null(i)) {
                return Err(bad(format!("customers batch row {i}: a null key")));
            }
            let segs: Box<[u32]> = seg_cols
                .iter()
                .zip(value_at.iter_mut().zip(values.iter_mut()))
                .map(|(col, (at, vals))| {
                    let v = col.value(i);
                    *at.entry(v).or_insert_with(|| {
                        vals.push(v.to_string());
                        (vals.len() - 1) as u32
                    })
                })
                .collect();
            let cohort = match cohort.is_valid(i) {
                false => None,
                true => {
                    let date = days_to_date(cohort.value(i) as i64).ok_or_else(|| {
                        bad(format!("customers batch row {i}: cohort is not a date"))
                    })?;
                    let idx = period.index(date) - first;
                    Some(usize::try_from(idx).map_err(|_| {
                        bad(format!(
                            "customers batch row {i}: cohort before the earliest order"
                        ))
                    })?)
                }
            };
            customer_ids.push(ids.value(i).to_string());
            rows.push(CustomerRow {
                cust: i as u32,
                segs,
                cohort,
                first_utc: opt(first_utc, i),
                last_utc: opt(last_utc, i),
                purchases: purchases.value(i),
                revenue: revenue.value(i),
                refunds: refunds.value(i),
                cost: cost.value(i),
                lifespan_months: opt(lifespan, i),
                days_since_last: opt(days, i),
                active: active.is_valid(i).then(|| active.value(i)),
                churned_at_utc: opt(churned, i),
                frequency: opt(frequency, i),
                recency: opt(recency, i),
                t: opt(t, i),
                monetary: monetary.is_valid(i).then(|| monetary.value(i)),
                rfm: None,
                rfm_segment: None,
                prediction: None,
                holdout: match holdout.iter().all(|c| c.is_valid(i)) {
                    true => Some(Box::new(Holdout {
                        frequency: holdout[0].value(i),
                        recency: holdout[1].value(i),
                        t: holdout[2].value(i),
                        actual: holdout[3].value(i),
                    })),
                    false => None,
                },
            });
        }
        Ok(Partial {
            head,
            earliest,
            money_abs,
            sums: out,
            customer_ids,
            values,
            rows,
            accounting: Self::accounting_of(&batches.rejects)?,
        })
    }
}

fn rejects_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("source_file", DataType::Utf8, false),
        Field::new("source_row", DataType::Int64, false),
        Field::new("reason", DataType::Utf8, false),
        Field::new("customer_id", DataType::Utf8, true),
        Field::new("ts", DataType::Utf8, true),
        Field::new("amount", DataType::Utf8, true),
        Field::new("ts_local_us", DataType::Int64, true),
    ]))
}

fn sums_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("segment_by", DataType::Utf8, false),
        Field::new("segment", DataType::Utf8, false),
        Field::new("measure", DataType::UInt8, false),
        Field::new("period_start", DataType::Date32, true),
        Field::new("cohort_offset", DataType::Int64, true),
        Field::new("value", DataType::Int64, false),
    ]))
}

fn rows_schema(dims: &[String]) -> SchemaRef {
    let mut fields = vec![Field::new("customer_id", DataType::Utf8, false)];
    fields.extend(dims.iter().map(|d| Field::new(d, DataType::Utf8, false)));
    fields.push(Field::new("cohort", DataType::Date32, true));
    for (name, nullable) in [
        ("first_utc_us", true),
        ("last_utc_us", true),
        ("purchases", false),
        ("revenue", false),
        ("refunds", false),
        ("cost", false),
        ("lifespan_months", true),
        ("days_since_last", true),
    ] {
        fields.push(Field::new(name, DataType::Int64, nullable));
    }
    fields.push(Field::new("active", DataType::Boolean, true));
    for name in ["churned_at_utc_us", "frequency", "recency", "t"] {
        fields.push(Field::new(name, DataType::Int64, true));
    }
    fields.push(Field::new("monetary", DataType::Float64, true));
    for name in [
        "holdout_frequency",
        "holdout_recency",
        "holdout_t",
        "holdout_actual",
    ] {
        fields.push(Field::new(name, DataType::Int64, true));
    }
    Arc::new(Schema::new(fields))
}

/// Checks a batch's columns against `want`: names and types (a stored field's nullability and
/// metadata aside), and no nulls where `want` has none.
fn check_schema(what: &str, batch: &RecordBatch, want: &SchemaRef) -> Result<(), ApiError> {
    let got = batch.schema();
    let same = got.fields().len() == want.fields().len()
        && got
            .fields()
            .iter()
            .zip(want.fields())
            .all(|(a, b)| a.name() == b.name() && a.data_type() == b.data_type());
    if !same {
        return Err(ApiError::Partial(format!(
            "{what} batch: columns {:?} are not those of a partial ({:?})",
            got.fields()
                .iter()
                .map(|f| (f.name(), f.data_type()))
                .collect::<Vec<_>>(),
            want.fields()
                .iter()
                .map(|f| (f.name(), f.data_type()))
                .collect::<Vec<_>>()
        )));
    }
    for (i, f) in want.fields().iter().enumerate() {
        if !f.is_nullable() && batch.column(i).null_count() > 0 {
            return Err(ApiError::Partial(format!(
                "{what} batch: column '{}' has nulls",
                f.name()
            )));
        }
    }
    Ok(())
}

/// Column `i` of a batch whose schema was checked.
fn column<T: 'static>(batch: &RecordBatch, i: usize) -> &T {
    batch
        .column(i)
        .as_any()
        .downcast_ref::<T>()
        .expect("column types were checked")
}
