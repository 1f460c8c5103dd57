//! Publishing from Python (a Spark driver): the output's lock held for the whole run, each
//! date's tables published like a CLI run's, and the customers files a spread run's tasks
//! staged (`stage_part`) published as they are.

use std::collections::BTreeMap;
use std::path::PathBuf;

use customer_value_core::config::Validated;
use customer_value_core::source::{quality, FileStats};
use customer_value_core::{api, Table};
use customer_value_store::storage::Location;
use customer_value_store::{sink, storage};
use pyo3::prelude::*;

use super::{py_err, run, Computation, Error, Partial};

fn validated(config: &str) -> PyResult<Validated> {
    api::Config::from_toml(config)
        .and_then(|c| c.validate_lines())
        .map_err(|e| py_err(e.into()))
}

fn err(e: impl std::fmt::Display) -> PyErr {
    Error::new_err(e.to_string())
}

/// The output of a run (`[output]` of its configuration), locked for the run from the moment
/// it is opened until `close`: publishes dates and removes what the run's tasks staged.
#[pyclass(module = "customer_value._core")]
pub struct Output {
    cfg: Validated,
    output: Location,
    run_id: String,
    lock: Option<sink::lock::LockGuard>,
}

/// One date to publish: its computation and merged partial, and for a spread run its plan,
/// merged ltv sums and the customers files its tasks staged.
struct Date {
    job: api::Computation,
    partial: api::Partial,
    planned: Option<(api::Plan, api::LtvSums, Vec<sink::PartFile>)>,
}

type Planned = (Vec<u8>, Vec<Vec<u8>>, Vec<(String, u64, u64)>);

#[pymethods]
impl Output {
    /// Opens the output of `config` for run `run_id`: takes its lock (finishing or undoing
    /// what dead runs left, see the CLI's `--force-unlock`).
    #[new]
    #[pyo3(signature = (config, run_id, force_unlock = false))]
    fn new(py: Python<'_>, config: &str, run_id: &str, force_unlock: bool) -> PyResult<Self> {
        let cfg = validated(config)?;
        if sink::DeltaSettings::of(&cfg).is_some() {
            return Err(super::ConfigError::new_err(
                "output.format = \"delta\": the Python package and Spark runs write Parquet only; \
                 the customer-value CLI writes Delta tables",
            ));
        }
        let (output, lock) = run(py, || {
            let output =
                storage::open(&cfg.config.output.path, &cfg.config.storage).map_err(err)?;
            let lock = sink::lock::acquire(&output, run_id, &cfg, force_unlock).map_err(err)?;
            Ok::<_, PyErr>((output, lock))
        })??;
        Ok(Output {
            cfg,
            output,
            run_id: run_id.to_string(),
            lock: Some(lock),
        })
    }

