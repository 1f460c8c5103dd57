//! The command line's flags and subcommands (clap derive), with their `CUSTOMER_VALUE_*`
//! environment twins.

use std::path::PathBuf;

use chrono::NaiveDate;
use clap::builder::{BoolishValueParser, PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::{Config, ConfigError, Validated};
use crate::generate::{GenFormat, DEFAULT_TRUTH};
use crate::job::{self, RunOptions};

/// Default config path when --config is not given.
pub(crate) const DEFAULT_CONFIG: &str = "config/default.toml";

#[derive(Debug, Parser)]
#[command(
    name = "customer-value",
    version,
    about = "Customer retention (CRR), LTV/CLV, churn cohorts and per-customer tables from transaction exports, per segment."
)]
pub(crate) struct Cli {
    /// Log format on stderr.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "CUSTOMER_VALUE_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
    /// Worker threads (default: all cores).
    #[arg(long, global = true, env = "CUSTOMER_VALUE_THREADS")]
    pub threads: Option<usize>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Compute every table for one as_of date and publish it.
    Run(RunArgs),
    /// Publish one partition per as_of date in a range, reading the inputs once.
    Backfill(BackfillArgs),
    /// Check the config and parse every input row with the run's rules and data checks; writes
    /// nothing. Fails (exit 3) where `run` would on the data.
    Validate(ValidateArgs),
    /// Print every output table's columns, types and meaning.
    Schema(SchemaArgs),
    /// Write a deterministic synthetic transaction export.
    Generate(GenerateArgs),
    /// Write one self-contained HTML page of a published run (charts, tables, data quality).
    Report(ReportArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ReportArgs {
    /// Config file (TOML) whose output the report reads.
    #[arg(long, env = "CUSTOMER_VALUE_CONFIG", default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// The published output to read (folder or URL), replacing output.path.
    #[arg(long)]
    pub from: Option<String>,
    /// The published run's as_of date (default: the newest manifest in the output).
    #[arg(long, env = "CUSTOMER_VALUE_AS_OF")]
    pub as_of: Option<String>,
    /// The HTML file to write (replaced atomically).
    #[arg(long, short = 'o')]
    pub output: PathBuf,
}

/// Flags that locate and override the configuration.
#[derive(Debug, Args)]
pub(crate) struct ConfigArgs {
    /// Config file (TOML).
    #[arg(long, env = "CUSTOMER_VALUE_CONFIG", default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// Input paths, replacing input.paths (repeatable; comma-separated in the environment).
    #[arg(long = "input", env = "CUSTOMER_VALUE_INPUT", value_delimiter = ',')]
    pub inputs: Vec<String>,
    /// Output folder, replacing output.path.
    #[arg(long, env = "CUSTOMER_VALUE_OUTPUT")]
    pub output: Option<String>,
    /// Replaces input.max_reject_ratio.
    #[arg(long, env = "CUSTOMER_VALUE_MAX_REJECT_RATIO")]
    pub max_reject_ratio: Option<f64>,
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// As-of date YYYY-MM-DD (default: yesterday in the configured timezone).
    #[arg(long, env = "CUSTOMER_VALUE_AS_OF")]
    pub as_of: Option<String>,
    #[command(flatten)]
    pub publish: PublishArgs,
}

#[derive(Debug, Args)]
pub(crate) struct ValidateArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// As-of date YYYY-MM-DD the rows are checked as of (default: yesterday in the configured
    /// timezone, as for `run`).
    #[arg(long, env = "CUSTOMER_VALUE_AS_OF")]
    pub as_of: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct BackfillArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// First date of the range (YYYY-MM-DD).
    #[arg(long, env = "CUSTOMER_VALUE_FROM")]
    pub from: String,
    /// Last date of the range (YYYY-MM-DD).
    #[arg(long, env = "CUSTOMER_VALUE_TO")]
    pub to: String,
    /// Which dates of the range: the last day of every period (default: metrics.period), or every day.
    #[arg(long, value_enum, env = "CUSTOMER_VALUE_EVERY")]
    pub every: Option<Every>,
    #[command(flatten)]
    pub publish: PublishArgs,
}

/// Flags of the commands that publish partitions (`run`, `backfill`).
#[derive(Debug, Args)]
pub(crate) struct PublishArgs {
    /// Never show a progress bar.
    #[arg(long, env = "CUSTOMER_VALUE_NO_PROGRESS", value_parser = BoolishValueParser::new())]
    pub no_progress: bool,
    /// Remove another run's lock on the output before starting (only when it is known dead).
    #[arg(long, env = "CUSTOMER_VALUE_FORCE_UNLOCK", value_parser = BoolishValueParser::new())]
    pub force_unlock: bool,
    /// Tables to write, comma-separated (default: all six). The partitions of the others are
    /// left as they are for each date, and its manifest keeps listing them.
    #[arg(
        long,
        value_delimiter = ',',
        env = "CUSTOMER_VALUE_TABLES",
        value_parser = PossibleValuesParser::new(crate::schema::Table::ALL.map(|t| t.name()))
            .map(|name| crate::schema::Table::from_name(&name).expect("a listed table name"))
    )]
    pub tables: Vec<crate::schema::Table>,
}

