//! One row of a batch → a typed line, a reject with its reason, or "after as_of": the input
//! rules of SPEC §2 (required fields, money and timestamps parsed exactly, the accepted time
//! range, trimmed ids), applied to the typed columns of a batch piece.

use polars::prelude::*;
use polars_arrow::array::{Array as _, PrimitiveArray, Utf8ViewArray};
use polars_arrow::types::NativeType;

use customer_value_core::source::rules::{self, replaced, trim, MoneyValue, Row, Rules, TsValue};

use super::read::{self, MoneyKind, TsKind};
use super::records::Mark;
use super::Cause;

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

impl Ctx {
    /// The rules for rows of this file.
    fn rules(&self, kinds: &Kinds) -> Rules<'_> {
        Rules {
            cutoff_local: self.opts.cutoff_local,
            zone: self.opts.zone,
            decimals: self.decimals,
            ts_format: &self.ts_format,
            lossy: kinds.lossy,
            cid_float: kinds.cid_float,
        }
    }
}

pub(super) use customer_value_core::source::rules::{Outcome, Used};

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
    Int(Nums<'a, i64>, bool, rules::EpochUnit),
    Days(Nums<'a, i32>),
}

pub(super) enum MoneyCol<'a> {
    Text(Strs<'a>),
    Float(Nums<'a, f64>),
    Int(Nums<'a, i64>),
}

impl<'a> MoneyCol<'a> {
    pub(super) fn raw(&self, i: usize) -> Option<String> {
        match self {
            MoneyCol::Text(c) => c.get(i).map(str::to_string),
            MoneyCol::Float(c) => c.get(i).map(|v| v.to_string()),
            MoneyCol::Int(c) => c.get(i).map(|v| v.to_string()),
        }
    }

    fn value(&self, i: usize) -> Option<MoneyValue<'a>> {
        match self {
            MoneyCol::Text(c) => c.get(i).map(MoneyValue::Text),
            MoneyCol::Float(c) => c.get(i).map(MoneyValue::Float),
            MoneyCol::Int(c) => c.get(i).map(MoneyValue::Int),
        }
    }
}

impl<'a> TsCol<'a> {
    fn value(&self, i: usize) -> Option<TsValue<'a>> {
        match self {
            TsCol::Text(c) => c.get(i).map(TsValue::Text),
            &TsCol::Int(c, utc, unit) => c.get(i).map(|ticks| TsValue::Epoch { ticks, unit, utc }),
            TsCol::Days(c) => c.get(i).map(TsValue::Days),
        }
    }

    pub(super) fn raw(&self, i: usize) -> Option<String> {
        match self {
            TsCol::Text(c) => c.get(i).map(str::to_string),
            TsCol::Int(c, _, _) => c.get(i).map(|v| v.to_string()),
            TsCol::Days(c) => c.get(i).map(|v| v.to_string()),
        }
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
        rules::classify(&self.row(j, kinds), &ctx.rules(kinds))
    }

    /// Row `j`'s values as the rules read them.
    fn row(&self, j: usize, kinds: &Kinds) -> Row<'a> {
        Row {
            ts: self.ts.value(j),
            customer_id: self.cid.get(j),
            amount: self.amount.value(j),
            cost: self.cost.as_ref().map(|c| c.value(j)),
            order_id: self.order.and_then(|o| o.get(j)),
            order_replaced: kinds.lossy
                && self.order.is_some_and(|o| o.get(j).is_some_and(replaced)),
            segment_replaced: kinds.lossy
                && self.segs.iter().any(|c| c.get(j).is_some_and(replaced)),
        }
    }
}
