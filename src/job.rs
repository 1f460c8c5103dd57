//! The job: wires the stages (discover → read → orders → metrics → publish → manifest) for `run`
//! and `backfill`, and checks inputs for `validate`. Inputs are read and the orders built once; a
//! backfill then computes and publishes every as_of date from the same orders, each seen as of
//! its own cutoff (only lines before it count, exactly as a `run --as-of D` would), computing one
//! date while the previous one is written. Each stage is timed; timings go to the log and the
//! manifest.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Instant;

use chrono::{Datelike, Duration, NaiveDate, Utc};
use tracing::{info, info_span, warn};

use crate::config::Validated;
use crate::metrics::{self, Ctx};
use crate::orders;
use crate::sink::manifest::Manifest;
use crate::sink::{self, lock, PublishOptions, TableData};
use crate::source::{self, FileStats, IngestOptions, Ingested, Reject};
use crate::storage::{self, Location};
use crate::time::{date_to_local_micros, Period, Zone};
use crate::{compute, Error, Result};

/// How this run behaves (flags, not pipeline description).
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
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
pub struct TableSet(u8);

impl TableSet {
    /// Every table, in publishing order.
    pub const NAMES: [&'static str; 5] = ["customers", "retention", "cohorts", "ltv", "rejects"];
    pub const ALL: TableSet = TableSet(0b11111);

    /// The set of the named tables; names outside `NAMES` are ignored.
    pub fn of<'a>(names: impl IntoIterator<Item = &'a str>) -> TableSet {
        TableSet(
            names
                .into_iter()
                .filter_map(|n| Self::NAMES.iter().position(|&t| t == n))
                .fold(0, |bits, i| bits | 1 << i),
        )
    }

    pub fn has(&self, name: &str) -> bool {
        Self::NAMES
            .iter()
            .position(|&t| t == name)
            .is_some_and(|i| self.0 & 1 << i != 0)
    }
}

impl Default for TableSet {
    fn default() -> Self {
        TableSet::ALL
    }
}

/// What a successful run reports, per as_of date.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// Where the manifest was written (local path or redacted URL).
    pub manifest_path: String,
    pub manifest: Manifest,
}

/// Yesterday in `tz`: the last complete day.
pub fn default_as_of(tz: chrono_tz::Tz) -> NaiveDate {
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
    output: Location,
    ingested: Ingested,
    /// Orders built once for the last date; every date sees them `at` its own cutoff.
    orders: orders::Orders,
    spend: Option<source::spend::Spend>,
    timings: Timings,
    /// Warnings for every manifest (inputs with the same content).
    warnings: Vec<String>,
}

/// Input bytes → bytes of memory a run holding every line needs, by input format (measured on
/// the benchmark input at 10M and 100M rows: Parquet ×12, CSV ×2.2), with some headroom.
fn memory_per_input_byte(f: &source::InputFile) -> u64 {
    let base = match f.format {
        crate::config::InputFormat::Parquet => 13,
        crate::config::InputFormat::Ndjson => 2,
        _ => 3,
    };
    if source::files::is_compressed(&f.path) {
        base * 5
    } else {
        base
    }
}

/// The machine's physical memory in bytes (8 GiB when it cannot be read).
fn physical_memory() -> u64 {
    // SAFETY: sysconf has no preconditions; it returns −1 for an unknown name.
    let (pages, size) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    if pages > 0 && size > 0 {
        pages as u64 * size as u64
    } else {
        8 << 30
    }
}

/// Memory the job plans to stay within: `engine.memory_limit_mib`, or three quarters of the
/// machine's.
fn memory_limit(cfg: &Validated) -> u64 {
    let e = &cfg.config.engine;
    if e.memory_limit_mib > 0 {
        e.memory_limit_mib << 20
    } else {
        physical_memory() / 4 * 3
    }
}

/// How many customer partitions to spill the lines to (1 = keep them in memory): the
/// configured number, or enough that one partition needs at most a quarter of the memory
/// limit (the dictionaries, the read-ahead partition and the reader's buffers take the rest).
fn plan_partitions(cfg: &Validated, files: &[source::InputFile]) -> usize {
    let e = &cfg.config.engine;
    if e.partitions > 0 {
        return e.partitions;
    }
    let limit = memory_limit(cfg);
    let need: u64 = files
        .iter()
        .map(|f| f.size.saturating_mul(memory_per_input_byte(f)))
        .sum();
    if need <= limit {
        1
    } else {
        (need.div_ceil((limit / 4).max(1)) as usize).clamp(2, crate::config::MAX_PARTITIONS)
    }
}

