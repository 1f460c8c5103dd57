//! The job's TOML configuration (SPEC §5): serde structs that are also the user documentation,
//! plus a validation pass that reports every problem at once, before any I/O.

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::time::Period;

mod check;
mod predict;
mod storage;

pub use check::Validated;
pub use check::{parse_as_of, parse_date};
pub use predict::{PredictConfig, TransactionModel};
pub use storage::StorageConfig;

/// Problems with the configuration. Each names the key (or file) at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// Not TOML, or not a configuration (an unknown key, a value of the wrong type); the
    /// message names the key.
    #[error("config file {path}: {}", one_line(&.source.to_string()))]
    Parse {
        path: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("config: {}", .0.join("; "))]
    Invalid(Vec<String>),
}

/// Whole configuration file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the transaction exports are and how to read them.
    pub input: InputConfig,
    /// How the metrics are defined (period, churn window, timezone, margin, segments).
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// Where the tables are written.
    #[serde(default)]
    pub output: OutputConfig,
    /// Object-store client settings (retries, timeouts, extra options).
    #[serde(default)]
    pub storage: StorageConfig,
    /// Optional acquisition spend per segment and period (gives cac, ltv_to_cac, payback_months).
    #[serde(default)]
    pub spend: Option<SpendConfig>,
    /// Memory planning: when the input is too large for memory, lines are spilled to disk in
    /// customer partitions and processed one partition at a time.
    #[serde(default)]
    pub engine: EngineConfig,
    /// The buy-till-you-die models: p_alive, expected purchases and predicted CLV per customer.
    #[serde(default)]
    pub predict: PredictConfig,
    /// Problems found while parsing that serde would have stopped at (an unknown enum value):
    /// reported by `validate` together with every other problem.
    #[serde(skip)]
    pending: Vec<String>,
}

/// `[engine]`: how much memory the job plans for, and where it spills beyond that.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    /// Memory the job plans to stay within, in MiB; 0 = three quarters of the machine's memory.
    #[serde(default)]
    pub memory_limit_mib: u64,
    /// Customer partitions: 0 = decided from the input size and the memory limit; 1 = all in
    /// memory; N ≥ 2 = always spill to N partitions.
    #[serde(default)]
    pub partitions: usize,
    /// Folder for spill files (deleted at the end of the run); "" = the system's temp folder.
    #[serde(default)]
    pub spill_dir: String,
}

/// `[spend]`: a CSV with columns `segment_by`, `segment`, `period_start` (YYYY-MM-DD, any day of
/// the period) and `spend` (money, same decimals as the input).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SpendConfig {
    /// Path of the spend CSV.
    pub path: String,
}

/// `[input]`: files, format, parsing and the reject gate.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InputConfig {
    /// Files, glob patterns or folders (read recursively; `key=value` folders become columns).
    #[serde(default)]
    pub paths: Vec<String>,
    /// `auto` (by file extension), `csv`, `parquet` or `ndjson`.
    #[serde(default)]
    pub format: InputFormat,
    /// Mapping from the logical fields of SPEC §1 to the input's column names.
    pub columns: ColumnsConfig,
    /// CSV dialect.
    #[serde(default)]
    pub csv: CsvConfig,
    /// chrono strftime format of `ts` when it is text; empty = ISO 8601 date, date-time, or
    /// date-time with offset, detected per value.
    #[serde(default)]
    pub ts_format: String,
    /// Decimal places of money in the input; amounts are summed exactly in these minor units.
    #[serde(default = "default_amount_decimals")]
    pub amount_decimals: u32,
    /// The run fails when rejected rows / rows read exceeds this share (0–1).
    #[serde(default = "default_max_reject_ratio")]
    pub max_reject_ratio: f64,
    /// A run fails (exit 3) when the newest transaction on or before as_of is more than this
    /// many days before as_of (a stale export); 0 = off.
    #[serde(default)]
    pub max_staleness_days: u32,
}

/// `[input.columns]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ColumnsConfig {
    /// Customer identifier (string or integer).
    pub customer_id: String,
    /// Transaction timestamp or date.
    pub ts: String,
    /// Net revenue of the line; negative = refund.
    pub amount: String,
    /// Optional order identifier grouping lines into orders.
    #[serde(default)]
    pub order_id: Option<String>,
    /// Optional cost of the line (gives the margin P).
    #[serde(default)]
    pub cost: Option<String>,
    /// Zero or more segment columns.
    #[serde(default)]
    pub segments: Vec<String>,
}

