//! Metrics stage: one parallel fold over customers (fold.rs) feeds every table; each table has
//! its own file (customers.rs + rfm.rs, retention.rs, cohorts.rs, ltv.rs, rejects.rs).

pub mod cohorts;
pub mod customers;
pub mod fold;
pub mod ltv;
pub mod predictions;
pub mod rejects;
pub mod retention;
pub mod rfm;

use std::sync::Arc;

use arrow::array::RecordBatch;
use chrono::NaiveDate;
use rayon::prelude::*;

use crate::config::{SegmentAssignment, Validated};
use crate::orders::AsOf;
use crate::schema::Table;
use crate::source::Ingested;
use crate::time::{Frame, Zone, MICROS_PER_DAY};

pub use fold::{Acc, CustomerRow};

/// Everything the fold needs to know about the run.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub frame: Frame,
    /// as_of as days since 1970-01-01.
    pub as_of_day: i64,
    pub zone: Zone,
    /// Churn window in µs of local wall-clock time.
    pub window_us: i64,
    pub assignment: SegmentAssignment,
    pub n_dims: usize,
    /// Configured segment column names.
    pub dim_names: Vec<String>,
    pub has_cost: bool,
    /// Configured margin P (used without a cost column).
    pub margin: f64,
    /// 10^amount_decimals, to turn minor units into currency.
    pub money_scale: f64,
    pub slots: Slots,
    /// Where the fold accumulates (see `Cells`).
    pub cells: Cells,
    /// Acquisition spend per (segment_by, segment, period), when configured.
    pub spend: Option<crate::source::SpendByPeriod>,
    /// The prediction settings; None when predictions are off.
    pub predict: Option<predictions::PredictCtx>,
}

impl Ctx {
    #[cfg(test)]
    pub fn new(cfg: &Validated, as_of: NaiveDate, ingested: &Ingested, orders: &AsOf) -> Self {
        Self::with_earliest(cfg, as_of, ingested, orders.earliest())
    }

    /// The context when the earliest order before the cutoff (local µs) is known otherwise (a
    /// spilled run sees one partition of the orders at a time).
    pub fn with_earliest(
        cfg: &Validated,
        as_of: NaiveDate,
        ingested: &Ingested,
        earliest: Option<i64>,
    ) -> Self {
        let m = &cfg.config.metrics;
        let dims: Vec<(String, Vec<String>)> = cfg
            .config
            .input
            .columns
            .segments
            .iter()
            .zip(&ingested.segments)
            .map(|(name, dict)| (name.clone(), dict.iter().map(str::to_string).collect()))
            .collect();
        let slots = Slots::new(&dims);
        let money_scale = 10f64.powi(cfg.config.input.amount_decimals as i32);
        let dim_names: Vec<String> = dims.iter().map(|d| d.0.clone()).collect();
        Ctx {
            frame: Frame::new(m.period, as_of, earliest),
            as_of_day: crate::time::date_to_days(as_of) as i64,
            zone: Zone::new(cfg.tz),
            window_us: m.churn_window_days as i64 * MICROS_PER_DAY,
            assignment: m.segment_assignment,
            n_dims: dims.len(),
            predict: predictions::PredictCtx::new(&cfg.config.predict, &dim_names, money_scale),
            dim_names,
            has_cost: ingested.has_cost,
            margin: m.margin,
            money_scale,
            cells: Cells::new(&dims, &slots),
            slots,
            spend: None,
        }
    }

    /// The last day (local day number) of the holdout backtest's calibration period, as_of −
    /// predict.holdout_days; None without a backtest.
    pub fn holdout_end_day(&self) -> Option<i64> {
        let days = self.predict.as_ref()?.holdout_days?;
        Some(self.as_of_day - i64::from(days))
    }

    /// Minor units → currency.
    pub fn money(&self, minor: i64) -> f64 {
        minor as f64 / self.money_scale
    }
}

/// The (segment_by, segment) pairs that segmented tables are computed for. Slot 0 is
/// (`all`, `__all__`); then every value of every configured segment column.
#[derive(Debug, Clone)]
pub struct Slots {
    pub names: Vec<(String, String)>,
    /// First slot of each segment dimension.
    pub base: Vec<u32>,
}

pub const ALL: &str = "all";
pub const ALL_SEGMENT: &str = "__all__";

