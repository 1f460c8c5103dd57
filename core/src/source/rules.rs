//! The input rules of SPEC §2 for one row: required fields, money and timestamps parsed
//! exactly, the accepted time range, trimmed ids. A row is a line, a reject with its reason, or
//! "after as_of". Readers (the CLI's polars batches, Arrow lines handed to the library API)
//! take a row's values out of their columns and ask [`classify`]; the rules live only here.

use super::parse::{self, MoneyError, Ts};
use crate::time::{Zone, MICROS_PER_DAY};

/// Earliest accepted transaction time: 1900-01-01 (local µs).
pub const MIN_TS: i64 = -25_567 * MICROS_PER_DAY;

/// First time past the accepted range: 10000-01-01 (local µs). Later values (a date32 of
/// garbage, an epoch in the wrong unit) are rejected as out of range.
pub const MAX_TS: i64 = 2_932_897 * MICROS_PER_DAY;

/// The tick of an epoch timestamp column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpochUnit {
    Nanos,
    Micros,
    Millis,
    Seconds,
}

impl EpochUnit {
    /// Microseconds of `ticks`; None when they overflow.
    pub fn to_micros(self, ticks: i64) -> Option<i64> {
        match self {
            EpochUnit::Nanos => Some(ticks.div_euclid(1000)),
            EpochUnit::Micros => Some(ticks),
            EpochUnit::Millis => ticks.checked_mul(1000),
            EpochUnit::Seconds => ticks.checked_mul(1_000_000),
        }
    }
}

/// A row's ts value as its column holds it.
#[derive(Debug, Clone, Copy)]
pub enum TsValue<'a> {
    /// Text, parsed as ISO 8601 or by `input.ts_format`.
    Text(&'a str),
    /// Ticks since the epoch: an instant when `utc` (a zoned timestamp), else wall-clock time
    /// in the configured timezone.
    Epoch {
        ticks: i64,
        unit: EpochUnit,
        utc: bool,
    },
    /// Days since the epoch (a date): local midnight.
    Days(i32),
}

/// A row's amount or cost value as its column holds it.
#[derive(Debug, Clone, Copy)]
pub enum MoneyValue<'a> {
    /// Text (or a decimal written as text), parsed exactly.
    Text(&'a str),
    /// Rounded to the configured decimals.
    Float(f64),
    /// Whole units.
    Int(i64),
}

impl MoneyValue<'_> {
    /// The value as the rejects table shows it.
    pub fn raw(&self) -> String {
        match self {
            MoneyValue::Text(s) => s.to_string(),
            MoneyValue::Float(f) => f.to_string(),
            MoneyValue::Int(v) => v.to_string(),
        }
    }

    fn parse(self, decimals: u32) -> Result<i64, MoneyError> {
        match self {
            MoneyValue::Text(s) => parse::parse_money(s, decimals),
            MoneyValue::Float(f) => parse::money_from_f64(f, decimals),
            MoneyValue::Int(v) => parse::money_from_i64(v, decimals),
        }
    }
}

impl TsValue<'_> {
    /// The value as the rejects table shows it.
    pub fn raw(&self) -> String {
        match self {
            TsValue::Text(s) => s.to_string(),
            TsValue::Epoch { ticks, .. } => ticks.to_string(),
            TsValue::Days(d) => d.to_string(),
        }
    }
}

/// What the rules need besides the row: the run's settings and what the reader knows of its
/// columns.
#[derive(Debug, Clone, Copy)]
pub struct Rules<'a> {
    /// Local wall-clock µs of the cutoff: rows at or after it are "after as_of".
    pub cutoff_local: i64,
    pub zone: Zone,
    /// `input.amount_decimals`.
    pub decimals: u32,
    /// `input.ts_format` ("" = ISO 8601).
    pub ts_format: &'a str,
    /// Text was decoded lossily (CSV): U+FFFD marks bytes that were not valid UTF-8, and the
    /// row is rejected. Other readers fail on invalid UTF-8, so there it is a real character.
    pub lossy: bool,
    /// The customer_id column is floating point: NaN and infinities (as text `NaN`, `inf`) are
    /// rejected, not made customers.
    pub cid_float: bool,
}

/// One row's values (None = null). `cost` is None when no cost column is mapped;
/// `order_replaced` and `segment_replaced` say whether the order_id or a segment value holds
/// U+FFFD (readers compute them only when `Rules::lossy`).
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    pub ts: Option<TsValue<'a>>,
    pub customer_id: Option<&'a str>,
    pub amount: Option<MoneyValue<'a>>,
    pub cost: Option<Option<MoneyValue<'a>>>,
    pub order_id: Option<&'a str>,
    pub order_replaced: bool,
    pub segment_replaced: bool,
}

/// The typed values of a used row.
#[derive(Debug, Clone, Copy)]
pub struct Used {
    pub ts_utc: i64,
    pub ts_local: i64,
    pub amount: i64,
    pub cost: i64,
    /// `text_hash` of the trimmed customer_id.
    pub cid_hash: u64,
    /// `text_hash` of the trimmed order_id, `None` when the row has none (null or empty).
    pub order_hash: Option<u64>,
}

