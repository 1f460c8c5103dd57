//! Property tests of the SPEC invariants on random transaction sets, through the library:
//! E = S − churned + reactivated + N on every retention row; segment rows sum to `__all__`;
//! revenue in = revenue out; each customer once; cohort sizes sum to acquired customers.

use chrono::NaiveDate;
use proptest::prelude::*;

use crate::compute::{self, Partitions};
use crate::config::Config;
use crate::metrics::{self, cohorts, retention, Ctx};
use crate::orders;
use crate::source::{Dict, Ingested, Lines, ROW_ORDER_BASE, UNKNOWN_SEGMENT};
use crate::time::{date_to_local_micros, MICROS_PER_DAY};

/// (customer, order, day offset, minute, amount in cents, segment value or None)
type RawLine = (u8, u8, u16, u16, i32, Option<u8>);

fn config(period: &str, window: u32, assignment: &str) -> crate::config::Validated {
    Config::from_toml(&format!(
        "[input]\npaths=[\"x\"]\n[input.columns]\ncustomer_id=\"c\"\nts=\"t\"\namount=\"a\"\norder_id=\"o\"\nsegments=[\"channel\"]\n[metrics]\nperiod=\"{period}\"\nchurn_window_days={window}\nsegment_assignment=\"{assignment}\"\n"
    ))
    .unwrap()
    .validate()
    .unwrap()
}

fn ingest(raw: &[RawLine], as_of: NaiveDate) -> Ingested {
    let start = date_to_local_micros(NaiveDate::from_ymd_opt(2023, 1, 1).unwrap());
    let cutoff = date_to_local_micros(as_of) + MICROS_PER_DAY;
    let mut ing = Ingested {
        segments: vec![Dict::default()],
        ..Default::default()
    };
    let mut lines = Lines::default();
    let mut orders = Dict::default();
    for (n, &(c, o, day, minute, cents, seg)) in raw.iter().enumerate() {
        let ts = start + day as i64 * MICROS_PER_DAY + minute as i64 * 60_000_000;
        if ts >= cutoff {
            continue;
        }
        lines.cust.push(ing.customers.intern(&format!("c{c}")));
        // Order 0 means "no order id": the line is its own order.
        lines.order.push(if o == 0 {
            ROW_ORDER_BASE + n as u64
        } else {
            orders.intern(&format!("c{c}-o{o}")) as u64
        });
        lines.ts_utc.push(ts);
        lines.ts_local.push(ts);
        lines.amount.push(cents as i64);
        let v = seg
            .map(|s| ["web", "app", "store"][s as usize % 3])
            .unwrap_or(UNKNOWN_SEGMENT);
        lines.seg.push(ing.segments[0].intern(v));
    }
    ing.lines = lines;
    ing
}

fn raw_lines() -> impl Strategy<Value = Vec<RawLine>> {
    prop::collection::vec(
        (
            0u8..12,
            0u8..4,
            0u16..500,
            0u16..1440,
            -3000i32..20000,
            prop::option::weighted(0.9, 0u8..3),
        ),
        1..80,
    )
}

