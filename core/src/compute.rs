//! The one compute path of every run: customer partitions → per partition, the orders, then one
//! fold per as_of date → partials → merged → tables.
//!
//! A run held in memory is one partition; a spilled run is N partitions read back from disk; a
//! backfill folds every partition as of each of its dates. Every table but customers is a sum
//! over customers, so partials merge by adding integers (in any order, with the same result).
//! RFM scores are the exception: they rank a customer within the whole base, and rfm_segment
//! is a dimension of the ltv table. So there are two passes: the first folds every partition
//! and merges the three RFM measures of its customers into one scorer per date; the second
//! scores each partition's customers with it and adds them to the ltv sums. With one
//! partition the first pass's rows are kept for the second; with more, each partition is read
//! and folded again (memory holds one partition at a time, two while the next is read ahead).

use arrow::array::RecordBatch;
use rayon::prelude::*;

use crate::metrics::predictions::{self, Fits, GroupSummary};
use crate::metrics::{self, cohorts, ltv, rejects, retention, rfm, Acc, Ctx, CustomerRow};
use crate::orders::Orders;
use crate::source::Reject;

/// Receives each partition's number and orders (see [`Partitions::each`]).
pub type EachPartition<'a, E> = dyn FnMut(usize, &Orders) -> Result<(), E> + Send + 'a;

/// Customer partitions, each of which can be built into orders (again, for the second pass).
/// Building them may fail with the caller's `Error` (reading a spilled partition back).
pub trait Partitions: Sync {
    type Error;

    /// Number of partitions.
    fn count(&self) -> usize;

    /// Calls `f` with every partition's number and orders (built for `cutoffs`, ascending), in
    /// partition order. Customers are numbered within their partition: the customer at
    /// position `c` of partition `p` is customer `orders.id(c) × count + p` of the whole base.
    fn each(
        &self,
        cutoffs: &[i64],
        f: &mut EachPartition<'_, Self::Error>,
    ) -> Result<(), Self::Error>;
}

/// Every customer in one partition whose orders are already built. Never fails; `E` is the
/// error of the caller's customers sink.
pub struct InMemory<'a, E>(&'a Orders, std::marker::PhantomData<fn() -> E>);

impl<'a, E> InMemory<'a, E> {
    pub fn new(orders: &'a Orders) -> Self {
        InMemory(orders, std::marker::PhantomData)
    }
}

impl<E> Partitions for InMemory<'_, E> {
    type Error = E;

    fn count(&self) -> usize {
        1
    }

    fn each(
        &self,
        _cutoffs: &[i64],
        f: &mut EachPartition<'_, Self::Error>,
    ) -> Result<(), Self::Error> {
        f(0, self.0)
    }
}

/// What one partition contributes to one date's tables before RFM scoring: the retention and
/// cohort sums, its customers' RFM measures and (kept only when needed) its customer rows,
/// unscored, in the parallel fold's pieces.
pub struct Partial {
    pub acc: Acc,
    pub keys: rfm::Keys,
    /// The fit groups' summaries (per slot; empty when predictions are off).
    pub summaries: Vec<GroupSummary>,
    pub rows: Vec<Vec<CustomerRow>>,
}

/// Folds the customers of one partition as of `ctx`'s date (the orders viewed at `cutoff`),
/// numbering them back into the whole base (see [`Partitions::each`]).
pub fn fold(orders: &Orders, cutoff: i64, ctx: &Ctx, partition: usize, count: usize) -> Partial {
    let (mut rows, acc) = metrics::fold_parts(&orders.at(cutoff), ctx);
    if count > 1 {
        for r in rows.iter_mut().flatten() {
            r.cust = r.cust * count as u32 + partition as u32;
        }
    }
    let mut keys = rfm::Keys::with_capacity(rows.iter().map(Vec::len).sum());
    for part in &rows {
        keys.add(part);
    }
    let summaries = match ctx.predict {
        Some(_) => predictions::summarize(&rows, ctx),
        None => Vec::new(),
    };
    Partial {
        acc,
        keys,
        summaries,
        rows,
    }
}

/// One date's sums after the second pass: every table but customers follows from them.
pub struct Merged {
    pub acc: Acc,
    pub sums: ltv::Sums,
    pub n_customers: u64,
    /// The date's fits (None when predictions are off).
    pub fits: Option<Fits>,
    /// Milliseconds the fits took.
    pub fit_ms: Option<u64>,
}

impl Merged {
    fn new(ctx: &Ctx, fits: Option<(Fits, u64)>) -> Self {
        let (fits, fit_ms) = fits.unzip();
        Merged {
            acc: Acc::new(ctx),
            sums: ltv::Sums::new(ctx),
            n_customers: 0,
            fits,
            fit_ms,
        }
    }

