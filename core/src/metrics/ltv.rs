//! ltv table (SPEC §4): LTV = S × C × P × t and CLV = S × C × P per segment, and per segment ×
//! cohort, over acquired customers. Segments here include the derived `rfm_segment`.

use std::collections::BTreeMap;

use arrow::array::{Date32Array, Float64Array, Int64Array, RecordBatch, StringArray};

use crate::schema::Table;
use crate::time::date_to_days;

use super::{arc, rfm, Ctx, CustomerRow};

/// Sums over a group of acquired customers (money in minor units).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LtvAcc {
    pub customers: i64,
    pub revenue: i64,
    pub cost: i64,
    pub purchases: i64,
    pub lifespan_months: i64,
    /// Predictions summed exactly, in units of 1e-9 (see `fixed`): Σ p_alive, Σ
    /// expected_purchases, Σ predicted_clv, and how many customers had each.
    pub alive: i128,
    pub expected: i128,
    pub clv: i128,
    pub predicted: i64,
    pub with_clv: i64,
}

/// A prediction as an integer number of 1e-9 units: sums of them are exact, so merging
/// partitions in any order gives the same bits.
fn fixed(v: f64) -> i128 {
    (v * 1e9).round() as i128
}

fn unfixed(v: i128) -> f64 {
    v as f64 / 1e9
}

/// The derived figures of one group (currency units).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LtvFigures {
    /// S: average check.
    pub s: Option<f64>,
    /// C: purchases per customer-month.
    pub c: Option<f64>,
    /// P: margin.
    pub p: Option<f64>,
    /// t: mean lifespan in months.
    pub t: Option<f64>,
    pub ltv: Option<f64>,
    pub clv: Option<f64>,
    pub avg_revenue_per_customer: Option<f64>,
}

impl LtvAcc {
    /// S, C, P, t and the products. With a cost column the margin amount is revenue − cost, so
    /// LTV = (revenue − cost) / customers, which equals S × C × P × t with P = (revenue − cost) / revenue.
    pub fn figures(&self, has_cost: bool, margin: f64, scale: f64) -> LtvFigures {
        let rev = self.revenue as f64 / scale;
        let profit = if has_cost {
            (self.revenue - self.cost) as f64 / scale
        } else {
            rev * margin
        };
        let div = |a: f64, b: i64| (b != 0).then(|| a / b as f64);
        LtvFigures {
            s: div(rev, self.purchases),
            c: div(self.purchases as f64, self.lifespan_months),
            p: if has_cost {
                (self.revenue != 0).then(|| profit / rev)
            } else {
                Some(margin)
            },
            t: div(self.lifespan_months as f64, self.customers),
            ltv: div(profit, self.customers),
            clv: div(profit, self.lifespan_months),
            avg_revenue_per_customer: div(rev, self.customers),
        }
    }
}

/// (segment_by, segment, cohort position; None = all cohorts).
pub type Key = (String, String, Option<usize>);

/// cac, ltv_to_cac and payback_months of one row.
#[derive(Debug, Clone, Copy)]
struct Cac(f64, Option<f64>, Option<f64>);

/// Sums per group of acquired customers, by segment (and segment × cohort), kept in a dense
/// array indexed by (slot, cohort + 1) — slot = a segment of `ctx.slots` or an rfm_segment
/// value, cohort 0 = all cohorts — and only named (and sorted) at the end. Sums of disjoint
/// sets of customers merge by addition.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Sums {
    acc: Vec<LtvAcc>,
    width: usize,
}

impl Sums {
    pub fn new(ctx: &Ctx) -> Sums {
        let n_slots = ctx.slots.len() + rfm::SEGMENTS.len();
        let width = ctx.frame.n_periods + 1;
        Sums {
            acc: vec![LtvAcc::default(); n_slots * width],
            width,
        }
    }

    /// Whether `other` is laid out as these (the same slots and periods).
    pub fn same_layout(&self, other: &Sums) -> bool {
        self.width == other.width && self.acc.len() == other.acc.len()
    }

    /// Adds another set of sums (of other customers, laid out alike) into these.
    pub fn merge(&mut self, other: &Sums) {
        debug_assert!(self.same_layout(other));
        for (a, b) in self.acc.iter_mut().zip(&other.acc) {
            a.customers += b.customers;
            a.revenue += b.revenue;
            a.cost += b.cost;
            a.purchases += b.purchases;
            a.lifespan_months += b.lifespan_months;
            a.alive += b.alive;
            a.expected += b.expected;
            a.clv += b.clv;
            a.predicted += b.predicted;
            a.with_clv += b.with_clv;
        }
    }

