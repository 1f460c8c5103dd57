//! retention table (SPEC §4, CRR): per segment × period from the first period with data to the
//! one that contains as_of. S and E come from the activity runs of the fold; CRR = (E − N) / S × 100.

use arrow::array::{BooleanArray, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray};

use crate::schema::Table;
use crate::time::date_to_days;

use super::{arc, Acc, Ctx};

/// One retention row (counts and money in minor units) — also used by tests and proptests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetentionRow {
    pub slot: usize,
    pub period: usize,
    pub start: i64,
    pub end: i64,
    pub new: i64,
    pub churned: i64,
    pub reactivated: i64,
    pub revenue: i64,
    pub purchases: i64,
}

impl RetentionRow {
    /// (E − N) / S × 100, null when S = 0.
    pub fn crr(&self) -> Option<f64> {
        rate(self.end - self.new, self.start)
    }
    pub fn strict_retention(&self) -> Option<f64> {
        rate(self.start - self.churned, self.start)
    }
    pub fn churn_rate(&self) -> Option<f64> {
        rate(self.churned, self.start)
    }
}

/// a / b × 100, or None when b = 0.
pub fn rate(a: i64, b: i64) -> Option<f64> {
    (b != 0).then(|| a as f64 / b as f64 * 100.0)
}

/// All rows in grain-key order (segment_by, segment, period); slots without customers are left out.
pub fn rows(acc: &Acc, ctx: &Ctx) -> Vec<RetentionRow> {
    let np = ctx.frame.n_periods;
    let mut out = Vec::new();
    for slot in ctx.slots.sorted() {
        if slot != 0 && acc.slot_customers[slot] == 0 {
            continue;
        }
        let active = acc.active_at_boundaries(slot);
        for j in 0..np {
            let i = slot * np + j;
            out.push(RetentionRow {
                slot,
                period: j,
                start: active[j],
                end: active[j + 1],
                new: acc.new[i],
                churned: acc.churned[i],
                reactivated: acc.reactivated[i],
                revenue: acc.revenue[i],
                purchases: acc.purchases[i],
            });
        }
    }
    out
}

/// Builds the retention table.
pub fn table(acc: &Acc, ctx: &Ctx) -> RecordBatch {
    let rows = rows(acc, ctx);
    let f = &ctx.frame;
    let ints =
        |g: &dyn Fn(&RetentionRow) -> i64| arc(Int64Array::from_iter_values(rows.iter().map(g)));
    let rates = |g: &dyn Fn(&RetentionRow) -> Option<f64>| {
        arc(Float64Array::from(rows.iter().map(g).collect::<Vec<_>>()))
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
            "period_start",
            arc(Date32Array::from_iter_values(
                rows.iter().map(|r| date_to_days(f.period_start(r.period))),
            )),
        ),
        (
            "period_end",
            arc(Date32Array::from_iter_values(
                rows.iter().map(|r| date_to_days(f.period_end(r.period))),
            )),
        ),
        (
            "is_complete",
            arc(BooleanArray::from(
                rows.iter()
                    .map(|r| f.is_complete(r.period))
                    .collect::<Vec<_>>(),
            )),
        ),
        ("customers_start", ints(&|r| r.start)),
        ("customers_end", ints(&|r| r.end)),
        ("customers_new", ints(&|r| r.new)),
        ("churned", ints(&|r| r.churned)),
        ("reactivated", ints(&|r| r.reactivated)),
        ("crr", rates(&|r| r.crr())),
        ("strict_retention", rates(&|r| r.strict_retention())),
        ("churn_rate", rates(&|r| r.churn_rate())),
        (
            "revenue",
            arc(Float64Array::from_iter_values(
                rows.iter().map(|r| ctx.money(r.revenue)),
            )),
        ),
        ("purchases", ints(&|r| r.purchases)),
    ];
    Table::Retention.batch(&[], cols)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crr_worked_example() {
        // SPEC §4: S = 200, 20 lost, 40 new, E = 220 → CRR = (220 − 40) / 200 × 100 = 90.
        let r = RetentionRow {
            slot: 0,
            period: 0,
            start: 200,
            end: 220,
            new: 40,
            churned: 20,
            reactivated: 0,
            revenue: 0,
            purchases: 0,
        };
        assert_eq!(r.end, r.start - r.churned + r.reactivated + r.new);
        assert_eq!(r.crr(), Some(90.0));
        // strict retention (200 − 20) / 200 × 100 = 90, churn rate 20 / 200 × 100 = 10.
        assert_eq!(r.strict_retention(), Some(90.0));
        assert_eq!(r.churn_rate(), Some(10.0));
        assert_eq!(rate(1, 0), None);
    }
}
