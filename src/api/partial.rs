//! A partial: what one customer partition contributes to one as_of date's tables, in a form that
//! merges exactly with any other partition's and travels as Arrow.
//!
//! It holds the retention and cohort accumulators of every segment as integer sums keyed by
//! names and dates (segment_by, segment, measure, period start, cohort offset), so partitions
//! whose first order falls in different periods, or that saw different segment values, still
//! add up key by key; and the partition's customer rows before RFM scoring (scores rank a
//! customer within the whole base, so they are given when the partials are finished).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, BooleanBuilder, Date32Array, Float64Array, Float64Builder,
    Int64Array, Int64Builder, RecordBatch, StringArray, UInt8Array,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use chrono::NaiveDate;

use super::ApiError;
use crate::metrics::fold::{Acc, CohortAcc, NO_COHORT};
use crate::metrics::{Ctx, CustomerRow};
use crate::source::normalize::MONEY_ABS_LIMIT;
use crate::time::{date_to_days, days_to_date, local_micros_to_date, Period};

/// What is summed under a key. Period measures are keyed by the start of their period (for
/// `ActiveDiff`, of the period that begins at the boundary); cohort measures by the cohort's
/// period start and the offset from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub(crate) enum Measure {
    /// Orders before the cutoff (all customers; keyed to the `all` segment).
    Orders = 0,
    /// Customers assigned to the segment.
    Customers,
    /// Difference array of customers active at each period boundary.
    ActiveDiff,
    New,
    Churned,
    Reactivated,
    Revenue,
    Purchases,
    CohortSize,
    CohortActive,
    CohortEndDiff,
    CohortEverDiff,
    CohortRevenue,
    CohortCost,
    CohortPurchases,
}

const MEASURES: [Measure; 15] = [
    Measure::Orders,
    Measure::Customers,
    Measure::ActiveDiff,
    Measure::New,
    Measure::Churned,
    Measure::Reactivated,
    Measure::Revenue,
    Measure::Purchases,
    Measure::CohortSize,
    Measure::CohortActive,
    Measure::CohortEndDiff,
    Measure::CohortEverDiff,
    Measure::CohortRevenue,
    Measure::CohortCost,
    Measure::CohortPurchases,
];

/// One sum's key. `period` is a period start (days since 1970-01-01), `offset` a cohort offset.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Key {
    pub(crate) slot: (String, String),
    pub(crate) measure: Measure,
    pub(crate) period: Option<i32>,
    pub(crate) offset: Option<i64>,
}

/// The fixed facts every partial of one computation shares; partials that differ cannot merge.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Head {
    pub(crate) as_of: NaiveDate,
    pub(crate) period: Period,
    pub(crate) dims: Vec<String>,
}

/// One partition's (or several merged partitions') contribution to one as_of date's tables.
/// Build it with [`Computation::fold`](super::Computation::fold), combine with
/// [`merge`](Partial::merge), move it between processes with [`to_arrow`](Partial::to_arrow)
/// and [`from_arrow`](Partial::from_arrow), and turn it into tables with
/// [`Computation::finish`](super::Computation::finish).
#[derive(Debug, Clone)]
pub struct Partial {
    pub(crate) head: Head,
    /// Local time (µs) of the earliest order before the cutoff.
    pub(crate) earliest: Option<i64>,
    /// Σ |amount| + |cost| of the lines, in minor units: at most `MONEY_ABS_LIMIT`, so no sum
    /// overflows.
    pub(crate) money_abs: u128,
    pub(crate) sums: BTreeMap<Key, i64>,
    /// customer_id of each row of `rows` (a row's `cust` is its position).
    pub(crate) customer_ids: Vec<String>,
    /// Per segment column, the values the rows' `segs` point into.
    pub(crate) values: Vec<Vec<String>>,
    /// Customer rows before RFM scoring; `cohort` is a position from `first_index`.
    pub(crate) rows: Vec<CustomerRow>,
}

impl Partial {
    /// The partial of one folded partition: `acc` per slot of `ctx`, `rows` numbered by
    /// `customer_ids` and holding value ids of `ctx`'s segment dictionaries.
    pub(crate) fn new(
        head: Head,
        ctx: &Ctx,
        acc: &Acc,
        (earliest, money_abs): (Option<i64>, u128),
        customer_ids: Vec<String>,
        rows: Vec<CustomerRow>,
    ) -> Partial {
        let mut values: Vec<Vec<String>> = vec![Vec::new(); head.dims.len()];
        for (d, v) in values.iter_mut().enumerate() {
            let base = ctx.slots.base[d] as usize;
            let end = ctx
                .slots
                .base
                .get(d + 1)
                .map_or(ctx.slots.len(), |&b| b as usize);
            v.extend(ctx.slots.names[base..end].iter().map(|n| n.1.clone()));
        }
        Partial {
            sums: sums_of(acc, ctx),
            head,
            earliest,
            money_abs,
            customer_ids,
            values,
            rows,
        }
    }

