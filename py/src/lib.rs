//! `customer_value._core`: the core's computation for Python. Arrow crosses the boundary through
//! the C data interface (no copy); the work runs without the GIL on a thread pool of this
//! process (see [`pool`]). The Python package (`python/customer_value`) wraps it.

use std::sync::{Mutex, OnceLock};

use arrow::array::RecordBatch;
use arrow::pyarrow::{PyArrowType, Table as PyTable};
use chrono::NaiveDate;
use std::collections::BTreeMap;

use customer_value_core::config::Validated;
use customer_value_core::source::{quality, FileStats};
use customer_value_core::{api, ApiError, Table};
use customer_value_store::{sink, storage};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

create_exception!(
    customer_value,
    Error,
    PyException,
    "Base of customer_value's errors."
);
create_exception!(
    customer_value,
    ConfigError,
    Error,
    "The configuration is unusable (the message names the key): the CLI's exit 2."
);
create_exception!(
    customer_value,
    InputError,
    Error,
    "The rows or lines cannot be read (a column missing or of a type no rule reads)."
);
create_exception!(
    customer_value,
    DataError,
    Error,
    "The data fail a check (too many rejects, nothing by as_of, stale input): the CLI's exit 3."
);

fn py_err(e: ApiError) -> PyErr {
    let msg = e.to_string();
    match e {
        ApiError::Config(_) | ApiError::Unsupported { .. } => ConfigError::new_err(msg),
        ApiError::MissingColumn { .. } | ApiError::ColumnType { .. } | ApiError::Value { .. } => {
            InputError::new_err(msg)
        }
        ApiError::Quality(_) | ApiError::Overflow => DataError::new_err(msg),
        _ => Error::new_err(msg),
    }
}

/// The thread pool of this process, sized by `set_threads` (default: every core). Built on
/// first use and again in a forked child (a Spark Python worker is forked from a daemon: the
/// parent's threads do not exist in the child), so it is always the calling process's own.
fn pool() -> PyResult<&'static rayon::ThreadPool> {
    static POOL: Mutex<Option<(u32, usize, &'static rayon::ThreadPool)>> = Mutex::new(None);
    let pid = std::process::id();
    let want = *threads().lock().expect("threads setting");
    let mut slot = POOL.lock().expect("pool slot");
    match *slot {
        Some((p, n, pool)) if p == pid && n == want => Ok(pool),
        _ => {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(want)
                .thread_name(|i| format!("customer-value-{i}"))
                .build()
                .map_err(|e| Error::new_err(format!("starting the thread pool: {e}")))?;
            // One pool per (process, size) for the process's life: leaked on purpose, so a
            // pool handed out stays valid.
            let pool: &'static rayon::ThreadPool = Box::leak(Box::new(pool));
            *slot = Some((pid, want, pool));
            Ok(pool)
        }
    }
}

fn threads() -> &'static Mutex<usize> {
    static THREADS: OnceLock<Mutex<usize>> = OnceLock::new();
    THREADS.get_or_init(|| Mutex::new(0))
}

/// Sets the threads the computation uses in this process (0 = every core). In a Spark task,
/// `spark.task.cpus`, so that tasks sharing an executor do not oversubscribe it.
#[pyfunction]
fn set_threads(n: usize) {
    *threads().lock().expect("threads setting") = n;
}

/// Runs `f` without the GIL on this process's pool.
fn run<T: Send>(py: Python<'_>, f: impl FnOnce() -> T + Send) -> PyResult<T> {
    let pool = pool()?;
    Ok(py.detach(|| pool.install(f)))
}

/// A TOML configuration from its JSON form (a Python dict), so both go through the same parser
/// and name a bad key the same way.
#[pyfunction]
fn toml_from_json(json: &str) -> PyResult<String> {
    let value: toml::Value = serde_json::from_str(json)
        .map_err(|e| ConfigError::new_err(format!("config: {e} (nulls have no TOML form)")))?;
    toml::to_string(&value).map_err(|e| ConfigError::new_err(format!("config: {e}")))
}

/// The configuration of TOML text, checked as the library API checks it, as JSON (what a
/// driver needs to read the inputs itself: paths, format, CSV options, columns).
#[pyfunction]
fn config_json(toml_text: &str) -> PyResult<String> {
    let config = api::Config::from_toml(toml_text).map_err(|e| py_err(e.into()))?;
    let checked = config
        .clone()
        .validate_lines()
        .map_err(|e| py_err(e.into()))?;
    serde_json::to_string(&checked.config).map_err(|e| Error::new_err(e.to_string()))
}

