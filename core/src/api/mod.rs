//! The library API: the job's computation on Arrow data, for any engine that does its own I/O
//! (our CLI reads files; a Spark task or a notebook hands over batches it read).
//!
//! A computation is a configuration and an as_of date. Customers are split into partitions by
//! the caller (every line of a customer in the same partition); each partition's normalized
//! lines are [folded](Computation::fold) into a [`Partial`]; partials are
//! [merged](Partial::merge) in any grouping and order, and the merged one is
//! [finished](Computation::finish) into the tables. Partials cross process boundaries as Arrow
//! ([`Partial::to_arrow`], [`Partial::from_arrow`]). The tables equal those of a CLI run over
//! the same lines, whatever the partitioning.
//!
//! Lines are *normalized*: parsing text, rejecting bad rows and the data checks of a run (reject
//! ratio, staleness) are the caller's; the rejects table of [`Tables`] is empty. The columns
//! ([`Computation::lines_schema`]):
//!
//! | column | type | |
//! |---|---|---|
//! | `customer_id` | string (or integer) | not null, not empty |
//! | `ts` | timestamp (any unit; without a timezone read as UTC) or date | not null: the instant |
//! | `ts_local` | timestamp without timezone | optional: wall-clock time in `metrics.timezone` (default: `ts` converted) |
//! | `amount` | integer | not null: minor units (`input.amount_decimals`) |
//! | `order_id` | string (or integer) | when `input.columns.order_id` is set; null or empty = its own order |
//! | `cost` | integer | when `input.columns.cost` is set; minor units, not null |
//! | each of `input.columns.segments` | string | null or empty = `__unknown__` |
//!
//! ```
//! use arrow::array::{Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
//! use chrono::NaiveDate;
//! use customer_value_core::{Computation, Table};
//! use std::sync::Arc;
//!
//! let config = r#"
//!     [input.columns]
//!     customer_id = "customer_id"
//!     ts = "ts"
//!     amount = "amount"
//! "#;
//! let as_of = NaiveDate::from_ymd_opt(2024, 3, 31).unwrap();
//! let job = Computation::from_toml(config, as_of)?;
//! // Two partitions (a customer's lines all in one), amounts in cents.
//! let lines = |ids: &[&str], days: &[i64], cents: &[i64]| {
//!     let ts: Vec<i64> = days.iter().map(|d| (19_723 + d) * 86_400_000_000).collect();
//!     RecordBatch::try_new(
//!         job.lines_schema(),
//!         vec![
//!             Arc::new(StringArray::from(ids.to_vec())),
//!             Arc::new(TimestampMicrosecondArray::from(ts).with_timezone("UTC")),
//!             Arc::new(Int64Array::from(cents.to_vec())),
//!         ],
//!     )
//!     .unwrap()
//! };
//! // 2024-01-01 is day 19723 since 1970-01-01.
//! let mut a = job.fold(&[lines(&["c1", "c1"], &[0, 40], &[1000, 500])])?;
//! let b = job.fold(&[lines(&["c2"], &[70], &[2000])])?;
//! a.merge(Partial::from_arrow(&b.to_arrow())?)?;
//! let tables = job.finish(a)?;
//! assert_eq!(tables.get(Table::Customers).num_rows(), 2);
//! # use customer_value_core::Partial;
//! # Ok::<(), customer_value_core::ApiError>(())
//! ```

mod lines;
mod partial;
mod rows;
mod spread;
mod wire;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use chrono::{Duration, NaiveDate};

pub use crate::config::{Config, ConfigError};
pub use crate::schema::Table;
pub use partial::Partial;
pub use rows::{Accounting, Rows, SourceCounts, REJECT, SOURCE_FILE, SOURCE_ROW};
pub use spread::{Census, LtvSums, Plan, Scored};
pub use wire::PartialBatches;

