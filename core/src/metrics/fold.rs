//! The per-customer fold: one walk over a customer's orders yields their customers-table row and
//! their contributions to the retention and cohort accumulators of every segment they belong to.
//!
//! Activity is tracked at period boundaries B_0 … B_n (B_j = start of period j, B_n = the
//! cutoff after as_of). A customer is active at B_j when some purchase p has p < B_j ≤ p + W
//! (SPEC §2). Each purchase makes a contiguous run of boundaries active; the union of those runs
//! gives, per run [lo, hi]: new (first run) or reactivated in period lo − 1, churned in period hi
//! (when hi < n). So E = S − churned + reactivated + N holds by construction.

use crate::config::SegmentAssignment;
use crate::orders::Order;
use crate::time::{days_to_year_month0, local_micros_to_day};

use super::Ctx;

/// One row of the customers table before RFM scoring. Money in minor units.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomerRow {
    pub cust: u32,
    /// Assigned segment value id per dimension.
    pub segs: Box<[u32]>,
    /// Position of the cohort period in the frame; None when the customer never purchased.
    pub cohort: Option<usize>,
    pub first_utc: Option<i64>,
    pub last_utc: Option<i64>,
    pub purchases: i64,
    pub revenue: i64,
    pub refunds: i64,
    pub cost: i64,
    pub lifespan_months: Option<i64>,
    pub days_since_last: Option<i64>,
    /// Active at the cutoff; None when never acquired.
    pub active: Option<bool>,
    pub churned_at_utc: Option<i64>,
    pub frequency: Option<i64>,
    pub recency: Option<i64>,
    pub t: Option<i64>,
    /// Mean value per repeat purchase day, minor units.
    pub monetary: Option<f64>,
    pub rfm: Option<[u8; 3]>,
    pub rfm_segment: Option<&'static str>,
    /// Set with the RFM scores, from the date's fits (None when predictions are off or the
    /// customer was never acquired).
    pub prediction: Option<btyd::Prediction>,
    /// With `predict.holdout_days`: the customer as of the end of the calibration period, when
    /// acquired by then (boxed: most runs have none).
    pub holdout: Option<Box<Holdout>>,
}

/// A customer in the holdout backtest: their BTYD summary (days) as of the calibration end
/// (as_of − holdout_days) and their purchase days after it, up to as_of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holdout {
    pub frequency: i64,
    pub recency: i64,
    pub t: i64,
    pub actual: i64,
}

impl Holdout {
    /// From a customer's purchase days (ascending, at least one) and the calibration's last
    /// day; None when the first purchase is later.
    pub fn of(days: &[(i64, i64)], end: i64) -> Option<Holdout> {
        let first = days.first()?.0;
        if first > end {
            return None;
        }
        let calibration = days.partition_point(|d| d.0 <= end);
        Some(Holdout {
            frequency: calibration as i64 - 1,
            recency: days[calibration - 1].0 - first,
            t: end - first,
            actual: (days.len() - calibration) as i64,
        })
    }
}

/// `Acc::cohort_at` of a (slot, cohort) without customers.
pub const NO_COHORT: u32 = u32::MAX;

/// Additive accumulators of one customer shard; shards merge by addition.
#[derive(Debug, Clone)]
pub struct Acc {
    pub n_periods: usize,
    /// Orders folded (all customers).
    pub orders: i64,
    /// Customers assigned to each slot (any status).
    pub slot_customers: Vec<i64>,
    /// Per slot, difference array over boundaries (n_periods + 2 entries).
    pub active_diff: Vec<i64>,
    /// Per slot × period.
    pub new: Vec<i64>,
    pub churned: Vec<i64>,
    pub reactivated: Vec<i64>,
    pub revenue: Vec<i64>,
    pub purchases: Vec<i64>,
    /// Index into `cohort_accs` of the accumulators of (slot, cohort position), at `slot *
    /// n_periods + cohort`; `NO_COHORT` until the first customer of that cohort (a table of 4
    /// bytes per slot and period, not a hash map: the fold looks one up per customer and slot).
    pub cohort_at: Vec<u32>,
    pub cohort_accs: Vec<CohortAcc>,
}

