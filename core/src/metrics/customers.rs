//! customers table (SPEC §4): one row per customer as of as_of, in customer_id order.

use arrow::array::{
    Array, ArrayRef, Date32Builder, Float64Builder, Int64Builder, RecordBatch, StringArray,
    StringBuilder, TimestampMicrosecondBuilder, UInt32Array,
};
use arrow::compute::{concat, take};

use rayon::prelude::*;

use crate::schema::Table;
use crate::source::Ingested;
use crate::time::date_to_days;

use super::{arc, Ctx, CustomerRow};

/// The values of the customers' `status`: active, churned.
pub const STATUSES: [&str; 2] = ["active", "churned"];

/// Builds the customers table of `rows`.
pub fn table(mut rows: Vec<&CustomerRow>, ingested: &Ingested, ctx: &Ctx) -> RecordBatch {
    // Rows come from the fold in the orders' layout, which is customer_id order for a run held
    // in memory; the rows of one partition of a spilled run are in customer id order and are
    // sorted by rank (computed once per input and shared by every date of a backfill).
    let rank = ingested.customer_rank();
    let at = |r: &CustomerRow| rank[r.cust as usize];
    if !rows.is_sorted_by_key(|r| at(r)) {
        rows.par_sort_unstable_by_key(|r| at(r));
    }
    let cohort_days: Vec<i32> = (0..ctx.frame.n_periods)
        .map(|c| date_to_days(ctx.frame.period_start(c)))
        .collect();
    // One pass over the rows appends to every column's builder (a row is fetched once, not
    // once per column). Chunks of rows are built in parallel and joined per column.
    let chunk = rows
        .len()
        .div_ceil(rayon::current_num_threads())
        .max(1 << 16);
    let (ids, parts): (ArrayRef, Vec<Vec<ArrayRef>>) = rayon::join(
        || customer_ids(&rows, ingested, rank),
        || {
            rows.par_chunks(chunk)
                .map(|part| build(part, ingested, ctx, &cohort_days))
                .collect()
        },
    );
    let mut cols: Vec<ArrayRef> = match parts.len() {
        0 => build(&[], ingested, ctx, &cohort_days),
        1 => parts.into_iter().next().unwrap_or_default(),
        n => {
            // Each column's pieces are freed as soon as that column is joined, so the memory
            // held at once is the table plus a column or two, not the table twice.
            let mut by_column: Vec<Vec<ArrayRef>> = Vec::new();
            for part in parts {
                by_column.resize_with(part.len(), || Vec::with_capacity(n));
                for (pieces, array) in by_column.iter_mut().zip(part) {
                    pieces.push(array);
                }
            }
            by_column
                .into_par_iter()
                .map(|pieces| {
                    let refs: Vec<&dyn Array> = pieces.iter().map(|a| a.as_ref()).collect();
                    concat(&refs).expect("chunks of one column have one type")
                })
                .collect()
        }
    };
    cols.insert(0, ids);
    RecordBatch::try_new(Table::Customers.schema(&ctx.dim_names), cols)
        .expect("customers columns match the documented schema")
}

/// The customer_id column of `rows` (sorted by rank). A run held in memory takes the texts in
/// order from the sorted array of all ids (the whole array when every customer has a row); a
/// spilled run, which keeps no such array, looks each one up.
fn customer_ids(rows: &[&CustomerRow], ingested: &Ingested, rank: &[u32]) -> ArrayRef {
    if ingested.spilled {
        return arc(StringArray::from_iter_values(
            rows.iter().map(|r| ingested.customers.get(r.cust)),
        ));
    }
    let all = ingested.sorted_customer_ids();
    if rows.len() == all.len() {
        return arc(all.clone());
    }
    let at = UInt32Array::from_iter_values(rows.iter().map(|r| rank[r.cust as usize]));
    take(all, &at, None).expect("ranks index the sorted customer ids")
}