/// What a row is.
#[derive(Debug, Clone, Copy)]
pub enum Outcome {
    Used(Used),
    After,
    /// A blank line: not a row.
    Blank,
    /// With the row's local time when it was readable (backfills need it).
    Rejected(&'static str, Option<i64>),
}

fn money_reason(field: &'static str, e: MoneyError) -> &'static str {
    match (field, e) {
        ("amount", MoneyError::Missing) => "amount: missing",
        ("amount", MoneyError::Unparseable) => "amount: not a number",
        ("amount", MoneyError::NonFinite) => "amount: not finite (NaN or infinity)",
        ("amount", MoneyError::OutOfRange) => "amount: out of range",
        (_, MoneyError::Missing) => "cost: missing",
        (_, MoneyError::Unparseable) => "cost: not a number",
        (_, MoneyError::NonFinite) => "cost: not finite (NaN or infinity)",
        (_, MoneyError::OutOfRange) => "cost: out of range",
    }
}

/// The row's outcome. The time comes first: a row after as_of is counted as such whatever
/// else is wrong with it, and a reject keeps its time (backfills need it).
pub fn classify(row: &Row, rules: &Rules) -> Outcome {
    match line(row, rules) {
        Ok(used) => Outcome::Used(used),
        Err(outcome) => outcome,
    }
}

fn line(row: &Row, rules: &Rules) -> Result<Used, Outcome> {
    let (ts_utc, ts_local) = times(row.ts, rules)?;
    if ts_local >= rules.cutoff_local {
        return Err(Outcome::After);
    }
    let reject = |reason: &'static str| Outcome::Rejected(reason, Some(ts_local));
    let cid_hash = match row.customer_id.map(trim) {
        None | Some("") => return Err(reject("customer_id: missing or empty")),
        Some(s) if rules.lossy && replaced(s) => {
            return Err(reject("customer_id: not valid UTF-8"))
        }
        Some(s) if rules.cid_float && s.parse::<f64>().is_ok_and(|f| !f.is_finite()) => {
            return Err(reject("customer_id: not a finite number"))
        }
        Some(s) => super::text_hash(s),
    };
    if rules.lossy && row.order_replaced {
        return Err(reject("order_id: not valid UTF-8"));
    }
    if rules.lossy && row.segment_replaced {
        return Err(reject("segment: not valid UTF-8"));
    }
    let money = |v: Option<MoneyValue>| match v {
        None => Err(MoneyError::Missing),
        Some(v) => v.parse(rules.decimals),
    };
    let amount = money(row.amount).map_err(|e| reject(money_reason("amount", e)))?;
    let cost = match row.cost {
        None => 0,
        Some(c) => money(c).map_err(|e| reject(money_reason("cost", e)))?,
    };
    Ok(Used {
        ts_utc,
        ts_local,
        amount,
        cost,
        cid_hash,
        order_hash: row
            .order_id
            .map(trim)
            .filter(|s| !s.is_empty())
            .map(super::text_hash),
    })
}

/// The row's time as (UTC µs, local µs), or its reject: missing, not a timestamp, or outside
/// 1900-01-01 .. 9999-12-31 (local).
fn times(ts: Option<TsValue>, rules: &Rules) -> Result<(i64, i64), Outcome> {
    let reject = |reason: &'static str| Err(Outcome::Rejected(reason, None));
    let parsed = match ts {
        None => return reject("ts: missing"),
        Some(TsValue::Text(s)) if s.trim().is_empty() => return reject("ts: missing"),
        Some(TsValue::Text(s)) => {
            let p = if rules.ts_format.is_empty() {
                parse::parse_ts_iso(s)
            } else {
                parse::parse_ts_format(s, rules.ts_format)
            };
            match p {
                Some(t) => t,
                None => return reject("ts: not a valid timestamp"),
            }
        }
        Some(TsValue::Epoch { ticks, unit, utc }) => match unit.to_micros(ticks) {
            None => return reject("ts: out of range"),
            Some(v) if utc => Ts::Utc(v),
            Some(v) => Ts::Local(v),
        },
        // i32 days times µs per day overflow i64 from year ~292,000 on.
        Some(TsValue::Days(d)) => match (d as i64).checked_mul(MICROS_PER_DAY) {
            Some(us) => Ts::Local(us),
            None => return reject("ts: out of range"),
        },
    };
    // Far outside the calendar (a zone offset added to it could overflow): rejected as read,
    // before any conversion. A day of margin keeps zone offsets out of the way.
    let raw = match parsed {
        Ts::Utc(v) | Ts::Local(v) => v,
    };
    if raw < MIN_TS - MICROS_PER_DAY {
        return Err(Outcome::Rejected("ts: before 1900-01-01", Some(raw)));
    }
    if raw >= MAX_TS + MICROS_PER_DAY {
        return reject("ts: out of range");
    }
    let zone = rules.zone;
    let (ts_utc, ts_local) = match parsed {
        Ts::Utc(u) => (u, zone.utc_to_local(u)),
        Ts::Local(l) => (zone.local_to_utc(l), l),
    };
    if ts_local < MIN_TS {
        // A typo like 0024-01-01 would otherwise stretch the tables over 2000 years.
        return Err(Outcome::Rejected("ts: before 1900-01-01", Some(ts_local)));
    }
    if ts_local >= MAX_TS {
        return reject("ts: out of range");
    }
    Ok((ts_utc, ts_local))
}

/// `str::trim` with a fast path for the usual case: no whitespace at either end.
pub fn trim(s: &str) -> &str {
    match (s.as_bytes().first(), s.as_bytes().last()) {
        (Some(a), Some(b)) if a.is_ascii_graphic() && b.is_ascii_graphic() => s,
        _ => s.trim(),
    }
}

/// Whether a text holds U+FFFD, the mark of bytes that were not valid UTF-8 (ASCII text, the
/// usual case, cannot).
pub fn replaced(s: &str) -> bool {
    !s.is_ascii() && s.contains('\u{FFFD}')
}