    /// Publishes each date like a CLI run: every table staged and swapped in (or uploaded),
    /// then its manifest. `dates`: (as_of, merged partial, planned) where planned is None or,
    /// for a spread run, (plan, every partition's ltv sums, the staged customers files as
    /// (path, rows, bytes)). `inputs` is the JSON list of the input files (url, format, size,
    /// mtime) whose rows the partials counted by url. Every date is checked before anything is
    /// written. Returns the manifests' paths.
    fn publish(
        &self,
        py: Python<'_>,
        config: &str,
        dates: Vec<(String, PyRef<'_, Partial>, Option<Planned>)>,
        inputs: &str,
        started_at: &str,
        timings: Vec<(String, u64)>,
    ) -> PyResult<Vec<String>> {
        let files: Vec<FileStats> =
            serde_json::from_str(inputs).map_err(|e| Error::new_err(format!("inputs: {e}")))?;
        let mut ready = Vec::new();
        for (as_of, p, planned) in dates {
            let job = Computation::new(config, &as_of)?.inner;
            job.check(&p.inner).map_err(py_err)?;
            let planned = match planned {
                None => None,
                Some((plan, sums, staged)) => {
                    let plan = api::Plan::from_bytes(&plan).map_err(py_err)?;
                    let mut merged: Option<api::LtvSums> = None;
                    for s in &sums {
                        let s = api::LtvSums::from_bytes(s).map_err(py_err)?;
                        match merged.as_mut() {
                            Some(m) => m.merge(&s).map_err(py_err)?,
                            None => merged = Some(s),
                        }
                    }
                    let Some(merged) = merged else {
                        return Err(Error::new_err(format!(
                            "as_of {as_of}: no partition's ltv sums to publish"
                        )));
                    };
                    let staged = staged
                        .into_iter()
                        .map(|(path, rows, bytes)| sink::PartFile {
                            path: PathBuf::from(path),
                            rows,
                            bytes,
                        })
                        .collect();
                    Some((plan, merged, staged))
                }
            };
            ready.push(Date {
                job,
                partial: p.inner.clone(),
                planned,
            });
        }
        let Some(lock) = &self.lock else {
            return Err(Error::new_err("the output was closed"));
        };
        run(py, || {
            publish_dates(
                &self.cfg,
                &self.output,
                lock,
                ready,
                files,
                &self.run_id,
                started_at,
                timings,
            )
        })?
        .map_err(err)
    }

    /// Removes the files the run's tasks staged and releases the lock (also when the run
    /// failed). Never raises: returns what could not be removed (a straggling task attempt may
    /// still be writing), which the next run's lock removes; None when all went.
    fn close(&mut self, py: Python<'_>) -> Option<String> {
        self.lock.as_ref()?;
        let removed = run(py, || sink::spread::discard(&self.output, &self.run_id));
        self.lock = None;
        match removed {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(format!("{e} (the next run removes it)")),
            Err(e) => Some(e.to_string()),
        }
    }
}

/// In a task of a spread run: writes `batch` (this attempt's rows of `table`) as the Parquet
/// file `name` under the run's task staging folder of the output. Returns (path relative to
/// the output root, rows, bytes), for the driver's `Output.publish`.
#[pyfunction]
pub fn stage_part(
    py: Python<'_>,
    config: &str,
    run_id: &str,
    as_of: &str,
    table: &str,
    name: &str,
    batch: arrow::pyarrow::PyArrowType<arrow::array::RecordBatch>,
) -> PyResult<(String, u64, u64)> {
    let cfg = validated(config)?;
    let table = Table::ALL
        .into_iter()
        .find(|t| t.name() == table)
        .ok_or_else(|| Error::new_err(format!("stage_part: no table '{table}'")))?;
    let batch = batch.0;
    let part = run(py, || {
        let output = storage::open(&cfg.config.output.path, &cfg.config.storage).map_err(err)?;
        let opts = sink::PublishOptions {
            as_of,
            run_id,
            zstd_level: cfg.config.output.zstd_level,
            row_group_rows: cfg.config.output.row_group_rows,
            delta: None,
        };
        sink::spread::stage_part(&output, &opts, table, &batch, name).map_err(err)
    })??;
    Ok((part.path.display().to_string(), part.rows, part.bytes))
}

#[allow(clippy::too_many_arguments)]
fn publish_dates(
    cfg: &Validated,
    output: &Location,
    lock: &sink::lock::LockGuard,
    dates: Vec<Date>,
    files: Vec<FileStats>,
    run_id: &str,
    started_at: &str,
    timings: Vec<(String, u64)>,
) -> Result<Vec<String>, Box<dyn std::error::Error + Send + Sync>> {
    let mut paths = Vec::new();
    for date in dates {
        let t0 = std::time::Instant::now();
        let accounting = date.partial.accounting.clone();
        let earliest = date.partial.earliest;
        let (tables, staged) = match date.planned {
            Some((plan, sums, staged)) => (
                date.job.finish_planned(date.partial, &plan, sums)?,
                Some(staged),
            ),
            None => (date.job.finish(date.partial)?, None),
        };
        let as_of = date.job.as_of().format("%Y-%m-%d").to_string();
        // With predictions off there is no models table: an earlier run's partition of this
        // date is taken out, as the CLI does.
        let predicts = cfg.config.predict.enabled;
        let data: Vec<(Table, sink::TableData<'_>)> = tables
            .iter()
            .filter(|(t, _)| predicts || *t != Table::Models)
            .map(|(t, b)| match (&staged, t) {
                (Some(files), Table::Customers) => (t, sink::TableData::InOutput(files)),
                _ => (t, sink::TableData::Batch(b)),
            })
            .collect();
        let retired: Vec<Table> = if predicts {
            vec![]
        } else {
            vec![Table::Models]
        };
        let opts = sink::PublishOptions {
            as_of: &as_of,
            run_id,
            zstd_level: cfg.config.output.zstd_level,
            row_group_rows: cfg.config.output.row_group_rows,
            delta: None,
        };
        lock.check()?;
        let staged = sink::stage(output, &opts, &data, &retired)?;
        let mut by_reason = BTreeMap::new();
        let mut rejected_in: BTreeMap<&str, u64> = BTreeMap::new();
        for r in &accounting.rejects {
            *by_reason.entry(r.reason.clone()).or_insert(0u64) += 1;
            *rejected_in.entry(r.file.as_str()).or_default() += 1;
        }
        let inputs: Vec<FileStats> = files
            .iter()
            .map(|f| {
                let c = accounting.sources.get(&f.url).copied().unwrap_or_default();
                let rejected = rejected_in.get(f.url.as_str()).copied().unwrap_or(0);
                FileStats {
                    rows_read: c.read,
                    rows_used: c.used,
                    rows_rejected: rejected,
                    rows_after_as_of: c.after_as_of,
                    ..f.clone()
                }
            })
            .collect();
        let view = quality::View {
            rows_read: accounting.rows_read,
            rows_used: accounting.rows_used,
            rows_rejected: accounting.rows_rejected(),
            rows_after_as_of: accounting.rows_after_as_of,
            rejects_by_reason: &by_reason,
            first_reject: None,
            earliest,
            newest: accounting.newest,
        };
        let mut timings = timings.clone();
        timings.push(("date_total".into(), t0.elapsed().as_millis() as u64));
        let zone = customer_value_core::time::Zone::new(cfg.tz);
        let manifest = sink::Manifest {
            run_id: run_id.to_string(),
            job: "customer-value".into(),
            job_version: env!("CARGO_PKG_VERSION").into(),
            config_hash: cfg.hash.clone(),
            as_of: as_of.clone(),
            as_of_source: "flag".into(),
            status: "complete".into(),
            started_at: started_at.to_string(),
            finished_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            settings: cfg.manifest_settings(cfg.config.input.columns.cost.is_some()),
            inputs,
            rows_read: view.rows_read,
            rows_used: view.rows_used,
            rows_rejected: view.rows_rejected,
            rows_after_as_of: view.rows_after_as_of,
            reject_ratio: quality::reject_ratio(&view),
            rejects_by_reason: by_reason.clone(),
            warnings: Vec::new(),
            newest_transaction_at: accounting.newest.map(|local| {
                chrono::DateTime::from_timestamp_micros(zone.local_to_utc(local))
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                    .unwrap_or_default()
            }),
            customers: tables.customers(),
            orders: tables.orders(),
            tables: staged.tables().iter().cloned().collect(),
            timings_ms: timings,
        };
        if let Err(e) = lock.check() {
            staged.abandon();
            return Err(e.into());
        }
        paths.push(staged.finish(&as_of, run_id, &manifest)?);
    }
    Ok(paths)
}