fn check(
    raw: Vec<RawLine>,
    as_of_offset: u16,
    period: &str,
    window: u32,
    assignment: &str,
) -> Result<(), TestCaseError> {
    let as_of =
        NaiveDate::from_ymd_opt(2023, 1, 1).unwrap() + chrono::Duration::days(as_of_offset as i64);
    let cfg = config(period, window, assignment);
    let ing = ingest(&raw, as_of);
    if ing.lines.is_empty() {
        return Ok(());
    }
    let built = orders::build(&ing.lines, ing.customers.len(), 1);
    let ord = built.at(i64::MAX);
    let ctx = Ctx::new(&cfg, as_of, &ing, &ord);
    let (rows, acc) = metrics::fold_all(&ord, &ctx);
    prop_assert!(
        ctx.cells.slots_of().is_some(),
        "one segment column: per combination"
    );
    // Accumulating per slot gives the same tables as per combination of segment values.
    let mut per_slot = ctx.clone();
    per_slot.cells = metrics::Cells::per_slot(&ctx.slots);
    let (rows2, acc2) = metrics::fold_all(&ord, &per_slot);
    prop_assert_eq!(&rows2, &rows);
    prop_assert_eq!(retention::rows(&acc2, &ctx), retention::rows(&acc, &ctx));
    prop_assert_eq!(cohorts::rows(&acc2, &ctx), cohorts::rows(&acc, &ctx));

    // Each customer exactly once.
    prop_assert_eq!(rows.len(), ing.customers.count());
    let mut ids: Vec<u32> = rows.iter().map(|r| r.cust).collect();
    ids.sort_unstable();
    ids.dedup();
    prop_assert_eq!(ids.len(), rows.len());

    // Revenue in = revenue out (customers and retention).
    let revenue_in: i64 = ing.lines.amount.iter().sum();
    prop_assert_eq!(rows.iter().map(|r| r.revenue).sum::<i64>(), revenue_in);
    let ret = retention::rows(&acc, &ctx);
    let all: Vec<_> = ret.iter().filter(|r| r.slot == 0).collect();
    prop_assert_eq!(all.iter().map(|r| r.revenue).sum::<i64>(), revenue_in);

    for r in &ret {
        // The SPEC identity on every row.
        prop_assert_eq!(
            r.end,
            r.start - r.churned + r.reactivated + r.new,
            "row {:?}",
            r
        );
        prop_assert!(r.start >= 0 && r.end >= 0 && r.churned <= r.start);
    }
    // E of one period is S of the next.
    for w in all.windows(2) {
        prop_assert_eq!(w[0].end, w[1].start);
    }
    // Segment rows sum to the __all__ row, period by period.
    for a in &all {
        let seg: Vec<_> = ret
            .iter()
            .filter(|r| r.slot != 0 && r.period == a.period)
            .collect();
        let sum = |f: fn(&retention::RetentionRow) -> i64| seg.iter().map(|r| f(r)).sum::<i64>();
        prop_assert_eq!(sum(|r| r.start), a.start);
        prop_assert_eq!(sum(|r| r.end), a.end);
        prop_assert_eq!(sum(|r| r.new), a.new);
        prop_assert_eq!(sum(|r| r.churned), a.churned);
        prop_assert_eq!(sum(|r| r.reactivated), a.reactivated);
        prop_assert_eq!(sum(|r| r.revenue), a.revenue);
        prop_assert_eq!(sum(|r| r.purchases), a.purchases);
    }
    // Customers new over all periods = acquired customers = cohort sizes.
    let acquired = rows.iter().filter(|r| r.cohort.is_some()).count() as i64;
    prop_assert_eq!(all.iter().map(|r| r.new).sum::<i64>(), acquired);
    let coh = cohorts::rows(&acc, &ctx);
    let sizes: i64 = coh
        .iter()
        .filter(|r| r.slot == 0 && r.offset == 0)
        .map(|r| r.size)
        .sum();
    prop_assert_eq!(sizes, acquired);
    for r in &coh {
        prop_assert!(r.active <= r.size && r.churned <= r.size && r.churned >= 0);
        // Whoever is churned at k has lapsed at some period end up to k.
        prop_assert!(r.churned <= r.ever_churned && r.ever_churned <= r.size);
    }
    // ever_churned never decreases along a cohort's offsets (survival_rate never increases).
    for w in coh.windows(2) {
        if (w[0].slot, w[0].cohort) == (w[1].slot, w[1].cohort) {
            prop_assert!(w[1].ever_churned >= w[0].ever_churned);
        }
    }
    // Active at the cutoff (customers table) = E of the last period.
    let active = rows.iter().filter(|r| r.active == Some(true)).count() as i64;
    prop_assert_eq!(active, all.last().unwrap().end);
    Ok(())
}