/// One cohort of one segment; vectors are indexed by period offset k.
#[derive(Debug, Clone, Default)]
pub struct CohortAcc {
    pub size: i64,
    /// Customers with a purchase in period k.
    pub active: Vec<i64>,
    /// Difference array of "active at the end of period k".
    pub end_diff: Vec<i64>,
    /// Difference array of "not active at the end of some period 0..=k": one entry per
    /// customer, at the first period end after their first activity run (none when that run
    /// lasts past as_of).
    pub ever_diff: Vec<i64>,
    pub revenue: Vec<i64>,
    pub cost: Vec<i64>,
    pub purchases: Vec<i64>,
}

impl CohortAcc {
    pub fn new(len: usize) -> Self {
        CohortAcc {
            size: 0,
            active: vec![0; len],
            end_diff: vec![0; len + 1],
            ever_diff: vec![0; len + 1],
            revenue: vec![0; len],
            cost: vec![0; len],
            purchases: vec![0; len],
        }
    }

    fn merge(&mut self, o: &CohortAcc) {
        self.size += o.size;
        add(&mut self.active, &o.active);
        add(&mut self.end_diff, &o.end_diff);
        add(&mut self.ever_diff, &o.ever_diff);
        add(&mut self.revenue, &o.revenue);
        add(&mut self.cost, &o.cost);
        add(&mut self.purchases, &o.purchases);
    }
}

fn add(a: &mut [i64], b: &[i64]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x += y;
    }
}

impl Acc {
    /// Accumulators per slot (what the tables read).
    pub fn new(ctx: &Ctx) -> Self {
        Self::sized(ctx.slots.len(), ctx.frame.n_periods)
    }

    /// Accumulators per cell of `ctx.cells` (what the fold writes; see `into_slots`).
    pub fn for_cells(ctx: &Ctx) -> Self {
        Self::sized(ctx.cells.len(), ctx.frame.n_periods)
    }

    /// The per-slot accumulators of per-cell ones: every cell added into each of its slots.
    pub fn into_slots(self, ctx: &Ctx) -> Acc {
        let Some(slots_of) = ctx.cells.slots_of() else {
            return self;
        };
        let p = self.n_periods;
        let mut out = Acc::new(ctx);
        out.orders = self.orders;
        for (c, slots) in slots_of.iter().enumerate() {
            if self.slot_customers[c] == 0 {
                continue;
            }
            for &s in slots {
                let s = s as usize;
                out.slot_customers[s] += self.slot_customers[c];
                let w = p + 2;
                add(
                    &mut out.active_diff[s * w..(s + 1) * w],
                    &self.active_diff[c * w..(c + 1) * w],
                );
                for (mine, theirs) in [
                    (&mut out.new, &self.new),
                    (&mut out.churned, &self.churned),
                    (&mut out.reactivated, &self.reactivated),
                    (&mut out.revenue, &self.revenue),
                    (&mut out.purchases, &self.purchases),
                ] {
                    add(&mut mine[s * p..(s + 1) * p], &theirs[c * p..(c + 1) * p]);
                }
                for k in 0..p {
                    let Some(theirs) = self.cohort(c, k) else {
                        continue;
                    };
                    match out.cohort_at[s * p + k] {
                        NO_COHORT => {
                            out.cohort_at[s * p + k] = out.cohort_accs.len() as u32;
                            out.cohort_accs.push(theirs.clone());
                        }
                        m => out.cohort_accs[m as usize].merge(theirs),
                    }
                }
            }
        }
        out
    }

    fn sized(s: usize, p: usize) -> Self {
        Acc {
            n_periods: p,
            orders: 0,
            slot_customers: vec![0; s],
            active_diff: vec![0; s * (p + 2)],
            new: vec![0; s * p],
            churned: vec![0; s * p],
            reactivated: vec![0; s * p],
            revenue: vec![0; s * p],
            purchases: vec![0; s * p],
            cohort_at: vec![NO_COHORT; s * p],
            cohort_accs: Vec::new(),
        }
    }