    /// Adds a partition's partial, scoring its rows against the whole base's `scorer` and
    /// predicting them with the date's fits; the scored rows stay in `partial`.
    pub fn add(&mut self, partial: &mut Partial, scorer: &rfm::Scorer, ctx: &Ctx) {
        let acc = std::mem::replace(&mut partial.acc, Acc::new(ctx));
        self.acc.merge(acc);
        self.sums.merge(&metrics::score_and_sum(
            &mut partial.rows,
            scorer,
            self.fits.as_ref(),
            ctx,
        ));
        self.n_customers += partial.rows.iter().map(Vec::len).sum::<usize>() as u64;
    }

    /// The tables of the date; customers empty (its rows went to the caller partition by
    /// partition, see [`compute_dates`]).
    pub fn tables(self, ctx: &Ctx, rejected: &[Reject], customers: RecordBatch) -> metrics::Tables {
        metrics::Tables {
            customers,
            retention: retention::table(&self.acc, ctx),
            cohorts: cohorts::table(&self.acc, ctx),
            ltv: ltv::table_of(&self.sums.named(ctx), ctx),
            rejects: rejects::table(rejected),
            models: match (&self.fits, &ctx.predict) {
                (Some(f), Some(p)) => Some(predictions::models_table(f, ctx, &p.settings)),
                _ => None,
            },
            orders: self.acc.orders as u64,
            n_customers: self.n_customers,
        }
    }
}

/// Receives the scored customer rows of (date, partition).
pub type CustomersSink<'a, E> =
    dyn FnMut(usize, usize, Vec<&CustomerRow>) -> Result<(), E> + Send + 'a;

/// Computes the sums of every date (`ctxs[d]` as of `cutoffs[d]`, ascending) over every
/// partition, in two passes however many dates. `customers(d, p, rows)` receives each
/// partition's scored rows of each date (for the customers table); it is not called when
/// `with_customers` is false. The first pass holds every date's RFM measures
/// ([`KEY_BYTES_PER_CUSTOMER_AND_DATE`] per customer and date), so callers size the batch of
/// dates to their memory.
pub fn compute_dates<E>(
    parts: &dyn Partitions<Error = E>,
    ctxs: &[Ctx],
    cutoffs: &[i64],
    with_customers: bool,
    customers: &mut CustomersSink<'_, E>,
) -> Result<Vec<Merged>, E> {
    debug_assert!(cutoffs.is_sorted() && ctxs.len() == cutoffs.len());
    let count = parts.count();
    let mut keys: Vec<rfm::Keys> = ctxs.iter().map(|_| rfm::Keys::default()).collect();
    let mut summaries: Vec<Vec<GroupSummary>> = ctxs.iter().map(|_| Vec::new()).collect();
    // With one partition, its partials (rows included) wait for the scorer instead of being
    // folded again.
    let mut kept: Vec<Partial> = Vec::new();
    parts.each(cutoffs, &mut |p, orders| {
        for (d, k) in keys.iter_mut().enumerate() {
            let mut partial = fold(orders, cutoffs[d], &ctxs[d], p, count);
            k.merge(std::mem::take(&mut partial.keys));
            predictions::merge(&mut summaries[d], &std::mem::take(&mut partial.summaries));
            if count == 1 {
                kept.push(partial);
            }
        }
        Ok(())
    })?;
    let scorers: Vec<rfm::Scorer> = keys.into_iter().map(rfm::Keys::scorer).collect();

    // The fits of every date, from the whole base's summaries.
    // Dates fit in parallel (and each date's segments too); every fit is deterministic.
    let mut merged: Vec<Merged> = ctxs
        .par_iter()
        .zip(&summaries)
        .map(|(ctx, s)| {
            let fits = ctx.predict.as_ref().map(|p| {
                let started = std::time::Instant::now();
                let fits = Fits::new(s, p, ctx);
                let ms = started.elapsed().as_millis() as u64;
                tracing::info!(
                    groups = s.len(),
                    unique_triples = s.first().map_or(0, |g| g.fit.unique_triples()),
                    ms,
                    "Fitted the prediction models."
                );
                (fits, ms)
            });
            Merged::new(ctx, fits)
        })
        .collect();
    let mut second = |p: usize, d: usize, mut partial: Partial| -> Result<(), E> {
        merged[d].add(&mut partial, &scorers[d], &ctxs[d]);
        let rows: Vec<&CustomerRow> = partial.rows.iter().flatten().collect();
        if with_customers {
            customers(d, p, rows)?;
        }
        Ok(())
    };
    if count == 1 {
        for (d, partial) in kept.into_iter().enumerate() {
            second(0, d, partial)?;
        }
    } else {
        parts.each(cutoffs, &mut |p, orders| {
            for d in 0..ctxs.len() {
                second(p, d, fold(orders, cutoffs[d], &ctxs[d], p, count))?;
            }
            Ok(())
        })?;
    }
    Ok(merged)
}

/// Bytes the first pass of [`compute_dates`] holds per customer and date: the three RFM
/// measures.
pub const KEY_BYTES_PER_CUSTOMER_AND_DATE: u64 = 24;