    /// Customers in this partial.
    pub fn customers(&self) -> usize {
        self.rows.len()
    }

    /// Index of the first period of the frame this partial's row cohorts count from.
    pub(crate) fn first_index(&self) -> i64 {
        first_index(&self.head, self.earliest)
    }

    /// Adds `other` (another partition of the same computation) to this partial. Merging is
    /// associative and commutative: partitions merged in any grouping and order give the same
    /// tables. A customer must be in one partition only ([`finish`](super::Computation::finish)
    /// refuses a customer seen twice).
    pub fn merge(&mut self, other: Partial) -> Result<(), ApiError> {
        if self.head != other.head {
            return Err(ApiError::Mismatch(format!(
                "cannot merge partials of different computations ({:?} and {:?})",
                self.head, other.head
            )));
        }
        let money_abs = self.money_abs + other.money_abs;
        if money_abs > MONEY_ABS_LIMIT {
            return Err(ApiError::Overflow);
        }
        let earliest = match (self.earliest, other.earliest) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let first = first_index(&self.head, earliest);
        let shift = |rows: &mut [CustomerRow], from: i64| {
            let by = (from - first) as usize;
            if by > 0 {
                for r in rows.iter_mut() {
                    r.cohort = r.cohort.map(|c| c + by);
                }
            }
        };
        let (mine_from, theirs_from) = (self.first_index(), other.first_index());
        shift(&mut self.rows, mine_from);
        let mut rows = other.rows;
        shift(&mut rows, theirs_from);
        // Their value ids → ours (appending the values we lack).
        let maps: Vec<Vec<u32>> = self
            .values
            .iter_mut()
            .zip(other.values)
            .map(|(mine, theirs)| {
                let mut at: HashMap<String, u32> = mine
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (v.clone(), i as u32))
                    .collect();
                theirs
                    .into_iter()
                    .map(|v| {
                        *at.entry(v.clone()).or_insert_with(|| {
                            mine.push(v);
                            (mine.len() - 1) as u32
                        })
                    })
                    .collect()
            })
            .collect();
        let base = self.rows.len() as u32;
        for r in rows.iter_mut() {
            r.cust += base;
            for (s, map) in r.segs.iter_mut().zip(&maps) {
                *s = map[*s as usize];
            }
        }
        self.rows.extend(rows);
        self.customer_ids.extend(other.customer_ids);
        for (k, v) in other.sums {
            *self.sums.entry(k).or_insert(0) += v;
        }
        self.sums.retain(|_, v| *v != 0);
        self.earliest = earliest;
        self.money_abs = money_abs;
        Ok(())
    }

    /// The accumulators of the sums laid out for `ctx` (whose frame and segments cover them).
    pub(crate) fn acc(&self, ctx: &Ctx) -> Result<Acc, ApiError> {
        let slot_of: HashMap<(&str, &str), usize> = ctx
            .slots
            .names
            .iter()
            .enumerate()
            .map(|(i, (a, b))| ((a.as_str(), b.as_str()), i))
            .collect();
        let f = &ctx.frame;
        let p = f.n_periods;
        let mut acc = Acc::new(ctx);
        let bad = |k: &Key, why: &str| ApiError::Partial(format!("sum {k:?}: {why}"));
        for (k, &v) in &self.sums {
            let s = *slot_of
                .get(&(k.slot.0.as_str(), k.slot.1.as_str()))
                .ok_or_else(|| bad(k, "names a segment no customer has"))?;
            // Position of the key's period in the frame.
            let j = match k.period {
                None => None,
                Some(days) => {
                    let date = days_to_date(days as i64).ok_or_else(|| bad(k, "not a date"))?;
                    let idx = f.period.index(date) - f.first_index;
                    Some(usize::try_from(idx).map_err(|_| bad(k, "before the first period"))?)
                }
            };
            let at = |j: Option<usize>, len: usize| match j {
                Some(j) if j < len => Ok(j),
                _ => Err(bad(k, "outside the frame")),
            };
            use Measure::*;
            match k.measure {
                Orders => acc.orders += v,
                Customers => acc.slot_customers[s] += v,
                ActiveDiff => acc.active_diff[s * (p + 2) + at(j, p + 2)?] += v,
                New | Churned | Reactivated | Revenue | Purchases => {
                    let i = s * p + at(j, p)?;
                    match k.measure {
                        New => acc.new[i] += v,
                        Churned => acc.churned[i] += v,
                        Reactivated => acc.reactivated[i] += v,
                        Revenue => acc.revenue[i] += v,
                        _ => acc.purchases[i] += v,
                    }
                }
                _ => {
                    let c = at(j, p)?;
                    let len = p - c;
                    let slot = &mut acc.cohort_at[s * p + c];
                    if *slot == NO_COHORT {
                        *slot = acc.cohort_accs.len() as u32;
                        acc.cohort_accs.push(CohortAcc::new(len));
                    }
                    let ca = &mut acc.cohort_accs[*slot as usize];
                    let o = k.offset.and_then(|o| usize::try_from(o).ok());
                    let o = |len: usize| match o {
                        Some(o) if o < len => Ok(o),
                        _ => Err(bad(k, "cohort offset outside the frame")),
                    };
                    match k.measure {
                        CohortSize => ca.size += v,
                        CohortActive => ca.active[o(len)?] += v,
                        CohortEndDiff => ca.end_diff[o(len + 1)?] += v,
                        CohortEverDiff => ca.ever_diff[o(len + 1)?] += v,
                        CohortRevenue => ca.revenue[o(len)?] += v,
                        CohortCost => ca.cost[o(len)?] += v,
                        _ => ca.purchases[o(len)?] += v,
                    }
                }
            }
        }
        Ok(acc)
    }

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
        }
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
        })
    }
}