/// The customers of `lines` in `count` partitions: customer `c` in partition `c % count`,
/// numbered `c / count` there (as a spilled run numbers them).
fn split(lines: &Lines, count: usize) -> Vec<Lines> {
    let mut parts: Vec<Lines> = (0..count).map(|_| Lines::default()).collect();
    for i in 0..lines.cust.len() {
        let c = lines.cust[i] as usize;
        let p = &mut parts[c % count];
        p.cust.push((c / count) as u32);
        p.order.push(lines.order[i]);
        p.ts_utc.push(lines.ts_utc[i]);
        p.ts_local.push(lines.ts_local[i]);
        p.amount.push(lines.amount[i]);
        p.seg.push(lines.seg[i]);
    }
    parts
}

/// Partitions visited in the order `visit` (a permutation of their numbers).
struct Permuted {
    orders: Vec<orders::Orders>,
    visit: Vec<usize>,
}

impl Partitions for Permuted {
    type Error = std::convert::Infallible;

    fn count(&self) -> usize {
        self.orders.len()
    }

    fn each(
        &self,
        _cutoffs: &[i64],
        f: &mut compute::EachPartition<'_, Self::Error>,
    ) -> Result<(), Self::Error> {
        for &p in &self.visit {
            f(p, &self.orders[p])?;
        }
        Ok(())
    }
}

/// Every table of `parts` as of `ctx`, customers sorted by id.
fn tables_of(
    parts: &dyn Partitions<Error = std::convert::Infallible>,
    ing: &Ingested,
    ctx: &Ctx,
) -> metrics::Tables {
    let mut rows = Vec::new();
    let merged = compute::compute_dates(
        parts,
        std::slice::from_ref(ctx),
        &[i64::MAX],
        true,
        &mut |_, _, part| {
            rows.extend(part.into_iter().cloned());
            Ok(())
        },
    )
    .unwrap();
    rows.sort_unstable_by_key(|r: &metrics::CustomerRow| r.cust);
    let customers = metrics::customers::table(rows.iter().collect(), ing, ctx);
    merged
        .into_iter()
        .next()
        .unwrap()
        .tables(ctx, &[], customers)
}

/// Folding the customers in `count` partitions, visited in any order, gives the tables of one
/// partition: merging partials is exact, associative and commutative.
fn check_partitions(
    raw: Vec<RawLine>,
    count: usize,
    rotate: usize,
    reverse: bool,
) -> Result<(), TestCaseError> {
    let as_of = NaiveDate::from_ymd_opt(2024, 6, 30).unwrap();
    let cfg = config("month", 45, "first");
    let ing = ingest(&raw, as_of);
    if ing.lines.is_empty() {
        return Ok(());
    }
    let whole = orders::build(&ing.lines, ing.customers.len(), 1);
    let ctx = Ctx::new(&cfg, as_of, &ing, &whole.at(i64::MAX));
    let one = tables_of(&compute::InMemory::new(&whole), &ing, &ctx);
    let n_local = ing.customers.len().div_ceil(count);
    let mut visit: Vec<usize> = (0..count).collect();
    visit.rotate_left(rotate % count);
    if reverse {
        visit.reverse();
    }
    let parts = Permuted {
        orders: split(&ing.lines, count)
            .iter()
            .map(|l| orders::build(l, n_local, 1))
            .collect(),
        visit,
    };
    let many = tables_of(&parts, &ing, &ctx);
    for ((name, a), (_, b)) in one.iter().into_iter().zip(many.iter()) {
        prop_assert_eq!(a, b, "{} in {} partitions", name, count);
    }
    prop_assert_eq!(
        (one.orders, one.n_customers),
        (many.orders, many.n_customers)
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn partitions_in_any_order_merge_to_the_same_tables(
        raw in raw_lines(),
        count in 1usize..=8,
        rotate in 0usize..8,
        reverse: bool,
    ) {
        check_partitions(raw, count, rotate, reverse)?;
    }

    #[test]
    fn invariants_month(raw in raw_lines(), as_of in 0u16..560) {
        check(raw, as_of, "month", 45, "first")?;
    }

    #[test]
    fn invariants_week_most_frequent(raw in raw_lines(), as_of in 0u16..560) {
        check(raw, as_of, "week", 7, "most_frequent")?;
    }

    #[test]
    fn invariants_quarter_last(raw in raw_lines(), as_of in 0u16..560) {
        check(raw, as_of, "quarter", 92, "last")?;
    }
}