    /// Adds the acquired customers of `rows` (scored: rfm_segment is a group).
    pub fn add(&mut self, rows: &[CustomerRow], ctx: &Ctx) {
        let width = self.width;
        let mut slots: Vec<usize> = Vec::with_capacity(ctx.n_dims + 2);
        for r in rows {
            let Some(cohort) = r.cohort else { continue };
            slots.clear();
            slots.push(0);
            for d in 0..ctx.n_dims {
                slots.push((ctx.slots.base[d] + r.segs[d]) as usize);
            }
            if let Some(scores) = r.rfm {
                slots.push(ctx.slots.len() + rfm::segment_index(scores));
            }
            for &slot in &slots {
                for c in [0, cohort + 1] {
                    let a = &mut self.acc[slot * width + c];
                    a.customers += 1;
                    a.revenue += r.revenue;
                    a.cost += r.cost;
                    a.purchases += r.purchases;
                    a.lifespan_months += r.lifespan_months.unwrap_or(0);
                    if let Some(p) = &r.prediction {
                        a.predicted += 1;
                        a.alive += fixed(p.p_alive);
                        a.expected += fixed(p.expected_purchases);
                        if let Some(v) = p.predicted_clv {
                            a.with_clv += 1;
                            a.clv += fixed(v);
                        }
                    }
                }
            }
        }
    }

    /// The non-empty groups by (segment_by, segment, cohort).
    pub fn named(self, ctx: &Ctx) -> BTreeMap<Key, LtvAcc> {
        let width = self.width;
        let mut out = BTreeMap::new();
        for (i, a) in self.acc.into_iter().enumerate() {
            if a.customers == 0 {
                continue;
            }
            let (slot, c) = (i / width, i % width);
            let (by, seg) = if slot < ctx.slots.len() {
                let (b, s) = &ctx.slots.names[slot];
                (b.clone(), s.clone())
            } else {
                (
                    "rfm_segment".to_string(),
                    rfm::SEGMENTS[slot - ctx.slots.len()].to_string(),
                )
            };
            out.insert((by, seg, c.checked_sub(1)), a);
        }
        out
    }
}

/// Spend (minor units) behind a row: the cohort's period, or every period for the segment row;
/// None when the spend file has nothing for that segment.
fn spend_for(ctx: &Ctx, (by, seg, cohort): &Key) -> Option<i64> {
    let spend = ctx.spend.as_ref()?;
    match cohort {
        Some(c) => spend.get(&(by.clone(), seg.clone(), *c)).copied(),
        None => {
            let mut found = false;
            let mut total = 0;
            for ((b, s, _), v) in spend.iter() {
                if b == by && s == seg {
                    found = true;
                    total += v;
                }
            }
            found.then_some(total)
        }
    }
}

