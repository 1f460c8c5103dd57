//! customers table (SPEC §4): one row per customer as of as_of, in customer_id order.

use arrow::array::{
    ArrayRef, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};

use rayon::prelude::*;

use crate::schema;
use crate::source::Ingested;
use crate::time::date_to_days;

use super::{arc, Ctx, CustomerRow};

/// Builds the customers table.
pub fn table(rows: &[CustomerRow], ingested: &Ingested, ctx: &Ctx) -> RecordBatch {
    // customer_id order from the ranks computed once per input (a backfill shares them across
    // dates): each row is placed at its customer's rank, then the places are read in order; no
    // string comparison and no sort.
    // A few rows among many customers (one partition of a spilled run) are sorted by rank.
    let rank = ingested.customer_rank();
    let rows: Vec<&CustomerRow> = if rows.len() * 8 < rank.len() {
        let mut v: Vec<&CustomerRow> = rows.iter().collect();
        v.par_sort_unstable_by_key(|r| rank[r.cust as usize]);
        v
    } else {
        let mut at_rank = vec![u32::MAX; rank.len()];
        for (i, r) in rows.iter().enumerate() {
            at_rank[rank[r.cust as usize] as usize] = i as u32;
        }
        at_rank
            .iter()
            .filter(|&&i| i != u32::MAX)
            .map(|&i| &rows[i as usize])
            .collect()
    };
    let rows = rows.as_slice();
    let cohort_days: Vec<i32> = (0..ctx.frame.n_periods)
        .map(|c| date_to_days(ctx.frame.period_start(c)))
        .collect();
    let cohort_days = &cohort_days;
    let money = |v: i64| ctx.money(v);
    let ts = |v: Vec<Option<i64>>| arc(TimestampMicrosecondArray::from(v).with_timezone("UTC"));
    let ints = |f: &dyn Fn(&CustomerRow) -> Option<i64>| {
        arc(Int64Array::from(
            rows.iter().map(|r| f(r)).collect::<Vec<_>>(),
        ))
    };
    let floats = |f: &dyn Fn(&CustomerRow) -> Option<f64>| {
        arc(Float64Array::from(
            rows.iter().map(|r| f(r)).collect::<Vec<_>>(),
        ))
    };
    let margin = |r: &CustomerRow| -> Option<f64> {
        if ctx.has_cost {
            (r.revenue != 0).then(|| (r.revenue - r.cost) as f64 / r.revenue as f64)
        } else {
            Some(ctx.margin)
        }
    };
    let gross_profit = |r: &CustomerRow| -> f64 {
        if ctx.has_cost {
            money(r.revenue - r.cost)
        } else {
            money(r.revenue) * ctx.margin
        }
    };

    // Each column is built by its own closure, all of them in parallel.
    type Col<'a> = Box<dyn Fn() -> ArrayRef + Send + Sync + 'a>;
    let mut cols: Vec<Col> = vec![Box::new(|| {
        arc(StringArray::from_iter_values(
            rows.iter().map(|r| ingested.customers.get(r.cust)),
        ))
    })];
    for d in 0..ctx.n_dims {
        cols.push(Box::new(move || {
            arc(StringArray::from_iter_values(
                rows.iter().map(|r| ingested.segments[d].get(r.segs[d])),
            ))
        }));
    }
    cols.push(Box::new(move || {
        arc(Date32Array::from(
            rows.iter()
                .map(|r| r.cohort.map(|c| cohort_days[c]))
                .collect::<Vec<_>>(),
        ))
    }));
    cols.push(Box::new(|| ts(rows.iter().map(|r| r.first_utc).collect())));
    cols.push(Box::new(|| ts(rows.iter().map(|r| r.last_utc).collect())));
    cols.push(Box::new(|| ints(&|r| Some(r.purchases))));
    cols.push(Box::new(|| floats(&|r| Some(money(r.revenue)))));
    cols.push(Box::new(|| floats(&|r| Some(money(r.refunds)))));
    cols.push(Box::new(|| {
        floats(&|r| ctx.has_cost.then(|| money(r.cost)))
    }));
    cols.push(Box::new(|| floats(&margin)));
    cols.push(Box::new(|| {
        floats(&|r| (r.purchases > 0).then(|| money(r.revenue) / r.purchases as f64))
    }));
    cols.push(Box::new(|| ints(&|r| r.lifespan_months)));
    cols.push(Box::new(|| {
        floats(&|r| r.lifespan_months.map(|l| r.purchases as f64 / l as f64))
    }));
    cols.push(Box::new(|| floats(&|r| Some(gross_profit(r)))));
    cols.push(Box::new(|| ints(&|r| r.days_since_last)));
    cols.push(Box::new(|| {
        arc(StringArray::from(
            rows.iter()
                .map(|r| r.active.map(|a| if a { "active" } else { "churned" }))
                .collect::<Vec<_>>(),
        ))
    }));
    cols.push(Box::new(|| {
        ts(rows.iter().map(|r| r.churned_at_utc).collect())
    }));
    cols.push(Box::new(|| ints(&|r| r.frequency)));
    cols.push(Box::new(|| ints(&|r| r.recency)));
    cols.push(Box::new(|| ints(&|r| r.t)));
    cols.push(Box::new(|| {
        floats(&|r| r.monetary.map(|m| m / ctx.money_scale))
    }));
    for k in 0..3 {
        cols.push(Box::new(move || ints(&|r| r.rfm.map(|s| s[k] as i64))));
    }
    cols.push(Box::new(|| {
        arc(StringArray::from(
            rows.iter().map(|r| r.rfm_segment).collect::<Vec<_>>(),
        ))
    }));
    let cols: Vec<ArrayRef> = cols.par_iter().map(|f| f()).collect();
    RecordBatch::try_new(
        schema::arrow_schema(schema::CUSTOMERS, &ctx.dim_names),
        cols,
    )
    .expect("customers columns match the documented schema")
}
