//! Test helpers: a temp workspace with a config, running the real binary, reading Parquet.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use arrow::array::{
    Array, AsArray, BooleanArray, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{Date32Type, Float64Type, Int64Type};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// Every output table's name, in publishing order (the job's `Table::ALL`, checked below).
pub const TABLES: [&str; 6] = [
    "customers",
    "retention",
    "cohorts",
    "ltv",
    "rejects",
    "models",
];

/// Asserts that a run of the binary succeeded (its stderr in the message) and returns stderr.
pub fn ok(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(o.status.success(), "run failed: {err}");
    err
}

pub struct Workspace {
    pub dir: tempfile::TempDir,
}

/// A config with the fixture defaults; `extra` is appended to [metrics] (TOML lines).
pub fn config(
    inputs: &[&str],
    output: &str,
    columns: &str,
    metrics: &str,
    input_extra: &str,
) -> String {
    let paths: Vec<String> = inputs.iter().map(|p| format!("{p:?}")).collect();
    format!(
        "[input]\npaths = [{}]\nmax_reject_ratio = 0.5\n{input_extra}\n[input.columns]\n{columns}\n[metrics]\n{metrics}\n[output]\npath = {output:?}\n",
        paths.join(", ")
    )
}

pub const DEFAULT_COLUMNS: &str =
    "customer_id = \"customer_id\"\nts = \"ts\"\namount = \"amount\"\norder_id = \"order_id\"\nsegments = [\"channel\"]";

/// The columns of `customer-value generate`'s output (with its default segments).
pub const GEN_COLUMNS: &str = "customer_id = \"customer_id\"\nts = \"ts\"\namount = \"amount\"\norder_id = \"order_id\"\ncost = \"cost\"\nsegments = [\"channel\", \"region\"]";