/// Builds every column of the customers table but customer_id for `rows`, in schema order.
fn build(
    rows: &[&CustomerRow],
    ingested: &Ingested,
    ctx: &Ctx,
    cohort_days: &[i32],
) -> Vec<ArrayRef> {
    let n = rows.len();
    let ints = || Int64Builder::with_capacity(n);
    let floats = || Float64Builder::with_capacity(n);
    let stamps = || TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut segs: Vec<StringBuilder> = (0..ctx.n_dims)
        .map(|_| StringBuilder::with_capacity(n, n * 8))
        .collect();
    let mut cohort = Date32Builder::with_capacity(n);
    let (mut first, mut last, mut churned_at) = (stamps(), stamps(), stamps());
    let (mut orders, mut lifespan, mut days_since) = (ints(), ints(), ints());
    let (mut frequency, mut recency, mut t) = (ints(), ints(), ints());
    let mut rfm = [ints(), ints(), ints()];
    let (mut revenue, mut refunds, mut cost, mut margin) = (floats(), floats(), floats(), floats());
    let (mut aov, mut per_month, mut ltv, mut monetary) = (floats(), floats(), floats(), floats());
    let (mut alive, mut expected, mut value, mut clv) = (floats(), floats(), floats(), floats());
    let mut status = StringBuilder::with_capacity(n, n * 7);
    let mut segment = StringBuilder::with_capacity(n, n * 10);
    let money = |v: i64| ctx.money(v);
    for r in rows {
        for (d, b) in segs.iter_mut().enumerate() {
            b.append_value(ingested.segments[d].get(r.segs[d]));
        }
        cohort.append_option(r.cohort.map(|c| cohort_days[c]));
        first.append_option(r.first_utc);
        last.append_option(r.last_utc);
        orders.append_value(r.purchases);
        revenue.append_value(money(r.revenue));
        refunds.append_value(money(r.refunds));
        if ctx.has_cost {
            cost.append_value(money(r.cost));
            margin.append_option(
                (r.revenue != 0).then(|| (r.revenue - r.cost) as f64 / r.revenue as f64),
            );
            ltv.append_value(money(r.revenue - r.cost));
        } else {
            cost.append_null();
            margin.append_value(ctx.margin);
            ltv.append_value(money(r.revenue) * ctx.margin);
        }
        aov.append_option((r.purchases > 0).then(|| money(r.revenue) / r.purchases as f64));
        lifespan.append_option(r.lifespan_months);
        per_month.append_option(r.lifespan_months.map(|l| r.purchases as f64 / l as f64));
        days_since.append_option(r.days_since_last);
        status.append_option(r.active.map(|a| if a { STATUSES[0] } else { STATUSES[1] }));
        churned_at.append_option(r.churned_at_utc);
        frequency.append_option(r.frequency);
        recency.append_option(r.recency);
        t.append_option(r.t);
        monetary.append_option(r.monetary.map(|m| m / ctx.money_scale));
        for (k, b) in rfm.iter_mut().enumerate() {
            b.append_option(r.rfm.map(|s| s[k] as i64));
        }
        segment.append_option(r.rfm_segment);
        let p = r.prediction.as_ref();
        alive.append_option(p.map(|p| p.p_alive));
        expected.append_option(p.map(|p| p.expected_purchases));
        value.append_option(p.and_then(|p| p.expected_avg_value));
        clv.append_option(p.and_then(|p| p.predicted_clv));
    }
    let mut cols: Vec<ArrayRef> = segs.iter_mut().map(|b| arc(b.finish())).collect();
    cols.extend([
        arc(cohort.finish()),
        arc(first.finish()),
        arc(last.finish()),
        arc(orders.finish()),
        arc(revenue.finish()),
        arc(refunds.finish()),
        arc(cost.finish()),
        arc(margin.finish()),
        arc(aov.finish()),
        arc(lifespan.finish()),
        arc(per_month.finish()),
        arc(ltv.finish()),
        arc(days_since.finish()),
        arc(status.finish()),
        arc(churned_at.finish()),
        arc(frequency.finish()),
        arc(recency.finish()),
        arc(t.finish()),
        arc(monetary.finish()),
    ]);
    cols.extend(rfm.iter_mut().map(|b| arc(b.finish())));
    cols.extend([
        arc(segment.finish()),
        arc(alive.finish()),
        arc(expected.finish()),
        arc(value.finish()),
        arc(clv.finish()),
    ]);
    cols
}