impl PublishArgs {
    /// The job options these flags give, for `as_of`.
    pub(super) fn options(&self, as_of: Option<NaiveDate>) -> RunOptions {
        RunOptions {
            as_of,
            progress: !self.no_progress,
            force_unlock: self.force_unlock,
            // None given means all five.
            tables: if self.tables.is_empty() {
                job::TableSet::ALL
            } else {
                job::TableSet::of(self.tables.iter().copied())
            },
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Every {
    Day,
    Week,
    Month,
    Quarter,
    Year,
}

#[derive(Debug, Args)]
pub(crate) struct SchemaArgs {
    /// Output format: the tables' documentation (markdown, json), a dbt sources.yml (dbt), or
    /// the statements that make the output queryable in an engine (sql; see --dialect).
    #[arg(
        long,
        value_enum,
        default_value = "markdown",
        env = "CUSTOMER_VALUE_SCHEMA_FORMAT"
    )]
    pub format: SchemaFormat,
    /// Engine of the sql statements and of the dbt tests' expressions.
    #[arg(
        long,
        value_enum,
        default_value = "duckdb",
        env = "CUSTOMER_VALUE_SCHEMA_DIALECT"
    )]
    pub dialect: crate::export::Dialect,
    /// Database (schema) the statements create and the dbt source reads.
    #[arg(long, default_value = crate::export::DEFAULT_DATABASE, env = "CUSTOMER_VALUE_SCHEMA_DATABASE")]
    pub database: String,
    /// Trino catalog of the Hive connector (sql --dialect trino).
    #[arg(long, default_value = "hive", env = "CUSTOMER_VALUE_SCHEMA_CATALOG")]
    pub catalog: String,
    /// dbt and sql: the configuration whose output location, segment columns and predictions
    /// are described (markdown and json document every configuration and read none).
    #[command(flatten)]
    pub config: ConfigArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum SchemaFormat {
    Markdown,
    Json,
    Dbt,
    Sql,
}

