//! A date's tables through the partitioned core (`crate::compute`): the run's one in-memory
//! partition or its spilled ones, the contexts of the dates, and the customers table (one batch,
//! or one file per spilled partition).

use std::time::Instant;

use chrono::{Duration, NaiveDate, Utc};
use tracing::info;

use super::accounting::DateView;
use super::plan::memory_limit;
use super::{publish_options, Prepared, TableSet, Timings};
use crate::config::Validated;
use crate::metrics::{self, Ctx};
use crate::schema::Table;
use crate::time::date_to_local_micros;
use crate::{compute, orders, sink, source, Result};

/// The tables of one date, computed and not yet published.
pub(super) struct Computed {
    pub(super) as_of: NaiveDate,
    pub(super) view: DateView,
    pub(super) tables: metrics::Tables,
    /// The tables to publish.
    pub(super) selected: TableSet,
    /// The customers table as files already written (a spilled run), instead of `tables`'.
    pub(super) customer_files: Option<Vec<sink::PartFile>>,
    pub(super) timings: Timings,
    pub(super) started: chrono::DateTime<Utc>,
    pub(super) t0: Instant,
}

/// The customer partitions of a spilled run: each is read back from disk and built into orders
/// (for the second pass, again), the next one read while the current one is folded.
pub(super) struct SpilledParts<'a> {
    spill: &'a source::spill::Spill,
    /// Customers per partition (at most).
    n_local: usize,
    n_dims: usize,
    seg_rank: Vec<Vec<u32>>,
}

impl compute::Partitions for SpilledParts<'_> {
    type Error = crate::Error;

    fn count(&self) -> usize {
        self.spill.partitions()
    }

    fn each(
        &self,
        cutoffs: &[i64],
        f: &mut compute::EachPartition<'_, Self::Error>,
    ) -> Result<(), Self::Error> {
        let n = self.count();
        crate::cancel::check()?;
        let read = |p: usize| self.spill.read(p).map_err(source::SourceError::Spill);
        let mut next = Some(read(0)?);
        for p in 0..n {
            let lines = next.take().unwrap_or_default();
            let (done, ahead) = rayon::join(
                || {
                    // Lines after the batch's last date (a backfill's earlier batches) are
                    // not even grouped.
                    let built = orders::build_until(
                        &lines,
                        self.n_local,
                        self.n_dims,
                        &self.seg_rank,
                        cutoffs,
                    );
                    drop(lines);
                    f(p, &built)
                },
                || (p + 1 < n).then(|| read(p + 1)),
            );
            done?;
            crate::cancel::check()?;
            next = ahead.transpose()?;
        }
        Ok(())
    }
}

/// Computes every table of one or more dates (ascending) through the partitioned core (see
/// `compute::compute_dates`): one in-memory partition, or the spilled ones. With more than
/// one partition, the customers table is written as one file per partition while computing.
/// Each date's timings carry the whole batch's metrics time.
pub(super) fn compute_dates(
    cfg: &Validated,
    prep: &Prepared,
    dates: Vec<(NaiveDate, DateView)>,
    run_id: &str,
    selected: TableSet,
) -> Result<Vec<Computed>> {
    let ing = &prep.ingested;
    let started = Utc::now();
    let t0 = Instant::now();
    let mut timings = prep.timings.clone();
    let spilled = prep.spill.as_ref().map(|spill| SpilledParts {
        spill,
        n_local: ing.customers.len().div_ceil(spill.partitions()),
        n_dims: ing.segments.len(),
        seg_rank: ing.segment_ranks(),
    });
    let in_memory = compute::InMemory::new(&prep.orders);
    let parts: &dyn compute::Partitions<Error = crate::Error> = match &spilled {
        Some(s) => s,
        None => &in_memory,
    };
    // An order's time is its earliest line's, so the earliest order is the earliest line.
    let earliest = match &prep.spill {
        Some(spill) => spill.earliest,
        None => prep.orders.earliest,
    };
    let cutoffs: Vec<i64> = dates
        .iter()
        .map(|(d, _)| date_to_local_micros(*d + Duration::days(1)))
        .collect();
    let ctxs: Vec<Ctx> = dates
        .iter()
        .zip(&cutoffs)
        .map(|((d, _), &cutoff)| {
            let mut ctx = Ctx::with_earliest(cfg, *d, ing, earliest.filter(|&t| t < cutoff));
            ctx.spend = prep.spend.as_ref().map(|s| s.by_period(&ctx.frame));
            ctx
        })
        .collect();
    let as_of_s: Vec<String> = dates
        .iter()
        .map(|(d, _)| d.format("%Y-%m-%d").to_string())
        .collect();
    let count = parts.count();
    let mut batches: Vec<Option<arrow::array::RecordBatch>> = vec![None; dates.len()];
    let mut files: Vec<Vec<sink::PartFile>> = vec![Vec::new(); dates.len()];
    let mut customers_of = |d: usize, p: usize, rows: Vec<&metrics::CustomerRow>| -> Result<()> {
        if count == 1 {
            batches[d] = Some(metrics::customers::table(rows, ing, &ctxs[d]));
            return Ok(());
        }
        if rows.is_empty() {
            return Ok(());
        }
        let opts = publish_options(cfg, &as_of_s[d], run_id);
        let batch = metrics::customers::table(rows, ing, &ctxs[d]);
        let spill = prep.spill.as_ref().expect("partitions come from a spill");
        let path = spill
            .dir()
            .join(format!("customers-{}-{p:05}.parquet", as_of_s[d]));
        let bytes = sink::parquet::write(
            &path,
            &batch,
            &sink::parquet::FileMeta::for_table(Table::Customers, &opts),
        )?;
        files[d].push(sink::PartFile {
            path,
            rows: batch.num_rows() as u64,
            bytes,
        });
        Ok(())
    };
    let merged = timings.time("metrics", || {
        compute::compute_dates(
            parts,
            &ctxs,
            &cutoffs,
            selected.has(Table::Customers),
            &mut customers_of,
        )
    })?;
    if count > 1 {
        info!(
            partitions = count,
            dates = dates.len(),
            "Computed the partitions."
        );
    }
    Ok(dates
        .into_iter()
        .zip(merged)
        .zip(ctxs.iter().zip(batches.into_iter().zip(files)))
        .map(|(((as_of, view), m), (ctx, (batch, files)))| {
            let customers =
                batch.unwrap_or_else(|| metrics::customers::table(Vec::new(), ing, ctx));
            // The fits are part of the metrics stage; their share is reported as `predict`.
            let mut timings = timings.clone();
            if let Some(ms) = m.fit_ms {
                timings.0.push(("predict".into(), ms));
            }
            Computed {
                as_of,
                tables: m.tables(ctx, &view.rejects, customers),
                view,
                selected,
                customer_files: (count > 1).then_some(files),
                timings,
                started,
                t0,
            }
        })
        .collect())
}

/// Dates of a spilled backfill computed together: as many as keep their RFM measures within a
/// quarter of the memory limit (a partition is sized to another quarter).
pub(super) fn spilled_batch(cfg: &Validated, n_customers: usize) -> usize {
    let per_date = (n_customers as u64 * compute::KEY_BYTES_PER_CUSTOMER_AND_DATE).max(1);
    ((memory_limit(cfg) / 4 / per_date) as usize).max(1)
}
