//! Backfills: one partition per as_of date, reading the inputs and building the orders once.
//! Held in memory, the next dates' tables are computed while the previous ones are published;
//! spilled, the dates of a batch are computed together in two passes over the partitions.

use chrono::{Datelike, Duration, NaiveDate};
use tracing::{info, info_span};

use super::accounting::{check, date_views, DateView};
use super::plan::prepare;
use super::publish::publish_computed;
use super::tables::{compute_dates, spilled_batch, Computed};
use super::{build_orders, new_run_id, Prepared, RunOptions, RunSummary};
use crate::config::Validated;
use crate::progress::Progress;
use crate::schema::Table;
use crate::sink::lock;
use crate::time::{date_to_local_micros, Period};
use crate::{Error, Result};

/// The as_of dates of a backfill: every end of a `every` period within [from, to].
pub(crate) fn backfill_dates(
    from: NaiveDate,
    to: NaiveDate,
    every: Option<Period>,
) -> Vec<NaiveDate> {
    let mut out = Vec::new();
    let mut d = from;
    while d <= to {
        let next = d + Duration::days(1);
        let is_end = match every {
            None => true,
            Some(Period::Week) => d.weekday() == chrono::Weekday::Sun,
            Some(p) => p.index(next) != p.index(d),
        };
        if is_end {
            out.push(d);
        }
        d = next;
    }
    out
}

/// Publishes one partition per date, reading the inputs once. Every date's data gates are
/// checked before anything is published.
pub(crate) fn backfill(
    cfg: &Validated,
    dates: &[NaiveDate],
    opts: &RunOptions,
) -> Result<Vec<RunSummary>> {
    let mut dates = dates.to_vec();
    dates.sort_unstable();
    dates.dedup();
    let dates = dates.as_slice();
    let Some(&last) = dates.last() else {
        return Err(Error::Quality(
            "the backfill range holds no as_of date (check --from, --to and --every)".into(),
        ));
    };
    let run_id = new_run_id();
    let span = info_span!("backfill", %run_id, dates = dates.len());
    let _g = span.enter();
    info!(first = %dates[0], last = %last, "Starting backfill.");
    let cutoffs: Vec<i64> = dates
        .iter()
        .map(|d| date_to_local_micros(*d + Duration::days(1)))
        .collect();
    let mut prep = prepare(cfg, &cutoffs, opts.progress)?;
    let views = date_views(&prep.ingested, prep.spill.as_ref(), &cutoffs);
    check_all(cfg, &prep, dates, &views)?;
    build_orders(&mut prep, &cutoffs);
    crate::cancel::check()?;
    let lock = lock::acquire(&prep.output, &run_id, cfg, opts.force_unlock)?;
    let bar = Progress::dates(opts.progress, dates.len() as u64);
    let publish = |c: Computed, span: tracing::Span| -> Result<RunSummary> {
        let d = c.as_of;
        let summary =
            span.in_scope(|| publish_computed(cfg, &prep, &lock, c, "backfill", &run_id))?;
        bar.advance(1);
        bar.message(|| d.to_string());
        Ok(summary)
    };
    let work = dates.iter().copied().zip(views);
    let out = if prep.spill.is_some() {
        spilled(cfg, &prep, work, &run_id, opts, &publish)?
    } else {
        pipelined(cfg, &prep, work, &run_id, opts, &publish)?
    };
    bar.finish();
    Ok(out)
}

/// Checks every date's data gates; one error listing every date that fails.
fn check_all(
    cfg: &Validated,
    prep: &Prepared,
    dates: &[NaiveDate],
    views: &[DateView],
) -> Result<()> {
    let problems: Vec<String> = dates
        .iter()
        .zip(views)
        .filter_map(|(d, v)| {
            check(cfg, &prep.ingested, *d, v)
                .err()
                .map(|e| e.to_string())
        })
        .collect();
    if problems.is_empty() {
        return Ok(());
    }
    Err(Error::Quality(format!(
        "backfill not started, {} of {} dates fail the data checks: {}",
        problems.len(),
        dates.len(),
        problems.join(" | ")
    )))
}

/// Publishes a computed date in its span.
type Publish<'a> = dyn Fn(Computed, tracing::Span) -> Result<RunSummary> + Sync + 'a;

