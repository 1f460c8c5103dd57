//! The job: wires the stages (discover → read → orders → metrics → publish → manifest) for `run`
//! and `backfill`, and checks inputs for `validate`. Inputs are read and the orders built once; a
//! backfill then computes and publishes every as_of date from the same orders, each seen as of
//! its own cutoff (only lines before it count, exactly as a `run --as-of D` would), computing one
//! date while the previous one is written. Each stage is timed; timings go to the log and the
//! manifest.
//!
//! Files: `plan` (memory, partitions, reading), `accounting` (rows per date, data checks),
//! `tables` (a date's tables through the partitioned core), `publish` (tables and manifest),
//! `backfill` (many dates); this file holds `run` and `validate`.

mod accounting;
mod backfill;
mod plan;
mod publish;
mod tables;

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::{Duration, NaiveDate, Utc};
use tracing::{info, info_span};

use crate::config::Validated;
use crate::schema::Table;
use crate::sink::manifest::Manifest;
use crate::sink::{lock, PublishOptions};
use crate::source::{self, FileStats, Ingested};
use crate::storage::Location;
use crate::time::date_to_local_micros;
use crate::{orders, Result};

use accounting::{check, date_views};
use plan::prepare;
use publish::publish_date;

pub(crate) use backfill::{backfill, backfill_dates};

/// How this run behaves (flags, not pipeline description).
#[derive(Debug, Clone, Default)]
pub(crate) struct RunOptions {
    /// As-of date; None = yesterday in the configured timezone.
    pub as_of: Option<NaiveDate>,
    /// Show a progress bar on a terminal.
    pub progress: bool,
    /// Remove another run's lock on the output first.
    pub force_unlock: bool,
    /// Tables to write.
    pub tables: TableSet,
}

/// The tables a run writes (`--tables`). Each date's partitions of the others are left as they
/// are, and its new manifest lists them as the earlier run wrote them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TableSet(u8);

impl TableSet {
    pub(crate) const ALL: TableSet = TableSet(0b111111);

    /// The set of these tables.
    pub(crate) fn of(tables: impl IntoIterator<Item = Table>) -> TableSet {
        TableSet(tables.into_iter().fold(0, |bits, t| bits | 1 << t as u8))
    }

    pub(crate) fn has(&self, table: Table) -> bool {
        self.0 & 1 << table as u8 != 0
    }
}

impl Default for TableSet {
    fn default() -> Self {
        TableSet::ALL
    }
}

/// What a successful run reports, per as_of date.
#[derive(Debug, Clone)]
pub(crate) struct RunSummary {
    /// Where the manifest was written (local path or redacted URL).
    pub manifest_path: String,
    pub manifest: Manifest,
}

/// Yesterday in `tz`: the last complete day.
pub(crate) fn default_as_of(tz: chrono_tz::Tz) -> NaiveDate {
    Utc::now().with_timezone(&tz).date_naive() - Duration::days(1)
}

fn new_run_id() -> String {
    let now = Utc::now();
    format!(
        "{}-{:08x}",
        now.format("%Y%m%dT%H%M%S%.3fZ")
            .to_string()
            .replace('.', ""),
        std::process::id() ^ now.timestamp_subsec_nanos()
    )
}

#[derive(Debug, Clone, Default)]
struct Timings(Vec<(String, u64)>);

impl Timings {
    fn time<T>(&mut self, stage: &str, f: impl FnOnce() -> T) -> T {
        let span = info_span!("stage", stage);
        let _g = span.enter();
        let t = Instant::now();
        let out = f();
        let ms = t.elapsed().as_millis() as u64;
        info!(stage, ms, "Stage finished.");
        self.0.push((stage.to_string(), ms));
        out
    }
}

/// Inputs read once, ready for one or more as_of dates.
struct Prepared {
    pub(super) output: Location,
    pub(super) ingested: Ingested,
    /// Where the lines went when the input is larger than memory (`ingested.lines` is then
    /// empty).
    pub(super) spill: Option<source::spill::Spill>,
    /// Orders built once for the last date; every date sees them `at` its own cutoff.
    pub(super) orders: orders::Orders,
    pub(super) spend: Option<source::spend::Spend>,
    pub(super) timings: Timings,
    /// Warnings for every manifest (inputs with the same content).
    pub(super) warnings: Vec<String>,
}