impl Slots {
    pub fn new(dims: &[(String, Vec<String>)]) -> Self {
        let mut names = vec![(ALL.to_string(), ALL_SEGMENT.to_string())];
        let mut base = Vec::new();
        for (dim, values) in dims {
            base.push(names.len() as u32);
            names.extend(values.iter().map(|v| (dim.clone(), v.clone())));
        }
        Slots { names, base }
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Slot ids sorted by (segment_by, segment), the grain-key order of the tables.
    pub fn sorted(&self) -> Vec<usize> {
        let mut v: Vec<usize> = (0..self.names.len()).collect();
        v.sort_by(|&a, &b| self.names[a].cmp(&self.names[b]));
        v
    }
}

/// Where the fold accumulates a customer. With segment columns, a customer counts in the
/// `all` slot and in one slot per dimension, so accumulating per slot writes everything 1 + D
/// times. When the combinations of segment values are few (`MAX_COMBINATIONS`), the fold
/// accumulates once per customer in the cell of their combination instead, and the cells are
/// added into their slots once at the end (`Acc::into_slots`): every sum is the same, with a
/// (1 + D)th of the writes.
#[derive(Debug, Clone)]
pub struct Cells {
    /// Number of cells.
    n: usize,
    /// Per dimension, the cell index step of its value; empty when accumulating per slot.
    strides: Vec<usize>,
    /// Slots of each cell (all, then one per dimension); empty when accumulating per slot.
    slots_of: Vec<Vec<u32>>,
}

/// The most value combinations accumulated per combination. Each cell holds a slot's worth of
/// accumulators (about 2 KB at 36 periods, plus its cohorts) in every parallel fold piece, so
/// this keeps them within what a few hundred slots take.
pub const MAX_COMBINATIONS: usize = 256;

impl Cells {
    /// Accumulating per slot, whatever the segments (the fold's general path).
    pub fn per_slot(slots: &Slots) -> Self {
        Cells {
            n: slots.len(),
            strides: Vec::new(),
            slots_of: Vec::new(),
        }
    }

    fn new(dims: &[(String, Vec<String>)], slots: &Slots) -> Self {
        let sizes: Vec<usize> = dims.iter().map(|d| d.1.len()).collect();
        let n = sizes
            .iter()
            .try_fold(1usize, |n, &k| n.checked_mul(k))
            .filter(|&n| (1..=MAX_COMBINATIONS).contains(&n));
        let (Some(n), false) = (n, dims.is_empty()) else {
            return Cells::per_slot(slots);
        };
        let mut strides = Vec::with_capacity(sizes.len());
        let mut step = 1;
        for &k in &sizes {
            strides.push(step);
            step *= k;
        }
        let slots_of = (0..n)
            .map(|cell| {
                let mut of = vec![0u32];
                for d in 0..sizes.len() {
                    of.push(slots.base[d] + ((cell / strides[d]) % sizes[d]) as u32);
                }
                of
            })
            .collect();
        Cells {
            n,
            strides,
            slots_of,
        }
    }

    /// Number of cells.
    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The slots of each cell, when cells are combinations (None: cells are the slots).
    pub fn slots_of(&self) -> Option<&[Vec<u32>]> {
        (!self.strides.is_empty()).then_some(&self.slots_of[..])
    }

