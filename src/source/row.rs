//! One row of a batch → a typed line, a reject with its reason, or "after as_of": the input
//! rules of SPEC §2 (required fields, money and timestamps parsed exactly, the accepted time
//! range, trimmed ids), applied to the typed columns of a batch piece.

use polars::prelude::*;
use polars_arrow::array::{Array as _, PrimitiveArray, Utf8ViewArray};
use polars_arrow::types::NativeType;

use super::parse::{self, MoneyError, Ts};
use super::read::{self, MoneyKind, TsKind};
use super::records::Mark;
use super::Cause;

/// Earliest accepted transaction time: 1900-01-01 (local µs).
const MIN_TS: i64 = -25_567 * crate::time::MICROS_PER_DAY;

/// First time past the accepted range: 10000-01-01 (local µs). Later values (a date32 of
/// garbage, an epoch in the wrong unit) are rejected as out of range.
const MAX_TS: i64 = 2_932_897 * crate::time::MICROS_PER_DAY;

#[derive(Clone, Copy)]
pub(super) struct Kinds {
    pub(super) ts: TsKind,
    pub(super) amount: MoneyKind,
    pub(super) cost: Option<MoneyKind>,
    pub(super) has_order: bool,
    /// The customer_id column is floating point (see `Scan::cid_float`).
    pub(super) cid_float: bool,
    pub(super) n_dims: usize,
    /// Text was decoded lossily (CSV): invalid UTF-8 became U+FFFD, which marks a row to
    /// reject. Other readers fail on invalid UTF-8, so there U+FFFD is a real character.
    pub(super) lossy: bool,
}

/// What the source stage needs besides the config.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IngestOptions {
    /// Local wall-clock µs of the cutoff: lines at or after it are "after as_of".
    pub cutoff_local: i64,
    pub zone: crate::time::Zone,
    /// Show a progress bar (only when stderr is a terminal).
    pub progress: bool,
}

/// What the rules need to know about the file a row is from.
pub(super) struct Ctx {
    pub(super) opts: IngestOptions,
    pub(super) decimals: u32,
    pub(super) ts_format: String,
    pub(super) file_name: String,
    pub(super) file_index: usize,
    /// The file's marked records (blank or broken lines) and line numbers.
    pub(super) records: super::records::Records,
}

/// The typed values of a used row.
#[derive(Clone, Copy)]
pub(super) struct Used {
    pub(super) ts_utc: i64,
    pub(super) ts_local: i64,
    pub(super) amount: i64,
    pub(super) cost: i64,
    /// `text_hash` of the customer_id (hashed here, in the parallel pass over the rows).
    pub(super) cid_hash: u64,
    /// `text_hash` of the order_id, `None` when the row has none.
    pub(super) order_hash: Option<u64>,
}

pub(super) enum Outcome {
    Used(Used),
    After,
    /// A blank line: not a row.
    Blank,
    /// With the row's local time when it was readable (backfills need it).
    Rejected(&'static str, Option<i64>),
}

/// A text column of one piece of a batch as its single Arrow array (see `Piece`): `get` is a
/// validity check and a load, where `ChunkedArray::get` first locates the chunk.
#[derive(Clone, Copy)]
pub(super) struct Strs<'a>(&'a Utf8ViewArray);

impl<'a> Strs<'a> {
    pub(super) fn get(&self, i: usize) -> Option<&'a str> {
        self.0.get(i)
    }
}

/// A numeric column of one piece of a batch as its single Arrow array (see `Strs`).
#[derive(Clone, Copy)]
pub(super) struct Nums<'a, T: NativeType>(&'a PrimitiveArray<T>);

impl<T: NativeType> Nums<'_, T> {
    fn get(&self, i: usize) -> Option<T> {
        self.0.is_valid(i).then(|| self.0.value(i))
    }
}

/// The one chunk of a column of a piece.
fn single<T: PolarsDataType>(ca: &ChunkedArray<T>) -> Result<&T::Array, Cause> {
    match ca.chunks().len() {
        1 => ca
            .downcast_get(0)
            .ok_or_else(|| format!("internal: column {} has no chunk", ca.name()).into()),
        n => Err(format!(
            "internal: column {} has {n} chunks in one piece of a batch",
            ca.name()
        )
        .into()),
    }
}

fn strs<'a>(s: &'a Series) -> Result<Strs<'a>, Cause> {
    single(s.str()?).map(Strs)
}