/// `[input.csv]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CsvConfig {
    /// Field delimiter, one ASCII character.
    #[serde(default = "default_delimiter")]
    pub delimiter: String,
    /// Quote character, one ASCII character; empty = no quoting.
    #[serde(default = "default_quote")]
    pub quote: String,
    /// Whether the first line is a header (without one, columns are `column_1`, `column_2`, …).
    #[serde(default = "default_true")]
    pub has_header: bool,
    /// Whether a quoted value may span lines. Off (as warehouse loaders default): every line is
    /// one record, and a line whose quotes do not close is rejected instead of swallowing the
    /// lines after it.
    #[serde(default)]
    pub allow_quoted_newlines: bool,
}

impl Default for CsvConfig {
    fn default() -> Self {
        Self {
            delimiter: default_delimiter(),
            quote: default_quote(),
            has_header: true,
            allow_quoted_newlines: false,
        }
    }
}

/// Input file format.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum InputFormat {
    #[default]
    Auto,
    Csv,
    Parquet,
    Ndjson,
}

/// `[metrics]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// `week` (ISO, Monday), `month`, `quarter` or `year`.
    #[serde(default)]
    pub period: Period,
    /// Days after the last purchase during which a customer is still active.
    #[serde(default = "default_churn_window")]
    pub churn_window_days: u32,
    /// IANA timezone for periods, days, and naive timestamps.
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// Margin P used when the input has no cost column (0–1).
    #[serde(default = "default_margin")]
    pub margin: f64,
    /// Which value of a segment column a customer gets: `first`, `last` or `most_frequent`
    /// (over their purchases).
    #[serde(default)]
    pub segment_assignment: SegmentAssignment,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            period: Period::default(),
            churn_window_days: default_churn_window(),
            timezone: default_timezone(),
            margin: default_margin(),
            segment_assignment: SegmentAssignment::default(),
        }
    }
}

/// How a customer's segment value is chosen.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SegmentAssignment {
    #[default]
    First,
    Last,
    MostFrequent,
}

/// `[output]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    /// Folder that receives `{table}/as_of=YYYY-MM-DD/` partitions and `_manifests/`.
    #[serde(default = "default_output_path")]
    pub path: String,
    /// zstd level of the Parquet files (1–22).
    #[serde(default = "default_zstd_level")]
    pub zstd_level: i32,
    /// Maximum rows per Parquet row group.
    #[serde(default = "default_row_group_rows")]
    pub row_group_rows: usize,
    /// The holder of the output lock renews it every quarter of this; a lock not renewed for
    /// this long is a dead run's and is taken over (at least `MIN_LOCK_TIMEOUT_MINUTES`).
    #[serde(default = "default_lock_timeout")]
    pub lock_timeout_minutes: u64,
    /// Also write the HTML report of every published date to `_reports/as_of=D.html`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub report: bool,
    /// How readers find the tables: `parquet` (Hive-style `as_of=D` folders and the run
    /// manifests) or `delta` (the same files, each table also a Delta Lake table).
    #[serde(default, skip_serializing_if = "OutputFormat::is_parquet")]
    pub format: OutputFormat,
    /// With `format = "delta"`: a data file a commit removed (a rerun replaced its date) is
    /// deleted by the first publish this many hours later, so readers of older table versions
    /// (and time travel) still find it until then.
    #[serde(
        default = "default_delta_retention_hours",
        skip_serializing_if = "is_default_delta_retention"
    )]
    pub delta_retention_hours: u64,
}

/// `[output] format`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OutputFormat {
    #[default]
    Parquet,
    Delta,
}

impl OutputFormat {
    fn is_parquet(&self) -> bool {
        *self == OutputFormat::Parquet
    }
}

/// Delta Lake's own default (`delta.deletedFileRetentionDuration`, 7 days).
fn default_delta_retention_hours() -> u64 {
    168
}

fn is_default_delta_retention(h: &u64) -> bool {
    *h == default_delta_retention_hours()
}

impl Default for OutputConfig {
    fn default() -> Self {
        Self {
            path: default_output_path(),
            zstd_level: default_zstd_level(),
            row_group_rows: default_row_group_rows(),
            lock_timeout_minutes: default_lock_timeout(),
            report: false,
            format: OutputFormat::Parquet,
            delta_retention_hours: default_delta_retention_hours(),
        }
    }
}