/// Makes polars read local files with buffered reads (its object-store path, 32 MiB chunks) instead
/// of memory-mapping them whole. Mapped pages of a file larger than memory count in the process'
/// resident memory (a 28 GB CSV reached 8.4 GB of mapped pages after two minutes) although the
/// kernel can drop them; a spilled run is meant to stay within its memory limit as measured.
fn read_without_memory_map() {
    const FORCE_ASYNC: &str = "POLARS_FORCE_ASYNC";
    if std::env::var_os(FORCE_ASYNC).is_none() {
        // Set before polars reads its settings (at the first scan, which comes after this), from
        // the only thread of the job that touches the environment.
        std::env::set_var(FORCE_ASYNC, "1");
    }
}

/// Reads every input (into a spill of `partitions` partitions when there is more than one).
/// CSV files are read as strict UTF-8 first; when one is not, everything is read again with
/// that file decoded lossily, so its rows with invalid bytes are rejected with a reason. Files
/// are valid UTF-8 nearly always, and the strict read is the faster one.
fn read_all(
    cfg: &Validated,
    files: &[source::InputFile],
    cutoffs: &[i64],
    partitions: usize,
    opts: IngestOptions,
) -> Result<source::Ingested, source::SourceError> {
    let spill_dir = (partitions > 1).then(|| {
        let dir = match cfg.config.engine.spill_dir.as_str() {
            "" => std::env::temp_dir(),
            d => std::path::PathBuf::from(d),
        };
        info!(partitions, spill_dir = %dir.display(), "The input is larger than the memory limit: spilling lines to disk.");
        dir
    });
    let mut lossy = Vec::new();
    loop {
        // A fresh spill for every attempt: a failed one is dropped with its files.
        let spill = spill_dir
            .as_ref()
            .map(|dir| source::spill::Spill::new(dir, partitions, cutoffs.to_vec()))
            .transpose()
            .map_err(source::SourceError::Spill)?;
        match source::ingest(files, cfg, opts, spill, &lossy) {
            Err(source::SourceError::NotUtf8 { index, file }) if !lossy.contains(&index) => {
                warn!(file = %file, "Input file is not valid UTF-8: reading the inputs again, with its invalid bytes replaced (those rows are rejected).");
                lossy.push(index);
            }
            other => return other,
        }
    }
}

/// Opens the output, reads the spend file and every input up to the last cutoff (`cutoffs`
/// ascending, one per as_of date).
fn prepare(cfg: &Validated, cutoffs: &[i64], progress: bool) -> Result<Prepared> {
    let last_cutoff = *cutoffs.last().expect("at least one as_of date");
    let mut timings = Timings::default();
    // Open the output first: a bad output URL fails before any reading.
    let output = storage::open(&cfg.config.output.path, &cfg.config.storage)
        .map_err(sink::SinkError::from)?;
    let files = timings.time("discover", || {
        source::discover(
            &cfg.config.input.paths,
            cfg.config.input.format,
            &cfg.config.storage,
        )
    })?;
    let warnings = source::files::same_content(&files);
    // Read the small spend file before the large inputs, so a bad one fails fast.
    let spend = cfg
        .config
        .spend
        .as_ref()
        .map(|sc| source::spend::read(Path::new(&sc.path), cfg.config.input.amount_decimals))
        .transpose()?;
    let partitions = plan_partitions(cfg, &files);
    if partitions > 1 {
        read_without_memory_map();
    }
    let opts = IngestOptions {
        cutoff_local: last_cutoff,
        zone: Zone::new(cfg.tz),
        progress,
    };
    let ingested = timings.time("read", || read_all(cfg, &files, cutoffs, partitions, opts))?;
    let st = &ingested.stats;
    info!(
        rows_read = st.rows_read,
        rows_used = st.rows_used,
        rows_rejected = st.rows_rejected,
        rows_after_as_of = st.rows_after_as_of,
        "Read all inputs."
    );
    Ok(Prepared {
        output,
        ingested,
        orders: orders::Orders::default(),
        spend,
        timings,
        warnings,
    })
}

