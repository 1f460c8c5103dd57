//! The job's TOML configuration (SPEC §5): serde structs that are also the user documentation,
//! plus a validation pass that reports every problem at once, before any I/O.

use std::fmt;
use std::path::Path;

use chrono::{Datelike, NaiveDate};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::time::Period;

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

/// `[storage]`: how object stores are reached. Credentials and endpoints come from the
/// environment (`AWS_*`, `AZURE_*`, `GOOGLE_*`); `options` adds object_store keys for every store
/// (e.g. `aws_region = "eu-west-1"`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// Retries per request (with exponential backoff).
    #[serde(default = "default_retries")]
    pub retries: usize,
    /// Give up retrying a request after this many seconds.
    #[serde(default = "default_retry_timeout")]
    pub retry_timeout_secs: u64,
    /// Timeout of one request, seconds.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_secs: u64,
    /// Timeout to connect, seconds.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: u64,
    /// Extra object_store configuration keys for every store.
    #[serde(default)]
    pub options: std::collections::BTreeMap<String, String>,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            retries: default_retries(),
            retry_timeout_secs: default_retry_timeout(),
            request_timeout_secs: default_request_timeout(),
            connect_timeout_secs: default_connect_timeout(),
            options: Default::default(),
        }
    }
}

fn default_retries() -> usize {
    3
}
fn default_retry_timeout() -> u64 {
    60
}
fn default_request_timeout() -> u64 {
    120
}
fn default_connect_timeout() -> u64 {
    5
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
}