fn default_amount_decimals() -> u32 {
    2
}
fn default_max_reject_ratio() -> f64 {
    0.01
}
fn default_delimiter() -> String {
    ",".into()
}
fn default_quote() -> String {
    "\"".into()
}
fn default_true() -> bool {
    true
}
fn default_churn_window() -> u32 {
    90
}
fn default_timezone() -> String {
    "UTC".into()
}
fn default_margin() -> f64 {
    1.0
}
fn default_output_path() -> String {
    "out".into()
}
fn default_zstd_level() -> i32 {
    // Level 1: on the 10M-row benchmark's 36-date backfill, 9% less wall time than level 3 for
    // 6.5% larger customers files (benches/RESULTS.md).
    1
}
fn default_lock_timeout() -> u64 {
    5
}

/// Shortest lock lease: the holder renews every quarter of it, so a lease shorter than a
/// minute would be lost to one slow write to an object store.
pub const MIN_LOCK_TIMEOUT_MINUTES: u64 = 1;

/// Earliest and latest as_of dates (and backfill ends): transactions before 1900 are rejected,
/// and dates after 9999 are beyond Parquet readers' calendars.
pub const FIRST_YEAR: i32 = 1900;
pub const LAST_YEAR: i32 = 9999;
fn default_row_group_rows() -> usize {
    1 << 20
}

/// Most customer partitions a run may spill to (each holds one open file while reading).
pub const MAX_PARTITIONS: usize = 1024;

impl Config {
    /// Reads and parses a TOML file (unknown keys are errors).
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text).map_err(|source| ConfigError::Parse {
            path: path.display().to_string(),
            source: source.into(),
        })
    }

    /// Parses TOML text; the error is one line naming the key. An unknown value of an enum key
    /// (`period = "fortnight"`) is not an error here: the key falls back to its default and the
    /// problem is reported by `validate`, with every other one.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        Self::parse(text).map_err(|source| ConfigError::Parse {
            path: "(text)".into(),
            source: source.into(),
        })
    }

    fn parse(text: &str) -> Result<Config, toml::de::Error> {
        let mut table: toml::Table = toml::from_str(text)?;
        let pending = take_bad_enum_values(&mut table);
        let mut cfg: Config = table.try_into()?;
        cfg.pending = pending;
        Ok(cfg)
    }
}

/// A user's value shown in an error: at most 60 characters, on one line.
pub fn short(text: &str) -> String {
    let one = one_line(text);
    match one.char_indices().nth(60) {
        Some((i, _)) => format!("{}…", &one[..i]),
        None => one,
    }
}

/// The enum-valued keys: (table path, key, the values serde accepts).
const ENUM_KEYS: &[(&[&str], &str, &[&str])] = &[
    (&["input"], "format", &["auto", "csv", "parquet", "ndjson"]),
    (
        &["metrics"],
        "period",
        &["week", "month", "quarter", "year"],
    ),
    (
        &["metrics"],
        "segment_assignment",
        &["first", "last", "most_frequent"],
    ),
    (&["predict"], "model", &["bg_nbd", "mbg_nbd", "pareto_nbd"]),
];