#[derive(Debug, Args)]
pub(crate) struct GenerateArgs {
    /// Output file (`.csv`, `.csv.gz`, `.csv.zst` or `.parquet`).
    #[arg(long, env = "CUSTOMER_VALUE_GEN_OUTPUT")]
    pub output: PathBuf,
    /// File format (default: by extension).
    #[arg(long, value_enum, env = "CUSTOMER_VALUE_GEN_FORMAT")]
    pub format: Option<GenFormat>,
    #[arg(long, default_value_t = 10_000, env = "CUSTOMER_VALUE_GEN_CUSTOMERS")]
    pub customers: u64,
    /// Approximate number of rows (lines): sets α (default 100000; not with --alpha).
    #[arg(long, env = "CUSTOMER_VALUE_GEN_ROWS", conflicts_with = "alpha")]
    pub rows: Option<u64>,
    #[arg(long, default_value_t = 42, env = "CUSTOMER_VALUE_GEN_SEED")]
    pub seed: u64,
    /// First month (YYYY-MM-DD).
    #[arg(long, default_value = "2023-01-01", env = "CUSTOMER_VALUE_GEN_START")]
    pub start: String,
    #[arg(long, default_value_t = 24, env = "CUSTOMER_VALUE_GEN_MONTHS")]
    pub months: u32,
    /// Segment columns (channel, region, plan).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "channel,region",
        env = "CUSTOMER_VALUE_GEN_SEGMENTS"
    )]
    pub segments: Vec<String>,
    /// Share of orders refunded (partly or fully) later.
    #[arg(long, default_value_t = 0.05, env = "CUSTOMER_VALUE_GEN_REFUNDS")]
    pub refunds: f64,
    /// Share of orders with several lines.
    #[arg(long, default_value_t = 0.3, env = "CUSTOMER_VALUE_GEN_MULTI_LINE")]
    pub multi_line: f64,
    /// Leave out the cost column.
    #[arg(long, env = "CUSTOMER_VALUE_GEN_NO_COST", value_parser = BoolishValueParser::new())]
    pub no_cost: bool,
    /// True BG/NBD r (purchase-rate shape) of the `web` channel.
    #[arg(long, default_value_t = DEFAULT_TRUTH.r, env = "CUSTOMER_VALUE_GEN_R")]
    pub r: f64,
    /// True BG/NBD α (purchase-rate scale, weeks) of the `web` channel (default: solved from --rows).
    #[arg(long, env = "CUSTOMER_VALUE_GEN_ALPHA")]
    pub alpha: Option<f64>,
    /// True BG/NBD a (dropout Beta) of the `web` channel.
    #[arg(long, default_value_t = DEFAULT_TRUTH.a, env = "CUSTOMER_VALUE_GEN_A")]
    pub a: f64,
    /// True BG/NBD b (dropout Beta) of the `web` channel.
    #[arg(long, default_value_t = DEFAULT_TRUTH.b, env = "CUSTOMER_VALUE_GEN_B")]
    pub b: f64,
    /// True Gamma-Gamma p (order value shape) of the `web` channel.
    #[arg(long, default_value_t = DEFAULT_TRUTH.p, env = "CUSTOMER_VALUE_GEN_P")]
    pub p: f64,
    /// True Gamma-Gamma q (shape of the customers' value scale; above 1) of the `web` channel.
    #[arg(long, default_value_t = DEFAULT_TRUTH.q, env = "CUSTOMER_VALUE_GEN_Q")]
    pub q: f64,
    /// True Gamma-Gamma v (scale of the customers' value scale) of the `web` channel.
    #[arg(long, default_value_t = DEFAULT_TRUTH.v, env = "CUSTOMER_VALUE_GEN_V")]
    pub v: f64,
    /// Every channel gets the flags' parameters (default: app buys more often, α × 0.6; store
    /// drops out sooner, b × 0.5; partner spends more, v × 1.5).
    #[arg(long, env = "CUSTOMER_VALUE_GEN_SAME_PARAMS", value_parser = BoolishValueParser::new())]
    pub same_params: bool,
}

impl ConfigArgs {
    /// Loads the file, applies the flags, validates everything.
    pub(crate) fn load(&self) -> std::result::Result<Validated, ConfigError> {
        let mut cfg = Config::from_file(&self.config)?;
        if !self.inputs.is_empty() {
            cfg.input.paths = self.inputs.clone();
        }
        if let Some(o) = &self.output {
            cfg.output.path = o.clone();
        }
        if let Some(r) = self.max_reject_ratio {
            cfg.input.max_reject_ratio = r;
        }
        cfg.validate()
    }
}