impl Default for OutputConfig {
    fn default() -> Self {
        Self {
            path: default_output_path(),
            zstd_level: default_zstd_level(),
            row_group_rows: default_row_group_rows(),
            lock_timeout_minutes: default_lock_timeout(),
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
pub(crate) const MIN_LOCK_TIMEOUT_MINUTES: u64 = 1;

/// Earliest and latest as_of dates (and backfill ends): transactions before 1900 are rejected,
/// and dates after 9999 are beyond Parquet readers' calendars.
pub(crate) const FIRST_YEAR: i32 = 1900;
pub(crate) const LAST_YEAR: i32 = 9999;
fn default_row_group_rows() -> usize {
    1 << 20
}

/// Most customer partitions a run may spill to (each holds one open file while reading).
pub(crate) const MAX_PARTITIONS: usize = 1024;

/// A configuration that passed validation, with its parsed values ready for the job.
#[derive(Debug, Clone)]
pub struct Validated {
    pub config: Config,
    pub tz: Tz,
    pub delimiter: u8,
    pub quote: Option<u8>,
    /// sha256 of the canonical (re-serialized) configuration.
    pub hash: String,
}

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

    /// Checks every rule and reports all problems at once.
    pub fn validate(self) -> Result<Validated, ConfigError> {
        self.check(true)
    }

    /// `validate` for a computation that is handed its lines (the library API): input.paths
    /// may be empty.
    pub(crate) fn validate_lines(self) -> Result<Validated, ConfigError> {
        self.check(false)
    }

    fn check(self, reads_files: bool) -> Result<Validated, ConfigError> {
        let mut problems = self.pending.clone();
        let i = &self.input;
        if reads_files && i.paths.is_empty() {
            problems.push("input.paths: must list at least one file, glob or folder".to_string());
        }
        if i.paths.iter().any(|p| p.trim().is_empty()) {
            problems.push("input.paths: contains an empty path".to_string());
        }
        let c = &i.columns;
        for (key, value) in [
            ("input.columns.customer_id", &c.customer_id),
            ("input.columns.ts", &c.ts),
            ("input.columns.amount", &c.amount),
        ] {
            if value.trim().is_empty() {
                problems.push(format!("{key}: mapping is required and may not be empty"));
            }
        }
        for (key, value) in [
            ("input.columns.order_id", &c.order_id),
            ("input.columns.cost", &c.cost),
        ] {
            if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
                problems.push(format!(
                    "{key}: empty column name (leave the key out instead)"
                ));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for s in &c.segments {
            if s.trim().is_empty() {
                problems.push("input.columns.segments: contains an empty column name".into());
            } else if crate::schema::reserved_names().contains(&s.as_str()) {
                problems.push(format!(
                    "input.columns.segments: '{s}' is a reserved output column name; rename it in the input or choose another column"
                ));
            } else if !seen.insert(s.as_str()) {
                problems.push(format!("input.columns.segments: '{s}' is listed twice"));
            }
        }
        if i.amount_decimals > 9 {
            problems.push(format!(
                "input.amount_decimals: {} is out of range (0–9)",
                i.amount_decimals
            ));
        }
        if i.max_staleness_days > 36_600 {
            problems.push(format!(
                "input.max_staleness_days: {} is out of range (0 = off, at most 36600)",
                i.max_staleness_days
            ));
        }
        if !(0.0..=1.0).contains(&i.max_reject_ratio) {
            problems.push(format!(
                "input.max_reject_ratio: {} is out of range (0–1)",
                i.max_reject_ratio
            ));
        }
        if !i.ts_format.is_empty() {
            let items: Vec<_> = chrono::format::StrftimeItems::new(&i.ts_format).collect();
            if items
                .iter()
                .any(|it| matches!(it, chrono::format::Item::Error))
            {
                problems.push(format!(
                    "input.ts_format: '{}' is not a valid strftime format",
                    i.ts_format
                ));
            }
        }
        let delimiter = single_byte(&i.csv.delimiter);
        if delimiter.is_none() {
            problems.push(format!(
                "input.csv.delimiter: '{}' must be exactly one ASCII character",
                i.csv.delimiter
            ));
        }
        let quote = if i.csv.quote.is_empty() {
            Some(None)
        } else {
            single_byte(&i.csv.quote).map(Some)
        };
        if quote.is_none() {
            problems.push(format!(
                "input.csv.quote: '{}' must be one ASCII character or empty",
                i.csv.quote
            ));
        }
        let m = &self.metrics;
        let tz: Option<Tz> = m.timezone.parse().ok();
        if tz.is_none() {
            problems.push(format!(
                "metrics.timezone: '{}' is not an IANA timezone (e.g. UTC, Europe/Berlin)",
                m.timezone
            ));
        }
        let longest = m.period.longest_days();
        if m.churn_window_days < longest {
            problems.push(format!(
                "metrics.churn_window_days: {} is shorter than the longest {} ({longest} days); use at least {longest}",
                m.churn_window_days, m.period
            ));
        }
        if m.churn_window_days > 36_600 {
            problems.push(format!(
                "metrics.churn_window_days: {} is out of range (at most 36600)",
                m.churn_window_days
            ));
        }
        if !m.margin.is_finite() || !(0.0..=1.0).contains(&m.margin) {
            problems.push(format!(
                "metrics.margin: {} is out of range (0–1)",
                m.margin
            ));
        }
        if self
            .spend
            .as_ref()
            .is_some_and(|s| s.path.trim().is_empty())
        {
            problems.push("spend.path: may not be empty (leave [spend] out instead)".into());
        }
        let o = &self.output;
        if o.path.trim().is_empty() {
            problems.push("output.path: may not be empty".into());
        }
        if !(1..=22).contains(&o.zstd_level) {
            problems.push(format!(
                "output.zstd_level: {} is out of range (1–22)",
                o.zstd_level
            ));
        }
        if o.row_group_rows == 0 {
            problems.push("output.row_group_rows: must be at least 1".into());
        }
        if o.lock_timeout_minutes < MIN_LOCK_TIMEOUT_MINUTES || o.lock_timeout_minutes > 10_080 {
            problems.push(format!(
                "output.lock_timeout_minutes: {} is out of range ({MIN_LOCK_TIMEOUT_MINUTES}–10080); a live run renews its lock, so it is never taken over",
                o.lock_timeout_minutes
            ));
        }
        if self.engine.partitions > MAX_PARTITIONS {
            problems.push(format!(
                "engine.partitions: {} is above the maximum of {MAX_PARTITIONS}",
                self.engine.partitions
            ));
        }
        if !problems.is_empty() {
            return Err(ConfigError::Invalid(problems));
        }
        let hash = {
            use sha2::Digest;
            let canonical = serde_json::to_string(&self).unwrap_or_default();
            let digest = sha2::Sha256::digest(canonical.as_bytes());
            format!("sha256:{}", hex(&digest))
        };
        Ok(Validated {
            tz: tz.unwrap_or(Tz::UTC),
            delimiter: delimiter.unwrap_or(b','),
            quote: quote.unwrap_or(Some(b'"')),
            config: self,
            hash,
        })
    }
}

/// Parses an as-of date given on the command line or in the environment: YYYY-MM-DD with a
/// year from `FIRST_YEAR` to `LAST_YEAR`.
pub(crate) fn parse_as_of(text: &str) -> Result<NaiveDate, ConfigError> {
    parse_date("as_of", text)
}

/// Parses a date flag (`what` names it in the error): YYYY-MM-DD, years `FIRST_YEAR` to
/// `LAST_YEAR` (date arithmetic near chrono's limits would overflow).
pub(crate) fn parse_date(what: &str, text: &str) -> Result<NaiveDate, ConfigError> {
    let t = text.trim();
    let shaped = t.len() == 10 && t.as_bytes()[4] == b'-' && t.as_bytes()[7] == b'-';
    match NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        Ok(d) if shaped && (FIRST_YEAR..=LAST_YEAR).contains(&d.year()) => Ok(d),
        Ok(_) if shaped => Err(ConfigError::Invalid(vec![format!(
            "{what}: '{text}' is out of range ({FIRST_YEAR}-01-01 to {LAST_YEAR}-12-31)"
        )])),
        _ => Err(ConfigError::Invalid(vec![format!(
            "{what}: '{}' is not a date of the form YYYY-MM-DD",
            short(text)
        )])),
    }
}

/// A user's value shown in an error: at most 60 characters, on one line.
pub(crate) fn short(text: &str) -> String {
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

fn single_byte(s: &str) -> Option<u8> {
    let b = s.as_bytes();
    (b.len() == 1 && b[0].is_ascii()).then(|| b[0])
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

pub(crate) fn hex(bytes: &[u8]) -> String {
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
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/default.toml");
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
            NaiveDate::from_ymd_opt(2024, 2, 29).unwrap()
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
