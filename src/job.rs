//! The job: wires the stages (discover → read → orders → metrics → publish → manifest) for `run`
//! and checks inputs for `validate`. Each stage is timed; timings go to the log and the manifest.

use std::path::Path;
use std::time::Instant;

use chrono::{Duration, NaiveDate, Utc};
use tracing::{info, info_span};

use crate::config::Validated;
use crate::metrics::{self, Ctx};
use crate::orders;
use crate::sink::manifest::Manifest;
use crate::sink::{self, PublishOptions};
use crate::source::{self, IngestOptions};
use crate::storage;
use crate::time::{date_to_local_micros, Zone};
use crate::{Error, Result};

/// How this run behaves (flags, not pipeline description).
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// As-of date; None = yesterday in the configured timezone.
    pub as_of: Option<NaiveDate>,
    /// Show a progress bar on a terminal.
    pub progress: bool,
}

/// What a successful run reports.
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

/// Runs the job for one as_of date and publishes every table and the manifest.
pub fn run(cfg: &Validated, opts: &RunOptions) -> Result<RunSummary> {
    let started = Utc::now();
    let t0 = Instant::now();
    let (as_of, as_of_source) = match opts.as_of {
        Some(d) => (d, "flag"),
        None => (default_as_of(cfg.tz), "default"),
    };
    let run_id = new_run_id();
    let span = info_span!("run", %run_id, %as_of);
    let _g = span.enter();
    info!(as_of_source, "Starting run.");
    let mut timings = Timings(Vec::new());
    let zone = Zone::new(cfg.tz);

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
    // Read the small spend file before the large inputs, so a bad one fails fast.
    let spend = cfg
        .config
        .spend
        .as_ref()
        .map(|sc| source::spend::read(Path::new(&sc.path), cfg.config.input.amount_decimals))
        .transpose()?;
    let cutoff_local = date_to_local_micros(as_of + Duration::days(1));
    let ingested = timings.time("read", || {
        source::ingest(
            &files,
            cfg,
            IngestOptions {
                cutoff_local,
                zone,
                progress: opts.progress,
            },
        )
    })?;
    let st = &ingested.stats;
    info!(
        rows_read = st.rows_read,
        rows_used = st.rows_used,
        rows_rejected = st.rows_rejected,
        rows_after_as_of = st.rows_after_as_of,
        "Read all inputs."
    );
    let in_window = st.rows_read - st.rows_after_as_of;
    let reject_ratio = if in_window == 0 {
        0.0
    } else {
        st.rows_rejected as f64 / in_window as f64
    };
    if reject_ratio > cfg.config.input.max_reject_ratio {
        let mut reasons: Vec<(&String, &u64)> = st.rejects_by_reason.iter().collect();
        reasons.sort_by(|a, b| b.1.cmp(a.1));
        let top: Vec<String> = reasons
            .iter()
            .take(3)
            .map(|(r, n)| format!("{r} ×{n}"))
            .collect();
        let first = ingested
            .rejects
            .first()
            .map(|r| format!("; first: {} row {} ({})", r.file, r.row, r.reason))
            .unwrap_or_default();
        return Err(Error::Quality(format!(
            "{} of {} rows on or before {as_of} rejected ({:.2}%), above input.max_reject_ratio = {}; reasons: {}{first}",
            st.rows_rejected,
            in_window,
            reject_ratio * 100.0,
            cfg.config.input.max_reject_ratio,
            top.join(", ")
        )));
    }
    if st.rows_used == 0 {
        return Err(Error::Quality(format!(
            "no usable transactions on or before as_of {as_of} ({} rows read, {} after as_of, {} rejected); check --as-of and the input paths",
            st.rows_read, st.rows_after_as_of, st.rows_rejected
        )));
    }

    let n_dims = ingested.segments.len();
    let orders = timings.time("orders", || {
        orders::build(&ingested.lines, ingested.customers.len(), n_dims)
    });
    let mut ctx = Ctx::new(cfg, as_of, &ingested, &orders);
    ctx.spend = spend.map(|s| s.by_period(&ctx.frame));
    let tables = timings.time("metrics", || metrics::compute(&ingested, &orders, &ctx));

    let as_of_s = as_of.format("%Y-%m-%d").to_string();
    let staged = timings.time("write", || {
        sink::stage(
            &output,
            &PublishOptions {
                as_of: &as_of_s,
                run_id: &run_id,
                zstd_level: cfg.config.output.zstd_level,
                row_group_rows: cfg.config.output.row_group_rows,
            },
            &tables.iter(),
        )
    })?;
    timings
        .0
        .push(("total".into(), t0.elapsed().as_millis() as u64));
    let c = &cfg.config;
    let manifest = Manifest {
        run_id: run_id.clone(),
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
            "has_cost": ingested.has_cost,
        }),
        inputs: st.files.clone(),
        rows_read: st.rows_read,
        rows_used: st.rows_used,
        rows_rejected: st.rows_rejected,
        rows_after_as_of: st.rows_after_as_of,
        reject_ratio,
        rejects_by_reason: st.rejects_by_reason.clone(),
        customers: orders.n_customers() as u64,
        orders: orders.orders.len() as u64,
        tables: staged.tables().iter().cloned().collect(),
        timings_ms: timings.0.clone(),
    };
    let manifest_path = staged.finish(&as_of_s, &run_id, &manifest)?;
    info!(manifest = %manifest_path, "Run complete.");
    Ok(RunSummary {
        manifest_path,
        manifest,
    })
}

/// One input file's check result for `validate`.
#[derive(Debug, Clone)]
pub struct Checked {
    pub path: String,
    pub format: String,
    pub size: u64,
}

/// Checks that every input is readable and has the mapped columns; writes nothing.
pub fn validate(cfg: &Validated) -> Result<Vec<Checked>> {
    let files = source::discover(
        &cfg.config.input.paths,
        cfg.config.input.format,
        &cfg.config.storage,
    )?;
    let mut out = Vec::new();
    if let Some(sc) = &cfg.config.spend {
        source::spend::read(Path::new(&sc.path), cfg.config.input.amount_decimals)?;
    }
    for f in &files {
        source::read::scan(f, cfg)?;
        out.push(Checked {
            path: f.display.clone(),
            format: f.format.to_string(),
            size: f.size,
        });
    }
    Ok(out)
}