pub(super) enum TsCol<'a> {
    Text(Strs<'a>),
    Int(Nums<'a, i64>, bool, read::EpochUnit),
    Days(Nums<'a, i32>),
}

pub(super) enum MoneyCol<'a> {
    Text(Strs<'a>),
    Float(Nums<'a, f64>),
    Int(Nums<'a, i64>),
}

impl MoneyCol<'_> {
    pub(super) fn raw(&self, i: usize) -> Option<String> {
        match self {
            MoneyCol::Text(c) => c.get(i).map(str::to_string),
            MoneyCol::Float(c) => c.get(i).map(|v| v.to_string()),
            MoneyCol::Int(c) => c.get(i).map(|v| v.to_string()),
        }
    }

    fn parse(&self, i: usize, decimals: u32) -> Result<i64, MoneyError> {
        match self {
            MoneyCol::Text(c) => match c.get(i) {
                None => Err(MoneyError::Missing),
                Some(s) => parse::parse_money(s, decimals),
            },
            MoneyCol::Float(c) => match c.get(i) {
                None => Err(MoneyError::Missing),
                Some(f) => parse::money_from_f64(f, decimals),
            },
            MoneyCol::Int(c) => match c.get(i) {
                None => Err(MoneyError::Missing),
                Some(v) => parse::money_from_i64(v, decimals),
            },
        }
    }
}

impl TsCol<'_> {
    pub(super) fn raw(&self, i: usize) -> Option<String> {
        match self {
            TsCol::Text(c) => c.get(i).map(str::to_string),
            TsCol::Int(c, _, _) => c.get(i).map(|v| v.to_string()),
            TsCol::Days(c) => c.get(i).map(|v| v.to_string()),
        }
    }
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

fn column<'a>(df: &'a DataFrame, name: &str) -> Result<&'a Series, Cause> {
    Ok(df.column(name)?.as_materialized_series())
}

/// The mapped columns of one piece of a batch: rows over which every column is a single Arrow
/// array. The streaming engine hands over batches whose columns are all split at the same rows
/// (a CSV batch is about eight pieces of 8k rows); reading the pieces as they are spares
/// copying each batch into one chunk per column (0.8 s of a 10M-row CSV read).
pub(super) struct Piece<'a> {
    pub(super) len: usize,
    /// Row numbers in the file (read only for rejects).
    pub(super) rows: &'a Series,
    pub(super) cid: Strs<'a>,
    pub(super) ts: TsCol<'a>,
    pub(super) amount: MoneyCol<'a>,
    pub(super) cost: Option<MoneyCol<'a>>,
    pub(super) order: Option<Strs<'a>>,
    pub(super) segs: Vec<Strs<'a>>,
}

/// A row of a batch: its piece and its row within the piece.
#[derive(Clone, Copy)]
pub(super) struct At {
    pub(super) piece: u32,
    pub(super) row: u32,
}