/// Removes every enum key whose value is not one of its variants, returning a problem for each.
fn take_bad_enum_values(table: &mut toml::Table) -> Vec<String> {
    let mut problems = Vec::new();
    for (path, key, allowed) in ENUM_KEYS {
        let mut t = Some(&mut *table);
        for part in *path {
            t = t
                .and_then(|t| t.get_mut(*part))
                .and_then(toml::Value::as_table_mut);
        }
        let Some(t) = t else { continue };
        let Some(value) = t.get(*key) else { continue };
        if value.as_str().is_some_and(|v| allowed.contains(&v)) {
            continue;
        }
        problems.push(format!(
            "{}.{key}: {} is not one of {}",
            path.join("."),
            short(&value.to_string()),
            allowed.join(", ")
        ));
        t.remove(*key);
    }
    problems
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl fmt::Display for InputFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InputFormat::Auto => "auto",
            InputFormat::Csv => "csv",
            InputFormat::Parquet => "parquet",
            InputFormat::Ndjson => "ndjson",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal() -> String {
        r#"
[input]
paths = ["x.csv"]
[input.columns]
customer_id = "c"
ts = "t"
amount = "a"
"#
        .to_string()
    }

    #[test]
    fn default_config_file_parses_and_validates() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/default.toml");
        let cfg = Config::from_file(&path).expect("config/default.toml parses");
        cfg.validate().expect("config/default.toml is valid");
    }

    #[test]
    fn minimal_config_gets_spec_defaults() {
        let cfg = Config::from_toml(&minimal()).unwrap();
        assert_eq!(cfg.metrics.period, Period::Month);
        assert_eq!(cfg.metrics.churn_window_days, 90);
        assert_eq!(cfg.metrics.timezone, "UTC");
        assert_eq!(cfg.metrics.margin, 1.0);
        assert_eq!(cfg.metrics.segment_assignment, SegmentAssignment::First);
        assert_eq!(cfg.input.max_reject_ratio, 0.01);
        assert_eq!(cfg.output.path, "out");
        cfg.validate().unwrap();
    }

    #[test]
    fn unknown_key_is_named() {
        let text = minimal() + "[metrics]\nchurn_windw_days = 3\n";
        let err = Config::from_toml(&text).unwrap_err().to_string();
        assert!(err.contains("churn_windw_days"), "{err}");
    }

    #[test]
    fn missing_mapping_is_named() {
        let text = "[input]\npaths=[\"a\"]\n[input.columns]\ncustomer_id=\"c\"\nts=\"t\"\n";
        let err = Config::from_toml(text).unwrap_err().to_string();
        assert!(err.contains("amount"), "{err}");
    }

    #[test]
    fn all_problems_reported_at_once() {
        let text = minimal()
            + "[metrics]\nperiod = \"quarter\"\nchurn_window_days = 30\ntimezone = \"Mars/Base\"\nmargin = 2.0\n";
        let err = Config::from_toml(&text).unwrap().validate().unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("metrics.churn_window_days: 30"), "{msg}");
        assert!(msg.contains("92"), "{msg}");
        assert!(msg.contains("metrics.timezone: 'Mars/Base'"), "{msg}");
        assert!(msg.contains("metrics.margin: 2"), "{msg}");
        assert!(!msg.contains('\n'), "one line: {msg}");
    }

    #[test]
    fn churn_window_must_cover_the_longest_period() {
        for (period, ok, bad) in [
            ("week", 7, 6),
            ("month", 31, 30),
            ("quarter", 92, 91),
            ("year", 366, 365),
        ] {
            let text = |w: u32| {
                minimal() + &format!("[metrics]\nperiod=\"{period}\"\nchurn_window_days={w}\n")
            };
            assert!(Config::from_toml(&text(ok)).unwrap().validate().is_ok());
            assert!(Config::from_toml(&text(bad)).unwrap().validate().is_err());
        }
    }

    #[test]
    fn bad_as_of_is_a_config_error() {
        assert!(parse_as_of("2024-02-30").is_err());
        assert!(parse_as_of("yesterday").is_err());
        assert_eq!(
            parse_as_of("2024-02-29").unwrap(),
            chrono::NaiveDate::from_ymd_opt(2024, 2, 29).unwrap()
        );
    }

    #[test]
    fn unknown_enum_values_are_reported_with_every_other_problem() {
        let text = minimal()
            + "[metrics]\nperiod = \"fortnight\"\nsegment_assignment = 3\nmargin = 7.0\n[output]\nlock_timeout_minutes = 0\n";
        let cfg = Config::from_toml(&text).expect("parses: enum values are checked by validate");
        let msg = cfg.validate().unwrap_err().to_string();
        for needle in [
            "metrics.period: \"fortnight\" is not one of week, month, quarter, year",
            "metrics.segment_assignment: 3 is not one of first, last, most_frequent",
            "metrics.margin: 7",
            "output.lock_timeout_minutes: 0 is out of range",
        ] {
            assert!(msg.contains(needle), "{needle}: {msg}");
        }
    }

    #[test]
    fn dates_are_bounded_to_years_1900_to_9999() {
        assert!(parse_as_of("1900-01-01").is_ok());
        assert!(parse_as_of("9999-12-31").is_ok());
        for bad in [
            "1899-12-31",
            "+262142-12-31",
            "10000-01-01",
            "-0001-01-01",
            "2024-1-1",
        ] {
            assert!(parse_as_of(bad).is_err(), "{bad}");
        }
        let long = "9".repeat(200);
        let msg = parse_as_of(&long).unwrap_err().to_string();
        assert!(msg.len() < 120, "the value is shortened: {msg}");
    }

    #[test]
    fn reserved_segment_names_rejected() {
        let text = minimal().replace(
            "amount = \"a\"",
            "amount = \"a\"\nsegments = [\"revenue\", \"x\", \"x\"]",
        );
        let msg = Config::from_toml(&text)
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(msg.contains("'revenue' is a reserved"), "{msg}");
        assert!(msg.contains("'x' is listed twice"), "{msg}");
    }
}