/// One as_of date's computation under one configuration (see `customer_value.Computation`).
#[pyclass(frozen, module = "customer_value._core")]
struct Computation {
    inner: api::Computation,
}

fn batches(table: PyTable) -> Vec<RecordBatch> {
    table.into_inner().0
}

fn tables_dict(py: Python<'_>, tables: api::Tables) -> PyResult<Vec<(String, Py<PyAny>)>> {
    tables
        .iter()
        .map(|(t, b)| {
            let table = PyTable::try_new(vec![b.clone()], b.schema())
                .map_err(|e| Error::new_err(e.to_string()))?;
            Ok((
                t.name().to_string(),
                PyArrowType(table).into_pyobject(py)?.unbind(),
            ))
        })
        .collect()
}

#[pymethods]
impl Computation {
    /// `config`: the TOML text of a configuration; `as_of`: YYYY-MM-DD.
    #[new]
    fn new(config: &str, as_of: &str) -> PyResult<Self> {
        let as_of = NaiveDate::parse_from_str(as_of, "%Y-%m-%d").map_err(|e| {
            ConfigError::new_err(format!("as_of: '{as_of}' is not a date YYYY-MM-DD ({e})"))
        })?;
        Ok(Computation {
            inner: api::Computation::from_toml(config, as_of).map_err(py_err)?,
        })
    }

    #[getter]
    fn as_of(&self) -> String {
        self.inner.as_of().to_string()
    }

    /// Folds input rows (every row of the partition's customers) into a partial: `sources`
    /// is a list of (source name, first row number, pyarrow.Table) whose columns are named as
    /// `input.columns` maps them; each row is checked by the CLI's rules.
    fn fold_rows(
        &self,
        py: Python<'_>,
        sources: Vec<(String, u64, PyArrowType<PyTable>)>,
    ) -> PyResult<Partial> {
        let owned: Vec<(String, u64, Vec<RecordBatch>)> = sources
            .into_iter()
            .map(|(name, first, t)| (name, first, batches(t.0)))
            .collect();
        let rows: Vec<api::Rows<'_>> = owned
            .iter()
            .map(|(source, first_row, batches)| api::Rows {
                source,
                first_row: *first_row,
                batches,
            })
            .collect();
        let inner = run(py, || self.inner.fold_rows(&rows))?.map_err(py_err)?;
        Ok(Partial { inner })
    }

    /// Folds normalized lines (the library API's lines: amounts in minor units).
    fn fold_lines(&self, py: Python<'_>, lines: PyArrowType<PyTable>) -> PyResult<Partial> {
        let lines = batches(lines.0);
        let inner = run(py, || self.inner.fold(&lines))?.map_err(py_err)?;
        Ok(Partial { inner })
    }

    /// The CLI's data checks on the merged partial (raises DataError).
    fn check(&self, partial: &Partial) -> PyResult<()> {
        self.inner.check(&partial.inner).map_err(py_err)
    }

    /// Every table of the merged partial, as (name, pyarrow.Table) pairs in publish order.
    fn finish(&self, py: Python<'_>, partial: &Partial) -> PyResult<Vec<(String, Py<PyAny>)>> {
        let p = partial.inner.clone();
        let tables = run(py, || self.inner.finish(p))?.map_err(py_err)?;
        tables_dict(py, tables)
    }
}

/// What one partition contributes (see `customer_value.Partial`).
#[pyclass(module = "customer_value._core")]
struct Partial {
    inner: api::Partial,
}

#[pymethods]
impl Partial {
    /// Adds `other` (another partition of the same computation) to this partial.
    fn merge(&mut self, other: &Partial) -> PyResult<()> {
        self.inner.merge(other.inner.clone()).map_err(py_err)
    }

    /// Customers in this partial.
    #[getter]
    fn customers(&self) -> usize {
        self.inner.customers()
    }

    /// Row accounting: rows read, used, rejected and after as_of.
    #[getter]
    fn accounting(&self) -> (u64, u64, u64, u64) {
        let a = &self.inner.accounting;
        (
            a.rows_read,
            a.rows_used,
            a.rows_rejected(),
            a.rows_after_as_of,
        )
    }