    pub fn merge(&mut self, o: Acc) {
        self.orders += o.orders;
        add(&mut self.slot_customers, &o.slot_customers);
        add(&mut self.active_diff, &o.active_diff);
        add(&mut self.new, &o.new);
        add(&mut self.churned, &o.churned);
        add(&mut self.reactivated, &o.reactivated);
        add(&mut self.revenue, &o.revenue);
        add(&mut self.purchases, &o.purchases);
        // Each of their accumulators is listed once in their table: moved or merged once.
        let mut theirs: Vec<Option<CohortAcc>> = o.cohort_accs.into_iter().map(Some).collect();
        for (i, &t) in o.cohort_at.iter().enumerate() {
            let Some(t) = theirs.get_mut(t as usize).and_then(Option::take) else {
                continue;
            };
            match self.cohort_at[i] {
                NO_COHORT => {
                    self.cohort_at[i] = self.cohort_accs.len() as u32;
                    self.cohort_accs.push(t);
                }
                m => self.cohort_accs[m as usize].merge(&t),
            }
        }
    }

    /// The accumulators of (slot, cohort position), if that cohort has customers in the slot.
    pub fn cohort(&self, slot: usize, cohort: usize) -> Option<&CohortAcc> {
        match self.cohort_at[slot * self.n_periods + cohort] {
            NO_COHORT => None,
            i => Some(&self.cohort_accs[i as usize]),
        }
    }

    /// Customers active at each boundary 0..=n_periods for a slot.
    pub fn active_at_boundaries(&self, slot: usize) -> Vec<i64> {
        let p = self.n_periods;
        let diff = &self.active_diff[slot * (p + 2)..(slot + 1) * (p + 2)];
        let mut run = 0;
        diff[..=p]
            .iter()
            .map(|d| {
                run += d;
                run
            })
            .collect()
    }
}

/// Picks the segment value of one dimension from the customer's orders.
fn assign(
    orders: &[Order],
    segs: &[u32],
    n_dims: usize,
    d: usize,
    how: SegmentAssignment,
    only_purchases: bool,
) -> u32 {
    let candidates = || {
        orders
            .iter()
            .enumerate()
            .filter(move |(_, o)| !only_purchases || o.is_purchase())
            .map(move |(i, _)| segs[i * n_dims + d])
    };
    match how {
        SegmentAssignment::First => candidates().next().unwrap_or(0),
        SegmentAssignment::Last => candidates().next_back().unwrap_or(0),
        SegmentAssignment::MostFrequent => {
            // Most purchases; ties go to the value seen first.
            let mut counts: Vec<(u32, u32)> = Vec::new();
            for v in candidates() {
                match counts.iter_mut().find(|(x, _)| *x == v) {
                    Some((_, n)) => *n += 1,
                    None => counts.push((v, 1)),
                }
            }
            let mut best = counts.first().copied().unwrap_or((0, 0));
            for &(v, n) in &counts {
                if n > best.1 {
                    best = (v, n);
                }
            }
            best.0
        }
    }
}

/// Buffers one fold worker reuses from customer to customer (no allocation per customer).
#[derive(Debug, Default)]
pub struct Scratch {
    cells: Vec<usize>,
    runs: Vec<(usize, usize)>,
    days: Vec<(i64, i64)>,
    periods: Vec<usize>,
}