/// Row accounting of one as_of date, derived from the lines and rejects read up to the last date.
struct DateView {
    files: Vec<FileStats>,
    rows_read: u64,
    rows_used: u64,
    rows_rejected: u64,
    rows_after_as_of: u64,
    rejects_by_reason: BTreeMap<String, u64>,
    rejects: Vec<Reject>,
    reject_ratio: f64,
    /// Local time of the earliest and the newest line used as of this date.
    earliest: Option<i64>,
    newest: Option<i64>,
}

/// Row accounting of every date (cutoffs ascending) in one pass over the lines: each line is
/// counted at the first date whose cutoff is after it, then counts accumulate over the dates.
fn date_views(ing: &Ingested, cutoffs: &[i64]) -> Vec<DateView> {
    let n_files = ing.stats.files.len();
    // used[file][k]: lines of `file` first seen at date k (counted as they were spilled, when
    // they were: the spill was given the same cutoffs).
    let mut used = vec![vec![0u64; cutoffs.len()]; n_files];
    let mut newest = vec![None; cutoffs.len()];
    // Every line kept is before the last cutoff, and the earliest is before any cutoff a
    // line is before: one earliest serves every date that has lines.
    let earliest = match &ing.spill {
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

fn view_of(
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
fn check(cfg: &Validated, ing: &Ingested, as_of: NaiveDate, v: &DateView) -> Result<()> {
    if let Some((file, row)) = &ing.money_overflow_at {
        return Err(Error::Quality(format!(
            "input file {file}: row {row}: the absolute amounts and costs of the rows up to it add up to more than {} minor units, beyond what money sums can hold exactly; check the amounts and input.amount_decimals",
            source::normalize::MONEY_ABS_LIMIT
        )));
    }
    if v.reject_ratio > cfg.config.input.max_reject_ratio {
        let mut reasons: Vec<(&String, &u64)> = v.rejects_by_reason.iter().collect();
        reasons.sort_by(|a, b| b.1.cmp(a.1));
        let top: Vec<String> = reasons
            .iter()
            .take(3)
            .map(|(r, n)| format!("{r} ×{n}"))
            .collect();
        let first = v
            .rejects
            .first()
            .map(|r| format!("; first: {} row {} ({})", r.file, r.row, r.reason))
            .unwrap_or_default();
        return Err(Error::Quality(format!(
            "{} of {} rows on or before {as_of} rejected ({:.2}%), above input.max_reject_ratio = {}; reasons: {}{first}",
            v.rows_rejected,
            v.rows_used + v.rows_rejected,
            v.reject_ratio * 100.0,
            cfg.config.input.max_reject_ratio,
            top.join(", ")
        )));
    }
    let (Some(earliest), Some(newest)) = (v.earliest, v.newest) else {
        return Err(Error::Quality(format!(
            "no usable transactions on or before as_of {as_of} ({} rows read, {} after as_of, {} rejected); check --as-of and the input paths",
            v.rows_read, v.rows_after_as_of, v.rows_rejected
        )));
    };
    let newest_day = crate::time::local_micros_to_date(newest);
    let stale_days = (as_of - newest_day).num_days();
    let max_stale = cfg.config.input.max_staleness_days;
    if max_stale > 0 && stale_days > max_stale as i64 {
        return Err(Error::Quality(format!(
            "stale input: the newest transaction on or before as_of {as_of} is from {newest_day}, {stale_days} days earlier, more than input.max_staleness_days = {max_stale}; check that the export is current"
        )));
    }
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

/// The tables of one date, computed and not yet published.
struct Computed {
    as_of: NaiveDate,
    view: DateView,
    tables: metrics::Tables,
    /// The tables to publish.
    selected: TableSet,
    /// The customers table as files already written (a spilled run), instead of `tables`'.
    customer_files: Option<Vec<sink::PartFile>>,
    timings: Timings,
    started: chrono::DateTime<Utc>,
    t0: Instant,
}

/// The customer partitions of a spilled run: each is read back from disk and built into orders
/// (for the second pass, again), the next one read while the current one is folded.
struct SpilledParts<'a> {
    spill: &'a source::spill::Spill,
    /// Customers per partition (at most).
    n_local: usize,
    n_dims: usize,
    seg_rank: Vec<Vec<u32>>,
}

impl compute::Partitions for SpilledParts<'_> {
    fn count(&self) -> usize {
        self.spill.partitions()
    }

    fn each(
        &self,
        cutoffs: &[i64],
        f: &mut (dyn FnMut(usize, &orders::Orders) -> Result<()> + Send),
    ) -> Result<()> {
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
fn compute_dates(
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
    let spilled = ing.spill.as_ref().map(|spill| SpilledParts {
        spill,
        n_local: ing.customers.len().div_ceil(spill.partitions()),
        n_dims: ing.segments.len(),
        seg_rank: ing.segment_ranks(),
    });
    let in_memory = compute::InMemory(&prep.orders);
    let parts: &dyn compute::Partitions = match &spilled {
        Some(s) => s,
        None => &in_memory,
    };
    // An order's time is its earliest line's, so the earliest order is the earliest line.
    let earliest = match &ing.spill {
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
        let spill = ing.spill.as_ref().expect("partitions come from a spill");
        let path = spill
            .dir()
            .join(format!("customers-{}-{p:05}.parquet", as_of_s[d]));
        let bytes = sink::parquet::write(
            &path,
            &batch,
            &sink::parquet::FileMeta::for_table("customers", &opts),
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
            selected.has("customers"),
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
            Computed {
                as_of,
                tables: m.tables(ctx, &view.rejects, customers),
                view,
                selected,
                customer_files: (count > 1).then_some(files),
                timings: timings.clone(),
                started,
                t0,
            }
        })
        .collect())
}

/// Dates of a spilled backfill computed together: as many as keep their RFM measures within a
/// quarter of the memory limit (a partition is sized to another quarter).
fn spilled_batch(cfg: &Validated, n_customers: usize) -> usize {
    let per_date = (n_customers as u64 * compute::KEY_BYTES_PER_CUSTOMER_AND_DATE).max(1);
    ((memory_limit(cfg) / 4 / per_date) as usize).max(1)
}

fn publish_options<'a>(cfg: &Validated, as_of: &'a str, run_id: &'a str) -> PublishOptions<'a> {
    PublishOptions {
        as_of,
        run_id,
        zstd_level: cfg.config.output.zstd_level,
        row_group_rows: cfg.config.output.row_group_rows,
    }
}

/// Computes every table for one date and publishes it with its manifest.
#[allow(clippy::too_many_arguments)]
fn publish_date(
    cfg: &Validated,
    prep: &Prepared,
    lock: &lock::LockGuard,
    as_of: NaiveDate,
    as_of_source: &str,
    run_id: &str,
    view: DateView,
    selected: TableSet,
) -> Result<RunSummary> {
    let computed = compute_dates(cfg, prep, vec![(as_of, view)], run_id, selected)?.remove(0);
    publish_computed(cfg, prep, lock, computed, as_of_source, run_id)
}

/// Writes one date's tables and then its manifest, while this run's lock lease holds.
fn publish_computed(
    cfg: &Validated,
    prep: &Prepared,
    lock: &lock::LockGuard,
    computed: Computed,
    as_of_source: &str,
    run_id: &str,
) -> Result<RunSummary> {
    crate::cancel::check()?;
    lock.check()?;
    let Computed {
        as_of,
        view,
        tables,
        selected,
        customer_files,
        mut timings,
        started,
        t0,
    } = computed;
    let ing = &prep.ingested;
    let as_of_s = as_of.format("%Y-%m-%d").to_string();
    let data: Vec<(&'static str, TableData)> = tables
        .iter()
        .into_iter()
        .filter(|(name, _)| selected.has(name))
        .map(|(name, batch)| match (&customer_files, name) {
            (Some(files), "customers") => (name, TableData::Files(files)),
            _ => (name, TableData::Batch(batch)),
        })
        .collect();
    // Tables left out keep their partition of this date as the previous manifest lists it.
    let kept = if selected == TableSet::ALL {
        Vec::new()
    } else {
        sink::kept_tables(&prep.output, &as_of_s, |name| !selected.has(name))
    };
    let staged = timings.time("write", || {
        sink::stage(&prep.output, &publish_options(cfg, &as_of_s, run_id), &data)
    })?;
    timings
        .0
        .push(("date_total".into(), t0.elapsed().as_millis() as u64));
    let c = &cfg.config;
    let manifest = Manifest {
        run_id: run_id.to_string(),
        job: "customer-value".into(),
        job_version: env!("CARGO_PKG_VERSION").into(),
        config_hash: cfg.hash.clone(),
        as_of: as_of_s.clone(),
        as_of_source: as_of_source.into(),
        status: "complete".into(),
        started_at: started.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        finished_at: Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        settings: serde_json::json!({
            "period": c.metrics.period.to_string(),
            "churn_window_days": c.metrics.churn_window_days,
            "timezone": c.metrics.timezone,
            "margin": c.metrics.margin,
            "segment_assignment": c.metrics.segment_assignment,
            "segments": c.input.columns.segments,
            "amount_decimals": c.input.amount_decimals,
            "has_cost": ing.has_cost,
        }),
        inputs: view.files,
        rows_read: view.rows_read,
        rows_used: view.rows_used,
        rows_rejected: view.rows_rejected,
        rows_after_as_of: view.rows_after_as_of,
        reject_ratio: view.reject_ratio,
        rejects_by_reason: view.rejects_by_reason,
        warnings: prep.warnings.clone(),
        newest_transaction_at: view.newest.map(|local| {
            let utc = Zone::new(cfg.tz).local_to_utc(local);
            chrono::DateTime::from_timestamp_micros(utc)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_default()
        }),
        customers: tables.n_customers,
        orders: tables.orders,
        tables: staged.tables().iter().cloned().chain(kept).collect(),
        timings_ms: timings.0.clone(),
    };
    if let Err(e) = lock.check() {
        staged.abandon();
        return Err(e.into());
    }
    let manifest_path = staged.finish(&as_of_s, run_id, &manifest)?;
    info!(manifest = %manifest_path, "Partition published.");
    Ok(RunSummary {
        manifest_path,
        manifest,
    })
}

/// Runs the job for one as_of date and publishes every table and the manifest.
pub fn run(cfg: &Validated, opts: &RunOptions) -> Result<RunSummary> {
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
    let view = date_views(&prep.ingested, &[cutoff]).remove(0);
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
    if ing.spill.is_some() {
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

/// The as_of dates of a backfill: every end of a `every` period within [from, to].
pub fn backfill_dates(from: NaiveDate, to: NaiveDate, every: Option<Period>) -> Vec<NaiveDate> {
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
pub fn backfill(
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
    let views = date_views(&prep.ingested, &cutoffs);
    let problems: Vec<String> = dates
        .iter()
        .zip(&views)
        .filter_map(|(d, v)| {
            check(cfg, &prep.ingested, *d, v)
                .err()
                .map(|e| e.to_string())
        })
        .collect();
    if !problems.is_empty() {
        return Err(Error::Quality(format!(
            "backfill not started, {} of {} dates fail the data checks: {}",
            problems.len(),
            dates.len(),
            problems.join(" | ")
        )));
    }
    build_orders(&mut prep, &cutoffs);
    crate::cancel::check()?;
    let lock = lock::acquire(&prep.output, &run_id, cfg, opts.force_unlock)?;
    let bar = source::normalize::progress_bar(
        opts.progress,
        dates.len() as u64,
        "backfill [{bar:30}] {pos}/{len} dates, last {msg} ({elapsed})",
    );
    // A two-stage pipeline: the next dates' tables are computed while the previous ones are
    // written and published (fsyncs and renames leave the CPUs idle otherwise). Without the
    // customers table, two dates are computed at once: each date's fold is parallel, but its
    // merges, RFM keys and small tables are not, and the other date fills those gaps (36 month
    // ends of the 10M-row benchmark: 14.3/13.5 s → 13.1/12.8 s). With it, encoding the
    // customers table already keeps the CPUs busy (no gain measured) and two dates' rows and
    // tables would be held at once, so one date at a time. (A spilled backfill takes its own
    // path below.) Each stage runs in its date's span, so log lines carry run_id and as_of on
    // whichever thread runs them.
    let at_once = if !opts.tables.has("customers") { 2 } else { 1 };
    let mut out = Vec::new();
    let mut pending: Vec<(tracing::Span, Computed)> = Vec::new();
    let publish = |(span, c): (tracing::Span, Computed)| -> Result<RunSummary> {
        let d = c.as_of;
        let summary =
            span.in_scope(|| publish_computed(cfg, &prep, &lock, c, "backfill", &run_id))?;
        if let Some(b) = &bar {
            b.inc(1);
            b.set_message(d.to_string());
        }
        Ok(summary)
    };
    let compute = |(d, view, span): (NaiveDate, DateView, tracing::Span)| {
        let computed = span.in_scope(|| {
            compute_dates(cfg, &prep, vec![(d, view)], &run_id, opts.tables)
                .map(|mut c| c.remove(0))
        });
        computed.map(|c| (span, c))
    };
    if prep.ingested.spill.is_some() {
        // Spilled lines: the dates of a batch are computed together, in two passes over the
        // partitions for the whole batch instead of two per date.
        let batch = spilled_batch(cfg, prep.ingested.customers.len()).min(dates.len());
        info!(
            dates_per_pass = batch,
            "Spilled backfill: computing dates together."
        );
        let mut work = dates.iter().copied().zip(views);
        loop {
            let chunk: Vec<(NaiveDate, DateView)> = work.by_ref().take(batch).collect();
            if chunk.is_empty() {
                break;
            }
            for c in compute_dates(cfg, &prep, chunk, &run_id, opts.tables)? {
                let span = info_span!("as_of", as_of = %c.as_of);
                out.push(publish((span, c))?);
            }
        }
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        return Ok(out);
    }
    // Spans are made here, inside the backfill's span, which they then carry to other threads.
    let mut work = dates
        .iter()
        .copied()
        .zip(views)
        .map(|(d, view)| (d, view, info_span!("as_of", as_of = %d)));
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
                    .map(publish)
                    .collect::<Result<Vec<_>>>()
            },
        );
        out.extend(published?);
        pending = computed.into_iter().collect::<Result<Vec<_>>>()?;
    }
    for p in pending {
        out.push(publish(p)?);
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    Ok(out)
}

/// What `validate` found: every row parsed with the run's rules, as of one date.
#[derive(Debug, Clone)]
pub struct Validation {
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
pub fn validate(cfg: &Validated, as_of: Option<NaiveDate>) -> Result<Validation> {
    let as_of = as_of.unwrap_or_else(|| default_as_of(cfg.tz));
    let cutoff = date_to_local_micros(as_of + Duration::days(1));
    let prep = prepare(cfg, &[cutoff], false)?;
    let view = date_views(&prep.ingested, &[cutoff]).remove(0);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    fn planned(engine: &str, files: &[(&str, crate::config::InputFormat, u64)]) -> usize {
        let text = format!(
            "[input]\npaths = [\"x\"]\n[input.columns]\ncustomer_id = \"c\"\nts = \"t\"\namount = \"a\"\n[engine]\n{engine}\n"
        );
        let cfg = crate::config::Config::from_toml(&text)
            .unwrap()
            .validate()
            .unwrap();
        let files: Vec<source::InputFile> = files
            .iter()
            .map(|&(path, format, mib)| source::InputFile {
                path: path.into(),
                display: path.into(),
                remote: false,
                format,
                hive: Vec::new(),
                size: mib << 20,
                mtime: None,
                etag: None,
            })
            .collect();
        plan_partitions(&cfg, &files)
    }

    #[test]
    fn partitions_follow_the_input_size_and_the_memory_limit() {
        use crate::config::InputFormat::{Csv, Parquet};
        // 100 MiB of Parquet needs 100 × 13 = 1300 MiB: within a 2048 MiB limit, in memory.
        assert_eq!(
            planned("memory_limit_mib = 2048", &[("a.parquet", Parquet, 100)]),
            1
        );
        // 300 MiB of CSV + 100 MiB of Parquet need 900 + 1300 = 2200 MiB > 2048: partitions of
        // at most 2048 / 4 = 512 MiB, so ceil(2200 / 512) = 5.
        let two = [("a.csv", Csv, 300), ("b.parquet", Parquet, 100)];
        assert_eq!(planned("memory_limit_mib = 2048", &two), 5);
        // A compressed CSV needs 5 × more: 100 MiB of .csv.gz = 1500 MiB; limit 1024 → 256 MiB
        // partitions → ceil(1500 / 256) = 6.
        assert_eq!(
            planned("memory_limit_mib = 1024", &[("a.csv.gz", Csv, 100)]),
            6
        );
        // A configured number wins, whatever the sizes; 1 keeps everything in memory.
        assert_eq!(planned("partitions = 7", &[("a.csv", Csv, 1)]), 7);
        assert_eq!(planned("partitions = 1\nmemory_limit_mib = 1", &two), 1);
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