    /// The partial as three pyarrow.RecordBatch: sums, customers, rejects.
    fn to_arrow(&self, py: Python<'_>) -> PyResult<(Py<PyAny>, Py<PyAny>, Py<PyAny>)> {
        let b = self.inner.to_arrow();
        let out = |r: RecordBatch| -> PyResult<Py<PyAny>> {
            Ok(PyArrowType(r).into_pyobject(py)?.unbind())
        };
        Ok((out(b.sums)?, out(b.customers)?, out(b.rejects)?))
    }

    /// A partial back from the batches of `to_arrow`.
    #[staticmethod]
    fn from_arrow(
        sums: PyArrowType<RecordBatch>,
        customers: PyArrowType<RecordBatch>,
        rejects: PyArrowType<RecordBatch>,
    ) -> PyResult<Partial> {
        let batches = api::PartialBatches {
            sums: sums.0,
            customers: customers.0,
            rejects: rejects.0,
        };
        Ok(Partial {
            inner: api::Partial::from_arrow(&batches).map_err(py_err)?,
        })
    }
}

/// Publishes the merged partial of each date like a CLI run: under the output's lock, every
/// table of a date staged and swapped in (or uploaded), then its manifest. `inputs` is the JSON
/// list of the input files (url, format, size, mtime) whose rows the partials counted by url.
/// Every date is checked before anything is written. Returns the manifests' paths.
#[pyfunction]
#[pyo3(signature = (config, partials, inputs, run_id, started_at, timings, force_unlock = false))]
#[allow(clippy::too_many_arguments)]
fn publish(
    py: Python<'_>,
    config: &str,
    partials: Vec<(String, PyRef<'_, Partial>)>,
    inputs: &str,
    run_id: &str,
    started_at: &str,
    timings: Vec<(String, u64)>,
    force_unlock: bool,
) -> PyResult<Vec<String>> {
    let files: Vec<FileStats> =
        serde_json::from_str(inputs).map_err(|e| Error::new_err(format!("inputs: {e}")))?;
    let mut dates = Vec::new();
    for (as_of, p) in &partials {
        let job = Computation::new(config, as_of)?;
        job.inner.check(&p.inner).map_err(py_err)?;
        dates.push((job, p.inner.clone()));
    }
    let cfg = api::Config::from_toml(config)
        .and_then(|c| c.validate_lines())
        .map_err(|e| py_err(e.into()))?;
    run(py, move || {
        publish_dates(
            &cfg,
            dates,
            files,
            run_id,
            started_at,
            timings,
            force_unlock,
        )
    })?
    .map_err(|e| Error::new_err(e.to_string()))
}

fn publish_dates(
    cfg: &Validated,
    dates: Vec<(Computation, api::Partial)>,
    files: Vec<FileStats>,
    run_id: &str,
    started_at: &str,
    timings: Vec<(String, u64)>,
    force_unlock: bool,
) -> Result<Vec<String>, Box<dyn std::error::Error + Send + Sync>> {
    let output = storage::open(&cfg.config.output.path, &cfg.config.storage)?;
    let lock = sink::lock::acquire(&output, run_id, cfg, force_unlock)?;
    let mut paths = Vec::new();
    for (job, partial) in dates {
        let t0 = std::time::Instant::now();
        let accounting = partial.accounting.clone();
        let earliest = partial.earliest;
        let tables = job.inner.finish(partial)?;
        let as_of = job.inner.as_of().format("%Y-%m-%d").to_string();
        // With predictions off there is no models table: an earlier run's partition of this
        // date is taken out, as the CLI does.
        let predicts = cfg.config.predict.enabled;
        let data: Vec<(Table, sink::TableData<'_>)> = tables
            .iter()
            .filter(|(t, _)| predicts || *t != Table::Models)
            .map(|(t, b)| (t, sink::TableData::Batch(b)))
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
        };
        lock.check()?;
        let staged = sink::stage(&output, &opts, &data, &retired)?;
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
            customers: tables.get(Table::Customers).num_rows() as u64,
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
    drop(lock);
    Ok(paths)
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<Computation>()?;
    m.add_class::<Partial>()?;
    m.add_function(wrap_pyfunction!(set_threads, m)?)?;
    m.add_function(wrap_pyfunction!(toml_from_json, m)?)?;
    m.add_function(wrap_pyfunction!(config_json, m)?)?;
    m.add_function(wrap_pyfunction!(publish, m)?)?;
    m.add("Error", py.get_type::<Error>())?;
    m.add("ConfigError", py.get_type::<ConfigError>())?;
    m.add("InputError", py.get_type::<InputError>())?;
    m.add("DataError", py.get_type::<DataError>())?;
    Ok(())
}