/// Folds one customer's time-ordered orders into their row and the accumulators.
pub fn fold_customer(
    cust: u32,
    orders: &[Order],
    segs: &[u32],
    ctx: &Ctx,
    acc: &mut Acc,
    scratch: &mut Scratch,
) -> CustomerRow {
    let Scratch {
        cells,
        runs,
        days,
        periods,
    } = scratch;
    let has_purchase = orders.iter().any(Order::is_purchase);
    let my_segs: Box<[u32]> = (0..ctx.n_dims)
        .map(|d| assign(orders, segs, ctx.n_dims, d, ctx.assignment, has_purchase))
        .collect();
    // The accumulator cells this customer adds to: one cell per combination of segment values
    // when there are few combinations (expanded to slots after the fold), else every slot
    // (all + one per dimension).
    cells.clear();
    ctx.cells.of(&my_segs, &ctx.slots, cells);
    for &s in cells.iter() {
        acc.slot_customers[s] += 1;
    }
    acc.orders += orders.len() as i64;

    let mut row = CustomerRow {
        cust,
        segs: my_segs,
        cohort: None,
        first_utc: None,
        last_utc: None,
        purchases: 0,
        revenue: 0,
        refunds: 0,
        cost: 0,
        lifespan_months: None,
        days_since_last: None,
        active: None,
        churned_at_utc: None,
        frequency: None,
        recency: None,
        t: None,
        monetary: None,
        rfm: None,
        rfm_segment: None,
        prediction: None,
        holdout: None,
    };
    add_periods(orders, ctx, cells, acc, &mut row, periods);
    if !has_purchase {
        return row;
    }
    activity_runs(orders, ctx, runs);
    let first = orders
        .iter()
        .find(|o| o.is_purchase())
        .copied()
        .unwrap_or(orders[0]);
    let last = orders
        .iter()
        .rev()
        .find(|o| o.is_purchase())
        .copied()
        .unwrap_or(first);
    let cohort = ctx.frame.period_of(first.ts_local);
    debug_assert_eq!(runs[0].0, cohort + 1);
    add_retention(runs, ctx.frame.n_periods, cells, acc);
    add_cohort(
        orders,
        periods,
        runs,
        cohort,
        ctx.frame.n_periods,
        cells,
        acc,
    );
    set_measures(&mut row, ctx, cohort, runs, (first, last));
    set_btyd(&mut row, orders, ctx.as_of_day, days);
    if let Some(end) = ctx.holdout_end_day() {
        row.holdout = Holdout::of(days, end).map(Box::new);
    }
    row
}

/// Revenue and purchases per period (`periods` gets each order's period), for every order:
/// refund orders too, as revenue is net. Also the row's totals.
fn add_periods(
    orders: &[Order],
    ctx: &Ctx,
    cells: &[usize],
    acc: &mut Acc,
    row: &mut CustomerRow,
    periods: &mut Vec<usize>,
) {
    let np = ctx.frame.n_periods;
    periods.clear();
    for o in orders {
        row.revenue += o.value;
        row.refunds += o.refunds;
        row.cost += o.cost;
        let j = ctx.frame.period_of(o.ts_local);
        periods.push(j);
        let p = o.is_purchase() as i64;
        row.purchases += p;
        for &s in cells {
            acc.revenue[s * np + j] += o.value;
            acc.purchases[s * np + j] += p;
        }
    }
}

/// The runs of period boundaries at which the customer is active (SPEC: active at a boundary
/// when a purchase lies within the churn window before it), as (first, last) boundary
/// indexes; windows that touch or overlap make one run.
fn activity_runs(orders: &[Order], ctx: &Ctx, runs: &mut Vec<(usize, usize)>) {
    let f = &ctx.frame;
    runs.clear();
    for o in orders.iter().filter(|o| o.is_purchase()) {
        let lo = f.count_le(o.ts_local);
        let hi = f.count_le(o.ts_local + ctx.window_us) - 1;
        debug_assert!(lo <= hi, "window shorter than a period");
        match runs.last_mut() {
            Some(last) if lo <= last.1 + 1 => last.1 = last.1.max(hi),
            _ => runs.push((lo, hi)),
        }
    }
}

/// The retention table's contributions of the runs: active customers per boundary (as
/// differences), new at the first run's start, reactivated at a later run's, churned at a
/// run's end before as_of.
fn add_retention(runs: &[(usize, usize)], np: usize, cells: &[usize], acc: &mut Acc) {
    for (ri, &(lo, hi)) in runs.iter().enumerate() {
        for &s in cells {
            let base = s * (np + 2);
            acc.active_diff[base + lo] += 1;
            acc.active_diff[base + hi + 1] -= 1;
            if ri == 0 {
                acc.new[s * np + lo - 1] += 1;
            } else {
                acc.reactivated[s * np + lo - 1] += 1;
            }
            if hi < np {
                acc.churned[s * np + hi] += 1;
            }
        }
    }
}