use crate::config::Validated;
use crate::metrics::predictions::{self, Fits};
use crate::metrics::{self, rfm, Ctx, CustomerRow};
use crate::source::{Dict, Ingested};
use crate::time::date_to_local_micros;
use crate::{compute, orders};
use partial::Head;

/// What the library API reports: a bad configuration, lines that do not follow
/// [`Computation::lines_schema`], or partials that cannot be merged or finished.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("lines: column '{column}' is missing; columns are: {available}")]
    MissingColumn { column: String, available: String },
    #[error("lines: column '{column}' has type {found}, which cannot be read as {expected}")]
    ColumnType {
        column: String,
        found: String,
        expected: String,
    },
    /// A value the computation needs is null, empty or out of range.
    #[error("lines: column '{column}', batch {batch} row {row}: {problem}")]
    Value {
        column: String,
        batch: usize,
        row: usize,
        problem: &'static str,
    },
    #[error(
        "customer '{0}' is in more than one partition (every line of a customer must be in one)"
    )]
    DuplicateCustomer(String),
    #[error("{0}")]
    Mismatch(String),
    /// Σ |amount| + |cost| of the lines exceeds 2^63 − 1 minor units: sums could overflow.
    #[error("lines: the sum of |amount| + |cost| exceeds 2^63 - 1 minor units, beyond exact 64-bit sums")]
    Overflow,
    #[error("partial: {0}")]
    Partial(String),
    #[error("{key}: {message}")]
    Unsupported { key: String, message: String },
    /// The rows fail a data check of the CLI (too many rejects, nothing to compute, stale
    /// input, money sums beyond 64 bits): the CLI's exit 3.
    #[error("{0}")]
    Quality(String),
}

/// One as_of date's computation under one configuration. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct Computation {
    cfg: Validated,
    as_of: NaiveDate,
    /// Local midnight after as_of: lines at or after it are not seen.
    cutoff: i64,
}

/// Every table of a computation, as Arrow, with the columns and order the CLI writes (models:
/// empty with predictions off).
#[derive(Debug, Clone)]
pub struct Tables {
    batches: [RecordBatch; 6],
    accounting: Accounting,
    orders: u64,
    customers: u64,
}

impl Tables {
    /// The batch of `table`.
    pub fn get(&self, table: Table) -> &RecordBatch {
        &self.batches[Table::ALL
            .iter()
            .position(|&t| t == table)
            .expect("every table is listed")]
    }

    /// The row accounting of the rows folded (zero for normalized lines, which are not
    /// counted).
    pub fn accounting(&self) -> &Accounting {
        &self.accounting
    }

    /// Customers of the whole base (the manifest's `customers`; the customers table's rows,
    /// but for [`finish_planned`](Computation::finish_planned), whose tasks wrote them).
    pub fn customers(&self) -> u64 {
        self.customers
    }

    /// Orders before the cutoff (the manifest's `orders`).
    pub fn orders(&self) -> u64 {
        self.orders
    }

    /// Every table with its batch, in publish order.
    pub fn iter(&self) -> impl Iterator<Item = (Table, &RecordBatch)> {
        Table::ALL.into_iter().map(|t| (t, self.get(t)))
    }
}

impl Computation {
    /// The computation as of `as_of` under `config` (the TOML configuration's keys; `input.paths`,
    /// `[output]` and `[engine]` are not used). Every problem of the configuration is reported
    /// at once, naming its key.
    pub fn new(config: Config, as_of: NaiveDate) -> Result<Self, ApiError> {
        if config.spend.is_some() {
            return Err(ApiError::Unsupported {
                key: "spend".into(),
                message: "acquisition spend is read from a file by the CLI only; leave [spend] out"
                    .into(),
            });
        }
        let cfg = config.validate_lines()?;
        Ok(Computation {
            cfg,
            as_of,
            cutoff: date_to_local_micros(as_of + Duration::days(1)),
        })
    }