/// Builds the ltv table from its groups.
pub fn table_of(groups: &BTreeMap<Key, LtvAcc>, ctx: &Ctx) -> RecordBatch {
    let figs: Vec<(&Key, &LtvAcc, LtvFigures)> = groups
        .iter()
        .map(|(k, a)| (k, a, a.figures(ctx.has_cost, ctx.margin, ctx.money_scale)))
        .collect();
    let cac: Vec<Option<Cac>> = figs
        .iter()
        .map(|(k, a, f)| {
            let spend = spend_for(ctx, k)?;
            let cac = ctx.money(spend) / a.customers as f64;
            let ratio = f.ltv.filter(|_| cac > 0.0).map(|l| l / cac);
            let payback = f.clv.filter(|&c| c > 0.0).map(|c| cac / c);
            Some(Cac(cac, ratio, payback))
        })
        .collect();
    let opt = |g: &dyn Fn(&LtvFigures) -> Option<f64>| {
        arc(Float64Array::from(
            figs.iter().map(|f| g(&f.2)).collect::<Vec<_>>(),
        ))
    };
    let cols = vec![
        (
            "segment_by",
            arc(StringArray::from_iter_values(
                figs.iter().map(|f| f.0 .0.as_str()),
            )),
        ),
        (
            "segment",
            arc(StringArray::from_iter_values(
                figs.iter().map(|f| f.0 .1.as_str()),
            )),
        ),
        (
            "cohort",
            arc(Date32Array::from(
                figs.iter()
                    .map(|f| f.0 .2.map(|c| date_to_days(ctx.frame.period_start(c))))
                    .collect::<Vec<_>>(),
            )),
        ),
        (
            "customers",
            arc(Int64Array::from_iter_values(
                figs.iter().map(|f| f.1.customers),
            )),
        ),
        (
            "revenue",
            arc(Float64Array::from_iter_values(
                figs.iter().map(|f| ctx.money(f.1.revenue)),
            )),
        ),
        (
            "purchases",
            arc(Int64Array::from_iter_values(
                figs.iter().map(|f| f.1.purchases),
            )),
        ),
        ("avg_order_value", opt(&|f| f.s)),
        ("purchases_per_month", opt(&|f| f.c)),
        ("margin", opt(&|f| f.p)),
        ("lifespan_months", opt(&|f| f.t)),
        ("ltv", opt(&|f| f.ltv)),
        ("clv", opt(&|f| f.clv)),
        (
            "avg_revenue_per_customer",
            opt(&|f| f.avg_revenue_per_customer),
        ),
        (
            "cac",
            arc(Float64Array::from(
                cac.iter().map(|c| c.map(|c| c.0)).collect::<Vec<_>>(),
            )),
        ),
        (
            "ltv_to_cac",
            arc(Float64Array::from(
                cac.iter().map(|c| c.and_then(|c| c.1)).collect::<Vec<_>>(),
            )),
        ),
        (
            "payback_months",
            arc(Float64Array::from(
                cac.iter().map(|c| c.and_then(|c| c.2)).collect::<Vec<_>>(),
            )),
        ),
        (
            "expected_alive_customers",
            arc(Float64Array::from(
                figs.iter()
                    .map(|f| (f.1.predicted > 0).then(|| unfixed(f.1.alive)))
                    .collect::<Vec<_>>(),
            )),
        ),
        (
            "expected_purchases",
            arc(Float64Array::from(
                figs.iter()
                    .map(|f| (f.1.predicted > 0).then(|| unfixed(f.1.expected)))
                    .collect::<Vec<_>>(),
            )),
        ),
        (
            "predicted_clv",
            arc(Float64Array::from(
                figs.iter()
                    .map(|f| (f.1.with_clv > 0).then(|| unfixed(f.1.clv) / f.1.with_clv as f64))
                    .collect::<Vec<_>>(),
            )),
        ),
    ];
    Table::Ltv.batch(&[], cols)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fitness_club_example() {
        // SPEC §4: S = 20, C = 1 per month, P = 1, t = 36 → ltv = 720.
        // One customer, 36 monthly purchases of 20.00 (2000 minor units) over 36 months.
        let a = LtvAcc {
            customers: 1,
            revenue: 36 * 2000,
            cost: 0,
            purchases: 36,
            lifespan_months: 36,
            ..LtvAcc::default()
        };
        let f = a.figures(false, 1.0, 100.0);
        assert_eq!(f.s, Some(20.0)); // 720 / 36
        assert_eq!(f.c, Some(1.0)); // 36 / 36
        assert_eq!(f.t, Some(36.0)); // 36 / 1
        assert_eq!(f.ltv, Some(720.0)); // 20 × 1 × 1 × 36
        assert_eq!(f.clv, Some(20.0)); // 20 × 1 × 1
    }

    #[test]
    fn cost_gives_the_margin() {
        // Two customers: revenue 300.00, cost 120.00, 6 purchases, lifespans 2 + 4 = 6 months.
        // P = (300 − 120) / 300 = 0.6; S = 50; C = 6 / 6 = 1; t = 3
        // ltv = 50 × 1 × 0.6 × 3 = 90 = (300 − 120) / 2; clv = 50 × 1 × 0.6 = 30.
        let a = LtvAcc {
            customers: 2,
            revenue: 30_000,
            cost: 12_000,
            purchases: 6,
            lifespan_months: 6,
            ..LtvAcc::default()
        };
        let f = a.figures(true, 1.0, 100.0);
        assert_eq!(f.p, Some(0.6));
        assert_eq!(f.s, Some(50.0));
        assert_eq!(f.t, Some(3.0));
        assert_eq!(f.ltv, Some(90.0));
        assert_eq!(f.clv, Some(30.0));
        assert_eq!(f.avg_revenue_per_customer, Some(150.0));
    }
}
