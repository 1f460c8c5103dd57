//! `customer_value._core`: the core's computation for Python. Arrow crosses the boundary through
//! the C data interface (no copy); the work runs without the GIL on a thread pool of this
//! process (see [`pool`]). The Python package (`python/customer_value`) wraps it.

mod output;

use std::sync::{Mutex, OnceLock};

use arrow::array::RecordBatch;
use arrow::pyarrow::{PyArrowType, Table as PyTable};
use chrono::NaiveDate;

use customer_value_core::{api, ApiError};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

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

    /// Pass 1 of a spread run (see the core's `api::spread`): takes the customer rows out of
    /// `partial` and returns its census, as bytes.
    fn census<'py>(&self, py: Python<'py>, partial: &mut Partial) -> PyResult<Bound<'py, PyBytes>> {
        let census = run(py, || self.inner.census(&mut partial.inner))?;
        Ok(PyBytes::new(py, &census.to_bytes()))
    }

    /// The plan of pass 2 from the merged partial (taken a census of) and every partition's
    /// census: fits the models. Bytes, the same for every task.
    fn plan<'py>(
        &self,
        py: Python<'py>,
        partial: &Partial,
        censuses: Vec<Vec<u8>>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let plan = run(py, || -> Result<api::Plan, ApiError> {
            let mut census = api::Census::default();
            for c in &censuses {
                census.merge(api::Census::from_bytes(c)?);
            }
            self.inner.plan(&partial.inner, &census)
        })?
        .map_err(py_err)?;
        Ok(PyBytes::new(py, &plan.to_bytes()))
    }

    /// Pass 2: `partial` (the partition folded again) scored against `plan`: its customers
    /// (a pyarrow.RecordBatch) and its ltv sums (bytes).
    fn score<'py>(
        &self,
        py: Python<'py>,
        plan: &[u8],
        partial: &Partial,
    ) -> PyResult<(Py<PyAny>, Bound<'py, PyBytes>)> {
        let p = partial.inner.clone();
        let scored = run(py, || {
            api::Plan::from_bytes(plan).and_then(|plan| self.inner.score(&plan, p))
        })?
        .map_err(py_err)?;
        Ok((
            PyArrowType(scored.customers).into_pyobject(py)?.unbind(),
            PyBytes::new(py, &scored.sums.to_bytes()),
        ))
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

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<Computation>()?;
    m.add_class::<Partial>()?;
    m.add_function(wrap_pyfunction!(set_threads, m)?)?;
    m.add_function(wrap_pyfunction!(toml_from_json, m)?)?;
    m.add_function(wrap_pyfunction!(config_json, m)?)?;
    m.add_class::<output::Output>()?;
    m.add_function(wrap_pyfunction!(output::stage_part, m)?)?;
    m.add("Error", py.get_type::<Error>())?;
    m.add("ConfigError", py.get_type::<ConfigError>())?;
    m.add("InputError", py.get_type::<InputError>())?;
    m.add("DataError", py.get_type::<DataError>())?;
    Ok(())
}