    /// [`new`](Self::new) from the text of a TOML configuration.
    pub fn from_toml(text: &str, as_of: NaiveDate) -> Result<Self, ApiError> {
        Self::new(Config::from_toml(text)?, as_of)
    }

    pub fn as_of(&self) -> NaiveDate {
        self.as_of
    }

    /// The columns [`fold`](Self::fold) reads, with their preferred types (see the module docs
    /// for the other types each accepts).
    pub fn lines_schema(&self) -> SchemaRef {
        lines::schema(&self.cfg.config.input.columns)
    }

    fn head(&self) -> Head {
        Head {
            as_of: self.as_of,
            period: self.cfg.config.metrics.period,
            dims: self.cfg.config.input.columns.segments.clone(),
        }
    }

    /// Folds one partition's lines (every line of its customers) into its partial. Lines after
    /// as_of are not seen.
    pub fn fold(&self, lines: &[RecordBatch]) -> Result<Partial, ApiError> {
        let ing = lines::ingest(&self.cfg, self.cutoff, lines)?;
        self.fold_ingested(ing, Accounting::default())
    }

    /// Folds one partition's *input rows* (every row of its customers), as the CLI reads the
    /// rows of its input files: the columns named as `input.columns` maps them, values as text
    /// or typed (timestamps, dates, integers, floats, decimals), each row checked by the CLI's
    /// rules. A bad row is a reject in the partial (naming its source and row), rows after
    /// as_of are counted; see [`check`](Self::check). An error is a column that is missing or
    /// of a type no rule reads.
    pub fn fold_rows(&self, sources: &[Rows<'_>]) -> Result<Partial, ApiError> {
        let (ing, accounting) = rows::ingest(&self.cfg, self.cutoff, sources)?;
        if let Some((file, row)) = &ing.money_overflow_at {
            return Err(ApiError::Quality(crate::source::quality::money_overflow(
                file, *row,
            )));
        }
        self.fold_ingested(ing, accounting)
    }

    /// The data checks of the CLI on the merged partial of every partition (the CLI's exit 3):
    /// the reject ratio within `input.max_reject_ratio`, something to compute, the newest line
    /// within `input.max_staleness_days` of as_of.
    pub fn check(&self, partial: &Partial) -> Result<(), ApiError> {
        let a = &partial.accounting;
        let mut by_reason = std::collections::BTreeMap::new();
        for r in &a.rejects {
            *by_reason.entry(r.reason.clone()).or_insert(0u64) += 1;
        }
        let mut rejects: Vec<&crate::source::Reject> = a.rejects.iter().collect();
        rejects.sort_by(|x, y| (x.file.as_str(), x.row).cmp(&(y.file.as_str(), y.row)));
        let view = crate::source::quality::View {
            rows_read: a.rows_read,
            rows_used: a.rows_used,
            rows_rejected: a.rows_rejected(),
            rows_after_as_of: a.rows_after_as_of,
            rejects_by_reason: &by_reason,
            first_reject: rejects.first().copied(),
            earliest: partial.earliest,
            newest: a.newest,
        };
        crate::source::quality::check(&self.cfg, self.as_of, &view)
            .map(|_| ())
            .map_err(ApiError::Quality)
    }

    fn fold_ingested(&self, ing: Ingested, accounting: Accounting) -> Result<Partial, ApiError> {
        let n_dims = ing.segments.len();
        let orders = orders::build_at(
            &ing.lines,
            ing.customers.len(),
            n_dims,
            &ing.segment_ranks(),
            &[self.cutoff],
            None,
        );
        let earliest = orders.earliest.filter(|&t| t < self.cutoff);
        let ctx = Ctx::with_earliest(&self.cfg, self.as_of, &ing, earliest);
        let part = compute::fold(&orders, self.cutoff, &ctx, 0, 1);
        let mut rows: Vec<CustomerRow> = part.rows.into_iter().flatten().collect();
        let mut customer_ids = Vec::with_capacity(rows.len());
        for (i, r) in rows.iter_mut().enumerate() {
            customer_ids.push(ing.customers.get(r.cust).to_string());
            r.cust = i as u32;
        }
        let mut partial = Partial::new(
            self.head(),
            &ctx,
            &part.acc,
            (earliest, ing.money_abs),
            customer_ids,
            rows,
        );
        partial.accounting = accounting;
        Ok(partial)
    }

    /// The tables of the whole base from the merge of every partition's partial: RFM scores
    /// rank each customer within all of them.
    pub fn finish(&self, partial: Partial) -> Result<Tables, ApiError> {
        self.same_head(&partial)?;
        let (mut ing, ctx) = self.context(&partial.values, partial.earliest);
        debug_assert_eq!(ctx.frame.first_index, partial.first_index());
        let acc = partial.acc(&ctx)?;
        let Partial {
            customer_ids,
            mut rows,
            accounting,
            ..
        } = partial;
        intern_customers(&mut ing, &mut rows, &customer_ids)?;
        drop(customer_ids);
        let mut keys = rfm::Keys::with_capacity(rows.len());
        keys.add(&rows);
        let mut parts = vec![rows];
        let fits = ctx
            .predict
            .as_ref()
            .map(|p| Fits::new(&predictions::summarize(&parts, &ctx), p, &ctx));
        let sums = metrics::score_and_sum(&mut parts, &keys.scorer(), fits.as_ref(), &ctx);
        let rows = parts.pop().unwrap_or_default();
        let customers = metrics::customers::table(rows.iter().collect(), &ing, &ctx);
        let merged = compute::Merged {
            acc,
            sums,
            n_customers: rows.len() as u64,
            fits,
            fit_ms: None,
        };
        Ok(Self::tables(merged, &ctx, accounting, customers))
    }

    fn same_head(&self, partial: &Partial) -> Result<(), ApiError> {
        if partial.head != self.head() {
            return Err(ApiError::Mismatch(format!(
                "the partial is of another computation ({:?}, not {:?})",
                partial.head,
                self.head()
            )));
        }
        Ok(())
    }

    /// The ingest (segment dictionaries of `values`, no customers yet) and context of the whole
    /// base whose segment values are `values` and earliest order `earliest`.
    fn context(&self, values: &[Vec<String>], earliest: Option<i64>) -> (Ingested, Ctx) {
        let mut ing = Ingested {
            has_cost: self.cfg.config.input.columns.cost.is_some(),
            ..Ingested::default()
        };
        for values in values {
            let mut dict = Dict::default();
            for v in values {
                dict.intern(v);
            }
            ing.segments.push(dict);
        }
        let ctx = Ctx::with_earliest(&self.cfg, self.as_of, &ing, earliest);
        (ing, ctx)
    }

    fn tables(
        merged: compute::Merged,
        ctx: &Ctx,
        accounting: Accounting,
        customers: RecordBatch,
    ) -> Tables {
        let t = merged.tables(ctx, &accounting.rejects, customers);
        Tables {
            accounting,
            orders: t.orders,
            customers: t.n_customers,
            batches: [
                t.customers,
                t.retention,
                t.cohorts,
                t.ltv,
                t.rejects,
                t.models
                    .unwrap_or_else(|| RecordBatch::new_empty(Table::Models.schema(&[]))),
            ],
        }
    }
}

/// Numbers `rows` (whose `cust` is a position in `ids`) by the customers of `ing`, refusing a
/// customer seen twice (in two partitions).
fn intern_customers(
    ing: &mut Ingested,
    rows: &mut [CustomerRow],
    ids: &[String],
) -> Result<(), ApiError> {
    for r in rows.iter_mut() {
        let id = &ids[r.cust as usize];
        let before = ing.customers.count();
        r.cust = ing.customers.intern(id);
        if ing.customers.count() == before {
            return Err(ApiError::DuplicateCustomer(id.clone()));
        }
    }
    Ok(())
}
