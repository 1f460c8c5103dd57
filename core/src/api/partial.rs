//! A partial: what one customer partition contributes to one as_of date's tables, in a form that
//! merges exactly with any other partition's and travels as Arrow.
//!
//! It holds the retention and cohort accumulators of every segment as integer sums keyed by
//! names and dates (segment_by, segment, measure, period start, cohort offset), so partitions
//! whose first order falls in different periods, or that saw different segment values, still
//! add up key by key; and the partition's customer rows before RFM scoring (scores rank a
//! customer within the whole base, so they are given when the partials are finished).

use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDate;

use super::ApiError;
use crate::metrics::fold::{Acc, CohortAcc, NO_COHORT};
use crate::metrics::{Ctx, CustomerRow};
use crate::source::MONEY_ABS_LIMIT;
use crate::time::{date_to_days, days_to_date, local_micros_to_date, Period};

/// What is summed under a key. Period measures are keyed by the start of their period (for
/// `ActiveDiff`, of the period that begins at the boundary); cohort measures by the cohort's
/// period start and the offset from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Measure {
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

pub(super) const MEASURES: [Measure; 15] = [
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
pub struct Key {
    pub slot: (String, String),
    pub measure: Measure,
    pub period: Option<i32>,
    pub offset: Option<i64>,
}

/// The fixed facts every partial of one computation shares; partials that differ cannot merge.
#[derive(Debug, Clone, PartialEq)]
pub struct Head {
    pub as_of: NaiveDate,
    pub period: Period,
    pub dims: Vec<String>,
}

/// One partition's (or several merged partitions') contribution to one as_of date's tables.
/// Build it with [`Computation::fold`](super::Computation::fold), combine with
/// [`merge`](Partial::merge), move it between processes with [`to_arrow`](Partial::to_arrow)
/// and [`from_arrow`](Partial::from_arrow), and turn it into tables with
/// [`Computation::finish`](super::Computation::finish).
#[derive(Debug, Clone)]
pub struct Partial {
    pub head: Head,
    /// Local time (µs) of the earliest order before the cutoff.
    pub earliest: Option<i64>,
    /// Σ |amount| + |cost| of the lines, in minor units: at most `MONEY_ABS_LIMIT`, so no sum
    /// overflows.
    pub money_abs: u128,
    pub sums: BTreeMap<Key, i64>,
    /// customer_id of each row of `rows` (a row's `cust` is its position).
    pub customer_ids: Vec<String>,
    /// Per segment column, the values the rows' `segs` point into.
    pub values: Vec<Vec<String>>,
    /// Customer rows before RFM scoring; `cohort` is a position from `first_index`.
    pub rows: Vec<CustomerRow>,
    /// The rows' accounting and rejects (folded from input rows; zero for normalized lines).
    pub accounting: super::Accounting,
}

impl Partial {
    /// The partial of one folded partition: `acc` per slot of `ctx`, `rows` numbered by
    /// `customer_ids` and holding value ids of `ctx`'s segment dictionaries.
    pub fn new(
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
            accounting: super::Accounting::default(),
        }
    }

    /// Customers in this partial.
    pub fn customers(&self) -> usize {
        self.rows.len()
    }

    /// Index of the first period of the frame this partial's row cohorts count from.
    pub fn first_index(&self) -> i64 {
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
        self.accounting.merge(other.accounting);
        Ok(())
    }

    /// The accumulators of the sums laid out for `ctx` (whose frame and segments cover them).
    pub fn acc(&self, ctx: &Ctx) -> Result<Acc, ApiError> {
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
}

/// Index of the frame's first period: that of the earliest order, or as_of's without orders
/// (as `time::Frame` counts).
pub(super) fn first_index(head: &Head, earliest: Option<i64>) -> i64 {
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
