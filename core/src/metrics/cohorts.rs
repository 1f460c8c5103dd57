//! cohorts table (SPEC §4): the churn-cohort triangle per segment × cohort × period_offset.

use arrow::array::{BooleanArray, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray};

use crate::schema::Table;
use crate::time::date_to_days;

use super::retention::rate;
use super::{arc, Acc, Ctx};

/// One cohort-table row (money in minor units).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CohortRow {
    pub slot: usize,
    pub cohort: usize,
    pub offset: usize,
    pub size: i64,
    pub active: i64,
    pub churned: i64,
    /// Not active at the end of at least one of the periods 0..=offset.
    pub ever_churned: i64,
    pub revenue: i64,
    pub cost: i64,
    pub purchases: i64,
    pub cumulative_revenue: i64,
    pub cumulative_cost: i64,
}

/// Rows in grain-key order (segment_by, segment, cohort, period_offset).
pub fn rows(acc: &Acc, ctx: &Ctx) -> Vec<CohortRow> {
    let np = acc.n_periods;
    let mut keys: Vec<(u32, u32)> = (0..acc.cohort_at.len())
        .filter(|&i| acc.cohort(i / np, i % np).is_some())
        .map(|i| ((i / np) as u32, (i % np) as u32))
        .collect();
    let order = ctx.slots.sorted();
    let mut rank = vec![0usize; order.len()];
    for (r, &s) in order.iter().enumerate() {
        rank[s] = r;
    }
    keys.sort_by_key(|&(s, c)| (rank[s as usize], c));
    let mut out = Vec::new();
    for (slot, cohort) in keys {
        let Some(c) = acc.cohort(slot as usize, cohort as usize) else {
            continue;
        };
        let (mut cum_rev, mut cum_cost, mut active_end, mut ever) = (0, 0, 0, 0);
        for k in 0..c.active.len() {
            cum_rev += c.revenue[k];
            cum_cost += c.cost[k];
            active_end += c.end_diff[k];
            ever += c.ever_diff[k];
            out.push(CohortRow {
                slot: slot as usize,
                cohort: cohort as usize,
                offset: k,
                size: c.size,
                active: c.active[k],
                churned: c.size - active_end,
                ever_churned: ever,
                revenue: c.revenue[k],
                cost: c.cost[k],
                purchases: c.purchases[k],
                cumulative_revenue: cum_rev,
                cumulative_cost: cum_cost,
            });
        }
    }
    out
}

/// Builds the cohorts table.
pub fn table(acc: &Acc, ctx: &Ctx) -> RecordBatch {
    let rows = rows(acc, ctx);
    let f = &ctx.frame;
    let ints =
        |g: &dyn Fn(&CohortRow) -> i64| arc(Int64Array::from_iter_values(rows.iter().map(g)));
    let floats =
        |g: &dyn Fn(&CohortRow) -> f64| arc(Float64Array::from_iter_values(rows.iter().map(g)));
    let period = |r: &CohortRow| r.cohort + r.offset;
    let ltv_to_date = |r: &CohortRow| {
        let profit = if ctx.has_cost {
            ctx.money(r.cumulative_revenue - r.cumulative_cost)
        } else {
            ctx.money(r.cumulative_revenue) * ctx.margin
        };
        profit / r.size as f64
    };
    let cols = vec![
        (
            "segment_by",
            arc(StringArray::from_iter_values(
                rows.iter().map(|r| ctx.slots.names[r.slot].0.as_str()),
            )),
        ),
        (
            "segment",
            arc(StringArray::from_iter_values(
                rows.iter().map(|r| ctx.slots.names[r.slot].1.as_str()),
            )),
        ),
        (
            "cohort",
            arc(Date32Array::from_iter_values(
                rows.iter().map(|r| date_to_days(f.period_start(r.cohort))),
            )),
        ),
        ("period_offset", ints(&|r| r.offset as i64)),
        (
            "period_start",
            arc(Date32Array::from_iter_values(
                rows.iter().map(|r| date_to_days(f.period_start(period(r)))),
            )),
        ),
        (
            "period_end",
            arc(Date32Array::from_iter_values(
                rows.iter().map(|r| date_to_days(f.period_end(period(r)))),
            )),
        ),
        (
            "is_complete",
            arc(BooleanArray::from(
                rows.iter()
                    .map(|r| f.is_complete(period(r)))
                    .collect::<Vec<_>>(),
            )),
        ),
        ("cohort_size", ints(&|r| r.size)),
        ("active_customers", ints(&|r| r.active)),
        (
            "retention_rate",
            floats(&|r| rate(r.active, r.size).unwrap_or(0.0)),
        ),
        ("churned_customers", ints(&|r| r.churned)),
        (
            "active_rate",
            floats(&|r| 100.0 - rate(r.churned, r.size).unwrap_or(0.0)),
        ),
        ("ever_churned_customers", ints(&|r| r.ever_churned)),
        (
            "survival_rate",
            floats(&|r| 100.0 - rate(r.ever_churned, r.size).unwrap_or(0.0)),
        ),
        ("revenue", floats(&|r| ctx.money(r.revenue))),
        ("purchases", ints(&|r| r.purchases)),
        (
            "cumulative_revenue",
            floats(&|r| ctx.money(r.cumulative_revenue)),
        ),
        ("ltv_to_date", floats(&ltv_to_date)),
    ];
    Table::Cohorts.batch(&[], cols)
}