/// How this run writes the files of one as_of date.
pub(super) fn publish_options<'a>(
    cfg: &Validated,
    as_of: &'a str,
    run_id: &'a str,
) -> PublishOptions<'a> {
    PublishOptions {
        as_of,
        run_id,
        zstd_level: cfg.config.output.zstd_level,
        row_group_rows: cfg.config.output.row_group_rows,
        delta: crate::sink::DeltaSettings::of(cfg),
    }
}

/// Runs the job for one as_of date and publishes every table and the manifest.
pub(crate) fn run(cfg: &Validated, opts: &RunOptions) -> Result<RunSummary> {
    let (as_of, as_of_source) = match opts.as_of {
        Some(d) => (d, "flag"),
        None => (default_as_of(cfg.tz), "default"),
    };
    let run_id = new_run_id();
    let span = info_span!("run", %run_id, %as_of);
    let _g = span.enter();
    info!(as_of_source, "Starting run.");
    let cutoff = date_to_local_micros(as_of + Duration::days(1));
    let mut prep = prepare(cfg, &[cutoff], opts.progress)?;
    let view = date_views(&prep.ingested, prep.spill.as_ref(), &[cutoff]).remove(0);
    check(cfg, &prep.ingested, as_of, &view)?;
    build_orders(&mut prep, &[cutoff]);
    crate::cancel::check()?;
    let lock = lock::acquire(&prep.output, &run_id, cfg, opts.force_unlock)?;
    publish_date(
        cfg,
        &prep,
        &lock,
        as_of,
        as_of_source,
        &run_id,
        view,
        opts.tables,
    )
}

/// Builds the orders once from every line read (all dates of a backfill share them) and frees
/// the lines, the largest allocation, before the metrics: the date views, which need the lines,
/// are taken before this.
fn build_orders(prep: &mut Prepared, cutoffs: &[i64]) {
    let ing = &prep.ingested;
    if prep.spill.is_some() {
        // Spilled lines are built into orders one partition at a time, per date.
        return;
    }
    prep.orders = prep.timings.time("orders", || {
        // Customers laid out in customer_id order: the fold then yields the customers table's
        // rows in order.
        orders::build_at(
            &ing.lines,
            ing.customers.len(),
            ing.segments.len(),
            &ing.segment_ranks(),
            cutoffs,
            Some(&|| &ing.customer_order().ids[..]),
        )
    });
    prep.ingested.lines = source::Lines::default();
}

/// What `validate` found: every row parsed with the run's rules, as of one date.
#[derive(Debug, Clone)]
pub(crate) struct Validation {
    pub as_of: NaiveDate,
    /// Per input: name, format, size and row accounting.
    pub inputs: Vec<FileStats>,
    pub rows_read: u64,
    pub rows_used: u64,
    pub rows_rejected: u64,
    pub rows_after_as_of: u64,
    pub rejects_by_reason: BTreeMap<String, u64>,
    pub warnings: Vec<String>,
}

/// Reads and parses every input row exactly as `run` would (as of `as_of`, default yesterday)
/// and applies the same data checks, without computing or writing anything: where the run would
/// fail on the data, this fails with the same error (exit 3).
pub(crate) fn validate(cfg: &Validated, as_of: Option<NaiveDate>) -> Result<Validation> {
    let as_of = as_of.unwrap_or_else(|| default_as_of(cfg.tz));
    let cutoff = date_to_local_micros(as_of + Duration::days(1));
    let prep = prepare(cfg, &[cutoff], false)?;
    let view = date_views(&prep.ingested, prep.spill.as_ref(), &[cutoff]).remove(0);
    check(cfg, &prep.ingested, as_of, &view)?;
    Ok(Validation {
        as_of,
        inputs: view.files,
        rows_read: view.rows_read,
        rows_used: view.rows_used,
        rows_rejected: view.rows_rejected,
        rows_after_as_of: view.rows_after_as_of,
        rejects_by_reason: view.rejects_by_reason,
        warnings: prep.warnings,
    })
}
