//! Row accounting and data checks per as_of date: which lines, rejects and input rows count as
//! of each date (one pass over the lines for every date of a backfill), and the checks a date
//! must pass before anything is published (exit 3 otherwise).

use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDate;
use tracing::warn;

use super::plan::memory_limit;
use crate::config::Validated;
use crate::source::{self, FileStats, Ingested, Reject};
use crate::{Error, Result};

/// Row accounting of one as_of date, derived from the lines and rejects read up to the last date.
pub(super) struct DateView {
    pub(super) files: Vec<FileStats>,
    pub(super) rows_read: u64,
    pub(super) rows_used: u64,
    pub(super) rows_rejected: u64,
    pub(super) rows_after_as_of: u64,
    pub(super) rejects_by_reason: BTreeMap<String, u64>,
    pub(super) rejects: Vec<Reject>,
    pub(super) reject_ratio: f64,
    /// Local time of the earliest and the newest line used as of this date.
    pub(super) earliest: Option<i64>,
    pub(super) newest: Option<i64>,
}

/// Row accounting of every date (cutoffs ascending) in one pass over the lines: each line is
/// counted at the first date whose cutoff is after it, then counts accumulate over the dates.
pub(super) fn date_views(
    ing: &Ingested,
    spill: Option<&source::spill::Spill>,
    cutoffs: &[i64],
) -> Vec<DateView> {
    let n_files = ing.stats.files.len();
    // used[file][k]: lines of `file` first seen at date k (counted as they were spilled, when
    // they were: the spill was given the same cutoffs).
    let mut used = vec![vec![0u64; cutoffs.len()]; n_files];
    let mut newest = vec![None; cutoffs.len()];
    // Every line kept is before the last cutoff, and the earliest is before any cutoff a
    // line is before: one earliest serves every date that has lines.
    let earliest = match spill {
        Some(spill) => {
            for (u, s) in used.iter_mut().zip(&spill.used) {
                u.copy_from_slice(s);
            }
            newest.clone_from(&spill.newest);
            spill.earliest
        }
        None => {
            ing.lines.count_by_date(cutoffs, &mut used, &mut newest);
            ing.lines.ts_local.iter().copied().min()
        }
    };
    for counts in &mut used {
        for k in 1..counts.len() {
            counts[k] += counts[k - 1];
        }
    }
    for k in 1..newest.len() {
        newest[k] = newest[k].max(newest[k - 1]);
    }
    cutoffs
        .iter()
        .enumerate()
        .map(|(k, &cutoff)| {
            let files: Vec<FileStats> = ing
                .stats
                .files
                .iter()
                .enumerate()
                .map(|(fi, f)| FileStats {
                    rows_used: used[fi][k],
                    rows_rejected: 0,
                    rows_after_as_of: 0,
                    ..f.clone()
                })
                .collect();
            let newest = newest[k];
            view_of(
                ing,
                cutoff,
                files,
                earliest.filter(|_| newest.is_some()),
                newest,
            )
        })
        .collect()
}

pub(super) fn view_of(
    ing: &Ingested,
    cutoff: i64,
    mut files: Vec<FileStats>,
    earliest: Option<i64>,
    newest: Option<i64>,
) -> DateView {
    let index: HashMap<String, usize> = files
        .iter()
        .enumerate()
        .map(|(i, f)| (f.url.clone(), i))
        .collect();
    let rejects: Vec<Reject> = ing
        .rejects
        .iter()
        .filter(|r| r.ts_local.is_none_or(|t| t < cutoff))
        .cloned()
        .collect();
    let mut rejects_by_reason = BTreeMap::new();
    for r in &rejects {
        *rejects_by_reason.entry(r.reason.clone()).or_insert(0) += 1;
        if let Some(&i) = index.get(&r.file) {
            files[i].rows_rejected += 1;
        }
    }
    for f in &mut files {
        f.rows_after_as_of = f.rows_read - f.rows_used - f.rows_rejected;
    }
    let sum = |g: fn(&FileStats) -> u64| files.iter().map(g).sum::<u64>();
    let (read, used, rejected) = (
        sum(|f| f.rows_read),
        sum(|f| f.rows_used),
        sum(|f| f.rows_rejected),
    );
    let in_window = used + rejected;
    DateView {
        rows_read: read,
        rows_used: used,
        rows_rejected: rejected,
        rows_after_as_of: read - used - rejected,
        reject_ratio: if in_window == 0 {
            0.0
        } else {
            rejected as f64 / in_window as f64
        },
        files,
        rejects_by_reason,
        rejects,
        earliest,
        newest,
    }
}

/// The data checks of one date (failures exit 3): money sums within range, the reject ratio,
/// something to compute, input not stale, and work bounded by memory (a far-future as_of
/// would otherwise grow the cohort triangle past any memory).
pub(super) fn check(cfg: &Validated, ing: &Ingested, as_of: NaiveDate, v: &DateView) -> Result<()> {
    if let Some((file, row)) = &ing.money_overflow_at {
        return Err(Error::Quality(source::quality::money_overflow(file, *row)));
    }
    let view = source::quality::View {
        rows_read: v.rows_read,
        rows_used: v.rows_used,
        rows_rejected: v.rows_rejected,
        rows_after_as_of: v.rows_after_as_of,
        rejects_by_reason: &v.rejects_by_reason,
        first_reject: v.rejects.first(),
        earliest: v.earliest,
        newest: v.newest,
    };
    let (earliest, newest) = source::quality::check(cfg, as_of, &view).map_err(Error::Quality)?;
    let newest_day = crate::time::local_micros_to_date(newest);
    let stale_days = (as_of - newest_day).num_days();
    let period = cfg.config.metrics.period;
    if stale_days > period.longest_days() as i64 {
        warn!(%as_of, newest_transaction = %newest_day, days = stale_days, "as_of is more than one period after the newest transaction: the last periods show no activity, as if customers had left.");
    }
    // The cohort triangle: every (segment slot, cohort) holds one row per period from its
    // cohort to as_of, computed in each parallel piece of the fold (threads + 1 at most, plus
    // the merged one), about 64 bytes per row and copy. Cohorts lie between the earliest and
    // the newest line's periods.
    let first = period.index(crate::time::local_micros_to_date(earliest));
    let periods = (period.index(as_of) - first + 1).max(1) as u128;
    let cohorts = (period.index(newest_day) - first + 1).clamp(1, periods as i64) as u128;
    let slots = 1 + ing.segments.iter().map(|d| d.len() as u128).sum::<u128>();
    let rows = slots * (cohorts * periods - cohorts * (cohorts - 1) / 2);
    let copies = rayon::current_num_threads() as u128 + 2;
    let bytes = rows * 64 * copies;
    let budget = memory_limit(cfg) as u128 / 2;
    if bytes > budget {
        return Err(Error::Quality(format!(
            "as_of {as_of} is {stale_days} days after the newest transaction ({newest_day}): the cohorts table would hold up to {rows} rows ({} {period} periods × {slots} segments), about {} MiB to compute, more than half of the memory limit ({} MiB, engine.memory_limit_mib); check --as-of",
            periods,
            bytes >> 20,
            memory_limit(cfg) >> 20
        )));
    }
    Ok(())
}
