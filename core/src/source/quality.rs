//! The data checks a date must pass before anything is published (the CLI's exit 3): money sums
//! within 64 bits, the reject ratio, something to compute, input not stale. The CLI and the
//! library API word them the same.

use std::collections::BTreeMap;

use chrono::NaiveDate;

use super::{Reject, MONEY_ABS_LIMIT};
use crate::config::Validated;
use crate::time::local_micros_to_date;

/// The row accounting of one date, as the checks read it.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    pub rows_read: u64,
    pub rows_used: u64,
    pub rows_rejected: u64,
    pub rows_after_as_of: u64,
    pub rejects_by_reason: &'a BTreeMap<String, u64>,
    /// The first rejected row (in file and row order).
    pub first_reject: Option<&'a Reject>,
    /// Local time of the earliest and the newest line used as of the date.
    pub earliest: Option<i64>,
    pub newest: Option<i64>,
}

/// Rejected rows over the rows on or before as_of (0 when there are none).
pub fn reject_ratio(v: &View) -> f64 {
    let in_window = v.rows_used + v.rows_rejected;
    if in_window == 0 {
        0.0
    } else {
        v.rows_rejected as f64 / in_window as f64
    }
}

/// The message of money sums beyond 64 bits, reached at `row` of `file`.
pub fn money_overflow(file: &str, row: u64) -> String {
    format!(
        "input file {file}: row {row}: the absolute amounts and costs of the rows up to it add up to more than {MONEY_ABS_LIMIT} minor units, beyond what money sums can hold exactly; check the amounts and input.amount_decimals"
    )
}

/// Checks the reject ratio, that there are lines to compute and that the newest is recent
/// enough. Returns the (earliest, newest) local times of the lines, or the failed check's
/// message.
pub fn check(cfg: &Validated, as_of: NaiveDate, v: &View) -> Result<(i64, i64), String> {
    let ratio = reject_ratio(v);
    if ratio > cfg.config.input.max_reject_ratio {
        let mut reasons: Vec<(&String, &u64)> = v.rejects_by_reason.iter().collect();
        reasons.sort_by(|a, b| b.1.cmp(a.1));
        let top: Vec<String> = reasons
            .iter()
            .take(3)
            .map(|(r, n)| format!("{r} ×{n}"))
            .collect();
        let first = v
            .first_reject
            .map(|r| format!("; first: {} row {} ({})", r.file, r.row, r.reason))
            .unwrap_or_default();
        return Err(format!(
            "{} of {} rows on or before {as_of} rejected ({:.2}%), above input.max_reject_ratio = {}; reasons: {}{first}",
            v.rows_rejected,
            v.rows_used + v.rows_rejected,
            ratio * 100.0,
            cfg.config.input.max_reject_ratio,
            top.join(", ")
        ));
    }
    let (Some(earliest), Some(newest)) = (v.earliest, v.newest) else {
        return Err(format!(
            "no usable transactions on or before as_of {as_of} ({} rows read, {} after as_of, {} rejected); check --as-of and the input paths",
            v.rows_read, v.rows_after_as_of, v.rows_rejected
        ));
    };
    let newest_day = local_micros_to_date(newest);
    let stale_days = (as_of - newest_day).num_days();
    let max_stale = cfg.config.input.max_staleness_days;
    if max_stale > 0 && stale_days > max_stale as i64 {
        return Err(format!(
            "stale input: the newest transaction on or before as_of {as_of} is from {newest_day}, {stale_days} days earlier, more than input.max_staleness_days = {max_stale}; check that the export is current"
        ));
    }
    Ok((earliest, newest))
}
