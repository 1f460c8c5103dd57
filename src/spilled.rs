//! The tables of one as_of date when the lines were spilled to disk (input larger than memory):
//! the customer partitions are processed one after another, each read back, built into orders
//! and folded on its own, so memory holds one partition (two while the next is read ahead).
//!
//! Every table but customers is a sum over customers, so partitions add up: the retention and
//! cohort accumulators merge, the ltv group sums add. RFM scores, though, rank each customer
//! within the whole base, and rfm_segment is an ltv dimension. So there are two passes: the
//! first folds every partition for the three RFM measures only, the second folds again, scores
//! each customer against the whole base, adds the partition to the sums and writes its
//! customers rows as one Parquet file (sorted by customer_id within the file).

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

/// Computes every table of `as_of` from the spilled lines; the customers files go to the
/// spill folder, named for `opts.run_id` (none unless `with_customers`).
#[allow(clippy::too_many_arguments)]
pub fn compute(
    cfg: &Validated,
    ing: &Ingested,
    spill: &Spill,
    spend: Option<&Spend>,
    as_of: NaiveDate,
    rejected: &[Reject],
    opts: &PublishOptions<'_>,
    with_customers: bool,
) -> Result<Output> {
    let cutoff = date_to_local_micros(as_of + Duration::days(1));
    // An order's time is its earliest line's, so the earliest order is the earliest line.
    let earliest = spill.earliest.filter(|&t| t < cutoff);
    let mut ctx = Ctx::with_earliest(cfg, as_of, ing, earliest);
    ctx.spend = spend.map(|s| s.by_period(&ctx.frame));
    let ctx = &ctx;
    let n = spill.partitions();
    let n_local = ing.customers.len().div_ceil(n);
    let n_dims = ing.segments.len();
    // Orders and fold of partition `p`, customers numbered back into the whole base.
    let fold = |p: usize, lines: Lines| -> (Vec<metrics::CustomerRow>, Acc) {
        let built = orders::build_until(&lines, n_local, n_dims, cutoff);
        drop(lines);
        let (mut rows, acc) = metrics::fold_all(&built.at(cutoff), ctx);
        for r in &mut rows {
            r.cust = r.cust * n as u32 + p as u32;
        }
        (rows, acc)
    };

    let mut keys = rfm::Keys::default();
    each_partition(spill, |p, lines| {
        keys.add(&fold(p, lines).0);
        Ok(())
    })?;
    let scorer = keys.scorer();

    let mut acc = Acc::new(ctx);
    let mut sums = ltv::Sums::new(ctx);
    let mut parts = Vec::new();
    let mut n_customers = 0;
    each_partition(spill, |p, lines| {
        let (mut rows, a) = fold(p, lines);
        acc.merge(a);
        scorer.score(&mut rows);
        sums.add(&rows, ctx);
        n_customers += rows.len() as u64;
        if rows.is_empty() || !with_customers {
            return Ok(());
        }
        let batch = customers::table(rows.iter().collect(), ing, ctx);
        let path = spill
            .dir()
            .join(format!("customers-{}-{p:05}.parquet", opts.as_of));
        let bytes = write(&path, &batch, &FileMeta::for_table("customers", opts))?;
        parts.push(PartFile {
            path,
            rows: batch.num_rows() as u64,
            bytes,
        });
        Ok(())
    })?;
    info!(
        partitions = n,
        files = parts.len(),
        customers = n_customers,
        "Computed the partitions."
    );
    Ok(Output {
        tables: Tables {
            customers: customers::table(Vec::new(), ing, ctx),
            retention: retention::table(&acc, ctx),
            cohorts: cohorts::table(&acc, ctx),
            ltv: ltv::table_of(&sums.named(ctx), ctx),
            rejects: rejects::table(rejected),
            orders: acc.orders as u64,
            n_customers,
        },
        parts,
    })
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