/// A [`Partial`] as Arrow: its sums and its customer rows.
#[derive(Debug, Clone)]
pub struct PartialBatches {
    pub sums: RecordBatch,
    pub customers: RecordBatch,
}

const META_AS_OF: &str = "customer_value.as_of";
const META_PERIOD: &str = "customer_value.period";
const META_DIMS: &str = "customer_value.segments";
const META_MONEY: &str = "customer_value.money_abs";
const META_EARLIEST: &str = "customer_value.earliest_local_us";

/// Index of the frame's first period: that of the earliest order, or as_of's without orders
/// (as `time::Frame` counts).
fn first_index(head: &Head, earliest: Option<i64>) -> i64 {
    let last = head.period.index(head.as_of);
    earliest
        .map(|us| head.period.index(local_micros_to_date(us)))
        .unwrap_or(last)
        .min(last)
}

/// The non-zero sums of a per-slot accumulator laid out for `ctx`.
fn sums_of(acc: &Acc, ctx: &Ctx) -> BTreeMap<Key, i64> {
    let f = &ctx.frame;
    let p = f.n_periods;
    let start = |j: usize| date_to_days(f.period.start(f.first_index + j as i64));
    let mut out = BTreeMap::new();
    let mut put = |slot: usize, measure, period: Option<i32>, offset: Option<i64>, v: i64| {
        if v != 0 {
            let key = Key {
                slot: ctx.slots.names[slot].clone(),
                measure,
                period,
                offset,
            };
            out.insert(key, v);
        }
    };
    put(0, Measure::Orders, None, None, acc.orders);
    for s in 0..ctx.slots.len() {
        if acc.slot_customers[s] == 0 {
            continue;
        }
        put(s, Measure::Customers, None, None, acc.slot_customers[s]);
        for j in 0..p + 2 {
            put(
                s,
                Measure::ActiveDiff,
                Some(start(j)),
                None,
                acc.active_diff[s * (p + 2) + j],
            );
        }
        for j in 0..p {
            let i = s * p + j;
            for (m, v) in [
                (Measure::New, acc.new[i]),
                (Measure::Churned, acc.churned[i]),
                (Measure::Reactivated, acc.reactivated[i]),
                (Measure::Revenue, acc.revenue[i]),
                (Measure::Purchases, acc.purchases[i]),
            ] {
                put(s, m, Some(start(j)), None, v);
            }
            let Some(c) = acc.cohort(s, j) else {
                continue;
            };
            put(s, Measure::CohortSize, Some(start(j)), None, c.size);
            for (m, vals) in [
                (Measure::CohortActive, &c.active),
                (Measure::CohortEndDiff, &c.end_diff),
                (Measure::CohortEverDiff, &c.ever_diff),
                (Measure::CohortRevenue, &c.revenue),
                (Measure::CohortCost, &c.cost),
                (Measure::CohortPurchases, &c.purchases),
            ] {
                for (k, &v) in vals.iter().enumerate() {
                    put(s, m, Some(start(j)), Some(k as i64), v);
                }
            }
        }
    }
    out
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
