//! The tables of one or more as_of dates when the lines were spilled to disk (input larger than
//! memory): the customer partitions are processed one after another, each read back, built into
//! orders and folded on its own (as of every date), so memory holds one partition (two while the
//! next is read ahead).
//!
//! Every table but customers is a sum over customers, so partitions add up: the retention and
//! cohort accumulators merge, the ltv group sums add. RFM scores, though, rank each customer
//! within the whole base, and rfm_segment is an ltv dimension. So there are two passes: the
//! first folds every partition for the three RFM measures only, the second folds again, scores
//! each customer against the whole base, adds the partition to the sums and writes its
//! customers rows as one Parquet file (sorted by customer_id within the file). A backfill runs
//! both passes once for a batch of dates, not once per date.

use chrono::{Duration, NaiveDate};
use tracing::info;

use crate::config::Validated;
use crate::metrics::{self, cohorts, customers, ltv, rejects, retention, rfm, Acc, Ctx, Tables};
use crate::orders;
use crate::sink::parquet::{write, FileMeta};
use crate::sink::{PartFile, PublishOptions};
use crate::source::spend::Spend;
use crate::source::spill::Spill;
use crate::source::{Ingested, Lines, Reject, SourceError};
use crate::time::date_to_local_micros;
use crate::Result;

/// The tables of one date, with the customers table as files already written.
pub struct Output {
    /// Every table; `customers` is empty (its rows are in `parts`).
    pub tables: Tables,
    pub parts: Vec<PartFile>,
}

/// One date of a `compute_dates` call.
pub struct DateJob<'a> {
    pub as_of: NaiveDate,
    /// Rows rejected up to this date.
    pub rejected: &'a [Reject],
    /// How this date's files are written (its as_of and the run id name its customers files).
    pub opts: PublishOptions<'a>,
}

/// Bytes the first pass of `compute_dates` holds per customer and date: the three RFM measures.
pub const KEY_BYTES_PER_CUSTOMER_AND_DATE: u64 = 24;

/// Computes the tables of several dates (ascending) in two passes over the partitions, however
/// many dates: each partition is read and built into orders once per pass, and every date is
/// folded from those orders as of its own cutoff. The first pass holds every date's RFM
/// measures (`KEY_BYTES_PER_CUSTOMER_AND_DATE` per customer and date), so callers size the
/// batch of dates to their memory.
pub fn compute_dates(
    cfg: &Validated,
    ing: &Ingested,
    spill: &Spill,
    spend: Option<&Spend>,
    jobs: &[DateJob<'_>],
    with_customers: bool,
) -> Result<Vec<Output>> {
    let cutoffs: Vec<i64> = jobs
        .iter()
        .map(|j| date_to_local_micros(j.as_of + Duration::days(1)))
        .collect();
    debug_assert!(cutoffs.is_sorted());
    let ctxs: Vec<Ctx> = jobs
        .iter()
        .zip(&cutoffs)
        .map(|(j, &cutoff)| {
            // An order's time is its earliest line's, so the earliest order is the earliest
            // line.
            let earliest = spill.earliest.filter(|&t| t < cutoff);
            let mut ctx = Ctx::with_earliest(cfg, j.as_of, ing, earliest);
            ctx.spend = spend.map(|s| s.by_period(&ctx.frame));
            ctx
        })
        .collect();
    let n = spill.partitions();
    let n_local = ing.customers.len().div_ceil(n);
    let n_dims = ing.segments.len();
    // Orders of partition `p` for every date's cutoff (lines after the batch's last date, in a
    // backfill's earlier batches, are not even grouped).
    let build = |lines: Lines| -> orders::Orders {
        let built = orders::build_until(&lines, n_local, n_dims, &cutoffs);
        drop(lines);
        built
    };
    // Fold of one date (rows in the fold's parts), customers numbered back into the whole base.
    let fold = |p: usize, built: &orders::Orders, d: usize| {
        let (mut parts, acc) = metrics::fold_parts(&built.at(cutoffs[d]), &ctxs[d]);
        for r in parts.iter_mut().flatten() {
            r.cust = r.cust * n as u32 + p as u32;
        }
        (parts, acc)
    };

    let mut keys: Vec<rfm::Keys> = jobs.iter().map(|_| rfm::Keys::default()).collect();
    each_partition(spill, |p, lines| {
        let built = build(lines);
        for (d, k) in keys.iter_mut().enumerate() {
            for part in &fold(p, &built, d).0 {
                k.add(part);
            }
        }
        Ok(())
    })?;
    let scorers: Vec<rfm::Scorer> = keys.into_iter().map(rfm::Keys::scorer).collect();

    struct Sums {
        acc: Acc,
        sums: ltv::Sums,
        parts: Vec<PartFile>,
        n_customers: u64,
    }
    let mut per_date: Vec<Sums> = ctxs
        .iter()
        .map(|ctx| Sums {
            acc: Acc::new(ctx),
            sums: ltv::Sums::new(ctx),
            parts: Vec::new(),
            n_customers: 0,
        })
        .collect();
    each_partition(spill, |p, lines| {
        let built = build(lines);
        for (d, mine) in per_date.iter_mut().enumerate() {
            let ctx = &ctxs[d];
            let (mut parts, a) = fold(p, &built, d);
            mine.acc.merge(a);
            mine.sums
                .merge(&metrics::score_and_sum(&mut parts, &scorers[d], ctx));
            let rows: Vec<&metrics::CustomerRow> = parts.iter().flatten().collect();
            mine.n_customers += rows.len() as u64;
            if rows.is_empty() || !with_customers {
                continue;
            }
            let opts = &jobs[d].opts;
            let batch = customers::table(rows, ing, ctx);
            let path = spill
                .dir()
                .join(format!("customers-{}-{p:05}.parquet", opts.as_of));
            let bytes = write(&path, &batch, &FileMeta::for_table("customers", opts))?;
            mine.parts.push(PartFile {
                path,
                rows: batch.num_rows() as u64,
                bytes,
            });
        }
        Ok(())
    })?;
    info!(
        partitions = n,
        dates = jobs.len(),
        "Computed the partitions."
    );
    Ok(per_date
        .into_iter()
        .zip(jobs.iter().zip(&ctxs))
        .map(|(mine, (job, ctx))| Output {
            tables: Tables {
                customers: customers::table(Vec::new(), ing, ctx),
                retention: retention::table(&mine.acc, ctx),
                cohorts: cohorts::table(&mine.acc, ctx),
                ltv: ltv::table_of(&mine.sums.named(ctx), ctx),
                rejects: rejects::table(job.rejected),
                orders: mine.acc.orders as u64,
                n_customers: mine.n_customers,
            },
            parts: mine.parts,
        })
        .collect())
}

/// Calls `f` with every partition's lines in order, reading the next partition while `f` works.
fn each_partition(
    spill: &Spill,
    mut f: impl FnMut(usize, Lines) -> Result<()> + Send,
) -> Result<()> {
    let n = spill.partitions();
    let mut next = Some(spill.read(0).map_err(SourceError::Spill)?);
    for p in 0..n {
        let lines = next.take().unwrap_or_default();
        let (done, read) = rayon::join(|| f(p, lines), || (p + 1 < n).then(|| spill.read(p + 1)));
        done?;
        next = read.transpose().map_err(SourceError::Spill)?;
    }
    Ok(())
}
