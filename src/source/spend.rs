//! Acquisition spend (SPEC §4, ltv: cac = spend / new customers): a small CSV with one row per
//! segment and period, read exactly like money in the transaction exports.

use std::path::Path;

use chrono::NaiveDate;
use polars::prelude::*;

use super::parse::parse_money;
use super::SourceError;

/// Spend in minor units keyed by (segment_by, segment, date within the period).
#[derive(Debug, Clone, Default)]
pub(crate) struct Spend {
    pub rows: Vec<(String, String, NaiveDate, i64)>,
}

pub(crate) use customer_value_core::source::SpendByPeriod;

const COLUMNS: [&str; 4] = ["segment_by", "segment", "period_start", "spend"];

/// Reads the spend CSV; every bad row is an error naming the file and row (spend is
/// configuration-like reference data: a silent gap would distort every cac).
pub(crate) fn read(path: &Path, decimals: u32) -> Result<Spend, SourceError> {
    let file = path.display().to_string();
    let err = |message: String| SourceError::Read {
        file: file.clone(),
        source: message.into(),
    };
    let df = LazyCsvReader::new(PlRefPath::new(file.clone()))
        .with_infer_schema_length(Some(0))
        .finish()
        .and_then(|lf| lf.collect())
        .map_err(|e| {
            err(e
                .to_string()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "))
        })?;
    let mut cols = Vec::new();
    for c in COLUMNS {
        let s = df
            .column(c)
            .map_err(|_| {
                err(format!(
                    "spend file needs the columns {}",
                    COLUMNS.join(", ")
                ))
            })?
            .as_materialized_series()
            .str()
            .map_err(|e| err(e.to_string()))?
            .clone();
        cols.push(s);
    }
    let mut out = Spend::default();
    // Bounded like the lines' money (see `source::MONEY_ABS_LIMIT`): no sum of spend can
    // overflow.
    let mut abs_total: u128 = 0;
    for i in 0..df.height() {
        let row = i + 1;
        let get = |c: usize| cols[c].get(i).map(str::trim).unwrap_or("");
        let date = NaiveDate::parse_from_str(get(2), "%Y-%m-%d").map_err(|_| {
            err(format!(
                "row {row}: period_start '{}' is not YYYY-MM-DD",
                get(2)
            ))
        })?;
        let money = parse_money(get(3), decimals)
            .map_err(|_| err(format!("row {row}: spend '{}' is not a number", get(3))))?;
        abs_total += money.unsigned_abs() as u128;
        if abs_total > super::MONEY_ABS_LIMIT {
            return Err(err(format!(
                "row {row}: the spend up to this row adds up to more than {} minor units",
                super::MONEY_ABS_LIMIT
            )));
        }
        if get(0).is_empty() || get(1).is_empty() {
            return Err(err(format!(
                "row {row}: segment_by and segment may not be empty"
            )));
        }
        out.rows
            .push((get(0).to_string(), get(1).to_string(), date, money));
    }
    Ok(out)
}

impl Spend {
    /// Sums spend per period of the frame; rows after as_of or before the first period are
    /// left out (a run as of D must not depend on later data).
    pub(crate) fn by_period(&self, frame: &crate::time::Frame) -> SpendByPeriod {
        let mut out = SpendByPeriod::default();
        for (by, seg, date, v) in &self.rows {
            let idx = frame.period.index(*date) - frame.first_index;
            if *date > frame.as_of || idx < 0 {
                continue;
            }
            *out.entry((by.clone(), seg.clone(), idx as usize))
                .or_default() += v;
        }
        out
    }
}