/// Spilled lines: the dates of a batch are computed together, in two passes over the
/// partitions for the whole batch instead of two per date.
fn spilled(
    cfg: &Validated,
    prep: &Prepared,
    mut work: impl Iterator<Item = (NaiveDate, DateView)>,
    run_id: &str,
    opts: &RunOptions,
    publish: &Publish,
) -> Result<Vec<RunSummary>> {
    let n_dates = work.size_hint().0.max(1);
    let batch = spilled_batch(cfg, prep.ingested.customers.len()).min(n_dates);
    info!(
        dates_per_pass = batch,
        "Spilled backfill: computing dates together."
    );
    let mut out = Vec::new();
    loop {
        let chunk: Vec<(NaiveDate, DateView)> = work.by_ref().take(batch).collect();
        if chunk.is_empty() {
            return Ok(out);
        }
        for c in compute_dates(cfg, prep, chunk, run_id, opts.tables)? {
            let span = info_span!("as_of", as_of = %c.as_of);
            out.push(publish(c, span)?);
        }
    }
}

/// Lines held in memory: a two-stage pipeline, the next dates' tables computed while the
/// previous ones are written and published.
fn pipelined(
    cfg: &Validated,
    prep: &Prepared,
    work: impl Iterator<Item = (NaiveDate, DateView)>,
    run_id: &str,
    opts: &RunOptions,
    publish: &Publish,
) -> Result<Vec<RunSummary>> {
    // Fsyncs and renames leave the CPUs idle otherwise. Without the customers table, two dates are computed at once: each date's fold is parallel, but its
    // merges, RFM keys and small tables are not, and the other date fills those gaps (36 month
    // ends of the 10M-row benchmark: 14.3/13.5 s → 13.1/12.8 s). With it, encoding the
    // customers table already keeps the CPUs busy (no gain measured) and two dates' rows and
    // tables would be held at once, so one date at a time. Each stage runs in its date's span,
    // so log lines carry run_id and as_of on whichever thread runs them.
    let at_once = if !opts.tables.has(Table::Customers) {
        2
    } else {
        1
    };
    let mut out = Vec::new();
    let mut pending: Vec<(tracing::Span, Computed)> = Vec::new();
    let compute = |(d, view, span): (NaiveDate, DateView, tracing::Span)| {
        let computed = span.in_scope(|| {
            compute_dates(cfg, prep, vec![(d, view)], run_id, opts.tables).map(|mut c| c.remove(0))
        });
        computed.map(|c| (span, c))
    };
    // Spans are made here, inside the backfill's span, which they then carry to other threads.
    let mut work = work.map(|(d, view)| (d, view, info_span!("as_of", as_of = %d)));
    loop {
        let batch: Vec<_> = work.by_ref().take(at_once).collect();
        if batch.is_empty() {
            break;
        }
        let (computed, published) = rayon::join(
            || {
                let mut batch = batch.into_iter();
                let first = batch.next();
                let second = batch.next();
                let (a, b) = rayon::join(|| first.map(compute), || second.map(compute));
                [a, b].into_iter().flatten().collect::<Vec<_>>()
            },
            || {
                // Publishes in date order; stops at the first failure.
                std::mem::take(&mut pending)
                    .into_iter()
                    .map(|(span, c)| publish(c, span))
                    .collect::<Result<Vec<_>>>()
            },
        );
        out.extend(published?);
        pending = computed.into_iter().collect::<Result<Vec<_>>>()?;
    }
    for (span, c) in pending {
        out.push(publish(c, span)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn backfill_dates_are_period_ends() {
        assert_eq!(
            backfill_dates(d(2024, 1, 15), d(2024, 4, 30), Some(Period::Month)),
            vec![
                d(2024, 1, 31),
                d(2024, 2, 29),
                d(2024, 3, 31),
                d(2024, 4, 30)
            ]
        );
        assert_eq!(
            backfill_dates(d(2024, 1, 1), d(2024, 12, 31), Some(Period::Quarter)),
            vec![
                d(2024, 3, 31),
                d(2024, 6, 30),
                d(2024, 9, 30),
                d(2024, 12, 31)
            ]
        );
        // ISO weeks end on Sunday: 2024-01-07 and 2024-01-14.
        assert_eq!(
            backfill_dates(d(2024, 1, 1), d(2024, 1, 15), Some(Period::Week)),
            vec![d(2024, 1, 7), d(2024, 1, 14)]
        );
        assert_eq!(backfill_dates(d(2024, 1, 1), d(2024, 1, 3), None).len(), 3);
        assert!(backfill_dates(d(2024, 1, 2), d(2024, 1, 30), Some(Period::Month)).is_empty());
    }
}