impl Workspace {
    pub fn new() -> Self {
        Workspace {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write(&self, rel: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, content).unwrap();
        p
    }

    /// Writes `config.toml` reading `input` (relative names) and writing `out/`.
    pub fn config(
        &self,
        inputs: &[&str],
        columns: &str,
        metrics: &str,
        input_extra: &str,
    ) -> PathBuf {
        let inputs: Vec<String> = inputs
            .iter()
            .map(|i| self.path(i).display().to_string())
            .collect();
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let out = self.path("out").display().to_string();
        self.write(
            "config.toml",
            config(&refs, &out, columns, metrics, input_extra),
        )
    }

    /// A workspace whose one input is `tx.parquet` holding `columns` (the default mapping's
    /// names), configured with the default mapping.
    pub fn with_parquet(columns: Vec<(&str, arrow::array::ArrayRef)>) -> Self {
        let ws = Workspace::new();
        let batch = RecordBatch::try_from_iter(columns).unwrap();
        let file = std::fs::File::create(ws.path("tx.parquet")).unwrap();
        let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        ws.config(&["tx.parquet"], DEFAULT_COLUMNS, "", "");
        ws
    }

    /// `tx.csv`: generated lines of 1,500 customers (segments, refunds, multi-line orders) and
    /// one row whose timestamp is not one (rejected, so the rejects table has a row), written
    /// as config.toml reads it (the generated columns) with `out/` as the output.
    pub fn generated_with_a_reject(&self) -> PathBuf {
        self.generate("tx.csv", &["--customers", "1500", "--rows", "15000"]);
        let csv = std::fs::read_to_string(self.path("tx.csv")).unwrap();
        let fields = csv.lines().next().unwrap().split(',').count();
        let bad = format!("c-bad,yesterday{}\n", ",".repeat(fields - 2));
        self.write("tx.csv", csv + &bad);
        self.config(&["tx.csv"], GEN_COLUMNS, "", "")
    }

    /// Runs `generate --output file` with `args` and asserts it succeeded.
    pub fn generate(&self, file: &str, args: &[&str]) {
        let mut all = vec!["generate", "--output", file];
        all.extend_from_slice(args);
        ok(&self.run(&all));
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.run_env(args, &[])
    }

    /// Runs the binary with extra environment variables.
    pub fn run_env(&self, args: &[&str], envs: &[(String, String)]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_customer-value"))
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("CUSTOMER_VALUE_AS_OF")
            .env("CUSTOMER_VALUE_LOG", "warn")
            .envs(envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .expect("run binary")
    }

    /// Starts a weekly backfill of 2023-01-08..2024-12-31 (104 dates) with `config.toml`, held
    /// at `point` of its first publish (see `Held`), sends it SIGTERM there, lets it go on and
    /// returns what it printed and how it exited: the stop waits for the publish under way.
    pub fn backfill_stopped_by_sigterm(&self, envs: &[(String, String)], point: &str) -> Output {
        let args = [
            "backfill",
            "--config",
            "config.toml",
            "--no-progress",
            "--from",
            "2023-01-08",
            "--to",
            "2024-12-31",
            "--every",
            "week",
        ];
        let held = Held::start(self, &args, envs, point);
        held.signal(libc::SIGTERM);
        held.release()
    }

    /// Runs `run --config config.toml --as-of D` plus `extra` flags.
    pub fn run_as_of(&self, as_of: &str, extra: &[&str]) -> Output {
        let mut args = vec!["run", "--config", "config.toml", "--as-of", as_of];
        args.extend_from_slice(extra);
        self.run(&args)
    }

    /// Runs `run --config config.toml --as-of D` and asserts success.
    pub fn run_ok(&self, as_of: &str) -> Output {
        let out = self.run_as_of(as_of, &[]);
        assert!(
            out.status.success(),
            "run failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        out
    }

    /// Reads every Parquet file of a table partition into one batch.
    pub fn table(&self, table: &str, as_of: &str) -> Table {
        read_partition(&self.path("out").join(table).join(format!("as_of={as_of}")))
    }

    pub fn manifest(&self, as_of: &str) -> serde_json::Value {
        self.manifest_in("out", as_of)
    }

    /// The manifest of `as_of` in output folder `out`.
    pub fn manifest_in(&self, out: &str, as_of: &str) -> serde_json::Value {
        let p = self
            .path(out)
            .join("_manifests")
            .join(format!("as_of={as_of}.json"));
        serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap()
    }
}

pub fn read_partition(dir: &Path) -> Table {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    files.sort();
    let tables: Vec<RecordBatch> = files.iter().map(|f| read_file(f)).collect();
    let schema = tables
        .first()
        .unwrap_or_else(|| panic!("no Parquet file in {}", dir.display()))
        .schema();
    Table(arrow::compute::concat_batches(&schema, &tables).unwrap())
}

/// Every row of one Parquet file.
pub fn read_file(path: &Path) -> RecordBatch {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    let schema = builder.schema().clone();
    let batches: Vec<RecordBatch> = builder.build().unwrap().map(|b| b.unwrap()).collect();
    arrow::compute::concat_batches(&schema, &batches).unwrap()
}

/// The rows of a customers table (possibly read from several files) in customer_id order.
pub fn by_customer(t: RecordBatch) -> RecordBatch {
    let idx = arrow::compute::sort_to_indices(t.column_by_name("customer_id").unwrap(), None, None)
        .unwrap();
    arrow::compute::take_record_batch(&t, &idx).unwrap()
}

/// The manifest's row accounting and counts, which runs of the same input and date share.
pub const ACCOUNTING_KEYS: [&str; 8] = [
    "rows_read",
    "rows_used",
    "rows_rejected",
    "rows_after_as_of",
    "customers",
    "orders",
    "rejects_by_reason",
    "inputs",
];

/// A table with typed accessors by column name.
pub struct Table(pub RecordBatch);

impl Table {
    pub fn rows(&self) -> usize {
        self.0.num_rows()
    }
    fn col(&self, name: &str) -> &dyn Array {
        self.0
            .column_by_name(name)
            .unwrap_or_else(|| panic!("no column {name}"))
            .as_ref()
    }
    pub fn str(&self, name: &str, i: usize) -> Option<String> {
        let a = self
            .col(name)
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("string");
        a.is_valid(i).then(|| a.value(i).to_string())
    }
    pub fn int(&self, name: &str, i: usize) -> Option<i64> {
        let a = self.col(name).as_primitive::<Int64Type>();
        a.is_valid(i).then(|| a.value(i))
    }
    pub fn f64(&self, name: &str, i: usize) -> Option<f64> {
        let a = self.col(name).as_primitive::<Float64Type>();
        a.is_valid(i).then(|| a.value(i))
    }
    pub fn date(&self, name: &str, i: usize) -> Option<String> {
        let a = self.col(name).as_primitive::<Date32Type>();
        a.is_valid(i).then(|| {
            (chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap()
                + chrono::Duration::days(a.value(i) as i64))
            .to_string()
        })
    }
    pub fn ts(&self, name: &str, i: usize) -> Option<String> {
        let a = self
            .col(name)
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .expect("timestamp");
        a.is_valid(i).then(|| {
            chrono::DateTime::from_timestamp_micros(a.value(i))
                .unwrap()
                .format("%Y-%m-%dT%H:%M:%SZ")
                .to_string()
        })
    }
    pub fn bool(&self, name: &str, i: usize) -> bool {
        self.col(name)
            .as_any()
            .downcast_ref::<BooleanArray>()
            .expect("bool")
            .value(i)
    }
    /// Index of the first row where every (column, value-as-string) matches.
    pub fn find(&self, keys: &[(&str, &str)]) -> usize {
        (0..self.rows())
            .find(|&i| {
                keys.iter()
                    .all(|(c, v)| self.any(c, i).as_deref() == Some(*v))
            })
            .unwrap_or_else(|| panic!("no row with {keys:?}"))
    }
    /// Rows matching the keys.
    pub fn filter(&self, keys: &[(&str, &str)]) -> Vec<usize> {
        (0..self.rows())
            .filter(|&i| {
                keys.iter()
                    .all(|(c, v)| self.any(c, i).as_deref() == Some(*v))
            })
            .collect()
    }
    /// Any column value rendered as a string (dates as YYYY-MM-DD).
    pub fn any(&self, name: &str, i: usize) -> Option<String> {
        let a = self.col(name);
        if a.is_null(i) {
            return None;
        }
        if let Some(s) = a.as_any().downcast_ref::<StringArray>() {
            return Some(s.value(i).to_string());
        }
        if a.as_any().downcast_ref::<Date32Array>().is_some() {
            return self.date(name, i);
        }
        if let Some(v) = a.as_any().downcast_ref::<Int64Array>() {
            return Some(v.value(i).to_string());
        }
        if let Some(v) = a.as_any().downcast_ref::<Float64Array>() {
            return Some(v.value(i).to_string());
        }
        if let Some(v) = a.as_any().downcast_ref::<BooleanArray>() {
            return Some(v.value(i).to_string());
        }
        None
    }
}

pub fn approx(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() < 1e-9)
}

/// Same columns and values; file metadata (which names each run) is not compared.
pub fn assert_same(got: &RecordBatch, want: &RecordBatch, what: &str) {
    assert_eq!(
        got.schema().fields(),
        want.schema().fields(),
        "{what}: columns"
    );
    assert_eq!(got.columns(), want.columns(), "{what}: values");
}

/// The text of a lock held by `pid` on this host (named as the job names it: /etc/hostname).
pub fn lock_of_this_host(run_id: &str, pid: u32) -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .expect("the tests need /etc/hostname")
        .trim()
        .to_string();
    format!(
        r#"{{"run_id":"{run_id}","pid":{pid},"host":"{host}","started_at":"2026-01-01T00:00:00Z"}}"#
    )
}

/// The pid of a process that ran and was killed (SIGKILL, as a scheduler's timeout ends a task):
/// no process has it any more.
pub fn killed_pid() -> u32 {
    let mut killed = Command::new("sleep").arg("60").spawn().unwrap();
    let pid = killed.id();
    killed.kill().unwrap();
    killed.wait().unwrap();
    pid
}

/// A run of the binary held at a point of its own (`CUSTOMER_VALUE_TEST_HOLD`, see
/// `src/testhook.rs`): started, then waited for until it reaches the point.
pub struct Held {
    pub child: std::process::Child,
    release: PathBuf,
}

impl Held {
    /// Starts `args` with `envs` in `ws`, holding at `point`; returns once it is there.
    pub fn start(ws: &Workspace, args: &[&str], envs: &[(String, String)], point: &str) -> Held {
        let release = ws.path(&format!("release-{}", std::process::id()));
        let _ = std::fs::remove_file(&release);
        let reached = PathBuf::from(format!("{}.reached", release.display()));
        let _ = std::fs::remove_file(&reached);
        let mut child = Command::new(env!("CARGO_BIN_EXE_customer-value"))
            .args(args)
            .current_dir(ws.dir.path())
            .env_remove("CUSTOMER_VALUE_AS_OF")
            .env("CUSTOMER_VALUE_LOG", "warn")
            .env(
                "CUSTOMER_VALUE_TEST_HOLD",
                format!("{point}={}", release.display()),
            )
            .envs(envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let start = std::time::Instant::now();
        while !reached.exists() {
            if let Some(status) = child.try_wait().unwrap() {
                let mut err = String::new();
                use std::io::Read;
                child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut err)
                    .unwrap();
                panic!("ended ({status}) before reaching {point}: {err}");
            }
            assert!(
                start.elapsed().as_secs() < 120,
                "{point} not reached in 2 minutes"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        Held { child, release }
    }

    /// Sends `signal` to the held process.
    pub fn signal(&self, signal: i32) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: signals the child spawned by `start`, not yet waited for.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    }

    /// Kills it outright (SIGKILL) and waits for it.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Lets it go on, and waits for it to end.
    pub fn release(self) -> Output {
        std::fs::write(&self.release, "go").unwrap();
        self.child.wait_with_output().unwrap()
    }

    /// Waits for it to end without releasing it (it was signalled).
    pub fn wait(self) -> Output {
        self.child.wait_with_output().unwrap()
    }
}

/// Every data file of `out/` (relative paths, `_`-prefixed folders skipped) and every file the
/// manifests there list; panics when a listed file is missing or a data file belongs to no
/// manifest's run.
pub fn assert_manifests_cover_the_files(out: &Path) {
    let mut listed = std::collections::BTreeSet::new();
    let mut runs = std::collections::BTreeMap::new();
    if let Ok(entries) = std::fs::read_dir(out.join("_manifests")) {
        for e in entries.flatten() {
            let m: serde_json::Value =
                serde_json::from_slice(&std::fs::read(e.path()).unwrap()).unwrap();
            for t in m["tables"].as_object().unwrap().values() {
                for f in t["files"].as_array().unwrap() {
                    let p = f["path"].as_str().unwrap().to_string();
                    assert!(out.join(&p).exists(), "listed file {p} is missing");
                    listed.insert(p);
                }
            }
            runs.insert(
                m["as_of"].as_str().unwrap().to_string(),
                m["run_id"].clone(),
            );
        }
    }
    let mut found = Vec::new();
    fn walk(dir: &Path, rel: &str, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if name.starts_with('_') {
                continue;
            }
            let r = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            if e.file_type().unwrap().is_dir() {
                walk(&e.path(), &r, out);
            } else {
                out.push(r);
            }
        }
    }
    walk(out, "", &mut found);
    for f in found {
        assert!(
            listed.contains(&f),
            "{f} is in no manifest (manifests: {runs:?})"
        );
    }
}

#[test]
fn tables_follow_the_schema() {
    let names: Vec<&str> = customer_value::Table::ALL
        .iter()
        .map(|t| t.name())
        .collect();
    assert_eq!(names, TABLES);
}

/// Runs a checking script (it prints one JSON document) and returns what it printed; fails the
/// test with the script's stderr when it fails.
pub fn script_json(cmd: &mut Command) -> serde_json::Value {
    let out = cmd.output().expect("the script runs");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the script prints JSON")
}