impl<'a> Piece<'a> {
    pub(super) fn new(df: &'a DataFrame, kinds: &Kinds) -> Result<Self, Cause> {
        let ts_s = column(df, read::TS)?;
        let ts = match kinds.ts {
            TsKind::Text => TsCol::Text(strs(ts_s)?),
            TsKind::Epoch { utc, unit } => TsCol::Int(Nums(single(ts_s.i64()?)?), utc, unit),
            TsKind::Days => TsCol::Days(Nums(single(ts_s.i32()?)?)),
        };
        let money_col = |name: &str, kind: MoneyKind| -> Result<MoneyCol<'a>, Cause> {
            let s = column(df, name)?;
            Ok(match kind {
                MoneyKind::Text => MoneyCol::Text(strs(s)?),
                MoneyKind::Float => MoneyCol::Float(Nums(single(s.f64()?)?)),
                MoneyKind::Int => MoneyCol::Int(Nums(single(s.i64()?)?)),
            })
        };
        Ok(Piece {
            len: df.height(),
            rows: column(df, read::ROW)?,
            cid: strs(column(df, read::CID)?)?,
            ts,
            amount: money_col(read::AMOUNT, kinds.amount)?,
            cost: match kinds.cost {
                Some(k) => Some(money_col(read::COST, k)?),
                None => None,
            },
            order: if kinds.has_order {
                Some(strs(column(df, read::ORDER)?)?)
            } else {
                None
            },
            segs: (0..kinds.n_dims)
                .map(|d| column(df, &read::seg_col(d)).and_then(strs))
                .collect::<Result<_, _>>()?,
        })
    }

    /// 1-based row number of row `j` in its file.
    pub(super) fn row_number(&self, j: usize) -> u64 {
        self.rows
            .get(j)
            .ok()
            .and_then(|v| v.extract::<u64>())
            .unwrap_or(0)
    }

    /// Trimmed customer_id of a row that was used (so it has one).
    pub(super) fn customer(&self, j: usize) -> &'a str {
        trim(self.cid.get(j).unwrap_or(""))
    }

    /// Trimmed order_id of row `j`, if the column is mapped and the value not null.
    pub(super) fn order_id(&self, j: usize) -> Option<&'a str> {
        self.order.and_then(|o| o.get(j)).map(trim)
    }

    pub(super) fn classify(&self, j: usize, kinds: &Kinds, ctx: &Ctx) -> Outcome {
        if !ctx.records.marks.is_empty() {
            match ctx.records.mark(self.row_number(j)) {
                Some(Mark::Blank) => return Outcome::Blank,
                Some(Mark::Reject(reason)) => return Outcome::Rejected(reason, None),
                None => {}
            }
        }
        match self.line(j, kinds, ctx) {
            Ok(used) => Outcome::Used(used),
            Err(outcome) => outcome,
        }
    }

    /// The typed values of row `j`, or why it is not a line. The time comes first: a row
    /// after as_of is counted as such whatever else is wrong with it, and a reject keeps its
    /// time (backfills need it).
    fn line(&self, j: usize, kinds: &Kinds, ctx: &Ctx) -> Result<Used, Outcome> {
        let (ts_utc, ts_local) = self.times(j, ctx)?;
        if ts_local >= ctx.opts.cutoff_local {
            return Err(Outcome::After);
        }
        let reject = |reason: &'static str| Outcome::Rejected(reason, Some(ts_local));
        let cid_hash = match self.cid.get(j).map(trim) {
            None | Some("") => return Err(reject("customer_id: missing or empty")),
            Some(s) if kinds.lossy && replaced(s) => {
                return Err(reject("customer_id: not valid UTF-8"))
            }
            Some(s) if kinds.cid_float && s.parse::<f64>().is_ok_and(|f| !f.is_finite()) => {
                return Err(reject("customer_id: not a finite number"))
            }
            Some(s) => super::text_hash(s),
        };
        if kinds.lossy {
            if let Some(o) = self.order {
                if o.get(j).is_some_and(replaced) {
                    return Err(reject("order_id: not valid UTF-8"));
                }
            }
            if self.segs.iter().any(|c| c.get(j).is_some_and(replaced)) {
                return Err(reject("segment: not valid UTF-8"));
            }
        }
        let amount = self
            .amount
            .parse(j, ctx.decimals)
            .map_err(|e| reject(money_reason("amount", e)))?;
        let cost = match &self.cost {
            None => 0,
            Some(c) => c
                .parse(j, ctx.decimals)
                .map_err(|e| reject(money_reason("cost", e)))?,
        };
        Ok(Used {
            ts_utc,
            ts_local,
            amount,
            cost,
            cid_hash,
            order_hash: self
                .order_id(j)
                .filter(|s| !s.is_empty())
                .map(super::text_hash),
        })
    }

    /// Row `j`'s time as (UTC µs, local µs), or its reject: missing, not a timestamp, or
    /// outside 1900-01-01 .. 9999-12-31 (local).
    fn times(&self, j: usize, ctx: &Ctx) -> Result<(i64, i64), Outcome> {
        let reject = |reason: &'static str| Err(Outcome::Rejected(reason, None));
        let parsed = match &self.ts {
            TsCol::Text(c) => match c.get(j) {
                None => return reject("ts: missing"),
                Some(s) if s.trim().is_empty() => return reject("ts: missing"),
                Some(s) => {
                    let fmt = ctx.ts_format.as_str();
                    let p = if fmt.is_empty() {
                        parse::parse_ts_iso(s)
                    } else {
                        parse::parse_ts_format(s, fmt)
                    };
                    match p {
                        Some(t) => t,
                        None => return reject("ts: not a valid timestamp"),
                    }
                }
            },
            TsCol::Int(c, utc, unit) => match c.get(j).map(|v| unit.to_micros(v)) {
                None => return reject("ts: missing"),
                Some(None) => return reject("ts: out of range"),
                Some(Some(v)) if *utc => Ts::Utc(v),
                Some(Some(v)) => Ts::Local(v),
            },
            TsCol::Days(c) => match c.get(j) {
                None => return reject("ts: missing"),
                // i32 days times µs per day overflow i64 from year ~292,000 on.
                Some(d) => match (d as i64).checked_mul(crate::time::MICROS_PER_DAY) {
                    Some(us) => Ts::Local(us),
                    None => return reject("ts: out of range"),
                },
            },
        };
        // Far outside the calendar (a zone offset added to it could overflow): rejected as
        // read, before any conversion. A day of margin keeps zone offsets out of the way.
        let raw = match parsed {
            Ts::Utc(v) | Ts::Local(v) => v,
        };
        if raw < MIN_TS - crate::time::MICROS_PER_DAY {
            return Err(Outcome::Rejected("ts: before 1900-01-01", Some(raw)));
        }
        if raw >= MAX_TS + crate::time::MICROS_PER_DAY {
            return reject("ts: out of range");
        }
        let zone = ctx.opts.zone;
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
}

/// `str::trim` with a fast path for the usual case: no whitespace at either end.
pub(super) fn trim(s: &str) -> &str {
    match (s.as_bytes().first(), s.as_bytes().last()) {
        (Some(a), Some(b)) if a.is_ascii_graphic() && b.is_ascii_graphic() => s,
        _ => s.trim(),
    }
}

/// Whether a text holds U+FFFD, the mark of bytes that were not valid UTF-8 (ASCII text, the
/// usual case, cannot).
fn replaced(s: &str) -> bool {
    !s.is_ascii() && s.contains('\u{FFFD}')
}