/// The cohort triangle's contributions: the customer counts in cohort `cohort` of every
/// cell, with revenue, cost, purchases and activity per period offset.
fn add_cohort(
    orders: &[Order],
    periods: &[usize],
    runs: &[(usize, usize)],
    cohort: usize,
    np: usize,
    cells: &[usize],
    acc: &mut Acc,
) {
    let len = np - cohort;
    for &s in cells {
        let at = &mut acc.cohort_at[s * np + cohort];
        if *at == NO_COHORT {
            *at = acc.cohort_accs.len() as u32;
            acc.cohort_accs.push(CohortAcc::new(len));
        }
        let c = &mut acc.cohort_accs[*at as usize];
        c.size += 1;
        let mut last_active_period = usize::MAX;
        for (o, &j) in orders.iter().zip(periods.iter()) {
            if j < cohort {
                // A refund order dated before the first purchase has no cohort offset.
                continue;
            }
            let k = j - cohort;
            c.revenue[k] += o.value;
            c.cost[k] += o.cost;
            if o.is_purchase() {
                c.purchases[k] += 1;
                if last_active_period != j {
                    c.active[k] += 1;
                    last_active_period = j;
                }
            }
        }
        for &(lo, hi) in runs {
            // Active at the end of period k ⇔ boundary cohort + k + 1 ∈ [lo, hi].
            c.end_diff[lo - cohort - 1] += 1;
            c.end_diff[hi - cohort] -= 1;
        }
        // The first run starts at the end of the cohort period; the first period end after it,
        // k = hi − cohort, is the first at which the customer is not active (runs that touch
        // are merged, so the next run starts later). k = len: active through as_of.
        c.ever_diff[runs[0].1 - cohort] += 1;
    }
}

/// The customer's own measures: cohort, first and last purchase, lifespan, recency in days,
/// active, and when they churned.
fn set_measures(
    row: &mut CustomerRow,
    ctx: &Ctx,
    cohort: usize,
    runs: &[(usize, usize)],
    (first, last): (Order, Order),
) {
    let months = |us: i64| {
        let (y, m0) = days_to_year_month0(local_micros_to_day(us));
        y * 12 + m0
    };
    let active = runs.last().is_some_and(|r| r.1 == ctx.frame.n_periods);
    row.cohort = Some(cohort);
    row.first_utc = Some(first.ts_utc);
    row.last_utc = Some(last.ts_utc);
    row.lifespan_months = Some(months(last.ts_local) - months(first.ts_local) + 1);
    row.days_since_last = Some(ctx.as_of_day - local_micros_to_day(last.ts_local));
    row.active = Some(active);
    if !active {
        row.churned_at_utc = Some(ctx.zone.local_to_utc(last.ts_local + ctx.window_us));
    }
}

/// The BTYD summary (lifetimes' definitions, daily periods) from the purchase days and their
/// revenue: frequency = repeat purchase days, recency = first to last purchase day, T = first
/// purchase day to as_of, monetary = mean revenue of the repeat days.
fn set_btyd(row: &mut CustomerRow, orders: &[Order], as_of_day: i64, days: &mut Vec<(i64, i64)>) {
    days.clear();
    for o in orders.iter().filter(|o| o.is_purchase()) {
        let d = local_micros_to_day(o.ts_local);
        match days.last_mut() {
            Some(last) if last.0 == d => last.1 += o.value,
            _ => days.push((d, o.value)),
        }
    }
    let first_day = days[0].0;
    let last_day = days[days.len() - 1].0;
    let frequency = days.len() as i64 - 1;
    row.frequency = Some(frequency);
    row.recency = Some(last_day - first_day);
    row.t = Some(as_of_day - first_day);
    row.monetary = Some(if frequency == 0 {
        0.0
    } else {
        days[1..].iter().map(|d| d.1).sum::<i64>() as f64 / frequency as f64
    });
}