    /// Appends the cells a customer with segment values `segs` adds to.
    pub fn of(&self, segs: &[u32], slots: &Slots, out: &mut Vec<usize>) {
        if self.strides.is_empty() {
            out.push(0);
            for (d, &v) in segs.iter().enumerate() {
                out.push((slots.base[d] + v) as usize);
            }
        } else {
            out.push(
                segs.iter()
                    .zip(&self.strides)
                    .map(|(&v, &s)| v as usize * s)
                    .sum(),
            );
        }
    }
}

/// The five output tables, as Arrow record batches.
#[derive(Debug, Clone)]
pub struct Tables {
    pub customers: RecordBatch,
    pub retention: RecordBatch,
    pub cohorts: RecordBatch,
    pub ltv: RecordBatch,
    pub rejects: RecordBatch,
    /// None when predictions are off.
    pub models: Option<RecordBatch>,
    /// Orders before the cutoff (for the manifest).
    pub orders: u64,
    /// Customers as of the date (rows of the customers table, also when it is not built).
    pub n_customers: u64,
}

impl Tables {
    /// (name, batch) in publishing order; models only with predictions on.
    pub fn iter(&self) -> Vec<(Table, &RecordBatch)> {
        let mut out = vec![
            (Table::Customers, &self.customers),
            (Table::Retention, &self.retention),
            (Table::Cohorts, &self.cohorts),
            (Table::Ltv, &self.ltv),
            (Table::Rejects, &self.rejects),
        ];
        if let Some(m) = &self.models {
            out.push((Table::Models, m));
        }
        out
    }
}

/// Customers per parallel fold shard.
const SHARD: usize = 2048;

#[cfg(test)]
/// Runs the fold over all customers in parallel and returns the per-customer rows (in the
/// orders' customer layout) and the merged accumulators.
pub fn fold_all(orders: &AsOf, ctx: &Ctx) -> (Vec<CustomerRow>, Acc) {
    let (parts, acc) = fold_parts(orders, ctx);
    let mut rows = Vec::with_capacity(parts.iter().map(Vec::len).sum());
    for p in parts {
        rows.extend(p);
    }
    (rows, acc)
}

/// `fold_all`, with the rows left in the pieces the parallel fold made (in order): joining
/// them would copy every row once more, on one thread.
pub fn fold_parts(orders: &AsOf, ctx: &Ctx) -> (Vec<Vec<CustomerRow>>, Acc) {
    let n = orders.n_customers();
    // fold keeps one accumulator per piece of work rayon splits off (not one per shard): their
    // size grows with segments × periods. Every sum is an integer, so the merge order does not
    // matter. Rows go into one vector per shard, allocated at its exact size: a vector per
    // piece grew by doubling, and copying the rows into fresh pages was a fifth of a
    // backfill's fold (perf: memmove and the kernel's page clearing).
    let pieces = (0..n.div_ceil(SHARD))
        .into_par_iter()
        .fold(
            || (Vec::new(), Acc::for_cells(ctx), fold::Scratch::default()),
            |(mut shards, mut acc, mut scratch), s| {
                let range = s * SHARD..((s + 1) * SHARD).min(n);
                // A customer whose lines all come after the cutoff does not exist yet.
                let len = range.clone().filter(|&c| orders.exists(c)).count();
                let mut rows = Vec::with_capacity(len);
                for c in range.filter(|&c| orders.exists(c)) {
                    let (mine, segs) = orders.of(c);
                    rows.push(fold::fold_customer(
                        orders.id(c),
                        &mine,
                        segs,
                        ctx,
                        &mut acc,
                        &mut scratch,
                    ));
                }
                shards.push(rows);
                (shards, acc, scratch)
            },
        )
        .map(|(shards, acc, _)| (shards, acc))
        // Collected in shard order, then merged once: a pairwise reduce would copy the rows
        // (~250 bytes each) once per level of the reduction tree.
        .collect::<Vec<_>>();
    let mut rows = Vec::with_capacity(n.div_ceil(SHARD));
    let mut acc = Acc::for_cells(ctx);
    for (shards, a) in pieces {
        rows.extend(shards);
        acc.merge(a);
    }
    (rows, acc.into_slots(ctx))
}

/// Scores the rows of every part against `scorer` (RFM ranks within the whole base), sets their
/// predictions from `fits`, and adds them to the ltv group sums, part by part in parallel.
pub fn score_and_sum(
    parts: &mut [Vec<CustomerRow>],
    scorer: &rfm::Scorer,
    fits: Option<&predictions::Fits>,
    ctx: &Ctx,
) -> ltv::Sums {
    parts
        .par_iter_mut()
        .fold(
            || ltv::Sums::new(ctx),
            |mut sums, p| {
                scorer.score(p);
                if let Some(f) = fits {
                    f.apply(p, ctx);
                }
                sums.add(p, ctx);
                sums
            },
        )
        .reduce_with(|mut a, b| {
            a.merge(&b);
            a
        })
        .unwrap_or_else(|| ltv::Sums::new(ctx))
}

pub fn arc<T: arrow::array::Array + 'static>(a: T) -> arrow::array::ArrayRef {
    Arc::new(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dims(sizes: &[usize]) -> Vec<(String, Vec<String>)> {
        sizes
            .iter()
            .enumerate()
            .map(|(d, &n)| (format!("d{d}"), (0..n).map(|v| v.to_string()).collect()))
            .collect()
    }

    #[test]
    fn cells_are_value_combinations_when_few() {
        // Two dimensions of 4 and 5 values: 20 cells. Slots: 0 = all, 1..=4 the first
        // dimension's values, 5..=9 the second's. Values (2, 3) → cell 2 × 1 + 3 × 4 = 14,
        // whose slots are all, 1 + 2 = 3 and 5 + 3 = 8.
        let d = dims(&[4, 5]);
        let slots = Slots::new(&d);
        let cells = Cells::new(&d, &slots);
        let of = cells.slots_of().expect("20 combinations are few");
        assert_eq!(of.len(), 20);
        let mut out = Vec::new();
        cells.of(&[2, 3], &slots, &mut out);
        assert_eq!(out, vec![14]);
        assert_eq!(of[14], vec![0, 3, 8]);
        // Every slot but `all` belongs to 5 (first dimension) or 4 (second) cells; `all` to 20.
        let mut count = vec![0; slots.len()];
        for s in of.iter().flatten() {
            count[*s as usize] += 1;
        }
        assert_eq!(count, [20, 5, 5, 5, 5, 4, 4, 4, 4, 4]);
    }

    #[test]
    fn many_combinations_or_none_accumulate_per_slot() {
        // 20 × 20 = 400 > MAX_COMBINATIONS (256): per slot, a customer in 1 + 2 slots.
        let d = dims(&[20, 20]);
        let slots = Slots::new(&d);
        let cells = Cells::new(&d, &slots);
        assert!(cells.slots_of().is_none());
        let mut out = Vec::new();
        cells.of(&[2, 3], &slots, &mut out);
        assert_eq!(out, vec![0, 1 + 2, 21 + 3]);
        // No segment column: the `all` slot only.
        assert!(Cells::new(&[], &Slots::new(&[])).slots_of().is_none());
    }
}
